//! The in-memory log: ops `start..=op()`, with everything below `start`
//! folded into a base snapshot (kept by the caller).

use std::collections::VecDeque;

use super::msg::{Entry, LogImage};
use super::state::State;

#[derive(Debug, Clone)]
pub(crate) struct Log {
    start: u64,
    entries: VecDeque<Entry>,
    /// Op of the latest View entry held: asked on every proposal, so kept
    /// rather than searched for.
    last_view: Option<u64>,
}

impl Log {
    pub fn new() -> Self {
        Log {
            start: 1,
            entries: VecDeque::new(),
            last_view: None,
        }
    }

    pub fn from_image(img: LogImage) -> (Self, State) {
        let start = img.start.max(1);
        let last_view = img
            .entries
            .iter()
            .rposition(|e| matches!(e, Entry::View(_)))
            .map(|i| start + i as u64);
        (
            Log {
                start,
                entries: img.entries.into(),
                last_view,
            },
            img.base,
        )
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    /// Last op held; `start - 1` when empty.
    pub fn op(&self) -> u64 {
        self.start + self.entries.len() as u64 - 1
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, op: u64) -> Option<&Entry> {
        if op < self.start {
            return None;
        }
        self.entries.get(usize::try_from(op - self.start).ok()?)
    }

    pub fn push(&mut self, e: Entry) {
        if matches!(e, Entry::View(_)) {
            self.last_view = Some(self.op() + 1);
        }
        self.entries.push_back(e);
    }

    /// Entries `from..=to` (clamped to what is held).
    pub fn range(&self, from: u64, to: u64) -> Vec<Entry> {
        let from = from.max(self.start);
        let to = to.min(self.op());
        (from..=to).filter_map(|op| self.get(op).cloned()).collect()
    }

    /// Removes and returns the ops after `op`.
    pub fn split_off(&mut self, op: u64) -> Vec<Entry> {
        let keep = usize::try_from((op + 1).saturating_sub(self.start)).unwrap_or(usize::MAX);
        if keep >= self.entries.len() {
            return Vec::new();
        }
        let tail: Vec<Entry> = self.entries.split_off(keep).into();
        if self.last_view.is_some_and(|v| v > op) {
            self.last_view = self
                .entries
                .iter()
                .rposition(|e| matches!(e, Entry::View(_)))
                .map(|i| self.start + i as u64);
        }
        tail
    }

    /// Drops ops `<= upto`, folding them into `base`.
    pub fn truncate(&mut self, upto: u64, base: &mut State) {
        while self.start <= upto {
            match self.entries.pop_front() {
                Some(e) => {
                    base.apply(&e);
                    self.start += 1;
                }
                None => break,
            }
        }
        if self.last_view.is_some_and(|op| op < self.start) {
            self.last_view = None;
        }
    }

    pub fn image(&self, base: &State) -> LogImage {
        LogImage {
            base: base.clone(),
            start: self.start,
            entries: self.entries.iter().cloned().collect(),
        }
    }

    /// Latest View entry held.
    pub fn last_view(&self) -> Option<(u64, &Entry)> {
        let op = self.last_view?;
        self.get(op).map(|e| (op, e))
    }
}

//! Replicated state derived from committed entries: membership view, groups
//! and the dedup table. Every replica holds an identical copy at each op.

use std::collections::{BTreeMap, BTreeSet};

use super::msg::Entry;
use super::{Epoch, NodeId};

/// What applying an entry changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// For a View: the (member, group) pairs it removed because their node
    /// left the view (implied leaves).
    pub implied_leaves: Vec<(String, String)>,
    /// For a Join or Leave: whether the group's members changed (a join of a
    /// member already in it, or from a node outside the view, does not).
    pub changed: bool,
}

/// Ancestor epochs a history remembers.
pub const ANCESTORS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The epoch of the history (set by View entries).
    pub epoch: Epoch,
    /// The epochs this history was re-formed from, each with the view that
    /// left it (at most [`ANCESTORS`], the lowest forgotten first): a node
    /// holding this history never takes one of them back at or below that
    /// view — its nodes may have moved on in it before they left.
    pub ancestors: BTreeMap<Epoch, u64>,
    /// Id of the last committed membership view (0 before the first).
    pub view_id: u64,
    pub members: BTreeSet<NodeId>,
    /// group → member → origin node of its Join.
    pub groups: BTreeMap<String, BTreeMap<String, NodeId>>,
    /// origin → (incarnation, last committed pseq).
    pub dedup: BTreeMap<NodeId, (u64, u64)>,
}

impl State {
    /// Applies one committed entry.
    pub fn apply(&mut self, e: &Entry) -> Applied {
        if let Some(id) = e.proposal() {
            let newer = match self.dedup.get(&id.origin) {
                None => true,
                Some(&(inc, ps)) => (id.incarnation, id.pseq) > (inc, ps),
            };
            if newer {
                self.dedup.insert(id.origin, (id.incarnation, id.pseq));
            }
        }
        let mut out = Applied::default();
        match e {
            Entry::Publish(_) => {}
            Entry::Join(g) => {
                // A node outside the view has no members: its late joins are
                // dropped here and re-proposed by it when it is re-admitted.
                if self.members.contains(&g.id.origin) {
                    out.changed = self
                        .groups
                        .entry(g.group.clone())
                        .or_default()
                        .insert(g.member.clone(), g.id.origin)
                        .is_none();
                }
            }
            Entry::Leave(g) => {
                if let Some(m) = self.groups.get_mut(&g.group) {
                    out.changed = m.remove(&g.member).is_some();
                    if m.is_empty() {
                        self.groups.remove(&g.group);
                    }
                }
            }
            Entry::View(v) => {
                if v.epoch != self.epoch && self.epoch != Epoch::default() {
                    self.ancestors.insert(self.epoch, v.epoch.formed.view);
                    if self.ancestors.len() > ANCESTORS {
                        self.ancestors.pop_first();
                    }
                }
                self.epoch = v.epoch;
                self.view_id = v.id;
                self.members = v.members.iter().copied().collect();
                let mut gone = Vec::new();
                for (group, ms) in self.groups.iter_mut() {
                    ms.retain(|member, origin| {
                        let keep = self.members.contains(origin);
                        if !keep {
                            gone.push((member.clone(), group.clone()));
                        }
                        keep
                    });
                }
                self.groups.retain(|_, ms| !ms.is_empty());
                out.implied_leaves = gone;
            }
        }
        out
    }

    /// Whether `member` is in `group`.
    pub fn is_member(&self, member: &str, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|m| m.contains_key(member))
    }

    /// Sorted members of a group.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

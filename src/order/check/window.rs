//! [`check`] over a live history with bounded memory (the soak runs for hours).
//!
//! The caller feeds what clients saw as it happens, with times in ms, and
//! calls [`Window::cut`] now and then. A cut judges the events kept so far
//! and the confirmations at least `settle_ms` old (by then every stream that
//! owes one has had time to deliver it), then forgets events older than
//! `keep_ms`. A stream whose older events were forgotten goes on from a
//! [`Resumed`]: the view it was in and what it had passed, so FIFO,
//! duplicates, view order and obligations hold across cuts. Consecutive cuts
//! overlap by `keep_ms`, so agreement and virtual synchrony are compared over
//! every stretch that short; a confirmation is judged once, in the first cut
//! that is `settle_ms` past it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;

use super::{Event, History, MsgId, Publisher, Resumed, Stream, Summary, Violation, check};

/// What every cut found, added up.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub cuts: u64,
    /// Messages received over all streams (each counted once).
    pub deliveries: u64,
    /// Distinct views seen (epoch, tag, id).
    pub views: u64,
    /// Confirmed messages judged.
    pub confirmed: u64,
    /// (stream, confirmed message) pairs checked for delivery.
    pub obligations: u64,
    /// Confirmed messages no stream delivered and none owed (see [`Summary`]).
    pub orphans: u64,
    /// Confirmed messages not judged: published before the oldest event kept
    /// (a confirmation slower than `keep_ms - settle_ms`).
    pub unjudged: u64,
    /// Some stream received a view saying messages may be missing.
    pub lost_views: bool,
    /// Every violation found; after one, the cut forgets all it kept, so
    /// none is reported twice.
    pub violations: Vec<Violation>,
}

struct Live {
    node: String,
    label: String,
    from_start: bool,
    closed: bool,
    resumed: Option<Resumed>,
    /// (arrival time, event), oldest first.
    events: VecDeque<(u64, Event)>,
}

#[derive(Default)]
struct LivePublisher {
    label: String,
    top: u64,
    last_t: u64,
    /// Confirmed, not yet judged: (seq, published at, confirmed at).
    confirmed: VecDeque<(u64, u64, u64)>,
}

pub struct Window {
    settle_ms: u64,
    keep_ms: u64,
    /// Events before this time are forgotten.
    kept_since: u64,
    streams: BTreeMap<u64, Live>,
    publishers: BTreeMap<u64, LivePublisher>,
    views: BTreeSet<(u64, u64, u64)>,
    published_any: bool,
    totals: Totals,
}

impl Window {
    /// `keep_ms` is raised to twice `settle_ms` if below: a confirmation
    /// judged `settle_ms` after it must still find its publish's deliveries.
    pub fn new(settle_ms: u64, keep_ms: u64) -> Window {
        Window {
            settle_ms,
            keep_ms: keep_ms.max(2 * settle_ms),
            kept_since: 0,
            streams: BTreeMap::new(),
            publishers: BTreeMap::new(),
            views: BTreeSet::new(),
            published_any: false,
            totals: Totals::default(),
        }
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Streams kept (open ones and closed ones not yet forgotten).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// A subscriber connection to `node`.
    pub fn open(&mut self, stream: u64, node: &str, label: String) {
        self.streams.insert(
            stream,
            Live {
                node: node.to_string(),
                label,
                from_start: false,
                closed: false,
                resumed: None,
                events: VecDeque::new(),
            },
        );
    }

    /// `stream`'s subscriptions are in place (a PONG answered them): it
    /// owes everything confirmed if nothing had been published yet.
    pub fn ready(&mut self, stream: u64) {
        let nothing_yet = !self.published_any;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.from_start = nothing_yet && s.resumed.is_none();
        }
    }

    /// What `stream` received at `t`; an unknown stream's events are ignored.
    pub fn event(&mut self, stream: u64, t: u64, event: Event) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        match &event {
            Event::Msg(_) => self.totals.deliveries += 1,
            Event::View(v) => {
                self.views.insert((v.epoch, v.epoch_tag, v.view));
                self.totals.views = self.views.len() as u64;
                self.totals.lost_views |= v.lost;
            }
        }
        s.events.push_back((t, event));
    }

    /// The connection ended: it owes nothing from here on.
    pub fn close(&mut self, stream: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.closed = true;
        }
    }

    /// `publisher` is about to send seqs up to `seq` (seqs count from 1
    /// without gaps).
    pub fn published(&mut self, publisher: u64, label: &str, seq: u64, t: u64) {
        self.published_any = true;
        let p = self.publishers.entry(publisher).or_default();
        if p.label.is_empty() {
            p.label = label.to_string();
        }
        p.top = p.top.max(seq);
        p.last_t = p.last_t.max(t);
    }

    /// A PONG at `t` confirmed `seqs`, the first of which was published at `t_pub`.
    pub fn confirmed(&mut self, publisher: u64, seqs: RangeInclusive<u64>, t_pub: u64, t: u64) {
        let p = self.publishers.entry(publisher).or_default();
        p.confirmed.extend(seqs.map(|q| (q, t_pub, t)));
        p.last_t = p.last_t.max(t);
    }

    /// Judges what is kept at `now` (see the module doc), then forgets what
    /// is older than `keep_ms`, or everything after a violation.
    pub fn cut(&mut self, now: u64) -> Result<Summary, Violation> {
        self.totals.cuts += 1;
        let due = now.saturating_sub(self.settle_ms);
        let mut judged: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (&id, p) in &mut self.publishers {
            while let Some(&(seq, t_pub, t)) = p.confirmed.front() {
                if t > due {
                    break;
                }
                p.confirmed.pop_front();
                if t_pub < self.kept_since {
                    self.totals.unjudged += 1;
                } else {
                    judged.entry(id).or_default().insert(seq);
                }
            }
        }
        self.totals.confirmed += judged.values().map(|s| s.len() as u64).sum::<u64>();
        let verdict = check(&self.history(&judged));
        let forget_before = match &verdict {
            Ok(sum) => {
                self.totals.obligations += sum.obligations as u64;
                self.totals.orphans += sum.orphans.len() as u64;
                now.saturating_sub(self.keep_ms)
            }
            Err(v) => {
                self.totals.violations.push(v.clone());
                now
            }
        };
        self.forget(forget_before);
        verdict
    }

    /// What is kept, as a history, with `judged` as the confirmed seqs.
    fn history(&self, judged: &BTreeMap<u64, BTreeSet<u64>>) -> History {
        // Each publisher's seqs from the lowest one anything kept names.
        let mut low: BTreeMap<u64, u64> = BTreeMap::new();
        let mut note = |m: MsgId| {
            let l = low.entry(m.publisher).or_insert(m.seq);
            *l = (*l).min(m.seq);
        };
        for s in self.streams.values() {
            for (_, e) in &s.events {
                if let Event::Msg(m) = e {
                    note(*m);
                }
            }
        }
        for (&publisher, seqs) in judged {
            seqs.iter().for_each(|&seq| note(MsgId { publisher, seq }));
        }
        let streams = self
            .streams
            .values()
            .map(|s| Stream {
                node: s.node.clone(),
                incarnation: 0,
                label: s.label.clone(),
                from_start: s.from_start,
                complete: !s.closed,
                resumed: s.resumed.clone(),
                events: s.events.iter().map(|(_, e)| e.clone()).collect(),
            })
            .collect();
        let publishers = self
            .publishers
            .iter()
            .map(|(&id, p)| {
                let from = low.get(&id).copied().unwrap_or(p.top + 1);
                Publisher {
                    id,
                    label: p.label.clone(),
                    published: (from..=p.top).collect(),
                    confirmed: judged.get(&id).cloned().unwrap_or_default(),
                    refused: BTreeSet::new(),
                }
            })
            .collect();
        History {
            streams,
            publishers,
        }
    }

    fn forget(&mut self, before: u64) {
        self.kept_since = self.kept_since.max(before);
        for s in self.streams.values_mut() {
            while s.events.front().is_some_and(|(t, _)| *t < before) {
                let Some((_, e)) = s.events.pop_front() else {
                    break;
                };
                let r = s.resumed.get_or_insert_with(Resumed::default);
                match e {
                    Event::Msg(m) => {
                        let top = r.passed.entry(m.publisher).or_insert(0);
                        *top = (*top).max(m.seq);
                    }
                    Event::View(v) => r.view = Some(v),
                }
            }
        }
        self.streams
            .retain(|_, s| !s.closed || !s.events.is_empty());
        self.publishers
            .retain(|_, p| p.last_t >= before || !p.confirmed.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Property, View};
    use super::*;

    fn view(id: u64, members: &[&str]) -> Event {
        Event::View(View {
            view: id,
            epoch: 1,
            epoch_tag: 0,
            lost: false,
            members: members.iter().map(|m| m.to_string()).collect(),
            joined: Vec::new(),
            left: Vec::new(),
        })
    }

    fn msg(seq: u64) -> Event {
        Event::Msg(MsgId { publisher: 7, seq })
    }

    /// Two streams on a and b; publisher 7 sends one message every 10 ms
    /// from t = 0 to t = `until`, each confirmed 5 ms later; cuts every
    /// second. `skip`: seqs stream b never gets.
    fn run(until: u64, skip: impl Fn(u64) -> bool) -> Window {
        let mut w = Window::new(1_000, 3_000);
        w.open(1, "a", "a sub".into());
        w.open(2, "b", "b sub".into());
        w.ready(1);
        w.ready(2);
        w.event(1, 0, view(3, &["a", "b"]));
        w.event(2, 0, view(3, &["a", "b"]));
        for seq in 1..=until / 10 {
            let t = seq * 10;
            w.published(7, "p", seq, t);
            w.event(1, t + 1, msg(seq));
            if !skip(seq) {
                w.event(2, t + 2, msg(seq));
            }
            w.confirmed(7, seq..=seq, t, t + 5);
            if t.is_multiple_of(1_000) {
                let _ = w.cut(t);
            }
        }
        w
    }

    #[test]
    fn a_long_clean_history_passes_in_bounded_memory() {
        let w = run(60_000, |_| false);
        let t = w.totals();
        assert!(t.violations.is_empty(), "{:?}", t.violations);
        assert_eq!(t.deliveries, 2 * 6_000);
        // Everything confirmed at least a second before the last cut (t = 60 s).
        assert_eq!(t.confirmed, 5_899);
        assert_eq!(t.obligations, 2 * 5_899);
        assert_eq!((t.unjudged, t.orphans), (0, 0));
        // Kept: 3 s of events, not 60.
        let kept: usize = w.streams.values().map(|s| s.events.len()).sum();
        assert!(kept <= 2 * 301, "{kept} events kept");
    }

    #[test]
    fn a_stream_that_stops_delivering_long_after_the_view_began_is_found() {
        // b stays connected but gets nothing after seq 4000: a prefix, so
        // virtual synchrony holds; the confirmations say it owes them.
        let w = run(60_000, |seq| seq > 4_000);
        let v = &w.totals().violations;
        assert_eq!(v[0].property, Property::ConfirmedDelivery, "{}", v[0]);
        assert!(v[0].detail.contains("7:4001"), "{}", v[0]);
    }

    #[test]
    fn a_message_missed_mid_view_is_found() {
        let w = run(60_000, |seq| seq == 4_321);
        let v = &w.totals().violations;
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("7:4321"), "{}", v[0]);
    }

    #[test]
    fn a_duplicate_across_cuts_breaks_fifo() {
        let mut w = run(10_000, |_| false);
        w.event(2, 10_001, msg(5));
        w.cut(10_002).unwrap_err();
        assert_eq!(w.totals().violations[0].property, Property::Fifo);
    }

    #[test]
    fn streams_disagreeing_mid_view_after_a_cut_break_virtual_synchrony() {
        let mut w = run(10_000, |_| false);
        // b gets 1001 and 1002 the other way round: both resumed mid-view.
        for (seq, t) in [(1_001, 10_010), (1_002, 10_020)] {
            w.published(7, "p", seq, t);
            w.event(1, t, msg(seq));
        }
        let v = w.cut(10_030);
        assert!(v.is_ok(), "{v:?}");
        w.event(2, 10_040, msg(1_002));
        let v = w.cut(10_050).unwrap_err();
        // Agreement cannot see it (b has only one of the two): the segments
        // resumed mid-view must be compared from where b's begins.
        assert_eq!(v.property, Property::VirtualSynchrony, "{v}");
    }

    #[test]
    fn a_late_confirmation_is_counted_not_judged() {
        let mut w = Window::new(1_000, 2_000);
        w.open(1, "a", "a sub".into());
        w.published(7, "p", 1, 0);
        w.event(1, 1, msg(1));
        w.cut(5_000).unwrap();
        w.confirmed(7, 1..=1, 0, 5_001);
        w.cut(7_000).unwrap();
        assert_eq!(w.totals().unjudged, 1);
    }

    #[test]
    fn a_gap_with_no_view_anywhere_is_found() {
        // Both streams subscribed before anything was published and never
        // saw a view: their nodes were members throughout, so b owes 7:50,
        // which a delivered.
        let mut w = Window::new(1_000, 3_000);
        for (k, node) in [(1, "a"), (2, "b")] {
            w.open(k, node, format!("{node} sub"));
            w.ready(k);
        }
        for seq in 1..=100 {
            w.published(7, "p", seq, seq);
            w.event(1, seq, msg(seq));
            if seq != 50 {
                w.event(2, seq, msg(seq));
            }
        }
        w.confirmed(7, 1..=100, 1, 101);
        let v = w.cut(2_000).unwrap_err();
        assert_eq!(v.property, Property::ConfirmedDelivery, "{v}");
        assert!(v.detail.contains("7:50"), "{v}");
    }
}

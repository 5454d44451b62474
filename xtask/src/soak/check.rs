//! The soak's invariant checker over what clients saw (docs/ORDERING.md, "What a client sees").
//! Kept apart from the load so a shared checker (e.g. `ecclusterd::order::check`) can replace
//! it: the input is plain records ([`Record`]), each subscriber stream a sequence of
//! [`Event`]s, times in milliseconds since the soak started.
//!
//! Checked, incrementally and with bounded memory:
//! - **integrity**: no stream gets a message twice, or one its publisher never published;
//! - **FIFO**: each publisher session's seqs increase in every stream (gaps allowed: views);
//! - **agreement**: the messages and `$MSGC.VIEW` events two streams have in common come in the
//!   same relative order (checked pairwise, `settle_ms` behind real time, over a window of
//!   `horizon_ms`), and every stream that sees view `v` sees the same member list;
//! - **queue groups**: a message reaches at most one member of the queue group;
//! - **confirmed ⇒ delivered**: a message confirmed by its publisher's PONG reached every
//!   plain stream that was subscribed (and PONGed) before it was published and still open
//!   `settle_ms` after the confirmation, on a node with no disturbance (a fault the soak
//!   made, or a `$MSGC.VIEW` that removes or re-admits the stream's node: the node may have
//!   been outside the view, where virtual synchrony lets it miss messages) from 1 s before
//!   the publish to `settle_ms` after the confirmation. Unplanned disturbances (a view change
//!   of a node no fault touched) are counted, not failed.

use std::collections::{HashMap, HashSet, VecDeque};

/// A message's identity: publisher session (high 32 bits) and seq (low 32), seq from 1.
pub fn msg_id(session: u32, seq: u32) -> u64 {
    (u64::from(session) << 32) | u64::from(seq)
}

/// View ids share the id space of messages, marked by the top bit.
const VIEW_BIT: u64 = 1 << 63;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A data message (tag of its payload).
    Msg { session: u32, seq: u32 },
    /// A `$MSGC.VIEW` event: view id and members, and whether the stream's own node is in
    /// `joined` or `left`.
    View {
        id: u64,
        members: String,
        own_change: bool,
    },
}

/// What the load threads and the fault thread report; `t` in ms since the soak started.
#[derive(Clone, Debug)]
pub enum Record {
    /// A subscriber connection opened on `node`; `queue` for queue-group members.
    Open {
        stream: u64,
        node: usize,
        queue: bool,
    },
    /// Its subscriptions are in place (PONG after SUB).
    Ready {
        stream: u64,
        t: u64,
    },
    Event {
        stream: u64,
        t: u64,
        event: Event,
    },
    Closed {
        stream: u64,
        t: u64,
    },
    /// The publisher is about to write seqs up to `seq` of `session`.
    Published {
        session: u32,
        seq: u32,
    },
    /// The PONG after seqs `lo..=hi` of `session` came with no refusal; `t_pub` is when `lo`
    /// was published.
    Confirmed {
        session: u32,
        lo: u32,
        hi: u32,
        t_pub: u64,
        t: u64,
    },
    /// A fault on `node` began (`to` None) or its window is known (`to` Some).
    Fault {
        node: usize,
        from: u64,
        to: Option<u64>,
    },
}

struct Stream {
    node: usize,
    queue: bool,
    ready: Option<u64>,
    closed: Option<u64>,
    /// Position of `events[0]`.
    base: u64,
    /// (id, arrival time), oldest first, trimmed to the horizon.
    events: VecDeque<(u64, u64)>,
    /// id -> position, for the events kept.
    index: HashMap<u64, u64>,
    /// Last seq seen per publisher session.
    last_seq: HashMap<u32, u32>,
}

/// Pairwise agreement progress: how far A has been walked, and B's position of the last
/// common event found.
#[derive(Default, Clone, Copy)]
struct Pair {
    cursor: u64,
    last_b: Option<u64>,
}

pub struct Checker {
    settle_ms: u64,
    horizon_ms: u64,
    streams: HashMap<u64, Stream>,
    pairs: HashMap<(u64, u64), Pair>,
    published: HashMap<u32, u32>,
    confirmed: VecDeque<(u32, u32, u32, u64, u64)>,
    /// Per node: fault windows (open ones with `to` = None) and view-change marks.
    disturbed: HashMap<usize, Vec<(u64, Option<u64>)>>,
    view_members: HashMap<u64, String>,
    /// Queue-group deliveries kept for the horizon: id -> time, and the order to forget them.
    queue_seen: HashMap<u64, u64>,
    queue_order: VecDeque<(u64, u64)>,
    /// Violations so far (the first [`KEEP`] described), and other counts.
    pub violations: u64,
    pub described: Vec<String>,
    pub confirmed_checked: u64,
    pub confirmed_excused: u64,
    pub unplanned_view_changes: u64,
    /// The first few of those, described.
    pub unplanned: Vec<String>,
    pub views_seen: HashSet<u64>,
}

/// Violations described in full; later ones are only counted.
const KEEP: usize = 50;
/// Before a publish, how long a disturbance still excuses a missed message.
const BEFORE_MS: u64 = 1_000;
/// A view change of a stream's own node marks its node disturbed this long before it.
const VIEW_MARK_MS: u64 = 30_000;

impl Checker {
    pub fn new(settle_ms: u64, horizon_ms: u64) -> Checker {
        Checker {
            settle_ms,
            horizon_ms: horizon_ms.max(settle_ms * 3),
            streams: HashMap::new(),
            pairs: HashMap::new(),
            published: HashMap::new(),
            confirmed: VecDeque::new(),
            disturbed: HashMap::new(),
            view_members: HashMap::new(),
            queue_seen: HashMap::new(),
            queue_order: VecDeque::new(),
            violations: 0,
            described: Vec::new(),
            confirmed_checked: 0,
            confirmed_excused: 0,
            unplanned_view_changes: 0,
            unplanned: Vec::new(),
            views_seen: HashSet::new(),
        }
    }

    fn violation(&mut self, text: String) {
        self.violations += 1;
        if self.described.len() < KEEP {
            self.described.push(text);
        }
    }

    /// Streams currently tracked (open ones and closed ones not yet forgotten).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    pub fn record(&mut self, r: Record) {
        match r {
            Record::Open {
                stream,
                node,
                queue,
            } => {
                self.streams.insert(
                    stream,
                    Stream {
                        node,
                        queue,
                        ready: None,
                        closed: None,
                        base: 0,
                        events: VecDeque::new(),
                        index: HashMap::new(),
                        last_seq: HashMap::new(),
                    },
                );
            }
            Record::Ready { stream, t } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.ready = Some(t);
                }
            }
            Record::Closed { stream, t } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.closed = Some(t);
                }
            }
            Record::Published { session, seq } => {
                let e = self.published.entry(session).or_insert(0);
                *e = (*e).max(seq);
            }
            Record::Confirmed {
                session,
                lo,
                hi,
                t_pub,
                t,
            } => self.confirmed.push_back((session, lo, hi, t_pub, t)),
            Record::Fault { node, from, to } => {
                let w = self.disturbed.entry(node).or_default();
                match w.iter_mut().find(|(f, end)| *f == from && end.is_none()) {
                    Some(open) => open.1 = to,
                    None => w.push((from, to)),
                }
            }
            Record::Event { stream, t, event } => self.event(stream, t, event),
        }
    }

    fn event(&mut self, stream: u64, t: u64, event: Event) {
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        let node = s.node;
        let queue = s.queue;
        let id = match &event {
            Event::Msg { session, seq } => msg_id(*session, *seq),
            Event::View { id, .. } => VIEW_BIT | id,
        };
        let mut bad = Vec::new();
        match &event {
            Event::Msg { session, seq } => {
                if s.index.contains_key(&id) {
                    bad.push(format!(
                        "integrity: stream {stream} (node{}) got {session}:{seq} twice",
                        node + 1
                    ));
                } else if let Some(&last) = s.last_seq.get(session)
                    && *seq <= last
                {
                    bad.push(format!(
                        "FIFO: stream {stream} (node{}) got {session}:{seq} after {session}:{last}",
                        node + 1
                    ));
                }
                if self.published.get(session).is_none_or(|&p| *seq > p) {
                    bad.push(format!(
                        "integrity: stream {stream} (node{}) got {session}:{seq}, never published",
                        node + 1
                    ));
                }
                if queue {
                    if let std::collections::hash_map::Entry::Vacant(v) = self.queue_seen.entry(id)
                    {
                        v.insert(t);
                        self.queue_order.push_back((id, t));
                    } else {
                        bad.push(format!(
                            "queue group: {session}:{seq} delivered to more than one member (again on node{})",
                            node + 1
                        ));
                    }
                }
            }
            Event::View {
                id: v,
                members,
                own_change,
            } => {
                self.views_seen.insert(*v);
                match self.view_members.get(v) {
                    Some(m) if m != members => bad.push(format!(
                        "agreement: view {v} has members {m} in one stream, {members} in stream {stream}"
                    )),
                    Some(_) => {}
                    None => {
                        self.view_members.insert(*v, members.clone());
                    }
                }
                if *own_change {
                    let planned = self.disturbed.get(&node).is_some_and(|w| {
                        w.iter().any(|&(from, to)| {
                            from <= t + VIEW_MARK_MS && to.is_none_or(|to| t <= to + VIEW_MARK_MS)
                        })
                    });
                    if !planned {
                        self.unplanned_view_changes += 1;
                        if self.unplanned.len() < KEEP {
                            self.unplanned.push(format!(
                                "{:.1} s: stream {stream} (node{}) saw view {v} [{members}] change its own node",
                                t as f64 / 1000.0,
                                node + 1
                            ));
                        }
                    }
                    self.disturbed
                        .entry(node)
                        .or_default()
                        .push((t.saturating_sub(VIEW_MARK_MS), Some(t + 2_000)));
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Event::Msg { session, seq } = event {
            let last = s.last_seq.entry(session).or_insert(0);
            *last = (*last).max(seq);
        }
        let pos = s.base + s.events.len() as u64;
        s.events.push_back((id, t));
        s.index.entry(id).or_insert(pos);
    }

    /// Runs the checks that are due at `now` and forgets what is older than the horizon.
    pub fn advance(&mut self, now: u64) {
        let settled = now.saturating_sub(self.settle_ms);
        self.check_agreement(settled);
        self.check_confirmed(settled);
        self.forget(now);
    }

    fn check_agreement(&mut self, settled: u64) {
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        let mut bad = Vec::new();
        for &a in &ids {
            for &b in &ids {
                if a >= b {
                    continue;
                }
                let (sa, sb) = (&self.streams[&a], &self.streams[&b]);
                let p = self.pairs.entry((a, b)).or_default();
                let mut i = p.cursor.max(sa.base);
                while let Some(&(id, t)) = sa.events.get((i - sa.base) as usize) {
                    if t > settled {
                        break;
                    }
                    if let Some(&pb) = sb.index.get(&id) {
                        if let Some(last) = p.last_b
                            && pb <= last
                        {
                            bad.push(format!(
                                "agreement: streams {a} (node{}) and {b} (node{}) disagree on the order of {}",
                                sa.node + 1,
                                sb.node + 1,
                                describe(id)
                            ));
                        }
                        p.last_b = Some(pb);
                    }
                    i += 1;
                }
                p.cursor = i;
            }
        }
        for b in bad {
            self.violation(b);
        }
    }

    fn check_confirmed(&mut self, settled: u64) {
        while let Some(&(session, lo, hi, t_pub, t_conf)) = self.confirmed.front() {
            if t_conf > settled {
                break;
            }
            self.confirmed.pop_front();
            let mut bad = Vec::new();
            for (&sid, s) in &self.streams {
                if s.queue || s.ready.is_none_or(|r| r > t_pub) {
                    continue;
                }
                if s.closed.is_some_and(|c| c < t_conf + self.settle_ms) {
                    continue;
                }
                let disturbed = self.disturbed.get(&s.node).is_some_and(|w| {
                    w.iter().any(|&(from, to)| {
                        from <= t_conf + self.settle_ms
                            && to.is_none_or(|to| to + BEFORE_MS >= t_pub)
                    })
                });
                for seq in lo..=hi {
                    if disturbed {
                        self.confirmed_excused += 1;
                        continue;
                    }
                    self.confirmed_checked += 1;
                    if !s.index.contains_key(&msg_id(session, seq)) {
                        bad.push(format!(
                            "confirmed not delivered: {session}:{seq} (confirmed at {:.1} s) missing from stream {sid} (node{})",
                            t_conf as f64 / 1000.0,
                            s.node + 1
                        ));
                    }
                }
            }
            for b in bad {
                self.violation(b);
            }
        }
    }

    fn forget(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.horizon_ms);
        for s in self.streams.values_mut() {
            while let Some(&(id, t)) = s.events.front() {
                if t >= horizon {
                    break;
                }
                s.events.pop_front();
                if s.index.get(&id) == Some(&s.base) {
                    s.index.remove(&id);
                }
                s.base += 1;
            }
        }
        let gone: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| s.closed.is_some_and(|c| c < horizon) && s.events.is_empty())
            .map(|(&k, _)| k)
            .collect();
        for g in &gone {
            self.streams.remove(g);
        }
        self.pairs
            .retain(|(a, b), _| !gone.contains(a) && !gone.contains(b));
        while let Some(&(id, t)) = self.queue_order.front() {
            if t >= horizon {
                break;
            }
            self.queue_order.pop_front();
            self.queue_seen.remove(&id);
        }
        for w in self.disturbed.values_mut() {
            w.retain(|&(_, to)| to.is_none_or(|to| to >= horizon));
        }
    }
}

fn describe(id: u64) -> String {
    if id & VIEW_BIT != 0 {
        format!("view {}", id & !VIEW_BIT)
    } else {
        format!("{}:{}", id >> 32, id & 0xffff_ffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(stream: u64, t: u64, session: u32, seq: u32) -> Record {
        Record::Event {
            stream,
            t,
            event: Event::Msg { session, seq },
        }
    }

    /// Two plain streams on nodes 0 and 1, ready at 0; session 1 published up to 10.
    fn two_streams() -> Checker {
        let mut c = Checker::new(1_000, 10_000);
        for (stream, node) in [(1, 0), (2, 1)] {
            c.record(Record::Open {
                stream,
                node,
                queue: false,
            });
            c.record(Record::Ready { stream, t: 0 });
        }
        c.record(Record::Published {
            session: 1,
            seq: 10,
        });
        c.record(Record::Published {
            session: 2,
            seq: 10,
        });
        c
    }

    #[test]
    fn a_good_history_passes() {
        let mut c = two_streams();
        for (i, (s, q)) in [(1, 1), (2, 1), (1, 2), (2, 2)].into_iter().enumerate() {
            c.record(msg(1, 10 + i as u64, s, q));
            c.record(msg(2, 20 + i as u64, s, q));
        }
        // A gap (stream 2 misses 2:2) is allowed by itself.
        c.record(msg(1, 30, 2, 3));
        c.record(Record::Confirmed {
            session: 1,
            lo: 1,
            hi: 2,
            t_pub: 5,
            t: 50,
        });
        c.advance(5_000);
        assert_eq!(c.violations, 0, "{:?}", c.described);
        assert_eq!(c.confirmed_checked, 4);
    }

    #[test]
    fn duplicates_and_unpublished_fail() {
        let mut c = two_streams();
        c.record(msg(1, 1, 1, 1));
        c.record(msg(1, 2, 1, 1));
        c.record(msg(2, 3, 1, 11));
        c.record(msg(2, 4, 3, 1));
        assert_eq!(c.violations, 3, "{:?}", c.described);
        assert!(c.described[0].contains("twice"));
        assert!(c.described[1].contains("never published"));
    }

    #[test]
    fn fifo_break_fails() {
        let mut c = two_streams();
        c.record(msg(1, 1, 1, 3));
        c.record(msg(1, 2, 1, 2));
        assert_eq!(c.violations, 1);
        assert!(c.described[0].starts_with("FIFO"));
    }

    #[test]
    fn disagreeing_orders_fail_even_across_checks() {
        let mut c = two_streams();
        c.record(msg(1, 10, 1, 1));
        c.record(msg(2, 10, 2, 1));
        c.record(msg(1, 1_500, 2, 1));
        c.record(msg(2, 1_500, 1, 1));
        // The first check sees only stream 1's first message as settled.
        c.advance(2_000);
        assert_eq!(c.violations, 0);
        c.advance(5_000);
        assert_eq!(c.violations, 1, "{:?}", c.described);
        assert!(c.described[0].starts_with("agreement"));
    }

    #[test]
    fn views_must_agree_and_order_with_messages() {
        let mut c = two_streams();
        let view = |members: &str| Event::View {
            id: 4,
            members: members.into(),
            own_change: false,
        };
        c.record(Record::Event {
            stream: 1,
            t: 1,
            event: view("node1 node2"),
        });
        c.record(msg(1, 2, 1, 1));
        c.record(msg(2, 3, 1, 1));
        c.record(Record::Event {
            stream: 2,
            t: 4,
            event: view("node1 node3"),
        });
        c.advance(5_000);
        assert_eq!(c.violations, 2, "{:?}", c.described);
        assert!(c.described[0].contains("members"));
        assert!(c.described[1].starts_with("agreement: streams 1 (node1) and 2 (node2)"));
    }

    #[test]
    fn queue_group_delivers_at_most_once() {
        let mut c = two_streams();
        for (stream, node) in [(3, 0), (4, 1)] {
            c.record(Record::Open {
                stream,
                node,
                queue: true,
            });
        }
        c.record(msg(3, 1, 1, 1));
        c.record(msg(4, 2, 1, 2));
        c.record(msg(3, 3, 1, 3));
        assert_eq!(c.violations, 0, "{:?}", c.described);
        c.record(msg(4, 4, 1, 3));
        assert_eq!(c.violations, 1);
        assert!(c.described[0].starts_with("queue group"));
    }

    #[test]
    fn confirmed_must_be_delivered_unless_the_node_was_disturbed() {
        let mut c = two_streams();
        c.record(msg(1, 10, 1, 1));
        c.record(msg(2, 10, 1, 1));
        c.record(msg(1, 11, 1, 2));
        c.record(Record::Confirmed {
            session: 1,
            lo: 1,
            hi: 2,
            t_pub: 5,
            t: 20,
        });
        c.advance(5_000);
        assert_eq!(c.violations, 1, "{:?}", c.described);
        assert!(c.described[0].contains("1:2 (confirmed at 0.0 s) missing from stream 2"));

        // The same gap on a node with a fault around it is excused.
        let mut c = two_streams();
        c.record(Record::Fault {
            node: 1,
            from: 0,
            to: None,
        });
        c.record(Record::Fault {
            node: 1,
            from: 0,
            to: Some(30),
        });
        c.record(msg(1, 10, 1, 1));
        c.record(Record::Confirmed {
            session: 1,
            lo: 1,
            hi: 1,
            t_pub: 5,
            t: 20,
        });
        c.advance(5_000);
        assert_eq!(c.violations, 0, "{:?}", c.described);
        assert_eq!((c.confirmed_checked, c.confirmed_excused), (1, 1));
    }

    #[test]
    fn memory_is_forgotten_past_the_horizon() {
        let mut c = two_streams();
        c.record(Record::Published {
            session: 1,
            seq: 1000,
        });
        for seq in 1..=1000u32 {
            c.record(msg(1, u64::from(seq), 1, seq));
        }
        c.record(Record::Closed { stream: 2, t: 0 });
        c.advance(100_000);
        let s = &c.streams[&1];
        assert!(s.events.is_empty() && s.index.is_empty());
        assert!(!c.streams.contains_key(&2));
        c.record(msg(1, 100_001, 1, 1001));
        assert_eq!(c.violations, 1, "unpublished 1001 still caught");
    }
}

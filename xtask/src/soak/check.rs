//! What the soak's threads report, judged by the library's history checker
//! (`ecclusterd::order::check`, through its [`Window`], the checker the simulator and the
//! fault harness use: integrity, FIFO, agreement, views, virtual synchrony, confirmed
//! delivery; docs/ORDERING.md, "What a client sees"), plus the two things only the soak
//! knows: a queue group's message reaches at most one member, and which view changes no
//! fault explains (counted, not failed). Times are ms since the soak started.

use std::collections::{HashMap, VecDeque};

use ecclusterd::order::check::{self, MsgId, Totals, View, Window};

/// One thing a subscriber received.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A data message, by the tag at the start of its payload.
    Msg { session: u32, seq: u32 },
    /// A `$MSGC.VIEW` event.
    View(View),
}

/// What the load threads and the fault thread report.
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
    },
    Event {
        stream: u64,
        t: u64,
        event: Event,
    },
    Closed {
        stream: u64,
    },
    /// The publisher is about to write seqs up to `seq` of `session`.
    Published {
        session: u32,
        seq: u32,
        t: u64,
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

/// Violations described in full; later ones are only counted.
const KEEP: usize = 50;
/// A view change of a node this long before or after one of its faults is the fault's.
const FAULT_MARGIN_MS: u64 = 30_000;

pub struct Checker {
    window: Window,
    cut_every_ms: u64,
    last_cut: u64,
    horizon_ms: u64,
    /// Stream -> (node, queue-group member).
    streams: HashMap<u64, (usize, bool)>,
    /// Queue-group deliveries within the horizon: message -> time, and the order to forget.
    queue_seen: HashMap<MsgId, u64>,
    queue_order: VecDeque<(MsgId, u64)>,
    /// Per node: fault windows (open ones with `to` None).
    faults: HashMap<usize, Vec<(u64, Option<u64>)>>,
    pub violations: u64,
    pub described: Vec<String>,
    pub unplanned_view_changes: u64,
    /// The first few of those, described.
    pub unplanned: Vec<String>,
}

impl Checker {
    /// Confirmations are judged `settle_ms` after they came, over `horizon_ms` of events.
    pub fn new(settle_ms: u64, horizon_ms: u64) -> Checker {
        Checker {
            window: Window::new(settle_ms, horizon_ms),
            cut_every_ms: (settle_ms / 3).max(1),
            last_cut: 0,
            horizon_ms,
            streams: HashMap::new(),
            queue_seen: HashMap::new(),
            queue_order: VecDeque::new(),
            faults: HashMap::new(),
            violations: 0,
            described: Vec::new(),
            unplanned_view_changes: 0,
            unplanned: Vec::new(),
        }
    }

    pub fn totals(&self) -> &Totals {
        self.window.totals()
    }

    /// Subscriber streams the window still keeps.
    pub fn streams(&self) -> usize {
        self.window.streams()
    }

    fn violation(&mut self, text: String) {
        self.violations += 1;
        if self.described.len() < KEEP {
            self.described.push(text);
        }
    }

    pub fn record(&mut self, r: Record) {
        match r {
            Record::Open {
                stream,
                node,
                queue,
            } => {
                self.streams.insert(stream, (node, queue));
                if !queue {
                    let name = node_name(node);
                    self.window
                        .open(stream, &name, format!("stream {stream} ({name})"));
                }
            }
            Record::Ready { stream } => self.window.ready(stream),
            Record::Closed { stream } => {
                self.window.close(stream);
                self.streams.remove(&stream);
            }
            Record::Published { session, seq, t } => {
                self.window.published(
                    u64::from(session),
                    &format!("session {session}"),
                    u64::from(seq),
                    t,
                );
            }
            Record::Confirmed {
                session,
                lo,
                hi,
                t_pub,
                t,
            } => self
                .window
                .confirmed(u64::from(session), u64::from(lo)..=u64::from(hi), t_pub, t),
            Record::Fault { node, from, to } => {
                let w = self.faults.entry(node).or_default();
                match w.iter_mut().find(|(f, end)| *f == from && end.is_none()) {
                    Some(open) => open.1 = to,
                    None => w.push((from, to)),
                }
            }
            Record::Event { stream, t, event } => self.event(stream, t, event),
        }
    }

    fn event(&mut self, stream: u64, t: u64, event: Event) {
        let Some(&(node, queue)) = self.streams.get(&stream) else {
            return;
        };
        match event {
            Event::Msg { session, seq } => {
                let m = MsgId {
                    publisher: u64::from(session),
                    seq: u64::from(seq),
                };
                if queue {
                    if self.queue_seen.insert(m, t).is_some() {
                        self.violation(format!(
                            "queue group: {m} delivered to more than one member (again on {})",
                            node_name(node)
                        ));
                    } else {
                        self.queue_order.push_back((m, t));
                    }
                } else {
                    self.window.event(stream, t, check::Event::Msg(m));
                }
            }
            Event::View(v) => {
                let own = node_name(node);
                let own_change = v.joined.iter().chain(&v.left).any(|n| *n == own);
                // Queue members see the same views; judge each change once, on plain streams.
                if own_change && !queue {
                    let planned = self.faults.get(&node).is_some_and(|w| {
                        w.iter().any(|&(from, to)| {
                            from <= t + FAULT_MARGIN_MS
                                && to.is_none_or(|to| t <= to + FAULT_MARGIN_MS)
                        })
                    });
                    if !planned {
                        self.unplanned_view_changes += 1;
                        if self.unplanned.len() < KEEP {
                            self.unplanned.push(format!(
                                "{:.1} s: stream {stream} ({own}) saw view {} [{}] change its own node",
                                t as f64 / 1000.0,
                                v.view,
                                v.members.join(" ")
                            ));
                        }
                    }
                }
                if !queue {
                    self.window.event(stream, t, check::Event::View(v));
                }
            }
        }
    }

    /// Judges what is due at `now` (a cut every third of the settle time) and forgets what
    /// is older than the horizon.
    pub fn advance(&mut self, now: u64) {
        if now < self.last_cut + self.cut_every_ms {
            return;
        }
        self.last_cut = now;
        if let Err(v) = self.window.cut(now) {
            self.violation(v.to_string());
        }
        let horizon = now.saturating_sub(self.horizon_ms);
        while self.queue_order.front().is_some_and(|&(_, t)| t < horizon) {
            if let Some((m, _)) = self.queue_order.pop_front() {
                self.queue_seen.remove(&m);
            }
        }
        for w in self.faults.values_mut() {
            w.retain(|&(_, to)| to.is_none_or(|to| to + FAULT_MARGIN_MS >= horizon));
        }
    }
}

/// The soak's node names, as the nodes' `$MSGC.VIEW` events list them.
pub fn node_name(node: usize) -> String {
    format!("node{}", node + 1)
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

    fn view(id: u64, members: &[&str], joined: &[&str]) -> Event {
        let names = |l: &[&str]| l.iter().map(|n| n.to_string()).collect();
        Event::View(View {
            view: id,
            epoch: 1,
            epoch_tag: 0,
            lost: false,
            members: names(members),
            joined: names(joined),
            left: Vec::new(),
        })
    }

    /// Plain streams 1 and 2 on nodes 0 and 1, queue streams 3 and 4, all ready before
    /// anything was published; session 1 published up to 10.
    fn cluster() -> Checker {
        let mut c = Checker::new(1_000, 10_000);
        for (stream, node, queue) in [(1, 0, false), (2, 1, false), (3, 0, true), (4, 1, true)] {
            c.record(Record::Open {
                stream,
                node,
                queue,
            });
            c.record(Record::Ready { stream });
        }
        c.record(Record::Published {
            session: 1,
            seq: 10,
            t: 1,
        });
        c
    }

    #[test]
    fn a_good_history_passes_through_the_library_checker() {
        let mut c = cluster();
        for seq in 1..=3 {
            c.record(msg(1, 10 + u64::from(seq), 1, seq));
            c.record(msg(2, 20 + u64::from(seq), 1, seq));
        }
        c.record(Record::Confirmed {
            session: 1,
            lo: 1,
            hi: 3,
            t_pub: 5,
            t: 50,
        });
        c.advance(5_000);
        assert_eq!(c.violations, 0, "{:?}", c.described);
        assert_eq!((c.totals().confirmed, c.totals().obligations), (3, 6));
    }

    #[test]
    fn a_confirmed_message_one_stream_missed_fails() {
        let mut c = cluster();
        c.record(msg(1, 10, 1, 1));
        c.record(msg(1, 11, 1, 2));
        c.record(msg(2, 12, 1, 2));
        c.record(Record::Confirmed {
            session: 1,
            lo: 1,
            hi: 2,
            t_pub: 5,
            t: 20,
        });
        c.advance(5_000);
        assert_eq!(c.violations, 1, "{:?}", c.described);
        assert!(
            c.described[0].contains("1:1") && c.described[0].contains("stream 2 (node2)"),
            "{:?}",
            c.described
        );
    }

    #[test]
    fn queue_group_delivers_at_most_once() {
        let mut c = cluster();
        c.record(msg(3, 1, 1, 1));
        c.record(msg(4, 2, 1, 2));
        c.record(msg(3, 3, 1, 3));
        assert_eq!(c.violations, 0, "{:?}", c.described);
        c.record(msg(4, 4, 1, 3));
        assert_eq!(c.violations, 1);
        assert!(c.described[0].starts_with("queue group"));
    }

    #[test]
    fn a_view_change_no_fault_explains_is_counted() {
        let mut c = cluster();
        c.record(Record::Fault {
            node: 0,
            from: 100,
            to: Some(200),
        });
        for stream in [1, 2] {
            c.record(Record::Event {
                stream,
                t: 300,
                event: view(5, &["node1", "node2"], &["node1"]),
            });
            c.record(Record::Event {
                stream,
                t: 100_000,
                event: view(6, &["node1", "node2"], &["node2"]),
            });
        }
        assert_eq!(c.unplanned_view_changes, 1, "{:?}", c.unplanned);
        assert!(c.unplanned[0].contains("(node2) saw view 6"));
    }
}

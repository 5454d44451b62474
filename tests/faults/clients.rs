//! The fault harness's clients: subscribers that record every message and
//! `$MSGC.VIEW` event they receive (a new stream per connection), and
//! publishers that publish sequenced batches and settle each with a PING:
//! a PONG with no refusal confirms the whole batch, a refusal of every
//! message refuses it (mixed batches are neither). Clients whose connection
//! breaks (their node killed) reconnect as new streams / new publishers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ecclusterd::nats::proto::{ServerOp, text};
use ecclusterd::order::check::{Event, MsgId, Publisher, Stream, View};

use crate::common::{Nats, Polled, QUIET};

/// Messages per batch before the PING that settles them.
pub const BATCH: u64 = 5;
/// Pause between batches of one publisher.
const PACE: Duration = Duration::from_millis(10);
/// Read timeout of clients: how often they look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
const CONNECT: Duration = Duration::from_millis(500);
/// Publisher id of the fence message (see [`fence`]).
pub const FENCE: u64 = 0;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every client thread shares with the scenario.
pub struct Shared {
    /// Publishers finish their batch and stop.
    pub stop_publishing: AtomicBool,
    /// Subscribers stop (after the fence).
    pub stop: AtomicBool,
    /// Set once the first publish is sent: later streams are not from the start.
    pub publishing: AtomicBool,
    /// Current run (incarnation) of each node, 0-based index by node - 1.
    pub runs: Vec<AtomicU64>,
    next_pub: AtomicU64,
    pub streams: Mutex<Vec<Stream>>,
    pub publishers: Mutex<Vec<Publisher>>,
    /// Per subscriber: connected now, and the fence seen on this connection.
    pub subs: Vec<SubState>,
    /// Longest wait for a PONG (ms), and batches neither confirmed nor refused.
    pub longest_pong_ms: AtomicU64,
    pub mixed_batches: AtomicU64,
    pub reconnects: AtomicU64,
    /// Batches given up on: no PONG within 20 s of the stop.
    pub stuck: AtomicU64,
}

#[derive(Default)]
pub struct SubState {
    pub connected: AtomicBool,
    pub fence: AtomicBool,
}

impl Shared {
    pub fn new(nodes: usize, subscribers: usize) -> Arc<Shared> {
        Arc::new(Shared {
            stop_publishing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            publishing: AtomicBool::new(false),
            runs: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            next_pub: AtomicU64::new(FENCE + 1),
            streams: Mutex::new(Vec::new()),
            publishers: Mutex::new(Vec::new()),
            subs: (0..subscribers).map(|_| SubState::default()).collect(),
            longest_pong_ms: AtomicU64::new(0),
            mixed_batches: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            stuck: AtomicU64::new(0),
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A subscriber on node `node` (1-based) for everything the publishers send
/// and for `$MSGC.VIEW`; runs until `stop`, reconnecting when cut off.
pub fn subscriber(sh: Arc<Shared>, slot: usize, node: usize, addr: SocketAddr) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let state = &sh.subs[slot];
        let mut first = true;
        while !sh.stopped() {
            let Some(mut c) = subscribe(&sh, addr) else {
                std::thread::sleep(POLL);
                continue;
            };
            if !first {
                sh.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            let run = sh.runs[node - 1].load(Ordering::SeqCst);
            let mut s = Stream {
                node: format!("node{node}"),
                incarnation: run,
                label: format!("sub{slot}@node{node}#{run}"),
                from_start: !sh.publishing.load(Ordering::SeqCst),
                complete: false,
                resumed: None,
                events: Vec::new(),
            };
            state.fence.store(false, Ordering::SeqCst);
            state.connected.store(true, Ordering::SeqCst);
            loop {
                match c.poll_op() {
                    Polled::Op(ServerOp::Msg(d)) => {
                        if d.subject == "$MSGC.VIEW" {
                            let v: View = serde_json::from_slice(&d.payload)
                                .unwrap_or_else(|e| panic!("bad $MSGC.VIEW {d:?}: {e}"));
                            s.events.push(Event::View(v));
                        } else {
                            let m = parse_payload(&d.payload)
                                .unwrap_or_else(|| panic!("foreign message {d:?}"));
                            if m.publisher == FENCE {
                                state.fence.store(true, Ordering::SeqCst);
                            }
                            s.events.push(Event::Msg(m));
                        }
                    }
                    Polled::Op(ServerOp::Ping) => {
                        let _ = c.try_send(b"PONG\r\n");
                    }
                    Polled::Op(_) => {}
                    Polled::Idle => {
                        if sh.stopped() {
                            s.complete = true;
                            break;
                        }
                    }
                    Polled::Closed | Polled::Bad(_) => break,
                }
            }
            state.connected.store(false, Ordering::SeqCst);
            lock(&sh.streams).push(s);
        }
    })
}

/// Connects and subscribes; None if the node is not there (yet).
fn subscribe(sh: &Shared, addr: SocketAddr) -> Option<Nats> {
    let mut c = Nats::try_connect(addr, QUIET, CONNECT, POLL).ok()?;
    if !c.try_send(b"SUB f.> 1\r\nSUB $MSGC.VIEW 2\r\nPING\r\n") {
        return None;
    }
    // Nothing can arrive before the PONG: both subscriptions are made then.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.poll_op() {
            Polled::Op(ServerOp::Pong) => return Some(c),
            Polled::Op(ServerOp::Ping) => {
                let _ = c.try_send(b"PONG\r\n");
            }
            Polled::Op(other) => panic!("before the first PONG: {other:?}"),
            Polled::Idle if Instant::now() < deadline && !sh.stopped() => {}
            Polled::Idle | Polled::Closed | Polled::Bad(_) => return None,
        }
    }
}

pub fn payload(m: MsgId) -> Vec<u8> {
    // Padded so that traffic is not all headers.
    format!("{}:{}:{}", m.publisher, m.seq, "x".repeat(48)).into_bytes()
}

pub fn parse_payload(p: &[u8]) -> Option<MsgId> {
    let s = std::str::from_utf8(p).ok()?;
    let mut it = s.split(':');
    Some(MsgId {
        publisher: it.next()?.parse().ok()?,
        seq: it.next()?.parse().ok()?,
    })
}

/// Outcome of one settled batch.
enum Settled {
    /// PONG; how many no-quorum refusals (`text::NO_QUORUM`) came before it.
    Pong {
        refused: u64,
    },
    Closed,
}

/// Sends `seqs` and a PING; waits for the PONG (as long as it takes, unless
/// `give_up` says so), counting refusals.
fn publish_batch(
    c: &mut Nats,
    id: u64,
    subject: &str,
    seqs: std::ops::RangeInclusive<u64>,
    give_up: &dyn Fn() -> bool,
) -> Settled {
    let mut out = Vec::new();
    for seq in seqs {
        let p = payload(MsgId { publisher: id, seq });
        out.extend_from_slice(format!("PUB {subject} {}\r\n", p.len()).as_bytes());
        out.extend_from_slice(&p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"PING\r\n");
    if !c.try_send(&out) {
        return Settled::Closed;
    }
    let mut refused = 0;
    loop {
        match c.poll_op() {
            Polled::Op(ServerOp::Pong) => return Settled::Pong { refused },
            Polled::Op(ServerOp::Ping) => {
                let _ = c.try_send(b"PONG\r\n");
            }
            Polled::Op(ServerOp::Err(e)) if e == text::NO_QUORUM => refused += 1,
            Polled::Op(ServerOp::Err(e)) => panic!("publisher {id}: unexpected -ERR '{e}'"),
            Polled::Op(_) => {}
            Polled::Idle => {
                if give_up() {
                    return Settled::Closed;
                }
            }
            Polled::Closed | Polled::Bad(_) => return Settled::Closed,
        }
    }
}

/// A publisher on node `node`: batches of [`BATCH`] on `f.<node>` until
/// `stop`, reconnecting (as a new publisher) when its connection breaks.
pub fn publisher(sh: Arc<Shared>, node: usize, addr: SocketAddr) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let subject = format!("f.{node}");
        let stopped = || sh.stop_publishing.load(Ordering::Relaxed);
        while !stopped() {
            let Ok(mut c) = Nats::try_connect(addr, QUIET, CONNECT, POLL) else {
                std::thread::sleep(POLL);
                continue;
            };
            let id = sh.next_pub.fetch_add(1, Ordering::SeqCst);
            let run = sh.runs[node - 1].load(Ordering::SeqCst);
            let mut p = Publisher {
                id,
                label: format!("pub{id}@node{node}#{run}"),
                ..Publisher::default()
            };
            let mut next = 1;
            // Once stopped, a batch still waiting gets 20 s to settle: a
            // PONG that never comes after the heal is a failure (`stuck`).
            let stop_at = Mutex::new(None::<Instant>);
            let give_up = || {
                if !stopped() {
                    return false;
                }
                let mut at = lock(&stop_at);
                let t = at.get_or_insert_with(Instant::now);
                if t.elapsed() > Duration::from_secs(20) {
                    sh.stuck.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                false
            };
            while !stopped() {
                let seqs = next..=next + BATCH - 1;
                next += BATCH;
                p.published.extend(seqs.clone());
                sh.publishing.store(true, Ordering::SeqCst);
                let t = Instant::now();
                match publish_batch(&mut c, id, &subject, seqs.clone(), &give_up) {
                    Settled::Pong { refused: 0 } => p.confirmed.extend(seqs),
                    Settled::Pong { refused } if refused == BATCH => p.refused.extend(seqs),
                    Settled::Pong { .. } => {
                        sh.mixed_batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Settled::Closed => break,
                }
                sh.longest_pong_ms
                    .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                std::thread::sleep(PACE);
            }
            lock(&sh.publishers).push(p);
        }
    })
}

/// Publishes fence messages (publisher [`FENCE`]) on `addr` until one is
/// confirmed: every message confirmed before is ordered before it, so a
/// subscriber that has the fence has everything it will ever get of them.
pub fn fence(sh: &Shared, addr: SocketAddr) -> Result<(), String> {
    let mut c = Nats::try_connect(addr, QUIET, CONNECT, POLL)?;
    let mut p = Publisher {
        id: FENCE,
        label: "fence".into(),
        ..Publisher::default()
    };
    let deadline = Instant::now() + crate::common::PATIENCE;
    let give_up = || Instant::now() > deadline;
    let mut seq = 0;
    let result = loop {
        seq += 1;
        p.published.insert(seq);
        match publish_batch(&mut c, FENCE, "f.fence", seq..=seq, &give_up) {
            Settled::Pong { refused: 0 } => {
                p.confirmed.insert(seq);
                break Ok(());
            }
            Settled::Pong { .. } => {
                p.refused.insert(seq);
                std::thread::sleep(POLL);
            }
            Settled::Closed => break Err("fence: connection lost or no PONG".to_string()),
        }
    };
    lock(&sh.publishers).push(p);
    result
}

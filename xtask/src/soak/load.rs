//! The soak's mixed load: one thread per client role, each reconnecting after any failure
//! (a killed node, a stale connection) until told to stop. Everything a subscriber sees and
//! every publisher's progress goes to the checker as [`Record`]s; counts go to [`Stats`].

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::check::{Event, Record};
use super::client::{Client, Op};
use ecclusterd::order::check::View;

/// Payload of an ordinary message; every [`LARGE_EVERY`]th is [`LARGE`] bytes.
pub const SMALL: usize = 128;
pub const LARGE: usize = 64 * 1024;
pub const LARGE_EVERY: u32 = 50;
/// A publisher asks for confirmation (PING) this often.
const CONFIRM_EVERY: Duration = Duration::from_millis(500);
/// A PING unanswered this long means the connection is stuck: reconnect.
const STUCK: Duration = Duration::from_secs(15);
/// Requests per second per requester, and how long one waits for its reply.
const REQUEST_EVERY: Duration = Duration::from_millis(50);
const REQUEST_WAIT: Duration = Duration::from_secs(2);
/// Group churn: join, wait, leave, wait.
const GROUP_HOLD: Duration = Duration::from_millis(300);
/// Connection churn: one short-lived connection this often.
const CHURN_EVERY: Duration = Duration::from_millis(100);
/// Pause before reconnecting after a failure.
const RETRY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Stats {
    pub published: AtomicU64,
    pub published_bytes: AtomicU64,
    pub confirmed: AtomicU64,
    pub refused: AtomicU64,
    pub delivered: AtomicU64,
    pub delivered_bytes: AtomicU64,
    pub requests_ok: AtomicU64,
    pub request_timeouts: AtomicU64,
    /// Replies that did not match their request: an invariant violation.
    pub request_mismatches: AtomicU64,
    pub group_ops: AtomicU64,
    pub group_events: AtomicU64,
    pub churn_ok: AtomicU64,
    pub churn_failed: AtomicU64,
    /// Connections of long-lived roles that were lost (and reopened).
    pub reconnects: AtomicU64,
    /// Failed attempts to connect (a node down or restarting).
    pub connect_failures: AtomicU64,
    /// `-ERR`s other than the no-quorum refusal, and protocol surprises.
    pub errors: AtomicU64,
}

pub struct Ctx {
    /// Client address of each node.
    pub addrs: Vec<String>,
    pub start: Instant,
    /// Everything stops; `stop_publishing` stops the publishers first (after a last
    /// confirmation).
    pub stop: AtomicBool,
    pub stop_publishing: AtomicBool,
    pub tx: SyncSender<Record>,
    pub stats: Stats,
    /// Messages per second per publisher.
    pub rate: u32,
    next_stream: AtomicU64,
    next_session: AtomicU32,
    /// The last few unexpected errors, for the report.
    pub last_errors: Mutex<VecDeque<String>>,
}

impl Ctx {
    pub fn new(addrs: Vec<String>, start: Instant, tx: SyncSender<Record>, rate: u32) -> Ctx {
        Ctx {
            addrs,
            start,
            stop: AtomicBool::new(false),
            stop_publishing: AtomicBool::new(false),
            tx,
            stats: Stats::default(),
            rate,
            next_stream: AtomicU64::new(1),
            next_session: AtomicU32::new(1),
            last_errors: Mutex::new(VecDeque::new()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    fn send(&self, r: Record) {
        let _ = self.tx.send(r);
    }

    fn error(&self, what: String) {
        self.stats.errors.fetch_add(1, Relaxed);
        let mut e = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() == 20 {
            e.pop_front();
        }
        e.push_back(format!("{:.1} s: {what}", self.now_ms() as f64 / 1000.0));
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// What the subscribers on every node listen to.
#[derive(Clone, Copy, Debug)]
pub enum SubKind {
    /// `soak.data.0`, `.1`, `.2` (literal subjects, so also msgc group joins).
    Plain,
    /// `soak.data.>`.
    Wildcard,
    /// `soak.data.*` in queue group `soakq`.
    Queue,
}

/// Starts every role: per node a publisher, the three subscribers, a responder, a
/// requester (to the next node's responder) and a group churner; one group-event watcher
/// and one connection churner. Returns the publishers' threads and the others'.
pub fn start(ctx: &Arc<Ctx>) -> (Vec<JoinHandle<()>>, Vec<JoinHandle<()>>) {
    let spawn = |name: String, f: Box<dyn FnOnce(&Ctx) + Send>| {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || f(&ctx))
            .expect("spawn a soak thread")
    };
    let mut hs = Vec::new();
    let mut pubs = Vec::new();
    for node in 0..ctx.addrs.len() {
        for kind in [SubKind::Plain, SubKind::Wildcard, SubKind::Queue] {
            hs.push(spawn(
                format!("sub-{node}-{kind:?}"),
                Box::new(move |c| subscriber(c, node, kind)),
            ));
        }
        hs.push(spawn(
            format!("resp-{node}"),
            Box::new(move |c| responder(c, node)),
        ));
        hs.push(spawn(
            format!("group-{node}"),
            Box::new(move |c| group_churn(c, node)),
        ));
    }
    // Subscribers first, so the first messages have somewhere to go.
    std::thread::sleep(Duration::from_millis(500));
    for node in 0..ctx.addrs.len() {
        pubs.push(spawn(
            format!("pub-{node}"),
            Box::new(move |c| publisher(c, node)),
        ));
        hs.push(spawn(
            format!("req-{node}"),
            Box::new(move |c| requester(c, node)),
        ));
    }
    hs.push(spawn("group-watch".into(), Box::new(|c| group_watch(c, 0))));
    hs.push(spawn("churn".into(), Box::new(churn)));
    (pubs, hs)
}

/// Runs `session` on fresh connections to `node` until stopped; a failed connection or
/// session counts as a reconnect (once stopping, not).
fn forever(ctx: &Ctx, node: usize, name: &str, session: impl FnMut(&mut Client) -> io::Result<()>) {
    until(ctx, &ctx.stop, node, name, session)
}

/// [`forever`] until `flag` is set.
fn until(
    ctx: &Ctx,
    flag: &AtomicBool,
    node: usize,
    name: &str,
    mut session: impl FnMut(&mut Client) -> io::Result<()>,
) {
    while !flag.load(Relaxed) {
        let r = match Client::connect(&ctx.addrs[node], name) {
            Ok(mut c) => session(&mut c),
            Err(_) => {
                add(&ctx.stats.connect_failures, 1);
                std::thread::sleep(RETRY);
                continue;
            }
        };
        if flag.load(Relaxed) {
            break;
        }
        if let Err(e) = r {
            add(&ctx.stats.reconnects, 1);
            log_reconnect(ctx, node, name, &e);
        }
        std::thread::sleep(RETRY);
    }
}

/// Connection failures are expected while a node is down; only other kinds are errors.
fn log_reconnect(ctx: &Ctx, node: usize, name: &str, e: &io::Error) {
    if let io::ErrorKind::Other = e.kind() {
        ctx.error(format!("{name} on node{}: {e}", node + 1));
    }
}

/// An `-ERR` that is not the no-quorum refusal ends the session as an error.
fn unexpected_err(text: &str) -> io::Error {
    io::Error::other(format!("-ERR '{text}'"))
}

fn publisher(ctx: &Ctx, node: usize) {
    let subject = format!("soak.data.{node}");
    until(
        ctx,
        &ctx.stop_publishing,
        node,
        &format!("soak-pub-{node}"),
        |c| {
            c.roundtrip(Duration::from_secs(5))?;
            let session = ctx.next_session.fetch_add(1, Relaxed);
            let mut seq: u32 = 0;
            // (seq at the PING, seq of the window's first message, when that was published, sent)
            let mut pings: VecDeque<(u32, u32, u64, Instant)> = VecDeque::new();
            let mut window_lo = 1u32;
            let mut window_t = ctx.now_ms();
            let mut refused_in_window = false;
            let started = Instant::now();
            let mut sent: u64 = 0;
            let mut last_ping = Instant::now();
            let mut small = vec![b'.'; SMALL];
            let mut large = vec![b'L'; LARGE];
            loop {
                // Stopping: publish nothing more, confirm what was sent, then end.
                let stopping = ctx.stop_publishing.load(Relaxed);
                if stopping && pings.is_empty() && seq < window_lo {
                    return Ok(());
                }
                let due = if stopping {
                    sent
                } else {
                    (started.elapsed().as_secs_f64() * f64::from(ctx.rate)) as u64
                };
                if due > sent {
                    let n = (due - sent).min(u64::from(ctx.rate));
                    let hi = seq + n as u32;
                    ctx.send(Record::Published {
                        session,
                        seq: hi,
                        t: ctx.now_ms(),
                    });
                    for _ in 0..n {
                        seq += 1;
                        let p = if seq.is_multiple_of(LARGE_EVERY) {
                            &mut large
                        } else {
                            &mut small
                        };
                        p[..4].copy_from_slice(&session.to_le_bytes());
                        p[4..8].copy_from_slice(&seq.to_le_bytes());
                        c.publish(&subject, None, p);
                        add(&ctx.stats.published_bytes, p.len() as u64);
                    }
                    add(&ctx.stats.published, n);
                    sent += n;
                }
                if (stopping || last_ping.elapsed() >= CONFIRM_EVERY) && seq >= window_lo {
                    c.ping();
                    pings.push_back((seq, window_lo, window_t, Instant::now()));
                    window_lo = seq + 1;
                    window_t = ctx.now_ms();
                    last_ping = Instant::now();
                }
                c.flush()?;
                if pings.front().is_some_and(|p| p.3.elapsed() > STUCK) {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "PING unanswered"));
                }
                let until = Instant::now() + Duration::from_millis(10);
                while let Some(op) = c.next(until)? {
                    match op {
                        Op::Pong => {
                            let Some((hi, lo, t_pub, _)) = pings.pop_front() else {
                                continue;
                            };
                            if !refused_in_window {
                                add(&ctx.stats.confirmed, u64::from(hi + 1 - lo));
                                ctx.send(Record::Confirmed {
                                    session,
                                    lo,
                                    hi,
                                    t_pub,
                                    t: ctx.now_ms(),
                                });
                            }
                            refused_in_window = false;
                        }
                        Op::Err(e) if e.contains("no quorum") => {
                            add(&ctx.stats.refused, 1);
                            refused_in_window = true;
                        }
                        Op::Err(e) => return Err(unexpected_err(&e)),
                        Op::Msg { .. } => {}
                    }
                }
            }
        },
    );
}

/// The tag at the start of a data payload: (session, seq).
pub fn tag(payload: &[u8]) -> Option<(u32, u32)> {
    let s = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    let q = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    Some((s, q))
}

fn subscriber(ctx: &Ctx, node: usize, kind: SubKind) {
    forever(ctx, node, &format!("soak-sub-{node}-{kind:?}"), |c| {
        let stream = ctx.next_stream.fetch_add(1, Relaxed);
        ctx.send(Record::Open {
            stream,
            node,
            queue: matches!(kind, SubKind::Queue),
        });
        let r = subscribe(ctx, c, stream, kind);
        ctx.send(Record::Closed { stream });
        r
    });
}

fn subscribe(ctx: &Ctx, c: &mut Client, stream: u64, kind: SubKind) -> io::Result<()> {
    match kind {
        SubKind::Plain => {
            for n in 0..ctx.addrs.len() {
                c.sub(&format!("soak.data.{n}"), None, n as u64 + 1);
            }
        }
        SubKind::Wildcard => c.sub("soak.data.>", None, 1),
        SubKind::Queue => c.sub("soak.data.*", Some("soakq"), 1),
    }
    c.sub("$MSGC.VIEW", None, 100);
    for op in c.roundtrip(Duration::from_secs(5))? {
        if let Op::Err(e) = op {
            return Err(unexpected_err(&e));
        }
    }
    ctx.send(Record::Ready { stream });
    while !ctx.stopped() {
        let Some(op) = c.next(Instant::now() + Duration::from_millis(200))? else {
            continue;
        };
        let t = ctx.now_ms();
        match op {
            Op::Msg {
                subject, payload, ..
            } if subject == "$MSGC.VIEW" => match serde_json::from_slice::<View>(&payload) {
                Ok(v) => ctx.send(Record::Event {
                    stream,
                    t,
                    event: Event::View(v),
                }),
                Err(e) => ctx.error(format!(
                    "unreadable $MSGC.VIEW event {:?}: {e}",
                    String::from_utf8_lossy(&payload)
                )),
            },
            Op::Msg { payload, .. } => {
                add(&ctx.stats.delivered, 1);
                add(&ctx.stats.delivered_bytes, payload.len() as u64);
                let expected = match tag(&payload) {
                    Some((_, seq)) if seq.is_multiple_of(LARGE_EVERY) => LARGE,
                    _ => SMALL,
                };
                match tag(&payload) {
                    Some((session, seq)) if payload.len() == expected => ctx.send(Record::Event {
                        stream,
                        t,
                        event: Event::Msg { session, seq },
                    }),
                    _ => ctx.error(format!(
                        "a data message of {} bytes with a bad tag or size",
                        payload.len()
                    )),
                }
            }
            Op::Pong => {}
            Op::Err(e) => return Err(unexpected_err(&e)),
        }
    }
    Ok(())
}

fn responder(ctx: &Ctx, node: usize) {
    forever(ctx, node, &format!("soak-resp-{node}"), |c| {
        c.sub(&format!("soak.req.{node}"), None, 1);
        c.roundtrip(Duration::from_secs(5))?;
        while !ctx.stopped() {
            match c.next(Instant::now() + Duration::from_millis(200))? {
                Some(Op::Msg {
                    reply: Some(r),
                    payload,
                    ..
                }) => {
                    c.publish(&r, None, &payload);
                    c.flush()?;
                }
                Some(Op::Err(e)) if e.contains("no quorum") => add(&ctx.stats.refused, 1),
                Some(Op::Err(e)) => return Err(unexpected_err(&e)),
                _ => {}
            }
        }
        Ok(())
    });
}

fn requester(ctx: &Ctx, node: usize) {
    let target = format!("soak.req.{}", (node + 1) % ctx.addrs.len());
    let inbox = format!("_INBOX.soak{node}");
    let mut n: u64 = 0;
    forever(ctx, node, &format!("soak-req-{node}"), |c| {
        c.sub(&format!("{inbox}.*"), None, 1);
        c.roundtrip(Duration::from_secs(5))?;
        while !ctx.stopped() {
            n += 1;
            let reply = format!("{inbox}.{n}");
            let body = format!("request {n} from node{}", node + 1);
            let sent = Instant::now();
            c.publish(&target, Some(&reply), body.as_bytes());
            c.flush()?;
            let deadline = sent + REQUEST_WAIT;
            let answered = loop {
                match c.next(deadline)? {
                    None => break false,
                    Some(Op::Msg {
                        subject, payload, ..
                    }) if subject == reply => {
                        if payload != body.as_bytes() {
                            add(&ctx.stats.request_mismatches, 1);
                            ctx.error(format!(
                                "reply to {reply} carried {:?}",
                                String::from_utf8_lossy(&payload)
                            ));
                        }
                        break true;
                    }
                    Some(Op::Err(e)) if e.contains("no quorum") => {
                        add(&ctx.stats.refused, 1);
                        break false;
                    }
                    Some(Op::Err(e)) => return Err(unexpected_err(&e)),
                    // A late reply to an earlier request, or a PONG.
                    Some(_) => {}
                }
            };
            if answered {
                add(&ctx.stats.requests_ok, 1);
            } else {
                add(&ctx.stats.request_timeouts, 1);
            }
            std::thread::sleep(REQUEST_EVERY.saturating_sub(sent.elapsed()));
        }
        Ok(())
    });
}

/// Joins and leaves group `soak.grp.<node>` over and over ($MSGC.GROUP events).
fn group_churn(ctx: &Ctx, node: usize) {
    let group = format!("soak.grp.{node}");
    forever(ctx, node, &format!("soak-group-{node}"), |c| {
        c.roundtrip(Duration::from_secs(5))?;
        let mut sid = 1;
        while !ctx.stopped() {
            sid += 1;
            c.sub(&group, None, sid);
            c.flush()?;
            std::thread::sleep(GROUP_HOLD);
            c.unsub(sid);
            c.flush()?;
            add(&ctx.stats.group_ops, 2);
            std::thread::sleep(GROUP_HOLD);
            // Keeps the connection honest (a dead node shows here).
            c.roundtrip(Duration::from_secs(10))?;
        }
        Ok(())
    });
}

/// Counts the `$MSGC.GROUP` events of the churned groups.
fn group_watch(ctx: &Ctx, node: usize) {
    forever(ctx, node, "soak-group-watch", |c| {
        for n in 0..ctx.addrs.len() {
            c.sub(&format!("$MSGC.GROUP.soak.grp.{n}"), None, n as u64 + 1);
        }
        c.roundtrip(Duration::from_secs(5))?;
        while !ctx.stopped() {
            match c.next(Instant::now() + Duration::from_millis(200))? {
                Some(Op::Msg { payload, .. }) => {
                    add(&ctx.stats.group_events, 1);
                    let text = String::from_utf8_lossy(&payload);
                    if !text.contains("\"event\":\"join\"") && !text.contains("\"event\":\"leave\"")
                    {
                        ctx.error(format!("odd group event {text:?}"));
                    }
                }
                Some(Op::Err(e)) => return Err(unexpected_err(&e)),
                _ => {}
            }
        }
        Ok(())
    });
}

/// Short-lived connections, round robin over the nodes: connect, join a group, publish one
/// message, PING/PONG, close.
fn churn(ctx: &Ctx) {
    let mut n: u64 = 0;
    while !ctx.stopped() {
        n += 1;
        let node = (n % ctx.addrs.len() as u64) as usize;
        let t = Instant::now();
        let r = Client::connect(&ctx.addrs[node], "soak-churn").and_then(|mut c| {
            c.sub(&format!("soak.churn.{}", n % 8), None, 1);
            c.publish("soak.churn", None, b"hello");
            c.roundtrip(Duration::from_secs(2))
        });
        match r {
            Ok(_) => add(&ctx.stats.churn_ok, 1),
            Err(_) => add(&ctx.stats.churn_failed, 1),
        }
        std::thread::sleep(CHURN_EVERY.saturating_sub(t.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let mut p = vec![0u8; 8];
        p[..4].copy_from_slice(&7u32.to_le_bytes());
        p[4..].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(tag(&p), Some((7, 9)));
        assert_eq!(tag(&p[..7]), None);
    }
}

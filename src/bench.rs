//! `ecclusterd bench`: a load generator for any NATS-speaking server, so the
//! same client measures ecclusterd and nats-server side by side. Each
//! connection runs on its own thread, as separate client processes would.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::nats::conn::{Connection, new_inbox};
use crate::net::tls::ClientTls;

/// Flush a publisher's buffer once it holds this much.
const PUB_BATCH: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub server: String,
    pub pubs: usize,
    pub subs: usize,
    pub msgs: u64,
    pub size: usize,
    pub secs: f64,
    /// Messages published per second, all publishers together.
    pub pub_rate: f64,
    /// Messages delivered per second, all subscribers together.
    pub sub_rate: f64,
    /// Payload megabytes per second delivered, all subscribers together.
    pub sub_mb: f64,
    /// Every subscriber received the messages in the same order (null when
    /// payloads are too small to carry the tag).
    pub same_order: Option<bool>,
    /// Every subscriber received each publisher's messages in the order sent,
    /// none missing (null as for `same_order`).
    pub fifo: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub server: String,
    pub msgs: u64,
    pub size: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

fn join<T>(h: std::thread::JoinHandle<io::Result<T>>) -> io::Result<T> {
    h.join()
        .map_err(|_| io::Error::other("a bench thread panicked"))?
}

/// Bytes at the start of each payload that name it: publisher index (u32) and
/// sequence (u64), little-endian. Smaller payloads go untagged.
pub const TAG: usize = 12;

/// With clients on several servers, how long the subscribers wait after their PONG
/// before publishing starts: servers that propagate interest between nodes
/// asynchronously (nats-server routes) would otherwise drop the first messages.
const SETTLE: Duration = Duration::from_millis(200);

/// A run with no message delivered for this long is reported as stalled.
const STALL: Duration = Duration::from_secs(10);

/// FNV-1a, 64-bit: what a subscriber folds the tags it receives into.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
    }
    h
}

/// What one subscriber saw: when it had everything, the digest of the tags in
/// arrival order, and whether every publisher's sequence came in order, gapless.
struct SubEnd {
    at: Instant,
    digest: u64,
    fifo: bool,
}

/// `pubs` publishers send `msgs` messages in all (split evenly) of `size`
/// bytes to one subject; `subs` subscribers each receive all of them.
/// Publisher i connects to `pub_servers[i % len]`, subscriber j to
/// `sub_servers[j % len]`. With `size` >= [`TAG`] each payload starts with
/// its (publisher, sequence) tag, and the result tells whether every
/// subscriber saw the same order and each publisher's messages in FIFO order.
/// `tls`: connect with TLS where a server requires it.
pub fn throughput(
    pub_servers: &[String],
    sub_servers: &[String],
    pubs: usize,
    subs: usize,
    msgs: u64,
    size: usize,
    tls: Option<&ClientTls>,
) -> io::Result<Throughput> {
    if pub_servers.is_empty() || sub_servers.is_empty() {
        return Err(io::Error::other("no server to connect to"));
    }
    let pubs = pubs.max(1);
    let tagged = size >= TAG;
    let subject = format!("bench.{}", &new_inbox()[7..]);
    let per_pub = msgs / pubs as u64;
    let total = per_pub * pubs as u64;
    let ready = Arc::new(Barrier::new(pubs + subs + 1));
    let progress: Vec<Arc<AtomicU64>> = (0..subs).map(|_| Arc::default()).collect();
    let settle = pub_servers
        .iter()
        .chain(sub_servers)
        .any(|s| *s != pub_servers[0]);
    let mut sub_threads = Vec::new();
    for (i, got_so_far) in progress.iter().enumerate() {
        let server = sub_servers[i % sub_servers.len()].clone();
        let (subject, ready, got_so_far) = (subject.clone(), ready.clone(), got_so_far.clone());
        let tls = tls.cloned();
        sub_threads.push(std::thread::spawn(move || {
            smol::block_on(async {
                let name = format!("bench-sub-{i}");
                let mut c = Connection::connect_default_tls(&server, &name, tls.as_ref()).await;
                if let Ok(c) = c.as_mut() {
                    c.subscribe(&subject, None);
                    if let Err(e) = c.ping().await {
                        ready.wait();
                        return Err(e);
                    }
                    if settle {
                        std::thread::sleep(SETTLE);
                    }
                }
                ready.wait();
                let mut c = c?;
                let mut digest = FNV_OFFSET;
                let mut next_seq = vec![0u64; pubs];
                let mut fifo = true;
                let mut got = 0u64;
                while got < total {
                    let d = c.next_msg().await?;
                    if tagged && let Some(tag) = d.payload.get(..TAG) {
                        digest = fnv(digest, tag);
                        let p = u32::from_le_bytes(tag[..4].try_into().unwrap_or_default());
                        let seq = u64::from_le_bytes(tag[4..].try_into().unwrap_or_default());
                        match next_seq.get_mut(p as usize) {
                            Some(n) if *n == seq => *n += 1,
                            _ => fifo = false,
                        }
                    }
                    got += 1;
                    got_so_far.store(got, Ordering::Relaxed);
                }
                Ok(SubEnd {
                    at: Instant::now(),
                    digest,
                    fifo,
                })
            })
        }));
    }
    let mut pub_threads = Vec::new();
    for i in 0..pubs {
        let server = pub_servers[i % pub_servers.len()].clone();
        let (subject, ready) = (subject.clone(), ready.clone());
        let tls = tls.cloned();
        pub_threads.push(std::thread::spawn(move || {
            smol::block_on(async {
                let name = format!("bench-pub-{i}");
                let c = Connection::connect_default_tls(&server, &name, tls.as_ref()).await;
                ready.wait();
                let mut c = c?;
                let mut payload = vec![b'x'; size];
                if tagged {
                    payload[..4].copy_from_slice(&(i as u32).to_le_bytes());
                }
                for seq in 0..per_pub {
                    if tagged {
                        payload[4..TAG].copy_from_slice(&seq.to_le_bytes());
                    }
                    c.publish(&subject, None, &payload);
                    if c.buffered() >= PUB_BATCH {
                        c.flush().await?;
                    }
                }
                c.ping().await?;
                Ok(Instant::now())
            })
        }));
    }
    ready.wait();
    let start = Instant::now();
    let (pub_ends, sub_ends) = collect(pub_threads, sub_threads, &progress, total)?;
    let pub_end = pub_ends.into_iter().fold(start, Instant::max);
    let end = sub_ends.iter().map(|s| s.at).fold(pub_end, Instant::max);
    let same = sub_ends.windows(2).all(|w| w[0].digest == w[1].digest);
    let fifo = sub_ends.iter().all(|s| s.fifo);
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    let pub_secs = pub_end.duration_since(start).as_secs_f64().max(1e-9);
    let delivered = total * subs as u64;
    Ok(Throughput {
        server: pub_servers.join(","),
        pubs,
        subs,
        msgs: total,
        size,
        secs,
        pub_rate: total as f64 / pub_secs,
        sub_rate: delivered as f64 / secs,
        sub_mb: (delivered as f64 * size as f64) / secs / 1e6,
        same_order: tagged.then_some(same),
        fifo: tagged.then_some(fifo),
    })
}

type Handle<T> = std::thread::JoinHandle<io::Result<T>>;

/// Joins the bench threads as they finish: their results, or the first error,
/// or a stall error once no subscriber has received anything for [`STALL`]
/// (the stuck threads are left behind; the process is about to exit).
fn collect<P, S>(
    pubs: Vec<Handle<P>>,
    subs: Vec<Handle<S>>,
    progress: &[Arc<AtomicU64>],
    total: u64,
) -> io::Result<(Vec<P>, Vec<S>)> {
    fn reap<T>(hs: &mut [Option<Handle<T>>], out: &mut Vec<T>) -> io::Result<()> {
        for h in hs.iter_mut() {
            if h.as_ref().is_some_and(|h| h.is_finished())
                && let Some(h) = h.take()
            {
                out.push(join(h)?);
            }
        }
        Ok(())
    }
    let (n_pubs, n_subs) = (pubs.len(), subs.len());
    let mut pubs: Vec<_> = pubs.into_iter().map(Some).collect();
    let mut subs: Vec<_> = subs.into_iter().map(Some).collect();
    let (mut pub_out, mut sub_out) = (Vec::new(), Vec::new());
    let counts = || -> Vec<u64> { progress.iter().map(|p| p.load(Ordering::Relaxed)).collect() };
    let mut last = counts();
    let mut moved = Instant::now();
    loop {
        reap(&mut pubs, &mut pub_out)?;
        reap(&mut subs, &mut sub_out)?;
        if pub_out.len() == n_pubs && sub_out.len() == n_subs {
            return Ok((pub_out, sub_out));
        }
        let now = counts();
        if now != last {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() >= STALL {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "stalled: subscribers have {last:?} of {total} messages each, none new for {STALL:?}; {} of {n_pubs} publishers done",
                    pub_out.len()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Request/reply round trips, one at a time, through a responder on its own
/// connection.
pub fn latency(server: &str, msgs: u64, size: usize) -> io::Result<Latency> {
    latency_between(server, server, msgs, size, None)
}

/// As [`latency`], with the requester on `server` and the responder on
/// `responder_server` (another node of a cluster).
pub fn latency_between(
    server: &str,
    responder_server: &str,
    msgs: u64,
    size: usize,
    tls: Option<&ClientTls>,
) -> io::Result<Latency> {
    let subject = format!("bench.lat.{}", &new_inbox()[7..]);
    let ready = Arc::new(Barrier::new(2));
    let responder = {
        let (server, subject, ready) =
            (responder_server.to_owned(), subject.clone(), ready.clone());
        let tls = tls.cloned();
        std::thread::spawn(move || {
            smol::block_on(async {
                let c =
                    Connection::connect_default_tls(&server, "bench-responder", tls.as_ref()).await;
                let mut c = match c {
                    Ok(mut c) => {
                        c.subscribe(&subject, None);
                        let r = c.ping().await;
                        ready.wait();
                        r?;
                        c
                    }
                    Err(e) => {
                        ready.wait();
                        return Err(e);
                    }
                };
                for _ in 0..msgs {
                    let d = c.next_msg().await?;
                    if let Some(r) = d.reply.as_deref() {
                        c.publish(r, None, &d.payload);
                        c.flush().await?;
                    }
                }
                Ok(())
            })
        })
    };
    ready.wait();
    let rtts = smol::block_on(async {
        let mut c = Connection::connect_default_tls(server, "bench-requester", tls).await?;
        let inbox = new_inbox();
        c.subscribe(&format!("{inbox}.*"), None);
        c.ping().await?;
        let payload = vec![b'x'; size];
        let mut rtts = Vec::with_capacity(msgs as usize);
        for i in 0..msgs {
            let reply = format!("{inbox}.{i}");
            let t = Instant::now();
            c.publish(&subject, Some(&reply), &payload);
            c.flush().await?;
            match c.next_msg_timeout(Duration::from_secs(10)).await? {
                Some(_) => rtts.push(t.elapsed()),
                None => return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in 10 s")),
            }
        }
        Ok::<_, io::Error>(rtts)
    })?;
    join(responder)?;
    let mut us: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if us.is_empty() {
            return 0.0;
        }
        let i = ((us.len() as f64 * p).ceil() as usize).clamp(1, us.len()) - 1;
        us[i]
    };
    Ok(Latency {
        server: server.to_owned(),
        msgs,
        size,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        max_us: us.last().copied().unwrap_or(0.0),
    })
}

/// Handshakes in flight at once while opening idle connections.
const IDLE_PARALLEL: usize = 256;

/// Opens up to `n` idle client connections to `server`, each through INFO,
/// CONNECT and a PING/PONG round trip. Stops at the first failed batch (out
/// of descriptors or ports, refused at max_connections) and returns the
/// connections made so far along with the first error.
pub async fn idle_connections(
    ex: &smol::LocalExecutor<'_>,
    server: &str,
    n: usize,
    tls: Option<&ClientTls>,
) -> (Vec<Connection>, Option<io::Error>) {
    let mut conns = Vec::with_capacity(n);
    let mut first_err = None;
    while conns.len() < n && first_err.is_none() {
        let batch: Vec<_> = (0..IDLE_PARALLEL.min(n - conns.len()))
            .map(|_| {
                let (server, tls) = (server.to_owned(), tls.cloned());
                ex.spawn(async move {
                    Connection::connect_default_tls(&server, "bench-idle", tls.as_ref()).await
                })
            })
            .collect();
        for task in batch {
            match task.await {
                Ok(c) => conns.push(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    (conns, first_err)
}

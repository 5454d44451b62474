//! `ecclusterd bench`: a load generator for any NATS-speaking server, so the
//! same client measures ecclusterd and nats-server side by side. Each
//! connection runs on its own thread, as separate client processes would.

use std::io;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::conn::{Connection, new_inbox};

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

/// `pubs` publishers send `msgs` messages in all (split evenly) of `size`
/// bytes to one subject; `subs` subscribers each receive all of them.
pub fn throughput(
    server: &str,
    pubs: usize,
    subs: usize,
    msgs: u64,
    size: usize,
) -> io::Result<Throughput> {
    let pubs = pubs.max(1);
    let subject = format!("bench.{}", &new_inbox()[7..]);
    let per_pub = msgs / pubs as u64;
    let total = per_pub * pubs as u64;
    let ready = Arc::new(Barrier::new(pubs + subs + 1));
    let mut sub_threads = Vec::new();
    for i in 0..subs {
        let (server, subject, ready) = (server.to_owned(), subject.clone(), ready.clone());
        sub_threads.push(std::thread::spawn(move || {
            smol::block_on(async {
                let mut c = Connection::connect_default(&server, &format!("bench-sub-{i}")).await;
                if let Ok(c) = c.as_mut() {
                    c.subscribe(&subject, None);
                    if let Err(e) = c.ping().await {
                        ready.wait();
                        return Err(e);
                    }
                }
                ready.wait();
                let mut c = c?;
                let mut got = 0u64;
                while got < total {
                    c.next_msg().await?;
                    got += 1;
                }
                Ok(Instant::now())
            })
        }));
    }
    let mut pub_threads = Vec::new();
    for i in 0..pubs {
        let (server, subject, ready) = (server.to_owned(), subject.clone(), ready.clone());
        pub_threads.push(std::thread::spawn(move || {
            smol::block_on(async {
                let c = Connection::connect_default(&server, &format!("bench-pub-{i}")).await;
                ready.wait();
                let mut c = c?;
                let payload = vec![b'x'; size];
                for _ in 0..per_pub {
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
    let mut pub_end = start;
    for h in pub_threads {
        pub_end = pub_end.max(join(h)?);
    }
    let mut end = pub_end;
    for h in sub_threads {
        end = end.max(join(h)?);
    }
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    let pub_secs = pub_end.duration_since(start).as_secs_f64().max(1e-9);
    let delivered = total * subs as u64;
    Ok(Throughput {
        server: server.to_owned(),
        pubs,
        subs,
        msgs: total,
        size,
        secs,
        pub_rate: total as f64 / pub_secs,
        sub_rate: delivered as f64 / secs,
        sub_mb: (delivered as f64 * size as f64) / secs / 1e6,
    })
}

/// Request/reply round trips, one at a time, through a responder on its own
/// connection.
pub fn latency(server: &str, msgs: u64, size: usize) -> io::Result<Latency> {
    let subject = format!("bench.lat.{}", &new_inbox()[7..]);
    let ready = Arc::new(Barrier::new(2));
    let responder = {
        let (server, subject, ready) = (server.to_owned(), subject.clone(), ready.clone());
        std::thread::spawn(move || {
            smol::block_on(async {
                let c = Connection::connect_default(&server, "bench-responder").await;
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
        let mut c = Connection::connect_default(server, "bench-requester").await?;
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
) -> (Vec<Connection>, Option<io::Error>) {
    let mut conns = Vec::with_capacity(n);
    let mut first_err = None;
    while conns.len() < n && first_err.is_none() {
        let batch: Vec<_> = (0..IDLE_PARALLEL.min(n - conns.len()))
            .map(|_| {
                let server = server.to_owned();
                ex.spawn(async move { Connection::connect_default(&server, "bench-idle").await })
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

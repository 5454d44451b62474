//! `cargo xtask soak --minutes N`: a 3-node cluster under mixed load with periodic faults;
//! throughput, RSS of every node and invariant violations over time.
//!
//! 1. `cargo build --release --bin ecclusterd`; three nodes on 127.0.0.1-3 (fixed ephemeral
//!    client ports, so a restarted node comes back on the same address), with
//!    `keepalive_interval = 0.2` so faults resolve in about a second.
//! 2. Load ([`load`]): per node a publisher (`--rate` msg/s of 128 B, every 50th 64 KiB,
//!    tagged with session and seq, a PING every 0.5 s to confirm), three subscribers (plain
//!    literal subjects, a wildcard, a queue group), a responder and a requester asking the
//!    next node's responder 20 times a second, a client joining and leaving a group
//!    ($MSGC.GROUP events); a watcher of those events; a short-lived connection every 100 ms.
//! 3. Faults every `--fault-every` seconds, rotating: kill -9 of node2 or node3 and restart;
//!    SIGSTOP for 8 keepalive intervals and SIGCONT of one node (all three in turn); kill -9
//!    of the leader and restart (node1, the witness, is never killed: if it leads, it is
//!    paused until another node leads, and that one is killed). After each fault the soak
//!    waits until every node is normal, delivering, in a view of all three.
//! 4. Every `--interval` seconds a row: delivered and published msg/s, confirmed msg/s,
//!    requests/s, RSS of each node, views seen, refusals, reconnects, errors, violations.
//! 5. At the end: per node incarnation RSS at birth, warm (`--warmup` after its start) and
//!    at the end. Memory is judged on incarnations that ran the whole soak (node1 always,
//!    others if no fault hit them): end RSS must not exceed warm RSS by more than 20 % + 8 MiB.
//!    Restarted incarnations are listed, not judged (a fresh process is still warming up).
//!    Writes `target/soak/soak.json`; exits non-zero on any violation, an RSS failure, or a
//!    cluster that did not recover from a fault.

mod check;
mod client;
mod load;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bench::server::{self, NODE_IPS, Server};
use crate::util::{self, Result, json_str};
use check::{Checker, Record};
use client::{Client, Op};
use load::Ctx;

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--rate R] [--interval S] [--fault-every S] [--warmup S]

  --minutes N       how long to run (default 3; fractions allowed)
  --rate R          messages per second per publisher, 3 publishers (default 200)
  --interval S      seconds between report rows (default 30)
  --fault-every S   seconds between faults (default 60, or a quarter of the run if shorter; 0 = none)
  --warmup S        seconds after a node starts before its RSS counts as warm (default 120, or a
                    third of the run if shorter)";

/// keepalive_interval of msgc_server on the nodes.
const KEEPALIVE: Duration = Duration::from_millis(200);
/// How long a paused node stays stopped, in keepalive intervals.
const PAUSE_INTERVALS: u32 = 8;
/// How long a killed node stays down before its restart.
const DOWN: Duration = Duration::from_secs(2);
/// A cluster not healthy again this long after a fault fails the soak.
const RECOVER_LIMIT: Duration = Duration::from_secs(60);
/// The checker's settle time (a node out of the view may take a while to show it) and
/// memory (see [`check`]).
const SETTLE_MS: u64 = 15_000;
const HORIZON_MS: u64 = 60_000;
/// RSS threshold: end may exceed warm by this fraction plus this many KiB.
const RSS_GROWTH: f64 = 0.20;
const RSS_SLACK_KIB: u64 = 8 * 1024;

#[derive(Debug, PartialEq)]
struct Options {
    secs: u64,
    rate: u32,
    interval: u64,
    fault_every: u64,
    warmup: u64,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut minutes = 3.0f64;
    let (mut rate, mut interval) = (200u32, 30u64);
    let (mut fault_every, mut warmup) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| -> Result<String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs {what}\n{USAGE}"))
        };
        let bad = |v: &str| format!("{a}: `{v}` is not a valid value\n{USAGE}");
        match a.as_str() {
            "--minutes" => {
                let v = value("a number of minutes")?;
                minutes = v.parse().map_err(|_| bad(&v))?;
                if !(minutes > 0.0 && minutes.is_finite()) {
                    return Err(bad(&v));
                }
            }
            "--rate" => {
                let v = value("messages per second")?;
                rate = v.parse().ok().filter(|&r| r > 0).ok_or_else(|| bad(&v))?;
            }
            "--interval" => {
                let v = value("seconds")?;
                interval = v.parse().ok().filter(|&r| r > 0).ok_or_else(|| bad(&v))?;
            }
            "--fault-every" => {
                let v = value("seconds")?;
                fault_every = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--warmup" => {
                let v = value("seconds")?;
                warmup = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let secs = (minutes * 60.0).round().max(1.0) as u64;
    Ok(Options {
        secs,
        rate,
        interval: interval.min(secs),
        fault_every: fault_every.unwrap_or((secs / 4).min(60)),
        warmup: warmup.unwrap_or((secs / 3).min(120)),
    })
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

fn rss_of(pid: u32) -> Option<u64> {
    vm_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The three nodes; a killed node's slot is None until it is restarted.
struct Nodes {
    bin: PathBuf,
    dir: PathBuf,
    confs: Vec<String>,
    addrs: Vec<String>,
    procs: Vec<Option<Server>>,
}

impl Nodes {
    fn start(bin: &Path, dir: &Path) -> Result<Nodes> {
        let (ports, peers) = server::cluster_ports()?;
        let ka = KEEPALIVE.as_secs_f64();
        let confs = NODE_IPS
            .iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (ip, port))| {
                format!(
                    "cluster {{ nodename = \"node{n}\" }}\n\
                     ECCluster_Listener {{ Listen \"{ip}:0\" {{ }} }}\n\
                     msgcserver_listener {{ Listen \"{ip}:{port}\" {{ }} }}\n\
                     msgc_server {{\n  peers = [\n{peers}  ]\n  keepalive_interval = {ka}\n  reconnect_interval = {ka}\n}}\n",
                    n = i + 1
                )
            })
            .collect();
        let addrs = NODE_IPS
            .iter()
            .zip(&ports)
            .map(|(ip, port)| format!("{ip}:{port}"))
            .collect();
        let mut nodes = Nodes {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            confs,
            addrs,
            procs: vec![None, None, None],
        };
        let mut logs = Vec::new();
        for i in 0..3 {
            let (s, rx) = Server::spawn_ecclusterd(
                &nodes.bin,
                &nodes.dir.join(format!("node{}", i + 1)),
                &nodes.confs[i],
            )?;
            nodes.procs[i] = Some(s);
            logs.push(rx);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (s, rx) in nodes.procs.iter_mut().zip(&logs) {
            if let Some(s) = s {
                s.wait_for_line(rx, "members node1 node2 node3 (", deadline)?;
            }
        }
        // The receivers are dropped here: nobody reads the log lines any more (bounded).
        Ok(nodes)
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(|s| s.pid())
    }

    fn signal(&self, i: usize, sig: &str) -> Result {
        let pid = self.pid(i).ok_or(format!("node{} is not running", i + 1))?;
        let ok = util::succeeds(util::cmd("kill").args([format!("-{sig}"), pid.to_string()]));
        if ok {
            Ok(())
        } else {
            Err(format!("kill -{sig} {pid} (node{}) failed", i + 1))
        }
    }

    /// kill -9, then reaps it (its Drop sees it gone).
    fn kill(&mut self, i: usize) -> Result {
        self.signal(i, "KILL")?;
        if let Some(mut s) = self.procs[i].take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while s.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) -> Result {
        let (mut s, rx) = Server::spawn_ecclusterd(
            &self.bin,
            &self.dir.join(format!("node{}", i + 1)),
            &self.confs[i],
        )?;
        s.wait_for_line(&rx, " ready ", Instant::now() + Duration::from_secs(20))?;
        self.procs[i] = Some(s);
        Ok(())
    }

    fn log_tails(&self, n: usize) -> String {
        self.procs
            .iter()
            .flatten()
            .map(|s| s.log_last(n))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What `$MSGC.STATUS` says of one node's order.
#[derive(Debug, Default, PartialEq)]
struct Health {
    normal: bool,
    delivering: bool,
    members: usize,
    leader: Option<String>,
}

impl Health {
    fn from_status(json: &str) -> Option<Health> {
        let order = &json[json.find("\"order\":")?..];
        let members = {
            let i = order.find("\"members\":[")? + "\"members\":[".len();
            let end = order[i..].find(']')? + i;
            order[i..end]
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .count()
        };
        let leader = order.find("\"leader\":\"").map(|i| {
            let rest = &order[i + "\"leader\":\"".len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_owned()
        });
        Some(Health {
            normal: order.contains("\"mode\":\"normal\""),
            delivering: order.contains("\"delivering\":true"),
            members,
            leader,
        })
    }

    fn good(&self) -> bool {
        self.normal && self.delivering && self.members == NODE_IPS.len()
    }
}

fn health(addr: &str) -> Option<Health> {
    let mut c = Client::connect(addr, "soak-status").ok()?;
    c.sub("_INBOX.soakstatus", None, 1);
    c.publish("$MSGC.STATUS", Some("_INBOX.soakstatus"), b"");
    c.flush().ok()?;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match c.next(deadline).ok()?? {
            Op::Msg { payload, .. } => {
                return Health::from_status(&String::from_utf8_lossy(&payload));
            }
            _ => continue,
        }
    }
}

/// Waits until every node is normal, delivering, in a view of all three.
fn wait_healthy(addrs: &[String], limit: Duration) -> Result<Duration> {
    let t = Instant::now();
    loop {
        if addrs.iter().all(|a| health(a).is_some_and(|h| h.good())) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            let states: Vec<String> = addrs
                .iter()
                .enumerate()
                .map(|(i, a)| format!("node{}: {:?}", i + 1, health(a)))
                .collect();
            return Err(format!(
                "cluster not healthy {limit:?} after the fault: {}",
                states.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One fault, for the report.
struct FaultLog {
    at: f64,
    what: String,
    recovered_secs: Option<f64>,
    error: Option<String>,
}

struct Faults {
    nodes: Arc<Mutex<Nodes>>,
    ctx: Arc<Ctx>,
    addrs: Vec<String>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, node: usize) -> u64 {
        let from = self.ctx.now_ms();
        let _ = self.ctx.tx.send(Record::Fault {
            node,
            from,
            to: None,
        });
        from
    }

    fn end(&self, node: usize, from: u64) {
        let _ = self.ctx.tx.send(Record::Fault {
            node,
            from,
            to: Some(self.ctx.now_ms()),
        });
    }

    fn kill_restart(&self, i: usize) -> Result<Duration> {
        let from = self.begin(i);
        let r = (|| {
            self.lock().kill(i)?;
            std::thread::sleep(DOWN);
            self.lock().restart(i)?;
            wait_healthy(&self.addrs, RECOVER_LIMIT)
        })();
        self.end(i, from);
        r
    }

    fn pause(&self, i: usize) -> Result<Duration> {
        let from = self.begin(i);
        let r = (|| {
            self.lock().signal(i, "STOP")?;
            std::thread::sleep(KEEPALIVE * PAUSE_INTERVALS);
            self.lock().signal(i, "CONT")?;
            wait_healthy(&self.addrs, RECOVER_LIMIT)
        })();
        self.end(i, from);
        r
    }

    /// Kills the leader (restarting it); node1 is paused away from leadership first.
    fn kill_leader(&self) -> Result<(usize, Duration)> {
        let leader = |addr: &str| {
            health(addr)
                .filter(|h| h.normal)
                .and_then(|h| h.leader)
                .and_then(|l| l.strip_prefix("node")?.parse::<usize>().ok())
                .filter(|&n| (1..=3).contains(&n))
                .map(|n| n - 1)
        };
        let mut now = leader(&self.addrs[1]).ok_or("no leader known")?;
        if now == 0 {
            let from = self.begin(0);
            self.lock().signal(0, "STOP")?;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(KEEPALIVE);
                if let Some(l) = leader(&self.addrs[1]).filter(|&l| l != 0) {
                    now = l;
                    break;
                }
            }
            self.lock().signal(0, "CONT")?;
            self.end(0, from);
            if now == 0 {
                return Err("node1 leads and no other node took over while it was stopped".into());
            }
            wait_healthy(&self.addrs, RECOVER_LIMIT)?;
        }
        let d = self.kill_restart(now)?;
        Ok((now, d))
    }

    /// Fault `k` of the rotation.
    fn run(&self, k: usize) -> (String, Result<Duration>) {
        match k % 3 {
            0 => {
                let i = 1 + (k / 3) % 2;
                (
                    format!("kill -9 node{} + restart", i + 1),
                    self.kill_restart(i),
                )
            }
            1 => {
                let i = (k / 3) % 3;
                (
                    format!(
                        "SIGSTOP node{} for {PAUSE_INTERVALS} keepalives, SIGCONT",
                        i + 1
                    ),
                    self.pause(i),
                )
            }
            _ => match self.kill_leader() {
                Ok((i, d)) => (format!("kill -9 leader node{} + restart", i + 1), Ok(d)),
                Err(e) => ("kill -9 leader + restart".into(), Err(e)),
            },
        }
    }
}

/// One RSS-tracked process: a node between two restarts.
struct Incarnation {
    node: usize,
    pid: u32,
    /// The node's first process (started with the cluster, before the load).
    initial: bool,
    /// Seconds since the soak started: first seen, and (if restarted) last seen.
    born: f64,
    ended: Option<f64>,
    first_kib: u64,
    warm: Option<(f64, u64)>,
    last: (f64, u64),
    max_kib: u64,
}

impl Incarnation {
    /// Lived from the soak's start to its end.
    fn whole_run(&self) -> bool {
        self.initial && self.ended.is_none()
    }

    fn limit_kib(warm: u64) -> u64 {
        warm + (warm as f64 * RSS_GROWTH) as u64 + RSS_SLACK_KIB
    }

    /// Some(pass) for judged incarnations.
    fn verdict(&self) -> Option<bool> {
        let (_, warm) = self.warm?;
        self.whole_run()
            .then(|| self.last.1 <= Incarnation::limit_kib(warm))
    }
}

struct Row {
    t: f64,
    delivered: f64,
    published: f64,
    confirmed: f64,
    requests: f64,
    request_timeouts: u64,
    rss: Vec<Option<u64>>,
    views: usize,
    refused: u64,
    reconnects: u64,
    errors: u64,
    violations: u64,
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn row_header() -> String {
    format!(
        "| {:>6} | {:>9} | {:>9} | {:>9} | {:>6} | {:>5} | {:>7} | {:>7} | {:>7} | {:>5} | {:>7} | {:>6} | {:>6} | {:>4} |",
        "t s",
        "deliv/s",
        "pub/s",
        "conf/s",
        "req/s",
        "req-",
        "n1 MiB",
        "n2 MiB",
        "n3 MiB",
        "views",
        "refused",
        "reconn",
        "errors",
        "viol"
    )
}

fn row_line(r: &Row) -> String {
    let rss = |i: usize| r.rss.get(i).copied().flatten().map_or("-".into(), mib);
    format!(
        "| {:>6.0} | {:>9.0} | {:>9.0} | {:>9.0} | {:>6.1} | {:>5} | {:>7} | {:>7} | {:>7} | {:>5} | {:>7} | {:>6} | {:>6} | {:>4} |",
        r.t,
        r.delivered,
        r.published,
        r.confirmed,
        r.requests,
        r.request_timeouts,
        rss(0),
        rss(1),
        rss(2),
        r.views,
        r.refused,
        r.reconnects,
        r.errors,
        r.violations
    )
}

/// Counter snapshot for interval deltas.
#[derive(Clone, Copy, Default)]
struct Counts([u64; 8]);

fn counts(ctx: &Ctx) -> Counts {
    let s = &ctx.stats;
    Counts([
        s.delivered.load(Relaxed),
        s.published.load(Relaxed),
        s.confirmed.load(Relaxed),
        s.requests_ok.load(Relaxed),
        s.request_timeouts.load(Relaxed),
        s.refused.load(Relaxed),
        s.reconnects.load(Relaxed),
        s.errors.load(Relaxed),
    ])
}

pub fn run(args: &[String]) -> Result {
    let opts = parse(args)?;
    util::run(util::cargo().args(["build", "--release", "--bin", "ecclusterd"]))?;
    let bin = util::target_dir().join("release").join("ecclusterd");
    let out_dir = util::target_dir().join("soak");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    if !server::cluster_ips_usable() {
        return Err("127.0.0.2 and 127.0.0.3 cannot be bound here: the soak needs them".into());
    }
    let nodes = Nodes::start(
        &bin,
        &out_dir.join(format!("cluster-{}", std::process::id())),
    )?;
    let addrs = nodes.addrs.clone();
    eprintln!("cluster ready on {}", addrs.join(", "));
    let nodes = Arc::new(Mutex::new(nodes));
    let lock = || nodes.lock().unwrap_or_else(|p| p.into_inner());

    let start = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Record>(1 << 16);
    let ctx = Arc::new(Ctx::new(addrs.clone(), start, tx, opts.rate));
    let mut checker = Checker::new(SETTLE_MS, HORIZON_MS);
    let (mut publishers, others) = load::start(&ctx);

    let end = start + Duration::from_secs(opts.secs);
    let fault_log: Arc<Mutex<Vec<FaultLog>>> = Arc::default();
    let fault_thread = (opts.fault_every > 0).then(|| {
        let faults = Faults {
            nodes: nodes.clone(),
            ctx: ctx.clone(),
            addrs: addrs.clone(),
        };
        let log = fault_log.clone();
        let every = Duration::from_secs(opts.fault_every);
        std::thread::spawn(move || {
            let mut k = 0;
            loop {
                let at = start + every * (k as u32 + 1);
                // No fault in the last 20 s: the run ends on a recovered cluster.
                if at + Duration::from_secs(20) > end {
                    break;
                }
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let t = start.elapsed().as_secs_f64();
                let (what, r) = faults.run(k);
                eprintln!(
                    "[{t:>6.1} s] fault: {what}: {}",
                    match &r {
                        Ok(d) => format!("recovered in {:.1} s", d.as_secs_f64()),
                        Err(e) => format!("FAILED: {e}"),
                    }
                );
                let failed = r.is_err();
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(FaultLog {
                        at: t,
                        what,
                        recovered_secs: r.as_ref().ok().map(|d| d.as_secs_f64()),
                        error: r.err(),
                    });
                if failed {
                    break;
                }
                k += 1;
            }
        })
    });

    println!(
        "soak: {} s, faults every {} s, rows every {} s, warm-up {} s\nload: {}\n",
        opts.secs,
        opts.fault_every,
        opts.interval,
        opts.warmup,
        load_text(opts.rate)
    );
    println!("{}", row_header());
    let mut incs: Vec<Incarnation> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut last_counts = Counts::default();
    let mut last_row = start;
    let mut views_before = 0;
    let sample = |incs: &mut Vec<Incarnation>, t: f64| -> Vec<Option<u64>> {
        let pids: Vec<Option<u32>> = (0..3).map(|i| lock().pid(i)).collect();
        let mut now = Vec::new();
        for (node, pid) in pids.into_iter().enumerate() {
            let kib = pid.and_then(rss_of);
            now.push(kib);
            let (Some(pid), Some(kib)) = (pid, kib) else {
                continue;
            };
            let cur = incs.iter_mut().rev().find(|x| x.node == node);
            match cur {
                Some(x) if x.pid == pid => {
                    x.last = (t, kib);
                    x.max_kib = x.max_kib.max(kib);
                    if x.warm.is_none() && t >= x.born + opts.warmup as f64 {
                        x.warm = Some((t, kib));
                    }
                }
                other => {
                    let initial = other.is_none();
                    if let Some(x) = other {
                        x.ended = Some(t);
                    }
                    incs.push(Incarnation {
                        node,
                        pid,
                        initial,
                        born: t,
                        ended: None,
                        first_kib: kib,
                        warm: None,
                        last: (t, kib),
                        max_kib: kib,
                    });
                }
            }
        }
        now
    };
    let drain = |checker: &mut Checker| {
        while let Ok(r) = rx.try_recv() {
            checker.record(r);
        }
    };
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_millis(1000).min(end.saturating_duration_since(Instant::now())),
        );
        drain(&mut checker);
        let t = start.elapsed().as_secs_f64();
        checker.advance(ctx.now_ms());
        let rss = sample(&mut incs, t);
        if last_row.elapsed() >= Duration::from_secs(opts.interval) || Instant::now() >= end {
            let secs = last_row.elapsed().as_secs_f64().max(1e-3);
            last_row = Instant::now();
            let c = counts(&ctx);
            let d = |i: usize| c.0[i] - last_counts.0[i];
            let row = Row {
                t,
                delivered: d(0) as f64 / secs,
                published: d(1) as f64 / secs,
                confirmed: d(2) as f64 / secs,
                requests: d(3) as f64 / secs,
                request_timeouts: d(4),
                rss,
                views: checker.totals().views as usize - views_before,
                refused: d(5),
                reconnects: d(6),
                errors: d(7),
                violations: checker.violations,
            };
            views_before = checker.totals().views as usize;
            last_counts = c;
            println!("{}", row_line(&row));
            rows.push(row);
        }
    }

    // Wind down: no new fault, a healthy cluster, publishers finish their last confirmation,
    // deliveries settle, then everything stops and the checker sees the rest.
    if let Some(h) = fault_thread {
        let _ = h.join();
    }
    let final_health = wait_healthy(&addrs, RECOVER_LIMIT);
    ctx.stop_publishing.store(true, Relaxed);
    for h in publishers.drain(..) {
        let _ = h.join();
    }
    std::thread::sleep(Duration::from_millis(SETTLE_MS + 1000));
    drain(&mut checker);
    let final_rss = sample(&mut incs, start.elapsed().as_secs_f64());
    ctx.stop.store(true, Relaxed);
    for h in others {
        let _ = h.join();
    }
    drain(&mut checker);
    checker.advance(ctx.now_ms() + SETTLE_MS + 1);
    let total_secs = start.elapsed().as_secs_f64();

    // Verdicts.
    let faults = std::mem::take(&mut *fault_log.lock().unwrap_or_else(|p| p.into_inner()));
    let mut failures = Vec::new();
    if checker.violations > 0 {
        failures.push(format!("{} invariant violation(s)", checker.violations));
    }
    let mismatches = ctx.stats.request_mismatches.load(Relaxed);
    if mismatches > 0 {
        failures.push(format!(
            "{mismatches} replies that did not match their request"
        ));
    }
    for f in &faults {
        if let Some(e) = &f.error {
            failures.push(format!("fault at {:.0} s ({}): {e}", f.at, f.what));
        }
    }
    if let Err(e) = &final_health {
        failures.push(format!("at the end: {e}"));
    }
    let stalled: Vec<String> = rows
        .iter()
        .filter(|r| r.delivered == 0.0)
        .map(|r| format!("{:.0} s", r.t))
        .collect();
    if !stalled.is_empty() {
        failures.push(format!(
            "nothing delivered in the interval(s) ending at {}",
            stalled.join(", ")
        ));
    }
    let judged: Vec<&Incarnation> = incs.iter().filter(|x| x.verdict().is_some()).collect();
    for x in &judged {
        if x.verdict() == Some(false) {
            let (_, warm) = x.warm.unwrap_or_default();
            failures.push(format!(
                "node{} (pid {}) RSS grew from {} MiB warm to {} MiB (limit {} MiB)",
                x.node + 1,
                x.pid,
                mib(warm),
                mib(x.last.1),
                mib(Incarnation::limit_kib(warm))
            ));
        }
    }
    if judged.is_empty() {
        failures.push(format!(
            "no node incarnation both ran the whole soak and was warm (warm-up {} s of {} s): RSS not judged",
            opts.warmup, opts.secs
        ));
    }

    let report = report_text(
        &opts, &incs, &faults, &checker, &ctx, &final_rss, total_secs, &failures,
    );
    println!("\n{report}");
    let json = report_json(
        &opts, &rows, &incs, &faults, &checker, &ctx, total_secs, &failures,
    );
    let path = out_dir.join("soak.json");
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    if !failures.is_empty() {
        eprintln!("last node log lines:\n{}", lock().log_tails(15));
        return Err(format!("soak FAILED: {}", failures.join("; ")));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report_text(
    opts: &Options,
    incs: &[Incarnation],
    faults: &[FaultLog],
    checker: &Checker,
    ctx: &Ctx,
    final_rss: &[Option<u64>],
    total_secs: f64,
    failures: &[String],
) -> String {
    let s = &ctx.stats;
    let l = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    let mut out = String::new();
    let _ = writeln!(out, "faults ({}):", faults.len());
    for f in faults {
        let _ = writeln!(
            out,
            "  {:>6.1} s  {:<46} {}",
            f.at,
            f.what,
            match (&f.recovered_secs, &f.error) {
                (Some(d), _) => format!("healthy again after {d:.1} s"),
                (_, Some(e)) => format!("FAILED: {e}"),
                _ => String::new(),
            }
        );
    }
    let _ = writeln!(
        out,
        "\nRSS per node incarnation (MiB). warm = first sample {} s after the process started; judged: \
         incarnations that ran the whole soak, end <= warm + {:.0}% + {} MiB. Restarted nodes start \
         afresh and are listed, not judged.",
        opts.warmup,
        RSS_GROWTH * 100.0,
        RSS_SLACK_KIB / 1024
    );
    let _ = writeln!(
        out,
        "| node  | pid      | lived s       | first  | warm (at s)    | end    | max    | growth warm->end | verdict |"
    );
    let _ = writeln!(
        out,
        "|-------|----------|---------------|--------|----------------|--------|--------|------------------|---------|"
    );
    for x in incs {
        let warm = x
            .warm
            .map_or("-".into(), |(t, k)| format!("{} ({t:.0})", mib(k)));
        let growth = x.warm.map_or("-".into(), |(_, w)| {
            let d = x.last.1 as i64 - w as i64;
            format!(
                "{:+.1} MiB {:+.1}%",
                d as f64 / 1024.0,
                d as f64 * 100.0 / w.max(1) as f64
            )
        });
        let verdict = match x.verdict() {
            Some(true) => "ok",
            Some(false) => "GREW",
            None if x.ended.is_some() => "killed",
            None if x.warm.is_none() => "not warm",
            None => "restarted",
        };
        let _ = writeln!(
            out,
            "| node{} | {:<8} | {:>5.0} - {:<5} | {:>6} | {:<14} | {:>6} | {:>6} | {:<16} | {:<7} |",
            x.node + 1,
            x.pid,
            x.born,
            x.ended.map_or("end".into(), |e| format!("{e:.0}")),
            mib(x.first_kib),
            warm,
            mib(x.last.1),
            mib(x.max_kib),
            growth,
            verdict
        );
    }
    let rss: Vec<String> = final_rss
        .iter()
        .enumerate()
        .map(|(i, r)| format!("node{} {}", i + 1, r.map_or("-".into(), mib)))
        .collect();
    let _ = writeln!(out, "RSS at the end (MiB): {}", rss.join(", "));
    let _ = writeln!(
        out,
        "\nload over {total_secs:.0} s: published {} ({:.1} MB), confirmed {}, refused {}, delivered {} ({:.1} MB); \
         requests ok {}, timed out {}, mismatched {}; group joins/leaves {}, group events seen {}; \
         short connections ok {}, failed {}; connections lost {}, failed connects {}; unexpected errors {}",
        l(&s.published),
        l(&s.published_bytes) as f64 / 1e6,
        l(&s.confirmed),
        l(&s.refused),
        l(&s.delivered),
        l(&s.delivered_bytes) as f64 / 1e6,
        l(&s.requests_ok),
        l(&s.request_timeouts),
        l(&s.request_mismatches),
        l(&s.group_ops),
        l(&s.group_events),
        l(&s.churn_ok),
        l(&s.churn_failed),
        l(&s.reconnects),
        l(&s.connect_failures),
        l(&s.errors),
    );
    for e in ctx
        .last_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(out, "  error: {e}");
    }
    let t = checker.totals();
    let _ = writeln!(
        out,
        "checker (order::check over {} overlapping cuts): {} violation(s); confirmed messages judged {} \
         ({} stream obligations), not judged (confirmed too late to judge) {}, orphans {}; views seen {}{}; \
         view changes of a node no fault touched {}; subscriber streams still kept {}",
        t.cuts,
        checker.violations,
        t.confirmed,
        t.obligations,
        t.unjudged,
        t.orphans,
        t.views,
        if t.lost_views {
            " (some saying lost)"
        } else {
            ""
        },
        checker.unplanned_view_changes,
        checker.streams()
    );
    for d in &checker.described {
        let _ = writeln!(out, "  violation: {d}");
    }
    for d in &checker.unplanned {
        let _ = writeln!(out, "  unplanned: {d}");
    }
    if failures.is_empty() {
        let _ = writeln!(out, "\nsoak PASSED");
    } else {
        let _ = writeln!(out, "\nsoak FAILED:");
        for f in failures {
            let _ = writeln!(out, "  - {f}");
        }
    }
    out
}

/// The load in words, for the header and the JSON.
fn load_text(rate: u32) -> String {
    format!(
        "per node: a publisher of {rate} msg/s ({} B, every {}th {} KiB; PING every 0.5 s to confirm), \
         subscribers plain (3 literal subjects), wildcard and queue group, each with $MSGC.VIEW; \
         a responder and a requester (20 req/s to the next node's responder); a group join/leave \
         every 0.6 s; plus a $MSGC.GROUP watcher and a short-lived connection every 100 ms",
        load::SMALL,
        load::LARGE_EVERY,
        load::LARGE / 1024
    )
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

#[allow(clippy::too_many_arguments)]
fn report_json(
    opts: &Options,
    rows: &[Row],
    incs: &[Incarnation],
    faults: &[FaultLog],
    checker: &Checker,
    ctx: &Ctx,
    total_secs: f64,
    failures: &[String],
) -> String {
    let s = &ctx.stats;
    let l = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    let mut out = String::from("{\n");
    let _ = writeln!(
        out,
        "  \"options\": {{\"secs\": {}, \"rate_per_publisher\": {}, \"publishers\": 3, \"interval_secs\": {}, \"fault_every_secs\": {}, \"warmup_secs\": {}, \"keepalive_secs\": {}, \"load\": {}}},",
        opts.secs,
        opts.rate,
        opts.interval,
        opts.fault_every,
        opts.warmup,
        KEEPALIVE.as_secs_f64(),
        json_str(&load_text(opts.rate))
    );
    let _ = writeln!(
        out,
        "  \"rss_rule\": {{\"growth_fraction\": {RSS_GROWTH}, \"slack_kib\": {RSS_SLACK_KIB}, \"judged\": \"incarnations that ran the whole soak, warm sample to end\"}},"
    );
    let _ = writeln!(
        out,
        "  \"secs\": {total_secs:.1},\n  \"passed\": {},",
        failures.is_empty()
    );
    let f: Vec<String> = failures.iter().map(|f| json_str(f)).collect();
    let _ = writeln!(out, "  \"failures\": [{}],", f.join(", "));
    let _ = writeln!(out, "  \"intervals\": [");
    for (i, r) in rows.iter().enumerate() {
        let rss: Vec<String> = r.rss.iter().map(|v| opt(*v)).collect();
        let _ = writeln!(
            out,
            "    {{\"t\": {:.1}, \"delivered_per_s\": {:.1}, \"published_per_s\": {:.1}, \"confirmed_per_s\": {:.1}, \"requests_per_s\": {:.1}, \"request_timeouts\": {}, \"rss_kib\": [{}], \"views\": {}, \"refused\": {}, \"reconnects\": {}, \"errors\": {}, \"violations_so_far\": {}}}{}",
            r.t,
            r.delivered,
            r.published,
            r.confirmed,
            r.requests,
            r.request_timeouts,
            rss.join(", "),
            r.views,
            r.refused,
            r.reconnects,
            r.errors,
            r.violations,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ],\n  \"incarnations\": [");
    for (i, x) in incs.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"node\": \"node{}\", \"pid\": {}, \"born_s\": {:.1}, \"ended_s\": {}, \"first_kib\": {}, \"warm_at_s\": {}, \"warm_kib\": {}, \"end_kib\": {}, \"max_kib\": {}, \"judged\": {}, \"passed\": {}}}{}",
            x.node + 1,
            x.pid,
            x.born,
            opt(x.ended.map(|e| format!("{e:.1}"))),
            x.first_kib,
            opt(x.warm.map(|(t, _)| format!("{t:.1}"))),
            opt(x.warm.map(|(_, k)| k)),
            x.last.1,
            x.max_kib,
            x.verdict().is_some(),
            opt(x.verdict()),
            if i + 1 < incs.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ],\n  \"faults\": [");
    for (i, f) in faults.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"at_s\": {:.1}, \"what\": {}, \"recovered_s\": {}, \"error\": {}}}{}",
            f.at,
            json_str(&f.what),
            opt(f.recovered_secs.map(|d| format!("{d:.2}"))),
            f.error.as_deref().map_or("null".into(), json_str),
            if i + 1 < faults.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ],");
    let _ = writeln!(
        out,
        "  \"load\": {{\"published\": {}, \"published_bytes\": {}, \"confirmed\": {}, \"refused\": {}, \"delivered\": {}, \"delivered_bytes\": {}, \"requests_ok\": {}, \"request_timeouts\": {}, \"request_mismatches\": {}, \"group_ops\": {}, \"group_events\": {}, \"churn_ok\": {}, \"churn_failed\": {}, \"reconnects\": {}, \"connect_failures\": {}, \"errors\": {}}},",
        l(&s.published),
        l(&s.published_bytes),
        l(&s.confirmed),
        l(&s.refused),
        l(&s.delivered),
        l(&s.delivered_bytes),
        l(&s.requests_ok),
        l(&s.request_timeouts),
        l(&s.request_mismatches),
        l(&s.group_ops),
        l(&s.group_events),
        l(&s.churn_ok),
        l(&s.churn_failed),
        l(&s.reconnects),
        l(&s.connect_failures),
        l(&s.errors)
    );
    let d: Vec<String> = checker.described.iter().map(|d| json_str(d)).collect();
    let t = checker.totals();
    let _ = writeln!(
        out,
        "  \"checker\": {{\"violations\": {}, \"described\": [{}], \"cuts\": {}, \"confirmed_judged\": {}, \"obligations\": {}, \"not_judged\": {}, \"orphans\": {}, \"views_seen\": {}, \"lost_views\": {}, \"unplanned_view_changes\": {}}}",
        checker.violations,
        d.join(", "),
        t.cuts,
        t.confirmed,
        t.obligations,
        t.unjudged,
        t.orphans,
        t.views,
        t.lost_views,
        checker.unplanned_view_changes
    );
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&args(&["--minutes", "30"])).unwrap();
        assert_eq!(
            o,
            Options {
                secs: 1800,
                rate: 200,
                interval: 30,
                fault_every: 60,
                warmup: 120
            }
        );
        let o = parse(&args(&["--minutes", "3"])).unwrap();
        assert_eq!((o.secs, o.fault_every, o.warmup), (180, 45, 60));
        let o = parse(&args(&[
            "--minutes",
            "0.5",
            "--rate",
            "50",
            "--interval",
            "5",
            "--fault-every",
            "0",
        ]))
        .unwrap();
        assert_eq!((o.secs, o.rate, o.interval, o.fault_every), (30, 50, 5, 0));
        assert!(parse(&args(&["--minutes"])).is_err());
        assert!(parse(&args(&["--minutes", "-1"])).is_err());
        assert!(parse(&args(&["--rate", "0"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn rss_from_proc_status() {
        let s = "Name:\tecclusterd\nVmPeak:\t  100 kB\nVmRSS:\t    5120 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(vm_rss_kib(s), Some(5120));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
        assert!(rss_of(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn health_from_status_json() {
        let j = r#"{"node":"node1","peers":[{"name":"node2"}],"order":{"mode":"normal","vr_view":3,"leader":"node2","view_id":5,"members":["node1","node2","node3"],"delivering":true,"lag":{}}}"#;
        let h = Health::from_status(j).unwrap();
        assert_eq!(
            h,
            Health {
                normal: true,
                delivering: true,
                members: 3,
                leader: Some("node2".into())
            }
        );
        assert!(h.good());
        let j = r#"{"order":{"mode":"view-change","leader":null,"members":["node1"],"delivering":false}}"#;
        let h = Health::from_status(j).unwrap();
        assert!(!h.good() && h.leader.is_none() && h.members == 1);
        assert_eq!(Health::from_status("{}"), None);
    }

    #[test]
    fn rss_verdict_needs_a_whole_run_and_a_warm_sample() {
        let x = |born: f64, ended: Option<f64>, warm: Option<u64>, last: u64| Incarnation {
            node: 0,
            pid: 1,
            initial: born < 1.5,
            born,
            ended,
            first_kib: 1000,
            warm: warm.map(|w| (60.0, w)),
            last: (180.0, last),
            max_kib: last,
        };
        // 10 MiB warm: the limit is 10 + 2 + 8 = 20 MiB.
        assert_eq!(x(1.0, None, Some(10240), 20480).verdict(), Some(true));
        assert_eq!(x(1.0, None, Some(10240), 20481).verdict(), Some(false));
        assert_eq!(x(1.0, None, None, 99999).verdict(), None);
        assert_eq!(x(50.0, None, Some(10240), 99999).verdict(), None);
        assert_eq!(x(1.0, Some(90.0), Some(10240), 99999).verdict(), None);
    }
}

//! `cargo xtask bench [--quick] [--glibc] [--rows KEY,...]`: ecclusterd and nats-server side
//! by side.
//!
//! 1. The binary that ships: the static musl build of `cargo xtask dist` ([`crate::dist`]),
//!    or with `--glibc` the glibc release build; and `cargo build --release --bin ecclusterd`
//!    for the load client, the same for every server measured.
//! 2. Starts ecclusterd (temp config, ephemeral 127.0.0.1 ports) and, when it can be had
//!    (PATH, else `apt-get install -y nats-server` as root), `nats-server -a 127.0.0.1 -p PORT`;
//!    both under `ulimit -n 65536` (or the hard limit, where that is lower).
//! 3. For every row runs `target/release/ecclusterd bench --json` (or `--idle N`, or reads
//!    `/proc/<pid>/status`) against each server in turn; the memory rows first, on fresh
//!    servers, then throughput and latency, each run [`RUNS`] times (alternating which server
//!    goes first), the median reported.
//! 4. The cluster rows (`c-*`), when 127.0.0.2 and 127.0.0.3 can be bound: a 3-node
//!    ecclusterd cluster ([`server::Cluster::ecclusterd`]) next to a 3-node nats-server
//!    cluster (routes, `--cluster_name bench`), 128 B messages from publishers on given
//!    nodes to subscribers on given nodes; delivered msg/s and whether all subscribers
//!    received one order (`same_order` of `ecclusterd bench`).
//! 5. Prints the table and machine info, and writes both to `target/bench/bench.json`.
//!
//! The servers are stopped on every path out ([`server::Server`]'s Drop): SIGTERM for
//! ecclusterd, SIGKILL for nats-server; the same for the six cluster nodes.

pub(crate) mod server;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use server::{Cluster, Server, with_fd_limit};

use crate::util::{self, Result, json_str};

/// Runs per row in a full bench; `--quick` does one.
const RUNS: usize = 3;
/// Upper bound for one `ecclusterd bench` run; hitting it fails the row, not the bench.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound for opening the idle connections.
const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// Ratios within this of 1 are called even.
const EVEN: f64 = 0.05;

const USAGE: &str = "usage: cargo xtask bench [--quick] [--glibc] [--rows KEY,...]

  --quick        a tenth of the messages, 1,000 idle connections, one run per row
  --glibc        measure the glibc release build instead of the shipped static musl binary
  --rows K,...   only these rows: 1x1-16 1x1-128 1x4-16 1x4-128 latency idle-rss conns-rss
                 c-1to3 c-1toall c-1toall-16 c-1toall-1k c-1toall-64k c-3to3 c-latency c-bulk
                 (c-: 3-node clusters on 127.0.0.1-3); all but c-1toall-64k by default (it
                 fails on ecclusterd: subscribers cut off as slow consumers, no flow control
                 back to publishers yet)";

#[derive(Clone, Copy)]
enum Kind {
    /// 1 publisher -> `subs` subscribers, `msgs` messages of `size` bytes.
    Throughput { subs: usize, size: usize, msgs: u64 },
    /// `msgs` request/reply round trips of `size` bytes.
    Latency { size: usize, msgs: u64 },
    /// Server RSS right after start.
    IdleRss,
    /// On the 3-node clusters: a publisher on each node of `pubs`, a subscriber on each node
    /// of `subs` (node indexes 0..3), `msgs` messages of `size` bytes in all.
    Cluster {
        pubs: &'static [usize],
        subs: &'static [usize],
        size: usize,
        msgs: u64,
    },
    /// Server RSS while `conns` idle clients are connected.
    ConnsRss { conns: usize },
    /// On the 3-node clusters: request/reply round trips, requester on node 1,
    /// responder on node 3.
    ClusterLatency { size: usize, msgs: u64 },
    /// `mib` MiB from node 1 to node 3: `ecclusterd send-file` over the direct
    /// link on ecclusterd's cluster; a plain TCP copy of the same bytes
    /// between the same addresses in the other column.
    ClusterBulk { mib: u64 },
}

struct Spec {
    key: &'static str,
    kind: Kind,
}

/// Rows measured only when `--rows` names them: ecclusterd has no answer yet.
/// `c-1toall-64k`: a publisher of 64 KiB messages outruns the bench's
/// subscribers by `max_pending` and ecclusterd cuts them off as slow
/// consumers, where nats-server stalls the publisher (no flow control from
/// subscribers back to publishers yet).
const NOT_BY_DEFAULT: &[&str] = &["c-1toall-64k"];

fn specs(quick: bool) -> Vec<Spec> {
    // Full counts make each throughput run take about 1-2 s on a 2-core machine.
    let n = |full: u64| if quick { full / 10 } else { full };
    let tp = |subs, size, msgs| Kind::Throughput { subs, size, msgs };
    let cls = |pubs, subs, size, msgs| Kind::Cluster {
        pubs,
        subs,
        size,
        msgs,
    };
    let cl = |pubs, subs, msgs| cls(pubs, subs, 128, msgs);
    vec![
        Spec {
            key: "1x1-16",
            kind: tp(1, 16, n(2_500_000)),
        },
        Spec {
            key: "1x1-128",
            kind: tp(1, 128, n(1_500_000)),
        },
        Spec {
            key: "1x4-16",
            kind: tp(4, 16, n(1_000_000)),
        },
        Spec {
            key: "1x4-128",
            kind: tp(4, 128, n(1_000_000)),
        },
        Spec {
            key: "latency",
            kind: Kind::Latency {
                size: 128,
                msgs: n(10_000),
            },
        },
        Spec {
            key: "c-1to3",
            kind: cl(&[0], &[2], n(1_500_000)),
        },
        Spec {
            key: "c-1toall",
            kind: cl(&[0], &[0, 1, 2], n(800_000)),
        },
        Spec {
            key: "c-1toall-16",
            kind: cls(&[0], &[0, 1, 2], 16, n(1_000_000)),
        },
        Spec {
            key: "c-1toall-1k",
            kind: cls(&[0], &[0, 1, 2], 1024, n(400_000)),
        },
        Spec {
            key: "c-1toall-64k",
            kind: cls(&[0], &[0, 1, 2], 64 * 1024, n(10_000)),
        },
        Spec {
            key: "c-3to3",
            kind: cl(&[0, 1, 2], &[0, 1, 2], n(600_000)),
        },
        Spec {
            key: "c-latency",
            kind: Kind::ClusterLatency {
                size: 128,
                msgs: n(10_000),
            },
        },
        Spec {
            key: "c-bulk",
            kind: Kind::ClusterBulk {
                mib: if quick { 20 } else { 200 },
            },
        },
        Spec {
            key: "idle-rss",
            kind: Kind::IdleRss,
        },
        Spec {
            key: "conns-rss",
            kind: Kind::ConnsRss {
                conns: if quick { 1_000 } else { 10_000 },
            },
        },
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    MsgPerSec,
    Micros,
    MBps,
    KiB,
    /// 1 for yes, 0 for no; several runs give yes only if all did.
    YesNo,
}

/// One table line a spec produces: label, unit, whether higher is better.
struct LineDef {
    label: String,
    unit: Unit,
    higher_better: bool,
}

impl Kind {
    fn lines(&self) -> Vec<LineDef> {
        let line = |label: String, unit, higher_better| LineDef {
            label,
            unit,
            higher_better,
        };
        match *self {
            Kind::Throughput { subs, size, .. } => vec![line(
                format!("1 pub -> {subs} sub, {size} B (delivered)"),
                Unit::MsgPerSec,
                true,
            )],
            Kind::Latency { size, .. } => vec![
                line(format!("req/reply {size} B p50"), Unit::Micros, false),
                line(format!("req/reply {size} B p99"), Unit::Micros, false),
            ],
            Kind::IdleRss => vec![line("RSS idle, after start".into(), Unit::KiB, false)],
            Kind::ClusterBulk { mib } => vec![line(
                format!("bulk {mib} MiB n1 -> n3, MB/s (nats-server column: plain TCP copy)"),
                Unit::MBps,
                true,
            )],
            Kind::ClusterLatency { size, .. } => vec![
                line(
                    format!("cluster req/reply n1 -> n3, {size} B p50"),
                    Unit::Micros,
                    false,
                ),
                line(
                    format!("cluster req/reply n1 -> n3, {size} B p99"),
                    Unit::Micros,
                    false,
                ),
            ],
            Kind::Cluster {
                pubs, subs, size, ..
            } => {
                let nodes = |v: &[usize]| {
                    v.iter()
                        .map(|n| format!("n{}", n + 1))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let what = format!(
                    "cluster {} pub ({}) -> {} sub ({}), {size} B",
                    pubs.len(),
                    nodes(pubs),
                    subs.len(),
                    nodes(subs)
                );
                let mut lines = vec![
                    line(format!("{what} (delivered)"), Unit::MsgPerSec, true),
                    line(format!("{what}: one order"), Unit::YesNo, true),
                ];
                if size >= 1024 {
                    lines.push(line(format!("{what}, MB/s delivered"), Unit::MBps, true));
                }
                lines
            }
            Kind::ConnsRss { conns } => vec![
                line(
                    format!("RSS with {} idle conns", thousands(conns as u64)),
                    Unit::KiB,
                    false,
                ),
                line("RSS per idle conn".into(), Unit::KiB, false),
            ],
        }
    }

    fn is_memory(&self) -> bool {
        matches!(self, Kind::IdleRss | Kind::ConnsRss { .. })
    }

    fn is_cluster(&self) -> bool {
        matches!(
            self,
            Kind::Cluster { .. } | Kind::ClusterLatency { .. } | Kind::ClusterBulk { .. }
        )
    }
}

/// One run's numbers, one per line of the spec, plus a remark (e.g. fewer connections).
struct Sample {
    values: Vec<f64>,
    note: Option<String>,
}

/// What a spec gave for one server: the runs, or why it failed.
#[derive(Default)]
struct Outcome {
    samples: Vec<Sample>,
    error: Option<String>,
}

struct Options {
    quick: bool,
    /// Measure the glibc release build rather than the shipped static binary.
    glibc: bool,
    rows: Option<Vec<String>>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        quick: false,
        glibc: false,
        rows: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--glibc" => opts.glibc = true,
            "--rows" => {
                let list = it
                    .next()
                    .ok_or("--rows needs a list, e.g. --rows 1x1-16,latency")?;
                opts.rows = Some(list.split(',').map(|s| s.trim().to_owned()).collect());
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if let Some(rows) = &opts.rows {
        let known = specs(false);
        for r in rows {
            if !known.iter().any(|s| s.key == r) {
                return Err(format!("unknown row `{r}`\n{USAGE}"));
            }
        }
    }
    Ok(opts)
}

pub fn run(args: &[String]) -> Result {
    let opts = parse(args)?;
    let started = Instant::now();
    // The load client: one build for every server measured.
    util::run(util::cargo().args(["build", "--release", "--bin", "ecclusterd"]))?;
    let bin = util::target_dir().join("release").join("ecclusterd");
    // The server measured: what ships, unless asked for the glibc build.
    let served = if opts.glibc {
        bin.clone()
    } else {
        crate::dist::static_binary(true)?
    };
    let out_dir = util::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;

    let bench_started = Instant::now();
    let mut servers = vec![Server::ecclusterd(
        &served,
        &out_dir.join(format!("conf-{}", std::process::id())),
    )?];
    let nats_program = server::find_or_install_nats();
    match &nats_program {
        Some(p) => servers.push(Server::nats(p, &out_dir.join("nats-server.log"))?),
        None => eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!  NOTE: nats-server is not available: benching ecclusterd ALONE.  !!\n\
             !!  Install the Debian package `nats-server` to get the comparison. !!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        ),
    }
    for s in &servers {
        eprintln!("{} (pid {}) ready on {}", s.name, s.pid(), s.addr);
    }
    let machine = machine_info(&servers, &served);

    let runs = if opts.quick { 1 } else { RUNS };
    let mut specs: Vec<Spec> = specs(opts.quick)
        .into_iter()
        .filter(|s| match &opts.rows {
            Some(r) => r.iter().any(|k| k == s.key),
            None => !NOT_BY_DEFAULT.contains(&s.key),
        })
        .collect();
    // The clusters, one per server above and in the same order (the table's columns).
    let mut clusters: Vec<Cluster> = Vec::new();
    if specs.iter().any(|s| s.kind.is_cluster()) {
        if server::cluster_ips_usable() {
            clusters.push(Cluster::ecclusterd(
                &served,
                &out_dir.join(format!("cluster-{}", std::process::id())),
            )?);
            if let Some(p) = &nats_program {
                clusters.push(Cluster::nats(p, &out_dir)?);
            }
            for c in &clusters {
                let addrs: Vec<&str> = c.nodes.iter().map(|n| n.addr.as_str()).collect();
                eprintln!("{} cluster ready on {}", c.name, addrs.join(", "));
            }
        } else {
            eprintln!("127.0.0.2 and 127.0.0.3 are not usable here: skipping the cluster rows");
            specs.retain(|s| !s.kind.is_cluster());
        }
    }
    // Memory first, while the servers are fresh; the table keeps the declared order.
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|&i| !specs[i].kind.is_memory());
    let mut outcomes: Vec<Vec<Outcome>> = specs
        .iter()
        .map(|_| servers.iter().map(|_| Outcome::default()).collect())
        .collect();
    for &i in &order {
        let spec = &specs[i];
        let runs = if spec.kind.is_memory() { 1 } else { runs };
        for r in 0..runs {
            let mut turn: Vec<usize> = (0..servers.len()).collect();
            if r % 2 == 1 {
                turn.reverse();
            }
            for j in turn {
                let outcome = &mut outcomes[i][j];
                if outcome.error.is_some() {
                    continue;
                }
                let s = &mut servers[j];
                eprint!("{:<9} {:<11} run {}/{runs} ... ", spec.key, s.name, r + 1);
                let t = Instant::now();
                let result = match spec.kind {
                    Kind::Cluster { .. }
                    | Kind::ClusterLatency { .. }
                    | Kind::ClusterBulk { .. } => {
                        measure_cluster(&bin, &mut clusters[j], spec.kind)
                    }
                    _ => measure(&bin, s, spec.kind),
                };
                match result {
                    Ok(sample) => {
                        eprintln!(
                            "{} ({:.1} s)",
                            brief(spec.kind, &sample),
                            t.elapsed().as_secs_f64()
                        );
                        outcome.samples.push(sample);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e}");
                        outcome.error = Some(e);
                    }
                }
            }
        }
    }
    let warnings: Vec<String> = servers
        .iter()
        .chain(clusters.iter().flat_map(|c| &c.nodes))
        .flat_map(|s| s.warnings())
        .collect();
    let names: Vec<&str> = servers.iter().map(|s| s.name).collect();
    for mut s in servers
        .drain(..)
        .chain(clusters.drain(..).flat_map(|c| c.nodes))
    {
        if !s.alive() {
            eprintln!("{} (pid {}) died during the bench", s.name, s.pid());
        }
    }
    let bench_secs = bench_started.elapsed().as_secs_f64();

    let table = Table::new(&specs, &outcomes, &names);
    println!();
    print!("{}", table.render());
    println!();
    for (k, v) in &machine {
        println!("{k:<12} {v}");
    }
    println!(
        "{:<12} {:.0} s benchmarking, {:.0} s with the build; {} run(s) per throughput/latency row, median shown",
        "time",
        bench_secs,
        started.elapsed().as_secs_f64(),
        runs
    );
    if !warnings.is_empty() {
        println!(
            "\necclusterd logged {} warning(s)/error(s), first ones:",
            warnings.len()
        );
        for w in warnings.iter().take(5) {
            println!("  {w}");
        }
    }
    let json_path = out_dir.join("bench.json");
    let json = table.json(&machine, opts.quick, runs, bench_secs);
    std::fs::write(&json_path, json)
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    println!("\nwritten: {}", json_path.display());

    let failed = table.failures();
    if failed > 0 {
        return Err(format!("{failed} measurement(s) failed; see above"));
    }
    Ok(())
}

/// One run of `kind` against `s`.
fn measure(bin: &Path, s: &mut Server, kind: Kind) -> Result<Sample> {
    if !s.alive() {
        return Err(format!("{} is no longer running", s.name));
    }
    let sample = |values| Sample { values, note: None };
    match kind {
        Kind::Throughput { subs, size, msgs } => {
            let out = bench_json(
                bin,
                &s.addr,
                &["--pub", "1", "--sub", &subs.to_string()],
                msgs,
                size,
            )?;
            Ok(sample(vec![field(&out, "sub_rate")?]))
        }
        Kind::Latency { size, msgs } => {
            let out = bench_json(bin, &s.addr, &["--latency"], msgs, size)?;
            Ok(sample(vec![field(&out, "p50_us")?, field(&out, "p99_us")?]))
        }
        Kind::IdleRss => Ok(sample(vec![s.rss_kib()? as f64])),
        Kind::ConnsRss { conns } => conns_rss(bin, s, conns),
        Kind::Cluster { .. } | Kind::ClusterLatency { .. } | Kind::ClusterBulk { .. } => {
            Err("a cluster row needs a cluster".into())
        }
    }
}

/// One run of a cluster row: `ecclusterd bench --json` with `--pub-server`/`--sub-server`
/// naming the nodes; delivered msg/s and the `same_order` flag.
fn measure_cluster(bin: &Path, c: &mut Cluster, kind: Kind) -> Result<Sample> {
    if let Kind::ClusterBulk { mib } = kind {
        let mbs = if c.name == "ecclusterd" {
            send_file_mbs(bin, c, mib)?
        } else {
            tcp_copy_mbs(mib)?
        };
        return Ok(Sample {
            values: vec![mbs],
            note: None,
        });
    }
    if let Kind::ClusterLatency { size, msgs } = kind {
        let (req, resp) = (c.addr(0).to_owned(), c.addr(2).to_owned());
        let extra = ["--latency", "--pub-server", &req, "--sub-server", &resp];
        let out = bench_json(bin, &req, &extra, msgs, size)?;
        return Ok(Sample {
            values: vec![field(&out, "p50_us")?, field(&out, "p99_us")?],
            note: None,
        });
    }
    let Kind::Cluster {
        pubs,
        subs,
        size,
        msgs,
    } = kind
    else {
        return Err("not a cluster row".into());
    };
    for n in &mut c.nodes {
        if !n.alive() {
            return Err(format!("{} (pid {}) is no longer running", n.name, n.pid()));
        }
    }
    let list = |v: &[usize]| v.iter().map(|&i| c.addr(i)).collect::<Vec<_>>().join(",");
    let (pub_list, sub_list) = (list(pubs), list(subs));
    let (np, ns) = (pubs.len().to_string(), subs.len().to_string());
    let extra = [
        "--pub",
        &np,
        "--sub",
        &ns,
        "--pub-server",
        &pub_list,
        "--sub-server",
        &sub_list,
    ];
    let out = bench_json(bin, c.addr(0), &extra, msgs, size).map_err(|e| {
        let tails: Vec<String> = c
            .nodes
            .iter()
            .map(|n| n.log_last(8))
            .filter(|t| !t.is_empty())
            .collect();
        if tails.is_empty() {
            e
        } else {
            format!("{e}\nlast log lines of the nodes:\n{}", tails.join("\n"))
        }
    })?;
    let json = out.as_str();
    let yes = |key: &str| json.contains(&format!("\"{key}\":true"));
    let note =
        (!yes("fifo")).then(|| "a subscriber saw a publisher's messages out of order".to_owned());
    let rate = field(json, "sub_rate")?;
    let mut values = vec![rate, if yes("same_order") { 1.0 } else { 0.0 }];
    if size >= 1024 {
        values.push(rate * size as f64 / 1e6);
    }
    Ok(Sample { values, note })
}

/// A file of `mib` MiB of varied bytes under target/bench, made once.
fn bulk_file(mib: u64) -> Result<std::path::PathBuf> {
    let path = util::project_root()
        .join("target")
        .join("bench")
        .join(format!("bulk-{mib}.bin"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == mib << 20) {
        return Ok(path);
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for c in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        std::io::Write::write_all(&mut f, &block).map_err(|e| e.to_string())?;
    }
    std::io::Write::flush(&mut f).map_err(|e| e.to_string())?;
    Ok(path)
}

/// `ecclusterd send-file node3 FILE` through node 1; the MB/s it reports.
fn send_file_mbs(bin: &Path, c: &Cluster, mib: u64) -> Result<f64> {
    let path = bulk_file(mib)?;
    let p = path.display().to_string();
    // Each run writes a new file, as a transfer of a new log would: the one
    // before is removed first (replacing it would time its deletion too).
    if let Some(dir) = c.nodes.get(2).and_then(Server::incoming_dir)
        && let Some(name) = path.file_name()
    {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let mut cmd = util::cmd(bin);
    cmd.args(["send-file", "node3", &p, "-s", c.addr(0)]);
    let out = output_within(&mut cmd, RUN_LIMIT)?;
    // "... 209715200 bytes in 0.6 s (345.1 MB/s), sha256 ..."
    out.split('(')
        .nth(1)
        .and_then(|r| r.split(" MB/s").next())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no MB/s in send-file's output: {out}"))
}

/// The same bytes over one plain TCP connection from 127.0.0.1 to 127.0.0.3:
/// what the loopback itself does, as the yardstick for the direct link.
fn tcp_copy_mbs(mib: u64) -> Result<f64> {
    use std::io::{Read, Write};
    let path = bulk_file(mib)?;
    let l = std::net::TcpListener::bind("127.0.0.3:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    });
    let start = Instant::now();
    let mut f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = f.read(&mut buf).map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        s.write_all(&buf[..k]).map_err(|e| e.to_string())?;
    }
    drop(s);
    let got = sink
        .join()
        .map_err(|_| "the TCP sink panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(got as f64 / secs / 1e6)
}

/// `ecclusterd bench -s ADDR --json EXTRA --msgs MSGS --size SIZE`, its stdout.
fn bench_json(bin: &Path, addr: &str, extra: &[&str], msgs: u64, size: usize) -> Result<String> {
    let mut cmd = util::cmd(bin);
    cmd.args(["bench", "-s", addr, "--json"]).args(extra).args([
        "--msgs",
        &msgs.to_string(),
        "--size",
        &size.to_string(),
    ]);
    output_within(&mut cmd, RUN_LIMIT)
}

/// Open `conns` idle clients (`ecclusterd bench --idle`), read the server's RSS once they
/// are all connected, close them and wait until the server has let go of them.
fn conns_rss(bin: &Path, s: &Server, conns: usize) -> Result<Sample> {
    let base_rss = s.rss_kib()?;
    let base_fds = s.fds();
    let mut cmd = with_fd_limit(bin);
    cmd.args(["bench", "-s", &s.addr, "--idle", &conns.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = util::display(&cmd);
    let mut client = Reaped(
        cmd.spawn()
            .map_err(|e| format!("could not start `{line}`: {e}"))?,
    );
    let stdout = client.0.stdout.take().expect("piped");
    let mut stderr = client.0.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let ready = rx.recv_timeout(IDLE_LIMIT).unwrap_or_default();
    let Some(reached) = ready
        .strip_prefix("ready ")
        .and_then(|n| n.trim().parse::<usize>().ok())
    else {
        let _ = client.0.kill();
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        return Err(format!("`{line}` did not print `ready N`: {}", err.trim()));
    };
    // Every connection has had its PONG, so the server holds its state for all of them.
    let rss = s.rss_kib()?;
    drop(client.0.stdin.take()); // end of input: the client closes its connections and exits
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(client.0.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    let _ = client.0.kill();
    let _ = stderr.read_to_string(&mut err);
    // Let the server tear the connections down before the next row.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.fds() > base_fds + 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let note = (reached < conns).then(|| {
        format!(
            "only {reached} of {conns} connections could be opened: {}",
            err.trim()
        )
    });
    let per_conn = rss.saturating_sub(base_rss) as f64 / reached.max(1) as f64;
    Ok(Sample {
        values: vec![rss as f64, per_conn],
        note,
    })
}

/// A child that is killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `cmd` (no stdin) and return its stdout; an error on a non-zero exit (with its
/// stderr) or when it runs longer than `limit` (then it is killed).
fn output_within(cmd: &mut Command, limit: Duration) -> Result<String> {
    let line = util::display(cmd);
    let mut child = Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start `{line}`: {e}"))?,
    );
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.0.stdout.take().expect("piped")));
    let err = drain(Box::new(child.0.stderr.take().expect("piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.0.kill();
                return Err(format!("`{line}` still running after {limit:?}; killed"));
            }
            Err(e) => return Err(format!("waiting for `{line}`: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("`{line}` failed ({status}): {}", err.trim()));
    }
    Ok(out)
}

/// The number after `"key":` in a flat JSON object (what `ecclusterd bench --json` prints).
fn field(json: &str, key: &str) -> Result<f64> {
    let pat = format!("\"{key}\":");
    json.find(&pat)
        .map(|i| json[i + pat.len()..].trim_start())
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no number `{key}` in bench output {:?}", json.trim()))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A run's numbers in a few words, for the progress log.
fn brief(kind: Kind, s: &Sample) -> String {
    kind.lines()
        .iter()
        .zip(&s.values)
        .map(|(l, &v)| fmt_value(l.unit, v))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::MsgPerSec => format!("{} msg/s", thousands(v.round() as u64)),
        Unit::Micros => format!("{v:.1} us"),
        Unit::MBps => format!("{v:.1} MB/s"),
        Unit::KiB if v >= 1024.0 => format!("{:.1} MiB", v / 1024.0),
        Unit::KiB => format!("{v:.1} KiB"),
        Unit::YesNo if v >= 1.0 => "yes".into(),
        Unit::YesNo => "no".into(),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line of the result: per server the median (or the error), the runs, notes.
struct TableRow {
    key: &'static str,
    def: LineDef,
    cells: Vec<std::result::Result<f64, String>>,
    runs: Vec<Vec<f64>>,
    notes: Vec<String>,
}

struct Table {
    names: Vec<String>,
    rows: Vec<TableRow>,
}

impl Table {
    fn new(specs: &[Spec], outcomes: &[Vec<Outcome>], names: &[&str]) -> Table {
        let mut rows = Vec::new();
        for (spec, per_server) in specs.iter().zip(outcomes) {
            for (l, def) in spec.kind.lines().into_iter().enumerate() {
                let mut cells = Vec::new();
                let mut runs = Vec::new();
                let mut notes = Vec::new();
                for (o, name) in per_server.iter().zip(names) {
                    let values: Vec<f64> = o.samples.iter().map(|s| s.values[l]).collect();
                    notes.extend(
                        o.samples
                            .iter()
                            .filter_map(|s| s.note.as_ref())
                            .map(|n| format!("{name}: {n}")),
                    );
                    let summary = if def.unit == Unit::YesNo {
                        values.iter().copied().reduce(f64::min)
                    } else {
                        median(values.clone())
                    };
                    cells.push(match (&o.error, summary) {
                        (Some(e), _) => Err(e.clone()),
                        (None, Some(m)) => Ok(m),
                        (None, None) => Err("not measured".into()),
                    });
                    runs.push(values);
                }
                notes.dedup();
                rows.push(TableRow {
                    key: spec.key,
                    def,
                    cells,
                    runs,
                    notes,
                });
            }
        }
        Table {
            names: names.iter().map(|s| s.to_string()).collect(),
            rows,
        }
    }

    fn failures(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|r| &r.cells)
            .filter(|c| c.is_err())
            .count()
    }

    /// ecclusterd / nats-server, when both were measured.
    fn ratio(row: &TableRow) -> Option<f64> {
        match row.cells.as_slice() {
            [Ok(a), Ok(b)] if *b != 0.0 && row.def.unit != Unit::YesNo => Some(a / b),
            _ => None,
        }
    }

    /// Which server did better on this line, given the direction that is better.
    fn leader(&self, row: &TableRow) -> String {
        let Some(r) = Self::ratio(row) else {
            return "-".into();
        };
        let ours_better = if row.def.higher_better {
            r > 1.0
        } else {
            r < 1.0
        };
        if (r - 1.0).abs() <= EVEN {
            format!("even (+-{:.0}%)", EVEN * 100.0)
        } else if ours_better {
            self.names[0].clone()
        } else {
            self.names[1].clone()
        }
    }

    fn render(&self) -> String {
        let nats = self.names.get(1).map_or("nats-server", String::as_str);
        let mut lines = vec![[
            "row".to_string(),
            self.names[0].clone(),
            nats.to_string(),
            "ratio e/n".into(),
            "better".into(),
            "ahead".into(),
        ]];
        for row in &self.rows {
            let cell = |i: usize| match row.cells.get(i) {
                Some(Ok(v)) => fmt_value(row.def.unit, *v),
                Some(Err(_)) => "FAILED".into(),
                None => "n/a".into(),
            };
            lines.push([
                row.def.label.clone(),
                cell(0),
                cell(1),
                Self::ratio(row).map_or("-".into(), |r| format!("{r:.2}x")),
                match row.def.unit {
                    Unit::YesNo => "-",
                    _ if row.def.higher_better => "higher",
                    _ => "lower",
                }
                .into(),
                self.leader(row),
            ]);
        }
        let mut width = [0usize; 6];
        for l in &lines {
            for (w, c) in width.iter_mut().zip(l) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for (n, l) in lines.iter().enumerate() {
            let mut text = String::new();
            for (i, c) in l.iter().enumerate() {
                let w = width[i];
                if i == 0 || i >= 4 {
                    let _ = write!(text, "{c:<w$} | ");
                } else {
                    let _ = write!(text, "{c:>w$} | ");
                }
            }
            let _ = writeln!(out, "| {}", text.trim_end());
            if n == 0 {
                let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
            }
        }
        for row in &self.rows {
            for (i, c) in row.cells.iter().enumerate() {
                if let Err(e) = c {
                    let _ = writeln!(out, "{} on {}: {e}", row.def.label, self.names[i]);
                }
            }
            for n in &row.notes {
                let _ = writeln!(out, "{}: {n}", row.def.label);
            }
        }
        out
    }

    fn json(&self, machine: &[(String, String)], quick: bool, runs: usize, secs: f64) -> String {
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v}")
            } else {
                "null".into()
            }
        };
        let mut out = String::from("{\n  \"machine\": {");
        let fields: Vec<String> = machine
            .iter()
            .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
            .collect();
        let _ = writeln!(out, "{}}},", fields.join(", "));
        let _ = writeln!(
            out,
            "  \"quick\": {quick},\n  \"runs\": {runs},\n  \"bench_secs\": {},",
            num(secs)
        );
        let names: Vec<String> = self.names.iter().map(|n| json_str(n)).collect();
        let _ = writeln!(out, "  \"servers\": [{}],\n  \"rows\": [", names.join(", "));
        for (i, row) in self.rows.iter().enumerate() {
            let unit = match row.def.unit {
                Unit::MsgPerSec => "msg/s",
                Unit::Micros => "us",
                Unit::MBps => "MB/s",
                Unit::KiB => "KiB",
                Unit::YesNo => "yes=1",
            };
            let mut f = vec![
                format!("\"key\": {}", json_str(row.key)),
                format!("\"row\": {}", json_str(&row.def.label)),
                format!("\"unit\": \"{unit}\""),
                format!(
                    "\"better\": \"{}\"",
                    if row.def.higher_better {
                        "higher"
                    } else {
                        "lower"
                    }
                ),
            ];
            for (s, name) in self.names.iter().enumerate() {
                let value = match &row.cells[s] {
                    Ok(v) => num(*v),
                    Err(_) => "null".into(),
                };
                let runs: Vec<String> = row.runs[s].iter().map(|v| num(*v)).collect();
                f.push(format!("{}: {value}", json_str(name)));
                f.push(format!(
                    "{}: [{}]",
                    json_str(&format!("{name}_runs")),
                    runs.join(", ")
                ));
                if let Err(e) = &row.cells[s] {
                    f.push(format!(
                        "{}: {}",
                        json_str(&format!("{name}_error")),
                        json_str(e)
                    ));
                }
            }
            f.push(format!(
                "\"ratio\": {}",
                Self::ratio(row).map_or("null".into(), num)
            ));
            f.push(format!("\"ahead\": {}", json_str(&self.leader(row))));
            let notes: Vec<String> = row.notes.iter().map(|n| json_str(n)).collect();
            f.push(format!("\"notes\": [{}]", notes.join(", ")));
            let comma = if i + 1 < self.rows.len() { "," } else { "" };
            let _ = writeln!(out, "    {{{}}}{comma}", f.join(", "));
        }
        out.push_str("  ]\n}\n");
        out
    }
}

/// nproc, CPU, memory, kernel, fd limit, versions.
/// Which build a binary is, and its size: the table must say what it measured.
fn binary_info(bin: &Path) -> String {
    let size = std::fs::metadata(bin).map_or(0, |m| m.len());
    let kind = std::fs::read(bin)
        .ok()
        .and_then(|d| crate::elf::check_static(&d).ok())
        .map_or("dynamic (glibc release build)".to_owned(), |l| {
            format!("{l} (static musl, the shipped build)")
        });
    format!("{} — {kind}, {size} bytes", bin.display())
}

fn machine_info(servers: &[Server], served: &Path) -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let mem = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or("unknown".into(), |k| {
            format!("{:.1} GiB", k as f64 / 1048576.0)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = util::output(util::cmd("rustc").arg("-V")).unwrap_or_default();
    let mut info = vec![
        ("nproc".into(), nproc.to_string()),
        ("cpu".into(), cpu),
        ("memory".into(), mem),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("rustc".into(), rustc.trim().to_owned()),
        ("ecclusterd binary".into(), binary_info(served)),
    ];
    for s in servers {
        info.push((s.name.to_owned(), s.version.clone()));
    }
    if let Some(s) = servers.first() {
        let limits = read(&format!("/proc/{}/limits", s.pid()));
        let fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or("unknown");
        info.push((
            "fd limit".into(),
            format!("{fds} (servers and idle client)"),
        ));
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_numbers_of_flat_json() {
        let j = r#"{"server":"127.0.0.1:1","msgs":20,"secs":1.5e-3,"sub_rate":123.25}"#;
        assert_eq!(field(j, "sub_rate").ok(), Some(123.25));
        assert_eq!(field(j, "secs").ok(), Some(0.0015));
        assert_eq!(field(j, "msgs").ok(), Some(20.0));
        assert!(field(j, "p50_us").is_err());
    }

    #[test]
    fn median_and_thousands() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn rows_filter_rejects_unknown_keys() {
        let args = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse(&args(&["--rows", "latency,1x4-16"])).is_ok());
        assert!(parse(&args(&["--rows", "c-1to3,c-1toall,c-3to3"])).is_ok());
        assert!(parse(&args(&["--rows", "nope"])).is_err());
        assert!(parse(&args(&["--quick"])).is_ok_and(|o| o.quick));
    }
}

//! Deterministic simulation of the ordering core (`src/order`).
//!
//! `ECCLUSTERD_SIM_SEEDS=N` sets the number of seeds per cluster size
//! (default 1000 for 3 nodes + 1000 for 5 nodes = 2000 runs);
//! `ECCLUSTERD_SIM_SEED=S` replays one seed with a trace (add
//! `ECCLUSTERD_SIM_PAUSES=1` for a seed of the pause scenario).
//! A failing seed prints the violated property, the seed and its event trace.

use std::time::Instant;

use ecclusterd::order::sim::{SimParams, SimReport, run};

fn seeds() -> u64 {
    std::env::var("ECCLUSTERD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

fn burst() -> bool {
    std::env::var("ECCLUSTERD_SIM_PAUSE_BURST").is_ok_and(|v| v == "1")
}

fn params(n: usize, pauses: bool) -> SimParams {
    if pauses {
        SimParams {
            pause_burst: burst(),
            ..SimParams::pauses(n)
        }
    } else {
        SimParams::new(n)
    }
}

fn explain(seed: u64, n: usize, pauses: bool, r: &SimReport, limit: usize) -> String {
    let mut p = params(n, pauses);
    p.trace = true;
    let t = run(seed, &p);
    let tail: Vec<&String> = t
        .trace
        .iter()
        .rev()
        .take(limit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut s = format!(
        "seed {seed}, {n} nodes: {}\nreplay: ECCLUSTERD_SIM_SEED={seed} ECCLUSTERD_SIM_NODES={n}{}{} cargo test --release --test sim replay -- --nocapture\nlast {} of {} trace lines:\n",
        r.violation.as_deref().unwrap_or("?"),
        if pauses {
            " ECCLUSTERD_SIM_PAUSES=1"
        } else {
            ""
        },
        if pauses && burst() {
            " ECCLUSTERD_SIM_PAUSE_BURST=1"
        } else {
            ""
        },
        tail.len(),
        t.trace.len()
    );
    for l in tail {
        s.push_str(l);
        s.push('\n');
    }
    s
}

#[test]
fn many_seeds() {
    let total = seeds();
    let start = Instant::now();
    let mut sum = SimReport::default();
    let mut failures = Vec::new();
    let mut ran = 0;
    for k in 0..total {
        ran += 1;
        let n = if k % 2 == 0 { 3 } else { 5 };
        let seed = k / 2 + if n == 3 { 0 } else { 1 << 32 };
        let r = run(seed, &SimParams::new(n));
        if r.violation.is_some() {
            failures.push((seed, n, r.clone()));
            if failures.len() >= 3 {
                break;
            }
        }
        sum.published += r.published;
        sum.confirmed += r.confirmed;
        sum.refused += r.refused;
        sum.ordered_ops += r.ordered_ops;
        sum.crashes += r.crashes;
        sum.partitions += r.partitions;
        sum.cuts += r.cuts;
        sum.slow += r.slow;
        sum.jumps += r.jumps;
        sum.messages += r.messages;
        sum.max_log_len = sum.max_log_len.max(r.max_log_len);
        sum.confirmed_orphans += r.confirmed_orphans;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sim: {ran} seeds in {secs:.1}s ({:.0} seeds/s); published {} confirmed {} refused {} ops {} msgs {}; faults: crashes {} partitions {} cuts {} slow {} jumps {}; max log {}; confirmed-orphans {}",
        ran as f64 / secs,
        sum.published,
        sum.confirmed,
        sum.refused,
        sum.ordered_ops,
        sum.messages,
        sum.crashes,
        sum.partitions,
        sum.cuts,
        sum.slow,
        sum.jumps,
        sum.max_log_len,
        sum.confirmed_orphans
    );
    if let Some((seed, n, r)) = failures.first() {
        let seeds: Vec<_> = failures.iter().map(|(s, n, _)| (*s, *n)).collect();
        panic!(
            "{} failing (seed, nodes): {seeds:?}\n{}",
            failures.len(),
            explain(*seed, *n, false, r, 400)
        );
    }
}

/// Replays `ECCLUSTERD_SIM_SEED` (nodes from `ECCLUSTERD_SIM_NODES`, default 3) with a trace.
#[test]
fn replay() {
    let Some(seed) = std::env::var("ECCLUSTERD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let n = std::env::var("ECCLUSTERD_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let pauses = std::env::var("ECCLUSTERD_SIM_PAUSES").is_ok_and(|v| v == "1");
    let r = run(seed, &params(n, pauses));
    println!("{r:?}");
    println!("{}", explain(seed, n, pauses, &r, usize::MAX));
}

/// The pause scenario (`SimParams::pauses`): one node at a time is stopped
/// (SIGSTOP) and resumed with its missed ticks and queued messages; besides
/// every usual property, no node that was not paused is removed from or
/// re-admitted to the membership view. Seeds: a tenth of
/// `ECCLUSTERD_SIM_SEEDS` (default 200), 3 and 5 nodes alternating.
/// `ECCLUSTERD_SIM_PAUSE_BURST=1` resumes with a burst of the missed ticks
/// (`SimParams::pause_burst`), as the daemon did before it had a rule for a
/// late tick: that is expected to fail.
#[test]
fn pauses_keep_healthy_members() {
    let total = (seeds() / 10).max(2);
    let start = Instant::now();
    let mut failures = Vec::new();
    let (mut pauses, mut left, mut joined, mut refused, mut vcs) = (0, 0, 0, 0, 0);
    for k in 0..total {
        let n = if k % 2 == 0 { 3 } else { 5 };
        let seed = (2 << 32) + k / 2 + if n == 3 { 0 } else { 1 << 31 };
        let r = run(seed, &params(n, true));
        pauses += r.pauses;
        left += r.healthy_left;
        joined += r.healthy_joined;
        refused += r.refused;
        vcs += r.view_changes;
        if r.violation.is_some() {
            failures.push((seed, n, r));
        }
    }
    println!(
        "sim pauses{}: {total} seeds in {:.1}s; {pauses} pauses; unpaused nodes removed {left}, re-admitted {joined}; refused {refused}; VR views entered {vcs}; {} failing",
        if burst() { " (burst)" } else { "" },
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    if let Some((seed, n, r)) = failures.first() {
        let seeds: Vec<_> = failures.iter().take(20).map(|(s, n, _)| (*s, *n)).collect();
        panic!(
            "{} failing, the first (seed, nodes): {seeds:?}\n{}",
            failures.len(),
            explain(*seed, *n, true, r, 400)
        );
    }
}

#[test]
fn no_faults_everything_commits_everywhere() {
    for seed in 0..20 {
        for n in [1, 3, 5] {
            let mut p = SimParams::new(n);
            p.faults = false;
            let r = run(seed, &p);
            assert!(
                r.violation.is_none(),
                "seed {seed} n {n}: {:?}",
                r.violation
            );
            assert_eq!(r.refused, 0);
            assert_eq!(r.confirmed, r.published, "seed {seed} n {n}");
        }
    }
}

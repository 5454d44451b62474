//! Deterministic simulation of the ordering core (`src/order`).
//!
//! `ECCLUSTERD_SIM_SEEDS=N` sets the number of seeds per cluster size
//! (default 1000 for 3 nodes + 1000 for 5 nodes = 2000 runs);
//! `ECCLUSTERD_SIM_SEED=S` replays one seed with a trace.
//! A failing seed prints the violated property, the seed and its event trace.

use std::time::Instant;

use ecclusterd::order::sim::{SimParams, SimReport, run};

fn seeds() -> u64 {
    std::env::var("ECCLUSTERD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

fn explain(seed: u64, n: usize, r: &SimReport, limit: usize) -> String {
    let mut p = SimParams::new(n);
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
        "seed {seed}, {n} nodes: {}\nreplay: ECCLUSTERD_SIM_SEED={seed} ECCLUSTERD_SIM_NODES={n} cargo test --release --test sim replay -- --nocapture\nlast {} of {} trace lines:\n",
        r.violation.as_deref().unwrap_or("?"),
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
            explain(*seed, *n, r, 400)
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
    let r = run(seed, &SimParams::new(n));
    println!("{r:?}");
    println!("{}", explain(seed, n, &r, usize::MAX));
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

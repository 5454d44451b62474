//! `cargo xtask`: project automation for ecclusterd (the matklad/cargo-xtask pattern).
//!
//! Every task is one `run(args)` function in its own module; add a task by adding a module
//! and a row to [`TASKS`]. Tasks run `cargo` through the `CARGO` env var (see [`util::cargo`]).

mod bench;
mod ci;
mod dist;
mod elf;
mod faults;
mod fuzz;
mod sim;
mod soak;
mod test;
mod util;

use std::process::ExitCode;

/// A task: name, one-line usage, summary, entry point.
struct Task {
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    run: fn(&[String]) -> util::Result,
}

const TASKS: &[Task] = &[
    Task {
        name: "test",
        usage: "test [ARGS...]",
        about: "the project's test command: cargo test --workspace ARGS, then the simulator (release), the fault harness (tests/faults), then Python interop tests",
        run: test::run,
    },
    Task {
        name: "dist",
        usage: "dist [--no-tls]",
        about: "static musl release build (installs musl-tools if missing), ELF static check, smoke run, target/dist/*.tar.gz + .sha256; --no-tls: without the tls feature",
        run: dist::run,
    },
    Task {
        name: "ci",
        usage: "ci",
        about: "what .ci/run does, locally: fmt --check, clippy -D warnings, test, dist",
        run: ci::run,
    },
    Task {
        name: "fuzz",
        usage: "fuzz [--secs N]",
        about: "run every cargo-fuzz target for N seconds each (default 30; needs nightly)",
        run: fuzz::run,
    },
    Task {
        name: "bench",
        usage: "bench [--quick] [--rows K,..]",
        about: "release ecclusterd vs nats-server: throughput, request/reply latency, memory (idle, 10k conns); table + target/bench/bench.json",
        run: bench::run,
    },
    Task {
        name: "sim",
        usage: "sim [--seeds N]",
        about: "the ordering simulator, release build: N seeds of each random fault mix (default 20000) and N/40 of each named scenario",
        run: sim::run,
    },
    Task {
        name: "faults",
        usage: "faults [--random N] [-- FILTER]",
        about: "the fault harness (real nodes in network namespaces), release build; --random N: N new random 5-node flapping sequences",
        run: faults::run,
    },
    Task {
        name: "soak",
        usage: "soak [--minutes N] [--rate R] ..",
        about: "3-node cluster under mixed load with rotating faults: throughput, RSS per node over time, invariant checks; target/soak/soak.json",
        run: soak::run,
    },
];

fn print_help() {
    println!("Usage: cargo xtask <TASK> [ARGS...]\n\nTasks:");
    let width = TASKS.iter().map(|t| t.usage.len()).max().unwrap_or(0);
    for t in TASKS {
        println!("  {:width$}  {}", t.usage, t.about);
    }
    println!(
        "\nEnvironment: CARGO_PROFILE_DIST_OPT_LEVEL=s|z|3 overrides [profile.dist] for size measurements."
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        print_help();
        return ExitCode::SUCCESS;
    };
    if matches!(name.as_str(), "-h" | "--help" | "help") {
        print_help();
        return ExitCode::SUCCESS;
    }
    let Some(task) = TASKS.iter().find(|t| t.name == name) else {
        eprintln!("xtask: unknown task `{name}`\n");
        print_help();
        return ExitCode::from(2);
    };
    match (task.run)(&args[1..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {}: error: {e}", task.name);
            ExitCode::FAILURE
        }
    }
}

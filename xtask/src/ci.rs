//! `cargo xtask ci`: the steps of `.ci/run`, runnable locally. Keep the two in sync.

use std::time::{Duration, Instant};

use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result {
    if let Some(arg) = args.first() {
        return Err(format!("`ci` takes no arguments, got `{arg}`"));
    }
    ensure_components()?;

    type Step = (&'static str, fn() -> Result);
    let steps: [Step; 5] = [
        ("cargo fmt --all -- --check", || {
            util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))
        }),
        (
            "cargo clippy --workspace --all-targets -- -D warnings",
            || {
                util::run(util::cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            },
        ),
        ("cargo xtask test", || crate::test::run(&[])),
        ("cargo xtask dist", || crate::dist::run(&[])),
        ("cargo xtask fuzz --secs 20", || {
            crate::fuzz::run(&["--secs".to_string(), "20".to_string()])
        }),
    ];

    let mut times: Vec<(&str, Duration, bool)> = Vec::new();
    let mut failure = None;
    for (name, step) in steps {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = step();
        times.push((name, start.elapsed(), result.is_ok()));
        if let Err(e) = result {
            failure = Some(format!("step `{name}` failed: {e}"));
            break;
        }
    }

    println!("\n==> summary");
    for (name, took, ok) in &times {
        let status = if *ok { "ok" } else { "FAILED" };
        println!("  {:>8.1}s  {status:6}  {name}", took.as_secs_f64());
    }
    failure.map_or(Ok(()), Err)
}

/// rustfmt and clippy are not in rustup's minimal profile (e.g. the `rust` Docker image).
fn ensure_components() -> Result {
    for (sub, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if !util::succeeds(util::cargo().args([sub, "--version"])) {
            util::run(util::cmd("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

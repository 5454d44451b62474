//! `cargo xtask sim [--seeds N]`: the ordering simulator (tests/sim.rs) in release mode, N
//! seeds of each random fault mix (default 20,000) and N/40 of each named scenario. `cargo
//! xtask test` (so CI) runs the test's own default of 2,000.

use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result {
    let mut seeds: u64 = 20_000;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = match a.strip_prefix("--seeds=") {
            Some(v) => v,
            None if a == "--seeds" => it.next().ok_or("`--seeds` needs a value")?,
            None => return Err(format!("unknown argument `{a}`; usage: sim [--seeds N]")),
        };
        seeds = v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`--seeds {v}`: expected a positive whole number"))?;
    }
    util::run(
        util::cargo()
            .args(["test", "--release", "--test", "sim", "--", "--nocapture"])
            .env("ECCLUSTERD_SIM_SEEDS", (seeds * 2).to_string())
            .env_remove("ECCLUSTERD_SIM"),
    )
}

//! `cargo xtask faults [--random N] [-- FILTER]`: the fault harness (tests/faults: real nodes in
//! network namespaces) on its own, release build. `--random N` runs N new random 5-node
//! flapping sequences one after the other (`five_nodes_flapping_random`), each judged like the
//! fixed one, and prints the seeds and the times from heal to whole. As root it installs
//! iptables and iproute2 first if missing.

use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result {
    let mut random: Option<u64> = None;
    let mut filter: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--random" {
            let v = it.next().ok_or("`--random` needs a number of sequences")?;
            random = Some(
                v.parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("`--random {v}`: expected a positive whole number"))?,
            );
        } else if a == "--" {
            filter.extend(it.by_ref().cloned());
        } else {
            return Err(format!(
                "unknown argument `{a}`; usage: faults [--random N] [-- FILTER]"
            ));
        }
    }
    if util::is_root() {
        util::find_or_apt_install("iptables", "iptables");
        util::find_or_apt_install("ip", "iproute2");
    }
    let mut cmd = util::cargo();
    cmd.args(["test", "--release", "--test", "faults"])
        .env_remove("ECCLUSTERD_FAULTS");
    match random {
        Some(n) => {
            cmd.arg("five_nodes_flapping_random")
                .env("ECCLUSTERD_FAULTS_RANDOM", n.to_string());
        }
        None => {
            cmd.args(&filter);
        }
    }
    cmd.args(["--", "--nocapture", "--test-threads", "1"]);
    util::run(&mut cmd)
}

//! `cargo xtask fuzz [--secs N]`: run every cargo-fuzz target for N seconds (default 30).
//!
//! Uses `cargo +nightly` through rustup's `cargo` proxy on PATH (not `$CARGO`, which is the
//! current toolchain's cargo and does not understand `+toolchain`).

use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result {
    let secs = parse_secs(args)?;
    let root = util::project_root();
    if !root.join("fuzz").join("Cargo.toml").is_file() {
        println!("no fuzz/Cargo.toml: nothing to fuzz");
        return Ok(());
    }
    // libFuzzer's instrumentation needs nightly (`-Zsanitizer`).
    if !util::succeeds(util::cmd("cargo").args(["+nightly", "--version"])) {
        util::run(util::cmd("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .map_err(|e| format!("fuzzing needs a nightly toolchain and installing one failed: {e}"))?;
    }
    if !util::succeeds(util::cmd("cargo").args(["fuzz", "--help"])) {
        util::run(util::cmd("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let list = util::output(util::cmd("cargo").args(["+nightly", "fuzz", "list"]))?;
    let targets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if targets.is_empty() {
        println!("fuzz/ has no targets");
        return Ok(());
    }
    for target in targets {
        println!("\n==> fuzz {target} for {secs}s");
        // New inputs go to target/fuzz-corpus (first directory, writable);
        // the checked-in seeds in fuzz/corpus are only read.
        let work = root.join("target").join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let seeds = root.join("fuzz").join("corpus").join(target);
        if !seeds.is_dir() {
            return Err(format!(
                "{}: the seed corpus of `{target}` is missing (each target keeps its seeds there)",
                seeds.display()
            ));
        }
        util::run(util::cmd("cargo").args([
            "+nightly",
            "fuzz",
            "run",
            target,
            &work.display().to_string(),
            &seeds.display().to_string(),
            "--",
            &format!("-max_total_time={secs}"),
        ]))?;
    }
    Ok(())
}

fn parse_secs(args: &[String]) -> Result<u64> {
    let mut secs = 30;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--secs=") {
            Some(v) => v,
            None if arg == "--secs" => it.next().ok_or("`--secs` needs a value")?,
            None => return Err(format!("unknown argument `{arg}`; usage: fuzz [--secs N]")),
        };
        secs = value
            .parse()
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| format!("`--secs {value}`: expected a positive whole number"))?;
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::parse_secs;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secs() {
        assert_eq!(parse_secs(&[]), Ok(30));
        assert_eq!(parse_secs(&args(&["--secs", "5"])), Ok(5));
        assert_eq!(parse_secs(&args(&["--secs=7"])), Ok(7));
        assert!(parse_secs(&args(&["--secs"])).is_err());
        assert!(parse_secs(&args(&["--secs", "0"])).is_err());
        assert!(parse_secs(&args(&["-x"])).is_err());
    }
}

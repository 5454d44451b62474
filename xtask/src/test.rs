//! `cargo xtask test [ARGS...]`: the project's one test command.
//!
//! 1. `cargo test --workspace ARGS...` (as root it first installs `systemd` for
//!    `systemd-analyze` and `prometheus` for the metrics tests, if missing), with `ECCLUSTERD_FAULTS=later` and `ECCLUSTERD_SIM=later`
//!    so the fault harness (`tests/faults/`) and the simulator (`tests/sim.rs`) do nothing there;
//! 2. the ordering simulator in release mode: `cargo test --release --test sim` (its default:
//!    2,000 seeds of each random fault mix plus every named scenario);
//! 3. the fault harness as its own step: `cargo test --test faults ARGS...` (as root it first
//!    installs `iptables` and `iproute2` with apt-get if missing; without root or network
//!    namespaces the harness says loudly that it skipped, and passes);
//! 4. if `tests/interop/` holds pytest files: make sure `nats-py` and `pytest` import, and that
//!    the other two client libraries and the reference server are there (Debian's
//!    `libnats-dev` for nats.c, `nodejs` with npm's `nats` 2.x in `target/interop/js` for
//!    nats.js, Debian's `nats-server`; apt-get as root), build `target/debug/ecclusterd`, run
//!    `python3 -m pytest -q tests/interop` with `ECCLUSTERD_BIN` and `NODE_PATH` set.

use std::path::Path;

use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result {
    // tests/it/deploy.rs verifies the systemd unit with systemd-analyze;
    // tests/it/http.rs checks /metrics with promtool and a real Prometheus.
    if util::is_root() {
        util::find_or_apt_install("systemd-analyze", "systemd");
        util::find_or_apt_install("prometheus", "prometheus");
    }
    util::run(
        util::cargo()
            .args(["test", "--workspace"])
            .args(args)
            .env("ECCLUSTERD_FAULTS", "later")
            .env("ECCLUSTERD_SIM", "later"),
    )?;

    eprintln!("\n==> ordering simulator (tests/sim.rs, release)");
    util::run(
        util::cargo()
            .args(["test", "--release", "--test", "sim", "--", "--nocapture"])
            .env_remove("ECCLUSTERD_SIM"),
    )?;

    eprintln!("\n==> fault harness (tests/faults: real processes in network namespaces)");
    if util::is_root() {
        util::find_or_apt_install("iptables", "iptables");
        util::find_or_apt_install("ip", "iproute2");
    }
    util::run(
        util::cargo()
            .args(["test", "--test", "faults"])
            .args(args)
            .env_remove("ECCLUSTERD_FAULTS"),
    )?;

    let interop = util::project_root().join("tests").join("interop");
    if !has_pytest_files(&interop) {
        return Ok(());
    }
    ensure_python_deps()?;
    let node_path = ensure_client_deps()?;
    util::run(util::cargo().args(["build", "--bin", "ecclusterd"]))?;
    let bin = util::target_dir().join("debug").join("ecclusterd");
    util::run(
        util::cmd("python3")
            .args(["-m", "pytest", "-q", "tests/interop"])
            .env("ECCLUSTERD_BIN", &bin)
            .env("NODE_PATH", &node_path),
    )
}

/// The nats.js release the interop tests pin (npm `nats`, the 2.x line).
const NATS_JS_VERSION: &str = "2.29.3";

/// nats-server, nats.c (headers and library) and nats.js for tests/interop/test_clients.py;
/// returns the `node_modules` folder to put on `NODE_PATH`.
fn ensure_client_deps() -> Result<std::path::PathBuf> {
    for (program, package) in [
        ("nats-server", "nats-server"),
        ("cc", "gcc"),
        ("node", "nodejs"),
    ] {
        if util::find_or_apt_install(program, package).is_none() {
            return Err(format!(
                "the interop tests need `{program}` (Debian: {package})"
            ));
        }
    }
    if !Path::new("/usr/include/nats/nats.h").exists() {
        util::apt_install("libnats-dev")?;
    }
    if util::find_or_apt_install("npm", "npm").is_none() {
        return Err("the interop tests need npm to install nats.js (Debian: npm)".into());
    }
    let prefix = util::target_dir().join("interop").join("js");
    let modules = prefix.join("node_modules");
    let installed = std::fs::read_to_string(modules.join("nats").join("package.json"))
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{NATS_JS_VERSION}\"")));
    if !installed {
        std::fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        util::run(
            util::cmd("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("nats@{NATS_JS_VERSION}")),
        )?;
    }
    Ok(modules)
}

/// Whether `dir` (recursively) has a `test_*.py` or `*_test.py` file.
fn has_pytest_files(dir: &Path) -> bool {
    let Ok(read) = std::fs::read_dir(dir) else {
        return false;
    };
    read.flatten().any(|item| {
        let path = item.path();
        if path.is_dir() {
            return has_pytest_files(&path);
        }
        let name = item.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
    })
}

/// `pip install nats-py pytest` unless both already import.
fn ensure_python_deps() -> Result {
    if util::succeeds(util::cmd("python3").args(["-c", "import nats, pytest"])) {
        return Ok(());
    }
    let mut pip = util::cmd("python3");
    pip.args(["-m", "pip", "install", "--quiet", "nats-py", "pytest"]);
    // Debian's system Python refuses pip outside a venv (PEP 668). On a throwaway CI machine
    // that is fine to override; on a workstation, use a venv instead.
    if externally_managed() {
        if std::env::var_os("CI").is_some() {
            pip.arg("--break-system-packages");
        } else {
            return Err(
                "python3 is externally managed (PEP 668) and lacks nats-py/pytest: \
                        activate a venv, or run with CI=true to install into the system"
                    .into(),
            );
        }
    }
    util::run(&mut pip)
}

/// Whether python3 is outside a venv and carries an EXTERNALLY-MANAGED marker.
fn externally_managed() -> bool {
    const PROBE: &str = "import os, sys, sysconfig\n\
        venv = sys.prefix != sys.base_prefix\n\
        marker = os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')\n\
        sys.exit(0 if not venv and os.path.exists(marker) else 1)";
    util::succeeds(util::cmd("python3").args(["-c", PROBE]))
}

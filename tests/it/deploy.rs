//! The deployment files of `deploy/` (shipped in the dist archive): the
//! systemd unit passes `systemd-analyze verify` and its hardening review,
//! and the configuration the unit and the container image start from passes
//! `ecclusterd check`.

use std::path::Path;
use std::process::Command;

use crate::common::{bin, run_cmd};

fn deploy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit with its binary path pointed at the one just built (verify
/// checks that every command exists).
fn unit_here(dir: &Path) -> std::path::PathBuf {
    let unit = deploy("ecclusterd.service").replace("/usr/local/bin/ecclusterd", bin());
    let path = dir.join("ecclusterd.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> Option<(bool, String)> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(o) => Some((
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )),
        Err(e) => {
            eprintln!(
                "SKIPPED: systemd-analyze cannot run here ({e}); `cargo xtask test` installs it"
            );
            None
        }
    }
}

#[test]
fn the_systemd_unit_verifies_clean_and_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_here(dir.path());
    let unit = unit.to_str().unwrap();
    let Some((ok, out)) = systemd_analyze(&["verify", unit]) else {
        return;
    };
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    let Some((ok, out)) = systemd_analyze(&["security", "--offline=yes", "--threshold=20", unit])
    else {
        return;
    };
    // "Overall exposure level for ecclusterd.service: 1.4 OK"
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("ecclusterd.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(ok && level <= 2.0, "exposure {level} (at most 2.0):\n{out}");
}

#[test]
fn the_unit_and_the_image_start_from_configurations_that_check() {
    let unit = deploy("ecclusterd.service");
    let image = deploy("Containerfile");
    // Both read /etc/ecclusterd/ecelerity-cluster.conf, which is conf/ as shipped.
    assert!(unit.contains("run -c /etc/ecclusterd/ecelerity-cluster.conf"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(
        unit.contains("Type=notify\n"),
        "the daemon speaks sd_notify"
    );
    assert!(image.contains("COPY conf/ /etc/ecclusterd/"));
    assert!(image.contains(r#"CMD ["run", "-c", "/etc/ecclusterd/ecelerity-cluster.conf"]"#));
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/ecelerity-cluster.conf");
    let (code, out, err) = run_cmd(&["check", "-c", conf.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
}

/// What the daemon tells a service manager through `$NOTIFY_SOCKET`, at a
/// path and at an abstract address (`@name`, as systemd gives it).
#[test]
fn it_tells_systemd_ready_reloading_and_stopping() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let dir = tempfile::tempdir().unwrap();
    let at_path = dir.path().join("notify");
    let abstract_name = format!("ecclusterd-test-{}", std::process::id());
    let sockets = [
        (
            UnixDatagram::bind(&at_path).unwrap(),
            at_path.display().to_string(),
        ),
        (
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).unwrap())
                .unwrap(),
            format!("@{abstract_name}"),
        ),
    ];
    for (sock, name) in sockets {
        sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let said = || {
            let mut buf = [0u8; 256];
            let n = sock.recv(&mut buf).expect("a notification");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let env = format!("NOTIFY_SOCKET={name}");
        let conf = crate::common::single_node_conf("");
        let mut node = crate::common::Node::start_wrapped(
            &["env", &env],
            crate::common::config_dir(&[("ecclusterd.conf", &conf)]),
            "ecclusterd.conf",
            &[],
        );
        assert_eq!(said(), "READY=1", "{name}");
        node.signal("HUP");
        assert_eq!(said(), "RELOADING=1", "{name}");
        assert_eq!(said(), "READY=1", "{name}");
        node.signal("TERM");
        assert_eq!(said(), "STOPPING=1", "{name}");
        assert!(node.wait_exit().success());
    }
}

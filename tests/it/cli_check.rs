//! `ecclusterd check` and `ecclusterd run` as an operator runs them: exit
//! codes, and the `file:line:column` they print for every broken config.

use crate::common;

use std::path::Path;

use common::*;

fn configs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

#[test]
fn check_on_the_default_config_prints_node_listeners_and_peers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = run_cmd(&["check"], Some(root));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("conf/ecelerity-cluster.conf is valid"),
        "{out}"
    );
    assert!(out.contains("node: node1"), "{out}");
    assert!(out.contains("ECCluster_Listener:\n  *:4802"), "{out}");
    assert!(out.contains("msgcserver_listener:\n  *:4809"), "{out}");
    assert!(out.contains("node1 127.0.0.1:4809  (this node)"), "{out}");
}

#[test]
fn check_falls_back_to_the_embedded_default_outside_the_repository() {
    let empty = tempfile::tempdir().unwrap();
    let (code, out, err) = run_cmd(&["check"], Some(empty.path()));
    if Path::new("/etc/ecclusterd/ecelerity-cluster.conf").exists() {
        return; // This machine has a system configuration; it wins, as documented.
    }
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("the built-in default configuration is valid"),
        "{out}"
    );
    assert!(out.contains("<embedded>/msgc_server.conf"), "{out}");
}

#[test]
fn check_names_the_node_and_refuses_one_not_in_peers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, _, err) = run_cmd(&["check", "--node", "mta7"], Some(root));
    assert_ne!(code, 0);
    assert!(
        err.contains("this node `mta7` is not in `peers` (which has: node1)"),
        "{err}"
    );
    assert!(err.contains("conf/msgc_server.conf:"), "{err}");
}

/// Each line of tests/configs/expected.txt, run through the real binary.
#[test]
fn check_refuses_every_broken_config_with_its_position() {
    let table = std::fs::read_to_string(configs().join("expected.txt")).unwrap();
    let mut n = 0;
    for line in table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let (name, l, c, msg) = (f[0], f[1], f[2], f[3]);
        let path = configs().join(name);
        let (code, out, err) = run_cmd(
            &["check", "-c", path.to_str().unwrap(), "--node", "node1"],
            None,
        );
        assert_ne!(code, 0, "{name} accepted:\n{out}");
        // An include error points into the included file; every other one into `name`.
        let at = format!(":{l}:{c}\n");
        assert!(err.contains(&at), "{name}: no `{at}` in:\n{err}");
        assert!(err.contains(msg), "{name}: no `{msg}` in:\n{err}");
        assert!(err.starts_with("error: "), "{name}:\n{err}");
        n += 1;
    }
    assert!(n >= 25, "only {n} broken configs");
}

#[test]
fn run_refuses_to_start_on_a_broken_config() {
    let path = configs().join("unknown_option.conf");
    let (code, _, err) = run_cmd(&["run", "-c", path.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("not started: the configuration has errors"),
        "{err}"
    );
}

#[test]
fn ecclusterd_conf_env_is_used_when_no_c_is_given() {
    let dir = config_dir(&[("x.conf", "msgc_server { bogus = 1 }\n")]);
    let out = std::process::Command::new(bin())
        .arg("check")
        .env("ECCLUSTERD_CONF", dir.path().join("x.conf"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.conf:1:15"), "{err}");
}

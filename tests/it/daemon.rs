//! The daemon as an operator starts and stops it.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn run_listens_on_both_listeners_and_stops_cleanly_on_sigterm() {
    let mut node = Node::start(&single_node_conf(""));
    // Both listeners accept connections.
    let _a = Line::connect(node.eccluster());
    let _b = Line::connect(node.msgc());
    let t = Instant::now();
    let status = node.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    node.wait_for_log("stopped");
}

#[test]
fn sigint_stops_too() {
    let mut node = Node::start(&single_node_conf(""));
    node.signal("INT");
    assert!(node.wait_exit().success());
}

#[test]
fn unknown_protocol_on_eccluster_gets_an_error_and_a_close() {
    let node = Node::start(&single_node_conf(""));
    let mut c = Line::connect(node.eccluster());
    c.send(b"HELLO\r\n");
    let line = c.line();
    assert!(line.starts_with("-ERR "), "got {line:?}");
    assert!(c.closed());
    // Another connection is unaffected.
    let mut d = Line::connect(node.eccluster());
    d.send(b"x");
    assert!(d.line().starts_with("-ERR "));
}

#[test]
fn connection_limit_refuses_the_one_over_and_keeps_the_others() {
    let conf = r#"
cluster { nodename = "node1" }
ECCluster_Listener { Listen "127.0.0.1:0" { max_connections = 2 } }
msgcserver_listener { Listen "127.0.0.1:0" { } }
"#;
    let mut node = Node::start(conf);
    let mut a = Line::connect(node.eccluster());
    let mut b = Line::connect(node.eccluster());
    // The daemon counts a connection once it has accepted it; a refused third
    // one proves both are counted.
    let mut c = Line::connect(node.eccluster());
    assert_eq!(c.line(), "-ERR 'maximum connections exceeded'");
    assert!(c.closed());
    node.wait_for_log("at max_connections (2)");
    // The first two are still served.
    a.send(b"?");
    assert!(a.line().starts_with("-ERR "));
    b.send(b"?");
    assert!(b.line().starts_with("-ERR "));
}

#[test]
fn bind_failure_names_listener_address_and_os_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let conf = format!(
        r#"
cluster {{ nodename = "node1" }}
ECCluster_Listener {{ Listen "127.0.0.1:{port}" {{ }} }}
msgcserver_listener {{ Listen "127.0.0.1:0" {{ }} }}
"#
    );
    let dir = config_dir(&[("e.conf", &conf)]);
    let conf_path = dir.path().join("e.conf");
    let (code, _out, err) = run_cmd(&["run", "-c", conf_path.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(err.contains("ECCluster_Listener"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
}

#[test]
fn unix_socket_listener_with_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("msgc.sock");
    let conf = format!(
        r#"
cluster {{ nodename = "node1" }}
ECCluster_Listener {{ Listen "127.0.0.1:0" {{ }} }}
msgcserver_listener {{
  Listen "127.0.0.1:0" {{ }}
  Listen "{}" {{ file_mode = 0600 }}
}}
"#,
        sock.display()
    );
    let mut node = Node::start(&conf);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    drop(s);
    assert!(node.stop().success());
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn sighup_reports_changes_and_keeps_running_on_a_bad_file() {
    let mut node = Node::start(&single_node_conf(""));
    let conf = node.path("ecclusterd.conf");
    std::fs::write(
        &conf,
        r#"
cluster { nodename = "node1" }
ECCluster_Listener { Listen "127.0.0.1:0" { } }
msgcserver_listener { Listen "127.0.0.1:0" { } Listen "127.0.0.2:0" { } }
"#,
    )
    .unwrap();
    node.signal("HUP");
    node.wait_for_log(r#"msgcserver_listener: Listen "127.0.0.2:0" added"#);
    std::fs::write(&conf, "msgc_server { port = }").unwrap();
    node.signal("HUP");
    node.wait_for_log("configuration not reloaded");
    // Still serving.
    let _c = Line::connect(node.msgc());
    assert!(node.stop().success());
}

#[test]
fn version_flag() {
    let (code, out, _) = run_cmd(&["--version"], None);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("ecclusterd {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The README's first command: `ecclusterd run` with no argument, from the
/// repository, serves conf/'s default on *:4802 and *:4809.
#[test]
fn run_with_no_argument_serves_the_default_ports() {
    for port in [4802, 4809] {
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
            eprintln!(
                "SKIPPED: port {port} is taken on this machine; cannot start the default config"
            );
            return;
        }
    }
    let mut child = std::process::Command::new(bin())
        .arg("run")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ECCLUSTERD_CONF")
        .env_remove("EC_NODE_NAME")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains(" ready ") {
            break;
        }
    }
    let log = seen.join("\n");
    // Every interface: one dual-stack socket, or IPv4 only on hosts without IPv6.
    for (listener, port) in [("ECCluster_Listener", 4802), ("msgcserver_listener", 4809)] {
        assert!(
            log.contains(&format!("{listener}: listening on [::]:{port}"))
                || log.contains(&format!("{listener}: listening on 0.0.0.0:{port}")),
            "{log}"
        );
    }
    let mut c = Line::connect("127.0.0.1:4809".parse().unwrap());
    assert!(c.line().starts_with("INFO "));
    let _d = Line::connect("127.0.0.1:4802".parse().unwrap());
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

//! HTTP_Listener on a 3-node cluster: liveness, readiness that flips to 503
//! on a minority node and back, the status JSON, `/metrics` that
//! `promtool check metrics` accepts, and a real Prometheus server scraping
//! all three nodes (`cargo xtask test` installs Debian's `prometheus`; the
//! Prometheus parts say SKIPPED without it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Nats, Node, cluster_confs, free_port};

const PATIENCE: Duration = Duration::from_secs(20);

/// `GET path` (HTTP/1.1, one request per connection): status code and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_owned())
}

/// Polls `path` until its answer is `done` (readiness and the status
/// snapshot follow the order, which the test cannot await otherwise); the
/// last answer on a timeout.
fn until_answer(addr: SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = get(addr, path);
        if done(got.0, &got.1) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `path` until it answers `code`.
fn until(addr: SocketAddr, path: &str, code: u16) -> (u16, String) {
    until_answer(addr, path, |c, _| c == code)
}

fn with_http(confs: Vec<String>) -> Vec<String> {
    confs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{c}\nHTTP_Listener {{ Listen \"127.0.0.{}:0\" {{ }} }}\n",
                i + 1
            )
        })
        .collect()
}

fn http(n: &Node) -> SocketAddr {
    n.addr("HTTP_Listener")
}

#[test]
fn health_readiness_status_and_metrics_on_a_cluster() {
    let confs = with_http(cluster_confs(3, ""));
    let mut nodes: Vec<Node> = confs.iter().map(|c| Node::start(c)).collect();
    for n in &mut nodes {
        n.wait_for_log("members node1 node2 node3 (");
    }
    for n in &nodes {
        assert_eq!(get(http(n), "/healthz"), (200, "ok\n".into()));
        assert_eq!(until(http(n), "/readyz", 200), (200, "ready\n".into()));
        let (code, json) = get(http(n), "/status");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["order"]["members"].as_array().map(Vec::len),
            Some(3),
            "{json}"
        );
        let (code, metrics) = get(http(n), "/metrics");
        assert_eq!(code, 200);
        for line in ["ecclusterd_ready 1", "ecclusterd_order_members 3"] {
            assert!(
                metrics.lines().any(|l| l == line),
                "no {line:?} in:\n{metrics}"
            );
        }
        promtool_check(&metrics);
    }
    assert_eq!(get(http(&nodes[0]), "/nope").0, 404);

    // A publish through the order shows in the commit-latency histogram, a
    // refused subscription (a bad subject) under its reason. The snapshot
    // behind /metrics follows the PONG by a moment: poll for it.
    let mut c = Nats::connect(nodes[0].msgc(), r#"{"verbose":false}"#);
    c.publish("orders.new", b"x");
    c.sync_empty();
    c.send(b"SUB a..b 1\r\n");
    c.expect_err("Invalid Subject");
    let (_, metrics) = until_answer(http(&nodes[0]), "/metrics", |_, m| {
        m.contains("ecclusterd_publish_commit_seconds_count 1")
    });
    for line in [
        "ecclusterd_publish_commit_seconds_count 1",
        "ecclusterd_publish_commit_seconds_bucket{le=\"+Inf\"} 1",
        "ecclusterd_refusals_total{reason=\"protocol\"} 1",
        "ecclusterd_refusals_total{reason=\"no_quorum\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }

    // A real Prometheus server scrapes all three.
    prometheus_scrapes(&nodes);

    // node1 alone is a minority: not ready, and it says why; then back.
    let mut n3 = nodes.pop().unwrap();
    let mut n2 = nodes.pop().unwrap();
    for n in [&mut n2, &mut n3] {
        n.child.kill().unwrap();
        n.wait_exit();
    }
    let (code, why) = until(http(&nodes[0]), "/readyz", 503);
    assert_eq!(code, 503, "{why}");
    assert!(why.starts_with("not ready: "), "{why}");
    assert_eq!(
        get(http(&nodes[0]), "/healthz").0,
        200,
        "alive all the same"
    );
    let mut n2 = Node::start(&confs[1]);
    n2.wait_for_log("members node1 node2 (");
    assert_eq!(until(http(&nodes[0]), "/readyz", 200).0, 200);
}

/// `promtool check metrics` on a scrape, when promtool is there.
fn promtool_check(metrics: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: promtool is not installed (Debian's prometheus package has it)");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(metrics.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}\n{metrics}"
    );
}

/// Starts Prometheus scraping every node each 200 ms and waits until its
/// query API returns `ecclusterd_ready` for all of them.
fn prometheus_scrapes(nodes: &[Node]) {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: prometheus is not installed (`cargo xtask test` installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = nodes.iter().map(|n| format!("'{}'", http(n))).collect();
    let yml = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: ecclusterd\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), yml).unwrap();
    let port = free_port("127.0.0.1");
    let web = format!("127.0.0.1:{port}");
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = web.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let ok = loop {
        if Instant::now() > deadline {
            break false;
        }
        if let Ok(s) = TcpStream::connect(addr) {
            drop(s);
            let (code, body) = get(addr, "/api/v1/query?query=ecclusterd_ready");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let n = v["data"]["result"].as_array().map_or(0, Vec::len);
            if code == 200 && n == nodes.len() {
                break true;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        ok,
        "Prometheus never had ecclusterd_ready of every node; last answer: {last}"
    );
}

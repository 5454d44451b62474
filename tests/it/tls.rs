//! TLS on both listeners, with certificates made at test time (rcgen): a TLS
//! client on msgcserver_listener sees `tls_required` and does pub/sub; a
//! plain client is refused; `require` wants a client certificate; a cluster
//! with mutual TLS links every pair, orders messages and pings over TLS node
//! links; a node whose certificate another CA signed is refused at the
//! handshake; a stalled handshake is closed at connect_timeout.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use ecclusterd::nats::conn::Connection;
use ecclusterd::net::tls::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and certificates it signs, written as PEM files into a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write");
        Pki {
            dir,
            ca: Issuer::new(params, key),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    /// `<name>.pem` and `<name>.key`, valid for `sans` (IPs or DNS names).
    fn issue(&self, name: &str, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let (c, k) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c.display().to_string(), k.display().to_string())
    }

    fn client_tls(&self, cert: Option<(&str, &str)>) -> ClientTls {
        let ca = std::fs::read(self.path("ca.pem")).expect("ca");
        let pair = cert.map(|(c, k)| (read(c), read(k)));
        ClientTls::new(
            &ca,
            pair.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
        .expect("client TLS")
    }
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p).expect("read")
}

fn tls_opts(cert: &str, key: &str, extra: &str) -> String {
    format!("tls_certificate = \"{cert}\" tls_key = \"{key}\" {extra}")
}

/// A single node whose msgcserver_listener has TLS with `opts`.
fn single(opts: &str, extra: &str) -> Node {
    Node::start(&format!(
        r#"
cluster {{ nodename = "node1" }}
ECCluster_Listener {{ Listen "127.0.0.1:0" {{ }} }}
msgcserver_listener {{ Listen "127.0.0.1:0" {{ {opts} }} }}
{extra}
"#
    ))
}

fn tls_connect(addr: &str, tls: &ClientTls) -> std::io::Result<Connection> {
    smol::block_on(Connection::connect_default_tls(addr, "tls-test", Some(tls)))
}

#[test]
fn tls_client_sees_tls_required_and_does_pub_sub() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("node1", &["127.0.0.1"]);
    let node = single(&tls_opts(&cert, &key, ""), "");
    let addr = node.msgc().to_string();
    let tls = pki.client_tls(None);
    smol::block_on(async {
        let mut sub = Connection::connect_default_tls(&addr, "sub", Some(&tls))
            .await
            .expect("TLS connect");
        assert_eq!(sub.info.tls_required, Some(true));
        assert_eq!(sub.info.tls_verify, None, "verify mode none");
        sub.subscribe("orders.>", None);
        sub.ping().await.expect("sub ping");
        let mut publ = Connection::connect_default_tls(&addr, "pub", Some(&tls))
            .await
            .expect("TLS connect");
        // Larger than one TLS record, to cross record boundaries.
        let big = vec![b'x'; 100_000];
        publ.publish("orders.eu", None, b"hello over TLS");
        publ.publish("orders.big", None, &big);
        publ.ping().await.expect("pub ping");
        let m = sub.next_msg().await.expect("message");
        assert_eq!(m.subject, "orders.eu");
        assert_eq!(&m.payload[..], b"hello over TLS");
        let m = sub.next_msg().await.expect("message");
        assert_eq!(m.payload.len(), big.len());
    });
    // The CLI tools speak TLS with --tls-ca, and say what is missing without it.
    let ca = pki.ca();
    let (code, out, err) = run_cmd(&["status", "--json", "-s", &addr, "--tls-ca", &ca], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"node\":\"node1\""), "{out}");
    let (code, _, err) = run_cmd(&["status", "-s", &addr], None);
    assert_ne!(code, 0);
    assert!(err.contains("requires TLS"), "{err}");
}

/// `ecclusterd bench` measures a TLS listener like any other.
#[test]
fn bench_runs_against_a_tls_listener() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("node1", &["127.0.0.1"]);
    let node = single(&tls_opts(&cert, &key, ""), "");
    let addr = node.msgc().to_string();
    let ca = pki.ca();
    let tls = ["-s", &addr, "--tls-ca", &ca, "--json"];
    let (code, out, err) = run_cmd(
        &[&["bench", "--msgs", "2000", "--sub", "2"][..], &tls].concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(r["msgs"], 2000, "{r}");
    assert_eq!(r["same_order"], true, "{r}");
    assert_eq!(r["fifo"], true, "{r}");
    let (code, out, err) = run_cmd(
        &[&["bench", "--latency", "--msgs", "50"][..], &tls].concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(r["msgs"], 50, "{r}");
    // Standard input is empty: the idle connections are let go at once.
    let (code, out, err) = run_cmd(
        &["bench", "--idle", "3", "-s", &addr, "--tls-ca", &ca],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ready 3"), "{out}");
    // Without --tls-ca it says what is missing.
    let (code, _, err) = run_cmd(&["bench", "--msgs", "10", "-s", &addr], None);
    assert_ne!(code, 0);
    assert!(err.contains("requires TLS"), "{err}");
}

#[test]
fn plain_client_on_a_tls_listener_is_refused() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("node1", &["127.0.0.1"]);
    let mut node = single(&tls_opts(&cert, &key, ""), "");
    let mut c = Line::connect(node.msgc());
    let info = c.line();
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains(r#""tls_required":true"#), "{info}");
    c.send(b"CONNECT {}\r\nPING\r\n");
    assert_eq!(c.line(), "-ERR 'Secure Connection - TLS Required'");
    assert!(c.closed());
    node.wait_for_log("plain text on a TLS listener; refused");
}

#[test]
fn a_client_certificate_from_the_ca_is_required_with_require() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("node1", &["127.0.0.1"]);
    let (ccert, ckey) = pki.issue("client", &["client.example"]);
    let opts = tls_opts(
        &cert,
        &key,
        &format!("tls_client_ca = \"{}\" tls_verify_mode = require", pki.ca()),
    );
    let mut node = single(&opts, "");
    let addr = node.msgc().to_string();
    let c = tls_connect(&addr, &pki.client_tls(Some((&ccert, &ckey)))).expect("with a cert");
    assert_eq!(c.info.tls_verify, Some(true));
    assert!(tls_connect(&addr, &pki.client_tls(None)).is_err());
    node.wait_for_log("TLS handshake failed");
    // A certificate from another CA is refused too.
    let other = Pki::new("other CA");
    let (ocert, okey) = other.issue("client", &["client.example"]);
    let ca = std::fs::read(pki.path("ca.pem")).expect("ca");
    let foreign = ClientTls::new(&ca, Some((&read(&ocert), &read(&okey)))).expect("tls");
    assert!(tls_connect(&addr, &foreign).is_err());
    // The CLI with --tls-cert/--tls-key.
    let (code, _, err) = run_cmd(
        &[
            "pub",
            "-s",
            &addr,
            "--tls-ca",
            &pki.ca(),
            "--tls-cert",
            &ccert,
            "--tls-key",
            &ckey,
            "x",
            "y",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_stalled_tls_handshake_is_closed_at_connect_timeout() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("node1", &["127.0.0.1"]);
    let conf = format!(
        r#"
cluster {{ nodename = "node1" }}
ECCluster_Listener {{ Listen "127.0.0.1:0" {{ {opts} }} }}
msgcserver_listener {{ Listen "127.0.0.1:0" {{ {opts} }} }}
msgc_client {{ connect_timeout = 0.5 }}
msgc_server {{ connect_timeout = 0.5 }}
"#,
        opts = tls_opts(&cert, &key, "")
    );
    let node = Node::start(&conf);
    // 4809: INFO, then the first byte of a handshake record, then nothing.
    let mut c = Line::connect(node.msgc());
    assert!(c.line().starts_with("INFO "));
    c.send(&[0x16]);
    let t0 = Instant::now();
    assert!(c.closed());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // 4802: TLS from the first byte; a connection that never starts is closed.
    let mut s = std::net::TcpStream::connect(node.eccluster()).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let t0 = Instant::now();
    let mut b = [0u8; 64];
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

/// A TLS-first ECCluster_Listener at its connection limit closes the one
/// over without writing plain text into what the dialler reads as TLS.
#[test]
fn a_tls_node_listener_at_its_limit_closes_without_plain_text() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("node1", &["127.0.0.1"]);
    let mut node = Node::start(&format!(
        r#"
cluster {{ nodename = "node1" }}
ECCluster_Listener {{ Listen "127.0.0.1:0" {{ {opts} max_connections = 1 }} }}
msgcserver_listener {{ Listen "127.0.0.1:0" {{ }} }}
"#,
        opts = tls_opts(&cert, &key, "")
    ));
    // The first connection holds the one slot while its handshake waits.
    let _first = std::net::TcpStream::connect(node.eccluster()).expect("connect");
    node.wait_for_log(&format!(
        "ECCluster_Listener {}: accepted",
        node.eccluster()
    ));
    let mut over = std::net::TcpStream::connect(node.eccluster()).expect("connect");
    over.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut got = Vec::new();
    let _ = over.read_to_end(&mut got);
    assert!(got.is_empty(), "wrote {:?}", String::from_utf8_lossy(&got));
    node.wait_for_log("at max_connections (1)");
}

/// Node `i`'s configuration (1-based) in a cluster of `ports.len()` nodes on
/// 127.0.0.i, TLS on both listeners with `cert`/`key` and the CA `ca`.
fn cluster_conf(i: usize, ports: &[u16], cert: &str, key: &str, ca: &str) -> String {
    let peers: String = ports
        .iter()
        .enumerate()
        .map(|(j, p)| format!("    node{} = \"127.0.0.{}:{p}\"\n", j + 1, j + 1))
        .collect();
    let opts = tls_opts(cert, key, &format!("tls_client_ca = \"{ca}\""));
    format!(
        r#"
cluster {{ nodename = "node{i}" }}
ECCluster_Listener {{ Listen "127.0.0.{i}:0" {{ {opts} }} }}
msgcserver_listener {{ Listen "127.0.0.{i}:{port}" {{ {opts} }} }}
msgc_server {{
  peers = [
{peers}  ]
  keepalive_interval = 0.2
  reconnect_interval = 0.1
}}
"#,
        port = ports[i - 1]
    )
}

fn ports(n: usize) -> Vec<u16> {
    (1..=n)
        .map(|i| free_port(&format!("127.0.0.{i}")))
        .collect()
}

#[test]
fn a_mutual_tls_cluster_links_orders_and_pings_over_tls() {
    let pki = Pki::new("cluster CA");
    let ports = ports(3);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let ip = format!("127.0.0.{i}");
            let (c, k) = pki.issue(&format!("node{i}"), &[&ip]);
            Node::start(&cluster_conf(i, &ports, &c, &k, &pki.ca()))
        })
        .collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        for j in 1..=3 {
            if j != i + 1 {
                node.wait_for_log(&format!("msgc peer node{j}: link up"));
            }
        }
        // The ordering view with every node: the links carry it.
        node.wait_for_log("members node1 node2 node3 (");
    }
    let ca = pki.ca();
    let (code, out, err) = run_cmd(
        &[
            "status",
            "--json",
            "-s",
            &nodes[0].msgc().to_string(),
            "--tls-ca",
            &ca,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    let states: Vec<&str> = s["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["self", "up", "up"], "{out}");

    // Ordered delivery across the cluster, clients on TLS too.
    let tls = pki.client_tls(None);
    let (a1, a3) = (nodes[0].msgc().to_string(), nodes[2].msgc().to_string());
    smol::block_on(async {
        let mut sub = Connection::connect_default_tls(&a3, "sub", Some(&tls))
            .await
            .expect("connect node3");
        sub.subscribe("t.>", None);
        sub.ping().await.expect("ping");
        // Subscriptions are node-local; wait until node3's is in place, then publish on node1.
        let mut publ = Connection::connect_default_tls(&a1, "pub", Some(&tls))
            .await
            .expect("connect node1");
        for i in 0..50 {
            publ.publish(&format!("t.{i}"), None, format!("m{i}").as_bytes());
        }
        publ.ping().await.expect("ping");
        for i in 0..50 {
            let m = sub.next_msg().await.expect("message");
            assert_eq!(m.subject, format!("t.{i}"));
        }
    });

    // ECCluster_Listener node links, TLS from the first byte, both ways.
    for (from, to) in [(0, 2), (2, 0)] {
        let (code, out, err) = run_cmd(
            &[
                "ping",
                &format!("node{}", to + 1),
                "--count",
                "2",
                "--interval",
                "0",
                "-s",
                &nodes[from].msgc().to_string(),
                "--tls-ca",
                &ca,
            ],
            None,
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("2 sent, 2 received, 0 lost"), "{out}");
    }
    let (code, out, err) = run_cmd(
        &[
            "status",
            "--node",
            "node2",
            "-s",
            &nodes[0].msgc().to_string(),
            "--tls-ca",
            &ca,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("node2"), "{out}");
}

#[test]
fn a_node_with_a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let pki = Pki::new("cluster CA");
    let rogue = Pki::new("rogue CA");
    let ports = ports(2);
    // node1 (the dialler: its name sorts first) presents a certificate the
    // cluster CA did not sign, though it trusts the cluster CA itself.
    let (c1, k1) = rogue.issue("node1", &["127.0.0.1"]);
    let (c2, k2) = pki.issue("node2", &["127.0.0.2"]);
    let mut n1 = Node::start(&cluster_conf(1, &ports, &c1, &k1, &pki.ca()));
    let mut n2 = Node::start(&cluster_conf(2, &ports, &c2, &k2, &pki.ca()));
    n2.wait_for_log("TLS handshake failed");
    n1.wait_for_log("msgc peer node2: cannot link");
    n1.pump();
    n2.pump();
    assert!(
        !n1.log.iter().any(|l| l.contains("link up")),
        "{:?}",
        n1.log
    );
    assert!(
        !n2.log.iter().any(|l| l.contains("link up")),
        "{:?}",
        n2.log
    );
}

#[test]
fn a_node_certificate_must_name_its_peers_host() {
    // Signed by the cluster CA, but for another address: the dialler's
    // client certificate does not name node1's host in peers.
    let pki = Pki::new("cluster CA");
    let ports = ports(2);
    let (c1, k1) = pki.issue("node1", &["127.0.0.1", "127.0.0.9"]);
    let (c1_wrong, k1_wrong) = pki.issue("node1-wrong", &["127.0.0.9"]);
    let (c2, k2) = pki.issue("node2", &["127.0.0.2"]);
    let _ = (c1, k1);
    let mut n2 = Node::start(&cluster_conf(2, &ports, &c2, &k2, &pki.ca()));
    let mut n1 = Node::start(&cluster_conf(1, &ports, &c1_wrong, &k1_wrong, &pki.ca()));
    n2.wait_for_log("is not valid for `127.0.0.1`");
    n1.wait_for_log("msgc peer node2: cannot link");
}

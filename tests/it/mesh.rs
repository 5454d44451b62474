//! The msgc server mesh between real nodes on 127.0.0.x: links come up
//! between every pair, carry each node's ECCluster_Listener address, go down
//! when a node dies and come back when it restarts; strangers are refused.

use crate::common;

use common::*;

fn start_cluster(n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = cluster_confs(n, "")
        .iter()
        .map(|c| Node::start(c))
        .collect();
    all_linked(&mut nodes);
    nodes
}

/// Waits until every node has logged a link to every other one.
fn all_linked(nodes: &mut [Node]) {
    let n = nodes.len();
    for (i, node) in nodes.iter_mut().enumerate() {
        for j in 1..=n {
            if j != i + 1 {
                node.wait_for_log(&format!("msgc peer node{j}: link up"));
            }
        }
    }
}

fn status_json(node: &Node) -> serde_json::Value {
    let (code, out, err) = run_cmd(&["status", "--json", "-s", &node.msgc().to_string()], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("status JSON")
}

#[test]
fn three_nodes_link_every_pair_and_advertise_eccluster_addresses() {
    let nodes = start_cluster(3);
    let s = status_json(&nodes[0]);
    let peers = s["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3);
    for (j, p) in peers.iter().enumerate() {
        assert_eq!(p["name"], format!("node{}", j + 1));
        if j == 0 {
            assert_eq!(p["state"], "self");
            continue;
        }
        assert_eq!(p["state"], "up", "{p}");
        // The address each node's ECCluster_Listener really has, as Momentum's
        // `cluster membership` shows it (`Address: ip:4802`).
        assert_eq!(p["eccluster"], nodes[j].eccluster().to_string(), "{p}");
    }
    let (code, out, _) = run_cmd(&["status", "-s", &nodes[1].msgc().to_string()], None);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("Address: {}", nodes[0].eccluster())),
        "{out}"
    );
}

#[test]
fn a_killed_node_goes_down_and_relinks_when_restarted() {
    let confs = cluster_confs(3, "");
    let mut nodes: Vec<Node> = confs.iter().map(|c| Node::start(c)).collect();
    all_linked(&mut nodes);
    nodes[2].child.kill().unwrap();
    nodes[2].wait_exit();
    nodes[0].wait_for_log("msgc peer node3: link down");
    nodes[1].wait_for_log("msgc peer node3: link down");
    let restarted = Node::start(&confs[2]);
    nodes[2] = restarted;
    nodes[2].wait_for_log("msgc peer node1: link up");
    nodes[2].wait_for_log("msgc peer node2: link up");
    let s = status_json(&nodes[0]);
    assert_eq!(s["peers"][2]["state"], "up", "{s}");
}

#[test]
fn a_peer_with_another_peers_list_is_refused_naming_the_entry() {
    let confs = cluster_confs(2, "");
    // node2 believes node1 lives elsewhere.
    let wrong = confs[1].replacen("node1 = \"127.0.0.1:", "node1 = \"127.0.0.9:", 1);
    let mut n2 = Node::start(&wrong);
    let mut n1 = Node::start(&confs[0]);
    let line = n2.wait_for_log("refused: peers lists differ");
    assert!(line.contains("`node1` is \"127.0.0.9:"), "{line}");
    assert!(line.contains("at `node1`"), "{line}");
    n1.wait_for_log("msgc peer node2: cannot link");
}

#[test]
fn strangers_and_impostors_are_refused_at_the_handshake() {
    let nodes = start_cluster(2);
    let peers_line = |node: &str| {
        // node2's view of the cluster, as node2 would send it.
        let s = status_json(&nodes[1]);
        let list: Vec<(String, String)> = s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["address"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        format!(
            "MSGC-PEER {}\r\n",
            serde_json::json!({"protocol": 2, "node": node, "peers": list, "eccluster": null})
        )
    };
    // A name not in peers.
    let mut c = Line::connect(nodes[1].msgc());
    assert!(c.line().starts_with("INFO "));
    c.send(peers_line("evil").as_bytes());
    assert_eq!(c.line(), "-ERR 'msgc peer refused: `evil` is not in peers'");
    assert!(c.closed());
    // node1's name, but from 127.0.0.2 instead of node1's 127.0.0.1 address.
    let s = std::net::TcpStream::connect(nodes[1].msgc()).unwrap();
    drop(s);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.2:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(&nodes[1].msgc().into()).unwrap();
    let stream: std::net::TcpStream = sock.into();
    let mut c = Line::from_stream(stream);
    assert!(c.line().starts_with("INFO "));
    c.send(peers_line("node1").as_bytes());
    let refused = c.line();
    assert!(
        refused.contains("`node1` is 127.0.0.1 in peers, but this connection comes from 127.0.0.2"),
        "{refused}"
    );
    // Clients on the same port are unaffected.
    let mut ok = Line::connect(nodes[1].msgc());
    assert!(ok.line().starts_with("INFO "));
    ok.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    assert_eq!(ok.line(), "PONG");
}

#[test]
fn peers_with_the_cluster_secret_link_and_a_wrong_secret_is_refused() {
    let (_d1, good) = secret_file("the-cluster-secret-of-this-test\n");
    let (_d2, bad) = secret_file("another-secret-entirely-000000\n");
    let confs = cluster_confs(3, &format!("  secret_file = \"{good}\""));
    let wrong = confs[2].replace(&good, &bad);
    let mut nodes: Vec<Node> = vec![
        Node::start(&confs[0]),
        Node::start(&confs[1]),
        Node::start(&wrong),
    ];
    nodes[0].wait_for_log("msgc peer node2: link up");
    nodes[1].wait_for_log("msgc peer node1: link up");
    // node3 holds another secret: both sides refuse, and say so with the address.
    let refused = nodes[2].wait_for_log("refused: authentication failed");
    assert!(refused.contains("127.0.0."), "{refused}");
    nodes[0].wait_for_log("msgc peer node3: cannot link");
    let s = status_json(&nodes[0]);
    assert_eq!(s["peers"][2]["state"], "down", "{s}");
    assert_eq!(s["peers"][1]["state"], "up", "{s}");
}

#[test]
fn a_node_without_the_secret_is_refused_with_a_clear_reason() {
    let (_d, good) = secret_file("the-cluster-secret-of-this-test\n");
    let confs = cluster_confs(2, &format!("  secret_file = \"{good}\""));
    let plain = confs[1].replace(&format!("  secret_file = \"{good}\""), "");
    let mut n1 = Node::start(&confs[0]);
    let _n2 = Node::start(&plain);
    let line = n1.wait_for_log("it has no cluster secret");
    assert!(line.contains("msgc peer node2: cannot link"), "{line}");
}

#[test]
fn a_replayed_handshake_is_refused() {
    use ecclusterd::mesh::secret::{Link, Proof, Secret};
    use ecclusterd::nats::proto::ServerInfo;
    let content = "the-cluster-secret-of-this-test";
    let (_d, path) = secret_file(content);
    let confs = cluster_confs(2, &format!("  secret_file = \"{path}\""));
    // Only node2 runs; we play node1 (which dials node2) from 127.0.0.1.
    let n2 = Node::start(&confs[1]);
    let secret = Secret::from_bytes(content.as_bytes()).unwrap();
    let peers: Vec<(String, String)> = status_json(&n2)["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    let info = |c: &mut Line| -> ServerInfo {
        let l = c.line();
        serde_json::from_str(l.strip_prefix("INFO ").unwrap()).unwrap()
    };
    let mut c = Line::connect(n2.msgc());
    let challenge = info(&mut c).msgc_peer_nonce.expect("a challenge in INFO");
    let ours = "00112233445566778899aabbccddeeff";
    let hello = format!(
        "MSGC-PEER {}\r\n",
        serde_json::json!({
            "protocol": 2, "node": "node1", "peers": peers, "eccluster": null,
            "nonce": ours, "mac": secret.hello_mac(&Proof {
                link: Link::Mesh,
                acceptor_nonce: &challenge,
                dialer_nonce: ours,
                dialer: "node1",
                acceptor: "node2",
            }),
        })
    );
    c.send(hello.as_bytes());
    assert!(
        c.line().starts_with("MSGC-PEER-OK "),
        "the real handshake works"
    );
    drop(c);
    // The same bytes on a new connection answer another challenge: refused.
    let mut again = Line::connect(n2.msgc());
    let fresh = info(&mut again).msgc_peer_nonce.unwrap();
    assert_ne!(fresh, challenge);
    again.send(hello.as_bytes());
    assert_eq!(
        again.line(),
        "-ERR 'msgc peer refused: authentication failed: wrong or no cluster secret'"
    );
    assert!(again.closed());
}

#[test]
fn a_secret_file_others_can_read_stops_check_and_run() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = secret_file("the-cluster-secret-of-this-test\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let confs = cluster_confs(2, &format!("  secret_file = \"{path}\""));
    let conf = dir.path().join("n1.conf");
    std::fs::write(&conf, &confs[0]).unwrap();
    for cmd in ["check", "run"] {
        let (code, _, err) = run_cmd(&[cmd, "-c", conf.to_str().unwrap()], None);
        assert_ne!(code, 0, "{cmd}");
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("n1.conf:"),
            "{cmd} names where secret_file is set: {err}"
        );
    }
}

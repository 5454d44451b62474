//! The msgc server mesh between real nodes on 127.0.0.x: links come up
//! between every pair, carry each node's ECCluster_Listener address, go down
//! when a node dies and come back when it restarts; strangers are refused.

mod common;

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
            serde_json::json!({"protocol": 1, "node": node, "peers": list, "eccluster": null})
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

//! The node protocol on ECCluster_Listener between real nodes on 127.0.0.x:
//! node requests (`ping`, `status --node`) over direct links, refusals at the
//! handshake, bad frames closing only their link, and `send-file`.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};

/// Starts `confs` and waits until every mesh link is up (so every node knows
/// every other node's ECCluster_Listener address).
fn start(confs: &[String]) -> Vec<Node> {
    let mut nodes: Vec<Node> = confs.iter().map(|c| Node::start(c)).collect();
    let n = nodes.len();
    for (i, node) in nodes.iter_mut().enumerate() {
        for j in 1..=n {
            if j != i + 1 {
                node.wait_for_log(&format!("msgc peer node{j}: link up"));
            }
        }
    }
    nodes
}

/// Gives `node` (0-based) an `incoming_dir`.
fn with_incoming(mut confs: Vec<String>, node: usize, dir: &Path) -> Vec<String> {
    confs[node] = confs[node].replace(
        "ECCluster_Listener {",
        &format!("ECCluster_Listener {{ incoming_dir = \"{}\"", dir.display()),
    );
    confs
}

fn cli(node: &Node, args: &[&str]) -> (i32, String, String) {
    let server = node.msgc().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-s", &server]);
    run_cmd(&all, None)
}

fn status_json(node: &Node) -> serde_json::Value {
    let (code, out, err) = cli(node, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("status JSON")
}

fn counter(s: &serde_json::Value, name: &str) -> u64 {
    s[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in status: {s}"))
}

#[test]
fn ping_and_remote_status_over_direct_links_and_prompt_failures() {
    let mut nodes = start(&cluster_confs(3, ""));
    let before = status_json(&nodes[0]);

    let (code, out, err) = cli(
        &nodes[0],
        &["ping", "node2", "--count", "3", "--interval", "0"],
    );
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("{out}");
    for seq in 1..=3 {
        assert!(
            out.contains(&format!("reply from node2: seq={seq} time=")),
            "{out}"
        );
    }
    assert!(out.contains("3 sent, 3 received, 0 lost"), "{out}");
    assert!(out.contains("rtt min/avg/max = "), "{out}");

    // Counters grew on both ends: 3 pings out and 3 pongs in at node1.
    let after = status_json(&nodes[0]);
    for f in ["direct_frames_out", "direct_frames_in"] {
        assert!(
            counter(&after, f) >= counter(&before, f) + 3,
            "{f}: {before} -> {after}"
        );
    }
    assert!(counter(&after, "direct_bytes_out") > counter(&before, "direct_bytes_out"));
    let n2 = status_json(&nodes[1]);
    assert!(counter(&n2, "direct_frames_in") >= 3, "{n2}");
    let (_, text, _) = cli(&nodes[0], &["status"]);
    assert!(text.contains("direct frames in: "), "{text}");

    // node3's status, fetched by node1 over the direct link.
    let (code, out, err) = cli(&nodes[0], &["status", "--node", "node3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(s["node"], "node3");
    assert!(counter(&s, "direct_frames_in") >= 1, "{s}");
    let (code, out, _) = cli(&nodes[0], &["status", "--node", "node3"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("node node3 "), "{out}");

    // Unknown node: refused at once, by name.
    let (code, _, err) = cli(&nodes[0], &["ping", "node9", "--count", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("node node9: `node9` is not in peers"), "{err}");
    let (code, _, err) = cli(&nodes[0], &["status", "--node", "node9"]);
    assert_ne!(code, 0);
    assert!(err.contains("`node9` is not in peers"), "{err}");

    // A stopped node: an error naming it, not a hang.
    assert!(nodes[2].stop().success());
    nodes[0].wait_for_log("msgc peer node3: link down");
    let (code, _, err) = cli(&nodes[0], &["ping", "node3", "--count", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("node node3: "), "{err}");
    let (code, _, err) = cli(&nodes[0], &["status", "--node", "node3"]);
    assert_ne!(code, 0);
    assert!(err.contains("node node3: "), "{err}");
    eprintln!("stopped node: {err}");
}

/// The `peers` list as the handshake carries it, from a node's status.
fn peers_json(node: &Node) -> String {
    let s = status_json(node);
    let list: Vec<(String, String)> = s["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    serde_json::to_string(&list).unwrap()
}

fn hello(node: &str, to: &str, peers: &str) -> Vec<u8> {
    format!("ECCLUSTER-NODE {{\"protocol\":1,\"node\":\"{node}\",\"to\":\"{to}\",\"peers\":{peers}}}\r\n")
        .into_bytes()
}

/// A TCP connection to `to` that leaves from `from_ip`.
fn connect_from(from_ip: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from_ip}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn strangers_are_refused_and_bad_frames_close_only_their_link() {
    let mut nodes = start(&cluster_confs(3, ""));
    let peers = peers_json(&nodes[0]);
    let target = nodes[0].eccluster();

    // A name not in peers.
    let mut c = Line::connect(target);
    c.send(&hello("stranger", "node1", &peers));
    let l = c.line();
    assert!(
        l.starts_with("-ERR 'ECCluster_Listener: node refused: `stranger` is not in peers"),
        "{l}"
    );
    assert!(c.closed());
    nodes[0].wait_for_log("refused: `stranger` is not in peers");

    // A peer's name from the wrong address (node2 is 127.0.0.2).
    let mut c = Line::connect(target);
    c.send(&hello("node2", "node1", &peers));
    let l = c.line();
    assert!(l.contains("this connection comes from 127.0.0.1"), "{l}");
    assert!(c.closed());

    // Another cluster (different peers list).
    let mut c = Line::connect(target);
    c.send(&hello("node2", "node1", "[[\"node2\",\"127.0.0.2:1\"]]"));
    assert!(c.line().contains("peers lists differ"));

    // Not a handshake at all.
    let mut c = Line::connect(target);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        c.line()
            .starts_with("-ERR 'ECCluster_Listener: node refused: not a node handshake")
    );
    assert!(c.closed());

    // A real node2 link (from 127.0.0.2), then an oversize frame on it.
    for (bad, why) in [
        (
            vec![0x7f, 0xff, 0xff, 0xff, 1],
            "over the 1048576-byte limit",
        ),
        (vec![0, 0, 0, 1, 200], "unknown frame kind 200"),
    ] {
        let mut raw = Line::from_stream(connect_from("127.0.0.2", target));
        raw.send(&hello("node2", "node1", &peers));
        assert_eq!(
            raw.line(),
            "ECCLUSTER-NODE-OK {\"protocol\":1,\"node\":\"node1\"}"
        );
        // A valid ping first: answered with a pong of the same id.
        raw.send(&[0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(raw.read_exact(13), [0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0, 42]);
        raw.send(&bad);
        assert!(raw.closed(), "{why}");
        nodes[0].wait_for_log(why);
        // Everything else keeps working: node1 reaches node2 and node3.
        for peer in ["node2", "node3"] {
            let (code, out, err) = cli(
                &nodes[0],
                &["ping", peer, "--count", "1", "--interval", "0"],
            );
            assert_eq!(code, 0, "{peer} after {why}: {out}{err}");
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn send_file_streams_20_mb_verified_and_refuses_what_it_must() {
    let incoming = tempfile::tempdir().unwrap();
    let confs = with_incoming(cluster_confs(3, ""), 1, incoming.path());
    let nodes = start(&confs);

    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("mainlog.ec");
    let mut rng = Rng(0x5eed_f11e);
    let mut data = Vec::with_capacity(20 << 20);
    while data.len() < 20 << 20 {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&data))
        .unwrap();
    let want = sha256_hex(&data);

    let p = path.to_str().unwrap();
    let (code, out, err) = cli(&nodes[0], &["send-file", "node2", p]);
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("{out}");
    assert!(out.contains("20971520 bytes"), "{out}");
    assert!(out.contains("MB/s"), "{out}");
    assert!(out.contains(&format!("sha256 {want}")), "{out}");
    let mut got = Vec::new();
    std::fs::File::open(incoming.path().join("mainlog.ec"))
        .and_then(|mut f| f.read_to_end(&mut got))
        .unwrap();
    assert!(got == data, "received file differs");
    let names: Vec<_> = std::fs::read_dir(incoming.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mainlog.ec"], "no temp files left");

    // node3 has no incoming_dir.
    let (code, _, err) = cli(&nodes[0], &["send-file", "node3", p]);
    assert_ne!(code, 0);
    assert!(
        err.contains("node node3: ") && err.contains("incoming_dir"),
        "{err}"
    );
    // Relative paths, directories and missing files are refused by the sender.
    let (code, _, err) = cli(&nodes[0], &["send-file", "node2", "mainlog.ec"]);
    assert_ne!(code, 0);
    assert!(err.contains("is not an absolute path"), "{err}");
    let (code, _, err) = cli(
        &nodes[0],
        &["send-file", "node2", src.path().to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not a regular file"), "{err}");
    let missing = src.path().join("nope");
    let (code, _, err) = cli(
        &nodes[0],
        &["send-file", "node2", missing.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn idle_links_close_and_the_next_use_dials_again() {
    let mut nodes = start(&cluster_confs(2, "  idle_timeout = 0.3"));
    let ping = |n: &Node| cli(n, &["ping", "node2", "--count", "2", "--interval", "0"]);
    let (code, out, err) = ping(&nodes[0]);
    assert_eq!(code, 0, "{out}{err}");
    // Both pings used one link, closed when idle (lines before "closed"
    // have been read once it is seen; either end may close it first).
    nodes[0].wait_for_log("node link node2: ended");
    let ups = |n: &Node| {
        n.log
            .iter()
            .filter(|l| l.contains("node link node2: up"))
            .count()
    };
    assert_eq!(ups(&nodes[0]), 1, "{}", nodes[0].log.join("\n"));
    nodes[0].log.clear();
    let (code, out, err) = ping(&nodes[0]);
    assert_eq!(code, 0, "{out}{err}");
    nodes[0].wait_for_log("node link node2: up");
}

#[test]
fn node_links_authenticate_with_the_cluster_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.secret");
    std::fs::write(&path, "the-cluster-secret-of-this-test\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let confs = cluster_confs(2, &format!("  secret_file = \"{}\"", path.display()));
    let mut nodes = start(&confs);
    // node1 → node2 over a direct link that proved the secret both ways.
    let (code, out, err) = cli(
        &nodes[0],
        &["ping", "node2", "--count", "1", "--interval", "1"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // A stranger gets the challenge first, and no answer to it is refused.
    let peers = peers_json(&nodes[1]);
    let mut s = connect_from("127.0.0.1", nodes[1].eccluster());
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert!(line.starts_with("ECCLUSTER-CHALLENGE "), "{line}");
    s.write_all(&hello("node1", "node2", &peers)).unwrap();
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut r, &mut answer).unwrap();
    assert_eq!(
        answer.trim_end(),
        "-ERR 'ECCluster_Listener: node refused: authentication failed: wrong or no cluster secret'"
    );
    nodes[1].wait_for_log("authentication failed");
}

#[test]
fn replies_to_another_nodes_request_go_straight_to_it() {
    let mut nodes = start(&cluster_confs(3, ""));
    // The request itself is ordered: wait until every node delivers.
    for n in &mut nodes {
        n.wait_for_log("members node1 node2 node3 (");
    }
    let before = (status_json(&nodes[0]), status_json(&nodes[2]));
    // A responder on node3, a requester on node1 (as `ecclusterd request` is).
    let mut responder = Nats::quiet(nodes[2].msgc());
    responder.send(b"SUB svc.echo 1\r\n");
    responder.sync_empty();
    let server = nodes[0].msgc().to_string();
    let requester = std::thread::spawn(move || {
        run_cmd(
            &[
                "request",
                "-s",
                &server,
                "svc.echo",
                "hello",
                "--timeout",
                "20000",
            ],
            None,
        )
    });
    let req = responder.msg();
    let reply_to = req.reply.clone().expect("a reply subject");
    responder.publish(&reply_to, b"hello back");
    responder.sync_empty();
    let (code, out, err) = requester.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "hello back");
    // The reply left node3 on its direct link to node1, not through the order.
    let after = (status_json(&nodes[0]), status_json(&nodes[2]));
    assert!(
        counter(&after.1, "direct_frames_out") > counter(&before.1, "direct_frames_out"),
        "node3 sent no direct frame: {}",
        after.1
    );
    assert!(
        counter(&after.0, "direct_frames_in") > counter(&before.0, "direct_frames_in"),
        "node1 received no direct frame: {}",
        after.0
    );
}

#[test]
fn messages_to_a_private_name_go_straight_to_its_node() {
    let mut nodes = start(&cluster_confs(3, ""));
    for n in &mut nodes {
        n.wait_for_log("members node1 node2 node3 (");
    }
    // A member on node1 listens on its private name, as msgc members do.
    let mut member = Nats::quiet(nodes[0].msgc());
    let name = member.name();
    assert!(name.ends_with("#node1"), "{name}");
    member.send(format!("SUB {name} 1\r\n").as_bytes());
    member.sync_empty();
    let before = status_json(&nodes[2]);
    let mut other = Nats::quiet(nodes[2].msgc());
    for k in 0..3 {
        other.publish(&name, format!("private {k}").as_bytes());
    }
    other.sync_empty();
    for k in 0..3 {
        let d = member.msg();
        assert_eq!(d.subject, name);
        assert_eq!(d.payload, format!("private {k}").as_bytes());
    }
    let after = status_json(&nodes[2]);
    assert!(
        counter(&after, "direct_frames_out") >= counter(&before, "direct_frames_out") + 3,
        "{after}"
    );
}

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[test]
fn a_100_mb_transfer_keeps_memory_bounded_and_small_messages_flowing() {
    let incoming = tempfile::tempdir().unwrap();
    let confs = with_incoming(cluster_confs(2, ""), 1, incoming.path());
    let nodes = start(&confs);
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("big.bin");
    // 100 MiB, written in pieces so the test itself stays small.
    let mut want = Sha256::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut rng = Rng(0xb16_f11e);
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..100 {
            for chunk in block.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            want.update(&block);
            f.write_all(&block).unwrap();
        }
    }
    let want: String = want.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let sender = {
        let server = nodes[0].msgc().to_string();
        let p = path.to_str().unwrap().to_owned();
        std::thread::spawn(move || run_cmd(&["send-file", "node2", &p, "-s", &server], None))
    };
    // Small messages keep flowing on the same link while the file streams.
    let mut pings = 0;
    while !sender.is_finished() {
        let (code, out, err) = cli(
            &nodes[0],
            &["ping", "node2", "--count", "1", "--interval", "1"],
        );
        assert_eq!(code, 0, "{out}{err}");
        pings += 1;
    }
    let (code, out, err) = sender.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("sha256 {want}")), "{out}");
    assert!(pings >= 1);
    // The receiver never held more than a bounded window: its peak RSS stays
    // far below the 100 MiB it wrote.
    let peak = rss_kib(nodes[1].child.id());
    assert!(peak < 48 * 1024, "receiver peak RSS {peak} KiB");
    eprintln!("100 MiB: {out}; {pings} pings meanwhile; receiver peak RSS {peak} KiB");
}

#[test]
fn a_request_to_a_member_on_an_unreachable_node_gets_no_responders() {
    let confs = cluster_confs(3, "");
    let mut nodes = start(&confs);
    for n in &mut nodes {
        n.wait_for_log("members node1 node2 node3 (");
    }
    // node3 goes away; node1 and node2 keep a majority.
    let mut n3 = nodes.pop().unwrap();
    n3.child.kill().unwrap();
    n3.wait_exit();
    let mut c = Nats::connect(nodes[0].msgc(), WITH_HEADERS);
    c.send(b"SUB _INBOX.req.* 9\r\nPUB #5#node3 _INBOX.req.1 4\r\nping\r\n");
    let d = c.msg();
    assert_eq!(d.subject, "_INBOX.req.1");
    assert!(
        d.headers
            .as_deref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 503")),
        "{d:?}"
    );
}

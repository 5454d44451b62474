//! `ecclusterd bench --idle N`: holds N connections, reports how many it could open.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Node, single_node_conf};

/// Runs `bench --idle n` against `node`, returns its `ready` line, then closes its stdin
/// and checks it exits 0.
fn idle(node: &Node, n: usize) -> String {
    let mut child = Command::new(common::bin())
        .args([
            "bench",
            "-s",
            &node.msgc().to_string(),
            "--idle",
            &n.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bench --idle");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready line");
    drop(child.stdin.take());
    assert!(child.wait().expect("wait").success());
    line.trim().to_owned()
}

#[test]
fn idle_holds_connections_and_reports_how_many_it_got() {
    let node = Node::start(&single_node_conf(""));
    assert_eq!(idle(&node, 300), "ready 300");

    let capped = single_node_conf("").replace(
        "msgcserver_listener { Listen \"127.0.0.1:0\" { } }",
        "msgcserver_listener { Listen \"127.0.0.1:0\" { max_connections = 5 } }",
    );
    let node = Node::start(&capped);
    assert_eq!(idle(&node, 20), "ready 5");
}

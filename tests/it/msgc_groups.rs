//! msgc on the bus: group membership events, `$MSGC.STATUS`, and the CLI
//! client tools end to end.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::*;
use ecclusterd::nats::proto::headers::parse_headers;
use serde_json::{Value, json};

fn node() -> Node {
    Node::start(&single_node_conf(""))
}

fn event(c: &mut Nats, group: &str) -> Value {
    let d = c.msg();
    assert_eq!(d.subject, format!("$MSGC.GROUP.{group}"));
    serde_json::from_slice(&d.payload).expect("event is JSON")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn joins_and_leaves_are_announced_in_order() {
    let node = node();
    let mut obs = Nats::quiet(node.msgc());
    obs.send(b"SUB $MSGC.GROUP.ec_cluster 1\r\n");
    obs.sync_empty();
    // A header-capable observer sees the daemon as the sender.
    let mut hobs = Nats::connect(node.msgc(), WITH_HEADERS);
    hobs.send(b"SUB $MSGC.GROUP.* 1\r\n");
    hobs.sync_empty();

    let mut a = Nats::quiet(node.msgc());
    let mut b = Nats::quiet(node.msgc());
    let (na, nb) = (a.name(), b.name());

    a.send(b"SUB ec_cluster 1\r\n");
    a.sync_empty();
    assert_eq!(
        event(&mut obs, "ec_cluster"),
        json!({"event": "join", "member": na, "group": "ec_cluster", "members": [na]})
    );
    b.send(b"SUB ec_cluster 5\r\n");
    b.sync_empty();
    assert_eq!(
        event(&mut obs, "ec_cluster"),
        json!({"event": "join", "member": nb, "group": "ec_cluster",
               "members": sorted(vec![na.clone(), nb.clone()])})
    );
    // A second subscription to a group one is in is no new membership, and
    // dropping one of the two is no leave.
    b.send(b"SUB ec_cluster 6\r\nUNSUB 6\r\n");
    b.sync_empty();
    a.send(b"UNSUB 1\r\n");
    a.sync_empty();
    assert_eq!(
        event(&mut obs, "ec_cluster"),
        json!({"event": "leave", "member": na, "group": "ec_cluster", "members": [nb]})
    );
    // Disconnecting leaves every group.
    drop(b);
    assert_eq!(
        event(&mut obs, "ec_cluster"),
        json!({"event": "leave", "member": nb, "group": "ec_cluster", "members": []})
    );
    obs.sync_empty();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let d = hobs.msg();
        let h = parse_headers(d.headers.as_deref().expect("HMSG")).unwrap();
        assert_eq!(h.get("Msgc-Sender"), Some("#ecclusterd#node1"));
        let v: Value = serde_json::from_slice(&d.payload).unwrap();
        seen.push(format!("{} {}", v["event"], v["member"]));
    }
    assert_eq!(
        seen,
        [
            format!("\"join\" \"{na}\""),
            format!("\"join\" \"{nb}\""),
            format!("\"leave\" \"{na}\""),
            format!("\"leave\" \"{nb}\""),
        ]
    );
    hobs.sync_empty();
}

#[test]
fn wildcard_inbox_and_system_subscriptions_are_not_groups() {
    let node = node();
    let mut obs = Nats::quiet(node.msgc());
    obs.send(b"SUB $MSGC.GROUP.> 1\r\n");
    obs.sync_empty();
    let mut c = Nats::quiet(node.msgc());
    c.send(
        b"SUB ec_cluster.* 1\r\nSUB ec.> 2\r\nSUB * 3\r\nSUB > 4\r\n\
          SUB _INBOX.abc 5\r\nSUB _INBOX.def.ghi 6\r\nSUB $MSGC.STATUS 7\r\n",
    );
    c.sync_empty();
    c.send(b"UNSUB 1\r\nUNSUB 2\r\nUNSUB 3\r\nUNSUB 4\r\nUNSUB 5\r\nUNSUB 6\r\nUNSUB 7\r\n");
    c.sync_empty();
    // The next event is this marker's join: nothing came before it.
    c.send(b"SUB marker 8\r\n");
    c.sync_empty();
    let ev = event(&mut obs, "marker");
    assert_eq!(ev["event"], "join");
    assert_eq!(ev["member"], c.name());
    obs.sync_empty();
    let st = status(&mut c);
    assert_eq!(st["groups"], 1, "{st}");
}

#[test]
fn status_request_answers_with_the_node_figures() {
    let node = node();
    let mut sub = Nats::quiet(node.msgc());
    sub.send(b"SUB x 1\r\nSUB grp 2\r\n");
    sub.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    for _ in 0..3 {
        p.publish("x", b"12345");
    }
    p.sync_empty();
    assert_eq!(sub.sync_msgs().len(), 3);

    let st = status(&mut p);
    assert_eq!(st["node"], "node1");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["connections"], 2, "{st}");
    assert_eq!(st["connections_total"], 2, "{st}");
    // x, grp, and the status request's inbox.
    assert_eq!(st["subscriptions"], 3, "{st}");
    assert_eq!(st["groups"], 2, "{st}");
    // Three publishes and the status request itself.
    assert_eq!(st["msgs_in"], 4, "{st}");
    assert_eq!(st["msgs_out"], 3, "{st}");
    assert_eq!(st["bytes_out"], 15, "{st}");
    assert!(st["bytes_in"].as_u64().unwrap() > 15, "{st}");
    assert_eq!(st["slow_consumers"], 0);
    assert_eq!(st["auth_failures"], 0);
    assert!(st["uptime_secs"].as_f64().unwrap() >= 0.0);
    let listeners = st["listeners"].as_array().unwrap();
    assert!(
        listeners.contains(&json!({
            "listener": "msgcserver_listener",
            "address": node.msgc().to_string()
        })),
        "{st}"
    );
    // A header client gets the status too, and counters move on: the first
    // status reply was one more message out.
    let mut h = Nats::connect(node.msgc(), WITH_HEADERS);
    let st = status(&mut h);
    assert_eq!(st["msgs_in"], 5, "{st}");
    assert_eq!(st["msgs_out"], 4, "{st}");
    assert_eq!(st["connections"], 3, "{st}");
}

#[test]
fn status_always_has_a_responder() {
    let node = node();
    // A no_responders client asking for status gets the answer, not a 503.
    let mut c = Nats::connect(node.msgc(), WITH_HEADERS);
    let st = status(&mut c);
    assert_eq!(st["node"], "node1");
    c.sync_empty();
}

#[test]
fn cli_status_prints_text_and_json() {
    let node = node();
    let addr = node.msgc().to_string();
    let (code, out, err) = run_cmd(&["status", "-s", &addr], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("node node1 (ecclusterd "), "{out}");
    assert!(out.contains("connections: 1 open"), "{out}");
    assert!(out.contains("slow consumers cut off: 0"), "{out}");
    assert!(
        out.contains(&format!("listener msgcserver_listener: {addr}")),
        "{out}"
    );

    let (code, out, err) = run_cmd(&["status", "-s", &addr, "--json"], None);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("--json prints JSON");
    assert_eq!(v["node"], "node1");
    // The earlier `status` command was a connection too.
    assert_eq!(v["connections_total"], 2, "{v}");
    assert!(v["listeners"].is_array());

    // Nothing listening: a clear failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = run_cmd(&["status", "-s", &dead], None);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("cannot connect to {dead}")), "{err}");
}

/// Collects a child's pipe line by line on a thread.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn cli_sub_and_pub_end_to_end() {
    let node = node();
    let addr = node.msgc().to_string();
    let mut child = Command::new(bin())
        .args(["sub", "-s", &addr, "orders.*", "--count", "2"])
        .env_remove("ECCLUSTERD_CONF")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sub");
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    // It says so once the node has its subscription.
    let said = err.recv_timeout(PATIENCE).expect("sub says it listens");
    assert_eq!(said, format!("listening on orders.* at {addr}"));

    let (code, _, e) = run_cmd(&["pub", "-s", &addr, "orders.eu", "hello there"], None);
    assert_eq!(code, 0, "{e}");
    assert!(e.contains("published 1 message(s) to orders.eu"), "{e}");
    // A subject the subscription does not match is not printed.
    let (code, _, e) = run_cmd(&["pub", "-s", &addr, "other", "no"], None);
    assert_eq!(code, 0, "{e}");
    let (code, _, e) = run_cmd(&["pub", "-s", &addr, "orders.us", "second"], None);
    assert_eq!(code, 0, "{e}");

    let first = out.recv_timeout(PATIENCE).expect("first line");
    let second = out.recv_timeout(PATIENCE).expect("second line");
    assert!(
        first.starts_with("[#1] orders.eu from #") && first.ends_with("#node1: hello there"),
        "{first}"
    );
    assert!(
        second.starts_with("[#2] orders.us from #") && second.ends_with("#node1: second"),
        "{second}"
    );
    // --count 2: it exits by itself, successfully, with nothing more printed.
    assert!(out.recv_timeout(PATIENCE).is_err(), "stdout ends");
    assert!(child.wait().unwrap().success());
}

#[test]
fn cli_request_gets_the_reply_or_says_nobody_answered() {
    let node = node();
    let addr = node.msgc().to_string();
    let mut svc = Nats::quiet(node.msgc());
    svc.send(b"SUB time.now 1\r\n");
    svc.sync_empty();
    let req = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            run_cmd(&["request", "-s", &addr, "time.now", "what time"], None)
        })
    };
    let q = svc.msg();
    assert_eq!(&q.payload[..], b"what time");
    let reply = q.reply.expect("a reply subject");
    assert!(reply.starts_with("_INBOX."), "{reply}");
    svc.publish(&reply, b"noon");
    let (code, out, err) = req.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "noon\n");

    let (code, out, err) = run_cmd(&["request", "-s", &addr, "nobody.here", "hi"], None);
    assert_ne!(code, 0);
    assert_eq!(out, "");
    assert!(err.contains("no responders on nobody.here"), "{err}");
}

#[test]
fn resubscribing_a_sid_to_the_same_group_is_no_leave_and_join() {
    let node = node();
    let mut obs = Nats::quiet(node.msgc());
    obs.send(b"SUB $MSGC.GROUP.> 1\r\n");
    obs.sync_empty();
    let mut c = Nats::quiet(node.msgc());
    let name = c.name();
    c.send(b"SUB ec_cluster 1\r\n");
    c.sync_empty();
    assert_eq!(event(&mut obs, "ec_cluster")["event"], "join");
    // The same sid again replaces the subscription; membership is unchanged.
    c.send(b"SUB ec_cluster 1\r\n");
    c.sync_empty();
    obs.sync_empty();
    // Moving the sid to another group is a join there and a leave here.
    c.send(b"SUB ec_console 1\r\n");
    c.sync_empty();
    let mut got = vec![event_any(&mut obs), event_any(&mut obs)];
    got.sort_by_key(|v| v["group"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        got,
        [
            json!({"event": "leave", "member": name, "group": "ec_cluster", "members": []}),
            json!({"event": "join", "member": name, "group": "ec_console", "members": [name]}),
        ]
    );
    // The replaced subscription no longer delivers.
    c.send(b"PUB ec_cluster 0\r\n\r\n");
    c.sync_empty();
}

fn event_any(c: &mut Nats) -> Value {
    let d = c.msg();
    assert!(d.subject.starts_with("$MSGC.GROUP."), "{}", d.subject);
    serde_json::from_slice(&d.payload).expect("event is JSON")
}

#[test]
fn a_member_whose_unsub_max_runs_out_leaves_after_its_last_message() {
    let node = node();
    let mut obs = Nats::quiet(node.msgc());
    obs.send(b"SUB $MSGC.GROUP.ec_cluster 1\r\n");
    obs.sync_empty();
    let mut c = Nats::quiet(node.msgc());
    let name = c.name();
    c.send(b"SUB ec_cluster 1\r\nUNSUB 1 2\r\n");
    c.sync_empty();
    assert_eq!(event(&mut obs, "ec_cluster")["event"], "join");
    let mut p = Nats::quiet(node.msgc());
    p.publish("ec_cluster", b"one");
    p.sync_empty();
    obs.sync_empty();
    p.publish("ec_cluster", b"two");
    p.sync_empty();
    assert_eq!(
        event(&mut obs, "ec_cluster"),
        json!({"event": "leave", "member": name, "group": "ec_cluster", "members": []})
    );
    let got: Vec<_> = c.sync_msgs().into_iter().map(|d| d.payload).collect();
    assert_eq!(got, [&b"one"[..], &b"two"[..]]);
}

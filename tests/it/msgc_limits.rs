//! Every `-ERR` a client of msgcserver_listener can get, and what happens to
//! its connection (closed or kept) and to everyone else's.

use crate::common;

use common::*;
use ecclusterd::nats::proto::ServerOp;

fn node_with(msgc_server: &str) -> Node {
    Node::start(&single_node_conf(&format!(
        "msgc_server {{ {msgc_server} }}"
    )))
}

/// Client-connection timing lives in `msgc_client`.
fn node_with_client(msgc_client: &str) -> Node {
    Node::start(&single_node_conf(&format!(
        "msgc_client {{ {msgc_client} }}"
    )))
}

#[test]
fn unknown_operation_is_refused_and_closed() {
    let node = node_with("");
    let mut c = Nats::quiet(node.msgc());
    c.send(b"FOO bar\r\n");
    c.expect_fatal("Unknown Protocol Operation");
    // A verb cut short is the same error (nats-server's parser fails there).
    let mut c = Nats::quiet(node.msgc());
    c.send(b"PUB\r\n");
    c.expect_fatal("Unknown Protocol Operation");
    // Wrong argument counts and bad sizes: closed without a word, as
    // nats-server does (nats.c reconnects after that; after an -ERR it
    // would give up for good).
    for bad in [
        &b"PUB a b c d\r\n"[..],
        b"PUB x y r 2\r\n",
        b"PUB a x\r\n",
        b"SUB a\r\n",
    ] {
        let mut c = Nats::quiet(node.msgc());
        c.send(bad);
        c.expect_silent_close();
    }
    // A payload not followed by exactly CRLF loses the framing.
    let mut c = Nats::quiet(node.msgc());
    c.send(b"PUB a 2\r\nabc\r\n");
    c.expect_fatal("Unknown Protocol Operation");
    // Malformed CONNECT JSON: closed without a word too.
    let mut c = Nats::raw(node.msgc());
    c.send(b"CONNECT {verbose\r\n");
    c.expect_silent_close();
}

#[test]
fn max_payload_accepts_exactly_the_limit_and_closes_one_over() {
    let node = node_with("max_payload = 100");
    let mut sub = Nats::quiet(node.msgc());
    assert_eq!(sub.info.max_payload, 100);
    sub.send(b"SUB big 1\r\n");
    sub.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    p.publish("big", &[b'x'; 100]);
    p.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.len(), 100);
    // The announced size decides, before any payload is sent.
    p.send(b"PUB big 101\r\n");
    p.expect_fatal("Maximum Payload Violation");
    // For HPUB the limit is on headers plus payload.
    let mut h = Nats::connect(node.msgc(), WITH_HEADERS);
    h.send(b"HPUB big 12 101\r\n");
    h.expect_fatal("Maximum Payload Violation");
    // Nothing from the refused publishers reached the subscriber.
    sub.sync_empty();
}

#[test]
fn max_control_line_accepts_exactly_the_limit_and_closes_one_over() {
    let node = node_with("max_control_line = 64");
    // `PUB <subject> 0` of exactly 64 bytes, terminator excluded.
    let subject = "s".repeat(64 - "PUB  0".len());
    let mut sub = Nats::quiet(node.msgc());
    sub.send(format!("SUB {subject} 1\r\n").as_bytes());
    sub.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    let line = format!("PUB {subject} 0");
    assert_eq!(line.len(), 64);
    p.send(format!("{line}\r\n\r\n").as_bytes());
    p.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, subject);

    let line = format!("PUB {subject}s 0");
    assert_eq!(line.len(), 65);
    p.send(format!("{line}\r\n\r\n").as_bytes());
    p.expect_fatal("maximum control line exceeded");

    // Enforced while the line is still arriving: no terminator needed.
    let mut q = Nats::quiet(node.msgc());
    q.send(format!("PUB {}", "t".repeat(100)).as_bytes());
    q.expect_fatal("maximum control line exceeded");
    sub.sync_empty();
}

#[test]
fn invalid_subject_on_sub_keeps_the_connection() {
    let node = node_with("");
    let mut c = Nats::quiet(node.msgc());
    for bad in ["a..b", ".a", "a.", "a.>.b", ">.a"] {
        c.send(format!("SUB {bad} 1\r\n").as_bytes());
        c.expect_err("Invalid Subject");
    }
    // Still connected and served.
    c.send(b"SUB ok 2\r\nPUB ok 2\r\nhi\r\n");
    let got = c.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sid, "2");
}

#[test]
fn invalid_publish_subject_drops_the_message_and_keeps_the_connection() {
    let node = node_with("");
    let mut sub = Nats::quiet(node.msgc());
    sub.send(b"SUB > 1\r\n");
    sub.sync_empty();
    let mut p = Nats::connect(node.msgc(), r#"{"verbose":false,"pedantic":true}"#);
    p.send(b"PUB a.* 1\r\nx\r\nPUB > 1\r\nx\r\nPUB a..b 1\r\nx\r\n");
    for _ in 0..3 {
        p.expect_err("Invalid Publish Subject");
    }
    // Without pedantic a malformed subject is dropped without a word, as
    // nats-server does (nats.c closes for good on an -ERR it does not know).
    let mut lax = Nats::quiet(node.msgc());
    lax.send(b"PUB a..b 1\r\nx\r\nPUB \xff 1\r\nx\r\n");
    p.send(b"PUB fine 2\r\nok\r\n");
    p.sync_empty();
    lax.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].subject, "fine");
}

#[test]
fn credentials_are_checked_on_connect() {
    let node = node_with(r#"auth_token = "s3cret" users = [ alice = "pw" bob = "other" ]"#);
    let refused = [
        r#"{"verbose":false}"#,
        r#"{"verbose":false,"auth_token":"s3cre"}"#,
        r#"{"verbose":false,"auth_token":"s3cret!"}"#,
        r#"{"verbose":false,"user":"alice","pass":"PW"}"#,
        r#"{"verbose":false,"user":"alice","pass":"other"}"#,
        r#"{"verbose":false,"user":"carol","pass":"pw"}"#,
        r#"{"verbose":false,"user":"alice"}"#,
    ];
    for json in refused {
        let mut c = Nats::raw(node.msgc());
        assert_eq!(c.info.auth_required, Some(true));
        c.send(format!("CONNECT {json}\r\n").as_bytes());
        c.expect_fatal("Authorization Violation");
    }
    // Nothing is served before CONNECT.
    let mut c = Nats::raw(node.msgc());
    c.send(b"SUB x 1\r\n");
    c.expect_fatal("Authorization Violation");

    // The right credentials work, token or user.
    let mut a = Nats::connect(node.msgc(), r#"{"verbose":false,"auth_token":"s3cret"}"#);
    let mut b = Nats::connect(
        node.msgc(),
        r#"{"verbose":false,"user":"bob","pass":"other"}"#,
    );
    let mut v = Nats::raw(node.msgc());
    v.send(b"CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"pw\"}\r\n");
    assert_eq!(v.op(), ServerOp::Ok);
    a.send(b"SUB secret 1\r\n");
    a.sync_empty();
    b.publish("secret", b"for a");
    b.sync_empty();
    assert_eq!(&a.sync_msgs()[0].payload[..], b"for a");
    let st = status(&mut b);
    assert_eq!(st["auth_failures"], refused.len(), "{st}");
}

#[test]
fn no_connect_within_connect_timeout_is_an_authentication_timeout() {
    let node = node_with_client("connect_timeout = 0.3");
    let mut ok = Nats::quiet(node.msgc());
    let mut silent = Nats::raw(node.msgc());
    silent.expect_fatal("Authentication Timeout");
    // The client that sent CONNECT in time connected earlier still; it is served.
    ok.send(b"SUB t 1\r\nPUB t 0\r\n\r\n");
    assert_eq!(ok.sync_msgs().len(), 1);
    // PINGs do not stand in for CONNECT.
    let mut pinger = Nats::raw(node.msgc());
    pinger.send(b"PING\r\n");
    assert_eq!(pinger.op(), ServerOp::Pong);
    pinger.expect_fatal("Authentication Timeout");
}

#[test]
fn unanswered_pings_make_a_stale_connection() {
    let node = node_with_client("keepalive_interval = 0.2");
    let mut stale = Nats::quiet(node.msgc());
    // Never answers: two PINGs, then the error and the close.
    assert_eq!(stale.op(), ServerOp::Ping);
    assert_eq!(stale.op(), ServerOp::Ping);
    stale.expect_fatal("Stale Connection");

    // A client that answers is kept, however many PINGs it is sent.
    let mut alive = Nats::quiet(node.msgc());
    for _ in 0..4 {
        assert_eq!(alive.op(), ServerOp::Ping);
        alive.send(b"PONG\r\n");
    }
    alive.send(b"SUB k 1\r\nPUB k 0\r\n\r\n");
    assert_eq!(alive.sync_msgs().len(), 1);
}

#[test]
fn max_subscriptions_refuses_the_one_over_and_keeps_the_rest() {
    let node = node_with("max_subscriptions = 3");
    let mut c = Nats::quiet(node.msgc());
    c.send(b"SUB a 1\r\nSUB b 2\r\nSUB c.* 3\r\n");
    c.sync_empty();
    c.send(b"SUB d 4\r\n");
    c.expect_err("maximum subscriptions exceeded");
    // Re-subscribing an existing sid replaces it and is not one more.
    c.send(b"SUB c.> 3\r\n");
    c.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    for s in ["a", "b", "c.x.y", "d"] {
        p.publish(s, s.as_bytes());
    }
    p.sync_empty();
    let sids: Vec<_> = c.sync_msgs().into_iter().map(|d| d.sid).collect();
    assert_eq!(sids, ["1", "2", "3"]);
    // After an UNSUB there is room again.
    c.send(b"UNSUB 1\r\nSUB d 4\r\n");
    c.sync_empty();
    // The limit is per client.
    let mut other = Nats::quiet(node.msgc());
    other.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\n");
    other.sync_empty();
}

#[test]
fn max_connections_refuses_the_one_over_and_keeps_the_others() {
    let conf = r#"
cluster { nodename = "node1" }
ECCluster_Listener { Listen "127.0.0.1:0" { } }
msgcserver_listener { Listen "127.0.0.1:0" { max_connections = 2 } }
"#;
    let node = Node::start(conf);
    // INFO proves each is accepted and counted.
    let mut a = Nats::quiet(node.msgc());
    let mut b = Nats::quiet(node.msgc());
    let mut c = Line::connect(node.msgc());
    assert_eq!(c.line(), "-ERR 'maximum connections exceeded'");
    assert!(c.closed());
    a.send(b"SUB m 1\r\n");
    a.sync_empty();
    b.publish("m", b"still here");
    b.sync_empty();
    assert_eq!(&a.sync_msgs()[0].payload[..], b"still here");
}

/// A subscriber that never reads is cut off once `max_pending` bytes wait
/// for it; the publisher and a subscriber that reads lose nothing.
#[test]
fn slow_consumer_is_cut_off_and_nobody_else_notices() {
    // No keepalive: the stalled reader must be cut off for being slow, not stale.
    let mut node = Node::start(&single_node_conf(
        "msgc_server { max_pending = 65536 } msgc_client { keepalive_interval = 0 }",
    ));
    let mut stalled = Nats::quiet(node.msgc());
    let stalled_name = stalled.name();
    stalled.send(b"SUB flood 1\r\n");
    stalled.sync_empty();
    let mut reader = Nats::quiet(node.msgc());
    reader.send(b"SUB flood 2\r\n");
    reader.sync_empty();
    let mut p = Nats::quiet(node.msgc());

    const BATCH: u64 = 16;
    const SIZE: usize = 1000;
    // Far more than kernel socket buffers can hold for the stalled reader.
    const CAP: u64 = 200_000;
    let payload = |seq: u64| {
        let mut v = format!("{seq:010}").into_bytes();
        v.resize(SIZE, b'.');
        v
    };
    let mut seq = 0;
    let mut cut_off_at = None;
    // Publish in lock step with the reading subscriber, so it never has more
    // than one batch pending, until the node reports the stalled one cut
    // off; then a while longer.
    while cut_off_at.is_none_or(|at| seq < at + 50 * BATCH) {
        assert!(seq < CAP, "no slow consumer after {seq} messages");
        for _ in 0..BATCH {
            p.publish("flood", &payload(seq));
            seq += 1;
        }
        p.sync_empty();
        for want in seq - BATCH..seq {
            let d = reader.msg();
            assert_eq!(&d.payload[..], &payload(want)[..], "message {want}");
        }
        if cut_off_at.is_none() && seq % (32 * BATCH) == 0 {
            let st = status(&mut p);
            if st["slow_consumers"] != 0 {
                assert_eq!(st["slow_consumers"], 1, "{st}");
                cut_off_at = Some(seq);
            }
        }
    }
    reader.sync_empty();
    let st = status(&mut p);
    assert_eq!(st["slow_consumers"], 1, "counted once: {st}");

    // The stalled client was closed without an -ERR, as nats-server does
    // (nats.c reconnects after a close, gives up after an -ERR). What it can
    // still read is a gap-free prefix of the stream.
    let got = stalled.until_closed();
    let mut next = 0;
    for op in &got {
        match op {
            ServerOp::Msg(d) => {
                assert_eq!(&d.payload[..], &payload(next)[..]);
                next += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(next < seq, "the stalled client cannot have had everything");
    // The node lets go of it.
    node.wait_for_log(&format!("msgc client {stalled_name} closed"));
    let st = status(&mut p);
    assert_eq!(st["subscriptions"], 2, "reader and status inbox only: {st}");
}

/// A client that sends PINGs and never reads its PONGs fills its queue with
/// control lines: it is cut off (without an -ERR) and counted like any slow
/// consumer.
#[test]
fn a_client_that_never_reads_its_pongs_is_a_slow_consumer() {
    let node = Node::start(&single_node_conf(
        "msgc_server { max_pending = 4096 } msgc_client { keepalive_interval = 0 }",
    ));
    let mut pinger = Nats::quiet(node.msgc());
    let pings = b"PING\r\n".repeat(10_000);
    // Far more PONGs than kernel socket buffers hold (60 KB of PINGs a write).
    let mut writes = 0;
    while pinger.try_send(&pings) {
        writes += 1;
        assert!(
            writes < 20_000,
            "still connected after {writes} writes of PINGs"
        );
    }
    let mut p = Nats::quiet(node.msgc());
    let st = status(&mut p);
    assert_eq!(st["slow_consumers"], 1, "{st}");
}

#[test]
fn permissions_refuse_what_a_user_may_not_do_and_keep_the_connection() {
    let node = node_with(
        r#"users = [ alice = "apw" bob = "bpw" ]
           permissions "alice" {
             publish = ( "orders.>" "_INBOX.>" )
             publish_deny = ( "orders.secret" )
             subscribe = ( "orders.*" "_INBOX.>" )
             subscribe_deny = ( "orders.secret" )
           }"#,
    );
    let alice = r#"{"verbose":false,"pedantic":false,"user":"alice","pass":"apw"}"#;
    let bob = r#"{"verbose":false,"pedantic":false,"user":"bob","pass":"bpw"}"#;
    let mut a = Nats::connect(node.msgc(), alice);
    let mut b = Nats::connect(node.msgc(), bob);
    b.send(b"SUB orders.> 1\r\nSUB billing.> 2\r\n");
    b.sync_empty();
    // Allowed: delivered.
    a.publish("orders.eu", b"ok");
    a.sync_empty();
    assert_eq!(&b.msg().payload[..], b"ok");
    // Denied publishes: said, dropped, connection kept.
    a.publish("billing.x", b"no");
    a.expect_err("Permissions Violation for Publish to \"billing.x\"");
    a.publish("orders.secret", b"no");
    a.expect_err("Permissions Violation for Publish to \"orders.secret\"");
    a.sync_empty();
    // Denied subscriptions, including a wildcard that could see a denied subject.
    a.send(b"SUB billing.* 1\r\n");
    a.expect_err("Permissions Violation for Subscription to \"billing.*\"");
    a.send(b"SUB orders.* 2\r\n");
    a.expect_err("Permissions Violation for Subscription to \"orders.*\"");
    // A queue subscription is named with its queue, as nats-server does.
    a.send(b"SUB billing.x workers 4\r\n");
    a.expect_err("Permissions Violation for Subscription to \"billing.x\" using queue \"workers\"");
    a.send(b"SUB orders.eu 3\r\n");
    a.sync_empty();
    // Nothing denied reached bob; alice's allowed subscription works.
    b.publish("orders.eu", b"again");
    assert_eq!(
        &b.msg().payload[..],
        b"again",
        "bob, with no permissions, sees all"
    );
    b.sync_empty();
    assert_eq!(&a.msg().payload[..], b"again");
}

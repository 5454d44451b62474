//! The NATS client protocol on msgcserver_listener, verb by verb, against
//! the real binary: what a client library would see on the wire.

use crate::common;

use std::collections::HashMap;

use common::*;
use ecclusterd::nats::proto::ServerOp;
use ecclusterd::nats::proto::headers::parse_headers;

fn node() -> Node {
    Node::start(&single_node_conf(""))
}

#[test]
fn info_on_connect_describes_the_server_and_the_client() {
    let node = node();
    let a = Nats::raw(node.msgc());
    let b = Nats::raw(node.msgc());
    for c in [&a, &b] {
        let i = &c.info;
        assert!(!i.server_id.is_empty());
        assert_eq!(i.server_name, "node1");
        assert_eq!(i.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(i.proto, 1);
        assert_eq!(i.host, "127.0.0.1");
        assert_eq!(i.port, node.msgc().port());
        assert!(i.headers);
        assert_eq!(i.max_payload, 1 << 20);
        assert!(i.cluster.is_some());
        assert_eq!(i.auth_required, None, "no credentials configured");
        assert_eq!(
            i.msgc_private_name.as_deref(),
            Some(format!("#{}#node1", i.client_id).as_str())
        );
    }
    assert_ne!(a.info.client_id, b.info.client_id, "client ids are unique");
    assert_eq!(a.info.server_id, b.info.server_id);
}

#[test]
fn info_is_raw_json_with_the_documented_field_names() {
    let node = node();
    let mut c = Line::connect(node.msgc());
    let line = c.line();
    let json = line.strip_prefix("INFO ").expect("INFO line");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    for field in [
        "server_id",
        "server_name",
        "version",
        "proto",
        "host",
        "port",
        "headers",
        "max_payload",
        "client_id",
        "cluster",
        "msgc_private_name",
    ] {
        assert!(v.get(field).is_some(), "INFO lacks {field}: {line}");
    }
    assert_eq!(v["proto"], 1);
    assert_eq!(v["headers"], true);
}

#[test]
fn verbose_acknowledges_every_operation_but_ping() {
    let node = node();
    let mut c = Nats::raw(node.msgc());
    c.send(b"CONNECT {\"verbose\":true,\"pedantic\":false}\r\n");
    assert_eq!(c.op(), ServerOp::Ok);
    c.send(b"SUB v 1\r\n");
    assert_eq!(c.op(), ServerOp::Ok);
    c.send(b"PUB v 2\r\nhi\r\n");
    // Own message (echo defaults to true) and the +OK, in either order.
    let mut got = [c.op(), c.op()];
    got.sort_by_key(|op| matches!(op, ServerOp::Ok));
    assert!(matches!(&got[0], ServerOp::Msg(d) if &d.payload[..] == b"hi"));
    assert_eq!(got[1], ServerOp::Ok);
    c.send(b"UNSUB 1\r\n");
    assert_eq!(c.op(), ServerOp::Ok);
    c.send(b"PING\r\n");
    assert_eq!(c.op(), ServerOp::Pong);
    // A quiet client gets no +OK at all.
    let mut q = Nats::quiet(node.msgc());
    q.send(b"SUB v 1\r\nPUB w 0\r\n\r\nUNSUB 1\r\n");
    q.sync_empty();
}

#[test]
fn a_bare_connect_is_verbose_and_pedantic_like_nats_server() {
    let node = node();
    let mut c = Nats::raw(node.msgc());
    c.send(b"CONNECT {}\r\n");
    assert_eq!(c.op(), ServerOp::Ok);
    c.send(b"PUB foo.* 0\r\n\r\n");
    c.expect_err("Invalid Publish Subject");
    assert!(c.sync().is_empty(), "connection kept");
}

#[test]
fn pedantic_refuses_wildcard_publish_subjects_and_keeps_the_connection() {
    let node = node();
    let mut sub = Nats::quiet(node.msgc());
    sub.send(b"SUB foo.> 1\r\n");
    sub.sync_empty();
    let mut p = Nats::connect(node.msgc(), r#"{"verbose":false,"pedantic":true}"#);
    p.send(b"PUB foo.* 1\r\nx\r\nPUB foo.> 1\r\ny\r\n");
    p.expect_err("Invalid Publish Subject");
    p.expect_err("Invalid Publish Subject");
    p.send(b"PUB foo.bar 1\r\nz\r\n");
    p.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1, "only the valid publish arrives: {got:?}");
    assert_eq!(&got[0].payload[..], b"z");
    // Without pedantic, `foo.*` is a literal token and delivered.
    let mut lax = Nats::quiet(node.msgc());
    lax.send(b"PUB foo.* 1\r\nw\r\n");
    lax.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, "foo.*");
}

#[test]
fn echo_false_keeps_own_messages_from_coming_back() {
    let node = node();
    let mut other = Nats::quiet(node.msgc());
    other.send(b"SUB e 1\r\n");
    other.sync_empty();
    let mut quiet = Nats::connect(node.msgc(), r#"{"verbose":false,"echo":false}"#);
    quiet.send(b"SUB e 1\r\nPUB e 4\r\nmine\r\n");
    quiet.sync_empty();
    let got = other.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"mine");
    // With echo (the default) a client receives its own message.
    let mut echo = Nats::quiet(node.msgc());
    echo.send(b"SUB e 1\r\nPUB e 4\r\nback\r\n");
    let got = echo.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"back");
    // ... and the quiet one still gets others' messages.
    assert_eq!(&quiet.sync_msgs()[0].payload[..], b"back");
}

#[test]
fn hpub_delivers_headers_plus_the_sender_to_header_clients_and_the_payload_to_others() {
    let node = node();
    let mut hdr = Nats::connect(node.msgc(), WITH_HEADERS);
    hdr.send(b"SUB h.* 1\r\n");
    hdr.sync_empty();
    let mut plain = Nats::quiet(node.msgc());
    plain.send(b"SUB h.* 2\r\n");
    plain.sync_empty();

    let mut p = Nats::connect(node.msgc(), WITH_HEADERS);
    let sender = p.name();
    assert_eq!(sender, format!("#{}#node1", p.info.client_id));
    let headers = b"NATS/1.0\r\nTrace-Id: abc\r\nX-Two: 2\r\n\r\n";
    let payload = b"hello\r\nworld";
    let mut frame = format!(
        "HPUB h.one {} {}\r\n",
        headers.len(),
        headers.len() + payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(headers);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    p.send(&frame);
    // A plain PUB to a header client becomes HMSG with only the sender.
    p.send(b"PUB h.two 3\r\nabc\r\n");
    p.sync_empty();

    let got = hdr.sync_msgs();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].subject, "h.one");
    assert_eq!(got[0].sid, "1");
    assert_eq!(&got[0].payload[..], payload);
    let h = parse_headers(got[0].headers.as_deref().expect("HMSG")).unwrap();
    assert_eq!(h.get("Trace-Id"), Some("abc"));
    assert_eq!(h.get("X-Two"), Some("2"));
    assert_eq!(h.get("Msgc-Sender"), Some(sender.as_str()));
    let raw = got[1].headers.as_deref().expect("HMSG for a plain PUB");
    assert_eq!(
        raw,
        format!("NATS/1.0\r\nMsgc-Sender: {sender}\r\n\r\n").as_bytes()
    );
    assert_eq!(&got[1].payload[..], b"abc");

    let got = plain.sync_msgs();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|d| d.headers.is_none()),
        "plain MSG: {got:?}"
    );
    assert_eq!(&got[0].payload[..], payload);
    assert_eq!(&got[1].payload[..], b"abc");
}

#[test]
fn hmsg_frames_have_consistent_sizes_on_the_wire() {
    let node = node();
    let mut hdr = Line::connect(node.msgc());
    hdr.line();
    hdr.send(format!("CONNECT {WITH_HEADERS}\r\nSUB s 5\r\nPING\r\n").as_bytes());
    assert_eq!(hdr.line(), "PONG");
    let mut p = Nats::quiet(node.msgc());
    p.send(b"PUB s 2\r\nok\r\n");
    p.sync_empty();
    let block = format!("NATS/1.0\r\nMsgc-Sender: {}\r\n\r\n", p.name());
    assert_eq!(
        hdr.line(),
        format!("HMSG s 5 {} {}", block.len(), block.len() + 2)
    );
    assert_eq!(
        hdr.read_exact(block.len() + 4),
        format!("{block}ok\r\n").as_bytes()
    );
}

#[test]
fn hpub_without_headers_in_connect_is_refused() {
    let node = node();
    let mut c = Nats::quiet(node.msgc());
    c.send(b"HPUB x 12 12\r\nNATS/1.0\r\n\r\n\r\n");
    // Closed without a word, as nats-server does.
    c.expect_silent_close();
}

#[test]
fn sub_wildcards_star_and_full() {
    let node = node();
    let mut star = Nats::quiet(node.msgc());
    star.send(b"SUB a.*.c 1\r\n");
    star.sync_empty();
    let mut full = Nats::quiet(node.msgc());
    full.send(b"SUB a.> 2\r\n");
    full.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    for s in ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "a", "b.b.c", "a.b.d"] {
        p.publish(s, s.as_bytes());
    }
    p.sync_empty();
    let subjects = |v: Vec<ecclusterd::nats::proto::Delivery>| {
        v.into_iter().map(|d| d.subject).collect::<Vec<_>>()
    };
    assert_eq!(subjects(star.sync_msgs()), ["a.b.c", "a.x.c"]);
    assert_eq!(
        subjects(full.sync_msgs()),
        ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "a.b.d"]
    );
}

#[test]
fn queue_group_gives_each_message_to_exactly_one_member() {
    let node = node();
    let mut members: Vec<Nats> = (0..3)
        .map(|i| {
            let mut m = Nats::quiet(node.msgc());
            m.send(format!("SUB work workers {i}\r\n").as_bytes());
            m.sync_empty();
            m
        })
        .collect();
    // A plain subscriber on the same subject sees every message.
    let mut all = Nats::quiet(node.msgc());
    all.send(b"SUB work 1\r\n");
    all.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    for i in 0..300 {
        p.publish("work", i.to_string().as_bytes());
    }
    p.sync_empty();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, m) in members.iter_mut().enumerate() {
        let got = m.sync_msgs();
        assert!(!got.is_empty(), "member {i} got nothing");
        for d in got {
            let n = String::from_utf8(d.payload.to_vec()).unwrap();
            *seen.entry(n).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 300, "every message delivered to the group");
    assert!(seen.values().all(|&n| n == 1), "each to exactly one member");
    assert_eq!(all.sync_msgs().len(), 300);
}

#[test]
fn unsub_stops_delivery_at_once() {
    let node = node();
    let mut s = Nats::quiet(node.msgc());
    s.send(b"SUB u 1\r\nSUB u 2\r\n");
    s.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    p.publish("u", b"1");
    p.sync_empty();
    assert_eq!(s.sync_msgs().len(), 2);
    s.send(b"UNSUB 1\r\n");
    s.sync_empty();
    p.publish("u", b"2");
    p.sync_empty();
    let got = s.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sid, "2");
    // Unknown sids are ignored.
    s.send(b"UNSUB 77\r\n");
    s.sync_empty();
}

#[test]
fn unsub_with_max_delivers_exactly_max_then_nothing() {
    let node = node();
    let mut s = Nats::quiet(node.msgc());
    s.send(b"SUB m 1\r\nUNSUB 1 3\r\n");
    s.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    for i in 0..5 {
        p.publish("m", format!("{i}").as_bytes());
    }
    p.sync_empty();
    let got = s.sync_msgs();
    let payloads: Vec<_> = got.iter().map(|d| d.payload.to_vec()).collect();
    assert_eq!(payloads, [b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
    p.publish("m", b"later");
    p.sync_empty();
    s.sync_empty();
    // The subscription is gone, not just muted: the one left is the
    // status request's own inbox.
    let st = status(&mut p);
    assert_eq!(st["subscriptions"], 1, "{st}");
}

#[test]
fn unsub_max_counts_what_was_already_delivered() {
    let node = node();
    let mut s = Nats::quiet(node.msgc());
    s.send(b"SUB m 1\r\n");
    s.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    p.publish("m", b"a");
    p.publish("m", b"b");
    p.sync_empty();
    assert_eq!(s.sync_msgs().len(), 2);
    // Two delivered already: a max of 2 ends it at once.
    s.send(b"SUB n 2\r\nUNSUB 1 2\r\n");
    s.sync_empty();
    p.publish("m", b"c");
    p.sync_empty();
    s.sync_empty();
}

#[test]
fn ping_gets_pong_and_server_pings_can_be_answered() {
    let node = node();
    let mut c = Nats::quiet(node.msgc());
    for _ in 0..3 {
        c.send(b"PING\r\n");
        assert_eq!(c.op(), ServerOp::Pong);
    }
    // Trailing text after PING is ignored; a client PONG is accepted silently.
    c.send(b"PING extra\r\nPONG\r\n");
    assert_eq!(c.op(), ServerOp::Pong);
    c.sync_empty();
}

#[test]
fn verbs_are_case_insensitive_and_arguments_may_be_separated_by_tabs() {
    let node = node();
    let mut c = Nats::raw(node.msgc());
    c.send(b"connect {\"verbose\":false}\r\n");
    c.send(b"sub\tcase.x \t q1\t 7\r\n");
    c.send(b"Sub case.y 8\n");
    c.send(b"pUb\tcase.x\t5\r\nhello\r\n");
    c.send(b"PuB case.y  reply.to   3\nabc\r\n");
    c.send(b"ping\r\n");
    let mut got = Vec::new();
    loop {
        match c.op() {
            ServerOp::Pong => break,
            ServerOp::Msg(d) => got.push(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].subject.as_str(), got[0].sid.as_str()),
        ("case.x", "7")
    );
    assert_eq!(&got[0].payload[..], b"hello");
    assert_eq!(got[1].reply.as_deref(), Some("reply.to"));
    assert_eq!(&got[1].payload[..], b"abc");
    c.send(b"UnSuB 7\r\n");
    c.send(b"PUB case.x 1\r\nz\r\n");
    c.sync_empty();
}

#[test]
fn request_reply_through_reply_subjects() {
    let node = node();
    let mut svc = Nats::quiet(node.msgc());
    svc.send(b"SUB svc.time 1\r\n");
    svc.sync_empty();
    let mut req = Nats::quiet(node.msgc());
    req.send(b"SUB _INBOX.r1 9\r\nPUB svc.time _INBOX.r1 4\r\nwhen\r\n");
    let q = svc.msg();
    assert_eq!(q.subject, "svc.time");
    assert_eq!(q.reply.as_deref(), Some("_INBOX.r1"));
    assert_eq!(&q.payload[..], b"when");
    svc.publish(q.reply.as_deref().unwrap(), b"now");
    let r = req.msg();
    assert_eq!((r.subject.as_str(), r.sid.as_str()), ("_INBOX.r1", "9"));
    assert_eq!(&r.payload[..], b"now");
    assert_eq!(r.reply, None);
}

#[test]
fn no_responders_status_for_requesters_that_ask_for_it() {
    let node = node();
    let mut c = Nats::connect(node.msgc(), WITH_HEADERS);
    c.send(b"SUB _INBOX.nr 7\r\nPUB nobody.home _INBOX.nr 2\r\nhi\r\n");
    let d = c.msg();
    assert_eq!(d.subject, "_INBOX.nr");
    assert_eq!(d.sid, "7");
    assert_eq!(d.headers.as_deref(), Some(&b"NATS/1.0 503\r\n\r\n"[..]));
    assert!(d.payload.is_empty());
    c.sync_empty();

    // On the wire: `HMSG <reply> <sid> 16 16`.
    let mut l = Line::connect(node.msgc());
    l.line();
    l.send(
        format!("CONNECT {WITH_HEADERS}\r\nSUB _INBOX.w 3\r\nPUB void _INBOX.w 0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(l.line(), "HMSG _INBOX.w 3 16 16");
    assert_eq!(l.read_exact(18), b"NATS/1.0 503\r\n\r\n\r\n");

    // Without no_responders (or without headers), nothing comes.
    for json in [
        r#"{"verbose":false,"headers":true}"#,
        r#"{"verbose":false,"no_responders":true}"#,
        QUIET,
    ] {
        let mut c = Nats::connect(node.msgc(), json);
        c.send(b"SUB _INBOX.nr 7\r\nPUB nobody.home _INBOX.nr 2\r\nhi\r\n");
        c.sync_empty();
    }
    // With a responder, the requester gets the reply, not a 503.
    let mut svc = Nats::quiet(node.msgc());
    svc.send(b"SUB somebody 1\r\n");
    svc.sync_empty();
    c.send(b"PUB somebody _INBOX.nr 2\r\nhi\r\n");
    c.sync_empty();
    assert_eq!(svc.sync_msgs().len(), 1);
}

#[test]
fn client_info_and_ok_are_ignored_and_client_err_closes() {
    let node = node();
    let mut c = Nats::quiet(node.msgc());
    c.send(b"INFO {}\r\n+OK\r\n");
    c.sync_empty();
    c.send(b"-ERR 'bye'\r\n");
    assert!(c.until_closed().is_empty());
}

#[test]
fn msg_from_a_client_is_an_unknown_operation() {
    let node = node();
    let mut c = Nats::quiet(node.msgc());
    c.send(b"MSG foo 1 2\r\nhi\r\n");
    c.expect_fatal("Unknown Protocol Operation");
}

#[test]
fn a_queue_member_publishing_without_echo_does_not_swallow_the_groups_messages() {
    let node = node();
    let mut me = Nats::connect(
        node.msgc(),
        r#"{"verbose":false,"pedantic":false,"echo":false}"#,
    );
    me.send(b"SUB jobs workers 1\r\n");
    me.sync_empty();
    let mut others: Vec<Nats> = (0..2)
        .map(|_| {
            let mut m = Nats::quiet(node.msgc());
            m.send(b"SUB jobs workers 1\r\n");
            m.sync_empty();
            m
        })
        .collect();
    for i in 0..300 {
        me.publish("jobs", i.to_string().as_bytes());
    }
    // Its own messages never come back to it...
    me.sync_empty();
    // ...and each goes to one of the other members instead, as in nats-server.
    let mut seen = std::collections::BTreeSet::new();
    for m in &mut others {
        for d in m.sync_msgs() {
            let n: u32 = std::str::from_utf8(&d.payload).unwrap().parse().unwrap();
            assert!(seen.insert(n), "message {n} delivered twice");
        }
    }
    assert_eq!(seen.len(), 300, "messages lost to the non-echo member");
}

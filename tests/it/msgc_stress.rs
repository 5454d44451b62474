//! The msgc bus under awkward input and many clients: frames split anywhere,
//! garbage, a thousand connections at once.

use crate::common;

use std::time::Duration;

use common::*;
use ecclusterd::nats::conn::Connection;
use ecclusterd::nats::proto::ServerOp;

fn node() -> Node {
    Node::start(&single_node_conf(""))
}

#[test]
fn a_pub_written_one_byte_at_a_time_arrives_intact() {
    let node = node();
    let mut sub = Nats::quiet(node.msgc());
    sub.send(b"SUB drip 1\r\n");
    sub.sync_empty();
    let mut p = Nats::raw(node.msgc());
    let frame = b"CONNECT {\"verbose\":false}\r\nPUB drip reply.x 12\r\nhello\r\nworld\r\n";
    for b in frame {
        p.send(std::slice::from_ref(b));
    }
    p.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].reply.as_deref(), Some("reply.x"));
    assert_eq!(&got[0].payload[..], b"hello\r\nworld");
}

#[test]
fn many_frames_split_at_random_boundaries_arrive_intact_and_in_order() {
    let node = node();
    let mut plain = Nats::quiet(node.msgc());
    plain.send(b"SUB split.> 1\r\n");
    plain.sync_empty();
    let mut hdr = Nats::connect(node.msgc(), WITH_HEADERS);
    hdr.send(b"SUB split.> 1\r\n");
    hdr.sync_empty();

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut stream =
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n".to_vec();
    let mut want = Vec::new();
    for i in 0..2000 {
        let subject = format!("split.{}", i % 7);
        // Payloads of any bytes, CR and LF included, some empty, some large.
        let len = match i % 10 {
            0 => 0,
            1 => rng.range(2000, 20_000),
            _ => rng.range(1, 300),
        };
        let payload = rng.bytes(len);
        if i % 3 == 0 {
            let block = format!("NATS/1.0\r\nSeq: {i}\r\n\r\n");
            stream.extend_from_slice(
                format!(
                    "HPUB {subject} {} {}\r\n",
                    block.len(),
                    block.len() + payload.len()
                )
                .as_bytes(),
            );
            stream.extend_from_slice(block.as_bytes());
        } else {
            stream.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
        }
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(b"\r\n");
        want.push((subject, i % 3 == 0, payload));
    }
    let mut p = Nats::raw(node.msgc());
    let mut at = 0;
    while at < stream.len() {
        let n = rng.range(1, 1500).min(stream.len() - at);
        p.send(&stream[at..at + n]);
        at += n;
    }
    p.sync_empty();

    let got = plain.sync_msgs();
    assert_eq!(got.len(), want.len());
    for (i, (d, (subject, _, payload))) in got.iter().zip(&want).enumerate() {
        assert_eq!(&d.subject, subject, "message {i}");
        assert!(d.headers.is_none());
        assert!(d.payload[..] == payload[..], "payload of message {i}");
    }
    let got = hdr.sync_msgs();
    assert_eq!(got.len(), want.len());
    for (i, (d, (subject, had_headers, payload))) in got.iter().zip(&want).enumerate() {
        assert_eq!(&d.subject, subject, "message {i}");
        assert!(d.payload[..] == payload[..], "payload of message {i}");
        let h =
            ecclusterd::nats::proto::headers::parse_headers(d.headers.as_deref().expect("HMSG"))
                .unwrap();
        let seq = i.to_string();
        assert_eq!(h.get("Seq"), had_headers.then_some(seq.as_str()));
        assert_eq!(h.get("Msgc-Sender"), Some(p.name().as_str()));
    }
}

/// Two clients that exchange one message: proof the node still serves.
fn still_served(sub: &mut Nats, p: &mut Nats, n: usize) {
    p.publish("alive", n.to_string().as_bytes());
    p.sync_empty();
    let got = sub.sync_msgs();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, n.to_string().as_bytes());
}

#[test]
fn garbage_closes_that_connection_only() {
    let node = node();
    let mut sub = Nats::quiet(node.msgc());
    sub.send(b"SUB alive 1\r\n");
    sub.sync_empty();
    let mut p = Nats::quiet(node.msgc());
    let mut rng = Rng(0x0bad_cafe_f00d_0001);
    let mut blobs: Vec<Vec<u8>> = (0..20)
        .map(|_| {
            let n = rng.range(64, 8192);
            rng.bytes(n)
        })
        .collect();
    // A binary blob much larger than any buffer.
    let mut big = rng.bytes(1 << 20);
    big[0] = 0x7f;
    blobs.push(big);
    // Garbage right after valid operations, within one write.
    let mut mixed = b"CONNECT {\"verbose\":false}\r\nSUB g 1\r\nPUB g 1\r\nx\r\n".to_vec();
    mixed.extend_from_slice(&rng.bytes(4096));
    blobs.push(mixed);
    // A valid verb with garbage arguments and payload.
    let mut garbage_pub = b"PUB \x00\x01\x02 5\r\n".to_vec();
    garbage_pub.extend_from_slice(&rng.bytes(1000));
    blobs.push(garbage_pub);

    for (i, blob) in blobs.iter().enumerate() {
        let mut g = Nats::raw(node.msgc());
        g.send_lossy(blob);
        let said = g.until_closed();
        // It may see its own valid message and an -ERR before the close
        // (or a reset before reading them); never anything else.
        for op in &said {
            assert!(
                matches!(op, ServerOp::Err(_) | ServerOp::Msg(_) | ServerOp::Ok),
                "blob {i}: {op:?}"
            );
        }
        still_served(&mut sub, &mut p, i);
    }
    // Concurrent garbage and good traffic on the same node.
    let addr = node.msgc();
    let vandals: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Rng(0xfeed_0000 + t);
                for _ in 0..10 {
                    let mut g = Nats::raw(addr);
                    g.send_lossy(&rng.bytes(2048));
                    g.until_closed();
                }
            })
        })
        .collect();
    for n in 0..100 {
        still_served(&mut sub, &mut p, n);
    }
    for v in vandals {
        v.join().expect("vandal thread");
    }
    still_served(&mut sub, &mut p, 0);
}

/// Open files allowed to this process (and to the node it starts).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn a_thousand_concurrent_clients_each_get_their_message() {
    const CLIENTS: usize = 1000;
    if let Some(limit) = open_files_limit() {
        assert!(
            limit > 2 * CLIENTS as u64 + 100,
            "this test needs `ulimit -n` above {}; it is {limit}",
            2 * CLIENTS + 100
        );
    }
    let conf = single_node_conf("").replace(
        r#"msgcserver_listener { Listen "127.0.0.1:0" { } }"#,
        r#"msgcserver_listener { Listen "127.0.0.1:0" { listen_backlog = 1024 } }"#,
    );
    let node = Node::start(&conf);
    let addr = node.msgc().to_string();
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        // Everyone connects and subscribes at once; the PING round trip in
        // `connect` and after SUB proves the node has each subscription.
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let addr = addr.clone();
                ex.spawn(async move {
                    let mut c = Connection::connect_default(&addr, "many")
                        .await
                        .unwrap_or_else(|e| panic!("client {i}: connect: {e}"));
                    c.subscribe(&format!("many.{i}"), None);
                    c.ping().await.expect("subscribe");
                    c
                })
            })
            .collect();
        let mut clients = Vec::with_capacity(CLIENTS);
        for t in tasks {
            clients.push(t.await);
        }
        let mut p = Connection::connect_default(&addr, "publisher")
            .await
            .expect("publisher");
        for i in 0..CLIENTS {
            p.publish(&format!("many.{i}"), None, format!("for {i}").as_bytes());
        }
        p.ping().await.expect("publish");
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                ex.spawn(async move {
                    let d = c
                        .next_msg_timeout(PATIENCE)
                        .await
                        .expect("read")
                        .unwrap_or_else(|| panic!("client {i} got nothing"));
                    assert_eq!(d.subject, format!("many.{i}"));
                    assert_eq!(d.payload, format!("for {i}").as_bytes());
                    // Exactly one: nothing else is waiting behind it.
                    c.ping().await.expect("ping");
                    assert!(
                        c.next_msg_timeout(Duration::ZERO)
                            .await
                            .expect("read")
                            .is_none(),
                        "client {i} got more than its message"
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    }));
}

//! Parser tests: every verb, framing at every split point, limits at their
//! edges, every error with its wire text, and encoder → parser round trips.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

type Out = Vec<Result<Op, ProtoError>>;

fn parse_with(limits: Limits, input: &[u8]) -> Out {
    let mut p = ClientParser::new(limits);
    p.feed(input);
    p.collect()
}

fn parse(input: &[u8]) -> Out {
    parse_with(Limits::default(), input)
}

/// Feeds `input` in pieces cut at `cuts`, draining after each.
fn parse_split(input: &[u8], cuts: &[usize]) -> Out {
    let mut p = ClientParser::default();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let c = c.clamp(last, input.len());
        p.feed(&input[last..c]);
        out.extend(p.by_ref());
        last = c;
    }
    out
}

const NOPED: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";

fn noped(rest: &[u8]) -> Out {
    let mut v = NOPED.to_vec();
    v.extend_from_slice(rest);
    let mut out = parse(&v);
    assert!(matches!(out.remove(0), Ok(Op::Connect(_))));
    out
}

fn pubop(
    subject: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> Result<Op, ProtoError> {
    Ok(Op::Pub(Publish {
        subject: subject.into(),
        reply: reply.map(Into::into),
        headers: headers.map(Bytes::copy_from_slice),
        payload: Bytes::copy_from_slice(payload),
    }))
}

fn sub(subject: &str, queue: Option<&str>, sid: &str) -> Result<Op, ProtoError> {
    Ok(Op::Sub {
        subject: subject.into(),
        queue: queue.map(Into::into),
        sid: sid.into(),
    })
}

#[test]
fn every_verb() {
    let out = noped(
        b"PUB a.b 5\r\nhello\r\nPUB a.b _INBOX.1 0\r\n\r\n\
          HPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB h r 12 12\r\nNATS/1.0\r\n\r\n\r\n\
          SUB a.* 1\r\nSUB a.> grp 2\r\nUNSUB 1\r\nUNSUB 2 10\r\n\
          PING\r\nPONG\r\n+OK\r\nINFO {\"x\":1}\r\n-ERR 'boom'\r\n",
    );
    assert_eq!(
        out,
        vec![
            pubop("a.b", None, None, b"hello"),
            pubop("a.b", Some("_INBOX.1"), None, b""),
            pubop("h", None, Some(b"NATS/1.0\r\n\r\n"), b"hi"),
            pubop("h", Some("r"), Some(b"NATS/1.0\r\n\r\n"), b""),
            sub("a.*", None, "1"),
            sub("a.>", Some("grp"), "2"),
            Ok(Op::Unsub {
                sid: "1".into(),
                max: None
            }),
            Ok(Op::Unsub {
                sid: "2".into(),
                max: Some(10)
            }),
            Ok(Op::Ping),
            Ok(Op::Pong),
            Ok(Op::Ok),
            Ok(Op::Info(Bytes::from_static(b"{\"x\":1}"))),
            Ok(Op::Err("'boom'".into())),
        ]
    );
}

#[test]
fn connect_applies_options() {
    let mut p = ClientParser::default();
    assert!(p.pedantic() && !p.headers());
    p.feed(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"name\":\"x\",\"zzz\":[1]}\r\n");
    let Some(Ok(Op::Connect(c))) = p.next_op() else {
        panic!("no connect")
    };
    assert_eq!(c.name.as_deref(), Some("x"));
    assert!(!c.verbose && c.echo);
    assert!(!p.pedantic() && p.headers());
    // No space is needed after CONNECT, as in nats-server.
    assert!(matches!(parse(b"connect{}\r\n")[0], Ok(Op::Connect(_))));
}

#[test]
fn case_tabs_and_bare_newlines() {
    let out =
        noped(b"pub\ta \t  3\nabc\r\nSuB \t x\t\t q 9\nping\nPoNg whatever\r\nunsub\t9\t 0\n");
    assert_eq!(
        out,
        vec![
            pubop("a", None, None, b"abc"),
            sub("x", Some("q"), "9"),
            Ok(Op::Ping),
            Ok(Op::Pong),
            Ok(Op::Unsub {
                sid: "9".into(),
                max: None
            }),
        ]
    );
    // Anything after PING up to the newline is ignored, as nats-server does.
    assert_eq!(parse(b"PINGxyz\r\n"), vec![Ok(Op::Ping)]);
}

#[test]
fn payload_may_contain_crlf_and_binary() {
    let out = noped(b"PUB a 6\r\n\r\nPING\r\n");
    assert_eq!(out, vec![pubop("a", None, None, b"\r\nPING")]);
    let mut v = b"PUB a 256\r\n".to_vec();
    v.extend((0..=255u8).collect::<Vec<_>>());
    v.extend_from_slice(b"\r\n");
    assert_eq!(noped(&v).len(), 1);
}

#[test]
fn unsub_max_like_nats() {
    let out = noped(b"UNSUB 1 x\r\nUNSUB 1 0\r\nUNSUB 1 -3\r\nUNSUB 1 7\r\n");
    let maxes: Vec<_> = out
        .into_iter()
        .map(|o| match o {
            Ok(Op::Unsub { max, .. }) => max,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(maxes, vec![None, None, None, Some(7)]);
}

fn err_of(out: &Out) -> (Option<&'static str>, bool) {
    let e = out.iter().find_map(|o| o.as_ref().err()).expect("an error");
    (e.err_text(), e.is_fatal())
}

#[test]
fn fatal_errors_and_texts() {
    let uop = (Some(text::UNKNOWN_PROTOCOL_OPERATION), true);
    for bad in [
        &b"FOO\r\n"[..],
        b"\r\n",
        b"MSG a 1 1\r\nx\r\n",
        b"HMSG a 1 0 1\r\nx\r\n",
        b"PUB\r\n",
        b"PUBX a 1\r\n",
        b"-ERR\r\n",
        b"+KO\r\n",
        b"PUB a 1\r\nxx\r\n",
        b"PUB a 1\nx\n",
        b"UNSUB\r\n",
    ] {
        let out = noped(bad);
        assert_eq!(err_of(&out), uop, "{}", String::from_utf8_lossy(bad));
        assert_eq!(
            out.len(),
            1,
            "nothing after a fatal error: {}",
            String::from_utf8_lossy(bad)
        );
    }
    // Bad arguments: closed without a word, as nats-server does.
    let silent = (None, true);
    for bad in [
        &b"PUB a 1 2 3\r\n"[..],
        b"PUB x y r 2\r\n",
        b"PUB a x\r\n",
        b"PUB a -1\r\n",
        b"PUB a +1\r\n",
        b"PUB a\r\n",
        b"PUB \r\n",
        b"HPUB a 14 12\r\n",
        b"HPUB a 12\r\n",
        b"HPUB a r 1 2 3\r\n",
        b"SUB a\r\n",
        b"SUB a b c d\r\n",
        b"UNSUB \r\n",
        b"UNSUB 1 2 3\r\n",
        b"CONNECT {bad\r\n",
        b"CONNECT\r\n",
        b"CONNECT {\"verbose\":\"yes\"}\r\n",
        b"PUB a 99999999999999999999999\r\n",
    ] {
        let out = noped(bad);
        assert_eq!(err_of(&out), silent, "{}", String::from_utf8_lossy(bad));
        assert_eq!(
            out.len(),
            1,
            "nothing after a fatal error: {}",
            String::from_utf8_lossy(bad)
        );
    }
    // HPUB needs `"headers": true` in CONNECT.
    let out =
        parse(b"CONNECT {\"verbose\":false}\r\nHPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n");
    assert_eq!(out[1], Err(ProtoError::HeadersNotSupported));
    assert_eq!(out.len(), 2);
    assert_eq!(err_of(&out[1..].to_vec()), silent);
    // Garbage fails at its first byte, without waiting for a newline.
    assert_eq!(parse(b"X"), vec![Err(ProtoError::UnknownOperation)]);
    assert_eq!(parse(b"PUX"), vec![Err(ProtoError::UnknownOperation)]);
    assert_eq!(parse(b"PU"), vec![]);
    assert_eq!(parse(b"pub\ta"), vec![]);
    // A dead parser ignores input.
    let mut p = ClientParser::default();
    p.feed(b"FOO\r\n");
    assert!(p.next_op().is_some_and(|r| r.is_err()));
    p.feed(b"PING\r\n");
    assert!(p.next_op().is_none() && p.is_dead() && p.buffered() == 0);
}

#[test]
fn subject_errors_keep_the_connection() {
    // SUB: always validated, wildcards allowed.
    for bad in ["a..b", ".a", "a.", "a.>.b"] {
        let out = noped(format!("SUB {bad} 1\r\nPING\r\n").as_bytes());
        assert_eq!(
            out,
            vec![Err(ProtoError::InvalidSubject), Ok(Op::Ping)],
            "{bad}"
        );
        assert_eq!(err_of(&out), (Some(text::INVALID_SUBJECT), false));
    }
    assert_eq!(
        noped(b"SUB a\rb 1\r\n"),
        vec![Err(ProtoError::InvalidSubject)]
    );
    // PUB: empty tokens never route; the payload is skipped, not parsed.
    // Not pedantic: dropped without a word (nats-server's behaviour).
    let out = noped(b"PUB a..b 4\r\nPING\r\nPING\r\n");
    assert_eq!(out, vec![Err(ProtoError::UnroutableSubject), Ok(Op::Ping)]);
    assert_eq!(err_of(&out), (None, false));
    // Pedantic: `-ERR 'Invalid Publish Subject'`, connection kept.
    let out = parse(b"PUB a..b 4\r\nPING\r\nPING\r\n");
    assert_eq!(
        out,
        vec![Err(ProtoError::InvalidPublishSubject), Ok(Op::Ping)]
    );
    assert_eq!(err_of(&out), (Some(text::INVALID_PUBLISH_SUBJECT), false));
    // Not pedantic: wildcard publish subjects pass, as in nats-server.
    assert_eq!(
        noped(b"PUB a.* 1\r\nx\r\n"),
        vec![pubop("a.*", None, None, b"x")]
    );
    // Pedantic (nats-server's default until CONNECT says otherwise).
    for s in ["a.*", "a.>", ">", "*"] {
        let out = parse(format!("PUB {s} 1\r\nx\r\nPING\r\n").as_bytes());
        assert_eq!(
            out,
            vec![Err(ProtoError::InvalidPublishSubject), Ok(Op::Ping)],
            "{s}"
        );
    }
    assert_eq!(
        parse(b"PUB a.b* 1\r\nx\r\n"),
        vec![pubop("a.b*", None, None, b"x")]
    );
    // Non-UTF-8 subjects never route.
    assert_eq!(
        noped(b"PUB \xff 0\r\n\r\n"),
        vec![Err(ProtoError::UnroutableSubject)]
    );
    assert_eq!(
        parse(b"PUB \xff 0\r\n\r\n"),
        vec![Err(ProtoError::UnroutableSubject)]
    );
}

#[test]
fn max_payload_edges() {
    let limits = Limits {
        max_control_line: 4096,
        max_payload: 8,
    };
    let mut p = ClientParser::new(limits);
    p.feed(NOPED);
    p.feed(b"PUB a 8\r\n12345678\r\nHPUB a 2 8\r\nXX123456\r\n");
    assert!(matches!(p.next_op(), Some(Ok(Op::Connect(_)))));
    assert!(matches!(p.next_op(), Some(Ok(Op::Pub(_)))));
    assert!(matches!(p.next_op(), Some(Ok(Op::Pub(_)))));
    for line in [&b"PUB a 9\r\n"[..], b"HPUB a 2 9\r\n"] {
        let mut v = NOPED.to_vec();
        v.extend_from_slice(line);
        let out = parse_with(limits, &v);
        assert_eq!(
            out[1],
            Err(ProtoError::MaxPayloadViolation { size: 9, limit: 8 })
        );
        assert_eq!(err_of(&out), (Some(text::MAX_PAYLOAD_VIOLATION), true));
    }
    // Detected from the header line alone: no payload byte was sent.
    let out = parse(b"PUB a 1048577\r\n");
    assert_eq!(
        out,
        vec![Err(ProtoError::MaxPayloadViolation {
            size: 1_048_577,
            limit: DEFAULT_MAX_PAYLOAD
        })]
    );
    assert_eq!(parse(b"PUB a 1048576\r\n"), vec![]);
}

#[test]
fn max_control_line_edges() {
    let limits = Limits {
        max_control_line: 16,
        max_payload: 1024,
    };
    // 16 bytes from verb to terminator: accepted, with either terminator,
    // whole or split before the `\n`.
    let ok = b"SUB abcdefghij 1";
    assert_eq!(ok.len(), 16);
    for term in [&b"\r\n"[..], b"\n"] {
        let mut v = ok.to_vec();
        v.extend_from_slice(term);
        assert_eq!(parse_with(limits, &v), vec![sub("abcdefghij", None, "1")]);
    }
    let mut p = ClientParser::new(limits);
    p.feed(ok);
    p.feed(b"\r");
    assert!(p.next_op().is_none() && !p.is_dead());
    p.feed(b"\n");
    assert_eq!(p.next_op(), Some(sub("abcdefghij", None, "1")));
    // 17 bytes: refused, complete or not.
    let long = b"SUB abcdefghijk 1";
    for input in [&long[..], &[&long[..], b"\r\n"].concat()] {
        let out = parse_with(limits, input);
        assert_eq!(
            out,
            vec![Err(ProtoError::MaxControlLineExceeded { limit: 16 })]
        );
        assert_eq!(err_of(&out), (Some(text::MAX_CONTROL_LINE_EXCEEDED), true));
    }
    // Exactly the limit with a trailing `\r` still pending is fine; one more
    // byte that is not `\n` is not.
    let mut p = ClientParser::new(limits);
    p.feed(ok);
    p.feed(b"\rX");
    assert_eq!(
        p.next_op(),
        Some(Err(ProtoError::MaxControlLineExceeded { limit: 16 }))
    );
    // The default is nats-server's 4096.
    let mut v = b"SUB ".to_vec();
    v.extend(std::iter::repeat_n(b'a', 4090));
    v.extend_from_slice(b" 1\r\n");
    assert_eq!(v.len() - 2, 4096);
    assert!(parse(&v)[0].is_ok());
    v.insert(5, b'a');
    assert_eq!(
        parse(&v),
        vec![Err(ProtoError::MaxControlLineExceeded { limit: 4096 })]
    );
}

#[test]
fn payload_is_zero_copy_and_shares_one_buffer() {
    let out = noped(b"HPUB s 12 17\r\nNATS/1.0\r\n\r\nhello\r\n");
    let Ok(Op::Pub(p)) = &out[0] else { panic!() };
    let h = p.headers.as_ref().unwrap();
    // Headers and payload are adjacent slices of the same allocation.
    assert_eq!(h.as_ptr().wrapping_add(h.len()), p.payload.as_ptr());
}

const NOISE: &[&[u8]] = &[
    b"PUB ",
    b"HPUB ",
    b"SUB ",
    b"UNSUB ",
    b"PING",
    b"CONNECT {\"headers\":true}",
    b"a.b",
    b" ",
    b"\t",
    b"1",
    b"12",
    b"\r\n",
    b"\n",
    b"\r",
    b"x",
    b"NATS/1.0\r\n\r\n",
];

fn stream() -> Vec<u8> {
    let mut v = NOPED.to_vec();
    v.extend_from_slice(
        b"SUB a.* q 1\r\nPUB a.b r 12\r\nhello\r\nworld\r\nHPUB a.c 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n\
          PING\r\nunsub 1 3\r\npong\r\nPUB x 0\r\n\r\n",
    );
    v
}

#[test]
fn every_single_split_point() {
    let input = stream();
    let whole = parse(&input);
    assert_eq!(whole.len(), 8, "{whole:?}");
    assert!(whole.iter().all(Result::is_ok));
    for i in 0..=input.len() {
        assert_eq!(parse_split(&input, &[i]), whole, "split at {i}");
    }
    // Byte by byte.
    let cuts: Vec<usize> = (0..input.len()).collect();
    assert_eq!(parse_split(&input, &cuts), whole);
}

proptest! {
    #[test]
    fn any_split_yields_the_same_ops(mut cuts in prop::collection::vec(0usize..400, 0..12)) {
        let input = stream();
        cuts.sort_unstable();
        prop_assert_eq!(parse_split(&input, &cuts), parse(&input));
    }

    #[test]
    fn protocol_shaped_noise_is_split_invariant(
        parts in prop::collection::vec(prop::sample::select(NOISE), 0..40),
        mut cuts in prop::collection::vec(0usize..300, 0..6),
    ) {
        let input = parts.concat();
        cuts.sort_unstable();
        prop_assert_eq!(parse_split(&input, &cuts), parse(&input));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
        let _ = parse_split(&data, &[cut]);
        let mut p = ServerParser::default();
        p.feed(&data);
        let _ = p.by_ref().count();
    }

    #[test]
    fn encoded_messages_round_trip(
        subject in "[a-z]{1,8}(\\.[a-z*]{1,4}){0,3}",
        sid in "[0-9]{1,5}",
        reply in proptest::option::of("_INBOX\\.[A-Za-z0-9]{1,10}"),
        headers in proptest::option::of(prop::collection::vec(("[A-Za-z-]{1,8}", "[ -~]{0,12}"), 0..3)),
        payload in prop::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..200,
    ) {
        let block = headers.map(|h| {
            let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            headers::header_block(&pairs).unwrap()
        });
        let mut buf = Vec::new();
        encode::info(&mut buf, &ServerInfo::default());
        match &block {
            Some(b) => encode::hmsg(&mut buf, &subject, &sid, reply.as_deref(), b, &payload),
            None => encode::msg(&mut buf, &subject, &sid, reply.as_deref(), &payload),
        }
        encode::ping(&mut buf);
        encode::err(&mut buf, text::STALE_CONNECTION);
        let mut p = ServerParser::default();
        let cut = cut.min(buf.len());
        p.feed(&buf[..cut]);
        let mut out: Vec<_> = p.by_ref().collect();
        p.feed(&buf[cut..]);
        out.extend(p.by_ref());
        let want = vec![
            Ok(ServerOp::Info(Box::default())),
            Ok(ServerOp::Msg(Delivery {
                subject: subject.clone(),
                sid: sid.clone(),
                reply: reply.clone(),
                headers: block.clone().map(Bytes::from),
                payload: Bytes::from(payload.clone()),
            })),
            Ok(ServerOp::Ping),
            Ok(ServerOp::Err("Stale Connection".into())),
        ];
        prop_assert_eq!(out, want);

        // The client side encoders round-trip through the server parser.
        let mut buf = NOPED.to_vec();
        encode::publish(&mut buf, &subject, reply.as_deref(), block.as_deref(), &payload);
        let ops = parse(&buf);
        let want_subject_ok = crate::subject::valid_subject(&subject, true);
        if want_subject_ok {
            prop_assert_eq!(&ops[1], &pubop(&subject, reply.as_deref(), block.as_deref(), &payload));
        }
    }
}

#[test]
fn server_parser_reads_nats_server_output() {
    let mut p = ServerParser::default();
    p.feed(
        b"INFO {\"server_id\":\"N\",\"version\":\"2.9.10\",\"go\":\"go1\",\"max_payload\":1048576,\"client_id\":5}\r\n\
          +OK\r\nMSG a 1 1\r\nx\r\nHMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n-ERR 'Unknown Protocol Operation'\r\n",
    );
    let out: Vec<_> = p.by_ref().collect();
    assert_eq!(out.len(), 6, "{out:?}");
    let Ok(ServerOp::Info(i)) = &out[0] else {
        panic!()
    };
    assert_eq!((i.client_id, i.version.as_str()), (5, "2.9.10"));
    assert_eq!(
        out[5],
        Ok(ServerOp::Err(text::UNKNOWN_PROTOCOL_OPERATION.into()))
    );
    let mut p = ServerParser::default();
    p.feed(b"PUB a 1\r\n");
    assert_eq!(p.next_op(), Some(Err(ProtoError::UnknownOperation)));
}

#[test]
fn wants_ok() {
    assert!(!Op::Ping.wants_ok());
    assert!(
        Op::Sub {
            subject: "a".into(),
            queue: None,
            sid: "1".into()
        }
        .wants_ok()
    );
}

/// `cargo test --release --lib client::proto::tests::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_parse_and_encode_small_messages() {
    let mut input = NOPED.to_vec();
    for _ in 0..100_000 {
        encode::publish(
            &mut input,
            "mail.node1.queue",
            None,
            None,
            b"0123456789abcdef",
        );
    }
    let start = std::time::Instant::now();
    let mut p = ClientParser::default();
    let mut out = Vec::with_capacity(input.len() * 2);
    for chunk in input.chunks(32 * 1024) {
        p.feed(chunk);
        for op in p.by_ref() {
            if let Ok(Op::Pub(m)) = op {
                encode::msg(&mut out, &m.subject, "1", None, &m.payload);
            }
        }
        out.clear();
    }
    let ns = start.elapsed().as_nanos() as f64 / 100_000.0;
    println!("parse PUB + encode MSG, 16-byte payload: {ns:.0} ns/msg");
}

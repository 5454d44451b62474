//! Arbitrary bytes, cut at fuzzer-chosen points, into both parsers: they must
//! never panic, must agree with feeding the input whole, and every message
//! the client parser accepts must survive encode → server-side parse.
#![no_main]

use ecclusterd::nats::proto::{ClientParser, Limits, Op, ServerOp, ServerParser, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: number of cut points; next bytes: the cuts.
    let (&n, rest) = data.split_first().unwrap_or((&0, &[]));
    let n = usize::from(n % 8).min(rest.len());
    let (cut_bytes, input) = rest.split_at(n);
    let mut cuts: Vec<usize> = cut_bytes.iter().map(|&c| usize::from(c) * input.len() / 256).collect();
    cuts.sort_unstable();

    let limits = Limits { max_control_line: 256, max_payload: 4096 };
    let mut whole = ClientParser::new(limits);
    whole.feed(input);
    let expect: Vec<_> = whole.by_ref().collect();

    let mut split = ClientParser::new(limits);
    let mut got = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain(std::iter::once(input.len())) {
        split.feed(&input[last..c]);
        got.extend(split.by_ref());
        last = c;
    }
    assert_eq!(got, expect);

    let mut out = Vec::new();
    let mut sent = Vec::new();
    for op in expect.iter().flatten() {
        if let Op::Pub(p) = op {
            match &p.headers {
                Some(h) => encode::hmsg(&mut out, &p.subject, "1", p.reply.as_deref(), h, &p.payload),
                None => encode::msg(&mut out, &p.subject, "1", p.reply.as_deref(), &p.payload),
            }
            sent.push(p.clone());
        }
    }
    let mut back = ServerParser::new(Limits { max_control_line: 512, ..limits });
    back.feed(&out);
    let read: Vec<_> = back.by_ref().collect();
    assert_eq!(read.len(), sent.len());
    for (r, p) in read.into_iter().zip(sent) {
        match r {
            Ok(ServerOp::Msg(d)) => {
                assert_eq!((d.subject, d.reply, d.headers, d.payload), (p.subject, p.reply, p.headers, p.payload));
            }
            other => panic!("round trip failed: {other:?}"),
        }
    }

    let mut server = ServerParser::new(limits);
    server.feed(input);
    let _ = server.by_ref().count();
});

//! Node links: arbitrary bytes through the node frame decoder (split where
//! the input says) and through the handshake parser. Nothing may panic;
//! whatever decodes must re-encode to the same bytes.
#![no_main]

use ecclusterd::mesh::handshake;
use ecclusterd::node::codec::{Decoder, Frame, HELLO_VERB, Hello, check_file_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let mut d = Decoder::new(1 << 16);
    let mut frames: Vec<Frame> = Vec::new();
    for part in [&rest[..at], &rest[at..]] {
        d.feed(part);
        while let Some(f) = d.next_frame() {
            match f {
                Ok(f) => frames.push(f),
                Err(_) => break,
            }
        }
    }
    for f in frames {
        let mut wire = Vec::new();
        f.encode(&mut wire);
        assert_eq!(wire.len(), f.wire_len());
        let mut again = Decoder::new(1 << 16);
        again.feed(&wire);
        assert_eq!(again.next_frame(), Some(Ok(f)));
    }
    let _ = handshake::parse::<Hello>(HELLO_VERB, rest);
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = check_file_name(s);
    }
});

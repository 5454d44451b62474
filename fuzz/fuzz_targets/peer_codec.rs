//! Peer links: arbitrary bytes through the frame decoder (split where the
//! input says), and every ORDER body through the ordering-message decoder.
//! Neither may panic; whatever decodes must re-encode to the same message.
#![no_main]

use bytes::Bytes;
use ecclusterd::mesh::frame::{Decoder, Frame};
use ecclusterd::mesh::order_codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let mut d = Decoder::new(1 << 16);
    for part in [&rest[..at], &rest[at..]] {
        d.feed(part);
        while let Some(f) = d.next_frame() {
            let Ok(Frame::Order(body)) = f else { continue };
            if let Ok((inc, m)) = order_codec::decode(&body) {
                let again = order_codec::encode(inc, &m);
                assert_eq!(order_codec::decode(&Bytes::from(again)), Ok((inc, m)));
            }
        }
    }
    // The body decoder on its own too.
    let _ = order_codec::decode(&Bytes::copy_from_slice(rest));
});

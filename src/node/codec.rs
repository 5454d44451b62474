//! The node protocol on ECCluster_Listener, sans-IO: the handshake lines and
//! the frames after it (docs/PROTOCOL.md, "Node protocol").
//!
//! Handshake: the dialler sends `ECCLUSTER-NODE {json}\r\n` ([`Hello`]); the
//! acceptor answers `ECCLUSTER-NODE-OK {json}\r\n` ([`Welcome`]) or
//! `-ERR '...'\r\n` and closes. Then both directions carry frames:
//! `u32 length (big-endian) | u8 kind | body`, where `length` counts the kind
//! byte and the body and is at most the decoder's limit ([`MAX_FRAME`]).

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize};

use crate::config::Peer;
use crate::mesh::{greeting, handshake, secret};

/// Bumped on any incompatible change of the node protocol.
pub const PROTOCOL: u32 = 1;
/// The dialler's handshake verb.
pub const HELLO_VERB: &str = "ECCLUSTER-NODE";
/// The acceptor's answer.
pub const WELCOME_VERB: &str = "ECCLUSTER-NODE-OK";
/// With a cluster secret, the acceptor's first line: `ECCLUSTER-CHALLENGE <nonce>`.
pub const CHALLENGE_VERB: &str = "ECCLUSTER-CHALLENGE";
/// Largest frame `length` accepted: a 64 KiB chunk plus headers, a status
/// reply, with room to spare. Anything longer closes the link.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest handshake line accepted: the peer links' limit (the peers list rides on it).
pub use crate::mesh::MAX_HANDSHAKE_LINE;

/// The dialler's introduction: who it is, whom it means to reach, and the
/// cluster (its whole `peers` list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub node: String,
    pub to: String,
    pub peers: Vec<(String, String)>,
    /// With a cluster secret: the dialler's nonce and proof (`mesh::secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The acceptor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub node: String,
    /// With a cluster secret: the acceptor's proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The node link's lines, for `mesh::greeting`.
pub struct NodeGreeting;

impl greeting::Greeting for NodeGreeting {
    type Hello = Hello;
    type Welcome = Welcome;
    const HELLO: &'static str = HELLO_VERB;
    const WELCOME: &'static str = WELCOME_VERB;
    const LINK: secret::Link = secret::Link::Node;
}

greeting::proof!(Hello, nonce);
greeting::proof!(Welcome);

/// Checks a dialler's [`Hello`]: protocol, the cluster identity and the
/// name (the mesh's own checks, reused), and that it meant to reach `me`.
/// The source address is checked by the caller.
pub fn check_hello(h: &Hello, me: &str, peers: &[Peer]) -> Result<(), String> {
    if h.protocol != PROTOCOL {
        return Err(format!(
            "node protocol {} is not {PROTOCOL}: run the same ecclusterd version on every node",
            h.protocol
        ));
    }
    let as_mesh = handshake::Hello {
        protocol: handshake::PROTOCOL,
        node: h.node.clone(),
        peers: h.peers.clone(),
        eccluster: None,
        nonce: None,
        mac: None,
    };
    handshake::check_hello(&as_mesh, me, peers)?;
    if h.to != me {
        return Err(format!("this is `{me}`, not `{}`", h.to));
    }
    Ok(())
}

/// Frame kinds (the byte after the length).
pub mod kind {
    pub const PING: u8 = 1;
    pub const PONG: u8 = 2;
    pub const STATUS_REQUEST: u8 = 3;
    pub const STATUS_REPLY: u8 = 4;
    pub const FILE_OFFER: u8 = 5;
    pub const FILE_CHUNK: u8 = 6;
    pub const FILE_CREDIT: u8 = 7;
    pub const FILE_DONE: u8 = 8;
    pub const DELIVER: u8 = 9;
}

/// One frame. `id`s are chosen by the side that starts the exchange
/// (request or transfer) and echoed by the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Ping {
        id: u64,
    },
    Pong {
        id: u64,
    },
    StatusRequest {
        id: u64,
    },
    /// The answering node's `Status` as JSON.
    StatusReply {
        id: u64,
        json: Bytes,
    },
    FileOffer {
        id: u64,
        size: u64,
        sha256: [u8; 32],
        name: String,
    },
    FileChunk {
        id: u64,
        offset: u64,
        bytes: Bytes,
    },
    /// The receiver grants the sender `bytes` more bytes of chunk data.
    FileCredit {
        id: u64,
        bytes: u64,
    },
    /// Outcome of a transfer (receiver → sender), or an abort (either way).
    FileDone {
        id: u64,
        ok: bool,
        error: String,
    },
    /// A bus message for the receiving node's subscribers that needs no
    /// cluster-wide order (a reply to a request from that node).
    Deliver(Box<Delivery>),
}

/// What a `Deliver` frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subject: String,
    pub reply: Option<String>,
    /// The publisher's private name (`Msgc-Sender`).
    pub sender: String,
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

pub use crate::mesh::frame::FrameError;

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        let u64s = |out: &mut Vec<u8>, v: &[u64]| {
            for x in v {
                out.extend_from_slice(&x.to_be_bytes());
            }
        };
        match self {
            Frame::Ping { id } => {
                out.push(kind::PING);
                u64s(out, &[*id]);
            }
            Frame::Pong { id } => {
                out.push(kind::PONG);
                u64s(out, &[*id]);
            }
            Frame::StatusRequest { id } => {
                out.push(kind::STATUS_REQUEST);
                u64s(out, &[*id]);
            }
            Frame::StatusReply { id, json } => {
                out.push(kind::STATUS_REPLY);
                u64s(out, &[*id]);
                out.extend_from_slice(json);
            }
            Frame::FileOffer {
                id,
                size,
                sha256,
                name,
            } => {
                out.push(kind::FILE_OFFER);
                u64s(out, &[*id, *size]);
                out.extend_from_slice(sha256);
                out.extend_from_slice(name.as_bytes());
            }
            Frame::FileChunk { id, offset, bytes } => {
                out.push(kind::FILE_CHUNK);
                u64s(out, &[*id, *offset]);
                out.extend_from_slice(bytes);
            }
            Frame::FileCredit { id, bytes } => {
                out.push(kind::FILE_CREDIT);
                u64s(out, &[*id, *bytes]);
            }
            Frame::FileDone { id, ok, error } => {
                out.push(kind::FILE_DONE);
                u64s(out, &[*id]);
                out.push(u8::from(*ok));
                out.extend_from_slice(error.as_bytes());
            }
            Frame::Deliver(d) => {
                out.push(kind::DELIVER);
                for s in [Some(&d.subject), d.reply.as_ref(), Some(&d.sender)] {
                    put_opt(out, s.map(|s| s.as_bytes()));
                }
                put_opt(out, d.headers.as_deref());
                out.extend_from_slice(&d.payload);
            }
        }
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Encodes the frame but for a file chunk's data, which it returns for
    /// the caller to write right after `out` (so chunks are not copied).
    pub fn encode_head(&self, out: &mut Vec<u8>) -> Option<&Bytes> {
        match self {
            Frame::FileChunk { id, offset, bytes } => {
                let len = u32::try_from(1 + 16 + bytes.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.push(kind::FILE_CHUNK);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                Some(bytes)
            }
            f => {
                f.encode(out);
                None
            }
        }
    }

    /// Bytes this frame takes on the wire.
    pub fn wire_len(&self) -> usize {
        let body = match self {
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::StatusRequest { .. } => 8,
            Frame::StatusReply { json, .. } => 8 + json.len(),
            Frame::FileOffer { name, .. } => 16 + 32 + name.len(),
            Frame::FileChunk { bytes, .. } => 16 + bytes.len(),
            Frame::FileCredit { .. } => 16,
            Frame::FileDone { error, .. } => 9 + error.len(),
            Frame::Deliver(d) => {
                16 + d.subject.len()
                    + d.reply.as_ref().map_or(0, String::len)
                    + d.sender.len()
                    + d.headers.as_ref().map_or(0, Bytes::len)
                    + d.payload.len()
            }
        };
        4 + 1 + body
    }
}

/// Incremental decoder: the peer links' length-prefixed framing, with this
/// protocol's frame kinds.
pub type Decoder = crate::mesh::frame::Decoder<Frame>;

impl crate::mesh::frame::Body for Frame {
    fn decode(kind: u8, body: Bytes) -> Result<Frame, FrameError> {
        decode_body(kind, body)
    }
}

fn decode_body(k: u8, mut b: Bytes) -> Result<Frame, FrameError> {
    let bad = FrameError::BadBody(k);
    let u64_ = |b: &mut Bytes| -> Result<u64, FrameError> {
        if b.remaining() < 8 {
            return Err(FrameError::BadBody(k));
        }
        Ok(b.get_u64())
    };
    let exact = |b: &Bytes, f: Frame| {
        if b.is_empty() {
            Ok(f)
        } else {
            Err(bad.clone())
        }
    };
    let text = |b: Bytes| String::from_utf8(b.to_vec()).map_err(|_| FrameError::BadBody(k));
    match k {
        kind::PING => {
            let id = u64_(&mut b)?;
            exact(&b, Frame::Ping { id })
        }
        kind::PONG => {
            let id = u64_(&mut b)?;
            exact(&b, Frame::Pong { id })
        }
        kind::STATUS_REQUEST => {
            let id = u64_(&mut b)?;
            exact(&b, Frame::StatusRequest { id })
        }
        kind::STATUS_REPLY => {
            let id = u64_(&mut b)?;
            Ok(Frame::StatusReply { id, json: b })
        }
        kind::FILE_OFFER => {
            let id = u64_(&mut b)?;
            let size = u64_(&mut b)?;
            if b.remaining() < 32 {
                return Err(bad);
            }
            let mut sha256 = [0u8; 32];
            b.copy_to_slice(&mut sha256);
            Ok(Frame::FileOffer {
                id,
                size,
                sha256,
                name: text(b)?,
            })
        }
        kind::FILE_CHUNK => {
            let id = u64_(&mut b)?;
            let offset = u64_(&mut b)?;
            Ok(Frame::FileChunk {
                id,
                offset,
                bytes: b,
            })
        }
        kind::FILE_CREDIT => {
            let id = u64_(&mut b)?;
            let bytes = u64_(&mut b)?;
            exact(&b, Frame::FileCredit { id, bytes })
        }
        kind::FILE_DONE => {
            let id = u64_(&mut b)?;
            let ok = match b.first() {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(bad),
            };
            b.advance(1);
            Ok(Frame::FileDone {
                id,
                ok,
                error: text(b)?,
            })
        }
        kind::DELIVER => {
            let field = |b: &mut Bytes| take_opt(b).ok_or(FrameError::BadBody(k));
            let subject = field(&mut b)?.ok_or(FrameError::BadBody(k))?;
            let reply = field(&mut b)?;
            let sender = field(&mut b)?.ok_or(FrameError::BadBody(k))?;
            let headers = field(&mut b)?;
            let utf8 = |x: Bytes| String::from_utf8(x.to_vec()).map_err(|_| FrameError::BadBody(k));
            Ok(Frame::Deliver(Box::new(Delivery {
                subject: utf8(subject)?,
                reply: reply.map(utf8).transpose()?,
                sender: utf8(sender)?,
                headers,
                payload: b,
            })))
        }
        other => Err(FrameError::UnknownKind(other)),
    }
}

/// An optional field: u32 big-endian length then the bytes; `u32::MAX` = absent.
fn put_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(v) => {
            out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX - 1).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// `None` when malformed; `Some(None)` when absent.
fn take_opt(b: &mut Bytes) -> Option<Option<Bytes>> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32();
    if n == u32::MAX {
        return Some(None);
    }
    let n = n as usize;
    (b.remaining() >= n).then(|| Some(b.split_to(n)))
}

/// Whether `name` may be written into `incoming_dir`: one plain path
/// component, no `/`, no `..`, no leading `.`, no NUL, not empty, at most
/// 255 bytes. `Err` says why.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".to_owned());
    }
    if name.len() > 255 {
        return Err("file name longer than 255 bytes".to_owned());
    }
    if name.contains('/') || name.contains('\\') || name.contains('\0') {
        return Err(format!("file name {name:?} holds a path separator or NUL"));
    }
    if name.starts_with('.') || name.contains("..") {
        return Err(format!("file name {name:?} starts with `.` or holds `..`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Ping { id: 1 },
            Frame::Pong { id: u64::MAX },
            Frame::StatusRequest { id: 7 },
            Frame::StatusReply {
                id: 7,
                json: Bytes::from_static(b"{\"node\":\"n\"}"),
            },
            Frame::FileOffer {
                id: 3,
                size: 20 << 20,
                sha256: [9; 32],
                name: "log.tar".into(),
            },
            Frame::FileChunk {
                id: 3,
                offset: 65536,
                bytes: Bytes::from_static(b"\x00\x01chunk"),
            },
            Frame::FileChunk {
                id: 3,
                offset: 0,
                bytes: Bytes::new(),
            },
            Frame::FileCredit {
                id: 3,
                bytes: 1 << 20,
            },
            Frame::FileDone {
                id: 3,
                ok: false,
                error: "no incoming_dir".into(),
            },
            Frame::FileDone {
                id: 4,
                ok: true,
                error: String::new(),
            },
            Frame::Deliver(Box::new(Delivery {
                subject: "_INBOX.abc.1".into(),
                reply: None,
                sender: "#3#node3".into(),
                headers: Some(Bytes::from_static(b"NATS/1.0\r\nA: b\r\n\r\n")),
                payload: Bytes::from_static(b"hello \x00\xff"),
            })),
            Frame::Deliver(Box::new(Delivery {
                subject: "s".into(),
                reply: Some("r".into()),
                sender: "#1#node1".into(),
                headers: None,
                payload: Bytes::new(),
            })),
        ]
    }

    #[test]
    fn round_trip_split_anywhere() {
        let frames = all();
        let mut wire = Vec::new();
        for f in &frames {
            let before = wire.len();
            f.encode(&mut wire);
            assert_eq!(wire.len() - before, f.wire_len(), "{f:?}");
        }
        for split in 0..=wire.len() {
            let mut d = Decoder::new(MAX_FRAME);
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.feed(part);
                while let Some(f) = d.next_frame() {
                    got.push(f.unwrap());
                }
            }
            assert_eq!(got, frames, "split at {split}");
        }
        // Byte by byte.
        let mut d = Decoder::new(MAX_FRAME);
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            while let Some(f) = d.next_frame() {
                got.push(f.unwrap());
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn a_head_and_its_tail_are_the_whole_frame() {
        for f in all() {
            let (mut whole, mut head) = (Vec::new(), Vec::new());
            f.encode(&mut whole);
            if let Some(tail) = f.encode_head(&mut head) {
                head.extend_from_slice(tail);
            }
            assert_eq!(head, whole, "{f:?}");
        }
    }

    #[test]
    fn limits() {
        let mut d = Decoder::new(16);
        d.feed(&17u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Some(Err(FrameError::TooLong { len: 17, max: 16 }))
        );
        assert_eq!(d.next_frame(), None, "dead after an error");
        d.feed(&[0, 0, 0, 9, kind::PING, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(d.next_frame(), None, "still dead");
        // Exactly at the limit is fine, one byte over is not.
        let f = Frame::FileChunk {
            id: 1,
            offset: 2,
            bytes: Bytes::from(vec![5; 15]),
        };
        let mut w = Vec::new();
        f.encode(&mut w);
        let len = w.len() - 4;
        let mut d = Decoder::new(len);
        d.feed(&w);
        assert_eq!(d.next_frame(), Some(Ok(f.clone())));
        let mut d = Decoder::new(len - 1);
        d.feed(&w);
        assert!(matches!(
            d.next_frame(),
            Some(Err(FrameError::TooLong { .. }))
        ));
        // The limit is decided on the length alone, before the body arrives.
        let mut d = Decoder::new(MAX_FRAME);
        d.feed(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_frame(),
            Some(Err(FrameError::TooLong { .. }))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            &[0, 0, 0, 0],
            &[0, 0, 0, 1, 99],
            &[0, 0, 0, 1, kind::PING],
            &[0, 0, 0, 2, kind::PING, 1],
            &[0, 0, 0, 10, kind::PONG, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0, 0, 0, 9, kind::FILE_DONE, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 10, kind::FILE_DONE, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            &[
                0,
                0,
                0,
                11,
                kind::FILE_DONE,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0xff,
            ],
            &[
                0,
                0,
                0,
                17,
                kind::FILE_OFFER,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                1,
            ],
            b"GET / HTTP/1.0\r\n\r\n",
        ];
        for c in cases {
            let mut d = Decoder::new(MAX_FRAME);
            d.feed(c);
            assert!(matches!(d.next_frame(), Some(Err(_))), "{c:?}");
        }
    }

    #[test]
    fn handshake_round_trip_and_checks() {
        let p: Vec<Peer> = [("a", "10.0.0.1"), ("b", "10.0.0.2")]
            .iter()
            .map(|(n, h)| Peer {
                name: (*n).into(),
                host: (*h).into(),
                port: 4809,
            })
            .collect();
        let h = Hello {
            protocol: PROTOCOL,
            node: "b".into(),
            to: "a".into(),
            peers: handshake::peer_list(&p),
            nonce: None,
            mac: None,
        };
        let l = handshake::line(HELLO_VERB, &h);
        assert!(l.starts_with(b"ECCLUSTER-NODE {\"protocol\":1,\"node\":\"b\",\"to\":\"a\""));
        let back: Hello = handshake::parse(HELLO_VERB, &l[..l.len() - 2]).unwrap();
        assert_eq!(back, h);
        assert_eq!(check_hello(&h, "a", &p), Ok(()));
        assert!(check_hello(&h, "b", &p).is_err());
        let stranger = Hello {
            node: "z".into(),
            ..h.clone()
        };
        assert!(
            check_hello(&stranger, "a", &p)
                .unwrap_err()
                .contains("not in peers")
        );
        let wrong = Hello {
            protocol: 9,
            ..h.clone()
        };
        assert!(
            check_hello(&wrong, "a", &p)
                .unwrap_err()
                .contains("protocol 9")
        );
        let misdirected = Hello {
            to: "c".into(),
            ..h
        };
        assert!(check_hello(&misdirected, "a", &p).is_err());
    }

    #[test]
    fn file_names() {
        for ok in ["a", "log.tar.gz", "x..y", "with space"] {
            let r = check_file_name(ok);
            if ok == "x..y" {
                assert!(r.is_err());
            } else {
                assert_eq!(r, Ok(()), "{ok}");
            }
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "../etc", "/abs", "a\0b"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }
}

//! Frames between msgc servers after the handshake, sans-IO.
//!
//! `u32 length (big-endian) | u8 kind | body`, where `length` counts the
//! kind byte and the body. A length over the configured maximum, an empty
//! frame or an unknown kind is a protocol error: the link is closed.

use bytes::{Buf, Bytes, BytesMut};

/// Frame kinds.
pub mod kind {
    /// Body: u64 big-endian sender timestamp in microseconds (opaque to the receiver).
    pub const PING: u8 = 1;
    /// Body: the PING's 8 bytes, echoed.
    pub const PONG: u8 = 2;
    /// Body: a message of the ordering protocol (docs/ORDERING.md).
    pub const ORDER: u8 = 3;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Ping(u64),
    Pong(u64),
    Order(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooLong { len: usize, max: usize },
    Empty,
    UnknownKind(u8),
    BadBody(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong { len, max } => {
                write!(f, "frame of {len} bytes over the {max}-byte limit")
            }
            FrameError::Empty => f.write_str("empty frame"),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadBody(k) => write!(f, "malformed body for frame kind {k}"),
        }
    }
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (k, body): (u8, &[u8]) = match self {
            Frame::Ping(t) => (kind::PING, &t.to_be_bytes()),
            Frame::Pong(t) => (kind::PONG, &t.to_be_bytes()),
            Frame::Order(b) => (kind::ORDER, b),
        };
        let len = u32::try_from(body.len() + 1).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(k);
        out.extend_from_slice(body);
    }
}

/// A frame kind's body decoder; the length prefix is [`Decoder`]'s. Shared
/// by the peer links and the node links (`node::codec`), which frame alike.
pub trait Body: Sized {
    fn decode(kind: u8, body: Bytes) -> Result<Self, FrameError>;
}

impl Body for Frame {
    fn decode(k: u8, body: Bytes) -> Result<Frame, FrameError> {
        let stamp =
            |b: &Bytes| -> Option<u64> { Some(u64::from_be_bytes(b.as_ref().try_into().ok()?)) };
        match k {
            kind::PING => stamp(&body).map(Frame::Ping).ok_or(FrameError::BadBody(k)),
            kind::PONG => stamp(&body).map(Frame::Pong).ok_or(FrameError::BadBody(k)),
            kind::ORDER => Ok(Frame::Order(body)),
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

/// Incremental decoder: feed bytes as they arrive, take frames out. Holds at
/// most one frame (`max` + 4 bytes) plus one read; after an error, nothing.
pub struct Decoder<F = Frame> {
    buf: BytesMut,
    max: usize,
    dead: bool,
    frames: std::marker::PhantomData<fn() -> F>,
}

impl<F: Body> Decoder<F> {
    /// `max`: the largest `length` accepted.
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max,
            dead: false,
            frames: std::marker::PhantomData,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.dead {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole frame; after an error, nothing more.
    pub fn next_frame(&mut self) -> Option<Result<F, FrameError>> {
        if self.dead || self.buf.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 {
            return Some(Err(self.die(FrameError::Empty)));
        }
        if len > self.max {
            return Some(Err(self.die(FrameError::TooLong { len, max: self.max })));
        }
        if self.buf.len() < 4 + len {
            return None;
        }
        self.buf.advance(4);
        let mut body = self.buf.split_to(len).freeze();
        let k = body[0];
        body.advance(1);
        Some(F::decode(k, body).map_err(|e| self.die(e)))
    }

    fn die(&mut self, e: FrameError) -> FrameError {
        self.dead = true;
        self.buf = BytesMut::new();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_split_anywhere() {
        let frames = vec![
            Frame::Ping(7),
            Frame::Order(Bytes::from_static(b"hello")),
            Frame::Pong(u64::MAX),
            Frame::Order(Bytes::new()),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        for split in 0..wire.len() {
            let mut d = Decoder::<Frame>::new(1 << 20);
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.feed(part);
                while let Some(f) = d.next_frame() {
                    got.push(f.unwrap());
                }
            }
            assert_eq!(got, frames, "split at {split}");
        }
    }

    #[test]
    fn limits_and_garbage() {
        let mut d = Decoder::<Frame>::new(16);
        d.feed(&17u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Some(Err(FrameError::TooLong { len: 17, max: 16 }))
        );
        assert_eq!(d.next_frame(), None, "dead after an error");
        // Exactly at the limit is fine.
        let mut d = Decoder::<Frame>::new(16);
        Frame::Order(Bytes::from(vec![0; 15])).encode(&mut Vec::new());
        let mut w = Vec::new();
        Frame::Order(Bytes::from(vec![0; 15])).encode(&mut w);
        d.feed(&w);
        assert!(matches!(d.next_frame(), Some(Ok(Frame::Order(b))) if b.len() == 15));
        let mut d = Decoder::<Frame>::new(16);
        d.feed(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::Empty)));
        let mut d = Decoder::<Frame>::new(16);
        d.feed(&[0, 0, 0, 1, 99]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::UnknownKind(99))));
        let mut d = Decoder::<Frame>::new(16);
        d.feed(&[0, 0, 0, 2, kind::PING, 1]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::BadBody(kind::PING))));
    }
}

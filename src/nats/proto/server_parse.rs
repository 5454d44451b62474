//! Server → client: the parser our own client tools and tests use to read
//! what a server (ours or nats-server) sends. Same incremental framing as
//! the server side.

use bytes::Bytes;

use super::decoder::{
    self, Decoder, Grammar, Pending, Step, args, parse_size, strip_verb, strip_verb_sp, utf8,
};
use super::{Limits, ProtoError, ServerInfo};

/// A message delivered to a subscription (`MSG`, or `HMSG` with headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subject: String,
    pub sid: String,
    pub reply: Option<String>,
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

/// One server operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    Info(Box<ServerInfo>),
    Msg(Delivery),
    Ping,
    Pong,
    Ok,
    /// The text between the quotes of `-ERR '...'` (quotes stripped if present).
    Err(String),
}

const VERBS: &[&[u8]] = &[
    b"MSG ", b"HMSG ", b"PING", b"PONG", b"INFO", b"+OK", b"-ERR",
];

struct ServerGrammar;

impl ServerGrammar {
    fn message(
        rest: &[u8],
        limits: &Limits,
        with_headers: bool,
    ) -> Result<Step<ServerOp>, ProtoError> {
        let verb = if with_headers { "HMSG" } else { "MSG" };
        let bad = ProtoError::BadArguments { verb };
        let (a, n) = args::<5>(rest).ok_or(bad.clone())?;
        let (reply, sizes) = match (with_headers, n) {
            (false, 3) => (None, &a[2..3]),
            (false, 4) => (Some(a[2]), &a[3..4]),
            (true, 4) => (None, &a[2..4]),
            (true, 5) => (Some(a[2]), &a[3..5]),
            _ => return Err(bad),
        };
        let total = parse_size(sizes[sizes.len() - 1]).ok_or(bad.clone())?;
        let header_len = match with_headers {
            true => Some(
                parse_size(sizes[0])
                    .filter(|h| *h <= total)
                    .ok_or(bad.clone())?,
            ),
            false => None,
        };
        if total > limits.max_payload as u64 {
            return Err(ProtoError::MaxPayloadViolation {
                size: total,
                limit: limits.max_payload,
            });
        }
        let text = |b: &[u8]| utf8(b).ok_or(bad.clone());
        Ok(Step::Payload(Pending {
            subject: text(a[0])?,
            sid: text(a[1])?,
            reply: reply.map(text).transpose()?,
            header_len: header_len.map(|h| h as usize),
            total_len: total as usize,
            error: None,
        }))
    }
}

impl Grammar for ServerGrammar {
    type Op = ServerOp;

    fn line(&mut self, line: &[u8], limits: &Limits) -> Result<Step<ServerOp>, ProtoError> {
        let op = if let Some(rest) = strip_verb_sp(line, b"MSG") {
            return Self::message(rest, limits, false);
        } else if let Some(rest) = strip_verb_sp(line, b"HMSG") {
            return Self::message(rest, limits, true);
        } else if strip_verb(line, b"PING").is_some() {
            ServerOp::Ping
        } else if strip_verb(line, b"PONG").is_some() {
            ServerOp::Pong
        } else if strip_verb(line, b"+OK").is_some() {
            ServerOp::Ok
        } else if let Some(rest) = strip_verb(line, b"INFO") {
            let info = serde_json::from_slice(decoder::trim_start(rest)).map_err(|e| {
                ProtoError::BadJson {
                    verb: "INFO",
                    detail: e.to_string(),
                }
            })?;
            ServerOp::Info(Box::new(info))
        } else if let Some(rest) = strip_verb(line, b"-ERR") {
            let text = String::from_utf8_lossy(decoder::trim_start(rest));
            let text = text.trim_end();
            let inner = text
                .strip_prefix('\'')
                .and_then(|t| t.strip_suffix('\''))
                .unwrap_or(text);
            ServerOp::Err(inner.to_owned())
        } else {
            return Err(ProtoError::UnknownOperation);
        };
        Ok(Step::Op(op))
    }

    fn message(
        &mut self,
        p: Pending,
        headers: Option<Bytes>,
        payload: Bytes,
    ) -> Result<ServerOp, ProtoError> {
        Ok(ServerOp::Msg(Delivery {
            subject: p.subject,
            sid: p.sid,
            reply: p.reply,
            headers,
            payload,
        }))
    }

    fn plausible(partial: &[u8]) -> bool {
        decoder::plausible(partial, VERBS)
    }
}

/// Incremental parser of what a server sends; see [`super::ClientParser`]
/// for the calling convention. `max_payload` should be at least the
/// server's announced one.
pub struct ServerParser {
    inner: Decoder<ServerGrammar>,
}

impl ServerParser {
    pub fn new(limits: Limits) -> Self {
        Self {
            inner: Decoder::new(ServerGrammar, limits),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.inner.feed(chunk);
    }

    pub fn next_op(&mut self) -> Option<Result<ServerOp, ProtoError>> {
        self.inner.next_op()
    }

    pub fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    pub fn is_dead(&self) -> bool {
        self.inner.is_dead()
    }
}

impl Default for ServerParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Iterator for ServerParser {
    type Item = Result<ServerOp, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_op()
    }
}

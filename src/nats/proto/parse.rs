//! Client → server: the incremental parser the listener runs per connection.

use bytes::Bytes;

use super::decoder::{
    self, Decoder, Grammar, Pending, Step, args, parse_size, strip_verb, strip_verb_sp, utf8,
};
use super::{ConnectOptions, Limits, ProtoError};
use crate::subject::valid_subject;

/// A message published by a client (`PUB`, or `HPUB` when `headers` is set).
/// `headers` and `payload` are slices of the receive buffer, shared by
/// reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub subject: String,
    pub reply: Option<String>,
    /// The header block (`NATS/1.0\r\n...\r\n\r\n`) as sent, for `HPUB`.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Connect(Box<ConnectOptions>),
    Pub(Publish),
    Sub {
        subject: String,
        queue: Option<String>,
        sid: String,
    },
    /// `max: None` removes the subscription now; `Some(n)` after `n` messages
    /// in total. Like nats-server, a `max` that is 0 or not a number means now.
    Unsub {
        sid: String,
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// `+OK` from a client: nats-server ignores it.
    Ok,
    /// `INFO` from a client: nats-server ignores it; raw argument kept.
    Info(Bytes),
    /// `-ERR` from a client: nats-server closes the connection on it.
    Err(String),
}

impl Op {
    /// Whether a verbose client expects `+OK` after this op succeeded.
    pub fn wants_ok(&self) -> bool {
        matches!(
            self,
            Op::Connect(_) | Op::Pub(_) | Op::Sub { .. } | Op::Unsub { .. }
        )
    }
}

const VERBS: &[&[u8]] = &[
    b"PUB ", b"HPUB ", b"SUB ", b"UNSUB ", b"PING", b"PONG", b"CONNECT", b"INFO", b"+OK", b"-ERR ",
];

/// The per-connection settings that change how lines parse; updated by the
/// parser itself when it sees `CONNECT`, so ops later in the same chunk obey.
struct ClientGrammar {
    pedantic: bool,
    headers: bool,
}

impl ClientGrammar {
    fn publish(
        &self,
        rest: &[u8],
        limits: &Limits,
        with_headers: bool,
    ) -> Result<Step<Op>, ProtoError> {
        let verb = if with_headers { "HPUB" } else { "PUB" };
        let bad = ProtoError::BadArguments { verb };
        let (a, n) = args::<4>(rest).ok_or(bad.clone())?;
        let (subject, reply, sizes) = match (with_headers, n) {
            (false, 2) => (a[0], None, &a[1..2]),
            (false, 3) => (a[0], Some(a[1]), &a[2..3]),
            (true, 3) => (a[0], None, &a[1..3]),
            (true, 4) => (a[0], Some(a[1]), &a[2..4]),
            _ => return Err(bad),
        };
        let total = parse_size(sizes[sizes.len() - 1]).ok_or(bad.clone())?;
        let header_len = match with_headers {
            true => Some(parse_size(sizes[0]).filter(|h| *h <= total).ok_or(bad)?),
            false => None,
        };
        if total > limits.max_payload as u64 {
            return Err(ProtoError::MaxPayloadViolation {
                size: total,
                limit: limits.max_payload,
            });
        }
        // Sizes are now ≤ max_payload, a usize.
        let total_len = total as usize;
        let header_len = header_len.map(|h| h as usize);
        let subject = utf8(subject);
        let reply = reply.map(utf8);
        // nats-server checks the shape only in pedantic mode, and UTF-8 never.
        let error = match (&subject, &reply) {
            (None, _) | (_, Some(None)) => Some(ProtoError::UnroutableSubject),
            (Some(s), _) if valid_subject(s, !self.pedantic) => None,
            _ if self.pedantic => Some(ProtoError::InvalidPublishSubject),
            _ => Some(ProtoError::UnroutableSubject),
        };
        let subject = subject.unwrap_or_default();
        Ok(Step::Payload(Pending {
            subject,
            sid: String::new(),
            reply: reply.flatten(),
            header_len,
            total_len,
            error,
        }))
    }

    fn subscribe(rest: &[u8]) -> Result<Step<Op>, ProtoError> {
        let bad = ProtoError::BadArguments { verb: "SUB" };
        let (a, n) = args::<3>(rest).ok_or(bad.clone())?;
        let (subject, queue, sid) = match n {
            2 => (a[0], None, a[1]),
            3 => (a[0], Some(a[1]), a[2]),
            _ => return Err(bad),
        };
        let sid = utf8(sid).ok_or(bad)?;
        let subject = utf8(subject).filter(|s| valid_subject(s, true));
        let queue = queue.map(utf8);
        match (subject, queue) {
            (Some(subject), None) => Ok(Step::Op(Op::Sub {
                subject,
                queue: None,
                sid,
            })),
            (Some(subject), Some(Some(q))) => Ok(Step::Op(Op::Sub {
                subject,
                queue: Some(q),
                sid,
            })),
            _ => Err(ProtoError::InvalidSubject),
        }
    }

    fn unsubscribe(rest: &[u8]) -> Result<Step<Op>, ProtoError> {
        let bad = ProtoError::BadArguments { verb: "UNSUB" };
        let (a, n) = args::<2>(rest).ok_or(bad.clone())?;
        if n == 0 {
            return Err(bad);
        }
        let sid = utf8(a[0]).ok_or(bad)?;
        let max = if n == 2 {
            parse_size(a[1]).filter(|m| *m > 0)
        } else {
            None
        };
        Ok(Step::Op(Op::Unsub { sid, max }))
    }
}

impl Grammar for ClientGrammar {
    type Op = Op;

    fn line(&mut self, line: &[u8], limits: &Limits) -> Result<Step<Op>, ProtoError> {
        let first = line.first().map(u8::to_ascii_uppercase);
        let op = match first {
            Some(b'P') => {
                if strip_verb(line, b"PING").is_some() {
                    Op::Ping
                } else if strip_verb(line, b"PONG").is_some() {
                    Op::Pong
                } else if let Some(rest) = strip_verb_sp(line, b"PUB") {
                    return self.publish(rest, limits, false);
                } else {
                    return Err(ProtoError::UnknownOperation);
                }
            }
            Some(b'H') => {
                let rest = strip_verb_sp(line, b"HPUB").ok_or(ProtoError::UnknownOperation)?;
                if !self.headers {
                    return Err(ProtoError::HeadersNotSupported);
                }
                return self.publish(rest, limits, true);
            }
            Some(b'S') => {
                return Self::subscribe(
                    strip_verb_sp(line, b"SUB").ok_or(ProtoError::UnknownOperation)?,
                );
            }
            Some(b'U') => {
                return Self::unsubscribe(
                    strip_verb_sp(line, b"UNSUB").ok_or(ProtoError::UnknownOperation)?,
                );
            }
            Some(b'C') => {
                let rest = strip_verb(line, b"CONNECT").ok_or(ProtoError::UnknownOperation)?;
                let opts: ConnectOptions = serde_json::from_slice(decoder::trim_start(rest))
                    .map_err(|e| ProtoError::BadJson {
                        verb: "CONNECT",
                        detail: e.to_string(),
                    })?;
                self.pedantic = opts.pedantic;
                self.headers = opts.headers;
                Op::Connect(Box::new(opts))
            }
            Some(b'I') => {
                let rest = strip_verb(line, b"INFO").ok_or(ProtoError::UnknownOperation)?;
                Op::Info(Bytes::copy_from_slice(decoder::trim_start(rest)))
            }
            Some(b'+') => {
                strip_verb(line, b"+OK").ok_or(ProtoError::UnknownOperation)?;
                Op::Ok
            }
            Some(b'-') => {
                let rest = strip_verb_sp(line, b"-ERR").ok_or(ProtoError::UnknownOperation)?;
                Op::Err(String::from_utf8_lossy(decoder::trim_start(rest)).into_owned())
            }
            _ => return Err(ProtoError::UnknownOperation),
        };
        Ok(Step::Op(op))
    }

    fn message(
        &mut self,
        p: Pending,
        headers: Option<Bytes>,
        payload: Bytes,
    ) -> Result<Op, ProtoError> {
        Ok(Op::Pub(Publish {
            subject: p.subject,
            reply: p.reply,
            headers,
            payload,
        }))
    }

    fn plausible(partial: &[u8]) -> bool {
        decoder::plausible(partial, VERBS)
    }
}

/// Incremental parser of what a client sends. Feed it bytes as they arrive
/// and drain ops with [`ClientParser::next_op`] (or iterate). After a fatal
/// error ([`ProtoError::is_fatal`]) it yields nothing more.
pub struct ClientParser {
    inner: Decoder<ClientGrammar>,
}

impl ClientParser {
    /// Starts, like nats-server, as if `CONNECT {}` had been seen: pedantic,
    /// no headers, until the client's `CONNECT` says otherwise.
    pub fn new(limits: Limits) -> Self {
        let grammar = ClientGrammar {
            pedantic: true,
            headers: false,
        };
        Self {
            inner: Decoder::new(grammar, limits),
        }
    }

    /// Appends received bytes (copied once into the parser's buffer).
    pub fn feed(&mut self, chunk: &[u8]) {
        self.inner.feed(chunk);
    }

    /// The next complete op, `None` when more input is needed (or after a
    /// fatal error).
    pub fn next_op(&mut self) -> Option<Result<Op, ProtoError>> {
        self.inner.next_op()
    }

    /// Bytes received but not yet turned into ops (a partial line or payload).
    pub fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Whether a fatal error stopped the parser.
    pub fn is_dead(&self) -> bool {
        self.inner.is_dead()
    }

    /// Whether publish subjects are checked strictly (no wildcards).
    pub fn pedantic(&self) -> bool {
        self.inner.grammar.pedantic
    }

    /// Whether `HPUB` is accepted (the client sent `"headers": true`).
    pub fn headers(&self) -> bool {
        self.inner.grammar.headers
    }
}

impl Default for ClientParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Iterator for ClientParser {
    type Item = Result<Op, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_op()
    }
}

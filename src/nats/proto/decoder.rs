//! Framing shared by both directions: control lines ended by `\n` (an
//! optional `\r` before it is dropped, as nats-server does), some followed by
//! a length-prefixed payload ended by exactly `\r\n`. Input arrives in
//! arbitrary chunks; payloads are split out of the receive buffer as
//! [`Bytes`] without copying, so one message can be fanned out to many
//! subscribers by reference count.

use bytes::{Buf, Bytes, BytesMut};

use super::{Limits, ProtoError};

/// A control line announced a payload; these are its parsed arguments.
#[derive(Debug)]
pub(crate) struct Pending {
    pub subject: String,
    pub sid: String,
    pub reply: Option<String>,
    pub header_len: Option<usize>,
    pub total_len: usize,
    /// A non-fatal error to report once the payload has been skipped.
    pub error: Option<ProtoError>,
}

pub(crate) enum Step<O> {
    Op(O),
    Payload(Pending),
}

/// One direction's verbs.
pub(crate) trait Grammar {
    type Op;
    /// Parses one complete control line (terminator removed).
    fn line(&mut self, line: &[u8], limits: &Limits) -> Result<Step<Self::Op>, ProtoError>;
    /// Builds the op once the announced payload is in.
    fn message(
        &mut self,
        pending: Pending,
        headers: Option<Bytes>,
        payload: Bytes,
    ) -> Result<Self::Op, ProtoError>;
    /// Whether an unterminated line could still become a valid one; lets
    /// garbage fail at once instead of after `max_control_line` bytes.
    fn plausible(partial: &[u8]) -> bool;
}

enum State {
    Line,
    Payload(Pending),
    /// A fatal error happened: framing is lost, nothing more is parsed.
    Dead,
}

pub(crate) struct Decoder<G> {
    buf: BytesMut,
    /// Bytes at the front of `buf` already searched for `\n`.
    scanned: usize,
    state: State,
    limits: Limits,
    pub grammar: G,
}

impl<G: Grammar> Decoder<G> {
    pub fn new(grammar: G, limits: Limits) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            state: State::Line,
            limits,
            grammar,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !matches!(self.state, State::Dead) {
            self.buf.extend_from_slice(chunk);
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn is_dead(&self) -> bool {
        matches!(self.state, State::Dead)
    }

    fn fail(&mut self, e: ProtoError) -> Option<Result<G::Op, ProtoError>> {
        if e.is_fatal() {
            self.state = State::Dead;
            self.buf = BytesMut::new();
        }
        Some(Err(e))
    }

    pub fn next_op(&mut self) -> Option<Result<G::Op, ProtoError>> {
        loop {
            match &self.state {
                State::Dead => return None,
                State::Payload(p) => {
                    let n = p.total_len;
                    // The terminator is checked as soon as it arrives.
                    if self.buf.len() > n && self.buf[n] != b'\r'
                        || self.buf.len() > n + 1 && self.buf[n + 1] != b'\n'
                    {
                        return self.fail(ProtoError::UnknownOperation);
                    }
                    if self.buf.len() < n + 2 {
                        return None;
                    }
                    let mut data = self.buf.split_to(n).freeze();
                    self.buf.advance(2);
                    let State::Payload(p) = std::mem::replace(&mut self.state, State::Line) else {
                        return None;
                    };
                    if let Some(e) = p.error {
                        return Some(Err(e));
                    }
                    let headers = p.header_len.map(|h| data.split_to(h));
                    return match self.grammar.message(p, headers, data) {
                        Ok(op) => Some(Ok(op)),
                        Err(e) => self.fail(e),
                    };
                }
                State::Line => {
                    let max = self.limits.max_control_line;
                    let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n')
                    else {
                        self.scanned = self.buf.len();
                        // Verb first, then length, in both branches: the
                        // error must not depend on where the input was cut.
                        if !G::plausible(&self.buf) {
                            return self.fail(ProtoError::UnknownOperation);
                        }
                        // Room for the content plus a `\r` still waiting for its `\n`.
                        let over = self.buf.len() > max + 1
                            || self.buf.len() == max + 1 && self.buf[max] != b'\r';
                        if over {
                            return self.fail(ProtoError::MaxControlLineExceeded { limit: max });
                        }
                        return None;
                    };
                    let nl = self.scanned + pos;
                    self.scanned = 0;
                    let end = if nl > 0 && self.buf[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    if !G::plausible(&self.buf[..end]) {
                        return self.fail(ProtoError::UnknownOperation);
                    }
                    if end > max {
                        return self.fail(ProtoError::MaxControlLineExceeded { limit: max });
                    }
                    let step = self.grammar.line(&self.buf[..end], &self.limits);
                    self.buf.advance(nl + 1);
                    match step {
                        Ok(Step::Op(op)) => return Some(Ok(op)),
                        Ok(Step::Payload(p)) => {
                            self.buf
                                .reserve((p.total_len + 2).saturating_sub(self.buf.len()));
                            self.state = State::Payload(p);
                        }
                        Err(e) => return self.fail(e),
                    }
                }
            }
        }
    }
}

/// Splits arguments on runs of spaces and tabs, like nats-server.
pub(crate) fn split_args(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ' || b == b'\t')
        .filter(|a| !a.is_empty())
}

/// Collects at most `N` arguments; `None` if there are more.
pub(crate) fn args<const N: usize>(line: &[u8]) -> Option<([&[u8]; N], usize)> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for a in split_args(line) {
        *out.get_mut(n)? = a;
        n += 1;
    }
    Some((out, n))
}

/// A decimal byte count: digits only, no sign, no overflow.
pub(crate) fn parse_size(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// If `line` starts with `verb` (ASCII case-insensitive), what follows it.
pub(crate) fn strip_verb<'a>(line: &'a [u8], verb: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..verb.len())?;
    head.eq_ignore_ascii_case(verb).then(|| &line[verb.len()..])
}

/// What follows `verb` if it is followed by at least one space or tab.
pub(crate) fn strip_verb_sp<'a>(line: &'a [u8], verb: &[u8]) -> Option<&'a [u8]> {
    let rest = strip_verb(line, verb)?;
    matches!(rest.first(), Some(b' ' | b'\t')).then_some(rest)
}

/// Whether `partial` is a prefix of, or starts with, one of `verbs`; a space
/// in a verb stands for a space or a tab.
pub(crate) fn plausible(partial: &[u8], verbs: &[&[u8]]) -> bool {
    verbs.iter().any(|v| {
        v.iter()
            .zip(partial)
            .all(|(&want, &got)| want.eq_ignore_ascii_case(&got) || want == b' ' && got == b'\t')
    })
}

pub(crate) fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    &b[n..]
}

pub(crate) fn utf8(b: &[u8]) -> Option<String> {
    // Copied without libc's memcpy: subjects are short (see `encode::extend`).
    let mut v = Vec::with_capacity(b.len());
    super::encode::extend(&mut v, b);
    String::from_utf8(v).ok()
}

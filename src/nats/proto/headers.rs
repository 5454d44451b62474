//! NATS header blocks: `NATS/1.0[ <status>[ <description>]]\r\n`, then
//! `Key: Value\r\n` lines, then an empty line. Built and edited here so the
//! server can stamp `Msgc-Sender` on deliveries and answer with status 503.

use std::fmt;

use super::encode::extend;

/// Header naming the sender of a delivered message: `#<client id>#<node>`.
pub const MSGC_SENDER: &str = "Msgc-Sender";

/// The block a requester gets when nobody subscribes to its request subject
/// (clients that sent `no_responders` and `headers`).
pub const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

const PREFIX: &[u8] = b"NATS/1.0";
const END: &[u8] = b"\r\n\r\n";

/// A header key or value that cannot be written, or a block that does not
/// have the NATS shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHeader;

impl fmt::Display for BadHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed NATS header")
    }
}

impl std::error::Error for BadHeader {}

/// Keys are visible ASCII without `:`; values have no CR or LF.
fn check(key: &str, value: &str) -> Result<(), BadHeader> {
    let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    let value_ok = !value.bytes().any(|b| b == b'\r' || b == b'\n');
    if key_ok && value_ok {
        Ok(())
    } else {
        Err(BadHeader)
    }
}

/// `NATS/1.0\r\nKey: Value\r\n...\r\n`.
pub fn header_block(fields: &[(&str, &str)]) -> Result<Vec<u8>, BadHeader> {
    let mut out = Vec::with_capacity(
        16 + fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(b"\r\n");
    for (k, v) in fields {
        check(k, v)?;
        push_field(&mut out, k, v);
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Status form, e.g. `NATS/1.0 503\r\n\r\n` or `NATS/1.0 408 Request Timeout\r\n\r\n`.
pub fn status_block(code: u16, description: Option<&str>) -> Result<Vec<u8>, BadHeader> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(PREFIX);
    out.push(b' ');
    super::encode::push_u64(&mut out, u64::from(code));
    if let Some(d) = description {
        check("x", d)?;
        out.push(b' ');
        out.extend_from_slice(d.as_bytes());
    }
    out.extend_from_slice(END);
    Ok(out)
}

fn push_field(out: &mut Vec<u8>, key: &str, value: &str) {
    extend(out, key.as_bytes());
    out.extend_from_slice(b": ");
    extend(out, value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Adds one field: to a new block when the message has none, else appended
/// before the block's final empty line (keeping any status line).
pub fn with_header(block: Option<&[u8]>, key: &str, value: &str) -> Result<Vec<u8>, BadHeader> {
    check(key, value)?;
    let Some(block) = block.filter(|b| !b.is_empty()) else {
        return header_block(&[(key, value)]);
    };
    if !block.starts_with(PREFIX) || !block.ends_with(END) {
        return Err(BadHeader);
    }
    let mut out = Vec::with_capacity(block.len() + key.len() + value.len() + 4);
    extend(&mut out, &block[..block.len() - 2]);
    push_field(&mut out, key, value);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// A parsed header block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    pub status: Option<u16>,
    pub description: Option<String>,
    pub fields: Vec<(String, String)>,
}

impl Headers {
    /// First value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a header block back (client tools, tests).
pub fn parse_headers(block: &[u8]) -> Result<Headers, BadHeader> {
    let text = std::str::from_utf8(block).map_err(|_| BadHeader)?;
    let body = text.strip_suffix("\r\n\r\n").ok_or(BadHeader)?;
    let mut lines = body.split("\r\n");
    let first = lines.next().ok_or(BadHeader)?;
    let rest = first.strip_prefix("NATS/1.0").ok_or(BadHeader)?;
    let mut h = Headers::default();
    let rest = rest.trim_start();
    if !rest.is_empty() {
        let (code, desc) = rest.split_once(' ').unwrap_or((rest, ""));
        h.status = Some(code.parse().map_err(|_| BadHeader)?);
        h.description = (!desc.trim().is_empty()).then(|| desc.trim().to_owned());
    }
    for line in lines {
        let (k, v) = line.split_once(':').ok_or(BadHeader)?;
        h.fields.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_blocks() {
        assert_eq!(header_block(&[]).unwrap(), b"NATS/1.0\r\n\r\n");
        assert_eq!(
            header_block(&[("A", "1"), ("B-c", "x y")]).unwrap(),
            b"NATS/1.0\r\nA: 1\r\nB-c: x y\r\n\r\n"
        );
        assert_eq!(status_block(503, None).unwrap(), NO_RESPONDERS);
        assert_eq!(
            status_block(408, Some("Request Timeout")).unwrap(),
            b"NATS/1.0 408 Request Timeout\r\n\r\n"
        );
        assert_eq!(header_block(&[("A:", "1")]), Err(BadHeader));
        assert_eq!(header_block(&[("A B", "1")]), Err(BadHeader));
        assert_eq!(header_block(&[("", "1")]), Err(BadHeader));
        assert_eq!(header_block(&[("A", "1\r\nB: 2")]), Err(BadHeader));
    }

    #[test]
    fn insert_sender() {
        let sender = super::super::private_name(42, "node1");
        let fresh = with_header(None, MSGC_SENDER, &sender).unwrap();
        assert_eq!(fresh, b"NATS/1.0\r\nMsgc-Sender: #42#node1\r\n\r\n");
        assert_eq!(with_header(Some(b""), MSGC_SENDER, &sender).unwrap(), fresh);
        let appended =
            with_header(Some(b"NATS/1.0\r\nA: 1\r\n\r\n"), MSGC_SENDER, &sender).unwrap();
        assert_eq!(
            appended,
            b"NATS/1.0\r\nA: 1\r\nMsgc-Sender: #42#node1\r\n\r\n"
        );
        let status = with_header(Some(NO_RESPONDERS), "K", "v").unwrap();
        assert_eq!(status, b"NATS/1.0 503\r\nK: v\r\n\r\n");
        assert_eq!(with_header(Some(b"XX"), "K", "v"), Err(BadHeader));
        assert_eq!(with_header(Some(b"NATS/1.0\r\n"), "K", "v"), Err(BadHeader));

        let h = parse_headers(&appended).unwrap();
        assert_eq!(h.get("msgc-sender"), Some("#42#node1"));
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.status, None);
        let h = parse_headers(&status).unwrap();
        assert_eq!((h.status, h.get("K")), (Some(503), Some("v")));
        let h = parse_headers(b"NATS/1.0 408 Request Timeout\r\n\r\n").unwrap();
        assert_eq!(h.description.as_deref(), Some("Request Timeout"));
        assert!(parse_headers(b"NATS/1.0\r\nnocolon\r\n\r\n").is_err());
    }
}

//! A request head, sans-IO: bytes in, a method and path (or why not) out.
//! `httparse` does the parsing; this bounds it.

/// A request head may take this many bytes at most.
pub const MAX_HEAD: usize = 8 * 1024;
/// And this many header lines.
const MAX_HEADERS: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    Done(Request),
    /// Answer 400 (or 431 when the head is too large) and close.
    Bad(&'static str),
}

/// Parses the head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (req.method, req.path) else {
                return Parsed::Bad("no method or path");
            };
            let path = target.split('?').next().unwrap_or_default();
            Parsed::Done(Request {
                method: method.to_owned(),
                path: path.to_owned(),
            })
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Parsed::Bad("head too large"),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Bad("head too large"),
        Err(_) => Parsed::Bad("malformed request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_head_gives_method_and_path_without_query() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            r,
            Parsed::Done(Request {
                method: "GET".into(),
                path: "/metrics".into()
            })
        );
    }

    #[test]
    fn a_partial_head_waits_and_a_huge_or_bad_one_is_refused() {
        assert_eq!(parse(b"GET /readyz HTTP/1.1\r\nHost:"), Parsed::Partial);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Parsed::Bad("head too large"));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("X{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Bad("head too large"));
        assert_eq!(
            parse(b"\x00\x01 / HTTP/1.1\r\n\r\n"),
            Parsed::Bad("malformed request")
        );
    }
}

//! A small blocking NATS client (std only) for the soak's load threads: one connection per
//! thread, `CONNECT` without verbose/pedantic/headers, the server's keepalive `PING`s answered
//! while reading.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What the server sent (keepalive `PING`s and `+OK` are handled inside [`Client::next`]).
#[derive(Debug, PartialEq)]
pub enum Op {
    Msg {
        subject: String,
        reply: Option<String>,
        payload: Vec<u8>,
    },
    Pong,
    Err(String),
}

pub struct Client {
    stream: TcpStream,
    /// Read buffer: `rbuf[start..end]` is unparsed input; zeroed once, doubled when a
    /// message needs more room (no clearing per read).
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    wbuf: Vec<u8>,
}

/// Initial read buffer.
const READ_CHUNK: usize = 64 * 1024;

impl Client {
    /// Connects, reads `INFO`, sends `CONNECT`; the first `PING`/`PONG` is the caller's.
    pub fn connect(addr: &str, name: &str) -> io::Result<Client> {
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| io::Error::other(format!("bad address {addr}")))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            rbuf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            wbuf: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let info = loop {
            if let Some(line) = c.take_line() {
                break line;
            }
            c.fill(deadline)?
                .then_some(())
                .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no INFO"))?;
        };
        if !info.starts_with("INFO ") {
            return Err(io::Error::other(format!("expected INFO, got {info:?}")));
        }
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":true,\"headers\":false,\"name\":\"{name}\",\"lang\":\"xtask-soak\",\"version\":\"0\"}}\r\n"
        );
        c.wbuf.extend_from_slice(connect.as_bytes());
        Ok(c)
    }

    pub fn sub(&mut self, subject: &str, queue: Option<&str>, sid: u64) {
        let q = queue.map(|q| format!(" {q}")).unwrap_or_default();
        self.wbuf
            .extend_from_slice(format!("SUB {subject}{q} {sid}\r\n").as_bytes());
    }

    pub fn unsub(&mut self, sid: u64) {
        self.wbuf
            .extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
    }

    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let r = reply.map(|r| format!(" {r}")).unwrap_or_default();
        self.wbuf
            .extend_from_slice(format!("PUB {subject}{r} {}\r\n", payload.len()).as_bytes());
        self.wbuf.extend_from_slice(payload);
        self.wbuf.extend_from_slice(b"\r\n");
    }

    pub fn ping(&mut self) {
        self.wbuf.extend_from_slice(b"PING\r\n");
    }

    /// Writes everything buffered (blocking; a write timeout turns a stuck server into an error).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stream
            .set_write_timeout(Some(Duration::from_secs(10)))?;
        self.stream.write_all(&self.wbuf)?;
        self.wbuf.clear();
        Ok(())
    }

    /// The next op, or None once `deadline` passes. Answers the server's `PING`s.
    pub fn next(&mut self, deadline: Instant) -> io::Result<Option<Op>> {
        loop {
            if let Some(op) = self.parse_one()? {
                return Ok(Some(op));
            }
            if !self.fill(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Sends `PING` and waits up to `limit` for its `PONG`, returning what came before it.
    pub fn roundtrip(&mut self, limit: Duration) -> io::Result<Vec<Op>> {
        self.ping();
        self.flush()?;
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            match self.next(deadline)? {
                Some(Op::Pong) => return Ok(before),
                Some(op) => before.push(op),
                None => return Err(io::Error::new(io::ErrorKind::TimedOut, "no PONG")),
            }
        }
    }

    /// Reads once, until `deadline`; false on timeout.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.rbuf.len() {
            if self.start > 0 {
                self.rbuf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                self.rbuf.resize(self.rbuf.len() * 2, 0);
            }
        }
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match self.stream.read(&mut self.rbuf[self.end..]) {
            Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            Ok(k) => {
                self.end += k;
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let buf = &self.rbuf[self.start..self.end];
        let i = buf.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&buf[..i])
            .trim_end_matches('\r')
            .to_owned();
        self.start += i + 1;
        Some(line)
    }

    /// One complete op from the buffer, if there is one.
    fn parse_one(&mut self) -> io::Result<Option<Op>> {
        loop {
            let buf = &self.rbuf[self.start..self.end];
            let Some(i) = buf.iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&buf[..i])
                .trim_end_matches('\r')
                .to_owned();
            let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match verb.to_ascii_uppercase().as_str() {
                "MSG" => {
                    let args: Vec<&str> = rest.split_whitespace().collect();
                    let (subject, reply, size) = match args.as_slice() {
                        [s, _sid, n] => (*s, None, *n),
                        [s, _sid, r, n] => (*s, Some(r.to_string()), *n),
                        _ => return Err(io::Error::other(format!("bad MSG line {line:?}"))),
                    };
                    let size: usize = size
                        .parse()
                        .map_err(|_| io::Error::other(format!("bad MSG size {line:?}")))?;
                    if buf.len() < i + 1 + size + 2 {
                        return Ok(None);
                    }
                    let payload = buf[i + 1..i + 1 + size].to_vec();
                    let subject = subject.to_owned();
                    self.start += i + 1 + size + 2;
                    return Ok(Some(Op::Msg {
                        subject,
                        reply,
                        payload,
                    }));
                }
                "PING" => {
                    self.start += i + 1;
                    self.wbuf.extend_from_slice(b"PONG\r\n");
                    self.flush()?;
                }
                "PONG" => {
                    self.start += i + 1;
                    return Ok(Some(Op::Pong));
                }
                "-ERR" => {
                    self.start += i + 1;
                    return Ok(Some(Op::Err(rest.trim().trim_matches('\'').to_owned())));
                }
                "+OK" | "INFO" => self.start += i + 1,
                _ => return Err(io::Error::other(format!("unexpected line {line:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_msgs_split_anywhere_and_answers_pings() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let stream = b"INFO {}\r\nPING\r\nMSG a.b 1 4\r\nab\r\n\r\nMSG c 2 r.1 0\r\n\r\n-ERR 'msgc: no quorum'\r\nPONG\r\n";
            for chunk in stream.chunks(5) {
                s.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut got = vec![0u8; 4096];
            let mut all = Vec::new();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            while let Ok(n) = s.read(&mut got) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&got[..n]);
            }
            String::from_utf8(all).unwrap()
        });
        let mut c = Client::connect(&addr, "t").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let a = c.next(deadline).unwrap().unwrap();
        assert_eq!(
            a,
            Op::Msg {
                subject: "a.b".into(),
                reply: None,
                payload: b"ab\r\n".to_vec()
            }
        );
        let b = c.next(deadline).unwrap().unwrap();
        assert_eq!(
            b,
            Op::Msg {
                subject: "c".into(),
                reply: Some("r.1".into()),
                payload: vec![]
            }
        );
        assert_eq!(
            c.next(deadline).unwrap(),
            Some(Op::Err("msgc: no quorum".into()))
        );
        assert_eq!(c.next(deadline).unwrap(), Some(Op::Pong));
        drop(c);
        let sent = server.join().unwrap();
        assert!(sent.starts_with("CONNECT {"), "{sent}");
        assert!(sent.contains("PONG\r\n"), "{sent}");
    }
}

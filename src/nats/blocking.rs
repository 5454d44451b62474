//! A blocking NATS client on a std `TcpStream` (no executor), for threads
//! that play one client each: the integration tests' harness and the
//! soak's load threads. It reads with the same codec as everything else
//! (`proto::ServerParser`) and writes through a buffer the caller flushes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::proto::{Limits, ProtoError, ServerInfo, ServerOp, ServerParser};

/// What a server may send a test or load client: generous, so the client
/// never refuses what the server under test is allowed to send.
const READ_LIMITS: Limits = Limits {
    max_control_line: 1 << 20,
    max_payload: 64 << 20,
};

/// What one read found.
#[derive(Debug)]
pub enum Polled {
    Op(ServerOp),
    /// Nothing within the read timeout.
    Idle,
    /// The server closed, or the socket failed.
    Closed,
    /// The server sent something that does not parse (nothing more is read).
    Bad(ProtoError),
}

pub struct Client {
    stream: TcpStream,
    parser: ServerParser,
    /// The server's INFO.
    pub info: ServerInfo,
    buf: Vec<u8>,
    wbuf: Vec<u8>,
    eof: bool,
}

impl Client {
    /// Connects within `timeout` and reads the server's INFO (waiting at
    /// most `timeout` for it); sends nothing. Reads then time out after
    /// `timeout` too (see [`Client::set_read_timeout`]).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout.max(Duration::from_secs(10))))?;
        let _ = stream.set_nodelay(true);
        let mut c = Client {
            stream,
            parser: ServerParser::new(READ_LIMITS),
            info: ServerInfo::default(),
            buf: vec![0; 64 * 1024],
            wbuf: Vec::new(),
            eof: false,
        };
        match c.poll() {
            Polled::Op(ServerOp::Info(info)) => c.info = *info,
            other => {
                return Err(io::Error::other(format!(
                    "expected INFO first, got {other:?}"
                )));
            }
        }
        Ok(c)
    }

    /// How long one read waits before [`Client::poll`] says `Idle`.
    pub fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        self.stream
            .set_read_timeout(Some(d.max(Duration::from_millis(1))))
    }

    /// Writes `bytes` now (after anything buffered).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wbuf.extend_from_slice(bytes);
        self.flush()
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.wbuf);
        self.wbuf.clear();
        r
    }

    /// Buffers `CONNECT <json>`.
    pub fn connect_with(&mut self, json: &str) {
        self.queue(format!("CONNECT {json}\r\n").as_bytes());
    }

    /// Buffers raw protocol bytes.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub fn sub(&mut self, subject: &str, queue: Option<&str>, sid: &str) {
        let q = queue.map(|q| format!(" {q}")).unwrap_or_default();
        self.queue(format!("SUB {subject}{q} {sid}\r\n").as_bytes());
    }

    pub fn unsub(&mut self, sid: &str) {
        self.queue(format!("UNSUB {sid}\r\n").as_bytes());
    }

    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let r = reply.map(|r| format!(" {r}")).unwrap_or_default();
        self.queue(format!("PUB {subject}{r} {}\r\n", payload.len()).as_bytes());
        self.queue(payload);
        self.queue(b"\r\n");
    }

    pub fn ping(&mut self) {
        self.queue(b"PING\r\n");
    }

    /// The next op, whatever it is; `Idle` when nothing came within the
    /// read timeout.
    pub fn poll(&mut self) -> Polled {
        loop {
            if let Some(op) = self.parser.next_op() {
                return match op {
                    Ok(op) => Polled::Op(op),
                    Err(e) => {
                        self.eof = true;
                        Polled::Bad(e)
                    }
                };
            }
            if self.eof {
                return Polled::Closed;
            }
            if !self.read_some() {
                return Polled::Idle;
            }
        }
    }

    /// The next message, `PONG` or `-ERR`, or `None` once `deadline`
    /// passes; the server's PINGs are answered, `+OK` and INFO skipped.
    pub fn next(&mut self, deadline: Instant) -> io::Result<Option<ServerOp>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.set_read_timeout(left)?;
            match self.poll() {
                Polled::Op(ServerOp::Ping) => self.send(b"PONG\r\n")?,
                Polled::Op(ServerOp::Ok | ServerOp::Info(_)) => {}
                Polled::Op(op) => return Ok(Some(op)),
                Polled::Idle => {}
                Polled::Closed => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
                }
                Polled::Bad(e) => return Err(io::Error::other(format!("bad protocol: {e}"))),
            }
        }
    }

    /// Sends PING and waits up to `limit` for its PONG; returns what came
    /// before it.
    pub fn roundtrip(&mut self, limit: Duration) -> io::Result<Vec<ServerOp>> {
        self.ping();
        self.flush()?;
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            match self.next(deadline)? {
                Some(ServerOp::Pong) => return Ok(before),
                Some(op) => before.push(op),
                None => return Err(io::Error::new(io::ErrorKind::TimedOut, "no PONG")),
            }
        }
    }

    /// One read into the parser; false when nothing came within the read
    /// timeout. EOF and errors (reset, broken pipe) mark the server gone.
    fn read_some(&mut self) -> bool {
        loop {
            match self.stream.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.parser.feed(&self.buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.eof = true,
            }
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_ops_split_anywhere_and_answers_pings() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let stream = b"INFO {}\r\nPING\r\nMSG a.b 1 4\r\nab\r\n\r\n+OK\r\nMSG c 2 r.1 0\r\n\r\n-ERR 'msgc: no quorum'\r\nPONG\r\n";
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
        let mut c = Client::connect(addr, Duration::from_secs(5)).unwrap();
        c.connect_with("{}");
        c.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        match c.next(deadline).unwrap() {
            Some(ServerOp::Msg(d)) => {
                assert_eq!(
                    (d.subject.as_str(), &d.payload[..]),
                    ("a.b", &b"ab\r\n"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        match c.next(deadline).unwrap() {
            Some(ServerOp::Msg(d)) => assert_eq!(d.reply.as_deref(), Some("r.1")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.next(deadline).unwrap(),
            Some(ServerOp::Err(e)) if e == "msgc: no quorum"
        ));
        assert!(matches!(c.next(deadline).unwrap(), Some(ServerOp::Pong)));
        drop(c);
        let sent = server.join().unwrap();
        assert!(sent.starts_with("CONNECT {}\r\n"), "{sent}");
        assert!(sent.contains("PONG\r\n"), "{sent}");
    }
}

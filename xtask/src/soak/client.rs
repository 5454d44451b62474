//! The soak's load threads' client: the library's blocking client
//! (`ecclusterd::nats::blocking`), one connection per thread, `CONNECT`
//! without verbose/pedantic/headers, the server's keepalive `PING`s answered
//! while reading, and what the server sends as the few ops the soak tells
//! apart.

use std::io;
use std::time::{Duration, Instant};

use ecclusterd::nats::blocking;
use ecclusterd::nats::proto::ServerOp;

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

impl Op {
    fn from(op: ServerOp) -> io::Result<Op> {
        Ok(match op {
            ServerOp::Msg(d) => Op::Msg {
                subject: d.subject,
                reply: d.reply,
                payload: d.payload.to_vec(),
            },
            ServerOp::Pong => Op::Pong,
            ServerOp::Err(e) => Op::Err(e),
            other => return Err(io::Error::other(format!("unexpected {other:?}"))),
        })
    }
}

pub struct Client(blocking::Client);

impl Client {
    /// Connects, reads `INFO`, buffers `CONNECT`; the first `PING`/`PONG` is the caller's.
    pub fn connect(addr: &str, name: &str) -> io::Result<Client> {
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| io::Error::other(format!("bad address {addr}")))?;
        let mut c = blocking::Client::connect(sock, Duration::from_secs(5))?;
        c.connect_with(&format!(
            "{{\"verbose\":false,\"pedantic\":false,\"echo\":true,\"headers\":false,\"name\":\"{name}\",\"lang\":\"xtask-soak\",\"version\":\"0\"}}"
        ));
        Ok(Client(c))
    }

    pub fn sub(&mut self, subject: &str, queue: Option<&str>, sid: u64) {
        self.0.sub(subject, queue, &sid.to_string());
    }

    pub fn unsub(&mut self, sid: u64) {
        self.0.unsub(&sid.to_string());
    }

    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        self.0.publish(subject, reply, payload);
    }

    pub fn ping(&mut self) {
        self.0.ping();
    }

    /// Writes everything buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    /// The next op, or None once `deadline` passes. Answers the server's `PING`s.
    pub fn next(&mut self, deadline: Instant) -> io::Result<Option<Op>> {
        self.0.next(deadline)?.map(Op::from).transpose()
    }

    /// Sends `PING` and waits up to `limit` for its `PONG`, returning what came before it.
    pub fn roundtrip(&mut self, limit: Duration) -> io::Result<Vec<Op>> {
        self.0.roundtrip(limit)?.into_iter().map(Op::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
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

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

//! A small NATS client on smol, for the CLI tools and the load generator.
//! It speaks only the documented client protocol, so it works against any
//! NATS-speaking server (nats-server included), not just ecclusterd.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use async_net::TcpStream;

use crate::net::Conn;
use crate::net::tls::ClientTls;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};

use super::proto::{self, ConnectOptions, Delivery, ServerInfo, ServerOp, ServerParser, encode};

/// Replies and control lines can be large (status JSON); allow generous
/// control lines when reading from a server.
const READ_LIMITS: proto::Limits = proto::Limits {
    max_control_line: 64 * 1024,
    max_payload: 64 << 20,
};

pub struct Connection {
    stream: Conn,
    parser: ServerParser,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    pub info: ServerInfo,
    next_sid: u64,
    /// Messages read while waiting for something else (a PONG).
    queued: VecDeque<Delivery>,
}

fn proto_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A server's `-ERR` as an I/O error.
fn server_err(text: &str) -> io::Error {
    io::Error::other(format!("server said -ERR '{text}'"))
}

impl Connection {
    /// Connects, reads `INFO`, sends `CONNECT`, and round-trips a `PING` so
    /// that a refused CONNECT is an error here, not later.
    pub async fn connect(addr: &str, opts: &ConnectOptions) -> io::Result<Connection> {
        Connection::connect_tls(addr, opts, None).await
    }

    /// As [`Connection::connect`]; when the server's INFO says
    /// `tls_required`, the TLS handshake follows it (the server's
    /// certificate must be valid for the host of `addr` and chain to `tls`'s CA).
    pub async fn connect_tls(
        addr: &str,
        opts: &ConnectOptions,
        tls: Option<&ClientTls>,
    ) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Connection {
            stream: Conn::Tcp(stream),
            parser: ServerParser::new(READ_LIMITS),
            rbuf: vec![0; 64 * 1024],
            wbuf: Vec::with_capacity(64 * 1024),
            info: ServerInfo::default(),
            next_sid: 1,
            queued: VecDeque::new(),
        };
        match c.read_op().await? {
            ServerOp::Info(info) => c.info = *info,
            other => return Err(proto_err(format!("expected INFO, got {other:?}"))),
        }
        match (c.info.tls_required == Some(true), tls) {
            (true, Some(tls)) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                c.stream = crate::net::tls::connect(c.stream.clone(), tls, host).await?;
            }
            (true, None) => {
                return Err(io::Error::other(
                    "the server requires TLS (give --tls-ca FILE)",
                ));
            }
            (false, Some(_)) => {
                return Err(io::Error::other(
                    "TLS asked for, but the server does not offer it",
                ));
            }
            (false, None) => {}
        }
        encode::connect(&mut c.wbuf, opts);
        c.ping().await?;
        Ok(c)
    }

    /// Connects with options suitable for tools: headers and no_responders on,
    /// not verbose, not pedantic.
    pub async fn connect_default(addr: &str, name: &str) -> io::Result<Connection> {
        Connection::connect_default_tls(addr, name, None).await
    }

    /// [`Connection::connect_default`] with TLS when the server requires it.
    pub async fn connect_default_tls(
        addr: &str,
        name: &str,
        tls: Option<&ClientTls>,
    ) -> io::Result<Connection> {
        let opts = ConnectOptions {
            verbose: false,
            pedantic: false,
            headers: true,
            no_responders: true,
            protocol: 1,
            name: Some(name.to_owned()),
            lang: Some("rust-ecclusterd".to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..ConnectOptions::default()
        };
        Connection::connect_tls(addr, &opts, tls).await
    }

    async fn read_op(&mut self) -> io::Result<ServerOp> {
        loop {
            if let Some(op) = self.parser.next_op() {
                return op.map_err(proto_err);
            }
            let n = self.stream.read(&mut self.rbuf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.parser.feed(&self.rbuf[..n]);
        }
    }

    /// Queues a publish; `flush` sends it.
    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        encode::publish(&mut self.wbuf, subject, reply, None, payload);
    }

    pub fn publish_with_headers(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: &[u8],
        payload: &[u8],
    ) {
        encode::publish(&mut self.wbuf, subject, reply, Some(headers), payload);
    }

    /// Queues a subscription; returns its sid.
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> String {
        let sid = self.next_sid.to_string();
        self.next_sid += 1;
        encode::sub(&mut self.wbuf, subject, queue, &sid);
        sid
    }

    pub fn unsubscribe(&mut self, sid: &str, max: Option<u64>) {
        encode::unsub(&mut self.wbuf, sid, max);
    }

    /// Bytes queued and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.wbuf.len()
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Sends `PING` and waits for its `PONG`: everything sent before has been
    /// processed by the server. Messages that arrive meanwhile are kept.
    pub async fn ping(&mut self) -> io::Result<()> {
        encode::ping(&mut self.wbuf);
        self.flush().await?;
        loop {
            match self.read_op().await? {
                ServerOp::Pong => return Ok(()),
                ServerOp::Ping => {
                    encode::pong(&mut self.wbuf);
                    self.flush().await?;
                }
                ServerOp::Msg(d) => self.queued.push_back(d),
                ServerOp::Err(e) => return Err(server_err(&e)),
                ServerOp::Ok | ServerOp::Info(_) => {}
            }
        }
    }

    /// The next delivered message, answering server PINGs on the way.
    pub async fn next_msg(&mut self) -> io::Result<Delivery> {
        if let Some(d) = self.queued.pop_front() {
            return Ok(d);
        }
        loop {
            match self.read_op().await? {
                ServerOp::Msg(d) => return Ok(d),
                ServerOp::Ping => {
                    encode::pong(&mut self.wbuf);
                    self.flush().await?;
                }
                ServerOp::Err(e) => return Err(server_err(&e)),
                ServerOp::Pong | ServerOp::Ok | ServerOp::Info(_) => {}
            }
        }
    }

    /// `next_msg` with a deadline.
    pub async fn next_msg_timeout(&mut self, t: Duration) -> io::Result<Option<Delivery>> {
        async { self.next_msg().await.map(Some) }
            .or(async {
                smol::Timer::after(t).await;
                Ok(None)
            })
            .await
    }

    /// A request: subscribes to a fresh inbox, publishes, waits for one reply.
    /// `Ok(None)` on timeout; a no-responders status is an error.
    pub async fn request(
        &mut self,
        subject: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> io::Result<Option<Delivery>> {
        let inbox = new_inbox();
        let sid = self.subscribe(&inbox, None);
        self.unsubscribe(&sid, Some(1));
        self.publish(subject, Some(&inbox), payload);
        self.flush().await?;
        let Some(d) = self.next_msg_timeout(timeout).await? else {
            return Ok(None);
        };
        if is_no_responders(&d) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no responders on {subject}"),
            ));
        }
        Ok(Some(d))
    }
}

/// A new `_INBOX.<random>` subject.
pub fn new_inbox() -> String {
    format!("_INBOX.{:016x}{:08x}", random_u64(), std::process::id())
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Whether a delivery is the `503` status a server sends when a request found no subscriber.
pub fn is_no_responders(d: &Delivery) -> bool {
    d.payload.is_empty()
        && d.headers
            .as_deref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 503"))
}

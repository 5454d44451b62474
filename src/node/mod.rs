//! The node protocol on ECCluster_Listener: direct links between nodes for
//! what needs no cluster-wide order (docs/PROTOCOL.md, "Node protocol").
//! `codec.rs` is the sans-IO wire format; `links.rs` dials, accepts and runs
//! links; `files.rs` streams files with flow control. Node requests arrive
//! on the local bus (`$MSGC.PING.<node>`, `$MSGC.STATUS.<node>`,
//! `$MSGC.SENDFILE.<node>`) and are answered on the requester's reply
//! subject once the other node has answered.

pub mod codec;
pub mod direct;
mod error;
pub mod files;
pub mod links;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::FutureExt;
use serde_json::json;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::net::{Conn, Local, Remote, Service, Shutdown};
use codec::{Delivery, Frame};
pub use error::NodeError;
pub use links::NodeLinks;

/// What node links need of the node's bus, which implements it (`msgc`):
/// the links sit below the bus and never hold it.
pub trait Port: Send + Sync {
    /// A direct message from another node, for local subscribers as if
    /// published here.
    fn deliver(&self, d: &Delivery);
    /// A system message (the answer to a node request) on a local subject.
    fn publish_system(&self, subject: &str, payload: &[u8]);
    /// A direct request from `client` could not leave: tell it, as NATS
    /// does when nobody answers.
    fn no_responders(&self, client: u64, reply: &str);
    /// This node's status (`$MSGC.STATUS`), as JSON.
    fn status_json(&self) -> Vec<u8>;
}

/// Frames and bytes on the direct links, for status.
#[derive(Debug, Default)]
pub struct Traffic {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Traffic {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A request for another node, from the subject it was published on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping(String),
    Status(String),
    SendFile(String),
}

impl Request {
    /// `$MSGC.PING.<node>`, `$MSGC.STATUS.<node>`, `$MSGC.SENDFILE.<node>`.
    pub fn parse(subject: &str) -> Option<Request> {
        let rest = subject.strip_prefix("$MSGC.")?;
        let (verb, node) = rest.split_once('.')?;
        if node.is_empty() {
            return None;
        }
        let node = node.to_owned();
        match verb {
            "PING" => Some(Request::Ping(node)),
            "STATUS" => Some(Request::Status(node)),
            "SENDFILE" => Some(Request::SendFile(node)),
            _ => None,
        }
    }
}

impl NodeLinks {
    /// Answers `req` on `reply`, from a task of its own: the answer comes
    /// when the other node has answered, or with an error.
    pub fn request(self: &Arc<Self>, req: Request, payload: Bytes, reply: String) {
        let me = self.clone();
        self.ex
            .spawn(async move {
                let answer = me.answer(req, payload).await;
                me.port.publish_system(&reply, &answer);
            })
            .detach();
    }

    async fn answer(self: &Arc<Self>, req: Request, payload: Bytes) -> Vec<u8> {
        let error = |node: &str, e: &dyn std::fmt::Display| {
            serde_json::to_vec(&json!({ "node": node, "error": e.to_string() })).unwrap_or_default()
        };
        match req {
            Request::Ping(node) => match self.exchange(&node, |id| Frame::Ping { id }).await {
                Ok((Frame::Pong { .. }, rtt)) => serde_json::to_vec(&json!({
                    "node": node,
                    "rtt_ms": rtt * 1000.0,
                }))
                .unwrap_or_default(),
                Ok(_) => error(&node, &"unexpected answer"),
                Err(e) => error(&node, &e),
            },
            Request::Status(node) if node == self.me => self.port.status_json(),
            Request::Status(node) => {
                match self.exchange(&node, |id| Frame::StatusRequest { id }).await {
                    Ok((Frame::StatusReply { json, .. }, _)) => json.to_vec(),
                    Ok(_) => error(&node, &"unexpected answer"),
                    Err(e) => error(&node, &e),
                }
            }
            Request::SendFile(node) => {
                let Ok(path) = std::str::from_utf8(&payload) else {
                    return error(&node, &"the path is not UTF-8");
                };
                match files::send_file(self, &node, path).await {
                    Ok(s) => {
                        log::info!(
                            "sent {path} to {node}: {} bytes in {:.3} s, sha256 {}",
                            s.bytes,
                            s.secs,
                            s.sha256
                        );
                        serde_json::to_vec(&json!({
                            "node": node,
                            "name": s.name,
                            "bytes": s.bytes,
                            "secs": s.secs,
                            "sha256": s.sha256,
                        }))
                        .unwrap_or_default()
                    }
                    Err(e) => error(&node, &e),
                }
            }
        }
    }

    /// Sends one control frame to `node` and waits for the frame answering
    /// it, at most `connect_timeout`: (answer, seconds).
    async fn exchange(
        self: &Arc<Self>,
        node: &str,
        frame: impl FnOnce(u64) -> Frame,
    ) -> Result<(Frame, f64), NodeError> {
        let link = self.link(node).await?;
        let id = self.next_id();
        let rx = self.wait_for(id, &link);
        let t0 = Instant::now();
        let r = async {
            link.control(frame(id))?;
            rx.recv()
                .await
                .map_err(|_| NodeError::Closed("the link closed before the answer"))
        }
        .or(async {
            smol::Timer::after(self.connect_timeout).await;
            Err(NodeError::NoAnswer {
                node: node.to_owned(),
                within: self.connect_timeout,
            })
        })
        .await;
        self.done_waiting(id);
        r.map(|f| (f, t0.elapsed().as_secs_f64()))
    }
}

/// ECCluster_Listener's service.
pub struct NodeService(pub Arc<NodeLinks>);

impl Service for NodeService {
    fn serve(
        self: Arc<Self>,
        conn: Conn,
        remote: Remote,
        _local: Local,
        tls: Option<crate::net::tls::Material>,
        shutdown: Shutdown,
    ) -> futures_lite::future::Boxed<()> {
        let links = self.0.clone();
        Box::pin(async move {
            let c = conn.clone();
            links
                .accept(conn, remote.tcp(), tls)
                .or(async { shutdown.wait().await })
                .await;
            c.shutdown();
        })
    }

    /// A TLS socket speaks TLS from the first byte: plain text there would
    /// be garbage in the dialler's handshake, so it is closed without a word.
    fn refusal(&self, tls: bool) -> Option<&'static [u8]> {
        (!tls).then_some(b"-ERR 'maximum connections exceeded'\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_subjects() {
        assert_eq!(
            Request::parse("$MSGC.PING.node2"),
            Some(Request::Ping("node2".into()))
        );
        assert_eq!(
            Request::parse("$MSGC.STATUS.n3"),
            Some(Request::Status("n3".into()))
        );
        assert_eq!(
            Request::parse("$MSGC.SENDFILE.a"),
            Some(Request::SendFile("a".into()))
        );
        assert_eq!(Request::parse("$MSGC.STATUS"), None);
        assert_eq!(Request::parse("$MSGC.PING."), None);
        assert_eq!(Request::parse("$MSGC.GROUP.g"), None);
        assert_eq!(Request::parse("PING.node2"), None);
    }
}

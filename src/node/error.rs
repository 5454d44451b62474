//! Why a node request or a direct send could not be done. Its text is what
//! logs and node-request answers (`"error"`) show.

use std::fmt;
use std::time::Duration;

use crate::mesh::LinkError;

#[derive(Debug)]
pub enum NodeError {
    /// The link's handshake, socket or frames.
    Link(LinkError),
    /// The request names this node.
    ThisNode(String),
    UnknownPeer(String),
    /// The peer's ECCluster_Listener address is not known yet (its peer
    /// link has not been up).
    NoAddress(String),
    /// The last dial failed and the next is not due yet.
    Backoff {
        last: String,
        retry_in: Duration,
    },
    /// Dialling `addr` failed.
    Dial {
        addr: String,
        source: LinkError,
    },
    /// The control queue filled: the link is stuck, and closed.
    Stuck,
    /// No answer within `connect_timeout`.
    NoAnswer {
        node: String,
        within: Duration,
    },
    /// The link closed, or its queues did.
    Closed(&'static str),
    /// A file transfer failed (the file, its hash, the receiver's answer).
    Transfer(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Link(e) => e.fmt(f),
            NodeError::ThisNode(p) => write!(f, "`{p}` is this node"),
            NodeError::UnknownPeer(p) => write!(f, "`{p}` is not in peers"),
            NodeError::NoAddress(p) => write!(
                f,
                "the ECCluster_Listener address of `{p}` is not known (its msgc peer link has not been up)"
            ),
            NodeError::Backoff { last, retry_in } => write!(
                f,
                "{last} (next attempt in {:.1} s)",
                retry_in.as_secs_f64()
            ),
            NodeError::Dial { addr, source } => write!(f, "cannot link to {addr}: {source}"),
            NodeError::Stuck => write!(
                f,
                "{} control frames queued: link stuck, closed",
                super::links::CTL_QUEUE
            ),
            NodeError::NoAnswer { node, within } => {
                write!(
                    f,
                    "no answer from `{node}` within connect_timeout ({within:?})"
                )
            }
            NodeError::Closed(why) => f.write_str(why),
            NodeError::Transfer(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<LinkError> for NodeError {
    fn from(e: LinkError) -> Self {
        NodeError::Link(e)
    }
}

/// A transfer's own checks and file errors say why in words.
impl From<String> for NodeError {
    fn from(e: String) -> Self {
        NodeError::Transfer(e)
    }
}

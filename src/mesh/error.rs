//! Why a link between nodes — a peer link or a node link — failed, was
//! refused or ended. Its text is what logs, `status` (`last_error`) and
//! node-request answers show.

use std::fmt;
use std::io;
use std::time::Duration;

#[derive(Debug)]
pub enum LinkError {
    /// The socket failed (connect, read, write).
    Io(io::Error),
    /// The TLS handshake failed, or one end uses TLS and the other not.
    Tls(String),
    /// The other side answered `-ERR` (the line as sent).
    Refused(String),
    /// A handshake check failed: the protocol, the cluster identity, the
    /// name, address or certificate, the secret's proofs.
    Handshake(String),
    /// No handshake within `connect_timeout`.
    Timeout(Duration),
    /// A frame that does not decode.
    Frame(String),
    /// The link went silent for this long (its keepalives missed).
    Silent(Duration),
    /// The link ended: the peer closed, or the link was replaced, stuck or
    /// stopped (why).
    Closed(&'static str),
    /// The other node is not one of `peers` (or is this node).
    UnknownPeer(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => e.fmt(f),
            LinkError::Tls(e) => write!(f, "TLS: {e}"),
            LinkError::Refused(line) => write!(f, "refused: {line}"),
            LinkError::Handshake(e) | LinkError::Frame(e) => f.write_str(e),
            LinkError::Timeout(t) => write!(f, "no handshake within connect_timeout ({t:?})"),
            LinkError::Silent(t) => write!(
                f,
                "silent for {t:?} ({} keepalive intervals)",
                super::SUSPECT_AFTER
            ),
            LinkError::Closed(why) => f.write_str(why),
            LinkError::UnknownPeer(p) => write!(f, "`{p}` is not in peers"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        LinkError::Io(e)
    }
}

/// The sans-IO checks (`handshake`, `secret`) say why in words.
impl From<String> for LinkError {
    fn from(e: String) -> Self {
        LinkError::Handshake(e)
    }
}

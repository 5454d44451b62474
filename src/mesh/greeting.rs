//! The link handshake both kinds of links between nodes share — peer links
//! (`MSGC-PEER`, on msgcserver_listener) and node links (`ECCLUSTER-NODE`,
//! on ECCluster_Listener): the dialler proves itself (answering the
//! acceptor's challenge when there is a cluster secret) in a hello line,
//! and the acceptor answers `-ERR '...'` or a welcome line that names it
//! and proves it in turn. What comes before (INFO, TLS, the challenge's
//! transport) and the checks of the hello's content are each link's own.

use futures_lite::AsyncWriteExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handshake;
use super::secret::{self, Secret, Sides};
use super::{LinkError, read_line};
use crate::net::Conn;

/// One kind of link's handshake lines.
pub trait Greeting {
    type Hello: Serialize + DeserializeOwned + Proof;
    type Welcome: Serialize + DeserializeOwned + Proof;
    const HELLO: &'static str;
    const WELCOME: &'static str;
    /// Which link the proofs are bound to (a proof for one never passes
    /// for the other).
    const LINK: secret::Link;
}

/// What a hello or welcome says of its sender.
pub trait Proof {
    fn node(&self) -> &str;
    /// The dialler's nonce (a welcome has none).
    fn nonce(&self) -> Option<&str>;
    fn mac(&self) -> Option<&str>;
}

/// Implements [`Proof`] for a line struct with `node` and `mac` fields,
/// and `nonce` for a hello: `proof!(Hello, nonce)`, `proof!(Welcome)`.
macro_rules! proof {
    ($t:ty $(, $nonce:ident)?) => {
        impl $crate::mesh::greeting::Proof for $t {
            fn node(&self) -> &str {
                &self.node
            }
            fn nonce(&self) -> Option<&str> {
                None $(.or(self.$nonce.as_deref()))?
            }
            fn mac(&self) -> Option<&str> {
                self.mac.as_deref()
            }
        }
    };
}
pub(crate) use proof;

/// The dialler's half: `hello(proof)` builds the hello from our proof
/// (nonce, mac) over `challenge`; returns the checked welcome. `refusal`
/// tells an answer that is neither `-ERR` nor a welcome (e.g. a challenge
/// to a node without a secret).
pub async fn dial<G: Greeting>(
    conn: &mut Conn,
    pending: &mut Vec<u8>,
    secret: Option<&Secret>,
    sides: Sides<'_>,
    challenge: Option<&str>,
    hello: impl FnOnce(Option<(String, String)>) -> G::Hello,
    refusal: impl Fn(&[u8]) -> Option<String>,
) -> Result<G::Welcome, LinkError> {
    let proof = secret::dialer_proof(secret, sides, challenge)?;
    let hello = hello(proof);
    conn.write_all(&handshake::line(G::HELLO, &hello)).await?;
    conn.flush().await?;
    let answer = read_line(conn, pending, None).await?;
    if answer.starts_with(b"-ERR") {
        return Err(LinkError::Refused(
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    if let Some(why) = refusal(&answer) {
        return Err(LinkError::Handshake(why));
    }
    let welcome: G::Welcome = handshake::parse(G::WELCOME, &answer)?;
    if welcome.node() != sides.acceptor {
        return Err(LinkError::Handshake(format!(
            "answered as `{}`, not `{}`",
            welcome.node(),
            sides.acceptor
        )));
    }
    secret::check_acceptor(secret, sides, challenge, hello.nonce(), welcome.mac())?;
    Ok(welcome)
}

/// The acceptor's check of a hello's proof over our `challenge`.
pub fn check_hello<G: Greeting>(
    secret: Option<&Secret>,
    me: &str,
    hello: &G::Hello,
    challenge: Option<&str>,
) -> Result<(), String> {
    let sides = Sides {
        link: G::LINK,
        dialer: hello.node(),
        acceptor: me,
    };
    secret::check_dialer(secret, sides, challenge, hello.nonce(), hello.mac())
}

/// The acceptor's answer to a checked hello: `welcome(mac)` builds it from
/// our proof. False when the connection is gone.
pub async fn welcome<G: Greeting>(
    conn: &mut Conn,
    secret: Option<&Secret>,
    me: &str,
    hello: &G::Hello,
    challenge: Option<&str>,
    welcome: impl FnOnce(Option<String>) -> G::Welcome,
) -> bool {
    let sides = Sides {
        link: G::LINK,
        dialer: hello.node(),
        acceptor: me,
    };
    let mac = secret::acceptor_mac(secret, sides, challenge, hello.nonce());
    let line = handshake::line(G::WELCOME, &welcome(mac));
    conn.write_all(&line).await.is_ok() && conn.flush().await.is_ok()
}

//! The cluster secret (`msgc_server { secret_file }`) and the HMAC-SHA256
//! challenge-response the peer handshake carries. Both sides prove they hold
//! the secret over fresh nonces from both ends, so a captured handshake is
//! worth nothing on another connection.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted.
pub const MIN_SECRET: usize = 16;

/// A keyed HMAC, ready to be cloned for each proof.
pub struct Secret(HmacSha256);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads the secret file, refusing one that others may read.
pub fn load(path: &Path, origin: &str) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |why: String| format!("{origin}: secret_file {}: {why}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".to_owned()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "group or others may access it (mode {mode:04o}); run `chmod 600 {}`",
            path.display()
        )));
    }
    let mut bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    if bytes.len() < MIN_SECRET {
        return Err(fail(format!(
            "{} bytes; a secret needs at least {MIN_SECRET} (e.g. `head -c 32 /dev/urandom | base64`)",
            bytes.len()
        )));
    }
    Secret::from_bytes(&bytes).ok_or_else(|| fail("unusable as an HMAC key".to_owned()))
}

impl Secret {
    /// HMAC takes keys of any length, so this is `Some` for any bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Secret> {
        <HmacSha256 as KeyInit>::new_from_slice(b).ok().map(Secret)
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut m = self.0.clone();
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p.as_bytes());
        }
        m
    }

    fn parts<'a>(p: &'a Proof<'a>, hello: bool) -> [&'a str; 5] {
        if hello {
            [
                p.hello_tag(),
                p.acceptor_nonce,
                p.dialer_nonce,
                p.dialer,
                p.acceptor,
            ]
        } else {
            [
                p.welcome_tag(),
                p.dialer_nonce,
                p.acceptor_nonce,
                p.acceptor,
                p.dialer,
            ]
        }
    }

    /// The dialer's proof: over both nonces and both names.
    pub fn hello_mac(&self, p: &Proof<'_>) -> String {
        hex(&self.mac(&Self::parts(p, true)).finalize().into_bytes())
    }

    /// The acceptor's proof, with the nonces and names the other way round.
    pub fn welcome_mac(&self, p: &Proof<'_>) -> String {
        hex(&self.mac(&Self::parts(p, false)).finalize().into_bytes())
    }

    /// Checks a dialer's proof in constant time.
    pub fn verify_hello(&self, mac: &str, p: &Proof<'_>) -> bool {
        unhex(mac).is_some_and(|tag| self.mac(&Self::parts(p, true)).verify_slice(&tag).is_ok())
    }

    /// Checks an acceptor's proof in constant time.
    pub fn verify_welcome(&self, mac: &str, p: &Proof<'_>) -> bool {
        unhex(mac).is_some_and(|tag| self.mac(&Self::parts(p, false)).verify_slice(&tag).is_ok())
    }
}

/// What a handshake proof covers. `link` tells the two protocols apart, so
/// a proof made for one is no good on the other.
pub struct Proof<'a> {
    pub link: Link,
    pub acceptor_nonce: &'a str,
    pub dialer_nonce: &'a str,
    pub dialer: &'a str,
    pub acceptor: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// msgc server ↔ msgc server (msgcserver_listener).
    Mesh,
    /// Node ↔ node (ECCluster_Listener).
    Node,
}

impl Proof<'_> {
    fn hello_tag(&self) -> &'static str {
        match self.link {
            Link::Mesh => "msgc-peer-hello",
            Link::Node => "eccluster-node-hello",
        }
    }

    fn welcome_tag(&self) -> &'static str {
        match self.link {
            Link::Mesh => "msgc-peer-welcome",
            Link::Node => "eccluster-node-welcome",
        }
    }
}

/// The two ends of a handshake being proved.
#[derive(Clone, Copy, Debug)]
pub struct Sides<'a> {
    pub link: Link,
    pub dialer: &'a str,
    pub acceptor: &'a str,
}

impl<'a> Sides<'a> {
    fn proof(self, acceptor_nonce: &'a str, dialer_nonce: &'a str) -> Proof<'a> {
        Proof {
            link: self.link,
            acceptor_nonce,
            dialer_nonce,
            dialer: self.dialer,
            acceptor: self.acceptor,
        }
    }
}

/// Said when one end has a secret and the other has none.
const SECRETS_DIFFER: &str = "set the same secret_file on every node";

/// Acceptor: checks the dialer's answer (`nonce`, `mac`) to our `challenge`.
pub fn check_dialer(
    secret: Option<&Secret>,
    sides: Sides<'_>,
    challenge: Option<&str>,
    nonce: Option<&str>,
    mac: Option<&str>,
) -> Result<(), String> {
    match (secret, challenge, nonce, mac) {
        (None, _, _, None) => Ok(()),
        (None, _, _, Some(_)) => Err(format!(
            "the peer has a cluster secret and this node has none ({SECRETS_DIFFER})"
        )),
        (Some(s), Some(c), Some(n), Some(m)) if s.verify_hello(m, &sides.proof(c, n)) => Ok(()),
        (Some(_), ..) => Err("authentication failed: wrong or no cluster secret".to_owned()),
    }
}

/// Acceptor: its own proof for the answer (none without a secret).
pub fn acceptor_mac(
    secret: Option<&Secret>,
    sides: Sides<'_>,
    challenge: Option<&str>,
    nonce: Option<&str>,
) -> Option<String> {
    match (secret, challenge, nonce) {
        (Some(s), Some(c), Some(n)) => Some(s.welcome_mac(&sides.proof(c, n))),
        _ => None,
    }
}

/// Dialer: a fresh nonce and the proof answering the acceptor's
/// `challenge`; `None` without a secret. A secret but no challenge means the
/// acceptor has none.
pub fn dialer_proof(
    secret: Option<&Secret>,
    sides: Sides<'_>,
    challenge: Option<&str>,
) -> Result<Option<(String, String)>, String> {
    let Some(s) = secret else { return Ok(None) };
    let Some(c) = challenge else {
        return Err(format!(
            "the peer offers no challenge: it has no cluster secret ({SECRETS_DIFFER})"
        ));
    };
    let nonce = nonce().ok_or("no randomness for a nonce")?;
    let mac = s.hello_mac(&sides.proof(c, &nonce));
    Ok(Some((nonce, mac)))
}

/// Dialer: checks the acceptor's proof, when we proved ours.
pub fn check_acceptor(
    secret: Option<&Secret>,
    sides: Sides<'_>,
    challenge: Option<&str>,
    nonce: Option<&str>,
    mac: Option<&str>,
) -> Result<(), String> {
    match (secret, challenge, nonce) {
        (Some(s), Some(c), Some(n)) => {
            if mac.is_some_and(|m| s.verify_welcome(m, &sides.proof(c, n))) {
                Ok(())
            } else {
                Err("the peer could not prove it holds the cluster secret".to_owned())
            }
        }
        _ => Ok(()),
    }
}

/// Said to a dialler without a secret that was challenged.
pub fn challenged_without_secret() -> String {
    format!("the peer requires a cluster secret and this node has none ({SECRETS_DIFFER})")
}

/// A fresh 128-bit nonce, hex; `None` if the OS has no randomness to give.
pub fn nonce() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(hex(&b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_nonces_names_direction_and_link() {
        let s = Secret::from_bytes(b"0123456789abcdef0123").unwrap();
        let p = |an, dn, d, a| Proof {
            link: Link::Mesh,
            acceptor_nonce: an,
            dialer_nonce: dn,
            dialer: d,
            acceptor: a,
        };
        let m = s.hello_mac(&p("an", "dn", "node2", "node1"));
        assert!(s.verify_hello(&m, &p("an", "dn", "node2", "node1")));
        // Another acceptor nonce (a replay on a new connection) fails.
        assert!(!s.verify_hello(&m, &p("an2", "dn", "node2", "node1")));
        assert!(!s.verify_hello(&m, &p("an", "dn", "node3", "node1")));
        // A hello proof is no welcome proof, and a mesh proof no node proof.
        assert!(!s.verify_welcome(&m, &p("an", "dn", "node2", "node1")));
        let node = Proof {
            link: Link::Node,
            ..p("an", "dn", "node2", "node1")
        };
        assert!(!s.verify_hello(&m, &node));
        let w = s.welcome_mac(&p("an", "dn", "node2", "node1"));
        assert!(s.verify_welcome(&w, &p("an", "dn", "node2", "node1")));
        // Another secret fails.
        let other = Secret::from_bytes(b"0123456789abcdef0124").unwrap();
        assert!(!other.verify_hello(&m, &p("an", "dn", "node2", "node1")));
        // Garbage is an error, not a panic.
        for bad in ["", "zz", "abc", &"f".repeat(1000)] {
            assert!(!s.verify_hello(bad, &p("an", "dn", "node2", "node1")));
        }
        assert_ne!(nonce(), nonce());
    }

    #[test]
    fn the_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "short\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&p, "x.conf:1:1").unwrap_err().contains("at least 16"));
        std::fs::write(&p, "a-long-enough-cluster-secret\n").unwrap();
        assert!(load(&p, "x.conf:1:1").is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&p, "x.conf:1:1").unwrap_err();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        assert!(load(&dir.path().join("missing"), "x.conf:1:1").is_err());
    }
}

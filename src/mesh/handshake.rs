//! The peer handshake on msgcserver_listener, sans-IO. A dialing server
//! reads the listener's `INFO` like any client, then sends one
//! `MSGC-PEER {json}` line instead of `CONNECT`; the listener answers
//! `MSGC-PEER-OK {json}` or `-ERR '...'` and closes. After that both sides
//! speak length-prefixed frames (`frame.rs`).

use serde::{Deserialize, Serialize};

use crate::config::Peer;

/// Bumped on any incompatible change of the peer protocol.
pub const PROTOCOL: u32 = 2;

/// The verb that tells a server from a client on the shared port.
pub const HELLO_VERB: &str = "MSGC-PEER";
/// The acceptor's answer.
pub const WELCOME_VERB: &str = "MSGC-PEER-OK";

/// The dialer's introduction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// The dialer's node name.
    pub node: String,
    /// The dialer's `peers`, as `[name, "host:port"]` in file order: the cluster's identity.
    pub peers: Vec<(String, String)>,
    /// Where the dialer's ECCluster_Listener can be reached (`ip:port`), if it has one.
    pub eccluster: Option<String>,
    /// With a cluster secret: the dialer's nonce, and its proof over both
    /// nonces and both names (`secret.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The acceptor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub node: String,
    pub eccluster: Option<String>,
    /// With a cluster secret: the acceptor's proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The peer link's lines, for `greeting`.
pub struct PeerGreeting;

impl super::greeting::Greeting for PeerGreeting {
    type Hello = Hello;
    type Welcome = Welcome;
    const HELLO: &'static str = HELLO_VERB;
    const WELCOME: &'static str = WELCOME_VERB;
    const LINK: super::secret::Link = super::secret::Link::Mesh;
}

super::greeting::proof!(Hello, nonce);
super::greeting::proof!(Welcome);

/// The `peers` list as the handshake carries it.
pub fn peer_list(peers: &[Peer]) -> Vec<(String, String)> {
    peers
        .iter()
        .map(|p| {
            let host = if p.host.contains(':') {
                format!("[{}]", p.host)
            } else {
                p.host.clone()
            };
            (p.name.clone(), format!("{host}:{}", p.port))
        })
        .collect()
}

/// Encodes a handshake line (`VERB {json}\r\n`).
pub fn line<T: Serialize>(verb: &str, body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(verb.as_bytes());
    out.push(b' ');
    // Serialising plain strings and numbers cannot fail.
    let _ = serde_json::to_writer(&mut out, body);
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses `VERB {json}` (terminator removed).
pub fn parse<T: for<'de> Deserialize<'de>>(verb: &str, line: &[u8]) -> Result<T, String> {
    let rest = line
        .strip_prefix(verb.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
        .ok_or_else(|| format!("expected `{verb} {{...}}`"))?;
    serde_json::from_slice(rest).map_err(|e| format!("bad {verb} JSON: {e}"))
}

/// Checks a dialer's `Hello` against our configuration: protocol, cluster
/// identity (identical peers lists, saying which entry differs), and that
/// the name is a peer other than us. `remote_ip` is checked by the caller.
pub fn check_hello(hello: &Hello, me: &str, peers: &[Peer]) -> Result<(), String> {
    if hello.protocol != PROTOCOL {
        return Err(format!(
            "peer protocol {} is not {PROTOCOL}: run the same ecclusterd version on every node",
            hello.protocol
        ));
    }
    let ours = peer_list(peers);
    if let Some(diff) = first_difference(&ours, &hello.peers, &hello.node) {
        return Err(format!("peers lists differ: {diff}"));
    }
    if hello.node == me {
        return Err(format!("peer calls itself `{me}`, which is this node"));
    }
    if !peers.iter().any(|p| p.name == hello.node) {
        return Err(format!("`{}` is not in peers", hello.node));
    }
    Ok(())
}

/// The first entry that differs between our list and theirs, in words.
fn first_difference(
    ours: &[(String, String)],
    theirs: &[(String, String)],
    them: &str,
) -> Option<String> {
    for (name, addr) in ours {
        match theirs.iter().find(|(n, _)| n == name) {
            None => return Some(format!("`{name}` is in peers here but not at `{them}`")),
            Some((_, a)) if a != addr => {
                return Some(format!(
                    "`{name}` is \"{addr}\" here but \"{a}\" at `{them}`"
                ));
            }
            Some(_) => {}
        }
    }
    for (name, _) in theirs {
        if !ours.iter().any(|(n, _)| n == name) {
            return Some(format!("`{name}` is in peers at `{them}` but not here"));
        }
    }
    let order = |l: &[(String, String)]| l.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if order(ours) != order(theirs) {
        return Some(format!(
            "same entries in another order ({} here, {} at `{them}`)",
            order(ours).join(" "),
            order(theirs).join(" ")
        ));
    }
    None
}

/// Which side dials: the one whose name sorts first. One rule on both
/// ends means one link per pair, and no simultaneous-dial races.
pub fn dials(me: &str, peer: &str) -> bool {
    me < peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[(&str, &str, u16)]) -> Vec<Peer> {
        list.iter()
            .map(|(n, h, p)| Peer {
                name: (*n).into(),
                host: (*h).into(),
                port: *p,
            })
            .collect()
    }

    fn hello(node: &str, p: &[Peer]) -> Hello {
        Hello {
            protocol: PROTOCOL,
            node: node.into(),
            peers: peer_list(p),
            eccluster: Some("10.0.0.2:4802".into()),
            nonce: None,
            mac: None,
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let p = peers(&[
            ("a", "10.0.0.1", 4809),
            ("b", "10.0.0.2", 4809),
            ("c", "::1", 7),
        ]);
        let h = hello("b", &p);
        let l = line(HELLO_VERB, &h);
        assert!(l.starts_with(b"MSGC-PEER {\"protocol\":2,\"node\":\"b\""));
        let back: Hello = parse(HELLO_VERB, &l[..l.len() - 2]).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.peers[2].1, "[::1]:7");
        assert_eq!(check_hello(&h, "a", &p), Ok(()));
        assert!(check_hello(&h, "b", &p).unwrap_err().contains("this node"));
        let mut old = h.clone();
        old.protocol = 0;
        assert!(
            check_hello(&old, "a", &p)
                .unwrap_err()
                .contains("protocol 0")
        );
    }

    #[test]
    fn differing_peers_say_which_entry() {
        let ours = peers(&[("a", "10.0.0.1", 4809), ("b", "10.0.0.2", 4809)]);
        let moved = peers(&[("a", "10.0.0.1", 4809), ("b", "10.0.0.9", 4809)]);
        let e = check_hello(&hello("b", &moved), "a", &ours).unwrap_err();
        assert_eq!(
            e,
            "peers lists differ: `b` is \"10.0.0.2:4809\" here but \"10.0.0.9:4809\" at `b`"
        );
        let more = peers(&[
            ("a", "10.0.0.1", 4809),
            ("b", "10.0.0.2", 4809),
            ("c", "10.0.0.3", 4809),
        ]);
        let e = check_hello(&hello("b", &more), "a", &ours).unwrap_err();
        assert!(e.contains("`c` is in peers at `b` but not here"), "{e}");
        let swapped = peers(&[("b", "10.0.0.2", 4809), ("a", "10.0.0.1", 4809)]);
        let e = check_hello(&hello("b", &swapped), "a", &ours).unwrap_err();
        assert!(e.contains("another order"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse::<Hello>(HELLO_VERB, b"MSGC-PEER").is_err());
        assert!(parse::<Hello>(HELLO_VERB, b"MSGC-PEER {").is_err());
        assert!(parse::<Hello>(HELLO_VERB, b"CONNECT {}").is_err());
        assert!(parse::<Hello>(HELLO_VERB, &[0xff; 40]).is_err());
    }

    #[test]
    fn exactly_one_side_dials() {
        assert!(dials("node1", "node2"));
        assert!(!dials("node2", "node1"));
        assert!(!dials("node1", "node1"));
    }
}

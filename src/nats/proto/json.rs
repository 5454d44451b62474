//! The JSON bodies of `CONNECT` (client → server) and `INFO` (server → client).

use serde::{Deserialize, Serialize};

/// Options a client sends in `CONNECT`. Unknown fields are ignored.
///
/// Defaults follow nats-server, which starts every client at
/// verbose = pedantic = echo = true and lets `CONNECT` override: a bare
/// `CONNECT {}` therefore gets `+OK` acks (all client libraries send
/// explicit values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectOptions {
    pub verbose: bool,
    pub pedantic: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub tls_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// 0: original protocol; 1: the client accepts asynchronous INFO.
    pub protocol: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            tls_required: false,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            auth_token: None,
            user: None,
            pass: None,
        }
    }
}

/// The server's `INFO`. Also read back by our own client tools, so it
/// deserialises leniently (a nats-server `INFO` parses too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    pub max_payload: u64,
    pub client_id: u64,
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_required: Option<bool>,
    /// With `tls_verify_mode = require`: clients must present a certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// msgc extension: this client's private name `#<client id>#<node>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgc_private_name: Option<String>,
    /// msgc extension, with a cluster secret: the challenge a peer server
    /// answers in its `MSGC-PEER` handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgc_peer_nonce: Option<String>,
}

impl Default for ServerInfo {
    fn default() -> Self {
        Self {
            server_id: String::new(),
            server_name: String::new(),
            version: String::new(),
            proto: 1,
            host: String::new(),
            port: 0,
            headers: true,
            max_payload: super::DEFAULT_MAX_PAYLOAD as u64,
            client_id: 0,
            client_ip: String::new(),
            cluster: None,
            auth_required: None,
            tls_required: None,
            tls_verify: None,
            msgc_private_name: None,
            msgc_peer_nonce: None,
        }
    }
}

/// msgc's private name of a client, `#<client id>#<node>`: used in `INFO`
/// (`msgc_private_name`) and in the `Msgc-Sender` header.
pub fn private_name(client_id: u64, node: &str) -> String {
    format!("#{client_id}#{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_defaults_and_unknown_fields() {
        let c: ConnectOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(c, ConnectOptions::default());
        assert!(c.verbose && c.pedantic && c.echo && !c.headers);
        let c: ConnectOptions = serde_json::from_str(
            r#"{"verbose":false,"pedantic":false,"echo":false,"headers":true,"no_responders":true,
               "name":"n","lang":"go","version":"1.2","protocol":1,"auth_token":"t","user":"u",
               "pass":"p","tls_required":false,"sig":"x","jwt":"y","nkey":"z","extra":{"a":[1]}}"#,
        )
        .unwrap();
        assert!(!c.verbose && !c.pedantic && !c.echo && c.headers && c.no_responders);
        assert_eq!(c.name.as_deref(), Some("n"));
        assert_eq!(c.protocol, 1);
        assert_eq!(c.user.as_deref(), Some("u"));
        assert_eq!(c.pass.as_deref(), Some("p"));
        assert_eq!(c.auth_token.as_deref(), Some("t"));
    }

    #[test]
    fn info_round_trip_and_nats_compat() {
        let i = ServerInfo {
            server_id: "S".into(),
            client_id: 7,
            msgc_private_name: Some(private_name(7, "node1")),
            ..ServerInfo::default()
        };
        let s = serde_json::to_string(&i).unwrap();
        assert!(s.contains(r##""msgc_private_name":"#7#node1""##), "{s}");
        assert!(!s.contains("cluster"));
        assert_eq!(serde_json::from_str::<ServerInfo>(&s).unwrap(), i);
        // Shape of a nats-server 2.9 INFO.
        let nats = r#"{"server_id":"NB","server_name":"NB","version":"2.9.10","proto":1,"go":"go1.19",
            "host":"127.0.0.1","port":14222,"headers":true,"max_payload":1048576,"client_id":5,
            "client_ip":"127.0.0.1"}"#;
        let i: ServerInfo = serde_json::from_str(nats).unwrap();
        assert_eq!((i.port, i.client_id, i.max_payload), (14222, 5, 1_048_576));
    }
}

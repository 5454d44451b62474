//! TEMPORARY stub of the reader's API (replaced by the real reader on merge).
use super::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigPath {
    File(PathBuf),
    Embedded,
}
pub fn locate(explicit: Option<&Path>, env_conf: Option<OsString>) -> ConfigPath {
    if let Some(p) = explicit {
        return ConfigPath::File(p.into());
    }
    if let Some(p) = env_conf {
        return ConfigPath::File(p.into());
    }
    ConfigPath::Embedded
}
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub cli_node: Option<String>,
    pub env_node: Option<String>,
    pub hostname: Option<String>,
}
impl Identity {
    pub fn from_env(cli_node: Option<String>) -> Self {
        Identity {
            cli_node,
            env_node: None,
            hostname: None,
        }
    }
}
#[derive(Debug)]
pub struct ConfigError(pub String);
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub fn load(path: &ConfigPath, id: &Identity) -> Result<Settings, ConfigError> {
    let port = |p: &ConfigPath| match p {
        ConfigPath::File(f) => std::fs::read_to_string(f).map_err(|e| ConfigError(e.to_string())),
        ConfigPath::Embedded => Ok(String::new()),
    };
    let text = port(path)?;
    let mut ports = text
        .split_whitespace()
        .filter_map(|w| w.parse::<SocketAddr>().ok());
    let sock = |a: SocketAddr| SocketSettings {
        addr: ListenAddr::Ip(a),
        backlog: 500,
        nodelay: false,
        recv_buffer: None,
        send_buffer: None,
        file_mode: 0o660,
        max_connections: 10000,
        origin: "stub".into(),
    };
    let ec = ports.next().map(sock).unwrap_or(SocketSettings {
        addr: ListenAddr::Any { port: 4802 },
        ..sock("0.0.0.0:0".parse().unwrap())
    });
    let ms = ports.next().map(sock).unwrap_or(SocketSettings {
        addr: ListenAddr::Any { port: 4809 },
        ..sock("0.0.0.0:0".parse().unwrap())
    });
    let _ = Duration::ZERO;
    Ok(Settings {
        node: id.cli_node.clone().unwrap_or("node1".into()),
        nodeaddr: None,
        eccluster: ListenerSettings {
            name: "ECCluster_Listener",
            sockets: vec![ec],
        },
        msgcserver: ListenerSettings {
            name: "msgcserver_listener",
            sockets: vec![ms],
        },
        server: MsgcServerSettings {
            enabled: true,
            peers: vec![],
            port: 4809,
            common: MsgcCommon::default(),
            bus: BusSettings::default(),
        },
        client: MsgcClientSettings {
            enabled: true,
            servers: vec!["127.0.0.1:4809".into()],
            bind_address: None,
            common: MsgcCommon::default(),
        },
        files: vec![],
    })
}
use std::net::SocketAddr;
impl Settings {
    pub fn describe(&self) -> String {
        format!("{self:#?}")
    }
}

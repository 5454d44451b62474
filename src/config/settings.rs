//! The resolved configuration the daemon runs on: every default applied,
//! every address parsed, every cross-reference checked. Nothing here can be
//! invalid; `config::load` is the only way to build one from files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `ecclusterd run` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// This node's name (`--node`, `cluster { nodename }`, `EC_NODE_NAME`,
    /// host name up to the first dot), lower-case.
    pub node: String,
    /// `cluster { nodeaddr }` when set: the address advertised to peers.
    pub nodeaddr: Option<String>,
    /// `ECCluster_Listener`: direct node-to-node traffic.
    pub eccluster: ListenerSettings,
    /// `msgcserver_listener`: the msgc bus (clients and peer servers).
    pub msgcserver: ListenerSettings,
    /// `HTTP_Listener`: health, status and metrics; no sockets unless configured.
    pub http: ListenerSettings,
    pub server: MsgcServerSettings,
    pub client: MsgcClientSettings,
    /// Every file read, in the order read (the main file first).
    pub files: Vec<PathBuf>,
}

/// One listener scope with its enabled `Listen` sockets.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSettings {
    /// The scope name as Momentum spells it (`ECCluster_Listener`, `msgcserver_listener`).
    pub name: &'static str,
    /// Enabled `Listen` scopes only (a disabled listener has none).
    pub sockets: Vec<SocketSettings>,
    /// `incoming_dir` (ECCluster_Listener): the absolute directory files sent
    /// by other nodes are written to; `None` refuses transfers.
    pub incoming_dir: Option<PathBuf>,
    /// `transfer_window` (ECCluster_Listener): bytes of one incoming transfer
    /// granted ahead (queued for the disk or in flight), default
    /// [`TRANSFER_WINDOW`]; it bounds the memory a transfer holds and, over
    /// the round trip, its speed.
    pub transfer_window: u64,
}

/// Default `transfer_window`: 8 MiB.
pub const TRANSFER_WINDOW: u64 = 8 << 20;
/// Bounds of `transfer_window`: 64 KiB to 1 GiB.
pub const TRANSFER_WINDOW_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(1 << 30);

/// One `Listen "addr" { ... }`, with options resolved Listen → listener → default.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketSettings {
    pub addr: ListenAddr,
    /// `listen_backlog` (default 500).
    pub backlog: u32,
    /// `disable_nagle_algorithm` (default false).
    pub nodelay: bool,
    /// `tcp_recv_buffer_size`; `None` when 0 or unset (the kernel autotunes).
    pub recv_buffer: Option<u32>,
    /// `tcp_send_buffer_size`; `None` when 0 or unset.
    pub send_buffer: Option<u32>,
    /// `file_mode` for Unix sockets (default 0o660).
    pub file_mode: u32,
    /// `max_connections`: connections held at once on this socket (default 10000; 0 = unlimited).
    pub max_connections: u32,
    /// `tls_certificate` and friends: TLS on this socket, when set.
    pub tls: Option<TlsSettings>,
    /// `config_pos`: "file:line:column" of the `Listen` scope, for messages.
    pub origin: String,
}

/// A socket's TLS: the files as resolved (relative to the file naming
/// them), and what was read from them, already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub verify_mode: VerifyMode,
    /// The files' contents, read once (a reload compares them).
    pub pem: TlsPem,
}

/// What the TLS files held; parsed and checked by `net::tls`.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPem {
    pub certificate: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsPem {
    /// Sizes only: a private key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("certificate", &self.certificate.len())
            .field("key", &self.key.len())
            .field("client_ca", &self.client_ca.as_ref().map(Vec::len))
            .finish()
    }
}

/// Checks a socket's TLS files when the configuration is loaded: `net::tls`
/// hands in its parser, so the reader stays free of TLS code and errors
/// still point at the option.
pub type TlsCheck<'a> = &'a dyn Fn(&TlsSettings) -> Result<(), (TlsPart, String)>;

/// `tls_verify_mode`: whether a listener asks connecting clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// No client certificate is asked for.
    None,
    /// Asked for; one that is sent must chain to `tls_client_ca`.
    Optional,
    /// Required, and must chain to `tls_client_ca`.
    Require,
}

impl VerifyMode {
    /// The option's accepted values, as written in configuration files.
    pub const VALUES: &'static str = "none, optional, require";

    pub fn parse(s: &str) -> Option<VerifyMode> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(VerifyMode::None),
            "optional" => Some(VerifyMode::Optional),
            "require" | "required" => Some(VerifyMode::Require),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::None => "none",
            VerifyMode::Optional => "optional",
            VerifyMode::Require => "require",
        }
    }
}

/// Which input a TLS check's error is about (for the error's position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPart {
    Certificate,
    Key,
    ClientCa,
}

impl ListenerSettings {
    /// The TLS a node uses when it dials this listener on other nodes: the
    /// first socket's that has TLS (every node's listener should agree).
    pub fn tls(&self) -> Option<&TlsSettings> {
        self.sockets.iter().find_map(|s| s.tls.as_ref())
    }
}

/// A `Listen` address as Momentum writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `"*:P"`, `":P"`: every interface, IPv4 and IPv6 where the host has it.
    Any { port: u16 },
    /// `"[*]:P"`, `"[::]:P"`: every IPv6 interface.
    AnyV6 { port: u16 },
    /// `"1.2.3.4:P"`, `"[::1]:P"`.
    Ip(SocketAddr),
    /// `"/run/x.sock"`.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Any { port } => write!(f, "*:{port}"),
            ListenAddr::AnyV6 { port } => write!(f, "[*]:{port}"),
            ListenAddr::Ip(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `msgc_server { ... }` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgcServerSettings {
    pub enabled: bool,
    /// In file order; names lower-case and unique.
    pub peers: Vec<Peer>,
    /// `port` (default 4809): used for peers without an explicit port.
    pub port: u16,
    pub common: MsgcCommon,
    /// The client-facing limits and credentials of the bus.
    pub bus: BusSettings,
    /// `secret_file`: the cluster secret peers authenticate each other with
    /// (resolved against the folder of the file that names it), and where it
    /// was written ("file:line:column"). Read and checked at start.
    pub secret_file: Option<(PathBuf, String)>,
}

/// ecclusterd's own `msgc_server` options for clients (not in Momentum):
/// limits and credentials of the NATS-speaking side of msgcserver_listener.
#[derive(Debug, Clone, PartialEq)]
pub struct BusSettings {
    /// `max_payload` [1048576]: largest message body a client may publish.
    pub max_payload: usize,
    /// `max_control_line` [4096]: longest protocol line, from the verb to the terminator (terminator excluded).
    pub max_control_line: usize,
    /// `max_pending` [67108864]: bytes queued to one client before it is cut off as a slow consumer.
    pub max_pending: usize,
    /// `max_subscriptions` [65536]: subscriptions one client may hold; 0 = unlimited.
    pub max_subscriptions: usize,
    /// `auth_token`: when set, clients must send it in CONNECT.
    pub auth_token: Option<String>,
    /// `users = [ name = "password" ]`: CONNECT `user`/`pass` pairs accepted.
    pub users: Vec<(String, String)>,
    /// `permissions "user" { ... }`: what each user may publish and subscribe to.
    pub permissions: Vec<(String, Permissions)>,
}

/// Subject patterns a user may (allow lists; empty = anything) and may not
/// (deny lists, which win) publish to and subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe: Vec<String>,
    pub subscribe_deny: Vec<String>,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            max_control_line: 4096,
            max_pending: 64 << 20,
            max_subscriptions: 65_536,
            auth_token: None,
            users: Vec::new(),
            permissions: Vec::new(),
        }
    }
}

/// One `peers` entry: `name = "host[:port]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Host as written (IP literal or host name), without port or brackets.
    pub host: String,
    /// The entry's port, else `msgc_server { port }`.
    pub port: u16,
}

/// `msgc_client { ... }` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgcClientSettings {
    pub enabled: bool,
    /// `server = ( "host:port" ... )`, default `127.0.0.1:4809`.
    pub servers: Vec<String>,
    pub bind_address: Option<String>,
    pub common: MsgcCommon,
}

/// Options msgc_server and msgc_client share (Momentum defaults in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct MsgcCommon {
    /// `connect_timeout` [60 s].
    pub connect_timeout: Duration,
    /// `idle_timeout` [30 s].
    pub idle_timeout: Duration,
    /// `keepalive_interval` [5 s].
    pub keepalive_interval: Duration,
    /// `max_backlog` [5000]: messages queued to one connection before it is declared stuck.
    pub max_backlog: u64,
    /// `messages_per_iter` [20].
    pub messages_per_iter: u32,
    /// `reconnect_interval` [5 s].
    pub reconnect_interval: Duration,
    /// `tcpbuf_size` [131072].
    pub tcpbuf_size: u32,
    /// `debug_level` [ERROR]: one of DEBUG INFO NOTICE WARNING ERROR CRITICAL.
    pub debug_level: String,
}

impl Default for MsgcCommon {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            max_backlog: 5000,
            messages_per_iter: 20,
            reconnect_interval: Duration::from_secs(5),
            tcpbuf_size: 131_072,
            debug_level: "ERROR".to_owned(),
        }
    }
}

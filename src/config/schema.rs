//! The scopes and options ecclusterd understands, as typed structs. Every
//! field is optional: defaults are applied in `resolve`, where the
//! listener → Listen fallback needs to know what was actually written.

use serde::Deserialize;

use super::de::{Dict, Named, Octal, Seconds, Spanned};

/// The global scope.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub cluster: Option<Cluster>,
    pub eccluster_listener: Option<Spanned<Listener>>,
    pub msgcserver_listener: Option<Spanned<Listener>>,
    pub http_listener: Option<Spanned<Listener>>,
    pub msgc_server: Option<MsgcServer>,
    pub msgc_client: Option<MsgcClient>,
}

/// `cluster { ... }`: only what identifies the node.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cluster {
    pub nodename: Option<Spanned<String>>,
    pub nodeaddr: Option<String>,
    /// Accepted (Momentum's module option); ecclusterd has no passive mode.
    #[allow(dead_code)]
    pub enabled: Option<bool>,
    pub debug_level: Option<Spanned<String>>,
}

/// Declares a struct with the listener options (valid both on a listener
/// and in its `Listen` scopes) plus extra fields. A macro rather than
/// `#[serde(flatten)]`, which would lose unknown-option checks and positions.
macro_rules! with_listener_options {
    ($(#[$m:meta])* $name:ident { $($extra:ident: $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            pub enable: Option<bool>,
            pub listen_backlog: Option<u32>,
            /// Accepted for compatibility; no effect.
            #[allow(dead_code)]
            pub accept_queue_backlog: Option<u32>,
            /// Accepted for compatibility; no effect.
            #[allow(dead_code)]
            pub concurrency: Option<u32>,
            /// Accepted for compatibility; no effect.
            #[allow(dead_code)]
            pub events_per_iter: Option<i64>,
            /// Accepted for compatibility; no effect.
            #[allow(dead_code)]
            pub pool_name: Option<String>,
            pub disable_nagle_algorithm: Option<bool>,
            pub tcp_recv_buffer_size: Option<u32>,
            pub tcp_send_buffer_size: Option<u32>,
            pub file_mode: Option<Octal>,
            pub max_connections: Option<u32>,
            /// ECCluster_Listener: where files sent by other nodes land.
            pub incoming_dir: Option<Spanned<String>>,
            /// ECCluster_Listener: bytes of one incoming transfer in flight at most.
            pub transfer_window: Option<Spanned<u64>>,
            /// TLS (Momentum's listener option names): PEM files and client verification.
            pub tls_certificate: Option<Spanned<String>>,
            pub tls_key: Option<Spanned<String>>,
            pub tls_client_ca: Option<Spanned<String>>,
            pub tls_verify_mode: Option<Spanned<String>>,
            $(pub $extra: $t,)*
        }
    };
}

with_listener_options!(
    /// `ECCluster_Listener { ... }` / `msgcserver_listener { ... }`.
    Listener { listen: Option<Named<ListenOpts>>, }
);

with_listener_options!(
    /// `Listen "addr" { ... }`.
    ListenOpts {}
);

/// Declares a struct with the options msgc_server and msgc_client share.
macro_rules! with_msgc_options {
    ($(#[$m:meta])* $name:ident { $($extra:ident: $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            pub enabled: Option<bool>,
            pub debug_level: Option<Spanned<String>>,
            pub connect_timeout: Option<Seconds>,
            pub idle_timeout: Option<Seconds>,
            pub keepalive_interval: Option<Seconds>,
            pub max_backlog: Option<u64>,
            pub messages_per_iter: Option<u32>,
            pub reconnect_interval: Option<Seconds>,
            pub tcpbuf_size: Option<u32>,
            $(pub $extra: $t,)*
        }
    };
}

with_msgc_options!(
    /// `msgc_server { ... }`.
    MsgcServer {
        peers: Option<Spanned<Dict<Spanned<String>>>>,
        port: Option<Spanned<u16>>,
        max_payload: Option<Spanned<u64>>,
        max_control_line: Option<Spanned<u64>>,
        max_pending: Option<Spanned<u64>>,
        max_subscriptions: Option<Spanned<u64>>,
        auth_token: Option<Spanned<String>>,
        users: Option<Spanned<Dict<Spanned<String>>>>,
        secret_file: Option<Spanned<String>>,
        permissions: Option<Named<PermissionsScope>>,
    }
);

/// `permissions "user" { publish = ( ... ) subscribe_deny = ( ... ) }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionsScope {
    pub publish: Option<Vec<Spanned<String>>>,
    pub publish_deny: Option<Vec<Spanned<String>>>,
    pub subscribe: Option<Vec<Spanned<String>>>,
    pub subscribe_deny: Option<Vec<Spanned<String>>>,
}

with_msgc_options!(
    /// `msgc_client { ... }`.
    MsgcClient {
        server: Option<Spanned<Vec<Spanned<String>>>>,
        bind_address: Option<String>,
    }
);

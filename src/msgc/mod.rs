//! The msgc bus on msgcserver_listener: clients speak the NATS client
//! protocol; groups, private names, membership events and `$MSGC.STATUS`
//! are msgc's operations mapped onto it (docs/PROTOCOL.md).

pub mod admit;
pub mod auth;
pub mod groups;
pub mod latency;
pub mod ordered;
pub mod outbound;
pub mod router;
mod session;
pub mod status;
pub mod stream;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::mesh::Mesh;
use crate::nats::proto::{self, ServerInfo};
use crate::net::{Conn, Local, Remote, Service, Shutdown};
use crate::node::{self, NodeLinks};

pub use auth::Auth;
use router::Router;
use status::{Counters, Gauges, ListenerStatus, Status};

pub use router::STATUS_SUBJECT;

/// Every bound a client connection lives under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub proto: proto::Limits,
    pub outbound: outbound::Limits,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub max_subscriptions: usize,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Limits {
        let b = &s.server.bus;
        Limits {
            proto: proto::Limits {
                max_control_line: b.max_control_line,
                max_payload: b.max_payload,
            },
            // Clients are bounded in bytes, as NATS clients expect; Momentum's
            // `max_backlog` (messages) bounds what a lagging peer server may pin.
            outbound: outbound::Limits {
                max_bytes: b.max_pending,
                max_msgs: usize::MAX,
            },
            // Client connections follow `msgc_client` (Momentum's settings for
            // the client ↔ server connection); `msgc_server`'s own values are
            // for links between servers, which want faster failure detection.
            connect_timeout: s.client.common.connect_timeout,
            keepalive_interval: s.client.common.keepalive_interval,
            max_subscriptions: b.max_subscriptions,
        }
    }
}

/// The node's bus: shared by every client session.
pub struct Bus {
    pub node: String,
    pub limits: Limits,
    pub auth: Auth,
    pub counters: Arc<Counters>,
    router: Mutex<Router>,
    next_id: AtomicU64,
    started: Instant,
    server_id: String,
    listeners: Mutex<Vec<ListenerStatus>>,
    /// Reply subjects of requests from other nodes, and those nodes: replies
    /// go there directly instead of through the order.
    reply_routes: Mutex<crate::node::direct::Routes>,
}

impl Bus {
    pub fn new(settings: &Settings) -> Bus {
        let counters = Arc::new(Counters::default());
        let limits = Limits::from_settings(settings);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Bus {
            node: settings.node.clone(),
            limits,
            auth: Auth::from_settings(&settings.server.bus),
            router: Mutex::new(Router::new(
                &settings.node,
                limits.max_subscriptions,
                counters.clone(),
                seed,
            )),
            counters,
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            server_id: format!("ECCLUSTERD-{}-{:x}", settings.node, seed & 0xffff_ffff),
            listeners: Mutex::new(Vec::new()),
            reply_routes: Mutex::new(crate::node::direct::Routes::default()),
        }
    }

    /// A request from `node` asked for replies on `subject`.
    pub fn learn_reply_route(&self, subject: &str, node: &str) {
        self.reply_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .learn(subject, node, Instant::now());
    }

    /// The node whose client awaits replies on `subject`, if another one.
    pub fn reply_route(&self, subject: &str) -> Option<String> {
        self.reply_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .node_for(subject)
            .map(str::to_owned)
    }

    /// Locks the routing table. Held for one read's worth of operations.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a bound address for status.
    pub fn add_listener(&self, listener: &str, address: String) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ListenerStatus {
                listener: listener.to_owned(),
                address,
            });
    }

    /// The `INFO` line a new client is greeted with.
    pub fn info(
        &self,
        id: u64,
        remote: &Remote,
        local: &Local,
        private_name: &str,
        peer_nonce: Option<&str>,
        tls: Option<crate::net::tls::VerifyMode>,
    ) -> Vec<u8> {
        let (host, port) = match local {
            Local::Tcp(a) => (a.ip().to_string(), a.port()),
            Local::Unix(p) => (p.display().to_string(), 0),
        };
        let info = ServerInfo {
            server_id: self.server_id.clone(),
            server_name: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            proto: 1,
            host,
            port,
            headers: true,
            max_payload: self.limits.proto.max_payload as u64,
            client_id: id,
            client_ip: match remote {
                Remote::Tcp(a) => a.ip().to_string(),
                Remote::Unix => String::new(),
            },
            cluster: Some("msgc".to_owned()),
            auth_required: self.auth.required().then_some(true),
            tls_required: tls.map(|_| true),
            tls_verify: (tls == Some(crate::net::tls::VerifyMode::Require)).then_some(true),
            msgc_private_name: Some(private_name.to_owned()),
            msgc_peer_nonce: peer_nonce.map(str::to_owned),
        };
        let mut out = Vec::with_capacity(512);
        proto::encode::info(&mut out, &info);
        out
    }
}

/// The bus and what this node is part of, as client sessions and node links
/// see it. Built once, complete, by `daemon`.
pub struct Server {
    pub bus: Arc<Bus>,
    /// The peer mesh (nodes with peers): peer handshakes on this listener
    /// are handed to it.
    pub mesh: Option<Arc<Mesh>>,
    /// With peers, publishes go through the total order.
    pub ordered: Option<Arc<ordered::Ordered>>,
    /// The direct links' traffic, for status.
    pub traffic: Arc<node::Traffic>,
}

impl Deref for Server {
    type Target = Bus;
    fn deref(&self) -> &Bus {
        &self.bus
    }
}

impl Server {
    pub fn mesh(&self) -> Option<&Arc<Mesh>> {
        self.mesh.as_ref()
    }

    pub fn ordered(&self) -> Option<&Arc<ordered::Ordered>> {
        self.ordered.as_ref()
    }

    pub fn status(&self, router: &Router) -> Status {
        Status::collect(
            &self.node,
            self.started,
            &self.counters,
            &self.traffic,
            Gauges {
                connections: router.connections() as u64,
                subscriptions: router.subscriptions() as u64,
                groups: router.groups().len() as u64,
            },
            self.listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            self.mesh().map(|m| m.status()).unwrap_or_default(),
            self.ordered().and_then(|o| o.status()),
        )
    }

    pub fn status_json(&self, router: &Router) -> Vec<u8> {
        serde_json::to_vec(&self.status(router)).unwrap_or_default()
    }
}

impl node::Port for Server {
    fn deliver(&self, d: &node::codec::Delivery) {
        self.router().publish(
            0,
            &router::Message {
                subject: &d.subject,
                reply: d.reply.as_deref(),
                headers: d.headers.as_deref(),
                payload: &d.payload,
                sender: &d.sender,
            },
        );
    }

    fn publish_system(&self, subject: &str, payload: &[u8]) {
        self.router().publish_system(subject, payload);
    }

    fn no_responders(&self, client: u64, reply: &str) {
        self.router().send_no_responders(client, reply);
    }

    fn status_json(&self) -> Vec<u8> {
        Server::status_json(self, &self.router())
    }
}

/// msgcserver_listener's service: sessions see the server and reach other
/// nodes through the node links.
pub struct MsgcService {
    pub server: Arc<Server>,
    pub links: Arc<NodeLinks>,
}

impl Deref for MsgcService {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Service for MsgcService {
    fn serve(
        self: Arc<Self>,
        conn: Conn,
        remote: Remote,
        local: Local,
        tls: Option<crate::net::tls::Material>,
        shutdown: Shutdown,
    ) -> futures_lite::future::Boxed<()> {
        Box::pin(session::serve(self, conn, remote, local, tls, shutdown))
    }

    /// In plain text even with TLS: clients read INFO in plain text first.
    fn refusal(&self, _tls: bool) -> Option<&'static [u8]> {
        Some(b"-ERR 'maximum connections exceeded'\r\n")
    }
}

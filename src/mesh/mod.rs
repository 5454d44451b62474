//! The msgc server mesh: one TCP link to every other peer in `peers`, on
//! their msgcserver_listener. The node whose name sorts first dials (so one
//! link per pair, no simultaneous-dial races), redials with
//! `reconnect_interval` and jittered backoff, and each side sends a PING
//! frame every `keepalive_interval`; a link silent for [`SUSPECT_AFTER`]
//! intervals is closed as dead. What flows on a link beyond keepalives is
//! the ordering protocol's business (`Frame::Order`).

mod error;
pub mod frame;
pub mod greeting;
pub mod handshake;
pub mod order_codec;
pub mod secret;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use serde::{Deserialize, Serialize};
use smol::Timer;

use crate::config::{Peer, Settings};
use crate::net::{Conn, Shutdown};
pub use error::LinkError;
use frame::{Decoder, Frame};
use handshake::{HELLO_VERB, Hello, PROTOCOL, PeerGreeting, Welcome};

/// Keepalive intervals without any frame before a link is declared dead.
pub const SUSPECT_AFTER: u32 = 3;
/// Largest frame accepted from a peer. Prepare and Forward batches stay near
/// 4 MiB; what can be larger is a view change or state transfer carrying a
/// whole log, which is bounded by the members' lag bound (docs/ORDERING.md).
pub const MAX_FRAME: usize = 256 << 20;
/// Longest handshake line accepted (the peers list rides on it).
pub const MAX_HANDSHAKE_LINE: usize = 64 * 1024;
/// Events (frames, links up and down) waiting for the ordering layer; past
/// it links are not read (TCP slows the peers).
const EVENT_QUEUE: usize = 4096;
/// The first redial after a failed dial or a link that ended.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);

/// A link's state, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    /// `host:port` of the peer's msgcserver_listener, from `peers`.
    pub address: String,
    /// `up`, `down`, or `self`.
    pub state: String,
    /// Seconds in this state.
    pub since_secs: f64,
    /// Last keepalive round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// The peer's ECCluster_Listener address, learnt in the handshake.
    pub eccluster: Option<String>,
    /// Why the link last went down, if it did.
    pub last_error: Option<String>,
}

struct Link {
    up: bool,
    since: Instant,
    rtt: Option<Duration>,
    eccluster: Option<String>,
    last_error: Option<String>,
    /// Identifies the live link, so a replaced one does not unregister its successor.
    generation: u64,
    tx: Option<Sender<Frame>>,
}

/// Events for whoever consumes the mesh (the ordering layer). Each names
/// the link's generation: a link replaced by a newer one to the same peer
/// may still report its end, or frames read before it closed, after the new
/// one is up; the consumer drops events of a generation that is not the
/// peer's current one.
#[derive(Debug, Clone)]
pub enum Event {
    Up(String, u64),
    Down(String, u64),
    Order(String, u64, bytes::Bytes),
}

pub struct Mesh {
    me: String,
    peers: Vec<Peer>,
    /// What we advertise as our ECCluster_Listener: `nodeaddr`, else filled per link.
    nodeaddr: Option<String>,
    eccluster_port: Option<u16>,
    keepalive: Duration,
    reconnect: Duration,
    connect_timeout: Duration,
    max_backlog: usize,
    links: Mutex<BTreeMap<String, Link>>,
    generation: AtomicU64,
    started: Instant,
    events: Sender<Event>,
    /// `secret_file`: when set, both ends of every link prove they hold it.
    secret: Option<secret::Secret>,
    /// TLS of our msgcserver_listener: links to peers use it too (our
    /// certificate presented, theirs checked against `tls_client_ca`).
    tls: Option<crate::net::tls::ClientTls>,
}

impl Mesh {
    /// A mesh for `settings`, and the stream of its events.
    pub fn new(
        settings: &Settings,
        eccluster_port: Option<u16>,
        secret: Option<secret::Secret>,
    ) -> (Arc<Mesh>, Receiver<Event>) {
        let (events, rx) = async_channel::bounded(EVENT_QUEUE);
        let now = Instant::now();
        let links = settings
            .server
            .peers
            .iter()
            .filter(|p| p.name != settings.node)
            .map(|p| {
                (
                    p.name.clone(),
                    Link {
                        up: false,
                        since: now,
                        rtt: None,
                        eccluster: None,
                        last_error: None,
                        generation: 0,
                        tx: None,
                    },
                )
            })
            .collect();
        let c = &settings.server.common;
        let mesh = Mesh {
            me: settings.node.clone(),
            peers: settings.server.peers.clone(),
            nodeaddr: settings.nodeaddr.clone(),
            eccluster_port,
            keepalive: c.keepalive_interval.max(Duration::from_millis(10)),
            reconnect: c.reconnect_interval.max(Duration::from_millis(10)),
            connect_timeout: c.connect_timeout,
            max_backlog: usize::try_from(c.max_backlog).unwrap_or(usize::MAX).max(1),
            links: Mutex::new(links),
            generation: AtomicU64::new(1),
            started: now,
            events,
            secret,
            tls: crate::net::tls::Material::dialer_of(settings.msgcserver.tls()),
        };
        (Arc::new(mesh), rx)
    }

    /// Whether links authenticate with a cluster secret.
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// The cluster secret, for the node links on ECCluster_Listener too.
    pub fn secret(&self) -> Option<&secret::Secret> {
        self.secret.as_ref()
    }

    fn links(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands an event to the ordering layer, waiting while its queue is
    /// full: a link is not read faster than the order consumes it.
    async fn emit(&self, e: Event) {
        let _ = self.events.send(e).await;
    }

    /// Starts a dialer for every peer this node dials.
    pub fn start(self: &Arc<Self>, ex: &smol::Executor<'static>, shutdown: Shutdown) {
        for p in &self.peers {
            if p.name != self.me && handshake::dials(&self.me, &p.name) {
                let mesh = self.clone();
                let peer = p.clone();
                let stop = shutdown.clone();
                ex.spawn(async move {
                    mesh.dial_loop(peer, stop.clone())
                        .or(async move { stop.wait().await })
                        .await
                })
                .detach();
            }
        }
    }

    /// Queues a frame to `peer`; false when the link is down. A link whose
    /// queue is full (`max_backlog` frames) is stuck: it is closed, as
    /// Momentum does, and redialled.
    pub fn send(&self, peer: &str, f: Frame) -> bool {
        let tx = self.links().get(peer).and_then(|l| l.tx.clone());
        match tx {
            None => false,
            Some(tx) => match tx.try_send(f) {
                Ok(()) => true,
                Err(async_channel::TrySendError::Full(_)) => {
                    log::warn!(
                        "msgc peer {peer}: {} frames queued (max_backlog); closing the stuck link",
                        self.max_backlog
                    );
                    tx.close();
                    false
                }
                Err(async_channel::TrySendError::Closed(_)) => false,
            },
        }
    }

    pub fn status(&self) -> Vec<PeerStatus> {
        let links = self.links();
        self.peers
            .iter()
            .map(|p| {
                let address = handshake::peer_list(std::slice::from_ref(p))
                    .pop()
                    .map(|(_, a)| a)
                    .unwrap_or_default();
                match links.get(&p.name) {
                    None => PeerStatus {
                        name: p.name.clone(),
                        address,
                        state: "self".into(),
                        since_secs: self.started.elapsed().as_secs_f64(),
                        rtt_ms: None,
                        eccluster: self.advertise(self.own_ip().map(|ip| SocketAddr::new(ip, 0))),
                        last_error: None,
                    },
                    Some(l) => PeerStatus {
                        name: p.name.clone(),
                        address,
                        state: if l.up { "up" } else { "down" }.into(),
                        since_secs: l.since.elapsed().as_secs_f64(),
                        rtt_ms: l.rtt.map(|d| d.as_secs_f64() * 1000.0),
                        eccluster: l.eccluster.clone(),
                        last_error: l.last_error.clone(),
                    },
                }
            })
            .collect()
    }

    /// Our own `peers` address when it is an IP literal: outgoing links leave
    /// from it, since that is the address peers check a link against.
    fn own_ip(&self) -> Option<IpAddr> {
        self.peers
            .iter()
            .find(|p| p.name == self.me)
            .and_then(|p| p.host.parse().ok())
    }

    /// Our ECCluster_Listener address as a peer that reached us on `local` should use it.
    fn advertise(&self, local: Option<SocketAddr>) -> Option<String> {
        if let Some(a) = &self.nodeaddr {
            return Some(match (a.contains(':'), self.eccluster_port) {
                (false, Some(p)) => format!("{a}:{p}"),
                _ => a.clone(),
            });
        }
        let (ip, port) = (local?.ip(), self.eccluster_port?);
        Some(SocketAddr::new(ip, port).to_string())
    }

    async fn dial_loop(self: Arc<Self>, peer: Peer, shutdown: Shutdown) {
        let mut failures = 0u32;
        loop {
            let addr = format!("{}:{}", bracket(&peer.host), peer.port);
            let result = self.dial_once(&peer, &addr, shutdown.clone()).await;
            match result {
                // The link was up and ended (run_link said why): redial
                // after the first, short interval.
                Ok(_) => failures = 1,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures % 20 == 0 {
                        log::warn!("msgc peer {}: cannot link to {addr}: {e}", peer.name);
                    } else {
                        log::debug!("msgc peer {}: cannot link to {addr}: {e}", peer.name);
                    }
                    if let Some(l) = self.links().get_mut(&peer.name) {
                        l.last_error = Some(e.to_string());
                    }
                }
            }
            if shutdown.is_triggered() {
                return;
            }
            Timer::after(backoff(
                self.reconnect,
                failures,
                jitter_seed(&self.me, &peer.name, failures),
            ))
            .await;
        }
    }

    /// Dials and, once the handshake is through, runs the link: `Err` if
    /// no link came up, else how the link ended.
    async fn dial_once(
        &self,
        peer: &Peer,
        addr: &str,
        shutdown: Shutdown,
    ) -> Result<Result<(), LinkError>, LinkError> {
        let connect = async {
            let s = connect_from(self.own_ip(), addr).await?;
            let _ = s.set_nodelay(true);
            let mut conn = Conn::Tcp(s);
            let local = conn.local_addr();
            let mut pending = Vec::new();
            let info = read_line(&mut conn, &mut pending, None).await?;
            let info: crate::nats::proto::ServerInfo = info
                .strip_prefix(b"INFO ")
                .and_then(|j| serde_json::from_slice(j).ok())
                .ok_or_else(|| LinkError::Handshake("not an msgc listener (no INFO)".into()))?;
            // TLS after INFO, as NATS clients do; both ends must agree on it.
            match (info.tls_required == Some(true), &self.tls) {
                (true, Some(tls)) => {
                    conn = crate::net::tls::connect(conn, tls, &peer.host)
                        .await
                        .map_err(|e| LinkError::Tls(format!("handshake failed: {e}")))?;
                }
                (true, None) => {
                    return Err(LinkError::Tls("the peer requires TLS, but this node's msgcserver_listener has none".to_owned()));
                }
                (false, Some(_)) => {
                    return Err(LinkError::Tls("the peer does not offer TLS, but this node's msgcserver_listener uses it (configure TLS on every node)".to_owned()));
                }
                (false, None) => {}
            }
            // With a secret: answer the listener's challenge, and send ours.
            let sides = secret::Sides {
                link: secret::Link::Mesh,
                dialer: &self.me,
                acceptor: &peer.name,
            };
            let challenge = info.msgc_peer_nonce;
            let hello = |proof: Option<(String, String)>| {
                let (nonce, mac) = proof.unzip();
                Hello {
                    protocol: PROTOCOL,
                    node: self.me.clone(),
                    peers: handshake::peer_list(&self.peers),
                    eccluster: self.advertise(local),
                    nonce,
                    mac,
                }
            };
            let welcome = greeting::dial::<PeerGreeting>(
                &mut conn,
                &mut pending,
                self.secret.as_ref(),
                sides,
                challenge.as_deref(),
                hello,
                |_| None,
            )
            .await?;
            Ok((conn, pending, welcome))
        }
        .or(async {
            Timer::after(self.connect_timeout).await;
            Err(LinkError::Timeout(self.connect_timeout))
        });
        let (conn, pending, welcome) = connect.await?;
        Ok(self
            .run_link(&peer.name, conn, pending, welcome.eccluster, shutdown)
            .await)
    }

    /// Serves a connection on msgcserver_listener whose first line is
    /// `MSGC-PEER`: checks the handshake, answers, and runs the link.
    /// `challenge` is the nonce our INFO offered (with a secret).
    pub async fn accept(
        &self,
        mut conn: Conn,
        mut pending: Vec<u8>,
        remote: Option<SocketAddr>,
        local: Option<SocketAddr>,
        challenge: Option<String>,
        shutdown: Shutdown,
    ) {
        let line = match read_line(&mut conn, &mut pending, None).await {
            Ok(l) => l,
            Err(e) => {
                log::info!("msgc peer handshake from {remote:?} failed: {e}");
                return;
            }
        };
        let checked = || -> Result<Hello, LinkError> {
            let h = handshake::parse::<Hello>(HELLO_VERB, &line)?;
            handshake::check_hello(&h, &self.me, &self.peers)?;
            self.check_address(&h.node, remote)?;
            self.check_certificate(&h.node, &conn)?;
            let secret = self.secret.as_ref();
            greeting::check_hello::<PeerGreeting>(secret, &self.me, &h, challenge.as_deref())?;
            Ok(h)
        };
        let checked = checked();
        let hello = match checked {
            Ok(h) => h,
            Err(why) => {
                log::warn!("msgc peer from {}: refused: {why}", display(remote));
                conn.refuse(format!("-ERR 'msgc peer refused: {why}'\r\n").as_bytes())
                    .await;
                return;
            }
        };
        if handshake::dials(&self.me, &hello.node) {
            // We dial them; they should not dial us. Refuse so the rule holds.
            log::warn!(
                "msgc peer {} dialled us, but we dial it (its name sorts after ours)",
                hello.node
            );
            conn.refuse(b"-ERR 'msgc peer refused: the node whose name sorts first dials'\r\n")
                .await;
            return;
        }
        let welcome = |mac| Welcome {
            protocol: PROTOCOL,
            node: self.me.clone(),
            eccluster: self.advertise(local),
            mac,
        };
        let secret = self.secret.as_ref();
        let challenge = challenge.as_deref();
        if !greeting::welcome::<PeerGreeting>(
            &mut conn, secret, &self.me, &hello, challenge, welcome,
        )
        .await
        {
            return;
        }
        // run_link logs the link going down; keep why for status.
        if let Err(e) = self
            .run_link(&hello.node, conn, pending, hello.eccluster, shutdown)
            .await
            && let Some(l) = self.links().get_mut(&hello.node)
        {
            l.last_error = Some(e.to_string());
        }
    }

    /// Over TLS, the peer's client certificate must be valid for its host in `peers`.
    pub fn check_certificate(&self, name: &str, conn: &Conn) -> Result<(), LinkError> {
        match self.peers.iter().find(|p| p.name == name) {
            Some(peer) => {
                crate::net::tls::check_peer_name(conn, &peer.host).map_err(LinkError::Tls)
            }
            None => Err(LinkError::UnknownPeer(name.to_owned())),
        }
    }

    /// A peer's configured host, when it is an IP literal, must be where it connects from.
    pub fn check_address(&self, name: &str, remote: Option<SocketAddr>) -> Result<(), LinkError> {
        let Some(peer) = self.peers.iter().find(|p| p.name == name) else {
            return Err(LinkError::UnknownPeer(name.to_owned()));
        };
        match (peer.host.parse::<IpAddr>(), remote) {
            (Ok(want), Some(got)) if canonical(want) != canonical(got.ip()) => {
                Err(LinkError::Handshake(format!(
                    "`{name}` is {} in peers, but this connection comes from {}",
                    peer.host,
                    got.ip()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Runs one established link until it fails, goes silent, or shutdown.
    async fn run_link(
        &self,
        peer: &str,
        conn: Conn,
        pending: Vec<u8>,
        eccluster: Option<String>,
        shutdown: Shutdown,
    ) -> Result<(), LinkError> {
        let (tx, rx) = async_channel::bounded(self.max_backlog);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let replaced = {
            let mut links = self.links();
            let Some(l) = links.get_mut(peer) else {
                return Err(LinkError::UnknownPeer(peer.to_owned()));
            };
            let old = l.tx.replace(tx.clone());
            let (was_up, old_generation) = (l.up, l.generation);
            l.up = true;
            l.since = Instant::now();
            l.eccluster = eccluster.clone();
            l.generation = generation;
            old.and_then(|o| {
                o.close();
                was_up.then_some(old_generation)
            })
        };
        if let Some(old) = replaced {
            // The old link's end emits no Down (its generation is stale), so say it here.
            self.emit(Event::Down(peer.to_owned(), old)).await;
        }
        log::info!(
            "msgc peer {peer}: link up (ECCluster_Listener {})",
            eccluster.as_deref().unwrap_or("unknown")
        );
        self.emit(Event::Up(peer.to_owned(), generation)).await;
        let last_heard = Arc::new(Mutex::new(Instant::now()));
        let result = future::or(
            self.link_reader(peer, generation, conn.clone(), pending, &tx, &last_heard),
            future::or(
                link_writer(conn.clone(), rx),
                async { self.link_heartbeat(&tx, &last_heard).await }.or(async {
                    shutdown.wait().await;
                    Ok(())
                }),
            ),
        )
        .await;
        conn.shutdown();
        tx.close();
        let current = {
            let mut links = self.links();
            match links.get_mut(peer) {
                Some(l) if l.generation == generation => {
                    l.up = false;
                    l.since = Instant::now();
                    l.tx = None;
                    l.rtt = None;
                    true
                }
                _ => false,
            }
        };
        if current {
            log::info!(
                "msgc peer {peer}: link down ({})",
                result
                    .as_ref()
                    .err()
                    .map_or_else(|| "closed".to_owned(), LinkError::to_string)
            );
            self.emit(Event::Down(peer.to_owned(), generation)).await;
        }
        result
    }

    async fn link_reader(
        &self,
        peer: &str,
        generation: u64,
        mut conn: Conn,
        pending: Vec<u8>,
        tx: &Sender<Frame>,
        last_heard: &Mutex<Instant>,
    ) -> Result<(), LinkError> {
        let mut dec = Decoder::new(MAX_FRAME);
        dec.feed(&pending);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(f) = dec.next_frame() {
                let f = f.map_err(|e| LinkError::Frame(e.to_string()))?;
                *last_heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                match f {
                    Frame::Ping(t) => {
                        let _ = tx.try_send(Frame::Pong(t));
                    }
                    Frame::Pong(t) => {
                        let rtt = Duration::from_micros(micros(self.started).saturating_sub(t));
                        if let Some(l) = self.links().get_mut(peer) {
                            l.rtt = Some(rtt);
                        }
                    }
                    Frame::Order(b) => {
                        self.emit(Event::Order(peer.to_owned(), generation, b))
                            .await
                    }
                }
            }
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Err(LinkError::Closed("closed by the peer"));
            }
            dec.feed(&buf[..n]);
        }
    }

    async fn link_heartbeat(
        &self,
        tx: &Sender<Frame>,
        last_heard: &Mutex<Instant>,
    ) -> Result<(), LinkError> {
        loop {
            let armed = Instant::now();
            Timer::after(self.keepalive).await;
            // A timer that fired a keepalive late means this process was
            // stopped or starved: what the peer sent meanwhile is still
            // unread, so its silence is judged a round later.
            let stalled = armed.elapsed() > self.keepalive.saturating_mul(2);
            let silent = last_heard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            if !stalled && silent > self.keepalive.saturating_mul(SUSPECT_AFTER) {
                return Err(LinkError::Silent(silent));
            }
            if tx.try_send(Frame::Ping(micros(self.started))).is_err() {
                return Err(LinkError::Closed("link queue closed"));
            }
        }
    }
}

async fn link_writer(mut conn: Conn, rx: Receiver<Frame>) -> Result<(), LinkError> {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Ok(f) = rx.recv().await {
        out.clear();
        f.encode(&mut out);
        // Batch whatever else is already queued into the same write.
        while out.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(f) => f.encode(&mut out),
                Err(_) => break,
            }
        }
        conn.write_all(&out).await?;
        // TLS holds records until flushed; a no-op on plain sockets.
        conn.flush().await?;
    }
    Err(LinkError::Closed(
        "link queue closed (stuck, replaced or stopping)",
    ))
}

/// Connects to `addr` (resolved if a host name), from `local` when given.
pub async fn connect_from(local: Option<IpAddr>, addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address");
    for a in async_net::resolve(addr).await? {
        let Some(ip) = local.filter(|ip| ip.is_ipv4() == a.is_ipv4()) else {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    last = e;
                    continue;
                }
            }
        };
        let attempt = async {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(a),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.set_nonblocking(true)?;
            match socket.connect(&a.into()) {
                Ok(()) => {}
                // EINPROGRESS: the non-blocking connect goes on.
                Err(e)
                    if e.raw_os_error() == Some(115)
                        || e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let stream = smol::Async::new(std::net::TcpStream::from(socket))?;
            stream.writable().await?;
            if let Some(e) = stream.get_ref().take_error()? {
                return Err(e);
            }
            Ok(TcpStream::from(stream))
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads one `\n`-terminated handshake line (CR dropped, at most
/// [`MAX_HANDSHAKE_LINE`] bytes); bytes after it stay in `pending`. With
/// `expect = Some((verb, what))` input that cannot begin `verb ` is refused
/// at its first wrong byte ("not a `what` handshake"). Shared by the peer
/// links and the node links.
pub async fn read_line(
    conn: &mut Conn,
    pending: &mut Vec<u8>,
    expect: Option<(&str, &str)>,
) -> Result<Vec<u8>, LinkError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some((verb, what)) = expect {
            let want = verb.as_bytes().iter().chain(b" ");
            if pending.iter().zip(want).any(|(a, b)| a != b) {
                return Err(LinkError::Handshake(format!(
                    "not a {what} handshake (expected `{verb} {{...}}`)"
                )));
            }
        }
        if let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = pending.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if pending.len() > MAX_HANDSHAKE_LINE {
            return Err(LinkError::Handshake("handshake line too long".into()));
        }
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(LinkError::Closed("connection closed during the handshake"));
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Whether the first bytes of a connection are (or may still become) a peer handshake.
/// `None`: too few bytes to tell.
pub fn is_peer_hello(first: &[u8]) -> Option<bool> {
    let verb = HELLO_VERB.as_bytes();
    let n = first.len().min(verb.len() + 1);
    let want: Vec<u8> = verb.iter().copied().chain([b' ']).collect();
    if first[..n] != want[..n] {
        return Some(false);
    }
    (first.len() > verb.len()).then_some(true)
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn display(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "unix socket".to_owned(), |a| a.to_string())
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The wait before dialling again after `failures` consecutive failures
/// (a link that ended counts as one): [`FIRST_RETRY`] after the first — a
/// peer that was not listening yet, because the cluster is starting in any
/// order, is tried again at once — doubling up to `reconnect_interval`,
/// with ±25 % jitter so a restarted cluster does not redial in lockstep.
pub fn backoff(reconnect: Duration, failures: u32, seed: u64) -> Duration {
    let first = FIRST_RETRY.min(reconnect);
    let d = first
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(reconnect);
    // seed → [0.75, 1.25); a configured interval near Duration::MAX saturates.
    let frac = 0.75 + (seed % 1000) as f64 / 2000.0;
    Duration::try_from_secs_f64(d.as_secs_f64() * frac).unwrap_or(Duration::MAX)
}

fn jitter_seed(me: &str, peer: &str, n: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(me.as_bytes());
    h.write(peer.as_bytes());
    h.write_u32(n);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_hello_is_told_apart_from_clients() {
        assert_eq!(is_peer_hello(b"MSGC"), None);
        assert_eq!(is_peer_hello(b"MSGC-PEER"), None);
        assert_eq!(is_peer_hello(b"MSGC-PEER "), Some(true));
        assert_eq!(is_peer_hello(b"MSGC-PEER {\"a\":1}"), Some(true));
        assert_eq!(is_peer_hello(b"CONNECT {}"), Some(false));
        assert_eq!(is_peer_hello(b"MSGC-PEERX"), Some(false));
        assert_eq!(is_peer_hello(b"M"), None);
        assert_eq!(is_peer_hello(b"X"), Some(false));
    }

    #[test]
    fn backoff_starts_short_and_grows_to_the_reconnect_interval() {
        let ms = Duration::from_millis;
        let re = Duration::from_secs(5);
        assert_eq!(backoff(re, 0, 500), ms(50));
        assert_eq!(backoff(re, 1, 500), ms(50));
        assert_eq!(backoff(re, 2, 500), ms(100));
        assert_eq!(backoff(re, 4, 500), ms(400));
        assert_eq!(backoff(re, 7, 500), ms(3200));
        assert_eq!(backoff(re, 8, 500), re);
        assert_eq!(backoff(re, 400, 500), re);
        assert_eq!(backoff(re, 1, 0), ms(50).mul_f64(0.75));
        assert!(backoff(re, 1, 999) < ms(50).mul_f64(1.25));
        // A reconnect interval shorter than the first retry bounds it.
        assert_eq!(backoff(ms(20), 1, 500), ms(20));
        // Absurd configured intervals and failure counts do not panic.
        assert!(backoff(Duration::MAX, u32::MAX, 999) >= Duration::from_secs(3600));
    }
}

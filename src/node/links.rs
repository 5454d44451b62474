//! Direct links between nodes on their ECCluster_Listener: at most one live
//! link per peer, opened on first use (to the address the peer advertised in
//! the mesh handshake), reused, closed after `idle_timeout` without traffic,
//! and redialled on the next use after a backoff when a dial failed.
//!
//! Each link has two bounded queues: control frames (pings, status, credits,
//! offers, outcomes: [`CTL_QUEUE`] frames) and bulk chunks ([`BULK_QUEUE`]
//! frames). The writer always empties the control queue first, so small
//! frames overtake a bulk transfer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use smol::Timer;

use super::codec::{
    self, CHALLENGE_VERB, Decoder, Frame, HELLO_VERB, Hello, NodeGreeting, Welcome,
};
use super::files::{Incoming, Pushed};
use super::{NodeError, Port, Traffic};
use crate::config::{Peer, Settings};
use crate::mesh::{self, LinkError, Mesh, greeting, handshake};
use crate::mesh::{read_line, secret};
use crate::net::{Conn, Shutdown};

/// Control frames queued to one link before it is declared stuck and closed.
pub const CTL_QUEUE: usize = 1024;
/// Chunk frames queued to one link; a sender waits when it is full.
pub const BULK_QUEUE: usize = 16;
/// Frames queued to one waiting request or outgoing transfer.
const WAIT_QUEUE: usize = 64;

/// A live link's queues.
#[derive(Clone)]
pub struct LinkHandle {
    pub ctl: Sender<Frame>,
    pub bulk: Sender<Frame>,
    generation: u64,
}

impl LinkHandle {
    /// Queues a control frame; a full queue means the peer stopped reading:
    /// the link is closed.
    pub fn control(&self, f: Frame) -> Result<(), NodeError> {
        match self.ctl.try_send(f) {
            Ok(()) => Ok(()),
            Err(async_channel::TrySendError::Full(_)) => {
                self.close();
                Err(NodeError::Stuck)
            }
            Err(async_channel::TrySendError::Closed(_)) => Err(NodeError::Closed("link closed")),
        }
    }

    pub fn close(&self) {
        self.ctl.close();
        self.bulk.close();
    }

    /// A handle whose queues the caller reads (unit tests).
    #[cfg(test)]
    pub fn detached() -> (LinkHandle, Receiver<Frame>) {
        let (ctl, ctl_rx) = async_channel::bounded(CTL_QUEUE);
        let (bulk, _) = async_channel::bounded(BULK_QUEUE);
        let h = LinkHandle {
            ctl,
            bulk,
            generation: 0,
        };
        (h, ctl_rx)
    }
}

#[derive(Default)]
struct PeerState {
    live: Option<LinkHandle>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

/// Every direct link of this node.
pub struct NodeLinks {
    pub me: String,
    peers: Vec<Peer>,
    own_ip: Option<IpAddr>,
    pub connect_timeout: Duration,
    idle_timeout: Duration,
    reconnect: Duration,
    pub incoming_dir: Option<PathBuf>,
    /// Bytes of one incoming transfer queued or in flight at most.
    transfer_window: u64,
    pub traffic: Arc<Traffic>,
    pub(super) port: Arc<dyn Port>,
    /// The peer mesh (nodes with peers): advertised addresses, the secret.
    mesh: Option<Arc<Mesh>>,
    pub ex: Arc<smol::Executor<'static>>,
    pub shutdown: Shutdown,
    state: Mutex<HashMap<String, PeerState>>,
    /// One dial at a time per peer, so first uses racing open one link.
    dialing: HashMap<String, smol::lock::Mutex<()>>,
    /// Requests and outgoing transfers waiting for frames, by id, with the
    /// generation of the link they went out on.
    waiting: Mutex<HashMap<u64, (u64, Sender<Frame>)>>,
    next_id: AtomicU64,
    generation: AtomicU64,
    /// Queues of direct bus messages, one per destination (`direct.rs`).
    pub(super) direct: super::direct::Senders,
    /// TLS of our ECCluster_Listener: links we dial use it too (TLS from the
    /// first byte; our certificate presented, theirs checked against `tls_client_ca`).
    tls: Option<crate::net::tls::ClientTls>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeLinks {
    pub fn new(
        settings: &Settings,
        port: Arc<dyn Port>,
        traffic: Arc<Traffic>,
        mesh: Option<Arc<Mesh>>,
        ex: Arc<smol::Executor<'static>>,
        shutdown: Shutdown,
    ) -> Arc<NodeLinks> {
        let c = &settings.server.common;
        let peers = settings.server.peers.clone();
        // Ids start at a time-derived value, so ids from the two ends of a
        // link (each numbering its own exchanges) practically never meet.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            .rotate_left(20);
        Arc::new(NodeLinks {
            me: settings.node.clone(),
            own_ip: peers
                .iter()
                .find(|p| p.name == settings.node)
                .and_then(|p| p.host.parse().ok()),
            dialing: peers
                .iter()
                .map(|p| (p.name.clone(), smol::lock::Mutex::new(())))
                .collect(),
            peers,
            connect_timeout: c.connect_timeout,
            idle_timeout: c.idle_timeout,
            reconnect: c.reconnect_interval.max(Duration::from_millis(10)),
            incoming_dir: settings.eccluster.incoming_dir.clone(),
            transfer_window: settings.eccluster.transfer_window,
            traffic,
            port,
            mesh,
            ex,
            shutdown,
            state: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(seed),
            generation: AtomicU64::new(1),
            direct: super::direct::Senders::default(),
            tls: crate::net::tls::Material::dialer_of(settings.eccluster.tls()),
        })
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `id` as waiting for frames from the link `via`.
    pub fn wait_for(&self, id: u64, via: &LinkHandle) -> Receiver<Frame> {
        let (tx, rx) = async_channel::bounded(WAIT_QUEUE);
        lock(&self.waiting).insert(id, (via.generation, tx));
        rx
    }

    pub fn done_waiting(&self, id: u64) {
        lock(&self.waiting).remove(&id);
    }

    /// Hands a frame answering one of our exchanges to its waiter.
    fn deliver(&self, id: u64, f: Frame) {
        let tx = lock(&self.waiting).get(&id).map(|(_, tx)| tx.clone());
        if let Some(tx) = tx {
            let _ = tx.try_send(f);
        }
    }

    /// The live link to `peer`, dialling it if there is none.
    pub async fn link(self: &Arc<Self>, peer: &str) -> Result<LinkHandle, NodeError> {
        if peer == self.me {
            return Err(NodeError::ThisNode(peer.to_owned()));
        }
        let Some(dial_lock) = self.dialing.get(peer) else {
            return Err(NodeError::UnknownPeer(peer.to_owned()));
        };
        let _one_dial = dial_lock.lock().await;
        {
            let st = lock(&self.state);
            if let Some(s) = st.get(peer) {
                if let Some(l) = &s.live
                    && !l.ctl.is_closed()
                {
                    return Ok(l.clone());
                }
                if let Some(at) = s.retry_at
                    && at > Instant::now()
                {
                    return Err(NodeError::Backoff {
                        last: s.last_error.clone().unwrap_or_else(|| "unreachable".into()),
                        retry_in: at - Instant::now(),
                    });
                }
            }
        }
        let addr = self
            .mesh
            .as_ref()
            .and_then(|m| m.status().into_iter().find(|p| p.name == peer))
            .and_then(|p| p.eccluster);
        let result = match addr {
            None => Err(NodeError::NoAddress(peer.to_owned())),
            Some(addr) => self
                .dial(peer, &addr)
                .or(async {
                    Timer::after(self.connect_timeout).await;
                    Err(LinkError::Timeout(self.connect_timeout))
                })
                .await
                .map_err(|source| NodeError::Dial { addr, source }),
        };
        match result {
            Ok((conn, pending)) => Ok(self.start_link(peer, conn, pending)),
            Err(e) => {
                let mut st = lock(&self.state);
                let s = st.entry(peer.to_owned()).or_default();
                s.failures = s.failures.saturating_add(1);
                let seed = self.next_id.load(Ordering::Relaxed) ^ u64::from(s.failures);
                s.retry_at = Some(Instant::now() + mesh::backoff(self.reconnect, s.failures, seed));
                s.last_error = Some(e.to_string());
                log::warn!("node link {peer}: {e}");
                Err(e)
            }
        }
    }

    async fn dial(&self, peer: &str, addr: &str) -> Result<(Conn, Vec<u8>), LinkError> {
        let s = mesh::connect_from(self.own_ip, addr).await?;
        let _ = s.set_nodelay(true);
        let mut conn = Conn::Tcp(s);
        if let Some(tls) = &self.tls {
            let host = self
                .peers
                .iter()
                .find(|p| p.name == peer)
                .map_or(peer, |p| p.host.as_str());
            conn = crate::net::tls::connect(conn, tls, host)
                .await
                .map_err(|e| LinkError::Tls(format!("handshake failed: {e}")))?;
        }
        let mut pending = Vec::new();
        let secret = self.mesh.as_ref().and_then(|m| m.secret());
        let sides = secret::Sides {
            link: secret::Link::Node,
            dialer: &self.me,
            acceptor: peer,
        };
        // With a secret, the acceptor speaks first: its challenge.
        let challenge = match secret {
            None => None,
            Some(_) => Some(challenge(&read_line(&mut conn, &mut pending, None).await?)?),
        };
        let hello = |proof: Option<(String, String)>| {
            let (nonce, mac) = proof.unzip();
            Hello {
                protocol: codec::PROTOCOL,
                node: self.me.clone(),
                to: peer.to_owned(),
                peers: handshake::peer_list(&self.peers),
                nonce,
                mac,
            }
        };
        // A challenge to a node without a secret.
        let challenged = |answer: &[u8]| {
            answer
                .starts_with(CHALLENGE_VERB.as_bytes())
                .then(secret::challenged_without_secret)
        };
        greeting::dial::<NodeGreeting>(
            &mut conn,
            &mut pending,
            secret,
            sides,
            challenge.as_deref(),
            hello,
            challenged,
        )
        .await?;
        Ok((conn, pending))
    }

    /// Serves a connection accepted on ECCluster_Listener.
    /// With `tls`, the TLS handshake comes first (within `connect_timeout`).
    pub async fn accept(
        self: Arc<Self>,
        mut conn: Conn,
        remote: Option<SocketAddr>,
        tls: Option<crate::net::tls::Material>,
    ) {
        let who = remote.map_or_else(|| "unix socket".to_owned(), |a| a.to_string());
        let mut pending = Vec::new();
        let secret = self.mesh.as_ref().and_then(|m| m.secret());
        let mut ours = None;
        let handshake = async {
            if let Some(tls) = &tls {
                conn = crate::net::tls::accept(conn.clone(), tls, Vec::new())
                    .await
                    .map_err(|e| LinkError::Tls(format!("handshake failed: {e}")))?;
            }
            if secret.is_some() {
                let nonce = secret::nonce()
                    .ok_or_else(|| LinkError::Handshake("no randomness for a nonce".into()))?;
                conn.write_all(format!("{CHALLENGE_VERB} {nonce}\r\n").as_bytes())
                    .await?;
                conn.flush().await?;
                ours = Some(nonce);
            }
            let line = read_line(&mut conn, &mut pending, Some((HELLO_VERB, "node"))).await?;
            let hello: Hello = handshake::parse(HELLO_VERB, &line)?;
            codec::check_hello(&hello, &self.me, &self.peers)?;
            match self.mesh.as_ref() {
                Some(m) => {
                    m.check_address(&hello.node, remote)?;
                    m.check_certificate(&hello.node, &conn)?;
                }
                None => return Err(LinkError::Handshake("this node has no peers".into())),
            }
            greeting::check_hello::<NodeGreeting>(secret, &self.me, &hello, ours.as_deref())?;
            Ok(hello)
        }
        .or(async {
            Timer::after(self.connect_timeout).await;
            Err(LinkError::Timeout(self.connect_timeout))
        })
        .await;
        let hello = match handshake {
            Ok(h) => h,
            Err(why) => {
                log::warn!("ECCluster_Listener: connection from {who} refused: {why}");
                let why = why.to_string().replace('\'', "\"");
                // A TLS listener whose handshake did not finish has no channel to explain on.
                let plain_on_tls = tls.is_some() && !matches!(conn, Conn::Tls(_));
                if !plain_on_tls {
                    let _ = conn
                        .write_all(
                            format!("-ERR 'ECCluster_Listener: node refused: {why}'\r\n")
                                .as_bytes(),
                        )
                        .await;
                }
                let _ = conn.flush().await;
                conn.shutdown();
                return;
            }
        };
        let welcome = |mac| Welcome {
            protocol: codec::PROTOCOL,
            node: self.me.clone(),
            mac,
        };
        let ours = ours.as_deref();
        if !greeting::welcome::<NodeGreeting>(&mut conn, secret, &self.me, &hello, ours, welcome)
            .await
        {
            return;
        }
        // The link runs in this connection's task, so the accept loop counts it.
        let (handle, ctl_rx, bulk_rx) = self.register(&hello.node);
        self.clone()
            .run_link(hello.node, conn, pending, handle, ctl_rx, bulk_rx)
            .await;
    }

    /// Registers a dialled link as the live one for `peer` and starts its task.
    fn start_link(self: &Arc<Self>, peer: &str, conn: Conn, pending: Vec<u8>) -> LinkHandle {
        let (handle, ctl_rx, bulk_rx) = self.register(peer);
        let me = self.clone();
        let peer = peer.to_owned();
        let h = handle.clone();
        self.ex
            .spawn(async move { me.run_link(peer, conn, pending, h, ctl_rx, bulk_rx).await })
            .detach();
        handle
    }

    /// A new link's queues, registered as the live link for `peer`.
    fn register(&self, peer: &str) -> (LinkHandle, Receiver<Frame>, Receiver<Frame>) {
        let (ctl, ctl_rx) = async_channel::bounded(CTL_QUEUE);
        let (bulk, bulk_rx) = async_channel::bounded(BULK_QUEUE);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let handle = LinkHandle {
            ctl,
            bulk,
            generation,
        };
        {
            let mut st = lock(&self.state);
            let s = st.entry(peer.to_owned()).or_default();
            s.live = Some(handle.clone());
            s.failures = 0;
            s.retry_at = None;
        }
        log::info!("node link {peer}: up");
        (handle, ctl_rx, bulk_rx)
    }

    async fn run_link(
        self: Arc<Self>,
        peer: String,
        conn: Conn,
        pending: Vec<u8>,
        handle: LinkHandle,
        ctl_rx: Receiver<Frame>,
        bulk_rx: Receiver<Frame>,
    ) {
        let active = Arc::new(Mutex::new(Instant::now()));
        let stop = self.shutdown.clone();
        let result = future::or(
            self.reader(&peer, conn.clone(), pending, &handle, &active),
            future::or(
                self.writer(conn.clone(), ctl_rx, bulk_rx, &active),
                async { self.idle(&active).await }.or(async {
                    stop.wait().await;
                    Ok(())
                }),
            ),
        )
        .await;
        conn.shutdown();
        handle.close();
        {
            let mut st = lock(&self.state);
            if let Some(s) = st.get_mut(&peer)
                && s.live
                    .as_ref()
                    .is_some_and(|l| l.generation == handle.generation)
            {
                s.live = None;
            }
        }
        // Whoever waited on this link learns it is gone (their queue closes).
        lock(&self.waiting).retain(|_, (g, _)| *g != handle.generation);
        let why = result.map_or_else(|e| e.to_string(), |()| "idle or stopping".to_owned());
        log::info!("node link {peer}: ended ({why})");
    }

    async fn reader(
        self: &Arc<Self>,
        peer: &str,
        mut conn: Conn,
        pending: Vec<u8>,
        link: &LinkHandle,
        active: &Mutex<Instant>,
    ) -> Result<(), NodeError> {
        let mut dec = Decoder::new(codec::MAX_FRAME);
        dec.feed(&pending);
        let mut buf = vec![0u8; 256 * 1024];
        // Transfers this link is receiving, by id.
        let mut incoming: HashMap<u64, Incoming> = HashMap::new();
        let result = async {
            loop {
                while let Some(f) = dec.next_frame() {
                    let f = f.map_err(|e| LinkError::Frame(e.to_string()))?;
                    *lock(active) = Instant::now();
                    Traffic::add(&self.traffic.frames_in, 1);
                    Traffic::add(&self.traffic.bytes_in, f.wire_len() as u64);
                    self.dispatch(peer, f, link, &mut incoming).await?;
                }
                let n = conn.read(&mut buf).await.map_err(LinkError::Io)?;
                if n == 0 {
                    return Err(NodeError::Closed("closed by the peer"));
                }
                dec.feed(&buf[..n]);
            }
        }
        .await;
        // Their writers see their queues close and remove the temp files.
        drop(incoming);
        result
    }

    async fn dispatch(
        self: &Arc<Self>,
        peer: &str,
        f: Frame,
        link: &LinkHandle,
        incoming: &mut HashMap<u64, Incoming>,
    ) -> Result<(), NodeError> {
        match f {
            Frame::Deliver(d) => self.port.deliver(&d),
            Frame::Ping { id } => link.control(Frame::Pong { id })?,
            Frame::StatusRequest { id } => {
                let json = self.port.status_json();
                link.control(Frame::StatusReply {
                    id,
                    json: json.into(),
                })?;
            }
            Frame::FileOffer {
                id,
                size,
                sha256,
                name,
            } => {
                if incoming.contains_key(&id) {
                    return Err(NodeError::Transfer(format!("transfer {id} offered twice")));
                }
                let offer = (id, name.as_str(), size, sha256);
                let dir = self.incoming_dir.as_deref();
                let to = (peer, link.clone());
                match Incoming::start(dir, offer, self.transfer_window, to).await {
                    Ok(t) => {
                        log::info!("node link {peer}: receiving {name:?} ({size} bytes)");
                        if size > 0 {
                            incoming.insert(id, t);
                        }
                    }
                    Err(error) => {
                        log::warn!("node link {peer}: refused file {name:?}: {error}");
                        link.control(Frame::FileDone {
                            id,
                            ok: false,
                            error,
                        })?;
                    }
                }
            }
            Frame::FileChunk { id, offset, bytes } => {
                let Some(t) = incoming.get_mut(&id) else {
                    // After a refusal or an abort: nothing to do.
                    return Ok(());
                };
                match t.push(offset, bytes) {
                    Ok(Pushed::More) => {}
                    // The writer finishes (or has ended) and answers.
                    Ok(Pushed::Last | Pushed::Ended) => {
                        incoming.remove(&id);
                    }
                    Err(error) => {
                        // Dropping it closes its queue: the writer removes the temp file.
                        incoming.remove(&id);
                        log::warn!("node link {peer}: transfer {id} failed: {error}");
                        link.control(Frame::FileDone {
                            id,
                            ok: false,
                            error,
                        })?;
                    }
                }
            }
            Frame::FileDone { id, ok, error } => {
                if incoming.remove(&id).is_some() {
                    log::warn!("node link {peer}: sender aborted transfer {id}: {error}");
                } else {
                    self.deliver(id, Frame::FileDone { id, ok, error });
                }
            }
            f @ (Frame::Pong { id }
            | Frame::StatusReply { id, .. }
            | Frame::FileCredit { id, .. }) => self.deliver(id, f),
        }
        Ok(())
    }

    async fn writer(
        &self,
        mut conn: Conn,
        ctl: Receiver<Frame>,
        bulk: Receiver<Frame>,
        active: &Mutex<Instant>,
    ) -> Result<(), NodeError> {
        let mut out = Vec::with_capacity(256 * 1024);
        loop {
            let first = match ctl.try_recv() {
                Ok(f) => f,
                Err(_) => match bulk.try_recv() {
                    Ok(f) => f,
                    Err(_) => ctl
                        .recv()
                        .or(bulk.recv())
                        .await
                        .map_err(|_| NodeError::Closed("link queues closed"))?,
                },
            };
            out.clear();
            let (mut frames, mut bytes) = (1u64, 0u64);
            let mut next = Some(first);
            // Batch what is queued already, control frames first; a chunk's
            // data goes out after the batch, from its own buffer.
            while let Some(f) = next.take() {
                if let Some(data) = f.encode_head(&mut out) {
                    conn.write_all(&out).await.map_err(LinkError::Io)?;
                    conn.write_all(data).await.map_err(LinkError::Io)?;
                    bytes += (out.len() + data.len()) as u64;
                    out.clear();
                }
                if out.len() < 256 * 1024 {
                    next = ctl.try_recv().or_else(|_| bulk.try_recv()).ok();
                    frames += u64::from(next.is_some());
                }
            }
            conn.write_all(&out).await.map_err(LinkError::Io)?;
            bytes += out.len() as u64;
            // TLS holds records until flushed; a no-op on plain sockets.
            conn.flush().await.map_err(LinkError::Io)?;
            *lock(active) = Instant::now();
            Traffic::add(&self.traffic.frames_out, frames);
            Traffic::add(&self.traffic.bytes_out, bytes);
        }
    }

    /// Ends the link after `idle_timeout` with nothing sent or received
    /// (never, when `idle_timeout` is 0).
    async fn idle(&self, active: &Mutex<Instant>) -> Result<(), NodeError> {
        if self.idle_timeout.is_zero() {
            return future::pending().await;
        }
        let tick = (self.idle_timeout / 4).max(Duration::from_millis(10));
        loop {
            Timer::after(tick).await;
            if lock(active).elapsed() >= self.idle_timeout {
                return Ok(());
            }
        }
    }
}

/// The nonce of an `ECCLUSTER-CHALLENGE` line.
fn challenge(line: &[u8]) -> Result<String, LinkError> {
    if line.starts_with(b"-ERR") {
        return Err(LinkError::Refused(
            String::from_utf8_lossy(line).into_owned(),
        ));
    }
    line.strip_prefix(CHALLENGE_VERB.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|n| !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .ok_or_else(|| LinkError::Handshake("the peer offers no challenge: it has no cluster secret (set the same secret_file on every node)".to_owned()))
}

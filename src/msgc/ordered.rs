//! A node with peers: the task that drives the ordering core (`order::Core`,
//! sans-IO) with client publishes and group changes, mesh links and frames,
//! and ticks; and performs what it decides: frames to peers, deliveries to
//! local subscribers (in the total order), confirmations (the PONGs of
//! `PING`s waiting for them) and refusals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use bytes::Bytes;
use futures_lite::FutureExt;
use serde::{Deserialize, Serialize};
use smol::Timer;

use super::Bus;
use super::latency::Histogram;
use super::router::Message;
use super::status::Counters;
use super::stream::{Effect, Stream};
use crate::config::Settings;
use crate::mesh::frame::Frame;
use crate::mesh::{self, Mesh, order_codec};
use crate::nats::proto::{encode, text};
use crate::order::{self, Action, Config, Core, CoreStatus, Mode, NodeId};

pub use super::stream::{VIEW_SUBJECT, ViewEvent};
/// Core ticks per `keepalive_interval`.
/// The ordering core's clock ticks at least this often, whatever the
/// keepalive, so its short waits (late DoViewChanges, a re-formation's
/// pause for missing peers) stay short; its timeouts are counted in
/// keepalives all the same.
const MAX_TICK: Duration = Duration::from_millis(100);

/// The core's tick and how many make a keepalive interval: at least 4, more
/// when the interval is longer than 4 × [`MAX_TICK`].
pub fn tick_plan(keepalive: Duration) -> (Duration, u32) {
    let per = keepalive
        .as_nanos()
        .div_ceil(MAX_TICK.as_nanos().max(1))
        .clamp(4, 10_000) as u32;
    ((keepalive / per).max(Duration::from_millis(5)), per)
}
/// Inputs waiting for the ordering task at most, in number and in payload
/// bytes; past either, publishers wait (their sockets are not read).
const INPUT_QUEUE: usize = 65_536;
const INPUT_BYTES: usize = 64 << 20;
/// Own proposals the core may hold uncommitted; past it the task stops taking
/// inputs until the order catches up (the queue above then fills).
const MAX_IN_FLIGHT: usize = 65_536;
/// Own publishes timed to their commit at most, and how long at most.
const MAX_TIMED: usize = 2 * MAX_IN_FLIGHT;
const FORGET_TIMED: Duration = Duration::from_secs(60);
/// Most inputs taken per round before the core flushes (one batch).
const ROUND: usize = 4096;
/// Ops of lag per unit of `max_backlog` before a member is dropped (the
/// leader holds new proposals at half of it).
const LAG_PER_BACKLOG: u64 = 16;

/// What sessions hand the ordering task.
pub enum Input {
    Publish {
        client: u64,
        seq: u64,
        /// When the client's publish was read (for the commit latency).
        at: Instant,
        subject: String,
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Group {
        join: bool,
        client: u64,
        member: String,
        group: String,
    },
}

/// The ordering layer's status, as `$MSGC.STATUS` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OrderStatus {
    /// `normal`, `view-change` or `recovering`.
    pub mode: String,
    /// The epoch of the history this node holds (0: none yet).
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub epoch_tag: u64,
    /// Voted to leave the current view: its leader (or, for a leader, a
    /// majority) is silent. Publishes are refused meanwhile.
    #[serde(default)]
    pub suspecting: bool,
    /// False for a restarted node that has not taken any history yet.
    #[serde(default)]
    pub holds_state: bool,
    pub vr_view: u64,
    pub leader: Option<String>,
    /// The membership view (`$MSGC.VIEW` id) and its members.
    pub view_id: u64,
    pub members: Vec<String>,
    /// Whether this node's clients receive the ordered stream now.
    pub delivering: bool,
    pub committed: u64,
    pub delivered: u64,
    pub pending: usize,
    /// Leader only: how many ops each member is behind the commit point.
    pub lag: BTreeMap<String, u64>,
    pub view_changes: u64,
    /// Own publishes, from the client's publish to the commit.
    #[serde(default)]
    pub commit_latency: Histogram,
}

/// The sessions' handle on the ordering task.
pub struct Ordered {
    tx: Sender<Input>,
    /// Bytes of the inputs in `tx`.
    queued: AtomicUsize,
    /// Notified whenever the ordering task takes inputs off the queue.
    room: event_listener::Event,
    status: Mutex<Option<OrderStatus>>,
}

impl Input {
    fn size(&self) -> usize {
        match self {
            Input::Publish {
                subject,
                reply,
                headers,
                payload,
                ..
            } => {
                subject.len()
                    + reply.as_ref().map_or(0, String::len)
                    + headers.as_ref().map_or(0, Bytes::len)
                    + payload.len()
            }
            Input::Group { member, group, .. } => member.len() + group.len(),
        }
    }
}

impl Ordered {
    /// Queues a publish; gives it back when the queue is full.
    pub fn submit(&self, i: Input) -> Result<(), Box<Input>> {
        let size = i.size();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > INPUT_BYTES
            || self.tx.len() >= INPUT_QUEUE
        {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return Err(Box::new(i));
        }
        self.send(i, size)
    }

    /// Queues a group change whatever the queue holds: they are small, bounded
    /// by the subscription limits, and must not be lost. One queue for both
    /// keeps each client's joins and publishes in the order it made them.
    pub fn submit_group(&self, i: Input) {
        let size = i.size();
        self.queued.fetch_add(size, Ordering::Relaxed);
        let _ = self.send(i, size);
    }

    fn send(&self, i: Input, size: usize) -> Result<(), Box<Input>> {
        self.tx.try_send(i).map_err(|e| {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            match e {
                TrySendError::Full(i) | TrySendError::Closed(i) => Box::new(i),
            }
        })
    }

    /// Queues an input, waiting for room: the publisher's connection is not
    /// read meanwhile, so TCP slows the publisher instead of a refusal.
    pub async fn submit_wait(&self, mut i: Box<Input>) {
        loop {
            let listener = self.room.listen();
            match self.submit(*i) {
                Ok(()) => return,
                Err(_) if self.tx.is_closed() => return,
                Err(back) => i = back,
            }
            listener.await;
        }
    }

    /// The ordering task took `i` off the queue.
    fn taken(&self, i: &Input) {
        self.queued.fetch_sub(i.size(), Ordering::Relaxed);
        self.room.notify(usize::MAX);
    }

    pub fn status(&self) -> Option<OrderStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Starts the ordering task for a node with peers.
pub fn start(
    bus: Arc<Bus>,
    mesh: Arc<Mesh>,
    events: Receiver<mesh::Event>,
    settings: &Settings,
    ex: &smol::Executor<'static>,
) -> Arc<Ordered> {
    let names: Vec<String> = settings
        .server
        .peers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let me = names
        .iter()
        .position(|n| *n == settings.node)
        .and_then(|i| NodeId::try_from(i).ok())
        .unwrap_or(0);
    // Must grow across restarts: the core dedups by (node, incarnation, seq).
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let c = &settings.server.common;
    let mut cfg = Config::new(me, names.clone(), incarnation);
    let (tick, per_keepalive) = tick_plan(c.keepalive_interval);
    cfg.suspect_after_ticks = 2 * per_keepalive;
    // Momentum's `max_backlog` counts messages queued to one connection; a
    // member's lag is counted in ops, and a single round appends up to
    // `ROUND` of them, so the bound is scaled to stay well above one round.
    cfg.max_backlog = c.max_backlog.max(1).saturating_mul(LAG_PER_BACKLOG);
    // Unbounded as a channel; `submit` bounds publishes in count and bytes.
    let (tx, rx) = async_channel::unbounded();
    let ordered = Arc::new(Ordered {
        tx,
        queued: AtomicUsize::new(0),
        room: event_listener::Event::new(),
        status: Mutex::new(None),
    });
    bus.router().set_replicated();
    let driver = Driver {
        bus,
        mesh,
        stream: Stream::new(me, names.clone()),
        links: BTreeMap::new(),
        names,
        core: Core::new(cfg),
        incarnation,
        ordered: ordered.clone(),
        last: None,
        in_flight: 0,
        published_at: HashMap::new(),
        commit_latency: Histogram::default(),
        last_sweep: Instant::now(),
    };
    ex.spawn(driver.run(rx, events, tick, per_keepalive))
        .detach();
    ordered
}

struct Driver {
    bus: Arc<Bus>,
    mesh: Arc<Mesh>,
    names: Vec<String>,
    core: Core,
    /// This process's incarnation: every ordering message carries it.
    incarnation: u64,
    /// What the delivered stream means for local clients.
    stream: Stream,
    /// The current link generation of each peer whose link is up.
    links: BTreeMap<String, u64>,
    ordered: Arc<Ordered>,
    /// Mode, leader, delivering, suspecting and epoch as last logged.
    last: Option<(Mode, Option<NodeId>, bool, bool, order::Epoch)>,
    /// Own proposals uncommitted, as of the last round.
    in_flight: usize,
    /// When each own publish in the order was read, until its commit (or
    /// refusal); at most [`MAX_TIMED`], older ones forgotten each second.
    published_at: HashMap<(u64, u64), Instant>,
    /// Publish to commit of own publishes.
    commit_latency: Histogram,
    last_sweep: Instant,
}

enum Wake {
    Input(Input),
    Mesh(mesh::Event),
    Tick,
    Closed,
}

impl Driver {
    async fn run(
        mut self,
        inputs: Receiver<Input>,
        events: Receiver<mesh::Event>,
        tick: Duration,
        per_keepalive: u32,
    ) {
        let mut next_tick = Timer::interval(tick);
        let mut last_tick = Instant::now();
        loop {
            // While too much of our own is uncommitted, leave inputs queued.
            let full = self.in_flight >= MAX_IN_FLIGHT;
            let wake = async {
                if full {
                    futures_lite::future::pending::<()>().await;
                }
                inputs.recv().await.map_or(Wake::Closed, Wake::Input)
            }
            .or(async { events.recv().await.map_or(Wake::Closed, Wake::Mesh) })
            .or(async {
                futures_lite::StreamExt::next(&mut next_tick).await;
                Wake::Tick
            })
            .await;
            match wake {
                Wake::Closed => return,
                Wake::Tick => {
                    let now = Instant::now();
                    let gap = now.saturating_duration_since(last_tick);
                    last_tick = now;
                    if gap >= tick * 2 {
                        // The timer fired late: this process was stopped
                        // (SIGSTOP, a VM pause) or starved. The interval
                        // would now fire every missed tick at once, and the
                        // core would take a silence it did not listen to for
                        // its peers' (docs/ORDERING.md, "Pauses"): one tick
                        // for the gap, and past a keepalive interval the
                        // core restarts its silence clocks first.
                        next_tick.set_interval(tick);
                        if gap >= tick * per_keepalive {
                            log::info!(
                                "msgc order: tick {gap:?} late (process stopped or starved); peers' silence clocks restarted"
                            );
                            self.core.resume();
                        }
                    }
                    self.core.tick();
                    if now.saturating_duration_since(self.last_sweep) >= Duration::from_secs(1) {
                        // Publishes neither committed nor refused (their
                        // history was left behind) stop being timed.
                        self.last_sweep = now;
                        self.published_at
                            .retain(|_, at| now.saturating_duration_since(*at) < FORGET_TIMED);
                    }
                }
                Wake::Input(i) => self.input(i),
                Wake::Mesh(e) => self.mesh_event(e),
            }
            // Take whatever else is waiting, so one flush orders a batch.
            for _ in 0..ROUND {
                if let Some(i) = (!full).then(|| inputs.try_recv().ok()).flatten() {
                    self.input(i);
                } else if let Ok(e) = events.try_recv() {
                    self.mesh_event(e);
                } else {
                    break;
                }
            }
            self.core.flush();
            self.perform();
            futures_lite::future::yield_now().await;
        }
    }

    fn node_id(&self, name: &str) -> Option<NodeId> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| NodeId::try_from(i).ok())
    }

    fn name(&self, id: NodeId) -> String {
        self.names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    fn input(&mut self, i: Input) {
        self.ordered.taken(&i);
        match i {
            Input::Publish {
                client,
                seq,
                at,
                subject,
                reply,
                headers,
                payload,
            } => {
                if self.published_at.len() < MAX_TIMED {
                    self.published_at.insert((client, seq), at);
                }
                self.core
                    .publish(client, seq, subject, reply, headers, payload)
            }
            Input::Group {
                join: true,
                client,
                member,
                group,
            } => self.core.join(client, member, group),
            Input::Group {
                join: false,
                client,
                member,
                group,
            } => self.core.leave(client, member, group),
        }
    }

    /// A mesh event, through the generation filter: only the peer's current
    /// link speaks for it.
    fn mesh_event(&mut self, e: mesh::Event) {
        match e {
            mesh::Event::Up(p, generation) => {
                if let Some(id) = self.node_id(&p) {
                    self.links.insert(p, generation);
                    self.core.peer_up(id);
                }
            }
            mesh::Event::Down(p, generation) => {
                if let Some(id) = self.node_id(&p)
                    && self.links.get(&p) == Some(&generation)
                {
                    self.links.remove(&p);
                    self.core.peer_down(id);
                }
            }
            mesh::Event::Order(p, generation, body) => {
                let Some(id) = self.node_id(&p) else { return };
                if self.links.get(&p) != Some(&generation) {
                    return;
                }
                match order_codec::decode(&body) {
                    Ok((inc, m)) => self.core.on_message(id, inc, m),
                    Err(e) => log::warn!("msgc peer {p}: {e}; ignored"),
                }
            }
        }
    }

    fn perform(&mut self) {
        let actions = self.core.take_actions();
        if actions.is_empty() {
            self.publish_status();
            return;
        }
        let bus = self.bus.clone();
        let mut router = bus.router();
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    let body = Bytes::from(order_codec::encode(self.incarnation, &msg));
                    let peer = self.name(to);
                    self.mesh.send(&peer, Frame::Order(body));
                }
                Action::Deliver(d) => {
                    for fx in self.stream.deliver(&d) {
                        self.perform_effect(&bus, &mut router, fx);
                    }
                }
                Action::Confirm { client, seq } => {
                    if let Some(at) = self.published_at.remove(&(client, seq)) {
                        self.commit_latency.observe(at.elapsed());
                    }
                    if let Some(c) = router.client(client) {
                        c.confirm(seq);
                    }
                }
                Action::Refuse {
                    client,
                    seq,
                    reason,
                } => {
                    self.published_at.remove(&(client, seq));
                    Counters::add(&bus.counters.refused_no_quorum, 1);
                    if let Some(c) = router.client(client) {
                        let order::Refusal::NoQuorum = reason;
                        let _ = c.out.push_control(&no_quorum_line());
                        c.confirm(seq);
                    }
                }
            }
        }
        drop(router);
        self.publish_status();
    }

    fn perform_effect(&self, bus: &Bus, router: &mut super::router::Router, fx: Effect) {
        match fx {
            Effect::Message {
                op,
                publish: p,
                sender,
                local_client,
                reply_route,
            } => {
                // Replies to another node's request go to it directly.
                if let Some((reply, node)) = &reply_route {
                    bus.learn_reply_route(reply, node);
                }
                let origin = self.stream.name(p.id.origin);
                let stream = &self.stream;
                // One node delivers each message per queue group.
                let mut allow = |queue: &str| stream.delivers(queue, &p.subject, &origin, op);
                router.publish_filtered(
                    // Echo suppression and no-responders concern local publishers only.
                    local_client,
                    &Message {
                        subject: &p.subject,
                        reply: p.reply.as_deref(),
                        headers: p.headers.as_deref(),
                        payload: &p.payload,
                        sender: &sender,
                    },
                    &mut allow,
                );
            }
            Effect::Group(ev) => router.publish_group_event(&ev),
            Effect::View(ev) => {
                let mut change = Vec::new();
                if !ev.joined.is_empty() {
                    change.push(format!("joined {}", ev.joined.join(" ")));
                }
                if !ev.left.is_empty() {
                    change.push(format!("left {}", ev.left.join(" ")));
                }
                let line = format!(
                    "msgc view {} (epoch {}): members {} ({})",
                    ev.view,
                    ev.epoch,
                    ev.members.join(" "),
                    change.join(", ")
                );
                if ev.lost {
                    log::warn!(
                        "{line}; messages confirmed before it may be missing (the cluster re-formed from incomplete state, or this node took another history)"
                    );
                } else {
                    log::info!("{line}");
                }
                let json = serde_json::to_vec(&ev).unwrap_or_default();
                router.publish_system(VIEW_SUBJECT, &json);
            }
        }
    }

    fn publish_status(&mut self) {
        let s: CoreStatus = self.core.status();
        self.in_flight = s.pending;
        // Say when this node's part in the order changes, and why it matters.
        let now = (s.mode, s.leader, s.delivering, s.suspecting, s.epoch);
        if self.last != Some(now) {
            let leader = s.leader.map_or_else(|| "none".to_owned(), |l| self.name(l));
            match s.mode {
                Mode::Normal if s.suspecting => log::warn!(
                    "msgc order: VR view {} (epoch {}) looks dead (its leader, or for the leader a majority, is silent); voting for the next; publishes are refused until a majority agrees",
                    s.vr_view,
                    s.epoch.n
                ),
                Mode::Normal => log::info!(
                    "msgc order: normal in VR view {} (epoch {}), leader {leader}, {}",
                    s.vr_view,
                    s.epoch.n,
                    if s.delivering {
                        "delivering"
                    } else {
                        "waiting to be admitted to the view"
                    }
                ),
                Mode::ViewChange => log::warn!(
                    "msgc order: changing to VR view {} (leader {}); publishes are refused until it forms",
                    s.vr_view,
                    self.name(self.core.leader_of(s.vr_view))
                ),
                Mode::Recovering => log::info!(
                    "msgc order: recovering state from the peers (or, if none answers as a live view, forming one with them); publishes are refused until done"
                ),
            }
            self.last = Some(now);
        }
        let status = OrderStatus {
            mode: match s.mode {
                Mode::Normal => "normal",
                Mode::ViewChange => "view-change",
                Mode::Recovering => "recovering",
            }
            .to_owned(),
            epoch: s.epoch.n,
            epoch_tag: if s.holds_state { s.epoch.id() } else { 0 },
            suspecting: s.suspecting,
            holds_state: s.holds_state,
            vr_view: s.vr_view,
            leader: s.leader.map(|l| self.name(l)),
            view_id: s.view_id,
            members: s.members.iter().map(|&m| self.name(m)).collect(),
            delivering: s.delivering,
            committed: s.commit,
            delivered: s.applied,
            pending: s.pending,
            lag: s.lag.iter().map(|&(p, l)| (self.name(p), l)).collect(),
            view_changes: s.view_changes,
            commit_latency: self.commit_latency.clone(),
        };
        *self
            .ordered
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status);
    }
}

/// The refusal a publish gets outside a primary component.
fn no_quorum_line() -> Vec<u8> {
    let mut line = Vec::new();
    encode::err(&mut line, text::NO_QUORUM);
    line
}

//! A node with peers: the task that drives the ordering core (`order::Core`,
//! sans-IO) with client publishes and group changes, mesh links and frames,
//! and ticks; and performs what it decides: frames to peers, deliveries to
//! local subscribers (in the total order), confirmations (the PONGs of
//! `PING`s waiting for them) and refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use bytes::Bytes;
use futures_lite::FutureExt;
use serde::{Deserialize, Serialize};
use smol::Timer;

use super::Bus;
use super::groups::{Event as GroupEvent, Kind, parse_queue_key};
use super::router::Message;
use crate::client::proto::private_name;
use crate::config::Settings;
use crate::mesh::frame::Frame;
use crate::mesh::{self, Mesh, order_codec};
use crate::order::{self, Action, Config, Core, CoreStatus, Entry, Mode, NodeId};

/// Replicated queue memberships' group names start so (`groups::queue_key`).
const QUEUE_PREFIX: &str = "$Q ";

/// Where `$MSGC.VIEW` events are published.
pub const VIEW_SUBJECT: &str = "$MSGC.VIEW";
/// Core ticks per `keepalive_interval`.
const TICKS_PER_KEEPALIVE: u32 = 4;
/// Inputs waiting for the ordering task at most, in number and in payload
/// bytes; past either, publishers wait (their sockets are not read).
const INPUT_QUEUE: usize = 65_536;
const INPUT_BYTES: usize = 64 << 20;
/// Own proposals the core may hold uncommitted; past it the task stops taking
/// inputs until the order catches up (the queue above then fills).
const MAX_IN_FLIGHT: usize = 65_536;
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderStatus {
    /// `normal`, `view-change` or `recovering`.
    pub mode: String,
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
    cfg.suspect_after_ticks = 2 * TICKS_PER_KEEPALIVE;
    // Momentum's `max_backlog` counts messages queued to one connection; a
    // member's lag is counted in ops, and a single round appends up to
    // `ROUND` of them, so the bound is scaled to stay well above one round.
    cfg.max_backlog = c.max_backlog.max(1).saturating_mul(LAG_PER_BACKLOG);
    let tick = (c.keepalive_interval / TICKS_PER_KEEPALIVE).max(Duration::from_millis(5));
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
        names,
        me,
        core: Core::new(cfg),
        incarnation,
        groups: BTreeMap::new(),
        ordered: ordered.clone(),
        last: None,
        in_flight: 0,
    };
    ex.spawn(driver.run(rx, events, tick)).detach();
    ordered
}

struct Driver {
    bus: Arc<Bus>,
    mesh: Arc<Mesh>,
    names: Vec<String>,
    me: NodeId,
    core: Core,
    /// This process's incarnation: every ordering message carries it.
    incarnation: u64,
    /// Group members as the delivered stream says, for the events' member lists.
    groups: BTreeMap<String, BTreeSet<String>>,
    ordered: Arc<Ordered>,
    /// Mode, leader and delivering as last logged.
    last: Option<(Mode, Option<NodeId>, bool)>,
    /// Own proposals uncommitted, as of the last round.
    in_flight: usize,
}

enum Wake {
    Input(Input),
    Mesh(mesh::Event),
    Tick,
    Closed,
}

impl Driver {
    async fn run(mut self, inputs: Receiver<Input>, events: Receiver<mesh::Event>, tick: Duration) {
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
                        if gap >= tick * TICKS_PER_KEEPALIVE {
                            log::info!(
                                "msgc order: tick {gap:?} late (process stopped or starved); peers' silence clocks restarted"
                            );
                            self.core.resume();
                        }
                    }
                    self.core.tick();
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
                subject,
                reply,
                headers,
                payload,
            } => self
                .core
                .publish(client, seq, subject, reply, headers, payload),
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

    fn mesh_event(&mut self, e: mesh::Event) {
        match e {
            mesh::Event::Up(p) => {
                if let Some(id) = self.node_id(&p) {
                    self.core.peer_up(id);
                }
            }
            mesh::Event::Down(p) => {
                if let Some(id) = self.node_id(&p) {
                    self.core.peer_down(id);
                }
            }
            mesh::Event::Order(p, body) => {
                let Some(id) = self.node_id(&p) else { return };
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
                Action::Deliver(d) => match &d.entry {
                    Entry::Publish(p) => {
                        let origin = self.name(p.id.origin);
                        let sender = private_name(p.client, &origin);
                        // Replies to another node's request go to it directly.
                        if p.id.origin != self.me
                            && let Some(reply) = p.reply.as_deref()
                        {
                            bus.learn_reply_route(reply, &origin);
                        }
                        // Echo suppression and no-responders concern local publishers only.
                        let from = if p.id.origin == self.me { p.client } else { 0 };
                        let me = self.name(self.me);
                        // One node delivers each message per queue group;
                        // while no member is ordered yet, the publisher's.
                        let mut allow = |queue: &str| {
                            self.queue_node(queue, &p.subject, &origin, d.op)
                                .unwrap_or_else(|| origin.clone())
                                == me
                        };
                        router.publish_filtered(
                            from,
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
                    Entry::Join(g) | Entry::Leave(g) => {
                        let join = matches!(d.entry, Entry::Join(_));
                        if let Some(ev) = self.group_change(join, &g.member, &g.group) {
                            router.publish_group_event(&ev);
                        }
                    }
                    Entry::View(v) => {
                        for (member, group) in &d.implied_leaves {
                            if let Some(ev) = self.group_change(false, member, group) {
                                router.publish_group_event(&ev);
                            }
                        }
                        if v.joined.contains(&self.me) {
                            // We start delivering here: take the groups as the
                            // replicated state has them.
                            self.groups = self
                                .core
                                .state()
                                .groups
                                .iter()
                                .map(|(g, m)| (g.clone(), m.keys().cloned().collect()))
                                .collect();
                        }
                        let names =
                            |ids: &[NodeId]| ids.iter().map(|&i| self.name(i)).collect::<Vec<_>>();
                        let ev = ViewEvent {
                            view: v.id,
                            members: names(&v.members),
                            joined: names(&v.joined),
                            left: names(&v.left),
                        };
                        let mut change = Vec::new();
                        if !ev.joined.is_empty() {
                            change.push(format!("joined {}", ev.joined.join(" ")));
                        }
                        if !ev.left.is_empty() {
                            change.push(format!("left {}", ev.left.join(" ")));
                        }
                        log::info!(
                            "msgc view {}: members {} ({})",
                            ev.view,
                            ev.members.join(" "),
                            change.join(", ")
                        );
                        let json = serde_json::to_vec(&ev).unwrap_or_default();
                        router.publish_system(VIEW_SUBJECT, &json);
                    }
                },
                Action::Confirm { client, seq } => {
                    if let Some(c) = router.client(client) {
                        c.confirm(seq);
                    }
                }
                Action::Refuse {
                    client,
                    seq,
                    reason,
                } => {
                    if let Some(c) = router.client(client) {
                        let order::Refusal::NoQuorum = reason;
                        let _ = c.out.push_control(NO_QUORUM);
                        c.confirm(seq);
                    }
                }
            }
        }
        drop(router);
        self.publish_status();
    }

    /// The node that delivers the message at `op` on `subject` to queue group
    /// `queue`: the publisher's node when it has a member, else one of the
    /// nodes with members, chosen from the op number — the same answer on
    /// every node, from the same ordered membership. `None` while no member
    /// is known cluster-wide.
    fn queue_node(&self, queue: &str, subject: &str, origin: &str, op: u64) -> Option<String> {
        let mut nodes: BTreeSet<&str> = BTreeSet::new();
        let queues = self
            .groups
            .range::<str, _>((
                std::ops::Bound::Included(QUEUE_PREFIX),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(g, _)| g.starts_with(QUEUE_PREFIX));
        for (g, members) in queues {
            if let Some((q, pattern)) = parse_queue_key(g)
                && q == queue
                && crate::subject::pattern_matches(pattern, subject)
            {
                // A member's private name ends in its node: `#<id>#<node>`.
                nodes.extend(members.iter().filter_map(|m| m.rsplit('#').next()));
            }
        }
        if nodes.contains(origin) {
            return Some(origin.to_owned());
        }
        let n = nodes.len() as u64;
        (n > 0).then(|| {
            let spread = queue
                .bytes()
                .fold(op, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            nodes
                .iter()
                .nth((spread % n) as usize)
                .map(|s| (*s).to_owned())
                .unwrap_or_default()
        })
    }

    /// Applies a delivered join or leave to the member lists; the event to
    /// publish when it changed something (queue memberships make none).
    fn group_change(&mut self, join: bool, member: &str, group: &str) -> Option<GroupEvent> {
        let members = self.groups.entry(group.to_owned()).or_default();
        let changed = if join {
            members.insert(member.to_owned())
        } else {
            members.remove(member)
        };
        let list: Vec<String> = members.iter().cloned().collect();
        if members.is_empty() {
            self.groups.remove(group);
        }
        if parse_queue_key(group).is_some() {
            return None;
        }
        changed.then(|| GroupEvent {
            event: if join { Kind::Join } else { Kind::Leave },
            member: member.to_owned(),
            group: group.to_owned(),
            members: list,
        })
    }

    fn publish_status(&mut self) {
        let s: CoreStatus = self.core.status();
        self.in_flight = s.pending;
        // Say when this node's part in the order changes, and why it matters.
        let now = (s.mode, s.leader, s.delivering);
        if self.last != Some(now) {
            let leader = s.leader.map_or_else(|| "none".to_owned(), |l| self.name(l));
            match s.mode {
                Mode::Normal => log::info!(
                    "msgc order: normal in VR view {}, leader {leader}, {}",
                    s.vr_view,
                    if s.delivering {
                        "delivering"
                    } else {
                        "waiting to be admitted to the view"
                    }
                ),
                Mode::ViewChange => log::warn!(
                    "msgc order: electing a leader (VR view {}); publishes are refused until a majority agrees",
                    s.vr_view
                ),
                Mode::Recovering => log::info!(
                    "msgc order: recovering state from the peers; publishes are refused until done"
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
        };
        *self
            .ordered
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status);
    }
}

/// The refusal a publish gets outside a primary component.
pub const NO_QUORUM: &[u8] = b"-ERR 'msgc: no quorum'\r\n";

/// A `$MSGC.VIEW` event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ViewEvent {
    pub view: u64,
    pub members: Vec<String>,
    pub joined: Vec<String>,
    pub left: Vec<String>,
}

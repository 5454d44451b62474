//! The deterministic simulator of the ordered bus: n ordering cores
//! (`order::Core`) run as the daemon runs them (`msgc::ordered`: link events
//! filtered by generation, one tick for a late timer, `resume` after a
//! stall), over a model of the daemon's mesh and of a real network
//! ([`net`]), with simulated clients. One seeded PRNG drives everything, so
//! a seed replays exactly.
//!
//! Faults ([`Faults`]) are those of real machines: crashes of any number of
//! nodes at any moment (restarts too, within one suspect window or long
//! after), crashes at chosen points (right after a commit advance, between
//! a view change's quorum and its StartView, during recovery; a crash cuts
//! the node's output short), cold starts with nodes absent, nodes with a
//! wrong cluster secret, partitions, cut links, one-way loss and deaf nodes,
//! slow and lossy links, bandwidth, overlapping pauses (SIGSTOP), clock-rate
//! skew and late ticks, timer storms. Named [`Scenario`]s replay the
//! situations operators reported.
//!
//! After the faults end everything heals and the run checks, besides the
//! safety properties of `docs/ORDERING.md` (agreement per epoch, virtual
//! synchrony, integrity, FIFO, confirmed delivery, through `order::check`
//! over what clients saw), **liveness**: once the nodes expected up are all
//! running and linked, they form one view with every one of them and order
//! within [`SimParams::liveness_ms`] — whatever came before. Loss beyond the
//! fault model is allowed only where a view says so (`lost`).

mod net;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;

use crate::msgc::groups::{Event as GroupEvent, queue_key};
use crate::msgc::stream::{Effect, Stream};
use crate::order::{Action, Config, Core, Entry, Epoch, Mode, NodeId, PeerMsg, check};
pub use net::MeshParams;
use net::{LinkEvent, Net, Procs};

pub use crate::rng::Rng;

/// Which random faults a run injects during [`SimParams::fault_ms`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Crashes of any number of nodes; restarts after 0–600 ms.
    pub crashes: bool,
    /// Crashes only while at most f nodes are without state (the old mix).
    pub bounded_crashes: bool,
    /// Crashes at chosen points, cutting the node's output short.
    pub crash_points: bool,
    /// Cold start: nodes start at random moments, some only at the heal.
    pub absent_at_start: bool,
    pub partitions: bool,
    pub cuts: bool,
    /// One-way loss between two nodes; a node that hears nobody.
    pub one_way: bool,
    /// Slow and lossy links.
    pub slow: bool,
    /// Bursts of ticks.
    pub storms: bool,
    /// SIGSTOP/SIGCONT, several nodes at once.
    pub pauses: bool,
    /// Per-node tick rates 0.8–1.3×, and late ticks.
    pub skew: bool,
}

impl Faults {
    /// Everything.
    pub fn all() -> Faults {
        Faults {
            crashes: true,
            bounded_crashes: false,
            crash_points: true,
            absent_at_start: true,
            partitions: true,
            cuts: true,
            one_way: true,
            slow: true,
            storms: true,
            pauses: true,
            skew: true,
        }
    }

    /// The simulator's fault mix before it modelled the mesh: crashes of at
    /// most f nodes, partitions, cuts, slow links, tick bursts.
    pub fn classic() -> Faults {
        Faults {
            bounded_crashes: true,
            partitions: true,
            cuts: true,
            slow: true,
            storms: true,
            ..Faults::default()
        }
    }

    /// Pauses only (one or several nodes stopped at once).
    pub fn pauses_only() -> Faults {
        Faults {
            pauses: true,
            ..Faults::default()
        }
    }
}

/// The situations behind the "never stuck" findings, each replayed with
/// random timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Finding 1: a cold start with one node absent (it never starts).
    ColdStartOneAbsent,
    /// Finding 1': a cold start with one node holding another cluster
    /// secret (every handshake with it is refused).
    ColdStartOneMisconfigured,
    /// Finding 2: two of three killed together and restarted together.
    TwoOfThreeRestarted,
    /// Finding 3: nodes started in any order within a few ms; dials to a
    /// node not yet listening are refused. Ordering must start within
    /// `liveness_ms` of the last start.
    StartInAnyOrder,
    /// Finding 4: more than f nodes without state at once (3 of 5 killed,
    /// overlapping), restarted.
    MoreThanFStateless,
    /// Finding 5: the leader is killed right after it committed the first
    /// two-member view (its Commit never leaves) and restarts at once.
    LeaderKilledAfterCommit,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::ColdStartOneAbsent,
        Scenario::ColdStartOneMisconfigured,
        Scenario::TwoOfThreeRestarted,
        Scenario::StartInAnyOrder,
        Scenario::MoreThanFStateless,
        Scenario::LeaderKilledAfterCommit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ColdStartOneAbsent => "cold-start-one-absent",
            Scenario::ColdStartOneMisconfigured => "cold-start-one-misconfigured",
            Scenario::TwoOfThreeRestarted => "two-of-three-restarted",
            Scenario::StartInAnyOrder => "start-in-any-order",
            Scenario::MoreThanFStateless => "more-than-f-stateless",
            Scenario::LeaderKilledAfterCommit => "leader-killed-after-commit",
        }
    }

    pub fn by_name(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Cluster size the scenario is about.
    pub fn nodes(self) -> usize {
        match self {
            Scenario::MoreThanFStateless => 5,
            _ => 3,
        }
    }
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub nodes: usize,
    /// Simulated ms during which faults are injected.
    pub fault_ms: u64,
    /// Random faults begin this late (0: from the start, cold start included).
    pub faults_from_ms: u64,
    /// Simulated ms after all faults heal (and absent or crashed nodes start).
    pub settle_ms: u64,
    /// Clients stop publishing this long before the end.
    pub quiet_ms: u64,
    pub faults: Faults,
    pub scenario: Option<Scenario>,
    pub suspect_after_ticks: u32,
    pub max_backlog: u64,
    pub max_batch: usize,
    /// Base tick period (ms); the daemon ticks 4 times per keepalive.
    pub tick_ms: u64,
    pub mesh: MeshParams,
    /// Liveness bound: from the moment every node expected up is running
    /// and linked to every other (or, in [`Scenario::StartInAnyOrder`],
    /// from the last start) to one view of all of them, ordering.
    pub liveness_ms: u64,
    /// Record a readable event trace.
    pub trace: bool,
}

impl SimParams {
    pub fn new(nodes: usize) -> Self {
        SimParams {
            nodes,
            fault_ms: 2_000,
            faults_from_ms: 0,
            settle_ms: 4_000,
            quiet_ms: 1_000,
            faults: Faults::all(),
            scenario: None,
            suspect_after_ticks: 8,
            max_backlog: 48,
            max_batch: 16,
            tick_ms: 10,
            mesh: MeshParams {
                keepalive_ms: 40,
                reconnect_ms: 400,
                connect_timeout_ms: 300,
                bandwidth: 50_000,
            },
            liveness_ms: 1_000,
            trace: false,
        }
    }

    pub fn with_faults(nodes: usize, faults: Faults) -> Self {
        SimParams {
            faults,
            ..SimParams::new(nodes)
        }
    }

    /// A named scenario: no random faults beside its own.
    pub fn scenario(s: Scenario) -> Self {
        let mut p = SimParams::new(s.nodes());
        p.faults = Faults::default();
        p.scenario = Some(s);
        if s == Scenario::StartInAnyOrder {
            // The daemon's default: a refused dial waited this long.
            p.mesh.reconnect_ms = 5_000;
            p.mesh.keepalive_ms = 40;
            p.fault_ms = 300;
            p.settle_ms = 3_000;
        }
        p
    }
}

/// Outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub published: u64,
    pub refused: u64,
    pub confirmed: u64,
    pub ordered_ops: u64,
    pub deliveries: u64,
    pub crashes: u64,
    pub crash_points: u64,
    /// Most nodes without state (down or recovering) at once.
    pub max_stateless: usize,
    pub partitions: u64,
    pub cuts: u64,
    pub one_way: u64,
    pub slow: u64,
    pub storms: u64,
    pub pauses: u64,
    /// Epochs the cluster went through (new lineages formed).
    pub epochs: u64,
    /// View entries delivered with `lost` set.
    pub lost_views: u64,
    /// VR views entered, summed over the nodes running at the end.
    pub view_changes: u64,
    pub messages: u64,
    pub max_log_len: usize,
    /// Confirmed publishes that no instance delivered.
    pub confirmed_orphans: u64,
    /// Ms from "expected nodes up and linked" to "one view, ordering".
    pub formed_ms: Option<u64>,
    pub violation: Option<String>,
    pub trace: Vec<String>,
}

/// The driver's view of one node: its process, its core and its links.
struct Proc {
    core: Option<Core>,
    inc: u64,
    /// Index into `Sim::instances` of the running instance.
    inst: usize,
    /// When it starts again (u64::MAX: not scheduled).
    start_at: u64,
    /// Never starts (a dead machine) until the heal, or never at all.
    absent_forever: bool,
    misconfigured: bool,
    paused_since: Option<u64>,
    paused_until: u64,
    tick_period: u64,
    next_tick: u64,
    last_tick: u64,
    /// Current link generation per peer (0: down), the driver's filter.
    generation: Vec<u64>,
    /// Link events waiting while paused.
    queued: VecDeque<LinkEvent>,
    /// Ticks missed while paused.
    missed: u64,
}

struct ProcView<'a>(&'a [Proc]);

impl Procs for ProcView<'_> {
    fn running(&self, i: usize) -> bool {
        self.0[i].core.is_some()
    }
    fn paused(&self, i: usize) -> bool {
        self.0[i].paused_since.is_some()
    }
    fn inc(&self, i: usize) -> u64 {
        self.0[i].inc
    }
    fn misconfigured(&self, i: usize) -> bool {
        self.0[i].misconfigured
    }
}

struct Instance {
    node: usize,
    /// Started before any client acted.
    initial: bool,
    delivered: Vec<Delivery>,
    /// What its clients see (the driver's sans-IO half, `msgc::stream`).
    stream: Stream,
}

/// Queue groups the simulated clients join (on `s.*`).
const QUEUES: [&str; 2] = ["q0", "q1"];

#[derive(Clone)]
struct Delivery {
    op: u64,
    epoch: Epoch,
    entry: Entry,
    lost: bool,
    /// Not given to subscribers (they got it in a history the node left).
    repeat: bool,
}

struct Client {
    node: usize,
    alive: bool,
    next_seq: u64,
    outstanding: BTreeSet<u64>,
    groups: BTreeSet<String>,
    ping: Option<u64>,
}

struct Sim {
    p: SimParams,
    rng: Rng,
    now: u64,
    n: usize,
    procs: Vec<Proc>,
    net: Net,
    next_inc: u64,
    instances: Vec<Instance>,
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    /// payload id → (node, incarnation, client, seq)
    published: BTreeMap<u64, (usize, u64, u64, u64)>,
    pay_of: BTreeMap<(u64, u64), u64>,
    confirmed: Vec<u64>,
    refused: BTreeMap<u64, BTreeSet<u64>>,
    next_payload: u64,
    touched: Vec<bool>,
    /// Scenario state: the leader crash of `LeaderKilledAfterCommit` done.
    scripted_crash_done: bool,
    /// Crashes a scenario planned: (node, at, restart at).
    planned: Vec<(usize, u64, u64)>,
    /// Per (epoch, op, queue): the node every instance says delivers the
    /// message to that queue group (they must agree), and who said it first.
    queue_nodes: BTreeMap<(Epoch, u64, &'static str), (Option<String>, usize)>,
    /// Per (epoch, op): the group event instances published (they must agree).
    group_events: BTreeMap<(Epoch, u64), (Vec<GroupEvent>, usize)>,
    /// Liveness tracking.
    linked_at: Option<u64>,
    whole_at: Option<u64>,
    last_start: u64,
    r: SimReport,
}

/// Runs one seed and checks every property.
pub fn run(seed: u64, p: &SimParams) -> SimReport {
    let n = p.nodes.max(1);
    let mut rng = Rng::new(seed);
    let procs = (0..n)
        .map(|_| {
            let period = if p.faults.skew {
                // 0.8–1.3× the base period.
                (p.tick_ms * rng.range(80, 131)).div_ceil(100).max(1)
            } else {
                p.tick_ms.max(1)
            };
            Proc {
                core: None,
                inc: 0,
                inst: 0,
                start_at: 0,
                absent_forever: false,
                misconfigured: false,
                paused_since: None,
                paused_until: 0,
                tick_period: period,
                next_tick: 0,
                last_tick: 0,
                generation: vec![0; n],
                queued: VecDeque::new(),
                missed: 0,
            }
        })
        .collect();
    let mut s = Sim {
        p: p.clone(),
        rng,
        now: 0,
        n,
        procs,
        net: Net::new(n, p.mesh.clone()),
        next_inc: 1,
        instances: Vec::new(),
        clients: BTreeMap::new(),
        next_client: 1,
        published: BTreeMap::new(),
        pay_of: BTreeMap::new(),
        confirmed: Vec::new(),
        refused: BTreeMap::new(),
        next_payload: 1,
        touched: vec![false; n],
        scripted_crash_done: false,
        planned: Vec::new(),
        queue_nodes: BTreeMap::new(),
        group_events: BTreeMap::new(),
        linked_at: None,
        whole_at: None,
        last_start: 0,
        r: SimReport {
            seed,
            nodes: n,
            ..SimReport::default()
        },
    };
    s.plan_starts();
    s.main_loop();
    s.r.view_changes = s
        .procs
        .iter()
        .filter_map(|p| p.core.as_ref())
        .map(|c| c.status().view_changes)
        .sum();
    if s.r.violation.is_none() {
        s.check();
    }
    s.r
}

impl Sim {
    fn log(&mut self, f: impl FnOnce() -> String) {
        if self.p.trace {
            let line = format!("t={} {}", self.now, f());
            self.r.trace.push(line);
        }
    }

    fn fail(&mut self, what: String) {
        if self.r.violation.is_none() {
            self.r.violation = Some(format!("t={} {}", self.now, what));
        }
    }

    fn f(&self) -> usize {
        (self.n - 1) / 2
    }

    fn majority(&self) -> usize {
        self.n / 2 + 1
    }

    /// Who starts when.
    fn plan_starts(&mut self) {
        for i in 0..self.n {
            self.procs[i].start_at = 0;
        }
        if self.p.faults.absent_at_start {
            // Some nodes start late, some only at the heal.
            for i in 0..self.n {
                match self.rng.below(4) {
                    0 => self.procs[i].start_at = self.rng.below(self.p.fault_ms.max(1)),
                    1 if self.rng.chance(1, 2) => self.procs[i].start_at = self.p.fault_ms,
                    _ => {}
                }
            }
        }
        match self.p.scenario {
            Some(Scenario::ColdStartOneAbsent) => {
                let absent = self.rng.below(self.n as u64) as usize;
                for i in 0..self.n {
                    self.procs[i].start_at = self.rng.below(300);
                }
                self.procs[absent].absent_forever = true;
                self.procs[absent].start_at = u64::MAX;
            }
            Some(Scenario::ColdStartOneMisconfigured) => {
                let bad = self.rng.below(self.n as u64) as usize;
                for i in 0..self.n {
                    self.procs[i].start_at = self.rng.below(300);
                }
                self.procs[bad].misconfigured = true;
            }
            Some(Scenario::StartInAnyOrder) => {
                for i in 0..self.n {
                    self.procs[i].start_at = self.rng.below(50);
                }
            }
            _ => {}
        }
    }

    /// The nodes that should be up and ordering at the end.
    fn expected(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|&i| !self.procs[i].absent_forever && !self.procs[i].misconfigured)
            .collect()
    }

    fn running(&self, i: usize) -> bool {
        self.procs[i].core.is_some()
    }

    fn paused(&self, i: usize) -> bool {
        self.procs[i].paused_since.is_some()
    }

    fn start_node(&mut self, i: usize) {
        let inc = self.next_inc;
        self.next_inc += 1;
        let peers = (0..self.n).map(|k| format!("n{k}")).collect();
        let mut cfg = Config::new(i as NodeId, peers, inc);
        cfg.suspect_after_ticks = self.p.suspect_after_ticks;
        cfg.max_backlog = self.p.max_backlog;
        cfg.max_batch = self.p.max_batch;
        let initial = self.now == 0;
        let inst = self.instances.len();
        let names = (0..self.n).map(|k| format!("n{k}")).collect();
        self.instances.push(Instance {
            node: i,
            initial,
            delivered: Vec::new(),
            stream: Stream::new(i as NodeId, names),
        });
        let pr = &mut self.procs[i];
        pr.core = Some(Core::new(cfg));
        pr.inc = inc;
        pr.inst = inst;
        pr.start_at = u64::MAX;
        pr.paused_since = None;
        pr.generation = vec![0; self.n];
        pr.queued.clear();
        pr.next_tick = self.now + pr.tick_period;
        pr.last_tick = self.now;
        self.last_start = self.now;
        for _ in 0..2 {
            let id = self.next_client;
            self.next_client += 1;
            self.clients.insert(
                id,
                Client {
                    node: i,
                    alive: true,
                    next_seq: 1,
                    outstanding: BTreeSet::new(),
                    groups: BTreeSet::new(),
                    ping: None,
                },
            );
        }
        self.log(|| format!("start node {i} inc {inc}"));
        self.drain(i, usize::MAX);
        self.note_stateless();
    }

    fn crash(&mut self, i: usize, restart_in: Option<u64>) {
        let Some(_) = self.procs[i].core.take() else {
            return;
        };
        let inc = self.procs[i].inc;
        self.net.crashed(i, inc, self.now, &mut self.rng);
        for c in self.clients.values_mut() {
            if c.node == i {
                c.alive = false;
            }
        }
        self.procs[i].paused_since = None;
        self.procs[i].queued.clear();
        self.procs[i].start_at = restart_in.map_or(u64::MAX, |d| self.now + d);
        self.r.crashes += 1;
        self.log(|| format!("crash node {i} (restart in {restart_in:?} ms)"));
        self.note_stateless();
    }

    fn note_stateless(&mut self) {
        let k = (0..self.n)
            .filter(|&i| {
                self.procs[i]
                    .core
                    .as_ref()
                    .is_none_or(|c| c.status().mode == Mode::Recovering)
            })
            .count();
        self.r.max_stateless = self.r.max_stateless.max(k);
    }

    fn main_loop(&mut self) {
        let fault_end = self.p.fault_ms;
        let end = self.p.fault_ms + self.p.settle_ms;
        let quiet = end.saturating_sub(self.p.quiet_ms);
        while self.now < end {
            if self.now == fault_end {
                self.heal();
            }
            if self.now < fault_end {
                if self.now >= self.p.faults_from_ms {
                    self.random_fault();
                }
                self.scripted();
            }
            self.resume_paused();
            for i in 0..self.n {
                if self.procs[i].core.is_none() && self.now >= self.procs[i].start_at {
                    self.start_node(i);
                }
            }
            let events = {
                let view = ProcView(&self.procs);
                self.net.step(self.now, &view, &mut self.rng)
            };
            for (i, ev) in events {
                self.link_event(i, ev);
            }
            self.ticks();
            if self.now >= 100 && self.now < quiet && self.rng.chance(1, 4) {
                self.client_action();
            }
            for i in 0..self.n {
                if !self.paused(i) && std::mem::take(&mut self.touched[i]) {
                    self.call(i, |c| c.flush());
                    if let Some(c) = self.procs[i].core.as_ref() {
                        self.r.max_log_len = self.r.max_log_len.max(c.status().log_len);
                    }
                }
            }
            self.track_liveness(fault_end);
            if self.r.violation.is_some() {
                return;
            }
            self.now += 1;
        }
    }

    fn heal(&mut self) {
        self.net.heal();
        for i in 0..self.n {
            if self.paused(i) {
                self.procs[i].paused_until = self.now;
            }
            if self.procs[i].core.is_none() && !self.procs[i].absent_forever {
                let d = self.rng.below(50);
                self.procs[i].start_at = self.procs[i].start_at.min(self.now + d);
            }
        }
        self.log(|| "heal all".to_string());
    }

    /// Liveness: from "expected nodes up and linked" to "one view of all of
    /// them, ordering".
    fn track_liveness(&mut self, fault_end: u64) {
        if self.now < fault_end || self.whole_at.is_some() {
            return;
        }
        let exp = self.expected();
        if self.linked_at.is_none() {
            let up = exp.iter().all(|&i| self.running(i) && !self.paused(i));
            if up && self.net.all_linked(&exp) {
                self.linked_at = Some(self.now);
                self.log(|| format!("expected nodes {exp:?} up and linked"));
            }
        }
        if self.linked_at.is_none() {
            return;
        }
        let members: Vec<NodeId> = exp.iter().map(|&i| i as NodeId).collect();
        let mut key = None;
        for &i in &exp {
            let Some(c) = self.procs[i].core.as_ref() else {
                return;
            };
            let st = c.status();
            if st.mode != Mode::Normal || !st.delivering || st.members != members {
                return;
            }
            let k = (st.epoch, st.vr_view, st.view_id);
            if key.is_some_and(|x| x != k) {
                return;
            }
            key = Some(k);
        }
        self.whole_at = Some(self.now);
        self.log(|| "whole: one view of every expected node".to_string());
    }

    // ------------------------------------------------------ the driver

    /// Calls the core of node `i` and performs its actions, possibly
    /// crashing at a chosen point in between.
    fn call(&mut self, i: usize, f: impl FnOnce(&mut Core)) {
        let Some(core) = self.procs[i].core.as_mut() else {
            return;
        };
        let before = core.status();
        f(core);
        self.touched[i] = true;
        let after = core.status();
        let mut cut = usize::MAX;
        let became_leader = before.leader != Some(i as NodeId)
            && after.leader == Some(i as NodeId)
            && after.mode == Mode::Normal;
        if self.p.scenario == Some(Scenario::LeaderKilledAfterCommit)
            && !self.scripted_crash_done
            && after.commit > before.commit
            && after.leader == Some(i as NodeId)
            && core.state().members.len() >= 2
        {
            // Killed right after the commit advance: its Commit never leaves.
            self.scripted_crash_done = true;
            self.drain(i, 0);
            let d = self.rng.range(1, 30);
            self.log(|| format!("scripted: leader {i} killed right after its commit advanced"));
            self.crash(i, Some(d));
            return;
        }
        if self.p.faults.crash_points && self.now < self.p.fault_ms {
            let chance = if after.commit > before.commit {
                self.rng.chance(1, 400)
            } else if became_leader {
                self.rng.chance(1, 8)
            } else if after.mode == Mode::Recovering {
                self.rng.chance(1, 300)
            } else {
                false
            };
            if chance {
                cut = self.rng.below(8) as usize;
            }
        }
        self.drain(i, cut);
        if cut != usize::MAX {
            self.r.crash_points += 1;
            let d = self.rng.below(400);
            self.log(|| format!("crash point: node {i} dies after {cut} actions"));
            self.crash(i, Some(d));
        }
    }

    /// Performs at most `limit` of node `i`'s queued actions.
    fn drain(&mut self, i: usize, limit: usize) {
        let inc = self.procs[i].inc;
        let Some(core) = self.procs[i].core.as_mut() else {
            return;
        };
        let actions = core.take_actions();
        for a in actions.into_iter().take(limit) {
            match a {
                Action::Send { to, msg } => {
                    let to = to as usize;
                    if to >= self.n || to == i {
                        continue;
                    }
                    if self.p.trace {
                        let s = short(&msg);
                        self.log(|| format!("{i}->{to} {s}"));
                    }
                    self.r.messages += 1;
                    self.net.send(i, to, inc, msg, self.now, &mut self.rng);
                }
                Action::Deliver(d) => {
                    self.r.deliveries += 1;
                    if let Entry::View(v) = &d.entry {
                        if d.lost {
                            self.r.lost_views += 1;
                        }
                        if self.p.trace {
                            let e = short_entry(&d.entry);
                            let lost = d.lost;
                            self.log(|| format!("node {i} delivers op {} {e} lost={lost}", d.op));
                        }
                        let _ = v;
                    }
                    let inst = self.procs[i].inst;
                    self.project(inst, &d);
                    self.instances[inst].delivered.push(Delivery {
                        op: d.op,
                        epoch: d.epoch,
                        entry: d.entry,
                        lost: d.lost,
                        repeat: d.repeat,
                    });
                }
                Action::Confirm { client, seq } => {
                    let Some(c) = self.clients.get_mut(&client) else {
                        self.fail(format!("confirm for unknown client {client}"));
                        continue;
                    };
                    if c.outstanding.first() != Some(&seq) {
                        let first = c.outstanding.first().copied();
                        self.fail(format!(
                            "node {i}: confirm {client}/{seq} out of order (oldest {first:?})"
                        ));
                        continue;
                    }
                    c.outstanding.remove(&seq);
                    Self::pong(c);
                    if let Some(pid) = self.pay_of.get(&(client, seq)).copied() {
                        self.confirmed.push(pid);
                    }
                    self.r.confirmed += 1;
                }
                Action::Refuse { client, seq, .. } => {
                    self.r.refused += 1;
                    self.refused.entry(client).or_default().insert(seq);
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.outstanding.remove(&seq);
                        Self::pong(c);
                    }
                }
            }
        }
    }

    /// Runs the driver's projection of a delivery (`msgc::stream`) and checks
    /// it against the other instances': the same node serves each message
    /// to each queue group everywhere, and the same group events.
    fn project(&mut self, inst: usize, d: &crate::order::Delivered) {
        let effects = self.instances[inst].stream.deliver(d);
        let mut groups = Vec::new();
        for fx in effects {
            match fx {
                Effect::Message { publish: p, .. } => {
                    let origin = format!("n{}", p.id.origin);
                    for q in QUEUES {
                        let who = self.instances[inst]
                            .stream
                            .queue_node(q, &p.subject, &origin, d.op)
                            .map(str::to_owned);
                        match self.queue_nodes.get(&(d.epoch, d.op, q)) {
                            Some((other, k)) if *other != who => {
                                let k = *k;
                                self.fail(format!(
                                    "queue placement: op {} of epoch {:?}, queue {q}: instance {inst} says {who:?}, instance {k} said {other:?}",
                                    d.op, d.epoch
                                ));
                            }
                            Some(_) => {}
                            None => {
                                self.queue_nodes.insert((d.epoch, d.op, q), (who, inst));
                            }
                        }
                    }
                }
                Effect::Group(ev) => groups.push(ev),
                Effect::View(_) => {}
            }
        }
        if matches!(d.entry, Entry::Join(_) | Entry::Leave(_)) && !d.repeat {
            match self.group_events.get(&(d.epoch, d.op)) {
                Some((other, k)) if *other != groups => {
                    let k = *k;
                    self.fail(format!(
                        "group events: op {} of epoch {:?}: instance {inst} publishes {groups:?}, instance {k} published {other:?}",
                        d.op, d.epoch
                    ));
                }
                Some(_) => {}
                None => {
                    self.group_events.insert((d.epoch, d.op), (groups, inst));
                }
            }
        }
    }

    /// The PONG rule: answered once nothing at or before the PING is pending.
    fn pong(c: &mut Client) {
        if let Some(p) = c.ping
            && c.outstanding.first().is_none_or(|&f| f > p)
        {
            c.ping = None;
        }
    }

    /// A link event, through the driver's generation filter.
    fn link_event(&mut self, i: usize, ev: LinkEvent) {
        if !self.running(i) {
            return;
        }
        if self.paused(i) {
            self.procs[i].queued.push_back(ev);
            return;
        }
        match ev {
            LinkEvent::Up { peer, generation } => {
                self.procs[i].generation[peer] = generation;
                self.log(|| format!("link {i}<-{peer} up (generation {generation})"));
                self.call(i, |c| c.peer_up(peer as NodeId));
            }
            LinkEvent::Down { peer, generation } => {
                if self.procs[i].generation[peer] != generation {
                    return;
                }
                self.procs[i].generation[peer] = 0;
                self.log(|| format!("link {i}<-{peer} down (generation {generation})"));
                self.call(i, |c| c.peer_down(peer as NodeId));
            }
            LinkEvent::Msg {
                peer,
                generation,
                inc,
                msg,
            } => {
                if self.procs[i].generation[peer] != generation {
                    return;
                }
                if self.p.trace {
                    let s = short(&msg);
                    self.log(|| format!("{peer}->{i} {s} (inc {inc})"));
                }
                self.call(i, |c| c.on_message(peer as NodeId, inc, *msg));
            }
        }
    }

    fn ticks(&mut self) {
        let ka_ticks = self.p.mesh.keepalive_ms / self.p.tick_ms.max(1);
        for i in 0..self.n {
            if !self.running(i) || self.now < self.procs[i].next_tick {
                continue;
            }
            let period = self.procs[i].tick_period;
            if self.paused(i) {
                self.procs[i].missed += 1;
                self.procs[i].next_tick = self.now + period;
                continue;
            }
            let gap = self.now - self.procs[i].last_tick;
            self.procs[i].last_tick = self.now;
            let mut next = self.now + period;
            if self.p.faults.skew && self.rng.chance(1, 50) {
                // A late tick (a busy executor, a slow VM).
                next += period * self.rng.range(1, 4);
            }
            self.procs[i].next_tick = next;
            // The driver: a tick two periods late or more is one tick, and
            // past a keepalive the core's silence clocks restart first.
            let late = gap >= period * ka_ticks.max(1);
            self.call(i, |c| {
                if late {
                    c.resume();
                }
                c.tick();
            });
        }
    }

    // ---------------------------------------------------------- faults

    fn random_fault(&mut self) {
        let f = self.p.faults;
        if !self.rng.chance(1, 120) {
            return;
        }
        let n = self.n as u64;
        let i = self.rng.below(n) as usize;
        let j = self.rng.below(n) as usize;
        let now = self.now;
        match self.rng.below(9) {
            0 if f.crashes && self.running(i) => {
                let d = if self.rng.chance(1, 3) {
                    self.rng.below(50)
                } else {
                    self.rng.range(50, 600)
                };
                self.crash(i, Some(d));
            }
            0 | 1 if f.bounded_crashes => {
                let lost = (0..self.n)
                    .filter(|&k| {
                        self.procs[k]
                            .core
                            .as_ref()
                            .is_none_or(|c| c.status().mode == Mode::Recovering)
                    })
                    .count();
                if lost < self.f() && self.running(i) {
                    let d = self.rng.range(50, 600);
                    self.crash(i, Some(d));
                }
            }
            1 if f.crashes && self.running(i) && self.running(j) && i != j => {
                // Two at once, restarted together.
                let d = self.rng.below(300);
                self.crash(i, Some(d));
                self.crash(j, Some(d));
            }
            2 if f.partitions => {
                let sides: Vec<u8> = (0..self.n).map(|_| self.rng.below(2) as u8).collect();
                let until = now + self.rng.range(100, 800);
                self.log(|| format!("partition {sides:?} until {until}"));
                self.net.partition(sides, until);
                self.r.partitions += 1;
            }
            3 if f.cuts && i != j => {
                let until = now + self.rng.range(20, 400);
                self.net.cut(i, j, until);
                self.r.cuts += 1;
                self.log(|| format!("cut {i}-{j} until {until}"));
            }
            4 if f.one_way => {
                let until = now + self.rng.range(50, 500);
                if i != j && self.rng.chance(2, 3) {
                    self.net.one_way(i, j, until);
                    self.log(|| format!("one-way loss {i}->{j} until {until}"));
                } else {
                    self.net.deaf(i, until);
                    self.log(|| format!("node {i} deaf until {until}"));
                }
                self.r.one_way += 1;
            }
            5 if f.slow && i != j => {
                let until = now + self.rng.range(100, 600);
                if self.rng.chance(1, 2) {
                    let extra = self.rng.range(20, 150);
                    self.net.slow(i, j, extra, until);
                    self.log(|| format!("slow {i}->{j} +{extra}ms until {until}"));
                } else {
                    self.net.lossy(i, j, until);
                    self.log(|| format!("lossy {i}->{j} until {until}"));
                }
                self.r.slow += 1;
            }
            6 if f.storms => {
                let k = self
                    .rng
                    .range(1, 3 * u64::from(self.p.suspect_after_ticks) + 2);
                self.r.storms += 1;
                self.log(|| format!("tick storm node {i}: {k} ticks"));
                if !self.paused(i) {
                    self.call(i, |c| {
                        for _ in 0..k {
                            c.tick();
                        }
                    });
                }
            }
            7 | 8 if f.pauses && self.running(i) && !self.paused(i) => {
                let d = self.rng.range(20, 500);
                self.procs[i].paused_since = Some(now);
                self.procs[i].paused_until = now + d;
                self.procs[i].missed = 0;
                self.r.pauses += 1;
                self.log(|| format!("pause node {i} for {d} ms"));
            }
            _ => {}
        }
    }

    fn scripted(&mut self) {
        let now = self.now;
        match self.p.scenario {
            Some(Scenario::TwoOfThreeRestarted) if now == 600 => {
                let keep = self.rng.below(3) as usize;
                let d = self.rng.below(300);
                self.log(|| format!("scripted: kill -9 all but node {keep}, restart in {d} ms"));
                for i in (0..3).filter(|&i| i != keep) {
                    self.crash(i, Some(d));
                }
            }
            Some(Scenario::MoreThanFStateless) if now == 600 => {
                let mut order: Vec<usize> = (0..self.n).collect();
                for k in (1..order.len()).rev() {
                    let j = self.rng.below(k as u64 + 1) as usize;
                    order.swap(k, j);
                }
                // f + 1 crashes, overlapping: each restarts 0–300 ms after its
                // crash, the next comes 0–100 ms after the one before.
                let mut at = 0;
                for &i in order.iter().take(self.f() + 1) {
                    let restart = at + self.rng.range(0, 300);
                    self.log(|| {
                        format!("scripted: kill -9 node {i} at +{at} ms, restart at +{restart}")
                    });
                    self.planned.push((i, now + at, now + restart));
                    at += self.rng.below(100);
                }
            }
            _ => {}
        }
        // Crashes planned by a scenario.
        let due: Vec<(usize, u64)> = self
            .planned
            .iter()
            .filter(|(_, at, _)| *at == now)
            .map(|(i, _, r)| (*i, *r))
            .collect();
        self.planned.retain(|(_, at, _)| *at != now);
        for (i, restart) in due {
            self.crash(i, Some(restart.saturating_sub(now)));
        }
    }

    fn resume_paused(&mut self) {
        for i in 0..self.n {
            let Some(since) = self.procs[i].paused_since else {
                continue;
            };
            if self.now < self.procs[i].paused_until {
                continue;
            }
            self.procs[i].paused_since = None;
            self.net.resumed(i, since);
            let missed = std::mem::take(&mut self.procs[i].missed);
            let mut events = std::mem::take(&mut self.procs[i].queued);
            let ka_ticks = self.p.mesh.keepalive_ms / self.p.tick_ms.max(1);
            let late = missed >= ka_ticks.max(1);
            let mut tick = missed > 0;
            let how = self.rng.below(3);
            self.log(|| {
                let order = ["tick first", "events first", "interleaved"][how as usize];
                format!(
                    "resume node {i}: missed {missed} ticks, {} events, {order}",
                    events.len()
                )
            });
            self.procs[i].last_tick = self.now;
            while tick || !events.is_empty() {
                let left = u64::from(tick) + events.len() as u64;
                let now_tick = match how {
                    0 => tick,
                    1 => events.is_empty(),
                    _ => self.rng.below(left) < u64::from(tick),
                };
                if now_tick {
                    tick = false;
                    self.call(i, |c| {
                        if late {
                            c.resume();
                        }
                        c.tick();
                    });
                } else if let Some(ev) = events.pop_front() {
                    self.link_event(i, ev);
                }
                if !self.running(i) {
                    return;
                }
            }
        }
    }

    fn client_action(&mut self) {
        let alive: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.alive)
            .map(|(id, _)| *id)
            .collect();
        if alive.is_empty() {
            return;
        }
        let id = alive[self.rng.below(alive.len() as u64) as usize];
        let roll = self.rng.below(100);
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let i = c.node;
        if self.paused(i) || !self.running(i) {
            // Its clients wait too (their sockets are not read).
            return;
        }
        let member = format!("#{id}#n{i}");
        if roll < 82 {
            let Some(c) = self.clients.get_mut(&id) else {
                return;
            };
            let seq = c.next_seq;
            c.next_seq += 1;
            c.outstanding.insert(seq);
            let pid = self.next_payload;
            self.next_payload += 1;
            self.published.insert(pid, (i, self.procs[i].inc, id, seq));
            self.pay_of.insert((id, seq), pid);
            self.r.published += 1;
            self.call(i, |core| {
                core.publish(
                    id,
                    seq,
                    format!("s.{}", pid % 3),
                    None,
                    None,
                    Bytes::from(pid.to_le_bytes().to_vec()),
                )
            });
        } else if roll < 88 {
            if let Some(c) = self.clients.get_mut(&id) {
                c.ping = Some(c.next_seq - 1);
                Self::pong(c);
            }
        } else if roll < 95 {
            let g = match self.rng.below(5) {
                k @ 0..3 => format!("g{k}"),
                k => queue_key(QUEUES[k as usize - 3], "s.*"),
            };
            if let Some(c) = self.clients.get_mut(&id) {
                c.groups.insert(g.clone());
            }
            self.call(i, |core| core.join(id, member, g));
        } else if let Some(g) = self.clients.get_mut(&id).and_then(|c| c.groups.pop_first()) {
            self.call(i, |core| core.leave(id, member, g));
        }
    }
}

// -------------------------------------------------------------- checks

impl Sim {
    fn check(&mut self) {
        if let Err(e) = self.check_inner() {
            self.fail(e);
            return;
        }
        // The same checker the fault harness runs over real clients.
        if let Err(v) = check::check(&self.client_history()) {
            self.fail(format!("client-observable history: {v}"));
        }
    }

    /// What the clients saw: one stream per instance (its deliveries, as a
    /// subscriber to everything would get them), one publisher per client.
    fn client_history(&self) -> check::History {
        let name = |ids: &[NodeId]| ids.iter().map(|i| format!("n{i}")).collect();
        let mut runs = vec![0u64; self.n];
        let mut streams = Vec::new();
        for (k, inst) in self.instances.iter().enumerate() {
            let incarnation = runs[inst.node];
            runs[inst.node] += 1;
            let events = inst
                .delivered
                .iter()
                .filter(|d| !d.repeat)
                .filter_map(|d| match &d.entry {
                    Entry::Publish(p) => Some(check::Event::Msg(check::MsgId {
                        publisher: p.client,
                        seq: p.seq,
                    })),
                    Entry::View(v) => Some(check::Event::View(check::View {
                        view: v.id,
                        epoch: d.epoch.n,
                        epoch_tag: d.epoch.id(),
                        lost: d.lost,
                        members: name(&v.members),
                        joined: name(&v.joined),
                        left: name(&v.left),
                    })),
                    Entry::Join(_) | Entry::Leave(_) => None,
                })
                .collect();
            let current = self.procs[inst.node].inst == k && self.running(inst.node);
            streams.push(check::Stream {
                node: format!("n{}", inst.node),
                incarnation,
                label: format!("n{}#{incarnation} (instance {k})", inst.node),
                from_start: inst.initial,
                complete: current,
                resumed: None,
                events,
            });
        }
        let mut pubs: BTreeMap<u64, check::Publisher> = BTreeMap::new();
        for &(_, _, client, seq) in self.published.values() {
            let p = pubs.entry(client).or_insert_with(|| check::Publisher {
                id: client,
                label: format!("client {client}"),
                ..check::Publisher::default()
            });
            p.published.insert(seq);
        }
        for pid in &self.confirmed {
            if let Some(&(_, _, client, seq)) = self.published.get(pid)
                && let Some(p) = pubs.get_mut(&client)
            {
                p.confirmed.insert(seq);
            }
        }
        for (client, seqs) in &self.refused {
            if let Some(p) = pubs.get_mut(client) {
                p.refused.extend(seqs);
            }
        }
        check::History {
            streams,
            publishers: pubs.into_values().collect(),
        }
    }

    fn check_inner(&mut self) -> Result<(), String> {
        // Agreement: one entry per (epoch, op) across every instance ever run.
        let mut global: BTreeMap<(Epoch, u64), (&Entry, usize)> = BTreeMap::new();
        for (k, inst) in self.instances.iter().enumerate() {
            for d in &inst.delivered {
                match global.get(&(d.epoch, d.op)) {
                    Some((g, other)) if *g != &d.entry => {
                        return Err(format!(
                            "agreement: op {} of epoch {:?} is {} at instance {other} (node {}) but {} at instance {k} (node {})",
                            d.op,
                            d.epoch,
                            short_entry(g),
                            self.instances[*other].node,
                            short_entry(&d.entry),
                            inst.node
                        ));
                    }
                    Some(_) => {}
                    None => {
                        global.insert((d.epoch, d.op), (&d.entry, k));
                    }
                }
            }
        }
        self.r.ordered_ops = global.len() as u64;
        self.r.epochs = global
            .keys()
            .map(|(e, _)| *e)
            .collect::<BTreeSet<_>>()
            .len() as u64;
        // Virtual synchrony per instance: within an epoch strictly
        // increasing ops, gap-free unless a View re-admits the node; another
        // epoch entered at a View that admits the node, or (the same
        // history going on) at the next op with the View that starts it.
        for (k, inst) in self.instances.iter().enumerate() {
            let me = inst.node as NodeId;
            let mut prev: Option<(Epoch, u64)> = None;
            for d in &inst.delivered {
                let view = match &d.entry {
                    Entry::View(v) => Some(v),
                    _ => None,
                };
                let admits =
                    view.is_some_and(|v| v.joined.contains(&me) && v.members.contains(&me));
                let ok = match prev {
                    None => admits,
                    Some((e, p)) if e == d.epoch => d.op > p && (d.op == p + 1 || admits),
                    // Another epoch: admitted, or the same history going on
                    // (the View that starts the epoch comes next).
                    Some((_, p)) => admits || (d.op == p + 1 && view.is_some()),
                };
                if !ok {
                    return Err(format!(
                        "virtual synchrony: instance {k} (node {}) delivered op {} of epoch {:?} ({}) after {prev:?}",
                        inst.node,
                        d.op,
                        d.epoch,
                        short_entry(&d.entry)
                    ));
                }
                prev = Some((d.epoch, d.op));
            }
        }
        // Integrity and FIFO, per epoch.
        let mut seen_payload = BTreeSet::new();
        let mut last_pseq: BTreeMap<(Epoch, NodeId, u64), u64> = BTreeMap::new();
        let mut last_seq: BTreeMap<(Epoch, u64), u64> = BTreeMap::new();
        let mut delivered_payloads = BTreeSet::new();
        for (&(epoch, op), (e, _)) in &global {
            if let Some(id) = e.proposal() {
                let lp = last_pseq
                    .entry((epoch, id.origin, id.incarnation))
                    .or_insert(0);
                if id.pseq <= *lp {
                    return Err(format!(
                        "fifo: op {op} of epoch {epoch:?}: pseq {} of {id:?} after {lp}",
                        id.pseq
                    ));
                }
                *lp = id.pseq;
            }
            if let Entry::Publish(p) = e {
                let pid = p
                    .payload
                    .as_ref()
                    .try_into()
                    .map(u64::from_le_bytes)
                    .unwrap_or(0);
                let Some(&(node, inc, client, seq)) = self.published.get(&pid) else {
                    return Err(format!(
                        "integrity: op {op} carries a payload never published"
                    ));
                };
                if (node as NodeId, inc, client, seq)
                    != (p.id.origin, p.id.incarnation, p.client, p.seq)
                {
                    return Err(format!(
                        "integrity: op {op} payload {pid} has the wrong origin"
                    ));
                }
                if !seen_payload.insert((epoch, pid)) {
                    return Err(format!(
                        "integrity: payload {pid} ordered twice in epoch {epoch:?} (op {op})"
                    ));
                }
                delivered_payloads.insert(pid);
                let ls = last_seq.entry((epoch, client)).or_insert(0);
                if seq <= *ls {
                    return Err(format!(
                        "fifo: client {client} seq {seq} after {ls} (op {op}, epoch {epoch:?})"
                    ));
                }
                *ls = seq;
            }
        }
        // Liveness.
        let exp = self.expected();
        if exp.len() < self.majority() {
            return Err(format!("scenario error: only {exp:?} expected up"));
        }
        let Some(linked) = self.linked_at else {
            return Err(format!(
                "liveness: the expected nodes {exp:?} were never all up and linked after the heal"
            ));
        };
        let from = if self.p.scenario == Some(Scenario::StartInAnyOrder) {
            self.last_start
        } else {
            linked
        };
        let Some(whole) = self.whole_at else {
            let states: Vec<String> = exp
                .iter()
                .map(|&i| match self.procs[i].core.as_ref() {
                    Some(c) => {
                        let s = c.status();
                        format!(
                            "n{i}: {:?} epoch {} vr_view {} leader {:?} view {} {:?} delivering {}",
                            s.mode,
                            s.epoch.n,
                            s.vr_view,
                            s.leader,
                            s.view_id,
                            s.members,
                            s.delivering
                        )
                    }
                    None => format!("n{i}: down"),
                })
                .collect();
            return Err(format!(
                "liveness: up and linked since t={linked}, never one view of {exp:?} that orders; at the end: {}",
                states.join("; ")
            ));
        };
        let formed = whole.saturating_sub(from);
        self.r.formed_ms = Some(formed);
        if formed > self.p.liveness_ms {
            return Err(format!(
                "liveness: one view of {exp:?} only {formed} ms after {} (bound {} ms)",
                if self.p.scenario == Some(Scenario::StartInAnyOrder) {
                    "the last start"
                } else {
                    "they were all up and linked"
                },
                self.p.liveness_ms
            ));
        }
        let mut views = BTreeSet::new();
        let mut states = Vec::new();
        let members: Vec<NodeId> = exp.iter().map(|&i| i as NodeId).collect();
        for &i in &exp {
            let Some(core) = self.procs[i].core.as_ref() else {
                return Err(format!("liveness: node {i} not running at the end"));
            };
            let st = core.status();
            if st.mode != Mode::Normal || !st.delivering || st.pending > 0 || st.members != members
            {
                return Err(format!("liveness: node {i} at the end: {st:?}"));
            }
            if st.log_len as u64 > 2 * self.p.max_backlog + 64 {
                return Err(format!(
                    "memory: node {i} log holds {} entries at the end",
                    st.log_len
                ));
            }
            views.insert((st.epoch, st.vr_view, st.view_id, st.applied));
            states.push(core.state().clone());
        }
        if views.len() > 1 {
            return Err(format!("liveness: nodes disagree at the end: {views:?}"));
        }
        if states.windows(2).any(|w| w[0] != w[1]) {
            return Err("replicated state differs between nodes at the end".to_string());
        }
        for (id, c) in &self.clients {
            if c.alive && self.running(c.node) && !c.outstanding.is_empty() {
                return Err(format!(
                    "liveness: client {id} still has {:?} unconfirmed",
                    c.outstanding
                ));
            }
            if c.alive && self.running(c.node) && c.ping.is_some() {
                return Err(format!("liveness: client {id} never got its PONG"));
            }
        }
        // A confirmed publish that nobody delivered: its origin confirmed
        // it while cut off (it is committed, in a view every member of which
        // was cut off before it reached them, so virtual synchrony owes it
        // to no one). Counted; loss from the history shows instead as a
        // stream that owed a message and lacks it, which only a view saying
        // `lost` excuses (order::check).
        for pid in &self.confirmed {
            if !delivered_payloads.contains(pid) {
                self.r.confirmed_orphans += 1;
                if self.p.trace {
                    let who = self.published.get(pid).copied();
                    self.r.trace.push(format!(
                        "orphan: payload {pid} (node, inc, client, seq) = {who:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn short_entry(e: &Entry) -> String {
    match e {
        Entry::Publish(p) => format!(
            "pub({}:{}/{}@{:?})",
            p.client, p.seq, p.id.pseq, p.id.origin
        ),
        Entry::Join(g) => format!("join({} {})", g.member, g.group),
        Entry::Leave(g) => format!("leave({} {})", g.member, g.group),
        Entry::View(v) => format!(
            "view({} e{}{} {:?} +{:?} -{:?})",
            v.id,
            v.epoch.n,
            if v.lost { " lost" } else { "" },
            v.members,
            v.joined,
            v.left
        ),
    }
}

fn short(m: &PeerMsg) -> String {
    let mut s = String::new();
    let _ = match m {
        PeerMsg::Forward {
            epoch,
            view,
            after,
            items,
        } => write!(
            s,
            "Forward e{} v{view} after={after} n={}",
            epoch.n,
            items.len()
        ),
        PeerMsg::Prepare {
            epoch,
            view,
            first_op,
            entries,
            commit,
            trunc,
        } => {
            let es: Vec<String> = entries.iter().map(short_entry).collect();
            write!(
                s,
                "Prepare e{} v{view} first={first_op} c={commit} t={trunc} {es:?}",
                epoch.n
            )
        }
        PeerMsg::PrepareOk { view, op, applied } => {
            write!(s, "PrepareOk v{view} op={op} applied={applied}")
        }
        PeerMsg::Commit {
            epoch,
            view,
            commit,
            trunc,
        } => write!(s, "Commit e{} v{view} c={commit} t={trunc}", epoch.n),
        PeerMsg::StartViewChange { view, moved, join } => write!(
            s,
            "SVC v{view}{}{}",
            if *moved { " moved" } else { "" },
            match join {
                Some((e, top)) => format!(" join e{} above v{top}", e.n),
                None => String::new(),
            }
        ),
        PeerMsg::DoViewChange { view, state: None } => write!(s, "DVC v{view} blank"),
        PeerMsg::DoViewChange {
            view,
            state: Some(d),
        } => write!(
            s,
            "DVC v{view} e{} stamp={}/{} log={}..={} c={} a={}",
            d.log.epoch().n,
            d.stamp.view,
            d.stamp.leader_inc,
            d.log.start,
            d.log.op(),
            d.commit,
            d.applied
        ),
        PeerMsg::StartView { view, log, commit } => write!(
            s,
            "StartView v{view} e{} log={}..={} c={commit}",
            log.epoch().n,
            log.start,
            log.op()
        ),
        PeerMsg::GetState { view } => write!(s, "GetState v{view}"),
        PeerMsg::JoinReq {
            view,
            stopped,
            applied,
        } => write!(s, "JoinReq v{view} stopped={stopped} a={applied}"),
        PeerMsg::Recovery { nonce } => write!(s, "Recovery {nonce}"),
        PeerMsg::RecoveryResponse { nonce, view, state } => {
            let kind = match state {
                crate::order::RecoveryState::Blank => "blank",
                crate::order::RecoveryState::Stuck => "stuck",
                crate::order::RecoveryState::Normal {
                    leader_log: Some(_),
                    ..
                } => "leader",
                crate::order::RecoveryState::Normal {
                    leader_log: None, ..
                } => "normal",
            };
            write!(s, "RecoveryResponse {nonce} v{view} {kind}")
        }
    };
    s
}

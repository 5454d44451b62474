//! Deterministic simulator: n cores, simulated clients, a simulated network
//! driven by a seeded PRNG. Links are FIFO (TCP) with random delays; a broken
//! link drops what is in flight and reports `peer_down` to both ends. Faults:
//! crashes (state lost) and restarts, partitions and heals, single link cuts,
//! slow links, clock jumps (tick bursts); and, as a scenario of its own
//! ([`SimParams::pauses`]), process pauses (SIGSTOP/SIGCONT). After the run
//! the properties of `docs/ORDERING.md` are checked; a seed replays exactly.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;

use super::{Action, Config, Core, Entry, Mode, NodeId, PeerMsg, check};

/// SplitMix64: tiny, seedable, good enough for scheduling decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub nodes: usize,
    /// Simulated ms during which faults are injected.
    pub fault_ms: u64,
    /// Simulated ms after all faults heal (and crashed nodes restart).
    pub settle_ms: u64,
    /// Clients stop publishing this long before the end: every pending
    /// publish must commit within it (the liveness bound).
    pub quiet_ms: u64,
    pub faults: bool,
    pub suspect_after_ticks: u32,
    pub max_backlog: u64,
    pub max_batch: usize,
    /// Record a readable event trace.
    pub trace: bool,
    /// Pause faults (SIGSTOP/SIGCONT) during `fault_ms`: one node at a time
    /// processes nothing for 20–500 ms; see [`SimParams::pauses`].
    pub pauses: bool,
    /// A resumed node gets every tick it missed, as a burst, rather than
    /// what the daemon gives it (one tick, after [`Core::resume`] when the
    /// gap is half the suspect window or more). Shows what the daemon's rule
    /// is for; availability is not expected then.
    pub pause_burst: bool,
}

impl SimParams {
    pub fn new(nodes: usize) -> Self {
        SimParams {
            nodes,
            fault_ms: 2_000,
            settle_ms: 1_500,
            quiet_ms: 1_000,
            faults: true,
            suspect_after_ticks: 5,
            max_backlog: 48,
            max_batch: 16,
            trace: false,
            pauses: false,
            pause_burst: false,
        }
    }

    /// The pause scenario: no other fault, but one node at a time is paused
    /// (SIGSTOP) for 20–500 ms (2–50 ticks, up to 10 suspect windows): it
    /// takes no tick, message or link event; messages to it wait in its FIFO
    /// links. With chance 1/2 its peers close its links while it is paused
    /// (the mesh heartbeat finds it silent), which are redialled 0–200 ms
    /// after the resume. On
    /// resume (SIGCONT) it gets what the daemon gives a core whose tick timer
    /// fired late (`msgc::ordered`): one tick for the whole gap, preceded by
    /// [`Core::resume`] when the gap is half the suspect window or more; and
    /// the queued events, before that tick, after it or around it. Besides
    /// every usual check,
    /// **availability**: a node that was not paused (from the start of a
    /// pause of its own to 500 ms after its end) is never removed from nor
    /// re-admitted to the membership view: the others are a majority and
    /// keep their view.
    pub fn pauses(nodes: usize) -> Self {
        SimParams {
            faults: false,
            pauses: true,
            ..SimParams::new(nodes)
        }
    }
}

/// How long after its pause a node's own removal or re-admission is excused.
const PAUSE_EXCUSE_MS: u64 = 500;

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
    pub partitions: u64,
    pub cuts: u64,
    pub slow: u64,
    pub jumps: u64,
    pub pauses: u64,
    /// Pause scenario: membership views that removed (`left`) or re-admitted
    /// (`joined`) a node that was not paused; any is a violation.
    pub healthy_left: u64,
    pub healthy_joined: u64,
    /// VR views entered, summed over the nodes running at the end.
    pub view_changes: u64,
    pub messages: u64,
    pub max_log_len: usize,
    /// Confirmed publishes that no member was alive to deliver.
    pub confirmed_orphans: u64,
    pub violation: Option<String>,
    pub trace: Vec<String>,
}

struct InFlight {
    at: u64,
    seq: u64,
    from: usize,
    to: usize,
    epoch: u64,
    msg: PeerMsg,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    // Min-heap on (at, seq).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// What a paused node finds waiting when it resumes.
enum Pending {
    Msg(usize, PeerMsg),
    Up(usize),
    Down(usize),
}

struct Instance {
    node: usize,
    /// Started with the run (before any client acted).
    initial: bool,
    delivered: Vec<(u64, Entry)>,
}

struct Client {
    node: usize,
    alive: bool,
    next_seq: u64,
    outstanding: BTreeSet<u64>,
    groups: BTreeSet<String>,
    ping: Option<u64>,
    pongs: u64,
}

struct Sim {
    p: SimParams,
    rng: Rng,
    now: u64,
    n: usize,
    cores: Vec<Option<Core>>,
    inst_of: Vec<usize>,
    inc_of: Vec<u64>,
    next_inc: u64,
    instances: Vec<Instance>,
    link_up: Vec<Vec<bool>>,
    epoch: Vec<Vec<u64>>,
    last_at: Vec<Vec<u64>>,
    slow_until: Vec<Vec<u64>>,
    slow_extra: Vec<Vec<u64>>,
    cut_until: Vec<Vec<u64>>,
    part: Vec<u8>,
    part_until: u64,
    restart_at: Vec<u64>,
    heap: BinaryHeap<InFlight>,
    seq: u64,
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    /// payload id → (node, incarnation, client, seq)
    published: BTreeMap<u64, (usize, u64, u64, u64)>,
    pay_of: BTreeMap<(u64, u64), u64>,
    confirmed: Vec<u64>,
    /// client → seqs refused (no quorum).
    refused: BTreeMap<u64, BTreeSet<u64>>,
    next_payload: u64,
    touched: Vec<bool>,
    /// Pause scenario: resume time of a paused node (0 = running).
    paused_until: Vec<u64>,
    /// Ticks a paused node missed, and its queued events.
    missed_ticks: Vec<u64>,
    queued: Vec<VecDeque<Pending>>,
    /// When the peers close a paused node's links (the mesh heartbeat).
    pause_cut_at: Vec<u64>,
    next_pause_at: u64,
    /// (node, start, end) of every pause (end = u64::MAX while it lasts).
    pause_log: Vec<(usize, u64, u64)>,
    /// View ids already seen delivered (the availability check).
    views_seen: BTreeSet<u64>,
    /// The first availability failure.
    unavailable: Option<String>,
    r: SimReport,
}

/// Runs one seed and checks every property.
pub fn run(seed: u64, p: &SimParams) -> SimReport {
    let n = p.nodes.max(1);
    let mut s = Sim {
        p: p.clone(),
        rng: Rng::new(seed),
        now: 0,
        n,
        cores: (0..n).map(|_| None).collect(),
        inst_of: vec![0; n],
        inc_of: vec![0; n],
        next_inc: 1,
        instances: Vec::new(),
        link_up: vec![vec![false; n]; n],
        epoch: vec![vec![0; n]; n],
        last_at: vec![vec![0; n]; n],
        slow_until: vec![vec![0; n]; n],
        slow_extra: vec![vec![0; n]; n],
        cut_until: vec![vec![0; n]; n],
        part: vec![0; n],
        part_until: 0,
        restart_at: vec![u64::MAX; n],
        heap: BinaryHeap::new(),
        seq: 0,
        clients: BTreeMap::new(),
        next_client: 1,
        published: BTreeMap::new(),
        pay_of: BTreeMap::new(),
        confirmed: Vec::new(),
        refused: BTreeMap::new(),
        next_payload: 1,
        touched: vec![false; n],
        paused_until: vec![0; n],
        missed_ticks: vec![0; n],
        queued: (0..n).map(|_| VecDeque::new()).collect(),
        pause_cut_at: vec![u64::MAX; n],
        next_pause_at: 300,
        pause_log: Vec::new(),
        views_seen: BTreeSet::new(),
        unavailable: None,
        r: SimReport {
            seed,
            nodes: n,
            ..SimReport::default()
        },
    };
    for i in 0..n {
        s.start_node(i);
    }
    s.main_loop();
    s.r.view_changes = s
        .cores
        .iter()
        .flatten()
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

    fn start_node(&mut self, i: usize) {
        let inc = self.next_inc;
        self.next_inc += 1;
        let peers = (0..self.n).map(|k| format!("n{k}")).collect();
        let mut cfg = Config::new(i as NodeId, peers, inc);
        cfg.suspect_after_ticks = self.p.suspect_after_ticks;
        cfg.max_backlog = self.p.max_backlog;
        cfg.max_batch = self.p.max_batch;
        self.cores[i] = Some(Core::new(cfg));
        self.inc_of[i] = inc;
        self.inst_of[i] = self.instances.len();
        let initial = self.now == 0;
        self.instances.push(Instance {
            node: i,
            initial,
            delivered: Vec::new(),
        });
        self.restart_at[i] = u64::MAX;
        for _ in 0..2 {
            let id = self.next_client;
            self.next_client += 1;
            let c = Client {
                node: i,
                alive: true,
                next_seq: 1,
                outstanding: BTreeSet::new(),
                groups: BTreeSet::new(),
                ping: None,
                pongs: 0,
            };
            self.clients.insert(id, c);
        }
        self.log(|| format!("start node {i} inc {inc}"));
        self.drain(i);
    }

    fn crash(&mut self, i: usize) {
        self.cores[i] = None;
        for c in self.clients.values_mut() {
            if c.node == i {
                c.alive = false;
            }
        }
        self.restart_at[i] = self.now + self.rng.range(50, 600);
        self.r.crashes += 1;
        self.log(|| format!("crash node {i}"));
    }

    fn alive(&self, i: usize) -> bool {
        self.cores[i].is_some()
    }

    fn connected(&self, i: usize, j: usize) -> bool {
        let parted = self.now < self.part_until && self.part[i] != self.part[j];
        self.alive(i) && self.alive(j) && !parted && self.now >= self.cut_until[i][j]
    }

    fn update_links(&mut self) {
        for i in 0..self.n {
            for j in i + 1..self.n {
                let c = self.connected(i, j);
                if c == self.link_up[i][j] {
                    continue;
                }
                self.link_up[i][j] = c;
                self.link_up[j][i] = c;
                self.epoch[i][j] += 1;
                self.epoch[j][i] += 1;
                self.log(|| format!("link {i}-{j} {}", if c { "up" } else { "down" }));
                for (a, b) in [(i, j), (j, i)] {
                    if self.paused(a) {
                        self.queued[a].push_back(if c { Pending::Up(b) } else { Pending::Down(b) });
                        continue;
                    }
                    if let Some(core) = self.cores[a].as_mut() {
                        if c {
                            core.peer_up(b as NodeId);
                        } else {
                            core.peer_down(b as NodeId);
                        }
                        self.touched[a] = true;
                    }
                    self.drain(a);
                }
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let Some(core) = self.cores[i].as_mut() else {
            return;
        };
        let actions = core.take_actions();
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    let to = to as usize;
                    if to >= self.n || !self.link_up[i][to] {
                        continue;
                    }
                    let mut delay = 1 + self.rng.below(4);
                    if self.now < self.slow_until[i][to] {
                        delay += self.slow_extra[i][to];
                    }
                    let at = (self.now + delay).max(self.last_at[i][to]);
                    self.last_at[i][to] = at;
                    self.seq += 1;
                    self.r.messages += 1;
                    let epoch = self.epoch[i][to];
                    self.heap.push(InFlight {
                        at,
                        seq: self.seq,
                        from: i,
                        to,
                        epoch,
                        msg,
                    });
                }
                Action::Deliver(d) => {
                    self.r.deliveries += 1;
                    if let Entry::View(v) = &d.entry
                        && self.p.pauses
                        && self.views_seen.insert(v.id)
                    {
                        self.check_availability(v.id, &v.members, &v.joined, &v.left);
                    }
                    let inst = self.inst_of[i];
                    self.instances[inst].delivered.push((d.op, d.entry));
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
                    if let Some(pid) = self.pay_of.get(&(client, seq)).copied() {
                        self.confirmed.push(pid);
                        if self.p.trace {
                            let line = format!(
                                "t={} node {i} confirm {client}/{seq} payload {pid}",
                                self.now
                            );
                            self.r.trace.push(line);
                        }
                    }
                    self.r.confirmed += 1;
                    Self::pong(c);
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

    /// The PONG rule: answered once nothing at or before the PING is pending.
    fn pong(c: &mut Client) {
        if let Some(p) = c.ping
            && c.outstanding.first().is_none_or(|&f| f > p)
        {
            c.ping = None;
            c.pongs += 1;
        }
    }

    fn main_loop(&mut self) {
        let fault_end = self.p.fault_ms;
        let end = self.p.fault_ms + self.p.settle_ms;
        let quiet = end.saturating_sub(self.p.quiet_ms);
        while self.now < end {
            if self.now == fault_end {
                self.part_until = 0;
                for i in 0..self.n {
                    for j in 0..self.n {
                        self.cut_until[i][j] = 0;
                        self.slow_until[i][j] = 0;
                    }
                    if !self.alive(i) {
                        self.restart_at[i] = self.now;
                    }
                }
                self.log(|| "heal all".to_string());
            }
            if self.p.faults && self.now < fault_end && self.rng.chance(1, 120) {
                self.fault();
            }
            if self.p.pauses {
                self.pause_step(fault_end);
            }
            for i in 0..self.n {
                if !self.alive(i) && self.now >= self.restart_at[i] {
                    self.start_node(i);
                }
            }
            self.update_links();
            while self.heap.peek().is_some_and(|m| m.at <= self.now) {
                let Some(m) = self.heap.pop() else { break };
                if m.epoch != self.epoch[m.from][m.to] || !self.link_up[m.from][m.to] {
                    continue;
                }
                if self.paused(m.to) {
                    // In its socket buffer until it runs again.
                    self.queued[m.to].push_back(Pending::Msg(m.from, m.msg));
                    continue;
                }
                if self.p.trace {
                    let (f, t, msg) = (m.from, m.to, short(&m.msg));
                    self.log(|| format!("{f}->{t} {msg}"));
                }
                if let Some(core) = self.cores[m.to].as_mut() {
                    core.on_message(m.from as NodeId, m.msg);
                    self.touched[m.to] = true;
                    self.drain(m.to);
                }
            }
            for i in 0..self.n {
                if (self.now + 3 * i as u64) % 10 == 0 && self.paused(i) {
                    self.missed_ticks[i] += 1;
                    continue;
                }
                if (self.now + 3 * i as u64) % 10 == 0
                    && let Some(core) = self.cores[i].as_mut()
                {
                    core.tick();
                    self.touched[i] = true;
                    self.drain(i);
                }
            }
            if self.now >= 100 && self.now < quiet && self.rng.chance(1, 4) {
                self.client_action();
            }
            for i in 0..self.n {
                if !self.paused(i)
                    && std::mem::take(&mut self.touched[i])
                    && let Some(core) = self.cores[i].as_mut()
                {
                    core.flush();
                    let len = core.status().log_len;
                    self.r.max_log_len = self.r.max_log_len.max(len);
                    self.drain(i);
                }
            }
            if self.r.violation.is_some() {
                return;
            }
            self.now += 1;
        }
    }

    fn fault(&mut self) {
        let n = self.n as u64;
        match self.rng.below(6) {
            0 | 1 => {
                // Crash only while at most f nodes are without state (no disk:
                // VR's bound; beyond it committed data may be lost).
                let f = (self.n - 1) / 2;
                let lost = (0..self.n)
                    .filter(|&k| {
                        self.cores[k]
                            .as_ref()
                            .is_none_or(|c| c.status().mode == Mode::Recovering)
                    })
                    .count();
                let i = self.rng.below(n) as usize;
                if lost < f && self.alive(i) {
                    self.crash(i);
                }
            }
            2 => {
                for k in 0..self.n {
                    self.part[k] = self.rng.below(2) as u8;
                }
                self.part_until = self.now + self.rng.range(100, 800);
                self.r.partitions += 1;
                let part = self.part.clone();
                self.log(|| format!("partition {part:?}"));
            }
            3 => {
                let i = self.rng.below(n) as usize;
                let j = self.rng.below(n) as usize;
                if i != j {
                    let until = self.now + self.rng.range(20, 400);
                    self.cut_until[i][j] = until;
                    self.cut_until[j][i] = until;
                    self.r.cuts += 1;
                    self.log(|| format!("cut {i}-{j}"));
                }
            }
            4 => {
                let i = self.rng.below(n) as usize;
                let j = self.rng.below(n) as usize;
                if i != j {
                    let until = self.now + self.rng.range(100, 600);
                    let extra = self.rng.range(20, 150);
                    self.slow_until[i][j] = until;
                    self.slow_extra[i][j] = extra;
                    self.r.slow += 1;
                    self.log(|| format!("slow {i}->{j} +{extra}ms"));
                }
            }
            _ => {
                let i = self.rng.below(n) as usize;
                let k = self
                    .rng
                    .range(1, 3 * u64::from(self.p.suspect_after_ticks) + 2);
                self.r.jumps += 1;
                self.log(|| format!("clock jump node {i} +{k} ticks"));
                if let Some(core) = self.cores[i].as_mut() {
                    for _ in 0..k {
                        core.tick();
                    }
                    self.touched[i] = true;
                    self.drain(i);
                }
            }
        }
    }

    fn paused(&self, i: usize) -> bool {
        self.paused_until[i] != 0
    }

    /// The pause scenario, once per simulated ms: start a pause, close a
    /// paused node's links, or resume it.
    fn pause_step(&mut self, fault_end: u64) {
        for i in 0..self.n {
            if self.paused(i) && self.now == self.pause_cut_at[i] {
                // The peers' mesh heartbeat gives up on the silent node; the
                // dialer redials up to 200 ms after it runs again.
                let until = self.paused_until[i] + self.rng.below(200);
                for j in 0..self.n {
                    if j != i {
                        self.cut_until[i][j] = until;
                        self.cut_until[j][i] = until;
                    }
                }
                self.log(|| format!("links of paused node {i} closed by its peers"));
            }
            if self.paused(i) && self.now >= self.paused_until[i] {
                self.resume(i);
            }
        }
        if self.now >= self.next_pause_at && self.now < fault_end {
            // One node at a time: the others stay a majority (f >= 1).
            if self.n >= 3 && (0..self.n).all(|k| !self.paused(k)) {
                let i = self.rng.below(self.n as u64) as usize;
                let d = self.rng.range(20, 500);
                self.paused_until[i] = self.now + d;
                self.missed_ticks[i] = 0;
                self.pause_cut_at[i] = if self.rng.chance(1, 2) {
                    self.now + self.rng.range(10, d.max(11))
                } else {
                    u64::MAX
                };
                self.pause_log.push((i, self.now, u64::MAX));
                self.r.pauses += 1;
                self.log(|| format!("pause node {i} for {d} ms"));
            }
            self.next_pause_at = self.now + self.rng.range(300, 900);
        }
    }

    /// SIGCONT: the missed ticks and the queued events, in a random order.
    fn resume(&mut self, i: usize) {
        self.paused_until[i] = 0;
        self.pause_cut_at[i] = u64::MAX;
        if let Some(p) = self.pause_log.iter_mut().rev().find(|p| p.0 == i) {
            p.2 = self.now;
        }
        let missed = std::mem::take(&mut self.missed_ticks[i]);
        let mut events = std::mem::take(&mut self.queued[i]);
        // The daemon's rule for a late tick timer, unless told to burst.
        let late =
            !self.p.pause_burst && 2 * missed >= u64::from(self.p.suspect_after_ticks.max(1));
        let mut ticks = if self.p.pause_burst {
            missed
        } else {
            missed.min(1)
        };
        let how = self.rng.below(3);
        let e = events.len();
        self.log(|| {
            let order = ["ticks first", "events first", "interleaved"][how as usize];
            let r = if late { ", resume()" } else { "" };
            format!("resume node {i}: missed {missed} ticks{r}, {e} events, {order}")
        });
        while ticks > 0 || !events.is_empty() {
            let left = ticks + events.len() as u64;
            let tick = match how {
                0 => ticks > 0,
                1 => events.is_empty(),
                _ => self.rng.below(left) < ticks,
            };
            let Some(core) = self.cores[i].as_mut() else {
                return;
            };
            if tick {
                ticks -= 1;
                if late {
                    core.resume();
                }
                core.tick();
            } else {
                match events.pop_front() {
                    Some(Pending::Msg(from, msg)) => core.on_message(from as NodeId, msg),
                    Some(Pending::Up(p)) => core.peer_up(p as NodeId),
                    Some(Pending::Down(p)) => core.peer_down(p as NodeId),
                    None => {}
                }
            }
            self.drain(i);
        }
        self.touched[i] = true;
    }

    /// Pause scenario: a View first delivered now must not remove or
    /// re-admit a node that was not paused lately.
    fn check_availability(
        &mut self,
        id: u64,
        members: &[NodeId],
        joined: &[NodeId],
        left: &[NodeId],
    ) {
        let now = self.now;
        let excused = |j: NodeId| {
            self.pause_log.iter().any(|&(k, s, e)| {
                k == j as usize && s <= now && now <= e.saturating_add(PAUSE_EXCUSE_MS)
            })
        };
        if self.pause_log.is_empty() {
            return;
        }
        let bad_left: Vec<NodeId> = left.iter().copied().filter(|&j| !excused(j)).collect();
        let bad_joined: Vec<NodeId> = joined.iter().copied().filter(|&j| !excused(j)).collect();
        self.r.healthy_left += bad_left.len() as u64;
        self.r.healthy_joined += bad_joined.len() as u64;
        if !bad_left.is_empty() || !bad_joined.is_empty() {
            let line = format!(
                "t={now} availability: view {id} {members:?} removes {bad_left:?} / re-admits {bad_joined:?}, not paused lately (pauses {:?})",
                self.pause_log
            );
            if self.p.trace {
                self.r.trace.push(line.clone());
            }
            // Reported after the run, which goes on to count them all.
            self.unavailable.get_or_insert(line);
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
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let i = c.node;
        if self.paused_until[i] != 0 {
            // Its clients wait too (their sockets are not read).
            return;
        }
        let Some(core) = self.cores[i].as_mut() else {
            return;
        };
        let member = format!("#{id}#n{i}");
        if roll < 82 {
            let seq = c.next_seq;
            c.next_seq += 1;
            c.outstanding.insert(seq);
            let pid = self.next_payload;
            self.next_payload += 1;
            self.published.insert(pid, (i, self.inc_of[i], id, seq));
            self.pay_of.insert((id, seq), pid);
            self.r.published += 1;
            core.publish(
                id,
                seq,
                format!("s.{}", pid % 3),
                None,
                None,
                Bytes::from(pid.to_le_bytes().to_vec()),
            );
        } else if roll < 88 {
            c.ping = Some(c.next_seq - 1);
            Self::pong(c);
        } else if roll < 95 {
            let g = format!("g{}", self.rng.below(3));
            c.groups.insert(g.clone());
            core.join(id, member, g);
        } else if let Some(g) = c.groups.pop_first() {
            core.leave(id, member, g);
        }
        self.touched[i] = true;
        self.drain(i);
    }

    // ---------------------------------------------------------- checks

    fn check(&mut self) {
        if let Err(e) = self.check_inner() {
            self.fail(e);
            return;
        }
        if let Some(line) = self.unavailable.take() {
            let (l, j) = (self.r.healthy_left, self.r.healthy_joined);
            self.r.violation = Some(format!(
                "{line}; {l} removal(s) and {j} re-admission(s) of unpaused nodes in this run"
            ));
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
                .filter_map(|(_, e)| match e {
                    Entry::Publish(p) => Some(check::Event::Msg(check::MsgId {
                        publisher: p.client,
                        seq: p.seq,
                    })),
                    Entry::View(v) => Some(check::Event::View(check::View {
                        view: v.id,
                        members: name(&v.members),
                        joined: name(&v.joined),
                        left: name(&v.left),
                    })),
                    Entry::Join(_) | Entry::Leave(_) => None,
                })
                .collect();
            streams.push(check::Stream {
                node: format!("n{}", inst.node),
                incarnation,
                label: format!("n{}#{incarnation} (instance {k})", inst.node),
                from_start: inst.initial,
                complete: self.inst_of[inst.node] == k && self.alive(inst.node),
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
        // Agreement: one entry per op across every instance ever run.
        let mut global: BTreeMap<u64, (&Entry, usize)> = BTreeMap::new();
        for (k, inst) in self.instances.iter().enumerate() {
            for (op, e) in &inst.delivered {
                match global.get(op) {
                    Some((g, other)) if *g != e => {
                        return Err(format!(
                            "agreement: op {op} is {} at instance {other} but {} at instance {k} (node {})",
                            short_entry(g),
                            short_entry(e),
                            inst.node
                        ));
                    }
                    Some(_) => {}
                    None => {
                        global.insert(*op, (e, k));
                    }
                }
            }
        }
        self.r.ordered_ops = global.len() as u64;
        // Virtual synchrony per instance: strictly increasing ops; delivery
        // (re)starts only at a View that admits the node, with no gaps after.
        for (k, inst) in self.instances.iter().enumerate() {
            let me = inst.node as NodeId;
            let mut prev: Option<u64> = None;
            for (op, e) in &inst.delivered {
                let admits = matches!(e, Entry::View(v) if v.joined.contains(&me) && v.members.contains(&me));
                match prev {
                    Some(p) if *op <= p => {
                        return Err(format!("instance {k}: op {op} delivered after {p}"));
                    }
                    Some(p) if *op == p + 1 => {}
                    _ if admits => {}
                    _ => {
                        return Err(format!(
                            "virtual synchrony: instance {k} (node {}) delivered op {op} after {prev:?} without being admitted",
                            inst.node
                        ));
                    }
                }
                prev = Some(*op);
            }
        }
        // Integrity and FIFO.
        let mut seen_payload = BTreeSet::new();
        let mut last_pseq: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
        let mut last_seq: BTreeMap<u64, u64> = BTreeMap::new();
        let mut last_view = 0;
        let mut op_of_payload = BTreeMap::new();
        for (op, (e, _)) in &global {
            if let Some(id) = e.proposal() {
                let lp = last_pseq.entry((id.origin, id.incarnation)).or_insert(0);
                if id.pseq <= *lp {
                    return Err(format!(
                        "fifo: op {op} pseq {} of {:?} after {}",
                        id.pseq, id, lp
                    ));
                }
                *lp = id.pseq;
            }
            match e {
                Entry::Publish(p) => {
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
                    if !seen_payload.insert(pid) {
                        return Err(format!("integrity: payload {pid} ordered twice (op {op})"));
                    }
                    op_of_payload.insert(pid, *op);
                    let ls = last_seq.entry(client).or_insert(0);
                    if seq <= *ls {
                        return Err(format!(
                            "fifo: client {client} seq {seq} after {ls} (op {op})"
                        ));
                    }
                    *ls = seq;
                }
                Entry::View(v) => {
                    if v.id <= last_view {
                        return Err(format!("views: id {} after {last_view} (op {op})", v.id));
                    }
                    last_view = v.id;
                }
                _ => {}
            }
        }
        // Liveness: after the heal every node is normal, in one view, a
        // delivering member, with nothing pending.
        let mut views = BTreeSet::new();
        let mut states = Vec::new();
        for i in 0..self.n {
            let Some(core) = self.cores[i].as_ref() else {
                return Err(format!("liveness: node {i} not running at the end"));
            };
            let st = core.status();
            if st.mode != Mode::Normal || !st.delivering || st.pending > 0 {
                return Err(format!("liveness: node {i} at end: {st:?}"));
            }
            if st.members.len() != self.n {
                return Err(format!(
                    "liveness: node {i} final view lacks members: {:?}",
                    st.members
                ));
            }
            if st.log_len as u64 > 2 * self.p.max_backlog + 64 {
                return Err(format!(
                    "memory: node {i} log holds {} entries at the end",
                    st.log_len
                ));
            }
            views.insert((st.vr_view, st.view_id, st.applied));
            states.push(core.state().clone());
        }
        if views.len() > 1 {
            return Err(format!("liveness: nodes disagree at the end: {views:?}"));
        }
        if states.windows(2).any(|w| w[0] != w[1]) {
            return Err("replicated state differs between nodes at the end".to_string());
        }
        for (id, c) in &self.clients {
            if c.alive && !c.outstanding.is_empty() {
                return Err(format!(
                    "liveness: client {id} still has {:?} unconfirmed",
                    c.outstanding
                ));
            }
            if c.alive && c.ping.is_some() {
                return Err(format!("liveness: client {id} never got its PONG"));
            }
        }
        // Confirmed means delivered by every final member from its join point.
        for pid in &self.confirmed {
            let Some(op) = op_of_payload.get(pid) else {
                // Committed while every member of its view was lost (e.g. the
                // lone first member crashed before joiners were admitted):
                // nobody was entitled to deliver it. Counted, not a failure.
                self.r.confirmed_orphans += 1;
                if self.p.trace {
                    let who = self.published.get(pid).copied();
                    self.r.trace.push(format!(
                        "orphan: payload {pid} (node, inc, client, seq) = {who:?}"
                    ));
                }
                continue;
            };
            for i in 0..self.n {
                let inst = &self.instances[self.inst_of[i]];
                let joined = self.cores[i]
                    .as_ref()
                    .and_then(|c| c.status().joined_at)
                    .unwrap_or(u64::MAX);
                if joined <= *op && !inst.delivered.iter().any(|(o, _)| o == op) {
                    return Err(format!(
                        "confirmed payload {pid} (op {op}) not delivered by node {i}"
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
            "view({} {:?} +{:?} -{:?})",
            v.id, v.members, v.joined, v.left
        ),
    }
}

fn short(m: &PeerMsg) -> String {
    let mut s = String::new();
    let _ = match m {
        PeerMsg::Forward { view, items } => write!(s, "Forward v{view} n={}", items.len()),
        PeerMsg::Prepare {
            view,
            first_op,
            entries,
            commit,
            trunc,
        } => {
            let es: Vec<String> = entries.iter().map(short_entry).collect();
            write!(
                s,
                "Prepare v{view} first={first_op} c={commit} t={trunc} {es:?}"
            )
        }
        PeerMsg::PrepareOk { view, op, applied } => {
            write!(s, "PrepareOk v{view} op={op} applied={applied}")
        }
        PeerMsg::Commit {
            view,
            commit,
            trunc,
        } => write!(s, "Commit v{view} c={commit} t={trunc}"),
        PeerMsg::StartViewChange { view } => write!(s, "SVC v{view}"),
        PeerMsg::DoViewChange {
            view,
            last_normal,
            log,
            commit,
            applied,
        } => write!(
            s,
            "DVC v{view} ln={last_normal} log={}..={} c={commit} a={applied}",
            log.start,
            log.op()
        ),
        PeerMsg::StartView { view, log, commit } => {
            write!(
                s,
                "StartView v{view} log={}..={} c={commit}",
                log.start,
                log.op()
            )
        }
        PeerMsg::GetState { view, op } => write!(s, "GetState v{view} op={op}"),
        PeerMsg::JoinReq {
            view,
            stopped,
            applied,
        } => write!(s, "JoinReq v{view} stopped={stopped} a={applied}"),
        PeerMsg::Recovery { nonce } => write!(s, "Recovery {nonce}"),
        PeerMsg::RecoveryResponse { nonce, view, state } => {
            let kind = match state {
                super::RecoveryState::Blank => "blank",
                super::RecoveryState::Normal {
                    leader_log: Some(_),
                } => "leader",
                super::RecoveryState::Normal { leader_log: None } => "normal",
            };
            write!(s, "RecoveryResponse {nonce} v{view} {kind}")
        }
    };
    s
}

//! One node's ordering core: what every role shares — the history it holds,
//! what it delivers, its own proposals, its links — and the inputs and
//! outputs. What only one role needs is carried by that role
//! ([`Role`]), and its behaviour lives in its own module: `leader`,
//! `follower`, `view_change`, `recovery`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::follower::Following;
use super::leader::Leading;
use super::log::Log;
use super::msg::{Entry, GroupOp, LogImage, PeerMsg, ProposalId, Publish, Stamp};
use super::recovery::Recovering;
use super::runs::Runs;
use super::state::State;
use super::view_change::{Changing, Want};
use super::{Action, Config, CoreStatus, Delivered, Epoch, GroupChange, Mode, NodeId, Refusal};

/// The history this node holds.
#[derive(Debug)]
pub(super) struct Replica {
    /// A new instance that has not yet taken any state: it may have lost
    /// what its previous incarnation held, so it never counts as holding
    /// a history.
    pub blank: bool,
    /// Epochs this instance held and left for another, with the highest
    /// view it reached in each: it never takes that epoch's history again at
    /// or below that view. So within one epoch a replica's view only grows,
    /// as VR's safety argument needs, even across switches of history (at
    /// most [`MAX_LEFT`] epochs, the lowest forgotten first).
    pub left: BTreeMap<Epoch, u64>,
    /// The last view it was normal in.
    pub stamp: Stamp,
    pub log: Log,
    /// Replicated state before `log.start()`.
    pub base: State,
    /// Replicated state after `applied`.
    pub state: State,
    pub commit: u64,
    pub applied: u64,
}

impl Replica {
    /// The epoch of the log held (its last View's, else the base's).
    pub fn epoch(&self) -> Epoch {
        match self.log.last_view() {
            Some((_, Entry::View(v))) => v.epoch,
            _ => self.base.epoch,
        }
    }

    pub fn image(&self) -> LogImage {
        self.log.image(&self.base)
    }

    /// Latest membership view in the log (committed or not).
    pub fn latest_view(&self) -> (u64, BTreeSet<NodeId>) {
        match self.log.last_view() {
            Some((_, Entry::View(v))) => (v.id, v.members.iter().copied().collect()),
            _ => (self.base.view_id, self.base.members.clone()),
        }
    }
}

/// Publishers whose last delivered seq a node remembers.
pub(super) const FIFO_PUBLISHERS: usize = 16_384;

/// Epochs an instance remembers having left.
pub(super) const MAX_LEFT: usize = 1024;

/// What this node delivers to its clients.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    /// Member since a View that listed it as joined, with no gap since.
    pub delivering: bool,
    pub stopped_at: u64,
    pub joined_at: Option<u64>,
    /// It left a history it had delivered from for another: the View that
    /// admits it next tells its clients messages may be missing.
    pub switched: bool,
    /// Proposals delivered in this history.
    pub delivered: Runs,
    /// Proposals delivered in histories it left: not delivered again.
    pub seen: Runs,
    /// Per publisher (origin, incarnation, client), the highest seq its
    /// subscribers got (at most [`FIFO_PUBLISHERS`], then forgotten at once).
    pub last_seq: HashMap<(NodeId, u64, u64), u64>,
    /// The same, for the histories it left: an earlier message of such a
    /// publisher is not delivered after a later one (it is among what the
    /// `lost` view says may be missing).
    pub fifo: HashMap<(NodeId, u64, u64), u64>,
    /// How far it applied each epoch it went through (at most
    /// [`MAX_LEFT`]): a View of a history it takes later that it had already
    /// passed (the two histories share it) does not admit it again.
    pub passed: BTreeMap<Epoch, u64>,
}

/// This node's own proposals.
#[derive(Debug, Default)]
pub(super) struct Origin {
    /// Unconfirmed, in pseq order.
    pub outq: VecDeque<Entry>,
    pub next_pseq: u64,
    /// Highest pseq sent to the current leader.
    pub fwd_upto: u64,
    pub progress_at: u64,
    /// Highest pseq confirmed (committed in this node's history).
    pub confirmed: u64,
    pub local_groups: BTreeMap<(String, String), u64>,
}

impl Origin {
    /// Proposals not yet sent to the current leader, in pseq order.
    pub fn unsent(&self) -> Vec<Entry> {
        let fwd = self.fwd_upto;
        self.outq
            .iter()
            .filter(|e| e.proposal().is_some_and(|id| id.pseq > fwd))
            .cloned()
            .collect()
    }
}

/// The role and the state only it needs.
#[derive(Debug)]
pub(super) enum Role {
    Recovering(Recovering),
    ViewChange(Changing),
    Leader(Leading),
    Follower(Following),
}

/// One node's ordering core. See the module docs of [`crate::order`].
#[derive(Debug)]
pub struct Core {
    pub(super) cfg: Config,
    pub(super) n: usize,
    pub(super) me: NodeId,
    pub(super) now: u64,
    /// VR view number: the view it is normal in, or changing to.
    pub(super) view: u64,
    pub(super) role: Role,
    /// A move to a higher view this node voted for, not yet agreed.
    pub(super) want: Option<Want>,
    pub(super) rep: Replica,
    pub(super) dl: Delivery,
    pub(super) origin: Origin,
    /// Link to each peer up (as the transport says).
    pub(super) up: Vec<bool>,
    /// Highest incarnation seen from each peer: older ones are dead.
    pub(super) peer_inc: Vec<u64>,
    /// Until this tick, a link down does not by itself make a peer
    /// unreachable (see [`Core::resume`]).
    pub(super) resume_grace: u64,
    pub(super) recovery_rounds: u64,
    /// Tick of the last state request (at most one per tick).
    pub(super) getstate_at: Option<u64>,
    pub(super) out: VecDeque<Action>,
    pub(super) ignored: u64,
    pub(super) view_changes: u64,
}

impl Core {
    /// A fresh instance holds nothing: with no disk it cannot tell a cluster
    /// start from a restart, so it asks its peers (VR-R recovery) and, if no
    /// live view answers, takes part in forming one.
    pub fn new(cfg: Config) -> Self {
        let n = cfg.peers.len().max(1);
        let me = cfg.me;
        let mut c = Core {
            n,
            me,
            now: 0,
            view: 0,
            role: Role::Recovering(Recovering::default()),
            want: None,
            rep: Replica {
                blank: true,
                left: BTreeMap::new(),
                stamp: Stamp::default(),
                log: Log::new(),
                base: State::default(),
                state: State::default(),
                commit: 0,
                applied: 0,
            },
            dl: Delivery::default(),
            origin: Origin {
                next_pseq: 1,
                ..Origin::default()
            },
            up: vec![false; n],
            peer_inc: vec![0; n],
            resume_grace: 0,
            recovery_rounds: 0,
            getstate_at: None,
            out: VecDeque::new(),
            ignored: 0,
            view_changes: 0,
            cfg,
        };
        if (me as usize) < n {
            c.up[me as usize] = true;
        }
        c.start_recovery();
        c
    }

    pub(super) fn majority(&self) -> usize {
        self.n / 2 + 1
    }

    /// Replicas that meet every majority: n − majority + 1.
    pub(super) fn witnesses(&self) -> usize {
        self.n - self.majority() + 1
    }

    /// The leader of VR view `view`.
    pub fn leader_of(&self, view: u64) -> NodeId {
        (view % self.n as u64) as NodeId
    }

    pub(super) fn suspect(&self) -> u64 {
        u64::from(self.cfg.suspect_after_ticks.max(1))
    }

    pub(super) fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    pub(super) fn send(&mut self, to: NodeId, msg: PeerMsg) {
        if to != self.me && (to as usize) < self.n {
            self.out.push_back(Action::Send { to, msg });
        }
    }

    pub(super) fn send_all(&mut self, msg: PeerMsg) {
        for p in 0..self.n as NodeId {
            if p != self.me {
                self.send(p, msg.clone());
            }
        }
    }

    // ---------------------------------------------------------------- API

    /// Next queued action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// Drains every queued action.
    pub fn take_actions(&mut self) -> Vec<Action> {
        self.out.drain(..).collect()
    }

    fn next_id(&mut self) -> ProposalId {
        let id = ProposalId {
            origin: self.me,
            incarnation: self.cfg.incarnation,
            pseq: self.origin.next_pseq,
        };
        self.origin.next_pseq += 1;
        id
    }

    /// Whether this node orders publishes now: normal in a view it does not
    /// suspect, a delivering member of a membership view with a majority.
    pub(super) fn accepts_publishes(&self) -> bool {
        matches!(self.role, Role::Leader(_) | Role::Follower(_))
            && self.want.is_none()
            && self.dl.delivering
            && self.rep.state.members.len() >= self.majority()
    }

    /// A client publish. Refused with `NoQuorum` unless this node is in a
    /// normal view of a primary component and a delivering member of it;
    /// else queued until committed, then confirmed with [`Action::Confirm`].
    pub fn publish(
        &mut self,
        client: u64,
        seq: u64,
        subject: String,
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
    ) {
        if !self.accepts_publishes() {
            // So a confirmed publish always comes from a member of its view.
            self.out.push_back(Action::Refuse {
                client,
                seq,
                reason: Refusal::NoQuorum,
            });
            return;
        }
        let id = self.next_id();
        if self.origin.outq.is_empty() {
            self.origin.progress_at = self.now;
        }
        self.origin.outq.push_back(Entry::Publish(Arc::new(Publish {
            id,
            client,
            seq,
            subject,
            reply,
            headers,
            payload,
        })));
    }

    /// A local client joins a group. Never refused: remembered locally and
    /// proposed (again after a re-admission) until the replicated state has it.
    pub fn join(&mut self, client: u64, member: String, group: String) {
        self.origin
            .local_groups
            .insert((member.clone(), group.clone()), client);
        self.propose_group(true, client, member, group);
    }

    /// A local client leaves a group.
    pub fn leave(&mut self, client: u64, member: String, group: String) {
        self.origin
            .local_groups
            .remove(&(member.clone(), group.clone()));
        self.propose_group(false, client, member, group);
    }

    /// A local client disconnected: leave all its groups. Its unconfirmed
    /// publishes still get ordered.
    pub fn client_gone(&mut self, client: u64) {
        let gone: Vec<(String, String)> = self
            .origin
            .local_groups
            .iter()
            .filter(|(_, c)| **c == client)
            .map(|(k, _)| k.clone())
            .collect();
        for (member, group) in gone {
            self.leave(client, member, group);
        }
    }

    pub(super) fn propose_group(&mut self, join: bool, client: u64, member: String, group: String) {
        let id = self.next_id();
        let g = Arc::new(GroupOp {
            id,
            client,
            member,
            group,
        });
        if self.origin.outq.is_empty() {
            self.origin.progress_at = self.now;
        }
        self.origin.outq.push_back(if join {
            Entry::Join(g)
        } else {
            Entry::Leave(g)
        });
    }

    /// The link to `p` is (re)established.
    pub fn peer_up(&mut self, p: NodeId) {
        if !self.valid_peer(p) {
            return;
        }
        self.up[p as usize] = true;
        if let Some(w) = &self.want {
            let msg = w.vote();
            self.send(p, msg);
        }
        match &mut self.role {
            Role::Recovering(r) => {
                let nonce = r.nonce;
                self.send(p, PeerMsg::Recovery { nonce });
            }
            Role::ViewChange(_) => self.resend_dvc(p),
            Role::Leader(l) => {
                l.sent_op[p as usize] = l.match_op[p as usize];
                l.heard[p as usize] = self.now;
            }
            Role::Follower(_) => {
                if p == self.leader_of(self.view) {
                    self.origin.fwd_upto = 0;
                }
            }
        }
    }

    /// The link to `p` broke; messages in flight on it are lost.
    pub fn peer_down(&mut self, p: NodeId) {
        if !self.valid_peer(p) {
            return;
        }
        self.up[p as usize] = false;
        if matches!(self.role, Role::Follower(_)) && p == self.leader_of(self.view) {
            self.origin.fwd_upto = 0;
        }
    }

    pub(super) fn valid_peer(&mut self, p: NodeId) -> bool {
        let ok = (p as usize) < self.n && p != self.me;
        if !ok {
            self.ignored += 1;
        }
        ok
    }

    /// The node did not run for a while (the process was stopped — SIGSTOP,
    /// a VM pause — or starved of CPU), as the daemon sees from a tick timer
    /// that fired late; call it before that tick, and give the core one tick
    /// for the whole gap, not a burst of the ticks missed. Silence is judged
    /// only over time the node was running: what it did not read meanwhile
    /// is no evidence against its peers (their messages wait in its sockets).
    /// So the silence clocks restart now, and for `suspect_after_ticks` a
    /// link that is down does not make a leader drop that member or step
    /// down: its peers may have closed it because *it* was silent, and
    /// redial. Timers only ever decide liveness, never safety.
    pub fn resume(&mut self) {
        let now = self.now;
        self.resume_grace = now + self.suspect();
        match &mut self.role {
            Role::Follower(f) => f.leader_heard = now,
            Role::Leader(l) => {
                l.heard.iter_mut().for_each(|h| *h = now);
                l.applied_at.iter_mut().for_each(|h| *h = now);
            }
            Role::ViewChange(c) => c.since = now,
            Role::Recovering(r) => r.sent_at = now,
        }
    }

    /// One tick of the failure-detector clock (driven by the daemon).
    pub fn tick(&mut self) {
        self.now += 1;
        match self.role {
            Role::Recovering(_) => self.recovery_tick(),
            Role::ViewChange(_) => self.view_change_tick(),
            Role::Leader(_) => self.leader_tick(),
            Role::Follower(_) => self.follower_tick(),
        }
        self.want_tick();
        let s = self.suspect();
        if !self.origin.outq.is_empty() && self.now.saturating_sub(self.origin.progress_at) > s {
            // No confirm for a while: resend everything unconfirmed.
            self.origin.fwd_upto = 0;
            self.origin.progress_at = self.now;
        }
        self.flush();
    }

    /// Sends what is batched: forwards to the leader, or (leader) prepares
    /// and commits to followers. Call after each batch of input events.
    pub fn flush(&mut self) {
        match self.role {
            Role::Leader(_) => self.leader_flush(),
            Role::Follower(_) => self.follower_flush(),
            _ => {}
        }
    }

    /// Status snapshot for `$MSGC.STATUS` and tests.
    pub fn status(&self) -> CoreStatus {
        let normal = matches!(self.role, Role::Leader(_) | Role::Follower(_));
        let lag = match &self.role {
            Role::Leader(l) => (0..self.n as NodeId)
                .filter(|&p| p != self.me)
                .map(|p| {
                    (
                        p,
                        self.rep.commit.saturating_sub(l.acked_applied[p as usize]),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        CoreStatus {
            mode: match self.role {
                Role::Recovering(_) => Mode::Recovering,
                Role::ViewChange(_) => Mode::ViewChange,
                Role::Leader(_) | Role::Follower(_) => Mode::Normal,
            },
            epoch: self.rep.epoch(),
            vr_view: self.view,
            leader: normal.then(|| self.leader_of(self.view)),
            suspecting: self.want.is_some(),
            holds_state: !self.rep.blank,
            view_id: self.rep.state.view_id,
            members: self.rep.state.members.iter().copied().collect(),
            delivering: self.dl.delivering,
            joined_at: self.dl.joined_at,
            op: self.rep.log.op(),
            commit: self.rep.commit,
            applied: self.rep.applied,
            log_start: self.rep.log.start(),
            log_len: self.rep.log.len(),
            pending: self.origin.outq.len(),
            lag,
            ignored: self.ignored,
            view_changes: self.view_changes,
        }
    }

    /// The replicated state after the last applied op.
    pub fn state(&self) -> &State {
        &self.rep.state
    }

    // ------------------------------------------------------ messages

    /// A message from peer `from`, whose incarnation `inc` sent it. Messages
    /// of an incarnation older than one already seen come from a process
    /// that is gone and are dropped; a newer one means the peer restarted
    /// (and lost its state). Unexpected or stale messages are counted in
    /// `status().ignored` and otherwise dropped.
    pub fn on_message(&mut self, from: NodeId, inc: u64, msg: PeerMsg) {
        if !self.valid_peer(from) {
            return;
        }
        let p = from as usize;
        if inc < self.peer_inc[p] {
            self.ignored += 1;
            return;
        }
        if inc > self.peer_inc[p] {
            let restarted = self.peer_inc[p] != 0;
            self.peer_inc[p] = inc;
            if restarted {
                self.peer_restarted(from);
            }
        }
        match msg {
            PeerMsg::StartViewChange { view, moved, join } => self.on_vote(from, view, moved, join),
            PeerMsg::DoViewChange { view, state } => self.on_dvc(from, inc, view, state),
            PeerMsg::StartView { view, log, commit } => {
                self.on_start_view(from, inc, view, log, commit)
            }
            PeerMsg::Recovery { nonce } => self.on_recovery(from, nonce),
            PeerMsg::RecoveryResponse { nonce, view, state } => {
                self.on_recovery_response(from, inc, nonce, view, state)
            }
            PeerMsg::Forward {
                epoch,
                view,
                after,
                items,
            } => self.on_forward(from, epoch, view, after, items),
            PeerMsg::Prepare {
                epoch,
                view,
                first_op,
                entries,
                commit,
                trunc,
            } => self.on_prepare(from, inc, epoch, view, first_op, entries, commit, trunc),
            PeerMsg::Commit {
                epoch,
                view,
                commit,
                trunc,
            } => self.on_prepare(from, inc, epoch, view, 0, Vec::new(), commit, trunc),
            PeerMsg::PrepareOk { view, op, applied } => self.on_prepare_ok(from, view, op, applied),
            PeerMsg::GetState { view } => self.on_get_state(from, view),
            PeerMsg::JoinReq {
                view,
                stopped,
                applied,
            } => self.on_join_req(from, view, stopped, applied),
        }
    }

    /// `p` runs a new incarnation: whatever its old one held or promised is
    /// gone. A follower whose leader restarted suspects its view at once.
    fn peer_restarted(&mut self, p: NodeId) {
        let me_leader = self.leader_of(self.view);
        match &mut self.role {
            Role::Leader(l) => l.forget(p as usize),
            Role::Follower(_) if p == me_leader => self.suspect_view(),
            Role::ViewChange(c) => {
                c.dvc.remove(&p);
            }
            Role::Recovering(r) => {
                r.answers.remove(&p);
            }
            Role::Follower(_) => {}
        }
    }

    // ------------------------------------------------ applying history

    /// Becomes normal in `view` (leader or follower of it).
    pub(super) fn enter_normal(&mut self, view: u64, leader_inc: u64) {
        self.view_changes += 1;
        self.view = view;
        self.rep.stamp = Stamp { view, leader_inc };
        if self.want.as_ref().is_some_and(|w| w.view <= view) {
            self.want = None;
        }
        self.origin.fwd_upto = 0;
    }

    /// Takes a log image (StartView, state transfer, recovery, or the
    /// chosen log of a view change). Within the history this node has
    /// delivered from, it keeps its place; a node whose place is below the
    /// image's base jumps to the base and stops delivering until re-admitted
    /// (never skipping silently). An image of another history (another
    /// epoch at this node's applied op) replaces everything: the node stops
    /// delivering, remembers what it applied so it never delivers a proposal
    /// twice, and its next admission tells its clients messages may be
    /// missing.
    pub(super) fn adopt(&mut self, img: LogImage, commit: u64) {
        let (old, new) = (self.rep.epoch(), img.epoch());
        if !self.rep.blank && old != new {
            let top = self.rep.left.entry(old).or_insert(0);
            *top = (*top).max(self.view);
            if self.rep.left.len() > MAX_LEFT {
                self.rep.left.pop_first();
            }
        }
        // The same history as ours at our applied point: its epoch there is
        // ours (or, when the image starts past that point, its base is of
        // our epoch — what we applied is committed there, and committed
        // prefixes agree within an epoch).
        let same = !self.rep.blank
            && img.epoch_at(self.rep.applied).unwrap_or(img.base.epoch) == self.rep.state.epoch;
        if !same {
            if self.dl.delivering {
                self.dl.switched = true;
            }
            if !self.rep.blank {
                self.pass(self.rep.state.epoch, self.rep.applied);
            }
            let delivered = std::mem::take(&mut self.dl.delivered);
            self.dl.seen.merge(&delivered);
            for (k, s) in std::mem::take(&mut self.dl.last_seq) {
                let top = self.dl.fifo.entry(k).or_insert(0);
                *top = (*top).max(s);
            }
            if self.dl.fifo.len() > FIFO_PUBLISHERS {
                self.dl.fifo.clear();
            }
            self.dl.delivering = false;
            self.rep.state = img.base.clone();
            self.rep.applied = img.start - 1;
            self.rep.commit = self.rep.applied;
            self.dl.stopped_at = self.rep.applied;
            self.settle_from_dedup();
        } else if self.rep.applied + 1 < img.start {
            self.rep.state = img.base.clone();
            self.rep.applied = img.start - 1;
            self.dl.delivering = false;
            self.dl.stopped_at = self.rep.applied;
            self.settle_from_dedup();
        }
        self.rep.blank = false;
        let (log, base) = Log::from_image(img);
        self.rep.log = log;
        self.rep.base = base;
        self.rep.commit = self
            .rep
            .commit
            .max(commit)
            .min(self.rep.log.op())
            .max(self.rep.applied);
        self.apply_committed();
    }

    fn pass(&mut self, epoch: Epoch, op: u64) {
        let top = self.dl.passed.entry(epoch).or_insert(0);
        *top = (*top).max(op);
        if self.dl.passed.len() > MAX_LEFT {
            self.dl.passed.pop_first();
        }
    }

    /// Whether this node may take the history of `epoch` at `view`: not an
    /// epoch it left at that view or a later one.
    pub(super) fn may_enter(&self, epoch: Epoch, view: u64) -> bool {
        self.entry_floor(epoch).is_none_or(|top| view > top)
    }

    /// The view at or below which this node may not take `epoch`: it left
    /// it there, or its history was re-formed from it there.
    pub(super) fn entry_floor(&self, epoch: Epoch) -> Option<u64> {
        let mut floor = self.rep.left.get(&epoch).copied();
        let mut note = |v: u64| floor = Some(floor.map_or(v, |f: u64| f.max(v)));
        if let Some(&v) = self.rep.state.ancestors.get(&epoch) {
            note(v);
        }
        // Re-formations in the log not applied yet.
        let mut cur = self.rep.state.epoch;
        for op in self.rep.applied + 1..=self.rep.log.op() {
            if let Some(Entry::View(v)) = self.rep.log.get(op) {
                if v.epoch != cur && cur == epoch {
                    note(v.epoch.formed.view);
                }
                cur = v.epoch;
            }
        }
        floor
    }

    /// Own proposals the replicated state already has are confirmed.
    fn settle_from_dedup(&mut self) {
        if let Some(&(inc, ps)) = self.rep.state.dedup.get(&self.me)
            && inc == self.cfg.incarnation
        {
            self.confirm_upto(ps);
        }
    }

    /// Apply committed ops in order: deliver (if a member), confirm (if ours).
    pub(super) fn apply_committed(&mut self) {
        while self.rep.applied < self.rep.commit {
            let Some(e) = self.rep.log.get(self.rep.applied + 1).cloned() else {
                break;
            };
            self.rep.applied += 1;
            let op = self.rep.applied;
            if let Entry::View(v) = &e
                && v.epoch != self.rep.state.epoch
            {
                let old = self.rep.state.epoch;
                self.pass(old, op - 1);
            }
            let applied = self.rep.state.apply(&e);
            let was = self.dl.delivering;
            let mut admitted = false;
            if let Entry::View(v) = &e {
                let member = v.members.contains(&self.me);
                let passed = self
                    .dl
                    .passed
                    .get(&self.rep.state.epoch)
                    .is_some_and(|&upto| op <= upto);
                if member && v.joined.contains(&self.me) && !was && !passed {
                    self.dl.delivering = true;
                    self.dl.joined_at = Some(op);
                    admitted = true;
                }
                if !member {
                    self.dl.delivering = false;
                    if was {
                        self.dl.stopped_at = op;
                    }
                }
            }
            let seen_before = match &e {
                Entry::Publish(p) => {
                    self.dl.seen.contains(p.id)
                        || self
                            .dl
                            .fifo
                            .get(&(p.id.origin, p.id.incarnation, p.client))
                            .is_some_and(|&top| p.seq <= top)
                }
                _ => e.proposal().is_some_and(|id| self.dl.seen.contains(id)),
            };
            if was || self.dl.delivering {
                if let Some(id) = e.proposal()
                    && !seen_before
                {
                    self.dl.delivered.insert(id);
                    if let Entry::Publish(p) = &e {
                        if self.dl.last_seq.len() >= FIFO_PUBLISHERS {
                            self.dl.last_seq.clear();
                        }
                        self.dl
                            .last_seq
                            .insert((id.origin, id.incarnation, p.client), p.seq);
                    }
                }
                let lost = match &e {
                    Entry::View(v) => v.lost || (admitted && self.dl.switched),
                    _ => false,
                };
                if admitted {
                    self.dl.switched = false;
                }
                let group = match &e {
                    Entry::Join(g) | Entry::Leave(g) => Some(GroupChange {
                        changed: applied.changed,
                        members: self.rep.state.group_members(&g.group),
                    }),
                    _ => None,
                };
                self.out.push_back(Action::Deliver(Delivered {
                    op,
                    epoch: self.rep.state.epoch,
                    entry: e.clone(),
                    implied_leaves: applied.implied_leaves,
                    group,
                    lost,
                    repeat: seen_before,
                    admitted: admitted.then(|| Box::new(self.rep.state.clone())),
                }));
            }
            if let Some(id) = e.proposal()
                && id.origin == self.me
                && id.incarnation == self.cfg.incarnation
            {
                self.confirm_upto(id.pseq);
            }
            if admitted {
                // Our clients' memberships were dropped when we left: re-propose.
                let missing: Vec<((String, String), u64)> = self
                    .origin
                    .local_groups
                    .iter()
                    .filter(|((m, g), _)| !self.rep.state.is_member(m, g))
                    .map(|(k, c)| (k.clone(), *c))
                    .collect();
                for ((m, g), c) in missing {
                    self.propose_group(true, c, m, g);
                }
            }
        }
    }

    pub(super) fn confirm_upto(&mut self, pseq: u64) {
        self.origin.confirmed = self.origin.confirmed.max(pseq);
        while let Some(front) = self.origin.outq.front() {
            let Some(id) = front.proposal() else { break };
            if id.pseq > pseq {
                break;
            }
            if let Some(Entry::Publish(p)) = self.origin.outq.pop_front() {
                self.out.push_back(Action::Confirm {
                    client: p.client,
                    seq: p.seq,
                });
            }
            self.origin.progress_at = self.now;
        }
    }
}

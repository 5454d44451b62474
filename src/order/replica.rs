//! The ordering state machine: Viewstamped Replication Revisited used as a
//! sequencer, plus membership (View) entries for virtual synchrony. Sans-IO:
//! inputs are method calls, outputs are queued [`Action`]s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::log::Log;
use super::msg::{Entry, GroupOp, LogImage, PeerMsg, ProposalId, Publish, RecoveryState, ViewInfo};
use super::state::State;
use super::{Action, Config, CoreStatus, Delivered, Mode, NodeId, Refusal};

/// A DoViewChange as received by the would-be leader.
#[derive(Debug, Clone)]
struct Dvc {
    last_normal: u64,
    log: LogImage,
    commit: u64,
    applied: u64,
}

/// A Prepare or Forward carries about this many bytes at most (always at
/// least one entry), so frames stay far below the link's frame limit.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One node's ordering core. See the module docs of [`crate::order`].
#[derive(Debug)]
pub struct Core {
    cfg: Config,
    n: usize,
    me: NodeId,
    now: u64,
    mode: Mode,
    /// VR view number (leader = `peers[view % n]`).
    view: u64,
    last_normal: u64,
    log: Log,
    /// Replicated state before `log.start()`.
    base: State,
    /// Replicated state after `applied`.
    state: State,
    commit: u64,
    applied: u64,
    /// Whether this node delivers to its clients (member since a View that
    /// listed it as joined, with no gap since).
    delivering: bool,
    stopped_at: u64,
    joined_at: Option<u64>,
    up: Vec<bool>,
    // Leader bookkeeping (valid while leader in `view`).
    match_op: Vec<u64>,
    acked_applied: Vec<u64>,
    /// Tick at which each member's `acked_applied` last advanced.
    applied_at: Vec<u64>,
    /// Forwarded proposals held back while a member lags (flow control).
    held: VecDeque<Entry>,
    heard: Vec<u64>,
    sent_op: Vec<u64>,
    sent_commit: u64,
    appended: BTreeMap<NodeId, (u64, u64)>,
    trunc: u64,
    // Follower bookkeeping.
    leader_heard: u64,
    /// Until this tick, a link down does not by itself make a peer
    /// unreachable: it may be one the peers closed while we were stopped
    /// (see [`Core::resume`]); silence still counts.
    resume_grace: u64,
    getstate_at: Option<u64>,
    joinreq_at: u64,
    // View change.
    vc_since: u64,
    svc: BTreeSet<NodeId>,
    dvc: BTreeMap<NodeId, Dvc>,
    dvc_sent: bool,
    /// Tick at which DoViewChanges from a majority were first in (new leader).
    dvc_quorum_at: Option<u64>,
    // Recovery.
    nonce: u64,
    nonce_ctr: u64,
    rec: BTreeMap<NodeId, (u64, RecoveryState)>,
    rec_sent: u64,
    // Origin side: this node's unconfirmed proposals, in pseq order.
    outq: VecDeque<Entry>,
    next_pseq: u64,
    fwd_upto: u64,
    progress_at: u64,
    local_groups: BTreeMap<(String, String), u64>,
    actions: VecDeque<Action>,
    ignored: u64,
    view_changes: u64,
}

impl Core {
    /// A fresh instance starts recovering: with no disk it cannot tell a
    /// cluster start from a restart, so it asks its peers (VR-R recovery).
    pub fn new(cfg: Config) -> Self {
        let n = cfg.peers.len().max(1);
        let me = cfg.me;
        let mut c = Core {
            n,
            me,
            now: 0,
            mode: Mode::Recovering,
            view: 0,
            last_normal: 0,
            log: Log::new(),
            base: State::default(),
            state: State::default(),
            commit: 0,
            applied: 0,
            delivering: false,
            stopped_at: 0,
            joined_at: None,
            up: vec![false; n],
            match_op: vec![0; n],
            acked_applied: vec![0; n],
            applied_at: vec![0; n],
            held: VecDeque::new(),
            heard: vec![0; n],
            sent_op: vec![0; n],
            sent_commit: 0,
            appended: BTreeMap::new(),
            trunc: 0,
            leader_heard: 0,
            resume_grace: 0,
            getstate_at: None,
            joinreq_at: 0,
            vc_since: 0,
            svc: BTreeSet::new(),
            dvc: BTreeMap::new(),
            dvc_sent: false,
            dvc_quorum_at: None,
            nonce: 0,
            nonce_ctr: 0,
            rec: BTreeMap::new(),
            rec_sent: 0,
            outq: VecDeque::new(),
            next_pseq: 1,
            fwd_upto: 0,
            progress_at: 0,
            local_groups: BTreeMap::new(),
            actions: VecDeque::new(),
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

    fn majority(&self) -> usize {
        self.n / 2 + 1
    }

    fn leader_of(&self, view: u64) -> NodeId {
        (view % self.n as u64) as NodeId
    }

    fn is_leader(&self) -> bool {
        self.mode == Mode::Normal && self.leader_of(self.view) == self.me
    }

    fn suspect(&self) -> u64 {
        u64::from(self.cfg.suspect_after_ticks.max(1))
    }

    fn send(&mut self, to: NodeId, msg: PeerMsg) {
        if to != self.me && (to as usize) < self.n {
            self.actions.push_back(Action::Send { to, msg });
        }
    }

    fn send_all(&mut self, msg: PeerMsg) {
        for p in 0..self.n as NodeId {
            if p != self.me {
                self.send(p, msg.clone());
            }
        }
    }

    fn image(&self) -> LogImage {
        self.log.image(&self.base)
    }

    // ---------------------------------------------------------------- API

    /// Next queued action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Drains every queued action.
    pub fn take_actions(&mut self) -> Vec<Action> {
        self.actions.drain(..).collect()
    }

    fn next_id(&mut self) -> ProposalId {
        let id = ProposalId {
            origin: self.me,
            incarnation: self.cfg.incarnation,
            pseq: self.next_pseq,
        };
        self.next_pseq += 1;
        id
    }

    /// A client publish. Refused with `NoQuorum` unless this node is in a
    /// normal view (part of a primary component) and a delivering member of
    /// the membership view; else queued until
    /// committed, then confirmed with [`Action::Confirm`].
    pub fn publish(
        &mut self,
        client: u64,
        seq: u64,
        subject: String,
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
    ) {
        if self.mode != Mode::Normal
            || !self.delivering
            || self.state.members.len() < self.majority()
        {
            // Outside the primary view (or not admitted to it yet): refuse, so a
            // confirmed publish always comes from a member of its view.
            self.actions.push_back(Action::Refuse {
                client,
                seq,
                reason: Refusal::NoQuorum,
            });
            return;
        }
        let id = self.next_id();
        if self.outq.is_empty() {
            self.progress_at = self.now;
        }
        self.outq.push_back(Entry::Publish(Arc::new(Publish {
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
        self.local_groups
            .insert((member.clone(), group.clone()), client);
        self.propose_group(true, client, member, group);
    }

    /// A local client leaves a group.
    pub fn leave(&mut self, client: u64, member: String, group: String) {
        self.local_groups.remove(&(member.clone(), group.clone()));
        self.propose_group(false, client, member, group);
    }

    /// A local client disconnected: leave all its groups. Its unconfirmed
    /// publishes still get ordered.
    pub fn client_gone(&mut self, client: u64) {
        let gone: Vec<(String, String)> = self
            .local_groups
            .iter()
            .filter(|(_, c)| **c == client)
            .map(|(k, _)| k.clone())
            .collect();
        for (member, group) in gone {
            self.leave(client, member, group);
        }
    }

    fn propose_group(&mut self, join: bool, client: u64, member: String, group: String) {
        let id = self.next_id();
        let g = Arc::new(GroupOp {
            id,
            client,
            member,
            group,
        });
        if self.outq.is_empty() {
            self.progress_at = self.now;
        }
        self.outq.push_back(if join {
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
        match self.mode {
            Mode::Recovering => self.send(p, PeerMsg::Recovery { nonce: self.nonce }),
            Mode::ViewChange => {
                self.send(p, PeerMsg::StartViewChange { view: self.view });
            }
            Mode::Normal => {
                if self.is_leader() {
                    self.sent_op[p as usize] = self.match_op[p as usize];
                    self.heard[p as usize] = self.now;
                } else if p == self.leader_of(self.view) {
                    self.fwd_upto = 0;
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
        if self.mode == Mode::Normal && !self.is_leader() && p == self.leader_of(self.view) {
            self.fwd_upto = 0;
        }
    }

    fn valid_peer(&mut self, p: NodeId) -> bool {
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
    /// So the silence clocks restart now — the leader's as a follower sees
    /// it, each peer's and each member's last progress as a leader sees them,
    /// and the view-change retry — and a resumed node waits
    /// `suspect_after_ticks` of running before it suspects anyone. For as
    /// long, a link that is down does not make a leader drop that member or
    /// step down: its peers may have closed it because *it* was silent, and
    /// redial; a peer that stays away is still dropped once silent. Timers
    /// only ever decide liveness, so this cannot affect safety.
    pub fn resume(&mut self) {
        self.leader_heard = self.now;
        self.resume_grace = self.now + self.suspect();
        self.vc_since = self.now;
        for p in 0..self.n {
            self.heard[p] = self.now;
            self.applied_at[p] = self.now;
        }
    }

    /// One tick of the failure-detector clock (driven by the daemon).
    pub fn tick(&mut self) {
        self.now += 1;
        let s = self.suspect();
        match self.mode {
            Mode::Recovering => {
                if self.now.saturating_sub(self.rec_sent) >= s {
                    self.start_recovery();
                }
            }
            Mode::ViewChange => {
                if self.now.saturating_sub(self.vc_since) > 2 * s {
                    self.start_view_change(self.view + 1);
                } else {
                    // A new leader waiting for late DoViewChanges.
                    self.check_dvc();
                }
            }
            Mode::Normal if self.is_leader() => {
                let alive = 1
                    + (0..self.n)
                        .filter(|&p| {
                            p != self.me as usize
                                && self.reachable(p)
                                && self.now.saturating_sub(self.heard[p]) <= s
                        })
                        .count();
                if alive < self.majority() {
                    // Cannot reach a majority: step down rather than accept
                    // publishes that cannot commit.
                    self.start_view_change(self.view + 1);
                    return;
                }
                self.check_members();
                if !self.delivering {
                    self.handle_join_req(self.me, self.stopped_at, self.applied);
                }
                let hb = PeerMsg::Commit {
                    view: self.view,
                    commit: self.commit,
                    trunc: self.trunc,
                };
                self.sent_commit = self.commit;
                for p in 0..self.n as NodeId {
                    if p != self.me && self.up[p as usize] {
                        self.send(p, hb.clone());
                    }
                }
            }
            Mode::Normal => {
                if self.now.saturating_sub(self.leader_heard) > s {
                    self.start_view_change(self.view + 1);
                    return;
                }
                if !self.delivering && self.now.saturating_sub(self.joinreq_at) >= 2 {
                    self.joinreq_at = self.now;
                    let leader = self.leader_of(self.view);
                    self.send(
                        leader,
                        PeerMsg::JoinReq {
                            view: self.view,
                            stopped: self.stopped_at,
                            applied: self.applied,
                        },
                    );
                }
            }
        }
        if !self.outq.is_empty() && self.now.saturating_sub(self.progress_at) > s {
            // No confirm for a while: resend everything unconfirmed.
            self.fwd_upto = 0;
            self.progress_at = self.now;
        }
        self.flush();
    }

    /// Sends what is batched: forwards to the leader, or (leader) prepares
    /// and commits to followers. Call after each batch of input events.
    pub fn flush(&mut self) {
        if self.mode != Mode::Normal {
            return;
        }
        let batch = self.cfg.max_batch.max(1);
        if self.is_leader() {
            let local: Vec<Entry> = self
                .outq
                .iter()
                .filter(|e| e.proposal().is_some_and(|id| id.pseq > self.fwd_upto))
                .cloned()
                .collect();
            // Flow control: append only while no member is half of
            // `max_backlog` behind; held forwards first (they arrived first),
            // then our own. What is left waits in `held` / `outq`.
            if self.primary_view() {
                // Each append puts the slowest member one op further behind.
                let mut room = self.room();
                while room > 0 {
                    let Some(e) = self.held.pop_front() else {
                        break;
                    };
                    self.accept(e);
                    room -= 1;
                }
                for e in local {
                    if room == 0 || !self.held.is_empty() {
                        break;
                    }
                    if let Some(id) = e.proposal() {
                        self.fwd_upto = id.pseq;
                    }
                    self.accept(e);
                    room -= 1;
                }
            }
            self.advance_commit();
            let op = self.log.op();
            for p in 0..self.n {
                if p == self.me as usize || !self.up[p] {
                    continue;
                }
                let mut from = (self.sent_op[p] + 1).max(self.log.start());
                let mut sent = false;
                while from <= op {
                    // At most `batch` entries and about MAX_BATCH_BYTES each.
                    let mut to = from;
                    let mut bytes = self.log.get(from).map_or(0, Entry::wire_size);
                    while to < op && to + 1 < from + batch as u64 {
                        let next = self.log.get(to + 1).map_or(0, Entry::wire_size);
                        if bytes + next > MAX_BATCH_BYTES {
                            break;
                        }
                        bytes += next;
                        to += 1;
                    }
                    let entries = self.log.range(from, to);
                    let msg = PeerMsg::Prepare {
                        view: self.view,
                        first_op: from,
                        entries,
                        commit: self.commit,
                        trunc: self.trunc,
                    };
                    self.send(p as NodeId, msg);
                    from = to + 1;
                    sent = true;
                }
                self.sent_op[p] = self.sent_op[p].max(op);
                if !sent && self.commit > self.sent_commit {
                    let msg = PeerMsg::Commit {
                        view: self.view,
                        commit: self.commit,
                        trunc: self.trunc,
                    };
                    self.send(p as NodeId, msg);
                }
            }
            self.sent_commit = self.commit;
        } else {
            let leader = self.leader_of(self.view);
            if !self.up[leader as usize] {
                return;
            }
            let items: Vec<Entry> = self
                .outq
                .iter()
                .filter(|e| e.proposal().is_some_and(|id| id.pseq > self.fwd_upto))
                .cloned()
                .collect();
            let mut start = 0;
            while start < items.len() {
                // At most `batch` items and about MAX_BATCH_BYTES per Forward.
                let mut end = start + 1;
                let mut bytes = items[start].wire_size();
                while end < items.len() && end - start < batch {
                    let next = items[end].wire_size();
                    if bytes + next > MAX_BATCH_BYTES {
                        break;
                    }
                    bytes += next;
                    end += 1;
                }
                let chunk = &items[start..end];
                if let Some(id) = chunk.last().and_then(Entry::proposal) {
                    self.fwd_upto = id.pseq;
                }
                self.send(
                    leader,
                    PeerMsg::Forward {
                        view: self.view,
                        items: chunk.to_vec(),
                    },
                );
                start = end;
            }
        }
    }

    /// Status snapshot for `$MSGC.STATUS` and tests.
    pub fn status(&self) -> CoreStatus {
        let leader = (self.mode == Mode::Normal).then(|| self.leader_of(self.view));
        let lag = if self.is_leader() {
            (0..self.n as NodeId)
                .filter(|&p| p != self.me)
                .map(|p| {
                    (
                        p,
                        self.commit.saturating_sub(self.acked_applied[p as usize]),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        CoreStatus {
            mode: self.mode,
            epoch: super::Epoch::default(),
            vr_view: self.view,
            leader,
            view_id: self.state.view_id,
            members: self.state.members.iter().copied().collect(),
            delivering: self.delivering,
            joined_at: self.joined_at,
            op: self.log.op(),
            commit: self.commit,
            applied: self.applied,
            log_start: self.log.start(),
            log_len: self.log.len(),
            pending: self.outq.len(),
            lag,
            ignored: self.ignored,
            view_changes: self.view_changes,
        }
    }

    /// The replicated state after the last applied op.
    pub fn state(&self) -> &State {
        &self.state
    }

    // ------------------------------------------------------ messages

    /// A message from peer `from`. Unexpected or stale messages are counted
    /// in `status().ignored` and otherwise dropped.
    pub fn on_message(&mut self, from: NodeId, _inc: u64, msg: PeerMsg) {
        if !self.valid_peer(from) {
            return;
        }
        if self.mode == Mode::Recovering {
            match msg {
                PeerMsg::Recovery { nonce } => self.send(
                    from,
                    PeerMsg::RecoveryResponse {
                        nonce,
                        view: 0,
                        state: RecoveryState::Blank,
                    },
                ),
                PeerMsg::RecoveryResponse { nonce, view, state } => {
                    self.on_recovery_response(from, nonce, view, state)
                }
                _ => self.ignored += 1,
            }
            return;
        }
        match msg {
            PeerMsg::Forward { view, items } => self.on_forward(view, items),
            PeerMsg::Prepare {
                view,
                first_op,
                entries,
                commit,
                trunc,
            } => self.on_prepare(from, view, first_op, entries, commit, trunc),
            PeerMsg::PrepareOk { view, op, applied } => self.on_prepare_ok(from, view, op, applied),
            PeerMsg::Commit {
                view,
                commit,
                trunc,
            } => self.on_prepare(from, view, 0, Vec::new(), commit, trunc),
            PeerMsg::StartViewChange { view } => self.on_svc(from, view),
            PeerMsg::DoViewChange {
                view,
                last_normal,
                log,
                commit,
                applied,
            } => self.on_dvc(
                from,
                view,
                Dvc {
                    last_normal,
                    log,
                    commit,
                    applied,
                },
            ),
            PeerMsg::StartView { view, log, commit } => self.install_view(from, view, log, commit),
            PeerMsg::GetState { .. } => {
                if self.is_leader() {
                    self.sent_op[from as usize] = self.log.op();
                    let msg = PeerMsg::StartView {
                        view: self.view,
                        log: self.image(),
                        commit: self.commit,
                    };
                    self.send(from, msg);
                } else {
                    self.ignored += 1;
                }
            }
            PeerMsg::JoinReq {
                view,
                stopped,
                applied,
            } => {
                if self.is_leader() && view == self.view {
                    self.heard[from as usize] = self.now;
                    self.handle_join_req(from, stopped, applied);
                } else {
                    self.ignored += 1;
                }
            }
            PeerMsg::Recovery { nonce } => {
                if self.commit == 0 {
                    // Never having seen a commit is as good as blank: nothing
                    // it holds was delivered or confirmed anywhere alive.
                    // Without this, a node that bootstrapped first (and is
                    // now stuck without a majority) would block the others.
                    self.send(
                        from,
                        PeerMsg::RecoveryResponse {
                            nonce,
                            view: 0,
                            state: RecoveryState::Blank,
                        },
                    );
                } else if self.mode == Mode::Normal {
                    let leader_log = self.is_leader().then(|| (self.image(), self.commit));
                    let state = RecoveryState::Normal { leader_log };
                    self.send(
                        from,
                        PeerMsg::RecoveryResponse {
                            nonce,
                            view: self.view,
                            state,
                        },
                    );
                }
            }
            PeerMsg::RecoveryResponse { .. } => self.ignored += 1,
        }
    }

    fn on_forward(&mut self, view: u64, items: Vec<Entry>) {
        if !self.is_leader() || view != self.view {
            // The origin resends to the right leader after the view change.
            self.ignored += 1;
            return;
        }
        if !self.primary_view() {
            // The origin resends once the view holds a majority again.
            return;
        }
        if self.overloaded() || !self.held.is_empty() {
            // Flow control: a member is half its backlog behind. Hold the
            // proposals (in arrival order) rather than drop that member.
            self.held.extend(items);
            return;
        }
        for e in items {
            self.accept(e);
        }
    }

    /// Leader: some member of the view is more than half of `max_backlog`
    /// ops behind the log. New proposals wait until it catches up; only a
    /// member that also stops making progress is dropped (`check_members`).
    fn overloaded(&self) -> bool {
        self.room() == 0
    }

    /// Ops that may still be appended before some member of the view is
    /// half of `max_backlog` behind.
    fn room(&self) -> u64 {
        let op = self.log.op();
        let (_, members, _) = self.latest_view();
        let worst = members
            .iter()
            .map(|&m| m as usize)
            .filter(|&p| p != self.me as usize && p < self.n && self.up[p])
            .map(|p| op.saturating_sub(self.acked_applied[p]))
            .max()
            .unwrap_or(0);
        (self.cfg.max_backlog / 2).saturating_sub(worst)
    }

    fn note_applied(&mut self, p: usize, applied: u64) {
        if applied > self.acked_applied[p] {
            self.acked_applied[p] = applied;
            self.applied_at[p] = self.now;
        }
    }

    /// Whether the latest membership view holds a majority of the configured
    /// peers: only then does the leader order proposals, so every committed
    /// publish was in a view with a majority of members (ordered traffic
    /// flows only in the primary component).
    fn primary_view(&self) -> bool {
        self.latest_view().1.len() >= self.majority()
    }

    /// Leader: append a proposal if it is the origin's next one.
    fn accept(&mut self, e: Entry) {
        let Some(id) = e.proposal() else {
            self.ignored += 1;
            return;
        };
        let next = match self.appended.get(&id.origin) {
            None => id.pseq == 1,
            Some(&(inc, ps)) if inc == id.incarnation => id.pseq == ps + 1,
            Some(&(inc, _)) => id.incarnation > inc && id.pseq == 1,
        };
        if next {
            self.appended.insert(id.origin, (id.incarnation, id.pseq));
            self.log.push(e);
        }
    }

    /// Follower: Prepare (entries non-empty) or Commit heartbeat (first_op 0).
    fn on_prepare(
        &mut self,
        from: NodeId,
        view: u64,
        first_op: u64,
        entries: Vec<Entry>,
        commit: u64,
        trunc: u64,
    ) {
        if view < self.view || from != self.leader_of(view) || self.is_leader() {
            self.ignored += 1;
            return;
        }
        if view > self.view || self.mode != Mode::Normal {
            // Behind: fetch the leader's log (VR state transfer).
            self.request_state(from, view);
            return;
        }
        self.leader_heard = self.now;
        if first_op > 0 {
            if first_op > self.log.op() + 1 {
                self.request_state(from, view);
                return;
            }
            for (i, e) in entries.into_iter().enumerate() {
                if first_op + i as u64 == self.log.op() + 1 {
                    self.log.push(e);
                }
            }
        } else if commit > self.log.op() {
            // Everything committed was sent before this heartbeat on a FIFO
            // link, so missing ops mean lost messages.
            self.request_state(from, view);
        }
        self.commit = self.commit.max(commit.min(self.log.op()));
        self.apply_committed();
        let t = trunc.min(self.applied);
        self.log.truncate(t, &mut self.base);
        self.send(
            from,
            PeerMsg::PrepareOk {
                view,
                op: self.log.op(),
                applied: self.applied,
            },
        );
    }

    fn request_state(&mut self, to: NodeId, view: u64) {
        if self.getstate_at == Some(self.now) {
            return;
        }
        self.getstate_at = Some(self.now);
        self.send(
            to,
            PeerMsg::GetState {
                view,
                op: self.log.op(),
            },
        );
    }

    fn on_prepare_ok(&mut self, from: NodeId, view: u64, op: u64, applied: u64) {
        if !self.is_leader() || view != self.view {
            self.ignored += 1;
            return;
        }
        let p = from as usize;
        self.heard[p] = self.now;
        self.match_op[p] = self.match_op[p].max(op.min(self.log.op()));
        self.note_applied(p, applied);
        self.advance_commit();
    }

    /// Leader: commit what a majority holds, apply, and compute truncation.
    fn advance_commit(&mut self) {
        if !self.is_leader() {
            return;
        }
        self.match_op[self.me as usize] = self.log.op();
        let mut m = self.match_op.clone();
        m.sort_unstable_by(|a, b| b.cmp(a));
        let k = m.get(self.majority() - 1).copied().unwrap_or(0);
        if k > self.commit {
            self.commit = k;
            self.apply_committed();
        }
        // Truncate below what every member of the committed view delivered.
        let mut t = self.applied;
        for &mb in &self.state.members {
            if mb != self.me && (mb as usize) < self.n {
                t = t.min(self.acked_applied[mb as usize]);
            }
        }
        if t > self.trunc {
            self.trunc = t;
            self.log.truncate(t, &mut self.base);
        }
    }

    /// Apply committed ops in order: deliver (if a member), confirm (if ours).
    fn apply_committed(&mut self) {
        while self.applied < self.commit {
            let Some(e) = self.log.get(self.applied + 1).cloned() else {
                break;
            };
            self.applied += 1;
            let op = self.applied;
            let implied_leaves = self.state.apply(&e);
            let was = self.delivering;
            let mut rejoined = false;
            if let Entry::View(v) = &e {
                let member = v.members.contains(&self.me);
                if member && v.joined.contains(&self.me) && !was {
                    self.delivering = true;
                    self.joined_at = Some(op);
                    rejoined = true;
                }
                if !member {
                    self.delivering = false;
                    if was {
                        self.stopped_at = op;
                    }
                }
            }
            if was || self.delivering {
                self.actions.push_back(Action::Deliver(Delivered {
                    op,
                    epoch: super::Epoch::default(),
                    entry: e.clone(),
                    implied_leaves,
                    lost: false,
                }));
            }
            if let Some(id) = e.proposal()
                && id.origin == self.me
                && id.incarnation == self.cfg.incarnation
            {
                self.confirm_upto(id.pseq);
            }
            if rejoined {
                // Our clients' memberships were dropped when we left: re-propose.
                let missing: Vec<((String, String), u64)> = self
                    .local_groups
                    .iter()
                    .filter(|((m, g), _)| !self.state.is_member(m, g))
                    .map(|(k, c)| (k.clone(), *c))
                    .collect();
                for ((m, g), c) in missing {
                    self.propose_group(true, c, m, g);
                }
            }
        }
    }

    fn confirm_upto(&mut self, pseq: u64) {
        while let Some(front) = self.outq.front() {
            let Some(id) = front.proposal() else { break };
            if id.pseq > pseq {
                break;
            }
            if let Some(Entry::Publish(p)) = self.outq.pop_front() {
                self.actions.push_back(Action::Confirm {
                    client: p.client,
                    seq: p.seq,
                });
            }
            self.progress_at = self.now;
        }
    }

    // ------------------------------------------------ membership view

    /// Latest membership view in the log (committed or not).
    fn latest_view(&self) -> (u64, BTreeSet<NodeId>, Option<u64>) {
        match self.log.last_view() {
            Some((op, Entry::View(v))) => (v.id, v.members.iter().copied().collect(), Some(op)),
            _ => (self.base.view_id, self.base.members.clone(), None),
        }
    }

    fn append_view(&mut self, members: BTreeSet<NodeId>, joined: Vec<NodeId>, left: Vec<NodeId>) {
        let (id, _, _) = self.latest_view();
        let v = ViewInfo {
            id: id + 1,
            members: members.into_iter().collect(),
            joined,
            left,
        };
        self.log.push(Entry::View(Arc::new(v)));
        self.advance_commit();
    }

    /// Leader: drop members that are unreachable, silent or too far behind.
    fn check_members(&mut self) {
        let (_, members, _) = self.latest_view();
        let s = self.suspect();
        let drop: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&m| {
                let p = m as usize;
                m != self.me
                    && (p >= self.n
                        || !self.reachable(p)
                        || self.now.saturating_sub(self.heard[p]) > s
                        || self.too_far_behind(p, s))
            })
            .collect();
        if !drop.is_empty() {
            let keep = members
                .iter()
                .copied()
                .filter(|m| !drop.contains(m))
                .collect();
            self.append_view(keep, Vec::new(), drop);
        }
    }

    /// Leader: whether peer `p`'s link counts as up (see `resume_grace`).
    fn reachable(&self, p: usize) -> bool {
        self.up[p] || self.now < self.resume_grace
    }

    /// Leader: a member more than `max_backlog` ops behind, or more than half
    /// of it behind and not applying anything for `s` ticks, is stuck.
    fn too_far_behind(&self, p: usize, s: u64) -> bool {
        let lag = self.commit.saturating_sub(self.acked_applied[p]);
        lag > self.cfg.max_backlog
            || (lag > self.cfg.max_backlog / 2 && self.now.saturating_sub(self.applied_at[p]) > s)
    }

    /// Leader: admit `from` unless a View admitting it after `stopped` is
    /// already in the log, or it is too far behind to be admitted yet.
    fn handle_join_req(&mut self, from: NodeId, stopped: u64, applied: u64) {
        let p = from as usize;
        self.note_applied(p, applied);
        if self.commit.saturating_sub(applied) > self.cfg.max_backlog / 2 {
            return;
        }
        let from_op = (stopped + 1).max(self.log.start());
        for op in from_op..=self.log.op() {
            if let Some(Entry::View(v)) = self.log.get(op)
                && v.joined.contains(&from)
                && v.members.contains(&from)
            {
                return;
            }
        }
        let (_, mut members, _) = self.latest_view();
        members.insert(from);
        self.append_view(members, vec![from], Vec::new());
    }

    // ---------------------------------------------------- view change

    fn start_view_change(&mut self, view: u64) {
        // Held proposals are resent by their origins to the next leader.
        self.held.clear();
        self.view = view;
        self.mode = Mode::ViewChange;
        self.vc_since = self.now;
        self.svc.clear();
        self.svc.insert(self.me);
        self.dvc.clear();
        self.dvc_sent = false;
        self.dvc_quorum_at = None;
        self.send_all(PeerMsg::StartViewChange { view });
        self.check_svc();
    }

    fn on_svc(&mut self, from: NodeId, view: u64) {
        if view > self.view {
            self.start_view_change(view);
        }
        if view == self.view {
            match self.mode {
                Mode::ViewChange => {
                    self.svc.insert(from);
                    self.check_svc();
                }
                Mode::Normal if self.is_leader() => {
                    // A straggler of the change that made this view.
                    let msg = PeerMsg::StartView {
                        view: self.view,
                        log: self.image(),
                        commit: self.commit,
                    };
                    self.sent_op[from as usize] = self.log.op();
                    self.send(from, msg);
                }
                _ => self.ignored += 1,
            }
        }
    }

    fn check_svc(&mut self) {
        if self.mode != Mode::ViewChange || self.dvc_sent || self.svc.len() < self.majority() {
            return;
        }
        self.dvc_sent = true;
        let d = Dvc {
            last_normal: self.last_normal,
            log: self.image(),
            commit: self.commit,
            applied: self.applied,
        };
        let leader = self.leader_of(self.view);
        if leader == self.me {
            self.dvc.insert(self.me, d);
            self.check_dvc();
        } else {
            let msg = PeerMsg::DoViewChange {
                view: self.view,
                last_normal: d.last_normal,
                log: d.log,
                commit: d.commit,
                applied: d.applied,
            };
            self.send(leader, msg);
        }
    }

    fn on_dvc(&mut self, from: NodeId, view: u64, d: Dvc) {
        if view > self.view {
            self.start_view_change(view);
        }
        if view != self.view || self.leader_of(view) != self.me {
            self.ignored += 1;
            return;
        }
        match self.mode {
            Mode::ViewChange => {
                self.dvc.insert(from, d);
                self.svc.insert(from);
                self.check_svc();
                self.check_dvc();
            }
            Mode::Normal => {
                let msg = PeerMsg::StartView {
                    view: self.view,
                    log: self.image(),
                    commit: self.commit,
                };
                self.sent_op[from as usize] = self.log.op();
                self.send(from, msg);
            }
            Mode::Recovering => self.ignored += 1,
        }
    }

    fn check_dvc(&mut self) {
        if self.mode != Mode::ViewChange || !self.dvc_sent || self.dvc.len() < self.majority() {
            return;
        }
        // VR: the log of the replica with the largest (last normal view, op).
        let mut best: Option<&Dvc> = None;
        for d in self.dvc.values() {
            if best.is_none_or(|b| (d.last_normal, d.log.op()) > (b.last_normal, b.log.op())) {
                best = Some(d);
            }
        }
        let Some(best) = best else { return };
        // VR needs only a majority, but the membership view appended below
        // keeps only the old members that took part (`become_leader`), and
        // which DoViewChanges come first is a race: a member whose link is up
        // and that was merely a little slower — e.g. busy with the view
        // change a node resuming from a pause started — would be dropped from
        // a view it belongs to, and with 3 nodes leave a 1-member view that
        // refuses publishes until it heals. So wait for the old members whose
        // link is up, for one to two ticks at most. More DoViewChanges than a
        // majority only widen the choice of VR's usual rule.
        let old: Vec<NodeId> = best
            .log
            .entries
            .iter()
            .rev()
            .find_map(|e| match e {
                Entry::View(v) => Some(v.members.clone()),
                _ => None,
            })
            .unwrap_or_else(|| best.log.base.members.iter().copied().collect());
        let missing = old.iter().any(|&p| {
            p != self.me
                && (p as usize) < self.n
                && self.up[p as usize]
                && !self.dvc.contains_key(&p)
        });
        let since = *self.dvc_quorum_at.get_or_insert(self.now);
        if missing && self.now < since + 2 {
            return;
        }
        let best = best.clone();
        let commit = self.dvc.values().map(|d| d.commit).max().unwrap_or(0);
        let dvc = std::mem::take(&mut self.dvc);
        self.adopt(best.log, commit);
        self.enter_normal(self.view);
        let participants: BTreeSet<NodeId> = dvc.keys().copied().collect();
        for (&p, d) in &dvc {
            self.acked_applied[p as usize] = d.applied;
        }
        self.become_leader(&participants);
        let msg = PeerMsg::StartView {
            view: self.view,
            log: self.image(),
            commit: self.commit,
        };
        self.send_all(msg);
        self.flush();
    }

    fn enter_normal(&mut self, view: u64) {
        if self.view != view || self.mode != Mode::Normal {
            self.view_changes += 1;
        }
        self.view = view;
        self.mode = Mode::Normal;
        self.last_normal = view;
        self.leader_heard = self.now;
        self.svc.clear();
        self.dvc.clear();
        self.dvc_sent = false;
        self.dvc_quorum_at = None;
        self.fwd_upto = 0;
    }

    /// Leader set-up after a view change (or bootstrap).
    fn become_leader(&mut self, participants: &BTreeSet<NodeId>) {
        let op = self.log.op();
        self.held.clear();
        for p in 0..self.n {
            self.applied_at[p] = self.now;
            self.match_op[p] = 0;
            self.heard[p] = self.now;
            self.sent_op[p] = op;
            if !participants.contains(&(p as NodeId)) {
                self.acked_applied[p] = 0;
            }
        }
        self.sent_commit = self.commit;
        self.trunc = self.log.start() - 1;
        self.appended = self.state.dedup.clone();
        for o in self.applied + 1..=op {
            if let Some(id) = self.log.get(o).and_then(Entry::proposal) {
                self.appended.insert(id.origin, (id.incarnation, id.pseq));
            }
        }
        let (_, old, _) = self.latest_view();
        let mut members: BTreeSet<NodeId> = old.intersection(participants).copied().collect();
        members.insert(self.me);
        let joined = if self.delivering && old.contains(&self.me) {
            Vec::new()
        } else {
            vec![self.me]
        };
        let left: Vec<NodeId> = old.difference(&members).copied().collect();
        if !joined.is_empty() || !left.is_empty() || members != old {
            self.append_view(members, joined, left);
        }
        self.advance_commit();
    }

    /// Adopt a log image (StartView, state transfer, recovery). A replica
    /// whose delivered point is below the image's base jumps to the base
    /// and stops delivering until re-admitted: it never skips silently.
    fn adopt(&mut self, img: LogImage, commit: u64) {
        if self.applied + 1 < img.start {
            self.state = img.base.clone();
            self.applied = img.start - 1;
            if self.delivering {
                self.delivering = false;
            }
            self.stopped_at = self.applied;
            if let Some(&(inc, ps)) = self.state.dedup.get(&self.me)
                && inc == self.cfg.incarnation
            {
                self.confirm_upto(ps);
            }
        }
        let (log, base) = Log::from_image(img);
        self.log = log;
        self.base = base;
        self.commit = self.commit.max(commit).min(self.log.op()).max(self.applied);
        self.apply_committed();
    }

    /// StartView (or its use as a state-transfer answer) from the leader of `view`.
    fn install_view(&mut self, from: NodeId, view: u64, img: LogImage, commit: u64) {
        if view < self.view || from != self.leader_of(view) || self.leader_of(view) == self.me {
            self.ignored += 1;
            return;
        }
        if view == self.view && self.mode == Mode::Normal && img.op() < self.log.op() {
            self.ignored += 1;
            return;
        }
        self.adopt(img, commit);
        self.enter_normal(view);
        self.send(
            from,
            PeerMsg::PrepareOk {
                view,
                op: self.log.op(),
                applied: self.applied,
            },
        );
        self.flush();
    }

    // ------------------------------------------------------- recovery

    fn start_recovery(&mut self) {
        self.nonce_ctr += 1;
        self.nonce = (self.cfg.incarnation << 20) ^ self.nonce_ctr;
        self.rec.clear();
        self.rec_sent = self.now;
        let nonce = self.nonce;
        for p in 0..self.n as NodeId {
            if p != self.me && self.up[p as usize] {
                self.send(p, PeerMsg::Recovery { nonce });
            }
        }
        self.check_recovery();
    }

    fn on_recovery_response(&mut self, from: NodeId, nonce: u64, view: u64, state: RecoveryState) {
        if nonce != self.nonce {
            self.ignored += 1;
            return;
        }
        self.rec.insert(from, (view, state));
        self.check_recovery();
    }

    fn check_recovery(&mut self) {
        let blanks = self
            .rec
            .values()
            .filter(|(_, s)| *s == RecoveryState::Blank)
            .count();
        if blanks + 1 == self.n {
            // Every configured peer is blank: a cluster start (or a total
            // loss, which without a disk looks the same). Start empty.
            self.enter_normal(0);
            self.rec.clear();
            if self.leader_of(0) == self.me {
                self.become_leader(&BTreeSet::from([self.me]));
            }
            return;
        }
        // Normal answers from enough replicas to meet every majority, and the
        // log from the leader of the latest view among them (VR-R).
        let normal: Vec<&(u64, RecoveryState)> = self
            .rec
            .values()
            .filter(|(_, s)| matches!(s, RecoveryState::Normal { .. }))
            .collect();
        if normal.len() < self.n - self.majority() + 1 {
            return;
        }
        let Some(maxv) = normal.iter().map(|(v, _)| *v).max() else {
            return;
        };
        let leader = self.leader_of(maxv);
        let Some((
            v,
            RecoveryState::Normal {
                leader_log: Some((img, commit)),
            },
        )) = self.rec.get(&leader).cloned()
        else {
            return;
        };
        if v != maxv {
            return;
        }
        self.rec.clear();
        self.adopt(img, commit);
        self.enter_normal(maxv);
    }
}

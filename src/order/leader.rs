//! The leader of a normal view: appends forwarded proposals (flow control
//! first), sends prepares and commits, counts acknowledgements, admits and
//! drops members of the membership view, and steps down when it cannot
//! hear a majority (check-quorum).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::msg::{Entry, PeerMsg, ViewInfo};
use super::replica::{Core, Role};
use super::{Epoch, NodeId};

/// A Prepare or Forward carries about this many bytes at most (always at
/// least one entry), so frames stay far below the link's frame limit.
pub(super) const MAX_BATCH_BYTES: usize = 4 << 20;

/// What only the leader keeps, per peer unless said.
#[derive(Debug)]
pub(super) struct Leading {
    /// Highest op each peer acknowledged holding.
    pub match_op: Vec<u64>,
    /// Highest op each peer applied (delivered).
    pub acked_applied: Vec<u64>,
    /// Tick at which each member's `acked_applied` last advanced.
    pub applied_at: Vec<u64>,
    /// Tick at which each peer was last heard.
    pub heard: Vec<u64>,
    /// Highest op sent to each peer.
    pub sent_op: Vec<u64>,
    pub sent_commit: u64,
    /// Forwarded proposals held back while a member lags (flow control).
    pub held: VecDeque<Entry>,
    /// Per origin, the last (incarnation, pseq) appended.
    pub appended: BTreeMap<NodeId, (u64, u64)>,
    /// Truncation point announced to followers.
    pub trunc: u64,
}

impl Leading {
    pub fn new(n: usize, now: u64, op: u64) -> Leading {
        Leading {
            match_op: vec![0; n],
            acked_applied: vec![0; n],
            applied_at: vec![now; n],
            heard: vec![now; n],
            sent_op: vec![op; n],
            sent_commit: 0,
            held: VecDeque::new(),
            appended: BTreeMap::new(),
            trunc: 0,
        }
    }

    /// Peer `p` restarted: what its old incarnation held is gone.
    pub fn forget(&mut self, p: usize) {
        self.match_op[p] = 0;
        self.acked_applied[p] = 0;
        self.heard[p] = 0;
    }
}

impl Core {
    fn leading(&mut self) -> Option<&mut Leading> {
        match &mut self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// Leader set-up once the view's log is chosen: `continuing` are the
    /// participants whose history the log continues (they keep delivering),
    /// `members` the membership view to append when it differs from the
    /// log's. `new_epoch` starts an epoch (a re-formation).
    pub(super) fn become_leader(
        &mut self,
        leader_inc: u64,
        continuing: &BTreeSet<NodeId>,
        participants: &BTreeSet<NodeId>,
        acked: &BTreeMap<NodeId, u64>,
        new_epoch: Option<(Epoch, bool)>,
    ) {
        let view = self.view;
        self.enter_normal(view, leader_inc);
        let op = self.rep.log.op();
        let mut l = Leading::new(self.n, self.now, op);
        // Participants take this log: none is behind its start (one that
        // brought no state jumps there), whatever it had applied.
        let floor = self.rep.log.start() - 1;
        for &p in participants {
            l.acked_applied[p as usize] = floor;
        }
        for (&p, &a) in acked {
            l.acked_applied[p as usize] = a.max(floor);
        }
        l.trunc = self.rep.log.start() - 1;
        l.appended = self.rep.state.dedup.clone();
        for o in self.rep.applied + 1..=op {
            if let Some(id) = self.rep.log.get(o).and_then(Entry::proposal) {
                l.appended.insert(id.origin, (id.incarnation, id.pseq));
            }
        }
        self.role = Role::Leader(l);
        let (_, old) = self.rep.latest_view();
        let me_continues = continuing.contains(&self.me) && self.dl.delivering;
        match new_epoch {
            None => {
                // The same history: old members that took part and hold it.
                let mut members: BTreeSet<NodeId> = old.intersection(continuing).copied().collect();
                members.insert(self.me);
                let joined = if me_continues && old.contains(&self.me) {
                    Vec::new()
                } else {
                    vec![self.me]
                };
                let left: Vec<NodeId> = old.difference(&members).copied().collect();
                if !joined.is_empty() || !left.is_empty() || members != old {
                    self.append_view(members, joined, left, None);
                }
            }
            Some((epoch, lost)) => {
                // A new epoch begins right after what the old one committed:
                // its first View goes there, and the proposals after it in
                // the chosen log (never committed as far as anyone here
                // knows) are ordered again after it, in the new epoch.
                let tail = self.rep.log.split_off(self.rep.commit);
                if let Role::Leader(l) = &mut self.role {
                    l.appended = self.rep.state.dedup.clone();
                    for o in self.rep.applied + 1..=self.rep.log.op() {
                        if let Some(id) = self.rep.log.get(o).and_then(Entry::proposal) {
                            l.appended.insert(id.origin, (id.incarnation, id.pseq));
                        }
                    }
                }
                // Every participant is a member; those whose history this
                // is not start delivering here.
                let mut members = participants.clone();
                members.insert(self.me);
                let joined: Vec<NodeId> = members
                    .iter()
                    .copied()
                    .filter(|p| !continuing.contains(p) || (*p == self.me && !me_continues))
                    .collect();
                let left: Vec<NodeId> = old.difference(&members).copied().collect();
                self.append_view(members, joined, left, Some((epoch, lost)));
                for e in tail {
                    if e.proposal().is_some() {
                        self.accept(e);
                    }
                }
            }
        }
        // StartView carries the log as it is now.
        let op = self.rep.log.op();
        if let Role::Leader(l) = &mut self.role {
            l.sent_op.fill(op);
        }
        self.advance_commit();
    }

    pub(super) fn append_view(
        &mut self,
        members: BTreeSet<NodeId>,
        joined: Vec<NodeId>,
        left: Vec<NodeId>,
        new_epoch: Option<(Epoch, bool)>,
    ) {
        let (id, _) = self.rep.latest_view();
        let (epoch, lost) = new_epoch.unwrap_or((self.rep.epoch(), false));
        let v = ViewInfo {
            id: id + 1,
            epoch,
            lost,
            members: members.into_iter().collect(),
            joined,
            left,
        };
        self.rep.log.push(Entry::View(Arc::new(v)));
        self.advance_commit();
    }

    pub(super) fn leader_tick(&mut self) {
        let s = self.suspect();
        let now = self.now;
        let me = self.me as usize;
        let grace = now < self.resume_grace;
        let Role::Leader(l) = &self.role else { return };
        let alive = 1
            + (0..self.n)
                .filter(|&p| {
                    p != me && (self.up[p] || grace) && now.saturating_sub(l.heard[p]) <= s
                })
                .count();
        if alive < self.majority() {
            // Cannot hear a majority: stop accepting publishes that cannot
            // commit, and vote for the next view (check-quorum).
            self.suspect_view();
        } else if self.want.is_some() {
            self.want = None;
        }
        self.check_members();
        if !self.dl.delivering {
            let (stopped, applied) = (self.dl.stopped_at, self.rep.applied);
            self.handle_join_req(self.me, stopped, applied);
        }
        let (epoch, view, commit) = (self.rep.epoch(), self.view, self.rep.commit);
        let Some(l) = self.leading() else { return };
        l.sent_commit = commit;
        let msg = PeerMsg::Commit {
            epoch,
            view,
            commit,
            trunc: l.trunc,
        };
        for p in 0..self.n as NodeId {
            if p != self.me && self.up[p as usize] {
                self.send(p, msg.clone());
            }
        }
    }

    /// Leader: appends what is queued (flow control first), commits, and
    /// sends prepares or commits to each follower.
    pub(super) fn leader_flush(&mut self) {
        let batch = self.cfg.max_batch.max(1);
        let local = self.origin.unsent();
        // Flow control: append only while no member is half of
        // `max_backlog` behind; held forwards first (they arrived first),
        // then our own. What is left waits in `held` / `outq`.
        if self.primary_view() {
            let mut room = self.room();
            while room > 0 {
                let Some(e) = self.leading().and_then(|l| l.held.pop_front()) else {
                    break;
                };
                self.accept(e);
                room -= 1;
            }
            if let Some(id) = local.first().and_then(Entry::proposal) {
                let after = self.origin.confirmed;
                self.settled(self.me, id.incarnation, after);
            }
            for e in local {
                if room == 0 || self.leading().is_some_and(|l| !l.held.is_empty()) {
                    break;
                }
                if let Some(id) = e.proposal() {
                    self.origin.fwd_upto = id.pseq;
                }
                self.accept(e);
                room -= 1;
            }
        }
        self.advance_commit();
        let op = self.rep.log.op();
        let (view, epoch, commit) = (self.view, self.rep.epoch(), self.rep.commit);
        for p in 0..self.n {
            if p == self.me as usize || !self.up[p] {
                continue;
            }
            let Role::Leader(l) = &mut self.role else {
                return;
            };
            let trunc = l.trunc;
            let mut from = (l.sent_op[p] + 1).max(self.rep.log.start());
            let mut msgs = Vec::new();
            while from <= op {
                // At most `batch` entries and about MAX_BATCH_BYTES each.
                let mut to = from;
                let mut bytes = self.rep.log.get(from).map_or(0, Entry::wire_size);
                while to < op && to + 1 < from + batch as u64 {
                    let next = self.rep.log.get(to + 1).map_or(0, Entry::wire_size);
                    if bytes + next > MAX_BATCH_BYTES {
                        break;
                    }
                    bytes += next;
                    to += 1;
                }
                msgs.push(PeerMsg::Prepare {
                    epoch,
                    view,
                    first_op: from,
                    entries: self.rep.log.range(from, to),
                    commit,
                    trunc,
                });
                from = to + 1;
            }
            l.sent_op[p] = l.sent_op[p].max(op);
            if msgs.is_empty() && commit > l.sent_commit {
                msgs.push(PeerMsg::Commit {
                    epoch,
                    view,
                    commit,
                    trunc,
                });
            }
            for m in msgs {
                self.send(p as NodeId, m);
            }
        }
        if let Some(l) = self.leading() {
            l.sent_commit = commit;
        }
    }

    pub(super) fn on_forward(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        view: u64,
        after: u64,
        items: Vec<Entry>,
    ) {
        if !self.is_leader() || view != self.view || epoch != self.rep.epoch() {
            // The origin resends to the right leader after the view change.
            self.ignored += 1;
            return;
        }
        if !self.primary_view() {
            // The origin resends once the view holds a majority again.
            return;
        }
        if let Some(id) = items.first().and_then(Entry::proposal) {
            self.settled(from, id.incarnation, after);
        }
        let held = self.leading().is_some_and(|l| !l.held.is_empty());
        if self.room() == 0 || held {
            // Flow control: a member is half its backlog behind. Hold the
            // proposals (in arrival order) rather than drop that member.
            if let Some(l) = self.leading() {
                l.held.extend(items);
            }
            return;
        }
        for e in items {
            self.accept(e);
        }
    }

    /// Ops that may still be appended before some member of the view is
    /// half of `max_backlog` behind.
    fn room(&self) -> u64 {
        let Role::Leader(l) = &self.role else {
            return 0;
        };
        let op = self.rep.log.op();
        let (_, members) = self.rep.latest_view();
        let worst = members
            .iter()
            .map(|&m| m as usize)
            .filter(|&p| p != self.me as usize && p < self.n && self.up[p])
            .map(|p| op.saturating_sub(l.acked_applied[p]))
            .max()
            .unwrap_or(0);
        (self.cfg.max_backlog / 2).saturating_sub(worst)
    }

    /// Whether the latest membership view holds a majority of the configured
    /// peers: only then does the leader order proposals, so every committed
    /// publish was in a view with a majority of members (ordered traffic
    /// flows only in the primary component).
    pub(super) fn primary_view(&self) -> bool {
        self.rep.latest_view().1.len() >= self.majority()
    }

    /// The origin `origin` (incarnation `inc`) says its proposals up to
    /// `after` are settled: committed in a history it followed. When this
    /// history lacks them (it began from incomplete state), they are lost,
    /// and the next one after them is the origin's next.
    fn settled(&mut self, origin: NodeId, inc: u64, after: u64) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let last = l.appended.entry(origin).or_insert((inc, 0));
        if (inc, after) > *last {
            *last = (inc, after);
        }
    }

    /// Appends a proposal if it is its origin's next one.
    fn accept(&mut self, e: Entry) {
        let Some(id) = e.proposal() else {
            self.ignored += 1;
            return;
        };
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let next = match l.appended.get(&id.origin) {
            None => id.pseq == 1,
            Some(&(inc, ps)) if inc == id.incarnation => id.pseq == ps + 1,
            Some(&(inc, _)) => id.incarnation > inc && id.pseq == 1,
        };
        if next {
            l.appended.insert(id.origin, (id.incarnation, id.pseq));
            self.rep.log.push(e);
        }
    }

    pub(super) fn on_prepare_ok(&mut self, from: NodeId, view: u64, op: u64, applied: u64) {
        if !self.is_leader() || view != self.view {
            self.ignored += 1;
            return;
        }
        let (now, last) = (self.now, self.rep.log.op());
        let Some(l) = self.leading() else { return };
        let p = from as usize;
        l.heard[p] = now;
        l.match_op[p] = l.match_op[p].max(op.min(last));
        if applied > l.acked_applied[p] {
            l.acked_applied[p] = applied;
            l.applied_at[p] = now;
        }
        self.advance_commit();
    }

    /// Commit what a majority holds, apply, and compute truncation.
    pub(super) fn advance_commit(&mut self) {
        let me = self.me as usize;
        let maj = self.majority();
        let op = self.rep.log.op();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.match_op[me] = op;
        let mut m = l.match_op.clone();
        m.sort_unstable_by(|a, b| b.cmp(a));
        let k = m.get(maj - 1).copied().unwrap_or(0);
        if k > self.rep.commit {
            self.rep.commit = k;
            self.apply_committed();
        }
        // Truncate below what every member of the committed view delivered.
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let mut t = self.rep.applied;
        for &mb in &self.rep.state.members {
            if mb != self.me && (mb as usize) < self.n {
                t = t.min(l.acked_applied[mb as usize]);
            }
        }
        if t > l.trunc {
            l.trunc = t;
            self.rep.log.truncate(t, &mut self.rep.base);
        }
    }

    /// Leader: drop members that are unreachable, silent or too far behind.
    fn check_members(&mut self) {
        let (_, members) = self.rep.latest_view();
        let s = self.suspect();
        let now = self.now;
        let grace = now < self.resume_grace;
        let Role::Leader(l) = &self.role else { return };
        let drop: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&m| {
                let p = m as usize;
                m != self.me
                    && (p >= self.n
                        || !(self.up[p] || grace)
                        || now.saturating_sub(l.heard[p]) > s
                        || self.too_far_behind(l, p, s))
            })
            .collect();
        if !drop.is_empty() {
            let keep = members
                .iter()
                .copied()
                .filter(|m| !drop.contains(m))
                .collect();
            self.append_view(keep, Vec::new(), drop, None);
        }
    }

    /// A member more than `max_backlog` ops behind, or more than half of it
    /// behind and not applying anything for `s` ticks, is stuck.
    fn too_far_behind(&self, l: &Leading, p: usize, s: u64) -> bool {
        let lag = self.rep.commit.saturating_sub(l.acked_applied[p]);
        lag > self.cfg.max_backlog
            || (lag > self.cfg.max_backlog / 2 && self.now.saturating_sub(l.applied_at[p]) > s)
    }

    pub(super) fn on_join_req(&mut self, from: NodeId, view: u64, stopped: u64, applied: u64) {
        if self.is_leader() && view == self.view {
            let now = self.now;
            if let Some(l) = self.leading() {
                l.heard[from as usize] = now;
            }
            self.handle_join_req(from, stopped, applied);
        } else {
            self.ignored += 1;
        }
    }

    /// Leader: admit `from` unless a View admitting it after `stopped` is
    /// already in the log, or it is too far behind to be admitted yet.
    fn handle_join_req(&mut self, from: NodeId, stopped: u64, applied: u64) {
        let now = self.now;
        let Some(l) = self.leading() else { return };
        let p = from as usize;
        if applied > l.acked_applied[p] {
            l.acked_applied[p] = applied;
            l.applied_at[p] = now;
        }
        if self.rep.commit.saturating_sub(applied) > self.cfg.max_backlog / 2 {
            return;
        }
        // Already admitted: a member of the latest view, by a View after the
        // point where it stopped delivering.
        let (_, mut members) = self.rep.latest_view();
        let from_op = (stopped + 1).max(self.rep.log.start());
        let admitted = (from_op..=self.rep.log.op()).any(|op| {
            matches!(self.rep.log.get(op), Some(Entry::View(v))
                if v.joined.contains(&from) && v.members.contains(&from))
        });
        if admitted && members.contains(&from) {
            return;
        }
        members.insert(from);
        self.append_view(members, vec![from], Vec::new(), None);
    }

    /// A straggler (a vote or DoViewChange for this view, or GetState): the
    /// leader sends its log.
    pub(super) fn send_state(&mut self, to: NodeId) {
        let op = self.rep.log.op();
        let msg = PeerMsg::StartView {
            view: self.view,
            log: self.rep.image(),
            commit: self.rep.commit,
        };
        if let Some(l) = self.leading() {
            l.sent_op[to as usize] = op;
        }
        self.send(to, msg);
    }

    pub(super) fn on_get_state(&mut self, from: NodeId, _view: u64) {
        if self.is_leader() {
            self.send_state(from);
        } else {
            self.ignored += 1;
        }
    }
}

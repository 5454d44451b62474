//! View changes: agreeing to leave a view (votes, with the stickiness of
//! Raft's pre-vote and check-quorum), DoViewChange to the new leader, its
//! choice of log and of epoch, and StartView.
//!
//! A node moves to a higher view only once a majority voted for the same
//! one; a follower that hears its leader and a leader that hears a majority
//! ignore votes, so a node cut off alone never drags the others along nor
//! climbs view numbers. A node without state (restarted) takes part in view
//! changes with an empty DoViewChange. The new leader decides, from a
//! majority of DoViewChanges:
//! - **same epoch** when the replicas that hold the best epoch's history
//!   (and count as witnesses) are at least n − majority + 1: every majority
//!   that committed anything meets one of them, so the best log has it
//!   (VR's argument);
//! - otherwise, after waiting briefly for the peers still missing, a **new
//!   epoch** from the most advanced history held, flagged `lost` unless no
//!   participant held any state (a cold start).

use std::collections::{BTreeMap, BTreeSet};

use super::follower::Following;
use super::msg::{DvcState, Entry, LogImage, PeerMsg, Stamp};
use super::replica::{Core, Role};
use super::state::State;
use super::{Epoch, NodeId};

/// A move to a higher view this node voted for, not yet agreed.
#[derive(Debug)]
pub(super) struct Want {
    pub view: u64,
    pub votes: BTreeSet<NodeId>,
    pub sent_at: u64,
    /// The epoch this node wants to take, above the view it left it at.
    pub join: Option<(Epoch, u64)>,
}

impl Want {
    pub fn vote(&self) -> PeerMsg {
        PeerMsg::StartViewChange {
            view: self.view,
            moved: false,
            join: self.join,
        }
    }
}

/// What only a node changing views keeps.
#[derive(Debug)]
pub(super) struct Changing {
    pub since: u64,
    /// New leader: DoViewChanges received (sender incarnation, state).
    pub dvc: BTreeMap<NodeId, (u64, Option<DvcState>)>,
    /// New leader: when DoViewChanges from a majority were first in.
    pub quorum_at: Option<u64>,
}

/// Ticks a new leader waits for more DoViewChanges when the ones in do not
/// yet decide (late members, peers whose link is up).
const LATE_TICKS: u64 = 2;

impl Core {
    /// Whether this node ignores votes: it follows a leader it hears, leads
    /// with a majority, or (restarted) a live leader answered its recovery.
    pub(super) fn sticky(&self) -> bool {
        if self.want.is_some() {
            return false;
        }
        match &self.role {
            Role::Follower(f) => self.now.saturating_sub(f.leader_heard) <= self.suspect(),
            Role::Leader(_) => true,
            Role::Recovering(r) => r.live_leader(),
            Role::ViewChange(_) => false,
        }
    }

    /// This node's view is dead to it: vote for the next one.
    pub(super) fn suspect_view(&mut self) {
        self.propose(self.view + 1, None);
    }

    /// A leader of `epoch` is alive but this node left that epoch at view
    /// `top` or later and may not take it back there: it asks the epoch's
    /// nodes to move above `top`.
    pub(super) fn ask_to_join(&mut self, epoch: Epoch, top: u64) {
        self.propose(self.view.max(top) + 1, Some((epoch, top)));
    }

    /// Votes for the first view from `from_view` on whose leader is this
    /// node or linked to it.
    pub(super) fn propose(&mut self, from_view: u64, join: Option<(Epoch, u64)>) {
        let n = self.n as u64;
        let v = (from_view..from_view + n)
            .find(|&v| {
                let l = self.leader_of(v);
                l == self.me || self.up[l as usize]
            })
            .unwrap_or(from_view);
        if let Some(w) = &mut self.want
            && w.view >= v
        {
            if join.is_some() && w.join != join {
                // Already voting as high: say why too, or why now (the
                // history last heard from is the one to ask to move; one
                // heard before may have no majority to grant it).
                w.join = join;
                let msg = w.vote();
                self.send_all(msg);
            }
            return;
        }
        let w = Want {
            view: v,
            votes: BTreeSet::from([self.me]),
            sent_at: self.now,
            join,
        };
        self.send_all(w.vote());
        self.want = Some(w);
        self.check_votes();
    }

    pub(super) fn on_vote(
        &mut self,
        from: NodeId,
        view: u64,
        moved: bool,
        join: Option<(Epoch, u64)>,
    ) {
        if moved && view > self.view {
            // A majority voted for `view` and the sender moved: follow it.
            self.want = None;
            self.enter_view_change(view);
            return;
        }
        if view <= self.view {
            if view == self.view && self.is_leader() {
                // A straggler still changing to this view: it missed StartView.
                self.send_state(from);
            } else {
                self.ignored += 1;
            }
            return;
        }
        // A node that left our epoch at our view or above cannot come back
        // unless we move above it: agree even if we hear our leader.
        let lets_in = join.is_some_and(|(e, top)| e == self.rep.epoch() && self.view <= top);
        if self.sticky() && !lets_in {
            self.ignored += 1;
            return;
        }
        match &mut self.want {
            Some(w) if w.view == view => {
                w.votes.insert(from);
                w.join = w.join.or(join);
            }
            Some(w) if w.view > view => return,
            _ => {
                let w = Want {
                    view,
                    votes: BTreeSet::from([self.me, from]),
                    sent_at: self.now,
                    join,
                };
                self.send_all(w.vote());
                self.want = Some(w);
            }
        }
        self.check_votes();
    }

    fn check_votes(&mut self) {
        let Some(w) = &self.want else { return };
        if w.votes.len() >= self.majority() {
            let v = w.view;
            self.want = None;
            self.enter_view_change(v);
        }
    }

    /// Repeats this node's vote every two ticks (links break and redial),
    /// and a node changing views says so again, so stragglers follow.
    pub(super) fn want_tick(&mut self) {
        let now = self.now;
        let mut msgs = Vec::new();
        if let Some(w) = &mut self.want
            && now.saturating_sub(w.sent_at) >= 2
        {
            w.sent_at = now;
            msgs.push(w.vote());
        }
        if let Role::ViewChange(c) = &self.role
            && now.saturating_sub(c.since) % 2 == 1
        {
            msgs.push(PeerMsg::StartViewChange {
                view: self.view,
                moved: true,
                join: None,
            });
        }
        for msg in msgs {
            for p in 0..self.n as NodeId {
                if p != self.me && self.up[p as usize] {
                    self.send(p, msg.clone());
                }
            }
        }
    }

    fn my_dvc(&self) -> Option<DvcState> {
        (!self.rep.blank).then(|| DvcState {
            stamp: self.rep.stamp,
            log: self.rep.image(),
            commit: self.rep.commit,
            applied: self.rep.applied,
        })
    }

    fn enter_view_change(&mut self, view: u64) {
        self.view = view;
        self.role = Role::ViewChange(Changing {
            since: self.now,
            dvc: BTreeMap::new(),
            quorum_at: None,
        });
        self.send_all(PeerMsg::StartViewChange {
            view,
            moved: true,
            join: None,
        });
        let leader = self.leader_of(view);
        let state = self.my_dvc();
        if leader == self.me {
            let inc = self.cfg.incarnation;
            if let Role::ViewChange(c) = &mut self.role {
                c.dvc.insert(self.me, (inc, state));
            }
            self.check_dvc();
        } else {
            self.send(leader, PeerMsg::DoViewChange { view, state });
        }
    }

    /// Sends our DoViewChange again when the new leader's link comes up.
    pub(super) fn resend_dvc(&mut self, p: NodeId) {
        if matches!(self.role, Role::ViewChange(_)) && self.leader_of(self.view) == p {
            let state = self.my_dvc();
            let view = self.view;
            self.send(p, PeerMsg::DoViewChange { view, state });
        }
    }

    pub(super) fn view_change_tick(&mut self) {
        let Role::ViewChange(c) = &self.role else {
            return;
        };
        if self.now.saturating_sub(c.since) > 2 * self.suspect() {
            if self.rep.blank {
                // No view formed: look for one again (and vote if none).
                self.start_recovery();
            } else {
                self.propose(self.view + 1, None);
            }
        } else {
            self.check_dvc();
        }
    }

    pub(super) fn on_dvc(&mut self, from: NodeId, inc: u64, view: u64, state: Option<DvcState>) {
        if view > self.view {
            // A majority agreed on `view` (the sender saw its votes): join.
            self.want = None;
            self.enter_view_change(view);
        }
        if view != self.view || self.leader_of(view) != self.me {
            self.ignored += 1;
            return;
        }
        match &mut self.role {
            Role::ViewChange(c) => {
                c.dvc.insert(from, (inc, state));
                self.check_dvc();
            }
            Role::Leader(_) => self.send_state(from),
            _ => self.ignored += 1,
        }
    }

    /// The new leader: decides once DoViewChanges from a majority are in
    /// and nothing more is worth waiting for.
    fn check_dvc(&mut self) {
        if self.leader_of(self.view) != self.me {
            return;
        }
        let (now, s, n, me) = (self.now, self.suspect(), self.n, self.me);
        let majority = self.majority();
        let witnesses = self.witnesses();
        let Role::ViewChange(c) = &mut self.role else {
            return;
        };
        if c.dvc.len() < majority {
            return;
        }
        let quorum_at = *c.quorum_at.get_or_insert(now);
        let waited = now.saturating_sub(quorum_at);
        let best = best_state(&c.dvc, witnesses);
        let lossless = best.is_some_and(|(_, proven)| proven);
        let best = best.map(|(d, _)| d);
        let missing_up =
            (0..n as NodeId).any(|p| p != me && self.up[p as usize] && !c.dvc.contains_key(&p));
        if lossless {
            // Old members whose link is up and whose DoViewChange is late
            // would be dropped from the membership view: wait a little.
            let old = best.map(|d| latest_members(&d.log)).unwrap_or_default();
            let late = old.iter().any(|&p| {
                p != me && (p as usize) < n && self.up[p as usize] && !c.dvc.contains_key(&p)
            });
            if late && waited < LATE_TICKS {
                return;
            }
        } else {
            if missing_up && waited < LATE_TICKS {
                return;
            }
            // Peers not heard from may hold a more complete history; give
            // them a moment (unless nobody holds any, or everyone is in).
            if best.is_some() && c.dvc.len() < n && waited < s {
                return;
            }
        }
        let dvc = std::mem::take(&mut c.dvc);
        self.complete_view_change(dvc, lossless);
    }

    fn complete_view_change(
        &mut self,
        dvc: BTreeMap<NodeId, (u64, Option<DvcState>)>,
        lossless: bool,
    ) {
        let best = best_state(&dvc, self.witnesses()).map(|(d, _)| d.clone());
        let participants: BTreeSet<NodeId> = dvc.keys().copied().collect();
        let acked: BTreeMap<NodeId, u64> = dvc
            .iter()
            .filter_map(|(&p, (_, st))| st.as_ref().map(|d| (p, d.applied)))
            .collect();
        // Whose delivered history the chosen log continues.
        let continuing: BTreeSet<NodeId> = match &best {
            None => BTreeSet::new(),
            Some(b) => dvc
                .iter()
                .filter_map(|(&p, (_, st))| {
                    let d = st.as_ref()?;
                    let theirs = d.log.epoch_at(d.applied)?;
                    (b.log.epoch_at(d.applied) == Some(theirs)).then_some(p)
                })
                .collect(),
        };
        let all_blank = best.is_none();
        let new_epoch = (!lossless).then(|| {
            let n = dvc
                .values()
                .filter_map(|(_, st)| st.as_ref().map(|d| d.log.epoch().n))
                .chain([self.rep.epoch().n])
                .max()
                .unwrap_or(0);
            let tag = dvc
                .values()
                .map(|(inc, _)| *inc)
                .chain([self.cfg.incarnation])
                .max()
                .unwrap_or(0);
            let formed = Stamp {
                view: self.view,
                leader_inc: self.cfg.incarnation,
            };
            (
                Epoch {
                    n: n + 1,
                    tag,
                    formed,
                },
                !all_blank,
            )
        });
        match best {
            Some(b) => {
                let epoch = b.log.epoch();
                let commit = dvc
                    .values()
                    .filter_map(|(_, st)| st.as_ref())
                    .filter(|d| d.log.epoch() == epoch)
                    .map(|d| d.commit)
                    .max()
                    .unwrap_or(b.commit);
                self.adopt(b.log, commit);
            }
            None => {
                let empty = LogImage {
                    base: State::default(),
                    start: 1,
                    entries: Vec::new(),
                };
                self.adopt(empty, 0);
            }
        }
        let inc = self.cfg.incarnation;
        self.become_leader(inc, &continuing, &participants, &acked, new_epoch);
        let msg = PeerMsg::StartView {
            view: self.view,
            log: self.rep.image(),
            commit: self.rep.commit,
        };
        self.send_all(msg);
        self.flush();
    }

    /// StartView from the leader of `view` (incarnation `inc`): the result
    /// of a view change, or the answer to a state request.
    pub(super) fn on_start_view(
        &mut self,
        from: NodeId,
        inc: u64,
        view: u64,
        log: LogImage,
        commit: u64,
    ) {
        if from != self.leader_of(view) {
            self.ignored += 1;
            return;
        }
        let mine = self.rep.epoch();
        let theirs = log.epoch();
        let take = self.may_enter(theirs, view)
            && match &self.role {
                // The view change we took part in (blank or not).
                Role::ViewChange(_) if view == self.view => true,
                // A node without state takes none but from a view change it
                // took part in or from recovery.
                _ if self.rep.blank => false,
                Role::Recovering(_) => false,
                _ if theirs == mine && view > self.view => true,
                Role::Follower(_) | Role::Leader(_) if theirs == mine && view == self.view => {
                    inc > self.rep.stamp.leader_inc
                        || (inc == self.rep.stamp.leader_inc && log.op() >= self.rep.log.op())
                }
                _ => false,
            };
        if !take {
            if theirs != mine && !self.rep.blank && !self.sticky() && self.may_enter(theirs, view) {
                // Another history, from a view change this node took no
                // part in: only a view change with its nodes may merge it
                // (see `on_prepare`).
                self.ask_to_join(theirs, view);
                return;
            }
            self.ignored += 1;
            return;
        }
        self.adopt(log, commit);
        self.view = view;
        self.enter_normal(view, inc);
        self.role = Role::Follower(Following::new(self.now));
        self.send_prepare_ok(from, view);
        self.flush();
    }
}

/// The history a view change continues, and whether it is proven complete:
/// the best state of an epoch held by at least `witnesses` participants
/// (n minus a majority, plus one: every majority that committed anything
/// in it meets one of them, so the best log has it — VR's argument) if
/// there is one, so one stale node with another history never outweighs
/// the history a majority holds; else the most advanced state held, by
/// (epoch, last normal view, op).
fn best_state(
    dvc: &BTreeMap<NodeId, (u64, Option<DvcState>)>,
    witnesses: usize,
) -> Option<(&DvcState, bool)> {
    fn rank(d: &DvcState) -> (super::Epoch, super::Stamp, u64) {
        (d.log.epoch(), d.stamp, d.log.op())
    }
    let states: Vec<&DvcState> = dvc.values().filter_map(|(_, st)| st.as_ref()).collect();
    let held = |e| states.iter().filter(|o| o.log.epoch() == e).count();
    let proven = states
        .iter()
        .copied()
        .filter(|d| held(d.log.epoch()) >= witnesses)
        .max_by_key(|d| rank(d));
    match proven {
        Some(d) => Some((d, true)),
        None => states
            .into_iter()
            .max_by_key(|d| rank(d))
            .map(|d| (d, false)),
    }
}

/// The members of the latest membership view in a log.
fn latest_members(l: &LogImage) -> Vec<NodeId> {
    l.entries
        .iter()
        .rev()
        .find_map(|e| match e {
            Entry::View(v) => Some(v.members.clone()),
            _ => None,
        })
        .unwrap_or_else(|| l.base.members.iter().copied().collect())
}

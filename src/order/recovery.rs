//! Recovery of a restarted node (VR Revisited §4.3, without a disk): it
//! asks every peer; once enough replicas to meet every majority (n minus a
//! majority, plus one) answered as normal in one epoch, including the leader
//! of the highest view among them, it takes that leader's log. When a majority
//! answered and no live leader is among them, there is no view to recover
//! from: it votes for a new one and takes part with an empty DoViewChange.

use std::collections::BTreeMap;

use super::follower::Following;
use super::msg::{PeerMsg, RecoveryState};
use super::replica::{Core, Role};
use super::{Epoch, NodeId};

/// What only a recovering node keeps.
#[derive(Debug, Default)]
pub(super) struct Recovering {
    pub nonce: u64,
    pub sent_at: u64,
    /// Answers to the current nonce: (sender incarnation, view, state).
    pub answers: BTreeMap<NodeId, (u64, u64, RecoveryState)>,
}

impl Recovering {
    /// Whether the leader of a normal view answered this round.
    pub fn live_leader(&self) -> bool {
        self.answers.values().any(|(_, _, s)| {
            matches!(
                s,
                RecoveryState::Normal {
                    leader_log: Some(_),
                    ..
                }
            )
        })
    }
}

impl Core {
    pub(super) fn start_recovery(&mut self) {
        self.recovery_rounds += 1;
        let nonce = (self.cfg.incarnation << 20) ^ self.recovery_rounds;
        self.role = Role::Recovering(Recovering {
            nonce,
            sent_at: self.now,
            answers: BTreeMap::new(),
        });
        for p in 0..self.n as NodeId {
            if p != self.me && self.up[p as usize] {
                self.send(p, PeerMsg::Recovery { nonce });
            }
        }
        self.check_recovery();
    }

    pub(super) fn recovery_tick(&mut self) {
        let Role::Recovering(r) = &self.role else {
            return;
        };
        if self.now.saturating_sub(r.sent_at) >= self.suspect() {
            self.start_recovery();
        }
    }

    /// Answers a peer's `Recovery` with what this node is.
    pub(super) fn on_recovery(&mut self, from: NodeId, nonce: u64) {
        let state = if self.rep.blank {
            RecoveryState::Blank
        } else {
            match &self.role {
                Role::Leader(_) if self.want.is_none() => RecoveryState::Normal {
                    epoch: self.rep.epoch(),
                    leader_log: Some((self.rep.image(), self.rep.commit)),
                },
                Role::Follower(_) if self.sticky() => RecoveryState::Normal {
                    epoch: self.rep.epoch(),
                    leader_log: None,
                },
                _ => RecoveryState::Stuck,
            }
        };
        let view = self.view;
        self.send(from, PeerMsg::RecoveryResponse { nonce, view, state });
    }

    pub(super) fn on_recovery_response(
        &mut self,
        from: NodeId,
        inc: u64,
        nonce: u64,
        view: u64,
        state: RecoveryState,
    ) {
        match &mut self.role {
            Role::Recovering(r) if r.nonce == nonce => {
                r.answers.insert(from, (inc, view, state));
                self.check_recovery();
            }
            _ => self.ignored += 1,
        }
    }

    fn check_recovery(&mut self) {
        let Role::Recovering(r) = &self.role else {
            return;
        };
        // Normal answers per epoch: how many, and their highest view. Views
        // are agreed within one epoch only, so witnesses must share it.
        let mut normal: BTreeMap<Epoch, (usize, u64)> = BTreeMap::new();
        for (_, v, s) in r.answers.values() {
            if let RecoveryState::Normal { epoch, .. } = s {
                let e = normal.entry(*epoch).or_default();
                e.0 += 1;
                e.1 = e.1.max(*v);
            }
        }
        let proven = normal
            .iter()
            .rev()
            .find(|(_, (k, _))| *k >= self.witnesses())
            .map(|(&e, &(_, v))| (e, v));
        if let Some((epoch, maxv)) = proven {
            let leader = self.leader_of(maxv);
            if let Some((
                inc,
                v,
                RecoveryState::Normal {
                    epoch: theirs,
                    leader_log: Some((img, commit)),
                },
            )) = r.answers.get(&leader).cloned()
                && v == maxv
                && theirs == epoch
            {
                self.adopt(img, commit);
                self.view = maxv;
                self.enter_normal(maxv, inc);
                self.role = Role::Follower(Following::new(self.now));
                return;
            }
        }
        // No view to recover from: a majority answered (counting this
        // node) and no live leader among them.
        if r.answers.len() + 1 >= self.majority() && !r.live_leader() {
            let highest = r.answers.values().map(|(_, v, _)| *v).max().unwrap_or(0);
            self.propose(highest.max(self.view) + 1, None);
        }
    }
}

//! A follower of a normal view: forwards this node's proposals to the
//! leader, appends what the leader prepares, applies what it commits, asks
//! to be admitted to the membership view, and suspects a silent leader.
//! A replica behind (a gap, a later view, another history) fetches the
//! leader's log (state transfer).

use super::leader::MAX_BATCH_BYTES;
use super::msg::{Entry, PeerMsg};
use super::replica::{Core, Role};
use super::{Epoch, NodeId};

/// What only a follower keeps.
#[derive(Debug)]
pub(super) struct Following {
    /// Tick at which the leader was last heard.
    pub leader_heard: u64,
    pub joinreq_at: u64,
}

impl Following {
    pub fn new(now: u64) -> Following {
        Following {
            leader_heard: now,
            joinreq_at: 0,
        }
    }
}

impl Core {
    pub(super) fn follower_tick(&mut self) {
        let s = self.suspect();
        let now = self.now;
        let leader = self.leader_of(self.view);
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        if now.saturating_sub(f.leader_heard) > s {
            self.suspect_view();
            return;
        }
        if !self.dl.delivering && now.saturating_sub(f.joinreq_at) >= 2 {
            f.joinreq_at = now;
            let msg = PeerMsg::JoinReq {
                view: self.view,
                stopped: self.dl.stopped_at,
                applied: self.rep.applied,
            };
            self.send(leader, msg);
        }
    }

    /// Forwards this node's unsent proposals to the leader, batched.
    pub(super) fn follower_flush(&mut self) {
        let leader = self.leader_of(self.view);
        if !self.up[leader as usize] {
            return;
        }
        let batch = self.cfg.max_batch.max(1);
        let items = self.origin.unsent();
        let (epoch, view, after) = (self.rep.epoch(), self.view, self.origin.confirmed);
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
                self.origin.fwd_upto = id.pseq;
            }
            self.send(
                leader,
                PeerMsg::Forward {
                    epoch,
                    view,
                    after,
                    items: chunk.to_vec(),
                },
            );
            start = end;
        }
    }

    /// Prepare (entries non-empty) or Commit heartbeat (`first_op` 0) from
    /// the leader of (`epoch`, `view`), incarnation `inc`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_prepare(
        &mut self,
        from: NodeId,
        inc: u64,
        epoch: Epoch,
        view: u64,
        first_op: u64,
        entries: Vec<Entry>,
        commit: u64,
        trunc: u64,
    ) {
        if from != self.leader_of(view)
            || matches!(self.role, Role::Recovering(_))
            || self.rep.blank
        {
            self.ignored += 1;
            return;
        }
        let mine = self.rep.epoch();
        let ours = matches!(self.role, Role::Follower(_))
            && view == self.view
            && self.rep.stamp.leader_inc == inc
            && epoch == mine;
        if !ours {
            let behind = epoch == mine
                && (view > self.view
                    || (view == self.view
                        && match self.role {
                            Role::ViewChange(_) => true,
                            Role::Follower(_) => inc > self.rep.stamp.leader_inc,
                            _ => false,
                        }));
            let other = epoch != mine && !self.sticky();
            if !self.may_enter(epoch, view) {
                // It left that history at this view or later: ask its
                // nodes to move above.
                if other && let Some(top) = self.entry_floor(epoch) {
                    self.ask_to_join(epoch, top);
                } else {
                    self.ignored += 1;
                }
            } else if behind {
                // A view of our history this node has not got: fetch its log.
                self.request_state(from, view);
            } else if other {
                // Another history: taking it from its leader alone could
                // revive a view its nodes left before they lost their state
                // (this node knows nothing of its later views). Ask its
                // nodes to change views with us; the new leader decides
                // from a majority what continues.
                self.ask_to_join(epoch, view);
            } else {
                self.ignored += 1;
            }
            return;
        }
        let now = self.now;
        if let Role::Follower(f) = &mut self.role {
            f.leader_heard = now;
        }
        // Hearing the leader again ends a suspicion of our own.
        self.want = None;
        if first_op > 0 {
            if first_op > self.rep.log.op() + 1 {
                self.request_state(from, view);
                return;
            }
            for (i, e) in entries.into_iter().enumerate() {
                if first_op + i as u64 == self.rep.log.op() + 1 {
                    self.rep.log.push(e);
                }
            }
        } else if commit > self.rep.log.op() {
            // Everything committed was sent before this heartbeat on a FIFO
            // link, so missing ops mean lost messages.
            self.request_state(from, view);
        }
        self.rep.commit = self.rep.commit.max(commit.min(self.rep.log.op()));
        self.apply_committed();
        let t = trunc.min(self.rep.applied);
        self.rep.log.truncate(t, &mut self.rep.base);
        self.send_prepare_ok(from, view);
    }

    /// Tells the leader how far this node's log and delivery are.
    pub(super) fn send_prepare_ok(&mut self, to: NodeId, view: u64) {
        self.send(
            to,
            PeerMsg::PrepareOk {
                view,
                op: self.rep.log.op(),
                applied: self.rep.applied,
            },
        );
    }

    pub(super) fn request_state(&mut self, to: NodeId, view: u64) {
        // At most one request per tick.
        if self.getstate_at == Some(self.now) {
            return;
        }
        self.getstate_at = Some(self.now);
        self.send(to, PeerMsg::GetState { view });
    }
}

//! Log entries and peer messages: plain data (the mesh layer writes the wire
//! codec). Payload-bearing entries sit behind `Arc`, so a batch sent to n
//! peers shares one copy of every subject and `Bytes` payload.

use std::sync::Arc;

use bytes::Bytes;

use super::state::State;
use super::{Epoch, NodeId};

/// Identifies one ordered proposal: `pseq` counts 1, 2, 3… per origin
/// incarnation, so the leader can drop duplicates and refuse gaps (which
/// keeps every origin's proposals, hence every publisher's, in FIFO order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId {
    pub origin: NodeId,
    /// Chosen by the daemon at start (e.g. boot time in ms); must grow across
    /// restarts of one node, since a restarted node has no memory of its pseq.
    pub incarnation: u64,
    pub pseq: u64,
}

/// A client publish on an ordinary subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub id: ProposalId,
    pub client: u64,
    pub seq: u64,
    pub subject: String,
    pub reply: Option<String>,
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

/// A group join or leave by a member (private name `#<client id>#<node>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOp {
    pub id: ProposalId,
    pub client: u64,
    pub member: String,
    pub group: String,
}

/// A membership view (`$MSGC.VIEW`): the nodes that deliver from this point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewInfo {
    /// Consecutive over the committed View entries of one history: 1, 2, 3…
    pub id: u64,
    /// The epoch from this entry on. The first View of an epoch is the one
    /// where the epoch differs from the entry before it.
    pub epoch: Epoch,
    /// Set on the first View of an epoch formed from state that may miss
    /// messages confirmed before (not on a cold start, where nobody held
    /// any state).
    pub lost: bool,
    /// Sorted configured-peer indices.
    pub members: Vec<NodeId>,
    /// Members that start delivering at this entry (new or re-admitted).
    pub joined: Vec<NodeId>,
    /// Nodes that stop delivering at this entry; their clients' group
    /// memberships are removed by this entry (implied leaves).
    pub left: Vec<NodeId>,
}

/// One slot of the total order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Publish(Arc<Publish>),
    Join(Arc<GroupOp>),
    Leave(Arc<GroupOp>),
    View(Arc<ViewInfo>),
}

impl Entry {
    /// Roughly the bytes the entry takes on the wire, for batching.
    pub fn wire_size(&self) -> usize {
        match self {
            Entry::Publish(p) => {
                48 + p.subject.len()
                    + p.reply.as_ref().map_or(0, String::len)
                    + p.headers.as_ref().map_or(0, Bytes::len)
                    + p.payload.len()
            }
            Entry::Join(g) | Entry::Leave(g) => 40 + g.member.len() + g.group.len(),
            Entry::View(v) => 16 + 5 * (v.members.len() + v.joined.len() + v.left.len()),
        }
    }

    /// The proposal id, for entries that clients originate.
    pub fn proposal(&self) -> Option<ProposalId> {
        match self {
            Entry::Publish(p) => Some(p.id),
            Entry::Join(g) | Entry::Leave(g) => Some(g.id),
            Entry::View(_) => None,
        }
    }
}

/// A log with the replicated state just before its first entry: what a view
/// change, a state transfer and a recovery ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogImage {
    /// State after applying every op `< start`.
    pub base: State,
    /// Op number of `entries[0]` (ops count from 1).
    pub start: u64,
    pub entries: Vec<Entry>,
}

impl LogImage {
    /// Last op held (`start - 1` when empty).
    pub fn op(&self) -> u64 {
        (self.start + self.entries.len() as u64).saturating_sub(1)
    }

    /// The epoch of this log: that of its last View entry, else the base's.
    pub fn epoch(&self) -> Epoch {
        self.entries
            .iter()
            .rev()
            .find_map(|e| match e {
                Entry::View(v) => Some(v.epoch),
                _ => None,
            })
            .unwrap_or(self.base.epoch)
    }

    /// The epoch of the history at `op` (after applying it), if the image
    /// reaches back that far (`op >= start - 1`).
    pub fn epoch_at(&self, op: u64) -> Option<Epoch> {
        if op + 1 < self.start {
            return None;
        }
        let upto = usize::try_from(op + 1 - self.start).ok()?;
        Some(
            self.entries
                .iter()
                .take(upto)
                .rev()
                .find_map(|e| match e {
                    Entry::View(v) => Some(v.epoch),
                    _ => None,
                })
                .unwrap_or(self.base.epoch),
        )
    }
}

/// Identifies one normal VR view: its number and the incarnation of the
/// leader that formed it. A restarted leader may form the number it led
/// before again (it does not remember); the incarnation tells the two apart,
/// and the later one ranks higher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub view: u64,
    pub leader_inc: u64,
}

/// The state a replica brings to a view change (`None` in a DoViewChange:
/// it holds none — a restarted node that has not recovered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvcState {
    /// The last view it was normal in.
    pub stamp: Stamp,
    pub log: LogImage,
    pub commit: u64,
    pub applied: u64,
}

/// What a replica answers a `Recovery`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // rare (one per restart and peer); boxing buys nothing
pub enum RecoveryState {
    /// It holds no state (it is itself a restarted node).
    Blank,
    /// It holds state but follows no live leader (view change, or suspecting).
    Stuck,
    /// Normal in the response's view of `epoch`; the leader of that view
    /// adds its log and commit.
    Normal {
        epoch: super::Epoch,
        leader_log: Option<(LogImage, u64)>,
    },
}

/// Messages between the ordering cores of two nodes. The transport adds the
/// sender's incarnation to each (`Core::on_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// Origin → leader: proposals in pseq order (batched). `after` is the
    /// origin's highest confirmed pseq of its incarnation: proposals up to
    /// it are settled (committed, or lost with an epoch the origin left).
    Forward {
        epoch: Epoch,
        view: u64,
        after: u64,
        items: Vec<Entry>,
    },
    /// Leader → follower: entries `first_op..`, commit and truncation points.
    Prepare {
        epoch: Epoch,
        view: u64,
        first_op: u64,
        entries: Vec<Entry>,
        commit: u64,
        trunc: u64,
    },
    /// Follower → leader: log holds ops up to `op`; delivered (applied) up to `applied`.
    PrepareOk {
        view: u64,
        op: u64,
        applied: u64,
    },
    /// Leader → follower heartbeat (also the failure detector).
    Commit {
        epoch: Epoch,
        view: u64,
        commit: u64,
        trunc: u64,
    },
    /// A vote to move to `view`, sent by a node that suspects its view dead
    /// and by each node that agrees (`moved` false: a pre-vote, which a node
    /// that still hears its leader ignores). A node moves once a majority
    /// voted for the same view, and then says so (`moved` true): every node
    /// below that view follows it (VR's StartViewChange). `join`: the sender
    /// wants to take the history of this epoch but may not at or below this
    /// view (it left it there); the epoch's nodes at or below it vote for
    /// the move even while they hear their leader.
    StartViewChange {
        view: u64,
        moved: bool,
        join: Option<(Epoch, u64)>,
    },
    /// To the leader of `view`: the sender's state (`None`: it holds none).
    DoViewChange {
        view: u64,
        state: Option<DvcState>,
    },
    /// Leader of `view` → all: the log to adopt (its epoch is the log's).
    /// Also the answer to `GetState`.
    StartView {
        view: u64,
        log: LogImage,
        commit: u64,
    },
    /// A replica behind (gap, older view or epoch) → leader.
    GetState {
        view: u64,
    },
    /// Not-delivering replica → leader: add me to the membership view.
    /// `stopped` is the op at which it stopped (or never started) delivering.
    JoinReq {
        view: u64,
        stopped: u64,
        applied: u64,
    },
    Recovery {
        nonce: u64,
    },
    RecoveryResponse {
        nonce: u64,
        view: u64,
        state: RecoveryState,
    },
}

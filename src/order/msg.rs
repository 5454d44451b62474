//! Log entries and peer messages: plain data (the mesh layer writes the wire
//! codec). Payload-bearing entries sit behind `Arc`, so a batch sent to n
//! peers shares one copy of every subject and `Bytes` payload.

use std::sync::Arc;

use bytes::Bytes;

use super::NodeId;
use super::state::State;

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
    /// Consecutive over committed View entries: 1, 2, 3…
    pub id: u64,
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
}

/// What a replica answers a `Recovery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryState {
    /// It is itself recovering (has no state). Only if every configured peer
    /// answers this does the cluster bootstrap empty.
    Blank,
    /// Normal in `view`; the leader of that view adds its log and commit.
    Normal { leader_log: Option<(LogImage, u64)> },
}

/// Messages between the ordering cores of two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// Origin → leader: proposals in pseq order (batched).
    Forward {
        view: u64,
        items: Vec<Entry>,
    },
    /// Leader → follower: entries `first_op..`, commit and truncation points.
    Prepare {
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
        view: u64,
        commit: u64,
        trunc: u64,
    },
    StartViewChange {
        view: u64,
    },
    DoViewChange {
        view: u64,
        last_normal: u64,
        log: LogImage,
        commit: u64,
        applied: u64,
    },
    /// New leader → all; also sent as the answer to `GetState` (same effect).
    StartView {
        view: u64,
        log: LogImage,
        commit: u64,
    },
    /// Follower with a gap (or in an older view) → leader.
    GetState {
        view: u64,
        op: u64,
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

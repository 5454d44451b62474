//! The msgc ordering core: one cluster-wide total order with virtual
//! synchrony, sans-IO (no sockets, clocks, threads or randomness inside).
//!
//! Protocol: Viewstamped Replication Revisited (Liskov & Cowling 2012) used as
//! a sequencer. The leader of VR view `v` is configured peer `v mod n`; it
//! batches forwarded proposals into `Prepare`s, commits an op once a majority
//! of the *configured* peers holds it, and every replica applies committed ops
//! in op order. Membership (`$MSGC.VIEW`) and group joins/leaves are entries
//! of the same log, so every member sees them at the same point. See
//! `docs/ORDERING.md` for invariants, view change, recovery and truncation.
//!
//! Driving a [`Core`]:
//! - inputs: [`Core::publish`], [`Core::join`], [`Core::leave`],
//!   [`Core::client_gone`], [`Core::on_message`], [`Core::peer_up`],
//!   [`Core::peer_down`], [`Core::tick`]; call [`Core::flush`] after each
//!   batch of inputs (that is where prepares and forwards are batched);
//! - outputs: drain [`Core::poll_action`] / [`Core::take_actions`] after
//!   every call.
//!
//! What a node's clients see: `Deliver` only while the node is a member of
//! the membership view (from the View entry that lists it as joined, with no
//! gap since); `Confirm` for each own publish once it is committed, in
//! publish order (the daemon answers a `PING` when everything published
//! before it is confirmed or refused); `Refuse{NoQuorum}` for a publish made
//! while the node is not in a normal view of a primary component.

pub mod check;
mod follower;
mod leader;
mod log;
pub mod msg;
mod recovery;
mod replica;
mod runs;
mod view_change;

pub mod state;

pub use msg::{
    DvcState, Entry, GroupOp, LogImage, PeerMsg, ProposalId, Publish, RecoveryState, Stamp,
    ViewInfo,
};
pub use replica::Core;
use serde::{Deserialize, Serialize};
pub use state::{Applied, State};

/// A `$MSGC.VIEW` event, as the daemon writes it and clients (and
/// [`check`]) read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ViewEvent {
    pub view: u64,
    /// The epoch of the order: ops and view ids are agreed within one.
    #[serde(default)]
    pub epoch: u64,
    /// Tells apart two epochs with one number that formed without knowing
    /// of each other.
    #[serde(default)]
    pub epoch_tag: u64,
    /// Messages confirmed before this view may be missing from this
    /// subscriber's stream: the cluster re-formed from incomplete state
    /// (more nodes lost their state than the order tolerates), or this node
    /// took another history over its own.
    #[serde(default)]
    pub lost: bool,
    pub members: Vec<String>,
    #[serde(default)]
    pub joined: Vec<String>,
    #[serde(default)]
    pub left: Vec<String>,
}

/// Index of a node in the configured peer list (same list on every node).
pub type NodeId = u32;

/// Core configuration; identical `peers` on every node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our index in `peers`.
    pub me: NodeId,
    /// Configured peer names, in the same order everywhere.
    pub peers: Vec<String>,
    /// Must grow across restarts of this node (e.g. boot time in ms): the
    /// dedup table keys proposals by (node, incarnation, pseq).
    pub incarnation: u64,
    /// Ticks without hearing the leader (or, for a leader, a majority)
    /// before starting a view change; also the member-silence limit.
    pub suspect_after_ticks: u32,
    /// A member more than this many ops behind the commit point is dropped
    /// from the view and rejoins (by state transfer if the log moved on).
    pub max_backlog: u64,
    /// Most entries per Prepare / Forward message.
    pub max_batch: usize,
}

impl Config {
    /// Defaults for tests and the simulator.
    pub fn new(me: NodeId, peers: Vec<String>, incarnation: u64) -> Self {
        Config {
            me,
            peers,
            incarnation,
            suspect_after_ticks: 5,
            max_backlog: 4096,
            max_batch: 256,
        }
    }
}

/// Replica status in the VR sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In a view with a leader: publishes accepted.
    Normal,
    /// Electing a leader (or stuck in a minority): publishes refused.
    ViewChange,
    /// Fresh instance fetching state; does not vote: publishes refused.
    Recovering,
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in a primary component (the daemon sends `-ERR` `proto::text::NO_QUORUM`).
    NoQuorum,
}

/// A lineage of the order. A new epoch begins when the cluster re-forms
/// from state that may miss messages confirmed before (more than f nodes
/// lost their state, or a cold start); ops and view ids are agreed within
/// one epoch. Two formations never share an epoch: each names the view
/// that formed it and its leader's incarnation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch {
    /// 1 for the first formation; one more than the highest known at each re-formation.
    pub n: u64,
    /// The highest incarnation among the nodes that formed it: of two
    /// formations with one `n` that did not know of each other, the later
    /// (one of its nodes restarted after the other formed) ranks higher.
    pub tag: u64,
    /// The view that formed it, and its leader's incarnation.
    pub formed: msg::Stamp,
}

impl Epoch {
    /// A 64-bit name for the epoch, for clients (`epoch_tag` in `$MSGC.VIEW`):
    /// equal for one epoch, different (but for a 2⁻⁶⁴ chance) otherwise.
    pub fn id(&self) -> u64 {
        let mut h = 0x9E37_79B9_7F4A_7C15u64;
        for v in [self.n, self.tag, self.formed.view, self.formed.leader_inc] {
            h ^= v;
            h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h ^= h >> 31;
        }
        h
    }
}

/// A committed entry delivered to this node's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub op: u64,
    /// The epoch the op belongs to.
    pub epoch: Epoch,
    pub entry: Entry,
    /// For a View entry: (member, group) pairs removed because their node left.
    pub implied_leaves: Vec<(String, String)>,
    /// For a Join or Leave: what it did to the replicated groups.
    pub group: Option<GroupChange>,
    /// For a View entry: messages confirmed before it may be missing from
    /// this node's stream (a re-formation from incomplete state, or this
    /// node switched to another epoch's history).
    pub lost: bool,
    /// A proposal its subscribers got in a history this node left (or an
    /// earlier one of a publisher they got a later one of): not delivered to
    /// them again.
    pub repeat: bool,
    /// For the View entry that admits this node: the replicated state right
    /// after it (its groups are where this node's clients start from).
    pub admitted: Option<Box<State>>,
}

/// What a delivered Join or Leave did to its group, as the replicated state has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    /// Whether the group's members changed.
    pub changed: bool,
    /// The group's members after it, sorted.
    pub members: Vec<String>,
}

/// Output of the core, in the order it must be performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send to a peer over its (FIFO) link; dropped if the link is down.
    Send { to: NodeId, msg: PeerMsg },
    /// Deliver a committed entry to local subscribers.
    Deliver(Delivered),
    /// A local client's publish is committed (all earlier ones of this node too).
    Confirm { client: u64, seq: u64 },
    /// A local client's publish was refused.
    Refuse {
        client: u64,
        seq: u64,
        reason: Refusal,
    },
}

/// Status for `$MSGC.STATUS` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    pub mode: Mode,
    /// The epoch of the history held.
    pub epoch: Epoch,
    pub vr_view: u64,
    /// Leader of the current VR view when normal.
    pub leader: Option<NodeId>,
    /// Voted to leave the current view (its leader or quorum is silent).
    pub suspecting: bool,
    /// Holds a history (false for a restarted node not yet recovered).
    pub holds_state: bool,
    /// Last applied membership view.
    pub view_id: u64,
    pub members: Vec<NodeId>,
    pub delivering: bool,
    /// Op of the View entry from which this node delivers.
    pub joined_at: Option<u64>,
    pub op: u64,
    pub commit: u64,
    pub applied: u64,
    pub log_start: u64,
    pub log_len: usize,
    /// Own proposals not yet committed.
    pub pending: usize,
    /// Leader only: (peer, commit - delivered).
    pub lag: Vec<(NodeId, u64)>,
    /// Unexpected or stale peer messages dropped.
    pub ignored: u64,
    pub view_changes: u64,
}

#[cfg(test)]
mod tests;

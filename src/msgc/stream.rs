//! What one node's clients see of the total order, sans-IO: each entry the
//! ordering core delivers becomes a message for local subscribers (with the
//! node that delivers it to each queue group chosen from the order, the same
//! answer on every node), a `$MSGC.GROUP.*` event, or a `$MSGC.VIEW` event.
//! The driver (`msgc::ordered`) performs these; the simulator
//! (`crate::sim`) runs the same code per node and checks that every message
//! reaches each queue group once cluster-wide and that group events agree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::groups::{Event as GroupEvent, Kind, parse_queue_key};
use crate::nats::proto::private_name;
pub use crate::order::ViewEvent;
use crate::order::{Delivered, Entry, NodeId, Publish};

/// Where `$MSGC.VIEW` events are published.
pub const VIEW_SUBJECT: &str = "$MSGC.VIEW";
/// Replicated queue memberships' group names start so (`groups::queue_key`).
const QUEUE_PREFIX: &str = "$Q ";

/// What to do for one delivered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A message for local subscribers ([`Stream::delivers`] says which
    /// queue groups this node serves it to).
    Message {
        op: u64,
        publish: Arc<Publish>,
        /// The publisher's private name, `#<client>#<node>`.
        sender: String,
        /// The local client that published it (for echo and no-responders),
        /// 0 when it came from another node.
        local_client: u64,
        /// A request from another node: its replies can go straight back to
        /// that node (`(reply subject, node)`).
        reply_route: Option<(String, String)>,
    },
    Group(GroupEvent),
    View(ViewEvent),
}

/// One node's view of the delivered stream.
#[derive(Debug, Clone)]
pub struct Stream {
    me: NodeId,
    names: Vec<String>,
    /// Group members as the delivered stream says, for the events' member
    /// lists and queue placement.
    groups: BTreeMap<String, BTreeSet<String>>,
}

impl Stream {
    pub fn new(me: NodeId, names: Vec<String>) -> Stream {
        Stream {
            me,
            names,
            groups: BTreeMap::new(),
        }
    }

    pub fn name(&self, id: NodeId) -> String {
        self.names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// The effects of one delivered entry.
    pub fn deliver(&mut self, d: &Delivered) -> Vec<Effect> {
        match &d.entry {
            Entry::Publish(p) => {
                if d.repeat {
                    return Vec::new();
                }
                let origin = self.name(p.id.origin);
                let local = p.id.origin == self.me;
                vec![Effect::Message {
                    op: d.op,
                    publish: p.clone(),
                    sender: private_name(p.client, &origin),
                    local_client: if local { p.client } else { 0 },
                    reply_route: p
                        .reply
                        .as_ref()
                        .filter(|_| !local)
                        .map(|r| (r.clone(), origin)),
                }]
            }
            Entry::Join(g) | Entry::Leave(g) => {
                // The member lists follow the replicated state exactly (a
                // join from a node outside the view, or of a member already
                // in, changes nothing).
                let Some(change) = &d.group else {
                    return Vec::new();
                };
                if change.members.is_empty() {
                    self.groups.remove(&g.group);
                } else {
                    self.groups
                        .insert(g.group.clone(), change.members.iter().cloned().collect());
                }
                if d.repeat || !change.changed || parse_queue_key(&g.group).is_some() {
                    return Vec::new();
                }
                vec![Effect::Group(GroupEvent {
                    event: if matches!(d.entry, Entry::Join(_)) {
                        Kind::Join
                    } else {
                        Kind::Leave
                    },
                    member: g.member.clone(),
                    group: g.group.clone(),
                    members: change.members.clone(),
                })]
            }
            Entry::View(v) => {
                let mut out = Vec::new();
                for (member, group) in &d.implied_leaves {
                    if let Some(ev) = self.implied_leave(member, group) {
                        out.push(Effect::Group(ev));
                    }
                }
                if let Some(state) = &d.admitted {
                    // We start delivering here: take the groups as the
                    // replicated state has them.
                    self.groups = state
                        .groups
                        .iter()
                        .map(|(g, m)| (g.clone(), m.keys().cloned().collect()))
                        .collect();
                }
                let names = |ids: &[NodeId]| ids.iter().map(|&i| self.name(i)).collect();
                out.push(Effect::View(ViewEvent {
                    view: v.id,
                    epoch: d.epoch.n,
                    epoch_tag: d.epoch.id(),
                    lost: d.lost,
                    members: names(&v.members),
                    joined: names(&v.joined),
                    left: names(&v.left),
                }));
                out
            }
        }
    }

    /// Whether this node delivers the message at `op` on `subject`,
    /// published on node `origin`, to queue group `queue`.
    pub fn delivers(&self, queue: &str, subject: &str, origin: &str, op: u64) -> bool {
        self.queue_node(queue, subject, origin, op)
            .unwrap_or(origin)
            == self.name(self.me)
    }

    /// The node that delivers the message at `op` on `subject` to queue
    /// group `queue`: the publisher's node when it has a member, else one
    /// of the nodes with members, chosen from the op number — the same
    /// answer on every node, from the same ordered membership. `None` while
    /// no member is known cluster-wide (then the publisher's node does).
    pub fn queue_node(&self, queue: &str, subject: &str, origin: &str, op: u64) -> Option<&str> {
        let mut nodes: BTreeSet<&str> = BTreeSet::new();
        let queues = self
            .groups
            .range::<str, _>((
                std::ops::Bound::Included(QUEUE_PREFIX),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(g, _)| g.starts_with(QUEUE_PREFIX));
        for (g, members) in queues {
            if let Some((q, pattern)) = parse_queue_key(g)
                && q == queue
                && crate::subject::pattern_matches(pattern, subject)
            {
                // A member's private name ends in its node: `#<id>#<node>`.
                nodes.extend(members.iter().filter_map(|m| m.rsplit('#').next()));
            }
        }
        if let Some(n) = nodes.get(origin) {
            return Some(n);
        }
        let n = nodes.len() as u64;
        let spread = queue
            .bytes()
            .fold(op, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        (n > 0).then(|| nodes.iter().nth((spread % n.max(1)) as usize).copied())?
    }

    /// A member removed because its node left the view: the event to
    /// publish (queue memberships make none).
    fn implied_leave(&mut self, member: &str, group: &str) -> Option<GroupEvent> {
        let members = self.groups.get_mut(group)?;
        let changed = members.remove(member);
        let list: Vec<String> = members.iter().cloned().collect();
        if members.is_empty() {
            self.groups.remove(group);
        }
        (changed && parse_queue_key(group).is_none()).then(|| GroupEvent {
            event: Kind::Leave,
            member: member.to_owned(),
            group: group.to_owned(),
            members: list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgc::groups::queue_key;
    use crate::order::{Epoch, GroupChange, GroupOp, ProposalId, ViewInfo};

    fn names() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    fn delivered(op: u64, entry: Entry) -> Delivered {
        Delivered {
            op,
            epoch: Epoch::default(),
            entry,
            implied_leaves: Vec::new(),
            group: None,
            lost: false,
            repeat: false,
            admitted: None,
        }
    }

    /// A join as the core delivers it, with the members after it.
    fn joined(op: u64, origin: NodeId, member: &str, group: &str, after: &[&str]) -> Delivered {
        let mut d = delivered(op, join(origin, member, group));
        d.group = Some(GroupChange {
            changed: true,
            members: after.iter().map(|m| m.to_string()).collect(),
        });
        d
    }

    fn join(origin: NodeId, member: &str, group: &str) -> Entry {
        Entry::Join(Arc::new(GroupOp {
            id: ProposalId {
                origin,
                incarnation: 1,
                pseq: 1,
            },
            client: 1,
            member: member.into(),
            group: group.into(),
        }))
    }

    #[test]
    fn every_node_picks_the_same_queue_node() {
        let mut streams: Vec<Stream> = (0..3).map(|i| Stream::new(i, names())).collect();
        let q = queue_key("workers", "jobs.*");
        for s in &mut streams {
            s.deliver(&joined(1, 1, "#5#n2", &q, &["#5#n2"]));
            s.deliver(&joined(2, 2, "#6#n3", &q, &["#5#n2", "#6#n3"]));
        }
        for op in 3..40 {
            // Published on n1, which has no member: one of n2, n3, the same
            // on every node, and exactly one of them delivers.
            let picked: Vec<_> = streams
                .iter()
                .map(|s| {
                    s.queue_node("workers", "jobs.a", "n1", op)
                        .map(str::to_owned)
                })
                .collect();
            assert!(picked.windows(2).all(|w| w[0] == w[1]), "{picked:?}");
            let serving = streams
                .iter()
                .filter(|s| s.delivers("workers", "jobs.a", "n1", op))
                .count();
            assert_eq!(serving, 1);
            // Published on n2, which has a member: n2 itself.
            assert_eq!(
                streams[0].queue_node("workers", "jobs.a", "n2", op),
                Some("n2")
            );
        }
        // Another subject: no member anywhere, the publisher's node serves it.
        assert!(streams[0].delivers("workers", "other", "n1", 9));
        assert!(!streams[1].delivers("workers", "other", "n1", 9));
    }

    #[test]
    fn group_events_and_views() {
        let mut s = Stream::new(0, names());
        let fx = s.deliver(&joined(1, 1, "#5#n2", "g", &["#5#n2"]));
        assert!(matches!(&fx[..], [Effect::Group(e)] if e.members == ["#5#n2"]));
        // Queue memberships make no event.
        let fx = s.deliver(&joined(2, 1, "#5#n2", &queue_key("q", "a"), &["#5#n2"]));
        assert!(fx.is_empty());
        // A view that removes n2 leaves its members' groups (implied leaves).
        let mut d = delivered(
            3,
            Entry::View(Arc::new(ViewInfo {
                id: 2,
                epoch: Epoch::default(),
                lost: true,
                members: vec![0, 2],
                joined: vec![],
                left: vec![1],
            })),
        );
        d.implied_leaves = vec![("#5#n2".into(), "g".into())];
        d.lost = true;
        let fx = s.deliver(&d);
        assert!(
            matches!(&fx[0], Effect::Group(e) if e.event == Kind::Leave && e.members.is_empty())
        );
        assert!(
            matches!(&fx[1], Effect::View(v) if v.lost && v.left == ["n2"] && v.members == ["n1", "n3"])
        );
        let json = match &fx[1] {
            Effect::View(v) => serde_json::to_string(v).unwrap(),
            _ => unreachable!(),
        };
        assert!(
            json.contains("\"epoch\":0") && json.contains("\"lost\":true"),
            "{json}"
        );
    }

    #[test]
    fn repeats_are_not_delivered_again() {
        let mut s = Stream::new(0, names());
        let mut d = joined(1, 1, "#5#n2", "g", &["#5#n2"]);
        d.repeat = true;
        assert!(s.deliver(&d).is_empty());
        // ... but the member lists still take it.
        let fx = s.deliver(&joined(2, 2, "#6#n3", "g", &["#5#n2", "#6#n3"]));
        assert!(matches!(&fx[..], [Effect::Group(e)] if e.members.len() == 2));
    }
}

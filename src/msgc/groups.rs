//! msgc group membership: a group is a literal subject, its members the
//! private names of the clients subscribed to it. Counting subscriptions per
//! member means a client with two subscriptions to one group joins once and
//! leaves once. Sans-IO: callers publish the returned events.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// The subject prefix membership events are published under.
pub const GROUP_PREFIX: &str = "$MSGC.GROUP.";

/// A join or a leave, as published on `$MSGC.GROUP.<group>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event: Kind,
    /// The private name `#<client id>#<node>` that joined or left.
    pub member: String,
    pub group: String,
    /// Every member after the change, sorted.
    pub members: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Join,
    Leave,
}

impl Event {
    pub fn subject(&self) -> String {
        format!("{GROUP_PREFIX}{}", self.group)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// With peers, queue subscriptions are replicated as members of a pseudo
/// group `$Q <queue> <subject>` (subjects and queue names hold no spaces, so
/// no real group can look like one), so every node knows which nodes have
/// members of each queue group and the same one is chosen everywhere.
pub fn queue_key(queue: &str, subject: &str) -> String {
    format!("$Q {queue} {subject}")
}

/// `(queue, subject pattern)` of a [`queue_key`].
pub fn parse_queue_key(g: &str) -> Option<(&str, &str)> {
    g.strip_prefix("$Q ")?.split_once(' ')
}

/// Whether subscribing to `subject` counts as joining a group: literal
/// subjects outside the daemon's own `$MSGC.` space and reply inboxes.
pub fn is_group(subject: &str) -> bool {
    !subject.starts_with("$MSGC.")
        && !subject.starts_with("_INBOX.")
        && !subject.split('.').any(|t| t == "*" || t == ">")
}

#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<String, BTreeMap<String, u32>>,
}

impl Groups {
    /// Records one more subscription of `member` to `group`; an event when it is the first.
    pub fn join(&mut self, group: &str, member: &str) -> Option<Event> {
        let g = self.groups.entry(group.to_owned()).or_default();
        let n = g.entry(member.to_owned()).or_insert(0);
        *n += 1;
        (*n == 1).then(|| event(Kind::Join, group, member, g))
    }

    /// Records one subscription fewer; an event when it was the last.
    pub fn leave(&mut self, group: &str, member: &str) -> Option<Event> {
        let g = self.groups.get_mut(group)?;
        let n = g.get_mut(member)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        g.remove(member);
        let ev = event(Kind::Leave, group, member, g);
        if g.is_empty() {
            self.groups.remove(group);
        }
        Some(ev)
    }

    pub fn members(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of groups with at least one member.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

fn event(kind: Kind, group: &str, member: &str, g: &BTreeMap<String, u32>) -> Event {
    Event {
        event: kind,
        member: member.to_owned(),
        group: group.to_owned(),
        members: g.keys().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_join_and_last_leave_make_events() {
        let mut g = Groups::default();
        let e = g.join("ec_cluster", "#1#n1").unwrap();
        assert_eq!(e.event, Kind::Join);
        assert_eq!(e.members, vec!["#1#n1"]);
        assert_eq!(g.join("ec_cluster", "#1#n1"), None);
        let e = g.join("ec_cluster", "#2#n1").unwrap();
        assert_eq!(e.members, vec!["#1#n1", "#2#n1"]);
        assert_eq!(g.leave("ec_cluster", "#1#n1"), None);
        let e = g.leave("ec_cluster", "#1#n1").unwrap();
        assert_eq!(e.event, Kind::Leave);
        assert_eq!(e.members, vec!["#2#n1"]);
        g.leave("ec_cluster", "#2#n1").unwrap();
        assert!(g.is_empty(), "empty groups are forgotten");
        assert_eq!(g.leave("ec_cluster", "#2#n1"), None);
    }

    #[test]
    fn json_shape() {
        let mut g = Groups::default();
        let e = g.join("ec_console", "#7#mta1").unwrap();
        assert_eq!(e.subject(), "$MSGC.GROUP.ec_console");
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r##"{"event":"join","member":"#7#mta1","group":"ec_console","members":["#7#mta1"]}"##
        );
    }

    #[test]
    fn which_subjects_are_groups() {
        assert!(is_group("ec_cluster"));
        assert!(is_group("orders.eu"));
        assert!(!is_group("orders.*"));
        assert!(!is_group("orders.>"));
        assert!(!is_group("_INBOX.abc"));
        assert!(!is_group("$MSGC.STATUS"));
    }
}

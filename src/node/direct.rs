//! Bus messages that leave the total order: a reply goes straight to the
//! node of the client that asked. Which node that is comes from the ordered
//! request itself (its origin node and reply subject), remembered for
//! [`ROUTE_TTL`] in a bounded table. One FIFO queue and task per destination keeps each
//! sender's messages to a node in order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_channel::{Sender, TrySendError};

use super::NodeLinks;
use super::codec::{Delivery, Frame, MAX_FRAME};

/// The node of a private name `#<client id>#<node>` used as a subject:
/// messages to a member go to its node directly.
pub fn private_node(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix('#')?;
    let (id, node) = rest.split_once('#')?;
    (!id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && !node.is_empty()
        && !node.contains(['#', '.']))
    .then_some(node)
}

/// Reply subjects remembered at most; the oldest is forgotten first.
pub const MAX_ROUTES: usize = 65_536;
/// How long a reply subject is remembered after its request was delivered.
/// A reply after that takes the ordered path: still delivered, only slower.
/// Without it every request ever made stays until [`MAX_ROUTES`] pushes it
/// out, so the table (about 200 bytes a route, some 13 MiB full) grows for as
/// long as it takes to see 65,536 requests from other nodes: 27 minutes at
/// the 40 remote requests/s of `cargo xtask soak`, whose RSS it kept rising.
pub const ROUTE_TTL: Duration = Duration::from_secs(60);
/// Messages waiting to go to one node; past it they take the ordered path.
pub const QUEUE: usize = 256;

/// Reply subject → node of the requester, and when it was learnt.
#[derive(Debug, Default)]
pub struct Routes {
    by_subject: HashMap<String, (String, Instant)>,
    /// (learnt at, subject), oldest first. An entry whose subject was
    /// learnt again later is stale: dropping it forgets nothing.
    order: VecDeque<(Instant, String)>,
}

impl Routes {
    /// Remembers that replies to `subject` belong on `node`, as of `now`;
    /// forgets routes older than [`ROUTE_TTL`] and, past [`MAX_ROUTES`],
    /// the oldest.
    pub fn learn(&mut self, subject: &str, node: &str, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) >= ROUTE_TTL;
            if !expired && self.order.len() < MAX_ROUTES {
                break;
            }
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            if self.by_subject.get(&old).is_some_and(|(_, t)| *t == at) {
                self.by_subject.remove(&old);
            }
        }
        match self.by_subject.get_mut(subject) {
            Some((n, t)) => {
                node.clone_into(n);
                *t = now;
            }
            None => {
                self.by_subject
                    .insert(subject.to_owned(), (node.to_owned(), now));
            }
        }
        self.order.push_back((now, subject.to_owned()));
    }

    pub fn node_for(&self, subject: &str) -> Option<&str> {
        self.by_subject.get(subject).map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }
}

/// A queued direct message, and the local client that sent it when it
/// expects an answer (told "no responders" if the message cannot go).
type Item = (Frame, Option<(u64, String)>);

/// Per-destination queues of direct messages.
#[derive(Default)]
pub struct Senders {
    queues: Mutex<HashMap<String, Sender<Item>>>,
}

impl NodeLinks {
    /// Queues `d` from local client `client` for `node`'s subscribers; false
    /// when it cannot go directly (too large for a frame, or that node's queue
    /// is full), and the caller orders it instead. If `node` turns out to be
    /// unreachable, a sender awaiting a reply is told "no responders".
    pub fn send_direct(self: &Arc<Self>, node: &str, d: Delivery, client: u64) -> bool {
        let asks = d.reply.clone().map(|r| (client, r));
        let f = Frame::Deliver(Box::new(d));
        if f.wire_len() > MAX_FRAME {
            return false;
        }
        let tx = {
            let mut q = self.direct.queues.lock().unwrap_or_else(|p| p.into_inner());
            match q.get(node) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let (tx, rx) = async_channel::bounded::<Item>(QUEUE);
                    let me = self.clone();
                    let peer = node.to_owned();
                    self.ex
                        .spawn(async move {
                            while let Ok((f, asks)) = rx.recv().await {
                                // A node that cannot be reached loses what was
                                // sent to it (at most once), and it is said:
                                // in the log, and to a requester as a 503.
                                let sent = match me.link(&peer).await {
                                    Ok(link) => link.control(f),
                                    Err(e) => Err(e),
                                };
                                if let Err(e) = sent {
                                    log::warn!("direct message to {peer} dropped: {e}");
                                    if let Some((client, reply)) = asks {
                                        me.port.no_responders(client, &reply);
                                    }
                                }
                            }
                        })
                        .detach();
                    q.insert(node.to_owned(), tx.clone());
                    tx
                }
            }
        };
        match tx.try_send((f, asks)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_names_name_their_node() {
        assert_eq!(private_node("#7#node2"), Some("node2"));
        assert_eq!(private_node("#7#node2.x"), None);
        assert_eq!(private_node("#x#node2"), None);
        assert_eq!(private_node("#7#"), None);
        assert_eq!(private_node("#7"), None);
        assert_eq!(private_node("orders"), None);
        assert_eq!(private_node("##node2"), None);
    }

    #[test]
    fn routes_are_bounded_and_the_latest_wins() {
        let mut r = Routes::default();
        let now = Instant::now();
        r.learn("_INBOX.a", "node2", now);
        r.learn("_INBOX.a", "node3", now);
        assert_eq!(r.node_for("_INBOX.a"), Some("node3"));
        for i in 0..MAX_ROUTES + 10 {
            r.learn(&format!("_INBOX.{i}"), "node2", now);
        }
        assert_eq!(r.len(), MAX_ROUTES);
        assert_eq!(r.node_for("_INBOX.a"), None, "the oldest went first");
        assert_eq!(
            r.node_for(&format!("_INBOX.{}", MAX_ROUTES + 9)),
            Some("node2")
        );
    }

    #[test]
    fn routes_expire_and_learning_again_refreshes() {
        let mut r = Routes::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        r.learn("_INBOX.a", "node2", at(0));
        r.learn("_INBOX.b", "node2", at(30));
        r.learn("_INBOX.c", "node3", at(40));
        r.learn("_INBOX.b", "node3", at(50));
        r.learn("_INBOX.d", "node2", at(61));
        assert_eq!(r.node_for("_INBOX.a"), None, "expired");
        assert_eq!(r.node_for("_INBOX.b"), Some("node3"));
        // b's first learning (30 s) expires at 90 s; it was learnt again at 50 s.
        r.learn("_INBOX.e", "node2", at(95));
        assert_eq!(r.node_for("_INBOX.b"), Some("node3"));
        assert_eq!(r.node_for("_INBOX.c"), Some("node3"));
        r.learn("_INBOX.f", "node2", at(111));
        assert_eq!(r.node_for("_INBOX.b"), None);
        assert_eq!(r.node_for("_INBOX.c"), None);
        assert_eq!(r.len(), 3, "d, e, f");
        // A steady stream of requests keeps the table at rate x TTL.
        for i in 0..10_000u64 {
            r.learn(&format!("_INBOX.s{i}"), "node2", at(200 + i / 10));
        }
        assert_eq!(r.len(), 600);
        assert!(r.order.len() <= 601);
    }
}

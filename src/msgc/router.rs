//! Who receives what on one node: the subscription index, each client's
//! subscriptions, msgc groups, and the fan-out into clients' outbound queues.
//! No sockets and no clocks: the session layer calls in with parsed
//! operations, and reads the queues out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use super::groups::{self, Groups};
use super::outbound::{Closed, Frame, Limits, Outbound};
use super::status::Counters;
use crate::client::proto::encode::push_u64;
use crate::client::proto::headers::{self, MSGC_SENDER, NO_RESPONDERS};
use crate::subject::{Matches, QueuePicker, SubjectIndex};

/// Requests to this subject are answered by the daemon with its status as JSON.
pub const STATUS_SUBJECT: &str = "$MSGC.STATUS";

/// What the routing side knows of one connection; shared with its session.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    /// `#<client id>#<node>`.
    pub private_name: String,
    pub out: Outbound,
    /// Set by CONNECT, read on every delivery.
    pub headers: AtomicBool,
    pub echo: AtomicBool,
    pub no_responders: AtomicBool,
    pub verbose: AtomicBool,
}

impl Client {
    pub fn new(id: u64, node: &str, limits: Limits) -> Self {
        Client {
            id,
            private_name: format!("#{id}#{node}"),
            out: Outbound::new(limits),
            headers: AtomicBool::new(false),
            echo: AtomicBool::new(true),
            no_responders: AtomicBool::new(false),
            verbose: AtomicBool::new(false),
        }
    }
}

/// One subscription; the index holds it by pointer identity.
#[derive(Debug)]
pub struct Sub {
    pub client: Arc<Client>,
    pub sid: Box<str>,
    pub subject: Box<str>,
    pub queue: Option<Box<str>>,
    /// Messages delivered so far.
    delivered: AtomicU64,
    /// `UNSUB sid max`: removed once `delivered` reaches it; `u64::MAX` = unlimited.
    max: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct SubRef(pub Arc<Sub>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for SubRef {}

/// A message as published: parts shared by every delivery.
pub struct Message<'a> {
    pub subject: &'a str,
    pub reply: Option<&'a str>,
    /// The raw NATS header block (`NATS/1.0\r\n...\r\n\r\n`), if any.
    pub headers: Option<&'a [u8]>,
    pub payload: &'a Bytes,
    /// Private name of the publisher, for the sender header.
    pub sender: &'a str,
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubError {
    InvalidSubject,
    TooMany { limit: usize },
}

#[derive(Debug, Default)]
struct ClientSubs {
    by_sid: HashMap<Box<str>, Arc<Sub>>,
}

/// The node's routing table.
pub struct Router {
    node: String,
    /// The daemon's own private name, as sender of membership events and status replies.
    system_name: String,
    index: SubjectIndex<SubRef>,
    clients: HashMap<u64, (Arc<Client>, ClientSubs)>,
    groups: Groups,
    picker: QueuePicker,
    max_subs: usize,
    counters: Arc<Counters>,
    scratch: Matches<SubRef>,
    head: Vec<u8>,
}

impl Router {
    pub fn new(node: &str, max_subs: usize, counters: Arc<Counters>, seed: u64) -> Self {
        Router {
            node: node.to_owned(),
            system_name: format!("#ecclusterd#{node}"),
            index: SubjectIndex::new(),
            clients: HashMap::new(),
            groups: Groups::default(),
            picker: QueuePicker::new(seed),
            max_subs: if max_subs == 0 { usize::MAX } else { max_subs },
            counters,
            scratch: Matches::default(),
            head: Vec::with_capacity(256),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn add_client(&mut self, client: Arc<Client>) {
        self.clients
            .insert(client.id, (client, ClientSubs::default()));
    }

    /// Forgets a client and its subscriptions (each group it was in sees a leave).
    pub fn remove_client(&mut self, id: u64) {
        let Some((_, subs)) = self.clients.remove(&id) else {
            return;
        };
        for sub in subs.by_sid.into_values() {
            self.drop_sub(&sub);
        }
    }

    pub fn connections(&self) -> usize {
        self.clients.len()
    }

    pub fn subscriptions(&self) -> usize {
        self.index.len()
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// `SUB subject [queue] sid`. A repeated sid replaces the earlier subscription.
    pub fn subscribe(
        &mut self,
        client_id: u64,
        subject: &str,
        queue: Option<&str>,
        sid: &str,
    ) -> Result<(), SubError> {
        let Some((client, subs)) = self.clients.get(&client_id) else {
            return Ok(());
        };
        if !subs.by_sid.contains_key(sid) && subs.by_sid.len() >= self.max_subs {
            return Err(SubError::TooMany {
                limit: self.max_subs,
            });
        }
        let sub = Arc::new(Sub {
            client: client.clone(),
            sid: sid.into(),
            subject: subject.into(),
            queue: queue.map(Into::into),
            delivered: AtomicU64::new(0),
            max: AtomicU64::new(u64::MAX),
        });
        self.index
            .insert(subject, queue, SubRef(sub.clone()))
            .map_err(|_| SubError::InvalidSubject)?;
        let old = self
            .clients
            .get_mut(&client_id)
            .and_then(|(_, subs)| subs.by_sid.insert(sid.into(), sub.clone()));
        if let Some(old) = old {
            self.drop_sub(&old);
        }
        if groups::is_group(subject) {
            let member = sub.client.private_name.clone();
            if let Some(ev) = self.groups.join(subject, &member) {
                self.publish_system(&ev.subject(), &ev.to_json());
            }
        }
        Ok(())
    }

    /// `UNSUB sid [max]`: at once, or after `max` deliveries in all.
    pub fn unsubscribe(&mut self, client_id: u64, sid: &str, max: Option<u64>) {
        let Some((_, subs)) = self.clients.get_mut(&client_id) else {
            return;
        };
        let Some(sub) = subs.by_sid.get(sid).cloned() else {
            return;
        };
        // NATS counts `max` from the subscription's start.
        if let Some(max) = max
            && sub.delivered.load(Ordering::Relaxed) < max
        {
            sub.max.store(max, Ordering::Relaxed);
            return;
        }
        subs.by_sid.remove(sid);
        self.drop_sub(&sub);
    }

    fn drop_sub(&mut self, sub: &Arc<Sub>) {
        self.index
            .remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()));
        if groups::is_group(&sub.subject)
            && let Some(ev) = self.groups.leave(&sub.subject, &sub.client.private_name)
        {
            self.publish_system(&ev.subject(), &ev.to_json());
        }
    }

    /// Publishes as the daemon itself (membership events, status replies).
    pub fn publish_system(&mut self, subject: &str, payload: &[u8]) {
        let payload = Bytes::copy_from_slice(payload);
        let sender = self.system_name.clone();
        self.publish(
            0,
            &Message {
                subject,
                reply: None,
                headers: None,
                payload: &payload,
                sender: &sender,
            },
        );
    }

    /// Delivers `msg` from client `from` (0 = the daemon) to every matching
    /// subscription: each plain subscriber, one member per queue group.
    /// Returns how many deliveries were queued.
    pub fn publish(&mut self, from: u64, msg: &Message<'_>) -> usize {
        let mut matches = std::mem::take(&mut self.scratch);
        matches.clear();
        self.index.matches_into(msg.subject, &mut matches);
        let mut delivered = 0;
        let mut exhausted: Vec<Arc<Sub>> = Vec::new();
        let mut sender_headers: Option<Vec<u8>> = None;
        let receivers: Vec<&SubRef> = matches.receivers(&mut self.picker).collect();
        for SubRef(sub) in receivers {
            let c = &sub.client;
            if c.id == from && !c.echo.load(Ordering::Relaxed) {
                continue;
            }
            // Honour an UNSUB-max budget (the router lock orders these updates).
            let max = sub.max.load(Ordering::Relaxed);
            let n = sub.delivered.load(Ordering::Relaxed);
            if n >= max {
                continue;
            }
            sub.delivered.store(n + 1, Ordering::Relaxed);
            if n + 1 == max {
                exhausted.push(sub.clone());
            }
            let result = if c.headers.load(Ordering::Relaxed) {
                let hdr =
                    sender_headers.get_or_insert_with(|| with_sender(msg.headers, msg.sender));
                encode_hmsg_head(
                    &mut self.head,
                    msg.subject,
                    &sub.sid,
                    msg.reply,
                    hdr.len(),
                    msg.payload.len(),
                );
                self.head.extend_from_slice(hdr);
                c.out.push_msg(Frame {
                    head: &self.head,
                    body: Some(msg.payload),
                    tail: b"\r\n",
                })
            } else {
                encode_msg_head(
                    &mut self.head,
                    msg.subject,
                    &sub.sid,
                    msg.reply,
                    msg.payload.len(),
                );
                c.out.push_msg(Frame {
                    head: &self.head,
                    body: Some(msg.payload),
                    tail: b"\r\n",
                })
            };
            match result {
                Ok(()) => {
                    delivered += 1;
                    Counters::add(&self.counters.msgs_out, 1);
                    Counters::add(&self.counters.bytes_out, msg.payload.len() as u64);
                }
                Err(Closed::SlowConsumer) => {
                    // Only the first refusal after the limit reports SlowConsumer.
                    Counters::add(&self.counters.slow_consumers, 1);
                    log::warn!(
                        "client {} is a slow consumer: cut off (pending limit reached)",
                        c.private_name
                    );
                }
                Err(Closed::Gone) => {}
            }
        }
        for sub in exhausted {
            if let Some((_, subs)) = self.clients.get_mut(&sub.client.id) {
                subs.by_sid.remove(&sub.sid);
            }
            self.drop_sub(&sub);
        }
        // `$MSGC.STATUS` always has a responder: the daemon itself.
        let found = !matches.is_empty() || msg.subject == STATUS_SUBJECT;
        self.scratch = matches;
        if !found && let Some(reply) = msg.reply {
            self.no_responders(from, reply);
        }
        delivered
    }

    /// A request nobody could answer: tell the requester at once with a 503
    /// status on its reply subject, if it asked for that.
    fn no_responders(&mut self, from: u64, reply: &str) {
        let Some((client, subs)) = self.clients.get(&from) else {
            return;
        };
        if !(client.headers.load(Ordering::Relaxed) && client.no_responders.load(Ordering::Relaxed))
        {
            return;
        }
        let empty = Bytes::new();
        for sub in subs.by_sid.values() {
            if crate::subject::pattern_matches(&sub.subject, reply) {
                encode_hmsg_head(
                    &mut self.head,
                    reply,
                    &sub.sid,
                    None,
                    NO_RESPONDERS.len(),
                    0,
                );
                self.head.extend_from_slice(NO_RESPONDERS);
                let _ = client.out.push_msg(Frame {
                    head: &self.head,
                    body: Some(&empty),
                    tail: b"\r\n",
                });
                return;
            }
        }
    }
}

/// The header block delivered to header-capable clients: the publisher's
/// headers (if any) plus `Msgc-Sender`. A malformed block from the publisher
/// is replaced rather than forwarded.
fn with_sender(headers: Option<&[u8]>, sender: &str) -> Vec<u8> {
    headers::with_header(headers, MSGC_SENDER, sender)
        .or_else(|_| headers::with_header(None, MSGC_SENDER, sender))
        .unwrap_or_default()
}

fn push_num(buf: &mut Vec<u8>, n: usize) {
    push_u64(buf, n as u64);
}

/// `MSG <subject> <sid> [reply] <#bytes>\r\n`
pub fn encode_msg_head(
    buf: &mut Vec<u8>,
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    len: usize,
) {
    buf.clear();
    buf.extend_from_slice(b"MSG ");
    buf.extend_from_slice(subject.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(sid.as_bytes());
    buf.push(b' ');
    if let Some(r) = reply {
        buf.extend_from_slice(r.as_bytes());
        buf.push(b' ');
    }
    push_num(buf, len);
    buf.extend_from_slice(b"\r\n");
}

/// `HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>\r\n`
pub fn encode_hmsg_head(
    buf: &mut Vec<u8>,
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    hdr_len: usize,
    payload_len: usize,
) {
    buf.clear();
    buf.extend_from_slice(b"HMSG ");
    buf.extend_from_slice(subject.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(sid.as_bytes());
    buf.push(b' ');
    if let Some(r) = reply {
        buf.extend_from_slice(r.as_bytes());
        buf.push(b' ');
    }
    push_num(buf, hdr_len);
    buf.push(b' ');
    push_num(buf, hdr_len + payload_len);
    buf.extend_from_slice(b"\r\n");
}

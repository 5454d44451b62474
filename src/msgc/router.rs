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
use crate::nats::proto::encode;
use crate::nats::proto::headers::{self, MSGC_SENDER, NO_RESPONDERS};
use crate::subject::{Matches, QueuePicker, SubjectIndex};

/// Subjects whose matches are remembered; past it the cache starts over.
const MATCH_CACHE_MAX: usize = 4096;

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
    /// With peers: the seq of this client's last publish handed to the total
    /// order, the last one confirmed (committed or refused), and the PINGs
    /// waiting for a confirmation (each the seq it waits for).
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub pongs: std::sync::Mutex<std::collections::VecDeque<(u64, u32)>>,
}

impl Client {
    /// Records a confirmation up to `seq` and answers the PINGs it releases.
    pub fn confirm(&self, seq: u64) {
        self.confirmed.fetch_max(seq, Ordering::Relaxed);
        let mut pongs = self.pongs.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(&(want, n)) = pongs.front()
            && want <= seq
        {
            pongs.pop_front();
            for _ in 0..n {
                let _ = self.out.push_control(b"PONG\r\n");
            }
        }
    }

    /// A PING: answered now if nothing this client published is unconfirmed,
    /// else when the last publish before it is confirmed. PINGs waiting for
    /// the same publish share one entry, so waiting PINGs are bounded by the
    /// unconfirmed publishes.
    pub fn ping(&self) {
        let mut pongs = self.pongs.lock().unwrap_or_else(|p| p.into_inner());
        let want = self.published.load(Ordering::Relaxed);
        if want <= self.confirmed.load(Ordering::Relaxed) && pongs.is_empty() {
            let _ = self.out.push_control(b"PONG\r\n");
        } else if let Some(back) = pongs.back_mut()
            && back.0 == want
        {
            back.1 = back.1.saturating_add(1);
        } else {
            pongs.push_back((want, 1));
        }
    }

    pub fn new(id: u64, node: &str, limits: Limits) -> Self {
        Client {
            id,
            private_name: format!("#{id}#{node}"),
            out: Outbound::new(limits),
            headers: AtomicBool::new(false),
            echo: AtomicBool::new(true),
            no_responders: AtomicBool::new(false),
            verbose: AtomicBool::new(false),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            pongs: std::sync::Mutex::new(std::collections::VecDeque::new()),
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

/// A local group join or leave for the total order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    pub join: bool,
    pub client: u64,
    pub member: String,
    pub group: String,
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
    /// With peers: group events come from the total order, not from here.
    replicated: bool,
    group_changes: Vec<GroupChange>,
    /// Recent subjects' matches; emptied whenever a subscription changes.
    cache: HashMap<Box<str>, Matches<SubRef>>,
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
            cache: HashMap::new(),
            replicated: false,
            group_changes: Vec::new(),
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
        self.cache.clear();
        let old = self
            .clients
            .get_mut(&client_id)
            .and_then(|(_, subs)| subs.by_sid.insert(sid.into(), sub.clone()));
        // Join before dropping a replaced subscription: re-subscribing a sid
        // to the same group leaves the membership as it was, with no events.
        // The queue membership first: once the group's join event is seen,
        // the queue membership before it is ordered too.
        if self.replicated
            && let Some(q) = queue
            && let Some(ev) = self
                .groups
                .join(&groups::queue_key(q, subject), &sub.client.private_name)
        {
            self.group_event(sub.client.id, ev);
        }
        if groups::is_group(subject) {
            let member = sub.client.private_name.clone();
            if let Some(ev) = self.groups.join(subject, &member) {
                self.group_event(sub.client.id, ev);
            }
        }
        if let Some(old) = old {
            self.drop_sub(&old);
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
        self.cache.clear();
        if groups::is_group(&sub.subject)
            && let Some(ev) = self.groups.leave(&sub.subject, &sub.client.private_name)
        {
            self.group_event(sub.client.id, ev);
        }
        if self.replicated
            && let Some(q) = sub.queue.as_deref()
            && let Some(ev) = self.groups.leave(
                &groups::queue_key(q, &sub.subject),
                &sub.client.private_name,
            )
        {
            self.group_event(sub.client.id, ev);
        }
    }

    /// A local member's first join or last leave: published at once on a
    /// standalone node; with peers, queued for the total order, and published
    /// when it is delivered (`take_group_changes`, `publish_group_event`).
    fn group_event(&mut self, client: u64, ev: groups::Event) {
        if self.replicated {
            self.group_changes.push(GroupChange {
                join: ev.event == groups::Kind::Join,
                client,
                member: ev.member,
                group: ev.group,
            });
        } else {
            self.publish_system(&ev.subject(), &ev.to_json());
        }
    }

    /// Group membership is decided by the cluster's total order from now on.
    pub fn set_replicated(&mut self) {
        self.replicated = true;
    }

    /// Local joins and leaves waiting to be proposed to the total order.
    pub fn take_group_changes(&mut self) -> Vec<GroupChange> {
        std::mem::take(&mut self.group_changes)
    }

    /// Publishes a membership event as the cluster ordered it.
    pub fn publish_group_event(&mut self, ev: &groups::Event) {
        self.publish_system(&ev.subject(), &ev.to_json());
    }

    pub fn client(&self, id: u64) -> Option<Arc<Client>> {
        self.clients.get(&id).map(|(c, _)| c.clone())
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
        self.publish_filtered(from, msg, &mut |_| true)
    }

    /// As [`publish`](Self::publish), delivering to a queue group only when
    /// `allow(queue name)` says this node is the one that delivers it (with
    /// peers, one node is chosen per message for each queue group).
    pub fn publish_filtered(
        &mut self,
        from: u64,
        msg: &Message<'_>,
        allow: &mut dyn FnMut(&str) -> bool,
    ) -> usize {
        // A hit reuses the match (and its key); a miss walks the index.
        let (key, matches) = match self.cache.remove_entry(msg.subject) {
            Some(hit) => hit,
            None => {
                let mut m = Matches::default();
                self.index.matches_into(msg.subject, &mut m);
                (Box::from(msg.subject), m)
            }
        };
        let mut out = Delivery {
            head: &mut self.head,
            sender_headers: None,
            exhausted: Vec::new(),
            delivered: 0,
            bytes: 0,
        };
        // The publisher itself, when it asked not to get its own messages.
        let no_echo =
            |s: &SubRef| s.0.client.id == from && !s.0.client.echo.load(Ordering::Relaxed);
        for s in matches.plain.iter().filter(|s| !no_echo(s)) {
            out.deliver(msg, &s.0);
        }
        for (queue, members) in &matches.queues {
            if !allow(queue) {
                continue;
            }
            // Pick among the members that may receive it, so a non-echo
            // publisher in its own group does not swallow the message.
            let picked = if members.iter().any(no_echo) {
                let eligible: Vec<&SubRef> = members.iter().filter(|s| !no_echo(s)).collect();
                self.picker.pick(&eligible).map(|s| s.0.clone())
            } else {
                self.picker.pick(members).map(|s| s.0.clone())
            };
            if let Some(sub) = picked {
                out.deliver(msg, &sub);
            }
        }
        let Delivery {
            exhausted,
            delivered,
            bytes,
            ..
        } = out;
        Counters::add(&self.counters.msgs_out, delivered as u64);
        Counters::add(&self.counters.bytes_out, bytes);
        // `$MSGC.STATUS` always has a responder: the daemon itself.
        let found = !matches.is_empty() || msg.subject == STATUS_SUBJECT;
        if self.cache.len() >= MATCH_CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, matches);
        for sub in exhausted {
            if let Some((_, subs)) = self.clients.get_mut(&sub.client.id) {
                subs.by_sid.remove(&sub.sid);
            }
            self.drop_sub(&sub);
        }
        if !found && let Some(reply) = msg.reply {
            self.no_responders(from, reply);
        }
        delivered
    }

    /// A request nobody could answer: tell the requester at once with a 503
    /// status on its reply subject, if it asked for that.
    fn no_responders(&mut self, from: u64, reply: &str) {
        // With peers a responder may sit on another node, and interest is
        // node-local: a 503 here could be wrong, so none is sent.
        if !self.replicated {
            self.send_no_responders(from, reply);
        }
    }

    /// Tells client `from` that its request with reply subject `reply` found
    /// nobody (a 503 status message), if it asked to be told.
    pub fn send_no_responders(&mut self, from: u64, reply: &str) {
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

/// One publish's fan-out: frames written into receivers' queues, tallied
/// once at the end instead of per receiver.
struct Delivery<'a> {
    head: &'a mut Vec<u8>,
    /// Built on the first header-capable receiver, shared by the rest.
    sender_headers: Option<Vec<u8>>,
    /// Subscriptions whose `UNSUB max` this message used up.
    exhausted: Vec<Arc<Sub>>,
    delivered: usize,
    bytes: u64,
}

impl Delivery<'_> {
    fn deliver(&mut self, msg: &Message<'_>, sub: &Arc<Sub>) {
        let c = &sub.client;
        // Honour an UNSUB-max budget (the router lock orders these updates).
        let max = sub.max.load(Ordering::Relaxed);
        let n = sub.delivered.load(Ordering::Relaxed);
        if n >= max {
            return;
        }
        sub.delivered.store(n + 1, Ordering::Relaxed);
        if n + 1 == max {
            self.exhausted.push(sub.clone());
        }
        if c.headers.load(Ordering::Relaxed) {
            let hdr = self
                .sender_headers
                .get_or_insert_with(|| with_sender(msg.headers, msg.sender));
            encode_hmsg_head(
                self.head,
                msg.subject,
                &sub.sid,
                msg.reply,
                hdr.len(),
                msg.payload.len(),
            );
            encode::extend(self.head, hdr);
        } else {
            encode_msg_head(
                self.head,
                msg.subject,
                &sub.sid,
                msg.reply,
                msg.payload.len(),
            );
        }
        let result = c.out.push_msg(Frame {
            head: self.head,
            body: Some(msg.payload),
            tail: b"\r\n",
        });
        match result {
            Ok(()) => {
                self.delivered += 1;
                self.bytes += msg.payload.len() as u64;
            }
            // A slow consumer is counted and logged once, by the
            // connection's writer (msgc::session), whatever crossed the limit.
            Err(Closed::SlowConsumer | Closed::Gone) => {}
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

/// `MSG <subject> <sid> [reply] <#bytes>\r\n` into a cleared `buf`.
fn encode_msg_head(buf: &mut Vec<u8>, subject: &str, sid: &str, reply: Option<&str>, len: usize) {
    buf.clear();
    encode::msg_head(buf, subject, sid, reply, len);
}

/// `HMSG ... <#header bytes> <#total bytes>\r\n` into a cleared `buf`.
fn encode_hmsg_head(
    buf: &mut Vec<u8>,
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    hdr_len: usize,
    payload_len: usize,
) {
    buf.clear();
    encode::hmsg_head(buf, subject, sid, reply, hdr_len, payload_len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgc::outbound::Batch;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_msgs: usize::MAX,
    };

    fn router() -> Router {
        Router::new("n1", 0, Arc::new(Counters::default()), 7)
    }

    fn client(r: &mut Router, id: u64, headers: bool) -> Arc<Client> {
        let c = Arc::new(Client::new(id, "n1", LIMITS));
        c.headers.store(headers, Ordering::Relaxed);
        r.add_client(c.clone());
        c
    }

    /// Everything queued to `c`, as text.
    fn drain(c: &Client) -> String {
        let mut b = Batch::default();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match c.out.poll_take(&mut cx, &mut b) {
            std::task::Poll::Ready(Some(())) => {
                let bytes: Vec<u8> = b
                    .slices(0, usize::MAX)
                    .iter()
                    .flat_map(|s| s.to_vec())
                    .collect();
                String::from_utf8(bytes).unwrap()
            }
            _ => String::new(),
        }
    }

    fn publish(r: &mut Router, from: u64, subject: &str, reply: Option<&str>, body: &str) -> usize {
        let payload = Bytes::copy_from_slice(body.as_bytes());
        r.publish(
            from,
            &Message {
                subject,
                reply,
                headers: None,
                payload: &payload,
                sender: "#9#n1",
            },
        )
    }

    #[test]
    fn wildcards_and_plain_fan_out() {
        let mut r = router();
        let a = client(&mut r, 1, false);
        let b = client(&mut r, 2, false);
        r.subscribe(1, "orders.*", None, "s1").unwrap();
        r.subscribe(2, "orders.>", None, "s2").unwrap();
        r.subscribe(2, "other", None, "s3").unwrap();
        assert_eq!(publish(&mut r, 9, "orders.eu", None, "hi"), 2);
        assert_eq!(drain(&a), "MSG orders.eu s1 2\r\nhi\r\n");
        assert_eq!(drain(&b), "MSG orders.eu s2 2\r\nhi\r\n");
        assert_eq!(publish(&mut r, 9, "orders.eu.x", Some("_INBOX.r"), "y"), 1);
        assert_eq!(drain(&a), "");
        assert_eq!(drain(&b), "MSG orders.eu.x s2 _INBOX.r 1\r\ny\r\n");
    }

    #[test]
    fn the_match_cache_never_serves_a_stale_subscription_set() {
        let mut r = router();
        let a = client(&mut r, 1, false);
        let b = client(&mut r, 2, false);
        r.subscribe(1, "t.*", None, "1").unwrap();
        assert_eq!(publish(&mut r, 9, "t.x", None, "1"), 1);
        r.subscribe(2, "t.x", None, "2").unwrap();
        assert_eq!(publish(&mut r, 9, "t.x", None, "2"), 2);
        r.unsubscribe(1, "1", None);
        assert_eq!(publish(&mut r, 9, "t.x", None, "3"), 1);
        r.remove_client(2);
        assert_eq!(publish(&mut r, 9, "t.x", None, "4"), 0);
        assert_eq!(drain(&a).matches("MSG").count(), 2);
        assert_eq!(drain(&b).matches("MSG").count(), 2);
        // Past its bound the cache starts over instead of growing.
        for i in 0..MATCH_CACHE_MAX + 10 {
            publish(&mut r, 9, &format!("s.{i}"), None, "x");
        }
        assert!(r.cache.len() <= MATCH_CACHE_MAX);
    }

    #[test]
    fn queue_group_gets_each_message_once() {
        let mut r = router();
        let members: Vec<_> = (1..=3).map(|i| client(&mut r, i, false)).collect();
        for i in 1..=3 {
            r.subscribe(i, "jobs", Some("workers"), "q").unwrap();
        }
        for _ in 0..300 {
            assert_eq!(publish(&mut r, 9, "jobs", None, "j"), 1);
        }
        let counts: Vec<usize> = members
            .iter()
            .map(|c| drain(c).matches("MSG").count())
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 300);
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    }

    #[test]
    fn echo_off_skips_own_messages() {
        let mut r = router();
        let a = client(&mut r, 1, false);
        a.echo.store(false, Ordering::Relaxed);
        r.subscribe(1, "t", None, "1").unwrap();
        assert_eq!(publish(&mut r, 1, "t", None, "x"), 0);
        assert_eq!(publish(&mut r, 2, "t", None, "x"), 1);
        assert_eq!(drain(&a), "MSG t 1 1\r\nx\r\n");
    }

    #[test]
    fn unsub_max_counts_from_the_start() {
        let mut r = router();
        let a = client(&mut r, 1, false);
        r.subscribe(1, "t", None, "1").unwrap();
        publish(&mut r, 9, "t", None, "a");
        r.unsubscribe(1, "1", Some(3));
        for _ in 0..5 {
            publish(&mut r, 9, "t", None, "b");
        }
        assert_eq!(drain(&a).matches("MSG").count(), 3);
        assert_eq!(r.subscriptions(), 0, "exhausted subscriptions are removed");
        // A max already reached removes at once.
        r.subscribe(1, "u", None, "2").unwrap();
        publish(&mut r, 9, "u", None, "a");
        r.unsubscribe(1, "2", Some(1));
        assert_eq!(r.subscriptions(), 0);
    }

    #[test]
    fn headers_carry_the_sender_and_no_responders_answers_requests() {
        let mut r = router();
        let a = client(&mut r, 1, true);
        a.no_responders.store(true, Ordering::Relaxed);
        r.subscribe(1, "t", None, "1").unwrap();
        r.subscribe(1, "_INBOX.a.*", None, "2").unwrap();
        publish(&mut r, 9, "t", None, "x");
        assert_eq!(
            drain(&a),
            "HMSG t 1 32 33\r\nNATS/1.0\r\nMsgc-Sender: #9#n1\r\n\r\nx\r\n"
        );
        assert_eq!(publish(&mut r, 1, "nobody", Some("_INBOX.a.1"), "q"), 0);
        assert_eq!(
            drain(&a),
            "HMSG _INBOX.a.1 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        );
        // Without headers or without asking, nothing comes back.
        a.no_responders.store(false, Ordering::Relaxed);
        publish(&mut r, 1, "nobody", Some("_INBOX.a.2"), "q");
        assert_eq!(drain(&a), "");
        // The daemon answers $MSGC.STATUS itself: never a 503.
        a.no_responders.store(true, Ordering::Relaxed);
        publish(&mut r, 1, STATUS_SUBJECT, Some("_INBOX.a.3"), "");
        assert_eq!(drain(&a), "");
    }

    #[test]
    fn group_events_follow_subscriptions_and_disconnects() {
        let mut r = router();
        let obs = client(&mut r, 1, false);
        r.subscribe(1, "$MSGC.GROUP.g", None, "o").unwrap();
        client(&mut r, 2, false);
        client(&mut r, 3, false);
        r.subscribe(2, "g", None, "a").unwrap();
        r.subscribe(3, "g", None, "b").unwrap();
        r.unsubscribe(2, "a", None);
        r.remove_client(3);
        let events = drain(&obs);
        let order: Vec<&str> = events.lines().filter(|l| l.starts_with('{')).collect();
        assert_eq!(order.len(), 4, "{events}");
        assert!(order[0].contains(r##""event":"join","member":"#2#n1""##));
        assert!(order[1].contains(r##""members":["#2#n1","#3#n1"]"##));
        assert!(order[2].contains(r##""event":"leave","member":"#2#n1""##));
        assert!(
            order[3].contains(r##""event":"leave","member":"#3#n1","group":"g","members":[]"##)
        );
    }

    #[test]
    fn subscription_limit_and_bad_subjects() {
        let mut r = Router::new("n1", 2, Arc::new(Counters::default()), 1);
        client(&mut r, 1, false);
        r.subscribe(1, "a", None, "1").unwrap();
        r.subscribe(1, "b", None, "2").unwrap();
        assert_eq!(
            r.subscribe(1, "c", None, "3"),
            Err(SubError::TooMany { limit: 2 })
        );
        // Re-subscribing an existing sid replaces it and is not "one more".
        r.subscribe(1, "c", None, "2").unwrap();
        assert_eq!(
            r.subscribe(1, "a..b", None, "1"),
            Err(SubError::InvalidSubject)
        );
    }

    #[test]
    fn slow_consumer_is_cut_off_and_others_keep_receiving() {
        let counters = Arc::new(Counters::default());
        let mut r = Router::new("n1", 0, counters.clone(), 1);
        let small = Arc::new(Client::new(
            1,
            "n1",
            Limits {
                max_bytes: 64,
                max_msgs: usize::MAX,
            },
        ));
        r.add_client(small.clone());
        let big = client(&mut r, 2, false);
        r.subscribe(1, "t", None, "1").unwrap();
        r.subscribe(2, "t", None, "1").unwrap();
        for _ in 0..10 {
            publish(&mut r, 9, "t", None, "0123456789");
        }
        assert_eq!(small.out.closed(), Some(Closed::SlowConsumer));
        assert_eq!(drain(&big).matches("MSG").count(), 10);
    }
}

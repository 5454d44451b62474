//! Checks a *client-observable* history of the ordered bus, sans-IO: what
//! subscribers received and what publishers were told. The simulator runs it
//! over its instances' deliveries (projected to this form) and the fault
//! harness (`tests/faults/`) over what real clients of real processes got,
//! so both are judged by the same rules (`docs/ORDERING.md`, "What a client
//! sees"; `docs/FAULTS.md`).
//!
//! A [`History`] holds:
//! - one [`Stream`] per subscriber connection: the node it was connected to,
//!   which incarnation of that node, and everything it received in order —
//!   data messages identified by (publisher, seq) and `$MSGC.VIEW` events;
//! - one [`Publisher`] per publishing connection: the seqs it published, the
//!   ones a PONG confirmed and the ones refused (`-ERR 'msgc: no quorum'`).
//!
//! Properties ([`Property`]):
//! - **integrity**: every delivery was published (and not refused), once per
//!   stream;
//! - **FIFO**: one publisher's messages arrive in publish order in a stream;
//! - **agreement**: any two streams deliver their common messages and views
//!   in the same relative order;
//! - **views**: view ids strictly increase in a stream, and one view id means
//!   one membership (members, joined, left) everywhere;
//! - **virtual synchrony**: a message is delivered in the same view by every
//!   stream; a stream whose node is not a member of a view delivers nothing
//!   in it; between two consecutive views (no re-admission in between) two
//!   streams deliver the same messages, and a stream that stopped delivering
//!   in a view (cut off) delivered a prefix of them;
//! - **confirmed delivery**: every confirmed message is delivered by every
//!   stream that stayed connected to the end ([`Stream::complete`]) on a node
//!   that was a member, without interruption, from the message's view to the
//!   stream's last view. A confirmed message delivered by no stream at all,
//!   while no stream was obliged to deliver it, is reported as an *orphan* in
//!   the [`Summary`] (the caller decides whether that is acceptable).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One data message: its publisher (a connection) and the publisher's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    pub publisher: u64,
    pub seq: u64,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.publisher, self.seq)
    }
}

/// A `$MSGC.VIEW` event, as its JSON reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub view: u64,
    /// The epoch of the order the view belongs to (`$MSGC.VIEW` `epoch`).
    #[serde(default)]
    pub epoch: u64,
    /// Messages confirmed before this view may be missing (`$MSGC.VIEW` `lost`).
    #[serde(default)]
    pub lost: bool,
    pub members: Vec<String>,
    #[serde(default)]
    pub joined: Vec<String>,
    #[serde(default)]
    pub left: Vec<String>,
}

/// One thing a subscriber received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Msg(MsgId),
    View(View),
}

/// What one subscriber connection received, in order.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// The node it was connected to.
    pub node: String,
    /// Which run of that node (0 for the first start, +1 per restart).
    pub incarnation: u64,
    /// For messages: e.g. `node2#0 sub1`.
    pub label: String,
    /// Subscribed before anything was published.
    pub from_start: bool,
    /// Still connected when the history was taken (not cut off, its node not
    /// killed).
    pub complete: bool,
    pub events: Vec<Event>,
}

/// What one publisher connection sent and was told.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    pub id: u64,
    pub label: String,
    pub published: BTreeSet<u64>,
    /// Published, then a PONG answered with no refusal for it.
    pub confirmed: BTreeSet<u64>,
    /// Refused with `-ERR 'msgc: no quorum'`: must never be delivered.
    pub refused: BTreeSet<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub streams: Vec<Stream>,
    pub publishers: Vec<Publisher>,
}

/// The property a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    Integrity,
    Fifo,
    Agreement,
    Views,
    VirtualSynchrony,
    ConfirmedDelivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub property: Property,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.property, self.detail)
    }
}

/// Figures of a history that passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub streams: usize,
    pub complete_streams: usize,
    /// Messages received over all streams.
    pub deliveries: usize,
    /// Distinct messages received by at least one stream.
    pub distinct: usize,
    /// Distinct view ids seen.
    pub views: usize,
    pub published: usize,
    pub confirmed: usize,
    pub refused: usize,
    /// (stream, confirmed message) pairs checked for delivery.
    pub obligations: usize,
    /// Confirmed messages that no stream delivered and none had to.
    pub orphans: Vec<MsgId>,
}

fn fail<T>(property: Property, detail: String) -> Result<T, Violation> {
    Err(Violation { property, detail })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Msg(MsgId),
    View(u64),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Msg(m) => write!(f, "message {m}"),
            Key::View(v) => write!(f, "view {v}"),
        }
    }
}

fn key(e: &Event) -> Key {
    match e {
        Event::Msg(m) => Key::Msg(*m),
        Event::View(v) => Key::View(v.view),
    }
}

/// The messages a stream delivered after one view event, up to its next.
struct Segment<'a> {
    stream: usize,
    view: &'a View,
    /// The view event that ends the segment (`None`: the stream ended).
    next: Option<&'a View>,
    msgs: Vec<MsgId>,
}

impl Segment<'_> {
    /// The stream delivered the whole view: the next view event follows
    /// directly and does not re-admit its node (a re-admission means it
    /// stopped delivering somewhere in between).
    fn whole(&self, node: &str) -> bool {
        self.next
            .is_some_and(|n| n.view == self.view.view + 1 && !n.joined.iter().any(|j| j == node))
            && self.view.members.iter().any(|m| m == node)
    }
}

/// Checks every property; the first violation found, or figures.
pub fn check(h: &History) -> Result<Summary, Violation> {
    let mut sum = Summary {
        streams: h.streams.len(),
        complete_streams: h.streams.iter().filter(|s| s.complete).count(),
        ..Summary::default()
    };
    // Publishers.
    let mut pubs: BTreeMap<u64, &Publisher> = BTreeMap::new();
    for p in &h.publishers {
        if pubs.insert(p.id, p).is_some() {
            return fail(
                Property::Integrity,
                format!("publisher id {} listed twice", p.id),
            );
        }
        if let Some(s) = p.confirmed.intersection(&p.refused).next() {
            return fail(
                Property::Integrity,
                format!(
                    "publisher {} ({}): seq {s} both confirmed and refused",
                    p.id, p.label
                ),
            );
        }
        if let Some(s) = p
            .confirmed
            .iter()
            .chain(&p.refused)
            .find(|s| !p.published.contains(s))
        {
            return fail(
                Property::Integrity,
                format!(
                    "publisher {} ({}): seq {s} settled but never published",
                    p.id, p.label
                ),
            );
        }
        sum.published += p.published.len();
        sum.confirmed += p.confirmed.len();
        sum.refused += p.refused.len();
    }

    // Per stream: integrity, FIFO, increasing view ids; one membership per id.
    let mut views: BTreeMap<u64, (&View, usize)> = BTreeMap::new();
    let mut delivered: BTreeSet<MsgId> = BTreeSet::new();
    for (k, s) in h.streams.iter().enumerate() {
        let mut seen = BTreeSet::new();
        let mut last_seq: BTreeMap<u64, u64> = BTreeMap::new();
        let mut last_view: Option<u64> = None;
        for e in &s.events {
            match e {
                Event::Msg(m) => {
                    sum.deliveries += 1;
                    let Some(p) = pubs.get(&m.publisher) else {
                        return fail(
                            Property::Integrity,
                            format!("{}: message {m} from an unknown publisher", s.label),
                        );
                    };
                    if !p.published.contains(&m.seq) {
                        return fail(
                            Property::Integrity,
                            format!("{}: message {m} was never published", s.label),
                        );
                    }
                    if p.refused.contains(&m.seq) {
                        return fail(
                            Property::Integrity,
                            format!(
                                "{}: message {m} was refused (no quorum) yet delivered",
                                s.label
                            ),
                        );
                    }
                    if !seen.insert(*m) {
                        return fail(
                            Property::Integrity,
                            format!("{}: message {m} delivered twice", s.label),
                        );
                    }
                    delivered.insert(*m);
                    let last = last_seq.entry(m.publisher).or_insert(0);
                    if m.seq <= *last {
                        return fail(
                            Property::Fifo,
                            format!(
                                "{}: publisher {} seq {} after seq {last}",
                                s.label, m.publisher, m.seq
                            ),
                        );
                    }
                    *last = m.seq;
                }
                Event::View(v) => {
                    if let Some(l) = last_view
                        && v.view <= l
                    {
                        return fail(
                            Property::Views,
                            format!("{}: view {} after view {l}", s.label, v.view),
                        );
                    }
                    last_view = Some(v.view);
                    match views.get(&v.view) {
                        Some((other, o)) if *other != v => {
                            return fail(
                                Property::Views,
                                format!(
                                    "view {} is {:?} on {} but {:?} on {}",
                                    v.view, other, h.streams[*o].label, v, s.label
                                ),
                            );
                        }
                        Some(_) => {}
                        None => {
                            views.insert(v.view, (v, k));
                        }
                    }
                }
            }
        }
    }
    sum.distinct = delivered.len();
    sum.views = views.len();
    // Consecutive views follow from each other: members(v+1) =
    // (members(v) - left(v+1)) + joined(v+1); left were members, joined are
    // members.
    for (id, (v, k)) in &views {
        let set = |l: &[String]| l.iter().cloned().collect::<BTreeSet<String>>();
        let members = set(&v.members);
        if !set(&v.joined).is_subset(&members) || set(&v.left).iter().any(|l| members.contains(l)) {
            return fail(
                Property::Views,
                format!(
                    "view {id} on {}: joined or left do not fit its members: {v:?}",
                    h.streams[*k].label
                ),
            );
        }
        let Some((prev, _)) = views.get(&(id - 1)) else {
            continue;
        };
        let before = set(&prev.members);
        let want: BTreeSet<String> = before
            .difference(&set(&v.left))
            .cloned()
            .chain(v.joined.iter().cloned())
            .collect();
        if want != members || !set(&v.left).is_subset(&before) {
            return fail(
                Property::Views,
                format!(
                    "view {id} does not follow from view {}: {prev:?} then {v:?}",
                    id - 1
                ),
            );
        }
    }

    // Agreement: common items in the same relative order, pairwise.
    let index: Vec<HashMap<Key, usize>> = h
        .streams
        .iter()
        .map(|s| {
            s.events
                .iter()
                .enumerate()
                .map(|(i, e)| (key(e), i))
                .collect()
        })
        .collect();
    for (a, sa) in h.streams.iter().enumerate() {
        for (b, in_b) in index.iter().enumerate().skip(a + 1) {
            let mut prev: Option<(Key, usize)> = None;
            for e in &sa.events {
                let k = key(e);
                let Some(&ib) = in_b.get(&k) else {
                    continue;
                };
                if let Some((pk, pb)) = prev
                    && ib < pb
                {
                    return fail(
                        Property::Agreement,
                        format!(
                            "{} delivers {pk} before {k}, {} the other way round",
                            sa.label, h.streams[b].label
                        ),
                    );
                }
                prev = Some((k, ib));
            }
        }
    }

    // Virtual synchrony, by segments.
    let mut segments: Vec<Segment> = Vec::new();
    for (k, s) in h.streams.iter().enumerate() {
        let mut cur: Option<Segment> = None;
        for e in &s.events {
            match e {
                Event::Msg(m) => {
                    if let Some(seg) = cur.as_mut() {
                        seg.msgs.push(*m);
                    }
                }
                Event::View(v) => {
                    if let Some(mut seg) = cur.take() {
                        seg.next = Some(v);
                        segments.push(seg);
                    }
                    cur = Some(Segment {
                        stream: k,
                        view: v,
                        next: None,
                        msgs: Vec::new(),
                    });
                }
            }
        }
        segments.extend(cur);
    }
    let mut view_of: HashMap<MsgId, (u64, usize)> = HashMap::new();
    let mut by_view: BTreeMap<u64, Vec<&Segment>> = BTreeMap::new();
    for seg in &segments {
        let s = &h.streams[seg.stream];
        if !seg.view.members.contains(&s.node)
            && let Some(m) = seg.msgs.first()
        {
            return fail(
                Property::VirtualSynchrony,
                format!(
                    "{}: message {m} delivered in view {}, which does not list {}",
                    s.label, seg.view.view, s.node
                ),
            );
        }
        for m in &seg.msgs {
            match view_of.get(m) {
                Some(&(v, o)) if v != seg.view.view => {
                    return fail(
                        Property::VirtualSynchrony,
                        format!(
                            "message {m} delivered in view {v} by {} but in view {} by {}",
                            h.streams[o].label, seg.view.view, s.label
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    view_of.insert(*m, (seg.view.view, seg.stream));
                }
            }
        }
        by_view.entry(seg.view.view).or_default().push(seg);
    }
    for (v, segs) in &by_view {
        for (i, a) in segs.iter().enumerate() {
            for b in &segs[i + 1..] {
                let (sa, sb) = (&h.streams[a.stream], &h.streams[b.stream]);
                let (wa, wb) = (a.whole(&sa.node), b.whole(&sb.node));
                let (short, long) = if a.msgs.len() <= b.msgs.len() {
                    (a, b)
                } else {
                    (b, a)
                };
                let prefix = long.msgs.starts_with(&short.msgs);
                let ok = match (wa, wb) {
                    (true, true) => a.msgs == b.msgs,
                    // The cut-off one delivered a prefix of the whole one.
                    (true, false) => b.msgs.len() <= a.msgs.len() && prefix,
                    (false, true) => a.msgs.len() <= b.msgs.len() && prefix,
                    (false, false) => prefix,
                };
                if !ok {
                    let show = |seg: &Segment, whole: bool| {
                        format!(
                            "{} delivered {} messages{} ({})",
                            h.streams[seg.stream].label,
                            seg.msgs.len(),
                            if whole {
                                format!(" up to view {}", v + 1)
                            } else {
                                " before it stopped".to_string()
                            },
                            first_difference(&seg.msgs, &other(seg, a, b).msgs)
                        )
                    };
                    return fail(
                        Property::VirtualSynchrony,
                        format!("in view {v}: {}; {}", show(a, wa), show(b, wb)),
                    );
                }
            }
        }
    }

    // Confirmed delivery.
    let mut confirmed: Vec<MsgId> = Vec::new();
    for p in &h.publishers {
        confirmed.extend(p.confirmed.iter().map(|&seq| MsgId {
            publisher: p.id,
            seq,
        }));
    }
    // For each complete stream: from which view on it had to deliver
    // (`None`: everything), and its last view.
    struct Owes {
        stream: usize,
        from: Option<u64>,
        last: Option<u64>,
        got: HashSet<MsgId>,
    }
    let mut obliged: Vec<Owes> = Vec::new();
    for (k, s) in h.streams.iter().enumerate() {
        if !s.complete {
            continue;
        }
        let vs: Vec<&View> = s
            .events
            .iter()
            .filter_map(|e| match e {
                Event::View(v) => Some(v),
                Event::Msg(_) => None,
            })
            .collect();
        let has = |v: &View| v.members.contains(&s.node);
        let from = match vs.last() {
            None if s.from_start => None,
            None => continue,
            Some(last) if !has(last) => continue,
            Some(_) => {
                // Walk back over consecutive views that list the node and
                // do not (re)admit it.
                let mut i = vs.len() - 1;
                loop {
                    let v = vs[i];
                    if v.joined.contains(&s.node) {
                        break Some(v.view);
                    }
                    if i == 0 {
                        break if s.from_start { None } else { Some(v.view) };
                    }
                    let p = vs[i - 1];
                    if p.view + 1 != v.view || !has(p) {
                        break Some(v.view);
                    }
                    i -= 1;
                }
            }
        };
        let last = vs.last().map(|v| v.view);
        let got = s
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Msg(m) => Some(*m),
                Event::View(_) => None,
            })
            .collect();
        obliged.push(Owes {
            stream: k,
            from,
            last,
            got,
        });
    }
    for m in &confirmed {
        let w = view_of.get(m).map(|&(v, _)| v);
        let mut owed = false;
        for Owes {
            stream: k,
            from,
            last,
            got,
        } in &obliged
        {
            let must = match (w, from) {
                (None, None) => true,
                (None, Some(_)) => false,
                (Some(w), f) => f.is_none_or(|f| f <= w) && last.is_none_or(|l| w <= l),
            };
            if !must {
                continue;
            }
            owed = true;
            sum.obligations += 1;
            if !got.contains(m) {
                let s = &h.streams[*k];
                return fail(
                    Property::ConfirmedDelivery,
                    format!(
                        "confirmed message {m} ({}) not delivered by {} (a member {} to its last view {})",
                        match w {
                            Some(w) => format!("delivered by others in view {w}"),
                            None if delivered.contains(m) => {
                                "delivered by others before their first view event".to_string()
                            }
                            None => "delivered by no stream".to_string(),
                        },
                        s.label,
                        from.map_or("from the start".to_string(), |f| format!("from view {f}")),
                        last.map_or("-".to_string(), |l| l.to_string()),
                    ),
                );
            }
        }
        if !owed && !delivered.contains(m) {
            sum.orphans.push(*m);
        }
    }
    Ok(sum)
}

fn other<'a>(seg: &Segment, a: &'a Segment<'a>, b: &'a Segment<'a>) -> &'a Segment<'a> {
    if std::ptr::eq(seg, a) { b } else { a }
}

/// Where two message sequences first differ, for a readable report.
fn first_difference(mine: &[MsgId], theirs: &[MsgId]) -> String {
    let i = mine.iter().zip(theirs).take_while(|(x, y)| x == y).count();
    match (mine.get(i), theirs.get(i)) {
        (Some(x), Some(y)) => format!("#{i} is {x}, not {y}"),
        (Some(x), None) => format!("#{i} is {x}, past the other's end"),
        (None, _) => format!("ends after #{i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(publisher: u64, seq: u64) -> Event {
        Event::Msg(MsgId { publisher, seq })
    }

    fn v(id: u64, members: &[&str], joined: &[&str], left: &[&str]) -> Event {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect();
        Event::View(View {
            view: id,
            epoch: 0,
            lost: false,
            members: s(members),
            joined: s(joined),
            left: s(left),
        })
    }

    fn stream(node: &str, events: Vec<Event>) -> Stream {
        Stream {
            node: node.to_string(),
            incarnation: 0,
            label: format!("{node} sub"),
            from_start: true,
            complete: true,
            events,
        }
    }

    fn publisher(id: u64, published: u64, confirmed: &[u64], refused: &[u64]) -> Publisher {
        Publisher {
            id,
            label: format!("p{id}"),
            published: (1..=published).collect(),
            confirmed: confirmed.iter().copied().collect(),
            refused: refused.iter().copied().collect(),
        }
    }

    const ABC: &[&str] = &["a", "b", "c"];

    /// Three nodes; c is cut off in view 2 after 1:2, b and a go on to
    /// view 3 which removes c; c is re-admitted in view 4.
    fn good() -> History {
        let a = vec![
            v(2, ABC, &[], &[]),
            m(1, 1),
            m(2, 1),
            m(1, 2),
            m(1, 3),
            v(3, &["a", "b"], &[], &["c"]),
            m(2, 2),
            v(4, ABC, &["c"], &[]),
            m(1, 4),
        ];
        let mut c = a.clone();
        c.drain(4..7);
        History {
            streams: vec![stream("a", a.clone()), stream("b", a), stream("c", c)],
            publishers: vec![
                publisher(1, 5, &[1, 2, 3, 4], &[5]),
                publisher(2, 2, &[1, 2], &[]),
            ],
        }
    }

    fn violation(h: &History) -> Property {
        match check(h) {
            Ok(s) => panic!("expected a violation, got {s:?}"),
            Err(v) => v.property,
        }
    }

    #[test]
    fn a_good_history_passes_with_figures() {
        let s = check(&good()).unwrap();
        assert_eq!(s.streams, 3);
        assert_eq!(s.deliveries, 6 + 6 + 4);
        assert_eq!(s.distinct, 6);
        assert_eq!(s.views, 3);
        assert_eq!((s.published, s.confirmed, s.refused), (7, 6, 1));
        assert!(s.orphans.is_empty());
        // a and b owe all 6; c, cut off in view 2, owes only what came
        // after the view that re-admits it (1:4).
        assert_eq!(s.obligations, 13);
    }

    #[test]
    fn integrity_never_published() {
        let mut h = good();
        h.streams[1].events.push(m(2, 9));
        assert_eq!(violation(&h), Property::Integrity);
    }

    #[test]
    fn integrity_unknown_publisher() {
        let mut h = good();
        h.streams[0].events.push(m(7, 1));
        assert_eq!(violation(&h), Property::Integrity);
    }

    #[test]
    fn integrity_duplicate() {
        let mut h = good();
        h.streams[0].events.push(m(1, 4));
        assert_eq!(violation(&h), Property::Integrity);
    }

    #[test]
    fn integrity_refused_but_delivered() {
        let mut h = good();
        for s in &mut h.streams {
            s.events.push(m(1, 5));
        }
        assert_eq!(violation(&h), Property::Integrity);
    }

    #[test]
    fn integrity_confirmed_and_refused() {
        let mut h = good();
        h.publishers[0].refused.insert(4);
        assert_eq!(violation(&h), Property::Integrity);
    }

    #[test]
    fn fifo_within_a_stream() {
        let mut h = good();
        // Every stream swaps 1:2 and 1:3: agreement holds, FIFO does not.
        for s in &mut h.streams {
            s.events.swap(3, 4);
        }
        assert_eq!(violation(&h), Property::Fifo);
    }

    #[test]
    fn agreement_two_streams_disagree_on_order() {
        let mut h = good();
        h.streams[1].events.swap(2, 3); // 2:1 and 1:2 on b only
        assert_eq!(violation(&h), Property::Agreement);
    }

    #[test]
    fn agreement_covers_views_too() {
        let mut h = good();
        // b sees 2:2 before view 3 (and so also in view 2).
        h.streams[1].events.swap(5, 6);
        let p = violation(&h);
        assert!(
            p == Property::Agreement || p == Property::VirtualSynchrony,
            "{p:?}"
        );
    }

    #[test]
    fn views_must_increase() {
        let mut h = good();
        h.streams[2].events.push(v(4, ABC, &["c"], &[]));
        assert_eq!(violation(&h), Property::Views);
    }

    #[test]
    fn views_one_membership_per_id() {
        let mut h = good();
        h.streams[2].events[4] = v(4, &["b", "c"], &["c"], &[]);
        assert_eq!(violation(&h), Property::Views);
    }

    #[test]
    fn views_follow_from_each_other() {
        let mut h = good();
        // View 4 re-admits c, but says members a, b, c with nobody joined.
        for s in &mut h.streams {
            for e in &mut s.events {
                if let Event::View(v) = e
                    && v.view == 4
                {
                    v.joined.clear();
                }
            }
        }
        assert_eq!(violation(&h), Property::Views);
        // A node that left cannot stay a member.
        let mut h = good();
        for s in &mut h.streams[..2] {
            s.events[5] = v(3, ABC, &[], &["c"]);
        }
        assert_eq!(violation(&h), Property::Views);
    }

    #[test]
    fn virtual_synchrony_same_views_same_messages() {
        let mut h = good();
        // b misses 1:3 but goes straight on to view 3: not a prefix-cut.
        h.streams[1].events.remove(4);
        assert_eq!(violation(&h), Property::VirtualSynchrony);
    }

    #[test]
    fn virtual_synchrony_message_in_two_views() {
        let mut h = good();
        // c gets 1:4 without view 4, so in view 2 (agreement cannot see it).
        h.streams[2]
            .events
            .retain(|e| !matches!(e, Event::View(v) if v.view == 4));
        assert_eq!(violation(&h), Property::VirtualSynchrony);
    }

    #[test]
    fn virtual_synchrony_no_delivery_outside_the_view() {
        let mut h = good();
        // c receives view 3 (which removes it) and then a message in it.
        let c = &mut h.streams[2].events;
        c.insert(4, v(3, &["a", "b"], &[], &["c"]));
        c.insert(5, m(2, 2));
        assert_eq!(violation(&h), Property::VirtualSynchrony);
    }

    #[test]
    fn confirmed_delivery_to_a_continuous_member() {
        let mut h = good();
        // b never gets 1:4 although it is a member throughout.
        h.streams[1].events.pop();
        assert_eq!(violation(&h), Property::ConfirmedDelivery);
    }

    #[test]
    fn confirmed_delivery_after_readmission() {
        let mut h = good();
        // c, re-admitted in view 4, misses 1:4 of view 4.
        h.streams[2].events.pop();
        assert_eq!(violation(&h), Property::ConfirmedDelivery);
    }

    #[test]
    fn confirmed_but_delivered_by_nobody() {
        let mut h = good();
        h.publishers[1].published.insert(3);
        h.publishers[1].confirmed.insert(3);
        assert_eq!(violation(&h), Property::ConfirmedDelivery);
    }

    #[test]
    fn incomplete_streams_owe_nothing_and_orphans_are_counted() {
        let mut h = good();
        for s in &mut h.streams {
            s.complete = false;
        }
        h.publishers[1].published.insert(3);
        h.publishers[1].confirmed.insert(3);
        let s = check(&h).unwrap();
        assert_eq!(s.obligations, 0);
        assert_eq!(
            s.orphans,
            vec![MsgId {
                publisher: 2,
                seq: 3
            }]
        );
    }

    #[test]
    fn a_stream_that_joined_late_owes_only_from_its_admission() {
        let mut h = good();
        // A reconnected subscriber on c that saw only view 4 on: fine.
        let mut late = stream("c", vec![v(4, ABC, &["c"], &[]), m(1, 4)]);
        late.from_start = false;
        late.incarnation = 1;
        h.streams.push(late);
        check(&h).unwrap();
        // ... but it owes 1:4.
        h.streams[3].events.pop();
        assert_eq!(violation(&h), Property::ConfirmedDelivery);
    }

    #[test]
    fn a_readmission_between_consecutive_views_excuses_the_gap() {
        // c stopped delivering in view 2 (state transfer) and is re-admitted
        // at view 3 while still listed as a member: its view 2 is a prefix.
        let a = vec![
            v(2, ABC, &[], &[]),
            m(1, 1),
            m(1, 2),
            v(3, ABC, &["c"], &[]),
            m(1, 3),
        ];
        let c = vec![
            v(2, ABC, &[], &[]),
            m(1, 1),
            v(3, ABC, &["c"], &[]),
            m(1, 3),
        ];
        let mut h = History {
            streams: vec![stream("a", a), stream("c", c)],
            publishers: vec![publisher(1, 3, &[1, 3], &[])],
        };
        check(&h).unwrap();
        // Not a prefix: c skipped 1:1 but delivered 1:2.
        h.streams[1].events[1] = m(1, 2);
        assert_eq!(violation(&h), Property::VirtualSynchrony);
    }
}

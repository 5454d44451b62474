//! The wire form of the ordering protocol's messages (`Frame::Order` bodies),
//! sans-IO. A body is the sender's incarnation, then one message. Integers are LEB128 varints; strings and byte strings are a
//! varint length and the bytes; `Option` is a 0/1 byte then the value;
//! sequences and maps are a varint count then the items. Payloads decode as
//! slices of the frame (no copy). Every length is checked against what is
//! left, so a hostile frame is an error, never a panic or a huge allocation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::order::{
    DvcState, Entry, Epoch, GroupOp, LogImage, NodeId, PeerMsg, ProposalId, Publish, RecoveryState,
    Stamp, State, ViewInfo,
};

/// Why a frame body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed ordering message: {}", self.0)
    }
}

type R<T> = Result<T, DecodeError>;

// ---- encoding --------------------------------------------------------------

/// Encodes `msg` as sent by incarnation `inc`.
pub fn encode(inc: u64, msg: &PeerMsg) -> Vec<u8> {
    let mut w = Vec::with_capacity(64);
    put_u64(&mut w, inc);
    put_msg(&mut w, msg);
    w
}

fn put_epoch(w: &mut Vec<u8>, e: &Epoch) {
    for v in [e.n, e.tag, e.formed.view, e.formed.leader_inc] {
        put_u64(w, v);
    }
}

fn put_u64(w: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            w.push(b);
            return;
        }
        w.push(b | 0x80);
    }
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u64(w, b.len() as u64);
    w.extend_from_slice(b);
}

fn put_opt_bytes(w: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => w.push(0),
        Some(b) => {
            w.push(1);
            put_bytes(w, b);
        }
    }
}

fn put_nodes<'a>(w: &mut Vec<u8>, n: impl ExactSizeIterator<Item = &'a NodeId>) {
    put_u64(w, n.len() as u64);
    for x in n {
        put_u64(w, u64::from(*x));
    }
}

fn put_id(w: &mut Vec<u8>, id: &ProposalId) {
    put_u64(w, u64::from(id.origin));
    put_u64(w, id.incarnation);
    put_u64(w, id.pseq);
}

fn put_entry(w: &mut Vec<u8>, e: &Entry) {
    match e {
        Entry::Publish(p) => {
            w.push(0);
            put_id(w, &p.id);
            put_u64(w, p.client);
            put_u64(w, p.seq);
            put_bytes(w, p.subject.as_bytes());
            put_opt_bytes(w, p.reply.as_deref().map(str::as_bytes));
            put_opt_bytes(w, p.headers.as_deref());
            put_bytes(w, &p.payload);
        }
        Entry::Join(g) | Entry::Leave(g) => {
            w.push(if matches!(e, Entry::Join(_)) { 1 } else { 2 });
            put_id(w, &g.id);
            put_u64(w, g.client);
            put_bytes(w, g.member.as_bytes());
            put_bytes(w, g.group.as_bytes());
        }
        Entry::View(v) => {
            w.push(3);
            put_u64(w, v.id);
            put_epoch(w, &v.epoch);
            w.push(u8::from(v.lost));
            put_nodes(w, v.members.iter());
            put_nodes(w, v.joined.iter());
            put_nodes(w, v.left.iter());
        }
    }
}

fn put_entries(w: &mut Vec<u8>, es: &[Entry]) {
    put_u64(w, es.len() as u64);
    for e in es {
        put_entry(w, e);
    }
}

fn put_state(w: &mut Vec<u8>, s: &State) {
    put_epoch(w, &s.epoch);
    put_u64(w, s.ancestors.len() as u64);
    for (e, v) in &s.ancestors {
        put_epoch(w, e);
        put_u64(w, *v);
    }
    put_u64(w, s.view_id);
    put_nodes(w, s.members.iter());
    put_u64(w, s.groups.len() as u64);
    for (group, members) in &s.groups {
        put_bytes(w, group.as_bytes());
        put_u64(w, members.len() as u64);
        for (member, node) in members {
            put_bytes(w, member.as_bytes());
            put_u64(w, u64::from(*node));
        }
    }
    put_u64(w, s.dedup.len() as u64);
    for (node, (inc, pseq)) in &s.dedup {
        put_u64(w, u64::from(*node));
        put_u64(w, *inc);
        put_u64(w, *pseq);
    }
}

fn put_log(w: &mut Vec<u8>, l: &LogImage) {
    put_state(w, &l.base);
    put_u64(w, l.start);
    put_entries(w, &l.entries);
}

fn put_msg(w: &mut Vec<u8>, m: &PeerMsg) {
    match m {
        PeerMsg::Forward {
            epoch,
            view,
            after,
            items,
        } => {
            w.push(0);
            put_epoch(w, epoch);
            put_u64(w, *view);
            put_u64(w, *after);
            put_entries(w, items);
        }
        PeerMsg::Prepare {
            epoch,
            view,
            first_op,
            entries,
            commit,
            trunc,
        } => {
            w.push(1);
            put_epoch(w, epoch);
            for v in [view, first_op, commit, trunc] {
                put_u64(w, *v);
            }
            put_entries(w, entries);
        }
        PeerMsg::PrepareOk { view, op, applied } => {
            w.push(2);
            for v in [view, op, applied] {
                put_u64(w, *v);
            }
        }
        PeerMsg::Commit {
            epoch,
            view,
            commit,
            trunc,
        } => {
            w.push(3);
            put_epoch(w, epoch);
            for v in [view, commit, trunc] {
                put_u64(w, *v);
            }
        }
        PeerMsg::StartViewChange { view, moved, join } => {
            w.push(4);
            put_u64(w, *view);
            w.push(u8::from(*moved));
            match join {
                None => w.push(0),
                Some((e, top)) => {
                    w.push(1);
                    put_epoch(w, e);
                    put_u64(w, *top);
                }
            }
        }
        PeerMsg::DoViewChange { view, state } => {
            w.push(5);
            put_u64(w, *view);
            match state {
                None => w.push(0),
                Some(d) => {
                    w.push(1);
                    for v in [d.stamp.view, d.stamp.leader_inc, d.commit, d.applied] {
                        put_u64(w, v);
                    }
                    put_log(w, &d.log);
                }
            }
        }
        PeerMsg::StartView { view, log, commit } => {
            w.push(6);
            put_u64(w, *view);
            put_u64(w, *commit);
            put_log(w, log);
        }
        PeerMsg::GetState { view } => {
            w.push(7);
            put_u64(w, *view);
        }
        PeerMsg::JoinReq {
            view,
            stopped,
            applied,
        } => {
            w.push(8);
            for v in [view, stopped, applied] {
                put_u64(w, *v);
            }
        }
        PeerMsg::Recovery { nonce } => {
            w.push(9);
            put_u64(w, *nonce);
        }
        PeerMsg::RecoveryResponse { nonce, view, state } => {
            w.push(10);
            put_u64(w, *nonce);
            put_u64(w, *view);
            match state {
                RecoveryState::Blank => w.push(0),
                RecoveryState::Normal {
                    epoch,
                    leader_log: None,
                } => {
                    w.push(1);
                    put_epoch(w, epoch);
                }
                RecoveryState::Normal {
                    epoch,
                    leader_log: Some((log, commit)),
                } => {
                    w.push(2);
                    put_epoch(w, epoch);
                    put_u64(w, *commit);
                    put_log(w, log);
                }
                RecoveryState::Stuck => w.push(3),
            }
        }
    }
}

// ---- decoding --------------------------------------------------------------

/// Decodes one body: the sender's incarnation and its message; trailing
/// bytes are an error.
pub fn decode(frame: &Bytes) -> R<(u64, PeerMsg)> {
    let mut r = Reader { buf: frame, pos: 0 };
    let inc = r.u64()?;
    let m = r.msg()?;
    if r.pos != frame.len() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok((inc, m))
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn u64(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn node(&mut self) -> R<NodeId> {
        NodeId::try_from(self.u64()?).map_err(|_| DecodeError("node id out of range"))
    }

    /// A count of items, each at least `min` bytes: bounded by what is left.
    fn count(&mut self, min: usize) -> R<usize> {
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError("count"))?;
        if n.saturating_mul(min.max(1)) > self.left() {
            return Err(DecodeError("count exceeds the frame"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> R<Bytes> {
        let n = self.count(1)?;
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn string(&mut self) -> R<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }

    fn flag(&mut self) -> R<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad option flag")),
        }
    }

    fn nodes(&mut self) -> R<Vec<NodeId>> {
        let n = self.count(1)?;
        (0..n).map(|_| self.node()).collect()
    }

    fn id(&mut self) -> R<ProposalId> {
        Ok(ProposalId {
            origin: self.node()?,
            incarnation: self.u64()?,
            pseq: self.u64()?,
        })
    }

    fn entry(&mut self) -> R<Entry> {
        Ok(match self.u8()? {
            0 => Entry::Publish(Arc::new(Publish {
                id: self.id()?,
                client: self.u64()?,
                seq: self.u64()?,
                subject: self.string()?,
                reply: if self.flag()? {
                    Some(self.string()?)
                } else {
                    None
                },
                headers: if self.flag()? {
                    Some(self.bytes()?)
                } else {
                    None
                },
                payload: self.bytes()?,
            })),
            k @ (1 | 2) => {
                let g = Arc::new(GroupOp {
                    id: self.id()?,
                    client: self.u64()?,
                    member: self.string()?,
                    group: self.string()?,
                });
                if k == 1 {
                    Entry::Join(g)
                } else {
                    Entry::Leave(g)
                }
            }
            3 => Entry::View(Arc::new(ViewInfo {
                id: self.u64()?,
                epoch: self.epoch()?,
                lost: self.flag()?,
                members: self.nodes()?,
                joined: self.nodes()?,
                left: self.nodes()?,
            })),
            _ => return Err(DecodeError("unknown entry kind")),
        })
    }

    fn entries(&mut self) -> R<Vec<Entry>> {
        let n = self.count(2)?;
        (0..n).map(|_| self.entry()).collect()
    }

    fn epoch(&mut self) -> R<Epoch> {
        Ok(Epoch {
            n: self.u64()?,
            tag: self.u64()?,
            formed: Stamp {
                view: self.u64()?,
                leader_inc: self.u64()?,
            },
        })
    }

    fn state(&mut self) -> R<State> {
        let epoch = self.epoch()?;
        let mut ancestors = BTreeMap::new();
        for _ in 0..self.count(5)? {
            let e = self.epoch()?;
            ancestors.insert(e, self.u64()?);
        }
        let view_id = self.u64()?;
        let members: BTreeSet<NodeId> = self.nodes()?.into_iter().collect();
        let mut groups = BTreeMap::new();
        for _ in 0..self.count(2)? {
            let group = self.string()?;
            let mut m = BTreeMap::new();
            for _ in 0..self.count(2)? {
                let member = self.string()?;
                m.insert(member, self.node()?);
            }
            groups.insert(group, m);
        }
        let mut dedup = BTreeMap::new();
        for _ in 0..self.count(3)? {
            let node = self.node()?;
            dedup.insert(node, (self.u64()?, self.u64()?));
        }
        Ok(State {
            epoch,
            ancestors,
            view_id,
            members,
            groups,
            dedup,
        })
    }

    fn log(&mut self) -> R<LogImage> {
        Ok(LogImage {
            base: self.state()?,
            start: self.u64()?,
            entries: self.entries()?,
        })
    }

    fn msg(&mut self) -> R<PeerMsg> {
        Ok(match self.u8()? {
            0 => PeerMsg::Forward {
                epoch: self.epoch()?,
                view: self.u64()?,
                after: self.u64()?,
                items: self.entries()?,
            },
            1 => {
                let epoch = self.epoch()?;
                let (view, first_op, commit, trunc) =
                    (self.u64()?, self.u64()?, self.u64()?, self.u64()?);
                PeerMsg::Prepare {
                    epoch,
                    view,
                    first_op,
                    entries: self.entries()?,
                    commit,
                    trunc,
                }
            }
            2 => PeerMsg::PrepareOk {
                view: self.u64()?,
                op: self.u64()?,
                applied: self.u64()?,
            },
            3 => PeerMsg::Commit {
                epoch: self.epoch()?,
                view: self.u64()?,
                commit: self.u64()?,
                trunc: self.u64()?,
            },
            4 => PeerMsg::StartViewChange {
                view: self.u64()?,
                moved: self.flag()?,
                join: if self.flag()? {
                    Some((self.epoch()?, self.u64()?))
                } else {
                    None
                },
            },
            5 => {
                let view = self.u64()?;
                let state = if self.flag()? {
                    let (v, inc, commit, applied) =
                        (self.u64()?, self.u64()?, self.u64()?, self.u64()?);
                    Some(DvcState {
                        stamp: Stamp {
                            view: v,
                            leader_inc: inc,
                        },
                        commit,
                        applied,
                        log: self.log()?,
                    })
                } else {
                    None
                };
                PeerMsg::DoViewChange { view, state }
            }
            6 => {
                let (view, commit) = (self.u64()?, self.u64()?);
                PeerMsg::StartView {
                    view,
                    log: self.log()?,
                    commit,
                }
            }
            7 => PeerMsg::GetState { view: self.u64()? },
            8 => PeerMsg::JoinReq {
                view: self.u64()?,
                stopped: self.u64()?,
                applied: self.u64()?,
            },
            9 => PeerMsg::Recovery { nonce: self.u64()? },
            10 => {
                let (nonce, view) = (self.u64()?, self.u64()?);
                let state = match self.u8()? {
                    0 => RecoveryState::Blank,
                    1 => RecoveryState::Normal {
                        epoch: self.epoch()?,
                        leader_log: None,
                    },
                    2 => {
                        let (epoch, commit) = (self.epoch()?, self.u64()?);
                        RecoveryState::Normal {
                            epoch,
                            leader_log: Some((self.log()?, commit)),
                        }
                    }
                    3 => RecoveryState::Stuck,
                    _ => return Err(DecodeError("unknown recovery state")),
                };
                PeerMsg::RecoveryResponse { nonce, view, state }
            }
            _ => return Err(DecodeError("unknown message kind")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(o: NodeId, p: u64) -> ProposalId {
        ProposalId {
            origin: o,
            incarnation: 1_700_000_000_000,
            pseq: p,
        }
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry::Publish(Arc::new(Publish {
                id: id(0, 1),
                client: 7,
                seq: 3,
                subject: "orders.eu".into(),
                reply: Some("_INBOX.x".into()),
                headers: Some(Bytes::from_static(b"NATS/1.0\r\nA: b\r\n\r\n")),
                payload: Bytes::from(vec![0u8, 255, 13, 10]),
            })),
            Entry::Publish(Arc::new(Publish {
                id: id(1, 9),
                client: 1,
                seq: 1,
                subject: "t".into(),
                reply: None,
                headers: None,
                payload: Bytes::new(),
            })),
            Entry::Join(Arc::new(GroupOp {
                id: id(2, 4),
                client: 3,
                member: "#3#node3".into(),
                group: "ec_cluster".into(),
            })),
            Entry::Leave(Arc::new(GroupOp {
                id: id(2, 5),
                client: 3,
                member: "#3#node3".into(),
                group: "ec_cluster".into(),
            })),
            Entry::View(Arc::new(ViewInfo {
                id: 4,
                epoch: Epoch {
                    n: 2,
                    tag: 77,
                    formed: Stamp {
                        view: 8,
                        leader_inc: 76,
                    },
                },
                lost: true,
                members: vec![0, 1],
                joined: vec![1],
                left: vec![2],
            })),
        ]
    }

    fn state() -> State {
        let mut s = State {
            epoch: Epoch {
                n: 1,
                tag: 5,
                formed: Stamp::default(),
            },
            ancestors: BTreeMap::from([(Epoch::default(), 3)]),
            view_id: 3,
            ..State::default()
        };
        s.members.extend([0, 2]);
        s.groups
            .entry("g".into())
            .or_default()
            .insert("#1#node1".into(), 0);
        s.dedup.insert(0, (5, 99));
        s
    }

    fn all() -> Vec<PeerMsg> {
        let log = LogImage {
            base: state(),
            start: 17,
            entries: entries(),
        };
        let e = Epoch {
            n: 3,
            tag: 9,
            formed: Stamp {
                view: 1,
                leader_inc: 9,
            },
        };
        vec![
            PeerMsg::Forward {
                epoch: e,
                view: 2,
                after: 11,
                items: entries(),
            },
            PeerMsg::Prepare {
                epoch: e,
                view: 2,
                first_op: 40,
                entries: entries(),
                commit: 39,
                trunc: 10,
            },
            PeerMsg::PrepareOk {
                view: 2,
                op: 44,
                applied: 39,
            },
            PeerMsg::Commit {
                epoch: e,
                view: 2,
                commit: 44,
                trunc: 12,
            },
            PeerMsg::StartViewChange {
                view: 3,
                moved: false,
                join: None,
            },
            PeerMsg::StartViewChange {
                view: 4,
                moved: true,
                join: Some((e, 3)),
            },
            PeerMsg::DoViewChange {
                view: 3,
                state: Some(DvcState {
                    stamp: Stamp {
                        view: 2,
                        leader_inc: 1_700_000_000_001,
                    },
                    log: log.clone(),
                    commit: 40,
                    applied: 40,
                }),
            },
            PeerMsg::DoViewChange {
                view: 3,
                state: None,
            },
            PeerMsg::StartView {
                view: 3,
                log: log.clone(),
                commit: 41,
            },
            PeerMsg::GetState { view: 3 },
            PeerMsg::JoinReq {
                view: 3,
                stopped: 10,
                applied: 9,
            },
            PeerMsg::Recovery { nonce: u64::MAX },
            PeerMsg::RecoveryResponse {
                nonce: 1,
                view: 3,
                state: RecoveryState::Blank,
            },
            PeerMsg::RecoveryResponse {
                nonce: 1,
                view: 3,
                state: RecoveryState::Stuck,
            },
            PeerMsg::RecoveryResponse {
                nonce: 1,
                view: 3,
                state: RecoveryState::Normal {
                    epoch: log.epoch(),
                    leader_log: None,
                },
            },
            PeerMsg::RecoveryResponse {
                nonce: 1,
                view: 3,
                state: RecoveryState::Normal {
                    epoch: log.epoch(),
                    leader_log: Some((log, 44)),
                },
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let wire = Bytes::from(encode(1_700_000_000_123, &m));
            assert_eq!(decode(&wire), Ok((1_700_000_000_123, m.clone())), "{m:?}");
        }
    }

    #[test]
    fn truncations_and_garbage_are_errors_not_panics() {
        for m in all() {
            let wire = encode(5, &m);
            for cut in 0..wire.len() {
                assert!(decode(&Bytes::copy_from_slice(&wire[..cut])).is_err());
            }
            let mut long = wire.clone();
            long.push(0);
            assert_eq!(
                decode(&Bytes::from(long)),
                Err(DecodeError("trailing bytes"))
            );
        }
        // A count far beyond the frame must not allocate.
        let mut huge = vec![1u8, 0, 1, 0, 0];
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode(&Bytes::from(huge)).is_err());
        assert!(decode(&Bytes::from_static(&[0xee])).is_err());
        assert!(decode(&Bytes::from_static(&[0x80; 12])).is_err());
    }

    #[test]
    fn payloads_are_slices_of_the_frame() {
        let m = &all()[0];
        let wire = Bytes::from(encode(1, m));
        let (_, PeerMsg::Forward { items, .. }) = decode(&wire).unwrap() else {
            panic!()
        };
        let Entry::Publish(p) = &items[0] else {
            panic!()
        };
        let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        assert!(range.contains(&(p.payload.as_ptr() as usize)));
    }
}

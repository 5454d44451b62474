//! The simulator's network and mesh model: what the daemon's mesh
//! (`crate::mesh`) does over what real networks do.
//!
//! - One TCP connection per node pair; only the node whose name sorts first
//!   dials (`n0` < `n1` < …), as the mesh does. A dial to a node that is not
//!   listening (not started, crashed) is refused at once; one into a
//!   partition, or to a paused node (the kernel accepts, the process never
//!   answers the handshake), hangs until `connect_timeout`; a node with the
//!   wrong cluster secret is refused at the handshake. A failed dial is
//!   retried after [`crate::mesh::backoff`] — the daemon's own schedule.
//! - A connection is FIFO in each direction. A packet waits (TCP
//!   retransmits) while its path is blocked and arrives late when it opens;
//!   loss shows as a retransmission delay that holds up what follows;
//!   bandwidth serialises large messages. A connection is replaced by a new
//!   one with a new generation; packets of the old one are gone.
//! - Each end judges the other on its own: an end that heard nothing for
//!   [`crate::mesh::SUSPECT_AFTER`] keepalives closes (its node's core gets
//!   `peer_down`) and sends a FIN that reaches the other end when the path
//!   lets it; a packet that reaches a closed end or a dead process resets
//!   the sender's end. A crashed process's kernel may still send what was
//!   in its socket buffers.
//!
//! The model reports link events with their generation, as the mesh does,
//! and the simulator applies the driver's rule: an event of a generation
//! that is no longer current is dropped.

use std::collections::VecDeque;

use super::Rng;
use crate::order::PeerMsg;

/// What a connection carries besides ordering messages.
#[derive(Debug, Clone)]
pub enum Body {
    Msg(Box<PeerMsg>),
    Ping,
    /// The sending end closed (FIN, or RST from a dead process).
    Fin,
}

#[derive(Debug)]
struct Pkt {
    at: u64,
    /// Incarnation of the sending process.
    inc: u64,
    body: Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dial {
    /// Waiting to dial at `next`.
    Idle { next: u64 },
    /// A dial in progress; it completes at `done` (succeeding if `ok` and
    /// the acceptor is still there then).
    Dialing {
        done: u64,
        ok: bool,
        acceptor_inc: u64,
    },
    /// The dialer's end is open; it dials again when it closes.
    Linked,
}

#[derive(Debug)]
struct End {
    open: bool,
    generation: u64,
    heard: u64,
}

/// The connection between `a` (the dialer) and `b`.
#[derive(Debug)]
struct Conn {
    a: usize,
    b: usize,
    dial: Dial,
    failures: u32,
    generation: u64,
    /// ends[0] is a's, ends[1] is b's.
    ends: [End; 2],
    /// q[0] carries a → b, q[1] b → a.
    q: [VecDeque<Pkt>; 2],
    busy: [u64; 2],
}

impl Conn {
    /// Closes `side`'s end: its FIN follows whatever it still had queued.
    fn send_fin(&mut self, side: usize, inc: u64, now: u64) {
        self.ends[side].open = false;
        let at = (now + 1).max(self.busy[side]);
        self.busy[side] = at;
        self.q[side].push_back(Pkt {
            at,
            inc,
            body: Body::Fin,
        });
    }
}

/// What the network tells a node's driver.
#[derive(Debug)]
pub enum LinkEvent {
    Up {
        peer: usize,
        generation: u64,
    },
    Down {
        peer: usize,
        generation: u64,
    },
    Msg {
        peer: usize,
        generation: u64,
        inc: u64,
        msg: Box<PeerMsg>,
    },
}

/// The processes as the network sees them at a moment.
pub trait Procs {
    /// Running (started, not crashed); a paused process is running.
    fn running(&self, i: usize) -> bool;
    fn paused(&self, i: usize) -> bool;
    fn inc(&self, i: usize) -> u64;
    /// Has a wrong cluster secret: every handshake with it is refused.
    fn misconfigured(&self, i: usize) -> bool;
}

/// Timing of the mesh.
#[derive(Debug, Clone)]
pub struct MeshParams {
    pub keepalive_ms: u64,
    pub reconnect_ms: u64,
    pub connect_timeout_ms: u64,
    /// Bytes per ms on each direction of a connection.
    pub bandwidth: u64,
}

pub struct Net {
    n: usize,
    conns: Vec<Conn>,
    next_generation: u64,
    pub mp: MeshParams,
    // Path faults (until a time, 0 = none).
    part: Vec<u8>,
    part_until: u64,
    cut_until: Vec<Vec<u64>>,
    oneway_until: Vec<Vec<u64>>,
    deaf_until: Vec<u64>,
    slow_until: Vec<Vec<u64>>,
    slow_extra: Vec<Vec<u64>>,
    loss_until: Vec<Vec<u64>>,
    /// Per node: time of its last keepalive round (to tell a stalled timer).
    last_round: Vec<u64>,
}

impl Net {
    pub fn new(n: usize, mp: MeshParams) -> Net {
        let mut conns = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                conns.push(Conn {
                    a,
                    b,
                    dial: Dial::Idle { next: 0 },
                    failures: 0,
                    generation: 0,
                    ends: [
                        End {
                            open: false,
                            generation: 0,
                            heard: 0,
                        },
                        End {
                            open: false,
                            generation: 0,
                            heard: 0,
                        },
                    ],
                    q: [VecDeque::new(), VecDeque::new()],
                    busy: [0, 0],
                });
            }
        }
        Net {
            n,
            conns,
            next_generation: 1,
            mp,
            part: vec![0; n],
            part_until: 0,
            cut_until: vec![vec![0; n]; n],
            oneway_until: vec![vec![0; n]; n],
            deaf_until: vec![0; n],
            slow_until: vec![vec![0; n]; n],
            slow_extra: vec![vec![0; n]; n],
            loss_until: vec![vec![0; n]; n],
            last_round: vec![0; n],
        }
    }

    fn conn_index(&self, i: usize, j: usize) -> usize {
        let (a, b) = if i < j { (i, j) } else { (j, i) };
        // Pairs (a, b) with a < b in order: a * (2n - a - 1) / 2 + (b - a - 1).
        a * (2 * self.n - a - 1) / 2 + (b - a - 1)
    }

    // ---------------------------------------------------------- faults

    pub fn partition(&mut self, sides: Vec<u8>, until: u64) {
        self.part = sides;
        self.part_until = until;
    }

    pub fn cut(&mut self, i: usize, j: usize, until: u64) {
        self.cut_until[i][j] = until;
        self.cut_until[j][i] = until;
    }

    /// Everything from `i` to `j` is lost (retransmitted in vain) until `until`.
    pub fn one_way(&mut self, i: usize, j: usize, until: u64) {
        self.oneway_until[i][j] = until;
    }

    /// `i` receives nothing from anyone until `until` (it still sends).
    pub fn deaf(&mut self, i: usize, until: u64) {
        self.deaf_until[i] = until;
    }

    pub fn slow(&mut self, i: usize, j: usize, extra: u64, until: u64) {
        self.slow_until[i][j] = until;
        self.slow_extra[i][j] = extra;
    }

    /// Random loss from `i` to `j` until `until` (TCP: retransmission delays).
    pub fn lossy(&mut self, i: usize, j: usize, until: u64) {
        self.loss_until[i][j] = until;
    }

    pub fn heal(&mut self) {
        self.part_until = 0;
        for i in 0..self.n {
            self.deaf_until[i] = 0;
            for j in 0..self.n {
                self.cut_until[i][j] = 0;
                self.oneway_until[i][j] = 0;
                self.slow_until[i][j] = 0;
                self.loss_until[i][j] = 0;
            }
        }
    }

    /// Whether packets from `i` can reach `j` now.
    pub fn open(&self, i: usize, j: usize, now: u64) -> bool {
        let parted = now < self.part_until && self.part[i] != self.part[j];
        !parted
            && now >= self.cut_until[i][j]
            && now >= self.oneway_until[i][j]
            && now >= self.deaf_until[j]
    }

    /// Whether every pair among `nodes` has an open connection at both ends.
    pub fn all_linked(&self, nodes: &[usize]) -> bool {
        nodes.iter().all(|&i| {
            nodes.iter().all(|&j| {
                i >= j || {
                    let c = &self.conns[self.conn_index(i, j)];
                    c.ends[0].open && c.ends[1].open && c.ends[0].generation == c.ends[1].generation
                }
            })
        })
    }

    // --------------------------------------------------------- sending

    /// Queues `msg` from `i` to `j` if `i`'s end is open; dropped otherwise
    /// (the mesh drops frames for a link that is down).
    pub fn send(&mut self, i: usize, j: usize, inc: u64, msg: PeerMsg, now: u64, rng: &mut Rng) {
        let size = msg_size(&msg);
        self.push(i, j, inc, Body::Msg(Box::new(msg)), size, now, rng);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        i: usize,
        j: usize,
        inc: u64,
        body: Body,
        size: u64,
        now: u64,
        rng: &mut Rng,
    ) {
        let mut delay = 1 + rng.below(4);
        if now < self.slow_until[i][j] {
            delay += self.slow_extra[i][j];
        }
        if now < self.loss_until[i][j] && rng.chance(1, 5) {
            // A lost segment: retransmitted after a timeout, holding up what follows.
            delay += rng.range(20, 200);
        }
        let bw = self.mp.bandwidth.max(1);
        let k = self.conn_index(i, j);
        let c = &mut self.conns[k];
        let side = usize::from(i != c.a);
        if !c.ends[side].open {
            return;
        }
        let at = (now + delay).max(c.busy[side]) + size / bw;
        c.busy[side] = at;
        c.q[side].push_back(Pkt { at, inc, body });
    }

    // ------------------------------------------------- process events

    /// Process `i` died: its ends close without telling it; its kernel sends
    /// what was buffered (or not) and then a FIN/RST.
    pub fn crashed(&mut self, i: usize, inc: u64, now: u64, rng: &mut Rng) {
        for k in 0..self.conns.len() {
            let c = &mut self.conns[k];
            if c.a != i && c.b != i {
                continue;
            }
            let side = usize::from(i != c.a);
            if c.a == i {
                c.dial = Dial::Idle { next: 0 };
                c.failures = 0;
            }
            if !c.ends[side].open {
                continue;
            }
            if rng.chance(1, 2) {
                c.q[side].clear();
            }
            c.send_fin(side, inc, now);
        }
    }

    /// Closes `i`'s end towards `j` (its driver gives up on the link).
    fn close_end(
        &mut self,
        k: usize,
        side: usize,
        inc: u64,
        now: u64,
        out: &mut Vec<(usize, LinkEvent)>,
    ) {
        let c = &mut self.conns[k];
        if !c.ends[side].open {
            return;
        }
        let (me, peer) = if side == 0 { (c.a, c.b) } else { (c.b, c.a) };
        c.send_fin(side, inc, now);
        if side == 0 {
            c.dial = Dial::Idle {
                next: now
                    + ms(crate::mesh::backoff(
                        std::time::Duration::from_millis(self.mp.reconnect_ms),
                        1,
                        u64::from(now as u32),
                    )),
            };
            c.failures = 1;
        }
        out.push((
            me,
            LinkEvent::Down {
                peer,
                generation: c.ends[side].generation,
            },
        ));
    }

    // ------------------------------------------------------ each ms

    /// Dials, deliveries and keepalives for this ms; link events per node.
    pub fn step(&mut self, now: u64, procs: &dyn Procs, rng: &mut Rng) -> Vec<(usize, LinkEvent)> {
        let mut out = Vec::new();
        self.dials(now, procs, rng, &mut out);
        self.deliver(now, procs, &mut out);
        self.keepalives(now, procs, rng, &mut out);
        out
    }

    fn dials(
        &mut self,
        now: u64,
        procs: &dyn Procs,
        rng: &mut Rng,
        out: &mut Vec<(usize, LinkEvent)>,
    ) {
        for k in 0..self.conns.len() {
            let (a, b) = (self.conns[k].a, self.conns[k].b);
            if !procs.running(a) || procs.paused(a) {
                continue;
            }
            match self.conns[k].dial {
                Dial::Linked if !self.conns[k].ends[0].open => {
                    self.conns[k].dial = Dial::Idle { next: now };
                }
                Dial::Idle { next } if now >= next => {
                    let refused =
                        !procs.running(b) || procs.misconfigured(a) || procs.misconfigured(b);
                    let hangs = !self.open(a, b, now) || !self.open(b, a, now) || procs.paused(b);
                    let (done, ok) = if hangs {
                        (now + self.mp.connect_timeout_ms.max(1), false)
                    } else if refused {
                        (now + 1 + rng.below(2), false)
                    } else {
                        (now + 2 + rng.below(5), true)
                    };
                    self.conns[k].dial = Dial::Dialing {
                        done,
                        ok,
                        acceptor_inc: procs.inc(b),
                    };
                }
                Dial::Dialing {
                    done,
                    ok,
                    acceptor_inc,
                } if now >= done => {
                    let still = procs.running(b)
                        && !procs.paused(b)
                        && procs.inc(b) == acceptor_inc
                        && self.open(a, b, now)
                        && self.open(b, a, now);
                    if ok && still {
                        self.link_up(k, now, out);
                    } else {
                        let c = &mut self.conns[k];
                        c.failures = c.failures.saturating_add(1);
                        let wait = crate::mesh::backoff(
                            std::time::Duration::from_millis(self.mp.reconnect_ms),
                            c.failures,
                            rng.next_u64(),
                        );
                        c.dial = Dial::Idle {
                            next: now + ms(wait),
                        };
                    }
                }
                _ => {}
            }
        }
    }

    fn link_up(&mut self, k: usize, now: u64, out: &mut Vec<(usize, LinkEvent)>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let c = &mut self.conns[k];
        c.generation = generation;
        c.failures = 0;
        c.dial = Dial::Linked;
        c.q[0].clear();
        c.q[1].clear();
        c.busy = [now, now];
        for side in 0..2 {
            let (me, peer) = if side == 0 { (c.a, c.b) } else { (c.b, c.a) };
            if c.ends[side].open {
                // Replaced: the old link's end goes down first.
                out.push((
                    me,
                    LinkEvent::Down {
                        peer,
                        generation: c.ends[side].generation,
                    },
                ));
            }
            c.ends[side] = End {
                open: true,
                generation,
                heard: now,
            };
            out.push((me, LinkEvent::Up { peer, generation }));
        }
    }

    fn deliver(&mut self, now: u64, procs: &dyn Procs, out: &mut Vec<(usize, LinkEvent)>) {
        for k in 0..self.conns.len() {
            for side in 0..2 {
                let (from, to) = {
                    let c = &self.conns[k];
                    if side == 0 { (c.a, c.b) } else { (c.b, c.a) }
                };
                loop {
                    let c = &self.conns[k];
                    let Some(front) = c.q[side].front() else {
                        break;
                    };
                    if front.at > now || !self.open(from, to, now) {
                        break;
                    }
                    if procs.running(to) && procs.paused(to) {
                        // In its socket buffer until it runs again.
                        break;
                    }
                    let to_side = 1 - side;
                    let Some(p) = self.conns[k].q[side].pop_front() else {
                        break;
                    };
                    let c = &mut self.conns[k];
                    if !procs.running(to) || !c.ends[to_side].open {
                        // Reset: the sender's end learns the link is gone.
                        if !matches!(p.body, Body::Fin) && c.ends[side].open && procs.running(from)
                        {
                            let inc = procs.inc(from);
                            self.close_end(k, side, inc, now, out);
                        }
                        continue;
                    }
                    c.ends[to_side].heard = now;
                    let generation = c.ends[to_side].generation;
                    match p.body {
                        Body::Ping => {}
                        Body::Msg(msg) => out.push((
                            to,
                            LinkEvent::Msg {
                                peer: from,
                                generation,
                                inc: p.inc,
                                msg,
                            },
                        )),
                        Body::Fin => {
                            let inc = procs.inc(to);
                            self.close_end(k, to_side, inc, now, out);
                        }
                    }
                }
            }
        }
    }

    fn keepalives(
        &mut self,
        now: u64,
        procs: &dyn Procs,
        rng: &mut Rng,
        out: &mut Vec<(usize, LinkEvent)>,
    ) {
        let ka = self.mp.keepalive_ms.max(1);
        for i in 0..self.n {
            if !procs.running(i) || procs.paused(i) {
                continue;
            }
            // Each node's keepalive timer has its own phase.
            if (now + 7 * i as u64) % ka != 0 {
                continue;
            }
            // A round whose timer fired late (the process was stopped)
            // does not judge silence: what the peer sent is still unread.
            let stalled = now.saturating_sub(self.last_round[i]) > 2 * ka;
            self.last_round[i] = now;
            for j in 0..self.n {
                if j == i {
                    continue;
                }
                let k = self.conn_index(i, j);
                let side = usize::from(i != self.conns[k].a);
                if !self.conns[k].ends[side].open {
                    continue;
                }
                let silent = now.saturating_sub(self.conns[k].ends[side].heard);
                if !stalled && silent > u64::from(crate::mesh::SUSPECT_AFTER) * ka {
                    let inc = procs.inc(i);
                    self.close_end(k, side, inc, now, out);
                    continue;
                }
                let inc = procs.inc(i);
                self.push(i, j, inc, Body::Ping, 16, now, rng);
            }
        }
    }

    /// A node that resumes after a pause: its keepalive round is stalled.
    pub fn resumed(&mut self, i: usize, paused_at: u64) {
        self.last_round[i] = self.last_round[i].min(paused_at);
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// About the bytes a message takes on the wire (for bandwidth).
pub fn msg_size(m: &PeerMsg) -> u64 {
    use crate::order::{Entry, LogImage};
    let entries = |es: &[Entry]| es.iter().map(|e| e.wire_size() as u64).sum::<u64>();
    let image = |l: &LogImage| {
        64 + 16 * (l.base.groups.len() + l.base.dedup.len()) as u64 + entries(&l.entries)
    };
    16 + match m {
        PeerMsg::Forward { items, .. } => entries(items),
        PeerMsg::Prepare { entries: es, .. } => entries(es),
        PeerMsg::DoViewChange { state, .. } => state.as_ref().map_or(8, |d| image(&d.log)),
        PeerMsg::StartView { log, .. } => image(log),
        PeerMsg::RecoveryResponse { state, .. } => match state {
            crate::order::RecoveryState::Normal {
                leader_log: Some((l, _)),
                ..
            } => image(l),
            _ => 8,
        },
        _ => 16,
    }
}

//! Unit tests of the core through the simulator's building blocks.

use bytes::Bytes;

use super::{Action, Config, Core, Entry, Mode, NodeId, PeerMsg};
use crate::sim::{Faults, SimParams, run};

/// Tiny in-process cluster with instant, lossless delivery.
fn cluster(n: usize) -> Vec<Core> {
    let peers: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let mut cores: Vec<Core> = (0..n)
        .map(|i| Core::new(Config::new(i as NodeId, peers.clone(), 1)))
        .collect();
    for (i, c) in cores.iter_mut().enumerate() {
        for j in 0..n {
            if i != j {
                c.peer_up(j as NodeId);
            }
        }
    }
    cores
}

/// Delivers all messages until quiet; returns (node, Deliver/Confirm) actions.
fn pump(cores: &mut [Core], out: &mut Vec<(usize, Action)>) {
    loop {
        let mut moved = false;
        for i in 0..cores.len() {
            cores[i].flush();
            for a in cores[i].take_actions() {
                match a {
                    Action::Send { to, msg } => {
                        moved = true;
                        cores[to as usize].on_message(i as NodeId, 1, msg);
                    }
                    other => out.push((i, other)),
                }
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn bootstrap_publish_and_deliver_everywhere() {
    let mut cores = cluster(3);
    let mut out = Vec::new();
    pump(&mut cores, &mut out);
    for _ in 0..5 {
        for c in cores.iter_mut() {
            c.tick();
        }
        pump(&mut cores, &mut out);
    }
    for c in &cores {
        let st = c.status();
        assert_eq!(st.mode, Mode::Normal);
        assert!(st.delivering, "{st:?}");
        assert_eq!(st.members, vec![0, 1, 2]);
    }
    out.clear();
    cores[2].publish(7, 1, "a".into(), None, None, Bytes::from_static(b"x"));
    cores[2].publish(7, 2, "a".into(), None, None, Bytes::from_static(b"y"));
    pump(&mut cores, &mut out);
    for c in cores.iter_mut() {
        c.tick();
    }
    pump(&mut cores, &mut out);
    let confirms: Vec<_> = out
        .iter()
        .filter(|(_, a)| matches!(a, Action::Confirm { .. }))
        .collect();
    assert_eq!(confirms.len(), 2);
    for i in 0..3 {
        let pubs = out
            .iter()
            .filter(|(k, a)| {
                *k == i && matches!(a, Action::Deliver(d) if matches!(d.entry, Entry::Publish(_)))
            })
            .count();
        assert_eq!(pubs, 2, "node {i}");
    }
}

#[test]
fn minority_refuses() {
    let mut cores = cluster(3);
    let mut out = Vec::new();
    pump(&mut cores, &mut out);
    // Node 2 loses both links and times out: it suspects its view (it
    // cannot move to another alone) and refuses publishes.
    cores[2].peer_down(0);
    cores[2].peer_down(1);
    for _ in 0..20 {
        cores[2].tick();
        let _ = cores[2].take_actions();
    }
    let st = cores[2].status();
    assert!(st.mode != Mode::Normal || st.suspecting, "{st:?}");
    cores[2].publish(1, 1, "a".into(), None, None, Bytes::new());
    assert!(matches!(
        cores[2].take_actions().as_slice(),
        [Action::Refuse { .. }]
    ));
}

#[test]
fn malformed_messages_are_ignored() {
    let mut cores = cluster(3);
    let mut out = Vec::new();
    pump(&mut cores, &mut out);
    let svc = PeerMsg::StartViewChange {
        view: 1,
        moved: false,
        join: None,
    };
    cores[1].on_message(9, 1, svc.clone());
    cores[1].on_message(1, 1, svc);
    cores[1].on_message(
        2,
        1,
        PeerMsg::Prepare {
            epoch: super::Epoch::default(),
            view: 0,
            first_op: u64::MAX,
            entries: vec![],
            commit: u64::MAX,
            trunc: 0,
        },
    );
    assert!(cores[1].status().ignored >= 3);
}

#[test]
fn simulator_smoke() {
    for seed in 0..20 {
        for n in [3, 5] {
            let r = run(seed, &SimParams::with_faults(n, Faults::classic()));
            assert!(
                r.violation.is_none(),
                "seed {seed} n {n}: {:?}",
                r.violation
            );
        }
    }
}

// ---- per mode: the rules that keep histories apart --------------------------

fn image(epoch: super::Epoch) -> super::LogImage {
    super::LogImage {
        base: super::State {
            epoch,
            ..super::State::default()
        },
        start: 1,
        entries: Vec::new(),
    }
}

fn epoch(n: u64) -> super::Epoch {
    super::Epoch {
        n,
        tag: n,
        formed: super::Stamp::default(),
    }
}

/// A fresh node 2 of three with both links up, and the nonce it asked with.
fn recovering() -> (Core, u64) {
    let peers: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
    let mut c = Core::new(Config::new(2, peers, 1));
    c.peer_up(0);
    c.peer_up(1);
    c.flush();
    let nonce = c
        .take_actions()
        .into_iter()
        .find_map(|a| match a {
            Action::Send {
                msg: PeerMsg::Recovery { nonce },
                ..
            } => Some(nonce),
            _ => None,
        })
        .expect("a fresh node asks its peers");
    (c, nonce)
}

fn normal(epoch: super::Epoch, leader_log: bool) -> super::RecoveryState {
    super::RecoveryState::Normal {
        epoch,
        leader_log: leader_log.then(|| (image(epoch), 0)),
    }
}

#[test]
fn recovery_takes_a_leaders_log_when_witnesses_share_its_epoch() {
    let (mut c, nonce) = recovering();
    // View 6's leader is node 0 (6 mod 3); node 1 follows it in the same epoch.
    let state = normal(epoch(1), true);
    c.on_message(
        0,
        1,
        PeerMsg::RecoveryResponse {
            nonce,
            view: 6,
            state,
        },
    );
    assert_eq!(
        c.status().mode,
        Mode::Recovering,
        "one witness is not enough"
    );
    let state = normal(epoch(1), false);
    c.on_message(
        1,
        1,
        PeerMsg::RecoveryResponse {
            nonce,
            view: 6,
            state,
        },
    );
    let st = c.status();
    assert_eq!((st.mode, st.vr_view, st.epoch), (Mode::Normal, 6, epoch(1)));
}

#[test]
fn recovery_does_not_count_witnesses_of_another_epoch() {
    let (mut c, nonce) = recovering();
    let state = normal(epoch(1), true);
    c.on_message(
        0,
        1,
        PeerMsg::RecoveryResponse {
            nonce,
            view: 6,
            state,
        },
    );
    // Normal too, but in another history: no witness of epoch 1's view 6.
    let state = normal(epoch(2), false);
    c.on_message(
        1,
        1,
        PeerMsg::RecoveryResponse {
            nonce,
            view: 4,
            state,
        },
    );
    assert_eq!(c.status().mode, Mode::Recovering);
}

/// Node 1 of a formed three-node cluster, cut off until it suspects its
/// view, then linked to node `to` again.
fn suspecting_node_1(to: NodeId) -> Vec<Core> {
    let mut cores = cluster(3);
    let mut out = Vec::new();
    for _ in 0..5 {
        pump(&mut cores, &mut out);
        for c in cores.iter_mut() {
            c.tick();
        }
    }
    pump(&mut cores, &mut out);
    assert!(cores[1].status().delivering);
    cores[1].peer_down(0);
    cores[1].peer_down(2);
    for _ in 0..20 {
        cores[1].tick();
        let _ = cores[1].take_actions();
    }
    cores[1].peer_up(to);
    cores[1].flush();
    let _ = cores[1].take_actions();
    cores
}

/// What node 1 sent: (state requests, votes naming an epoch to join).
fn requests_and_joins(c: &mut Core) -> (usize, Vec<(super::Epoch, u64)>) {
    c.flush();
    let mut gets = 0;
    let mut joins = Vec::new();
    for a in c.take_actions() {
        match a {
            Action::Send {
                msg: PeerMsg::GetState { .. },
                ..
            } => gets += 1,
            Action::Send {
                msg: PeerMsg::StartViewChange { join: Some(j), .. },
                ..
            } => joins.push(j),
            _ => {}
        }
    }
    (gets, joins)
}

#[test]
fn a_leader_of_another_epoch_is_not_followed_from_its_log_alone() {
    let mut cores = suspecting_node_1(0);
    let mine = cores[1].status().epoch;
    let other = epoch(mine.n + 5);
    // Node 0 leads view 30 (30 mod 3) of another history.
    let prepare = PeerMsg::Prepare {
        epoch: other,
        view: 30,
        first_op: 0,
        entries: Vec::new(),
        commit: 0,
        trunc: 0,
    };
    cores[1].on_message(0, 1, prepare);
    let (gets, joins) = requests_and_joins(&mut cores[1]);
    assert_eq!(gets, 0, "no state taken from that leader alone");
    assert!(
        !joins.is_empty() && joins.iter().all(|j| *j == (other, 30)),
        "a vote to change views with its nodes: {joins:?}"
    );
    let start_view = PeerMsg::StartView {
        view: 30,
        log: image(other),
        commit: 0,
    };
    cores[1].on_message(0, 1, start_view);
    assert_eq!(cores[1].status().epoch, mine, "its log is not adopted");
    let (_, joins) = requests_and_joins(&mut cores[1]);
    assert!(joins.iter().all(|j| *j == (other, 30)), "{joins:?}");
}

#[test]
fn a_leader_of_the_same_epoch_at_a_higher_view_is_fetched_from() {
    let mut cores = suspecting_node_1(0);
    let mine = cores[1].status().epoch;
    let prepare = PeerMsg::Prepare {
        epoch: mine,
        view: 30,
        first_op: 0,
        entries: Vec::new(),
        commit: 0,
        trunc: 0,
    };
    cores[1].on_message(0, 1, prepare);
    let (gets, joins) = requests_and_joins(&mut cores[1]);
    assert_eq!((gets, joins.len()), (1, 0));
}

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

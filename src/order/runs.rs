//! Which proposals a node delivered, per origin incarnation, as runs of
//! consecutive pseqs: one run per incarnation in the normal case (an origin's
//! proposals commit in pseq order), more only where a re-formation lost some.
//! After a node switches to another history it delivers nothing from it that
//! these runs hold, so a subscriber never gets a message twice.

use std::collections::BTreeMap;

use super::NodeId;
use super::msg::ProposalId;

/// Incarnations remembered per origin (the newest).
const INCARNATIONS: usize = 4;
/// Runs remembered per incarnation (the newest); older gaps are forgotten,
/// which can only hide a message, never repeat one.
const RUNS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Runs {
    /// origin → incarnation → runs (lo, hi), ascending.
    by_origin: BTreeMap<NodeId, BTreeMap<u64, Vec<(u64, u64)>>>,
}

impl Runs {
    pub fn insert(&mut self, id: ProposalId) {
        let incs = self.by_origin.entry(id.origin).or_default();
        let runs = incs.entry(id.incarnation).or_default();
        match runs.last_mut() {
            Some((_, hi)) if *hi + 1 == id.pseq => *hi = id.pseq,
            Some((lo, hi)) if (*lo..=*hi).contains(&id.pseq) => {}
            _ => {
                if runs.iter().any(|&(lo, hi)| (lo..=hi).contains(&id.pseq)) {
                    return;
                }
                runs.push((id.pseq, id.pseq));
                runs.sort_unstable();
                if runs.len() > RUNS {
                    runs.remove(0);
                }
            }
        }
        if incs.len() > INCARNATIONS
            && let Some(&oldest) = incs.keys().next()
        {
            incs.remove(&oldest);
        }
    }

    pub fn contains(&self, id: ProposalId) -> bool {
        self.by_origin
            .get(&id.origin)
            .and_then(|incs| incs.get(&id.incarnation))
            .is_some_and(|runs| runs.iter().any(|&(lo, hi)| (lo..=hi).contains(&id.pseq)))
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: &Runs) {
        for (&origin, incs) in &other.by_origin {
            for (&incarnation, runs) in incs {
                for &(lo, hi) in runs {
                    for pseq in lo..=hi {
                        self.insert(ProposalId {
                            origin,
                            incarnation,
                            pseq,
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: NodeId, incarnation: u64, pseq: u64) -> ProposalId {
        ProposalId {
            origin,
            incarnation,
            pseq,
        }
    }

    #[test]
    fn runs_hold_exactly_what_was_inserted() {
        let mut r = Runs::default();
        for p in [1, 2, 3, 5, 6, 9] {
            r.insert(id(0, 7, p));
        }
        r.insert(id(1, 3, 1));
        for p in [1, 2, 3, 5, 6, 9] {
            assert!(r.contains(id(0, 7, p)), "{p}");
        }
        for p in [4, 7, 8, 10] {
            assert!(!r.contains(id(0, 7, p)), "{p}");
        }
        assert!(!r.contains(id(0, 8, 1)));
        assert!(r.contains(id(1, 3, 1)));
        let mut m = Runs::default();
        m.insert(id(0, 7, 4));
        m.merge(&r);
        assert!((1..=6).all(|p| m.contains(id(0, 7, p))));
        assert!(!m.contains(id(0, 7, 7)));
    }
}

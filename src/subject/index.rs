//! The subscription index: a trie keyed by subject token, like nats-server's
//! sublist. Each level has literal children (hash map), one `*` child and the
//! `>` subscriptions that end there, so a match walks at most two branches per
//! token and its cost does not grow with the number of unrelated
//! subscriptions.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::valid_subject;

/// A subject or queue name refused by [`SubjectIndex::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSubject;

impl fmt::Display for InvalidSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid subject")
    }
}

impl std::error::Error for InvalidSubject {}

/// Subscriptions stored at one point of the trie.
struct Subs<T> {
    plain: Vec<T>,
    queues: Vec<(Arc<str>, Vec<T>)>,
}

impl<T> Default for Subs<T> {
    fn default() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<T: Clone + Eq> Subs<T> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// Adds `value`; false if it was already there (stored once).
    fn add(&mut self, queue: Option<&str>, value: T) -> bool {
        let list = match queue {
            None => &mut self.plain,
            Some(q) => match self.queues.iter().position(|(n, _)| &**n == q) {
                Some(i) => &mut self.queues[i].1,
                None => {
                    self.queues.push((Arc::from(q), Vec::new()));
                    let last = self.queues.len() - 1;
                    &mut self.queues[last].1
                }
            },
        };
        if list.contains(&value) {
            return false;
        }
        list.push(value);
        true
    }

    fn remove(&mut self, queue: Option<&str>, value: &T) -> bool {
        match queue {
            None => remove_from(&mut self.plain, value),
            Some(q) => {
                let Some(i) = self.queues.iter().position(|(n, _)| &**n == q) else {
                    return false;
                };
                let removed = remove_from(&mut self.queues[i].1, value);
                if self.queues[i].1.is_empty() {
                    self.queues.swap_remove(i);
                }
                removed
            }
        }
    }

    fn collect(&self, out: &mut Matches<T>) {
        out.plain.extend(self.plain.iter().cloned());
        for (name, members) in &self.queues {
            // One group per queue name across all matching patterns, as in
            // nats-server: `foo.*` and `foo.bar` in queue `q` share a group.
            match out.queues.iter_mut().find(|(n, _)| n == name) {
                Some((_, m)) => m.extend(members.iter().cloned()),
                None => out.queues.push((name.clone(), members.clone())),
            }
        }
    }
}

/// Linear removal keeping order: the lists hold the subscribers of one exact
/// pattern, usually few.
fn remove_from<T: Eq>(list: &mut Vec<T>, value: &T) -> bool {
    match list.iter().position(|v| v == value) {
        Some(i) => {
            list.remove(i);
            true
        }
        None => false,
    }
}

struct Node<T> {
    literal: HashMap<Box<str>, Node<T>>,
    pwc: Option<Box<Node<T>>>,
    /// Subscriptions whose pattern ends with `>` right after this level.
    fwc: Subs<T>,
    /// Subscriptions whose pattern ends at this node.
    subs: Subs<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            pwc: None,
            fwc: Subs::default(),
            subs: Subs::default(),
        }
    }
}

impl<T: Clone + Eq> Node<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.pwc.is_none() && self.fwc.is_empty() && self.subs.is_empty()
    }

    fn count(&self) -> usize {
        1 + self.literal.values().map(Node::count).sum::<usize>()
            + self.pwc.as_ref().map_or(0, |n| n.count())
    }

    fn collect(&self, rest: Option<&str>, out: &mut Matches<T>) {
        let Some(rest) = rest else {
            self.subs.collect(out);
            return;
        };
        self.fwc.collect(out);
        let (head, tail) = match rest.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (rest, None),
        };
        if let Some(child) = self.literal.get(head) {
            child.collect(tail, out);
        }
        if let Some(child) = &self.pwc {
            child.collect(tail, out);
        }
    }

    /// Removes and prunes emptied children on the way back up.
    fn remove(&mut self, rest: Option<&str>, queue: Option<&str>, value: &T) -> bool {
        let Some(rest) = rest else {
            return self.subs.remove(queue, value);
        };
        let (head, tail) = match rest.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (rest, None),
        };
        match head {
            ">" if tail.is_none() => self.fwc.remove(queue, value),
            "*" => {
                let Some(child) = self.pwc.as_mut() else {
                    return false;
                };
                let removed = child.remove(tail, queue, value);
                if child.is_empty() {
                    self.pwc = None;
                }
                removed
            }
            _ => {
                let Some(child) = self.literal.get_mut(head) else {
                    return false;
                };
                let removed = child.remove(tail, queue, value);
                if child.is_empty() {
                    self.literal.remove(head);
                }
                removed
            }
        }
    }
}

/// What a subject matched: every plain subscriber, and each queue group with
/// all its members so the caller delivers to exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matches<T> {
    pub plain: Vec<T>,
    pub queues: Vec<(Arc<str>, Vec<T>)>,
}

impl<T> Default for Matches<T> {
    fn default() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<T> Matches<T> {
    /// Empties the result, keeping its allocations for reuse.
    pub fn clear(&mut self) {
        self.plain.clear();
        self.queues.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// The receivers of one message: every plain subscriber, then one member
    /// of each queue group chosen by `picker`.
    pub fn receivers<'a>(
        &'a self,
        picker: &'a mut QueuePicker,
    ) -> impl Iterator<Item = &'a T> + 'a {
        self.plain
            .iter()
            .chain(self.queues.iter().filter_map(move |(_, m)| picker.pick(m)))
    }
}

/// Chooses one member of a queue group, uniformly at random from a seeded
/// generator (SplitMix64): fair, and deterministic for a given seed so tests
/// and simulations replay.
#[derive(Debug, Clone)]
pub struct QueuePicker {
    rng: crate::rng::Rng,
}

impl QueuePicker {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: crate::rng::Rng::new(seed),
        }
    }

    pub fn pick<'a, T>(&mut self, members: &'a [T]) -> Option<&'a T> {
        members.get(self.rng.index(members.len())?)
    }
}

/// Subscriptions by subject pattern. `T` is the subscription handle, e.g.
/// `(connection id, sid)`; each (pattern, queue, handle) is stored once.
pub struct SubjectIndex<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for SubjectIndex<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T: Clone + Eq> SubjectIndex<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription. `Ok(false)` if this exact entry already existed.
    pub fn insert(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        value: T,
    ) -> Result<bool, InvalidSubject> {
        if !valid_subject(subject, true) {
            return Err(InvalidSubject);
        }
        if let Some(q) = queue
            && (q.is_empty() || q.bytes().any(super::is_space))
        {
            return Err(InvalidSubject);
        }
        let mut node = &mut self.root;
        let mut tokens = subject.split('.').peekable();
        while let Some(tok) = tokens.next() {
            if tok == ">" && tokens.peek().is_none() {
                let added = node.fwc.add(queue, value);
                self.len += usize::from(added);
                return Ok(added);
            }
            node = if tok == "*" {
                node.pwc.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(Box::from(tok)).or_default()
            };
        }
        let added = node.subs.add(queue, value);
        self.len += usize::from(added);
        Ok(added)
    }

    /// Removes a subscription; false if it was not there. Nodes left empty
    /// are freed, so memory follows the live subscriptions, not the churn.
    pub fn remove(&mut self, subject: &str, queue: Option<&str>, value: &T) -> bool {
        if !valid_subject(subject, true) {
            return false;
        }
        let removed = self.root.remove(Some(subject), queue, value);
        self.len -= usize::from(removed);
        removed
    }

    /// Appends to `out` everything the literal `subject` matches. A subject
    /// with an empty token matches nothing.
    pub fn matches_into(&self, subject: &str, out: &mut Matches<T>) {
        if subject.is_empty()
            || subject.starts_with('.')
            || subject.ends_with('.')
            || subject.contains("..")
        {
            return;
        }
        self.root.collect(Some(subject), out);
    }

    pub fn matches(&self, subject: &str) -> Matches<T> {
        let mut out = Matches::default();
        self.matches_into(subject, &mut out);
        out
    }

    /// Number of stored subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes, root included: 1 when empty. For tests and
    /// memory metrics.
    pub fn node_count(&self) -> usize {
        self.root.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(mut v: Vec<u32>) -> Vec<u32> {
        v.sort_unstable();
        v
    }

    fn idx(subs: &[(&str, u32)]) -> SubjectIndex<u32> {
        let mut i = SubjectIndex::new();
        for (s, v) in subs {
            assert_eq!(i.insert(s, None, *v), Ok(true));
        }
        i
    }

    #[test]
    fn literal_star_and_full_wildcards() {
        let i = idx(&[
            ("foo.bar", 1),
            ("foo.*", 2),
            ("foo.>", 3),
            (">", 4),
            ("*.bar", 5),
            ("foo.bar.baz", 6),
            ("*.*.baz", 7),
            ("foo", 8),
            ("*", 9),
        ]);
        assert_eq!(sorted(i.matches("foo.bar").plain), vec![1, 2, 3, 4, 5]);
        assert_eq!(sorted(i.matches("foo.bar.baz").plain), vec![3, 4, 6, 7]);
        assert_eq!(sorted(i.matches("foo").plain), vec![4, 8, 9]);
        assert_eq!(sorted(i.matches("x.y").plain), vec![4]);
        assert!(i.matches("foo..bar").is_empty());
        assert!(i.matches("").is_empty());
        assert!(i.matches(".foo").is_empty());
        assert_eq!(i.len(), 9);
    }

    #[test]
    fn wildcard_published_subjects_match_as_tokens() {
        // A non-pedantic PUB to `foo.*` reaches subscriptions matching that
        // token sequence, not every `foo.x` subscriber.
        let i = idx(&[("foo.bar", 1), ("foo.*", 2), ("foo.>", 3)]);
        assert_eq!(sorted(i.matches("foo.*").plain), vec![2, 3]);
    }

    #[test]
    fn invalid_patterns_are_refused() {
        let mut i = SubjectIndex::new();
        for bad in ["", "a..b", "a.>.b", "a b", "."] {
            assert_eq!(i.insert(bad, None, 1), Err(InvalidSubject), "{bad:?}");
        }
        assert_eq!(i.insert("a", Some(""), 1), Err(InvalidSubject));
        assert_eq!(i.insert("a", Some("q q"), 1), Err(InvalidSubject));
        assert!(i.is_empty());
        assert_eq!(i.node_count(), 1);
    }

    #[test]
    fn duplicates_stored_once() {
        let mut i = SubjectIndex::new();
        assert_eq!(i.insert("a", None, 1), Ok(true));
        assert_eq!(i.insert("a", None, 1), Ok(false));
        assert_eq!(i.insert("a", Some("q"), 1), Ok(true));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn queue_groups_merge_by_name() {
        let mut i = SubjectIndex::new();
        i.insert("foo.bar", Some("q"), 1).unwrap();
        i.insert("foo.*", Some("q"), 2).unwrap();
        i.insert("foo.*", Some("r"), 3).unwrap();
        i.insert("foo.>", None, 4).unwrap();
        let m = i.matches("foo.bar");
        assert_eq!(m.plain, vec![4]);
        let mut q: Vec<(String, Vec<u32>)> = m
            .queues
            .iter()
            .map(|(n, v)| (n.to_string(), sorted(v.clone())))
            .collect();
        q.sort();
        assert_eq!(q, vec![("q".into(), vec![1, 2]), ("r".into(), vec![3])]);
    }

    #[test]
    fn picker_is_fair_and_deterministic() {
        let members = [10, 20, 30];
        let mut p = QueuePicker::new(7);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            let v = *p.pick(&members).unwrap();
            counts[members.iter().position(|m| *m == v).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        let a: Vec<_> = (0..10)
            .map(|_| QueuePicker::new(1).pick(&members).copied())
            .collect();
        assert!(a.iter().all(|x| *x == a[0]));
        assert_eq!(p.pick::<u32>(&[]), None);

        let mut i = SubjectIndex::new();
        i.insert("a", Some("q"), 1).unwrap();
        i.insert("a", Some("q"), 2).unwrap();
        i.insert("a", None, 3).unwrap();
        let m = i.matches("a");
        let got: Vec<_> = m.receivers(&mut p).copied().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], 3);
    }

    #[test]
    fn remove_and_prune() {
        let mut i = SubjectIndex::new();
        assert!(!i.remove("a.b", None, &1));
        for round in 0..100u32 {
            for (n, s) in ["a.b.c", "a.*.c", "a.>", ">", "*", "x.y.z.w"]
                .iter()
                .enumerate()
            {
                let q = (n % 2 == 0).then_some("grp");
                let long = format!("{s}.{round}");
                assert_eq!(i.insert(&long, q, n as u32).is_ok(), !s.ends_with('>'));
                i.insert(s, q, round).unwrap();
            }
        }
        assert!(i.node_count() > 100);
        for round in 0..100u32 {
            for (n, s) in ["a.b.c", "a.*.c", "a.>", ">", "*", "x.y.z.w"]
                .iter()
                .enumerate()
            {
                let q = (n % 2 == 0).then_some("grp");
                // `a.>.0` is invalid, so its insert failed: removal too.
                let long = format!("{s}.{round}");
                assert_eq!(i.remove(&long, q, &(n as u32)), !s.ends_with('>'), "{long}");
                assert!(i.remove(s, q, &round));
                assert!(!i.remove(s, q, &round));
            }
        }
        assert_eq!(i.len(), 0);
        assert_eq!(i.node_count(), 1);
        assert!(i.matches("a.b.c").is_empty());
    }

    #[test]
    fn remove_wrong_queue_or_value() {
        let mut i = SubjectIndex::new();
        i.insert("a.*", Some("q"), 1).unwrap();
        assert!(!i.remove("a.*", None, &1));
        assert!(!i.remove("a.*", Some("r"), &1));
        assert!(!i.remove("a.*", Some("q"), &2));
        assert!(!i.remove("a.b", Some("q"), &1));
        assert!(i.remove("a.*", Some("q"), &1));
        assert_eq!(i.node_count(), 1);
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string()),
            Just("dd".to_string())
        ]
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*".to_string())], 0..4),
            prop_oneof![3 => token(), 1 => Just("*".to_string()), 1 => Just(">".to_string())],
        )
            .prop_map(|(mut v, last)| {
                v.push(last);
                v.join(".")
            })
    }

    fn subject() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..6).prop_map(|v| v.join("."))
    }

    proptest! {
        #[test]
        fn trie_agrees_with_linear_matcher(
            pats in prop::collection::vec(pattern(), 0..40),
            subjects in prop::collection::vec(subject(), 1..20),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let mut i = SubjectIndex::new();
            let mut live: Vec<(String, u32)> = Vec::new();
            for (n, p) in pats.iter().enumerate() {
                prop_assert_eq!(i.insert(p, None, n as u32), Ok(true));
                live.push((p.clone(), n as u32));
            }
            for r in removals {
                if live.is_empty() { break; }
                let (p, v) = live.remove(r.index(live.len()));
                prop_assert!(i.remove(&p, None, &v));
            }
            prop_assert_eq!(i.len(), live.len());
            for s in &subjects {
                let want = sorted(live.iter().filter(|(p, _)| crate::subject::pattern_matches(p, s)).map(|(_, v)| *v).collect());
                prop_assert_eq!(sorted(i.matches(s).plain), want, "subject {}", s);
            }
            for (p, v) in &live {
                prop_assert!(i.remove(p, None, v));
            }
            prop_assert_eq!(i.node_count(), 1);
        }
    }

    /// `cargo test --release --lib subject -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_matching_100k_unrelated() {
        for n in [10usize, 100_000] {
            let mut i = SubjectIndex::new();
            for k in 0..n {
                i.insert(&format!("svc.{}.{}.req", k % 997, k), None, k)
                    .unwrap();
                if k % 10 == 0 {
                    i.insert(&format!("svc.{}.*.evt", k), None, k).unwrap();
                }
            }
            i.insert("mail.node1.>", None, usize::MAX).unwrap();
            i.insert("mail.*.queue", None, usize::MAX - 1).unwrap();
            let mut out = Matches::default();
            let iters = 1_000_000u32;
            let start = std::time::Instant::now();
            for _ in 0..iters {
                out.clear();
                i.matches_into("mail.node1.queue", &mut out);
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
            assert_eq!(out.plain.len(), 2);
            println!("{n:>7} subscriptions: {ns:.1} ns/match");
        }
    }
}

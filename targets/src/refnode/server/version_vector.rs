//! Dots and version vectors: how multi-leader and leaderless refnodes tell whether one write
//! happened before another or the two are concurrent (DDIA ch. 5, "Detecting Concurrent
//! Writes").
//!
//! Every write gets a [`Dot`]: the *actor* that accepted it (a node incarnation) and a counter
//! that this actor increments per key, so an actor's dots for one key are 1, 2, 3, ... without
//! gaps. A [`VersionVector`] is a set of dots: for each actor the contiguous prefix `1..=n`,
//! plus any dots seen beyond a gap. The gap list is what makes the vector exact under the
//! reordering that leaderless replication produces: a replica that received dot 3 of an actor
//! before dot 2 must not claim to have seen 2, or a client writing back its context would
//! silently supersede a write it never read.
//!
//! A version with dot `d` and context `c` (what its writer had seen) happened before a version
//! whose context covers `d`; two versions neither of whose contexts covers the other's dot are
//! concurrent: siblings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One write: the actor that accepted it and the actor's counter for the key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub actor: String,
    pub counter: u64,
}

impl Dot {
    pub fn new(actor: impl Into<String>, counter: u64) -> Dot {
        Dot {
            actor: actor.into(),
            counter,
        }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    Equal,
    /// The left one has seen strictly less: it happened before.
    Before,
    /// The left one has seen strictly more.
    After,
    Concurrent,
}

/// Most dots kept beyond the contiguous prefixes. A vector only holds such dots while a gap
/// is open (a dot that arrived before its predecessor); when the gap fills they fold into the
/// prefix. A peer that never sends the missing dot cannot grow a vector without bound: past
/// this many, the oldest gap is treated as filled (claiming a dot that was never seen, which
/// at worst lets a client's write supersede that one lost write; logged by the caller via
/// [`VersionVector::add`]'s return value).
pub const MAX_GAP_DOTS: usize = 1024;

/// A set of dots: per actor a contiguous prefix, plus dots beyond gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    /// Actor -> n: the dots 1..=n of that actor are in the set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Dots in the set that do not continue their actor's prefix.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub gaps: BTreeSet<Dot>,
}

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.gaps.is_empty()
    }

    /// The length of `actor`'s contiguous prefix.
    pub fn prefix(&self, actor: &str) -> u64 {
        self.counters.get(actor).copied().unwrap_or(0)
    }

    /// The highest counter of `actor` in the set (prefix or beyond).
    pub fn max_counter(&self, actor: &str) -> u64 {
        let beyond = self
            .gaps
            .range(Dot::new(actor, 0)..=Dot::new(actor, u64::MAX))
            .next_back()
            .map_or(0, |d| d.counter);
        self.prefix(actor).max(beyond)
    }

    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.prefix(&dot.actor) || self.gaps.contains(dot)
    }

    /// Adds one dot. Returns false when the gap list overflowed and a gap was closed without
    /// its dot (see [`MAX_GAP_DOTS`]).
    pub fn add(&mut self, dot: &Dot) -> bool {
        if self.covers(dot) || dot.counter == 0 {
            return true;
        }
        self.gaps.insert(dot.clone());
        self.compact(&dot.actor);
        self.bound_gaps()
    }

    /// Adds every dot of `other`. Returns false as [`VersionVector::add`] does.
    pub fn merge(&mut self, other: &VersionVector) -> bool {
        for (actor, &n) in &other.counters {
            let mine = self.counters.entry(actor.clone()).or_insert(0);
            if n > *mine {
                *mine = n;
            }
        }
        for d in &other.gaps {
            if !self.covers(d) {
                self.gaps.insert(d.clone());
            }
        }
        let actors: BTreeSet<String> = other
            .counters
            .keys()
            .chain(other.gaps.iter().map(|d| &d.actor))
            .cloned()
            .collect();
        for actor in actors {
            self.compact(&actor);
        }
        self.bound_gaps()
    }

    /// Every dot of `other` is in `self`.
    pub fn descends(&self, other: &VersionVector) -> bool {
        for (actor, &n) in &other.counters {
            let mine = self.prefix(actor);
            if mine >= n {
                continue;
            }
            // The missing part of the prefix may sit in our gap list, dot by dot; that list is
            // bounded, so this loop is too.
            let missing = n - mine;
            if missing > self.gaps.len() as u64 {
                return false;
            }
            if !(mine + 1..=n).all(|c| self.gaps.contains(&Dot::new(actor.as_str(), c))) {
                return false;
            }
        }
        other.gaps.iter().all(|d| self.covers(d))
    }

    pub fn compare(&self, other: &VersionVector) -> Causality {
        match (self.descends(other), other.descends(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// Every dot in the set, for tests and small vectors: prefixes expanded.
    pub fn dots(&self) -> Vec<Dot> {
        let mut out: Vec<Dot> = self
            .counters
            .iter()
            .flat_map(|(a, &n)| (1..=n).map(move |c| Dot::new(a.as_str(), c)))
            .collect();
        out.extend(self.gaps.iter().cloned());
        out.sort();
        out
    }

    /// Folds `actor`'s gap dots that now continue its prefix into the prefix.
    fn compact(&mut self, actor: &str) {
        let mut n = self.prefix(actor);
        loop {
            let next = Dot::new(actor, n + 1);
            if !self.gaps.remove(&next) {
                break;
            }
            n += 1;
        }
        if n > 0 {
            self.counters.insert(actor.to_string(), n);
        }
        // Dots at or below the prefix are redundant.
        let covered: Vec<Dot> = self
            .gaps
            .range(Dot::new(actor, 0)..=Dot::new(actor, n))
            .cloned()
            .collect();
        for d in covered {
            self.gaps.remove(&d);
        }
    }

    fn bound_gaps(&mut self) -> bool {
        let mut exact = true;
        while self.gaps.len() > MAX_GAP_DOTS {
            exact = false;
            let Some(first) = self.gaps.iter().next().cloned() else {
                break;
            };
            // Close the first gap of this actor: claim the prefix up to this dot.
            self.gaps.remove(&first);
            self.counters.insert(first.actor.clone(), first.counter);
            self.compact(&first.actor);
        }
        exact
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut first = true;
        for (a, n) in &self.counters {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{a}:1..{n}")?;
        }
        for d in &self.gaps {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(dots: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (a, c) in dots {
            assert!(v.add(&Dot::new(*a, *c)));
        }
        v
    }

    #[test]
    fn contiguous_dots_fold_into_a_prefix_and_gaps_stay_exact() {
        let v = vv(&[("a", 1), ("a", 2), ("b", 3)]);
        assert_eq!(v.prefix("a"), 2);
        assert_eq!(v.prefix("b"), 0);
        assert!(v.covers(&Dot::new("b", 3)));
        assert!(
            !v.covers(&Dot::new("b", 2)),
            "a dot before a gap is not claimed"
        );
        assert_eq!(v.max_counter("b"), 3);
        let mut v = v;
        v.add(&Dot::new("b", 1));
        v.add(&Dot::new("b", 2));
        assert_eq!(v.prefix("b"), 3);
        assert!(v.gaps.is_empty(), "{v}");
    }

    #[test]
    fn compare_tells_happens_before_from_concurrent() {
        let a = vv(&[("n1", 1)]);
        let b = vv(&[("n1", 1), ("n2", 1)]);
        let c = vv(&[("n3", 1)]);
        assert_eq!(a.compare(&b), Causality::Before);
        assert_eq!(b.compare(&a), Causality::After);
        assert_eq!(a.compare(&a.clone()), Causality::Equal);
        assert_eq!(b.compare(&c), Causality::Concurrent);
        // A prefix against the same dots held as gaps: equal sets, equal vectors.
        let mut gappy = vv(&[("n1", 2)]);
        gappy.add(&Dot::new("n1", 1));
        assert_eq!(
            gappy.compare(&vv(&[("n1", 1), ("n1", 2)])),
            Causality::Equal
        );
        // Descends must not be fooled by a larger prefix elsewhere.
        assert!(!vv(&[("n1", 1), ("n1", 3)]).descends(&vv(&[("n1", 1), ("n1", 2)])));
    }

    #[test]
    fn merge_is_a_union_and_is_commutative_and_idempotent() {
        let a = vv(&[("n1", 1), ("n1", 2), ("n2", 4)]);
        let b = vv(&[("n2", 1), ("n3", 1)]);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        let mut again = ab.clone();
        again.merge(&b);
        assert_eq!(again, ab);
        assert_eq!(
            ab.dots(),
            vec![
                Dot::new("n1", 1),
                Dot::new("n1", 2),
                Dot::new("n2", 1),
                Dot::new("n2", 4),
                Dot::new("n3", 1)
            ]
        );
    }

    #[test]
    fn the_gap_list_is_bounded() {
        let mut v = VersionVector::new();
        let mut exact = true;
        for c in 0..(MAX_GAP_DOTS as u64 + 5) {
            exact &= v.add(&Dot::new("a", 2 + 2 * c));
        }
        assert!(!exact);
        assert!(v.gaps.len() <= MAX_GAP_DOTS);
        assert!(v.prefix("a") > 0);
    }

    #[test]
    fn serialises_compactly() {
        let v = vv(&[("n1", 1), ("n2", 3)]);
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(
            text,
            r#"{"counters":{"n1":1},"gaps":[{"actor":"n2","counter":3}]}"#
        );
        assert_eq!(serde_json::from_str::<VersionVector>(&text).unwrap(), v);
        assert_eq!(
            serde_json::from_str::<VersionVector>("{}").unwrap(),
            VersionVector::new()
        );
    }
}

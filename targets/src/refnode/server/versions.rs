//! The versions a multi-leader or leaderless refnode keeps per key, and the conflict
//! resolution that decides which survive when concurrent writes meet (DDIA ch. 5, "Handling
//! Write Conflicts" and "Detecting Concurrent Writes").
//!
//! Every write becomes a [`Version`]: its value, its [`Dot`], the version vector its writer
//! had seen (its *context*), the wall clock of the node that accepted it (offset included) and
//! that node's id. [`merge`] folds an incoming version into a key's versions under one of the
//! [`Conflict`] rules; with [`Conflict::Siblings`] it keeps every version no other version
//! has seen, so nothing is lost, and with the others exactly one version survives.
//!
//! The set workload stores a [`SetState`] instead of an integer: the elements with the dots
//! of the writes that added them, plus tombstones (the dots a removal saw). Sibling set states
//! merge by union, so a removal never resurrects through a merge and an add concurrent with a
//! removal survives it (add-wins).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::node::id_cmp;
use super::version_vector::{Dot, VersionVector};

/// How a node resolves concurrent writes to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Conflict {
    /// No resolution: each node applies writes in the order they reach it, so nodes that
    /// receive two writes in different orders diverge (multi-leader only; the naive design
    /// whose failure under all-to-all replication the chapter shows).
    None,
    /// Last write wins by the accepting node's wall clock (with its offset): concurrent writes
    /// are silently discarded, and with clock skew so are later ones.
    Lww,
    /// The write accepted by the highest node id wins (ids ordered shorter first, then
    /// lexicographically); among one node's writes, its latest.
    HighestId,
    /// Keep every version that no other version has seen (siblings), detected with version
    /// vectors; a reader gets all of them plus a context, and a write carrying that context
    /// supersedes them.
    Siblings,
}

impl Conflict {
    pub fn as_str(self) -> &'static str {
        match self {
            Conflict::None => "none",
            Conflict::Lww => "lww",
            Conflict::HighestId => "highest-id",
            Conflict::Siblings => "siblings",
        }
    }
}

/// What a version holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Datum {
    Int(i64),
    Set(SetState),
}

/// An add-wins set with tombstones: element -> the dots of the writes that added it, and the
/// dots removals saw. An element is present while one of its add dots is not a tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetState {
    /// On the wire as `[[element, [dots]], ...]`: peer messages are internally tagged enums,
    /// which serde buffers, and a buffered JSON map cannot give back integer keys (set changes
    /// were refused as malformed by every peer until this was a list of pairs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "pairs")]
    pub adds: BTreeMap<i64, BTreeSet<Dot>>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed: BTreeSet<Dot>,
}

/// A map serialized as a list of `[key, value]` pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl SetState {
    pub fn add(&mut self, element: i64, dot: Dot) {
        self.adds.entry(element).or_default().insert(dot);
    }

    /// Removes `element` as this state shows it: tombstones every add dot seen so far, so an
    /// add this state has not seen (a concurrent one) survives the removal.
    pub fn remove(&mut self, element: i64) {
        if let Some(dots) = self.adds.get(&element) {
            self.removed.extend(dots.iter().cloned());
        }
    }

    pub fn union(&mut self, other: &SetState) {
        for (e, dots) in &other.adds {
            self.adds
                .entry(*e)
                .or_default()
                .extend(dots.iter().cloned());
        }
        self.removed.extend(other.removed.iter().cloned());
    }

    /// The present elements, in increasing order.
    pub fn elements(&self) -> Vec<i64> {
        self.adds
            .iter()
            .filter(|(_, dots)| dots.iter().any(|d| !self.removed.contains(d)))
            .map(|(e, _)| *e)
            .collect()
    }
}

/// One write of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    pub dot: Dot,
    /// What the writer had seen of the key: every version this one supersedes.
    #[serde(default, skip_serializing_if = "VersionVector::is_empty")]
    pub context: VersionVector,
    pub datum: Datum,
    /// The accepting node's wall clock (offset included), in ms since the Unix epoch.
    pub ts_ms: i64,
    /// The node that accepted the write.
    pub origin: String,
}

impl Version {
    /// Everything this version has seen, itself included.
    pub fn clock(&self) -> VersionVector {
        let mut c = self.context.clone();
        c.add(&self.dot);
        c
    }

    /// `other` has seen this version.
    pub fn seen_by(&self, other: &Version) -> bool {
        other.dot == self.dot || other.context.covers(&self.dot)
    }
}

/// What [`merge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The key's versions changed.
    pub changed: bool,
    /// Versions discarded although no surviving version had seen them: concurrent writes
    /// that the conflict rule (or the sibling limit) threw away.
    pub lost: Vec<Dot>,
}

/// Most siblings kept per key. Clients that never pass a context back create one sibling per
/// write; beyond this the oldest (by timestamp) are discarded and reported as lost, so a key
/// costs bounded memory.
pub const MAX_SIBLINGS: usize = 64;

/// Folds `incoming` into `versions` (a key's versions, sorted by dot) under `conflict`.
pub fn merge(conflict: Conflict, versions: &mut Vec<Version>, incoming: Version) -> Merged {
    if versions.iter().any(|v| v.dot == incoming.dot) {
        return Merged::default();
    }
    match conflict {
        Conflict::Siblings => merge_siblings(versions, incoming),
        Conflict::None => replace(versions, incoming),
        Conflict::Lww | Conflict::HighestId => {
            let wins = versions
                .iter()
                .all(|v| winner_cmp(conflict, &incoming, v) == Ordering::Greater);
            if wins {
                replace(versions, incoming)
            } else {
                Merged {
                    changed: false,
                    lost: if versions.iter().any(|v| incoming.seen_by(v)) {
                        Vec::new()
                    } else {
                        vec![incoming.dot]
                    },
                }
            }
        }
    }
}

/// Folds several versions in (a replica's answer, a repair, a handoff).
pub fn merge_all(
    conflict: Conflict,
    versions: &mut Vec<Version>,
    incoming: impl IntoIterator<Item = Version>,
) -> Merged {
    let mut out = Merged::default();
    for v in incoming {
        let m = merge(conflict, versions, v);
        out.changed |= m.changed;
        out.lost.extend(m.lost);
    }
    out
}

fn merge_siblings(versions: &mut Vec<Version>, incoming: Version) -> Merged {
    if versions.iter().any(|v| incoming.seen_by(v)) {
        // Already superseded here: an old write arriving late.
        return Merged::default();
    }
    versions.retain(|v| !v.seen_by(&incoming));
    versions.push(incoming);
    versions.sort_by(|a, b| a.dot.cmp(&b.dot));
    let mut lost = Vec::new();
    while versions.len() > MAX_SIBLINGS {
        let oldest = versions
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| a.ts_ms.cmp(&b.ts_ms).then_with(|| a.dot.cmp(&b.dot)))
            .map(|(i, _)| i)
            .unwrap_or(0);
        lost.push(versions.remove(oldest).dot);
    }
    Merged {
        changed: true,
        lost,
    }
}

fn replace(versions: &mut Vec<Version>, incoming: Version) -> Merged {
    let lost = versions
        .drain(..)
        .filter(|v| !v.seen_by(&incoming))
        .map(|v| v.dot)
        .collect();
    versions.push(incoming);
    Merged {
        changed: true,
        lost,
    }
}

/// The total order in which single-winner rules pick a version (greater wins). Ties on the
/// rule's own criterion fall back to the other fields so that every node picks the same one.
fn winner_cmp(conflict: Conflict, a: &Version, b: &Version) -> Ordering {
    let by_dot =
        || id_cmp(&a.dot.actor, &b.dot.actor).then_with(|| a.dot.counter.cmp(&b.dot.counter));
    match conflict {
        Conflict::HighestId => id_cmp(&a.origin, &b.origin).then_with(by_dot),
        _ => a
            .ts_ms
            .cmp(&b.ts_ms)
            .then_with(|| id_cmp(&a.origin, &b.origin))
            .then_with(by_dot),
    }
}

/// Everything the versions have seen: the context a reader gets and passes back to supersede
/// them all.
pub fn clock_of(versions: &[Version]) -> VersionVector {
    let mut c = VersionVector::new();
    for v in versions {
        c.merge(&v.context);
        c.add(&v.dot);
    }
    c
}

/// The integer values among the versions, in increasing order, without repeats.
pub fn int_values(versions: &[Version]) -> Vec<i64> {
    let set: BTreeSet<i64> = versions
        .iter()
        .filter_map(|v| match v.datum {
            Datum::Int(x) => Some(x),
            Datum::Set(_) => None,
        })
        .collect();
    set.into_iter().collect()
}

/// The union of the set states among the versions, or why the key is not a set.
pub fn set_union(versions: &[Version]) -> Result<SetState, String> {
    let mut out = SetState::default();
    for v in versions {
        match &v.datum {
            Datum::Set(s) => out.union(s),
            Datum::Int(x) => {
                return Err(format!("the key holds the register value {x}, not a set"));
            }
        }
    }
    Ok(out)
}

/// The register's single value, or why there is not exactly one: a cas or statement needs one
/// value to evaluate against.
pub fn single_int(versions: &[Version]) -> Result<Option<i64>, String> {
    match versions {
        [] => Ok(None),
        [v] => match v.datum {
            Datum::Int(x) => Ok(Some(x)),
            Datum::Set(_) => Err("the key holds a set, not a register".to_string()),
        },
        many => Err(format!(
            "the key has {} siblings; read them and write back one value with their context",
            many.len()
        )),
    }
}

/// A digest of a key's versions, equal on two replicas exactly when they hold the same
/// versions (for anti-entropy and read repair).
pub fn digest(key: i64, versions: &[Version]) -> u64 {
    let mut h = super::ring::Fnv::new();
    h.write(&key.to_le_bytes());
    for v in versions {
        // Serialising these plain structs cannot fail; their maps are ordered, so the bytes
        // are canonical.
        h.write(&serde_json::to_vec(v).unwrap_or_default());
        h.write(b"\n");
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(actor: &str, counter: u64, value: i64, ts_ms: i64, seen: &[&Version]) -> Version {
        let mut context = VersionVector::new();
        for v in seen {
            context.merge(&v.clock());
        }
        Version {
            dot: Dot::new(actor, counter),
            context,
            datum: Datum::Int(value),
            ts_ms,
            origin: actor.to_string(),
        }
    }

    fn merged(conflict: Conflict, order: &[&Version]) -> Vec<Version> {
        let mut vs = Vec::new();
        for v in order {
            merge(conflict, &mut vs, (*v).clone());
        }
        vs
    }

    #[test]
    fn siblings_keep_concurrent_writes_and_a_write_with_their_context_supersedes_them() {
        let a = version("n1", 1, 10, 100, &[]);
        let b = version("n2", 1, 20, 50, &[]);
        let vs = merged(Conflict::Siblings, &[&a, &b]);
        assert_eq!(int_values(&vs), vec![10, 20]);
        let c = version("n3", 1, 30, 10, &[&a, &b]);
        let vs2 = merged(Conflict::Siblings, &[&a, &b, &c]);
        assert_eq!(int_values(&vs2), vec![30]);
        // Every arrival order gives the same result, and old versions arriving late are
        // recognised as superseded.
        for order in [[&c, &a, &b], [&b, &c, &a], [&a, &c, &b]] {
            assert_eq!(merged(Conflict::Siblings, &order), vs2);
        }
        assert_eq!(clock_of(&vs2), c.clock());
    }

    #[test]
    fn an_update_arriving_before_the_insert_it_depends_on_is_not_undone_by_it() {
        let insert = version("n1", 1, 1, 100, &[]);
        let update = version("n3", 1, 2, 200, &[&insert]);
        // Arrival order applies the insert last and ends with it: the causality problem.
        let naive = merged(Conflict::None, &[&update, &insert]);
        assert_eq!(int_values(&naive), vec![1]);
        // Version vectors recognise the insert as already superseded.
        let safe = merged(Conflict::Siblings, &[&update, &insert]);
        assert_eq!(int_values(&safe), vec![2]);
    }

    #[test]
    fn lww_keeps_the_highest_timestamp_and_reports_concurrent_losers() {
        let early = version("n1", 1, 10, 100, &[]);
        let late = version("n2", 1, 20, 200, &[]);
        for order in [[&early, &late], [&late, &early]] {
            assert_eq!(int_values(&merged(Conflict::Lww, &order)), vec![20]);
        }
        let mut vs = vec![late.clone()];
        let m = merge(Conflict::Lww, &mut vs, early.clone());
        assert_eq!(m.lost, vec![early.dot.clone()], "a silently lost write");
        // With skew a causally later write carries an earlier timestamp and loses.
        let after = version("n3", 1, 30, 150, &[&late]);
        let mut vs = vec![late.clone()];
        let m = merge(Conflict::Lww, &mut vs, after.clone());
        assert_eq!(int_values(&vs), vec![20]);
        assert_eq!(m.lost, vec![after.dot]);
    }

    #[test]
    fn highest_id_wins_regardless_of_time_and_order() {
        let n2 = version("n2", 1, 2, 900, &[]);
        let n10 = version("n10", 1, 10, 100, &[]);
        let n3 = version("n3", 1, 3, 100, &[&n2]);
        for order in [[&n2, &n10, &n3], [&n3, &n2, &n10], [&n10, &n3, &n2]] {
            assert_eq!(int_values(&merged(Conflict::HighestId, &order)), vec![10]);
        }
    }

    #[test]
    fn the_sibling_limit_discards_the_oldest_and_says_so() {
        let mut vs = Vec::new();
        let mut lost = Vec::new();
        for c in 0..(MAX_SIBLINGS as u64 + 2) {
            lost.extend(
                merge(
                    Conflict::Siblings,
                    &mut vs,
                    version("n1", c + 1, 0, c as i64, &[]),
                )
                .lost,
            );
        }
        assert_eq!(vs.len(), MAX_SIBLINGS);
        assert_eq!(lost, vec![Dot::new("n1", 1), Dot::new("n1", 2)]);
    }

    #[test]
    fn sets_merge_by_union_with_tombstones_and_adds_win() {
        let mut base = SetState::default();
        base.add(1, Dot::new("n1", 1));
        base.add(2, Dot::new("n1", 2));
        // n2 removes 1 having seen its add; n3 concurrently adds 1 again.
        let mut removed = base.clone();
        removed.remove(1);
        let mut readded = base.clone();
        readded.add(1, Dot::new("n3", 1));
        let mut u = removed.clone();
        u.union(&readded);
        assert_eq!(u.elements(), vec![1, 2], "the concurrent add wins");
        // A removal merged with the state it removed from does not resurrect the element.
        let mut v = base.clone();
        v.union(&removed);
        assert_eq!(v.elements(), vec![2]);
        let mut w = removed.clone();
        w.union(&base);
        assert_eq!(w, v);
    }

    #[test]
    fn single_int_and_set_union_say_what_is_wrong() {
        let a = version("n1", 1, 1, 0, &[]);
        let b = version("n2", 1, 2, 0, &[]);
        assert_eq!(single_int(&[]), Ok(None));
        assert_eq!(single_int(std::slice::from_ref(&a)), Ok(Some(1)));
        assert!(
            single_int(&[a.clone(), b])
                .unwrap_err()
                .contains("2 siblings")
        );
        assert!(set_union(&[a]).unwrap_err().contains("register"));
    }

    #[test]
    fn digests_tell_different_versions_apart() {
        let a = version("n1", 1, 1, 0, &[]);
        let b = version("n1", 1, 2, 0, &[]);
        let one = std::slice::from_ref(&a);
        let copy = a.clone();
        assert_eq!(digest(1, one), digest(1, std::slice::from_ref(&copy)));
        assert_ne!(digest(1, one), digest(1, &[b]));
        assert_ne!(digest(1, one), digest(2, one));
    }
}

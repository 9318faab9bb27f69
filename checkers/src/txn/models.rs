//! Consistency models, the anomalies each one proscribes, and how anomalies imply one another,
//! following the definitions Elle (Kingsbury & Alvaro, VLDB 2020) collects from Adya, Bailis,
//! Cerone and others. The tables are data; the functions only walk them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A transactional consistency model, by Elle's friendly name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsistencyModel {
    /// `read-uncommitted`, Adya's PL-1: no G0 (dirty writes).
    ReadUncommitted,
    /// `read-committed`, PL-2: no G1 (G1a, G1b, G1c).
    ReadCommitted,
    /// `cursor-stability`, PL-CS.
    CursorStability,
    /// `monotonic-view`, PL-2L.
    MonotonicView,
    /// `monotonic-snapshot-read`, PL-MSR.
    MonotonicSnapshotRead,
    /// `monotonic-atomic-view` (Bailis et al.).
    MonotonicAtomicView,
    /// `read-atomic` (Cerone et al.).
    ReadAtomic,
    /// `causal-cerone` (Cerone et al.).
    CausalCerone,
    /// `prefix` (Cerone et al.).
    Prefix,
    /// `parallel-snapshot-isolation` (Cerone et al.).
    ParallelSnapshotIsolation,
    /// `ROLA`.
    Rola,
    /// `consistent-view`, PL-2+.
    ConsistentView,
    /// `forward-consistent-view`, PL-FCV.
    ForwardConsistentView,
    /// `update-serializable`, PL-3U.
    UpdateSerializable,
    /// `repeatable-read`, PL-2.99.
    RepeatableRead,
    /// `snapshot-isolation`, PL-SI.
    SnapshotIsolation,
    /// `serializable` (conflict serializable), PL-3.
    Serializable,
    /// `strong-session-read-uncommitted`.
    StrongSessionReadUncommitted,
    /// `strong-session-read-committed`.
    StrongSessionReadCommitted,
    /// `strong-read-uncommitted`.
    StrongReadUncommitted,
    /// `strong-read-committed`.
    StrongReadCommitted,
    /// `strong-session-snapshot-isolation`.
    StrongSessionSnapshotIsolation,
    /// `strong-snapshot-isolation`.
    StrongSnapshotIsolation,
    /// `strong-session-serializable`: serializable, and each process observes its own order.
    StrongSessionSerializable,
    /// `strict-serializable`, PL-SS: serializable in an order consistent with real time.
    StrictSerializable,
}

use ConsistencyModel as M;

/// One row of the model table.
struct ModelDef {
    model: M,
    name: &'static str,
    /// Other names accepted on input (Adya's PL levels, Elle's synonyms).
    aliases: &'static [&'static str],
    /// Directly weaker models: a history satisfying `model` satisfies each of these.
    implies: &'static [M],
    /// Anomalies `model` rules out beyond those its weaker models rule out.
    proscribes: &'static [&'static str],
}

const MODELS: &[ModelDef] = &[
    ModelDef {
        model: M::ReadUncommitted,
        name: "read-uncommitted",
        aliases: &["pl-1"],
        implies: &[],
        // Adya histories cannot contain these at all, so even PL-1 rules them out.
        proscribes: &["G0", "duplicate-elements", "cyclic-versions", "garbage"],
    },
    ModelDef {
        model: M::ReadCommitted,
        name: "read-committed",
        aliases: &["pl-2"],
        implies: &[M::ReadUncommitted],
        proscribes: &["G1"],
    },
    ModelDef {
        model: M::CursorStability,
        name: "cursor-stability",
        aliases: &["pl-cs"],
        implies: &[M::ReadCommitted],
        proscribes: &["G1", "G-cursor", "lost-update"],
    },
    ModelDef {
        model: M::MonotonicView,
        name: "monotonic-view",
        aliases: &["pl-2l"],
        implies: &[M::ReadCommitted],
        proscribes: &["G1", "G-monotonic"],
    },
    ModelDef {
        model: M::MonotonicSnapshotRead,
        name: "monotonic-snapshot-read",
        aliases: &["pl-msr"],
        implies: &[M::ReadCommitted],
        proscribes: &["G1", "G-MSR"],
    },
    ModelDef {
        model: M::MonotonicAtomicView,
        name: "monotonic-atomic-view",
        aliases: &[],
        implies: &[M::ReadCommitted],
        proscribes: &[],
    },
    ModelDef {
        model: M::ReadAtomic,
        name: "read-atomic",
        aliases: &[],
        implies: &[M::MonotonicAtomicView],
        proscribes: &["internal", "G1a", "future-read"],
    },
    ModelDef {
        model: M::CausalCerone,
        name: "causal-cerone",
        aliases: &[],
        implies: &[M::ReadAtomic],
        proscribes: &["internal", "G1a"],
    },
    ModelDef {
        model: M::Prefix,
        name: "prefix",
        aliases: &[],
        implies: &[M::CausalCerone],
        proscribes: &["internal", "G1a"],
    },
    ModelDef {
        model: M::ParallelSnapshotIsolation,
        name: "parallel-snapshot-isolation",
        aliases: &[],
        implies: &[M::CausalCerone, M::Rola],
        proscribes: &["internal", "G1a"],
    },
    ModelDef {
        model: M::Rola,
        name: "ROLA",
        aliases: &[],
        implies: &[M::ReadAtomic],
        proscribes: &["lost-update"],
    },
    ModelDef {
        model: M::ConsistentView,
        name: "consistent-view",
        aliases: &["pl-2+"],
        implies: &[M::CursorStability, M::MonotonicView],
        proscribes: &["G1", "G-single"],
    },
    ModelDef {
        model: M::ForwardConsistentView,
        name: "forward-consistent-view",
        aliases: &["pl-fcv"],
        implies: &[M::ConsistentView],
        proscribes: &["G1", "G-SIb"],
    },
    ModelDef {
        model: M::UpdateSerializable,
        name: "update-serializable",
        aliases: &["pl-3u"],
        implies: &[M::ForwardConsistentView],
        proscribes: &["G1", "G-update"],
    },
    ModelDef {
        model: M::RepeatableRead,
        name: "repeatable-read",
        aliases: &["pl-2.99"],
        implies: &[M::CursorStability, M::MonotonicAtomicView],
        proscribes: &["G1", "G2-item", "lost-update"],
    },
    ModelDef {
        model: M::SnapshotIsolation,
        name: "snapshot-isolation",
        aliases: &["pl-si"],
        implies: &[
            M::ForwardConsistentView,
            M::MonotonicAtomicView,
            M::MonotonicSnapshotRead,
            M::ParallelSnapshotIsolation,
            M::Prefix,
        ],
        proscribes: &["internal", "G1", "G-SI", "G-nonadjacent"],
    },
    ModelDef {
        model: M::Serializable,
        name: "serializable",
        aliases: &["pl-3", "conflict-serializable"],
        implies: &[
            M::RepeatableRead,
            M::SnapshotIsolation,
            M::UpdateSerializable,
        ],
        proscribes: &["internal", "G1", "G2"],
    },
    ModelDef {
        model: M::StrongSessionReadUncommitted,
        name: "strong-session-read-uncommitted",
        aliases: &["strong-session-pl-1"],
        implies: &[M::ReadUncommitted],
        proscribes: &["G0-process"],
    },
    ModelDef {
        model: M::StrongSessionReadCommitted,
        name: "strong-session-read-committed",
        aliases: &["strong-session-pl-2"],
        implies: &[M::ReadCommitted, M::StrongSessionReadUncommitted],
        proscribes: &["G1c-process"],
    },
    ModelDef {
        model: M::StrongReadUncommitted,
        name: "strong-read-uncommitted",
        aliases: &["strong-pl-1"],
        implies: &[M::StrongSessionReadUncommitted],
        proscribes: &["G0-realtime"],
    },
    ModelDef {
        model: M::StrongReadCommitted,
        name: "strong-read-committed",
        aliases: &["strong-pl-2"],
        implies: &[M::StrongSessionReadCommitted, M::StrongReadUncommitted],
        proscribes: &["G1c-realtime"],
    },
    ModelDef {
        model: M::StrongSessionSnapshotIsolation,
        name: "strong-session-snapshot-isolation",
        aliases: &[],
        implies: &[M::SnapshotIsolation, M::StrongSessionReadCommitted],
        proscribes: &["internal", "G1-process", "G-nonadjacent-process"],
    },
    ModelDef {
        model: M::StrongSnapshotIsolation,
        name: "strong-snapshot-isolation",
        aliases: &[],
        implies: &[M::StrongSessionSnapshotIsolation, M::StrongReadCommitted],
        proscribes: &["internal", "G1-realtime", "G-nonadjacent-realtime"],
    },
    ModelDef {
        model: M::StrongSessionSerializable,
        name: "strong-session-serializable",
        aliases: &[],
        implies: &[M::Serializable, M::StrongSessionSnapshotIsolation],
        proscribes: &["G1-process", "G2-process"],
    },
    ModelDef {
        model: M::StrictSerializable,
        name: "strict-serializable",
        aliases: &["pl-ss", "strong-serializable"],
        implies: &[
            M::Serializable,
            M::SnapshotIsolation,
            M::StrongSnapshotIsolation,
            M::StrongSessionSerializable,
        ],
        proscribes: &["G1", "G1c-realtime", "G2-realtime"],
    },
];

/// `a` implies `b`: every history that has anomaly `a` also has anomaly `b`.
const IMPLIED_ANOMALIES: &[(&str, &[&str])] = &[
    ("G0", &["G1c", "G0-process"]),
    ("G0-process", &["G1c-process", "G0-realtime"]),
    ("G0-realtime", &["G1c-realtime"]),
    ("G1a", &["G1"]),
    ("G1b", &["G1"]),
    ("G1c", &["G1", "G1c-process"]),
    ("G1c-process", &["G1c-realtime", "G1-process"]),
    ("G1c-realtime", &["G1-realtime"]),
    ("G1", &["G1-process"]),
    ("G1-process", &["G1-realtime"]),
    // Every anti-dependency these workloads infer is an item anti-dependency (there are no
    // predicate reads), so, with Adya, a G-single or G-nonadjacent cycle is also G2-item.
    ("G-single", &["G-nonadjacent", "G-SIb", "G-single-process"]),
    (
        "G-single-process",
        &["G-nonadjacent-process", "G-single-realtime"],
    ),
    ("G-single-realtime", &["G-nonadjacent-realtime"]),
    ("G-nonadjacent", &["G2", "G2-item", "G-nonadjacent-process"]),
    (
        "G-nonadjacent-process",
        &["G2-process", "G2-item-process", "G-nonadjacent-realtime"],
    ),
    (
        "G-nonadjacent-realtime",
        &["G2-realtime", "G2-item-realtime"],
    ),
    ("G2", &["G2-process"]),
    ("G2-item", &["G2", "G2-item-process"]),
    ("G2-item-process", &["G2-process", "G2-item-realtime"]),
    ("G2-item-realtime", &["G2-realtime"]),
    ("G2-process", &["G2-realtime"]),
    ("G-SIa", &["G-SI"]),
    ("G-SIb", &["G-SI"]),
    ("incompatible-order", &["G1a"]),
    ("future-read", &["G1c"]),
    ("dirty-update", &["G1a"]),
    ("lost-update", &["write-skew", "G2-item"]),
    ("write-skew", &["G2"]),
];

/// Models whose `proscribes` row is their whole definition (Adya's PL levels, and the strong
/// serializable ones): whatever weaker models they imply follows from it, so checking a
/// selected model of this kind needs nothing from the models below it.
const SELF_CONTAINED: &[M] = &[
    M::ReadUncommitted,
    M::ReadCommitted,
    M::CursorStability,
    M::MonotonicView,
    M::MonotonicSnapshotRead,
    M::ConsistentView,
    M::ForwardConsistentView,
    M::UpdateSerializable,
    M::RepeatableRead,
    M::SnapshotIsolation,
    M::Serializable,
    M::StrongSessionSerializable,
    M::StrictSerializable,
];

/// Anomalies some model's definition names that the graphs built here cannot show, with why.
/// Adya defines them over start points of transactions or over graphs of single reads, neither
/// of which a history of invocations and completions records.
const UNCHECKABLE: &[(&str, &str)] = &[
    (
        "G-SIa",
        "interference needs each transaction's start point (its snapshot), which the history does not record",
    ),
    (
        "G-SIb",
        "missed effects are found only where they form a G-single cycle; cycles that need start-order edges cannot be seen without start points",
    ),
    (
        "G-cursor",
        "needs cycles of ww edges and one rw edge all on one key; only lost-update, its commonest case, is checked",
    ),
    (
        "G-monotonic",
        "needs Adya's unfolded serialization graph, with a node per read",
    ),
    (
        "G-MSR",
        "needs Adya's unfolded serialization graph, with a node per read",
    ),
    (
        "G-update",
        "needs Adya's graph of the update transactions with one read-only transaction at a time",
    ),
];

impl ConsistencyModel {
    /// Anomalies the definitions of `models` prohibit that this checker cannot detect, with
    /// why, in a fixed order: a history found valid is valid only as far as these go. Empty for
    /// the serializable models, whose definitions (G1, G2 and their process and real-time
    /// variants) are checked in full.
    pub fn not_checked(models: &[ConsistencyModel]) -> Vec<(&'static str, &'static str)> {
        let mut needed: BTreeSet<&'static str> = BTreeSet::new();
        let mut seen: BTreeSet<M> = BTreeSet::new();
        let mut stack: Vec<M> = models.to_vec();
        while let Some(m) = stack.pop() {
            if !seen.insert(m) {
                continue;
            }
            for &a in def(m).proscribes {
                if a == "G-SI" {
                    needed.extend(["G-SIa", "G-SIb"]);
                } else {
                    needed.insert(a);
                }
            }
            if !SELF_CONTAINED.contains(&m) {
                stack.extend_from_slice(def(m).implies);
            }
        }
        UNCHECKABLE
            .iter()
            .copied()
            .filter(|(a, _)| needed.contains(a))
            .collect()
    }

    /// Every model, weakest first within each family.
    pub const ALL: [ConsistencyModel; 25] = [
        M::ReadUncommitted,
        M::ReadCommitted,
        M::CursorStability,
        M::MonotonicView,
        M::MonotonicSnapshotRead,
        M::MonotonicAtomicView,
        M::ReadAtomic,
        M::CausalCerone,
        M::Prefix,
        M::ParallelSnapshotIsolation,
        M::Rola,
        M::ConsistentView,
        M::ForwardConsistentView,
        M::UpdateSerializable,
        M::RepeatableRead,
        M::SnapshotIsolation,
        M::Serializable,
        M::StrongSessionReadUncommitted,
        M::StrongSessionReadCommitted,
        M::StrongReadUncommitted,
        M::StrongReadCommitted,
        M::StrongSessionSnapshotIsolation,
        M::StrongSnapshotIsolation,
        M::StrongSessionSerializable,
        M::StrictSerializable,
    ];

    /// Elle's friendly name, e.g. `strict-serializable`.
    pub fn name(self) -> &'static str {
        def(self).name
    }

    /// Anomalies that cannot be present if all of `models` hold: everything the models and the
    /// models they imply proscribe, plus every anomaly that implies one of those.
    pub fn prohibited_anomalies(models: &[ConsistencyModel]) -> BTreeSet<&'static str> {
        let mut implied: BTreeSet<M> = BTreeSet::new();
        let mut stack: Vec<M> = models.to_vec();
        while let Some(m) = stack.pop() {
            if implied.insert(m) {
                stack.extend_from_slice(def(m).implies);
            }
        }
        let mut out: BTreeSet<&'static str> = BTreeSet::new();
        let mut stack: Vec<&'static str> = implied
            .iter()
            .flat_map(|&m| def(m).proscribes.iter().copied())
            .collect();
        // Walk the implication graph backwards: anything implying a prohibited anomaly is one.
        while let Some(a) = stack.pop() {
            if out.insert(a) {
                for (from, tos) in IMPLIED_ANOMALIES {
                    if tos.contains(&a) {
                        stack.push(from);
                    }
                }
            }
        }
        out
    }
}

fn def(m: M) -> &'static ModelDef {
    MODELS
        .iter()
        .find(|d| d.model == m)
        .unwrap_or_else(|| unreachable!("every model has a row in MODELS"))
}

/// All anomalies implied by `anomalies`, themselves included.
pub fn implied_anomalies<'a>(anomalies: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<&str> = anomalies.into_iter().collect();
    while let Some(a) = stack.pop() {
        if out.insert(a) {
            if let Some((_, tos)) = IMPLIED_ANOMALIES.iter().find(|(f, _)| *f == a) {
                stack.extend_from_slice(tos);
            }
        }
    }
    out
}

/// Models ruled out by the presence of `anomalies`, split as Elle does: `not` holds the weakest
/// ruled-out models, `also_not` the stronger ones they drag along.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    pub not: BTreeSet<ConsistencyModel>,
    pub also_not: BTreeSet<ConsistencyModel>,
}

pub fn boundary<'a>(anomalies: impl IntoIterator<Item = &'a str>) -> Boundary {
    let all = implied_anomalies(anomalies);
    let mut impossible: BTreeSet<M> = MODELS
        .iter()
        .filter(|d| d.proscribes.iter().any(|a| all.contains(a)))
        .map(|d| d.model)
        .collect();
    // Anything stronger than an impossible model is impossible too.
    loop {
        let before = impossible.len();
        for d in MODELS {
            if d.implies.iter().any(|w| impossible.contains(w)) {
                impossible.insert(d.model);
            }
        }
        if impossible.len() == before {
            break;
        }
    }
    let not: BTreeSet<M> = impossible
        .iter()
        .copied()
        .filter(|&m| {
            let weaker = weaker_models(m);
            !impossible.iter().any(|o| *o != m && weaker.contains(o))
        })
        .collect();
    let also_not = impossible.difference(&not).copied().collect();
    Boundary { not, also_not }
}

/// Every model strictly weaker than `m`.
fn weaker_models(m: M) -> BTreeSet<M> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<M> = def(m).implies.to_vec();
    while let Some(w) = stack.pop() {
        if out.insert(w) {
            stack.extend_from_slice(def(w).implies);
        }
    }
    out
}

impl fmt::Display for ConsistencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConsistencyModel {
    type Err = String;

    /// Elle's names (`strict-serializable`, `pl-2.99`, ...), case-insensitive, with or without a
    /// leading `:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim().trim_start_matches(':').to_ascii_lowercase();
        MODELS
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&want) || d.aliases.contains(&want.as_str()))
            .map(|d| d.model)
            .ok_or_else(|| {
                let known: Vec<&str> = MODELS.iter().map(|d| d.name).collect();
                format!(
                    "unknown consistency model \"{s}\"; expected one of {} (or pl-1, pl-2, pl-2.99, pl-3, pl-si, pl-ss)",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_a_row_and_parses_back() {
        for m in ConsistencyModel::ALL {
            assert_eq!(m.name().parse::<ConsistencyModel>(), Ok(m));
        }
        assert_eq!("PL-2.99".parse(), Ok(M::RepeatableRead));
        assert_eq!(":pl-ss".parse(), Ok(M::StrictSerializable));
        assert!("eventual".parse::<ConsistencyModel>().is_err());
    }

    #[test]
    fn g_single_rules_out_consistent_view_and_repeatable_read() {
        let b = boundary(["G-single"]);
        assert_eq!(
            b.not,
            [M::ConsistentView, M::RepeatableRead]
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        assert!(b.also_not.contains(&M::SnapshotIsolation));
        assert!(b.also_not.contains(&M::Serializable));
        assert!(b.also_not.contains(&M::StrictSerializable));
        assert!(!b.also_not.contains(&M::ReadCommitted));
        assert!(!b.also_not.contains(&M::CursorStability));
    }

    #[test]
    fn a_stale_read_only_rules_out_realtime_models() {
        let b = boundary(["G-single-realtime"]);
        assert_eq!(
            b.not,
            [M::StrongSnapshotIsolation]
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        assert_eq!(
            b.also_not,
            [M::StrictSerializable].into_iter().collect::<BTreeSet<_>>()
        );
        let strict = ConsistencyModel::prohibited_anomalies(&[M::StrictSerializable]);
        let serializable = ConsistencyModel::prohibited_anomalies(&[M::Serializable]);
        assert!(strict.contains("G-single-realtime"));
        assert!(!serializable.contains("G-single-realtime"));
        assert!(serializable.contains("G-single"));
        assert!(serializable.contains("G1a"));
    }

    #[test]
    fn g0_rules_out_read_uncommitted_and_everything_above() {
        let b = boundary(["G0"]);
        assert_eq!(
            b.not,
            [M::ReadUncommitted].into_iter().collect::<BTreeSet<_>>()
        );
        assert!(b.also_not.contains(&M::StrictSerializable));
        assert_eq!(b.also_not.len(), ConsistencyModel::ALL.len() - 1);
    }

    #[test]
    fn only_models_defined_by_undetectable_anomalies_have_unchecked_parts() {
        let names = |ms: &[M]| {
            ConsistencyModel::not_checked(ms)
                .into_iter()
                .map(|(a, _)| a)
                .collect::<Vec<_>>()
        };
        assert!(names(&[M::StrictSerializable]).is_empty());
        assert!(names(&[M::Serializable]).is_empty());
        assert!(names(&[M::StrongSessionSerializable]).is_empty());
        assert!(names(&[M::RepeatableRead, M::ReadCommitted]).is_empty());
        assert_eq!(names(&[M::SnapshotIsolation]), ["G-SIa", "G-SIb"]);
        assert_eq!(names(&[M::StrongSnapshotIsolation]), ["G-SIa", "G-SIb"]);
        assert_eq!(names(&[M::CursorStability]), ["G-cursor"]);
        assert_eq!(names(&[M::ForwardConsistentView]), ["G-SIb"]);
        assert_eq!(
            names(&[
                M::MonotonicView,
                M::MonotonicSnapshotRead,
                M::UpdateSerializable
            ]),
            ["G-monotonic", "G-MSR", "G-update"]
        );
    }

    #[test]
    fn lost_update_rules_out_cursor_stability_and_rola() {
        let b = boundary(["lost-update"]);
        assert!(b.not.contains(&M::CursorStability));
        assert!(b.not.contains(&M::Rola));
        assert!(b.also_not.contains(&M::SnapshotIsolation));
        assert!(!b.also_not.contains(&M::ReadCommitted));
    }
}

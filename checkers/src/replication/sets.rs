//! The set workload under add-wins merging.

use std::collections::{BTreeMap, BTreeSet};

use histories::History;

use super::{Call, MAX_EXPLAINED, calls_by_key, last_fault, plural, register_values};
use crate::verdict::{Validity, Verdict};

/// The final sets of the set workload (`set-add`, `set-remove`, `set-read`) under add-wins
/// semantics. *Final reads* are ok `set-read`s invoked after the last add or remove of the
/// key and after the last fault; the last per node counts (reads without a node count as one
/// anonymous node). Three things must hold:
///
/// - **converged**: every final read returns the same set;
/// - **no lost add**: an acknowledged add of `e` is in the final set unless some removal of
///   `e` (that may have happened) was invoked after the add was invoked, and so could have
///   seen it;
/// - **nothing unexpected**: every element of a final set was added by some call that may
///   have happened.
///
/// A removal may miss an add it did not see (a concurrent add wins), so an element present
/// after a later removal is not a violation. Keys without a final read make the verdict
/// `unknown` unless a violation was found.
///
/// Details: `diverged: [{key, by_node}]`, `lost_adds: [{key, element, add}]`,
/// `unexpected: [{key, element}]`, `keys_checked`, `keys_without_final_read`.
pub fn set_add_wins(history: &History) -> Verdict {
    let after_fault = last_fault(history).map_or(0, |p| p + 1);
    let (mut diverged, mut lost, mut unexpected) = (Vec::new(), Vec::new(), Vec::new());
    let mut explanation = Vec::new();
    let mut keys_checked = 0;
    let mut without_final = Vec::new();
    let mut explain = |line: String| {
        if explanation.len() < MAX_EXPLAINED {
            explanation.push(line);
        }
    };
    for (key, calls) in calls_by_key(history) {
        let adds: Vec<&Call<'_>> = calls.iter().filter(|c| c.is("set-add")).collect();
        let removes: Vec<&Call<'_>> = calls.iter().filter(|c| c.is("set-remove")).collect();
        if adds.is_empty() && removes.is_empty() {
            continue;
        }
        let start = adds
            .iter()
            .chain(&removes)
            .map(|c| c.last_line() + 1)
            .max()
            .unwrap_or(0)
            .max(after_fault);
        let mut by_node: BTreeMap<String, (usize, BTreeSet<i64>)> = BTreeMap::new();
        for c in calls
            .iter()
            .filter(|c| c.is("set-read") && c.is_ok() && c.invoke >= start)
        {
            let Some(elements) = register_values(c.value()) else {
                continue;
            };
            let node = c.node().unwrap_or("?").to_string();
            let at = c.complete.unwrap_or(c.invoke);
            if by_node.get(&node).is_none_or(|(prev, _)| *prev < at) {
                by_node.insert(node, (at, elements.into_iter().collect()));
            }
        }
        if by_node.is_empty() {
            if adds.iter().any(|a| a.is_ok()) {
                without_final.push(key.to_string());
            }
            continue;
        }
        keys_checked += 1;
        let sets: Vec<&BTreeSet<i64>> = by_node.values().map(|(_, s)| s).collect();
        if sets.windows(2).any(|w| w[0] != w[1]) {
            explain(format!(
                "key {key}: final sets differ: {}",
                by_node
                    .iter()
                    .map(|(n, (_, s))| format!("{n} has {s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            diverged.push(serde_json::json!({
                "key": key.to_string(),
                "by_node": by_node.iter().map(|(n, (_, s))| (n.clone(), s.clone())).collect::<BTreeMap<_, _>>(),
            }));
        }
        let anywhere: BTreeSet<i64> = sets.iter().flat_map(|s| s.iter().copied()).collect();
        for add in adds.iter().filter(|a| a.is_ok()) {
            let Some(e) = add.value().as_int() else {
                continue;
            };
            if anywhere.contains(&e) {
                continue;
            }
            let removable = removes.iter().any(|r| {
                r.may_have_happened() && r.value().as_int() == Some(e) && r.invoke > add.invoke
            });
            if !removable {
                explain(format!(
                    "key {key}: {} is in no final set and no removal of {e} came after it",
                    add.describe()
                ));
                lost.push(
                    serde_json::json!({"key": key.to_string(), "element": e, "add": add.json()}),
                );
            }
        }
        let added: BTreeSet<i64> = adds
            .iter()
            .filter(|a| a.may_have_happened())
            .filter_map(|a| a.value().as_int())
            .collect();
        for e in anywhere.difference(&added) {
            explain(format!(
                "key {key}: {e} is in a final set but was never added"
            ));
            unexpected.push(serde_json::json!({"key": key.to_string(), "element": e}));
        }
    }
    let problems = diverged.len() + lost.len() + unexpected.len();
    let (valid, summary) = if problems > 0 {
        let mut parts = Vec::new();
        if !lost.is_empty() {
            parts.push(plural(lost.len(), "lost add", "lost adds"));
        }
        if !diverged.is_empty() {
            parts.push(format!(
                "{} not converged",
                plural(diverged.len(), "key", "keys")
            ));
        }
        if !unexpected.is_empty() {
            parts.push(plural(
                unexpected.len(),
                "unexpected element",
                "unexpected elements",
            ));
        }
        (Validity::False, parts.join(", "))
    } else if !without_final.is_empty() || keys_checked == 0 {
        (
            Validity::Unknown,
            format!(
                "no violation found, but {} no final set read",
                plural(
                    without_final.len(),
                    "key with adds has",
                    "keys with adds have"
                )
            ),
        )
    } else {
        (
            Validity::True,
            format!(
                "final sets agree and keep every add no removal could have seen ({})",
                plural(keys_checked, "key", "keys")
            ),
        )
    };
    Verdict {
        checker: "set-add-wins".to_string(),
        valid,
        summary,
        explanation,
        details: serde_json::json!({
            "diverged": diverged,
            "lost_adds": lost,
            "unexpected": unexpected,
            "keys_checked": keys_checked,
            "keys_without_final_read": without_final,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_history::{H, set};
    use super::*;
    use histories::{OpType, Value};

    fn add(h: &mut H, p: u64, e: i64) {
        h.call(p, OpType::Ok, "set-add", 7, Value::Int(e));
    }

    fn remove(h: &mut H, p: u64, e: i64) {
        h.call(p, OpType::Ok, "set-remove", 7, Value::Int(e));
    }

    #[test]
    fn a_concurrent_add_surviving_a_removal_is_add_wins() {
        let mut h = H::new();
        add(&mut h, 0, 1);
        add(&mut h, 1, 2);
        // Removal of 1 concurrent with a re-add of 1: the add wins.
        h.invoke(0, "set-remove", 7, Value::Int(1))
            .invoke(1, "set-add", 7, Value::Int(1))
            .complete(0, OpType::Ok, "set-remove", 7, Value::Int(1))
            .complete(1, OpType::Ok, "set-add", 7, Value::Int(1));
        remove(&mut h, 2, 2);
        h.nemesis("heal")
            .read_at(3, "n1", "set-read", 7, &[1])
            .read_at(3, "n2", "set-read", 7, &[1]);
        let v = set_add_wins(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
    }

    #[test]
    fn an_add_no_removal_could_see_must_survive() {
        let mut h = H::new();
        add(&mut h, 0, 1);
        add(&mut h, 1, 2);
        h.call(2, OpType::Ok, "set-read", 7, set(&[2]));
        let v = set_add_wins(&h.build());
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.summary, "1 lost add");
        // A removal invoked before the add cannot have removed it either.
        let mut h = H::new();
        remove(&mut h, 0, 1);
        add(&mut h, 1, 1);
        h.call(2, OpType::Ok, "set-read", 7, set(&[]));
        assert_eq!(set_add_wins(&h.build()).valid, Validity::False);
    }

    #[test]
    fn diverged_final_sets_and_elements_never_added_are_violations() {
        let mut h = H::new();
        add(&mut h, 0, 1);
        h.read_at(3, "n1", "set-read", 7, &[1])
            .read_at(3, "n2", "set-read", 7, &[1, 9]);
        let v = set_add_wins(&h.build());
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.summary, "1 key not converged, 1 unexpected element");
    }

    #[test]
    fn no_final_read_is_unknown() {
        let mut h = H::new();
        add(&mut h, 0, 1);
        assert_eq!(set_add_wins(&h.build()).valid, Validity::Unknown);
    }
}

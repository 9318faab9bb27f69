//! Convergence of replicas after the last write and the last fault.

use std::collections::BTreeMap;

use histories::History;

use super::{
    Call, MAX_EXPLAINED, calls_by_key, is_register_read, last_fault, plural, register_values,
};
use crate::verdict::{Validity, Verdict};

/// Every node's final read of a key returns the same values. A *final read* is an ok `read`,
/// `local-read` or `set-read` that names its node and is invoked after the last line of
/// every other call on the key and after the last fault; per node the last one counts.
/// Register reads compare as sets of values (siblings in any order), set reads as sets of
/// elements. A key read at fewer than two nodes proves nothing; with no such key the
/// verdict is `unknown`.
///
/// Details: `diverged: [{key, by_node: {node: [values]}}]`, `keys_checked`.
pub fn convergence(history: &History) -> Verdict {
    let after_fault = last_fault(history).map_or(0, |p| p + 1);
    let mut diverged = Vec::new();
    let mut explanation = Vec::new();
    let mut keys_checked = 0;
    for (key, calls) in calls_by_key(history) {
        let is_final_kind = |c: &Call<'_>| is_register_read(c) || c.is("set-read");
        let last_other = calls
            .iter()
            .filter(|c| !is_final_kind(c))
            .map(|c| c.last_line())
            .max();
        let start = last_other.map_or(after_fault, |l| (l + 1).max(after_fault));
        let mut by_node: BTreeMap<&str, (usize, Vec<i64>)> = BTreeMap::new();
        for c in &calls {
            if !is_final_kind(c) || !c.is_ok() || c.invoke < start {
                continue;
            }
            let (Some(node), Some(mut values)) = (c.node(), register_values(c.value())) else {
                continue;
            };
            values.sort_unstable();
            values.dedup();
            let at = c.complete.unwrap_or(c.invoke);
            if by_node.get(node).is_none_or(|(prev, _)| *prev < at) {
                by_node.insert(node, (at, values));
            }
        }
        if by_node.len() < 2 {
            continue;
        }
        keys_checked += 1;
        let mut distinct: Vec<&Vec<i64>> = by_node.values().map(|(_, v)| v).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            if explanation.len() < MAX_EXPLAINED {
                explanation.push(format!(
                    "key {key}: {}",
                    by_node
                        .iter()
                        .map(|(n, (_, v))| format!("{n} has {v:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            diverged.push(serde_json::json!({
                "key": key.to_string(),
                "by_node": by_node.iter().map(|(n, (_, v))| (n.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
            }));
        }
    }
    let (valid, summary) = if !diverged.is_empty() {
        (
            Validity::False,
            format!(
                "not converged: replicas disagree on {} of {} read at the end",
                plural(diverged.len(), "key", "keys"),
                keys_checked
            ),
        )
    } else if keys_checked == 0 {
        (
            Validity::Unknown,
            "no key was read at two or more nodes after the last write and fault".to_string(),
        )
    } else {
        (
            Validity::True,
            format!(
                "converged: every node's final read agrees on {}",
                plural(keys_checked, "key", "keys")
            ),
        )
    };
    Verdict {
        checker: "convergence".to_string(),
        valid,
        summary,
        explanation,
        details: serde_json::json!({ "diverged": diverged, "keys_checked": keys_checked }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_history::H;
    use super::*;

    #[test]
    fn equal_final_reads_converge_and_sibling_order_does_not_matter() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .write(1, 1, 2)
            .nemesis("heal")
            .read_at(2, "n1", "local-read", 1, &[1, 2])
            .read_at(2, "n2", "local-read", 1, &[2, 1])
            .read_at(2, "n3", "read", 1, &[1, 2]);
        let v = convergence(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
    }

    #[test]
    fn a_node_that_disagrees_is_not_converged() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .nemesis("heal")
            .read_at(2, "n1", "local-read", 1, &[1])
            .read_at(2, "n2", "local-read", 1, &[]);
        let v = convergence(&h.build());
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.explanation, vec!["key 1: n1 has [1], n2 has []"]);
    }

    #[test]
    fn reads_before_the_heal_or_a_write_do_not_count_and_the_last_read_per_node_does() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .read_at(2, "n2", "local-read", 1, &[])
            .nemesis("heal")
            .read_at(2, "n1", "local-read", 1, &[1])
            .read_at(2, "n2", "local-read", 1, &[])
            .read_at(2, "n2", "local-read", 1, &[1]);
        assert_eq!(convergence(&h.build()).valid, Validity::True);
        let mut h = H::new();
        h.read_at(2, "n1", "local-read", 1, &[])
            .write(0, 1, 1)
            .read_at(2, "n2", "local-read", 1, &[1]);
        assert_eq!(convergence(&h.build()).valid, Validity::Unknown);
    }
}

//! Sibling counts of register reads.

use std::collections::BTreeMap;

use histories::History;

use super::{calls_by_key, is_register_read, quantile, register_values};
use crate::verdict::{Validity, Verdict};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiblingOptions {
    /// A read returning more values than this makes the verdict invalid; `None` only
    /// measures.
    pub max_siblings: Option<usize>,
}

/// How many values ok register reads (`read`, `local-read`) returned: each read counts its
/// distinct values (0 for `nil`). Reports the distribution and the keys with the most, and
/// is invalid only when a read exceeded [`SiblingOptions::max_siblings`].
///
/// Details: `reads`, `reads_with_siblings` (two or more values), `p50`, `p99`, `max`,
/// `max_by_key: {key: n}`, `over_limit: [{key, values, read}]`.
pub fn sibling_counts(history: &History, opts: &SiblingOptions) -> Verdict {
    let mut counts: Vec<u64> = Vec::new();
    let mut max_by_key: BTreeMap<String, u64> = BTreeMap::new();
    let mut over = Vec::new();
    for (key, calls) in calls_by_key(history) {
        for c in calls.iter().filter(|c| is_register_read(c) && c.is_ok()) {
            let Some(mut values) = register_values(c.value()) else {
                continue;
            };
            values.sort_unstable();
            values.dedup();
            let n = values.len() as u64;
            counts.push(n);
            let m = max_by_key.entry(key.to_string()).or_insert(0);
            *m = (*m).max(n);
            if opts.max_siblings.is_some_and(|limit| values.len() > limit) {
                over.push(serde_json::json!({
                    "key": key.to_string(),
                    "values": values,
                    "read": c.json(),
                }));
            }
        }
    }
    counts.sort_unstable();
    let with_siblings = counts.iter().filter(|n| **n >= 2).count();
    let (p50, p99, max) = (
        quantile(&counts, 0.5),
        quantile(&counts, 0.99),
        counts.last().copied().unwrap_or(0),
    );
    let (valid, summary) = match (counts.is_empty(), over.is_empty(), opts.max_siblings) {
        (true, _, _) => (Validity::Unknown, "no ok register reads".to_string()),
        (false, false, Some(limit)) => (
            Validity::False,
            format!(
                "{} reads returned more than {limit} siblings (max {max})",
                over.len()
            ),
        ),
        _ => (
            Validity::True,
            format!(
                "{with_siblings} of {} reads returned siblings (values per read: p50 {p50}, p99 {p99}, max {max})",
                counts.len()
            ),
        ),
    };
    let mut top: Vec<(&String, &u64)> = max_by_key.iter().filter(|(_, n)| **n >= 2).collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    Verdict {
        checker: "siblings".to_string(),
        valid,
        summary,
        explanation: top
            .iter()
            .take(5)
            .map(|(k, n)| format!("key {k}: up to {n} siblings in one read"))
            .collect(),
        details: serde_json::json!({
            "reads": counts.len(),
            "reads_with_siblings": with_siblings,
            "p50": p50,
            "p99": p99,
            "max": max,
            "max_by_key": max_by_key,
            "over_limit": over,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_history::H;
    use super::*;

    fn history() -> History {
        let mut h = H::new();
        h.read(0, 1, &[])
            .read(0, 1, &[1])
            .read(0, 1, &[1, 2])
            .read(0, 2, &[1, 2, 3]);
        h.build()
    }

    #[test]
    fn counts_values_per_read_and_measures_by_default() {
        let v = sibling_counts(&history(), &SiblingOptions::default());
        assert_eq!(v.valid, Validity::True);
        assert_eq!(v.details["reads_with_siblings"], 2);
        assert_eq!(v.details["max"], 3);
        assert_eq!(v.details["max_by_key"]["1"], 2);
        assert_eq!(v.explanation[0], "key 2: up to 3 siblings in one read");
    }

    #[test]
    fn a_read_beyond_the_limit_is_invalid() {
        let limited = SiblingOptions {
            max_siblings: Some(2),
        };
        let v = sibling_counts(&history(), &limited);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.details["over_limit"][0]["key"], "2");
        let roomy = SiblingOptions {
            max_siblings: Some(3),
        };
        assert_eq!(sibling_counts(&history(), &roomy).valid, Validity::True);
        assert_eq!(
            sibling_counts(&H::new().build(), &roomy).valid,
            Validity::Unknown
        );
    }
}

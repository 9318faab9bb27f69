//! Staleness of register reads.

use std::collections::BTreeMap;

use histories::{F, History};

use super::{
    Call, MAX_EXPLAINED, calls_by_key, is_other_change, is_register_write, plural, quantile,
    register_values,
};
use crate::verdict::{Validity, Verdict};

/// For each ok `read`, the acknowledged writes of its key it missed: writes that completed
/// before the read was invoked and were invoked after every write whose value the read
/// returned had completed (so the read's values are strictly older in real time). A read
/// returning a value no write is known for, or one from a write concurrent with the missed
/// ones, misses nothing. With a value written several times the most recent such write is
/// assumed.
///
/// A stale read is measured by how many writes it missed (versions behind) and by how long
/// the oldest missed write had been acknowledged when the read was invoked (ms behind,
/// from the histories' times). The verdict is invalid when any read was stale (the "no
/// stale reads" guarantee) and reports the distribution either way. Keys changed by other
/// calls than `write` are skipped.
///
/// Details: `reads`, `stale_reads`, `versions_behind: {p50, p99, max}`, `ms_behind: {p50,
/// p99, max}` (over stale reads), `examples: [{key, read, missed, versions_behind,
/// ms_behind}]`.
pub fn staleness(history: &History) -> Verdict {
    let (mut reads, mut versions, mut lags_ms) = (0, Vec::new(), Vec::new());
    let mut examples = Vec::new();
    let mut explanation = Vec::new();
    for (key, calls) in calls_by_key(history) {
        if calls.iter().any(is_other_change) {
            continue;
        }
        let writes: Vec<&Call<'_>> = calls
            .iter()
            .filter(|c| is_register_write(c) && c.may_have_happened())
            .collect();
        // Value -> the latest-invoked write of it (the most favourable reading).
        let mut by_value: BTreeMap<i64, &Call<'_>> = BTreeMap::new();
        for w in &writes {
            if let Some(v) = w.value().as_int() {
                by_value.insert(v, w);
            }
        }
        for r in calls.iter().filter(|c| *c.f() == F::Read && c.is_ok()) {
            let Some(values) = register_values(r.value()) else {
                continue;
            };
            reads += 1;
            let sources: Vec<&Call<'_>> = values
                .iter()
                .filter_map(|v| by_value.get(v).copied())
                .collect();
            if sources.len() < values.len() {
                // A value nobody is known to have written: not this checker's business.
                continue;
            }
            // The read is as fresh as its freshest value: what it returned ended here at the
            // latest (indeterminate writes never end).
            let fresh_until = sources.iter().map(|s| s.end()).max();
            let missed: Vec<&Call<'_>> = writes
                .iter()
                .copied()
                .filter(|w| w.is_ok() && w.complete.is_some_and(|c| c < r.invoke))
                .filter(|w| fresh_until.is_none_or(|end| end != usize::MAX && w.invoke > end))
                .collect();
            if missed.is_empty() {
                continue;
            }
            let oldest_ack_ns = missed
                .iter()
                .filter_map(|w| w.done.map(|d| d.time_ns))
                .min()
                .unwrap_or(r.op.time_ns);
            let ms = r.op.time_ns.saturating_sub(oldest_ack_ns) / 1_000_000;
            versions.push(missed.len() as u64);
            lags_ms.push(ms);
            if explanation.len() < MAX_EXPLAINED {
                explanation.push(format!(
                    "key {key}: {} missed {} ({}), {ms} ms after the first was acknowledged",
                    r.describe(),
                    plural(missed.len(), "acknowledged write", "acknowledged writes"),
                    missed
                        .iter()
                        .map(|w| w.describe())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if examples.len() < MAX_EXPLAINED {
                examples.push(serde_json::json!({
                    "key": key.to_string(),
                    "read": r.json(),
                    "missed": missed.iter().map(|w| w.json()).collect::<Vec<_>>(),
                    "versions_behind": missed.len(),
                    "ms_behind": ms,
                }));
            }
        }
    }
    let stale = versions.len();
    versions.sort_unstable();
    lags_ms.sort_unstable();
    let dist = |v: &[u64]| {
        serde_json::json!({
            "p50": quantile(v, 0.5),
            "p99": quantile(v, 0.99),
            "max": v.last().copied().unwrap_or(0),
        })
    };
    let (valid, summary) = if reads == 0 {
        (Validity::Unknown, "no ok reads of written keys".to_string())
    } else if stale > 0 {
        (
            Validity::False,
            format!(
                "{stale} of {reads} reads stale: p50 {} versions / {} ms behind, p99 {} / {} ms, max {} / {} ms",
                quantile(&versions, 0.5),
                quantile(&lags_ms, 0.5),
                quantile(&versions, 0.99),
                quantile(&lags_ms, 0.99),
                versions.last().copied().unwrap_or(0),
                lags_ms.last().copied().unwrap_or(0),
            ),
        )
    } else {
        (
            Validity::True,
            format!(
                "no stale reads: each of {reads} reads saw every write acknowledged before it began"
            ),
        )
    };
    Verdict {
        checker: "staleness".to_string(),
        valid,
        summary,
        explanation,
        details: serde_json::json!({
            "reads": reads,
            "stale_reads": stale,
            "versions_behind": dist(&versions),
            "ms_behind": dist(&lags_ms),
            "examples": examples,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_history::H;
    use super::*;
    use histories::{OpType, Value};

    #[test]
    fn reads_that_see_the_latest_acknowledged_write_are_fresh() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .read(1, 1, &[1])
            .write(0, 1, 2)
            .read(1, 1, &[2]);
        // Concurrent with a write, either value is fresh.
        h.invoke(0, "write", 1, Value::Int(3))
            .read(1, 1, &[2])
            .complete(0, OpType::Ok, "write", 1, Value::Int(3));
        let v = staleness(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.details["reads"], 3);
    }

    #[test]
    fn a_read_of_an_older_value_is_stale_by_versions_and_time() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .write(0, 1, 2)
            .write(0, 1, 3)
            .read(1, 1, &[1])
            .read(1, 1, &[]);
        let v = staleness(&h.build());
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.details["stale_reads"], 2);
        assert_eq!(v.details["versions_behind"]["max"], 3);
        // Writes complete at lines 3 and 5; the first stale read is invoked at line 6.
        assert_eq!(v.details["examples"][0]["ms_behind"], 30);
        assert!(v.summary.starts_with("2 of 2 reads stale"), "{}", v.summary);
    }

    #[test]
    fn a_sibling_list_is_as_fresh_as_its_freshest_value() {
        let mut h = H::new();
        h.write(0, 1, 1).write(1, 1, 2).read(2, 1, &[1, 2]);
        assert_eq!(staleness(&h.build()).valid, Validity::True);
        let mut h = H::new();
        // An indeterminate write may land at any time, so reading it is never stale.
        h.call(0, OpType::Info, "write", 1, Value::Int(1))
            .write(1, 1, 2)
            .read(2, 1, &[1]);
        assert_eq!(staleness(&h.build()).valid, Validity::True);
    }
}

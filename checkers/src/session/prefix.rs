//! Consistent prefix reads, with the real-time order of writes.

use std::collections::HashMap;

use histories::History;

use super::{Access, Findings, LatestInvoked, NewestCompleted, Prepared, prepare, show};
use crate::replication::{Call, is_register_write, plural};
use crate::verdict::Verdict;

/// *Consistent prefix reads* (DDIA ch. 5): if a write w1(k1, v1) completed ok before a write
/// w2(k2, v2) was invoked, by any processes and on any keys (k1 = k2 included), then a process
/// q that observed w2 (an ok read of k2 returning a version `>= v2`) must see w1 in its reads
/// of k1 invoked after that read completed: they return a version `>= v1`. The writes that
/// certainly happened before w2 form a prefix of history; a reader that sees w2 but not all
/// of that prefix sees effects in an order that never happened, DDIA's observer who hears the
/// answer before the question. Unlike [`super::monotonic_writes`] and
/// [`super::writes_follow_reads`], w1 and w2 may come from different processes, ordered by
/// real time alone.
///
/// How: when q reads version v of k2, what it observed certainly includes every write of k2
/// with a version `< v` that was acknowledged, and the write of v itself (ok, indeterminate
/// or never answered: the read shows it happened; a failed one did not); let t be the
/// latest invocation line among them. A read of a value nobody wrote observes nothing that
/// can be placed in time and is skipped, as is a nil read. The writes completed before a line t are nested in t, so the
/// union of what q must see is given by T_q, the greatest such t over q's completed reads.
/// For each of q's reads of k1 the version owed is the newest among ok writes of k1 completed
/// before T_q: per key the ok writes are sorted by completion line with the running newest
/// version, found by binary search. O(R log W) for R reads and W writes.
///
/// A violation names w1 (the write with the newest version owed), w2 (the write that set
/// T_q), r1 (q's read that observed w2) and r2 (the read that missed w1).
///
/// Details: `violations: [{w1, w2, r1, r2}]` (each with its key), `violation_count`,
/// `reads_checked` (reads that were owed some write), `keys_checked`, `keys_skipped`.
pub fn consistent_prefix(history: &History) -> Verdict {
    check(&prepare(history))
}

/// What a process has observed: the write invoked latest whose effect its reads showed.
#[derive(Debug, Clone, Copy)]
struct Observed<'a> {
    w2: Call<'a>,
    r1: Access<'a>,
}

pub(super) fn check(prep: &Prepared<'_>) -> Verdict {
    let mut acknowledged: Vec<Vec<Access<'_>>> = vec![Vec::new(); prep.keys.len()];
    for (_, accesses) in &prep.sessions {
        for a in accesses.iter().filter(|a| a.write) {
            acknowledged[a.key].push(*a);
        }
    }
    let by_version: Vec<LatestInvoked<'_>> = acknowledged
        .iter()
        .map(|w| LatestInvoked::new(w.clone()))
        .collect();
    let by_completion: Vec<NewestCompleted<'_>> =
        acknowledged.into_iter().map(NewestCompleted::new).collect();
    // Per key, value -> its earliest-invoked write that may have happened: if a value was
    // written twice, the read is credited with the older write, which owes less.
    let writer_of: Vec<HashMap<i64, Call<'_>>> = prep
        .calls
        .iter()
        .map(|calls| {
            let mut m: HashMap<i64, Call<'_>> = HashMap::new();
            for c in calls
                .iter()
                .filter(|c| is_register_write(c) && c.may_have_happened())
            {
                if let Some(v) = c.op.value.as_int() {
                    m.entry(v).or_insert(*c);
                }
            }
            m
        })
        .collect();
    // The latest-invoked write a read of `version` of `key` certainly observed.
    let observed = |key: usize, version: i64| -> Option<Call<'_>> {
        let exact = *writer_of[key].get(&version)?;
        match by_version[key].up_to(Some(version), false) {
            Some(older) if older.call.invoke > exact.invoke => Some(older.call),
            _ => Some(exact),
        }
    };

    let mut findings = Findings::default();
    let mut checked = 0;
    for (_, accesses) in &prep.sessions {
        let mut latest: Option<Observed<'_>> = None;
        for r2 in accesses.iter().filter(|a| !a.write) {
            if let Some(o) = latest {
                if let Some(w1) = by_completion[r2.key].before(o.w2.invoke) {
                    checked += 1;
                    if r2.version < w1.version {
                        report(prep, &mut findings, w1, &o, r2);
                    }
                }
            }
            let Some(w2) = r2.version.and_then(|v| observed(r2.key, v)) else {
                continue;
            };
            if latest.is_none_or(|o| w2.invoke > o.w2.invoke) {
                latest = Some(Observed { w2, r1: *r2 });
            }
        }
    }
    let n = findings.count;
    findings.verdict(
        "consistent-prefix",
        "violations",
        format!(
            "{} a write but missed one acknowledged before it was invoked",
            plural(n, "read saw", "reads saw")
        ),
        format!(
            "every read saw a prefix of the writes in real-time order ({} checked)",
            plural(checked, "read", "reads")
        ),
        serde_json::json!({
            "reads_checked": checked,
            "keys_checked": prep.keys.len(),
            "keys_skipped": prep.skipped_json(),
        }),
    )
}

fn report(
    prep: &Prepared<'_>,
    findings: &mut Findings,
    w1: &Access<'_>,
    o: &Observed<'_>,
    r2: &Access<'_>,
) {
    let w2_key = prep.key(&o.r1);
    findings.add(
        || {
            format!(
                "{} (key {}) completed before {} (key {}) was invoked; {} observed that write, then {} returned {}, older than {}",
                w1.describe(),
                prep.key(w1),
                o.w2.describe(),
                w2_key,
                o.r1.describe(),
                r2.describe(),
                show(r2.version),
                show(w1.version),
            )
        },
        || {
            let mut w2 = o.w2.json();
            if let Some(obj) = w2.as_object_mut() {
                obj.insert("key".to_string(), w2_key.to_string().into());
            }
            serde_json::json!({
                "w1": prep.json(w1),
                "w2": w2,
                "r1": prep.json(&o.r1),
                "r2": prep.json(r2),
            })
        },
    );
}

//! The guarantees a session owes itself: read-your-writes and monotonic reads.

use std::collections::HashMap;

use histories::History;

use super::{Access, Findings, Prepared, prepare, show};
use crate::replication::plural;
use crate::verdict::Verdict;

/// *Read-your-writes* (DDIA ch. 5; Terry et al.'s "Read Your Writes"): for each ok write
/// w(k, v) by process p, every ok read of k by p invoked after w completed returns a version
/// `>= v`; `nil` is older than every value, so a nil read after an own write is a violation.
/// Without it a user who submits something and reloads sees their submission vanish, the
/// anomaly of reading from an asynchronous follower that has not caught up.
///
/// Only acknowledged writes bind: an `info` write may never have happened. Within a process
/// every earlier call completed before the next was invoked, so each read is checked against
/// the newest of its process's earlier ok writes of the key, which is the write named.
///
/// Details: `violations: [{key, write, read}]`, `violation_count`, `reads_checked` (reads
/// that followed an own write of their key), `keys_checked`, `keys_skipped`.
pub fn read_your_writes(history: &History) -> Verdict {
    check_read_your_writes(&prepare(history))
}

/// *Monotonic reads* (DDIA ch. 5; Terry et al.'s "Monotonic Reads"): per process and key, an
/// ok read invoked after an earlier ok read of the key by the process completed returns a
/// version `>=` the earlier one's. Without it a user who reads from a fresh replica and then
/// a stale one sees time go backwards: a comment appears, then disappears.
///
/// Each read is checked against the newest version its process read of the key before,
/// which is the earlier read named.
///
/// Details: `violations: [{key, earlier, later}]`, `violation_count`, `reads_checked` (reads
/// that followed a read of their key by their process), `keys_checked`, `keys_skipped`.
pub fn monotonic_reads(history: &History) -> Verdict {
    check_monotonic_reads(&prepare(history))
}

pub(super) fn check_read_your_writes(prep: &Prepared<'_>) -> Verdict {
    let mut findings = Findings::default();
    let mut checked = 0;
    for (_, accesses) in &prep.sessions {
        // Per key, the process's newest acknowledged write so far.
        let mut newest: HashMap<usize, &Access<'_>> = HashMap::new();
        for a in accesses {
            if a.write {
                let slot = newest.entry(a.key).or_insert(a);
                if a.version > slot.version {
                    *slot = a;
                }
                continue;
            }
            let Some(w) = newest.get(&a.key) else {
                continue;
            };
            checked += 1;
            if a.version < w.version {
                findings.add(
                    || {
                        format!(
                            "key {}: {} did not see {}, its own write acknowledged before the read began",
                            prep.key(a),
                            a.describe(),
                            w.describe()
                        )
                    },
                    || {
                        serde_json::json!({
                            "key": prep.key(a).to_string(),
                            "write": prep.json(w),
                            "read": prep.json(a),
                        })
                    },
                );
            }
        }
    }
    let n = findings.count;
    findings.verdict(
        "read-your-writes",
        "violations",
        format!(
            "{} the process's own acknowledged write",
            plural(n, "read missed", "reads missed")
        ),
        format!(
            "every read saw the process's own writes ({} checked)",
            plural(checked, "read", "reads")
        ),
        serde_json::json!({
            "reads_checked": checked,
            "keys_checked": prep.keys.len(),
            "keys_skipped": prep.skipped_json(),
        }),
    )
}

pub(super) fn check_monotonic_reads(prep: &Prepared<'_>) -> Verdict {
    let mut findings = Findings::default();
    let mut checked = 0;
    for (_, accesses) in &prep.sessions {
        // Per key, the process's read of the newest version so far.
        let mut newest: HashMap<usize, &Access<'_>> = HashMap::new();
        for a in accesses.iter().filter(|a| !a.write) {
            let Some(earlier) = newest.get(&a.key).copied() else {
                newest.insert(a.key, a);
                continue;
            };
            checked += 1;
            if a.version < earlier.version {
                findings.add(
                    || {
                        format!(
                            "key {}: {} returned an older version than {} read before (version {} after {})",
                            prep.key(a),
                            a.describe(),
                            earlier.describe(),
                            show(a.version),
                            show(earlier.version)
                        )
                    },
                    || {
                        serde_json::json!({
                            "key": prep.key(a).to_string(),
                            "earlier": prep.json(earlier),
                            "later": prep.json(a),
                        })
                    },
                );
            } else if a.version > earlier.version {
                newest.insert(a.key, a);
            }
        }
    }
    let n = findings.count;
    findings.verdict(
        "monotonic-reads",
        "violations",
        format!(
            "{} back to an older version than the process had read",
            plural(n, "read went", "reads went")
        ),
        format!(
            "no process read an older version after a newer one ({} checked)",
            plural(checked, "read", "reads")
        ),
        serde_json::json!({
            "reads_checked": checked,
            "keys_checked": prep.keys.len(),
            "keys_skipped": prep.skipped_json(),
        }),
    )
}

//! Lost writes of versioned registers.

use histories::{F, History, OpType};

use super::{Findings, Prepared, Version, prepare, show, version_of};
use crate::replication::{Call, is_register_write, last_fault, plural};
use crate::verdict::{Validity, Verdict};

/// An acknowledged write is *lost* when the store forgot it: for an ok write w(k, v), the
/// key's recovery read returns a version `< v` (nil being the oldest). Under the contract a
/// key's versions only grow, so a recovery read older than an acknowledged write means a
/// failover or a wiped replica dropped it (DDIA ch. 5, "Handling Node Outages").
///
/// The *final reads* of a key are its ok `read` calls (not `local-read`: a single node may
/// legitimately lag) returning nil or one integer, invoked after the last line of every write
/// of the key (its completion; for an indeterminate write, its `info` line, after which it
/// may still land but will not make an acknowledged write look lost, since it is newer) and
/// after the last nemesis line, so the cluster had no fault to hide behind. The *recovery
/// read* is the final read that completed last. Keys without one are not checked; when no
/// key was checked the verdict is `unknown`.
///
/// Named apart from [`crate::replication::lost_writes`], whose histories keep siblings and
/// whose writes supersede by context rather than by version; the verdict name is the same,
/// `lost-writes`, as a run uses one workload or the other.
///
/// Details: `lost: [{key, write, recovery_read}]` (the first of them), `violation_count`,
/// `keys_checked`, `acknowledged_writes` (ok writes on checked keys),
/// `keys_without_recovery_read`, `keys_skipped`.
pub fn versioned_lost_writes(history: &History) -> Verdict {
    check(history, &prepare(history))
}

pub(super) fn check(history: &History, prep: &Prepared<'_>) -> Verdict {
    let quiet_after = last_fault(history);
    let mut findings = Findings::default();
    let (mut keys_checked, mut acknowledged) = (0, 0);
    let mut without_recovery = Vec::new();
    for (key, calls) in prep.keys.iter().zip(&prep.calls) {
        let writes: Vec<&Call<'_>> = calls.iter().filter(|c| is_register_write(c)).collect();
        let horizon = writes
            .iter()
            .map(|w| w.last_line())
            .chain(quiet_after)
            .max();
        let recovery: Option<(&Call<'_>, Version)> = calls
            .iter()
            .filter(|c| *c.f() == F::Read && c.is_ok())
            .filter(|c| horizon.is_none_or(|h| c.invoke > h))
            .filter_map(|c| Some((c, version_of(c.value())?)))
            .max_by_key(|(c, _)| c.complete);
        let Some((read, read_version)) = recovery else {
            without_recovery.push(key.to_string());
            continue;
        };
        keys_checked += 1;
        for w in writes.iter().filter(|w| w.kind() == Some(OpType::Ok)) {
            let Some(v) = w.value().as_int() else {
                continue;
            };
            acknowledged += 1;
            if read_version < Some(v) {
                findings.add(
                    || {
                        format!(
                            "key {key}: {} is lost: the recovery read {} returned {}",
                            w.describe(),
                            read.describe(),
                            show(read_version)
                        )
                    },
                    || {
                        serde_json::json!({
                            "key": key.to_string(),
                            "write": w.json(),
                            "recovery_read": read.json(),
                        })
                    },
                );
            }
        }
    }
    let n = findings.count;
    let checked = format!(
        "{} on {}",
        plural(acknowledged, "acknowledged write", "acknowledged writes"),
        plural(keys_checked, "key", "keys")
    );
    let mut verdict = findings.verdict(
        "lost-writes",
        "lost",
        format!(
            "{} lost: the recovery read of the key returned an older version",
            plural(n, "acknowledged write", "acknowledged writes")
        ),
        format!("every acknowledged write survived in its key's recovery read ({checked})"),
        serde_json::json!({
            "keys_checked": keys_checked,
            "acknowledged_writes": acknowledged,
            "keys_without_recovery_read": without_recovery,
            "keys_skipped": prep.skipped_json(),
        }),
    );
    if keys_checked == 0 {
        // Nothing was lost because nothing was looked at.
        verdict.valid = Validity::Unknown;
        verdict.summary = "no final reads".to_string();
    }
    verdict
}

//! Lost writes, siblings allowed.

use std::collections::{BTreeMap, BTreeSet};

use histories::{History, OpType};

use super::{
    Call, MAX_EXPLAINED, calls_by_key, is_other_change, is_register_read, is_register_write,
    plural, register_values,
};
use crate::verdict::{Validity, Verdict};

/// An acknowledged `write` of a key is *lost* when no final read of the key returns its value
/// and no write that had seen it superseded it. A *final read* is an ok `read` or
/// `local-read` invoked after the last line of every write of the key. A write *has seen* a
/// value when its process's last ok read of the key before the write returned that value, or
/// the process wrote it itself since (the context rule of the module docs); a write that
/// failed certainly superseded nothing, one that is indeterminate may have.
///
/// A lost write is called *later* when a value that survived was written by a write that
/// completed before the lost one was invoked: last-write-wins with a clock skew.
///
/// Values should be unique per key: a value written twice survives if either write does.
/// Keys changed by other calls (`cas`, `add`, `exec`, ...) are skipped; keys with ok writes
/// but no final read make the verdict `unknown` unless a loss was found elsewhere.
///
/// Details: `lost: [{key, kind: later|concurrent, write, final_reads, survivors}]`,
/// `keys_checked`, `keys_without_final_read`, `keys_skipped`, `writes_checked`.
pub fn lost_writes(history: &History) -> Verdict {
    let mut lost = Vec::new();
    let mut explanation = Vec::new();
    let (mut keys_checked, mut writes_checked) = (0, 0);
    let mut without_final = Vec::new();
    let mut skipped = Vec::new();
    for (key, calls) in calls_by_key(history) {
        if calls.iter().any(is_other_change) {
            skipped.push(key.to_string());
            continue;
        }
        let writes: Vec<&Call<'_>> = calls.iter().filter(|c| is_register_write(c)).collect();
        let acknowledged: Vec<&Call<'_>> = writes.iter().copied().filter(|w| w.is_ok()).collect();
        if acknowledged.is_empty() {
            continue;
        }
        let last_write_line = writes.iter().map(|w| w.last_line()).max().unwrap_or(0);
        let finals: Vec<(&Call<'_>, Vec<i64>)> = calls
            .iter()
            .filter(|c| is_register_read(c) && c.is_ok() && c.invoke > last_write_line)
            .filter_map(|c| register_values(c.value()).map(|v| (c, v)))
            .collect();
        if finals.is_empty() {
            without_final.push(key.to_string());
            continue;
        }
        keys_checked += 1;
        writes_checked += acknowledged.len();
        let present: BTreeSet<i64> = finals.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let superseded = superseded_values(&calls);
        for w in acknowledged {
            let Some(v) = w.value().as_int() else {
                continue;
            };
            if present.contains(&v) || superseded.contains(&v) {
                continue;
            }
            // The survivors' writes that ended before this one began.
            let older_survivors: Vec<&Call<'_>> = writes
                .iter()
                .copied()
                .filter(|s| s.is_ok() && s.complete.is_some_and(|c| c < w.invoke))
                .filter(|s| s.value().as_int().is_some_and(|x| present.contains(&x)))
                .collect();
            let later = !older_survivors.is_empty();
            if explanation.len() < MAX_EXPLAINED {
                let finals_text: Vec<String> = finals.iter().map(|(c, _)| c.describe()).collect();
                explanation.push(if later {
                    format!(
                        "key {key}: {} is in no final read ({}) and no write saw it; it was invoked after {} completed, whose value survived: a later write lost",
                        w.describe(),
                        finals_text.join(", "),
                        older_survivors[0].describe()
                    )
                } else {
                    format!(
                        "key {key}: {} is in no final read ({}) and no write saw it: a concurrent write lost",
                        w.describe(),
                        finals_text.join(", ")
                    )
                });
            }
            lost.push(serde_json::json!({
                "key": key.to_string(),
                "kind": if later { "later" } else { "concurrent" },
                "write": w.json(),
                "final_reads": finals.iter().map(|(c, _)| c.json()).collect::<Vec<_>>(),
                "survivors": older_survivors.iter().map(|c| c.json()).collect::<Vec<_>>(),
            }));
        }
    }
    let later = lost.iter().filter(|l| l["kind"] == "later").count();
    let (valid, summary) = if !lost.is_empty() {
        (
            Validity::False,
            format!(
                "{} lost ({later} later than a write that survived)",
                plural(lost.len(), "acknowledged write", "acknowledged writes")
            ),
        )
    } else if !without_final.is_empty() {
        (
            Validity::Unknown,
            format!(
                "no loss found, but {} acknowledged writes and no final read",
                plural(without_final.len(), "key has", "keys have")
            ),
        )
    } else {
        (
            Validity::True,
            format!(
                "every acknowledged write survived or was superseded by a write that saw it ({} on {})",
                plural(writes_checked, "write", "writes"),
                plural(keys_checked, "key", "keys")
            ),
        )
    };
    Verdict {
        checker: "lost-writes".to_string(),
        valid,
        summary,
        explanation,
        details: serde_json::json!({
            "lost": lost,
            "keys_checked": keys_checked,
            "writes_checked": writes_checked,
            "keys_without_final_read": without_final,
            "keys_skipped": skipped,
        }),
    }
}

/// The values some write (that may have happened) had seen when it was invoked, by the
/// context rule: per process, its last ok read of the key, plus its ok writes since.
fn superseded_values(calls: &[Call<'_>]) -> BTreeSet<i64> {
    // Walk the key's calls in history order of their lines: a process's read completes
    // before its next call is invoked, so completion order per process is call order.
    let mut events: Vec<(usize, &Call<'_>, bool)> = Vec::new();
    for c in calls {
        events.push((c.invoke, c, true));
        if let Some(p) = c.complete {
            events.push((p, c, false));
        }
    }
    events.sort_by_key(|(pos, _, _)| *pos);
    let mut seen: BTreeMap<histories::Process, BTreeSet<i64>> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, c, is_invoke) in events {
        let process = c.op.process;
        if is_invoke {
            if is_register_write(c) && c.may_have_happened() {
                out.extend(seen.get(&process).into_iter().flatten().copied());
            }
            continue;
        }
        match c.kind() {
            Some(OpType::Ok) if is_register_read(c) && !c.is("local-read") => {
                if let Some(values) = register_values(c.value()) {
                    seen.insert(process, values.into_iter().collect());
                }
            }
            Some(OpType::Ok) if is_register_write(c) => {
                if let Some(v) = c.value().as_int() {
                    seen.entry(process).or_default().insert(v);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_history::H;
    use super::*;
    use histories::Value;

    #[test]
    fn siblings_that_all_survive_are_no_loss() {
        let mut h = H::new();
        h.invoke(0, "write", 1, Value::Int(1))
            .invoke(1, "write", 1, Value::Int(2))
            .complete(0, OpType::Ok, "write", 1, Value::Int(1))
            .complete(1, OpType::Ok, "write", 1, Value::Int(2))
            .read(2, 1, &[1, 2]);
        let v = lost_writes(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
    }

    #[test]
    fn a_write_that_read_the_siblings_supersedes_them() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .write(1, 1, 2)
            .read(2, 1, &[1, 2])
            .write(2, 1, 3)
            // Its own earlier write is superseded by its next one, too.
            .write(2, 1, 4)
            .read(3, 1, &[4]);
        let v = lost_writes(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.details["writes_checked"], 4);
    }

    #[test]
    fn a_blind_overwrite_is_a_lost_concurrent_write() {
        let mut h = H::new();
        h.write(0, 1, 1).write(1, 1, 2).read(2, 1, &[2]);
        let v = lost_writes(&h.build());
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.details["lost"][0]["kind"], "concurrent");
        assert_eq!(
            v.summary,
            "1 acknowledged write lost (0 later than a write that survived)"
        );
    }

    #[test]
    fn a_survivor_older_than_the_lost_write_is_a_later_write_lost() {
        // LWW under skew: 2 was written after 1 completed (having read it), yet 1 survived.
        let mut h = H::new();
        h.write(0, 1, 1)
            .read(1, 1, &[1])
            .write(1, 1, 2)
            .read(2, 1, &[1]);
        let v = lost_writes(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert_eq!(v.details["lost"][0]["kind"], "later");
        assert!(
            v.explanation[0].contains("a later write lost"),
            "{:?}",
            v.explanation
        );
    }

    #[test]
    fn an_indeterminate_write_may_have_superseded_and_a_failed_one_did_not() {
        let base = |kind: OpType| {
            let mut h = H::new();
            h.write(0, 1, 1)
                .read(1, 1, &[1])
                .call(1, kind, "write", 1, Value::Int(2))
                .read(2, 1, &[]);
            lost_writes(&h.build())
        };
        assert_eq!(base(OpType::Info).valid, Validity::True);
        assert_eq!(base(OpType::Fail).valid, Validity::False);
    }

    #[test]
    fn keys_without_a_final_read_are_unknown_and_other_changes_are_skipped() {
        let mut h = H::new();
        h.write(0, 1, 1);
        assert_eq!(lost_writes(&h.build()).valid, Validity::Unknown);
        let mut h = H::new();
        h.write(0, 1, 1)
            .call(
                0,
                OpType::Ok,
                "cas",
                1,
                Value::List(vec![Value::Int(1), Value::Int(2)]),
            )
            .read(0, 1, &[2]);
        let v = lost_writes(&h.build());
        assert_eq!(v.valid, Validity::True);
        assert_eq!(v.details["keys_skipped"][0], "1");
    }

    #[test]
    fn a_read_that_overlaps_a_write_is_not_final() {
        let mut h = H::new();
        h.write(0, 1, 1)
            .invoke(1, "write", 1, Value::Int(2))
            .read(2, 1, &[1])
            .complete(1, OpType::Ok, "write", 1, Value::Int(2));
        assert_eq!(lost_writes(&h.build()).valid, Validity::Unknown);
    }
}

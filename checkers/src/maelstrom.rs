//! Checkers for Maelstrom's simple workloads, over the histories the Maelstrom host records
//! (see `targets::adapters::maelstrom::workload` for the operation shapes):
//!
//! - [`echo`] (`echo`): every acknowledged `echo` returned exactly what was sent.
//! - [`unique_ids`] (`unique-ids`): no two acknowledged `generate` calls returned the same id.
//! - [`broadcast`] (`broadcast`): the broadcast and g-set workloads' final reads, one per
//!   node, agree and hold every acknowledged message (or element) and nothing never sent —
//!   the add-wins set check of [`crate::replication::set_add_wins`] with no removals, on the
//!   one implicit key these workloads have.
//! - [`counter`] (`g-counter`, `pn-counter`): the final reads, one per node, agree and lie
//!   between what the acknowledged adds sum to and what the adds that may have happened
//!   (ok, plus `info` or unanswered ones) can sum to.
//!
//! ```
//! use checkers::maelstrom::echo;
//! use checkers::Validity;
//! use histories::{History, Op, OpType, Process, F, Value};
//!
//! let op = |index: u64, kind: OpType, text: &str| Op {
//!     index, time_ns: index, process: Process::Client(0), kind, f: F::Other("echo".into()),
//!     key: None, value: Value::Str(text.into()), node: None, error: None,
//! };
//! let history = History::from_ops(vec![op(0, OpType::Invoke, "hi"), op(1, OpType::Ok, "ho")]).unwrap();
//! assert_eq!(echo(&history).valid, Validity::False);
//! ```

use std::collections::BTreeMap;

use histories::{F, History, Key, Op, OpType, Process, Value};
use serde_json::json;

use crate::verdict::{Validity, Verdict};

/// Explanation lines per verdict; details hold every case.
const MAX_EXPLAINED: usize = 20;

/// Every ok `echo` completion carries the value its invocation sent.
pub fn echo(history: &History) -> Verdict {
    let ops = history.ops();
    let mut checked = 0usize;
    let mut wrong = Vec::new();
    for (invoke, complete) in history.client_calls() {
        let (call, Some(done)) = (&ops[invoke], complete.map(|c| &ops[c])) else {
            continue;
        };
        if call.f.as_str() != "echo" || done.kind != OpType::Ok {
            continue;
        }
        checked += 1;
        if done.value != call.value {
            wrong.push(json!({
                "process": call.process.to_string(),
                "sent": call.value,
                "received": done.value,
                "index": done.index,
            }));
        }
    }
    let explanation = wrong
        .iter()
        .take(MAX_EXPLAINED)
        .map(|w| {
            format!(
                "p{} sent {} and got {} back (op {})",
                w["process"].as_str().unwrap_or("?"),
                w["sent"],
                w["received"],
                w["index"]
            )
        })
        .collect();
    let (valid, summary) = match (wrong.len(), checked) {
        (0, 0) => (Validity::Unknown, "no echo was acknowledged".to_string()),
        (0, n) => (Validity::True, format!("{n} echoes came back unchanged")),
        (bad, n) => (
            Validity::False,
            format!("{bad} of {n} echoes came back changed"),
        ),
    };
    Verdict {
        checker: "echo".into(),
        valid,
        summary,
        explanation,
        details: json!({"checked": checked, "wrong": wrong}),
    }
}

/// No id is returned by two acknowledged `generate` calls.
pub fn unique_ids(history: &History) -> Verdict {
    let ops = history.ops();
    let mut by_id: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (invoke, complete) in history.client_calls() {
        let Some(done) = complete.map(|c| &ops[c]) else {
            continue;
        };
        if ops[invoke].f.as_str() == "generate" && done.kind == OpType::Ok {
            by_id
                .entry(done.value.to_string())
                .or_default()
                .push(done.index);
        }
    }
    let generated: usize = by_id.values().map(Vec::len).sum();
    let duplicates: Vec<serde_json::Value> = by_id
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| json!({"id": id, "ops": at}))
        .collect();
    let explanation = duplicates
        .iter()
        .take(MAX_EXPLAINED)
        .map(|d| format!("id {} was returned by ops {}", d["id"], d["ops"]))
        .collect();
    let (valid, summary) = match (duplicates.len(), generated) {
        (0, 0) => (Validity::Unknown, "no id was generated".to_string()),
        (0, n) => (Validity::True, format!("{n} ids, all distinct")),
        (d, n) => (
            Validity::False,
            format!("{d} ids returned more than once among {n}"),
        ),
    };
    Verdict {
        checker: "unique-ids".into(),
        valid,
        summary,
        explanation,
        details: json!({"generated": generated, "duplicates": duplicates}),
    }
}

/// Broadcast and g-set: the final read at each node (the last ok keyless `read` per node
/// after the last `broadcast` / `add` and the last fault) agree and hold every acknowledged
/// message and nothing that was never sent.
pub fn broadcast(history: &History) -> Verdict {
    let mut verdict = crate::replication::set_add_wins(&as_set_workload(history));
    verdict.checker = "broadcast".into();
    if verdict.valid == Validity::True {
        verdict.summary =
            "the final read at every node holds every acknowledged message, and nothing else"
                .into();
    }
    verdict
}

/// G-counter and pn-counter: the final read at each node (its last ok keyless `read`
/// invoked after every `add` completed) agree, and each lies in `[lo, hi]`, where `lo` is
/// the sum of the ok adds plus the negative deltas of the adds that may have happened
/// (`info` or unanswered), and `hi` the same with their positive deltas. Failed adds count
/// for nothing.
pub fn counter(history: &History) -> Verdict {
    let ops = history.ops();
    let (mut acknowledged, mut lo, mut hi) = (0i64, 0i64, 0i64);
    let (mut adds, mut ok_adds) = (0usize, 0usize);
    // Reads invoked after this index saw every add settle (or give up).
    let mut last_add = None;
    let mut reads: Vec<(u64, u64)> = Vec::new();
    for (invoke, complete) in history.client_calls() {
        let call = &ops[invoke];
        let done = complete.map(|c| &ops[c]);
        match (call.f.as_str(), &call.key) {
            ("add", None) => {
                adds += 1;
                last_add = last_add.max(Some(done.map_or(u64::MAX, |d| d.index)));
                let delta = match &call.value {
                    Value::Map(m) => m.get("delta").and_then(Value::as_int).unwrap_or(0),
                    v => v.as_int().unwrap_or(0),
                };
                match done.map(|d| d.kind) {
                    Some(OpType::Ok) => {
                        ok_adds += 1;
                        acknowledged += delta;
                        lo += delta;
                        hi += delta;
                    }
                    Some(OpType::Fail) => {}
                    _ => {
                        lo += delta.min(0);
                        hi += delta.max(0);
                    }
                }
            }
            ("read", None) => {
                if let Some(d) = done.filter(|d| d.kind == OpType::Ok) {
                    reads.push((call.index, d.index));
                }
            }
            _ => {}
        }
    }
    // The last final read per node.
    let mut finals: BTreeMap<String, (u64, Option<i64>)> = BTreeMap::new();
    for (invoked, completed) in reads {
        if last_add.is_some_and(|last| invoked <= last) {
            continue;
        }
        let d = &ops[completed as usize];
        let node = d.node.clone().unwrap_or_else(|| d.process.to_string());
        finals.insert(node, (completed, d.value.as_int()));
    }
    let mut wrong = Vec::new();
    for (node, (index, value)) in &finals {
        let fits = value.is_some_and(|v| (lo..=hi).contains(&v));
        if !fits {
            wrong.push(json!({"node": node, "read": value, "index": index}));
        }
    }
    let values: std::collections::BTreeSet<Option<i64>> =
        finals.values().map(|(_, v)| *v).collect();
    let converged = values.len() <= 1;
    let mut explanation: Vec<String> = wrong
        .iter()
        .take(MAX_EXPLAINED)
        .map(|w| {
            format!(
                "{} read {} (op {}), outside [{lo}, {hi}]",
                w["node"].as_str().unwrap_or("?"),
                w["read"],
                w["index"]
            )
        })
        .collect();
    if !converged {
        let reads: Vec<String> = finals
            .iter()
            .map(|(n, (_, v))| format!("{n}={}", v.map_or("?".into(), |v| v.to_string())))
            .collect();
        explanation.push(format!("final reads differ: {}", reads.join(", ")));
    }
    let (valid, summary) = if finals.is_empty() {
        (
            Validity::Unknown,
            "no read after the last add completed, so the final value is unknown".to_string(),
        )
    } else if wrong.is_empty() && converged {
        (
            Validity::True,
            format!(
                "the final read at every node is {}, within [{lo}, {hi}] (acknowledged adds sum to {acknowledged})",
                values.iter().flatten().next().copied().unwrap_or_default()
            ),
        )
    } else {
        (
            Validity::False,
            format!(
                "{} of {} final reads outside [{lo}, {hi}]{}",
                wrong.len(),
                finals.len(),
                if converged {
                    ""
                } else {
                    "; the nodes have not converged"
                }
            ),
        )
    };
    Verdict {
        checker: "counter".into(),
        valid,
        summary,
        explanation,
        details: json!({
            "adds": adds,
            "ok_adds": ok_adds,
            "acknowledged_sum": acknowledged,
            "lower_bound": lo,
            "upper_bound": hi,
            "final_reads": finals.iter().map(|(n, (i, v))| json!({"node": n, "index": i, "value": v})).collect::<Vec<_>>(),
            "wrong": wrong,
        }),
    }
}

/// The broadcast or g-set history as the set workload on key 0: `broadcast v` and `add v`
/// become `set-add`, keyless reads become `set-read`; the nemesis stays, the rest goes.
fn as_set_workload(history: &History) -> History {
    let renamed = |op: &Op| -> Option<Op> {
        let f = match (&op.process, op.f.as_str(), &op.key) {
            (Process::Nemesis, ..) => return Some(op.clone()),
            (_, "broadcast" | "add", None) => "set-add",
            (_, "read", None) => "set-read",
            _ => return None,
        };
        Some(Op {
            f: F::Other(f.into()),
            key: Some(Key::Int(0)),
            value: match (&op.value, op.kind) {
                // A set-read returns a list; a failed read has none.
                (Value::Nil, OpType::Ok) if f == "set-read" => Value::List(Vec::new()),
                (v, _) => v.clone(),
            },
            ..op.clone()
        })
    };
    // Whole calls go or stay (a completion has its invocation's f and key), so the view is
    // well-formed; indexes stay those of the recorded history, which explanations cite.
    let kept: Vec<Op> = history.ops().iter().filter_map(renamed).collect();
    History::from_ops(kept).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(Vec<Op>);

    impl H {
        fn op(&mut self, p: u64, kind: OpType, f: &str, value: Value, node: Option<&str>) {
            let index = self.0.len() as u64;
            self.0.push(Op {
                index,
                time_ns: index * 1000,
                process: Process::Client(p),
                kind,
                f: match f {
                    "read" => F::Read,
                    "add" => F::Add,
                    other => F::Other(other.into()),
                },
                key: None,
                value,
                node: node.map(str::to_string),
                error: None,
            });
        }
        fn call(&mut self, p: u64, kind: OpType, f: &str, sent: Value, got: Value, node: &str) {
            self.op(p, OpType::Invoke, f, sent, None);
            self.op(p, kind, f, got, Some(node));
        }
        fn build(self) -> History {
            History::from_ops(self.0).unwrap()
        }
    }

    fn ints(v: &[i64]) -> Value {
        Value::List(v.iter().map(|&i| Value::Int(i)).collect())
    }

    #[test]
    fn echoes_must_come_back_unchanged() {
        let mut h = H(Vec::new());
        let s = |t: &str| Value::Str(t.into());
        h.call(0, OpType::Ok, "echo", s("a"), s("a"), "n1");
        h.call(1, OpType::Info, "echo", s("b"), s("b"), "n2");
        assert_eq!(echo(&h.build()).valid, Validity::True);
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "echo", s("a"), s("A"), "n1");
        let v = echo(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert!(v.explanation[0].contains("sent \"a\""), "{v:?}");
    }

    #[test]
    fn a_repeated_id_is_caught() {
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "generate", Value::Nil, Value::Int(1), "n1");
        h.call(1, OpType::Ok, "generate", Value::Nil, Value::Int(2), "n2");
        assert_eq!(unique_ids(&h.build()).valid, Validity::True);
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "generate", Value::Nil, Value::Int(1), "n1");
        h.call(1, OpType::Ok, "generate", Value::Nil, Value::Int(1), "n2");
        let v = unique_ids(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
    }

    fn delta(d: i64) -> Value {
        Value::Map([("delta".to_string(), Value::Int(d))].into_iter().collect())
    }

    #[test]
    fn counter_final_reads_must_agree_within_the_acknowledged_sum() {
        // ok +3, ok -1, info +5 (may have happened), fail +100 (did not).
        let adds = |h: &mut H| {
            h.call(0, OpType::Ok, "add", delta(3), delta(3), "n1");
            h.call(1, OpType::Ok, "add", delta(-1), delta(-1), "n2");
            h.call(2, OpType::Info, "add", delta(5), delta(5), "n1");
            h.call(3, OpType::Fail, "add", delta(100), delta(100), "n2");
        };
        let mut h = H(Vec::new());
        adds(&mut h);
        h.call(4, OpType::Ok, "read", Value::Nil, Value::Int(7), "n1");
        h.call(5, OpType::Ok, "read", Value::Nil, Value::Int(7), "n2");
        let v = counter(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.details["lower_bound"], json!(2));
        assert_eq!(v.details["upper_bound"], json!(7));

        // A read beyond what could have been added, and nodes that disagree.
        let mut h = H(Vec::new());
        adds(&mut h);
        h.call(4, OpType::Ok, "read", Value::Nil, Value::Int(2), "n1");
        h.call(5, OpType::Ok, "read", Value::Nil, Value::Int(107), "n2");
        let v = counter(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert!(
            v.summary.contains("1 of 2") && v.summary.contains("converged"),
            "{v:?}"
        );
        assert!(v.explanation[0].starts_with("n2 read 107"), "{v:?}");

        // A lost acknowledged add: both nodes agree on too little.
        let mut h = H(Vec::new());
        adds(&mut h);
        h.call(4, OpType::Ok, "read", Value::Nil, Value::Int(1), "n1");
        h.call(5, OpType::Ok, "read", Value::Nil, Value::Int(1), "n2");
        assert_eq!(counter(&h.build()).valid, Validity::False);

        // Reads during the adds are not final: nothing to judge.
        let mut h = H(Vec::new());
        h.call(4, OpType::Ok, "read", Value::Nil, Value::Int(0), "n1");
        adds(&mut h);
        assert_eq!(counter(&h.build()).valid, Validity::Unknown);
    }

    #[test]
    fn final_reads_must_hold_every_acknowledged_broadcast() {
        let mut h = H(Vec::new());
        h.call(
            0,
            OpType::Ok,
            "broadcast",
            Value::Int(1),
            Value::Int(1),
            "n1",
        );
        h.call(
            1,
            OpType::Ok,
            "broadcast",
            Value::Int(2),
            Value::Int(2),
            "n2",
        );
        h.call(2, OpType::Ok, "read", Value::Nil, ints(&[1, 2]), "n1");
        h.call(3, OpType::Ok, "read", Value::Nil, ints(&[1, 2]), "n2");
        let v = broadcast(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.checker, "broadcast");

        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "add", Value::Int(1), Value::Int(1), "n1");
        h.call(1, OpType::Ok, "add", Value::Int(2), Value::Int(2), "n2");
        h.call(2, OpType::Ok, "read", Value::Nil, ints(&[1]), "n1");
        h.call(3, OpType::Ok, "read", Value::Nil, ints(&[1, 2, 9]), "n2");
        let v = broadcast(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert!(v.summary.contains("not converged"), "{v:?}");
        assert!(v.summary.contains("unexpected"), "{v:?}");
    }
}

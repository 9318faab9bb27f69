//! Checkers for Maelstrom's simple workloads, over the histories the Maelstrom host records
//! (see `targets::adapters::maelstrom::workload` for the operation shapes):
//!
//! - [`echo`] (`echo`): every acknowledged `echo` returned exactly what was sent.
//! - [`unique_ids`] (`unique-ids`): no two acknowledged `generate` calls returned the same id.
//! - [`broadcast`] (`broadcast`): the broadcast and g-set workloads' final reads, one per
//!   node, agree and hold every acknowledged message (or element) and nothing never sent —
//!   the add-wins set check of [`crate::replication::set_add_wins`] with no removals, on the
//!   one implicit key these workloads have.
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

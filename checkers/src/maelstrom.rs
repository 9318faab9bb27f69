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
//!   (ok, plus `info` or unanswered ones) can sum to (Maelstrom's check); and, beyond
//!   Maelstrom, every earlier ok read lies between the sum of the negative and the sum of the
//!   positive deltas of the adds that may have happened and were invoked before the read
//!   completed — the only bounds a stale replica of an eventually consistent counter must
//!   respect (for a g-counter, 0 and the sum of the adds invoked so far).
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

/// G-counter and pn-counter, judged on every ok keyless `read`:
///
/// - **Final reads** (each node's last ok read invoked after every `add` completed) agree, and
///   each lies in `[lo, hi]`, where `lo` is the sum of the ok adds plus the negative deltas of
///   the adds that may have happened (`info` or unanswered), and `hi` the same with their
///   positive deltas. This is Maelstrom's check.
/// - **Every other read** lies within what some subset of the adds invoked before the read
///   completed can sum to: at least the sum of their negative deltas, at most the sum of their
///   positive deltas (for a g-counter, `0 <= value <=` the sum of the adds invoked so far).
///   A replica that has seen none of the adds yet legitimately reads 0, so nothing tighter is
///   sound for an eventually consistent counter; a value outside was never the state of any
///   replica.
///
/// Failed adds certainly did not happen and count for nothing.
pub fn counter(history: &History) -> Verdict {
    let ops = history.ops();
    let (mut acknowledged, mut lo, mut hi) = (0i64, 0i64, 0i64);
    let (mut adds, mut ok_adds) = (0usize, 0usize);
    // Reads invoked after this position saw every add settle (or give up).
    let mut last_add: Option<usize> = None;
    // Adds that may have happened, as (invocation position, delta), in invocation order.
    let mut possible: Vec<(usize, i64)> = Vec::new();
    // Ok reads as (invocation position, completion position), in invocation order.
    let mut reads: Vec<(usize, usize)> = Vec::new();
    for (invoke, complete) in history.client_calls() {
        let call = &ops[invoke];
        let done = complete.map(|c| &ops[c]);
        match (call.f.as_str(), &call.key) {
            ("add", None) => {
                adds += 1;
                last_add = last_add.max(Some(complete.unwrap_or(usize::MAX)));
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
                        possible.push((invoke, delta));
                    }
                    Some(OpType::Fail) => {}
                    _ => {
                        lo += delta.min(0);
                        hi += delta.max(0);
                        possible.push((invoke, delta));
                    }
                }
            }
            ("read", None) => {
                if let Some(c) = complete.filter(|&c| ops[c].kind == OpType::Ok) {
                    reads.push((invoke, c));
                }
            }
            _ => {}
        }
    }
    // The last final read per node, by completion position.
    let mut finals: BTreeMap<String, (usize, Option<i64>)> = BTreeMap::new();
    for &(invoked, completed) in &reads {
        if last_add.is_some_and(|last| invoked <= last) {
            continue;
        }
        let d = &ops[completed];
        let node = d.node.clone().unwrap_or_else(|| d.process.to_string());
        finals.insert(node, (completed, d.value.as_int()));
    }
    let mut wrong = Vec::new();
    for (node, (pos, value)) in &finals {
        let fits = value.is_some_and(|v| (lo..=hi).contains(&v));
        if !fits {
            wrong.push(json!({"node": node, "read": value, "index": ops[*pos].index}));
        }
    }
    let values: std::collections::BTreeSet<Option<i64>> =
        finals.values().map(|(_, v)| *v).collect();
    let converged = values.len() <= 1;

    let final_positions: std::collections::BTreeSet<usize> =
        finals.values().map(|(pos, _)| *pos).collect();
    let intermediate: Vec<(usize, usize)> = reads
        .iter()
        .copied()
        .filter(|(_, c)| !final_positions.contains(c))
        .collect();
    let out_of_bounds = out_of_bounds_reads(ops, &possible, &intermediate);

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
    for r in out_of_bounds.iter().take(MAX_EXPLAINED) {
        explanation.push(format!(
            "op {} (process {}) read {} at {}, outside [{}, {}]: no subset of the adds invoked before it completed sums to that",
            r["index"], r["process"], r["value"], r["node"].as_str().unwrap_or("?"),
            r["lower_bound"], r["upper_bound"]
        ));
    }
    if out_of_bounds.len() > MAX_EXPLAINED {
        explanation.push(format!(
            "... and {} more reads out of bounds (all in the details)",
            out_of_bounds.len() - MAX_EXPLAINED
        ));
    }

    let earlier = if intermediate.is_empty() {
        String::new()
    } else if out_of_bounds.is_empty() {
        format!("; all {} earlier reads within bounds", intermediate.len())
    } else {
        format!(
            "; {} of {} earlier reads outside what the adds invoked before them can sum to",
            out_of_bounds.len(),
            intermediate.len()
        )
    };
    let finals_fit = wrong.is_empty() && converged;
    let finals_text = if finals.is_empty() {
        "no read after the last add completed, so the final value is unknown".to_string()
    } else if finals_fit {
        format!(
            "the final read at every node is {}, within [{lo}, {hi}] (acknowledged adds sum to {acknowledged})",
            values.iter().flatten().next().copied().unwrap_or_default()
        )
    } else {
        format!(
            "{} of {} final reads outside [{lo}, {hi}]{}",
            wrong.len(),
            finals.len(),
            if converged {
                ""
            } else {
                "; the nodes have not converged"
            }
        )
    };
    let valid = if !out_of_bounds.is_empty() || !finals_fit {
        Validity::False
    } else if finals.is_empty() {
        Validity::Unknown
    } else {
        Validity::True
    };
    let summary = format!("{finals_text}{earlier}");
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
            "final_reads": finals.iter().map(|(n, (pos, v))| json!({"node": n, "index": ops[*pos].index, "value": v})).collect::<Vec<_>>(),
            "wrong": wrong,
            "intermediate_reads": intermediate.len(),
            "out_of_bounds_reads": out_of_bounds,
        }),
    }
}

/// The reads among `reads` (invocation and completion positions) whose value no subset of the
/// adds in `possible` invoked before the read completed can sum to, each as the ok read's
/// history index, its invocation's, process, node, value and the bounds it broke.
fn out_of_bounds_reads(
    ops: &[Op],
    possible: &[(usize, i64)],
    reads: &[(usize, usize)],
) -> Vec<serde_json::Value> {
    // Sums of the negative and of the positive deltas of the first k possible adds.
    let mut negative = Vec::with_capacity(possible.len() + 1);
    let mut positive = Vec::with_capacity(possible.len() + 1);
    let (mut neg, mut pos) = (0i64, 0i64);
    negative.push(neg);
    positive.push(pos);
    for &(_, delta) in possible {
        neg = neg.saturating_add(delta.min(0));
        pos = pos.saturating_add(delta.max(0));
        negative.push(neg);
        positive.push(pos);
    }
    debug_assert!(possible.windows(2).all(|w| w[0].0 < w[1].0));
    let mut out = Vec::new();
    for &(invoke, complete) in reads {
        let k = possible.partition_point(|&(at, _)| at < complete);
        let (lower, upper) = (negative[k], positive[k]);
        let done = &ops[complete];
        let value = done.value.as_int();
        if value.is_some_and(|v| (lower..=upper).contains(&v)) {
            continue;
        }
        out.push(json!({
            "index": done.index,
            "invoke_index": ops[invoke].index,
            "process": done.process,
            "node": done.node.clone().unwrap_or_else(|| done.process.to_string()),
            "value": value,
            "lower_bound": lower,
            "upper_bound": upper,
        }));
    }
    out
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

    /// Adds and reads interleaved, then final reads of `total` at n1, n2 and n3.
    fn finish(h: &mut H, total: i64) {
        for (p, node) in [(10, "n1"), (11, "n2"), (12, "n3")] {
            h.call(p, OpType::Ok, "read", Value::Nil, Value::Int(total), node);
        }
    }

    #[test]
    fn counter_accepts_stale_intermediate_reads_and_reads_counting_indeterminate_adds() {
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "add", delta(3), delta(3), "n1");
        // A replica that has not heard of the add yet.
        h.call(1, OpType::Ok, "read", Value::Nil, Value::Int(0), "n2");
        // An indeterminate add that did happen, seen by the next read.
        h.call(2, OpType::Info, "add", delta(4), Value::Nil, "n1");
        h.call(1, OpType::Ok, "read", Value::Nil, Value::Int(7), "n1");
        // A read concurrent with an add (invoked before the read completed) may count it.
        h.op(3, OpType::Invoke, "add", delta(5), None);
        h.op(1, OpType::Invoke, "read", Value::Nil, None);
        h.op(1, OpType::Ok, "read", Value::Int(12), Some("n1"));
        h.op(3, OpType::Ok, "add", delta(5), Some("n1"));
        // An add not answered yet may have happened, and one that times out too.
        h.op(4, OpType::Invoke, "add", delta(1), None);
        h.call(1, OpType::Ok, "read", Value::Nil, Value::Int(13), "n3");
        h.op(4, OpType::Info, "add", Value::Nil, Some("n2"));
        finish(&mut h, 13);
        let v = counter(&h.build());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.details["intermediate_reads"], json!(4), "{v:?}");
        assert_eq!(v.details["out_of_bounds_reads"], json!([]), "{v:?}");
        assert!(
            v.summary.contains("all 4 earlier reads within bounds"),
            "{v:?}"
        );
    }

    #[test]
    fn counter_rejects_an_intermediate_read_above_the_adds_invoked_so_far() {
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "add", delta(3), delta(3), "n1");
        // 5 before the +2 is invoked: no replica can have held it yet.
        h.call(1, OpType::Ok, "read", Value::Nil, Value::Int(5), "n2");
        h.call(0, OpType::Ok, "add", delta(2), delta(2), "n1");
        // A failed add certainly did not happen: counting it is as wrong.
        h.call(2, OpType::Fail, "add", delta(100), Value::Nil, "n3");
        h.call(1, OpType::Ok, "read", Value::Nil, Value::Int(105), "n3");
        finish(&mut h, 5);
        let v = counter(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert_eq!(
            v.details["out_of_bounds_reads"],
            json!([
                {"index": 3, "invoke_index": 2, "process": 1, "node": "n2", "value": 5,
                 "lower_bound": 0, "upper_bound": 3},
                {"index": 9, "invoke_index": 8, "process": 1, "node": "n3", "value": 105,
                 "lower_bound": 0, "upper_bound": 5},
            ]),
            "{v:?}"
        );
        // The final reads are right; the verdict says so and names the earlier ones.
        assert!(
            v.summary.starts_with("the final read at every node is 5")
                && v.summary.contains("2 of 2 earlier reads outside"),
            "{v:?}"
        );
        assert!(
            v.explanation[0].starts_with("op 3 (process 1) read 5 at n2, outside [0, 3]"),
            "{v:?}"
        );
    }

    #[test]
    fn counter_rejects_a_negative_g_counter_read_even_without_final_reads() {
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "add", delta(1), delta(1), "n1");
        h.call(1, OpType::Ok, "read", Value::Nil, Value::Int(-1), "n2");
        h.call(0, OpType::Ok, "add", delta(1), delta(1), "n1");
        let v = counter(&h.build());
        // No read after the last add, yet the one read is proven wrong.
        assert_eq!(v.valid, Validity::False, "{v:?}");
        let bad = &v.details["out_of_bounds_reads"][0];
        assert_eq!(
            (&bad["value"], &bad["lower_bound"], &bad["upper_bound"]),
            (&json!(-1), &json!(0), &json!(1)),
            "{v:?}"
        );
        assert!(v.summary.contains("final value is unknown"), "{v:?}");
    }

    #[test]
    fn counter_rejects_a_pn_counter_read_below_the_negative_deltas() {
        let mut h = H(Vec::new());
        h.call(0, OpType::Ok, "add", delta(5), delta(5), "n1");
        h.call(1, OpType::Info, "add", delta(-2), Value::Nil, "n2");
        // -2 is possible (a replica that saw only the decrement); -3 is not.
        h.call(2, OpType::Ok, "read", Value::Nil, Value::Int(-2), "n2");
        h.call(2, OpType::Ok, "read", Value::Nil, Value::Int(-3), "n3");
        h.call(0, OpType::Ok, "add", delta(-4), delta(-4), "n1");
        finish(&mut h, -1);
        let v = counter(&h.build());
        assert_eq!(v.valid, Validity::False, "{v:?}");
        let bad = v.details["out_of_bounds_reads"].as_array().unwrap();
        assert_eq!(bad.len(), 1, "{v:?}");
        assert_eq!(
            (
                &bad[0]["index"],
                &bad[0]["value"],
                &bad[0]["lower_bound"],
                &bad[0]["upper_bound"]
            ),
            (&json!(7), &json!(-3), &json!(-2), &json!(5)),
            "{v:?}"
        );
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

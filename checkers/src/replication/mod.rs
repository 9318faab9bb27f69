//! Checkers for replicated stores that keep concurrent writes apart (siblings) or merge them
//! (sets), as the multi-leader and leaderless designs of DDIA ch. 5 do:
//!
//! - [`lost_writes`] (`lost-writes`): an acknowledged write must survive in the final reads of
//!   its key unless a write that had seen it superseded it; siblings count as surviving. A
//!   lost write that was newer than a survivor is called out: the signature of
//!   last-write-wins under clock skew.
//! - [`convergence`] (`convergence`): after the last write and the last fault, every node's
//!   final read of a key returns the same values.
//! - [`sibling_counts`] (`siblings`): how many values register reads returned; invalid only
//!   beyond a configured maximum.
//! - [`set_add_wins`] (`set-add-wins`): the set workload's final sets agree across nodes,
//!   keep every acknowledged add that no later removal could have seen, and hold nothing that
//!   was never added.
//! - [`staleness`] (`staleness`): for each read, how many acknowledged writes it missed and for
//!   how long the oldest of them had been acknowledged; invalid when any read was stale.
//!
//! # The history these checkers read
//! Time is the order of the history's lines; a call is the interval from its `invoke` to its
//! completion. Register reads return `nil` (no value), an integer (one value) or a list of
//! integers (several siblings, each value once); writes carry an integer. Per-node final reads
//! are `read` or `local-read` calls whose `node` names the node read. The set workload calls
//! `set-add` and `set-remove` with an integer element and `set-read`, which returns the list of
//! elements. Clients pass a context back as `RefnodeClient` does: a process's write supersedes
//! exactly the values of its last read of the key plus its own writes of the key since
//! (a process that never read the key writes blind: concurrent with everything).
//!
//! ```
//! use checkers::replication::lost_writes;
//! use checkers::Validity;
//! use histories::{History, Key, Op, OpType, Process, F, Value};
//!
//! let op = |index: u64, process: u64, kind: OpType, f: F, value: Value| Op {
//!     index, time_ns: index * 1_000_000, process: Process::Client(process), kind, f,
//!     key: Some(Key::Int(1)), value, node: None, error: None,
//! };
//! // Two blind writes, then a final read that kept only one of them.
//! let history = History::from_ops(vec![
//!     op(0, 0, OpType::Invoke, F::Write, Value::Int(1)),
//!     op(1, 1, OpType::Invoke, F::Write, Value::Int(2)),
//!     op(2, 0, OpType::Ok, F::Write, Value::Int(1)),
//!     op(3, 1, OpType::Ok, F::Write, Value::Int(2)),
//!     op(4, 2, OpType::Invoke, F::Read, Value::Nil),
//!     op(5, 2, OpType::Ok, F::Read, Value::Int(2)),
//! ]).unwrap();
//! let verdict = lost_writes(&history);
//! assert_eq!(verdict.valid, Validity::False);
//! assert!(verdict.summary.starts_with("1 acknowledged write lost"));
//! ```

mod convergence;
mod lost_writes;
mod sets;
mod siblings;
mod staleness;

use std::collections::BTreeMap;

use histories::{F, History, Key, Op, OpType, Value};

pub use convergence::convergence;
pub use lost_writes::lost_writes;
pub use sets::set_add_wins;
pub use siblings::{SiblingOptions, sibling_counts};
pub use staleness::staleness;

/// Explanation lines per verdict; details hold everything.
pub(crate) const MAX_EXPLAINED: usize = 20;

/// One client call: its invocation and, if it completed, its completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// Positions in the history.
    pub(crate) invoke: usize,
    pub(crate) complete: Option<usize>,
    pub(crate) op: &'a Op,
    pub(crate) done: Option<&'a Op>,
}

impl<'a> Call<'a> {
    pub(crate) fn kind(&self) -> Option<OpType> {
        self.done.map(|d| d.kind)
    }

    pub(crate) fn is_ok(&self) -> bool {
        self.kind() == Some(OpType::Ok)
    }

    /// It may have taken effect: ok, info, or never completed.
    pub(crate) fn may_have_happened(&self) -> bool {
        self.kind() != Some(OpType::Fail)
    }

    /// The position after which it certainly had no further effect (its completion), or
    /// the end of time for calls that may still land.
    fn end(&self) -> usize {
        match self.done {
            Some(d) if d.kind != OpType::Info => self.complete.unwrap_or(usize::MAX),
            _ => usize::MAX,
        }
    }

    pub(crate) fn last_line(&self) -> usize {
        self.complete.unwrap_or(self.invoke)
    }

    pub(crate) fn f(&self) -> &'a F {
        &self.op.f
    }

    fn is(&self, name: &str) -> bool {
        self.op.f.as_str() == name
    }

    /// The result of an ok call, else the argument.
    pub(crate) fn value(&self) -> &'a Value {
        match self.done {
            Some(d) if d.kind == OpType::Ok => &d.value,
            _ => &self.op.value,
        }
    }

    fn node(&self) -> Option<&'a str> {
        self.done
            .and_then(|d| d.node.as_deref())
            .or(self.op.node.as_deref())
    }

    pub(crate) fn describe(&self) -> String {
        let outcome = match self.kind() {
            Some(k) => k.as_str(),
            None => "pending",
        };
        let node = self.node().map_or(String::new(), |n| format!(" at {n}"));
        format!(
            "p{} {} {} ({outcome}{node}, op {})",
            self.op.process,
            self.op.f,
            self.value(),
            self.op.index
        )
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "process": self.op.process.to_string(),
            "f": self.op.f.as_str(),
            "value": self.value().to_string(),
            "type": self.kind().map_or("pending", |k| k.as_str()),
            "node": self.node(),
            "invoke_index": self.op.index,
            "complete_index": self.done.map(|d| d.index),
        })
    }
}

/// Client calls grouped by key, in invocation order; calls without a key are skipped.
pub(crate) fn calls_by_key(history: &History) -> BTreeMap<Key, Vec<Call<'_>>> {
    let ops = history.ops();
    let mut out: BTreeMap<Key, Vec<Call<'_>>> = BTreeMap::new();
    for (invoke, complete) in history.client_calls() {
        let op = &ops[invoke];
        let Some(key) = op.key.clone() else {
            continue;
        };
        out.entry(key).or_default().push(Call {
            invoke,
            complete,
            op,
            done: complete.map(|c| &ops[c]),
        });
    }
    out
}

/// The position of the last nemesis line, if any.
pub(crate) fn last_fault(history: &History) -> Option<usize> {
    history.ops().iter().rposition(|op| !op.is_client())
}

/// The values a register read returned: `nil` none, an integer one, a list several.
fn register_values(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Nil => Some(Vec::new()),
        Value::Int(x) => Some(vec![*x]),
        Value::List(items) => items.iter().map(Value::as_int).collect(),
        _ => None,
    }
}

pub(crate) fn is_register_read(c: &Call<'_>) -> bool {
    *c.f() == F::Read || c.is("local-read")
}

pub(crate) fn is_register_write(c: &Call<'_>) -> bool {
    *c.f() == F::Write
}

/// Calls that change a key other than by `write` (whose effect these checkers cannot
/// attribute): a key with any of them is skipped by the register checkers.
fn is_other_change(c: &Call<'_>) -> bool {
    matches!(c.f(), F::Cas | F::Add | F::Append | F::Put | F::Txn) || c.is("exec")
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
pub(crate) mod test_history {
    //! Hand-made histories: each call is invoked and completed where the test says.

    use histories::{F, History, Key, Op, OpType, Process, Value};

    #[derive(Default)]
    pub struct H {
        ops: Vec<Op>,
    }

    impl H {
        pub fn new() -> H {
            H::default()
        }

        fn push(
            &mut self,
            process: Option<u64>,
            kind: OpType,
            f: &str,
            key: i64,
            value: Value,
            node: Option<&str>,
        ) {
            let index = self.ops.len() as u64;
            self.ops.push(Op {
                index,
                time_ns: index * 10_000_000,
                process: process.map_or(Process::Nemesis, Process::Client),
                kind,
                f: F::parse(f),
                key: process.map(|_| Key::Int(key)),
                value,
                node: node.map(str::to_string),
                error: None,
            });
        }

        pub fn invoke(&mut self, p: u64, f: &str, key: i64, value: Value) -> &mut H {
            self.push(Some(p), OpType::Invoke, f, key, value, None);
            self
        }

        pub fn complete(
            &mut self,
            p: u64,
            kind: OpType,
            f: &str,
            key: i64,
            value: Value,
        ) -> &mut H {
            self.push(Some(p), kind, f, key, value, None);
            self
        }

        /// A whole call, invoked and completed at once.
        pub fn call(&mut self, p: u64, kind: OpType, f: &str, key: i64, value: Value) -> &mut H {
            let arg = if f == "read" || f == "local-read" || f == "set-read" {
                Value::Nil
            } else {
                value.clone()
            };
            self.invoke(p, f, key, arg).complete(p, kind, f, key, value)
        }

        pub fn write(&mut self, p: u64, key: i64, v: i64) -> &mut H {
            self.call(p, OpType::Ok, "write", key, Value::Int(v))
        }

        pub fn read(&mut self, p: u64, key: i64, values: &[i64]) -> &mut H {
            self.call(p, OpType::Ok, "read", key, list(values))
        }

        /// A read of `node`'s replica.
        pub fn read_at(&mut self, p: u64, node: &str, f: &str, key: i64, values: &[i64]) -> &mut H {
            self.push(Some(p), OpType::Invoke, f, key, Value::Nil, Some(node));
            self.push(Some(p), OpType::Ok, f, key, list(values), Some(node));
            self
        }

        pub fn nemesis(&mut self, what: &str) -> &mut H {
            self.push(None, OpType::Info, what, 0, Value::Nil, None);
            self
        }

        pub fn build(&self) -> History {
            History::from_ops(self.ops.clone()).unwrap()
        }
    }

    /// A register read's value: nil, one integer, or the list of siblings.
    pub fn list(values: &[i64]) -> Value {
        match values {
            [] => Value::Nil,
            [v] => Value::Int(*v),
            many => Value::List(many.iter().map(|v| Value::Int(*v)).collect()),
        }
    }

    pub fn set(values: &[i64]) -> Value {
        Value::List(values.iter().map(|v| Value::Int(*v)).collect())
    }
}

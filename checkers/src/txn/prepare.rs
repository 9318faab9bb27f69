//! From a history to a table of transactions: what each one did, how it ended, and when.

use histories::{F, History, MicroOp, OpType, Process, Value};
use serde_json::json;

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Committed; its reads are what it observed.
    Ok,
    /// Indeterminate (an `info` completion, or none at all): it may have committed; its writes
    /// count only when somebody observes them, and its reads are unknown.
    Info,
    /// Did not commit.
    Fail,
}

/// One transaction: a client `txn` call.
#[derive(Debug, Clone, Copy)]
pub struct Txn<'h> {
    /// Position of the invocation in the history.
    pub invoke: usize,
    /// Position of the completion, if there is one.
    pub complete: Option<usize>,
    pub status: Status,
    pub process: u64,
    /// The micro-ops: those of the completion when it carries them, else of the invocation.
    pub mops: &'h [MicroOp],
}

impl Txn<'_> {
    /// The position people look for: the completion's, or the invocation's when there is none.
    pub fn position(&self) -> usize {
        self.complete.unwrap_or(self.invoke)
    }
}

/// The transactions of `history` in invocation order, or why the history cannot be checked.
/// Micro-op kinds are checked by the workload analysers, which walk the micro-ops anyway.
pub fn collect<'h>(history: &'h History) -> Result<Vec<Txn<'h>>, String> {
    let ops = history.ops();
    let mut txns = Vec::new();
    for (inv, comp) in history.client_calls() {
        let invoke_op = &ops[inv];
        if invoke_op.f != F::Txn {
            return Err(format!(
                "expected only txn operations, found {} by process {} at index {}",
                invoke_op.f, invoke_op.process, invoke_op.index
            ));
        }
        let Process::Client(process) = invoke_op.process else {
            continue;
        };
        let status = match comp.map(|c| ops[c].kind) {
            Some(OpType::Ok) => Status::Ok,
            Some(OpType::Fail) => Status::Fail,
            _ => Status::Info,
        };
        let mops = match comp.and_then(|c| ops[c].txn()) {
            Some(m) if status != Status::Info || invoke_op.txn().is_none() => m,
            _ => invoke_op.txn().unwrap_or(&[]),
        };
        if status == Status::Ok && comp.and_then(|c| ops[c].txn()).is_none() {
            return Err(format!(
                "the ok completion at index {} carries no micro-ops; expected [[f k v] ...]",
                ops[comp.unwrap_or(inv)].index
            ));
        }
        txns.push(Txn {
            invoke: inv,
            complete: comp,
            status,
            process,
            mops,
        });
    }
    if txns.len() >= (u32::MAX / 2) as usize {
        return Err(format!(
            "{} transactions are more than this checker numbers",
            txns.len()
        ));
    }
    Ok(txns)
}

/// The transaction as people see it in results: Elle's op fields.
pub fn txn_json(history: &History, t: &Txn<'_>) -> serde_json::Value {
    let op = &history.ops()[t.position()];
    json!({
        "index": op.index,
        "process": t.process,
        "type": match t.status { Status::Ok => "ok", Status::Info => "info", Status::Fail => "fail" },
        "value": Value::Txn(t.mops.to_vec()),
    })
}

/// `index 12, p3: [[append 4 3] [r 5 [1]]]`.
pub fn txn_text(history: &History, t: &Txn<'_>) -> String {
    let op = &history.ops()[t.position()];
    let status = match t.status {
        Status::Ok => "",
        Status::Info => " (info: may or may not have committed)",
        Status::Fail => " (failed)",
    };
    format!(
        "index {}, p{}{}: {}",
        op.index,
        t.process,
        status,
        Value::Txn(t.mops.to_vec())
    )
}

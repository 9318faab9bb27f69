//! Linearizability: is there a single order of the calls, each taking effect at one instant
//! between its invocation and its completion, that a sequential object (the model) could have
//! produced?
//!
//! Time is the order of lines in the history: a call is the interval from its `invoke` line to
//! its completion line, and two calls overlap when neither completed before the other was
//! invoked. Completions decide how a call takes part:
//! - `ok`: it took effect, with the value it returned;
//! - `fail`: it did not take effect and is left out (but see [`ModelKind::Register`] for `cas`);
//! - `info`, or no completion: it may have taken effect at any point after its invocation, or
//!   never. Reads that nobody saw constrain nothing and are left out.
//!
//! Calls on different keys are independent objects: the history is split into partitions of
//! calls that share keys, which are searched separately (linearizability is local) and in
//! parallel (one scoped thread per core, taking partitions biggest first). Nemesis lines are
//! ignored.
//!
//! The search is Wing & Gong's, made "just in time" as in Lowe's *Testing for linearizability*,
//! with a memo of explored configurations and prunings that keep it exact (see `search.rs`).
//! A search out of budget (cancel flag, `max_states`, memory) answers `unknown`, saying why and
//! how far it got.
//!
//! # The verdict
//! `summary` names the first failing partition's culprit: the first call, in return order,
//! that no linearization of the calls before it can accommodate. `explanation` gives, per
//! failing partition, the culprit, the longest linearizable prefix found and the state it
//! leaves, and the calls concurrent with the culprit. `details` holds the same as JSON:
//! `partitions: [{key, culprit, concurrent: [...], longest_prefix: [...], longest_prefix_len,
//! longest_prefix_omitted, state_after_prefix}]`, `partitions_failed`, `unknown_partitions`,
//! and counts (`ops`, `skipped_ops`, `partitions_checked`, `keys`, `states`, `steps`, `model`).
//! The culprit and each concurrent call is `{index, process, f, value, type:
//! ok|fail|info|pending, invoke_index, complete_index, invoke_time_ns, complete_time_ns, text}`
//! (indices are `Op::index`es; `complete_*` are null for a call that never completed). The
//! longest prefix, which can be long, is a table: rows of the columns named in
//! `longest_prefix_fields` (the same fields without the duplicate `invoke_index`).
//!
//! ```
//! use checkers::linearizable::{check, LinOptions, ModelKind};
//! use checkers::Validity;
//! use histories::{History, Op, OpType, Process, F, Value};
//!
//! let op = |index: u64, process: u64, kind: OpType, f: F, value: Value| Op {
//!     index, time_ns: index, process: Process::Client(process), kind, f, key: None, value,
//!     node: None, error: None,
//! };
//! // p0 writes 1; p1 then reads 2, a value nobody wrote.
//! let history = History::from_ops(vec![
//!     op(0, 0, OpType::Invoke, F::Write, Value::Int(1)),
//!     op(1, 0, OpType::Ok, F::Write, Value::Int(1)),
//!     op(2, 1, OpType::Invoke, F::Read, Value::Nil),
//!     op(3, 1, OpType::Ok, F::Read, Value::Int(2)),
//! ]).unwrap();
//! let verdict = check(&history, ModelKind::Register, &LinOptions::default());
//! assert_eq!(verdict.valid, Validity::False);
//! assert_eq!(verdict.summary, "not linearizable: p1 read -> 2 cannot be linearized");
//! ```

mod memo;
mod model;
mod models;
mod prepare;
mod report;
mod search;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use histories::History;

use crate::verdict::Verdict;

pub use model::{Call, Model};
pub use models::{
    Elem, KvInput, KvModel, KvOutput, MultiRegisterModel, MutexInput, MutexModel, QueueInput,
    QueueModel, QueueOutput, RegInput, RegOutput, RegisterModel, SetInput, SetModel, SetOutput,
    TxnMop, Unpartitioned,
};

/// The memory budget when [`LinOptions::memory_limit_bytes`] is `None`.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 2 << 30;

/// The sequential objects the checker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// `register`: an integer register, absent (`nil`) at first, with `read`, `write` and
    /// `cas [from to]`, following Porcupine's etcd convention: a `:fail :cas` means the compare
    /// failed, so it took effect as a read that saw something other than `from`. The Porcupine
    /// etcd corpus is checked with this model.
    Register,
    /// `cas-register`: the same register with the Jepsen/Knossos convention: every `:fail`,
    /// `cas` included, did not happen and is left out. Use it when a failed cas may mean
    /// "rejected before it ran".
    CasRegister,
    /// `multi-register`: integer registers by key, changed by `txn` calls of `[:r k v]` and
    /// `[:w k v]` micro-ops, each transaction atomic (Knossos' multi-register).
    MultiRegister,
    /// `kv`: a string per key, empty at first: `get`, `put`, `append` (Porcupine's kv).
    KeyValue,
    /// `set`: `add v`, and `read` returning every element.
    Set,
    /// `queue`: a FIFO queue with `enqueue v` and `dequeue` (nil when empty).
    Queue,
    /// `mutex`: `acquire` and `release` of one lock.
    Mutex,
}

impl ModelKind {
    pub const ALL: [ModelKind; 7] = [
        ModelKind::Register,
        ModelKind::CasRegister,
        ModelKind::MultiRegister,
        ModelKind::KeyValue,
        ModelKind::Set,
        ModelKind::Queue,
        ModelKind::Mutex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::MultiRegister => "multi-register",
            ModelKind::KeyValue => "kv",
            ModelKind::Set => "set",
            ModelKind::Queue => "queue",
            ModelKind::Mutex => "mutex",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model name that is not one of [`ModelKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownModel(pub String);

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = ModelKind::ALL.iter().map(|m| m.as_str()).collect();
        write!(
            f,
            "unknown model {:?}; expected one of {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownModel {}

impl FromStr for ModelKind {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<ModelKind, UnknownModel> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownModel(s.to_string()))
    }
}

/// Budget and cancellation. A search that runs out says `unknown`, why, and how far it got.
#[derive(Debug, Clone, Default)]
pub struct LinOptions {
    /// Set from outside to stop the search; it is looked at every few thousand steps.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Most configurations remembered, all partitions together (each costs a few tens of
    /// bytes).
    pub max_states: Option<u64>,
    /// Most bytes the searches running at once may hold (an estimate of their memos and
    /// tables); `None` means [`DEFAULT_MEMORY_LIMIT_BYTES`].
    pub memory_limit_bytes: Option<u64>,
}

/// Checks `history` against one of the built-in models.
pub fn check(history: &History, model: ModelKind, opts: &LinOptions) -> Verdict {
    let mut verdict = match model {
        ModelKind::Register => check_with(
            history,
            &RegisterModel {
                fail_cas_observed: true,
            },
            opts,
        ),
        ModelKind::CasRegister => check_with(
            history,
            &RegisterModel {
                fail_cas_observed: false,
            },
            opts,
        ),
        ModelKind::MultiRegister => check_with(history, &MultiRegisterModel, opts),
        ModelKind::KeyValue => check_with(history, &KvModel, opts),
        ModelKind::Set => check_with(history, &SetModel, opts),
        ModelKind::Queue => check_with(history, &QueueModel, opts),
        ModelKind::Mutex => check_with(history, &MutexModel, opts),
    };
    if let serde_json::Value::Object(map) = &mut verdict.details {
        map.insert("model".into(), model.as_str().into());
    }
    verdict
}

/// Checks `history` against one of the built-in models as a single object, without splitting
/// it by key: same verdict, usually far more work. For measuring what the split buys.
pub fn check_unpartitioned(history: &History, model: ModelKind, opts: &LinOptions) -> Verdict {
    let mut verdict = match model {
        ModelKind::Register => check_with(
            history,
            &Unpartitioned(RegisterModel {
                fail_cas_observed: true,
            }),
            opts,
        ),
        ModelKind::CasRegister => check_with(
            history,
            &Unpartitioned(RegisterModel {
                fail_cas_observed: false,
            }),
            opts,
        ),
        ModelKind::KeyValue => check_with(history, &Unpartitioned(KvModel), opts),
        // Transactions span keys and the other objects have no keys: their own partition
        // function already leaves them whole where it must.
        other => return check(history, other, opts),
    };
    if let serde_json::Value::Object(map) = &mut verdict.details {
        map.insert("model".into(), model.as_str().into());
        map.insert("partitioned".into(), false.into());
    }
    verdict
}

/// Checks `history` against any model.
pub fn check_with<M: Model>(history: &History, model: &M, opts: &LinOptions) -> Verdict {
    let prepared = match prepare::prepare(history, model) {
        Ok(p) => p,
        Err(e) => return report::unreadable(history, &e),
    };
    let shared = search::Shared {
        cancel: opts.cancel.as_deref(),
        max_states: opts.max_states,
        memory_limit_bytes: opts
            .memory_limit_bytes
            .unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES),
        states: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    let results = run_parts(model, &prepared, &shared);
    report::verdict(history, model, &prepared, &results)
}

/// The search that decides.
const FULL_SEARCH: search::SearchConfig = search::SearchConfig {
    lookahead: true,
    max_steps: u64::MAX,
};

/// Steps the search for a better counterexample may take: twice the deciding search's, within
/// these bounds.
const EXPLAIN_STEPS_MIN: u64 = 50_000;
const EXPLAIN_STEPS_MAX: u64 = 2_000_000;

/// Replaces the counterexample of a failed search with that of a search without lookahead,
/// when one finishes within a modest budget: that search gets as far as any linearization can,
/// so its culprit is the first call in return order that no linearization of the calls before
/// it can accommodate, and its prefix is a longest one. It only needs the calls invoked before
/// the first search's culprit returned, since it gets stuck no later than that.
fn explain<M: Model>(
    model: &M,
    prepared: &prepare::Prepared<M>,
    members: &[usize],
    shared: &search::Shared<'_>,
    result: search::SearchResult,
) -> search::SearchResult {
    let search::Outcome::NotLinearizable = result.outcome else {
        return result;
    };
    let Some(end) = result.culprit.and_then(|c| prepared.calls[c].completion) else {
        return result;
    };
    let before: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&c| prepared.calls[c].invoke < end)
        .collect();
    let config = search::SearchConfig {
        lookahead: false,
        max_steps: result
            .steps
            .saturating_mul(2)
            .clamp(EXPLAIN_STEPS_MIN, EXPLAIN_STEPS_MAX),
    };
    let second = search::search(model, &prepared.calls, &before, shared, config);
    match second.outcome {
        search::Outcome::NotLinearizable if second.culprit.is_some() => search::SearchResult {
            order: second.order,
            culprit: second.culprit,
            ..result
        },
        _ => result,
    }
}

/// Fewer calls than this (over all partitions) are searched on the calling thread.
const PARALLEL_MIN_CALLS: usize = 1000;

/// What happened to one partition.
#[derive(Debug)]
pub(crate) enum PartOutcome {
    /// Nothing to search: no call in it is required.
    Trivial,
    Searched(search::SearchResult),
    /// The search panicked: a bug, reported as `unknown` rather than a crash.
    Crashed(String),
}

/// Searches every partition, on as many threads as there are cores, biggest partitions first.
fn run_parts<M: Model>(
    model: &M,
    prepared: &prepare::Prepared<M>,
    shared: &search::Shared<'_>,
) -> Vec<PartOutcome> {
    let mut queue: Vec<usize> = (0..prepared.parts.len())
        .filter(|&p| prepared.parts[p].required > 0)
        .collect();
    queue.sort_by_key(|&p| std::cmp::Reverse(prepared.parts[p].members.len()));
    let solve = |p: usize| -> PartOutcome {
        let members = &prepared.parts[p].members;
        match catch_unwind(AssertUnwindSafe(|| {
            let result = search::search(model, &prepared.calls, members, shared, FULL_SEARCH);
            explain(model, prepared, members, shared, result)
        })) {
            Ok(r) => PartOutcome::Searched(r),
            Err(panic) => PartOutcome::Crashed(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string()),
            ),
        }
    };
    // Starting threads costs tens of microseconds each, more than checking a small history:
    // stay on this thread unless there is enough work to share.
    let calls_to_search: usize = queue.iter().map(|&p| prepared.parts[p].members.len()).sum();
    let threads = match queue.len() {
        0 | 1 => 1,
        _ if calls_to_search < PARALLEL_MIN_CALLS => 1,
        n => std::thread::available_parallelism()
            .map_or(1, |c| c.get())
            .min(n),
    };
    let mut done: Vec<(usize, PartOutcome)> = Vec::with_capacity(queue.len());
    if threads <= 1 {
        done.extend(queue.iter().map(|&p| (p, solve(p))));
    } else {
        let cursor = AtomicUsize::new(0);
        let work = || {
            let mut mine = Vec::new();
            loop {
                let i = cursor.fetch_add(1, Ordering::Relaxed);
                let Some(&p) = queue.get(i) else { break };
                mine.push((p, solve(p)));
            }
            mine
        };
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            done.extend(work());
            for h in helpers {
                // `solve` catches panics, so a helper can only fail to join if that failed.
                if let Ok(mine) = h.join() {
                    done.extend(mine);
                }
            }
        });
    }
    let mut out: Vec<PartOutcome> = (0..prepared.parts.len())
        .map(|_| PartOutcome::Trivial)
        .collect();
    let mut seen = vec![false; prepared.parts.len()];
    for (p, r) in done {
        seen[p] = true;
        out[p] = r;
    }
    for &p in &queue {
        if !seen[p] {
            out[p] = PartOutcome::Crashed("a worker thread died".to_string());
        }
    }
    out
}

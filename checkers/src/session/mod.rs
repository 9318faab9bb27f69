//! Session guarantees over versioned registers: the guarantees DDIA ch. 5 ("Problems with
//! Replication Lag") asks of a replicated store whose clients may read from lagging replicas,
//! after Terry et al., "Session Guarantees for Weakly Consistent Replicated Data" (1994). A
//! *session* is a client process.
//!
//! - [`read_your_writes`] (`read-your-writes`): a process's read sees its own acknowledged
//!   writes of the key.
//! - [`monotonic_reads`] (`monotonic-reads`): a process's reads of a key never go back to an
//!   older version.
//! - [`monotonic_writes`] (`monotonic-writes`): whoever sees a process's later write (on one
//!   key) also sees its earlier writes (on other keys).
//! - [`writes_follow_reads`] (`writes-follow-reads`): whoever sees a process's write also sees
//!   what that process had read before writing.
//! - [`consistent_prefix`] (`consistent-prefix`): whoever sees a write also sees every write
//!   that completed before it was invoked, whichever process made it.
//! - [`versioned_lost_writes`] (`lost-writes`): the recovery read of each key, after the last
//!   write and the last fault, is no older than any acknowledged write. It is named apart from
//!   [`crate::replication::lost_writes`], which reads sibling histories under a different
//!   contract; both report under the same verdict name because a run uses one or the other.
//!
//! [`check_all`] runs the six and keys their verdicts by those names.
//!
//! # The history these checkers read
//! The `session` workload's *versioned registers*: `write` calls carry an integer, `read`
//! calls return `nil` or an integer, on integer keys. Per key the written values are unique
//! and a key's **version order is the numeric order of its values**, `nil` being older than
//! every value: the workload has one writer per key at a time, writing increasing values, and
//! abandons a key after an indeterminate write. That contract is what lets one read be
//! compared with another without building a version graph.
//!
//! Time is the order of the history's lines; B is *after* A when B's invocation line follows
//! A's completion line. Only `ok` reads and `ok` writes count as observed or acknowledged: an
//! indeterminate (`info`) write may or may not have happened, so nobody is required to see
//! it (but a read that returned its value shows that it did, which [`consistent_prefix`]
//! uses). `local-read` calls (per-node reads the harness makes for convergence) and reads that
//! return anything but `nil` or one integer are ignored; a key with any call other than
//! `read`, `write` and `local-read` (`cas`, `exec`, ...) is skipped, since its versions are
//! no longer the numeric order of written values. Nemesis lines are ignored except by
//! [`versioned_lost_writes`].
//!
//! # Cost
//! Every checker is one pass over each process's calls, with per-key indexes built before
//! it: binary searches over writes sorted by completion (or by version) replace scans over
//! pairs of writes. [`check_all`] checks a million-operation history in a second or two on
//! one core (release build). Nothing recurses, and every buffer is bounded by the history's
//! size (explanations and listed violations by constants).
//!
//! ```
//! use checkers::session::read_your_writes;
//! use checkers::Validity;
//! use histories::{History, Key, Op, OpType, Process, F, Value};
//!
//! let op = |index: u64, process: u64, kind: OpType, f: F, value: Value| Op {
//!     index, time_ns: index * 1_000_000, process: Process::Client(process), kind, f,
//!     key: Some(Key::Int(1)), value, node: None, error: None,
//! };
//! // Process 0 writes 1, then reads the key from a replica that has not seen it yet.
//! let history = History::from_ops(vec![
//!     op(0, 0, OpType::Invoke, F::Write, Value::Int(1)),
//!     op(1, 0, OpType::Ok, F::Write, Value::Int(1)),
//!     op(2, 0, OpType::Invoke, F::Read, Value::Nil),
//!     op(3, 0, OpType::Ok, F::Read, Value::Nil),
//! ]).unwrap();
//! let verdict = read_your_writes(&history);
//! assert_eq!(verdict.valid, Validity::False);
//! assert_eq!(verdict.summary, "1 read missed the process's own acknowledged write");
//! ```

mod causal;
mod lost_writes;
mod own_session;
mod prefix;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use histories::{F, History, Key, Process, Value};

use crate::replication::{Call, MAX_EXPLAINED, calls_by_key, is_register_read, is_register_write};
use crate::verdict::{Validity, Verdict};

pub use causal::{monotonic_writes, writes_follow_reads};
pub use lost_writes::versioned_lost_writes;
pub use own_session::{monotonic_reads, read_your_writes};
pub use prefix::consistent_prefix;

/// Runs the six checkers on one preparation of the history; the verdicts are keyed by the
/// names the harness reports them under.
pub fn check_all(history: &History) -> BTreeMap<String, Verdict> {
    let prep = prepare(history);
    [
        own_session::check_read_your_writes(&prep),
        own_session::check_monotonic_reads(&prep),
        causal::check(&prep, causal::Dependency::EarlierWrites),
        causal::check(&prep, causal::Dependency::EarlierReads),
        prefix::check(&prep),
        lost_writes::check(history, &prep),
    ]
    .into_iter()
    .map(|v| (v.checker.clone(), v))
    .collect()
}

/// Violations listed in a verdict's details; the count is always exact. A history with a
/// broken replica can violate a guarantee on most of its reads, and the details of a million
/// of them help nobody.
const MAX_DETAILED: usize = 1_000;

/// A register version: `None` is nil. `Option`'s order (nil first, then by value) is the
/// version order of the contract.
type Version = Option<i64>;

/// An ok `read` or ok `write` of a judged key, as the session guarantees see it.
#[derive(Debug, Clone, Copy)]
struct Access<'a> {
    call: Call<'a>,
    /// Index into [`Prepared::keys`].
    key: usize,
    /// Index into [`Prepared::sessions`] of its process.
    session: usize,
    /// Completion line (ok calls always have one).
    complete: usize,
    /// What a read returned or a write wrote.
    version: Version,
    write: bool,
}

impl Access<'_> {
    fn describe(&self) -> String {
        self.call.describe()
    }
}

/// The history as the session checkers read it, built once for all six.
#[derive(Debug)]
struct Prepared<'a> {
    /// Keys judged, in key order.
    keys: Vec<Key>,
    /// Per judged key, every call of it (any outcome, `local-read` too), in invocation order.
    calls: Vec<Vec<Call<'a>>>,
    /// Keys with a call that is not a register read or write.
    skipped: Vec<Key>,
    /// Per process, its ok reads and ok writes of judged keys in invocation order. A process
    /// invokes only after its previous call completed, so each access is after every
    /// earlier one of its process: "after", within a session, is just "later in this list".
    sessions: Vec<(Process, Vec<Access<'a>>)>,
}

impl Prepared<'_> {
    fn key(&self, a: &Access<'_>) -> &Key {
        &self.keys[a.key]
    }

    /// `call.json()` with the key, for details.
    fn json(&self, a: &Access<'_>) -> serde_json::Value {
        let mut j = a.call.json();
        if let Some(obj) = j.as_object_mut() {
            obj.insert("key".to_string(), self.key(a).to_string().into());
        }
        j
    }

    fn skipped_json(&self) -> serde_json::Value {
        self.skipped.iter().map(|k| k.to_string()).collect()
    }
}

fn prepare(history: &History) -> Prepared<'_> {
    let mut prep = Prepared {
        keys: Vec::new(),
        calls: Vec::new(),
        skipped: Vec::new(),
        sessions: Vec::new(),
    };
    let mut sessions: BTreeMap<Process, Vec<Access<'_>>> = BTreeMap::new();
    for (key, calls) in calls_by_key(history) {
        if !calls
            .iter()
            .all(|c| is_register_read(c) || is_register_write(c))
        {
            prep.skipped.push(key);
            continue;
        }
        let index = prep.keys.len();
        for c in calls.iter().filter(|c| c.is_ok()) {
            let write = is_register_write(c);
            if !write && *c.f() != F::Read {
                continue; // local-read
            }
            let Some(version) = version_of(c.value()) else {
                continue;
            };
            if write && version.is_none() {
                continue; // a write of nil is not a version of the contract
            }
            let Some(complete) = c.complete else {
                continue;
            };
            sessions.entry(c.op.process).or_default().push(Access {
                call: *c,
                key: index,
                session: 0, // numbered below, once every process is known
                complete,
                version,
                write,
            });
        }
        prep.keys.push(key);
        prep.calls.push(calls);
    }
    for (session, (process, mut accesses)) in sessions.into_iter().enumerate() {
        accesses.sort_by_key(|a| a.call.invoke);
        for a in &mut accesses {
            a.session = session;
        }
        debug_assert!(
            accesses
                .windows(2)
                .all(|w| w[0].complete < w[1].call.invoke),
            "a well-formed history has no overlapping calls within a process"
        );
        prep.sessions.push((process, accesses));
    }
    prep
}

/// A register value as a version: `nil` or one integer; anything else (siblings, garbage) is
/// outside the contract.
fn version_of(v: &Value) -> Option<Version> {
    match v {
        Value::Nil => Some(None),
        Value::Int(x) => Some(Some(*x)),
        _ => None,
    }
}

fn show(v: Version) -> String {
    v.map_or_else(|| "nil".to_string(), |x| x.to_string())
}

/// The newest version among accesses that completed before a given line, by binary search:
/// accesses sorted by completion line, each paired with the position of the newest version
/// among it and those before it.
#[derive(Debug, Default)]
struct NewestCompleted<'a> {
    accesses: Vec<Access<'a>>,
    /// `(completion line, position in accesses of the prefix's newest version)`.
    prefix_newest: Vec<(usize, usize)>,
}

impl<'a> NewestCompleted<'a> {
    fn new(mut accesses: Vec<Access<'a>>) -> NewestCompleted<'a> {
        accesses.sort_by_key(|a| a.complete);
        let mut prefix_newest = Vec::with_capacity(accesses.len());
        let mut best = 0;
        for (i, a) in accesses.iter().enumerate() {
            // Ties keep the earliest, so the witness named is the first to make the version
            // required.
            if a.version > accesses[best].version {
                best = i;
            }
            prefix_newest.push((a.complete, best));
        }
        NewestCompleted {
            accesses,
            prefix_newest,
        }
    }

    /// The newest access that completed strictly before `line`.
    fn before(&self, line: usize) -> Option<&Access<'a>> {
        let n = self.prefix_newest.partition_point(|(c, _)| *c < line);
        let (_, best) = self.prefix_newest.get(n.checked_sub(1)?)?;
        Some(&self.accesses[*best])
    }
}

/// Among writes sorted by version, the latest-invoked one at or below a version, by binary
/// search: what a read of that version has certainly observed that was invoked last.
#[derive(Debug, Default)]
struct LatestInvoked<'a> {
    writes: Vec<Access<'a>>,
    /// `(version, position in writes of the prefix's latest invocation)`.
    prefix_latest: Vec<(Version, usize)>,
}

impl<'a> LatestInvoked<'a> {
    fn new(mut writes: Vec<Access<'a>>) -> LatestInvoked<'a> {
        writes.sort_by_key(|w| (w.version, w.call.invoke));
        let mut prefix_latest = Vec::with_capacity(writes.len());
        let mut best = 0;
        for (i, w) in writes.iter().enumerate() {
            if w.call.invoke > writes[best].call.invoke {
                best = i;
            }
            prefix_latest.push((w.version, best));
        }
        LatestInvoked {
            writes,
            prefix_latest,
        }
    }

    /// The latest-invoked write of a version `<= version` (`inclusive`) or `< version`.
    fn up_to(&self, version: Version, inclusive: bool) -> Option<&Access<'a>> {
        let n = self
            .prefix_latest
            .partition_point(|(v, _)| *v < version || (inclusive && *v == version));
        let (_, best) = self.prefix_latest.get(n.checked_sub(1)?)?;
        Some(&self.writes[*best])
    }
}

/// Violations found by one checker: every one counted, the first few explained and listed.
#[derive(Debug, Default)]
struct Findings {
    count: usize,
    explanation: Vec<String>,
    listed: Vec<serde_json::Value>,
}

impl Findings {
    /// Formats only what will be shown: a history may hold millions of violations.
    fn add(
        &mut self,
        explain: impl FnOnce() -> String,
        detail: impl FnOnce() -> serde_json::Value,
    ) {
        self.count += 1;
        if self.explanation.len() < MAX_EXPLAINED {
            self.explanation.push(explain());
        }
        if self.listed.len() < MAX_DETAILED {
            self.listed.push(detail());
        }
    }

    /// Invalid with `invalid` as summary if anything was found, else valid with `valid`.
    /// Details: `field` (the listed violations), `violation_count`, and `extra`.
    fn verdict(
        self,
        checker: &str,
        field: &str,
        invalid: String,
        valid: String,
        extra: serde_json::Value,
    ) -> Verdict {
        let (validity, summary) = if self.count > 0 {
            (Validity::False, invalid)
        } else {
            (Validity::True, valid)
        };
        let mut details = serde_json::Map::new();
        details.insert(field.to_string(), self.listed.into());
        details.insert("violation_count".to_string(), self.count.into());
        if let serde_json::Value::Object(extra) = extra {
            details.extend(extra);
        }
        Verdict {
            checker: checker.to_string(),
            valid: validity,
            summary,
            explanation: self.explanation,
            details: details.into(),
        }
    }
}

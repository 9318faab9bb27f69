//! Running checkers over a recorded history, with a time budget enforced from outside (the
//! checkers themselves read no clock).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use checkers::Verdict;
use checkers::linearizable::{LinOptions, ModelKind};
use checkers::txn::{ConsistencyModel, TxnOptions, Workload};
use histories::History;

/// A checker `splitbrain check --checker` and `splitbrain run --checkers` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckerKind {
    Linearizable,
    /// Elle-style dependency graphs over list-append transactions.
    ListAppend,
    /// Elle-style dependency graphs over read/write register transactions.
    RwRegister,
    /// Session guarantees over versioned registers (the `session` workload's contract: a
    /// key's version order is the numeric order of its values).
    ReadYourWrites,
    MonotonicReads,
    MonotonicWrites,
    WritesFollowReads,
    ConsistentPrefix,
    /// Acknowledged writes missing from the final read, versioned registers.
    LostWrites,
    /// Acknowledged writes missing from every node's final read, siblings allowed (the
    /// multi-leader and leaderless designs).
    LostWritesSiblings,
    /// Every node's final read of a key agrees.
    Convergence,
    /// Reads that missed acknowledged writes, with the lag distribution.
    Staleness,
    /// How many siblings register reads returned.
    Siblings,
    /// The add-wins set: final sets agree and keep every acknowledged add.
    SetAddWins,
    /// Maelstrom echo: every acknowledged echo came back unchanged.
    Echo,
    /// Maelstrom unique-ids: no id generated twice.
    UniqueIds,
    /// Maelstrom broadcast and g-set: every node's final read holds every acknowledged
    /// message and nothing else.
    Broadcast,
    /// Maelstrom g-counter and pn-counter: every node's final read is the same total, between
    /// the acknowledged adds' sum and what the indeterminate adds could make it.
    Counter,
}

impl CheckerKind {
    pub const ALL: [CheckerKind; 18] = [
        CheckerKind::Linearizable,
        CheckerKind::ListAppend,
        CheckerKind::RwRegister,
        CheckerKind::ReadYourWrites,
        CheckerKind::MonotonicReads,
        CheckerKind::MonotonicWrites,
        CheckerKind::WritesFollowReads,
        CheckerKind::ConsistentPrefix,
        CheckerKind::LostWrites,
        CheckerKind::LostWritesSiblings,
        CheckerKind::Convergence,
        CheckerKind::Staleness,
        CheckerKind::Siblings,
        CheckerKind::SetAddWins,
        CheckerKind::Echo,
        CheckerKind::UniqueIds,
        CheckerKind::Broadcast,
        CheckerKind::Counter,
    ];

    /// The name on the command line and in `results.json`.
    pub fn name(self) -> &'static str {
        match self {
            CheckerKind::Linearizable => "linearizable",
            CheckerKind::ListAppend => "elle-list-append",
            CheckerKind::RwRegister => "elle-rw-register",
            CheckerKind::ReadYourWrites => "read-your-writes",
            CheckerKind::MonotonicReads => "monotonic-reads",
            CheckerKind::MonotonicWrites => "monotonic-writes",
            CheckerKind::WritesFollowReads => "writes-follow-reads",
            CheckerKind::ConsistentPrefix => "consistent-prefix",
            CheckerKind::LostWrites => "lost-writes",
            CheckerKind::LostWritesSiblings => "lost-writes-siblings",
            CheckerKind::Convergence => "convergence",
            CheckerKind::Staleness => "staleness",
            CheckerKind::Siblings => "siblings",
            CheckerKind::SetAddWins => "set-add-wins",
            CheckerKind::Echo => "echo",
            CheckerKind::UniqueIds => "unique-ids",
            CheckerKind::Broadcast => "broadcast",
            CheckerKind::Counter => "counter",
        }
    }

    /// The session-guarantee checkers, as `--checker session` names them together.
    pub const SESSION: [CheckerKind; 5] = [
        CheckerKind::ReadYourWrites,
        CheckerKind::MonotonicReads,
        CheckerKind::MonotonicWrites,
        CheckerKind::WritesFollowReads,
        CheckerKind::ConsistentPrefix,
    ];
}

impl FromStr for CheckerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<CheckerKind, String> {
        match s {
            "list-append" => return Ok(CheckerKind::ListAppend),
            "rw-register" => return Ok(CheckerKind::RwRegister),
            _ => {}
        }
        CheckerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = CheckerKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown checker {s:?}; expected one of {}, list-append, rw-register or session",
                    names.join(", ")
                )
            })
    }
}

/// A comma list of checkers; `session` stands for the five session guarantees.
pub fn parse_checkers(s: &str) -> Result<Vec<CheckerKind>, String> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "session" {
            out.extend(CheckerKind::SESSION);
        } else {
            out.push(name.parse()?);
        }
    }
    if out.is_empty() {
        return Err("expected at least one checker".into());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub checkers: Vec<CheckerKind>,
    pub model: ModelKind,
    /// After this long the checker is cancelled and answers `unknown`.
    pub time_limit: Duration,
    /// Most bytes the search may hold; `None` for the checker's default.
    pub memory_limit_bytes: Option<u64>,
    /// Linearizable only: check every key as one object (same verdict, more work).
    pub no_partition: bool,
    /// Transactional checkers only: the models the history must satisfy (empty: strict
    /// serializability).
    pub consistency_models: Vec<ConsistencyModel>,
}

/// Runs the configured checkers on a blocking thread, cancelling them at the time limit (one
/// budget for all of them).
pub async fn run_checkers(history: &History, config: &CheckConfig) -> BTreeMap<String, Verdict> {
    let cancel = Arc::new(AtomicBool::new(false));
    let history = history.clone();
    let config_for_task = config.clone();
    let cancel_for_task = Arc::clone(&cancel);
    let task = tokio::task::spawn_blocking(move || {
        config_for_task
            .checkers
            .iter()
            .map(|&kind| {
                check_now(
                    &history,
                    kind,
                    &config_for_task,
                    Some(Arc::clone(&cancel_for_task)),
                )
            })
            .collect::<Vec<_>>()
    });
    let timer = {
        let cancel = Arc::clone(&cancel);
        let limit = config.time_limit;
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            cancel.store(true, Ordering::Relaxed);
        })
    };
    let verdicts = match task.await {
        Ok(v) => v,
        Err(e) => config
            .checkers
            .iter()
            .map(|k| Verdict {
                checker: k.name().into(),
                valid: checkers::Validity::Unknown,
                summary: format!("the checker crashed: {e}"),
                explanation: Vec::new(),
                details: serde_json::Value::Null,
            })
            .collect(),
    };
    timer.abort();
    verdicts
        .into_iter()
        .map(|v| (v.checker.clone(), v))
        .collect()
}

/// Runs one checker on this thread. The verdict carries the checker's name as `--checker`
/// spells it.
pub fn check_now(
    history: &History,
    kind: CheckerKind,
    config: &CheckConfig,
    cancel: Option<Arc<AtomicBool>>,
) -> Verdict {
    let lin = LinOptions {
        cancel: cancel.clone(),
        max_states: None,
        memory_limit_bytes: config.memory_limit_bytes,
    };
    let txn = |workload| TxnOptions {
        models: config.consistency_models.clone(),
        cancel: cancel.clone(),
        ..TxnOptions::new(workload)
    };
    use checkers::{replication, session};
    let mut verdict = match kind {
        CheckerKind::Linearizable if config.no_partition => {
            checkers::linearizable::check_unpartitioned(history, config.model, &lin)
        }
        CheckerKind::Linearizable => checkers::linearizable::check(history, config.model, &lin),
        CheckerKind::ListAppend => checkers::txn::check(history, &txn(Workload::ListAppend)),
        CheckerKind::RwRegister => checkers::txn::check(history, &txn(Workload::RwRegister)),
        CheckerKind::ReadYourWrites => session::read_your_writes(history),
        CheckerKind::MonotonicReads => session::monotonic_reads(history),
        CheckerKind::MonotonicWrites => session::monotonic_writes(history),
        CheckerKind::WritesFollowReads => session::writes_follow_reads(history),
        CheckerKind::ConsistentPrefix => session::consistent_prefix(history),
        CheckerKind::LostWrites => session::versioned_lost_writes(history),
        CheckerKind::LostWritesSiblings => replication::lost_writes(history),
        CheckerKind::Convergence => replication::convergence(history),
        CheckerKind::Staleness => replication::staleness(history),
        CheckerKind::Siblings => {
            replication::sibling_counts(history, &replication::SiblingOptions::default())
        }
        CheckerKind::SetAddWins => replication::set_add_wins(history),
        CheckerKind::Echo => checkers::maelstrom::echo(history),
        CheckerKind::UniqueIds => checkers::maelstrom::unique_ids(history),
        CheckerKind::Broadcast => checkers::maelstrom::broadcast(history),
        CheckerKind::Counter => checkers::maelstrom::counter(history),
    };
    verdict.checker = kind.name().to_string();
    verdict
}

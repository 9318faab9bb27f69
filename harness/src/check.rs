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

/// Which checker `splitbrain check --checker` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerKind {
    Linearizable,
    /// Elle-style dependency graphs over list-append transactions.
    ListAppend,
    /// Elle-style dependency graphs over read/write register transactions.
    RwRegister,
}

impl CheckerKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckerKind::Linearizable => "linearizable",
            CheckerKind::ListAppend => "elle-list-append",
            CheckerKind::RwRegister => "elle-rw-register",
        }
    }
}

impl FromStr for CheckerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<CheckerKind, String> {
        match s {
            "linearizable" => Ok(CheckerKind::Linearizable),
            "list-append" | "elle-list-append" => Ok(CheckerKind::ListAppend),
            "rw-register" | "elle-rw-register" => Ok(CheckerKind::RwRegister),
            other => Err(format!(
                "unknown checker {other:?}; expected linearizable, list-append or rw-register"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub checker: CheckerKind,
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

/// Runs the configured checker on a blocking thread, cancelling it at the time limit.
pub async fn run_checkers(history: &History, config: &CheckConfig) -> BTreeMap<String, Verdict> {
    let cancel = Arc::new(AtomicBool::new(false));
    let history = history.clone();
    let config_for_task = config.clone();
    let cancel_for_task = Arc::clone(&cancel);
    let task = tokio::task::spawn_blocking(move || {
        check_now(&history, &config_for_task, Some(cancel_for_task))
    });
    let timer = {
        let cancel = Arc::clone(&cancel);
        let limit = config.time_limit;
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            cancel.store(true, Ordering::Relaxed);
        })
    };
    let verdict = match task.await {
        Ok(v) => v,
        Err(e) => Verdict {
            checker: config.checker.name().into(),
            valid: checkers::Validity::Unknown,
            summary: format!("the checker crashed: {e}"),
            explanation: Vec::new(),
            details: serde_json::Value::Null,
        },
    };
    timer.abort();
    let mut out = BTreeMap::new();
    out.insert(verdict.checker.clone(), verdict);
    out
}

/// Runs the configured checker on this thread.
pub fn check_now(
    history: &History,
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
    match config.checker {
        CheckerKind::Linearizable if config.no_partition => {
            checkers::linearizable::check_unpartitioned(history, config.model, &lin)
        }
        CheckerKind::Linearizable => checkers::linearizable::check(history, config.model, &lin),
        CheckerKind::ListAppend => checkers::txn::check(history, &txn(Workload::ListAppend)),
        CheckerKind::RwRegister => checkers::txn::check(history, &txn(Workload::RwRegister)),
    }
}

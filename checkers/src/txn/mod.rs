//! Transactional consistency, Elle-style: infer a dependency graph from a history of
//! transactions, find its cycles, name them with Adya's and Elle's anomaly names, and say which
//! consistency models the history rules out.
//!
//! Two workloads (see [`Workload`]): **list-append**, where each key holds a list that
//! transactions append unique values to and read whole, so that every read reveals the order of
//! the appends before it; and **rw-register**, where each key holds a value that transactions
//! overwrite with unique values and read.
//!
//! How transactions count:
//! - `ok`: committed; its reads are what it observed;
//! - `fail`: did not commit; observing one of its writes is G1a (aborted read);
//! - `info`, or no completion: may or may not have committed; its writes count only when
//!   somebody observes them, its reads are unknown, and it never precedes anything in real time.
//!
//! The graph has write-write (ww), write-read (wr) and read-write anti-dependency (rw) edges,
//! plus process-order and real-time-order edges when a selected model needs them. Cycles are
//! searched in each strongly connected component, and for each class (G0, G1c, G-single,
//! G-nonadjacent, G2-item and their `-process` and `-realtime` variants) the shortest cycle
//! found is reported, step by step. Other anomalies need no cycle: G1a, G1b, internal,
//! future-read, lost-update, duplicate-elements, incompatible-order, dirty-update, garbage and
//! cyclic-versions.
//!
//! The verdict is invalid when an anomaly found is prohibited by one of the selected models
//! (default: strict-serializable); the details list every anomaly found, and `not` / `also-not`
//! the models they rule out, as Elle does. Some models are defined by anomalies no dependency
//! graph built from invocations and completions can show (G-SIa and G-SIb need transactions'
//! start points; G-cursor, G-monotonic, G-MSR and G-update need finer graphs): when a selected
//! model needs one, the details list it under `not-checked` and the summary says so. The
//! serializable models (G1 and G2 with their process and real-time variants) are checked in full.
//!
//! For rw-register, [`TxnOptions::sequential_keys`] and [`TxnOptions::linearizable_keys`] add
//! Elle's optional assumptions to the version-order inference (see the `rw_register` module).
//!
//! ```
//! use checkers::txn::{check, ConsistencyModel, TxnOptions, Workload};
//! use checkers::Validity;
//!
//! // T1 appends 1 to key x, completes, and only then T2 starts: T2 must see [1], but reads [].
//! let edn = "{:type :invoke, :f :txn, :value [[:append :x 1]], :process 0}\n\
//!            {:type :ok, :f :txn, :value [[:append :x 1]], :process 0}\n\
//!            {:type :invoke, :f :txn, :value [[:r :x nil]], :process 1}\n\
//!            {:type :ok, :f :txn, :value [[:r :x []]], :process 1}\n";
//! let history = histories::edn::read(edn.as_bytes(), "stale.edn").unwrap().history;
//!
//! let strict = check(&history, &TxnOptions::new(Workload::ListAppend));
//! assert_eq!(strict.valid, Validity::False);
//! assert_eq!(strict.details["anomaly-types"], serde_json::json!(["G-single-realtime"]));
//!
//! let mut opts = TxnOptions::new(Workload::ListAppend);
//! opts.models = vec![ConsistencyModel::Serializable];
//! assert_eq!(check(&history, &opts).valid, Validity::True);
//! ```

mod common;
mod cycles;
mod explain;
mod graph;
mod list_append;
mod models;
mod prepare;
mod rw_register;
pub mod synth;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use histories::History;
use serde_json::json;

use crate::verdict::{Validity, Verdict};
use common::{Cases, EdgeExplainer, PROCESS, REALTIME};
use graph::{FxHashMap, LabelledGraph};
use prepare::Status;

pub use models::{Boundary, ConsistencyModel, boundary, implied_anomalies};

/// The kind of transactions a history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// `list-append`: `[:append k v]` and `[:r k [v ...]]`.
    ListAppend,
    /// `rw-register`: `[:w k v]` and `[:r k v]`.
    RwRegister,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::ListAppend => "list-append",
            Workload::RwRegister => "rw-register",
        }
    }

    /// The checker name verdicts carry: `elle-list-append` or `elle-rw-register`.
    pub fn checker_name(self) -> &'static str {
        match self {
            Workload::ListAppend => "elle-list-append",
            Workload::RwRegister => "elle-rw-register",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .trim_start_matches(':')
            .to_ascii_lowercase()
            .as_str()
        {
            "list-append" | "append" => Ok(Workload::ListAppend),
            "rw-register" | "wr-register" | "rw" => Ok(Workload::RwRegister),
            _ => Err(format!(
                "unknown transactional workload \"{s}\"; expected list-append or rw-register"
            )),
        }
    }
}

/// Options of [`check`].
#[derive(Debug, Clone)]
pub struct TxnOptions {
    pub workload: Workload,
    /// The models the history must satisfy; only anomalies they prohibit make it invalid.
    /// Empty means strict-serializable.
    pub models: Vec<ConsistencyModel>,
    /// Set from outside to stop; the verdict is then `unknown` unless a prohibited anomaly was
    /// already found.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Most cases kept (and explained) per anomaly type; all are counted.
    pub max_cases_per_type: usize,
    /// Search steps allowed per anomaly class per strongly connected component. When a class
    /// search runs out, the component still gets one cycle from an unconstrained search.
    pub cycle_search_budget: u64,
    /// rw-register only (Elle's `:sequential-keys?`): assume each key is sequentially
    /// consistent, so every process observes a key's versions in order, and infer version order
    /// from each process's successive reads and writes. Off by default.
    pub sequential_keys: bool,
    /// rw-register only (Elle's `:linearizable-keys?`): assume each key is linearizable, and
    /// infer version order from the real-time order of the transactions that read or wrote it.
    /// Off by default.
    pub linearizable_keys: bool,
}

impl TxnOptions {
    /// Checks `workload` against strict-serializable, with default limits.
    pub fn new(workload: Workload) -> TxnOptions {
        TxnOptions {
            workload,
            models: vec![ConsistencyModel::StrictSerializable],
            cancel: None,
            max_cases_per_type: 16,
            cycle_search_budget: 2_000_000,
            sequential_keys: false,
            linearizable_keys: false,
        }
    }
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions::new(Workload::ListAppend)
    }
}

/// Checks a history of transactions; see the module documentation.
pub fn check(history: &History, opts: &TxnOptions) -> Verdict {
    let checker = opts.workload.checker_name().to_string();
    let unknown = |why: String| Verdict {
        checker: checker.clone(),
        valid: Validity::Unknown,
        summary: format!("unknown: {why}"),
        explanation: vec![],
        details: json!({"workload": opts.workload.name(), "error": why}),
    };
    let models: Vec<ConsistencyModel> = if opts.models.is_empty() {
        vec![ConsistencyModel::StrictSerializable]
    } else {
        opts.models.clone()
    };
    let txns = match prepare::collect(history) {
        Ok(t) => t,
        Err(e) => return unknown(e),
    };
    let n = txns.len();
    let mut graph = LabelledGraph::with_capacity(n, n.saturating_mul(4));
    let mut cases = Cases::new(opts.max_cases_per_type.max(1));
    let mut observed = vec![false; n];
    let explainer: Box<dyn EdgeExplainer + '_> = match opts.workload {
        Workload::ListAppend => {
            match list_append::analyze(history, &txns, &mut graph, &mut cases, &mut observed) {
                Ok(a) => Box::new(a),
                Err(e) => return unknown(e),
            }
        }
        Workload::RwRegister => {
            let sources = rw_register::VersionSources {
                sequential_keys: opts.sequential_keys,
                linearizable_keys: opts.linearizable_keys,
            };
            match rw_register::analyze(
                history,
                &txns,
                sources,
                &mut graph,
                &mut cases,
                &mut observed,
            ) {
                Ok(a) => Box::new(a),
                Err(e) => return unknown(e),
            }
        }
    };

    let prohibited = ConsistencyModel::prohibited_anomalies(&models);
    let needs = |suffix: &str| {
        cycles::cycle_anomaly_names().any(|a| a.ends_with(suffix) && prohibited.contains(a))
    };
    let (process, realtime) = (needs("-process"), needs("-realtime"));
    let in_graph =
        |t: usize| txns[t].status == Status::Ok || (txns[t].status == Status::Info && observed[t]);
    if process {
        add_process_edges(&txns, &in_graph, &mut graph);
    }
    if realtime {
        add_realtime_edges(&txns, &in_graph, &mut graph);
    }

    let cancel = opts.cancel.as_deref();
    let outcome = cycles::search(
        &graph,
        cycles::SearchConfig {
            process,
            realtime,
            budget_per_class: opts.cycle_search_budget.max(1),
        },
        cancel,
    );
    for found in &outcome.found {
        cases.add(found.anomaly, || {
            explain::cycle_case(history, &txns, explainer.as_ref(), found)
        });
    }
    let cancelled = outcome.cancelled || cancel.is_some_and(|c| c.load(Ordering::Relaxed));

    verdict(
        checker,
        opts.workload,
        &models,
        &prohibited,
        cases,
        n,
        &graph,
        &outcome,
        cancelled,
    )
}

/// Each process's committed transactions, in order, precede its next one.
fn add_process_edges(
    txns: &[prepare::Txn<'_>],
    in_graph: &dyn Fn(usize) -> bool,
    graph: &mut LabelledGraph,
) {
    let mut last: FxHashMap<u64, u32> = FxHashMap::default();
    for (t, txn) in txns.iter().enumerate() {
        if !in_graph(t) {
            continue;
        }
        if let Some(&prev) = last.get(&txn.process) {
            graph.add_edge(prev, t as u32, PROCESS);
        }
        if txn.status == Status::Ok {
            last.insert(txn.process, t as u32);
        }
    }
}

/// A committed transaction precedes every transaction invoked after it completed. Only a
/// transitive reduction is added: each invocation links from the "frontier", the completed
/// transactions not yet known to precede another completed one.
fn add_realtime_edges(
    txns: &[prepare::Txn<'_>],
    in_graph: &dyn Fn(usize) -> bool,
    graph: &mut LabelledGraph,
) {
    // (position, txn, is completion), in history order.
    let mut events: Vec<(usize, u32, bool)> = Vec::with_capacity(txns.len() * 2);
    for (t, txn) in txns.iter().enumerate() {
        if !in_graph(t) {
            continue;
        }
        events.push((txn.invoke, t as u32, false));
        if let (Status::Ok, Some(c)) = (txn.status, txn.complete) {
            events.push((c, t as u32, true));
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    // (txn, position of its completion)
    let mut frontier: Vec<(u32, usize)> = Vec::new();
    for (pos, t, completes) in events {
        if completes {
            let invoked = txns[t as usize].invoke;
            frontier.retain(|&(_, done)| done > invoked);
            frontier.push((t, pos));
        } else {
            for &(f, _) in &frontier {
                graph.add_edge(f, t, REALTIME);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn verdict(
    checker: String,
    workload: Workload,
    models: &[ConsistencyModel],
    prohibited: &BTreeSet<&'static str>,
    cases: Cases,
    txn_count: usize,
    graph: &LabelledGraph,
    outcome: &cycles::Outcome,
    cancelled: bool,
) -> Verdict {
    let found: Vec<&'static str> = cases.by_type.keys().copied().collect();
    let bad: Vec<&'static str> = found
        .iter()
        .copied()
        .filter(|a| prohibited.contains(a))
        .collect();
    let allowed: Vec<&'static str> = found
        .iter()
        .copied()
        .filter(|a| !prohibited.contains(a))
        .collect();
    let b = boundary(found.iter().copied());
    let not_checked = ConsistencyModel::not_checked(models);
    let unchecked_names: Vec<&str> = not_checked.iter().map(|(a, _)| *a).collect();
    let model_names: Vec<&str> = models.iter().map(|m| m.name()).collect();
    let models_text = model_names.join(", ");
    let counted = |list: &[&str]| {
        list.iter()
            .map(|a| format!("{a} ({})", cases.count(a)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let valid = if !bad.is_empty() {
        Validity::False
    } else if cancelled {
        Validity::Unknown
    } else {
        Validity::True
    };
    let base = match valid {
        Validity::False => format!("not {models_text}: {}", counted(&bad)),
        Validity::Unknown => format!(
            "unknown: the check was cancelled after {txn_count} transactions were analysed and before the cycle search finished"
        ),
        Validity::True if allowed.is_empty() => {
            format!("valid under {models_text}: no anomalies in {txn_count} transactions")
        }
        Validity::True => format!(
            "valid under {models_text}: {txn_count} transactions; found only anomalies these models allow: {}",
            counted(&allowed)
        ),
    };
    // A model whose definition names anomalies no graph here can show is checked only in part;
    // say so wherever the verdict is read.
    let summary = if unchecked_names.is_empty() || valid == Validity::Unknown {
        base
    } else {
        format!(
            "{base}; not checked (undetectable here): {}",
            unchecked_names.join(", ")
        )
    };

    let mut explanation = Vec::new();
    for a in bad.iter().chain(allowed.iter()) {
        let (count, kept) = &cases.by_type[a];
        let verdict_word = if prohibited.contains(a) {
            "prohibited"
        } else {
            "allowed by the selected models"
        };
        explanation.push(format!(
            "{a}: {count} found ({verdict_word}){}",
            if (kept.len() as u64) < *count {
                format!(", {} shown", kept.len().min(3))
            } else {
                String::new()
            }
        ));
        for case in kept.iter().take(3) {
            for line in &case.text {
                explanation.push(format!("  {line}"));
            }
        }
    }
    let names = |s: &BTreeSet<ConsistencyModel>| s.iter().map(|m| m.name()).collect::<Vec<_>>();
    if !b.not.is_empty() {
        explanation.push(format!(
            "This history is not {}{}.",
            names(&b.not).join(", "),
            if b.also_not.is_empty() {
                String::new()
            } else {
                format!("; hence also not {}", names(&b.also_not).join(", "))
            }
        ));
    }

    for (a, why) in &not_checked {
        explanation.push(format!("{a} is not checked: {why}."));
    }

    let anomalies: serde_json::Map<String, serde_json::Value> = cases
        .by_type
        .iter()
        .map(|(k, (_, v))| {
            (
                k.to_string(),
                serde_json::Value::Array(v.iter().map(|c| c.json.clone()).collect()),
            )
        })
        .collect();
    let counts: serde_json::Map<String, serde_json::Value> = cases
        .by_type
        .iter()
        .map(|(k, (c, _))| (k.to_string(), json!(c)))
        .collect();
    Verdict {
        checker,
        valid,
        summary,
        explanation,
        details: json!({
            "workload": workload.name(),
            "consistency-models": model_names,
            "anomaly-types": found,
            "prohibited-anomaly-types": bad,
            "anomalies": anomalies,
            "anomaly-counts": counts,
            "not": names(&b.not),
            "also-not": names(&b.also_not),
            "not-checked": unchecked_names,
            "txn-count": txn_count,
            "graph": {
                "nodes": graph.node_count(),
                "edges": graph.edge_count(),
                "sccs": outcome.sccs,
                "largest-scc": outcome.largest_scc,
                "searches-out-of-budget": outcome.gave_up,
            },
        }),
    }
}

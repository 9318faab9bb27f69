//! Performance statistics of a history: what was attempted, what succeeded, how long it took.

use std::collections::BTreeMap;

use histories::{History, OpType};
use serde::Serialize;

/// Completions of one function, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub invoke: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

/// Latency quantiles over completed calls, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Client calls by function name.
    pub ops: BTreeMap<String, OutcomeCounts>,
    pub total: OutcomeCounts,
    /// Nemesis lines (fault starts and heals, invocations and completions).
    pub nemesis_ops: u64,
    /// From the first to the last line of the history.
    pub duration_s: f64,
    /// Successful calls per second over the duration.
    pub ok_per_s: f64,
    /// Latency of calls that completed `ok` or `fail` (an `info` has no meaningful end).
    pub latency_ms: LatencyMs,
}

/// Counts and latencies of a history's client calls.
pub fn stats(history: &History) -> Stats {
    let ops = history.ops();
    let mut out = Stats::default();
    let mut latencies_ns: Vec<u64> = Vec::new();
    for (pos, op) in ops.iter().enumerate() {
        if !op.is_client() {
            out.nemesis_ops += 1;
            continue;
        }
        let counts = out.ops.entry(op.f.to_string()).or_default();
        for c in [&mut *counts, &mut out.total] {
            match op.kind {
                OpType::Invoke => c.invoke += 1,
                OpType::Ok => c.ok += 1,
                OpType::Fail => c.fail += 1,
                OpType::Info => c.info += 1,
            }
        }
        if matches!(op.kind, OpType::Ok | OpType::Fail)
            && let Some(start) = history.invocation_of(pos)
        {
            latencies_ns.push(op.time_ns.saturating_sub(ops[start].time_ns));
        }
    }
    if let (Some(first), Some(last)) = (ops.first(), ops.last()) {
        out.duration_s = last.time_ns.saturating_sub(first.time_ns) as f64 / 1e9;
    }
    if out.duration_s > 0.0 {
        out.ok_per_s = out.total.ok as f64 / out.duration_s;
    }
    latencies_ns.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies_ns.is_empty() {
            return 0.0;
        }
        let i = ((latencies_ns.len() - 1) as f64 * q).round() as usize;
        latencies_ns[i] as f64 / 1e6
    };
    out.latency_ms = LatencyMs {
        p50: quantile(0.5),
        p90: quantile(0.9),
        p99: quantile(0.99),
        max: quantile(1.0),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use histories::{F, Op, Process, Value};

    fn op(index: u64, time_ms: u64, process: Process, kind: OpType, f: F) -> Op {
        Op {
            index,
            time_ns: time_ms * 1_000_000,
            process,
            kind,
            f,
            key: None,
            value: Value::Nil,
            node: None,
            error: None,
        }
    }

    #[test]
    fn counts_outcomes_and_latencies_of_client_calls_only() {
        let c = Process::Client;
        let history = History::from_ops(vec![
            op(0, 0, c(0), OpType::Invoke, F::Read),
            op(1, 0, c(1), OpType::Invoke, F::Write),
            op(2, 10, c(0), OpType::Ok, F::Read),
            op(
                3,
                20,
                Process::Nemesis,
                OpType::Info,
                F::Other("kill".into()),
            ),
            op(4, 30, c(1), OpType::Info, F::Write),
            op(5, 40, c(2), OpType::Invoke, F::Write),
            op(6, 1000, c(2), OpType::Fail, F::Write),
        ])
        .unwrap();
        let s = stats(&history);
        assert_eq!(s.total.invoke, 3);
        assert_eq!((s.total.ok, s.total.fail, s.total.info), (1, 1, 1));
        assert_eq!(s.ops["write"].info, 1);
        assert_eq!(s.nemesis_ops, 1);
        assert_eq!(s.latency_ms.max, 960.0);
        assert!((s.duration_s - 1.0).abs() < 1e-9);
    }
}

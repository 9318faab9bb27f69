//! The terminal summary of a run.

use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::run::Results;

#[derive(Tabled)]
struct OpRow {
    #[tabled(rename = "f")]
    f: String,
    #[tabled(rename = "invoked")]
    invoke: u64,
    ok: u64,
    fail: u64,
    info: u64,
}

#[derive(Tabled)]
struct VerdictRow {
    checker: String,
    verdict: String,
    summary: String,
}

/// The text printed at the end of a run: op counts, verdicts, explanations, where to look.
pub fn summary(results: &Results) -> String {
    let mut rows: Vec<OpRow> = results
        .stats
        .ops
        .iter()
        .map(|(f, c)| OpRow {
            f: f.clone(),
            invoke: c.invoke,
            ok: c.ok,
            fail: c.fail,
            info: c.info,
        })
        .collect();
    let t = &results.stats.total;
    rows.push(OpRow {
        f: "total".into(),
        invoke: t.invoke,
        ok: t.ok,
        fail: t.fail,
        info: t.info,
    });
    let mut ops = Table::new(rows);
    ops.with(Style::rounded());

    let verdicts: Vec<VerdictRow> = results
        .checker
        .values()
        .map(|v| VerdictRow {
            checker: v.checker.clone(),
            verdict: v.valid.to_string(),
            summary: v.summary.clone(),
        })
        .collect();
    let mut verdict_table = Table::new(verdicts);
    verdict_table.with(Style::rounded());

    let s = &results.stats;
    let mut out = String::new();
    out.push_str(&format!("\n{}\n", results.test));
    out.push_str(&format!("{ops}\n"));
    out.push_str(&format!(
        "{:.0} ok ops/s over {:.1} s · latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms · {} faults injected\n",
        s.ok_per_s, s.duration_s, s.latency_ms.p50, s.latency_ms.p99, s.latency_ms.max, results.faults_injected
    ));
    if let Some(net) = &results.net_stats {
        out.push_str(&format!("{}\n", net.line()));
    }
    out.push_str(&format!("{verdict_table}\n"));
    for v in results.checker.values() {
        for line in v.explanation.iter().take(20) {
            out.push_str(&format!("  {line}\n"));
        }
        if v.explanation.len() > 20 {
            out.push_str(&format!(
                "  ... {} more lines in results.json\n",
                v.explanation.len() - 20
            ));
        }
    }
    for w in &results.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.push_str(&format!(
        "verdict: {} · seed {} · store {}\n",
        results.valid,
        results.seed,
        results.store.display()
    ));
    out.push_str(&format!(
        "report: {}\n",
        results.store.join("report.html").display()
    ));
    if results.valid != checkers::Validity::True {
        out.push_str(&format!("repeat with: {}\n", results.command));
    }
    out
}

//! Benchmark of the transactional checker on synthetic histories (not a timed test).
//!
//! `cargo bench -p checkers --bench txn` checks seeded list-append histories of 10k, 100k and
//! 1M transactions (4 micro-ops each, 10 processes) from a simulated strictly serializable
//! database, then the same with one injected anomaly, and prints time, transactions per second
//! and peak RSS. `TXN_BENCH_SIZES=10000,100000` and `TXN_BENCH_RUNS=5` change what is run;
//! `TXN_BENCH_WORKLOAD=rw-register` benchmarks the other workload, and
//! `TXN_BENCH_INJECT=none` skips the histories with injected anomalies.

use std::time::Instant;

use checkers::Validity;
use checkers::txn::synth::{GenOptions, Inject, generate};
use checkers::txn::{TxnOptions, Workload, check};

/// `VmHWM` (peak) or `VmRSS` (current) of this process, in MiB.
fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::var("TXN_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let runs: usize = std::env::var("TXN_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let workload: Workload = std::env::var("TXN_BENCH_WORKLOAD")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Workload::ListAppend);
    let injections: &[Option<Inject>] = match workload {
        Workload::ListAppend => &[
            None,
            Some(Inject::StaleRead),
            Some(Inject::AbortedRead),
            Some(Inject::LostUpdate),
        ],
        Workload::RwRegister => &[None],
    };
    println!(
        "{:<10} {:>9} {:>9} {:>11} {:>12} {:>10} {:>10}  verdict",
        "inject", "txns", "gen s", "check s", "txn/s", "hist MiB", "peak MiB"
    );
    let only_clean = std::env::var("TXN_BENCH_INJECT").is_ok_and(|v| v == "none");
    for &n in &sizes {
        for &inject in injections {
            if only_clean && inject.is_some() {
                continue;
            }
            let gen_start = Instant::now();
            let generated = generate(&GenOptions {
                workload,
                txns: n,
                seed: 42,
                inject,
                inject_after: n / 2,
                ..GenOptions::default()
            });
            let gen_s = gen_start.elapsed().as_secs_f64();
            // What the process holds before checking: mostly the history itself.
            let hist_mib = rss_mib("VmRSS:");
            let opts = TxnOptions::new(workload);
            let mut times = Vec::with_capacity(runs);
            let mut last = None;
            for _ in 0..runs {
                let start = Instant::now();
                let v = check(&generated.history, &opts);
                times.push(start.elapsed().as_secs_f64());
                last = Some(v);
            }
            let v = last.unwrap_or_else(|| unreachable!("runs >= 1"));
            let t = median(times);
            let expected = if inject.is_some() && generated.injected.is_some() {
                Validity::False
            } else if inject.is_some() {
                v.valid
            } else {
                Validity::True
            };
            println!(
                "{:<10} {:>9} {:>9.2} {:>11.3} {:>12.0} {:>10.0} {:>10.0}  {}{}",
                match inject {
                    None => "none",
                    Some(Inject::StaleRead) => "stale",
                    Some(Inject::AbortedRead) => "g1a",
                    Some(Inject::LostUpdate) => "lost",
                },
                n,
                gen_s,
                t,
                n as f64 / t,
                hist_mib,
                rss_mib("VmHWM:"),
                v.summary,
                if v.valid == expected {
                    ""
                } else {
                    "  <-- UNEXPECTED"
                }
            );
        }
    }
}

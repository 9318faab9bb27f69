//! `cargo bench -p checkers --bench linearizable`: the linearizability checker on Porcupine's
//! corpus. Each etcd log and kv c10-ok / c50-ok is checked 5 times; prints the median per file,
//! then the total of the etcd medians and the kv medians. Compare ratios within one run: the
//! machines are noisy.

use std::path::{Path, PathBuf};
use std::time::Instant;

use checkers::linearizable::{LinOptions, ModelKind, check};

const RUNS: usize = 5;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../histories/tests/data/porcupine")
}

/// Median wall time of checking `file` with `model`, in milliseconds, and its verdict.
fn time_file(file: &str, model: ModelKind) -> (f64, String) {
    let loaded = histories::read_any(&corpus().join(file), None)
        .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let mut times_ms = Vec::with_capacity(RUNS);
    let mut verdict = String::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let v = check(&loaded.history, model, &LinOptions::default());
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        verdict = v.valid.as_str().to_string();
    }
    times_ms.sort_by(f64::total_cmp);
    (times_ms[RUNS / 2], verdict)
}

fn main() {
    let verdicts =
        std::fs::read_to_string(corpus().join("VERDICTS.tsv")).expect("the corpus's VERDICTS.tsv");
    println!("{:<24} {:>7} {:>12}", "file", "valid", "median_ms");
    let mut etcd_ms = 0.0;
    let mut etcd_files = 0;
    for line in verdicts.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 || !cols[0].starts_with("jepsen/") {
            continue;
        }
        let model: ModelKind = cols[1].parse().expect("a model name");
        let (ms, valid) = time_file(cols[0], model);
        println!("{:<24} {valid:>7} {ms:>12.3}", cols[0]);
        etcd_ms += ms;
        etcd_files += 1;
    }
    let mut kv_ms = Vec::new();
    for file in ["kv/c10-ok.txt", "kv/c50-ok.txt"] {
        let (ms, valid) = time_file(file, ModelKind::KeyValue);
        println!("{file:<24} {valid:>7} {ms:>12.3}");
        kv_ms.push((file, ms));
    }
    println!();
    println!("total etcd ({etcd_files} files): {etcd_ms:.3} ms");
    for (file, ms) in kv_ms {
        println!("{file}: {ms:.3} ms");
    }
}

//! `cargo bench -p checkers --bench linearizable -- [--runs N] [--no-partition]
//! [--baseline FILE.tsv] [FILE...]`: times the linearizability checker in-process, median of
//! `--runs` (default 5) runs per file, and prints `file<TAB>verdict<TAB>median-ms` per file,
//! then the total over the etcd logs and the peak memory of the process.
//!
//! Files default to the whole Porcupine corpus (`jepsen/*.log` with the register model, `kv/*`
//! with the kv model); a `.txt` file is read as kv, anything else as a register history.
//! With `--baseline` (a TSV of the same shape, e.g. the output of
//! `../shared/tools/porcupine-bench/run.sh`), each row also shows the baseline time and the
//! ratio baseline / ours (above 1 = we are faster), and verdict disagreements are listed.
//! `ci/bench-linearizable.sh` runs both and compares them. Compare ratios measured in one run:
//! these machines are noisy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use checkers::linearizable::{LinOptions, ModelKind, check, check_unpartitioned};

struct Args {
    runs: usize,
    no_partition: bool,
    baseline: Option<PathBuf>,
    files: Vec<PathBuf>,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../histories/tests/data/porcupine")
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 5,
        no_partition: false,
        baseline: None,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            // cargo bench passes this to every bench target.
            "--bench" => {}
            "--runs" => {
                let n = it.next().ok_or("--runs needs a number")?;
                args.runs = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--runs: expected a positive number, got {n:?}"))?;
            }
            "--no-partition" => args.no_partition = true,
            "--baseline" => {
                args.baseline = Some(it.next().ok_or("--baseline needs a file")?.into());
            }
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            file => args.files.push(file.into()),
        }
    }
    if args.files.is_empty() {
        let mut files: Vec<PathBuf> = ["jepsen", "kv"]
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(corpus().join(dir))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
            })
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("log" | "txt")))
            .collect();
        files.sort();
        args.files = files;
    }
    Ok(args)
}

fn model_for(file: &Path) -> ModelKind {
    if file.extension().is_some_and(|e| e == "txt") {
        ModelKind::KeyValue
    } else {
        ModelKind::Register
    }
}

/// Median wall time in milliseconds over `runs` checks, and the verdict.
fn time_file(file: &Path, runs: usize, no_partition: bool) -> Result<(f64, String), String> {
    let loaded = histories::read_any(file, None).map_err(|e| e.to_string())?;
    let model = model_for(file);
    let mut times_ms = Vec::with_capacity(runs);
    let mut verdict = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        let v = if no_partition {
            check_unpartitioned(&loaded.history, model, &LinOptions::default())
        } else {
            check(&loaded.history, model, &LinOptions::default())
        };
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        verdict = v.valid.as_str().to_string();
    }
    times_ms.sort_by(f64::total_cmp);
    Ok((times_ms[runs / 2], verdict))
}

/// `file -> (verdict, ms)` from a `file<TAB>verdict<TAB>ms` TSV; other lines are ignored.
fn read_baseline(path: &Path) -> Result<HashMap<String, (String, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let ms = cols.get(2)?.trim().parse().ok()?;
            Some((cols[0].to_string(), (cols[1].to_string(), ms)))
        })
        .collect())
}

/// Peak resident memory of this process, from the kernel's high-water mark.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench linearizable: {e}");
            std::process::exit(254);
        }
    };
    let baseline = match args.baseline.as_deref().map(read_baseline).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench linearizable: {e}");
            std::process::exit(254);
        }
    };
    let mut etcd = (0.0, 0.0, 0usize); // ours, baseline, files
    let mut disagreements = Vec::new();
    let mut slowest_ratio: Option<(f64, String)> = None;
    for file in &args.files {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let (ms, verdict) = match time_file(file, args.runs, args.no_partition) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench linearizable: {e}");
                std::process::exit(254);
            }
        };
        let base = baseline.as_ref().and_then(|b| b.get(&name));
        match base {
            Some((base_verdict, base_ms)) => {
                let ratio = base_ms / ms.max(1e-6);
                println!("{name}\t{verdict}\t{ms:.3}\t{base_ms:.3}\t{ratio:.2}x");
                if *base_verdict != verdict {
                    disagreements.push(format!("{name}: ours {verdict}, baseline {base_verdict}"));
                }
                if slowest_ratio.as_ref().is_none_or(|(r, _)| ratio < *r) {
                    slowest_ratio = Some((ratio, name.clone()));
                }
                if name.ends_with(".log") {
                    etcd.1 += base_ms;
                }
            }
            None => println!("{name}\t{verdict}\t{ms:.3}"),
        }
        if name.ends_with(".log") {
            etcd.0 += ms;
            etcd.2 += 1;
        }
    }
    if etcd.2 > 0 {
        if etcd.1 > 0.0 {
            println!(
                "# total over {} etcd logs: {:.3} ms; baseline {:.3} ms; ratio {:.2}x",
                etcd.2,
                etcd.0,
                etcd.1,
                etcd.1 / etcd.0.max(1e-6)
            );
        } else {
            println!("# total over {} etcd logs: {:.3} ms", etcd.2, etcd.0);
        }
    }
    if let Some((ratio, name)) = slowest_ratio {
        println!("# lowest per-file ratio: {ratio:.2}x ({name})");
    }
    if baseline.is_some() {
        if disagreements.is_empty() {
            println!("# verdicts: all agree with the baseline");
        } else {
            for d in &disagreements {
                println!("# VERDICT DISAGREEMENT: {d}");
            }
        }
    }
    match peak_memory_mib() {
        Some(mib) => println!("# peak memory: {mib:.1} MiB"),
        None => println!("# peak memory: unknown (no /proc/self/status)"),
    }
    if !disagreements.is_empty() {
        std::process::exit(1);
    }
}

//! Recording benchmark (not a timed test): how many operations per second the controller
//! records against an in-process no-op target at concurrency 1, 10 and 100, what recording
//! costs against the same client loop without it, and a 10M-op history written with bounded
//! memory. Run with `cargo bench -p harness --bench recorder` or `ci/bench-recorder.sh`;
//! `-- --quick` runs a smaller version.
//!
//! An "op" is one client call: an invocation and its completion, two lines of the history.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use harness::generator::{RegisterConfig, RegisterWorkload};
use harness::recorder::{Event, Recorder};
use histories::{OpType, Process};
use targets::{Client, Completion, Invocation};

/// Answers every call at once, as if a perfect database were in the controller's memory.
struct NoopClient;

#[async_trait]
impl Client for NoopClient {
    async fn invoke(&mut self, call: &Invocation, _timeout: Duration) -> Completion {
        Completion {
            kind: OpType::Ok,
            value: call.value.clone(),
            node: None,
            error: None,
        }
    }
}

/// The harness's worker loop without its rate limiting: generate, (record,) invoke,
/// (record,) until `stop`.
async fn worker(
    process: u64,
    recorder: Option<Recorder>,
    generator: Arc<Mutex<RegisterWorkload>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut client: Box<dyn Client> = Box::new(NoopClient);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let inv = generator.lock().expect("generator").next_invocation();
        if let Some(r) = &recorder {
            r.record(Event {
                process: Process::Client(process),
                kind: OpType::Invoke,
                f: inv.f.clone(),
                key: inv.key.clone(),
                value: inv.value.clone(),
                node: None,
                error: None,
            });
        }
        let c = client.invoke(&inv, Duration::from_secs(1)).await;
        if let Some(r) = &recorder {
            r.record(Event {
                process: Process::Client(process),
                kind: c.kind,
                f: inv.f,
                key: inv.key,
                value: c.value,
                node: c.node,
                error: c.error,
            });
        }
        n += 1;
        // Let other workers run, as a real call's await would.
        if n % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    done.fetch_add(n, Ordering::Relaxed);
}

/// CPU time (user + system) this process has used, in seconds (clock ticks of 1/100 s).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // Fields 14 and 15 of stat are utime and stime; `fields` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// One measurement: ops per second, and CPU seconds per op.
#[derive(Debug, Clone, Copy)]
struct Measured {
    ops_per_s: f64,
    cpu_per_op_s: f64,
}

/// Ops per second over `secs` with `concurrency` workers, recording into `dir` or not.
fn measure(concurrency: usize, secs: f64, dir: Option<&Path>) -> Measured {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (recorder, writer) = match dir {
            Some(d) => {
                let (r, w) = Recorder::create(&d.join("history.jsonl"), Instant::now())
                    .expect("history file");
                (Some(r), Some(w))
            }
            None => (None, None),
        };
        let generator = Arc::new(Mutex::new(RegisterWorkload::new(
            1,
            RegisterConfig::default(),
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let cpu_start = cpu_s();
        let tasks: Vec<_> = (0..concurrency)
            .map(|p| {
                tokio::spawn(worker(
                    p as u64,
                    recorder.clone(),
                    Arc::clone(&generator),
                    Arc::clone(&stop),
                    Arc::clone(&done),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("worker");
        }
        drop(recorder);
        // The history is complete on disk before the clock stops.
        if let Some(w) = writer {
            w.finish().expect("history written");
        }
        let ops = done.load(Ordering::Relaxed) as f64;
        Measured {
            ops_per_s: ops / start.elapsed().as_secs_f64(),
            cpu_per_op_s: (cpu_s() - cpu_start) / ops.max(1.0),
        }
    })
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process, in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Records `ops` operations (2 × ops lines) as fast as one thread can and returns
/// (seconds, file MiB, peak RSS MiB after a tenth of the ops, peak RSS MiB at the end).
fn big_history(dir: &Path, ops: u64) -> (f64, f64, f64, f64) {
    let path = dir.join("big.jsonl");
    let (recorder, writer) = Recorder::create(&path, Instant::now()).expect("history file");
    let mut generator = RegisterWorkload::new(7, RegisterConfig::default());
    let start = Instant::now();
    let mut rss_tenth = 0.0;
    for i in 0..ops {
        if i == ops / 10 {
            rss_tenth = peak_rss_mib();
        }
        let p = i % 100;
        let inv = generator.next_invocation();
        recorder.record(Event {
            process: Process::Client(p),
            kind: OpType::Invoke,
            f: inv.f.clone(),
            key: inv.key.clone(),
            value: inv.value.clone(),
            node: None,
            error: None,
        });
        recorder.record(Event {
            process: Process::Client(p),
            kind: OpType::Ok,
            f: inv.f,
            key: inv.key,
            value: inv.value,
            node: Some("n1".into()),
            error: None,
        });
    }
    drop(recorder);
    let lines = writer.finish().expect("history written");
    assert_eq!(lines, 2 * ops);
    let secs = start.elapsed().as_secs_f64();
    let mib = std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / (1024.0 * 1024.0);
    let _ = std::fs::remove_file(&path);
    (secs, mib, rss_tenth, peak_rss_mib())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, repeats, big_ops) = if quick {
        (0.5, 3, 1_000_000)
    } else {
        (2.0, 5, 10_000_000)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "recording benchmark: no-op in-process target, {secs} s per measurement, median of {repeats}, 2 runtime threads"
    );
    println!(
        "{:>11} {:>15} {:>17} {:>9} {:>17} {:>17}",
        "concurrency",
        "recorded ops/s",
        "unrecorded ops/s",
        "overhead",
        "CPU/op recorded",
        "CPU/op unrecorded"
    );
    let mut costs = Vec::new();
    for concurrency in [1, 10, 100] {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for _ in 0..repeats {
            // Interleaved, so drift in the machine's speed hits both alike.
            without.push(measure(concurrency, secs, None));
            with.push(measure(concurrency, secs, Some(dir.path())));
        }
        let w = median(with.iter().map(|m| m.ops_per_s).collect());
        let wo = median(without.iter().map(|m| m.ops_per_s).collect());
        let cw = median(with.iter().map(|m| m.cpu_per_op_s).collect());
        let cwo = median(without.iter().map(|m| m.cpu_per_op_s).collect());
        costs.push(cw - cwo);
        println!(
            "{concurrency:>11} {w:>15.0} {wo:>17.0} {:>8.1}% {:>14.2} µs {:>14.2} µs",
            (1.0 - w / wo) * 100.0,
            cw * 1e6,
            cwo * 1e6
        );
    }
    // Against a no-op target the loop does nothing but record, so the relative overhead is
    // close to 100% by construction; what recording costs a real test is its CPU per op.
    let cost = median(costs);
    println!(
        "recording costs {:.2} µs of CPU per op: at 20000 ops/s that is {:.1}% of this machine's {} cores",
        cost * 1e6,
        cost * 20_000.0 / cores() * 100.0,
        cores()
    );
    // Reset the peak (VmHWM) so it shows the big history alone (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = peak_rss_mib();
    let (t, mib, rss_tenth, rss) = big_history(dir.path(), big_ops);
    println!(
        "{big_ops} ops ({} lines, {mib:.0} MiB) recorded in {t:.1} s ({:.0} ops/s); peak RSS {rss_before:.0} MiB before, {rss_tenth:.0} MiB after {} ops, {rss:.0} MiB after all (at most 100000 lines wait for the writer)",
        2 * big_ops,
        big_ops as f64 / t,
        big_ops / 10
    );
}

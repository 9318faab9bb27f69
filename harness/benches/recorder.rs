//! Recording benchmark (not a timed test). It answers three questions, all in one run so the
//! figures share the machine's state:
//!
//! 1. What does recording cost per op, in nanoseconds of CPU? Split into the caller's share
//!    (building the event, taking the lock, stamping it) and the writer thread's share
//!    (serializing and writing), against an in-process no-op target at concurrency 1, 10, 100.
//! 2. How much slower is the same client loop with recording than without? Against the no-op
//!    target the loop does almost nothing else, so this ratio is large by construction; it is
//!    printed, not hidden, next to the floor under any recorder: the same loop giving each
//!    event only an index and a time and keeping nothing.
//! 3. How much slower is the cheapest *real* call with recording than without? A loopback TCP
//!    round trip to an in-process echo server, at concurrency 1 and 10.
//!
//! And a 10M-op history written with bounded memory. Run with
//! `cargo bench -p harness --bench recorder` or `ci/bench-recorder.sh`; `-- --quick` runs a
//! smaller version.
//!
//! An "op" is one client call: an invocation and its completion, two lines of the history.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use harness::generator::{RegisterConfig, RegisterWorkload, Source as _};
use harness::recorder::{Event, Recorder};
use histories::{OpType, Process};
use targets::{Client, Completion, Invocation};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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

/// One short line to an echo server on loopback and its answer back: the cheapest call a
/// real target could take.
struct EchoClient {
    conn: BufReader<TcpStream>,
    line: String,
}

#[async_trait]
impl Client for EchoClient {
    async fn invoke(&mut self, call: &Invocation, _timeout: Duration) -> Completion {
        self.line.clear();
        let sent = self.conn.get_mut().write_all(b"read 1\n").await;
        let answered = match sent {
            Ok(()) => self.conn.read_line(&mut self.line).await,
            Err(e) => Err(e),
        };
        match answered {
            Ok(n) if n > 0 => Completion {
                kind: OpType::Ok,
                value: call.value.clone(),
                node: None,
                error: None,
            },
            _ => Completion {
                kind: OpType::Info,
                value: call.value.clone(),
                node: None,
                error: Some("echo server gone".into()),
            },
        }
    }
}

/// Echoes each line back, one task per connection, until the runtime ends.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let (r, mut w) = socket.into_split();
                let mut lines = BufReader::new(r);
                let mut line = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                    if w.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Noop,
    Echo,
}

impl Target {
    fn as_str(self) -> &'static str {
        match self {
            Target::Noop => "no-op",
            Target::Echo => "echo",
        }
    }
}

/// The least any recorder must do per event: give it a place in one total order and a time.
/// Nothing is kept; it is the floor under every possible recorder's cost.
#[derive(Debug)]
struct Stamps {
    next_index: AtomicU64,
    start: Instant,
    /// Folded from every stamp so the compiler cannot drop them.
    sink: AtomicU64,
}

impl Stamps {
    fn stamp(&self) {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let time_ns = self.start.elapsed().as_nanos() as u64;
        self.sink
            .fetch_xor(std::hint::black_box(index ^ time_ns), Ordering::Relaxed);
    }
}

/// What the loop does besides calling the client.
#[derive(Debug, Clone)]
enum Recording {
    /// Nothing: the bare loop.
    Off,
    /// Index and time only, kept nowhere.
    StampOnly(Arc<Stamps>),
    /// The harness's recorder, writing a history file.
    Full(Recorder),
}

/// How a measurement records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    StampOnly,
    Full,
}

/// The harness's worker loop without its rate limiting: generate, (record,) invoke,
/// (record,) until `stop`.
async fn worker(
    process: u64,
    mut client: Box<dyn Client>,
    recording: Recording,
    generator: Arc<Mutex<RegisterWorkload>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let recorder = match &recording {
        Recording::Full(r) => Some(r.clone()),
        _ => None,
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let inv = generator.lock().expect("generator").next_invocation();
        if let Recording::StampOnly(stamps) = &recording {
            stamps.stamp();
        }
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
        if let Recording::StampOnly(stamps) = &recording {
            stamps.stamp();
        }
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

/// CPU time this process has used (user + system, every thread, exited ones included), in
/// seconds, to the microsecond.
fn cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    s(usage.user_time()) + s(usage.system_time())
}

/// CPU time the history writer thread has used, in seconds (0 when there is none): the
/// scheduler's count in nanoseconds (the first field of a thread's `schedstat`).
fn writer_cpu_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "history-writer")
        })
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}

/// One measurement: ops per second, CPU seconds per op, and the writer thread's share.
#[derive(Debug, Clone, Copy)]
struct Measured {
    ops_per_s: f64,
    cpu_per_op_s: f64,
    writer_cpu_per_op_s: f64,
}

/// Ops per second over `secs` with `concurrency` workers against `target`, recording as
/// `mode` says (a full recording goes into `dir`).
fn measure(target: Target, concurrency: usize, secs: f64, mode: Mode, dir: &Path) -> Measured {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let echo = match target {
            Target::Echo => Some(echo_server().await),
            Target::Noop => None,
        };
        let mut clients: Vec<Box<dyn Client>> = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            clients.push(match echo {
                Some(addr) => {
                    let conn = TcpStream::connect(addr).await.expect("connect to echo");
                    conn.set_nodelay(true).expect("nodelay");
                    Box::new(EchoClient {
                        conn: BufReader::new(conn),
                        line: String::new(),
                    })
                }
                None => Box::new(NoopClient),
            });
        }
        let (recording, writer) = match mode {
            Mode::Full => {
                let (r, w) = Recorder::create(&dir.join("history.jsonl"), Instant::now())
                    .expect("history file");
                (Recording::Full(r), Some(w))
            }
            Mode::StampOnly => (
                Recording::StampOnly(Arc::new(Stamps {
                    next_index: AtomicU64::new(0),
                    start: Instant::now(),
                    sink: AtomicU64::new(0),
                })),
                None,
            ),
            Mode::Off => (Recording::Off, None),
        };
        let generator = Arc::new(Mutex::new(RegisterWorkload::new(
            1,
            RegisterConfig::default(),
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let cpu_start = cpu_s();
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(p, client)| {
                tokio::spawn(worker(
                    p as u64,
                    client,
                    recording.clone(),
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
        drop(recording);
        // Read before `finish` ends the thread; what it writes after is one last batch.
        let writer_cpu = writer_cpu_s();
        // The history is complete on disk before the clock stops.
        if let Some(w) = writer {
            w.finish().expect("history written");
        }
        let ops = done.load(Ordering::Relaxed) as f64;
        Measured {
            ops_per_s: ops / start.elapsed().as_secs_f64(),
            cpu_per_op_s: (cpu_s() - cpu_start) / ops.max(1.0),
            writer_cpu_per_op_s: writer_cpu / ops.max(1.0),
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

/// One cell: medians over its repeats with and without recording, and the medians of what
/// each pair of neighbouring runs says recording cost.
#[derive(Debug, Clone, Copy)]
struct Cell {
    with: Measured,
    without: Measured,
    /// Throughput lost to recording, in percent of the unrecorded throughput.
    overhead_percent: f64,
    /// CPU seconds per op that recording adds.
    recording_cpu_s: f64,
    /// Throughput lost to stamping alone (index and time, nothing kept), in percent of the
    /// unrecorded throughput; measured against the no-op target only.
    stamp_only_percent: Option<f64>,
}

fn cell(target: Target, concurrency: usize, secs: f64, repeats: usize, dir: &Path) -> Cell {
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut stamped = Vec::new();
    for _ in 0..repeats {
        // Interleaved, so drift in the machine's speed hits all alike; the costs are taken
        // pair by pair for the same reason (other builds share this machine).
        without.push(measure(target, concurrency, secs, Mode::Off, dir));
        with.push(measure(target, concurrency, secs, Mode::Full, dir));
        if target == Target::Noop {
            stamped.push(measure(target, concurrency, secs, Mode::StampOnly, dir));
        }
    }
    let med = |v: &[Measured]| Measured {
        ops_per_s: median(v.iter().map(|m| m.ops_per_s).collect()),
        cpu_per_op_s: median(v.iter().map(|m| m.cpu_per_op_s).collect()),
        writer_cpu_per_op_s: median(v.iter().map(|m| m.writer_cpu_per_op_s).collect()),
    };
    let pairs = || with.iter().zip(&without);
    Cell {
        with: med(&with),
        without: med(&without),
        overhead_percent: median(
            pairs()
                .map(|(w, wo)| (1.0 - w.ops_per_s / wo.ops_per_s) * 100.0)
                .collect(),
        ),
        recording_cpu_s: median(
            pairs()
                .map(|(w, wo)| w.cpu_per_op_s - wo.cpu_per_op_s)
                .collect(),
        ),
        stamp_only_percent: (!stamped.is_empty()).then(|| {
            median(
                stamped
                    .iter()
                    .zip(&without)
                    .map(|(s, wo)| (1.0 - s.ops_per_s / wo.ops_per_s) * 100.0)
                    .collect(),
            )
        }),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, repeats, big_ops) = if quick {
        (0.5, 3, 1_000_000)
    } else {
        (1.5, 7, 10_000_000)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "recording benchmark: {secs} s per measurement, median of {repeats}, 2 runtime threads, {} cores",
        cores()
    );
    println!(
        "{:>6} {:>11} {:>15} {:>17} {:>9} {:>13} {:>15} {:>24}",
        "target",
        "concurrency",
        "recorded ops/s",
        "unrecorded ops/s",
        "overhead",
        "CPU/op rec.",
        "CPU/op unrec.",
        "recording CPU/op (writer)"
    );
    let mut noop = Vec::new();
    let mut echo = Vec::new();
    for (target, concurrency) in [
        (Target::Noop, 1),
        (Target::Noop, 10),
        (Target::Noop, 100),
        (Target::Echo, 1),
        (Target::Echo, 10),
    ] {
        let c = cell(target, concurrency, secs, repeats, dir.path());
        println!(
            "{:>6} {concurrency:>11} {:>15.0} {:>17.0} {:>8.1}% {:>10.0} ns {:>12.0} ns {:>10.0} ns ({:>4.0} ns)",
            target.as_str(),
            c.with.ops_per_s,
            c.without.ops_per_s,
            c.overhead_percent,
            c.with.cpu_per_op_s * 1e9,
            c.without.cpu_per_op_s * 1e9,
            c.recording_cpu_s * 1e9,
            c.with.writer_cpu_per_op_s * 1e9,
        );
        match target {
            Target::Noop => noop.push(c),
            Target::Echo => echo.push(c),
        }
    }
    // The absolute cost: what recording adds to each op's CPU against the no-op target, where
    // nothing else competes with it, split between the caller and the writer thread.
    let cost_s = median(noop.iter().map(|c| c.recording_cpu_s).collect());
    let writer_s = median(noop.iter().map(|c| c.with.writer_cpu_per_op_s).collect());
    println!(
        "recording costs {:.0} ns of CPU per op ({:.0} ns in the caller, {:.0} ns in the writer thread): at 20000 ops/s that is {:.1}% of this machine's {} cores",
        cost_s * 1e9,
        (cost_s - writer_s).max(0.0) * 1e9,
        writer_s * 1e9,
        cost_s * 20_000.0 / cores() * 100.0,
        cores()
    );
    let bare = median(noop.iter().map(|c| c.overhead_percent).collect());
    let floor = median(noop.iter().filter_map(|c| c.stamp_only_percent).collect());
    println!(
        "against the bare loop (no-op target, {:.0} ns of CPU per op without recording): {bare:.1}% fewer ops/s with recording; the loop does nothing else, so this is large by construction",
        median(noop.iter().map(|c| c.without.cpu_per_op_s).collect()) * 1e9
    );
    println!(
        "the floor under any recorder there: giving each event an index and a time, keeping nothing, already makes {floor:.1}% fewer ops/s than the bare loop (per cell: {})",
        noop.iter()
            .zip([1, 10, 100])
            .map(|(c, n)| format!("{n}: {:.1}%", c.stamp_only_percent.unwrap_or(f64::NAN)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // At a real call's rate the writer wakes for fewer events at a time, so recording's CPU
    // per op is measured again there rather than carried over from the no-op target.
    for (c, concurrency) in echo.iter().zip([1, 10]) {
        println!(
            "against a loopback TCP round trip at concurrency {concurrency} ({:.1} µs per op, {:.1} µs of CPU per op unrecorded): {:.1}% fewer ops/s with recording; recording adds {:.0} ns of CPU per op there, {:.1}% of the round trip's",
            1e6 * concurrency as f64 / c.without.ops_per_s,
            c.without.cpu_per_op_s * 1e6,
            c.overhead_percent,
            c.recording_cpu_s * 1e9,
            c.recording_cpu_s / c.without.cpu_per_op_s * 100.0
        );
    }
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

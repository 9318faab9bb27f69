//! A small stand-in for what `splitbrain run` does with an adapter: concurrent clients record
//! every call into a history while a nemesis kills and restarts the server once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use histories::{F, History, Key, Op, OpType, Process, Value};
use targets::{Completion, Db, Invocation};
use tokio::time::Instant;

use crate::adapter::OneRedis;

pub const WORKERS: u64 = 4;
const KEYS: i64 = 3;
pub const RUN: Duration = Duration::from_secs(2);
/// Each worker stops after this many calls even if time is left.
const CALLS_PER_WORKER: usize = 200;
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
pub const KILL_AT: Duration = Duration::from_millis(700);
pub const RESTART_AT: Duration = Duration::from_millis(1200);

/// The history, line by line as things happen. One lock orders the lines: an invocation is
/// recorded before its request leaves, its completion after the answer came back, so the
/// order of lines is a real-time order the checker can trust.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    /// Times count from now.
    fn default() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Recorder {
    pub fn invoked(&self, process: u64, call: &Invocation) {
        self.push(
            Process::Client(process),
            OpType::Invoke,
            call,
            call.value.clone(),
            None,
        );
    }

    pub fn completed(&self, process: u64, call: &Invocation, done: Completion) {
        self.push(
            Process::Client(process),
            done.kind,
            call,
            done.value,
            Some((done.node, done.error)),
        );
    }

    /// A fault, as Jepsen records one: `invoke`, then `info` once done (with the error if any).
    pub fn nemesis(&self, kind: OpType, f: &str, error: Option<String>) {
        let call = Invocation {
            f: F::Other(f.into()),
            key: None,
            value: Value::Str("n1".into()),
        };
        let error = (kind != OpType::Invoke).then_some((Some("n1".into()), error));
        self.push(Process::Nemesis, kind, &call, call.value.clone(), error);
    }

    fn push(
        &self,
        process: Process,
        kind: OpType,
        call: &Invocation,
        value: Value,
        completion: Option<(Option<String>, Option<String>)>,
    ) {
        let mut ops = self.ops.lock().expect("lock");
        let (node, error) = completion.unwrap_or_default();
        let index = ops.len() as u64;
        ops.push(Op {
            index,
            time_ns: self.start.elapsed().as_nanos() as u64,
            process,
            kind,
            f: call.f.clone(),
            key: call.key.clone(),
            value,
            node,
            error,
        });
    }

    pub fn history(&self) -> anyhow::Result<History> {
        let ops = self.ops.lock().expect("lock").clone();
        History::from_ops(ops).map_err(|e| anyhow::anyhow!("op {}: {}", e.position, e.message))
    }
}

/// Runs [`WORKERS`] clients for [`RUN`] (at most [`CALLS_PER_WORKER`] calls each); kills
/// the server at [`KILL_AT`] and restarts it at [`RESTART_AT`].
pub async fn run(db: Arc<OneRedis>) -> anyhow::Result<History> {
    let rec = Recorder::default();
    let end = Instant::now() + RUN;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, Arc::clone(&db), rec.clone(), end)))
        .collect();
    // The nemesis, through the capability the target offers.
    let kill = db.kill().expect("OneRedis offers Kill");
    tokio::time::sleep_until(rec.start + KILL_AT).await;
    rec.nemesis(OpType::Invoke, "kill", None);
    let killed = kill.kill("n1").await;
    rec.nemesis(
        OpType::Info,
        "kill",
        killed.as_ref().err().map(|e| format!("{e:#}")),
    );
    tokio::time::sleep_until(rec.start + RESTART_AT).await;
    rec.nemesis(OpType::Invoke, "start", None);
    let started = kill.restart("n1").await;
    rec.nemesis(
        OpType::Info,
        "start",
        started.as_ref().err().map(|e| format!("{e:#}")),
    );
    for w in workers {
        w.await?;
    }
    killed?;
    started?;
    rec.history()
}

/// One client worker. After an `info` its process counts as crashed (the call may still take
/// effect at any time), so it goes on as a new process with a new client, as Jepsen does.
async fn worker(w: u64, db: Arc<OneRedis>, rec: Recorder, end: Instant) {
    let mut process = w;
    let mut client = db.client(process);
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(w + 1);
    for _ in 0..CALLS_PER_WORKER {
        if Instant::now() >= end {
            break;
        }
        let call = next_call(&mut seed);
        rec.invoked(process, &call);
        let done = client.invoke(&call, CALL_TIMEOUT).await;
        let kind = done.kind;
        rec.completed(process, &call, done);
        if kind == OpType::Info {
            process += WORKERS;
            client = db.client(process);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A read, a write or a cas of small values on one of [`KEYS`] keys, so that calls collide.
fn next_call(seed: &mut u64) -> Invocation {
    // xorshift64: seeded choices without a dependency.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let r = *seed;
    let small = |shift: u32| Value::Int(((r >> shift) % 5) as i64);
    let (f, value) = match (r >> 8) % 3 {
        0 => (F::Read, Value::Nil),
        1 => (F::Write, small(16)),
        _ => (F::Cas, Value::List(vec![small(16), small(24)])),
    };
    Invocation {
        f,
        key: Some(Key::Int((r % KEYS as u64) as i64)),
        value,
    }
}

//! The history recorder: stamps each event with its index and time under one lock, so the
//! order of lines is the real-time order, and hands the events to a writer thread that
//! serializes, appends and flushes them in batches (group commit): it wakes on the first event
//! after a quiet spell, waits [`GROUP_COMMIT`] for the events that follow, and writes them
//! with one system call. A controller that dies loses at most what the writer had not yet
//! flushed: the last few milliseconds of events.
//!
//! Why batches: a caller that wakes the writer pays for a futex system call, and a writer that
//! writes each line pays for a `write` per line. At the rates of a real run (tens of thousands
//! of calls per second over loopback) those dominated what recording cost, at several µs per
//! call. With one wake-up and one write per batch they are spread over the batch; a longer
//! wait spreads them further (1 ms cost the writer about twice the CPU per event of 5 ms at
//! 60 000 calls per second) but lengthens what a killed controller loses.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use histories::{F, Key, Op, OpType, Process, Value};

/// Most events waiting for the writer; recording blocks beyond this rather than grow memory.
const MAX_PENDING_EVENTS: usize = 100_000;

/// How long the writer, woken by an event, waits for more before writing them all.
pub const GROUP_COMMIT: Duration = Duration::from_millis(5);

/// A batch this large is written at once, without waiting out [`GROUP_COMMIT`].
const BATCH_EVENTS: usize = 8192;

/// What a worker or the nemesis reports; the recorder adds index and time.
#[derive(Debug, Clone)]
pub struct Event {
    pub process: Process,
    pub kind: OpType,
    pub f: F,
    pub key: Option<Key>,
    pub value: Value,
    pub node: Option<String>,
    pub error: Option<String>,
}

/// Events recorded so far, by kind (for the live progress line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub invoke: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Nemesis events (invocations and completions).
    pub nemesis: u64,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Op>,
    next_index: u64,
    counts: Counts,
    /// The writer sleeps on `arrived` until an event comes; only then does a recorded event
    /// need to wake it (a condvar notification is a system call, too dear to pay on every
    /// event). While it gathers a batch it is not waiting in this sense: only a full batch
    /// wakes it early.
    writer_waiting: bool,
    closed: bool,
    /// Set by the writer when the file cannot be written; recording then stops.
    failed: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when events arrive or the recorder closes.
    arrived: Condvar,
    /// Signalled when the writer has taken the pending events.
    drained: Condvar,
    start: Instant,
}

/// A cheap, cloneable handle for recording events.
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

/// The writer thread; `finish` closes the recorder and waits for the fsync.
#[derive(Debug)]
pub struct RecorderWriter {
    shared: Arc<Shared>,
    thread: JoinHandle<std::io::Result<u64>>,
}

impl Recorder {
    /// Creates the history file and starts the writer thread.
    pub fn create(path: &Path, start: Instant) -> std::io::Result<(Recorder, RecorderWriter)> {
        let mut writer = histories::jsonl::Writer::create(path)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            drained: Condvar::new(),
            start,
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                let mut batch = Vec::new();
                loop {
                    {
                        let mut state = for_thread.state.lock().expect("recorder lock");
                        while state.pending.is_empty() && !state.closed {
                            state.writer_waiting = true;
                            state = for_thread.arrived.wait(state).expect("recorder lock");
                            state.writer_waiting = false;
                        }
                        if state.pending.is_empty() && state.closed {
                            break;
                        }
                        // Group commit; bounded by the deadline (spurious wake-ups included).
                        let deadline = Instant::now() + GROUP_COMMIT;
                        while !state.closed && state.pending.len() < BATCH_EVENTS {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            state = for_thread
                                .arrived
                                .wait_timeout(state, left)
                                .expect("recorder lock")
                                .0;
                        }
                        std::mem::swap(&mut batch, &mut state.pending);
                        for_thread.drained.notify_all();
                    }
                    let written = batch
                        .iter()
                        .try_for_each(|op| writer.append(op))
                        .and_then(|()| writer.flush());
                    if let Err(e) = written {
                        let mut state = for_thread.state.lock().expect("recorder lock");
                        state.failed = Some(e.to_string());
                        for_thread.drained.notify_all();
                        return Err(e);
                    }
                    batch.clear();
                }
                writer.finish()
            })?;
        Ok((
            Recorder {
                shared: Arc::clone(&shared),
            },
            RecorderWriter { shared, thread },
        ))
    }

    /// Records one event now and returns its index. The time is taken under the same lock
    /// that assigns the index: the history's line order is its time order.
    pub fn record(&self, event: Event) -> u64 {
        let mut state = self.shared.state.lock().expect("recorder lock");
        while state.pending.len() >= MAX_PENDING_EVENTS && state.failed.is_none() {
            state = self.shared.drained.wait(state).expect("recorder lock");
        }
        let index = state.next_index;
        state.next_index += 1;
        let c = &mut state.counts;
        match (event.process, event.kind) {
            (Process::Nemesis, _) => c.nemesis += 1,
            (_, OpType::Invoke) => c.invoke += 1,
            (_, OpType::Ok) => c.ok += 1,
            (_, OpType::Fail) => c.fail += 1,
            (_, OpType::Info) => c.info += 1,
        }
        let time_ns = u64::try_from(self.shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if state.failed.is_none() && !state.closed {
            state.pending.push(Op {
                index,
                time_ns,
                process: event.process,
                kind: event.kind,
                f: event.f,
                key: event.key,
                value: event.value,
                node: event.node,
                error: event.error,
            });
            if state.writer_waiting || state.pending.len() == BATCH_EVENTS {
                self.shared.arrived.notify_one();
            }
        }
        index
    }

    /// What has been recorded so far.
    pub fn counts(&self) -> Counts {
        self.shared.state.lock().expect("recorder lock").counts
    }

    /// Nanoseconds since the test started.
    pub fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl RecorderWriter {
    /// Stops recording, writes what is pending, fsyncs, and returns the number of ops written.
    pub fn finish(self) -> std::io::Result<u64> {
        {
            let mut state = self.shared.state.lock().expect("recorder lock");
            state.closed = true;
            self.shared.arrived.notify_all();
        }
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("the history writer thread panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: u64, kind: OpType) -> Event {
        Event {
            process: Process::Client(process),
            kind,
            f: F::Read,
            key: Some(Key::Int(1)),
            value: Value::Nil,
            node: None,
            error: None,
        }
    }

    #[test]
    fn concurrent_recording_gives_a_well_formed_time_ordered_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let (recorder, writer) = Recorder::create(&path, Instant::now()).unwrap();
        std::thread::scope(|s| {
            for p in 0..8 {
                let recorder = recorder.clone();
                s.spawn(move || {
                    for _ in 0..500 {
                        recorder.record(event(p, OpType::Invoke));
                        recorder.record(event(p, OpType::Ok));
                    }
                });
            }
        });
        assert_eq!(writer.finish().unwrap(), 8000);
        let read = histories::jsonl::read_file(&path).unwrap();
        let ops = read.history.ops();
        assert_eq!(ops.len(), 8000);
        for (i, pair) in ops.windows(2).enumerate() {
            assert_eq!(pair[0].index, i as u64);
            assert!(pair[0].time_ns <= pair[1].time_ns, "time goes back at {i}");
        }
    }

    #[test]
    fn lines_are_on_disk_before_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let (recorder, writer) = Recorder::create(&path, Instant::now()).unwrap();
        recorder.record(event(0, OpType::Invoke));
        // The writer flushes as soon as it has caught up; poll (bounded) for the line.
        let mut seen = false;
        for _ in 0..200 {
            if std::fs::read_to_string(&path).unwrap().lines().count() == 1 {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            seen,
            "the invoke line was not flushed while the run was going on"
        );
        writer.finish().unwrap();
    }
}

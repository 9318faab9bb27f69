//! A seeded generator of transactional histories: concurrent clients against a simulated
//! database that runs each transaction atomically at one instant between its invocation and its
//! completion, so the histories are strictly serializable unless an anomaly is injected on
//! purpose. For benchmarks, property tests and `splitbrain gen`.
//!
//! ```
//! use checkers::txn::synth::{generate, GenOptions};
//! use checkers::txn::{check, TxnOptions, Workload};
//! use checkers::Validity;
//!
//! let generated = generate(&GenOptions { txns: 500, seed: 7, ..GenOptions::default() });
//! let verdict = check(&generated.history, &TxnOptions::new(Workload::ListAppend));
//! assert_eq!(verdict.valid, Validity::True, "{}", verdict.summary);
//! ```

use histories::{F, History, Key, MicroF, MicroOp, Op, OpType, Process, Value};

use super::Workload;

/// An anomaly the simulated database commits on purpose, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// A read misses the latest append (or write) to a key although its writer completed before
    /// the reader was invoked: serializable, but not strict-serializable (G-single-realtime).
    StaleRead,
    /// A failed transaction's append is applied anyway and then read (G1a). List-append only.
    AbortedRead,
    /// Two transactions read the same state of a key and both append to it (lost-update).
    /// List-append only.
    LostUpdate,
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub workload: Workload,
    /// Transactions to complete.
    pub txns: usize,
    /// Concurrent client workers.
    pub processes: usize,
    /// Keys in use at any time; a key is retired after `max_writes_per_key` writes.
    pub keys: usize,
    pub max_writes_per_key: usize,
    /// Micro-ops per transaction.
    pub mops_per_txn: usize,
    /// Chance, in thousandths, that a transaction fails without effect.
    pub fail_permille: u32,
    /// Chance, in thousandths, that a transaction ends `info` (it took effect half the time).
    pub info_permille: u32,
    pub seed: u64,
    pub inject: Option<Inject>,
    /// No anomaly is injected before this many transactions have completed.
    pub inject_after: usize,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            workload: Workload::ListAppend,
            txns: 1000,
            processes: 10,
            keys: 10,
            max_writes_per_key: 16,
            mops_per_txn: 4,
            fail_permille: 5,
            info_permille: 5,
            seed: 0,
            inject: None,
            inject_after: 0,
        }
    }
}

/// A generated history, and what was injected into it, if anything took.
#[derive(Debug, Clone)]
pub struct Generated {
    pub history: History,
    pub injected: Option<String>,
}

/// SplitMix64: small, seeded, good enough for workloads.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn permille(&mut self, p: u32) -> bool {
        (self.next() % 1000) < p as u64
    }
}

/// A planned micro-op: (is a write, key, value written).
type Plan = Vec<(bool, u64, i64)>;

#[derive(Debug)]
enum Worker {
    Idle,
    Invoked {
        seq: usize,
        invoke_index: u64,
        plan: Plan,
    },
    Done {
        seq: usize,
        kind: OpType,
        value: Value,
    },
}

#[derive(Debug, Default, Clone)]
struct KeyState {
    /// List-append: the list; rw-register: the successive values.
    values: Vec<i64>,
    /// Writer (transaction sequence number) of each value.
    writers: Vec<usize>,
    /// Whether that writer read the key just before writing it.
    read_first: Vec<bool>,
}

/// Generates a history as described by `opts`.
pub fn generate(opts: &GenOptions) -> Generated {
    let mut rng = Rng(opts.seed ^ 0x5EED_0000_0000_0001);
    let nkeys = opts.keys.max(1);
    let mut active: Vec<u64> = (0..nkeys as u64).collect();
    // Every key ever used, by number; retired keys stay readable by transactions in flight.
    let mut db: Vec<KeyState> = vec![KeyState::default(); nkeys];
    let mut next_value: i64 = 0;
    let nworkers = opts.processes.max(1);
    let mut workers: Vec<Worker> = (0..nworkers).map(|_| Worker::Idle).collect();
    let mut process: Vec<u64> = (0..nworkers as u64).collect();
    // Per transaction (by sequence number): its completion index once completed ok, and
    // whether it ran and will complete ok.
    let mut completed_at: Vec<Option<u64>> = Vec::new();
    let mut will_be_ok: Vec<bool> = Vec::new();
    let mut ops: Vec<Op> = Vec::with_capacity(opts.txns * 2 + 16);
    let mut started = 0usize;
    let mut finished = 0usize;
    let mut injected: Option<String> = None;
    // An aborted append that was applied, waiting for a committed read: (key, value, words).
    let mut pending_abort: Option<(u64, i64, String)> = None;
    let append = opts.workload == Workload::ListAppend;
    let mops = opts.mops_per_txn.max(1);

    let emit = |ops: &mut Vec<Op>, p: u64, kind: OpType, value: Value| {
        let index = ops.len() as u64;
        ops.push(Op {
            index,
            time_ns: index * 1000,
            process: Process::Client(p),
            kind,
            f: F::Txn,
            key: None,
            value,
            node: None,
            error: None,
        });
        index
    };
    let mop = |write: bool, k: u64, v: Value| MicroOp {
        f: match (write, append) {
            (false, _) => MicroF::Read,
            (true, true) => MicroF::Append,
            (true, false) => MicroF::Write,
        },
        key: Key::Int(k as i64),
        value: v,
    };
    let invoke_value = |plan: &Plan| {
        Value::Txn(
            plan.iter()
                .map(|&(wr, k, v)| mop(wr, k, if wr { Value::Int(v) } else { Value::Nil }))
                .collect(),
        )
    };

    while finished < opts.txns {
        let w = rng.below(nworkers);
        let state = std::mem::replace(&mut workers[w], Worker::Idle);
        workers[w] = match state {
            Worker::Idle if started < opts.txns => {
                let mut plan: Plan = Vec::with_capacity(mops);
                if let Some((k, _, _)) = &pending_abort {
                    plan.push((false, *k, 0));
                }
                while plan.len() < mops {
                    let k = active[rng.below(active.len())];
                    // Now and then read a key and then write it, as read-modify-write clients do.
                    if plan.len() + 1 < mops && rng.permille(250) {
                        plan.push((false, k, 0));
                        next_value += 1;
                        plan.push((true, k, next_value));
                        continue;
                    }
                    if rng.permille(500) {
                        next_value += 1;
                        plan.push((true, k, next_value));
                    } else {
                        plan.push((false, k, 0));
                    }
                }
                let invoke_index = emit(&mut ops, process[w], OpType::Invoke, invoke_value(&plan));
                let seq = started;
                started += 1;
                completed_at.push(None);
                will_be_ok.push(false);
                Worker::Invoked {
                    seq,
                    invoke_index,
                    plan,
                }
            }
            Worker::Idle => Worker::Idle,
            Worker::Invoked {
                seq,
                invoke_index,
                plan,
            } => {
                let can_inject =
                    injected.is_none() && pending_abort.is_none() && finished >= opts.inject_after;
                let fails = rng.permille(opts.fail_permille);
                let info = !fails && rng.permille(opts.info_permille);
                if fails {
                    if can_inject && opts.inject == Some(Inject::AbortedRead) && append {
                        if let Some(&(_, k, v)) = plan.iter().find(|p| p.0) {
                            apply(&mut db, k, v, seq, false);
                            pending_abort = Some((
                                k,
                                v,
                                format!(
                                    "aborted read: the failed transaction invoked at index {invoke_index} appended {v} to key {k}, and it stayed visible"
                                ),
                            ));
                        }
                    }
                    Worker::Done {
                        seq,
                        kind: OpType::Fail,
                        value: invoke_value(&plan),
                    }
                } else if info && rng.permille(500) {
                    // Crashed before taking effect.
                    Worker::Done {
                        seq,
                        kind: OpType::Info,
                        value: invoke_value(&plan),
                    }
                } else {
                    // Run the transaction atomically, now.
                    will_be_ok[seq] = !info;
                    let mut done: Vec<MicroOp> = Vec::with_capacity(plan.len());
                    for (i, &(wr, k, v)) in plan.iter().enumerate() {
                        let first_access = !plan[..i].iter().any(|p| p.1 == k);
                        if wr {
                            let read_first = i > 0 && first_access_is_read(&plan, k);
                            apply(&mut db, k, v, seq, read_first);
                            done.push(mop(true, k, Value::Int(v)));
                            continue;
                        }
                        let ks = &db[k as usize];
                        let mut upto = ks.values.len();
                        if can_inject && injected.is_none() && !info && first_access && upto > 0 {
                            let last = ks.writers[upto - 1];
                            let stale = match opts.inject {
                                Some(Inject::StaleRead) => {
                                    completed_at[last].is_some_and(|c| c < invoke_index)
                                }
                                Some(Inject::LostUpdate) => {
                                    append
                                        && last != seq
                                        && will_be_ok[last]
                                        && ks.read_first[upto - 1]
                                        && (upto < 2 || ks.writers[upto - 2] != last)
                                        && plan[i + 1..].iter().any(|p| p.0 && p.1 == k)
                                }
                                _ => false,
                            };
                            if stale {
                                upto -= 1;
                                injected = Some(format!(
                                    "{} at index {invoke_index}: key {k} read without its latest {} ({})",
                                    if opts.inject == Some(Inject::LostUpdate) {
                                        "lost update"
                                    } else {
                                        "stale read"
                                    },
                                    if append { "append" } else { "write" },
                                    ks.values[upto]
                                ));
                            }
                        }
                        if !info {
                            if let Some((pk, _, words)) = &pending_abort {
                                if *pk == k {
                                    injected = Some(words.clone());
                                    pending_abort = None;
                                }
                            }
                        }
                        let value = if append {
                            Value::List(ks.values[..upto].iter().map(|&x| Value::Int(x)).collect())
                        } else if upto == 0 {
                            Value::Nil
                        } else {
                            Value::Int(ks.values[upto - 1])
                        };
                        done.push(mop(false, k, value));
                    }
                    for &(wr, k, _) in &plan {
                        if wr && db[k as usize].values.len() >= opts.max_writes_per_key.max(1) {
                            if let Some(slot) = active.iter().position(|&a| a == k) {
                                active[slot] = db.len() as u64;
                                db.push(KeyState::default());
                            }
                        }
                    }
                    Worker::Done {
                        seq,
                        kind: if info { OpType::Info } else { OpType::Ok },
                        value: if info {
                            invoke_value(&plan)
                        } else {
                            Value::Txn(done)
                        },
                    }
                }
            }
            Worker::Done { seq, kind, value } => {
                let index = emit(&mut ops, process[w], kind, value);
                if kind == OpType::Ok {
                    completed_at[seq] = Some(index);
                }
                if kind == OpType::Info {
                    // Jepsen: a process that crashed continues under a new number.
                    process[w] += nworkers as u64;
                }
                finished += 1;
                Worker::Idle
            }
        };
    }
    let history = History::from_ops(ops).unwrap_or_else(|e| {
        unreachable!("the generator emits well-formed histories: {}", e.message)
    });
    Generated { history, injected }
}

/// Whether the first micro-op of `plan` on key `k` is a read.
fn first_access_is_read(plan: &Plan, k: u64) -> bool {
    plan.iter().find(|p| p.1 == k).is_some_and(|p| !p.0)
}

fn apply(db: &mut [KeyState], k: u64, v: i64, seq: usize, read_first: bool) {
    let ks = &mut db[k as usize];
    ks.values.push(v);
    ks.writers.push(seq);
    ks.read_first.push(read_first);
}

//! Workload generators: pure, seeded sources of operations. The same seed gives the same
//! sequence of invocations; which worker performs which one depends on timing.

use std::sync::{Arc, Mutex};

use histories::{F, Key, MicroF, MicroOp, OpType, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use targets::Invocation;

/// Shape of the register workload.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// How many keys are in use at once.
    pub active_keys: usize,
    /// Invocations per key before it is retired and a fresh key takes its place. Like Jepsen's
    /// independent keys, this keeps each key's history small enough to check exhaustively.
    pub ops_per_key: u32,
    /// Values written are drawn from `0..value_range`; a small range makes cas succeed often.
    pub value_range: i64,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            active_keys: 3,
            ops_per_key: 120,
            value_range: 5,
        }
    }
}

/// Reads, writes and compare-and-sets on integer registers, on a rolling window of keys.
#[derive(Debug)]
pub struct RegisterWorkload {
    rng: ChaCha8Rng,
    config: RegisterConfig,
    /// (key, invocations left) for each active key.
    active: Vec<(i64, u32)>,
    next_key: i64,
}

impl RegisterWorkload {
    pub fn new(seed: u64, config: RegisterConfig) -> RegisterWorkload {
        let active_keys = config.active_keys.max(1);
        let active = (0..active_keys as i64)
            .map(|k| (k, config.ops_per_key.max(1)))
            .collect();
        RegisterWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            active,
            next_key: active_keys as i64,
        }
    }
}

impl Source for RegisterWorkload {
    fn next_invocation(&mut self) -> Invocation {
        let slot = self.rng.random_range(0..self.active.len());
        let key = self.active[slot].0;
        self.active[slot].1 -= 1;
        if self.active[slot].1 == 0 {
            self.active[slot] = (self.next_key, self.config.ops_per_key.max(1));
            self.next_key += 1;
        }
        let range = self.config.value_range.max(1);
        let (f, value) = match self.rng.random_range(0..4) {
            0 | 1 => (F::Read, Value::Nil),
            2 => (F::Write, Value::Int(self.rng.random_range(0..range))),
            _ => (
                F::Cas,
                Value::List(vec![
                    Value::Int(self.rng.random_range(0..range)),
                    Value::Int(self.rng.random_range(0..range)),
                ]),
            ),
        };
        Invocation {
            f,
            key: Some(Key::Int(key)),
            value,
        }
    }
}

/// Where a worker's next call comes from, and what it learns from the outcome. Register
/// workers share one seeded sequence; session workers each own theirs.
pub trait Source: Send {
    fn next_invocation(&mut self) -> Invocation;
    /// The outcome of the call this source gave last.
    fn completed(&mut self, _call: &Invocation, _kind: OpType) {}
}

/// Shape of the session workload.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Keys each worker writes at a time.
    pub keys_per_worker: usize,
    /// Writes to a key before its writer retires it for a fresh one (keeps each key's
    /// history small enough for the linearizability search).
    pub writes_per_key: u32,
    /// Share of calls that are `exec` statements (`set now()`, `set rand()`) on their own
    /// keys: what a statement-based replication log evaluates again on every replica.
    pub statement_share: f64,
    /// How many statement keys there are; they start at [`STATEMENT_KEY_BASE`].
    pub statement_keys: i64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            keys_per_worker: 2,
            writes_per_key: 25,
            statement_share: 0.05,
            statement_keys: 4,
        }
    }
}

/// Statement keys live far above the session keys so the two never meet.
pub const STATEMENT_KEY_BASE: i64 = 1_000_000_000;

/// The session workload: every key has one writer at a time, which writes it the values
/// 1, 2, 3, ... and abandons it after an indeterminate write, so a key's version order is the
/// numeric order of its values (the contract of `checkers::session`). Every worker reads its
/// own keys (read-your-writes) and everybody else's (monotonic reads, consistent prefix).
#[derive(Debug)]
pub struct SessionWorkload {
    rng: ChaCha8Rng,
    config: SessionConfig,
    worker: usize,
    workers: usize,
    /// (key, next value, writes left) for each key this worker writes now.
    own: Vec<(i64, i64, u32)>,
    /// How many keys this worker has taken so far.
    generations: i64,
    /// Every worker's current keys, for reads of other workers' keys.
    active: Arc<Mutex<Vec<i64>>>,
}

impl SessionWorkload {
    /// The workload of worker `worker` of `workers`; all of them share `active`, which
    /// [`SessionWorkload::shared_keys`] makes.
    pub fn new(
        seed: u64,
        worker: usize,
        workers: usize,
        config: SessionConfig,
        active: Arc<Mutex<Vec<i64>>>,
    ) -> SessionWorkload {
        let mut w = SessionWorkload {
            rng: ChaCha8Rng::seed_from_u64(
                seed.wrapping_mul(0x9e37_79b9).wrapping_add(worker as u64),
            ),
            worker,
            workers: workers.max(1),
            own: Vec::new(),
            generations: 0,
            config,
            active,
        };
        for _ in 0..w.config.keys_per_worker.max(1) {
            let key = w.fresh_key();
            w.own.push((key, 1, w.config.writes_per_key.max(1)));
        }
        w
    }

    /// The shared list of current keys for `workers` workers of this shape.
    pub fn shared_keys(workers: usize, config: &SessionConfig) -> Arc<Mutex<Vec<i64>>> {
        let per = config.keys_per_worker.max(1);
        let keys = (0..per as i64)
            .flat_map(|g| (0..workers as i64).map(move |w| g * workers as i64 + w))
            .collect();
        Arc::new(Mutex::new(keys))
    }

    /// Worker w's g-th key is g * workers + w: disjoint between workers, no coordination.
    fn fresh_key(&mut self) -> i64 {
        let key = self.generations * self.workers as i64 + self.worker as i64;
        self.generations += 1;
        key
    }

    fn retire(&mut self, slot: usize) {
        let old = self.own[slot].0;
        let key = self.fresh_key();
        self.own[slot] = (key, 1, self.config.writes_per_key.max(1));
        let mut active = self.active.lock().expect("session keys lock");
        match active.iter().position(|&k| k == old) {
            Some(i) => active[i] = key,
            None => active.push(key),
        }
    }
}

impl Source for SessionWorkload {
    fn next_invocation(&mut self) -> Invocation {
        if self.config.statement_keys > 0
            && self
                .rng
                .random_bool(self.config.statement_share.clamp(0.0, 1.0))
        {
            let key = STATEMENT_KEY_BASE + self.rng.random_range(0..self.config.statement_keys);
            let stmt = if self.rng.random_bool(0.5) {
                "set now()"
            } else {
                "set rand()"
            };
            return Invocation {
                f: F::Other("exec".into()),
                key: Some(Key::Int(key)),
                value: Value::Str(stmt.into()),
            };
        }
        let slot = self.rng.random_range(0..self.own.len());
        if self.rng.random_bool(0.5) {
            let (key, value, left) = &mut self.own[slot];
            let call = Invocation {
                f: F::Write,
                key: Some(Key::Int(*key)),
                value: Value::Int(*value),
            };
            *value += 1;
            *left -= 1;
            if *left == 0 {
                self.retire(slot);
            }
            return call;
        }
        // A third of the reads go to this worker's own keys, the rest anywhere.
        let key = if self.rng.random_range(0..3) == 0 {
            self.own[slot].0
        } else {
            let active = self.active.lock().expect("session keys lock");
            active[self.rng.random_range(0..active.len())]
        };
        Invocation {
            f: F::Read,
            key: Some(Key::Int(key)),
            value: Value::Nil,
        }
    }

    /// After an indeterminate write the key is abandoned: the write may still land at any
    /// time, and a later, larger value written after it would break the numeric version order.
    fn completed(&mut self, call: &Invocation, kind: OpType) {
        if kind != OpType::Info || call.f != F::Write {
            return;
        }
        if let Some(slot) = self
            .own
            .iter()
            .position(|(k, ..)| Some(&Key::Int(*k)) == call.key.as_ref())
        {
            self.retire(slot);
        }
    }
}

/// Keys in use at once and calls per key before a fresh key takes over, for the shared
/// workloads of the designs without a single leader.
#[derive(Debug, Clone)]
pub struct RollingKeys {
    pub active_keys: usize,
    pub ops_per_key: u32,
}

impl RollingKeys {
    fn start(&self) -> Vec<(i64, u32)> {
        (0..self.active_keys.max(1) as i64)
            .map(|k| (k, self.ops_per_key.max(1)))
            .collect()
    }

    /// Picks an active key and counts the call against it, retiring it when spent.
    fn pick(&self, rng: &mut ChaCha8Rng, active: &mut [(i64, u32)], next_key: &mut i64) -> i64 {
        let slot = rng.random_range(0..active.len());
        let key = active[slot].0;
        active[slot].1 -= 1;
        if active[slot].1 == 0 {
            active[slot] = (*next_key, self.ops_per_key.max(1));
            *next_key += 1;
        }
        key
    }
}

/// The conflicts workload: every client writes unique values to the same few keys (at its
/// own node in the multi-leader and leaderless designs) and reads them, so concurrent writes
/// of a key meet and the design's conflict resolution shows: last-write-wins drops some,
/// siblings keep them. Values are unique over the run, which lets `lost-writes-siblings`
/// and `staleness` tell every write apart.
#[derive(Debug)]
pub struct ConflictsWorkload {
    rng: ChaCha8Rng,
    keys: RollingKeys,
    active: Vec<(i64, u32)>,
    next_key: i64,
    next_value: i64,
}

impl ConflictsWorkload {
    pub fn new(seed: u64, keys: RollingKeys) -> ConflictsWorkload {
        ConflictsWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            active: keys.start(),
            next_key: keys.active_keys.max(1) as i64,
            keys,
            next_value: 1,
        }
    }
}

impl Source for ConflictsWorkload {
    fn next_invocation(&mut self) -> Invocation {
        let key = self
            .keys
            .pick(&mut self.rng, &mut self.active, &mut self.next_key);
        if self.rng.random_bool(0.5) {
            let value = self.next_value;
            self.next_value += 1;
            Invocation {
                f: F::Write,
                key: Some(Key::Int(key)),
                value: Value::Int(value),
            }
        } else {
            Invocation {
                f: F::Read,
                key: Some(Key::Int(key)),
                value: Value::Nil,
            }
        }
    }
}

/// The set workload: adds of unique elements, removals of elements added before, and reads,
/// on a few keys at a time; judged by `set-add-wins` (an add concurrent with a removal wins).
#[derive(Debug)]
pub struct SetWorkload {
    rng: ChaCha8Rng,
    keys: RollingKeys,
    active: Vec<(i64, u32)>,
    next_key: i64,
    next_element: i64,
    /// Elements handed out for adds, per key (bounded by the key's call budget).
    added: std::collections::HashMap<i64, Vec<i64>>,
}

impl SetWorkload {
    pub fn new(seed: u64, keys: RollingKeys) -> SetWorkload {
        SetWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            active: keys.start(),
            next_key: keys.active_keys.max(1) as i64,
            keys,
            next_element: 1,
            added: std::collections::HashMap::new(),
        }
    }
}

impl Source for SetWorkload {
    fn next_invocation(&mut self) -> Invocation {
        let key = self
            .keys
            .pick(&mut self.rng, &mut self.active, &mut self.next_key);
        let live: std::collections::HashSet<i64> = self.active.iter().map(|(k, _)| *k).collect();
        // Retired keys are never touched again.
        self.added.retain(|k, _| live.contains(k) || *k == key);
        let roll = self.rng.random_range(0..10);
        let (f, value) = match self.added.get(&key) {
            Some(elements) if roll < 2 && !elements.is_empty() => (
                "set-remove",
                Value::Int(elements[self.rng.random_range(0..elements.len())]),
            ),
            _ if roll < 7 => {
                let e = self.next_element;
                self.next_element += 1;
                self.added.entry(key).or_default().push(e);
                ("set-add", Value::Int(e))
            }
            _ => ("set-read", Value::Nil),
        };
        Invocation {
            f: F::Other(f.into()),
            key: Some(Key::Int(key)),
            value,
        }
    }
}

/// One workload shared by every worker: each draws the next call in turn, so the calls
/// follow the workload's one seeded sequence whatever the interleaving of the workers.
#[derive(Debug)]
pub struct Shared<W>(pub Arc<Mutex<W>>);

impl<W: Source + 'static> Shared<W> {
    /// One source per worker, all drawing from `workload`.
    pub fn for_workers(workload: W, workers: usize) -> Vec<Box<dyn Source>> {
        let shared = Arc::new(Mutex::new(workload));
        (0..workers)
            .map(|_| Box::new(Shared(Arc::clone(&shared))) as Box<dyn Source>)
            .collect()
    }
}

impl<W: Source> Source for Shared<W> {
    fn next_invocation(&mut self) -> Invocation {
        self.0.lock().expect("generator lock").next_invocation()
    }
}

/// Which transactional workload a [`TxnWorkload`] generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnKind {
    /// `[append k v]` and `[r k nil]`: every read returns the whole list, so it reveals the
    /// order of the appends before it (Elle's most informative workload).
    ListAppend,
    /// `[w k v]` and `[r k nil]` on registers.
    RwRegister,
}

/// Shape of the transactional workloads.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Keys in use at once. Few keys make transactions meet, which is what shows anomalies.
    pub active_keys: usize,
    /// Writes (appends) to a key before a fresh key takes its place: keeps lists short and
    /// each key's version order cheap to infer.
    pub writes_per_key: u32,
    /// Micro-ops per transaction: 1 to this many.
    pub max_mops: usize,
    /// Share of micro-ops that are reads.
    pub read_share: f64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            active_keys: 5,
            writes_per_key: 32,
            max_mops: 4,
            read_share: 0.5,
        }
    }
}

/// Elle-style random transactions of 1 to `max_mops` micro-ops over a rolling window of
/// keys. The values written to a key are 1, 2, 3, ... in generation order: unique per key,
/// which is what lets the checkers tell every write apart.
#[derive(Debug)]
pub struct TxnWorkload {
    rng: ChaCha8Rng,
    kind: TxnKind,
    config: TxnConfig,
    /// (key, next value, writes left) for each active key.
    active: Vec<(i64, i64, u32)>,
    next_key: i64,
}

impl TxnWorkload {
    pub fn new(seed: u64, kind: TxnKind, config: TxnConfig) -> TxnWorkload {
        let keys = config.active_keys.max(1);
        let budget = config.writes_per_key.max(1);
        TxnWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            kind,
            active: (0..keys as i64).map(|k| (k, 1, budget)).collect(),
            next_key: keys as i64,
            config,
        }
    }
}

impl Source for TxnWorkload {
    fn next_invocation(&mut self) -> Invocation {
        let count = self.rng.random_range(1..=self.config.max_mops.max(1));
        let mut mops = Vec::with_capacity(count);
        for _ in 0..count {
            let slot = self.rng.random_range(0..self.active.len());
            let key = self.active[slot].0;
            if self.rng.random_bool(self.config.read_share.clamp(0.0, 1.0)) {
                mops.push(MicroOp {
                    f: MicroF::Read,
                    key: Key::Int(key),
                    value: Value::Nil,
                });
                continue;
            }
            let (_, next, left) = &mut self.active[slot];
            let value = *next;
            *next += 1;
            *left -= 1;
            if *left == 0 {
                self.active[slot] = (self.next_key, 1, self.config.writes_per_key.max(1));
                self.next_key += 1;
            }
            mops.push(MicroOp {
                f: match self.kind {
                    TxnKind::ListAppend => MicroF::Append,
                    TxnKind::RwRegister => MicroF::Write,
                },
                key: Key::Int(key),
                value: Value::Int(value),
            });
        }
        Invocation {
            f: F::Txn,
            key: None,
            value: Value::Txn(mops),
        }
    }
}

/// The Maelstrom workloads that are not registers or transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaelstromOps {
    /// `echo "..."`: the node sends the text back.
    Echo,
    /// `generate`: the node answers a cluster-wide unique id.
    UniqueIds,
    /// `broadcast v` of unique integers, and `read`s of everything a node has seen.
    Broadcast,
    /// `add v` of unique integers to a grow-only set, and `read`s.
    GSet,
    /// `add {delta}` of 1 to 5, and `read`s of the total.
    GCounter,
    /// `add {delta}` of -5 to 5 (never 0), and `read`s of the total.
    PnCounter,
}

/// Calls of a [`MaelstromOps`] workload; values are unique over the run.
#[derive(Debug)]
pub struct MaelstromWorkload {
    rng: ChaCha8Rng,
    ops: MaelstromOps,
    next_value: i64,
}

impl MaelstromWorkload {
    pub fn new(seed: u64, ops: MaelstromOps) -> MaelstromWorkload {
        MaelstromWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            ops,
            next_value: 1,
        }
    }
}

impl Source for MaelstromWorkload {
    fn next_invocation(&mut self) -> Invocation {
        let value = self.next_value;
        let other = |f: &str, value| Invocation {
            f: F::Other(f.into()),
            key: None,
            value,
        };
        let read = Invocation {
            f: F::Read,
            key: None,
            value: Value::Nil,
        };
        // Half the calls of the set-like workloads read, so that a lost message shows.
        let reads = self.rng.random_bool(0.5);
        match self.ops {
            MaelstromOps::Echo => {
                self.next_value += 1;
                other("echo", Value::Str(format!("echo {value}")))
            }
            MaelstromOps::UniqueIds => other("generate", Value::Nil),
            MaelstromOps::Broadcast
            | MaelstromOps::GSet
            | MaelstromOps::GCounter
            | MaelstromOps::PnCounter
                if reads =>
            {
                read
            }
            MaelstromOps::GCounter | MaelstromOps::PnCounter => {
                let magnitude = self.rng.random_range(1..=5i64);
                let delta = if self.ops == MaelstromOps::PnCounter && self.rng.random_bool(0.5) {
                    -magnitude
                } else {
                    magnitude
                };
                Invocation {
                    f: F::Add,
                    key: None,
                    value: Value::Map([("delta".to_string(), Value::Int(delta))].into()),
                }
            }
            MaelstromOps::Broadcast => {
                self.next_value += 1;
                other("broadcast", Value::Int(value))
            }
            MaelstromOps::GSet => {
                self.next_value += 1;
                Invocation {
                    f: F::Add,
                    key: None,
                    value: Value::Int(value),
                }
            }
        }
    }
}

/// Moves every integer key of another source by `base`: runs against a database that
/// outlives them (an external etcd) start on keys nobody wrote, as the checkers assume.
pub struct KeyOffset {
    pub inner: Box<dyn Source>,
    pub base: i64,
}

impl std::fmt::Debug for KeyOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyOffset")
            .field("base", &self.base)
            .finish()
    }
}

impl KeyOffset {
    fn shift(&self, key: &Key) -> Key {
        match key {
            Key::Int(k) => Key::Int(k.saturating_add(self.base)),
            other => other.clone(),
        }
    }
}

impl Source for KeyOffset {
    fn next_invocation(&mut self) -> Invocation {
        let mut call = self.inner.next_invocation();
        call.key = call.key.as_ref().map(|k| self.shift(k));
        if let Value::Txn(mops) = &mut call.value {
            for m in mops.iter_mut() {
                m.key = self.shift(&m.key);
            }
        }
        call
    }

    fn completed(&mut self, call: &Invocation, kind: OpType) {
        // The inner source only looks at which of its calls finished how; give it back its
        // own keys.
        let mut own = call.clone();
        let unshift = |k: &Key| match k {
            Key::Int(k) => Key::Int(k.saturating_sub(self.base)),
            other => other.clone(),
        };
        own.key = own.key.as_ref().map(unshift);
        if let Value::Txn(mops) = &mut own.value {
            for m in mops.iter_mut() {
                m.key = unshift(&m.key);
            }
        }
        self.inner.completed(&own, kind);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflicts_write_unique_values_to_shared_keys() {
        let keys = RollingKeys {
            active_keys: 2,
            ops_per_key: 50,
        };
        let mut w = ConflictsWorkload::new(3, keys.clone());
        let calls: Vec<_> = (0..400).map(|_| w.next_invocation()).collect();
        let values: Vec<i64> = calls
            .iter()
            .filter(|c| c.f == F::Write)
            .map(|c| c.value.as_int().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<_> = values.iter().collect();
        assert_eq!(unique.len(), values.len(), "values repeat");
        assert!(calls.iter().any(|c| c.f == F::Read));
        let mut again = ConflictsWorkload::new(3, keys);
        assert_eq!(
            calls[..50],
            (0..50).map(|_| again.next_invocation()).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn set_removals_name_elements_added_to_the_same_key() {
        let mut w = SetWorkload::new(
            9,
            RollingKeys {
                active_keys: 2,
                ops_per_key: 40,
            },
        );
        let mut added: std::collections::HashMap<Option<Key>, Vec<i64>> = Default::default();
        let mut removes = 0;
        for _ in 0..600 {
            let c = w.next_invocation();
            match c.f.as_str() {
                "set-add" => added
                    .entry(c.key.clone())
                    .or_default()
                    .push(c.value.as_int().unwrap()),
                "set-remove" => {
                    removes += 1;
                    let e = c.value.as_int().unwrap();
                    assert!(added.get(&c.key).is_some_and(|v| v.contains(&e)), "{c:?}");
                }
                "set-read" => assert!(c.value.is_nil()),
                other => panic!("unexpected {other}"),
            }
        }
        assert!(
            removes > 20 && added.len() > 10,
            "{removes} removes, {} keys",
            added.len()
        );
    }

    fn session_run(seed: u64, workers: usize, n: usize) -> Vec<Vec<Invocation>> {
        let config = SessionConfig::default();
        let active = SessionWorkload::shared_keys(workers, &config);
        let mut ws: Vec<_> = (0..workers)
            .map(|w| SessionWorkload::new(seed, w, workers, config.clone(), Arc::clone(&active)))
            .collect();
        let mut out = vec![Vec::new(); workers];
        for _ in 0..n {
            for (w, g) in ws.iter_mut().enumerate() {
                let call = g.next_invocation();
                g.completed(&call, OpType::Ok);
                out[w].push(call);
            }
        }
        out
    }

    #[test]
    fn session_keys_have_one_writer_and_increasing_values() {
        let runs = session_run(5, 4, 400);
        let mut writer_of = std::collections::HashMap::new();
        let mut last_value = std::collections::HashMap::new();
        for (w, calls) in runs.iter().enumerate() {
            for c in calls.iter().filter(|c| c.f == F::Write) {
                assert_eq!(*writer_of.entry(c.key.clone()).or_insert(w), w, "{c:?}");
                let v = c.value.as_int().unwrap();
                let prev = last_value.insert(c.key.clone(), v).unwrap_or(0);
                assert_eq!(v, prev + 1, "{c:?}");
            }
        }
        assert!(
            writer_of.len() > 8,
            "keys retire and fresh ones come: {}",
            writer_of.len()
        );
        let reads = runs.iter().flatten().filter(|c| c.f == F::Read).count();
        let execs = runs
            .iter()
            .flatten()
            .filter(|c| c.f.as_str() == "exec")
            .count();
        assert!(
            reads > 500 && execs > 10,
            "{reads} reads, {execs} statements"
        );
        assert_eq!(session_run(5, 4, 50), session_run(5, 4, 50));
    }

    #[test]
    fn an_indeterminate_write_retires_its_key() {
        let config = SessionConfig {
            statement_share: 0.0,
            ..SessionConfig::default()
        };
        let active = SessionWorkload::shared_keys(1, &config);
        let mut g = SessionWorkload::new(1, 0, 1, config, active);
        let write = loop {
            let c = g.next_invocation();
            if c.f == F::Write {
                break c;
            }
        };
        g.completed(&write, OpType::Info);
        for _ in 0..200 {
            let c = g.next_invocation();
            assert!(
                c.f != F::Write || c.key != write.key,
                "wrote {c:?} after an info write"
            );
        }
    }

    use super::*;

    #[test]
    fn same_seed_same_sequence_and_different_seed_differs() {
        let take = |seed| {
            let mut w = RegisterWorkload::new(seed, RegisterConfig::default());
            (0..500).map(|_| w.next_invocation()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
    }

    #[test]
    fn keys_retire_after_their_budget() {
        let config = RegisterConfig {
            active_keys: 2,
            ops_per_key: 10,
            value_range: 5,
        };
        let mut w = RegisterWorkload::new(1, config);
        let mut per_key = std::collections::HashMap::new();
        for _ in 0..200 {
            let inv = w.next_invocation();
            *per_key.entry(inv.key.clone()).or_insert(0) += 1;
        }
        assert!(per_key.values().all(|&n| n <= 10), "{per_key:?}");
        // Only the keys still active at the end may be short of their budget.
        let unfinished = per_key.values().filter(|&&n| n < 10).count();
        assert!(unfinished <= 2, "{per_key:?}");
        assert!(per_key.len() >= 20, "{per_key:?}");
    }

    #[test]
    fn mix_contains_every_function_with_valid_arguments() {
        let mut w = RegisterWorkload::new(3, RegisterConfig::default());
        let ops: Vec<_> = (0..300).map(|_| w.next_invocation()).collect();
        assert!(ops.iter().any(|o| o.f == F::Read && o.value.is_nil()));
        assert!(
            ops.iter()
                .any(|o| o.f == F::Write && o.value.as_int().is_some())
        );
        assert!(
            ops.iter()
                .any(|o| o.f == F::Cas && o.value.as_cas().is_some())
        );
    }

    #[test]
    fn txns_have_one_to_four_micro_ops_and_unique_values_per_key() {
        for kind in [TxnKind::ListAppend, TxnKind::RwRegister] {
            let mut w = TxnWorkload::new(4, kind, TxnConfig::default());
            let mut seen = std::collections::HashSet::new();
            let mut keys = std::collections::BTreeSet::new();
            let (mut reads, mut writes) = (0, 0);
            for _ in 0..500 {
                let call = w.next_invocation();
                assert_eq!((call.f.clone(), call.key.clone()), (F::Txn, None));
                let Value::Txn(mops) = call.value else {
                    panic!("not a txn: {call:?}")
                };
                assert!((1..=4).contains(&mops.len()), "{mops:?}");
                for m in mops {
                    keys.insert(m.key.clone());
                    match m.f {
                        MicroF::Read => {
                            assert!(m.value.is_nil());
                            reads += 1;
                        }
                        f => {
                            let want = match kind {
                                TxnKind::ListAppend => MicroF::Append,
                                TxnKind::RwRegister => MicroF::Write,
                            };
                            assert_eq!(f, want);
                            assert!(seen.insert((m.key, m.value)), "a value repeats");
                            writes += 1;
                        }
                    }
                }
            }
            assert!(
                reads > 300 && writes > 300,
                "{reads} reads, {writes} writes"
            );
            assert!(keys.len() > 20, "keys roll over: {}", keys.len());
        }
        let take = |seed| {
            let mut w = TxnWorkload::new(seed, TxnKind::ListAppend, TxnConfig::default());
            (0..50).map(|_| w.next_invocation()).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
    }

    #[test]
    fn maelstrom_workloads_send_unique_values_and_read() {
        let mut b = MaelstromWorkload::new(2, MaelstromOps::Broadcast);
        let calls: Vec<_> = (0..200).map(|_| b.next_invocation()).collect();
        let sent: Vec<i64> = calls
            .iter()
            .filter(|c| c.f.as_str() == "broadcast")
            .map(|c| c.value.as_int().unwrap())
            .collect();
        assert_eq!(
            sent,
            (1..=sent.len() as i64).collect::<Vec<_>>(),
            "unique, in order"
        );
        assert!(calls.iter().any(|c| c.f == F::Read && c.key.is_none()));
        let mut e = MaelstromWorkload::new(2, MaelstromOps::Echo);
        assert_ne!(e.next_invocation(), e.next_invocation());
    }

    #[test]
    fn a_key_offset_moves_keys_and_gives_the_inner_source_its_own_back() {
        let inner = Shared(Arc::new(Mutex::new(TxnWorkload::new(
            1,
            TxnKind::ListAppend,
            TxnConfig::default(),
        ))));
        let mut shifted = KeyOffset {
            inner: Box::new(inner),
            base: 1_000,
        };
        let call = shifted.next_invocation();
        let Value::Txn(mops) = &call.value else {
            panic!("{call:?}")
        };
        assert!(
            mops.iter()
                .all(|m| matches!(m.key, Key::Int(k) if (1_000..1_005).contains(&k)))
        );
        shifted.completed(&call, OpType::Ok);
    }
}

//! The built-in models. Each reads Jepsen-shaped operations; a call that does not fit makes the
//! check answer `unknown` with the reason these functions give.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use histories::{F, Key, MicroF, Op, OpType, Value};

use super::model::{Call, Model};

// ---------------------------------------------------------------------------------------------
// Registers

/// A register of integers, absent (`nil`) at first, with `read`, `write` and `cas [from to]`.
///
/// `fail_cas_observed` picks what a `:fail :cas` means:
/// - `true` (model `register`, Porcupine's etcd convention): the compare failed, so the call
///   took effect as a read that saw a value other than `from`;
/// - `false` (model `cas-register`, Jepsen/Knossos convention): the call did not happen and is
///   dropped, like every other `:fail`.
#[derive(Debug, Clone, Copy)]
pub struct RegisterModel {
    pub fail_cas_observed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegInput {
    Read,
    Write(Option<i64>),
    Cas(Option<i64>, Option<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegOutput {
    Read(Option<i64>),
    Done,
    /// A cas whose compare failed: the value differed from `from`.
    CasFailed,
    /// Pending: nothing was observed.
    Unknown,
}

impl Model for RegisterModel {
    type State = Option<i64>;
    type Input = RegInput;
    type Output = RegOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<RegInput, RegOutput>, String> {
        let kind = completion.map_or(OpType::Info, |c| c.kind);
        match invoke.f {
            F::Read => match (kind, completion) {
                (OpType::Ok, Some(c)) => {
                    let v = register_value(&c.value, "read")?;
                    Ok(Call::Required {
                        input: RegInput::Read,
                        output: RegOutput::Read(v),
                    })
                }
                // A failed or unfinished read changes nothing and saw nothing.
                _ => Ok(Call::Skip),
            },
            F::Write => {
                let v = register_value(&invoke.value, "write")?;
                Ok(match kind {
                    OpType::Ok => Call::Required {
                        input: RegInput::Write(v),
                        output: RegOutput::Done,
                    },
                    OpType::Fail => Call::Skip,
                    _ => Call::Optional {
                        input: RegInput::Write(v),
                        output: RegOutput::Unknown,
                    },
                })
            }
            F::Cas => {
                let (from, to) = cas_value(&invoke.value)?;
                let input = RegInput::Cas(from, to);
                Ok(match kind {
                    OpType::Ok => Call::Required {
                        input,
                        output: RegOutput::Done,
                    },
                    OpType::Fail if self.fail_cas_observed => Call::Required {
                        input,
                        output: RegOutput::CasFailed,
                    },
                    OpType::Fail => Call::Skip,
                    _ => Call::Optional {
                        input,
                        output: RegOutput::Unknown,
                    },
                })
            }
            ref other => Err(format!(
                "the register models take read, write and cas; found {other}"
            )),
        }
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegInput,
        output: &RegOutput,
    ) -> Option<Option<i64>> {
        match (*input, *output) {
            (RegInput::Read, RegOutput::Read(v)) => (*state == v).then_some(*state),
            (RegInput::Read, _) => Some(*state),
            (RegInput::Write(v), _) => Some(v),
            (RegInput::Cas(from, _), RegOutput::CasFailed) => (*state != from).then_some(*state),
            // Pending cas: if it took effect it matched; a mismatch is the same as never.
            (RegInput::Cas(from, to), _) => (*state == from).then_some(to),
        }
    }

    fn read_only(&self, input: &RegInput, output: &RegOutput) -> bool {
        match (*input, *output) {
            (RegInput::Read, _) | (RegInput::Cas(_, _), RegOutput::CasFailed) => true,
            (RegInput::Cas(from, to), _) => from == to,
            (RegInput::Write(_), _) => false,
        }
    }

    /// No call is monotone, so a read can only be satisfied where it is legal.
    fn may_reach(&self, state: &Option<i64>, input: &RegInput, output: &RegOutput) -> bool {
        self.step(state, input, output).is_some()
    }

    fn reset(&self, input: &RegInput, _: &RegOutput) -> Option<Option<i64>> {
        match *input {
            RegInput::Write(v) => Some(v),
            _ => None,
        }
    }

    fn describe(&self, input: &RegInput, output: &RegOutput) -> String {
        match (input, output) {
            (RegInput::Read, RegOutput::Read(v)) => format!("read -> {}", opt(*v)),
            (RegInput::Read, _) => "read".to_string(),
            (RegInput::Write(v), _) => format!("write {}", opt(*v)),
            (RegInput::Cas(from, to), RegOutput::CasFailed) => {
                format!(
                    "cas {} -> {} (failed: value was not {})",
                    opt(*from),
                    opt(*to),
                    opt(*from)
                )
            }
            (RegInput::Cas(from, to), _) => format!("cas {} -> {}", opt(*from), opt(*to)),
        }
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        opt(*state)
    }
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "nil".to_string(), |v| v.to_string())
}

fn register_value(v: &Value, what: &str) -> Result<Option<i64>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::Int(i) => Ok(Some(*i)),
        other => Err(format!(
            "a register {what} carries an integer or nil; found {other}"
        )),
    }
}

fn cas_value(v: &Value) -> Result<(Option<i64>, Option<i64>), String> {
    if let Value::List(items) = v {
        if let [from, to] = items.as_slice() {
            return Ok((register_value(from, "cas")?, register_value(to, "cas")?));
        }
    }
    Err(format!("a cas carries [from to]; found {v}"))
}

// ---------------------------------------------------------------------------------------------
// Multi-register (Knossos): transactions of reads and writes over integer registers.

/// Registers by key, all absent at first, changed only by `txn` calls whose micro-ops are
/// `[:r k v]` and `[:w k v]`, each transaction atomic.
#[derive(Debug, Clone, Copy)]
pub struct MultiRegisterModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxnMop {
    write: bool,
    key: Key,
    /// The written value, or the value read (`None` inside: read nil).
    value: Option<i64>,
    /// For reads: whether the value was observed.
    observed: bool,
}

impl Model for MultiRegisterModel {
    /// Present keys with their values, sorted by key.
    type State = Vec<(Key, i64)>;
    type Input = Vec<TxnMop>;
    type Output = ();

    fn init(&self) -> Vec<(Key, i64)> {
        Vec::new()
    }

    fn call(&self, invoke: &Op, completion: Option<&Op>) -> Result<Call<Vec<TxnMop>, ()>, String> {
        if invoke.f != F::Txn {
            return Err(format!(
                "the multi-register model takes txn; found {}",
                invoke.f
            ));
        }
        let kind = completion.map_or(OpType::Info, |c| c.kind);
        if kind == OpType::Fail {
            return Ok(Call::Skip);
        }
        let source = match completion {
            Some(c) if kind == OpType::Ok => c,
            _ => invoke,
        };
        let Some(mops) = source.txn() else {
            return Err(format!(
                "a txn carries a list of micro-ops; found {}",
                source.value
            ));
        };
        let mut out = Vec::with_capacity(mops.len());
        for m in mops {
            let write = match m.f {
                MicroF::Write => true,
                MicroF::Read => false,
                MicroF::Append => {
                    return Err(
                        "the multi-register model takes [:r k v] and [:w k v]; found append".into(),
                    );
                }
            };
            out.push(TxnMop {
                write,
                key: m.key.clone(),
                value: register_value(&m.value, if write { "write" } else { "read" })?,
                observed: write || kind == OpType::Ok,
            });
        }
        if kind == OpType::Ok {
            Ok(Call::Required {
                input: out,
                output: (),
            })
        } else if out.iter().any(|m| m.write) {
            Ok(Call::Optional {
                input: out,
                output: (),
            })
        } else {
            Ok(Call::Skip)
        }
    }

    fn step(
        &self,
        state: &Vec<(Key, i64)>,
        input: &Vec<TxnMop>,
        _: &(),
    ) -> Option<Vec<(Key, i64)>> {
        let mut s = state.clone();
        for m in input {
            let at = s.binary_search_by(|(k, _)| k.cmp(&m.key));
            if m.write {
                match (at, m.value) {
                    (Ok(i), Some(v)) => s[i].1 = v,
                    (Ok(i), None) => {
                        s.remove(i);
                    }
                    (Err(i), Some(v)) => s.insert(i, (m.key.clone(), v)),
                    (Err(_), None) => {}
                }
            } else if m.observed {
                let current = at.ok().map(|i| s[i].1);
                if current != m.value {
                    return None;
                }
            }
        }
        Some(s)
    }

    fn read_only(&self, input: &Vec<TxnMop>, _: &()) -> bool {
        input.iter().all(|m| !m.write)
    }

    fn keys(&self, _invoke: &Op, input: &Vec<TxnMop>) -> Vec<Key> {
        input.iter().map(|m| m.key.clone()).collect()
    }

    fn describe(&self, input: &Vec<TxnMop>, _: &()) -> String {
        let mops: Vec<String> = input
            .iter()
            .map(|m| match (m.write, m.observed) {
                (true, _) => format!("[w {} {}]", m.key, opt(m.value)),
                (false, true) => format!("[r {} {}]", m.key, opt(m.value)),
                (false, false) => format!("[r {} ?]", m.key),
            })
            .collect();
        format!("txn [{}]", mops.join(" "))
    }

    fn describe_state(&self, state: &Vec<(Key, i64)>) -> String {
        let items: Vec<String> = state.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{{{}}}", items.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Key-value store of strings (Porcupine's kv).

/// One string per key, empty at first: `get` reads it, `put` replaces it, `append` adds to it.
/// A `get` that returned nil is taken as having read the empty string.
#[derive(Debug, Clone, Copy)]
pub struct KvModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    Get,
    Put(String),
    Append(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    Got(String),
    Done,
}

impl Model for KvModel {
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> String {
        String::new()
    }

    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<KvInput, KvOutput>, String> {
        let kind = completion.map_or(OpType::Info, |c| c.kind);
        let input = match invoke.f {
            F::Get => {
                return match (kind, completion) {
                    (OpType::Ok, Some(c)) => Ok(Call::Required {
                        input: KvInput::Get,
                        output: KvOutput::Got(kv_string(&c.value, "get")?),
                    }),
                    _ => Ok(Call::Skip),
                };
            }
            F::Put => KvInput::Put(kv_string(&invoke.value, "put")?),
            F::Append => KvInput::Append(kv_string(&invoke.value, "append")?),
            ref other => {
                return Err(format!(
                    "the kv model takes get, put and append; found {other}"
                ));
            }
        };
        Ok(match kind {
            OpType::Ok => Call::Required {
                input,
                output: KvOutput::Done,
            },
            OpType::Fail => Call::Skip,
            _ => Call::Optional {
                input,
                output: KvOutput::Done,
            },
        })
    }

    fn step(&self, state: &String, input: &KvInput, output: &KvOutput) -> Option<String> {
        match (input, output) {
            (KvInput::Get, KvOutput::Got(v)) => (state == v).then(|| state.clone()),
            (KvInput::Get, KvOutput::Done) => Some(state.clone()),
            (KvInput::Put(v), _) => Some(v.clone()),
            (KvInput::Append(v), _) => {
                let mut s = String::with_capacity(state.len() + v.len());
                s.push_str(state);
                s.push_str(v);
                Some(s)
            }
        }
    }

    fn read_only(&self, input: &KvInput, _: &KvOutput) -> bool {
        *input == KvInput::Get
    }

    fn monotone(&self, input: &KvInput, _: &KvOutput) -> bool {
        matches!(input, KvInput::Append(_))
    }

    /// Appends only extend the string, so a get can only still succeed if the string now
    /// begins what it read.
    fn may_reach(&self, state: &String, _: &KvInput, output: &KvOutput) -> bool {
        match output {
            KvOutput::Got(v) => v.starts_with(state.as_str()),
            KvOutput::Done => true,
        }
    }

    fn reset(&self, input: &KvInput, _: &KvOutput) -> Option<String> {
        match input {
            KvInput::Put(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn describe(&self, input: &KvInput, output: &KvOutput) -> String {
        match (input, output) {
            (KvInput::Get, KvOutput::Got(v)) => format!("get -> {v:?}"),
            (KvInput::Get, KvOutput::Done) => "get".to_string(),
            (KvInput::Put(v), _) => format!("put {v:?}"),
            (KvInput::Append(v), _) => format!("append {v:?}"),
        }
    }

    fn describe_state(&self, state: &String) -> String {
        format!("{state:?}")
    }
}

fn kv_string(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::Nil => Ok(String::new()),
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!("a kv {what} carries a string; found {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Elements of sets and queues.

/// An element of a set or queue: an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elem {
    Int(i64),
    Str(String),
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Int(i) => write!(f, "{i}"),
            Elem::Str(s) => write!(f, "{s:?}"),
        }
    }
}

fn elem(v: &Value, what: &str) -> Result<Elem, String> {
    match v {
        Value::Int(i) => Ok(Elem::Int(*i)),
        Value::Str(s) => Ok(Elem::Str(s.clone())),
        other => Err(format!(
            "{what} carries an integer or a string; found {other}"
        )),
    }
}

fn join<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Set (Knossos): add elements, read the whole set.

/// A set, empty at first: `add v` inserts, `read` returns every element (as a list).
#[derive(Debug, Clone, Copy)]
pub struct SetModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetInput {
    Add(Elem),
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetOutput {
    Read(BTreeSet<Elem>),
    Done,
}

impl Model for SetModel {
    type State = BTreeSet<Elem>;
    type Input = SetInput;
    type Output = SetOutput;

    fn init(&self) -> BTreeSet<Elem> {
        BTreeSet::new()
    }

    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<SetInput, SetOutput>, String> {
        let kind = completion.map_or(OpType::Info, |c| c.kind);
        match invoke.f {
            F::Add => {
                let input = SetInput::Add(elem(&invoke.value, "a set add")?);
                Ok(match kind {
                    OpType::Ok => Call::Required {
                        input,
                        output: SetOutput::Done,
                    },
                    OpType::Fail => Call::Skip,
                    _ => Call::Optional {
                        input,
                        output: SetOutput::Done,
                    },
                })
            }
            F::Read => match (kind, completion) {
                (OpType::Ok, Some(c)) => {
                    let Value::List(items) = &c.value else {
                        return Err(format!("a set read returns a list; found {}", c.value));
                    };
                    let set = items
                        .iter()
                        .map(|v| elem(v, "a set read"))
                        .collect::<Result<_, _>>()?;
                    Ok(Call::Required {
                        input: SetInput::Read,
                        output: SetOutput::Read(set),
                    })
                }
                _ => Ok(Call::Skip),
            },
            ref other => Err(format!("the set model takes add and read; found {other}")),
        }
    }

    fn step(
        &self,
        state: &BTreeSet<Elem>,
        input: &SetInput,
        output: &SetOutput,
    ) -> Option<BTreeSet<Elem>> {
        match (input, output) {
            (SetInput::Add(v), _) => {
                let mut s = state.clone();
                s.insert(v.clone());
                Some(s)
            }
            (SetInput::Read, SetOutput::Read(seen)) => (state == seen).then(|| state.clone()),
            (SetInput::Read, SetOutput::Done) => Some(state.clone()),
        }
    }

    fn read_only(&self, input: &SetInput, _: &SetOutput) -> bool {
        *input == SetInput::Read
    }

    fn monotone(&self, input: &SetInput, _: &SetOutput) -> bool {
        matches!(input, SetInput::Add(_))
    }

    /// Adds only grow the set, so a read can only still succeed if it saw everything in it.
    fn may_reach(&self, state: &BTreeSet<Elem>, _: &SetInput, output: &SetOutput) -> bool {
        match output {
            SetOutput::Read(seen) => state.is_subset(seen),
            SetOutput::Done => true,
        }
    }

    fn describe(&self, input: &SetInput, output: &SetOutput) -> String {
        match (input, output) {
            (SetInput::Add(v), _) => format!("add {v}"),
            (SetInput::Read, SetOutput::Read(seen)) => format!("read -> #{{{}}}", join(seen)),
            (SetInput::Read, SetOutput::Done) => "read".to_string(),
        }
    }

    fn describe_state(&self, state: &BTreeSet<Elem>) -> String {
        format!("#{{{}}}", join(state))
    }
}

// ---------------------------------------------------------------------------------------------
// FIFO queue (Knossos fifo-queue).

/// A first-in first-out queue, empty at first: `enqueue v`; `dequeue` returns the oldest
/// element, or nil when the queue was empty.
#[derive(Debug, Clone, Copy)]
pub struct QueueModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueueInput {
    Enqueue(Elem),
    Dequeue,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueueOutput {
    /// A dequeue's result: `None` = the queue was empty.
    Dequeued(Option<Elem>),
    Done,
    Unknown,
}

impl Model for QueueModel {
    type State = VecDeque<Elem>;
    type Input = QueueInput;
    type Output = QueueOutput;

    fn init(&self) -> VecDeque<Elem> {
        VecDeque::new()
    }

    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<QueueInput, QueueOutput>, String> {
        let kind = completion.map_or(OpType::Info, |c| c.kind);
        match invoke.f.as_str() {
            "enqueue" => {
                let input = QueueInput::Enqueue(elem(&invoke.value, "an enqueue")?);
                Ok(match kind {
                    OpType::Ok => Call::Required {
                        input,
                        output: QueueOutput::Done,
                    },
                    OpType::Fail => Call::Skip,
                    _ => Call::Optional {
                        input,
                        output: QueueOutput::Unknown,
                    },
                })
            }
            "dequeue" => Ok(match (kind, completion) {
                (OpType::Ok, Some(c)) => {
                    let v = match &c.value {
                        Value::Nil => None,
                        v => Some(elem(v, "a dequeue")?),
                    };
                    Call::Required {
                        input: QueueInput::Dequeue,
                        output: QueueOutput::Dequeued(v),
                    }
                }
                (OpType::Fail, _) => Call::Skip,
                _ => Call::Optional {
                    input: QueueInput::Dequeue,
                    output: QueueOutput::Unknown,
                },
            }),
            other => Err(format!(
                "the queue model takes enqueue and dequeue; found {other}"
            )),
        }
    }

    fn step(
        &self,
        state: &VecDeque<Elem>,
        input: &QueueInput,
        output: &QueueOutput,
    ) -> Option<VecDeque<Elem>> {
        match (input, output) {
            (QueueInput::Enqueue(v), _) => {
                let mut s = state.clone();
                s.push_back(v.clone());
                Some(s)
            }
            (QueueInput::Dequeue, QueueOutput::Dequeued(None)) => {
                state.is_empty().then(|| state.clone())
            }
            (QueueInput::Dequeue, QueueOutput::Dequeued(Some(v))) => {
                (state.front() == Some(v)).then(|| state.iter().skip(1).cloned().collect())
            }
            // Pending: if it took effect on an empty queue it changed nothing, the same as never.
            (QueueInput::Dequeue, _) => {
                (!state.is_empty()).then(|| state.iter().skip(1).cloned().collect())
            }
        }
    }

    fn read_only(&self, input: &QueueInput, output: &QueueOutput) -> bool {
        *input == QueueInput::Dequeue && *output == QueueOutput::Dequeued(None)
    }

    fn describe(&self, input: &QueueInput, output: &QueueOutput) -> String {
        match (input, output) {
            (QueueInput::Enqueue(v), _) => format!("enqueue {v}"),
            (QueueInput::Dequeue, QueueOutput::Dequeued(Some(v))) => format!("dequeue -> {v}"),
            (QueueInput::Dequeue, QueueOutput::Dequeued(None)) => "dequeue -> nil".to_string(),
            (QueueInput::Dequeue, _) => "dequeue".to_string(),
        }
    }

    fn describe_state(&self, state: &VecDeque<Elem>) -> String {
        format!("[{}]", join(state))
    }
}

// ---------------------------------------------------------------------------------------------
// Mutex (Knossos).

/// A lock, free at first: `acquire` needs it free, `release` needs it held (by anyone).
#[derive(Debug, Clone, Copy)]
pub struct MutexModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutexInput {
    Acquire,
    Release,
}

impl Model for MutexModel {
    /// Whether the lock is held.
    type State = bool;
    type Input = MutexInput;
    type Output = ();

    fn init(&self) -> bool {
        false
    }

    fn call(&self, invoke: &Op, completion: Option<&Op>) -> Result<Call<MutexInput, ()>, String> {
        let input = match invoke.f.as_str() {
            "acquire" => MutexInput::Acquire,
            "release" => MutexInput::Release,
            other => {
                return Err(format!(
                    "the mutex model takes acquire and release; found {other}"
                ));
            }
        };
        Ok(match completion.map_or(OpType::Info, |c| c.kind) {
            OpType::Ok => Call::Required { input, output: () },
            OpType::Fail => Call::Skip,
            _ => Call::Optional { input, output: () },
        })
    }

    fn step(&self, held: &bool, input: &MutexInput, _: &()) -> Option<bool> {
        match input {
            MutexInput::Acquire => (!held).then_some(true),
            MutexInput::Release => held.then_some(false),
        }
    }

    fn describe(&self, input: &MutexInput, _: &()) -> String {
        match input {
            MutexInput::Acquire => "acquire".to_string(),
            MutexInput::Release => "release".to_string(),
        }
    }

    fn describe_state(&self, held: &bool) -> String {
        if *held { "held" } else { "free" }.to_string()
    }
}

/// Any per-key model checked as one object holding every key: the whole history is one
/// partition. Linearizability is local, so the verdict is the same as with the per-key split;
/// what changes is the cost. It exists to measure what the split buys (`check
/// --no-partition`, the benchmark's no-split row) and to cross-check the split itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpartitioned<M>(pub M);

impl<M: Model> Model for Unpartitioned<M>
where
    M::State: Ord,
{
    /// Every key's state, keys never touched left out (they hold the inner model's initial
    /// state); a sorted map so that equal stores hash equally.
    type State = std::collections::BTreeMap<Option<Key>, M::State>;
    type Input = (Option<Key>, M::Input);
    type Output = M::Output;

    fn init(&self) -> Self::State {
        Self::State::new()
    }

    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<Self::Input, Self::Output>, String> {
        let key = invoke.key.clone();
        Ok(match self.0.call(invoke, completion)? {
            Call::Skip => Call::Skip,
            Call::Required { input, output } => Call::Required {
                input: (key, input),
                output,
            },
            Call::Optional { input, output } => Call::Optional {
                input: (key, input),
                output,
            },
        })
    }

    fn step(
        &self,
        state: &Self::State,
        (key, input): &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State> {
        let init = self.0.init();
        let before = state.get(key).unwrap_or(&init);
        let after = self.0.step(before, input, output)?;
        let mut next = state.clone();
        if after == init {
            next.remove(key);
        } else {
            next.insert(key.clone(), after);
        }
        Some(next)
    }

    fn read_only(&self, (_, input): &Self::Input, output: &Self::Output) -> bool {
        self.0.read_only(input, output)
    }

    fn monotone(&self, (_, input): &Self::Input, output: &Self::Output) -> bool {
        self.0.monotone(input, output)
    }

    fn may_reach(
        &self,
        state: &Self::State,
        (key, input): &Self::Input,
        output: &Self::Output,
    ) -> bool {
        let init = self.0.init();
        self.0
            .may_reach(state.get(key).unwrap_or(&init), input, output)
    }

    /// One partition for everything.
    fn keys(&self, _invoke: &Op, _input: &Self::Input) -> Vec<Key> {
        Vec::new()
    }

    fn describe(&self, (key, input): &Self::Input, output: &Self::Output) -> String {
        match key {
            Some(k) => format!("key {k}: {}", self.0.describe(input, output)),
            None => self.0.describe(input, output),
        }
    }

    fn describe_state(&self, state: &Self::State) -> String {
        let parts: Vec<String> = state
            .iter()
            .map(|(k, s)| {
                let k = k.as_ref().map_or("-".to_string(), |k| k.to_string());
                format!("{k}: {}", self.0.describe_state(s))
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

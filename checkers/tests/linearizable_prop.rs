//! Randomized checks of the linearizability checker:
//! - histories of a simulated linearizable object (each call takes effect at a random instant
//!   inside its interval) are accepted, and the same histories with a read of a value nobody
//!   wrote are rejected;
//! - on small random histories (mostly not linearizable) the verdict equals that of a plain
//!   brute-force search over all orders, which has none of the checker's prunings.

use std::collections::HashSet;

use checkers::Validity;
use checkers::linearizable::{
    Call, KvModel, LinOptions, Model, ModelKind, RegisterModel, SetModel, check, check_with,
};
use histories::{F, History, Key, Op, OpType, Process, Value};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Building histories from events

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
    /// Never completed.
    Open,
}

/// One planned call: function, key, invocation value.
#[derive(Debug, Clone)]
struct Planned {
    f: F,
    key: Option<Key>,
    value: Value,
}

fn line(index: usize, process: u64, kind: OpType, p: &Planned, value: Value) -> Op {
    Op {
        index: index as u64,
        time_ns: index as u64 * 10,
        process: Process::Client(process),
        kind,
        f: p.f.clone(),
        key: p.key.clone(),
        value,
        node: None,
        error: None,
    }
}

// ---------------------------------------------------------------------------------------------
// A simulated linearizable register

/// Where a simulated call is.
#[derive(Debug, Clone)]
enum Phase {
    Invoked,
    /// Took effect; a read saw this; a cas matched or not.
    TookEffect {
        read: Option<i64>,
        cas_matched: bool,
    },
    /// Will never take effect (it ends info or never completes).
    Never,
}

/// Per process, a list of (call kind, value, planned outcome); `schedule` picks which process
/// moves next: invoke, take effect (at a random instant inside the interval), complete.
fn simulate_register(plans: &[Vec<(u8, i64, Outcome)>], schedule: &[usize]) -> History {
    let mut next = vec![0usize; plans.len()];
    let mut open: Vec<Option<(Planned, Phase)>> = vec![None; plans.len()];
    let mut done = vec![false; plans.len()];
    let mut state: Option<i64> = None;
    let mut ops = Vec::new();
    for &pick in schedule {
        let p = pick % plans.len();
        if done[p] {
            continue;
        }
        let Some(&(kind, v, outcome)) = plans[p].get(next[p]) else {
            done[p] = true;
            continue;
        };
        match open[p].take() {
            None => {
                let planned = match kind % 3 {
                    0 => Planned {
                        f: F::Read,
                        key: None,
                        value: Value::Nil,
                    },
                    1 => Planned {
                        f: F::Write,
                        key: None,
                        value: Value::Int(v),
                    },
                    _ => Planned {
                        f: F::Cas,
                        key: None,
                        value: Value::List(vec![Value::Int(v / 2), Value::Int(v)]),
                    },
                };
                ops.push(line(
                    ops.len(),
                    p as u64,
                    OpType::Invoke,
                    &planned,
                    planned.value.clone(),
                ));
                open[p] = Some((planned, Phase::Invoked));
            }
            Some((planned, Phase::Invoked)) => {
                let phase = if matches!(outcome, Outcome::Info | Outcome::Open) && pick % 2 == 0 {
                    Phase::Never
                } else {
                    match planned.f {
                        F::Read => Phase::TookEffect {
                            read: state,
                            cas_matched: true,
                        },
                        F::Write => {
                            state = planned.value.as_int();
                            Phase::TookEffect {
                                read: None,
                                cas_matched: true,
                            }
                        }
                        _ => {
                            let (from, to) = planned.value.as_cas().expect("a cas");
                            let cas_matched = state == Some(from);
                            if cas_matched {
                                state = Some(to);
                            }
                            Phase::TookEffect {
                                read: None,
                                cas_matched,
                            }
                        }
                    }
                };
                open[p] = Some((planned, phase));
            }
            Some((planned, phase)) => {
                let outcome = match (&phase, outcome) {
                    (
                        Phase::TookEffect {
                            cas_matched: false, ..
                        },
                        Outcome::Ok | Outcome::Fail,
                    ) => Outcome::Fail,
                    // A write that happened cannot claim it did not.
                    (Phase::TookEffect { .. }, Outcome::Fail) if planned.f != F::Read => {
                        Outcome::Info
                    }
                    (_, o) => o,
                };
                match outcome {
                    Outcome::Ok => {
                        let v = match phase {
                            Phase::TookEffect { read, .. } if planned.f == F::Read => {
                                read.map_or(Value::Nil, Value::Int)
                            }
                            _ => planned.value.clone(),
                        };
                        ops.push(line(ops.len(), p as u64, OpType::Ok, &planned, v));
                    }
                    Outcome::Fail => {
                        ops.push(line(
                            ops.len(),
                            p as u64,
                            OpType::Fail,
                            &planned,
                            planned.value.clone(),
                        ));
                    }
                    Outcome::Info => {
                        ops.push(line(
                            ops.len(),
                            p as u64,
                            OpType::Info,
                            &planned,
                            planned.value.clone(),
                        ));
                        done[p] = true;
                    }
                    Outcome::Open => done[p] = true,
                }
                next[p] += 1;
            }
        }
    }
    History::from_ops(ops).expect("a well-formed history")
}

fn plans_strategy() -> impl Strategy<Value = Vec<Vec<(u8, i64, Outcome)>>> {
    let outcome = prop_oneof![
        8 => Just(Outcome::Ok),
        1 => Just(Outcome::Fail),
        1 => Just(Outcome::Info),
        1 => Just(Outcome::Open),
    ];
    prop::collection::vec(
        prop::collection::vec((0u8..3, 0i64..5, outcome), 1..12),
        1..6,
    )
}

/// Replaces the value of the last ok read with 99, which nobody writes.
fn corrupt_a_read(h: &History) -> Option<History> {
    let mut ops = h.ops().to_vec();
    let last = ops
        .iter()
        .rposition(|o| o.kind == OpType::Ok && o.f == F::Read)?;
    ops[last].value = Value::Int(99);
    Some(History::from_ops(ops).expect("still well-formed"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn sequential_register_histories_are_linearizable(
        calls in prop::collection::vec((0u8..3, 0i64..5), 0..60),
    ) {
        // One process, calls one after another: the schedule always finishes a call first.
        let plan: Vec<(u8, i64, Outcome)> = calls.iter().map(|&(k, v)| (k, v, Outcome::Ok)).collect();
        let schedule = vec![0; plan.len() * 3];
        let h = simulate_register(&[plan], &schedule);
        for model in [ModelKind::Register, ModelKind::CasRegister] {
            let v = check(&h, model, &LinOptions::default());
            prop_assert_eq!(v.valid, Validity::True, "{:#?}", v);
        }
    }

    #[test]
    fn simulated_concurrent_registers_are_linearizable_and_a_wrong_read_is_not(
        plans in plans_strategy(),
        schedule in prop::collection::vec(0usize..1000, 0..400),
    ) {
        let h = simulate_register(&plans, &schedule);
        let v = check(&h, ModelKind::Register, &LinOptions::default());
        prop_assert_eq!(v.valid, Validity::True, "{:#?}\n{:#?}", v, h);
        let v = check(&h, ModelKind::CasRegister, &LinOptions::default());
        prop_assert_eq!(v.valid, Validity::True, "{:#?}", v);
        if let Some(bad) = corrupt_a_read(&h) {
            let v = check(&bad, ModelKind::Register, &LinOptions::default());
            prop_assert_eq!(v.valid, Validity::False, "{:#?}", v);
            let culprit = &v.details["partitions"][0]["culprit"];
            prop_assert_eq!(&culprit["value"], &serde_json::json!(99));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Brute force

/// Whether some order of the calls fits the model, trying every order (with a memo of failed
/// (set, state) pairs only), straight from the definition.
fn brute_force<M: Model>(h: &History, model: &M) -> bool {
    struct C<M: Model> {
        invoke: usize,
        completion: Option<usize>,
        required: bool,
        input: M::Input,
        output: M::Output,
    }
    let ops = h.ops();
    let mut calls: Vec<C<M>> = Vec::new();
    for (invoke, completion) in h.client_calls() {
        match model
            .call(&ops[invoke], completion.map(|c| &ops[c]))
            .expect("readable")
        {
            Call::Skip => {}
            Call::Required { input, output } => calls.push(C {
                invoke,
                completion,
                required: completion.is_some(),
                input,
                output,
            }),
            Call::Optional { input, output } => calls.push(C {
                invoke,
                completion,
                required: false,
                input,
                output,
            }),
        }
    }
    assert!(calls.len() <= 20, "brute force is for small histories");
    let all_required: u32 = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.required)
        .map(|(i, _)| 1 << i)
        .sum();
    // must_precede[c]: required calls that completed before c was invoked.
    let must_precede: Vec<u32> = calls
        .iter()
        .map(|c| {
            calls
                .iter()
                .enumerate()
                .filter(|(_, d)| d.required && d.completion.is_some_and(|end| end < c.invoke))
                .map(|(i, _)| 1u32 << i)
                .sum()
        })
        .collect();
    let mut failed: HashSet<(u32, M::State)> = HashSet::new();
    // Depth-first; a configuration fails when every successor fails. Recursion is fine here:
    // at most 20 calls deep.
    fn go<M: Model>(
        done: u32,
        state: M::State,
        calls: &[C<M>],
        must_precede: &[u32],
        all_required: u32,
        model: &M,
        failed: &mut HashSet<(u32, M::State)>,
    ) -> bool {
        if done & all_required == all_required {
            return true;
        }
        if failed.contains(&(done, state.clone())) {
            return false;
        }
        for (i, c) in calls.iter().enumerate() {
            let bit = 1u32 << i;
            if done & bit != 0 || must_precede[i] & !done != 0 {
                continue;
            }
            if let Some(next) = model.step(&state, &c.input, &c.output) {
                if go(
                    done | bit,
                    next,
                    calls,
                    must_precede,
                    all_required,
                    model,
                    failed,
                ) {
                    return true;
                }
            }
        }
        failed.insert((done, state));
        false
    }
    go(
        0,
        model.init(),
        &calls,
        &must_precede,
        all_required,
        model,
        &mut failed,
    )
}

/// Random small histories over a few processes: any values, any outcomes.
fn random_history(
    events: &[(usize, u8, u8, u8)],
    make: impl Fn(u8, u8) -> Planned,
    result: impl Fn(&Planned, u8) -> Value,
) -> History {
    let procs = 4;
    let mut open: Vec<Option<Planned>> = vec![None; procs];
    let mut crashed = vec![false; procs];
    let mut ops = Vec::new();
    for &(pick, a, b, c) in events {
        let p = pick % procs;
        if crashed[p] {
            continue;
        }
        match open[p].take() {
            None => {
                let planned = make(a, b);
                ops.push(line(
                    ops.len(),
                    p as u64,
                    OpType::Invoke,
                    &planned,
                    planned.value.clone(),
                ));
                open[p] = Some(planned);
            }
            Some(planned) => {
                let kind = match c % 10 {
                    0 => OpType::Fail,
                    1 => OpType::Info,
                    _ => OpType::Ok,
                };
                let value = if kind == OpType::Ok {
                    result(&planned, b)
                } else {
                    planned.value.clone()
                };
                ops.push(line(ops.len(), p as u64, kind, &planned, value));
                crashed[p] = kind == OpType::Info;
            }
        }
    }
    History::from_ops(ops).expect("a well-formed history")
}

fn register_call(a: u8, b: u8) -> Planned {
    let v = i64::from(b % 3);
    match a % 3 {
        0 => Planned {
            f: F::Read,
            key: None,
            value: Value::Nil,
        },
        1 => Planned {
            f: F::Write,
            key: None,
            value: Value::Int(v),
        },
        _ => Planned {
            f: F::Cas,
            key: None,
            value: Value::List(vec![Value::Int(v), Value::Int((v + 1) % 3)]),
        },
    }
}

fn register_result(p: &Planned, b: u8) -> Value {
    match p.f {
        F::Read if b % 4 == 3 => Value::Nil,
        F::Read => Value::Int(i64::from(b % 3)),
        _ => p.value.clone(),
    }
}

fn kv_call(a: u8, b: u8) -> Planned {
    let key = Some(Key::Str(["a", "b"][usize::from(b % 2)].to_string()));
    let v = ["x", "y", "z"][usize::from(b % 3)].to_string();
    match a % 3 {
        0 => Planned {
            f: F::Get,
            key,
            value: Value::Nil,
        },
        1 => Planned {
            f: F::Put,
            key,
            value: Value::Str(v),
        },
        _ => Planned {
            f: F::Append,
            key,
            value: Value::Str(v),
        },
    }
}

fn kv_result(p: &Planned, b: u8) -> Value {
    match p.f {
        F::Get => {
            Value::Str(["", "x", "xy", "yx", "y", "xz", "zy"][usize::from(b % 7)].to_string())
        }
        _ => p.value.clone(),
    }
}

fn set_call(a: u8, b: u8) -> Planned {
    match a % 2 {
        0 => Planned {
            f: F::Read,
            key: None,
            value: Value::Nil,
        },
        _ => Planned {
            f: F::Add,
            key: None,
            value: Value::Int(i64::from(b % 4)),
        },
    }
}

fn set_result(p: &Planned, b: u8) -> Value {
    match p.f {
        F::Read => Value::List(
            (0..4)
                .filter(|i| b & (1 << i) != 0)
                .map(Value::Int)
                .collect(),
        ),
        _ => p.value.clone(),
    }
}

fn events_strategy() -> impl Strategy<Value = Vec<(usize, u8, u8, u8)>> {
    prop::collection::vec((0usize..4, any::<u8>(), any::<u8>(), any::<u8>()), 0..26)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn register_verdicts_match_brute_force(events in events_strategy()) {
        let h = random_history(&events, register_call, register_result);
        for (kind, model) in [
            (ModelKind::Register, RegisterModel { fail_cas_observed: true }),
            (ModelKind::CasRegister, RegisterModel { fail_cas_observed: false }),
        ] {
            let expected = if brute_force(&h, &model) { Validity::True } else { Validity::False };
            let v = check(&h, kind, &LinOptions::default());
            prop_assert_eq!(v.valid, expected, "{:#?}\n{:#?}", v, h);
        }
    }

    #[test]
    fn kv_verdicts_match_brute_force(events in events_strategy()) {
        let h = random_history(&events, kv_call, kv_result);
        let v = check_with(&h, &KvModel, &LinOptions::default());
        // Keys are independent, so the brute force over all keys at once must agree.
        let expected = if brute_force(&h, &KeyedKv) { Validity::True } else { Validity::False };
        prop_assert_eq!(v.valid, expected, "{:#?}\n{:#?}", v, h);
    }

    #[test]
    fn set_verdicts_match_brute_force(events in events_strategy()) {
        let h = random_history(&events, set_call, set_result);
        let expected = if brute_force(&h, &SetModel) { Validity::True } else { Validity::False };
        let v = check(&h, ModelKind::Set, &LinOptions::default());
        prop_assert_eq!(v.valid, expected, "{:#?}\n{:#?}", v, h);
    }
}

/// The kv model over a whole store (a state per key), for the brute force, which does not
/// split by key.
struct KeyedKv;

impl Model for KeyedKv {
    type State = Vec<(String, String)>;
    type Input = (String, <KvModel as Model>::Input);
    type Output = <KvModel as Model>::Output;

    fn init(&self) -> Self::State {
        Vec::new()
    }

    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<Self::Input, Self::Output>, String> {
        let Some(Key::Str(key)) = &invoke.key else {
            return Err("no key".into());
        };
        Ok(match KvModel.call(invoke, completion)? {
            Call::Skip => Call::Skip,
            Call::Required { input, output } => Call::Required {
                input: (key.clone(), input),
                output,
            },
            Call::Optional { input, output } => Call::Optional {
                input: (key.clone(), input),
                output,
            },
        })
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State> {
        let (key, input) = input;
        let current = state
            .iter()
            .find(|(k, _)| k == key)
            .map_or(String::new(), |(_, v)| v.clone());
        let next = KvModel.step(&current, input, output)?;
        let mut s: Vec<(String, String)> =
            state.iter().filter(|(k, _)| k != key).cloned().collect();
        s.push((key.clone(), next));
        s.sort();
        Some(s)
    }

    fn keys(&self, _: &Op, _: &Self::Input) -> Vec<Key> {
        Vec::new()
    }

    fn describe(&self, input: &Self::Input, output: &Self::Output) -> String {
        KvModel.describe(&input.1, output)
    }

    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

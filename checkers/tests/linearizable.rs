//! Hand-made histories for every model: ones the checker must accept and ones it must reject.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use checkers::linearizable::{LinOptions, ModelKind, check};
use checkers::{Validity, Verdict};
use histories::{F, History, Key, MicroF, MicroOp, Op, OpType, Process, Value};

/// One history line: process, type, function, key, value.
type Line = (u64, &'static str, &'static str, Option<Key>, Value);

fn history(lines: Vec<Line>) -> History {
    let ops = lines
        .into_iter()
        .enumerate()
        .map(|(i, (p, kind, f, key, value))| Op {
            index: i as u64,
            time_ns: 1000 * i as u64,
            process: if p == u64::MAX {
                Process::Nemesis
            } else {
                Process::Client(p)
            },
            kind: OpType::parse(kind).expect("a known op type"),
            f: F::parse(f),
            key,
            value,
            node: None,
            error: None,
        })
        .collect();
    History::from_ops(ops).expect("a well-formed history")
}

fn int(i: i64) -> Value {
    Value::Int(i)
}
const NIL: Value = Value::Nil;
fn cas(from: i64, to: i64) -> Value {
    Value::List(vec![int(from), int(to)])
}
fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}
fn k(v: &str) -> Option<Key> {
    Some(Key::Str(v.to_string()))
}

/// Register lines without keys.
fn reg(lines: &[(u64, &'static str, &'static str, Value)]) -> History {
    history(
        lines
            .iter()
            .map(|(p, t, f, v)| (*p, *t, *f, None, v.clone()))
            .collect(),
    )
}

fn run(h: &History, model: ModelKind) -> Verdict {
    check(h, model, &LinOptions::default())
}

fn assert_valid(h: &History, model: ModelKind) -> Verdict {
    let v = run(h, model);
    assert_eq!(v.valid, Validity::True, "expected linearizable: {v:#?}");
    assert_eq!(v.checker, "linearizable");
    v
}

fn assert_invalid(h: &History, model: ModelKind) -> Verdict {
    let v = run(h, model);
    assert_eq!(
        v.valid,
        Validity::False,
        "expected not linearizable: {v:#?}"
    );
    v
}

// ---------------------------------------------------------------------------------------------
// Model names

#[test]
fn model_names_round_trip_and_unknown_names_list_the_choices() {
    for name in [
        "register",
        "cas-register",
        "multi-register",
        "kv",
        "set",
        "queue",
        "mutex",
    ] {
        let m: ModelKind = name.parse().expect("a known model");
        assert_eq!(m.to_string(), name);
    }
    let err = "regsiter".parse::<ModelKind>().expect_err("not a model");
    assert_eq!(
        err.to_string(),
        "unknown model \"regsiter\"; expected one of register, cas-register, multi-register, kv, set, queue, mutex"
    );
}

// ---------------------------------------------------------------------------------------------
// Registers

#[test]
fn empty_history_is_linearizable() {
    for model in ModelKind::ALL {
        let v = assert_valid(&History::default(), model);
        assert_eq!(v.summary, "linearizable (0 ops)");
    }
}

#[test]
fn sequential_register_is_linearizable() {
    let h = reg(&[
        (0, "invoke", "read", NIL),
        (0, "ok", "read", NIL),
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
        (1, "invoke", "cas", cas(1, 2)),
        (1, "ok", "cas", cas(1, 2)),
        (0, "invoke", "read", NIL),
        (0, "ok", "read", int(2)),
    ]);
    let v = assert_valid(&h, ModelKind::Register);
    assert_eq!(v.summary, "linearizable (5 ops)");
    assert_valid(&h, ModelKind::CasRegister);
}

#[test]
fn reading_a_value_never_written_is_rejected_with_the_read_as_culprit() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(2)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p1 read -> 2 cannot be linearized"
    );
    assert_eq!(
        v.explanation[0],
        "p1 read -> 2 (ops 2-3) cannot be linearized"
    );
    assert_eq!(
        v.explanation[1],
        "  the longest linearizable prefix has 1 calls and leaves the state 1: p0 write 1"
    );
    let part = &v.details["partitions"][0];
    assert_eq!(part["key"], serde_json::Value::Null);
    let culprit = &part["culprit"];
    assert_eq!(culprit["index"], 2);
    assert_eq!(culprit["process"], 1);
    assert_eq!(culprit["f"], "read");
    assert_eq!(culprit["value"], 2);
    assert_eq!(culprit["type"], "ok");
    assert_eq!(culprit["invoke_index"], 2);
    assert_eq!(culprit["complete_index"], 3);
    assert_eq!(culprit["invoke_time_ns"], 2000);
    assert_eq!(culprit["complete_time_ns"], 3000);
    assert_eq!(culprit["text"], "p1 read -> 2");
    let text_column = part["longest_prefix_fields"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f == "text")
        .unwrap();
    assert_eq!(part["longest_prefix"][0][text_column], "p0 write 1");
    assert_eq!(part["concurrent"], serde_json::json!([]));
}

#[test]
fn stale_read_after_a_completed_write_is_rejected() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (0, "invoke", "write", int(2)),
        (0, "ok", "write", int(2)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
    ]);
    assert_invalid(&h, ModelKind::Register);
}

#[test]
fn concurrent_writes_where_only_one_order_works() {
    // w1 and w2 overlap each other and both reads; the reads see 2 then 1, so w2 must go first.
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (1, "invoke", "write", int(2)),
        (2, "invoke", "read", NIL),
        (2, "ok", "read", int(2)),
        (2, "invoke", "read", NIL),
        (2, "ok", "read", int(1)),
        (1, "ok", "write", int(2)),
        (0, "ok", "write", int(1)),
        (3, "invoke", "read", NIL),
        (3, "ok", "read", int(1)),
    ]);
    assert_valid(&h, ModelKind::Register);
    // The same reads in the other order after both writes completed: no order fits.
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (1, "invoke", "write", int(2)),
        (1, "ok", "write", int(2)),
        (0, "ok", "write", int(1)),
        (2, "invoke", "read", NIL),
        (2, "ok", "read", int(1)),
        (3, "invoke", "read", NIL),
        (3, "ok", "read", int(2)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p3 read -> 2 cannot be linearized"
    );
}

#[test]
fn concurrent_read_may_see_either_value() {
    for seen in [NIL, int(1)] {
        let h = reg(&[
            (0, "invoke", "write", int(1)),
            (1, "invoke", "read", NIL),
            (1, "ok", "read", seen),
            (0, "ok", "write", int(1)),
        ]);
        assert_valid(&h, ModelKind::Register);
    }
}

#[test]
fn info_write_that_must_be_used() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "info", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
    ]);
    assert_valid(&h, ModelKind::Register);
    // The same write failing definitely did not happen.
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "fail", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p1 read -> 1 cannot be linearized"
    );
}

#[test]
fn info_write_may_take_effect_long_after_it_was_invoked() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "info", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", NIL),
        (1, "invoke", "write", int(2)),
        (1, "ok", "write", int(2)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
    ]);
    assert_valid(&h, ModelKind::Register);
}

#[test]
fn info_write_that_must_be_skipped() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "info", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", NIL),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", NIL),
    ]);
    assert_valid(&h, ModelKind::Register);
}

#[test]
fn an_invocation_that_never_completed_is_pending() {
    let h = reg(&[
        (0, "invoke", "write", int(7)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", NIL),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(7)),
    ]);
    assert_valid(&h, ModelKind::Register);
}

#[test]
fn a_pending_write_takes_effect_at_most_once() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "info", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
        (1, "invoke", "write", int(2)),
        (1, "ok", "write", int(2)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p1 read -> 1 cannot be linearized"
    );
    assert_eq!(v.details["partitions"][0]["culprit"]["index"], 6);
}

#[test]
fn failed_and_unfinished_reads_constrain_nothing() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "fail", "read", s("timed-out")),
        (2, "invoke", "read", NIL),
        (2, "info", "read", NIL),
        (3, "invoke", "read", NIL),
    ]);
    let v = assert_valid(&h, ModelKind::Register);
    assert_eq!(v.details["skipped_ops"], 3);
}

#[test]
fn failed_cas_is_an_observation_in_register_and_nothing_in_cas_register() {
    // The register holds 1 when the cas [1 2] fails: impossible if a failed cas means "the
    // value was not 1", fine if it means "did not happen".
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "cas", cas(1, 2)),
        (1, "fail", "cas", cas(1, 2)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p1 cas 1 -> 2 (failed: value was not 1) cannot be linearized"
    );
    assert_valid(&h, ModelKind::CasRegister);
    // And a failed cas that did see another value is fine for both.
    let h = reg(&[
        (0, "invoke", "write", int(3)),
        (0, "ok", "write", int(3)),
        (1, "invoke", "cas", cas(1, 2)),
        (1, "fail", "cas", cas(1, 2)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(3)),
    ]);
    assert_valid(&h, ModelKind::Register);
    assert_valid(&h, ModelKind::CasRegister);
}

#[test]
fn cas_needs_the_expected_value() {
    let ok = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "cas", cas(1, 2)),
        (1, "ok", "cas", cas(1, 2)),
        (0, "invoke", "read", NIL),
        (0, "ok", "read", int(2)),
    ]);
    assert_valid(&ok, ModelKind::CasRegister);
    let bad = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "cas", cas(3, 2)),
        (1, "ok", "cas", cas(3, 2)),
    ]);
    assert_invalid(&bad, ModelKind::CasRegister);
    // An info cas that could only match if it ran after the read of 2: skipped instead.
    let info = reg(&[
        (0, "invoke", "cas", cas(5, 6)),
        (0, "info", "cas", cas(5, 6)),
        (1, "invoke", "write", int(2)),
        (1, "ok", "write", int(2)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(2)),
    ]);
    assert_valid(&info, ModelKind::CasRegister);
}

#[test]
fn nemesis_lines_are_ignored() {
    let h = history(vec![
        (u64::MAX, "info", "start-partition", None, s("majority")),
        (0, "invoke", "write", None, int(1)),
        (0, "ok", "write", None, int(1)),
        (u64::MAX, "info", "stop-partition", None, NIL),
        (1, "invoke", "read", None, NIL),
        (1, "ok", "read", None, int(1)),
    ]);
    assert_valid(&h, ModelKind::Register);
}

#[test]
fn registers_by_key_are_checked_separately_and_every_bad_key_is_reported() {
    let key = |i: i64| Some(Key::Int(i));
    let h = history(vec![
        (0, "invoke", "write", key(1), int(1)),
        (0, "ok", "write", key(1), int(1)),
        (1, "invoke", "read", key(2), NIL),
        (1, "ok", "read", key(2), NIL),
        (1, "invoke", "read", key(1), NIL),
        (1, "ok", "read", key(1), int(1)),
        (2, "invoke", "read", key(3), NIL),
        (2, "ok", "read", key(3), int(4)),
        (2, "invoke", "read", key(2), NIL),
        (2, "ok", "read", key(2), int(9)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: key 2: p2 read -> 9 cannot be linearized (and 1 more partitions)"
    );
    let keys: Vec<&serde_json::Value> = v.details["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["key"])
        .collect();
    assert_eq!(keys, [&serde_json::json!(2), &serde_json::json!(3)]);
    assert!(
        v.explanation
            .iter()
            .any(|l| l == "key 3: p2 read -> 4 (ops 6-7) cannot be linearized")
    );

    let fine = history(vec![
        (0, "invoke", "write", key(1), int(1)),
        (1, "invoke", "write", key(2), int(2)),
        (0, "ok", "write", key(1), int(1)),
        (1, "ok", "write", key(2), int(2)),
        (0, "invoke", "read", key(2), NIL),
        (0, "ok", "read", key(2), int(2)),
    ]);
    let v = assert_valid(&fine, ModelKind::Register);
    assert_eq!(v.summary, "linearizable (3 ops, 2 keys)");
}

#[test]
fn the_counterexample_names_the_concurrent_calls() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "write", int(2)),
        (2, "invoke", "read", NIL),
        (1, "ok", "write", int(2)),
        (3, "invoke", "write", int(3)),
        (3, "info", "write", int(3)),
        (2, "ok", "read", int(4)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p2 read -> 4 cannot be linearized"
    );
    assert_eq!(
        v.explanation[2],
        "  concurrent with it: p1 write 2 (ops 2-4), p3 write 3 (info) (ops 5-6)"
    );
    let concurrent = &v.details["partitions"][0]["concurrent"];
    assert_eq!(concurrent[0]["index"], 2);
    assert_eq!(concurrent[1]["type"], "info");
    assert_eq!(concurrent[1]["complete_index"], 6);
}

#[test]
fn values_a_model_cannot_read_make_the_answer_unknown() {
    let h = reg(&[(0, "invoke", "write", s("x")), (0, "ok", "write", s("x"))]);
    let v = run(&h, ModelKind::Register);
    assert_eq!(v.valid, Validity::Unknown);
    assert_eq!(
        v.summary,
        "cannot check: op 0 (process 0 write): a register write carries an integer or nil; found \"x\""
    );
    let h = reg(&[
        (0, "invoke", "enqueue", int(1)),
        (0, "ok", "enqueue", int(1)),
    ]);
    let v = run(&h, ModelKind::Register);
    assert_eq!(v.valid, Validity::Unknown);
    assert!(
        v.summary
            .ends_with("the register models take read, write and cas; found enqueue")
    );
}

// ---------------------------------------------------------------------------------------------
// Budgets

/// Fourteen concurrent writes and then a read of a value nobody wrote. A pending cas that never
/// matches is invoked first and keeps the lookahead from seeing past it, so refuting the read
/// takes every subset of the writes: a search with room to wander.
fn wide_history() -> History {
    let mut lines = vec![(30, "invoke", "cas", cas(50, 51))];
    for p in 0..14 {
        lines.push((p, "invoke", "write", int(p as i64)));
    }
    for p in 0..14 {
        lines.push((p, "ok", "write", int(p as i64)));
    }
    lines.push((20, "invoke", "read", NIL));
    lines.push((20, "ok", "read", int(99)));
    reg(&lines)
}

#[test]
fn a_search_out_of_states_says_unknown_and_how_far_it_got() {
    let h = wide_history();
    assert_eq!(run(&h, ModelKind::Register).valid, Validity::False);
    let v = check(
        &h,
        ModelKind::Register,
        &LinOptions {
            max_states: Some(50),
            ..LinOptions::default()
        },
    );
    assert_eq!(v.valid, Validity::Unknown, "{v:#?}");
    assert_eq!(
        v.summary,
        "unknown: the search stopped at its limit of 50 states (max_states)"
    );
    assert!(v.explanation[0].starts_with(
        "the search stopped at its limit of 50 states (max_states); linearized at most "
    ));
    assert_eq!(v.details["unknown_partitions"][0]["calls"], 16);
}

#[test]
fn a_search_out_of_memory_says_unknown() {
    let h = wide_history();
    let v = check(
        &h,
        ModelKind::Register,
        &LinOptions {
            memory_limit_bytes: Some(64 * 1024),
            ..LinOptions::default()
        },
    );
    assert_eq!(v.valid, Validity::Unknown, "{v:#?}");
    assert_eq!(
        v.summary,
        "unknown: the search stopped at its memory limit of 64 KiB (memory_limit_bytes)"
    );
}

#[test]
fn a_cancelled_search_says_unknown() {
    let cancel = Arc::new(AtomicBool::new(true));
    let v = check(
        &wide_history(),
        ModelKind::Register,
        &LinOptions {
            cancel: Some(cancel),
            ..LinOptions::default()
        },
    );
    assert_eq!(v.valid, Validity::Unknown);
    assert_eq!(v.summary, "unknown: the search was cancelled (time limit)");
}

// ---------------------------------------------------------------------------------------------
// Key-value store

#[test]
fn kv_appends_and_gets() {
    let h = history(vec![
        (0, "invoke", "append", k("a"), s("x")),
        (1, "invoke", "append", k("a"), s("y")),
        (0, "ok", "append", k("a"), s("x")),
        (1, "ok", "append", k("a"), s("y")),
        (2, "invoke", "get", k("a"), NIL),
        (2, "ok", "get", k("a"), s("yx")),
        (2, "invoke", "put", k("b"), s("z")),
        (2, "ok", "put", k("b"), s("z")),
        (0, "invoke", "get", k("b"), NIL),
        (0, "ok", "get", k("b"), s("z")),
        (0, "invoke", "get", k("c"), NIL),
        (0, "ok", "get", k("c"), s("")),
    ]);
    let v = assert_valid(&h, ModelKind::KeyValue);
    assert_eq!(v.summary, "linearizable (6 ops, 3 keys)");

    let bad = history(vec![
        (0, "invoke", "append", k("a"), s("x")),
        (0, "ok", "append", k("a"), s("x")),
        (1, "invoke", "append", k("a"), s("y")),
        (1, "ok", "append", k("a"), s("y")),
        (2, "invoke", "get", k("a"), NIL),
        (2, "ok", "get", k("a"), s("yx")),
    ]);
    let v = assert_invalid(&bad, ModelKind::KeyValue);
    assert_eq!(
        v.summary,
        "not linearizable: key \"a\": p2 get -> \"yx\" cannot be linearized"
    );
    assert_eq!(v.details["partitions"][0]["key"], "a");
    assert_eq!(v.details["partitions"][0]["state_after_prefix"], "\"xy\"");
}

#[test]
fn kv_info_put_must_be_used_or_skipped_as_the_reads_say() {
    let used = history(vec![
        (0, "invoke", "put", k("a"), s("v")),
        (0, "info", "put", k("a"), s("v")),
        (1, "invoke", "get", k("a"), NIL),
        (1, "ok", "get", k("a"), s("")),
        (1, "invoke", "get", k("a"), NIL),
        (1, "ok", "get", k("a"), s("v")),
    ]);
    assert_valid(&used, ModelKind::KeyValue);
    let twice = history(vec![
        (0, "invoke", "append", k("a"), s("v")),
        (0, "info", "append", k("a"), s("v")),
        (1, "invoke", "get", k("a"), NIL),
        (1, "ok", "get", k("a"), s("vv")),
    ]);
    assert_invalid(&twice, ModelKind::KeyValue);
}

// ---------------------------------------------------------------------------------------------
// Multi-register

fn txn(mops: &[(MicroF, &str, Value)]) -> Value {
    Value::Txn(
        mops.iter()
            .map(|(f, key, value)| MicroOp {
                f: *f,
                key: Key::Str(key.to_string()),
                value: value.clone(),
            })
            .collect(),
    )
}

#[test]
fn multi_register_transactions_are_atomic() {
    use MicroF::{Read as R, Write as W};
    let write_both = txn(&[(W, "x", int(1)), (W, "y", int(1))]);
    let torn = history(vec![
        (0, "invoke", "txn", None, write_both.clone()),
        (0, "ok", "txn", None, write_both.clone()),
        (
            1,
            "invoke",
            "txn",
            None,
            txn(&[(R, "x", NIL), (R, "y", NIL)]),
        ),
        (
            1,
            "ok",
            "txn",
            None,
            txn(&[(R, "x", int(1)), (R, "y", NIL)]),
        ),
    ]);
    let v = assert_invalid(&torn, ModelKind::MultiRegister);
    assert_eq!(
        v.summary,
        "not linearizable: keys \"x\", \"y\": p1 txn [[r \"x\" 1] [r \"y\" nil]] cannot be linearized"
    );
    let whole = history(vec![
        (0, "invoke", "txn", None, write_both.clone()),
        (
            1,
            "invoke",
            "txn",
            None,
            txn(&[(R, "x", NIL), (R, "y", NIL)]),
        ),
        (1, "ok", "txn", None, txn(&[(R, "x", NIL), (R, "y", NIL)])),
        (0, "ok", "txn", None, write_both),
        (1, "invoke", "txn", None, txn(&[(R, "y", NIL)])),
        (1, "ok", "txn", None, txn(&[(R, "y", int(1))])),
        (2, "invoke", "txn", None, txn(&[(W, "z", int(5))])),
        (2, "ok", "txn", None, txn(&[(W, "z", int(5))])),
    ]);
    let v = assert_valid(&whole, ModelKind::MultiRegister);
    assert_eq!(v.summary, "linearizable (4 ops, 3 keys)");
    assert_eq!(v.details["partitions_checked"], 2);
}

// ---------------------------------------------------------------------------------------------
// Set, queue, mutex

fn list(items: &[i64]) -> Value {
    Value::List(items.iter().map(|i| int(*i)).collect())
}

#[test]
fn set_reads_see_exactly_the_added_elements() {
    let ok = reg(&[
        (0, "invoke", "add", int(1)),
        (1, "invoke", "add", int(2)),
        (2, "invoke", "read", NIL),
        (2, "ok", "read", list(&[2])),
        (0, "ok", "add", int(1)),
        (1, "ok", "add", int(2)),
        (2, "invoke", "read", NIL),
        (2, "ok", "read", list(&[1, 2])),
    ]);
    assert_valid(&ok, ModelKind::Set);
    let lost = reg(&[
        (0, "invoke", "add", int(1)),
        (0, "ok", "add", int(1)),
        (1, "invoke", "add", int(2)),
        (1, "ok", "add", int(2)),
        (2, "invoke", "read", NIL),
        (2, "ok", "read", list(&[2])),
    ]);
    let v = assert_invalid(&lost, ModelKind::Set);
    assert_eq!(
        v.summary,
        "not linearizable: p2 read -> #{2} cannot be linearized"
    );
}

#[test]
fn queue_is_first_in_first_out() {
    let bad = reg(&[
        (0, "invoke", "enqueue", int(1)),
        (0, "ok", "enqueue", int(1)),
        (0, "invoke", "enqueue", int(2)),
        (0, "ok", "enqueue", int(2)),
        (1, "invoke", "dequeue", NIL),
        (1, "ok", "dequeue", int(2)),
    ]);
    assert_invalid(&bad, ModelKind::Queue);
    let concurrent = reg(&[
        (0, "invoke", "enqueue", int(1)),
        (1, "invoke", "enqueue", int(2)),
        (0, "ok", "enqueue", int(1)),
        (1, "ok", "enqueue", int(2)),
        (2, "invoke", "dequeue", NIL),
        (2, "ok", "dequeue", int(2)),
        (2, "invoke", "dequeue", NIL),
        (2, "ok", "dequeue", int(1)),
        (2, "invoke", "dequeue", NIL),
        (2, "ok", "dequeue", NIL),
    ]);
    assert_valid(&concurrent, ModelKind::Queue);
    // A pending dequeue may have taken the 1.
    let pending = reg(&[
        (0, "invoke", "enqueue", int(1)),
        (0, "ok", "enqueue", int(1)),
        (0, "invoke", "enqueue", int(2)),
        (0, "ok", "enqueue", int(2)),
        (1, "invoke", "dequeue", NIL),
        (1, "info", "dequeue", NIL),
        (2, "invoke", "dequeue", NIL),
        (2, "ok", "dequeue", int(2)),
    ]);
    assert_valid(&pending, ModelKind::Queue);
}

#[test]
fn mutex_cannot_be_held_twice() {
    let twice = reg(&[
        (0, "invoke", "acquire", NIL),
        (0, "ok", "acquire", NIL),
        (1, "invoke", "acquire", NIL),
        (1, "ok", "acquire", NIL),
    ]);
    let v = assert_invalid(&twice, ModelKind::Mutex);
    assert_eq!(
        v.summary,
        "not linearizable: p1 acquire cannot be linearized"
    );
    assert_eq!(v.details["partitions"][0]["state_after_prefix"], "held");
    let handed_over = reg(&[
        (0, "invoke", "acquire", NIL),
        (0, "ok", "acquire", NIL),
        (1, "invoke", "acquire", NIL),
        (0, "invoke", "release", NIL),
        (0, "ok", "release", NIL),
        (1, "ok", "acquire", NIL),
    ]);
    assert_valid(&handed_over, ModelKind::Mutex);
    // A release that timed out may have happened, letting p1 in.
    let info_release = reg(&[
        (0, "invoke", "acquire", NIL),
        (0, "ok", "acquire", NIL),
        (0, "invoke", "release", NIL),
        (0, "info", "release", NIL),
        (1, "invoke", "acquire", NIL),
        (1, "ok", "acquire", NIL),
    ]);
    assert_valid(&info_release, ModelKind::Mutex);
}

// ---------------------------------------------------------------------------------------------
// Counterexamples and robustness

#[test]
fn the_culprit_is_the_first_call_in_return_order_that_cannot_be_linearized() {
    // The stale read of 1 is the first violation; the read of 9, which nothing wrote, comes
    // later and is the one a lookahead notices first.
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "ok", "read", int(1)),
        (2, "invoke", "write", int(2)),
        (2, "ok", "write", int(2)),
        (3, "invoke", "read", NIL),
        (3, "ok", "read", int(1)),
        (0, "invoke", "write", int(3)),
        (0, "ok", "write", int(3)),
        (4, "invoke", "read", NIL),
        (4, "ok", "read", int(9)),
    ]);
    let v = assert_invalid(&h, ModelKind::Register);
    assert_eq!(
        v.summary,
        "not linearizable: p3 read -> 1 cannot be linearized"
    );
    assert_eq!(
        v.explanation[1],
        "  the longest linearizable prefix has 3 calls and leaves the state 2: p0 write 1, p1 read -> 1, p2 write 2"
    );
    assert_eq!(v.details["partitions"][0]["longest_prefix_len"], 3);
}

/// A model whose steps panic: the checker must answer, not crash.
struct Exploding;

impl checkers::linearizable::Model for Exploding {
    type State = u8;
    type Input = ();
    type Output = ();

    fn init(&self) -> u8 {
        0
    }

    fn call(
        &self,
        _invoke: &Op,
        _completion: Option<&Op>,
    ) -> Result<checkers::linearizable::Call<(), ()>, String> {
        Ok(checkers::linearizable::Call::Required {
            input: (),
            output: (),
        })
    }

    fn step(&self, _: &u8, _: &(), _: &()) -> Option<u8> {
        panic!("boom");
    }

    fn describe(&self, _: &(), _: &()) -> String {
        "call".into()
    }

    fn describe_state(&self, s: &u8) -> String {
        s.to_string()
    }
}

#[test]
fn a_model_that_panics_makes_the_answer_unknown_not_a_crash() {
    let h = reg(&[(0, "invoke", "read", NIL), (0, "ok", "read", NIL)]);
    let v = checkers::linearizable::check_with(&h, &Exploding, &LinOptions::default());
    assert_eq!(v.valid, Validity::Unknown);
    assert_eq!(v.summary, "unknown: internal error in the search: boom");
}

#[test]
fn details_of_a_valid_history_count_what_was_checked() {
    let h = reg(&[
        (0, "invoke", "write", int(1)),
        (0, "ok", "write", int(1)),
        (1, "invoke", "read", NIL),
        (1, "fail", "read", NIL),
    ]);
    let v = assert_valid(&h, ModelKind::CasRegister);
    assert_eq!(v.details["model"], "cas-register");
    assert_eq!(v.details["ops"], 1);
    assert_eq!(v.details["skipped_ops"], 1);
    assert_eq!(v.details["partitions_checked"], 1);
    assert_eq!(v.details["partitions"], serde_json::json!([]));
    assert!(v.explanation.is_empty());
}

#[test]
fn many_failing_keys_are_all_counted_and_the_first_twenty_explained() {
    let mut lines = Vec::new();
    for key in 0..30 {
        lines.push((0, "invoke", "read", Some(Key::Int(key)), NIL));
        lines.push((0, "ok", "read", Some(Key::Int(key)), int(7)));
    }
    let v = assert_invalid(&history(lines), ModelKind::Register);
    assert_eq!(v.details["partitions_failed"], 30);
    assert_eq!(v.details["partitions"].as_array().map(Vec::len), Some(30));
    let explained = v
        .explanation
        .iter()
        .filter(|l| l.ends_with("cannot be linearized"))
        .count();
    assert_eq!(explained, 20);
    assert_eq!(
        v.explanation.last().map(String::as_str),
        Some("... and 10 more partitions that are not linearizable")
    );
    assert_eq!(
        v.summary,
        "not linearizable: key 0: p0 read -> 7 cannot be linearized (and 29 more partitions)"
    );
}

//! The EDN reader and writer: Jepsen/Knossos/Elle shapes, exact error locations, round trips.

use std::collections::BTreeMap;

use histories::edn;
use histories::{F, History, Key, Loaded, MicroF, MicroOp, Op, OpType, Process, Value};
use proptest::prelude::*;

fn read(text: &str) -> Loaded {
    edn::read(text.as_bytes(), "h.edn").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match edn::read(text.as_bytes(), "h.edn") {
        Ok(loaded) => panic!("expected an error, read {:?}", loaded.history.ops()),
        Err(e) => e.to_string(),
    }
}

fn assert_error(text: &str, prefix: &str, contains: &str) {
    let e = error(text);
    assert!(e.starts_with(prefix), "{e:?} should start with {prefix:?}");
    assert!(e.contains(contains), "{e:?} should contain {contains:?}");
    assert!(!e.contains('\n'), "{e:?} should be one line");
}

#[test]
fn jepsen_history_one_map_per_line() {
    let loaded = read(concat!(
        "{:index 0, :time 100, :type :invoke, :process 0, :f :write, :value 3}\n",
        "{:index 1, :time 150, :type :info, :process :nemesis, :f :start-partition, :value [:isolated {\"n1\" #{\"n2\" \"n3\"}}]}\n",
        "{:index 2, :time 200, :type :ok, :process 0, :f :write, :value 3, :node \"n1\"}\n",
        "{:index 3, :time 300, :type :invoke, :process 1, :f :cas, :value [3 4]}\n",
        "{:index 4, :time 400, :type :fail, :process 1, :f :cas, :value [3 4], :error :precondition-failed}\n",
        "{:index 5, :time 500, :type :invoke, :process 2, :f :read, :value nil}\n",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.format, histories::Format::Edn);
    let ops = loaded.history.ops();
    assert_eq!(ops.len(), 6);
    assert_eq!(
        ops[0],
        Op {
            index: 0,
            time_ns: 100,
            process: Process::Client(0),
            kind: OpType::Invoke,
            f: F::Write,
            key: None,
            value: Value::Int(3),
            node: None,
            error: None,
        }
    );
    let partition = &ops[1];
    assert_eq!(partition.process, Process::Nemesis);
    assert_eq!(partition.f, F::Other("start-partition".into()));
    let grudge = BTreeMap::from([(
        "n1".to_string(),
        Value::List(vec![Value::Str("n2".into()), Value::Str("n3".into())]),
    )]);
    assert_eq!(
        partition.value,
        Value::List(vec![Value::Str("isolated".into()), Value::Map(grudge)])
    );
    assert_eq!(ops[2].node.as_deref(), Some("n1"));
    assert_eq!(ops[3].value.as_cas(), Some((3, 4)));
    assert_eq!(ops[4].error.as_deref(), Some("precondition-failed"));
    assert_eq!(loaded.history.completion_of(0), Some(2));
    assert_eq!(loaded.history.completion_of(3), Some(4));
    // Process 2 crashed before its read returned: the call stays open, as History allows.
    assert_eq!(loaded.history.completion_of(5), None);
}

#[test]
fn elle_txn_micro_ops_become_typed() {
    let loaded = read(concat!(
        "{:type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil] [:w \"x\" 3]], :process 0, :time 1}\n",
        "{:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [1 2]] [:w \"x\" 3]], :process 0, :time 2}\n",
    ));
    let done = loaded.history.ops()[1].txn().expect("a txn");
    assert_eq!(
        done,
        &[
            MicroOp {
                f: MicroF::Append,
                key: Key::Int(1),
                value: Value::Int(2)
            },
            MicroOp {
                f: MicroF::Read,
                key: Key::Int(1),
                value: Value::List(vec![Value::Int(1), Value::Int(2)])
            },
            MicroOp {
                f: MicroF::Write,
                key: Key::Str("x".into()),
                value: Value::Int(3)
            },
        ]
    );
    assert_eq!(
        loaded.history.ops()[0].txn().map(|t| &t[1].value),
        Some(&Value::Nil)
    );
}

#[test]
fn missing_index_and_time_follow_the_position() {
    let loaded = read(concat!(
        "{:type :invoke, :f :read, :process 0}\n",
        "{:type :ok, :f :read, :value 1, :process 0}\n",
        "{:type :invoke, :f :put, :key \"k\", :value \"v\", :process 3}\n",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let ops = loaded.history.ops();
    let positions: Vec<(u64, u64)> = ops.iter().map(|op| (op.index, op.time_ns)).collect();
    assert_eq!(positions, vec![(0, 0), (1, 1), (2, 2)]);
    assert_eq!(ops[0].value, Value::Nil, "no :value means nil");
    assert_eq!(ops[2].key, Some(Key::Str("k".into())));
}

#[test]
fn top_level_vector_and_jepsen_records() {
    let loaded = read(concat!(
        "; written by hand\n",
        "[#jepsen.history.Op{:index 0, :time 5, :type :invoke, :process 0, :f :read, :value nil}\n",
        " #_ {:type :ok, :f :read, :process 9}\n",
        " {:index 1, :time 6, :type :ok, :process 0, :f :read, :value 2}]\n",
        "; trailing comment\n",
    ));
    let ops = loaded.history.ops();
    assert_eq!(ops.len(), 2, "the #_ map is discarded");
    assert_eq!(ops[1].value, Value::Int(2));
    assert_eq!(loaded.history.completion_of(0), Some(1));

    let one_line =
        read("[{:type :invoke :f :read :process 0} {:type :ok :f :read :process 0 :value 7}]");
    assert_eq!(one_line.history.ops()[1].value, Value::Int(7));
    assert!(read("[]\n").history.is_empty());
}

#[test]
fn empty_and_comment_only_input_is_an_empty_history() {
    assert!(read("").history.is_empty());
    assert!(read("\n  \n; nothing yet\n").history.is_empty());
}

#[test]
fn unknown_keys_mismatched_indices_and_mixed_times_are_warned_about() {
    let loaded = read(concat!(
        "{:index 0, :time 10, :type :invoke, :process 0, :f :read, :debug true}\n",
        "{:index 7, :type :ok, :process 0, :f :read, :value 1, :debug false, :final? true}\n",
    ));
    let w = &loaded.warnings;
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[0].starts_with("h.edn:1: ignored the key :debug"), "{w:?}");
    assert!(
        w.iter()
            .any(|m| m.starts_with("h.edn:2: ignored the key :final?")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.starts_with("h.edn:2: :index 7 where 1 was expected")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.starts_with("h.edn:2: some ops have a :time")),
        "{w:?}"
    );
    assert_eq!(loaded.history.ops()[1].index, 1, "renumbered by position");
    assert_eq!(loaded.history.ops()[1].time_ns, 1, "timed by position");
}

#[test]
fn nemesis_values_keep_what_client_values_refuse() {
    let loaded = read(
        "{:type :info, :f :clock-skew, :process :nemesis, :value {:n1 0.25, :at #inst \"2024-01-01T00:00:00Z\"}}\n",
    );
    let Value::Map(skew) = &loaded.history.ops()[0].value else {
        panic!("{:?}", loaded.history.ops()[0]);
    };
    assert_eq!(skew.get("n1"), Some(&Value::Str("0.25".into())));
    assert!(matches!(skew.get("at"), Some(Value::Str(s)) if s.starts_with("#inst")));

    assert_error(
        "{:type :invoke, :f :write, :process 0, :value 1.5}\n",
        "h.edn:1: :value: expected nil, a boolean, an integer",
        "the fraction 1.5",
    );
}

#[test]
fn a_cut_short_last_line_is_skipped_with_a_warning() {
    let loaded = read(concat!(
        "{:type :invoke, :f :read, :process 0}\n",
        "{:type :ok, :f :read, :process 0, :val",
    ));
    assert_eq!(loaded.history.len(), 1);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].starts_with("h.edn:2: skipped the last line, which is cut short"),
        "{:?}",
        loaded.warnings
    );
    // With its newline the same line is not a crash artefact but a broken file.
    assert_error(
        "{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :read, :process 0, :val\n",
        "h.edn:2: expected `}` to close the `{` opened at line 2",
        "end of the file",
    );
}

#[test]
fn malformed_maps_name_the_line_and_what_was_expected() {
    let ok = "{:type :invoke, :f :read, :process 0}\n";
    assert_error(
        &format!("{ok}{{:f :read, :process 0}}\n"),
        "h.edn:2: expected a :type",
        "the map has none",
    );
    assert_error(
        &format!("{ok}\n{{:type :done, :f :read, :process 0}}\n"),
        "h.edn:3: expected :type to be :invoke, :ok, :fail or :info, found :done",
        "",
    );
    assert_error(
        &format!("{ok}{{:type :ok, :f :read, :process -1}}\n"),
        "h.edn:2: expected :process to be a non-negative integer or :nemesis, found -1",
        "",
    );
    assert_error(
        &format!("{ok}{{:type :ok, :f 3, :process 0}}\n"),
        "h.edn:2: expected :f to be a keyword",
        "found 3",
    );
    assert_error(
        &format!("{ok}{{:type :ok, :f :read, :process 0, :time -5}}\n"),
        "h.edn:2: expected :time to be non-negative integer nanoseconds, found -5",
        "",
    );
    assert_error(
        &format!("{ok}{{:type :ok, :f :txn, :process 0, :value [[:incr 1 2]]}}\n"),
        "h.edn:2: :value: expected a micro-op function append, r or w",
        "",
    );
    assert_error(
        &format!("{ok}[1 2]\n"),
        "h.edn:2: expected an operation map",
        "found the vector [1 2]",
    );
}

#[test]
fn syntax_errors_name_the_line_where_they_are_found() {
    assert_error(
        "{:type :invoke, :f :read, :process 0}\n{:type :ok :f}\n",
        "h.edn:2: expected an EDN value (a map needs a value for every key",
        "",
    );
    // A map spread over lines: the error is on the line of the odd element.
    assert_error(
        "{:type :invoke,\n :f :read,\n :process 0 :value}\n",
        "h.edn:3: expected an EDN value",
        "",
    );
    assert_error(
        "{:type :invoke, :f :read, :process 0]\n",
        "h.edn:1: expected `}` to close the `{` opened at line 1, found `]`",
        "",
    );
    assert_error(
        "{:type :invoke, :f :read, :process 0}\n}\n",
        "h.edn:2: found `}` with nothing open",
        "",
    );
    assert_error(
        "{:type :invoke, :f :read, :process 0, :value 99999999999999999999}\n",
        "h.edn:1: expected an EDN value (the integer 99999999999999999999 does not fit",
        "",
    );
    assert_error(
        "{:type :invoke, :f :read, :process 0, :process 1}\n",
        "h.edn:1: expected an EDN value (the key :process appears twice",
        "",
    );
    let bytes = b"{:type :invoke, :f :read, :process 0}\n{:type \xff}\n";
    let e = edn::read(&bytes[..], "h.edn").expect_err("not UTF-8");
    assert_eq!(e.to_string(), "h.edn:2: expected UTF-8 text");
}

#[test]
fn vector_errors_give_the_line_and_the_maps_ordinal() {
    assert_error(
        "[{:type :invoke, :f :read, :process 0}\n {:type :ok, :f :read, :process 0}\n {:f :read, :process 1}]\n",
        "h.edn:3: map 3 of the top-level vector: expected a :type",
        "",
    );
    assert_error(
        "[{:type :invoke :f :read :process 0} {:type :ok :f :read}]",
        "h.edn:1: map 2 of the top-level vector: expected a :process",
        "",
    );
    // Ordinals count the vector's elements as written, a discarded `#_` one included, for
    // syntax, map and pairing errors alike.
    assert_error(
        "[#_ {:x 1}\n {:type :invoke :f :read :process 0}\n {:type :ok :f :write :process 0}]\n",
        "h.edn:3: map 3 of the top-level vector: completion f write does not match",
        "",
    );
    assert_error(
        "[#_ {:x 1}\n {:type :invoke :f :read :process 0}\n {:type :ok :f}]\n",
        "h.edn:3: map 3 of the top-level vector: expected an EDN value",
        "",
    );
    assert_error(
        "[{:type :invoke :f :read :process 0}\n",
        "h.edn:1: expected `]` to close the history vector opened at line 1",
        "end of the file",
    );
    assert_error(
        "[{:type :invoke :f :read :process 0}]\n{:type :ok :f :read :process 0}\n",
        "h.edn:2: expected nothing after the `]` that closes the history vector at line 1",
        "",
    );
}

#[test]
fn ill_formed_histories_name_the_line_of_the_offending_op() {
    assert_error(
        concat!(
            "{:type :invoke, :f :read, :process 0}\n",
            "; a comment line still counts\n",
            "{:type :invoke, :f :write, :value 1, :process 0}\n",
        ),
        "h.edn:3: process 0 invokes write while its read",
        "",
    );
    assert_error(
        "[{:type :invoke :f :read :process 0}\n {:type :ok :f :write :process 0}]\n",
        "h.edn:2: map 2 of the top-level vector: completion f write does not match",
        "",
    );
    assert_error(
        "{:type :ok, :f :read, :value 1, :process 4}\n",
        "h.edn:1: ok completion of read by process 4 without an invocation",
        "",
    );
}

#[test]
fn a_name_with_a_line_break_keeps_the_error_on_one_line() {
    assert_error(
        "{:type :invoke, :f \"a\\nb\", :process 0}\n{:type :ok, :f :c, :process 0}\n",
        "h.edn:2: completion f c does not match the invocation's f a\\nb",
        "",
    );
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "{{:type :invoke, :f :read, :process 0, :value {}{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_error(
        &deep,
        "h.edn:1: expected values nested at most 100 deep",
        "",
    );
    let tags = format!(
        "{{:type :invoke, :f :read, :process 0, :value {}1}}\n",
        "#t ".repeat(100_000)
    );
    assert_error(&tags, "h.edn:1: expected at most 100 tags in a row", "");
}

#[test]
fn writer_puts_one_map_per_line_in_jepsen_key_order() {
    let loaded = read(concat!(
        "{:index 0, :time 1, :type :invoke, :process 0, :f :cas, :key 4, :value [1 2], :node \"n1\"}\n",
        "{:index 1, :time 2, :type :info, :process 0, :f :cas, :key 4, :value [1 2], :error \"timeout\\n\\\"x\\\"\"}\n",
        "{:index 2, :time 3, :type :info, :process :nemesis, :f \"kill all\", :value nil}\n",
    ));
    let mut out = Vec::new();
    edn::write(&loaded.history, &mut out).expect("write");
    let text = String::from_utf8(out).expect("UTF-8");
    assert_eq!(
        text,
        concat!(
            "[{:index 0, :time 1, :type :invoke, :process 0, :f :cas, :key 4, :value [1 2], :node \"n1\"}\n",
            " {:index 1, :time 2, :type :info, :process 0, :f :cas, :key 4, :value [1 2], :error \"timeout\\n\\\"x\\\"\"}\n",
            " {:index 2, :time 3, :type :info, :process :nemesis, :f \"kill all\", :value nil}]\n",
        )
    );
    let mut empty = Vec::new();
    edn::write(&History::default(), &mut empty).expect("write");
    assert_eq!(empty, b"[]\n");
}

#[test]
fn large_counts_round_trip_as_big_integers() {
    let ops = vec![Op {
        index: 0,
        time_ns: u64::MAX,
        process: Process::Client(u64::MAX),
        kind: OpType::Invoke,
        f: F::Read,
        key: Some(Key::Int(i64::MIN)),
        value: Value::Int(i64::MIN),
        node: None,
        error: None,
    }];
    let history = History::from_ops(ops).expect("well-formed");
    let mut out = Vec::new();
    edn::write(&history, &mut out).expect("write");
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(text.contains(":time 18446744073709551615N"), "{text}");
    assert_eq!(read(&text).history, history);
}

// ---- round trip of generated histories ----

fn arb_string() -> impl Strategy<Value = String> {
    // Plain names, text full of EDN's special characters, and anything at all.
    prop_oneof![
        3 => "[a-z][a-z0-9 -]{0,6}",
        2 => "[\"\\\\\n\r\t;,#:(){}\\[\\] a-z0-9]{0,8}",
        1 => any::<String>(),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        arb_string().prop_map(Value::Str),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map(arb_string(), inner, 0..3).prop_map(Value::Map),
        ]
    })
}

fn arb_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        any::<i64>().prop_map(Key::Int),
        arb_string().prop_map(Key::Str)
    ]
}

fn arb_micro_op() -> impl Strategy<Value = MicroOp> {
    let read_value = prop_oneof![
        Just(Value::Nil),
        prop::collection::vec(any::<i64>().prop_map(Value::Int), 0..4).prop_map(Value::List),
    ];
    (
        prop_oneof![
            Just(MicroF::Append),
            Just(MicroF::Read),
            Just(MicroF::Write)
        ],
        arb_key(),
        any::<i64>(),
        read_value,
    )
        .prop_map(|(f, key, n, read)| MicroOp {
            f,
            key,
            value: if f == MicroF::Read {
                read
            } else {
                Value::Int(n)
            },
        })
}

fn arb_f() -> impl Strategy<Value = F> {
    prop_oneof![
        Just(F::Read),
        Just(F::Write),
        Just(F::Cas),
        Just(F::Txn),
        Just(F::Get),
        Just(F::Put),
        Just(F::Append),
        Just(F::Add),
        prop::sample::select(vec![
            "start",
            "kill",
            "start-partition",
            "a b",
            "",
            "-1",
            "ns/x"
        ])
        .prop_map(|s| F::Other(s.to_string())),
    ]
}

/// What one generated step may become: an invocation, a completion or a nemesis event.
#[derive(Debug, Clone)]
struct Step {
    slot: usize,
    outcome: OpType,
    f: F,
    value: Value,
    txn: Vec<MicroOp>,
    key: Option<Key>,
    node: Option<String>,
    error: Option<String>,
    time_ns: u64,
}

fn arb_step() -> impl Strategy<Value = Step> {
    (
        0..4usize,
        prop_oneof![Just(OpType::Ok), Just(OpType::Fail), Just(OpType::Info)],
        arb_f(),
        arb_value(),
        prop::collection::vec(arb_micro_op(), 0..4),
        prop::option::of(arb_key()),
        prop::option::of(arb_string()),
        prop::option::of(arb_string()),
        any::<u64>(),
    )
        .prop_map(
            |(slot, outcome, f, value, txn, key, node, error, time_ns)| Step {
                slot,
                outcome,
                f,
                value,
                txn,
                key,
                node,
                error,
                time_ns,
            },
        )
}

/// Builds a well-formed history: slot 3 is the nemesis; the others are client processes that
/// alternate invocation and completion, the completion repeating the invocation's `f`.
fn arb_history() -> impl Strategy<Value = History> {
    (
        prop::collection::vec(any::<u64>(), 3),
        prop::collection::vec(arb_step(), 0..40),
    )
        .prop_map(|(ids, steps)| {
            let mut open: [Option<F>; 3] = [None, None, None];
            let mut ops = Vec::new();
            for step in steps {
                let (process, kind, f) = if step.slot == 3 {
                    (Process::Nemesis, OpType::Info, step.f)
                } else {
                    // Equal generated ids would make two slots one process; keep them apart.
                    let id = ids[step.slot].wrapping_add(step.slot as u64 * 0x9e37_79b9);
                    match open[step.slot].take() {
                        Some(f) => (Process::Client(id), step.outcome, f),
                        None => {
                            open[step.slot] = Some(step.f.clone());
                            (Process::Client(id), OpType::Invoke, step.f)
                        }
                    }
                };
                let value = if f == F::Txn {
                    Value::Txn(step.txn)
                } else {
                    step.value
                };
                ops.push(Op {
                    index: ops.len() as u64,
                    time_ns: step.time_ns,
                    process,
                    kind,
                    f,
                    key: step.key,
                    value,
                    node: step.node,
                    error: step.error,
                });
            }
            History::from_ops(ops).expect("the generator builds well-formed histories")
        })
}

proptest! {
    #[test]
    fn written_histories_read_back_unchanged(history in arb_history()) {
        let mut out = Vec::new();
        edn::write(&history, &mut out).expect("write to memory");
        let text = String::from_utf8(out).expect("the writer emits UTF-8");
        let loaded = edn::read(text.as_bytes(), "gen.edn")
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        prop_assert_eq!(&loaded.history, &history, "{}", text);
        // One map per line, so that line n is map n.
        prop_assert_eq!(text.lines().count(), history.len().max(1));
    }
}

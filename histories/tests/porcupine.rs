//! The Porcupine readers on hand-written logs: noise, nemesis lines, errors, kv checks.

use histories::porcupine::{read_etcd, read_kv};
use histories::{F, Format, Key, OpType, Process, Value};

fn etcd_error(text: &str) -> String {
    match read_etcd(text.as_bytes(), "e.log") {
        Ok(l) => panic!("expected an error, read {:?}", l.history.ops()),
        Err(e) => e.to_string(),
    }
}

fn kv_error(text: &str) -> String {
    match read_kv(text.as_bytes(), "kv.txt") {
        Ok(l) => panic!("expected an error, read {:?}", l.history.ops()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn etcd_log_lines_become_register_ops_and_noise_is_skipped() {
    let log = concat!(
        "INFO  jepsen.core - Running test etcd\n",
        "INFO  jepsen.util - Relative time begins now\n",
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
        "some node printed this\n",
        "INFO  jepsen.util - :nemesis\t:info\t:start\t\"Cut off {:n1 #{:n2}}\"\n",
        "INFO  jepsen.util - 0\t:ok\t:read\tnil\n",
        "INFO  jepsen.util - 1  :invoke  :cas  [0 1]\n",
        "INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n",
        "INFO  jepsen.util - :nemesis\t:info\t:stop\tnot edn {\n",
        "INFO  jepsen.util - 2\t:invoke\t:write\t-4\n",
        "INFO  jepsen.util - 2\t:ok\t:write\t-4\n",
    );
    let loaded = read_etcd(log.as_bytes(), "e.log").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.format, Format::PorcupineEtcd);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let ops = loaded.history.ops();
    let summary: Vec<(u64, u64, Process, OpType, F)> = ops
        .iter()
        .map(|op| (op.index, op.time_ns, op.process, op.kind, op.f.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 3, Process::Client(0), OpType::Invoke, F::Read),
            (
                1,
                5,
                Process::Nemesis,
                OpType::Info,
                F::Other("start".into())
            ),
            (2, 6, Process::Client(0), OpType::Ok, F::Read),
            (3, 7, Process::Client(1), OpType::Invoke, F::Cas),
            (4, 8, Process::Client(1), OpType::Info, F::Cas),
            (
                5,
                9,
                Process::Nemesis,
                OpType::Info,
                F::Other("stop".into())
            ),
            (6, 10, Process::Client(2), OpType::Invoke, F::Write),
            (7, 11, Process::Client(2), OpType::Ok, F::Write),
        ]
    );
    assert_eq!(ops[1].value, Value::Str("Cut off {:n1 #{:n2}}".into()));
    assert_eq!(ops[2].value, Value::Nil);
    assert_eq!(ops[3].value.as_cas(), Some((0, 1)));
    assert_eq!(
        (&ops[4].value, ops[4].error.as_deref()),
        (&Value::Nil, Some("timed-out"))
    );
    assert_eq!(loaded.history.completion_of(3), Some(4));
    assert_eq!(
        ops[5].value,
        Value::Str("not edn {".into()),
        "kept verbatim"
    );
    assert_eq!(ops[7].value, Value::Int(-4));
    assert!(ops.iter().all(|op| op.key.is_none()));
}

#[test]
fn malformed_operation_lines_name_the_line() {
    let first = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n";
    let cases = [
        (
            "INFO  jepsen.util - 0\t:ok\t:read\t[1]\n",
            "e.log:2: expected nil or an integer for :ok :read, found [1]",
        ),
        (
            "INFO  jepsen.util - 0\t:ok\t:read\n",
            "e.log:2: expected a value after :read (nil or an integer), found nothing",
        ),
        (
            "INFO  jepsen.util - 0\t:ok\t:incr\t1\n",
            "e.log:2: expected the function :read, :write or :cas, found :incr",
        ),
        (
            "INFO  jepsen.util - 0\t:ok\t\n",
            "e.log:2: expected the function (:read, :write or :cas) after :ok, found ``",
        ),
        (
            "INFO  jepsen.util - 0\t:ok\t:read\t[1\n",
            "e.log:2: expected an EDN value after :read, found `[1`",
        ),
        (
            "INFO  jepsen.util - 0\t:ok\t:read\t1 2\n",
            "e.log:2: expected an EDN value after :read, found `1 2`",
        ),
        (
            "INFO  jepsen.util - 1\t:ok\t:read\t1\n",
            "e.log:2: ok completion of read by process 1 without an invocation",
        ),
    ];
    for (second, expected) in cases {
        let e = etcd_error(&format!("{first}{second}"));
        assert!(
            e.starts_with(expected),
            "{e:?} should start with {expected:?}"
        );
        assert!(!e.contains('\n'), "{e:?}");
    }
    let e = etcd_error("INFO  jepsen.util - 0\t:invoke\t:read\t5\n");
    assert!(
        e.starts_with("e.log:1: expected nil for :invoke :read, found 5"),
        "{e}"
    );
    let e = etcd_error("INFO  jepsen.util - 0\t:invoke\t:cas\t[1 x]\n");
    assert!(
        e.starts_with("e.log:1: expected [from to], two integers for :invoke :cas"),
        "{e}"
    );
}

#[test]
fn a_cut_short_last_log_line_is_skipped_with_a_warning() {
    let log = "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t[";
    let loaded = read_etcd(log.as_bytes(), "e.log").expect("tolerated");
    assert_eq!(loaded.history.len(), 1);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with("e.log:2: skipped the last line"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn kv_lines_become_string_store_ops() {
    let text = concat!(
        "{:process 0, :type :invoke, :f :put, :key \"a\", :value \"x\"}\n",
        "{:process 1, :type :invoke, :f :get, :key \"a\", :value nil}\n",
        "{:process 0, :type :ok, :f :put, :key \"a\", :value \"x\"}\n",
        "{:process 1, :type :ok, :f :get, :key \"a\", :value \"\"}\n",
    );
    let loaded = read_kv(text.as_bytes(), "kv.txt").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.format, Format::PorcupineKv);
    let ops = loaded.history.ops();
    assert_eq!(ops[0].key, Some(Key::Str("a".into())));
    assert_eq!(ops[0].value, Value::Str("x".into()));
    assert_eq!(ops[3].value, Value::Str(String::new()));
    assert_eq!(loaded.history.completion_of(1), Some(3));
    let times: Vec<u64> = ops.iter().map(|op| op.time_ns).collect();
    assert_eq!(times, vec![0, 1, 2, 3], "line order");
}

#[test]
fn kv_maps_outside_the_model_are_errors_at_their_line() {
    let first = "{:process 0, :type :invoke, :f :get, :key \"a\", :value nil}\n";
    let cases = [
        (
            "{:process 1, :type :invoke, :f :read, :key \"a\", :value nil}\n",
            "kv.txt:2: expected :f to be :get, :put or :append, found :read",
        ),
        (
            "{:process 1, :type :invoke, :f :put, :key 4, :value \"x\"}\n",
            "kv.txt:2: expected :key to be a string such as \"4\", found the integer 4",
        ),
        (
            "{:process 1, :type :invoke, :f :put, :value \"x\"}\n",
            "kv.txt:2: expected a :key (a string); the map has none",
        ),
        (
            "{:process 1, :type :invoke, :f :put, :key \"a\", :value 3}\n",
            "kv.txt:2: expected :value to be a string, found 3",
        ),
        (
            "{:process 1, :type :invoke, :f :get, :key \"a\", :value \"x\"}\n",
            "kv.txt:2: expected :value to be nil (a get has no argument)",
        ),
        (
            "{:process :nemesis, :type :info, :f :get, :key \"a\"}\n",
            "kv.txt:2: expected a client process number",
        ),
    ];
    for (second, expected) in cases {
        let e = kv_error(&format!("{first}{second}"));
        assert!(
            e.starts_with(expected),
            "{e:?} should start with {expected:?}"
        );
    }
}

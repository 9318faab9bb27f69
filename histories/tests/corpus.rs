//! Every file of the Porcupine corpus loads with format detection, and what loads is the
//! history FORMAT.md describes. Other crates' tests read the same files through
//! `env!("CARGO_MANIFEST_DIR")/../histories/tests/data/porcupine`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use histories::{F, Format, History, Key, OpType, Process, Value, read_any};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine")
}

/// (file, model, linearizable) rows of VERDICTS.tsv. The verdict column says `empty` for
/// etcd_095, which has no operations (trivially linearizable, as ANCHOR-TIMES.tsv has it).
fn verdicts() -> Vec<(String, String, Option<bool>)> {
    let text = std::fs::read_to_string(corpus_dir().join("VERDICTS.tsv")).expect("VERDICTS.tsv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file\tmodel\tlinearizable"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 3, "VERDICTS.tsv row {l:?}");
            let valid = match cols[2] {
                "true" => Some(true),
                "false" => Some(false),
                "empty" => None,
                other => panic!("VERDICTS.tsv: verdict {other:?}"),
            };
            (cols[0].to_string(), cols[1].to_string(), valid)
        })
        .collect()
}

/// The most client calls open at once: at most the number of client workers.
fn max_concurrency(history: &History) -> usize {
    let mut open = 0usize;
    let mut most = 0usize;
    for (pos, op) in history.ops().iter().enumerate() {
        if !op.is_client() {
            continue;
        }
        if op.is_invoke() {
            open += 1;
            most = most.max(open);
        } else {
            assert!(
                history.invocation_of(pos).is_some(),
                "completion at {pos} is unmatched"
            );
            open -= 1;
        }
    }
    most
}

#[test]
fn every_listed_file_loads_with_the_detected_format() {
    let rows = verdicts();
    assert_eq!(rows.len(), 103 + 6, "103 etcd logs and 6 kv files");
    let count = |verdict| rows.iter().filter(|r| r.2 == verdict).count();
    assert_eq!(
        count(Some(true)),
        23 + 3,
        "FORMAT.md: 23 etcd logs and 3 kv files are valid"
    );
    assert_eq!(count(Some(false)), 79 + 3);
    assert_eq!(count(None), 1, "only etcd_095 is empty");
    for (file, model, verdict) in &rows {
        let path = corpus_dir().join(file);
        let loaded = read_any(&path, None).unwrap_or_else(|e| panic!("{e}"));
        let history = &loaded.history;
        let calls: Vec<_> = history.client_calls().collect();
        // Every call in the corpus has its completion line (an :info one included).
        assert!(
            calls.iter().all(|(_, done)| done.is_some()),
            "{file}: a call without completion"
        );
        assert_eq!(
            history.len(),
            2 * calls.len(),
            "{file}: ops are calls' two halves"
        );
        match model.as_str() {
            "register" => {
                assert_eq!(loaded.format, Format::PorcupineEtcd, "{file}");
                if file == "jepsen/etcd_095.log" || verdict.is_none() {
                    assert_eq!(file, "jepsen/etcd_095.log");
                    assert!(history.is_empty(), "etcd_095 is empty");
                    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
                    assert!(
                        loaded.warnings[0].contains("empty"),
                        "{:?}",
                        loaded.warnings
                    );
                    continue;
                }
                assert!(loaded.warnings.is_empty(), "{file}: {:?}", loaded.warnings);
                assert!(
                    (73..=90).contains(&calls.len()),
                    "{file}: {} calls, FORMAT.md says 73-90",
                    calls.len()
                );
                let concurrency = max_concurrency(history);
                assert!(
                    (2..=5).contains(&concurrency),
                    "{file}: {concurrency} open at once"
                );
                for op in history.ops() {
                    assert!(
                        matches!(op.f, F::Read | F::Write | F::Cas),
                        "{file}: {op:?}"
                    );
                    assert_eq!(op.key, None);
                    let timed_out = op.error.as_deref() == Some("timed-out");
                    let shape_ok = match (&op.f, &op.value) {
                        _ if timed_out => op.kind != OpType::Ok && op.value.is_nil(),
                        (F::Read, Value::Nil | Value::Int(_)) => true,
                        (F::Write, Value::Int(_)) => true,
                        (F::Cas, v) => v.as_cas().is_some(),
                        _ => false,
                    };
                    assert!(shape_ok, "{file}: {op:?}");
                }
            }
            "kv" => {
                assert_eq!(loaded.format, Format::PorcupineKv, "{file}");
                assert!(loaded.warnings.is_empty(), "{file}: {:?}", loaded.warnings);
                let clients: usize = file[4..6].parse().expect("cNN");
                let processes: BTreeSet<Process> =
                    history.ops().iter().map(|op| op.process).collect();
                assert!(processes.len() <= clients, "{file}: {processes:?}");
                assert!(max_concurrency(history) <= clients, "{file}");
                let expected_calls = match clients {
                    1 => 30..=60,
                    10 => 300..=420,
                    _ => 1_700..=2_050,
                };
                assert!(
                    expected_calls.contains(&calls.len()),
                    "{file}: {} calls",
                    calls.len()
                );
                for op in history.ops() {
                    assert!(
                        matches!(op.f, F::Get | F::Put | F::Append),
                        "{file}: {op:?}"
                    );
                    assert!(matches!(op.key, Some(Key::Str(_))), "{file}: {op:?}");
                }
            }
            other => panic!("{file}: unknown model {other}"),
        }
    }
}

#[test]
fn every_data_file_has_a_verdict_and_an_anchor_time() {
    let listed: HashSet<String> = verdicts().into_iter().map(|r| r.0).collect();
    let mut on_disk = HashSet::new();
    for dir in ["jepsen", "kv"] {
        for entry in std::fs::read_dir(corpus_dir().join(dir)).expect("corpus dir") {
            let name = entry.expect("dir entry").file_name();
            on_disk.insert(format!("{dir}/{}", name.to_string_lossy()));
        }
    }
    assert_eq!(on_disk, listed, "files on disk vs VERDICTS.tsv");

    let anchors = std::fs::read_to_string(corpus_dir().join("ANCHOR-TIMES.tsv")).expect("anchors");
    let anchored: HashSet<&str> = anchors
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    for file in &listed {
        let base = file.rsplit('/').next().unwrap_or(file);
        assert!(anchored.contains(base), "{base} has no anchor time");
    }
    for name in ["FORMAT.md", "LICENSE-porcupine.md"] {
        assert!(corpus_dir().join(name).is_file(), "{name} is copied along");
    }
}

#[test]
fn etcd_000_reads_as_its_log_says() {
    let loaded = read_any(&corpus_dir().join("jepsen/etcd_000.log"), None).expect("etcd_000");
    let ops = loaded.history.ops();
    // Line 1: `0 :invoke :read nil`.
    assert_eq!(ops[0].process, Process::Client(0));
    assert_eq!(
        (ops[0].kind, &ops[0].f, &ops[0].value),
        (OpType::Invoke, &F::Read, &Value::Nil)
    );
    assert_eq!((ops[0].index, ops[0].time_ns), (0, 1));
    // Line 13: `0 :ok :read 3`, completing the invocation on line 12.
    assert_eq!((ops[12].kind, &ops[12].value), (OpType::Ok, &Value::Int(3)));
    assert_eq!(loaded.history.invocation_of(12), Some(11));
    // Line 19: `2 :invoke :cas [3 0]`.
    assert_eq!(ops[18].value.as_cas(), Some((3, 0)));
    // Line 29: `1 :fail :cas [0 3]`.
    assert_eq!(
        (ops[28].kind, ops[28].value.as_cas()),
        (OpType::Fail, Some((0, 3)))
    );
    // Line 61: `4 :info :write :timed-out` stays an indeterminate completion.
    assert_eq!(ops[60].kind, OpType::Info);
    assert_eq!(ops[60].value, Value::Nil);
    assert_eq!(ops[60].error.as_deref(), Some("timed-out"));
    assert_eq!(
        loaded.history.invocation_of(60).map(|i| &ops[i].f),
        Some(&F::Write)
    );
}

#[test]
fn etcd_100_with_spaces_reads_like_the_tab_separated_logs() {
    let loaded = read_any(&corpus_dir().join("jepsen/etcd_100.log"), None).expect("etcd_100");
    let ops = loaded.history.ops();
    // Line 1: `1   :invoke :write  3`; line 3: `4   :invoke :cas    [1 2]`.
    assert_eq!(
        (ops[0].process, &ops[0].value),
        (Process::Client(1), &Value::Int(3))
    );
    assert_eq!(ops[2].value.as_cas(), Some((1, 2)));
    // Line 88: `3   :fail   :read   :timed-out`.
    let fail = &ops[87];
    assert_eq!(
        (fail.kind, &fail.f, &fail.value),
        (OpType::Fail, &F::Read, &Value::Nil)
    );
    assert_eq!(fail.error.as_deref(), Some("timed-out"));
    assert_eq!(fail.time_ns, 88);
}

#[test]
fn kv_c01_ok_reads_as_its_lines_say() {
    let loaded = read_any(&corpus_dir().join("kv/c01-ok.txt"), None).expect("c01-ok");
    let first = &loaded.history.ops()[0];
    // `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`
    assert_eq!(first.process, Process::Client(0));
    assert_eq!(first.f, F::Append);
    assert_eq!(first.key, Some(Key::Str("0".into())));
    assert_eq!(first.value, Value::Str("x 0 0 y".into()));
    assert_eq!(loaded.history.completion_of(0), Some(1));
    let gets: Vec<_> = loaded
        .history
        .ops()
        .iter()
        .filter(|op| op.f == F::Get)
        .collect();
    assert!(!gets.is_empty());
    for get in gets {
        match get.kind {
            OpType::Invoke => assert_eq!(get.value, Value::Nil),
            _ => assert!(matches!(get.value, Value::Str(_)), "{get:?}"),
        }
    }
}

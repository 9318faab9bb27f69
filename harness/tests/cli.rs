//! The command-line contract: bad input is a one-line message and exit 254.

mod common;

use common::{describe, run_splitbrain};

#[test]
fn check_on_a_malformed_history_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"write","key":1,"value":1}"#,
            "\n",
            r#"{"index":1,"time":2,"process":0,"type":"okay","f":"write","key":1,"value":1}"#,
            "\n",
            r#"{"index":2,"time":3,"process":0,"type":"ok","f":"write","key":1,"value":1}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = run_splitbrain(&[
        "check",
        "--checker",
        "linearizable",
        "--model",
        "cas-register",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(254), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", path.display())),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_gives_both_verdicts_on_recorded_files() {
    let dir = tempfile::tempdir().unwrap();
    let line = |i: u64, p: u64, t: &str, f: &str, v: &str| {
        format!(
            r#"{{"index":{i},"time":{i},"process":{p},"type":"{t}","f":"{f}","key":1,"value":{v}}}"#
        )
    };
    let good = [
        line(0, 0, "invoke", "write", "3"),
        line(1, 0, "ok", "write", "3"),
        line(2, 1, "invoke", "read", "null"),
        line(3, 1, "ok", "read", "3"),
    ]
    .join("\n")
        + "\n";
    let bad = [
        line(0, 0, "invoke", "write", "3"),
        line(1, 0, "ok", "write", "3"),
        line(2, 1, "invoke", "read", "null"),
        line(3, 1, "ok", "read", "4"),
    ]
    .join("\n")
        + "\n";
    let good_path = dir.path().join("good.jsonl");
    let bad_path = dir.path().join("bad.jsonl");
    std::fs::write(&good_path, good).unwrap();
    std::fs::write(&bad_path, bad).unwrap();
    let out = run_splitbrain(&[
        "check",
        "--model",
        "cas-register",
        good_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = run_splitbrain(&[
        "check",
        "--model",
        "cas-register",
        bad_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn unknown_flags_and_values_exit_254_with_one_line() {
    for args in [
        &["run", "--replication", "eventual"][..],
        &["run", "--nemesis", "explode"][..],
        &["run", "--concurrency", "0"][..],
        &["run", "--frobnicate"][..],
        &["check", "--model", "unicorn", "x.jsonl"][..],
    ] {
        let out = run_splitbrain(args);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn check_on_a_missing_file_exits_254() {
    let out = run_splitbrain(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(out.status.code(), Some(254), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/history.jsonl"));
}

fn repo_file(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_detects_porcupine_logs_and_writes_an_escaped_html_counterexample() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("cx.html");
    let out = run_splitbrain(&[
        "check",
        "--model",
        "register",
        "--html",
        html.to_str().unwrap(),
        &repo_file("histories/tests/data/porcupine/jepsen/etcd_000.log"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cannot be linearized"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"), "a timeline is drawn");
    assert!(page.contains("cannot be linearized"));
    // Same verdict on a linearizable file, and no counterexample to draw.
    let ok = run_splitbrain(&[
        "check",
        "--model",
        "register",
        &repo_file("histories/tests/data/porcupine/jepsen/etcd_002.log"),
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
}

#[test]
fn check_splits_by_key_or_not_with_the_same_verdict() {
    for extra in [&[][..], &["--no-partition"][..]] {
        let mut args = vec!["check", "--model", "kv"];
        args.extend_from_slice(extra);
        let bad = repo_file("histories/tests/data/porcupine/kv/c10-bad.txt");
        args.push(&bad);
        let out = run_splitbrain(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", describe(&out));
    }
}

#[test]
fn a_stale_read_is_invalid_under_strict_serializability_and_valid_under_serializability() {
    let file = repo_file("checkers/tests/data/txn/la-stale-read.edn");
    let strict = run_splitbrain(&["check", "--checker", "list-append", &file]);
    assert_eq!(strict.status.code(), Some(1), "{}", describe(&strict));
    assert!(String::from_utf8_lossy(&strict.stdout).contains("G-single-realtime"));
    let serializable = run_splitbrain(&[
        "check",
        "--checker",
        "list-append",
        "--consistency-models",
        "serializable",
        &file,
    ]);
    assert_eq!(
        serializable.status.code(),
        Some(0),
        "{}",
        describe(&serializable)
    );
    let bad_model = run_splitbrain(&[
        "check",
        "--checker",
        "list-append",
        "--consistency-models",
        "serialisable-ish",
        &file,
    ]);
    assert_eq!(
        bad_model.status.code(),
        Some(254),
        "{}",
        describe(&bad_model)
    );
    let stderr = String::from_utf8_lossy(&bad_model.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn check_memory_limit_too_small_gives_unknown_not_a_crash() {
    let out = run_splitbrain(&[
        "check",
        "--model",
        "register",
        "--memory-limit",
        "1K",
        &repo_file("histories/tests/data/porcupine/jepsen/etcd_002.log"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("memory limit"), "{stdout}");
}

#[test]
fn a_bad_grudge_is_one_line_and_exit_254() {
    for (args, needle) in [
        (&["--grudge", "n1,n2|n9"][..], "no node n9"),
        (&["--grudge", "n1"][..], "cuts nothing"),
        (&["--grudge", "n1|n1"][..], "twice"),
        (&["--partition-shapes", "grudge"][..], "needs --grudge"),
        (
            &["--partition-shapes", "halves", "--grudge", "n1|n2"][..],
            "add grudge to --partition-shapes",
        ),
    ] {
        let mut all = vec![
            "run",
            "--nemesis",
            "partition",
            "--store",
            "/nonexistent/store",
        ];
        all.extend_from_slice(args);
        let out = run_splitbrain(&all);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

//! End-to-end runs against real refnode clusters: both verdicts, and nothing left running.

mod common;

use common::{describe, processes_mentioning, results_json, run_splitbrain};

#[test]
fn sync_replication_without_faults_is_linearizable() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let out = run_splitbrain(&[
        "run",
        "--nodes",
        "3",
        "--replication",
        "sync",
        "--workload",
        "register",
        "--nemesis",
        "none",
        "--concurrency",
        "5",
        "--time-limit",
        "8",
        "--rate",
        "150",
        "--seed",
        "7",
        "--store",
        store_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let results = results_json(store.path(), "refnode-register-sync-none");
    assert_eq!(results["valid"], serde_json::json!(true), "{results:#}");
    assert_eq!(results["seed"], serde_json::json!(7));
    assert_eq!(
        results["checker"]["linearizable"]["valid"],
        serde_json::json!(true)
    );
    let ok = results["stats"]["total"]["ok"].as_u64().unwrap();
    // Enough calls for the verdict to mean something (not a speed check).
    assert!(ok > 100, "only {ok} ok ops in 8 s at 150/s: {results:#}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verdict: valid"), "{stdout}");
    assert!(stdout.contains("seed 7"), "{stdout}");
    // The store holds the history and one log per node.
    let run_dir = store.path().join("refnode-register-sync-none/latest");
    assert!(run_dir.join("history.jsonl").is_file());
    for n in ["n1", "n2", "n3"] {
        assert!(run_dir.join(format!("{n}.log")).is_file(), "no log for {n}");
    }
    assert_eq!(
        processes_mentioning(store.path()),
        vec![],
        "refnode processes left behind"
    );
}

#[test]
fn async_replication_with_leader_kills_and_follower_reads_is_caught() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let out = run_splitbrain(&[
        "run",
        "--nodes",
        "3",
        "--replication",
        "async",
        "--workload",
        "register",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "4",
        "--read-routing",
        "any",
        "--concurrency",
        "5",
        "--time-limit",
        "25",
        "--rate",
        "200",
        "--seed",
        "7",
        "--store",
        store_arg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let results = results_json(store.path(), "refnode-register-async-kill");
    assert_eq!(results["valid"], serde_json::json!(false), "{results:#}");
    let lin = &results["checker"]["linearizable"];
    assert_eq!(lin["valid"], serde_json::json!(false));
    assert!(
        !lin["explanation"].as_array().unwrap().is_empty(),
        "an invalid verdict must explain itself: {lin:#}"
    );
    assert!(
        results["faults_injected"].as_u64().unwrap() >= 3,
        "{results:#}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verdict: INVALID"), "{stdout}");
    assert!(stdout.contains("repeat with: splitbrain run"), "{stdout}");
    assert!(stdout.contains("--seed 7"), "{stdout}");
    // The history records the faults as nemesis operations.
    let history = std::fs::read_to_string(
        store
            .path()
            .join("refnode-register-async-kill/latest/history.jsonl"),
    )
    .unwrap();
    assert!(history.contains(r#""process":"nemesis","type":"invoke","f":"kill""#));
    assert_eq!(
        processes_mentioning(store.path()),
        vec![],
        "refnode processes left behind"
    );
}

/// DDIA ch. 5 by measurement: with partitions and leader kills, naive failover (the most
/// up-to-date reachable follower promotes itself) loses acknowledged writes or serves stale
/// reads even with leader reads, while fenced failover (majority votes and commit, the old
/// leader fenced) stays linearizable under the same seeded fault schedule.
#[test]
fn fenced_failover_keeps_what_naive_failover_loses_under_partitions() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    let run = |failover: &str| {
        run_splitbrain(&[
            "run",
            "--replication",
            "async",
            "--failover",
            failover,
            "--read-routing",
            "leader",
            "--nemesis",
            "partition,kill",
            "--time-limit",
            "20",
            "--seed",
            "7",
            "--quiet",
            "--store",
            store_arg,
        ])
    };
    let naive = run("naive");
    assert_eq!(naive.status.code(), Some(1), "{}", describe(&naive));
    let results = results_json(store.path(), "refnode-register-async-partition+kill");
    assert_eq!(results["valid"], serde_json::json!(false), "{results:#}");
    assert_eq!(results["config"]["failover"], serde_json::json!("naive"));

    let fenced = run("fenced");
    assert_eq!(fenced.status.code(), Some(0), "{}", describe(&fenced));
    let results = results_json(store.path(), "refnode-register-async-fenced-partition+kill");
    assert_eq!(results["valid"], serde_json::json!(true), "{results:#}");
    assert!(
        results["faults_injected"].as_u64().unwrap() >= 2,
        "{results:#}"
    );
    assert_eq!(
        processes_mentioning(store.path()),
        vec![],
        "refnode processes left behind"
    );
}

#[test]
fn semi_sync_and_chain_with_leader_kills_stay_linearizable() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().to_str().unwrap();
    for replication in ["semi-sync", "chain"] {
        let out = run_splitbrain(&[
            "run",
            "--replication",
            replication,
            "--nemesis",
            "kill",
            "--time-limit",
            "12",
            "--seed",
            "7",
            "--quiet",
            "--store",
            store_arg,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{replication}: {}",
            describe(&out)
        );
        let results = results_json(
            store.path(),
            &format!("refnode-register-{replication}-kill"),
        );
        assert_eq!(results["valid"], serde_json::json!(true), "{results:#}");
        assert_eq!(
            results["config"]["replication"],
            serde_json::json!(replication)
        );
    }
    assert_eq!(processes_mentioning(store.path()), vec![]);
}

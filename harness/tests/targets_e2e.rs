//! `splitbrain run --target ...` against real systems, with known answers: etcd keeps its
//! promises under leader kills, PostgreSQL's serializable level is serializable and its
//! repeatable read (snapshot isolation) allows write skew (G2-item), a Redis run with
//! Sentinel failover starts, checks and cleans up, and the example Maelstrom node's gossip
//! delivers every broadcast. Every run must leave no process behind. Needs root and Debian's
//! etcd-server, redis-server, redis-sentinel and postgresql (ci/test.sh installs them).

mod common;

use std::path::Path;

use common::{describe, maelstrom_example, processes_mentioning, results_json, run_splitbrain};
use serde_json::json;

/// Runs `splitbrain run` with `args` and a fresh store; returns the store, the output and
/// the run's results. Asserts that nothing the run started is still alive.
fn run(args: &[&str]) -> (tempfile::TempDir, std::process::Output, serde_json::Value) {
    let store = tempfile::tempdir().unwrap();
    // PostgreSQL runs as the postgres user, which must be able to walk into the store.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut all = vec!["run", "--store", store.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_splitbrain(&all);
    let latest = store.path().join("latest");
    let test = std::fs::read_link(&latest)
        .unwrap_or_else(|e| panic!("no run stored ({e}): {}", describe(&out)));
    let test = test.iter().next().unwrap().to_str().unwrap().to_string();
    let results = results_json(store.path(), &test);
    assert_nothing_left(store.path(), &store.path().join(&test).join("latest"));
    (store, out, results)
}

/// No process mentions the store, and none of the pids the adapter recorded lives (a
/// Maelstrom node's command line does not name the store).
fn assert_nothing_left(store: &Path, run_dir: &Path) {
    assert_eq!(processes_mentioning(store), vec![], "processes left behind");
    let pids = std::fs::read_to_string(run_dir.join("pids")).unwrap_or_default();
    for line in pids.lines() {
        let Some(pid) = line.split_whitespace().nth(1) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z") | Some("X")),
            "{line} from {} is still running",
            run_dir.display()
        );
    }
}

#[test]
fn etcd_registers_with_linearizable_reads_stay_linearizable_when_members_are_killed() {
    let (_store, out, results) = run(&[
        "--target",
        "etcd",
        "--reads",
        "linearizable",
        "--workload",
        "register",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "3",
        "--concurrency",
        "5",
        "--time-limit",
        "12",
        "--rate",
        "100",
        "--seed",
        "11",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["test"], json!("etcd-register-linearizable-kill"));
    assert_eq!(results["config"]["target"], json!("etcd"));
    assert_eq!(
        results["config"]["target_options"]["reads"],
        json!("linearizable")
    );
    assert_eq!(
        results["checker"]["linearizable"]["valid"],
        json!(true),
        "{results:#}"
    );
    assert!(results["faults_injected"].as_u64().unwrap() >= 2);
    let command = results["command"].as_str().unwrap();
    assert!(
        command.contains("--target etcd --reads linearizable") && command.contains("--seed 11"),
        "{command}"
    );
    let ok = results["stats"]["total"]["ok"].as_u64().unwrap();
    assert!(ok > 300, "only {ok} ok ops: {results:#}");
}

#[test]
fn etcd_members_in_namespaces_stay_linearizable_under_partitions_and_leave_nothing() {
    if let Err(why) = harness::fabric::netns::available() {
        eprintln!("skipped: network namespaces are not available here: {why}");
        return;
    }
    let (store, out, results) = run(&[
        "--target",
        "etcd",
        "--workload",
        "register",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "3",
        "--concurrency",
        "5",
        "--time-limit",
        "12",
        "--rate",
        "100",
        "--seed",
        "12",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["config"]["net"], json!("netns"), "{results:#}");
    assert_eq!(
        results["checker"]["linearizable"]["valid"],
        json!(true),
        "{results:#}"
    );
    // The members ran inside the namespaces, on their addresses in 10.77.0.0/16.
    let run_dir = store
        .path()
        .join("etcd-register-linearizable-partition/latest");
    let ledger = std::fs::read_to_string(run_dir.join("resources.jsonl")).unwrap();
    let slot = ledger
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| (v["kind"] == "slot").then(|| v["slot"].as_u64()).flatten())
        .expect("a claimed slot in the ledger");
    let log = std::fs::read_to_string(run_dir.join("n1.log")).unwrap();
    assert!(
        log.contains(&format!("10.77.{slot}.1:")),
        "n1 did not bind its namespace address"
    );
    let left: Vec<String> = harness::fabric::netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("sb{slot}-")))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces left behind");
}

#[test]
fn a_redis_run_with_sentinel_failover_starts_checks_and_cleans_up() {
    let (_store, out, results) = run(&[
        "--target",
        "redis",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "4",
        "--concurrency",
        "5",
        "--time-limit",
        "10",
        "--rate",
        "100",
        "--seed",
        "5",
    ]);
    // Redis may or may not lose writes in a given run; the verdict is the checker's.
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{}",
        describe(&out)
    );
    assert_eq!(results["test"], json!("redis-register-kill"));
    assert!(
        results["checker"]["linearizable"]["valid"] != json!(null),
        "{results:#}"
    );
    assert!(results["stats"]["total"]["ok"].as_u64().unwrap() > 100);
}

#[test]
fn postgres_list_append_at_serializable_is_serializable() {
    let (_store, out, results) = run(&[
        "--target",
        "postgres",
        "--isolation",
        "serializable",
        "--workload",
        "list-append",
        "--concurrency",
        "8",
        "--time-limit",
        "8",
        "--rate",
        "200",
        "--seed",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        results["test"],
        json!("postgres-list-append-serializable-none")
    );
    let verdict = &results["checker"]["elle-list-append"];
    assert_eq!(verdict["valid"], json!(true), "{results:#}");
    assert_eq!(
        results["config"]["target_options"]["consistency_models"],
        json!(["serializable"])
    );
    let txns = results["stats"]["total"]["ok"].as_u64().unwrap();
    assert!(txns > 500, "only {txns} committed transactions");
}

#[test]
fn postgres_repeatable_read_checked_for_serializable_shows_write_skew() {
    let (_store, out, results) = run(&[
        "--target",
        "postgres",
        "--nodes",
        "1",
        "--isolation",
        "repeatable-read",
        "--consistency-models",
        "serializable",
        "--workload",
        "list-append",
        "--concurrency",
        "8",
        "--time-limit",
        "8",
        "--rate",
        "200",
        "--seed",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        results["test"],
        json!("postgres-list-append-repeatable-read-check-serializable-none")
    );
    let verdict = &results["checker"]["elle-list-append"];
    assert_eq!(verdict["valid"], json!(false), "{results:#}");
    let anomalies = verdict["details"]["anomaly-types"].as_array().unwrap();
    assert!(anomalies.contains(&json!("G2-item")), "{anomalies:?}");
    let command = results["command"].as_str().unwrap();
    assert!(
        command.contains("--isolation repeatable-read --consistency-models serializable"),
        "{command}"
    );
}

#[test]
fn maelstrom_broadcast_with_the_example_node_delivers_everything_and_counts_messages() {
    // The default --bin is this binary beside splitbrain.
    maelstrom_example();
    let (_store, out, results) = run(&[
        "--target",
        "maelstrom",
        "--maelstrom-workload",
        "broadcast",
        "--concurrency",
        "4",
        "--time-limit",
        "6",
        "--rate",
        "100",
        "--seed",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        results["test"],
        json!("maelstrom-broadcast-maelstrom-echo-broadcast-none")
    );
    assert_eq!(results["checker"]["broadcast"]["valid"], json!(true));
    let per_op = &results["net_stats"]["msgs_per_op"];
    let (all, clients, servers) = (
        per_op["all"].as_f64().unwrap(),
        per_op["clients"].as_f64().unwrap(),
        per_op["servers"].as_f64().unwrap(),
    );
    // A request and its reply per client operation, and gossip between the nodes.
    assert!((1.9..=2.1).contains(&clients), "{per_op}");
    assert!(
        servers > 0.0 && (all - clients - servers).abs() < 1e-9,
        "{per_op}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("msgs per op"), "{stdout}");
}

#[test]
fn flags_of_another_target_and_impossible_faults_are_one_line_errors() {
    for (args, needle) in [
        (&["--isolation", "serializable"][..], "--isolation applies"),
        (
            &["--target", "redis", "--workload", "list-append"][..],
            "does not run the list-append",
        ),
        (
            &[
                "--target",
                "etcd",
                "--endpoints",
                "127.0.0.1:1",
                "--nemesis",
                "kill",
            ][..],
            "external etcd",
        ),
        (
            &["--target", "postgres", "--nemesis", "delay"][..],
            "userspace proxy",
        ),
        (&["--target", "etcd", "--nemesis", "clock"][..], "(Clock)"),
        (
            &["--target", "maelstrom", "--workload", "register"][..],
            "--maelstrom-workload",
        ),
    ] {
        let store = tempfile::tempdir().unwrap();
        let mut all = vec!["run", "--store", store.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let out = run_splitbrain(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(needle), "{args:?}: {stderr}");
        assert!(
            stderr
                .lines()
                .filter(|l| l.starts_with("splitbrain: "))
                .count()
                <= 3,
            "{stderr}"
        );
        assert_eq!(processes_mentioning(store.path()), vec![]);
    }
}

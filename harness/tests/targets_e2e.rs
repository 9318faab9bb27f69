//! `splitbrain run --target ...` against real systems, with known answers: etcd keeps its
//! promises under leader kills, but its serializable reads at a member cut off by a
//! partition are stale; PostgreSQL's serializable level is serializable, its repeatable
//! read (snapshot isolation) allows write skew (G2-item), and its read committed allows read
//! skew, write skew and lost updates but never G0 or G1; Redis with Sentinel loses
//! acknowledged writes when a partition isolates the primary; and the gossip of the example
//! Maelstrom node and of a Go node delivers every broadcast, and JavaScript and Ruby echo
//! nodes answer every echo. Every run must leave no process behind. Needs root and Debian's
//! etcd-server, redis-server, redis-sentinel, postgresql, golang-go, nodejs and ruby
//! (ci/test.sh installs them).

mod common;
#[path = "../../targets/tests/maelstrom-nodes/mod.rs"]
mod maelstrom_nodes;

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
    let results_file = store.path().join(&test).join("latest").join("results.json");
    assert!(
        results_file.exists(),
        "the run stored no results: {}",
        describe(&out)
    );
    let results = results_json(store.path(), &test);
    assert_nothing_left(store.path(), &store.path().join(&test).join("latest"));
    (store, out, results)
}

/// The Redis runs of this file take turns: a run without network faults picks free loopback
/// ports and then binds them, and a cluster starting alongside could take one in between (as
/// in `targets/tests/redis.rs`).
static ONE_REDIS_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`run`], for a Redis run: one at a time.
fn run_redis(args: &[&str]) -> (tempfile::TempDir, std::process::Output, serde_json::Value) {
    let _turn = ONE_REDIS_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    run(args)
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
    // Enough calls for the verdict to mean something (not a speed check).
    assert!(ok > 100, "only {ok} ok ops: {results:#}");
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
    let (_store, out, results) = run_redis(&[
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

/// Issue 9's ground truth for a lost-write checker: a partition cuts the Redis primary (and
/// the Sentinel beside it) off from the replicas, while the clients, still connected to it,
/// keep writing. The majority's Sentinels promote a replica; the old primary acknowledges
/// every write until, after the heal, the Sentinels make it a replica of the new one, and
/// it throws its own data away. The recovery reads (through a fresh Sentinel-aware client)
/// find the new primary's older versions.
#[test]
fn redis_sentinel_loses_acknowledged_writes_when_the_primary_is_cut_off() {
    if let Err(why) = harness::fabric::netns::available() {
        eprintln!("skipped: network namespaces are not available here: {why}");
        return;
    }
    // One partition from 6 s to 12 s: far longer than Sentinel's down-after (1 s) and the
    // failover that follows it (about 2 s); faults end 5 s before the 22 s limit.
    let (_store, out, results) = run_redis(&[
        "--target",
        "redis",
        "--workload",
        "session",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "primaries",
        "--nemesis-interval",
        "12",
        "--concurrency",
        "5",
        "--time-limit",
        "22",
        "--rate",
        "100",
        "--seed",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(results["test"], json!("redis-session-partition"));
    let run_dir = Path::new(results["store"].as_str().unwrap());
    let history = history_lines(run_dir);
    let cuts: Vec<&serde_json::Value> = history
        .iter()
        .filter(|op| op["f"] == "start-partition" && op["type"] == "info")
        .map(|op| &op["value"]["cut"])
        .collect();
    assert_eq!(cuts, vec![&json!("n1 | n2 n3")], "the primary n1 alone");
    // Statements are refnode's: the workload sent Redis reads and writes only.
    assert!(
        history
            .iter()
            .all(|op| op["process"] == "nemesis" || op["f"] == "read" || op["f"] == "write"),
        "a call Redis does not run"
    );
    let lost = &results["checker"]["lost-writes"];
    assert_eq!(lost["valid"], json!(false), "{results:#}");
    let count = lost["details"]["violation_count"].as_u64().unwrap();
    let acknowledged = lost["details"]["acknowledged_writes"].as_u64().unwrap();
    assert!(count >= 20, "only {count} of {acknowledged} writes lost");
    // Acknowledged by the old primary, gone from what the new one serves.
    let first = &lost["details"]["lost"][0];
    assert_eq!(first["write"]["node"], json!("n1"), "{first:#}");
    assert_ne!(first["recovery_read"]["node"], json!("n1"), "{first:#}");
    assert_eq!(
        results["checker"]["linearizable"]["valid"],
        json!(false),
        "{results:#}"
    );
    // No per-node reads on a real system, so no convergence verdict.
    let checkers: Vec<&String> = results["checker"].as_object().unwrap().keys().collect();
    assert!(
        !checkers.iter().any(|c| *c == "convergence") && checkers.len() == 8,
        "{checkers:?}"
    );
    let command = results["command"].as_str().unwrap();
    assert!(
        command.contains("--workload session") && command.contains("--partition-shapes primaries"),
        "{command}"
    );
}

/// The set workload on Redis + Sentinel without faults: every acknowledged add is in the
/// final set that the recovery read (a fresh Sentinel-aware client, after the settle) finds
/// at the primary.
#[test]
fn redis_sets_keep_every_acknowledged_add_without_faults() {
    let (_store, out, results) = run_redis(&[
        "--target",
        "redis",
        "--workload",
        "set",
        "--nemesis",
        "none",
        "--concurrency",
        "5",
        "--time-limit",
        "10",
        "--rate",
        "100",
        "--seed",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["test"], json!("redis-set-none"));
    let checkers: Vec<&String> = results["checker"].as_object().unwrap().keys().collect();
    assert_eq!(
        checkers,
        vec!["set-add-wins"],
        "no per-node reads, no convergence"
    );
    let sets = &results["checker"]["set-add-wins"];
    assert_eq!(sets["valid"], json!(true), "{results:#}");
    let run_dir = Path::new(results["store"].as_str().unwrap());
    let history = history_lines(run_dir);
    let acknowledged_adds = ok_calls(&history, "set-add");
    // Enough adds and keys for the verdict to mean something (not a speed check).
    assert!(
        acknowledged_adds > 100,
        "only {acknowledged_adds} adds: {sets:#}"
    );
    assert!(
        sets["details"]["keys_checked"].as_u64().unwrap() >= 3,
        "{sets:#}"
    );
    // Every key's final set came from the recovery read at the primary.
    let recovery: Vec<&serde_json::Value> = history
        .iter()
        .filter(|op| op["process"].as_u64().is_some_and(|p| p >= 1_000_000_000))
        .filter(|op| op["type"] == "ok")
        .collect();
    assert!(!recovery.is_empty());
    assert!(
        recovery
            .iter()
            .all(|op| op["f"] == "set-read" && op["node"] == "n1"),
        "{recovery:?}"
    );
    eprintln!(
        "redis set, no faults: {acknowledged_adds} acknowledged adds, {} removes, {} keys checked",
        ok_calls(&history, "set-remove"),
        sets["details"]["keys_checked"]
    );
}

/// Issue 9's ground truth for the set checker: as in
/// `redis_sentinel_loses_acknowledged_writes_when_the_primary_is_cut_off`, a partition
/// isolates the primary, the Sentinels promote a replica, and the old primary keeps
/// acknowledging adds until it becomes a replica of the new one and drops them. The final
/// set the recovery read finds lacks them: `set-add-wins` reports them as lost adds.
#[test]
fn redis_sentinel_loses_acknowledged_set_adds_when_the_primary_is_cut_off() {
    if let Err(why) = harness::fabric::netns::available() {
        eprintln!("skipped: network namespaces are not available here: {why}");
        return;
    }
    // One partition from 6 s to 12 s; faults end 5 s before the 22 s limit.
    let (_store, out, results) = run_redis(&[
        "--target",
        "redis",
        "--workload",
        "set",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "primaries",
        "--nemesis-interval",
        "12",
        "--concurrency",
        "5",
        "--time-limit",
        "22",
        "--rate",
        "100",
        "--seed",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(results["test"], json!("redis-set-partition"));
    let run_dir = Path::new(results["store"].as_str().unwrap());
    let history = history_lines(run_dir);
    let cuts: Vec<&serde_json::Value> = history
        .iter()
        .filter(|op| op["f"] == "start-partition" && op["type"] == "info")
        .map(|op| &op["value"]["cut"])
        .collect();
    assert_eq!(cuts, vec![&json!("n1 | n2 n3")], "the primary n1 alone");
    let sets = &results["checker"]["set-add-wins"];
    assert_eq!(sets["valid"], json!(false), "{results:#}");
    let lost = sets["details"]["lost_adds"].as_array().unwrap();
    let acknowledged_adds = ok_calls(&history, "set-add");
    assert!(
        lost.len() >= 20,
        "only {} of {acknowledged_adds} acknowledged adds lost: {sets:#}",
        lost.len()
    );
    // Acknowledged by the old primary, missing from the final set read at the new one.
    assert!(lost.iter().all(|l| l["add"]["type"] == "ok"), "{lost:?}");
    assert!(lost.iter().any(|l| l["add"]["node"] == "n1"), "{lost:?}");
    let recovery_nodes: std::collections::BTreeSet<&str> = history
        .iter()
        .filter(|op| op["process"].as_u64().is_some_and(|p| p >= 1_000_000_000))
        .filter(|op| op["type"] == "ok" && op["f"] == "set-read")
        .filter_map(|op| op["node"].as_str())
        .collect();
    assert!(
        !recovery_nodes.is_empty() && !recovery_nodes.contains("n1"),
        "the recovery reads ask the new primary: {recovery_nodes:?}"
    );
    assert!(
        sets["summary"].as_str().unwrap().contains("lost add"),
        "{sets:#}"
    );
    eprintln!(
        "redis set, primary cut off: {} of {acknowledged_adds} acknowledged adds lost ({} keys checked); {}",
        lost.len(),
        sets["details"]["keys_checked"],
        sets["summary"]
    );
}

/// Calls of `f` that completed `ok` in the history.
fn ok_calls(history: &[serde_json::Value], f: &str) -> usize {
    history
        .iter()
        .filter(|op| op["f"] == f && op["type"] == "ok")
        .count()
}

/// Issue 9's ground truth for stale reads: a partition cuts one etcd member off, and the
/// clients bound to it (process mod 3) keep reading there. Serializable reads are answered
/// from the member's own state, so it serves the values of before the partition while the
/// majority moves on; linearizable reads go through the leader's read index and fail there.
/// Both runs have the same seed, so the same member is cut off at the same time.
#[test]
fn etcd_serializable_reads_at_a_cut_off_member_are_stale_and_linearizable_reads_are_not() {
    if let Err(why) = harness::fabric::netns::available() {
        eprintln!("skipped: network namespaces are not available here: {why}");
        return;
    }
    // One partition from 5 s to 10 s (faults end 4 s before the 16 s limit). Nine clients,
    // three bound to each member: a client bound to the cut-off member spends most of the
    // partition waiting out its writes there, so more of them make more reads.
    let args = |reads: &'static str| {
        [
            "--target",
            "etcd",
            "--reads",
            reads,
            "--workload",
            "register",
            "--nemesis",
            "partition",
            "--partition-shapes",
            "one",
            "--nemesis-interval",
            "10",
            "--concurrency",
            "9",
            "--time-limit",
            "16",
            "--rate",
            "150",
            "--seed",
            "1",
        ]
    };
    let mut cut_off = Vec::new();
    for reads in ["serializable", "linearizable"] {
        let (_store, out, results) = run(&args(reads));
        let run_dir = Path::new(results["store"].as_str().unwrap());
        let history = history_lines(run_dir);
        let during = reads_during_the_partition(&history);
        let linearizable = &results["checker"]["linearizable"];
        if reads == "serializable" {
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert_eq!(linearizable["valid"], json!(false), "{results:#}");
            assert!(during.ok_at_cut_off > 0, "{during:?}");
            // Every key that cannot be linearized is pinned on a read, and some on a read the
            // cut-off member answered. Not all: a write the cut-off member took and never
            // answered (`info`) may be placed to explain its stale read, and the
            // contradiction then surfaces at a later read elsewhere.
            let keys = linearizable["details"]["partitions"].as_array().unwrap();
            let mut at_cut_off = 0;
            for key in keys {
                let culprit = &key["culprit"];
                let completion = &history[culprit["complete_index"].as_u64().unwrap() as usize];
                assert_eq!(culprit["f"], json!("read"), "{culprit:#}");
                if completion["node"] == json!(during.member) {
                    at_cut_off += 1;
                }
            }
            assert!(at_cut_off > 0, "{linearizable:#}");
        } else {
            assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
            assert_eq!(linearizable["valid"], json!(true), "{results:#}");
            assert_eq!(during.ok_at_cut_off, 0, "{during:?}");
            assert!(during.failed_at_cut_off > 0, "{during:?}");
        }
        assert_eq!(
            results["test"],
            json!(format!("etcd-register-{reads}-partition"))
        );
        cut_off.push(during.member);
    }
    assert_eq!(cut_off[0], cut_off[1], "the same schedule");
}

/// The history's lines as JSON.
fn history_lines(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Reads invoked after the (only) partition was in force and completed before it healed, at
/// the member it cut off.
#[derive(Debug)]
struct CutOffReads {
    member: String,
    ok_at_cut_off: usize,
    failed_at_cut_off: usize,
}

fn reads_during_the_partition(history: &[serde_json::Value]) -> CutOffReads {
    let nemesis = |f: &str, kind: &str| {
        history
            .iter()
            .position(|op| op["f"] == f && op["type"] == kind)
            .unwrap_or_else(|| panic!("no {f} {kind} in the history"))
    };
    let (from, to) = (
        nemesis("start-partition", "info"),
        nemesis("stop-partition", "invoke"),
    );
    // The cut reads "n1 n2 | n3": the side of one member.
    let cut = history[from]["value"]["cut"].as_str().unwrap();
    let member = cut
        .split(" | ")
        .find(|side| !side.contains(' '))
        .unwrap_or_else(|| panic!("no single member in {cut:?}"))
        .to_string();
    let mut invoked = std::collections::HashSet::new();
    let (mut ok, mut failed) = (0, 0);
    for op in &history[from..to] {
        if op["f"] != "read" {
            continue;
        }
        if op["type"] == "invoke" {
            invoked.insert(op["process"].to_string());
        } else if invoked.remove(&op["process"].to_string()) && op["node"] == json!(member) {
            match op["type"].as_str() {
                Some("ok") => ok += 1,
                _ => failed += 1,
            }
        }
    }
    CutOffReads {
        member,
        ok_at_cut_off: ok,
        failed_at_cut_off: failed,
    }
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
    // Enough transactions for the verdict to mean something (not a speed check).
    assert!(txns > 100, "only {txns} committed transactions");
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

/// What PostgreSQL's READ COMMITTED prevents (Hermitage: G0, G1a, G1b, G1c), with the
/// anomalies that imply them (a read of an aborted or intermediate state, a future read) and
/// the ones no Adya history may contain: none may appear in any history it produces.
const READ_COMMITTED_PREVENTS: [&str; 10] = [
    "G0",
    "G1a",
    "G1b",
    "G1c",
    "dirty-update",
    "incompatible-order",
    "future-read",
    "duplicate-elements",
    "garbage",
    "cyclic-versions",
];

/// What it permits and list-append shows: read skew (G-single, and the longer cycles of
/// G-nonadjacent), write skew (G2-item), lost updates, and a transaction's second read seeing
/// commits made since its first (`internal`: each statement takes a new snapshot).
const READ_COMMITTED_PERMITS: [&str; 5] = [
    "G-single",
    "G-nonadjacent",
    "G2-item",
    "lost-update",
    "internal",
];

#[test]
fn postgres_read_committed_shows_the_anomalies_it_permits_and_none_it_prevents() {
    use checkers::txn::ConsistencyModel;
    // The model table agrees with PostgreSQL's documentation about what read committed is.
    let prohibited = ConsistencyModel::prohibited_anomalies(&[ConsistencyModel::ReadCommitted]);
    for a in READ_COMMITTED_PREVENTS {
        assert!(
            prohibited.contains(a),
            "{a} is not prohibited: {prohibited:?}"
        );
    }
    for a in READ_COMMITTED_PERMITS {
        assert!(!prohibited.contains(a), "{a} is prohibited: {prohibited:?}");
    }

    let (store, out, results) = run(&[
        "--target",
        "postgres",
        "--nodes",
        "1",
        "--isolation",
        "read-committed",
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
    // Judged at the level asked for: every anomaly found is one read committed allows, so the
    // run is valid, and the verdict names them.
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        results["test"],
        json!("postgres-list-append-read-committed-none")
    );
    assert_eq!(
        results["config"]["target_options"]["consistency_models"],
        json!(["read-committed"])
    );
    let verdict = &results["checker"]["elle-list-append"];
    assert_eq!(verdict["valid"], json!(true), "{results:#}");
    let details = &verdict["details"];
    assert_eq!(
        details["prohibited-anomaly-types"],
        json!([]),
        "{details:#}"
    );
    let found: Vec<&str> = details["anomaly-types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // Ten runs on a 2-core machine each found G-single (11 to 23 times), G2-item and
    // internal; any one permitted anomaly will do.
    assert!(
        found.iter().any(|a| READ_COMMITTED_PERMITS.contains(a)),
        "no anomaly read committed permits was found: {found:?}"
    );
    for a in &found {
        assert!(
            !READ_COMMITTED_PREVENTS.contains(a),
            "{a} found: {details:#}"
        );
    }
    let summary = verdict["summary"].as_str().unwrap();
    assert!(
        summary.contains("valid under read-committed")
            && summary.contains("found only anomalies these models allow"),
        "{summary}"
    );
    let txns = results["stats"]["total"]["ok"].as_u64().unwrap();
    // Enough transactions for the verdict to mean something (not a speed check).
    assert!(txns > 100, "only {txns} committed transactions");

    // The same history judged for serializability is invalid, for exactly those anomalies.
    let history = store
        .path()
        .join("postgres-list-append-read-committed-none/latest/history.jsonl");
    let check = run_splitbrain(&[
        "check",
        "--checker",
        "list-append",
        "--consistency-models",
        "serializable",
        "--json",
        history.to_str().unwrap(),
    ]);
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    let checked: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let serializable = &checked["elle-list-append"];
    assert_eq!(serializable["valid"], json!(false), "{serializable:#}");
    assert_eq!(
        serializable["details"]["prohibited-anomaly-types"], details["anomaly-types"],
        "{serializable:#}"
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
fn maelstrom_broadcast_waits_out_partitions_and_loss_and_still_delivers_everything() {
    maelstrom_example();
    let (store, out, results) = run(&[
        "--target",
        "maelstrom",
        "--maelstrom-workload",
        "broadcast",
        "--nemesis",
        "partition,loss",
        "--nemesis-interval",
        "1.5",
        "--loss-percent",
        "50",
        "--concurrency",
        "4",
        "--time-limit",
        "10",
        "--rate",
        "100",
        "--seed",
        "11",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["checker"]["broadcast"]["valid"], json!(true));
    // The host's router is the fabric: its faults dropped gossip, which was retried.
    assert_eq!(results["config"]["net"], json!("maelstrom"), "{results}");
    assert!(
        results["net_stats"]["dropped"].as_u64().unwrap() > 0,
        "{results}"
    );
    let per_op = &results["net_stats"]["msgs_per_op"];
    assert!(per_op["servers"].as_f64().unwrap() > 0.0, "{per_op}");
    let test = results["test"].as_str().unwrap();
    let history =
        std::fs::read_to_string(store.path().join(test).join("latest").join("history.jsonl"))
            .unwrap();
    let nemesis: Vec<&str> = history
        .lines()
        .filter(|l| l.contains(r#""process":"nemesis""#))
        .collect();
    for (start, stop) in [
        ("start-partition", "stop-partition"),
        ("start-loss", "stop-loss"),
    ] {
        let count = |f: &str| {
            nemesis
                .iter()
                .filter(|l| l.contains(&format!("\"f\":\"{f}\"")))
                .count()
        };
        assert!(count(start) > 0, "no {start}: {nemesis:#?}");
        assert_eq!(count(start), count(stop), "{nemesis:#?}");
    }
    // No fault failed to start or heal.
    assert!(
        nemesis.iter().all(|l| !l.contains(r#""error""#)),
        "{nemesis:#?}"
    );
}

#[test]
fn maelstrom_pn_counter_converges_to_the_acknowledged_sum_through_partitions() {
    maelstrom_example();
    let (_store, out, results) = run(&[
        "--target",
        "maelstrom",
        "--maelstrom-workload",
        "pn-counter",
        "--nemesis",
        "partition,delay",
        "--nemesis-interval",
        "1.5",
        "--concurrency",
        "4",
        "--time-limit",
        "8",
        "--rate",
        "100",
        "--seed",
        "12",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        results["test"],
        json!("maelstrom-pn-counter-maelstrom-echo-broadcast-partition+delay")
    );
    let counter = &results["checker"]["counter"];
    assert_eq!(counter["valid"], json!(true), "{counter}");
    assert_eq!(
        counter["details"]["final_reads"].as_array().unwrap().len(),
        3,
        "{counter}"
    );
    assert!(
        counter["details"]["ok_adds"].as_u64().unwrap() > 0,
        "{counter}"
    );
    // The reads during the run are judged too: each within what the adds so far can sum to.
    assert!(
        counter["details"]["intermediate_reads"].as_u64().unwrap() > 0,
        "{counter}"
    );
    assert_eq!(counter["details"]["out_of_bounds_reads"], json!([]));
}

/// A node written in Go (standard library only, built here from
/// `targets/tests/maelstrom-nodes/broadcast.go`) runs unchanged as `--bin`: its gossip,
/// node-to-node requests routed and partitioned by the host, delivers every broadcast.
#[test]
fn maelstrom_broadcast_with_a_go_node_delivers_everything_through_partitions() {
    let go = maelstrom_nodes::go_build("broadcast.go", "broadcast-go");
    let (_store, out, results) = run(&[
        "--target",
        "maelstrom",
        "--bin",
        go.binary.to_str().unwrap(),
        "--maelstrom-workload",
        "broadcast",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "1.5",
        "--concurrency",
        "4",
        "--time-limit",
        "6",
        "--rate",
        "50",
        "--seed",
        "13",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        results["test"],
        json!("maelstrom-broadcast-broadcast-go-partition")
    );
    let broadcast = &results["checker"]["broadcast"];
    assert_eq!(broadcast["valid"], json!(true), "{broadcast}");
    assert!(
        results["stats"]["ops"]["broadcast"]["ok"].as_u64().unwrap() > 0,
        "{results}"
    );
    assert!(
        results["net_stats"]["msgs_per_op"]["servers"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{results}"
    );
    assert!(
        results["net_stats"]["dropped"].as_u64().unwrap() > 0,
        "the partitions cut no gossip: {results}"
    );
    assert_eq!(processes_mentioning(go.dir.path()), vec![]);
}

/// Script nodes run as `--bin` through their `#!` line: JavaScript and Ruby echo nodes.
#[test]
fn maelstrom_echo_with_javascript_and_ruby_nodes_is_valid() {
    for (script, name) in [("echo.js", "echo_js"), ("echo.rb", "echo_rb")] {
        let bin = maelstrom_nodes::source(script);
        let (_store, out, results) = run(&[
            "--target",
            "maelstrom",
            "--bin",
            bin.to_str().unwrap(),
            "--maelstrom-workload",
            "echo",
            "--concurrency",
            "3",
            "--time-limit",
            "2",
            "--rate",
            "50",
            "--seed",
            "14",
        ]);
        assert_eq!(out.status.code(), Some(0), "{script}: {}", describe(&out));
        assert_eq!(
            results["test"],
            json!(format!("maelstrom-echo-{name}-none"))
        );
        let echo = &results["checker"]["echo"];
        assert_eq!(echo["valid"], json!(true), "{script}: {echo}");
        assert!(
            echo["details"]["checked"].as_u64().unwrap() > 0,
            "{script}: {echo}"
        );
    }
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
        // A refused run leaves no run directory (nor a `latest` naming one).
        let left: Vec<_> = std::fs::read_dir(store.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?} in the store");
    }
}

//! The single-leader designs of DDIA ch. 5 judged by the session workload: for each mode,
//! failover strategy, read routing and log kind, a fixed seed shows a guarantee the chapter
//! says holds holding and one it says breaks caught, against real refnode clusters.

mod common;

use common::timed_run;
use serde_json::Value;

/// Runs the session workload with `extra` flags; returns (exit code, results.json).
fn session_run(extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec![
        "--workload",
        "session",
        "--nodes",
        "3",
        "--concurrency",
        "6",
        "--rate",
        "300",
        "--time-limit",
        "12",
        "--nemesis-interval",
        "4",
        "--seed",
        "1",
    ];
    args.extend_from_slice(extra);
    timed_run(&args)
}

fn valid(results: &Value, checker: &str) -> Value {
    let v = &results["checker"][checker];
    assert!(!v.is_null(), "no {checker} verdict: {results:#}");
    v["valid"].clone()
}

/// Asserts each checker's verdict, printing the run's summaries when one differs.
fn expect(results: &Value, cells: &[(&str, bool)]) {
    for &(checker, held) in cells {
        assert_eq!(
            valid(results, checker),
            Value::Bool(held),
            "{checker} should have {}: {:#}",
            if held { "held" } else { "been violated" },
            results["checker"][checker]
        );
    }
}

#[test]
fn sync_replication_with_fenced_failover_keeps_every_guarantee_under_partitions() {
    let (code, results) = session_run(&[
        "--replication",
        "sync",
        "--failover",
        "fenced",
        "--read-routing",
        "leader",
        "--nemesis",
        "partition",
    ]);
    assert_eq!(code, Some(0), "{results:#}");
    expect(
        &results,
        &[
            ("linearizable", true),
            ("read-your-writes", true),
            ("monotonic-reads", true),
            ("monotonic-writes", true),
            ("writes-follow-reads", true),
            ("consistent-prefix", true),
            ("lost-writes", true),
            ("convergence", true),
            ("staleness", true),
        ],
    );
    assert!(
        results["faults_injected"].as_u64().unwrap() >= 2,
        "{results:#}"
    );
    // The final reads ran: every node was read, and the recovery reads judged writes.
    let lost = &results["checker"]["lost-writes"]["details"];
    assert!(lost["keys_checked"].as_u64().unwrap() > 10, "{lost:#}");
}

#[test]
fn async_naive_failover_loses_acknowledged_writes_that_fenced_failover_keeps() {
    // Cutting the leader off: it keeps acknowledging writes that the other side never sees.
    let (code, naive) = session_run(&[
        "--replication",
        "async",
        "--failover",
        "naive",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "primaries",
    ]);
    assert_eq!(code, Some(1), "{naive:#}");
    expect(&naive, &[("lost-writes", false), ("linearizable", false)]);
    let lost = &naive["checker"]["lost-writes"];
    assert!(
        lost["explanation"][0].as_str().unwrap().contains("write"),
        "a lost write names the write and the recovery read: {lost:#}"
    );
    let (_, fenced) = session_run(&[
        "--replication",
        "async",
        "--failover",
        "fenced",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "primaries",
    ]);
    expect(&fenced, &[("lost-writes", true), ("convergence", true)]);
}

#[test]
fn reads_at_any_replica_break_monotonic_reads_which_sticky_and_ryw_routing_keep() {
    let (code, any) = session_run(&[
        "--replication",
        "async",
        "--read-routing",
        "any",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "primaries",
    ]);
    assert_eq!(code, Some(1), "{any:#}");
    expect(
        &any,
        &[
            ("monotonic-reads", false),
            ("read-your-writes", false),
            ("consistent-prefix", false),
            ("staleness", false),
        ],
    );
    let stale = &any["checker"]["staleness"]["details"];
    assert!(stale["ms_behind"]["p99"].as_u64().unwrap() > 0, "{stale:#}");

    // One replica per client: reads never go back, but a cut-off replica misses the
    // client's own writes.
    let (_, sticky) = session_run(&[
        "--replication",
        "async",
        "--failover",
        "fenced",
        "--read-routing",
        "sticky",
        "--nemesis",
        "partition",
    ]);
    expect(
        &sticky,
        &[("monotonic-reads", true), ("read-your-writes", false)],
    );

    // Reads only where the client's last write is applied.
    let (_, ryw) = session_run(&[
        "--replication",
        "async",
        "--failover",
        "fenced",
        "--read-routing",
        "ryw",
        "--nemesis",
        "partition",
    ]);
    expect(&ryw, &[("read-your-writes", true)]);
}

#[test]
fn a_statement_log_makes_replicas_diverge_where_the_logical_log_converges() {
    let (code, statement) = session_run(&[
        "--replication",
        "sync",
        "--failover",
        "fenced",
        "--log",
        "statement",
        "--nemesis",
        "none",
    ]);
    assert_eq!(code, Some(1), "{statement:#}");
    expect(&statement, &[("convergence", false), ("lost-writes", true)]);
    let diverged = &statement["checker"]["convergence"]["details"]["diverged"];
    assert!(
        diverged.as_array().unwrap().iter().all(|d| d["key"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            >= 1_000_000_000),
        "only the statement keys diverge: {diverged:#}"
    );
    assert_eq!(statement["config"]["log"], Value::from("statement"));
    let (code, logical) = session_run(&[
        "--replication",
        "sync",
        "--failover",
        "fenced",
        "--log",
        "logical",
        "--nemesis",
        "none",
    ]);
    assert_eq!(code, Some(0), "{logical:#}");
    expect(&logical, &[("convergence", true)]);
}

#[test]
fn chain_and_semi_sync_replication_keep_linearizability_and_writes_under_kills() {
    for replication in ["chain", "semi-sync"] {
        let (code, results) = session_run(&[
            "--replication",
            replication,
            "--failover",
            "fenced",
            "--nemesis",
            "kill",
        ]);
        assert_eq!(code, Some(0), "{replication}: {results:#}");
        expect(
            &results,
            &[
                ("linearizable", true),
                ("lost-writes", true),
                ("read-your-writes", true),
                ("monotonic-reads", true),
            ],
        );
    }
}

//! The multi-leader and leaderless designs of DDIA ch. 5 through `splitbrain run`: for each
//! claim of the chapter a fixed seed shows the guarantee held by one configuration and broken
//! by another, with the real refnode binary and the harness's final per-node reads.

mod common;

use common::timed_run;
use serde_json::Value;

/// Runs a 3-node cluster with `extra` flags; returns results.json.
fn replication_run(extra: &[&str]) -> Value {
    let mut args = vec![
        "--nodes",
        "3",
        "--concurrency",
        "6",
        "--rate",
        "300",
        "--time-limit",
        "8",
        "--nemesis-interval",
        "2",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    let (code, results) = timed_run(&args);
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}: {results:#}");
    results
}

fn held(results: &Value, checker: &str) -> bool {
    let v = &results["checker"][checker]["valid"];
    assert!(v.is_boolean(), "{checker}: {:#}", results["checker"]);
    v == &Value::Bool(true)
}

#[test]
fn multi_leader_lww_drops_concurrent_writes_that_siblings_keep() {
    let flags = |conflict| {
        vec![
            "--replication",
            "multi-leader",
            "--workload",
            "conflicts",
            "--conflict",
            conflict,
            "--nemesis",
            "none",
        ]
    };
    let lww = replication_run(&flags("lww"));
    assert!(!held(&lww, "lost-writes-siblings"), "{:#}", lww["checker"]);
    assert!(held(&lww, "convergence"), "{:#}", lww["checker"]);
    let lost = &lww["checker"]["lost-writes-siblings"];
    assert!(
        !lost["explanation"].as_array().unwrap().is_empty(),
        "a lost write is named: {lost:#}"
    );
    let siblings = replication_run(&flags("siblings"));
    assert!(
        held(&siblings, "lost-writes-siblings"),
        "{:#}",
        siblings["checker"]
    );
    assert!(held(&siblings, "convergence"), "{:#}", siblings["checker"]);
    let counts = &siblings["checker"]["siblings"]["details"];
    assert!(
        counts["max"].as_u64().unwrap() >= 2,
        "concurrent writes became siblings: {counts:#}"
    );
}

#[test]
fn multi_leader_without_resolution_diverges_unless_each_key_has_a_home_leader() {
    // Each side of a partition writes on; when it heals, every leader applies the other
    // side's changes after its own, and without resolution they end up swapped.
    let unresolved = [
        "--replication",
        "multi-leader",
        "--workload",
        "conflicts",
        "--conflict",
        "none",
        "--nemesis",
        "partition",
    ];
    let none = replication_run(&unresolved);
    assert!(!held(&none, "convergence"), "{:#}", none["checker"]);
    let home = replication_run(&[&unresolved[..], &["--home-leader-routing"]].concat());
    assert!(held(&home, "convergence"), "{:#}", home["checker"]);
}

/// A quorum of one reads whatever replica it asks: while a partition keeps a write from some
/// replicas, reads there miss it (without faults the replicas lag too little to be caught
/// reliably: 0 of 2 seeds in the matrix). Overlapping quorums never miss a completed write.
#[test]
fn leaderless_quorums_of_one_read_stale_values_that_overlapping_quorums_do_not() {
    let quorum = |w: &'static str, r: &'static str, nemesis: &'static str| {
        vec![
            "--replication",
            "leaderless",
            "--workload",
            "conflicts",
            "--conflict",
            "siblings",
            "--n",
            "3",
            "--w",
            w,
            "--r",
            r,
            "--nemesis",
            nemesis,
        ]
    };
    let one = replication_run(&quorum("1", "1", "partition"));
    assert!(!held(&one, "staleness"), "{:#}", one["checker"]);
    let stale = &one["checker"]["staleness"]["details"];
    assert!(stale["stale_reads"].as_u64().unwrap() > 0, "{stale:#}");
    let two = replication_run(&quorum("2", "2", "none"));
    assert!(held(&two, "staleness"), "{:#}", two["checker"]);
    assert!(held(&two, "lost-writes-siblings"), "{:#}", two["checker"]);
}

#[test]
fn leaderless_replicas_converge_after_a_node_outage_only_with_anti_entropy() {
    let run = |anti_entropy: &'static str| {
        replication_run(&[
            "--replication",
            "leaderless",
            "--workload",
            "conflicts",
            "--conflict",
            "siblings",
            "--read-repair",
            "off",
            "--anti-entropy",
            anti_entropy,
            "--nemesis",
            "kill",
            "--nemesis-interval",
            "3",
            "--settle",
            "3",
        ])
    };
    let off = run("off");
    assert!(!held(&off, "convergence"), "{:#}", off["checker"]);
    let on = run("on");
    assert!(held(&on, "convergence"), "{:#}", on["checker"]);
    assert!(held(&on, "lost-writes-siblings"), "{:#}", on["checker"]);
}

#[test]
fn add_wins_sets_converge_and_keep_every_acknowledged_add() {
    for replication in ["multi-leader", "leaderless"] {
        let set = replication_run(&[
            "--replication",
            replication,
            "--workload",
            "set",
            "--conflict",
            "siblings",
            "--nemesis",
            "partition",
        ]);
        assert!(
            held(&set, "set-add-wins"),
            "{replication}: {:#}",
            set["checker"]
        );
        assert!(
            held(&set, "convergence"),
            "{replication}: {:#}",
            set["checker"]
        );
    }
}

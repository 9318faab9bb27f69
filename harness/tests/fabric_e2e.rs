//! The network fabric end to end: real refnode clusters behind namespaces or the proxy,
//! partitions healed on SIGTERM, and `splitbrain clean` after a SIGKILLed controller.

mod common;
mod packages;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{describe, processes_mentioning, refnode, run_splitbrain, splitbrain};
use harness::fabric::netns;

fn spawn_run(store: &Path, args: &[&str]) -> Child {
    // As root, runs with partitions get namespaces: make sure nft is there.
    if nix::unistd::geteuid().is_root() {
        packages::ensure("nft", "nftables");
    }
    Command::new(splitbrain())
        .arg("run")
        .args(args)
        .args(["--store", store.to_str().unwrap()])
        .env("SPLITBRAIN_REFNODE", refnode())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start splitbrain")
}

/// The only run directory of a store with one test.
fn run_dir(store: &Path, test: &str) -> PathBuf {
    std::fs::canonicalize(store.join(test).join("latest")).expect("the run directory exists")
}

/// Waits (bounded) until the run's history shows a partition in force.
fn wait_for_partition(store: &Path, test: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let history = store.join(test).join("latest/history.jsonl");
    loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if text.contains(r#""type":"info","f":"start-partition""#) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended before partitioning: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no partition within 20 s; history so far:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The slot the run claimed: the last one its ledger names.
fn claimed_slot(run: &Path) -> Option<u8> {
    let text = std::fs::read_to_string(run.join("resources.jsonl")).unwrap();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "slot")
        .find_map(|v| v["slot"].as_u64())
        .map(|s| s as u8)
}

/// Asserts that nothing of slot `slot` exists any more: namespaces (and so the rules inside
/// them), links, the claim, and no fault table in the root namespace.
fn assert_slot_gone(slot: u8) {
    let ns: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("sb{slot}-")))
        .collect();
    assert_eq!(ns, Vec::<String>::new(), "namespaces left behind");
    let links: Vec<String> = netns::list_links()
        .into_iter()
        .filter(|l| l.starts_with(&format!("sb{slot}v")) || *l == format!("sb{slot}br"))
        .collect();
    assert_eq!(links, Vec::<String>::new(), "links left behind");
    assert!(
        !netns::claim_path(slot).exists(),
        "the slot is still claimed"
    );
    if let Ok(out) = Command::new("nft").args(["list", "tables"]).output() {
        let tables = String::from_utf8_lossy(&out.stdout);
        assert!(
            !tables.contains("sbf"),
            "fault tables in the root namespace: {tables}"
        );
    }
}

#[test]
fn sigkilled_controller_mid_partition_is_cleaned_up_by_splitbrain_clean() {
    let store = tempfile::tempdir().unwrap();
    let test = "refnode-register-sync-partition";
    let mut child = spawn_run(
        store.path(),
        &[
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "30",
            "--seed",
            "11",
        ],
    );
    wait_for_partition(store.path(), test, &mut child);
    let run = run_dir(store.path(), test);
    let slot = claimed_slot(&run);
    if netns::available().is_ok() {
        assert!(slot.is_some(), "as root the run uses namespaces");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let out = run_splitbrain(&["clean", store.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 runs checked"), "{stdout}");
    if let Some(slot) = slot {
        assert!(stdout.contains("removed network namespace"), "{stdout}");
        assert_slot_gone(slot);
    }
    // Node processes die with the controller (parent-death signal) or by `clean`; give the
    // kernel a moment to finish them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(store.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_mentioning(store.path()),
        vec![],
        "refnode processes left behind"
    );
    // A second clean finds nothing to do.
    let again = run_splitbrain(&["clean", store.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 cleaned"),
        "{}",
        describe(&again)
    );
}

#[test]
fn sigterm_mid_partition_heals_checks_and_removes_the_fabric() {
    let store = tempfile::tempdir().unwrap();
    let test = "refnode-register-sync-partition";
    let mut child = spawn_run(
        store.path(),
        &[
            "--nemesis",
            "partition",
            "--partition-shapes",
            "one,majorities-ring",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "30",
            "--seed",
            "12",
        ],
    );
    wait_for_partition(store.path(), test, &mut child);
    let run = run_dir(store.path(), test);
    let slot = claimed_slot(&run);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("splitbrain: network: "), "{stderr}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["interrupted"], serde_json::json!(true));
    // Every partition that started was stopped, and the stop is the last nemesis event.
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let nemesis: Vec<&str> = history
        .lines()
        .filter(|l| l.contains(r#""process":"nemesis""#))
        .collect();
    let starts = nemesis
        .iter()
        .filter(|l| l.contains("\"start-partition\""))
        .count();
    let stops = nemesis
        .iter()
        .filter(|l| l.contains("\"stop-partition\""))
        .count();
    assert_eq!(starts, stops, "{nemesis:#?}");
    assert!(nemesis.last().unwrap().contains("stop-partition"));
    let ledger = std::fs::read_to_string(run.join("resources.jsonl")).unwrap();
    assert!(
        ledger.trim_end().ends_with(r#"{"kind":"released"}"#),
        "{ledger}"
    );
    if let Some(slot) = slot {
        assert_eq!(results["config"]["net"], serde_json::json!("netns"));
        assert_slot_gone(slot);
    }
    assert_eq!(processes_mentioning(store.path()), vec![]);
}

#[test]
fn proxy_fabric_injects_partition_loss_and_delay_and_records_each_start_and_end() {
    let store = tempfile::tempdir().unwrap();
    let out = run_splitbrain(&[
        "run",
        "--net",
        "proxy",
        "--nemesis",
        "partition,loss,delay",
        "--nemesis-interval",
        "1.5",
        "--time-limit",
        "9",
        "--delay-ms",
        "30",
        "--jitter-ms",
        "10",
        "--seed",
        "5",
        "--store",
        store.path().to_str().unwrap(),
    ]);
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("network: proxy (forced with --net proxy)"),
        "{stderr}"
    );
    let run = run_dir(store.path(), "refnode-register-sync-partition+loss+delay");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["config"]["net"], serde_json::json!("proxy"));
    assert!(
        results["faults_injected"].as_u64().unwrap() >= 3,
        "{results:#}"
    );
    assert!(
        results["command"].as_str().unwrap().contains("--net proxy"),
        "the repeat command keeps the fabric: {results:#}"
    );
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    for (start, stop) in [
        ("start-partition", "stop-partition"),
        ("start-loss", "stop-loss"),
        ("start-delay", "stop-delay"),
    ] {
        let count = |f: &str| {
            history
                .matches(&format!("\"type\":\"info\",\"f\":\"{f}\""))
                .count()
        };
        assert_eq!(count(start), count(stop), "{start} without {stop}");
    }
    assert!(
        history.contains("\"f\":\"start-"),
        "no network fault recorded"
    );
    assert_eq!(processes_mentioning(store.path()), vec![]);
}

#[test]
fn network_faults_the_fabric_cannot_inject_are_one_line_errors() {
    for (args, expect) in [
        (
            &["--net", "direct", "--nemesis", "partition"][..],
            "--net direct",
        ),
        (&["--net", "netns", "--nemesis", "delay"][..], "delay"),
        (
            &["--net", "direct", "--nemesis", "bandwidth"][..],
            "--net direct",
        ),
        (
            &["--nemesis", "partition", "--partition-shapes", "zigzag"][..],
            "zigzag",
        ),
        (
            &["--nemesis", "loss", "--loss-percent", "150"][..],
            "percentage",
        ),
    ] {
        let store = tempfile::tempdir().unwrap();
        let mut all = vec![
            "run",
            "--time-limit",
            "1",
            "--store",
            store.path().to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = run_splitbrain(&all);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("splitbrain: test "))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(errors[0].contains(expect), "{args:?}: {stderr}");
    }
}

#[test]
fn a_random_schedule_after_a_quiet_period_mixes_bandwidth_and_grudge_partitions() {
    let store = tempfile::tempdir().unwrap();
    let child = spawn_run(
        store.path(),
        &[
            "--nemesis",
            "partition,bandwidth",
            "--nemesis-schedule",
            "random",
            "--quiet-period",
            "1",
            "--grudge",
            "n1|n2,n3",
            "--partition-shapes",
            "grudge,minority,majority",
            "--bandwidth-kbit",
            "500",
            "--nemesis-interval",
            "0.8",
            "--time-limit",
            "7",
            "--seed",
            "21",
        ],
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{}",
        describe(&out)
    );
    let run = run_dir(store.path(), "refnode-register-sync-partition+bandwidth");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let command = results["command"].as_str().unwrap();
    for flag in [
        "--nemesis-schedule random",
        "--quiet-period 1",
        "--grudge 'n1|n2,n3'",
        "--partition-shapes grudge,minority,majority",
        "--bandwidth-kbit 500",
    ] {
        assert!(command.contains(flag), "{flag} is not in {command}");
    }
    let history = histories::jsonl::read_file(&run.join("history.jsonl"))
        .unwrap()
        .history;
    let nemesis: Vec<&histories::Op> = history
        .ops()
        .iter()
        .filter(|op| op.process == histories::Process::Nemesis)
        .collect();
    assert!(
        results["faults_injected"].as_u64().unwrap() >= 2,
        "{results:#}"
    );
    assert!(
        nemesis[0].time_ns >= 1_000_000_000,
        "the first fault came {} ns into the quiet second",
        nemesis[0].time_ns
    );
    for (start, stop) in [
        ("start-partition", "stop-partition"),
        ("start-bandwidth", "stop-bandwidth"),
    ] {
        let count = |f: &str| nemesis.iter().filter(|op| op.f.as_str() == f).count();
        assert_eq!(count(start), count(stop), "{start} without {stop}");
    }
    let failed: Vec<_> = nemesis.iter().filter(|op| op.error.is_some()).collect();
    assert!(failed.is_empty(), "faults failed: {failed:#?}");
    assert_eq!(processes_mentioning(store.path()), vec![]);
    if let Some(slot) = claimed_slot(&run) {
        assert_slot_gone(slot);
    }
}

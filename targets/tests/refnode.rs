//! The real `refnode` binary in a real cluster on loopback: flag errors, durability across a
//! crash, failover when the leader dies and the old leader's return as a follower.

use std::path::PathBuf;
use std::time::Duration;

use histories::{F, Key, OpType, Value};
use targets::refnode::cluster::{RefnodeClient, RefnodeCluster, RefnodeConfig};
use targets::refnode::protocol::Role;
use targets::{Client, Db, Invocation, Kill, Primary, ReadRouting};

const BIN: &str = env!("CARGO_BIN_EXE_refnode");
const TIMEOUT: Duration = Duration::from_secs(2);

fn cluster(dir: &std::path::Path, replication: &str, routing: ReadRouting) -> RefnodeCluster {
    RefnodeCluster::new(RefnodeConfig {
        binary: PathBuf::from(BIN),
        node_count: 3,
        replication: replication.to_string(),
        read_routing: routing,
        dir: dir.to_path_buf(),
        heartbeat_ms: 50,
        failover_timeout_ms: 400,
        sync_timeout_ms: 500,
    })
    .unwrap()
}

fn write(key: i64, value: i64) -> Invocation {
    Invocation {
        f: F::Write,
        key: Some(Key::Int(key)),
        value: Value::Int(value),
    }
}

fn read(key: i64) -> Invocation {
    Invocation {
        f: F::Read,
        key: Some(Key::Int(key)),
        value: Value::Nil,
    }
}

fn nodes(c: &RefnodeCluster) -> Vec<(String, std::net::SocketAddr)> {
    ["n1", "n2", "n3"]
        .iter()
        .map(|n| (n.to_string(), c.addr_of(n).unwrap()))
        .collect()
}

#[test]
fn bad_flags_exit_254_with_one_line() {
    let out = std::process::Command::new(BIN)
        .args(["--id", "n1", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--bogus"), "{stderr}");
}

#[test]
fn unusable_data_dir_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--id",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--peers",
            "n1=127.0.0.1:1",
        ])
        .arg("--data-dir")
        .arg(&file)
        .arg("--log-file")
        .arg(dir.path().join("n1.log"))
        .args(["--replication", "sync", "--initial-leader", "n1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not-a-dir"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), "sync", ReadRouting::Any);
    c.start(Duration::from_secs(10)).await.unwrap();
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    for v in 1..=20 {
        let done = client.invoke(&write(v % 3, v), TIMEOUT).await;
        assert_eq!(done.kind, OpType::Ok, "{done:?}");
    }
    for n in ["n1", "n2", "n3"] {
        Kill::kill(&c, n).await.unwrap();
    }
    for n in ["n1", "n2", "n3"] {
        c.restart(n).await.unwrap();
    }
    // After a restart every node is a follower without a leader; one fails over.
    let mut leader = Vec::new();
    for _ in 0..100 {
        leader = c.primaries().await;
        if leader.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leader.len(), 1, "one leader after a full restart");
    // Sync replication: every follower applied every acknowledged write, so every node,
    // read directly, holds the last values.
    for (p, n) in ["n1", "n2", "n3"].iter().enumerate() {
        let mut direct = RefnodeClient::new(nodes(&c), p as u64, ReadRouting::Any);
        for (key, last) in [(0, 18), (1, 19), (2, 20)] {
            let got = direct.invoke(&read(key), TIMEOUT).await;
            assert_eq!(got.kind, OpType::Ok, "{n}: {got:?}");
            assert_eq!(got.value, Value::Int(last), "{n} key {key}");
        }
    }
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_and_the_old_leader_rejoins_as_follower() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), "async", ReadRouting::Leader);
    c.start(Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.primaries().await, vec!["n1".to_string()]);
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    assert_eq!(client.invoke(&write(1, 1), TIMEOUT).await.kind, OpType::Ok);

    Kill::kill(&c, "n1").await.unwrap();
    let mut new_leader = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        new_leader = c.primaries().await;
        if new_leader.len() == 1 && new_leader[0] != "n1" {
            break;
        }
    }
    assert_eq!(new_leader.len(), 1, "{new_leader:?}");
    assert_ne!(new_leader[0], "n1");
    // A fresh client (the old one's connection to n1 is broken, which honestly yields `info`)
    // starts at n1, finds it dead and follows the not-leader hints to the new leader.
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    let done = client.invoke(&write(1, 2), TIMEOUT).await;
    assert_eq!(done.kind, OpType::Ok, "{done:?}");
    assert_eq!(done.node.as_deref(), Some(new_leader[0].as_str()));

    c.restart("n1").await.unwrap();
    let mut n1_role = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let statuses = c.statuses(TIMEOUT).await;
        let n1 = statuses
            .iter()
            .find(|(n, _)| n == "n1")
            .and_then(|(_, s)| s.clone());
        if let Some(s) = n1.filter(|s| s.leader.as_deref() == Some(new_leader[0].as_str())) {
            n1_role = Some(s.role);
            break;
        }
    }
    assert_eq!(
        n1_role,
        Some(Role::Follower),
        "n1 rejoins following the new leader"
    );
    // And it catches up with the write it missed.
    let mut n1_reader = RefnodeClient::new(nodes(&c), 0, ReadRouting::Any);
    let mut seen = Value::Nil;
    for _ in 0..50 {
        seen = n1_reader.invoke(&read(1), TIMEOUT).await.value;
        if seen == Value::Int(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Value::Int(2));
    c.teardown().await;
}

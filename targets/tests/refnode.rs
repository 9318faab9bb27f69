//! The real `refnode` binary in a real cluster on loopback: flag errors, durability across a
//! crash, failover (naive and fenced) when the leader dies and the old leader's return as a
//! follower, read-your-writes routing, chain and semi-sync replication, clock skew, the
//! statement log, and a wiped node rejoining.

use std::path::PathBuf;
use std::time::Duration;

use histories::{F, Key, OpType, Value};
use targets::refnode::cluster::{RefnodeClient, RefnodeCluster, RefnodeConfig};
use targets::refnode::protocol::Role;
use targets::{Client, Db, Invocation, Kill, Primary, ReadRouting};

const BIN: &str = env!("CARGO_BIN_EXE_refnode");
const TIMEOUT: Duration = Duration::from_secs(2);

fn config(dir: &std::path::Path, replication: &str, routing: ReadRouting) -> RefnodeConfig {
    RefnodeConfig {
        binary: PathBuf::from(BIN),
        node_count: 3,
        replication: replication.to_string(),
        read_routing: routing,
        dir: dir.to_path_buf(),
        heartbeat_ms: 50,
        failover_timeout_ms: 400,
        sync_timeout_ms: 500,
        ..RefnodeConfig::default()
    }
}

fn cluster(dir: &std::path::Path, replication: &str, routing: ReadRouting) -> RefnodeCluster {
    RefnodeCluster::new(config(dir, replication, routing)).unwrap()
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
        let mut direct = RefnodeClient::new(nodes(&c), p as u64, ReadRouting::Sticky);
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
    let mut n1_reader = RefnodeClient::new(nodes(&c), 0, ReadRouting::Sticky);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ryw_clients_read_their_own_writes_from_async_followers() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), "async", ReadRouting::Ryw);
    c.start(Duration::from_secs(10)).await.unwrap();
    // Processes 1 and 2 read from the followers n2 and n3, which may lag the async leader;
    // the remembered write index makes them go elsewhere rather than read stale values.
    let mut clients: Vec<RefnodeClient> = (1..=2)
        .map(|p| RefnodeClient::new(nodes(&c), p, ReadRouting::Ryw))
        .collect();
    for v in 1..=100 {
        for (k, client) in clients.iter_mut().enumerate() {
            let key = k as i64;
            let w = client.invoke(&write(key, v), TIMEOUT).await;
            assert_eq!(w.kind, OpType::Ok, "{w:?}");
            let r = client.invoke(&read(key), TIMEOUT).await;
            assert_eq!(
                (r.kind, r.value.clone()),
                (OpType::Ok, Value::Int(v)),
                "{r:?}"
            );
        }
    }
    assert!(clients.iter().all(|c| c.last_write_index() >= 100));
    c.teardown().await;
}

/// Polls `cond` on the statuses every 100 ms for up to 5 s.
async fn eventually(
    c: &RefnodeCluster,
    what: &str,
    cond: impl Fn(&[(String, Option<targets::refnode::protocol::Status>)]) -> bool,
) {
    for _ in 0..50 {
        if cond(&c.statuses(TIMEOUT).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 5 s: {:?}", c.statuses(TIMEOUT).await);
}

fn status_of<'a>(
    statuses: &'a [(String, Option<targets::refnode::protocol::Status>)],
    node: &str,
) -> Option<&'a targets::refnode::protocol::Status> {
    statuses
        .iter()
        .find(|(n, _)| n == node)
        .and_then(|(_, s)| s.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reads_go_to_the_tail_and_a_killed_middle_node_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), "chain", ReadRouting::Leader);
    c.start(Duration::from_secs(10)).await.unwrap();
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    let w = client.invoke(&write(1, 1), TIMEOUT).await;
    assert_eq!((w.kind, w.node.as_deref()), (OpType::Ok, Some("n1")));
    // Just after the start the tail may not have heard the leader itself yet, and refuses
    // to read (definitely) until it has.
    let mut r = client.invoke(&read(1), TIMEOUT).await;
    for _ in 0..20 {
        if r.kind == OpType::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = client.invoke(&read(1), TIMEOUT).await;
    }
    assert_eq!(
        (r.kind, r.value.clone(), r.node.as_deref()),
        (OpType::Ok, Value::Int(1), Some("n3")),
        "the leader redirects reads to the tail: {:?}",
        r.error
    );
    Kill::kill(&c, "n2").await.unwrap();
    eventually(&c, "n2 dropped from the chain", |s| {
        status_of(s, "n1").is_some_and(|s| s.chain == ["n1", "n3"])
    })
    .await;
    let w = client.invoke(&write(1, 2), TIMEOUT).await;
    assert_eq!(w.kind, OpType::Ok, "{w:?}");
    let r = client.invoke(&read(1), TIMEOUT).await;
    assert_eq!((r.kind, r.value), (OpType::Ok, Value::Int(2)));
    c.restart("n2").await.unwrap();
    eventually(&c, "n2 back at the tail", |s| {
        status_of(s, "n1").is_some_and(|s| s.chain == ["n1", "n3", "n2"])
    })
    .await;
    let mut sticky = RefnodeClient::new(nodes(&c), 1, ReadRouting::Sticky);
    let mut seen = Value::Nil;
    for _ in 0..50 {
        let r = sticky.invoke(&read(1), TIMEOUT).await;
        if r.kind == OpType::Ok && r.node.as_deref() == Some("n2") {
            seen = r.value;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        Value::Int(2),
        "the rejoined tail serves the latest write"
    );
    assert!(
        std::fs::read_to_string(c.log_path("n1"))
            .unwrap()
            .contains("chain: n1 -> n3 (dropped n2")
    );
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_switches_the_synchronous_follower_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), "semi-sync", ReadRouting::Leader);
    c.start(Duration::from_secs(10)).await.unwrap();
    eventually(&c, "n2 synchronous", |s| {
        status_of(s, "n1").is_some_and(|s| s.sync_follower.as_deref() == Some("n2"))
    })
    .await;
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    assert_eq!(client.invoke(&write(1, 1), TIMEOUT).await.kind, OpType::Ok);
    Kill::kill(&c, "n2").await.unwrap();
    eventually(&c, "n3 synchronous", |s| {
        status_of(s, "n1").is_some_and(|s| s.sync_follower.as_deref() == Some("n3"))
    })
    .await;
    let w = client.invoke(&write(1, 2), TIMEOUT).await;
    assert_eq!(w.kind, OpType::Ok, "{w:?}");
    let log = std::fs::read_to_string(c.log_path("n1")).unwrap();
    assert!(log.contains("n3 is now the synchronous follower"), "{log}");
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_failover_elects_a_leader_by_majority_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = RefnodeCluster::new(RefnodeConfig {
        failover: "fenced".to_string(),
        ..config(dir.path(), "async", ReadRouting::Leader)
    })
    .unwrap();
    c.start(Duration::from_secs(10)).await.unwrap();
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    for v in 1..=10 {
        let w = client.invoke(&write(1, v), TIMEOUT).await;
        assert_eq!(w.kind, OpType::Ok, "{w:?}");
    }
    Kill::kill(&c, "n1").await.unwrap();
    eventually(&c, "a new leader", |s| {
        s.iter()
            .filter_map(|(_, s)| s.as_ref())
            .any(|s| s.role == Role::Leader && s.epoch > 1)
    })
    .await;
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    let mut last = None;
    for _ in 0..50 {
        let r = client.invoke(&read(1), TIMEOUT).await;
        if r.kind == OpType::Ok {
            last = Some(r);
            break;
        }
        // The new leader reads once it committed its first entry and holds a lease.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = last.expect("the new leader never served a read");
    assert_eq!(r.value, Value::Int(10), "{r:?}");
    let leader = r.node.clone().unwrap();
    let log = std::fs::read_to_string(c.log_path(&leader)).unwrap();
    assert!(log.contains("role: candidate -> leader at epoch"), "{log}");
    assert!(log.contains("(a majority of 3)"), "{log}");
    c.restart("n1").await.unwrap();
    eventually(&c, "n1 follows the new leader", |s| {
        status_of(s, "n1").is_some_and(|s| {
            s.role == Role::Follower && s.leader.as_deref() == Some(leader.as_str())
        })
    })
    .await;
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bumped_clock_shows_in_status_and_survives_a_restart_until_reset() {
    use targets::Clock;
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), "async", ReadRouting::Leader);
    c.start(Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.bump_clock("n2", 60_000).await.unwrap(), 60_000);
    assert_eq!(
        c.bump_clock("n2", 1_000).await.unwrap(),
        61_000,
        "bumps add up"
    );
    let skew = |s: &[(String, Option<targets::refnode::protocol::Status>)]| {
        let n1 = status_of(s, "n1").map(|s| s.wall_clock_ms)?;
        let n2 = status_of(s, "n2")?;
        Some((n2.clock_offset_ms, n2.wall_clock_ms - n1))
    };
    let (offset, ahead_ms) = skew(&c.statuses(TIMEOUT).await).unwrap();
    assert_eq!(offset, 61_000);
    assert!((60_000..62_000).contains(&ahead_ms), "{ahead_ms}");
    Kill::kill(&c, "n2").await.unwrap();
    c.restart("n2").await.unwrap();
    let (offset, _) = skew(&c.statuses(TIMEOUT).await).unwrap();
    assert_eq!(offset, 61_000, "the skew survived the restart");
    c.reset_clock("n2").await.unwrap();
    let (offset, ahead_ms) = skew(&c.statuses(TIMEOUT).await).unwrap();
    assert_eq!(offset, 0);
    assert!(ahead_ms.abs() < 1_000, "{ahead_ms}");
    assert!(
        std::fs::read_to_string(c.log_path("n2"))
            .unwrap()
            .contains("clock: offset set to 0 ms (was 61000 ms)")
    );
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_log_with_now_diverges_by_a_nodes_clock_skew() {
    use targets::Clock;
    let dir = tempfile::tempdir().unwrap();
    let c = RefnodeCluster::new(RefnodeConfig {
        log: "statement".to_string(),
        ..config(dir.path(), "sync", ReadRouting::Leader)
    })
    .unwrap();
    c.start(Duration::from_secs(10)).await.unwrap();
    c.bump_clock("n2", 60_000).await.unwrap();
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    let done = client
        .invoke(
            &Invocation {
                f: F::Other("exec".into()),
                key: Some(Key::Int(1)),
                value: Value::Str("set now()".into()),
            },
            TIMEOUT,
        )
        .await;
    assert_eq!(done.kind, OpType::Ok, "{done:?}");
    let Value::Int(at_leader) = done.value else {
        panic!("exec returns the leader's result: {done:?}");
    };
    // Sync replication: every replica has applied it by the acknowledgement.
    let mut at = Vec::new();
    for p in 0..3 {
        let mut direct = RefnodeClient::new(nodes(&c), p, ReadRouting::Sticky);
        match direct.invoke(&read(1), TIMEOUT).await.value {
            Value::Int(v) => at.push(v),
            other => panic!("n{}: {other:?}", p + 1),
        }
    }
    assert_eq!(at[0], at_leader);
    assert!((59_000..61_000).contains(&(at[1] - at[0])), "{at:?}");
    assert!((at[2] - at[0]).abs() < 1_000, "{at:?}");
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_leader_rejoins_and_catches_up_by_snapshot_and_log() {
    use targets::Member;
    let dir = tempfile::tempdir().unwrap();
    let c = RefnodeCluster::new(RefnodeConfig {
        compact_after_entries: 10,
        ..config(dir.path(), "async", ReadRouting::Leader)
    })
    .unwrap();
    c.start(Duration::from_secs(10)).await.unwrap();
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    for v in 0..40 {
        let w = client.invoke(&write(v % 4, v), TIMEOUT).await;
        assert_eq!(w.kind, OpType::Ok, "{w:?}");
    }
    c.wipe_and_rejoin("n1").await.unwrap();
    assert!(
        !c.primaries().await.contains(&"n1".to_string()),
        "the wiped initial leader came back leading"
    );
    eventually(&c, "n1 joins the new leader", |s| {
        status_of(s, "n1").is_some_and(|s| {
            s.role == Role::Follower && s.leader.as_deref().is_some_and(|l| l != "n1")
        })
    })
    .await;
    let log = std::fs::read_to_string(c.log_path("n1")).unwrap();
    assert!(log.contains("joining the running cluster"), "{log}");
    assert!(log.contains("installed a snapshot from"), "{log}");
    // A write after the snapshot reaches n1 through the log.
    let mut client = RefnodeClient::new(nodes(&c), 0, ReadRouting::Leader);
    let mut w = client.invoke(&write(9, 99), TIMEOUT).await;
    for _ in 0..20 {
        if w.kind == OpType::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        w = client.invoke(&write(9, 99), TIMEOUT).await;
    }
    assert_eq!(w.kind, OpType::Ok, "{w:?}");
    let mut n1 = RefnodeClient::new(nodes(&c), 0, ReadRouting::Sticky);
    let mut got = Vec::new();
    for _ in 0..50 {
        got.clear();
        for key in [0, 1, 2, 3, 9] {
            got.push(n1.invoke(&read(key), TIMEOUT).await.value);
        }
        if got[4] == Value::Int(99) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got,
        [36, 37, 38, 39, 99].map(Value::Int).to_vec(),
        "n1 holds every write"
    );
    c.teardown().await;
}

//! The real `refnode` binary running multi-leader and leaderless replication in 3-node
//! clusters on loopback: each test asserts one behaviour DDIA ch. 5 describes for the design,
//! partitioning nodes with the `block` request (no privileges needed) or pausing them.

use std::path::PathBuf;
use std::time::Duration;

use histories::{F, Key, OpType, Value};
use targets::refnode::cluster::{RefnodeClient, RefnodeCluster, RefnodeConfig};
use targets::refnode::protocol::{ReplicaStatus, ReplyBody, RequestBody};
use targets::refnode::server::ring::Ring;
use targets::{Client, Clock, Db, Invocation, ReadRouting};

const BIN: &str = env!("CARGO_BIN_EXE_refnode");
const TIMEOUT: Duration = Duration::from_secs(2);
const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn config(dir: &std::path::Path, replication: &str) -> RefnodeConfig {
    RefnodeConfig {
        binary: PathBuf::from(BIN),
        node_count: 3,
        replication: replication.to_string(),
        read_routing: ReadRouting::Sticky,
        dir: dir.to_path_buf(),
        heartbeat_ms: 50,
        quorum_timeout_ms: 500,
        anti_entropy_interval_ms: 200,
        handoff_interval_ms: 200,
        ..RefnodeConfig::default()
    }
}

async fn start(config: RefnodeConfig) -> RefnodeCluster {
    let c = RefnodeCluster::new(config).unwrap();
    c.start(Duration::from_secs(10)).await.unwrap();
    c
}

fn addrs(c: &RefnodeCluster) -> Vec<(String, std::net::SocketAddr)> {
    NODES
        .iter()
        .map(|n| (n.to_string(), c.addr_of(n).unwrap()))
        .collect()
}

/// A client whose own node (writes and sticky reads) is `node`.
fn client_at(c: &RefnodeCluster, node: &str) -> RefnodeClient {
    let process = NODES.iter().position(|n| *n == node).unwrap() as u64;
    RefnodeClient::new(addrs(c), process, ReadRouting::Sticky).writing_at_own_node()
}

fn call(f: F, key: i64, value: Value) -> Invocation {
    Invocation {
        f,
        key: Some(Key::Int(key)),
        value,
    }
}

async fn write(client: &mut RefnodeClient, key: i64, value: i64) -> OpType {
    client
        .invoke(&call(F::Write, key, Value::Int(value)), TIMEOUT)
        .await
        .kind
}

async fn read(client: &mut RefnodeClient, key: i64) -> Value {
    let done = client
        .invoke(&call(F::Read, key, Value::Nil), TIMEOUT)
        .await;
    assert_eq!(done.kind, OpType::Ok, "{done:?}");
    done.value
}

/// What `node` holds of `key` in its own replica.
async fn local(c: &RefnodeCluster, node: &str, key: i64) -> Vec<i64> {
    match c
        .call(node, RequestBody::LocalRead { key }, TIMEOUT)
        .await
        .unwrap()
    {
        ReplyBody::Versions { values, .. } => values,
        other => panic!("{other:?}"),
    }
}

async fn status(c: &RefnodeCluster, node: &str) -> ReplicaStatus {
    match c.call(node, RequestBody::Status, TIMEOUT).await.unwrap() {
        ReplyBody::ReplicaStatusOk(s) => *s,
        other => panic!("{other:?}"),
    }
}

/// Waits up to `limit` for every node's replica of `key` to be `expected`.
async fn converges(c: &RefnodeCluster, key: i64, expected: &[i64], limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut all = true;
        for n in NODES {
            all &= local(c, n, key).await == expected;
        }
        if all {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_leader_every_node_accepts_writes_and_all_replicas_converge() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(config(dir.path(), "multi-leader")).await;
    for (k, n) in NODES.iter().enumerate() {
        let mut client = client_at(&c, n);
        assert_eq!(
            write(&mut client, k as i64, 10 + k as i64).await,
            OpType::Ok
        );
    }
    for k in 0..3 {
        assert!(
            converges(&c, k, &[10 + k], Duration::from_secs(3)).await,
            "key {k}"
        );
    }
    assert_eq!(
        targets::Primary::primaries(&c).await.len(),
        3,
        "every node leads"
    );
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_leader_lww_with_a_clock_skew_loses_a_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(config(dir.path(), "multi-leader")).await;
    c.bump_clock("n1", 60_000).await.unwrap();
    let mut at_n1 = client_at(&c, "n1");
    assert_eq!(write(&mut at_n1, 1, 1).await, OpType::Ok);
    assert!(converges(&c, 1, &[1], Duration::from_secs(3)).await);
    // Later in every sense but n1's timestamp: n2's client read 1 and overwrote it.
    let mut at_n2 = client_at(&c, "n2");
    assert_eq!(read(&mut at_n2, 1).await, Value::Int(1));
    assert_eq!(write(&mut at_n2, 1, 2).await, OpType::Ok, "acknowledged");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        converges(&c, 1, &[1], Duration::from_secs(3)).await,
        "the later write is silently gone"
    );
    assert_eq!(status(&c, "n2").await.counters.discarded_writes, 1);
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_leader_siblings_keep_concurrent_writes_until_a_client_writes_back_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(RefnodeConfig {
        conflict: "siblings".to_string(),
        ..config(dir.path(), "multi-leader")
    })
    .await;
    c.partition(&[&["n1"], &["n2"], &["n3"]]).await.unwrap();
    let mut at_n1 = client_at(&c, "n1");
    let mut at_n2 = client_at(&c, "n2");
    assert_eq!(write(&mut at_n1, 1, 1).await, OpType::Ok);
    assert_eq!(write(&mut at_n2, 1, 2).await, OpType::Ok);
    c.heal_blocks().await.unwrap();
    assert!(converges(&c, 1, &[1, 2], Duration::from_secs(3)).await);
    let mut at_n3 = client_at(&c, "n3");
    assert_eq!(
        read(&mut at_n3, 1).await,
        Value::List(vec![Value::Int(1), Value::Int(2)])
    );
    assert!(at_n3.context(1).is_some());
    // The next write carries the read's context and supersedes both siblings.
    assert_eq!(write(&mut at_n3, 1, 12).await, OpType::Ok);
    assert!(converges(&c, 1, &[12], Duration::from_secs(3)).await);
    for n in NODES {
        assert_eq!(status(&c, n).await.counters.discarded_writes, 0, "{n}");
    }
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_leader_circular_topology_tags_changes_and_home_routing_redirects_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(RefnodeConfig {
        topology: "circular".to_string(),
        home_leader_routing: true,
        ..config(dir.path(), "multi-leader")
    })
    .await;
    let ring = Ring::new(&NODES.map(String::from));
    let key = (0..100).find(|k| ring.home(*k, 1) == ["n3"]).unwrap();
    // A client of n1 is redirected to the key's home leader.
    let mut at_n1 = client_at(&c, "n1");
    let done = at_n1
        .invoke(&call(F::Write, key, Value::Int(5)), TIMEOUT)
        .await;
    assert_eq!((done.kind, done.node.as_deref()), (OpType::Ok, Some("n3")));
    assert!(converges(&c, key, &[5], Duration::from_secs(3)).await);
    // Round the circle and back to its origin, which ignores it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while status(&c, "n3").await.counters.ignored_loops == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&c, "n3").await.topology.as_deref(), Some("circular"));
    c.teardown().await;
}

/// A key whose two home replicas (n = 2) are `homes`, in either order.
fn key_homed_at(homes: [&str; 2]) -> i64 {
    let ring = Ring::new(&NODES.map(String::from));
    (0..1000)
        .find(|k| {
            let h = ring.home(*k, 2);
            h.contains(&homes[0]) && h.contains(&homes[1])
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_quorums_keep_concurrent_writes_as_siblings_until_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(RefnodeConfig {
        conflict: "siblings".to_string(),
        ..config(dir.path(), "leaderless")
    })
    .await;
    let mut at_n1 = client_at(&c, "n1");
    let mut at_n2 = client_at(&c, "n2");
    let (a, b) = tokio::join!(write(&mut at_n1, 1, 1), write(&mut at_n2, 1, 2));
    assert_eq!((a, b), (OpType::Ok, OpType::Ok));
    let mut at_n3 = client_at(&c, "n3");
    assert_eq!(
        read(&mut at_n3, 1).await,
        Value::List(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(write(&mut at_n3, 1, 3).await, OpType::Ok);
    assert_eq!(read(&mut at_n1, 1).await, Value::Int(3));
    assert!(converges(&c, 1, &[3], Duration::from_secs(3)).await);
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_a_write_that_fails_its_quorum_stays_on_the_replica_it_reached() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(RefnodeConfig {
        r: 1,
        read_repair: false,
        anti_entropy: false,
        ..config(dir.path(), "leaderless")
    })
    .await;
    // A partition, not a pause: a paused node would still take the write from its socket
    // buffer when it resumes.
    c.partition(&[&["n1"], &["n2", "n3"]]).await.unwrap();
    let mut at_n1 = client_at(&c, "n1");
    let done = at_n1
        .invoke(&call(F::Write, 1, Value::Int(7)), TIMEOUT)
        .await;
    assert_eq!(done.kind, OpType::Info, "w = 2 not reached: {done:?}");
    assert!(done.error.unwrap().contains("stays on those"));
    c.heal_blocks().await.unwrap();
    // Not rolled back: a read through n1 returns the failed write, one through n2 does not.
    assert_eq!(read(&mut at_n1, 1).await, Value::Int(7));
    let mut at_n2 = client_at(&c, "n2");
    assert_eq!(read(&mut at_n2, 1).await, Value::Nil);
    c.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_a_sloppy_quorum_read_misses_the_latest_write_until_handoff() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(RefnodeConfig {
        n: 2,
        w: 2,
        r: 1,
        sloppy_quorum: true,
        read_repair: false,
        anti_entropy: false,
        handoff_interval_ms: 300,
        ..config(dir.path(), "leaderless")
    })
    .await;
    // Home replicas n1 and n2; n3 is the fallback. n1 is cut off.
    let key = key_homed_at(["n1", "n2"]);
    c.partition(&[&["n1"], &["n2", "n3"]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut at_n2 = client_at(&c, "n2");
    assert_eq!(
        write(&mut at_n2, key, 9).await,
        OpType::Ok,
        "w = 2 with n3 standing in"
    );
    assert_eq!(status(&c, "n3").await.hints, 1);
    // w + r > n, and a read through the home replica n1 still misses it.
    let mut at_n1 = client_at(&c, "n1");
    assert_eq!(read(&mut at_n1, key).await, Value::Nil);
    c.heal_blocks().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while local(&c, "n1", key).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never handed off");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read(&mut at_n1, key).await, Value::Int(9));
    assert_eq!(status(&c, "n3").await.hints, 0);
    assert_eq!(status(&c, "n3").await.counters.handed_off, 1);
    c.teardown().await;
}

/// Writes keys 0..10 through n1 while it is cut off (w = r = 1), heals, and says whether
/// every replica holds every key within `limit`.
async fn replicas_converge_after_heal(anti_entropy: bool, limit: Duration) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let c = start(RefnodeConfig {
        w: 1,
        r: 1,
        read_repair: false,
        anti_entropy,
        ..config(dir.path(), "leaderless")
    })
    .await;
    c.partition(&[&["n1"], &["n2", "n3"]]).await.unwrap();
    let mut at_n1 = client_at(&c, "n1");
    for k in 0..10 {
        assert_eq!(write(&mut at_n1, k, 100 + k).await, OpType::Ok);
    }
    // Past the quorum timeout, so n1 has stopped retrying its writes.
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.heal_blocks().await.unwrap();
    let deadline = tokio::time::Instant::now() + limit;
    let mut converged = false;
    while !converged && tokio::time::Instant::now() < deadline {
        converged = true;
        for k in 0..10 {
            for n in NODES {
                converged &= local(&c, n, k).await == [100 + k];
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.teardown().await;
    converged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_anti_entropy_converges_every_replica_after_a_partition_heals() {
    assert!(replicas_converge_after_heal(true, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_without_anti_entropy_or_read_repair_unread_keys_never_converge() {
    assert!(!replicas_converge_after_heal(false, Duration::from_secs(2)).await);
}

/// Regression: the set workload through `splitbrain run` ended with every node holding only
/// the elements added at it. Concurrent adds at different leaders must merge by union.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_leader_sets_merge_concurrent_adds_by_union_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "multi-leader");
    cfg.conflict = "siblings".into();
    let c = start(cfg).await;
    for (i, n) in NODES.iter().enumerate() {
        let mut client = client_at(&c, n);
        let done = client
            .invoke(
                &call(F::Other("set-add".into()), 7, Value::Int(i as i64 + 1)),
                TIMEOUT,
            )
            .await;
        assert_eq!(done.kind, OpType::Ok, "{done:?}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut sets = Vec::new();
        for n in NODES {
            sets.push(c.local_read(n, 7, TIMEOUT).await.unwrap());
        }
        let want = Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
        if sets.iter().all(|s| *s == want) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sets did not merge: {sets:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.teardown().await;
}

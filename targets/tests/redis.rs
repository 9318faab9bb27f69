//! Debian's real Redis with Sentinel, a primary, two replicas and three Sentinels started by
//! the adapter: registers and sets through a Sentinel-aware client, failover when the
//! primary dies or freezes, the old primary's return as a replica, and a teardown that
//! leaves no process. Installs `redis-server` and `redis-sentinel` when they are missing.

mod common;

use std::time::{Duration, Instant};

use common::{T, assert_no_process_left, call, cas, ints};
use histories::{F, Key, OpType, Value};
use targets::adapters::redis::{self, RedisCluster, RedisConfig};
use targets::{Client, Db, Invocation, Kill, Pause, Primary};

/// The two clusters of this file take turns: each picks free ports and then binds them, and a
/// cluster starting alongside could take a port in between (seen once in CI: "Address already
/// in use").
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn started(dir: &std::path::Path) -> RedisCluster {
    redis::ensure_installed().unwrap();
    let c = RedisCluster::new(RedisConfig {
        dir: dir.to_path_buf(),
        ..RedisConfig::default()
    })
    .unwrap();
    let t0 = Instant::now();
    c.start(Duration::from_secs(30)).await.unwrap();
    eprintln!("redis + sentinels healthy after {:?}", t0.elapsed());
    c
}

/// Writes through `client` until one is acknowledged; returns how long that took.
async fn until_written(client: &mut Box<dyn Client>, key: i64, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < limit {
        let w = client
            .invoke(
                &call(F::Write, key, Value::Int(1)),
                Duration::from_millis(500),
            )
            .await;
        if w.kind == OpType::Ok {
            return t0.elapsed();
        }
        last = Some(w);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no write acknowledged within {limit:?}; last: {last:?}");
}

async fn single_primary_other_than(c: &RedisCluster, old: &str) -> String {
    for _ in 0..100 {
        let p = c.primaries().await;
        if p.len() == 1 && p[0] != old {
            return p[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no single new primary: {:?}", c.primaries().await);
}

fn add(element: i64) -> Invocation {
    Invocation {
        f: F::Add,
        key: Some(Key::Int(100)),
        value: Value::Int(element),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_sets_work_and_sentinel_fails_over_a_killed_primary() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path()).await;
    assert_eq!(c.primaries().await, vec!["n1"]);
    let mut a = c.client(0);
    let r = a.invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!((r.kind, r.value), (OpType::Ok, Value::Nil));
    let w = a.invoke(&call(F::Write, 1, Value::Int(3)), T).await;
    assert_eq!(
        (w.kind, w.node.as_deref()),
        (OpType::Ok, Some("n1")),
        "{w:?}"
    );
    assert_eq!(a.invoke(&cas(1, 3, 4), T).await.kind, OpType::Ok);
    assert_eq!(a.invoke(&cas(1, 3, 5), T).await.kind, OpType::Fail);
    let r = a.invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!(r.value, Value::Int(4));
    for e in [3, 1, 2] {
        assert_eq!(a.invoke(&add(e), T).await.kind, OpType::Ok);
    }
    let s = a.invoke(&call(F::Read, 100, Value::Nil), T).await;
    assert_eq!((s.kind, s.value), (OpType::Ok, ints(&[1, 2, 3])));
    // The set workload's own calls: set-add, set-remove, set-read (an absent set is empty).
    let set_call = |f: &str, key: i64, value: Value| call(F::Other(f.into()), key, value);
    let r = a.invoke(&set_call("set-read", 101, Value::Nil), T).await;
    assert_eq!((r.kind, r.value), (OpType::Ok, ints(&[])));
    for e in [5, 4, 6] {
        let w = a.invoke(&set_call("set-add", 101, Value::Int(e)), T).await;
        assert_eq!(
            (w.kind, w.node.as_deref()),
            (OpType::Ok, Some("n1")),
            "{w:?}"
        );
    }
    let w = a
        .invoke(&set_call("set-remove", 101, Value::Int(5)), T)
        .await;
    assert_eq!(w.kind, OpType::Ok, "{w:?}");
    let r = a.invoke(&set_call("set-read", 101, Value::Nil), T).await;
    assert_eq!(
        (r.kind, r.value, r.node.as_deref()),
        (OpType::Ok, ints(&[4, 6]), Some("n1"))
    );
    // A register is not a set: Redis refuses (WRONGTYPE), which is a definite failure.
    let w = a.invoke(&set_call("set-add", 1, Value::Int(1)), T).await;
    assert_eq!(w.kind, OpType::Fail, "{w:?}");
    assert!(
        w.error
            .as_deref()
            .is_some_and(|e| e.starts_with("WRONGTYPE")),
        "{w:?}"
    );

    Kill::kill(&c, "n1").await.unwrap();
    let took = until_written(&mut a, 2, Duration::from_secs(30)).await;
    eprintln!("writes resumed {took:?} after the primary died");
    let new = single_primary_other_than(&c, "n1").await;
    let w = a.invoke(&call(F::Write, 2, Value::Int(2)), T).await;
    assert_eq!(w.node.as_deref(), Some(new.as_str()));

    // n1 comes back as a replica of the new primary, with the data.
    c.restart("n1").await.unwrap();
    let n1 = c.addr_of("n1").unwrap();
    let mut ok = false;
    for _ in 0..100 {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &format!("redis://{n1}"), "ROLE"])
            .output();
        let role = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        if role.is_ok_and(|r| r.starts_with("slave") && r.contains("connected")) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "n1 did not come back as a connected replica");
    assert_eq!(c.primaries().await, vec![new]);
    c.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_primary_is_replaced_and_refuses_writes_when_it_wakes() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path()).await;
    let mut a = c.client(0);
    assert_eq!(
        a.invoke(&call(F::Write, 1, Value::Int(1)), T).await.kind,
        OpType::Ok
    );
    Pause::pause(&c, "n1").await.unwrap();
    let mut b = c.client(1);
    let took = until_written(&mut b, 1, Duration::from_secs(30)).await;
    eprintln!("writes resumed {took:?} after pausing the primary");
    let new = single_primary_other_than(&c, "n1").await;
    c.resume("n1").await.unwrap();
    // The Sentinels demote the woken primary; a client still talking to it is refused
    // (READONLY, a definite failure) and then finds the new primary.
    let t0 = Instant::now();
    let mut kinds = Vec::new();
    while t0.elapsed() < Duration::from_secs(20) {
        let w = a.invoke(&call(F::Write, 3, Value::Int(3)), T).await;
        kinds.push((w.kind, w.node.clone(), w.error.clone()));
        if w.kind == OpType::Ok && w.node.as_deref() == Some(new.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = kinds.last().unwrap();
    assert_eq!(
        (last.0, last.1.as_deref()),
        (OpType::Ok, Some(new.as_str())),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|(k, _, _)| *k != OpType::Info),
        "refusals are definite: {kinds:?}"
    );
    c.teardown().await;
    assert_no_process_left(dir.path());
}

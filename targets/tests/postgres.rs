//! Debian's real PostgreSQL, a primary and a streaming replica started by the adapter:
//! transactions at each isolation level, write skew committed under REPEATABLE READ and
//! refused under SERIALIZABLE, a commit stuck on a lost synchronous standby recorded as
//! `info` and visible later, a killed primary restarting on its data, and a teardown that
//! leaves no process. Installs `postgresql` when it is missing.

mod common;

use std::time::{Duration, Instant};

use common::{T, assert_no_process_left, call, cas, ints, txn, txn_values};
use histories::{F, MicroF, OpType, Value};
use targets::adapters::postgres::{
    self, Isolation, PgReplication, PostgresCluster, PostgresConfig,
};
use targets::{Db, Kill, Pause, Primary};

async fn started(
    dir: &std::path::Path,
    replication: PgReplication,
    isolation: Isolation,
) -> PostgresCluster {
    postgres::ensure_installed().unwrap();
    let c = PostgresCluster::new(PostgresConfig {
        dir: dir.to_path_buf(),
        replication,
        isolation,
        ..PostgresConfig::default()
    })
    .unwrap();
    let t0 = Instant::now();
    c.start(Duration::from_secs(60)).await.unwrap();
    eprintln!("postgres primary + replica up after {:?}", t0.elapsed());
    c
}

/// A direct connection, for setting the stage and looking behind the adapter's back.
async fn raw(c: &PostgresCluster, node: &str) -> tokio_postgres::Client {
    let addr = c.addr_of(node).unwrap();
    let (host, port) = addr.split_once(':').unwrap();
    let (client, conn) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("postgres")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_registers_and_replication_work_and_a_killed_primary_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path(), PgReplication::Async, Isolation::Serializable).await;
    assert_eq!(c.primaries().await, vec!["n1"]);
    let mut a = c.client(0);
    let mut b = c.client(1);
    let t = a
        .invoke(
            &txn(vec![
                (MicroF::Append, 1, Value::Int(1)),
                (MicroF::Append, 1, Value::Int(2)),
                (MicroF::Read, 1, Value::Nil),
                (MicroF::Write, 2, Value::Int(7)),
                (MicroF::Read, 2, Value::Nil),
                (MicroF::Read, 3, Value::Nil),
            ]),
            T,
        )
        .await;
    assert_eq!(t.kind, OpType::Ok, "{t:?}");
    assert_eq!(t.node.as_deref(), Some("n1"));
    assert_eq!(
        txn_values(&t.value),
        vec![
            Value::Int(1),
            Value::Int(2),
            ints(&[1, 2]),
            Value::Int(7),
            Value::Int(7),
            Value::Nil
        ]
    );
    assert_eq!(b.invoke(&cas(2, 7, 8), T).await.kind, OpType::Ok);
    assert_eq!(b.invoke(&cas(2, 7, 9), T).await.kind, OpType::Fail);
    assert_eq!(
        b.invoke(&call(F::Write, 4, Value::Int(4)), T).await.kind,
        OpType::Ok
    );
    let r = a.invoke(&call(F::Read, 2, Value::Nil), T).await;
    assert_eq!((r.kind, r.value), (OpType::Ok, Value::Int(8)));

    // The replica streams the data.
    let replica = raw(&c, "n2").await;
    let mut seen = None;
    for _ in 0..100 {
        let row = replica
            .query_opt("SELECT v::text FROM kv WHERE k = '4'", &[])
            .await
            .unwrap();
        if let Some(row) = row {
            seen = row.get::<_, Option<String>>(0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.as_deref(), Some("4"));

    // A killed primary: nothing to connect to is a definite failure; a restart recovers
    // every acknowledged write.
    Kill::kill(&c, "n1").await.unwrap();
    let down = a.invoke(&call(F::Write, 5, Value::Int(5)), T).await;
    assert_ne!(down.kind, OpType::Ok, "{down:?}");
    let fresh = c
        .client(9)
        .invoke(&call(F::Write, 5, Value::Int(5)), T)
        .await;
    assert_eq!(fresh.kind, OpType::Fail, "{fresh:?}");
    assert!(fresh.error.unwrap().contains("n2 is a replica"));
    let t0 = Instant::now();
    c.restart("n1").await.unwrap();
    eprintln!("primary restarted in {:?}", t0.elapsed());
    let r = c
        .client(3)
        .invoke(&txn(vec![(MicroF::Read, 1, Value::Nil)]), T)
        .await;
    assert_eq!(txn_values(&r.value), vec![ints(&[1, 2])], "{r:?}");
    c.teardown().await;
    assert_no_process_left(dir.path());
}

/// T1 reads keys 1 and 2 and writes 1; T2 reads both and writes 2. A lock held from outside
/// on both rows makes both take their snapshots before either writes.
async fn write_skew(isolation: Isolation) -> Vec<(OpType, Option<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path(), PgReplication::Async, isolation).await;
    let mut setup = c.client(0);
    for k in [1, 2] {
        let w = setup.invoke(&call(F::Write, k, Value::Int(0)), T).await;
        assert_eq!(w.kind, OpType::Ok, "{w:?}");
    }
    let mut holder = raw(&c, "n1").await;
    let lock = holder.transaction().await.unwrap();
    lock.execute("SELECT * FROM kv WHERE k IN ('1', '2') FOR UPDATE", &[])
        .await
        .unwrap();
    let skew = |k: i64| {
        txn(vec![
            (MicroF::Read, 1, Value::Nil),
            (MicroF::Read, 2, Value::Nil),
            (MicroF::Write, k, Value::Int(k)),
        ])
    };
    let mut t1 = c.client(1);
    let mut t2 = c.client(2);
    let (s1, s2) = (skew(1), skew(2));
    let release = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        lock.rollback().await.unwrap();
    };
    let (d1, d2, ()) = tokio::join!(t1.invoke(&s1, T), t2.invoke(&s2, T), release);
    c.teardown().await;
    assert_no_process_left(dir.path());
    vec![(d1.kind, d1.error), (d2.kind, d2.error)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_skew_commits_under_repeatable_read() {
    let done = write_skew(Isolation::RepeatableRead).await;
    assert!(done.iter().all(|(k, _)| *k == OpType::Ok), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_skew_fails_one_side_with_a_serialization_failure_under_serializable() {
    let done = write_skew(Isolation::Serializable).await;
    let kinds: Vec<OpType> = done.iter().map(|(k, _)| *k).collect();
    assert!(
        kinds.contains(&OpType::Ok) && kinds.contains(&OpType::Fail),
        "{done:?}"
    );
    let failed = done.iter().find(|(k, _)| *k == OpType::Fail).unwrap();
    assert!(failed.1.as_deref().unwrap().contains("40001"), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_stuck_on_a_paused_sync_standby_is_info_and_becomes_visible_later() {
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path(), PgReplication::Sync, Isolation::ReadCommitted).await;
    let mut a = c.client(0);
    let ok = a
        .invoke(&txn(vec![(MicroF::Append, 1, Value::Int(1))]), T)
        .await;
    assert_eq!(ok.kind, OpType::Ok, "{ok:?}");
    Pause::pause(&c, "n2").await.unwrap();
    let stuck = a
        .invoke(
            &txn(vec![(MicroF::Append, 1, Value::Int(2))]),
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(stuck.kind, OpType::Info, "{stuck:?}");
    let mut b = c.client(1);
    let before = b.invoke(&txn(vec![(MicroF::Read, 1, Value::Nil)]), T).await;
    assert_eq!(txn_values(&before.value), vec![ints(&[1])], "{before:?}");
    c.resume("n2").await.unwrap();
    let mut after = Value::Nil;
    for _ in 0..100 {
        let r = b.invoke(&txn(vec![(MicroF::Read, 1, Value::Nil)]), T).await;
        after = txn_values(&r.value)[0].clone();
        if after == ints(&[1, 2]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(after, ints(&[1, 2]), "the indeterminate commit took effect");
    c.teardown().await;
    assert_no_process_left(dir.path());
}

//! Debian's real etcd, three members on loopback, started by the adapter: registers, CAS and
//! transactions over gRPC (etcd-client), the leader killed and paused, and a teardown that
//! leaves no process behind. Installs `etcd-server` when it is missing.

use std::time::{Duration, Instant};

use histories::{F, MicroF, OpType, Value};
use targets::adapters::etcd::{self, EtcdClient, EtcdCluster, EtcdConfig, EtcdReads};
use targets::{Client, Db, Kill, Pause, Primary};

mod common;

use common::{T, assert_no_process_left, call, cas, txn};

async fn started(dir: &std::path::Path, reads: EtcdReads) -> EtcdCluster {
    etcd::ensure_installed().unwrap();
    let c = EtcdCluster::new(EtcdConfig {
        dir: dir.to_path_buf(),
        reads,
        ..EtcdConfig::default()
    })
    .unwrap();
    let t0 = Instant::now();
    c.start(Duration::from_secs(30)).await.unwrap();
    eprintln!("etcd healthy after {:?}", t0.elapsed());
    c
}

/// The one leader, once the members agree on one.
async fn leader(c: &EtcdCluster) -> String {
    for _ in 0..100 {
        let p = c.primaries().await;
        if p.len() == 1 {
            return p[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no single leader: {:?}", c.primaries().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_cas_and_txns_work_and_a_killed_leader_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path(), EtcdReads::Linearizable).await;
    let mut a = c.client(0);
    let mut b = c.client(1);

    let absent = b.invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!((absent.kind, absent.value), (OpType::Ok, Value::Nil));
    let w = a.invoke(&call(F::Write, 1, Value::Int(5)), T).await;
    assert_eq!(w.kind, OpType::Ok, "{w:?}");
    let r = b.invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!(
        (r.kind, r.value, r.node.as_deref()),
        (OpType::Ok, Value::Int(5), Some("n2"))
    );
    assert_eq!(b.invoke(&cas(1, 5, 6), T).await.kind, OpType::Ok);
    let stale = a.invoke(&cas(1, 5, 7), T).await;
    assert_eq!(stale.kind, OpType::Fail, "{stale:?}");
    let r = a.invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!(r.value, Value::Int(6));

    // List-append and rw-register transactions read their own writes.
    let t = a
        .invoke(
            &txn(vec![
                (MicroF::Append, 10, Value::Int(1)),
                (MicroF::Append, 10, Value::Int(2)),
                (MicroF::Read, 10, Value::Nil),
                (MicroF::Write, 11, Value::Int(9)),
            ]),
            T,
        )
        .await;
    assert_eq!(t.kind, OpType::Ok, "{t:?}");
    let t = b
        .invoke(
            &txn(vec![
                (MicroF::Read, 10, Value::Nil),
                (MicroF::Read, 11, Value::Nil),
                (MicroF::Read, 12, Value::Nil),
            ]),
            T,
        )
        .await;
    let Value::Txn(done) = t.value else {
        panic!("{t:?}")
    };
    let reads: Vec<Value> = done.into_iter().map(|m| m.value).collect();
    assert_eq!(
        reads,
        vec![
            Value::List(vec![Value::Int(1), Value::Int(2)]),
            Value::Int(9),
            Value::Nil
        ]
    );

    // Kill the leader: a client bound to a survivor writes again within a few seconds.
    let old = leader(&c).await;
    Kill::kill(&c, &old).await.unwrap();
    let survivor = c.nodes().iter().position(|n| *n != old).unwrap() as u64;
    let mut s = c.client(survivor);
    let t0 = Instant::now();
    let mut recovered = None;
    while t0.elapsed() < Duration::from_secs(15) {
        let w = s
            .invoke(
                &call(F::Write, 2, Value::Int(1)),
                Duration::from_millis(500),
            )
            .await;
        if w.kind == OpType::Ok {
            recovered = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("writes resumed {recovered:?} after the leader ({old}) died");
    assert!(
        recovered.is_some(),
        "no write succeeded after the leader died"
    );
    let new = leader(&c).await;
    assert_ne!(new, old);

    // The old leader comes back on its data and catches up.
    c.restart(&old).await.unwrap();
    let idx = c.nodes().iter().position(|n| *n == old).unwrap() as u64;
    let mut back = EtcdClient::new(
        c.nodes()
            .iter()
            .map(|n| (n.clone(), c.client_addr(n).unwrap().to_string()))
            .collect(),
        idx,
        EtcdReads::Serializable,
    );
    let mut seen = Value::Nil;
    for _ in 0..100 {
        let r = back.invoke(&call(F::Read, 1, Value::Nil), T).await;
        if r.kind == OpType::Ok && r.node.as_deref() == Some(old.as_str()) {
            seen = r.value;
            if seen == Value::Int(6) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Value::Int(6), "the restarted member did not catch up");

    c.teardown().await;
    assert_no_process_left(dir.path());
    let after = a.invoke(&call(F::Write, 1, Value::Int(8)), T).await;
    assert_eq!(after.kind, OpType::Fail, "nothing listens: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_voted_out_and_rejoins_as_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let c = started(dir.path(), EtcdReads::Serializable).await;
    let old = leader(&c).await;
    Pause::pause(&c, &old).await.unwrap();
    let survivor = c.nodes().iter().position(|n| *n != old).unwrap() as u64;
    let mut s = c.client(survivor);
    let mut ok = false;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        let w = s
            .invoke(
                &call(F::Write, 1, Value::Int(1)),
                Duration::from_millis(500),
            )
            .await;
        if w.kind == OpType::Ok {
            ok = true;
            break;
        }
    }
    assert!(ok, "the majority did not elect a new leader");
    eprintln!("writes resumed {:?} after pausing {old}", t0.elapsed());
    c.resume(&old).await.unwrap();
    // Pre-vote: the returning member does not depose the new leader.
    let new = leader(&c).await;
    assert_ne!(new, old);
    // Serializable reads are served by the member itself.
    let idx = c.nodes().iter().position(|n| *n == old).unwrap() as u64;
    let mut r = c.client(idx);
    let mut seen = None;
    for _ in 0..50 {
        let got = r.invoke(&call(F::Read, 1, Value::Nil), T).await;
        if got.value == Value::Int(1) {
            seen = got.node;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.as_deref(), Some(old.as_str()));
    c.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_mode_drives_a_cluster_it_did_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let owned = started(dir.path(), EtcdReads::Linearizable).await;
    let endpoints: Vec<String> = owned
        .nodes()
        .iter()
        .map(|n| owned.client_addr(n).unwrap().to_string())
        .collect();
    let ext = EtcdCluster::external(etcd::ExternalEtcdConfig {
        endpoints,
        reads: EtcdReads::Linearizable,
    })
    .unwrap();
    ext.start(Duration::from_secs(5)).await.unwrap();
    assert!(Db::kill(&ext).is_none() && Db::pause(&ext).is_none());
    assert_eq!(ext.primaries().await.len(), 1);
    let mut c = ext.client(2);
    assert_eq!(
        c.invoke(&call(F::Write, 3, Value::Int(3)), T).await.kind,
        OpType::Ok
    );
    ext.teardown().await;
    // The external teardown left the cluster running.
    let r = c.invoke(&call(F::Read, 3, Value::Nil), T).await;
    assert_eq!((r.kind, r.value), (OpType::Ok, Value::Int(3)));
    owned.teardown().await;
    assert_no_process_left(dir.path());
}

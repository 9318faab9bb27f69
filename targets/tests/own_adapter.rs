//! The worked adapter example (`examples/own_adapter/`) against Debian's real redis-server:
//! answers, refusals and indeterminate writes each get the outcome their effect calls for,
//! kill and restart keep acknowledged writes, a short concurrent run with a kill is
//! linearizable, a kill without the append-only file loses a write and the checker says so,
//! and teardown leaves nothing running. Installs `redis-server` when it is missing.

#[path = "../examples/own_adapter/adapter.rs"]
mod adapter;
mod common;
#[path = "../examples/own_adapter/demo.rs"]
mod demo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapter::{Config, OneRedis};
use checkers::Validity;
use checkers::linearizable::{self, LinOptions, ModelKind};
use common::{T, assert_no_process_left, call, cas};
use histories::{F, OpType, Value};
use targets::adapters::install;
use targets::{Client, Db, Invocation};

async fn started(append_only: bool) -> (tempfile::TempDir, OneRedis) {
    install::ensure_package("redis-server", || install::which("redis-server").is_some()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = OneRedis::new(Config {
        dir: dir.path().to_path_buf(),
        append_only,
    })
    .unwrap();
    db.start(Duration::from_secs(10)).await.unwrap();
    (dir, db)
}

fn read(key: i64) -> Invocation {
    call(F::Read, key, Value::Nil)
}

fn write(key: i64, value: i64) -> Invocation {
    call(F::Write, key, Value::Int(value))
}

async fn outcome(client: &mut Box<dyn Client>, call: &Invocation) -> (OpType, Value) {
    let done = client.invoke(call, T).await;
    (done.kind, done.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_cas_get_the_outcome_their_effect_calls_for() {
    let (dir, db) = started(true).await;
    let mut c = db.client(0);
    assert_eq!(outcome(&mut c, &read(1)).await, (OpType::Ok, Value::Nil));
    assert_eq!(
        outcome(&mut c, &write(1, 3)).await,
        (OpType::Ok, Value::Int(3))
    );
    assert_eq!(outcome(&mut c, &read(1)).await, (OpType::Ok, Value::Int(3)));
    let wrong = c.invoke(&cas(1, 2, 4), T).await;
    assert_eq!(
        (wrong.kind, wrong.error.as_deref()),
        (OpType::Fail, Some("cas: the value differs"))
    );
    assert_eq!(outcome(&mut c, &read(1)).await, (OpType::Ok, Value::Int(3)));
    assert_eq!(outcome(&mut c, &cas(1, 3, 4)).await.0, OpType::Ok);
    assert_eq!(outcome(&mut c, &read(1)).await, (OpType::Ok, Value::Int(4)));
    // What the client cannot express is refused before anything is sent.
    let odd = c
        .invoke(&call(F::Write, 1, Value::Str("x".into())), T)
        .await;
    assert_eq!(odd.kind, OpType::Fail);
    db.teardown().await;
    db.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_killed_calls_fail_and_after_the_restart_acknowledged_writes_are_back() {
    let (dir, db) = started(true).await;
    let mut old = db.client(0);
    assert_eq!(outcome(&mut old, &write(1, 1)).await.0, OpType::Ok);
    db.kill().unwrap().kill("n1").await.unwrap();
    // The kill closed `old`'s connection: the client sees that before sending, connects
    // again and is refused, so nothing was sent and the write is a definite `fail`.
    let w = old.invoke(&write(1, 2), T).await;
    assert_eq!((w.kind, w.value), (OpType::Fail, Value::Int(2)));
    assert!(
        w.error.as_deref().unwrap().contains("Connection refused"),
        "{:?}",
        w.error
    );
    let mut fresh = db.client(1);
    assert_eq!(outcome(&mut fresh, &write(1, 3)).await.0, OpType::Fail);
    assert_eq!(
        outcome(&mut fresh, &read(1)).await,
        (OpType::Fail, Value::Nil)
    );
    db.kill().unwrap().restart("n1").await.unwrap();
    assert_eq!(
        outcome(&mut old, &read(1)).await,
        (OpType::Ok, Value::Int(1))
    );
    assert_eq!(outcome(&mut fresh, &write(1, 4)).await.0, OpType::Ok);
    db.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_a_paused_server_never_answers_is_info_and_takes_effect_later() {
    let (dir, db) = started(true).await;
    let mut c = db.client(0);
    assert_eq!(outcome(&mut c, &write(1, 1)).await.0, OpType::Ok);
    let pause = db.pause().unwrap();
    pause.pause("n1").await.unwrap();
    let short = Duration::from_millis(300);
    let w = c.invoke(&write(1, 2), short).await;
    assert_eq!(
        (w.kind, w.value, w.error.as_deref()),
        (OpType::Info, Value::Int(2), Some("timeout"))
    );
    let r = c.invoke(&read(1), short).await;
    assert_eq!((r.kind, r.value), (OpType::Fail, Value::Nil));
    pause.resume("n1").await.unwrap();
    // The write that got no answer was applied once the server went on: why it is `info`.
    let t0 = Instant::now();
    while outcome(&mut c, &read(1)).await != (OpType::Ok, Value::Int(2)) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the sent write never showed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Teardown stops a paused server too.
    pause.pause("n1").await.unwrap();
    db.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_concurrent_run_with_a_kill_is_linearizable() {
    let (dir, db) = started(true).await;
    let db = Arc::new(db);
    let history = demo::run(Arc::clone(&db)).await.unwrap();
    db.teardown().await;
    let done = |kind: OpType| {
        history
            .ops()
            .iter()
            .filter(move |op| op.is_client() && op.kind == kind)
    };
    assert!(done(OpType::Ok).count() > 50, "too few calls succeeded");
    let refused = done(OpType::Fail)
        .filter(|op| {
            op.error
                .as_deref()
                .is_some_and(|e| e.contains("Connection refused"))
        })
        .count();
    assert!(refused > 0, "no call met the killed server");
    let verdict = linearizable::check(&history, ModelKind::CasRegister, &LinOptions::default());
    assert_eq!(
        verdict.valid,
        Validity::True,
        "{}\n{}",
        verdict.summary,
        verdict.explanation.join("\n")
    );
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_append_only_file_a_kill_loses_a_write_and_the_checker_says_so() {
    let (dir, db) = started(false).await;
    let rec = demo::Recorder::default();
    let mut c = db.client(0);
    for call in [write(1, 5), read(1)] {
        if call.f == F::Read {
            db.kill().unwrap().kill("n1").await.unwrap();
            db.kill().unwrap().restart("n1").await.unwrap();
        }
        rec.invoked(0, &call);
        let done = c.invoke(&call, T).await;
        assert_eq!(done.kind, OpType::Ok, "{done:?}");
        rec.completed(0, &call, done);
    }
    db.teardown().await;
    let history = rec.history().unwrap();
    assert_eq!(history.ops()[3].value, Value::Nil);
    let verdict = linearizable::check(&history, ModelKind::CasRegister, &LinOptions::default());
    assert_eq!(verdict.valid, Validity::False);
    assert_eq!(
        verdict.summary,
        "not linearizable: key 1: p0 read -> nil cannot be linearized"
    );
    assert_no_process_left(dir.path());
}

//! The Maelstrom host with real node processes: the example node (echo, unique ids,
//! broadcast by gossip, lin-kv through the service) and nodes written in Python, JavaScript,
//! Ruby and Go (`maelstrom-nodes/`) run unchanged, with every node-to-node message routed
//! (and partitioned, dropped or delayed) by the host, network statistics, a killed node
//! re-initialized, and a teardown that leaves no process.

mod common;
#[path = "maelstrom-nodes/mod.rs"]
mod maelstrom_nodes;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{T, assert_no_process_left, call, cas};
use histories::{F, OpType, Value};
use targets::adapters::maelstrom::{MaelstromConfig, MaelstromHost, Topology};
use targets::{Client, Db, Invocation, Kill};

const NODE: &str = env!("CARGO_BIN_EXE_maelstrom-echo-broadcast");

fn op(f: &str, value: Value) -> Invocation {
    Invocation {
        f: F::Other(f.to_string()),
        key: None,
        value,
    }
}

fn read_all() -> Invocation {
    Invocation {
        f: F::Read,
        key: None,
        value: Value::Nil,
    }
}

async fn host(dir: &std::path::Path, topology: Topology) -> MaelstromHost {
    let h = MaelstromHost::new(MaelstromConfig {
        binary: PathBuf::from(NODE),
        node_count: 3,
        dir: dir.to_path_buf(),
        topology,
        seed: 42,
        ..MaelstromConfig::default()
    })
    .unwrap();
    h.start(Duration::from_secs(10)).await.unwrap();
    h
}

/// Reads through `client` until it returns `want`, within `limit`.
async fn until_read(client: &mut Box<dyn Client>, want: &Value, limit: Duration) -> Value {
    let t0 = Instant::now();
    let mut last = Value::Nil;
    while t0.elapsed() < limit {
        let r = client.invoke(&read_all(), T).await;
        last = r.value;
        if &last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_unique_ids_broadcast_and_lin_kv_work_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), Topology::Grid).await;
    let mut clients: Vec<Box<dyn Client>> = (0..3).map(|p| h.client(p)).collect();

    let e = clients[0]
        .invoke(&op("echo", Value::Str("hi".into())), T)
        .await;
    assert_eq!(
        (e.kind, e.value, e.node.as_deref()),
        (OpType::Ok, Value::Str("hi".into()), Some("n1"))
    );

    let mut ids = BTreeSet::new();
    for i in 0..30 {
        let g = clients[i % 3].invoke(&op("generate", Value::Nil), T).await;
        assert_eq!(g.kind, OpType::Ok, "{g:?}");
        assert!(ids.insert(g.value.to_string()), "duplicate id {}", g.value);
    }

    for v in 1..=6 {
        let b = clients[v as usize % 3]
            .invoke(&op("broadcast", Value::Int(v)), T)
            .await;
        assert_eq!(b.kind, OpType::Ok, "{b:?}");
    }
    let all = Value::List((1..=6).map(Value::Int).collect());
    for c in &mut clients {
        assert_eq!(until_read(c, &all, Duration::from_secs(5)).await, all);
    }

    // lin-kv through the service: the node passes requests on and answers back.
    let missing = clients[1].invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!(missing.kind, OpType::Fail, "key-does-not-exist is definite");
    assert_eq!(
        clients[1]
            .invoke(&call(F::Write, 1, Value::Int(5)), T)
            .await
            .kind,
        OpType::Ok
    );
    let r = clients[2].invoke(&call(F::Read, 1, Value::Nil), T).await;
    assert_eq!((r.kind, r.value), (OpType::Ok, Value::Int(5)));
    assert_eq!(clients[0].invoke(&cas(1, 5, 6), T).await.kind, OpType::Ok);
    let stale = clients[0].invoke(&cas(1, 5, 7), T).await;
    assert_eq!(
        stale.kind,
        OpType::Fail,
        "precondition-failed is definite: {stale:?}"
    );

    // The example node has counters but no g-set: an `add` of an element is refused.
    let g_set_add = Invocation {
        f: F::Add,
        key: None,
        value: Value::Int(1),
    };
    let unsupported = clients[0].invoke(&g_set_add, T).await;
    assert_eq!(
        unsupported.kind,
        OpType::Fail,
        "not-supported is definite: {unsupported:?}"
    );

    let stats = h.net_stats();
    let (all_per_op, clients_per_op, servers_per_op) = stats.msgs_per_op();
    eprintln!(
        "{stats:?}; msgs per op: all {all_per_op:.2}, clients {clients_per_op:.2}, servers {servers_per_op:.2}"
    );
    assert!(stats.servers.send_count > 0 && stats.clients.send_count >= 2 * stats.ops);
    assert_eq!(
        stats.all.send_count,
        stats.clients.send_count + stats.servers.send_count
    );
    h.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_waits_out_a_partition_loss_and_delay_and_then_converges() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), Topology::Total).await;
    let mut n1 = h.client(0);
    let mut n2 = h.client(1);
    h.partition(&[vec!["n1".into()], vec!["n2".into(), "n3".into()]]);
    assert_eq!(
        n1.invoke(&op("broadcast", Value::Int(7)), T).await.kind,
        OpType::Ok
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let cut_off = n2.invoke(&read_all(), T).await;
    assert_eq!(
        cut_off.value,
        Value::List(vec![]),
        "the partition let gossip through"
    );
    assert!(h.net_stats().dropped > 0);
    h.heal();
    h.set_loss(0.5);
    h.set_delay(5, 50);
    let want = Value::List(vec![Value::Int(7)]);
    assert_eq!(
        until_read(&mut n2, &want, Duration::from_secs(10)).await,
        want
    );
    h.set_loss(0.0);
    h.set_delay(0, 0);
    h.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_refuses_definitely_then_restarts_and_is_initialized_again() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), Topology::Total).await;
    let mut c = h.client(1);
    Kill::kill(&h, "n2").await.unwrap();
    let down = c.invoke(&op("echo", Value::Int(1)), T).await;
    assert_eq!(down.kind, OpType::Fail, "{down:?}");
    h.restart("n2").await.unwrap();
    let up = c.invoke(&op("echo", Value::Int(2)), T).await;
    assert_eq!((up.kind, up.value), (OpType::Ok, Value::Int(2)));
    h.teardown().await;
    assert_no_process_left(dir.path());
}

/// Starts a cluster of a node program in another language, whose interpreter or compiler
/// `ci/test.sh` installs: a missing one fails here, it is not skipped.
async fn start_foreign(config: MaelstromConfig) -> MaelstromHost {
    let program = config.binary.display().to_string();
    let h = MaelstromHost::new(config)
        .unwrap_or_else(|e| panic!("{e} (ci/test.sh installs {program})"));
    h.start(Duration::from_secs(20)).await.unwrap();
    h
}

/// Echoes a string, an integer and a nested map through every node of `h` and expects
/// each back from that node; an unknown request is refused definitely (error 10). Each node
/// wrote `stderr_mark` on its stderr, which went to its log and not into the protocol: the
/// host refused no line of its stdout.
async fn echo_through_every_node(h: &MaelstromHost, dir: &Path, stderr_mark: &str) {
    let nested = Value::Map(
        [
            ("lang".to_string(), Value::Str(stderr_mark.into())),
            (
                "xs".to_string(),
                Value::List(vec![
                    Value::Int(1),
                    Value::Int(-2),
                    Value::Str("é\"\n".into()),
                ]),
            ),
        ]
        .into_iter()
        .collect(),
    );
    let nodes = h.nodes();
    for (p, node) in nodes.iter().enumerate() {
        let mut c = h.client(p as u64);
        for v in [
            Value::Str(node.clone()),
            Value::Int(p as i64),
            nested.clone(),
        ] {
            let e = c.invoke(&op("echo", v.clone()), T).await;
            assert_eq!(
                (e.kind, e.value, e.node.as_deref()),
                (OpType::Ok, v, Some(node.as_str()))
            );
        }
        let refused = c.invoke(&op("generate", Value::Nil), T).await;
        assert_eq!(refused.kind, OpType::Fail, "not-supported: {refused:?}");
    }
    for node in &nodes {
        let log = std::fs::read_to_string(dir.join(format!("{node}.log"))).unwrap();
        assert!(
            log.contains(&format!("{stderr_mark}: {node} up")),
            "{node}'s stderr is not in its log: {log}"
        );
        assert!(!log.contains("bad message"), "{node}: {log}");
    }
}

/// Runs a script node in another language (Maelstrom's demos are Python, Ruby, JavaScript,
/// Go) through echo, and checks that teardown leaves no process.
async fn a_script_node_runs_unchanged(interpreter: &str, script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let h = start_foreign(MaelstromConfig {
        binary: PathBuf::from(interpreter),
        args: vec![
            maelstrom_nodes::source(script)
                .to_string_lossy()
                .into_owned(),
        ],
        node_count: 3,
        dir: dir.path().to_path_buf(),
        ..MaelstromConfig::default()
    })
    .await;
    echo_through_every_node(&h, dir.path(), script).await;
    h.teardown().await;
    assert_no_process_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_node_runs_unchanged() {
    a_script_node_runs_unchanged("python3", "echo.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_node_runs_unchanged() {
    a_script_node_runs_unchanged("node", "echo.js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruby_node_runs_unchanged() {
    a_script_node_runs_unchanged("ruby", "echo.rb").await;
}

/// The Go node gossips each broadcast to its neighbours as node-to-node requests, all
/// routed by the host: on a line n1 - n2 - n3, what n1 takes reaches n3 only through n2,
/// and a message taken while n3 is cut off reaches it after the heal, by retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_node_runs_unchanged_and_its_gossip_goes_through_the_host() {
    let go = maelstrom_nodes::go_build("broadcast.go", "broadcast-go");
    let dir = tempfile::tempdir().unwrap();
    let h = start_foreign(MaelstromConfig {
        binary: go.binary.clone(),
        node_count: 3,
        dir: dir.path().to_path_buf(),
        topology: Topology::Line,
        seed: 7,
        ..MaelstromConfig::default()
    })
    .await;
    echo_through_every_node(&h, dir.path(), "broadcast.go").await;

    let mut n1 = h.client(0);
    let mut n3 = h.client(2);
    for v in 1..=5 {
        let b = n1.invoke(&op("broadcast", Value::Int(v)), T).await;
        assert_eq!(b.kind, OpType::Ok, "{b:?}");
    }
    let five = Value::List((1..=5).map(Value::Int).collect());
    assert_eq!(
        until_read(&mut n3, &five, Duration::from_secs(5)).await,
        five
    );
    let gossip = h.net_stats().servers.send_count;
    // Each message crossed both links as a node-to-node request.
    assert!(gossip >= 5 * 2, "{:?}", h.net_stats());

    h.partition(&[vec!["n1".into(), "n2".into()], vec!["n3".into()]]);
    let b = n1.invoke(&op("broadcast", Value::Int(6)), T).await;
    assert_eq!(b.kind, OpType::Ok, "{b:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        n3.invoke(&read_all(), T).await.value,
        five,
        "the partition let gossip through"
    );
    assert!(h.net_stats().dropped > 0, "{:?}", h.net_stats());
    h.heal();
    let six = Value::List((1..=6).map(Value::Int).collect());
    assert_eq!(until_read(&mut n3, &six, Duration::from_secs(5)).await, six);

    h.teardown().await;
    assert_no_process_left(dir.path());
    let go_dir = go.dir.path().to_path_buf();
    drop(go);
    assert!(!go_dir.exists(), "the Go build left {}", go_dir.display());
}

//! Helpers shared by the tests of real targets.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use histories::{F, Key, MicroF, MicroOp, Value};
use targets::Invocation;

pub const T: Duration = Duration::from_secs(3);

pub fn call(f: F, key: i64, value: Value) -> Invocation {
    Invocation {
        f,
        key: Some(Key::Int(key)),
        value,
    }
}

pub fn cas(key: i64, from: i64, to: i64) -> Invocation {
    call(
        F::Cas,
        key,
        Value::List(vec![Value::Int(from), Value::Int(to)]),
    )
}

pub fn txn(mops: Vec<(MicroF, i64, Value)>) -> Invocation {
    Invocation {
        f: F::Txn,
        key: None,
        value: Value::Txn(
            mops.into_iter()
                .map(|(f, k, value)| MicroOp {
                    f,
                    key: Key::Int(k),
                    value,
                })
                .collect(),
        ),
    }
}

/// The values a completed transaction read or wrote, in order.
pub fn txn_values(v: &Value) -> Vec<Value> {
    match v {
        Value::Txn(done) => done.iter().map(|m| m.value.clone()).collect(),
        other => panic!("not a txn: {other}"),
    }
}

pub fn ints(v: &[i64]) -> Value {
    Value::List(v.iter().map(|&i| Value::Int(i)).collect())
}

/// No live process is left that the adapter started under `dir`: every server's output
/// goes to a log file there, and its workers inherit that descriptor (PostgreSQL's backends
/// leave the server's process group, so groups alone would miss them).
pub fn assert_no_process_left(dir: &Path) {
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
    assert!(!pids.is_empty(), "the adapter recorded no pid");
    let dir = dir.canonicalize().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .next();
        if matches!(state, None | Some("Z") | Some("X")) || pid == std::process::id() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                assert!(
                    !target.starts_with(&dir),
                    "process {pid} still runs with {} open: {stat}",
                    target.display()
                );
            }
        }
    }
}

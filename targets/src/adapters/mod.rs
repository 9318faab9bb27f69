//! Adapters for real systems, each behind the [`Db`](crate::Db) / [`Client`](crate::Client)
//! traits with the capabilities it supports:
//!
//! - [`etcd`]: a 3-member etcd cluster (or an external one), registers, CAS and list-append /
//!   rw-register transactions, linearizable or serializable reads.
//! - [`postgres`]: a PostgreSQL primary with a streaming replica, list-append and rw-register
//!   transactions at a chosen isolation level.
//! - [`redis`]: a Redis primary with two replicas and three Sentinels, registers and sets.
//! - [`maelstrom`]: any binary that speaks Maelstrom's node protocol, with the controller
//!   routing every message between nodes.
//!
//! Every server process runs in its own process group, dies with the controller, is listed
//! in the run's `pids` file and is killed when its cluster is dropped.
//!
//! # Writing an adapter
//! The worked example is `targets/examples/own_adapter/` (one `redis-server`, with `Kill` and
//! `Pause`, run by `cargo run -p targets --example own_adapter` and tested by
//! `tests/own_adapter.rs`); the README walks through it. An adapter is a `Config` struct (built
//! with `..Default::default()`), a cluster type implementing [`Db`](crate::Db) — `new` only chooses
//! ports and paths, `start` spawns the servers through the crate's process table (which records
//! pids and kills on drop) and waits until the cluster serves, `teardown` stops everything — plus
//! whichever capabilities the system supports ([`Kill`](crate::Kill), [`Pause`](crate::Pause),
//! [`Primary`](crate::Primary)), and a client implementing [`Client`](crate::Client). The client's
//! one rule: `ok` only for an acknowledged effect, `fail` only when the effect certainly did not
//! happen (nothing was sent, or the server refused before acting), `info` for everything in between
//! (timeouts, broken connections, errors that may follow a commit). Its test starts the real
//! server, installing the Debian package with [`install::ensure_package`] when it is missing.

pub mod etcd;
pub mod install;
pub mod maelstrom;
pub mod postgres;
pub mod redis;

mod procs;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use histories::{Key, OpType, Value};
use tokio::process::Command;

use crate::db::{Completion, Invocation};

/// Where one node of a started cluster runs: an address to listen on and, optionally, a
/// network namespace to run in (made by the harness's network fabric, so that partitions can
/// cut node-to-node traffic). The default is 127.0.0.1 in the controller's namespace, with
/// free ports chosen at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHost {
    pub ip: IpAddr,
    /// Run the server through `ip netns exec NAME` (which keeps its pid).
    pub netns: Option<String>,
}

impl Default for NodeHost {
    fn default() -> NodeHost {
        NodeHost {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            netns: None,
        }
    }
}

impl NodeHost {
    /// A command that runs `program` on this host.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
        }
    }
}

/// The hosts of `count` nodes: `hosts` when given (one per node), else all on 127.0.0.1.
pub(crate) fn hosts_for(hosts: &[NodeHost], count: usize) -> anyhow::Result<Vec<NodeHost>> {
    if hosts.is_empty() {
        return Ok(vec![NodeHost::default(); count]);
    }
    if hosts.len() != count {
        anyhow::bail!("{} hosts given for {count} nodes", hosts.len());
    }
    Ok(hosts.to_vec())
}

/// A port for each host: a free one on the controller's side, or `fixed` inside a namespace,
/// where nothing else listens.
pub(crate) fn ports_for(hosts: &[NodeHost], fixed: u16) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::with_capacity(hosts.len());
    for host in hosts {
        match host.netns {
            Some(_) => out.push(fixed),
            None => out.push(crate::ports::free_ports(host.ip, 1)?[0]),
        }
    }
    Ok(out)
}

/// The text a key is stored under in a key-value store.
pub(crate) fn key_text(key: &Key) -> String {
    match key {
        Key::Int(k) => k.to_string(),
        Key::Str(k) => k.clone(),
    }
}

/// The JSON text a register or list value is stored as.
pub(crate) fn value_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Reads back what [`value_text`] stored; anything else becomes a string.
pub(crate) fn parse_value_text(text: &[u8]) -> Value {
    serde_json::from_slice::<Value>(text)
        .unwrap_or_else(|_| Value::Str(String::from_utf8_lossy(text).into_owned()))
}

pub(crate) fn completion(
    kind: OpType,
    value: Value,
    node: Option<&str>,
    error: Option<String>,
) -> Completion {
    Completion {
        kind,
        value,
        node: node.map(str::to_string),
        error,
    }
}

/// A definite failure before anything was sent: the call's own value, the reason.
pub(crate) fn refuse(call: &Invocation, why: impl Into<String>) -> Completion {
    completion(OpType::Fail, call.value.clone(), None, Some(why.into()))
}

/// The micro-ops of a transaction invocation, or why it is not one.
pub(crate) fn txn_ops(call: &Invocation) -> Result<Vec<histories::MicroOp>, String> {
    match &call.value {
        Value::Txn(mops) => Ok(mops.clone()),
        Value::List(items) => items.iter().map(histories::MicroOp::from_value).collect(),
        other => Err(format!("txn needs micro-ops, got {other}")),
    }
}

//! The protocols every target implements, in Jepsen's shape: a [`Db`] that owns the cluster's
//! lifecycle and hands out [`Client`]s, plus optional capabilities that faults need. A nemesis
//! asks for a capability and gets a clear error when the target lacks it.

use std::time::Duration;

use async_trait::async_trait;
use histories::{F, Key, OpType, Value};

/// The name of one node of a cluster, e.g. `n1`.
pub type NodeId = String;

/// The result of one client call, as it goes into the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `Ok`, `Fail` (certainly no effect) or `Info` (may have taken effect).
    pub kind: OpType,
    pub value: Value,
    /// The node that answered, or the last one tried.
    pub node: Option<String>,
    pub error: Option<String>,
}

/// What a client is asked to do: the invocation's function, key and argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub f: F,
    pub key: Option<Key>,
    pub value: Value,
}

/// A client bound to one logical process. It performs one call at a time.
#[async_trait]
pub trait Client: Send {
    /// Performs the call within `timeout`. Must not panic; every failure becomes a completion.
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion;
}

/// How a client picks the node for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRouting {
    /// Reads go to the leader, like writes.
    Leader,
    /// Reads go to the node this client is bound to (process number modulo node count),
    /// which may be a stale follower.
    Any,
}

impl std::str::FromStr for ReadRouting {
    type Err = String;
    fn from_str(s: &str) -> Result<ReadRouting, String> {
        match s {
            "leader" => Ok(ReadRouting::Leader),
            "any" => Ok(ReadRouting::Any),
            other => Err(format!(
                "unknown read routing {other:?}; expected leader or any"
            )),
        }
    }
}

/// A cluster under test.
#[async_trait]
pub trait Db: Send + Sync {
    fn nodes(&self) -> Vec<NodeId>;

    /// Starts every node and waits until the cluster serves requests, or says why not.
    async fn start(&self, timeout: Duration) -> anyhow::Result<()>;

    /// Stops every node (also the paused ones). Idempotent; must work after partial failures.
    async fn teardown(&self);

    /// A client for logical process `process`.
    fn client(&self, process: u64) -> Box<dyn Client>;

    /// Optional capabilities.
    fn kill(&self) -> Option<&dyn Kill> {
        None
    }
    fn pause(&self) -> Option<&dyn Pause> {
        None
    }
    fn primary(&self) -> Option<&dyn Primary> {
        None
    }
}

/// Crash a node (SIGKILL) and start it again on its data.
#[async_trait]
pub trait Kill: Send + Sync {
    async fn kill(&self, node: &str) -> anyhow::Result<()>;
    async fn restart(&self, node: &str) -> anyhow::Result<()>;
}

/// Freeze a node (SIGSTOP) and let it go on (SIGCONT).
#[async_trait]
pub trait Pause: Send + Sync {
    async fn pause(&self, node: &str) -> anyhow::Result<()>;
    async fn resume(&self, node: &str) -> anyhow::Result<()>;
}

/// Which nodes currently act as leader (more than one during a split brain).
#[async_trait]
pub trait Primary: Send + Sync {
    async fn primaries(&self) -> Vec<NodeId>;
}

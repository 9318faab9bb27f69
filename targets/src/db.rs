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

/// How a client picks the node for a read. Writes always go to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRouting {
    /// Reads go to the leader, like writes.
    Leader,
    /// Each read goes to the next node in turn (starting from one chosen by the process
    /// number), so consecutive reads may hit replicas at different log positions: monotonic
    /// reads can break.
    Any,
    /// Every read goes to the same replica, chosen by the process number (process modulo
    /// node count); a replica never moves backwards, so reads stay monotonic while it lives.
    Sticky,
    /// Read-your-writes by a client-remembered position: the client remembers the log index
    /// of its last acknowledged write and reads from its sticky replica only if that replica
    /// has applied it; otherwise it tries the other replicas, and the leader last.
    Ryw,
}

impl ReadRouting {
    /// Every routing, in the order the flag documentation lists them.
    pub const ALL: [ReadRouting; 4] = [
        ReadRouting::Leader,
        ReadRouting::Any,
        ReadRouting::Sticky,
        ReadRouting::Ryw,
    ];

    /// The flag value, which [`str::parse`] reads back.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadRouting::Leader => "leader",
            ReadRouting::Any => "any",
            ReadRouting::Sticky => "sticky",
            ReadRouting::Ryw => "ryw",
        }
    }
}

impl std::fmt::Display for ReadRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReadRouting {
    type Err = String;
    fn from_str(s: &str) -> Result<ReadRouting, String> {
        ReadRouting::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown read routing {s:?}; expected leader, any, sticky or ryw")
            })
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
    fn clock(&self) -> Option<&dyn Clock> {
        None
    }
    fn member(&self) -> Option<&dyn Member> {
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

/// Skew a node's wall clock, as a clock nemesis does, and put it back. A skew survives the
/// node's restart (like a wrong system clock would).
#[async_trait]
pub trait Clock: Send + Sync {
    /// Moves `node`'s wall clock by `offset_ms` more (bumps add up); returns the node's
    /// total offset afterwards.
    async fn bump_clock(&self, node: &str, offset_ms: i64) -> anyhow::Result<i64>;
    /// Puts `node`'s wall clock back to the real time.
    async fn reset_clock(&self, node: &str) -> anyhow::Result<()>;
}

/// Change which nodes hold the data: the way a new replica is set up (DDIA's "setting up
/// new followers").
#[async_trait]
pub trait Member: Send + Sync {
    /// Kills `node`, deletes its data and starts it again empty; it rejoins the cluster and
    /// catches up from the leader (a snapshot tagged with its log position, then the log).
    async fn wipe_and_rejoin(&self, node: &str) -> anyhow::Result<()>;
}

/// Which nodes currently act as leader (more than one during a split brain).
#[async_trait]
pub trait Primary: Send + Sync {
    async fn primaries(&self) -> Vec<NodeId>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_routings_parse_back_from_their_names() {
        for r in ReadRouting::ALL {
            assert_eq!(r.as_str().parse::<ReadRouting>(), Ok(r));
        }
        assert!(
            "nearest"
                .parse::<ReadRouting>()
                .unwrap_err()
                .contains("sticky")
        );
    }
}

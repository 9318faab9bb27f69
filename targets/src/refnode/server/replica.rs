//! What multi-leader ([`super::multi_leader`]) and leaderless ([`super::leaderless`]) nodes
//! share: the [`Replica`] handler interface their driver ([`super::replica_driver`]) and
//! their simulations call, the [`ReplicaEffects`] the handlers return, the durable
//! [`Record`]s they persist, and the node's settable wall clock.
//!
//! As with the single-leader [`super::node::Node`], handlers are effect-free: the driver
//! carries out `persist` (and `rewrite`) before anything else of the same effects, because
//! acknowledgements promise durability.

use serde::{Deserialize, Serialize};

use crate::refnode::protocol::{
    Change, ErrorCode, ErrorReply, ReplicaMessage, ReplyBody, ResponseResult,
};

use super::node::{ClientRequest, MAX_CLOCK_OFFSET_MS, NodeId};
use super::versions::Version;

/// The handlers of a multi-leader or leaderless node.
pub trait Replica {
    /// A batch of client requests (the driver hands over everything queued, so writes share
    /// one fsync).
    fn on_client(&mut self, batch: Vec<ClientRequest>, now_ms: u64) -> ReplicaEffects;
    /// One message from peer `from`.
    fn on_peer(&mut self, from: &str, msg: ReplicaMessage, now_ms: u64) -> ReplicaEffects;
    /// This node's connection to `peer` was (re)established: what was in flight on the old
    /// one is lost.
    fn on_peer_connected(&mut self, peer: &str, now_ms: u64) -> ReplicaEffects;
    /// Time passes.
    fn on_tick(&mut self, now_ms: u64) -> ReplicaEffects;
}

/// What a handler asks the outside world to do, in this order: log, persist, rewrite, send,
/// reply.
#[derive(Debug, Default)]
pub struct ReplicaEffects {
    pub log: Vec<String>,
    /// Records to append (one fsync for all).
    pub persist: Vec<Record>,
    /// Replace every record with these (compaction), after `persist`.
    pub rewrite: Option<Vec<Record>>,
    /// The answer to the peer message being handled, on the connection it came from.
    pub respond: Option<ReplicaMessage>,
    /// Messages to peers, on this node's own connection to each.
    pub send: Vec<(NodeId, ReplicaMessage)>,
    /// Replies to client requests, by token; every token is answered exactly once.
    pub replies: Vec<(u64, ResponseResult)>,
}

impl ReplicaEffects {
    pub fn reply(&mut self, token: u64, result: Result<ReplyBody, ErrorReply>) {
        self.replies.push((
            token,
            match result {
                Ok(r) => ResponseResult::Ok(r),
                Err(e) => ResponseResult::Err(e),
            },
        ));
    }
}

/// One line of a multi-leader or leaderless node's data file. Replaying the records in order
/// rebuilds the node's state; compaction rewrites them as a shorter list with the same
/// replay result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// The first record of a data directory: the actor id this incarnation of the node signs
    /// its dots with. A wiped node is a new actor, so it can never reuse a dot it issued
    /// before the wipe.
    Actor { actor: String },
    /// The node's own dot counter for `key` reached `counter`.
    Counter { key: i64, counter: u64 },
    /// Multi-leader: one entry of this node's change log; `from` is the peer it came from and
    /// its index in that peer's log (absent for this node's own writes).
    Change {
        index: u64,
        change: Change,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<(String, u64)>,
    },
    /// Multi-leader: every change of `from`'s log up to `upto` has been taken.
    Received { from: String, upto: u64 },
    /// Multi-leader compaction: this node's change log continues after `index` (the
    /// entries up to it were dropped once every peer it sends to had them).
    LogBase { index: u64 },
    /// A key's versions, replacing what earlier records said.
    Key { key: i64, versions: Vec<Version> },
    /// Leaderless: versions held for `for_node` (an empty list: handed off).
    Hint {
        for_node: String,
        key: i64,
        versions: Vec<Version>,
    },
}

/// A node's wall clock: the real one (derived from the monotonic handler time) plus a
/// settable offset, which the clock nemesis moves and last-write-wins timestamps read.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// The real wall clock, in ms since the Unix epoch, when handler time was 0.
    pub base_ms: u64,
    pub offset_ms: i64,
}

impl WallClock {
    pub fn at(&self, now_ms: u64) -> i64 {
        i64::try_from(self.base_ms.saturating_add(now_ms))
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_ms)
    }

    /// `set-clock`: validates and applies a new offset; logs a change.
    pub fn set(
        &mut self,
        offset_ms: i64,
        now_ms: u64,
        log: &mut Vec<String>,
    ) -> Result<ReplyBody, ErrorReply> {
        if offset_ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS {
            return Err(ErrorReply::new(
                ErrorCode::Malformed,
                true,
                format!("clock offset {offset_ms} ms is beyond +-{MAX_CLOCK_OFFSET_MS} ms"),
            ));
        }
        if offset_ms != self.offset_ms {
            log.push(format!(
                "clock: offset set to {offset_ms} ms (was {} ms)",
                self.offset_ms
            ));
        }
        self.offset_ms = offset_ms;
        Ok(ReplyBody::SetClockOk {
            offset_ms,
            wall_clock_ms: self.at(now_ms),
        })
    }
}

/// The actor id of a fresh data directory: the node id and the wall clock at creation, so a
/// wiped and restarted node signs its dots differently.
pub fn fresh_actor(id: &str, wall_ms: i64) -> String {
    format!("{id}.{wall_ms:x}")
}

pub fn unsupported(what: &str, design: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Unsupported,
        true,
        format!("{what} is not supported by {design} replication"),
    )
}

/// SplitMix64 step: deterministic randomness for `rand()` in statements.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    super::ring::mix64(*state)
}

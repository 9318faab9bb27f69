//! The refnode wire protocol: newline-delimited JSON over TCP, one port per node for clients
//! and peers alike. Every request carries an `id` that the response echoes, so a connection can
//! carry several requests in flight.

use serde::{Deserialize, Serialize};

/// A request from a client (or the harness) to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    #[serde(flatten)]
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum RequestBody {
    /// Reads the register at `key` from this node's local state (any role).
    Read { key: i64 },
    /// Writes `value` to `key`. Only the leader accepts it.
    Write { key: i64, value: i64 },
    /// Sets `key` to `to` if it currently holds `from`. Only the leader accepts it.
    Cas { key: i64, from: i64, to: i64 },
    /// Role, leader, epoch and log positions of this node.
    Status,
}

/// A node's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub result: ResponseResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseResult {
    Ok(ReplyBody),
    Err(ErrorReply),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum ReplyBody {
    /// `value` is `None` when the key was never written.
    ReadOk { value: Option<i64> },
    WriteOk,
    CasOk,
    StatusOk(Status),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub role: Role,
    /// The node this one believes is leader (itself when leader), if any.
    pub leader: Option<String>,
    pub epoch: u64,
    /// Index of the last entry in this node's replication log (0 = empty).
    pub last_index: u64,
    /// Highest index this node knows to be committed (acknowledgeable to clients).
    pub commit_index: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Leader,
    Follower,
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    /// True when the operation certainly did not take effect (a client records `fail`), false
    /// when it may have (a client records `info`).
    pub definite: bool,
    pub message: String,
    /// For `not-leader`: the node this one believes is leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// This node is not the leader; definite.
    NotLeader,
    /// The cas precondition did not hold; definite.
    CasMismatch,
    /// Replication did not complete in time (sync mode): the write is in the leader's log and
    /// may still become visible; indefinite.
    Timeout,
    /// The node could not take the request (shutting down, stepping down); definite.
    Unavailable,
    /// The request could not be parsed; definite.
    Malformed,
}

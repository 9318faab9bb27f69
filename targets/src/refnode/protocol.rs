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
    ReadOk {
        value: Option<i64>,
    },
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

// ---------------------------------------------------------------------------------------------
// Peer protocol: what nodes say to each other on the same port.
//
// A peer line is `{"peer": "<sender id>", "msg": {"type": "...", ...}}`. Client requests have
// the top-level fields `id` and `op` and never `peer`, so a node tells the two kinds of line
// apart by the presence of `peer` alone ([`classify_line`]); a malformed line can therefore
// never be mistaken for a replication message, or the other way round.
//
// Each node opens one connection to every other node and sends its own requests on it
// (`append`, `snapshot`, `position-request`); the receiver answers on that same connection
// (`append-reply`, `position-reply`). Every message may be lost (a bounded queue was full, a
// connection broke): the leader resends from what each follower last acknowledged, so loss
// costs time, never correctness.
// ---------------------------------------------------------------------------------------------

/// One entry of the replication log. The log is *logical*: an entry holds the value the
/// operation left in the register (a cas is shipped as the value it wrote), so replaying it
/// needs no evaluation and gives the same state on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1, without gaps.
    pub index: u64,
    /// The epoch of the leader that created the entry.
    pub epoch: u64,
    pub key: i64,
    pub value: i64,
}

/// The first index of the leader's log that carries `epoch`: a compact description of which
/// leader wrote which part of the log, so a follower that installs a snapshot can tell which of
/// its own entries the leader never had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: u64,
    pub first_index: u64,
}

/// One line from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEnvelope {
    /// The sender's node id.
    pub peer: String,
    pub msg: PeerMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PeerMessage {
    /// Leader to follower: the entries after `prev_index` (none for a heartbeat), which the
    /// follower accepts only if its own entry at `prev_index` has `prev_epoch` (as Raft's
    /// AppendEntries). The sender is the leader of `epoch`.
    Append {
        epoch: u64,
        prev_index: u64,
        prev_epoch: u64,
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit_index: u64,
        /// The leader's last index when it sent this, so a follower can recognise entries
        /// beyond it from older epochs as ones the leader never had.
        leader_last_index: u64,
    },
    /// Leader to follower: replace your whole state and log with `map`, the state after entry
    /// `index` (whose epoch is `index_epoch`). Sent when the follower's log does not match the
    /// leader's or lies behind the leader's compacted point.
    Snapshot {
        epoch: u64,
        index: u64,
        index_epoch: u64,
        /// `[key, value]` pairs, sorted by key.
        map: Vec<(i64, i64)>,
        commit_index: u64,
        /// Where each epoch begins in the leader's log, in increasing index order; the first
        /// element is the leader's own compaction point (nothing is known before it).
        epochs: Vec<EpochStart>,
    },
    /// Follower to leader: the answer to `append` or `snapshot`. `epoch` is the follower's
    /// epoch after handling the message.
    AppendReply { epoch: u64, outcome: AppendOutcome },
    /// A node about to fail over asks each peer where its log ends.
    PositionRequest { round: u64 },
    /// The answer to `position-request` of the same `round`.
    PositionReply {
        round: u64,
        role: Role,
        epoch: u64,
        /// The leader the replying node follows (itself when leader), if any.
        leader: Option<String>,
        last_epoch: u64,
        last_index: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AppendOutcome {
    /// The follower's log equals the leader's up to `match_index`, persisted and applied.
    Ok { match_index: u64 },
    /// The follower could not accept the entries. When `diverged` is false it is merely
    /// behind (or ahead of the message): the leader resends from `last_index` if its own entry
    /// there has `last_epoch`. When `diverged` is true the follower holds entries the leader
    /// does not have, and only a snapshot repairs it.
    Mismatch {
        last_index: u64,
        last_epoch: u64,
        diverged: bool,
    },
    /// The message came from a leader the follower does not accept: an older epoch, or a
    /// second leader of the same epoch. `leader` is whom the follower follows; the sender steps
    /// down when the reply's epoch is newer than its own, or equal with a lower leader id.
    StaleEpoch { leader: Option<String> },
}

/// What one received line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Client(Request),
    Peer(PeerEnvelope),
    /// Neither: to be answered with a `malformed` error carrying `id` (the line's `id` field
    /// when it has a numeric one, else 0).
    Malformed {
        id: u64,
        message: String,
    },
}

/// Tells a client request from a peer message (by the top-level `peer` field) and parses it.
pub fn classify_line(line: &[u8]) -> Line {
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Line::Malformed {
                id: 0,
                message: format!("not JSON: {e}"),
            };
        }
    };
    let id = value
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if value.get("peer").is_some() {
        return match serde_json::from_value::<PeerEnvelope>(value) {
            Ok(env) => Line::Peer(env),
            Err(e) => Line::Malformed {
                id,
                message: format!("bad peer message: {e}"),
            },
        };
    }
    match serde_json::from_value::<Request>(value) {
        Ok(req) => Line::Client(req),
        Err(e) => Line::Malformed {
            id,
            message: format!("bad request: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_peer_lines_are_told_apart() {
        let client = br#"{"id":7,"op":"write","key":1,"value":2}"#;
        assert_eq!(
            classify_line(client),
            Line::Client(Request {
                id: 7,
                body: RequestBody::Write { key: 1, value: 2 }
            })
        );
        let env = PeerEnvelope {
            peer: "n1".into(),
            msg: PeerMessage::PositionRequest { round: 3 },
        };
        let line = serde_json::to_vec(&env).unwrap();
        assert_eq!(classify_line(&line), Line::Peer(env));
    }

    #[test]
    fn malformed_lines_keep_their_id_when_they_have_one() {
        match classify_line(br#"{"id":9,"op":"frobnicate"}"#) {
            Line::Malformed { id, .. } => assert_eq!(id, 9),
            other => panic!("{other:?}"),
        }
        match classify_line(b"garbage") {
            Line::Malformed { id, message } => {
                assert_eq!(id, 0);
                assert!(message.contains("not JSON"));
            }
            other => panic!("{other:?}"),
        }
        match classify_line(br#"{"peer":"n1","msg":{"type":"nope"}}"#) {
            Line::Malformed { message, .. } => assert!(message.contains("peer")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn peer_messages_round_trip() {
        let msgs = vec![
            PeerMessage::Append {
                epoch: 2,
                prev_index: 4,
                prev_epoch: 1,
                entries: vec![Entry {
                    index: 5,
                    epoch: 2,
                    key: -1,
                    value: 9,
                }],
                commit_index: 4,
                leader_last_index: 5,
            },
            PeerMessage::Snapshot {
                epoch: 2,
                index: 5,
                index_epoch: 2,
                map: vec![(1, 2), (3, 4)],
                commit_index: 5,
                epochs: vec![EpochStart {
                    epoch: 1,
                    first_index: 0,
                }],
            },
            PeerMessage::AppendReply {
                epoch: 2,
                outcome: AppendOutcome::Mismatch {
                    last_index: 3,
                    last_epoch: 1,
                    diverged: true,
                },
            },
            PeerMessage::PositionReply {
                round: 1,
                role: Role::Follower,
                epoch: 1,
                leader: None,
                last_epoch: 1,
                last_index: 3,
            },
        ];
        for msg in msgs {
            let env = PeerEnvelope {
                peer: "n2".into(),
                msg,
            };
            let text = serde_json::to_string(&env).unwrap();
            assert!(text.starts_with(r#"{"peer":"n2""#), "{text}");
            assert_eq!(serde_json::from_str::<PeerEnvelope>(&text).unwrap(), env);
        }
    }
}

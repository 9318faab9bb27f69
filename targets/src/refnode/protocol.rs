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
    /// Reads the register at `key` from this node's local state (any role). With `min_index`
    /// the node answers `behind` unless it has applied the log up to that index (the
    /// read-your-writes position a client remembers from its last write).
    ///
    /// With `leader_only` a node that is not the leader answers `not-leader` instead (the
    /// client's `leader` routing), except in chain replication, where the tail reads.
    Read {
        key: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_index: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        leader_only: bool,
    },
    /// Writes `value` to `key`. Only the leader accepts it.
    Write { key: i64, value: i64 },
    /// Sets `key` to `to` if it currently holds `from`. Only the leader accepts it.
    Cas { key: i64, from: i64, to: i64 },
    /// Runs a statement on `key` (see `server::statement`: `set N`, `set now()`,
    /// `set rand()`, `add N`). Only the leader accepts it; with `--log statement` the
    /// statement itself is replicated and every replica evaluates it again.
    Exec { key: i64, stmt: String },
    /// Role, leader, epoch and log positions of this node.
    Status,
    /// Sets this node's clock offset: its wall clock becomes the real clock plus
    /// `offset_ms` (the clock nemesis; statements' `now()` and last-write-wins read it).
    SetClock { offset_ms: i64 },
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
    /// `index` is the write's position in the replication log (0 from nodes that predate
    /// it), which a client remembers for read-your-writes.
    WriteOk {
        #[serde(default)]
        index: u64,
    },
    CasOk {
        #[serde(default)]
        index: u64,
    },
    /// `value` is what the statement gave on the leader.
    ExecOk {
        value: i64,
        #[serde(default)]
        index: u64,
    },
    StatusOk(Status),
    /// The offset now in force and the wall clock it gives.
    SetClockOk {
        offset_ms: i64,
        wall_clock_ms: i64,
    },
}

/// Fields after `commit_index` were added later and are optional on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `sync`, `semi-sync`, `async` or `chain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
    /// Semi-sync leader: the follower whose acknowledgement writes wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_follower: Option<String>,
    /// Chain replication: the chain from head to tail as this node knows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// `naive` or `fenced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    /// `statement` or `logical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// How far this node's wall clock is set from the real one.
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// This node's wall clock (real clock plus offset), in ms since the Unix epoch.
    #[serde(default)]
    pub wall_clock_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Leader,
    #[default]
    Follower,
    /// Fenced failover: asking for votes to lead a new epoch.
    Candidate,
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
    /// For `not-tail`: the node this one believes is the tail of the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, definite: bool, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            definite,
            message: message.into(),
            leader: None,
            tail: None,
        }
    }

    /// The node a client should ask instead, if this error names one.
    pub fn redirect(&self) -> Option<&str> {
        match self.code {
            ErrorCode::NotLeader => self.leader.as_deref(),
            ErrorCode::NotTail => self.tail.as_deref(),
            _ => None,
        }
    }
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
    /// A read's `min_index` is beyond what this node has applied; definite (a client tries
    /// another replica).
    Behind,
    /// Chain replication: reads are served by the tail only, which `tail` names; definite.
    NotTail,
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

/// One entry of the replication log. In a *logical* log an entry holds the value the
/// operation left in the register (a cas is shipped as the value it wrote), so replaying it
/// needs no evaluation and gives the same state on every node. In a *statement* log it also
/// holds the statement, which every replica evaluates itself when it applies the entry; the
/// `value` stored in a node's own log is then what the statement gave on that node.
///
/// Fields after `value` were added later and are optional, so old logs still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1, without gaps.
    pub index: u64,
    /// The epoch of the leader that created the entry.
    pub epoch: u64,
    pub key: i64,
    pub value: i64,
    /// Statement log: the statement to evaluate (see `exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stmt: Option<String>,
    /// A fenced leader's first entry of its epoch: writes nothing, but committing it commits
    /// everything before it (Raft commits earlier epochs' entries only this way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noop: bool,
}

impl Entry {
    /// A logical write of `value` to `key`.
    pub fn write(index: u64, epoch: u64, key: i64, value: i64) -> Entry {
        Entry {
            index,
            epoch,
            key,
            value,
            ..Entry::default()
        }
    }
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
        /// The sender's clock when it sent this (fenced leaders), echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_ms: Option<u64>,
        /// Chain replication: the leader of `epoch` when the sender is not the leader but
        /// its predecessor in the chain, relaying the leader's entries (absent: the sender
        /// is the leader).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
        /// Chain replication: the chain from head (the leader) to tail as the sender knows
        /// it (the leader's own is authoritative; a relay's may lag behind it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        chain: Vec<String>,
    },
    /// Chain replication: the leader to every node that is not its successor: the leader of
    /// `epoch` is alive, this is the chain, this is the commit index. Answered with
    /// `append-reply`, which tells the leader how far the node's log matches its own.
    Heartbeat {
        epoch: u64,
        commit_index: u64,
        chain: Vec<String>,
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
        /// Chain replication: the leader, when a relay sends this (see `append`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
    },
    /// Follower to leader: the answer to `append` or `snapshot`. `epoch` is the follower's
    /// epoch after handling the message.
    AppendReply {
        epoch: u64,
        outcome: AppendOutcome,
        /// The `sent_ms` of the append this answers: tells a fenced leader how recently a
        /// follower confirmed its leadership (its read lease).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        echo_ms: Option<u64>,
    },
    /// A node about to fail over asks each peer where its log ends.
    PositionRequest { round: u64 },
    /// Fenced failover: a candidate for leader of `epoch` asks for a vote, showing where its
    /// log ends (Raft's RequestVote).
    VoteRequest {
        epoch: u64,
        last_epoch: u64,
        last_index: u64,
    },
    /// The answer to `vote-request`; `epoch` is the voter's epoch after handling it.
    VoteReply { epoch: u64, granted: bool },
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
        // Fields added later are optional, so older clients' requests still parse.
        assert_eq!(
            classify_line(br#"{"id":8,"op":"read","key":1}"#),
            Line::Client(Request {
                id: 8,
                body: RequestBody::Read {
                    key: 1,
                    min_index: None,
                    leader_only: false,
                }
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
    fn set_clock_round_trips() {
        let line = br#"{"id":4,"op":"set-clock","offset_ms":-250}"#;
        assert_eq!(
            classify_line(line),
            Line::Client(Request {
                id: 4,
                body: RequestBody::SetClock { offset_ms: -250 }
            })
        );
    }

    #[test]
    fn replies_of_older_nodes_still_parse() {
        let old: Response = serde_json::from_str(r#"{"id":1,"ok":{"reply":"write-ok"}}"#).unwrap();
        assert_eq!(
            old.result,
            ResponseResult::Ok(ReplyBody::WriteOk { index: 0 })
        );
        let new = Response {
            id: 2,
            result: ResponseResult::Ok(ReplyBody::CasOk { index: 9 }),
        };
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), new);
        let err: Response = serde_json::from_str(
            r#"{"id":3,"err":{"code":"not-tail","definite":true,"message":"m","tail":"n3"}}"#,
        )
        .unwrap();
        match err.result {
            ResponseResult::Err(e) => assert_eq!(e.redirect(), Some("n3")),
            other => panic!("{other:?}"),
        }
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
                entries: vec![
                    Entry::write(5, 2, -1, 9),
                    Entry {
                        index: 6,
                        epoch: 2,
                        noop: true,
                        ..Entry::default()
                    },
                    Entry {
                        stmt: Some("add 5".into()),
                        ..Entry::write(7, 2, 1, 6)
                    },
                ],
                commit_index: 4,
                leader_last_index: 5,
                sent_ms: Some(17),
                leader: Some("n1".into()),
                chain: vec!["n1".into(), "n2".into()],
            },
            PeerMessage::Heartbeat {
                epoch: 2,
                commit_index: 4,
                chain: vec!["n1".into()],
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
                leader: None,
            },
            PeerMessage::AppendReply {
                epoch: 2,
                outcome: AppendOutcome::Mismatch {
                    last_index: 3,
                    last_epoch: 1,
                    diverged: true,
                },
                echo_ms: None,
            },
            PeerMessage::VoteRequest {
                epoch: 3,
                last_epoch: 2,
                last_index: 7,
            },
            PeerMessage::VoteReply {
                epoch: 3,
                granted: true,
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

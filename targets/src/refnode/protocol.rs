//! The refnode wire protocol: newline-delimited JSON over TCP, one port per node for clients
//! and peers alike. Every request carries an `id` that the response echoes, so a connection can
//! carry several requests in flight.

use serde::{Deserialize, Serialize};

use super::server::version_vector::VersionVector;
use super::server::versions::Version;

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
    // The requests below are served by multi-leader and leaderless nodes only; a
    // single-leader node answers them `unsupported`. There, `read` answers `versions` and
    // `write` is a `put` with an empty context (concurrent with every version, superseding
    // none, as DDIA's version-number algorithm prescribes for a write without a version).
    /// Writes `value` to `key`, superseding exactly the versions `context` has seen (the
    /// context of an earlier `versions` or `written` answer).
    Put {
        key: i64,
        value: i64,
        #[serde(default)]
        context: VersionVector,
    },
    /// Reads this node's own replica of `key` (never a quorum, never hinted data): what the
    /// harness reads from every node at the end to judge convergence. Answers `versions`, or
    /// `set-value` when the key holds a set; a single-leader node (which serves this one too)
    /// answers `read-ok` with its register, whatever its role.
    LocalRead { key: i64 },
    /// Adds `element` to the set at `key` (an add-wins set with tombstones).
    SetAdd { key: i64, element: i64 },
    /// Removes `element` from the set at `key`: the adds this node has seen are tombstoned,
    /// concurrent ones survive.
    SetRemove { key: i64, element: i64 },
    /// Reads the set at `key` (multi-leader: this node's replica; leaderless: a read quorum).
    SetRead { key: i64 },
    /// Fault injection without privileges: from now on this node drops every message to and
    /// from `peers` (both directions, at this node only; block on both sides for a clean
    /// partition). An empty list heals.
    Block { peers: Vec<String> },
}

impl RequestBody {
    /// The request's `op` name on the wire.
    pub fn op_name(&self) -> &'static str {
        match self {
            RequestBody::Read { .. } => "read",
            RequestBody::Write { .. } => "write",
            RequestBody::Cas { .. } => "cas",
            RequestBody::Exec { .. } => "exec",
            RequestBody::Status => "status",
            RequestBody::SetClock { .. } => "set-clock",
            RequestBody::Put { .. } => "put",
            RequestBody::LocalRead { .. } => "local-read",
            RequestBody::SetAdd { .. } => "set-add",
            RequestBody::SetRemove { .. } => "set-remove",
            RequestBody::SetRead { .. } => "set-read",
            RequestBody::Block { .. } => "block",
        }
    }
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
    /// Multi-leader and leaderless reads: the value of every sibling, in increasing order
    /// without repeats (empty when the key was never written), how many versions they came
    /// from, and the context to pass back with `put` to supersede them all.
    Versions {
        values: Vec<i64>,
        #[serde(default)]
        siblings: usize,
        #[serde(default)]
        context: VersionVector,
    },
    /// Multi-leader and leaderless writes: the write's own clock (what it has seen, itself
    /// included), which a client passes as the context of its next write to the key so that
    /// the new write supersedes this one; `acks` is how many replicas had stored it.
    Written {
        #[serde(default)]
        context: VersionVector,
        #[serde(default)]
        acks: usize,
    },
    /// A set read: the present elements in increasing order, and how many sibling set
    /// states were merged by union to give them.
    SetValue {
        elements: Vec<i64>,
        #[serde(default)]
        siblings: usize,
    },
    /// Boxed: the status is far larger than every other reply.
    ReplicaStatusOk(Box<ReplicaStatus>),
    /// The peers now blocked.
    BlockOk {
        peers: Vec<String>,
    },
}

/// The `status` of a multi-leader or leaderless node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub node: String,
    /// `multi-leader` or `leaderless`.
    pub replication: String,
    /// `none`, `lww`, `highest-id` or `siblings`.
    pub conflict: String,
    /// Multi-leader: `circular`, `star` or `all-to-all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    #[serde(default)]
    pub home_leader_routing: bool,
    /// Leaderless: replicas per key, write and read quorums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<Quorum>,
    /// Keys this node holds (its own replica).
    pub keys: usize,
    /// The most versions any one key holds here.
    pub max_siblings: usize,
    /// Multi-leader: entries in this node's change log.
    #[serde(default)]
    pub log_len: u64,
    /// Multi-leader: for each peer this node sends to, how many of its log entries the
    /// peer has not acknowledged yet (the replication lag, in entries).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub backlog: std::collections::BTreeMap<String, u64>,
    /// Peers this node heard from recently (its failure detector's view).
    #[serde(default)]
    pub alive: Vec<String>,
    /// Peers this node drops messages to and from (`block`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    /// Leaderless: versions held for other nodes (sloppy quorum), not yet handed off.
    #[serde(default)]
    pub hints: usize,
    #[serde(default)]
    pub counters: ReplicaCounters,
    #[serde(default)]
    pub clock_offset_ms: i64,
    #[serde(default)]
    pub wall_clock_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    pub n: usize,
    pub w: usize,
    pub r: usize,
    pub read_repair: bool,
    pub anti_entropy: bool,
    pub sloppy_quorum: bool,
}

/// What a multi-leader or leaderless node has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounters {
    /// Changes received back with this node's id already in their path (loop prevention).
    #[serde(default)]
    pub ignored_loops: u64,
    /// Versions discarded by the conflict rule although no surviving version had seen them:
    /// concurrent (or, under skew, later) writes silently lost.
    #[serde(default)]
    pub discarded_writes: u64,
    /// Leaderless: replicas brought up to date by read repair.
    #[serde(default)]
    pub read_repairs: u64,
    /// Leaderless: hinted versions handed off to their home replica.
    #[serde(default)]
    pub handed_off: u64,
    /// Leaderless: anti-entropy comparisons finished, and keys they repaired here.
    #[serde(default)]
    pub anti_entropy_rounds: u64,
    #[serde(default)]
    pub anti_entropy_keys: u64,
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
    /// The request is not served by this node's replication design (e.g. `cas` on a
    /// leaderless node, `put` on a single-leader one); definite.
    Unsupported,
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
    /// log ends (Raft's RequestVote). With `pre_vote` it only asks whether the peer *would*
    /// vote, and neither side changes its epoch (Raft's PreVote, section 9.6 of Ongaro's
    /// thesis): a node cut off by a partition cannot raise the epoch behind the back of a
    /// working leader and depose it when the partition heals.
    VoteRequest {
        epoch: u64,
        last_epoch: u64,
        last_index: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pre_vote: bool,
    },
    /// The answer to `vote-request`; `epoch` is the voter's epoch after handling it.
    VoteReply {
        epoch: u64,
        granted: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pre_vote: bool,
    },
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

/// What one received line is: a client request, a peer message of the node's protocol family
/// (`P`), or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified<P> {
    Client(Request),
    Peer(P),
    /// Neither: to be answered with a `malformed` error carrying `id` (the line's `id` field
    /// when it has a numeric one, else 0).
    Malformed {
        id: u64,
        message: String,
    },
}

/// A line received by a single-leader node.
pub type Line = Classified<PeerEnvelope>;

/// Tells a client request from a peer message (by the top-level `peer` field) and parses it.
pub fn classify_line(line: &[u8]) -> Line {
    classify(line)
}

/// Client requests and peer messages share a port; the top-level `peer` field alone tells them
/// apart, so a malformed line can never be taken for a message of the other kind.
fn classify<P: serde::de::DeserializeOwned>(line: &[u8]) -> Classified<P> {
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Classified::Malformed {
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
        return match serde_json::from_value::<P>(value) {
            Ok(env) => Classified::Peer(env),
            Err(e) => Classified::Malformed {
                id,
                message: format!("bad peer message: {e}"),
            },
        };
    }
    match serde_json::from_value::<Request>(value) {
        Ok(req) => Classified::Client(req),
        Err(e) => Classified::Malformed {
            id,
            message: format!("bad request: {e}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Peer protocol of multi-leader and leaderless nodes: `{"peer": "<sender>", "replica": {...}}`.
// These nodes never meet single-leader ones (a cluster runs one design), but the field name
// differs from `msg` all the same, so that a line of one family can never parse as the other.
//
// As above, each node sends its own messages on its own connection to each peer, and answers
// (`changes-ack`, `store-ack`, `fetch-reply`, ...) go back on the connection the message came
// from. Every message may be lost; senders resend or time out.
// ---------------------------------------------------------------------------------------------

/// A multi-leader data change: the write, and the nodes it has passed through in order, its
/// origin first (DDIA's loop prevention: a node ignores a change that names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: i64,
    pub version: Version,
    pub path: Vec<String>,
}

/// A change at its position in the sender's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub index: u64,
    pub change: Change,
}

/// One line from one multi-leader or leaderless node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaEnvelope {
    pub peer: String,
    pub replica: ReplicaMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ReplicaMessage {
    /// Multi-leader: the sender's change-log entries in `(after, upto]` that are meant for the
    /// receiver (others in that range are not, by the topology). The receiver takes them only
    /// if it has everything up to `after` from this sender; a batch with no entries is a
    /// heartbeat.
    Changes {
        after: u64,
        upto: u64,
        entries: Vec<ChangeEntry>,
    },
    /// Multi-leader: the receiver has applied (and persisted) the sender's log up to
    /// `received`; the sender resends from there.
    /// `gap` is set when a batch was refused because an earlier one is missing.
    ChangesAck {
        received: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        gap: bool,
    },
    /// Leaderless: the sender is alive (failure detection for sloppy quorums and handoff).
    Ping,
    /// Leaderless: store these versions of `key` (merging them by the conflict rule). With
    /// `hint_for`, the receiver holds them for that node, which is unreachable, and hands
    /// them off when it is back (sloppy quorum). `op` 0 asks for no answer (read repair).
    Store {
        op: u64,
        key: i64,
        versions: Vec<Version>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint_for: Option<String>,
    },
    /// Leaderless: the versions of `store` `op` are persisted.
    StoreAck {
        op: u64,
    },
    /// Leaderless: send your versions of `key` (your replica and any hints for it).
    Fetch {
        op: u64,
        key: i64,
    },
    FetchReply {
        op: u64,
        versions: Vec<Version>,
    },
    /// Leaderless hinted handoff: versions of `key` the sender held for the receiver.
    Handoff {
        key: i64,
        versions: Vec<Version>,
        /// The digest of `versions`, echoed so the sender drops exactly what it handed off.
        digest: u64,
    },
    HandoffAck {
        key: i64,
        digest: u64,
    },
    /// Leaderless anti-entropy: my Merkle hashes of these nodes at `level` (over the keys we
    /// are both home replicas of). The receiver compares and answers with its hashes of the
    /// children of the nodes that differ, or, at the leaves, with `sync-keys`.
    Tree {
        session: u64,
        level: u8,
        nodes: Vec<(u32, u64)>,
    },
    /// Leaderless anti-entropy: my versions of the keys in these leaf ranges. Answered with
    /// the receiver's own (`reply` true), after which both hold the merge.
    SyncKeys {
        session: u64,
        leaves: Vec<u32>,
        keys: Vec<(i64, Vec<Version>)>,
        #[serde(default)]
        reply: bool,
    },
}

/// A line received by a multi-leader or leaderless node.
pub type ReplicaLine = Classified<ReplicaEnvelope>;

/// [`classify_line`] for multi-leader and leaderless nodes: a line with a top-level `peer`
/// field is a peer message, anything else a client request.
pub fn classify_replica_line(line: &[u8]) -> ReplicaLine {
    classify(line)
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
    fn replica_requests_replies_and_messages_round_trip() {
        use crate::refnode::server::version_vector::Dot;
        use crate::refnode::server::versions::{Datum, SetState};
        let mut context = VersionVector::new();
        context.add(&Dot::new("n1.a", 1));
        let line = br#"{"id":5,"op":"put","key":1,"value":2,"context":{"counters":{"n1.a":1}}}"#;
        assert_eq!(
            classify_replica_line(line),
            ReplicaLine::Client(Request {
                id: 5,
                body: RequestBody::Put {
                    key: 1,
                    value: 2,
                    context: context.clone()
                }
            })
        );
        for (text, body) in [
            (
                r#"{"id":1,"op":"set-add","key":3,"element":4}"#,
                RequestBody::SetAdd { key: 3, element: 4 },
            ),
            (
                r#"{"id":1,"op":"local-read","key":3}"#,
                RequestBody::LocalRead { key: 3 },
            ),
            (
                r#"{"id":1,"op":"block","peers":["n2"]}"#,
                RequestBody::Block {
                    peers: vec!["n2".into()],
                },
            ),
        ] {
            let req: Request = serde_json::from_str(text).unwrap();
            assert_eq!(req.body, body);
            assert_eq!(req.body.op_name(), text.split('"').nth(5).unwrap());
        }
        let reply = Response {
            id: 2,
            result: ResponseResult::Ok(ReplyBody::Versions {
                values: vec![1, 2],
                siblings: 2,
                context: context.clone(),
            }),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), reply);
        let version = Version {
            dot: Dot::new("n1.a", 2),
            context,
            datum: Datum::Int(7),
            ts_ms: 1_700_000_000_000,
            origin: "n1".into(),
        };
        let msgs = vec![
            ReplicaMessage::Changes {
                after: 3,
                upto: 5,
                entries: vec![ChangeEntry {
                    index: 5,
                    change: Change {
                        key: 1,
                        version: version.clone(),
                        path: vec!["n1".into(), "n2".into()],
                    },
                }],
            },
            ReplicaMessage::ChangesAck {
                received: 5,
                gap: true,
            },
            ReplicaMessage::Ping,
            ReplicaMessage::Store {
                op: 9,
                key: 1,
                versions: vec![version.clone()],
                hint_for: Some("n3".into()),
            },
            ReplicaMessage::Tree {
                session: 1,
                level: 2,
                nodes: vec![(3, u64::MAX)],
            },
            ReplicaMessage::SyncKeys {
                session: 1,
                leaves: vec![7],
                keys: vec![(1, vec![version.clone()])],
                reply: false,
            },
            // Regression: a set's element -> dots map made every set change malformed.
            ReplicaMessage::Changes {
                after: 0,
                upto: 1,
                entries: vec![ChangeEntry {
                    index: 1,
                    change: Change {
                        key: 4,
                        version: Version {
                            datum: Datum::Set({
                                let mut s = SetState::default();
                                s.add(11, Dot::new("n1.a", 3));
                                s.add(-2, Dot::new("n2.b", 1));
                                s
                            }),
                            ..version
                        },
                        path: vec!["n1".into()],
                    },
                }],
            },
        ];
        for msg in msgs {
            let env = ReplicaEnvelope {
                peer: "n2".into(),
                replica: msg,
            };
            let line = serde_json::to_vec(&env).unwrap();
            assert_eq!(classify_replica_line(&line), ReplicaLine::Peer(env));
        }
        // A single-leader peer line is not a replica message, and the other way round.
        let single = serde_json::to_vec(&PeerEnvelope {
            peer: "n1".into(),
            msg: PeerMessage::PositionRequest { round: 1 },
        })
        .unwrap();
        assert!(matches!(
            classify_replica_line(&single),
            ReplicaLine::Malformed { .. }
        ));
        let replica = br#"{"peer":"n1","replica":{"type":"ping"}}"#;
        assert!(matches!(classify_line(replica), Line::Malformed { .. }));
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
                pre_vote: false,
            },
            PeerMessage::VoteRequest {
                epoch: 4,
                last_epoch: 2,
                last_index: 7,
                pre_vote: true,
            },
            PeerMessage::VoteReply {
                epoch: 3,
                granted: true,
                pre_vote: false,
            },
            PeerMessage::VoteReply {
                epoch: 3,
                granted: false,
                pre_vote: true,
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

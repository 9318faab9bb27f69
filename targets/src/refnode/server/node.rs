//! The replication protocol of one node, as effect-free handlers in the style of stateright:
//! every handler takes one input and the current time and returns the [`Effects`] to carry
//! out (entries and metadata to persist, messages to send, client replies, log lines). The
//! node never touches a socket, a file or a clock, so the same code runs under the real
//! transport (`super::driver`) and under the in-memory simulation in this file's tests.
//!
//! The driver must carry out `persist` before anything else in the same [`Effects`]: replies
//! and acknowledgements promise durability.
//!
//! The design is single-leader replication as *Designing Data-Intensive Applications* (ch. 5)
//! describes it, every variant a configuration:
//!
//! - [`Replication`]: when a write is acknowledged (every follower, one synchronous
//!   follower, at once) or chain replication, where entries travel head to tail through the
//!   nodes (each follower relays to its successor) and only the tail reads.
//! - [`Failover`]: `naive`, where the most up-to-date reachable follower promotes itself with
//!   no majority vote, so split brain and discarded writes are possible on purpose; or
//!   `fenced`, Raft's election and majority commit with a leader that steps down when cut
//!   off, so no acknowledged write is lost.
//! - [`LogKind`]: whether `exec` statements are shipped as statements (every replica
//!   evaluates them again: `now()` and `rand()` diverge) or as their results.
//!
//! Every node also keeps a settable clock offset, and a node started empty with `join`
//! catches up from the leader (snapshot tagged with its log position, then the log) instead
//! of claiming the initial leadership.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::refnode::protocol::{
    AppendOutcome, Entry, EpochStart, ErrorCode, ErrorReply, PeerMessage, ReplyBody, RequestBody,
    ResponseResult, Role, Status,
};

use super::state::{Durable, Meta, Registers, RepLog, Snapshot, epoch_at_in_starts};
use super::statement::Stmt;

pub type NodeId = String;

/// When a leader acknowledges a write, and which way entries travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Replication {
    /// After every other configured node has persisted and applied it.
    Sync,
    /// After one synchronous follower has it (the lowest-id follower, replaced by the next
    /// reachable one when it stays silent for the sync timeout); the others are async.
    SemiSync,
    /// As soon as the leader itself has persisted and applied it.
    Async,
    /// Chain replication: entries enter at the head (the leader) and each node forwards
    /// them to its successor; a write is acknowledged once every node of the chain, so also
    /// the tail, has applied it, and only the tail serves reads. The leader drops a node that
    /// stays silent for the failover timeout from the chain and appends it at the tail again
    /// when it answers.
    Chain,
}

impl Replication {
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Sync => "sync",
            Replication::SemiSync => "semi-sync",
            Replication::Async => "async",
            Replication::Chain => "chain",
        }
    }
}

/// What the replication log carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogKind {
    /// The statement (`exec`): every replica evaluates it when it applies the entry, so
    /// `now()` and `rand()` make the replicas diverge.
    Statement,
    /// The resulting value (row-based): the leader evaluates once, replicas copy.
    Logical,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Statement => "statement",
            LogKind::Logical => "logical",
        }
    }
}

/// How a follower takes over when the leader falls silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failover {
    /// The most up-to-date reachable follower promotes itself, without a majority: a
    /// partition can leave two leaders (split brain) and acknowledged writes get discarded.
    Naive,
    /// Raft-style: a candidate needs a majority of votes for a new epoch, a voter grants
    /// one vote per epoch and only to a log at least as up to date as its own, entries commit
    /// once a majority has them, and a leader that cannot hear a majority for the failover
    /// timeout steps down (fencing), so no acknowledged write is lost.
    Fenced,
}

impl Failover {
    pub fn as_str(self) -> &'static str {
        match self {
            Failover::Naive => "naive",
            Failover::Fenced => "fenced",
        }
    }
}

/// Everything a node's behaviour depends on besides its inputs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The other nodes of the cluster (not this one), in configured order.
    pub peers: Vec<NodeId>,
    /// Every node, this one included, in configured order: the order of the chain (after
    /// its head, the leader) in chain replication.
    pub order: Vec<NodeId>,
    /// Leader of epoch 1 when the data directory is fresh.
    pub initial_leader: NodeId,
    pub replication: Replication,
    pub failover: Failover,
    pub log_kind: LogKind,
    pub heartbeat_ms: u64,
    /// Silence from the leader after which a follower starts failover (plus up to 50%
    /// jitter, so that two followers rarely act at once).
    pub failover_timeout_ms: u64,
    /// How long a sync write waits for every follower before replying `timeout`.
    pub sync_timeout_ms: u64,
    /// How long a failover waits for positions from its peers.
    pub position_timeout_ms: u64,
    /// Most entries sent to a follower beyond what it has acknowledged, so that a paused
    /// follower costs the leader bounded memory and bandwidth.
    pub max_inflight_entries: u64,
    /// Without any reply from a follower for this long, unacknowledged entries are resent
    /// from its match index (they may have been dropped on the way).
    pub resend_after_ms: u64,
    /// How long a snapshot is given to arrive before another one is sent.
    pub snapshot_resend_ms: u64,
    /// Compact the log into a snapshot once it holds more entries than this.
    pub compact_after_entries: usize,
    /// Most entries a sync leader holds uncommitted; further writes get `unavailable`
    /// instead of growing the log without bound while a follower is down.
    pub max_uncommitted_entries: u64,
    /// Seed of the failover jitter (and of `rand()` in statements).
    pub seed: u64,
    /// The real wall clock, in ms since the Unix epoch, when `now_ms` was 0: handlers see
    /// only the monotonic `now_ms`, and the wall clock is derived from it.
    pub wall_base_ms: u64,
    /// The clock offset at start (`--clock-offset-ms`); `set-clock` changes it.
    pub clock_offset_ms: i64,
    /// With a fresh data directory, join a running cluster (`--join`): follow no one and
    /// lead nothing until a leader is heard, instead of the initial-leader rule.
    pub join: bool,
}

impl NodeConfig {
    /// Defaults for the tuning knobs that have no flag.
    pub const POSITION_TIMEOUT_MS: u64 = 200;
    pub const MAX_INFLIGHT_ENTRIES: u64 = 256;
    pub const COMPACT_AFTER_ENTRIES: usize = 10_000;
    pub const MAX_UNCOMMITTED_ENTRIES: u64 = 100_000;
}

/// A client operation handed to the node; `token` names it in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    pub token: u64,
    pub body: RequestBody,
}

/// A durable change, carried out (and fsynced) before any message or reply of the same
/// [`Effects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Append these entries to the log (one fsync for all of them: group commit).
    Append(Vec<Entry>),
    Meta(Meta),
    /// Make `snapshot` the base of the log and `keep` the only entries after it.
    Replace {
        snapshot: Snapshot,
        keep: Vec<Entry>,
    },
    /// Make `keep` the whole log after the current snapshot at (`base_index`, `base_epoch`):
    /// a fenced follower dropping a suffix that conflicts with the leader's log.
    Truncate {
        base_index: u64,
        base_epoch: u64,
        keep: Vec<Entry>,
    },
}

/// What a handler asks the outside world to do, in this order: log, persist, send, reply.
#[derive(Debug, Default)]
pub struct Effects {
    pub log: Vec<String>,
    pub persist: Vec<Persist>,
    /// The answer to the peer message being handled, on the connection it came from.
    pub respond: Option<PeerMessage>,
    /// Messages to peers, on this node's own connection to each.
    pub send: Vec<(NodeId, PeerMessage)>,
    /// Replies to client requests, by token. Every token handed to the node is answered
    /// exactly once.
    pub replies: Vec<(u64, ResponseResult)>,
}

/// The order of node ids used for every tie-break: shorter first, then lexicographic, so that
/// `n2` comes before `n10`.
pub fn id_cmp(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The leader's view of one follower.
#[derive(Debug, Clone)]
struct Progress {
    /// The next entry to send.
    next_index: u64,
    /// The highest index known to match the leader's log.
    match_index: u64,
    last_reply_ms: u64,
    /// When anything was last heard from the follower (or leadership began): its liveness,
    /// for choosing the semi-sync follower and the chain, and for fencing.
    heard_ms: u64,
    /// Fenced: the latest send time of an append this follower answered in this epoch,
    /// which bounds how early it could vote for another leader (the read lease).
    acked_sent_ms: u64,
    /// When a snapshot was last sent, and at which index.
    snapshot_sent: Option<(u64, u64)>,
    /// This leader's log may hold entries that collide with the follower's (it once
    /// distrusted its own log), so only a snapshot may bring the follower in line.
    snapshot_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Write,
    Cas,
    /// An `exec` whose statement gave `value` on this leader.
    Exec {
        value: i64,
    },
}

#[derive(Debug, Clone)]
struct PendingWrite {
    index: u64,
    token: u64,
    kind: WriteKind,
    deadline_ms: u64,
}

#[derive(Debug, Clone)]
struct Position {
    role: Role,
    epoch: u64,
    last_epoch: u64,
    last_index: u64,
}

#[derive(Debug, Clone)]
struct Election {
    round: u64,
    deadline_ms: u64,
    replies: BTreeMap<NodeId, Position>,
}

/// Unknown senders are logged once each, up to this many, so a misconfigured cluster is
/// visible without flooding the log.
const MAX_UNKNOWN_PEERS_LOGGED: usize = 16;

/// A clock offset beyond ten years is a mistake, not a skew.
pub const MAX_CLOCK_OFFSET_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// Examples of discarded entries named in the log line.
const DISCARDED_EXAMPLES: usize = 5;

#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    role: Role,
    epoch: u64,
    /// Whom this node follows (or is) in `epoch`; persisted.
    epoch_leader: Option<NodeId>,
    /// Whom this node currently follows: `None` after a restart until the leader is heard.
    leader: Option<NodeId>,
    suspect_from: Option<u64>,
    /// The last metadata handed out for persisting.
    persisted_meta: Option<Meta>,
    log: RepLog,
    regs: Registers,
    commit_index: u64,
    // Leader only.
    progress: BTreeMap<NodeId, Progress>,
    /// Writes waiting for commit, in index order (so also in deadline order).
    pending: VecDeque<PendingWrite>,
    next_heartbeat_ms: u64,
    /// Semi-sync: the follower whose acknowledgement a write waits for.
    sync_follower: Option<NodeId>,
    /// Chain replication: the chain from head to tail, as this node (the leader) decided it
    /// or (a follower) last heard it from the leader; empty when unknown.
    chain: Vec<NodeId>,
    /// When this node last heard from the leader directly (chain tail's read lease).
    leader_heard_ms: Option<u64>,
    /// The highest commit index the leader (or a relay) announced, beyond what this node
    /// may hold: a new tail serves reads only once it holds everything committed.
    known_commit: u64,
    /// How far this follower's log is known to equal the current leader's (what it may relay
    /// to its successor in a chain, and report).
    leader_match: u64,
    /// Fenced: whom this node voted for in `epoch` (persisted), and the votes it collected
    /// as a candidate.
    voted_for: Option<NodeId>,
    votes: BTreeSet<NodeId>,
    /// Fenced failover: the peers that said they would vote for this node in the next
    /// epoch, while it asks (`None` otherwise).
    pre_votes: Option<BTreeSet<NodeId>>,
    /// When this node last accepted a message from a leader (or started): a fenced node
    /// grants no vote within the failover timeout of it.
    leader_contact_ms: u64,
    // Follower only.
    failover_deadline_ms: u64,
    election: Option<Election>,
    election_round: u64,
    rng: u64,
    unknown_peers_logged: BTreeSet<NodeId>,
    /// This node's wall clock is the real one plus this.
    clock_offset_ms: i64,
    /// Started empty with `join` and has not heard a leader yet: it neither fails over nor
    /// votes, having nothing to offer and (if it was wiped) no memory of past votes.
    joining: bool,
}

impl Node {
    /// Builds the node from what its data directory held. A fresh directory makes the
    /// initial leader lead epoch 1 and everyone else follow it; a recovered node starts as a
    /// follower with no leader, even if it led before, and learns the leader from heartbeats
    /// (or fails over when none come).
    pub fn new(cfg: NodeConfig, durable: Durable, now_ms: u64) -> (Node, Effects) {
        let mut fx = Effects::default();
        let fresh = durable.is_fresh();
        let log = RepLog::new(
            durable.snapshot.index,
            durable.snapshot.epoch,
            durable.entries,
        );
        let mut regs = Registers::from_map(&durable.snapshot.map);
        for e in log.entries() {
            regs.apply_entry(e);
        }
        let commit_index = log.base_index();
        let seed = cfg.seed;
        let clock_offset_ms = cfg.clock_offset_ms;
        let mut node = Node {
            cfg,
            role: Role::Follower,
            epoch: 1,
            epoch_leader: None,
            leader: None,
            suspect_from: None,
            persisted_meta: durable.meta.clone(),
            log,
            regs,
            commit_index,
            progress: BTreeMap::new(),
            pending: VecDeque::new(),
            next_heartbeat_ms: now_ms,
            sync_follower: None,
            chain: Vec::new(),
            leader_heard_ms: None,
            known_commit: commit_index,
            leader_match: 0,
            voted_for: None,
            votes: BTreeSet::new(),
            pre_votes: None,
            leader_contact_ms: now_ms,
            failover_deadline_ms: now_ms,
            election: None,
            election_round: 0,
            rng: seed,
            unknown_peers_logged: BTreeSet::new(),
            clock_offset_ms,
            joining: false,
        };
        if fresh && node.cfg.join {
            // Epoch 0, so that any leader's messages are accepted.
            node.epoch = 0;
            node.joining = true;
            fx.log.push(
                "fresh data directory: joining the running cluster; waiting to hear from its leader"
                    .into(),
            );
        } else if fresh {
            let initial = node.cfg.initial_leader.clone();
            node.epoch_leader = Some(initial.clone());
            node.leader = Some(initial.clone());
            if node.cfg.failover == Failover::Fenced {
                // As if everyone had voted for the initial leader in epoch 1.
                node.voted_for = Some(initial.clone());
            }
            if initial == node.cfg.id {
                node.role = Role::Leader;
                node.start_leading(now_ms, false);
                if node.cfg.failover == Failover::Fenced {
                    node.append_noop(&mut fx);
                }
                fx.log
                    .push("fresh data directory: leading epoch 1 as the initial leader".into());
            } else {
                fx.log.push(format!(
                    "fresh data directory: following the initial leader {initial} at epoch 1"
                ));
            }
        } else {
            let meta = durable.meta.unwrap_or(Meta {
                epoch: 1,
                epoch_leader: None,
                suspect_from: None,
                voted_for: None,
            });
            // Entries of an epoch prove the node took part in it even if the metadata
            // write did not survive a crash.
            node.epoch = meta.epoch.max(node.log.last_epoch()).max(1);
            node.epoch_leader = meta.epoch_leader;
            node.suspect_from = meta.suspect_from;
            // The vote belongs to the metadata's epoch only.
            node.voted_for = meta.voted_for.filter(|_| meta.epoch == node.epoch);
            fx.log.push(format!(
                "starting as a follower with no leader at epoch {} (last index {}, last epoch {}; the epoch's leader was {}{})",
                node.epoch,
                node.log.last_index(),
                node.log.last_epoch(),
                node.epoch_leader.as_deref().unwrap_or("unknown"),
                match node.suspect_from {
                    Some(s) => format!("; entries from index {s} on are distrusted"),
                    None => String::new(),
                }
            ));
        }
        node.arm_failover(now_ms);
        node.finish(&mut fx);
        (node, fx)
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn status(&self) -> Status {
        Status {
            node: self.cfg.id.clone(),
            role: self.role,
            leader: self.status_leader(),
            epoch: self.epoch,
            last_index: self.log.last_index(),
            commit_index: self.commit_index,
            replication: Some(self.cfg.replication.as_str().to_string()),
            sync_follower: self
                .sync_follower
                .clone()
                .filter(|_| self.role == Role::Leader),
            chain: self.chain.clone(),
            failover: Some(self.cfg.failover.as_str().to_string()),
            log: Some(self.cfg.log_kind.as_str().to_string()),
            clock_offset_ms: self.clock_offset_ms,
            wall_clock_ms: 0,
        }
    }

    /// Handles a batch of client requests: reads and status at once, writes appended
    /// together so that they share one fsync (group commit).
    pub fn on_client(&mut self, batch: Vec<ClientRequest>, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let mut appended = Vec::new();
        for req in batch {
            let result = match req.body {
                RequestBody::Read {
                    key,
                    min_index,
                    leader_only,
                } => self.read(key, min_index, leader_only, now_ms),
                // The harness's final read of this replica, whatever its role: no routing, no
                // lease, no chain position, just what it holds.
                RequestBody::LocalRead { key } => Ok(ReplyBody::ReadOk {
                    value: if self.reads_committed() {
                        self.regs.committed(key)
                    } else {
                        self.regs.head(key)
                    },
                }),
                RequestBody::Status => {
                    let mut status = self.status();
                    status.wall_clock_ms = self.wall_clock_ms(now_ms);
                    Ok(ReplyBody::StatusOk(status))
                }
                RequestBody::SetClock { offset_ms } => self.set_clock(offset_ms, now_ms, &mut fx),
                RequestBody::Exec { key, stmt } => {
                    match Stmt::parse(&stmt)
                        .map_err(|e| ErrorReply::new(ErrorCode::Malformed, true, e))
                    {
                        Ok(parsed) => match self.admit_write() {
                            Ok(()) => {
                                // Against the head, as cas: `add` must see every write
                                // ordered before it.
                                let value = self.evaluate(parsed, key, now_ms);
                                let entry = Entry {
                                    stmt: (self.cfg.log_kind == LogKind::Statement)
                                        .then(|| parsed.to_string()),
                                    ..Entry::write(0, 0, key, value)
                                };
                                self.append_write(
                                    entry,
                                    req.token,
                                    WriteKind::Exec { value },
                                    now_ms,
                                );
                                appended.push(req.token);
                                continue;
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
                RequestBody::Write { key, value } => match self.admit_write() {
                    Ok(()) => {
                        let entry = Entry::write(0, 0, key, value);
                        self.append_write(entry, req.token, WriteKind::Write, now_ms);
                        appended.push(req.token);
                        continue;
                    }
                    Err(e) => Err(e),
                },
                RequestBody::Cas { key, from, to } => match self.admit_write() {
                    // Against the head, not the committed state: entries apply in log order,
                    // so a cas must see every write ordered before it.
                    Ok(()) if self.regs.head(key) != Some(from) => Err(ErrorReply::new(
                        ErrorCode::CasMismatch,
                        true,
                        format!(
                            "key {key} holds {}, not {from}",
                            self.regs
                                .head(key)
                                .map_or("nothing".to_string(), |v| v.to_string())
                        ),
                    )),
                    Ok(()) => {
                        let entry = Entry::write(0, 0, key, to);
                        self.append_write(entry, req.token, WriteKind::Cas, now_ms);
                        appended.push(req.token);
                        continue;
                    }
                    Err(e) => Err(e),
                },
                other => Err(ErrorReply::new(
                    ErrorCode::Unsupported,
                    true,
                    format!(
                        "{} is served by multi-leader and leaderless nodes only",
                        other.op_name()
                    ),
                )),
            };
            fx.replies.push((req.token, into_result(result)));
        }
        if !appended.is_empty() {
            let count = appended.len();
            let last = self.log.last_index();
            let first = last + 1 - count as u64;
            fx.persist
                .push(Persist::Append(self.log.slice(first, last).to_vec()));
            self.update_commit(&mut fx);
            for peer in self.cfg.peers.clone() {
                self.replicate_to(&peer, now_ms, &mut fx);
            }
            self.maybe_compact(&mut fx);
        }
        self.finish(&mut fx);
        fx
    }

    /// Handles one message from peer `from`.
    pub fn on_peer(&mut self, from: &str, msg: PeerMessage, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        if !self.cfg.peers.iter().any(|p| p == from) {
            if self.unknown_peers_logged.len() < MAX_UNKNOWN_PEERS_LOGGED
                && self.unknown_peers_logged.insert(from.to_string())
            {
                fx.log.push(format!(
                    "ignoring messages from {from:?}, which is not in --peers"
                ));
            }
            return fx;
        }
        match msg {
            PeerMessage::Append {
                epoch,
                prev_index,
                prev_epoch,
                entries,
                commit_index,
                leader_last_index,
                sent_ms,
                leader,
                chain,
            } => {
                // A relayed append speaks for the leader it names.
                let leader = leader.unwrap_or_else(|| from.to_string());
                let accepted = self.observe_leader(&leader, epoch, now_ms, &mut fx);
                let outcome = if accepted {
                    if leader == from {
                        self.heard_leader(chain, commit_index, now_ms);
                    } else if self.chain.is_empty() {
                        // A relay's view of the chain may be a little behind the
                        // leader's, but it beats none (a node that just started).
                        self.chain = chain;
                    }
                    let before = self.leader_match;
                    let outcome = self.accept_entries(
                        from,
                        AppendArgs {
                            now_ms,
                            epoch,
                            prev_index,
                            prev_epoch,
                            entries,
                            commit_index,
                            leader_last_index,
                        },
                        &mut fx,
                    );
                    self.after_accept(&leader, from, before, now_ms, &mut fx);
                    outcome
                } else {
                    self.rejection()
                };
                fx.respond = Some(PeerMessage::AppendReply {
                    epoch: self.epoch,
                    outcome,
                    echo_ms: sent_ms.filter(|_| accepted),
                });
            }
            PeerMessage::Heartbeat {
                epoch,
                commit_index,
                chain,
            } => {
                let outcome = if self.observe_leader(from, epoch, now_ms, &mut fx) {
                    self.heard_leader(chain, commit_index, now_ms);
                    let commit = commit_index.min(self.leader_match);
                    if commit > self.commit_index {
                        self.advance_commit(commit, &mut fx);
                    }
                    self.relay(now_ms, &mut fx);
                    AppendOutcome::Ok {
                        match_index: self.leader_match,
                    }
                } else {
                    self.rejection()
                };
                fx.respond = Some(PeerMessage::AppendReply {
                    epoch: self.epoch,
                    outcome,
                    echo_ms: None,
                });
            }
            PeerMessage::Snapshot {
                epoch,
                index,
                index_epoch,
                map,
                commit_index,
                epochs,
                leader,
            } => {
                let leader = leader.unwrap_or_else(|| from.to_string());
                let outcome = if self.observe_leader(&leader, epoch, now_ms, &mut fx) {
                    let before = self.leader_match;
                    let outcome = self.install_snapshot(
                        from,
                        epoch,
                        Snapshot {
                            index,
                            epoch: index_epoch,
                            map,
                        },
                        commit_index,
                        &epochs,
                        &mut fx,
                    );
                    self.after_accept(&leader, from, before, now_ms, &mut fx);
                    outcome
                } else {
                    Some(self.rejection())
                };
                fx.respond = outcome.map(|outcome| PeerMessage::AppendReply {
                    epoch: self.epoch,
                    outcome,
                    echo_ms: None,
                });
            }
            PeerMessage::AppendReply {
                epoch,
                outcome,
                echo_ms,
            } => {
                self.on_append_reply(from, epoch, outcome, echo_ms, now_ms, &mut fx);
            }
            PeerMessage::VoteRequest {
                epoch,
                last_epoch,
                last_index,
                pre_vote,
            } => {
                let candidate_last = (last_epoch, last_index);
                let granted = if pre_vote {
                    self.would_vote(from, epoch, candidate_last, now_ms, &mut fx)
                } else {
                    self.on_vote_request(from, epoch, candidate_last, now_ms, &mut fx)
                };
                fx.respond = Some(PeerMessage::VoteReply {
                    epoch: self.epoch,
                    granted,
                    pre_vote,
                });
            }
            PeerMessage::VoteReply {
                epoch,
                granted,
                pre_vote: true,
            } => {
                self.on_pre_vote_reply(from, epoch, granted, now_ms, &mut fx);
            }
            PeerMessage::VoteReply {
                epoch,
                granted,
                pre_vote: false,
            } => {
                self.on_vote_reply(from, epoch, granted, now_ms, &mut fx);
            }
            PeerMessage::PositionRequest { round } => {
                fx.respond = Some(PeerMessage::PositionReply {
                    round,
                    role: self.role,
                    epoch: self.epoch,
                    leader: self.status_leader(),
                    last_epoch: self.log.last_epoch(),
                    last_index: self.log.last_index(),
                });
            }
            PeerMessage::PositionReply {
                round,
                role,
                epoch,
                leader: _,
                last_epoch,
                last_index,
            } => {
                if let Some(el) = self.election.as_mut().filter(|el| el.round == round) {
                    el.replies.insert(
                        from.to_string(),
                        Position {
                            role,
                            epoch,
                            last_epoch,
                            last_index,
                        },
                    );
                    if el.replies.len() == self.cfg.peers.len() {
                        self.decide(now_ms, &mut fx);
                    }
                }
            }
        }
        self.finish(&mut fx);
        fx
    }

    /// The connection to `peer` was (re)established: whatever was in flight on the old one is
    /// lost, so a leader resends from what the follower acknowledged.
    pub fn on_peer_connected(&mut self, peer: &str, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        if self.role == Role::Leader || self.successor().as_deref() == Some(peer) {
            let last = self.log.last_index();
            if let Some(p) = self.progress.get_mut(peer) {
                p.next_index = resend_point(p.match_index, last);
                p.snapshot_sent = None;
                p.last_reply_ms = now_ms;
                self.replicate_to(peer, now_ms, &mut fx);
            }
        }
        self.finish(&mut fx);
        fx
    }

    /// Time passes: heartbeats and resends (leader, chain relays), the choice of the
    /// semi-sync follower and of the chain (leader), sync-write timeouts (leader), failover
    /// (follower).
    pub fn on_tick(&mut self, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        match self.role {
            Role::Leader => {
                self.expire_pending(now_ms, &mut fx);
                if self.cfg.failover == Failover::Fenced && !self.hears_majority(now_ms) {
                    self.step_down_fenced(now_ms, &mut fx);
                } else if now_ms >= self.next_heartbeat_ms {
                    self.next_heartbeat_ms = now_ms + self.cfg.heartbeat_ms;
                    self.choose_sync_follower(now_ms, &mut fx);
                    self.reconfigure_chain(now_ms, &mut fx);
                    self.update_commit(&mut fx);
                    let successor = self.successor();
                    for peer in self.cfg.peers.clone() {
                        if self.cfg.replication == Replication::Chain
                            && successor.as_ref() != Some(&peer)
                        {
                            fx.send.push((
                                peer,
                                PeerMessage::Heartbeat {
                                    epoch: self.epoch,
                                    commit_index: self.commit_index,
                                    chain: self.chain.clone(),
                                },
                            ));
                            continue;
                        }
                        self.resend_if_silent(&peer, now_ms);
                        self.replicate_to(&peer, now_ms, &mut fx);
                    }
                }
            }
            Role::Candidate => {
                if now_ms >= self.failover_deadline_ms {
                    self.stand_for_election(now_ms, &mut fx);
                }
            }
            Role::Follower => {
                // A chain relay probes its successor and resends what it did not
                // acknowledge, as a leader does with its followers.
                if let Some(next) = self
                    .successor()
                    .filter(|_| now_ms >= self.next_heartbeat_ms)
                {
                    self.next_heartbeat_ms = now_ms + self.cfg.heartbeat_ms;
                    if self.progress.contains_key(&next) {
                        self.resend_if_silent(&next, now_ms);
                        self.replicate_to(&next, now_ms, &mut fx);
                    } else {
                        self.relay(now_ms, &mut fx);
                    }
                }
                self.follower_tick(now_ms, &mut fx);
            }
        }
        self.finish(&mut fx);
        fx
    }

    fn follower_tick(&mut self, now_ms: u64, fx: &mut Effects) {
        if self.joining {
            return;
        }
        if self.cfg.failover == Failover::Fenced {
            if now_ms >= self.failover_deadline_ms {
                self.ask_pre_votes(now_ms, fx);
            }
            return;
        }
        match &self.election {
            Some(el) if now_ms >= el.deadline_ms => self.decide(now_ms, fx),
            Some(_) => {}
            None if now_ms >= self.failover_deadline_ms => self.start_election(now_ms, fx),
            None => {}
        }
    }

    /// Rewinds `peer`'s next index to what it acknowledged when it has been silent for
    /// the resend interval with entries unacknowledged: they may have been dropped.
    fn resend_if_silent(&mut self, peer: &str, now_ms: u64) {
        let last = self.log.last_index();
        if let Some(p) = self.progress.get_mut(peer) {
            let unacknowledged = p.next_index > p.match_index + 1;
            if unacknowledged && now_ms >= p.last_reply_ms + self.cfg.resend_after_ms {
                p.next_index = resend_point(p.match_index, last);
                // Once per silent window, not on every heartbeat.
                p.last_reply_ms = now_ms;
            }
        }
    }

    // ---- client writes ----------------------------------------------------------------

    /// A read of `key` from this node's state. The leader shows only acknowledged
    /// (committed) writes; a follower shows whatever it has applied, stale or not.
    fn read(
        &self,
        key: i64,
        min_index: Option<u64>,
        leader_only: bool,
        now_ms: u64,
    ) -> Result<ReplyBody, ErrorReply> {
        if self.cfg.replication == Replication::Chain {
            self.may_serve_chain_read(now_ms)?;
        } else if leader_only && self.role != Role::Leader {
            return Err(self.not_leader());
        }
        let applied = self.applied_index();
        if let Some(min) = min_index.filter(|m| *m > applied) {
            return Err(ErrorReply::new(
                ErrorCode::Behind,
                true,
                format!(
                    "{} has applied the log up to index {applied}, not yet {min}",
                    self.cfg.id
                ),
            ));
        }
        if self.cfg.failover == Failover::Fenced && self.role == Role::Leader {
            self.may_serve_fenced_leader_read(now_ms)?;
        }
        let value = if self.reads_committed() {
            self.regs.committed(key)
        } else {
            self.regs.head(key)
        };
        Ok(ReplyBody::ReadOk { value })
    }

    /// What `stmt` gives on `key` here and now: this node's head value, wall clock and
    /// random generator.
    fn evaluate(&mut self, stmt: Stmt, key: i64, now_ms: u64) -> i64 {
        let random = if stmt == Stmt::SetRand {
            self.next_random()
        } else {
            0
        };
        stmt.eval(self.regs.head(key), self.wall_clock_ms(now_ms), random)
    }

    /// Appends entries received from the leader (or a relay) and applies them. A statement
    /// entry is evaluated again here, and this node's log keeps its own result: with
    /// `now()` or `rand()` that differs from the leader's, which is the point.
    fn append_received(&mut self, from: &str, entries: &[Entry], now_ms: u64, fx: &mut Effects) {
        if entries.is_empty() {
            return;
        }
        let mut appended = Vec::with_capacity(entries.len());
        for e in entries {
            let mut e = e.clone();
            if let Some(text) = e.stmt.as_deref() {
                match Stmt::parse(text) {
                    Ok(stmt) => e.value = self.evaluate(stmt, e.key, now_ms),
                    // Cannot happen between refnodes of one version: keep the sender's
                    // value rather than stall replication.
                    Err(why) => fx.log.push(format!(
                        "entry {} from {from}: {why}; applying the sender's value",
                        e.index
                    )),
                }
            }
            self.log.push(e.clone());
            self.regs.apply_entry(&e);
            appended.push(e);
        }
        fx.persist.push(Persist::Append(appended));
    }

    /// This node's wall clock: the real one plus the offset.
    pub fn wall_clock_ms(&self, now_ms: u64) -> i64 {
        i64::try_from(self.cfg.wall_base_ms.saturating_add(now_ms))
            .unwrap_or(i64::MAX)
            .saturating_add(self.clock_offset_ms)
    }

    fn set_clock(
        &mut self,
        offset_ms: i64,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<ReplyBody, ErrorReply> {
        if offset_ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS {
            return Err(ErrorReply::new(
                ErrorCode::Malformed,
                true,
                format!("clock offset {offset_ms} ms is beyond +-{MAX_CLOCK_OFFSET_MS} ms"),
            ));
        }
        if offset_ms != self.clock_offset_ms {
            fx.log.push(format!(
                "clock: offset set to {offset_ms} ms (was {} ms)",
                self.clock_offset_ms
            ));
        }
        self.clock_offset_ms = offset_ms;
        Ok(ReplyBody::SetClockOk {
            offset_ms,
            wall_clock_ms: self.wall_clock_ms(now_ms),
        })
    }

    /// Chain replication reads at the tail only, and only while the tail is sure to hold
    /// every acknowledged write: it is still in the leader's chain (it heard the leader
    /// within half the failover timeout, and the leader drops a node only after a whole
    /// failover timeout of silence) and it holds everything the leader announced committed
    /// (a node just appended at the tail may still be catching up).
    fn may_serve_chain_read(&self, now_ms: u64) -> Result<(), ErrorReply> {
        let tail = self.chain.last();
        if tail != Some(&self.cfg.id) {
            let mut e = ErrorReply::new(
                ErrorCode::NotTail,
                true,
                match tail {
                    Some(t) => format!("{} is not the tail of the chain; {t} is", self.cfg.id),
                    None => format!("{} knows no chain yet", self.cfg.id),
                },
            );
            e.tail = tail.cloned();
            return Err(e);
        }
        if self.role == Role::Leader {
            return Ok(());
        }
        let lease_ms = self.cfg.failover_timeout_ms / 2;
        if self.leader_heard_ms.is_none_or(|t| now_ms >= t + lease_ms) {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                true,
                format!(
                    "{} is the tail but has not heard from the leader for {lease_ms} ms, so it may have been dropped from the chain",
                    self.cfg.id
                ),
            ));
        }
        if self.log.last_index() < self.known_commit {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                true,
                format!(
                    "{} joined the chain as its tail and is catching up (index {} of {} committed)",
                    self.cfg.id,
                    self.log.last_index(),
                    self.known_commit
                ),
            ));
        }
        Ok(())
    }

    /// Whether reads here show the committed state rather than everything applied: a
    /// leader shows only what it acknowledged; a fenced follower only what is committed
    /// (its uncommitted suffix may still be replaced); a chain tail what it applied, which
    /// the leader acknowledges once the tail has it.
    fn reads_committed(&self) -> bool {
        self.role == Role::Leader
            || (self.cfg.failover == Failover::Fenced && self.cfg.replication != Replication::Chain)
    }

    /// The last log index whose effect a read at this node shows.
    fn applied_index(&self) -> u64 {
        if self.reads_committed() {
            self.commit_index
        } else {
            self.log.last_index()
        }
    }

    /// A fenced leader reads only while it is sure no other leader can have been elected:
    /// it has committed an entry of its own epoch (so it holds every committed write), and a
    /// majority answered an append it sent within the lease (3/4 of the failover timeout;
    /// each of them refuses votes for a whole failover timeout after hearing from it).
    fn may_serve_fenced_leader_read(&self, now_ms: u64) -> Result<(), ErrorReply> {
        if self.log.epoch_at(self.commit_index) != Some(self.epoch) {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                true,
                format!(
                    "{} leads epoch {} but has not committed an entry of it yet",
                    self.cfg.id, self.epoch
                ),
            ));
        }
        if !self.lease_holds(now_ms) {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                true,
                format!(
                    "{} cannot confirm that it still leads: no majority answered within the lease",
                    self.cfg.id
                ),
            ));
        }
        Ok(())
    }

    fn lease_holds(&self, now_ms: u64) -> bool {
        let mut acked: Vec<u64> = self
            .cfg
            .peers
            .iter()
            .map(|p| self.progress.get(p).map_or(0, |p| p.acked_sent_ms))
            .collect();
        acked.push(now_ms);
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed_ms = acked[self.majority() - 1];
        now_ms < confirmed_ms + self.cfg.failover_timeout_ms * 3 / 4
    }

    /// How many nodes make a majority of the whole cluster.
    fn majority(&self) -> usize {
        let nodes = self.cfg.peers.len() + 1;
        nodes / 2 + 1
    }

    fn not_leader(&self) -> ErrorReply {
        let mut e = ErrorReply::new(
            ErrorCode::NotLeader,
            true,
            match &self.leader {
                Some(l) => format!("{} is not the leader; {l} is", self.cfg.id),
                None => format!("{} is not the leader and knows no leader", self.cfg.id),
            },
        );
        e.leader = self.leader.clone();
        e
    }

    fn admit_write(&self) -> Result<(), ErrorReply> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        let uncommitted = self.log.last_index() - self.commit_index;
        if uncommitted >= self.cfg.max_uncommitted_entries {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                true,
                format!("{uncommitted} entries await replication to every follower; refusing more"),
            ));
        }
        Ok(())
    }

    /// Appends `entry` (its position and epoch filled in here) as a client's write.
    fn append_write(&mut self, entry: Entry, token: u64, kind: WriteKind, now_ms: u64) {
        let index = self.log.last_index() + 1;
        self.log.push(Entry {
            index,
            epoch: self.epoch,
            ..entry
        });
        if let Some(e) = self.log.get(index) {
            self.regs.apply_entry(e);
        }
        self.pending.push_back(PendingWrite {
            index,
            token,
            kind,
            deadline_ms: now_ms + self.cfg.sync_timeout_ms,
        });
    }

    /// Commits entries up to `new_commit`, applying them to the committed state and
    /// acknowledging the writes they carry.
    fn advance_commit(&mut self, new_commit: u64, fx: &mut Effects) {
        let new_commit = new_commit.min(self.log.last_index());
        while self.commit_index < new_commit {
            let index = self.commit_index + 1;
            let entry = self
                .log
                .get(index)
                .expect("entries after the commit index are never compacted");
            self.regs.commit_entry(entry);
            self.commit_index = index;
        }
        let limit = self.ack_limit();
        while let Some(w) = self.pending.front() {
            if w.index > limit {
                break;
            }
            let index = w.index;
            let reply = match w.kind {
                WriteKind::Write => ReplyBody::WriteOk { index },
                WriteKind::Cas => ReplyBody::CasOk { index },
                WriteKind::Exec { value } => ReplyBody::ExecOk { value, index },
            };
            fx.replies.push((w.token, ResponseResult::Ok(reply)));
            self.pending.pop_front();
        }
    }

    /// The highest index the replication mode lets the leader acknowledge: what the
    /// followers it waits for all have.
    fn mode_index(&self) -> u64 {
        let last = self.log.last_index();
        let matched = |p: &NodeId| self.progress.get(p).map_or(0, |p| p.match_index);
        if self.cfg.peers.is_empty() {
            return last;
        }
        match self.cfg.replication {
            Replication::Async => last,
            Replication::Sync => self.cfg.peers.iter().map(matched).min().unwrap_or(last),
            Replication::SemiSync => self.sync_follower.as_ref().map_or(0, matched),
            Replication::Chain => self
                .chain
                .iter()
                .filter(|p| **p != self.cfg.id)
                .map(matched)
                .min()
                .unwrap_or(last),
        }
    }

    /// Leader: commits what the failover strategy allows (naive: what the replication mode
    /// waits for; fenced: what a majority has) and acknowledges what the mode allows.
    fn update_commit(&mut self, fx: &mut Effects) {
        if self.role == Role::Leader {
            let index = match self.cfg.failover {
                Failover::Naive => self.mode_index(),
                Failover::Fenced => self.majority_index(),
            };
            self.advance_commit(index, fx);
        }
    }

    /// Fenced: the highest index a majority (this node included) holds, if it is of this
    /// leader's epoch; entries of earlier epochs commit only beneath one of its own (Raft
    /// §5.4.2), else a majority could still hold them and lose them to a newer leader.
    fn majority_index(&self) -> u64 {
        let mut matched: Vec<u64> = self
            .cfg
            .peers
            .iter()
            .map(|p| self.progress.get(p).map_or(0, |p| p.match_index))
            .collect();
        matched.push(self.log.last_index());
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let index = matched[self.majority() - 1];
        if index > self.commit_index && self.log.epoch_at(index) == Some(self.epoch) {
            index
        } else {
            self.commit_index
        }
    }

    /// The highest index whose write may be acknowledged: the commit index, and in fenced
    /// mode also no further than the replication mode waits for (sync: every follower).
    fn ack_limit(&self) -> u64 {
        if self.cfg.failover == Failover::Fenced && self.role == Role::Leader {
            self.commit_index.min(self.mode_index())
        } else {
            self.commit_index
        }
    }

    /// Semi-sync: keeps the synchronous follower while it answers; when it has been silent
    /// for the sync timeout, makes the lowest-id follower that did answer within it the
    /// synchronous one (and logs the switch). With none answering, writes wait (and time
    /// out) rather than fall back to async.
    fn choose_sync_follower(&mut self, now_ms: u64, fx: &mut Effects) {
        if self.cfg.replication != Replication::SemiSync {
            return;
        }
        let timeout = self.cfg.sync_timeout_ms;
        let heard = |p: &NodeId| self.progress.get(p).map_or(0, |p| p.heard_ms);
        let current = self.sync_follower.clone();
        if let Some(c) = &current {
            if now_ms < heard(c) + timeout {
                return;
            }
        }
        let mut live: Vec<&NodeId> = self
            .cfg
            .peers
            .iter()
            .filter(|p| Some(*p) != current.as_ref() && now_ms < heard(p) + timeout)
            .collect();
        live.sort_by(|a, b| id_cmp(a, b));
        let Some(next) = live.first().map(|p| (*p).clone()) else {
            return;
        };
        fx.log.push(match &current {
            Some(c) => format!(
                "semi-sync: {c} has not answered for {} ms; {next} is now the synchronous follower",
                now_ms - heard(c)
            ),
            None => format!("semi-sync: {next} is now the synchronous follower"),
        });
        self.sync_follower = Some(next);
    }

    /// Chain: drops members silent for the failover timeout and appends nodes that answer
    /// again at the tail, logging every change. Writes in flight stay pending: they commit
    /// once every member of the new chain has them.
    fn reconfigure_chain(&mut self, now_ms: u64, fx: &mut Effects) {
        if self.cfg.replication != Replication::Chain {
            return;
        }
        let timeout = self.cfg.failover_timeout_ms;
        let alive = |p: &NodeId| {
            self.progress
                .get(p)
                .is_some_and(|p| now_ms < p.heard_ms + timeout)
        };
        let mut chain = vec![self.cfg.id.clone()];
        let mut dropped = Vec::new();
        for n in self.chain.iter().skip(1) {
            if alive(n) {
                chain.push(n.clone());
            } else {
                dropped.push(n.clone());
            }
        }
        let mut joined = Vec::new();
        for n in self.chain_order() {
            if !self.chain.contains(&n) && alive(&n) {
                chain.push(n.clone());
                joined.push(n);
            }
        }
        if chain == self.chain {
            return;
        }
        let mut why = Vec::new();
        if !dropped.is_empty() {
            why.push(format!(
                "dropped {} (silent for the failover timeout of {timeout} ms)",
                dropped.join(", ")
            ));
        }
        if !joined.is_empty() {
            why.push(format!("{} rejoined at the tail", joined.join(", ")));
        }
        fx.log.push(format!(
            "chain: {} ({})",
            chain.join(" -> "),
            why.join("; ")
        ));
        let old_successor = self.successor();
        self.chain = chain;
        let last = self.log.last_index();
        if let Some(next) = self
            .successor()
            .filter(|n| Some(n) != old_successor.as_ref())
        {
            if let Some(p) = self.progress.get_mut(&next) {
                p.next_index = resend_point(p.match_index, last);
                p.snapshot_sent = None;
            }
            self.replicate_to(&next, now_ms, fx);
        }
    }

    /// The chain a new leader starts with: itself, then every other node in configured
    /// order, going round (so with n2 leading, `n2 -> n3 -> n1`).
    fn chain_order(&self) -> Vec<NodeId> {
        let me = self
            .cfg
            .order
            .iter()
            .position(|n| *n == self.cfg.id)
            .unwrap_or(0);
        let n = self.cfg.order.len();
        (1..n)
            .map(|k| self.cfg.order[(me + k) % n].clone())
            .filter(|p| self.cfg.peers.contains(p))
            .collect()
    }

    /// Chain: the node after this one in the chain, which this node feeds.
    fn successor(&self) -> Option<NodeId> {
        if self.cfg.replication != Replication::Chain {
            return None;
        }
        let me = self.chain.iter().position(|n| *n == self.cfg.id)?;
        self.chain.get(me + 1).cloned()
    }

    /// A message from the leader itself: it is alive and says what the chain is.
    fn heard_leader(&mut self, chain: Vec<NodeId>, commit_index: u64, now_ms: u64) {
        self.leader_heard_ms = Some(now_ms);
        self.known_commit = self.known_commit.max(commit_index);
        if !chain.is_empty() && chain != self.chain {
            self.chain = chain;
        }
    }

    /// After a follower accepted entries or a snapshot: a chain relay passes them on, and
    /// reports its new position to the leader, which counts every member's position (the
    /// successor of the leader answers it directly anyway).
    fn after_accept(
        &mut self,
        leader: &str,
        from: &str,
        before: u64,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        if self.cfg.replication != Replication::Chain {
            return;
        }
        if self.leader_match > before && from != leader {
            fx.send.push((
                leader.to_string(),
                PeerMessage::AppendReply {
                    epoch: self.epoch,
                    outcome: AppendOutcome::Ok {
                        match_index: self.leader_match,
                    },
                    echo_ms: None,
                },
            ));
        }
        self.relay(now_ms, fx);
    }

    /// Chain relay: sends the successor what it lacks of the part of this node's log that
    /// matches the leader's, (re)starting its progress when the successor changed.
    fn relay(&mut self, now_ms: u64, fx: &mut Effects) {
        if self.role != Role::Follower {
            return;
        }
        let Some(next) = self.successor() else {
            self.progress.clear();
            return;
        };
        if !self.progress.contains_key(&next) {
            self.progress.clear();
            self.progress.insert(
                next.clone(),
                Progress {
                    next_index: self.leader_match + 1,
                    match_index: 0,
                    last_reply_ms: now_ms,
                    heard_ms: now_ms,
                    acked_sent_ms: 0,
                    snapshot_sent: None,
                    snapshot_only: false,
                },
            );
            self.replicate_to(&next, now_ms, fx);
            return;
        }
        let pending = self
            .progress
            .get(&next)
            .is_some_and(|p| p.next_index <= self.leader_match);
        if pending {
            self.replicate_to(&next, now_ms, fx);
        }
    }

    fn expire_pending(&mut self, now_ms: u64, fx: &mut Effects) {
        while let Some(w) = self.pending.front() {
            if w.deadline_ms > now_ms {
                break;
            }
            fx.replies.push((
                w.token,
                ResponseResult::Err(ErrorReply::new(
                    ErrorCode::Timeout,
                    false,
                    format!(
                        "not every follower acknowledged index {} within {} ms; the write is in the leader's log and may still take effect",
                        w.index, self.cfg.sync_timeout_ms
                    ),
                )),
            ));
            self.pending.pop_front();
        }
    }

    fn fail_pending(&mut self, fx: &mut Effects) {
        for w in self.pending.drain(..) {
            fx.replies.push((
                w.token,
                ResponseResult::Err(ErrorReply::new(
                    ErrorCode::Timeout,
                    false,
                    format!(
                        "the leader stepped down before index {} was replicated; the write may still take effect",
                        w.index
                    ),
                )),
            ));
        }
    }

    fn maybe_compact(&mut self, fx: &mut Effects) {
        if self.log.len() <= self.cfg.compact_after_entries
            || self.commit_index <= self.log.base_index()
        {
            return;
        }
        let index = self.commit_index;
        let Some(epoch) = self.log.epoch_at(index) else {
            return;
        };
        let snapshot = Snapshot {
            index,
            epoch,
            map: self.regs.committed_map(),
        };
        let keep = self.log.slice(index + 1, self.log.last_index()).to_vec();
        fx.log.push(format!(
            "compacting the log: snapshot at index {index} ({} keys), {} entries kept",
            snapshot.map.len(),
            keep.len()
        ));
        fx.persist.push(Persist::Replace { snapshot, keep });
        self.log.compact_to(index);
    }

    // ---- leader side of replication ------------------------------------------------------

    fn start_leading(&mut self, now_ms: u64, snapshot_only: bool) {
        let last = self.log.last_index();
        self.progress = self
            .cfg
            .peers
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Progress {
                        // Optimistic: the follower's answer tells where it really is.
                        next_index: last + 1,
                        match_index: 0,
                        last_reply_ms: now_ms,
                        heard_ms: now_ms,
                        acked_sent_ms: 0,
                        snapshot_sent: None,
                        snapshot_only,
                    },
                )
            })
            .collect();
        self.pending.clear();
        self.next_heartbeat_ms = now_ms;
        self.sync_follower = self
            .cfg
            .peers
            .iter()
            .min_by(|a, b| id_cmp(a, b))
            .cloned()
            .filter(|_| self.cfg.replication == Replication::SemiSync);
        self.chain.clear();
        if self.cfg.replication == Replication::Chain {
            self.chain.push(self.cfg.id.clone());
            self.chain.extend(self.chain_order());
        }
    }

    /// Sends `peer` the entries it lacks (at most `max_inflight_entries` beyond what it
    /// acknowledged), or a bare heartbeat, or a snapshot when its log cannot be repaired by
    /// entries.
    fn replicate_to(&mut self, peer: &str, now_ms: u64, fx: &mut Effects) {
        // Chain: entries go to the successor only; the others hear heartbeats on ticks.
        if self.cfg.replication == Replication::Chain && self.successor().as_deref() != Some(peer) {
            return;
        }
        let relaying = self.role != Role::Leader;
        // A relay passes on only what it knows to be the leader's.
        let last = if relaying {
            self.leader_match.min(self.log.last_index())
        } else {
            self.log.last_index()
        };
        let last_epoch = self.log.epoch_at(last).unwrap_or(0);
        let Some(p) = self.progress.get(peer) else {
            return;
        };
        let prev_index = p.next_index - 1;
        let prev_epoch = self.log.epoch_at(prev_index);
        let Some(prev_epoch) = prev_epoch.filter(|_| !p.snapshot_only) else {
            let due = p
                .snapshot_sent
                .is_none_or(|(sent_ms, _)| now_ms >= sent_ms + self.cfg.snapshot_resend_ms);
            if due {
                self.send_snapshot(peer, now_ms, fx);
            } else {
                // Still a heartbeat, so the follower does not fail over while the snapshot
                // is on its way; its mismatch answer is ignored meanwhile.
                fx.send.push((
                    peer.to_string(),
                    self.append_msg(last, last_epoch, vec![], now_ms),
                ));
            }
            return;
        };
        let upto = last.min(p.match_index + self.cfg.max_inflight_entries);
        let entries = if p.next_index <= upto {
            self.log.slice(p.next_index, upto).to_vec()
        } else {
            Vec::new()
        };
        if let Some(p) = self.progress.get_mut(peer) {
            p.next_index += entries.len() as u64;
        }
        fx.send.push((
            peer.to_string(),
            self.append_msg(prev_index, prev_epoch, entries, now_ms),
        ));
    }

    fn append_msg(
        &self,
        prev_index: u64,
        prev_epoch: u64,
        entries: Vec<Entry>,
        now_ms: u64,
    ) -> PeerMessage {
        let leads = self.role == Role::Leader;
        PeerMessage::Append {
            epoch: self.epoch,
            prev_index,
            prev_epoch,
            entries,
            commit_index: self.commit_index,
            leader_last_index: if leads {
                self.log.last_index()
            } else {
                self.leader_match
            },
            sent_ms: (leads && self.cfg.failover == Failover::Fenced).then_some(now_ms),
            leader: if leads { None } else { self.leader.clone() },
            chain: self.chain.clone(),
        }
    }

    fn send_snapshot(&mut self, peer: &str, now_ms: u64, fx: &mut Effects) {
        // Fenced: the committed state, so a follower's readers never see uncommitted writes
        // that a newer leader might replace; the entries after it follow by appends.
        let fenced = self.cfg.failover == Failover::Fenced;
        if !fenced && self.role != Role::Leader && self.leader_match != self.log.last_index() {
            // A chain relay's snapshot of its head would carry entries the leader may not
            // have: wait until its predecessor confirms them.
            return;
        }
        let index = if fenced {
            self.commit_index
        } else {
            self.log.last_index()
        };
        let map = if fenced {
            self.regs.committed_map()
        } else {
            self.regs.head_map()
        };
        fx.log.push(format!(
            "sending {peer} a snapshot at index {index} ({} keys)",
            map.len()
        ));
        fx.send.push((
            peer.to_string(),
            PeerMessage::Snapshot {
                epoch: self.epoch,
                index,
                index_epoch: self.log.epoch_at(index).unwrap_or(0),
                map,
                commit_index: self.commit_index,
                epochs: self.log.epoch_starts(),
                leader: if self.role == Role::Leader {
                    None
                } else {
                    self.leader.clone()
                },
            },
        ));
        if let Some(p) = self.progress.get_mut(peer) {
            p.snapshot_sent = Some((now_ms, index));
            p.next_index = index + 1;
        }
    }

    fn on_append_reply(
        &mut self,
        from: &str,
        epoch: u64,
        outcome: AppendOutcome,
        echo_ms: Option<u64>,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        if epoch > self.epoch {
            let hint = match &outcome {
                AppendOutcome::StaleEpoch { leader } => leader.clone(),
                _ => None,
            }
            .filter(|l| l != &self.cfg.id);
            self.adopt(
                epoch,
                hint,
                &format!("{from} is at epoch {epoch}, newer than {}", self.epoch),
                now_ms,
                fx,
            );
            return;
        }
        let feeds_it = self.role == Role::Leader || self.successor().as_deref() == Some(from);
        if !feeds_it || epoch < self.epoch {
            // An answer to a message from an earlier leadership (or chain position) of ours.
            return;
        }
        let last = if self.role == Role::Leader {
            self.log.last_index()
        } else {
            self.leader_match.min(self.log.last_index())
        };
        let resend_ms = self.cfg.snapshot_resend_ms;
        let Some(p) = self.progress.get_mut(from) else {
            return;
        };
        p.last_reply_ms = now_ms;
        p.heard_ms = now_ms;
        if !matches!(outcome, AppendOutcome::StaleEpoch { .. }) {
            // It accepts this epoch's leader: no vote for another before this append's
            // send time plus a failover timeout.
            p.acked_sent_ms = p.acked_sent_ms.max(echo_ms.unwrap_or(0));
        }
        match outcome {
            AppendOutcome::Ok { match_index } => {
                if match_index > last {
                    return;
                }
                p.match_index = p.match_index.max(match_index);
                p.next_index = p.next_index.max(match_index + 1);
                // Only snapshots are sent in snapshot-only mode, so this acknowledges one.
                p.snapshot_only = false;
                if p.snapshot_sent
                    .is_some_and(|(_, index)| match_index >= index)
                {
                    p.snapshot_sent = None;
                }
                let more = p.next_index <= last;
                self.update_commit(fx);
                if more {
                    self.replicate_to(from, now_ms, fx);
                }
            }
            AppendOutcome::Mismatch {
                last_index,
                last_epoch,
                diverged,
            } => {
                let snapshot_in_flight = p
                    .snapshot_sent
                    .is_some_and(|(sent_ms, _)| now_ms < sent_ms + resend_ms);
                if p.snapshot_only || snapshot_in_flight {
                    // The answer to something sent before the snapshot arrived.
                    return;
                }
                if !diverged && self.log.epoch_at(last_index) == Some(last_epoch) {
                    // Its log is a prefix of ours (same epoch at the same index): catch it up
                    // from there.
                    p.match_index = last_index;
                    p.next_index = last_index + 1;
                    self.replicate_to(from, now_ms, fx);
                } else {
                    self.send_snapshot(from, now_ms, fx);
                }
            }
            AppendOutcome::StaleEpoch { leader } => {
                // Same epoch: the follower follows another leader of this epoch.
                let leads = self.role == Role::Leader;
                if let Some(other) = leader.filter(|l| leads && id_cmp(l, &self.cfg.id).is_lt()) {
                    fx.log.push(format!(
                        "{other} also leads epoch {epoch} and has the lower id: stepping down"
                    ));
                    self.mark_suspect();
                    self.adopt(epoch, Some(other), "two leaders in one epoch", now_ms, fx);
                }
            }
        }
    }

    // ---- follower side of replication ----------------------------------------------------

    /// Decides whether a message from `from` as leader of `epoch` is accepted, stepping down
    /// or switching leader as the epoch rules say: a newer epoch always wins; within one
    /// epoch, of two leaders the lower id wins.
    fn observe_leader(&mut self, from: &str, epoch: u64, now_ms: u64, fx: &mut Effects) -> bool {
        if epoch < self.epoch {
            return false;
        }
        if epoch == self.epoch {
            let current = if self.role == Role::Leader {
                Some(self.cfg.id.clone())
            } else {
                self.epoch_leader.clone()
            };
            if let Some(current) = current.filter(|c| c != from) {
                if id_cmp(from, &current).is_gt() {
                    return false;
                }
                fx.log.push(format!(
                    "{from} and {current} both lead epoch {epoch}: following {from} (lower id) and distrusting this epoch's entries"
                ));
                self.mark_suspect();
            }
        }
        let changes = self.role == Role::Leader
            || self.epoch != epoch
            || self.leader.as_deref() != Some(from);
        if changes {
            self.adopt(
                epoch,
                Some(from.to_string()),
                &format!("heard from {from}"),
                now_ms,
                fx,
            );
        } else {
            self.election = None;
            self.arm_failover(now_ms);
        }
        self.leader_contact_ms = now_ms;
        if self.joining {
            self.joining = false;
            fx.log.push(format!(
                "joined: following {from} at epoch {}; catching up from it",
                self.epoch
            ));
            if self.cfg.failover == Failover::Fenced {
                // A wiped node forgot whom it voted for; counting the leader it follows as
                // its vote keeps it from electing a second leader in this epoch.
                self.voted_for = Some(from.to_string());
            }
        }
        true
    }

    fn rejection(&self) -> AppendOutcome {
        AppendOutcome::StaleEpoch {
            leader: self.status_leader(),
        }
    }

    fn accept_entries(&mut self, from: &str, a: AppendArgs, fx: &mut Effects) -> AppendOutcome {
        if self.cfg.failover == Failover::Fenced {
            return self.accept_entries_fenced(from, a, fx);
        }
        let last = self.log.last_index();
        let mismatch = |log: &RepLog, diverged: bool| AppendOutcome::Mismatch {
            last_index: log.last_index(),
            last_epoch: log.last_epoch(),
            diverged,
        };
        if self.suspect_from.is_some() {
            return mismatch(&self.log, true);
        }
        if !well_formed(&a) {
            fx.log.push(format!(
                "ignoring a malformed append from {from} (after index {})",
                a.prev_index
            ));
            return mismatch(&self.log, false);
        }
        if a.prev_index > last || a.prev_index < self.log.base_index() {
            return mismatch(&self.log, false);
        }
        if self.log.epoch_at(a.prev_index) != Some(a.prev_epoch) {
            return mismatch(&self.log, true);
        }
        let mut first_new = a.entries.len();
        for (k, e) in a.entries.iter().enumerate() {
            match self.log.epoch_at(e.index) {
                Some(mine) if mine == e.epoch => {}
                Some(_) => return mismatch(&self.log, true),
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        let matched = a.prev_index + a.entries.len() as u64;
        if first_new == a.entries.len() {
            // Entries beyond both this message and the leader's log that come from an older
            // epoch were never the leader's: they are left over from a deposed leader.
            let beyond = matched.max(a.leader_last_index) + 1;
            if self.log.epoch_at(beyond).is_some_and(|e| e < a.epoch) {
                return mismatch(&self.log, true);
            }
        }
        self.append_received(from, &a.entries[first_new..], a.now_ms, fx);
        self.leader_match = self.leader_match.max(matched);
        self.known_commit = self.known_commit.max(a.commit_index);
        let commit = a.commit_index.min(matched);
        if commit > self.commit_index {
            self.advance_commit(commit, fx);
        }
        self.maybe_compact(fx);
        AppendOutcome::Ok {
            match_index: matched,
        }
    }

    /// Raft's log matching, for fenced failover: entries that conflict with the leader's
    /// (same index, other epoch) are dropped with everything after them, which is safe
    /// because only uncommitted entries can conflict. A mismatch answers with this node's
    /// commit index: there its log certainly equals the leader's (every leader holds every
    /// committed entry), so the leader resends from there, or sends a snapshot when it has
    /// compacted beyond it, which then lies at or after this node's commit index and never
    /// takes back state a reader has seen.
    fn accept_entries_fenced(
        &mut self,
        from: &str,
        a: AppendArgs,
        fx: &mut Effects,
    ) -> AppendOutcome {
        let commit = self.commit_index;
        let mismatch = |log: &RepLog| AppendOutcome::Mismatch {
            last_index: commit,
            last_epoch: log.epoch_at(commit).unwrap_or(0),
            diverged: false,
        };
        if !well_formed(&a) {
            fx.log.push(format!(
                "ignoring a malformed append from {from} (after index {})",
                a.prev_index
            ));
            return mismatch(&self.log);
        }
        if a.prev_index > self.log.last_index()
            || a.prev_index < self.log.base_index()
            || self.log.epoch_at(a.prev_index) != Some(a.prev_epoch)
        {
            return mismatch(&self.log);
        }
        let mut first_new = a.entries.len();
        for (k, e) in a.entries.iter().enumerate() {
            match self.log.epoch_at(e.index) {
                Some(mine) if mine == e.epoch => {}
                Some(mine) => {
                    if e.index <= self.commit_index {
                        // Two logs disagree on a committed entry: the protocol is broken.
                        fx.log.push(format!(
                            "refusing to replace committed entry {} (epoch {mine}) with one of epoch {} from {from}",
                            e.index, e.epoch
                        ));
                        return mismatch(&self.log);
                    }
                    self.truncate_from(e.index, fx);
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        self.append_received(from, &a.entries[first_new..], a.now_ms, fx);
        let matched = a.prev_index + a.entries.len() as u64;
        self.leader_match = self.leader_match.max(matched);
        self.known_commit = self.known_commit.max(a.commit_index);
        // Only up to what this message vouches for: entries beyond it may be another
        // epoch's leftovers.
        let commit = a.commit_index.min(matched);
        if commit > self.commit_index {
            self.advance_commit(commit, fx);
        }
        self.maybe_compact(fx);
        AppendOutcome::Ok {
            match_index: matched,
        }
    }

    /// Drops this follower's entries from `index` on (all uncommitted) and says which.
    fn truncate_from(&mut self, index: u64, fx: &mut Effects) {
        let dropped: Vec<String> = self
            .log
            .slice(index, self.log.last_index())
            .iter()
            .take(DISCARDED_EXAMPLES)
            .map(describe_entry)
            .collect();
        let count = self.log.last_index() + 1 - index;
        fx.log.push(format!(
            "dropping {count} uncommitted entries from index {index} that conflict with the leader's log: {}",
            dropped.join(", ")
        ));
        self.log.truncate_from(index);
        self.leader_match = self.leader_match.min(index - 1);
        // A chain successor may hold what was dropped: start it over.
        self.progress.clear();
        let after_commit = self
            .log
            .slice(self.commit_index + 1, self.log.last_index())
            .to_vec();
        self.regs.rebuild_uncommitted(&after_commit);
        fx.persist.push(Persist::Truncate {
            base_index: self.log.base_index(),
            base_epoch: self.log.base_epoch(),
            keep: self.log.entries().to_vec(),
        });
    }

    /// Replaces state and log with the leader's snapshot, unless this node already holds
    /// exactly that prefix; returns the answer to send (`None` for a malformed snapshot).
    fn install_snapshot(
        &mut self,
        from: &str,
        epoch: u64,
        snapshot: Snapshot,
        commit_index: u64,
        epochs: &[EpochStart],
        fx: &mut Effects,
    ) -> Option<AppendOutcome> {
        if snapshot.epoch > epoch {
            fx.log.push(format!(
                "ignoring a malformed snapshot from {from} (index epoch {} beyond epoch {epoch})",
                snapshot.epoch
            ));
            return None;
        }
        let index = snapshot.index;
        if self.cfg.failover == Failover::Fenced && index <= self.commit_index {
            // A fenced snapshot holds committed state only, and this node already has it.
            return Some(AppendOutcome::Ok { match_index: index });
        }
        let already_have = self.suspect_from.is_none()
            && self.log.epoch_at(index) == Some(snapshot.epoch)
            && self.log.epoch_at(index + 1).is_none_or(|e| e >= epoch);
        if already_have {
            // A resent snapshot this node already matches: nothing to discard.
            if commit_index.min(index) > self.commit_index {
                self.advance_commit(commit_index.min(index), fx);
            }
            self.leader_match = self.leader_match.max(index);
            self.known_commit = self.known_commit.max(commit_index);
            return Some(AppendOutcome::Ok { match_index: index });
        }
        let (discarded, examples) = self.discarded_by(index, epochs);
        fx.log.push(format!(
            "installed a snapshot from {from}: index {index}, epoch {}, {} keys; discarded {discarded} of its own entries{}",
            snapshot.epoch,
            snapshot.map.len(),
            if examples.is_empty() {
                String::new()
            } else {
                format!(": {}", examples.join(", "))
            }
        ));
        self.log.reset(index, snapshot.epoch);
        self.regs = Registers::from_map(&snapshot.map);
        self.commit_index = index;
        self.suspect_from = None;
        self.leader_match = index;
        self.known_commit = self.known_commit.max(commit_index);
        fx.persist.push(Persist::Replace {
            snapshot,
            keep: Vec::new(),
        });
        Some(AppendOutcome::Ok { match_index: index })
    }

    /// How many of this node's entries a snapshot at `index` throws away (with a few
    /// examples): those beyond it, those the leader has under another epoch, and distrusted
    /// ones. Entries before the leader's own compaction point cannot be judged and count as
    /// kept.
    fn discarded_by(&self, index: u64, leader_epochs: &[EpochStart]) -> (u64, Vec<String>) {
        let mut count = 0;
        let mut examples = Vec::new();
        for e in self.log.entries() {
            let gone = e.index > index
                || self.suspect_from.is_some_and(|s| e.index >= s)
                || epoch_at_in_starts(leader_epochs, e.index).is_some_and(|le| le != e.epoch);
            if gone {
                count += 1;
                if examples.len() < DISCARDED_EXAMPLES {
                    examples.push(describe_entry(e));
                }
            }
        }
        (count, examples)
    }

    /// Distrusts this node's entries of the current epoch: another leader claimed the same
    /// epoch, so an entry of its may carry the same (index, epoch) with different content.
    fn mark_suspect(&mut self) {
        let epoch = self.epoch;
        let from = self.log.first_index_of_epoch(epoch).or_else(|| {
            (self.log.base_epoch() == epoch && self.log.base_index() > 0)
                .then(|| self.log.base_index() + 1)
        });
        if let Some(s) = from {
            self.suspect_from = Some(self.suspect_from.map_or(s, |old| old.min(s)));
        }
    }

    // ---- roles and failover ----------------------------------------------------------------

    /// Becomes a follower of `leader` (if known) at `epoch`.
    fn adopt(
        &mut self,
        epoch: u64,
        leader: Option<NodeId>,
        why: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        let was_leader = self.role == Role::Leader;
        let changed = epoch != self.epoch || leader != self.leader;
        if epoch > self.epoch {
            // A vote is for one epoch.
            self.voted_for = None;
        }
        self.epoch = self.epoch.max(epoch);
        self.epoch_leader = leader.clone();
        self.leader = leader;
        self.role = Role::Follower;
        self.election = None;
        self.pre_votes = None;
        self.arm_failover(now_ms);
        let leader_name = self.leader.as_deref().unwrap_or("unknown").to_string();
        if changed || was_leader {
            // What this node knew of the old leader's log, chain and lease is void.
            self.leader_match = 0;
            self.leader_heard_ms = None;
            self.chain.clear();
            self.progress.clear();
            self.sync_follower = None;
        }
        if was_leader {
            self.fail_pending(fx);
            fx.log.push(format!(
                "role: leader -> follower at epoch {} (leader {leader_name}): {why}",
                self.epoch
            ));
        } else if changed {
            fx.log.push(format!(
                "following {leader_name} at epoch {}: {why}",
                self.epoch
            ));
        }
    }

    fn start_election(&mut self, now_ms: u64, fx: &mut Effects) {
        self.election_round += 1;
        let round = self.election_round;
        fx.log.push(format!(
            "failover: nothing heard from leader {} for the failover timeout; asking {} peers for their positions (round {round})",
            self.leader
                .as_deref()
                .or(self.epoch_leader.as_deref())
                .unwrap_or("(unknown)"),
            self.cfg.peers.len()
        ));
        self.election = Some(Election {
            round,
            deadline_ms: now_ms + self.cfg.position_timeout_ms,
            replies: BTreeMap::new(),
        });
        for peer in &self.cfg.peers {
            fx.send
                .push((peer.clone(), PeerMessage::PositionRequest { round }));
        }
        if self.cfg.peers.is_empty() {
            self.decide(now_ms, fx);
        }
    }

    /// Ends a failover round: follow a live leader if one answered, else promote this node
    /// if it is the most up-to-date of the reachable non-leaders (ties to the lowest id),
    /// else wait another timeout for the best one to promote itself.
    fn decide(&mut self, now_ms: u64, fx: &mut Effects) {
        let Some(el) = self.election.take() else {
            return;
        };
        let live_leader = el
            .replies
            .iter()
            .filter(|(_, p)| p.role == Role::Leader && p.epoch >= self.epoch)
            .max_by(|a, b| a.1.epoch.cmp(&b.1.epoch).then(id_cmp(b.0, a.0)));
        if let Some((id, p)) = live_leader {
            let (id, epoch) = (id.clone(), p.epoch);
            fx.log.push(format!(
                "failover round {}: {id} answers as leader of epoch {epoch}; no failover",
                el.round
            ));
            if !self.observe_leader(&id, epoch, now_ms, fx) {
                self.arm_failover(now_ms);
            }
            return;
        }
        let me = self.cfg.id.clone();
        let mut candidates = vec![(me.clone(), self.log.last_epoch(), self.log.last_index())];
        let mut stale_leaders = Vec::new();
        for (id, p) in &el.replies {
            if p.role == Role::Leader {
                stale_leaders.push(format!("{id} (leader of epoch {})", p.epoch));
            } else {
                candidates.push((id.clone(), p.last_epoch, p.last_index));
            }
        }
        let unreachable: Vec<&str> = self
            .cfg
            .peers
            .iter()
            .filter(|p| !el.replies.contains_key(*p))
            .map(String::as_str)
            .collect();
        let best = candidates
            .iter()
            .max_by(|a, b| (a.1, a.2).cmp(&(b.1, b.2)).then(id_cmp(&b.0, &a.0)))
            .map(|c| c.0.clone())
            .unwrap_or_else(|| me.clone());
        let positions: Vec<String> = candidates
            .iter()
            .map(|(id, e, i)| format!("{id} (last epoch {e}, last index {i})"))
            .collect();
        let highest_epoch = el
            .replies
            .values()
            .map(|p| p.epoch)
            .fold(self.epoch, u64::max);
        fx.log.push(format!(
            "failover round {}: candidates {}; unreachable: {}; ignored stale leaders: {}; most up to date: {best}",
            el.round,
            positions.join(", "),
            if unreachable.is_empty() { "none".to_string() } else { unreachable.join(", ") },
            if stale_leaders.is_empty() { "none".to_string() } else { stale_leaders.join(", ") },
        ));
        if best == me {
            self.promote(highest_epoch + 1, now_ms, fx);
        } else {
            fx.log.push(format!("waiting for {best} to promote itself"));
            self.arm_failover(now_ms);
        }
    }

    fn promote(&mut self, epoch: u64, now_ms: u64, fx: &mut Effects) {
        // A log this node distrusted becomes the authority now; followers may hold entries
        // that collide with its distrusted ones, so they get snapshots, never entries.
        let snapshot_only = self.suspect_from.take().is_some();
        self.epoch = epoch;
        self.epoch_leader = Some(self.cfg.id.clone());
        self.leader = Some(self.cfg.id.clone());
        self.role = Role::Leader;
        self.election = None;
        let last = self.log.last_index();
        self.advance_commit(last, fx);
        self.start_leading(now_ms, snapshot_only);
        fx.log.push(format!(
            "role: follower -> leader at epoch {epoch} (last index {last}, now committed)"
        ));
        self.next_heartbeat_ms = now_ms + self.cfg.heartbeat_ms;
        for peer in self.cfg.peers.clone() {
            self.replicate_to(&peer, now_ms, fx);
        }
    }

    // ---- fenced failover: Raft's election ---------------------------------------------------

    /// No leader heard (or no majority of votes) within the failover timeout: stand for the
    /// next epoch, voting for itself.
    /// The first round of fenced failover: ask the peers whether they would vote for this
    /// node in the next epoch, without raising it. Only when a majority would does the node
    /// stand for election; a node that merely lost its own links keeps its epoch.
    fn ask_pre_votes(&mut self, now_ms: u64, fx: &mut Effects) {
        self.pre_votes = Some(BTreeSet::from([self.cfg.id.clone()]));
        self.arm_failover(now_ms);
        if self.majority() <= 1 {
            self.stand_for_election(now_ms, fx);
            return;
        }
        for peer in &self.cfg.peers {
            fx.send.push((
                peer.clone(),
                PeerMessage::VoteRequest {
                    epoch: self.epoch + 1,
                    last_epoch: self.log.last_epoch(),
                    last_index: self.log.last_index(),
                    pre_vote: true,
                },
            ));
        }
    }

    /// Whether this node would grant `from` a vote for `epoch`, changing nothing: the same
    /// rules as [`Node::on_vote_request`] without adopting the epoch or recording a vote.
    fn would_vote(
        &mut self,
        from: &str,
        epoch: u64,
        candidate_last: (u64, u64),
        now_ms: u64,
        fx: &mut Effects,
    ) -> bool {
        if self.cfg.failover != Failover::Fenced || epoch < self.epoch || self.joining {
            return false;
        }
        let leader_alive = self.leader_alive(now_ms);
        let mine = (self.log.last_epoch(), self.log.last_index());
        let grant = !leader_alive && candidate_last >= mine;
        if !grant {
            fx.log.push(format!(
                "pre-vote: would not vote for {from} in epoch {epoch}: {}",
                if leader_alive {
                    "a leader was heard within the failover timeout".to_string()
                } else {
                    format!(
                        "its log (last epoch {}, last index {}) is behind this one (last epoch {}, last index {})",
                        candidate_last.0, candidate_last.1, mine.0, mine.1
                    )
                }
            ));
        }
        grant
    }

    /// Whether this node hears a leader (or, leading, holds its lease): then it votes for
    /// nobody, so a node that was merely cut off cannot depose a working leader.
    fn leader_alive(&self, now_ms: u64) -> bool {
        match self.role {
            Role::Leader => self.lease_holds(now_ms),
            Role::Follower => now_ms < self.leader_contact_ms + self.cfg.failover_timeout_ms,
            Role::Candidate => false,
        }
    }

    /// A voter that answered from a later epoch: follow it into that epoch (with no known
    /// leader). Returns whether it did.
    fn adopt_voters_epoch(
        &mut self,
        from: &str,
        epoch: u64,
        now_ms: u64,
        fx: &mut Effects,
    ) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        self.adopt(
            epoch,
            None,
            &format!("{from} is at epoch {epoch}"),
            now_ms,
            fx,
        );
        true
    }

    fn on_pre_vote_reply(
        &mut self,
        from: &str,
        epoch: u64,
        granted: bool,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        if self.cfg.failover != Failover::Fenced || self.role == Role::Leader {
            return;
        }
        // A voter past this node's epoch: catch up with it (this node has no leader anyway)
        // and ask again at the next timeout.
        if self.adopt_voters_epoch(from, epoch, now_ms, fx) {
            return;
        }
        if !granted {
            return;
        }
        let Some(pre_votes) = self.pre_votes.as_mut() else {
            return;
        };
        pre_votes.insert(from.to_string());
        if pre_votes.len() >= self.majority() {
            self.stand_for_election(now_ms, fx);
        }
    }

    fn stand_for_election(&mut self, now_ms: u64, fx: &mut Effects) {
        self.pre_votes = None;
        let me = self.cfg.id.clone();
        self.epoch += 1;
        self.role = Role::Candidate;
        self.leader = None;
        self.epoch_leader = None;
        self.voted_for = Some(me.clone());
        self.votes = BTreeSet::from([me]);
        self.leader_match = 0;
        self.leader_heard_ms = None;
        self.chain.clear();
        self.progress.clear();
        self.arm_failover(now_ms);
        fx.log.push(format!(
            "failover (fenced): no leader for the failover timeout; standing for epoch {} (last epoch {}, last index {}), asking {} peers for votes",
            self.epoch,
            self.log.last_epoch(),
            self.log.last_index(),
            self.cfg.peers.len()
        ));
        if self.votes.len() >= self.majority() {
            self.win_election(now_ms, fx);
            return;
        }
        for peer in &self.cfg.peers {
            fx.send.push((
                peer.clone(),
                PeerMessage::VoteRequest {
                    epoch: self.epoch,
                    last_epoch: self.log.last_epoch(),
                    last_index: self.log.last_index(),
                    pre_vote: false,
                },
            ));
        }
    }

    /// Decides a vote. Refused while this node hears a leader (or started) within the
    /// failover timeout, or leads with its lease: a candidate that was merely cut off must
    /// not depose a working leader, and the leader's read lease counts on it. Otherwise
    /// granted once per epoch, to a log at least as up to date (last epoch, then last
    /// index) as this node's; the vote is persisted before the answer goes out.
    fn on_vote_request(
        &mut self,
        from: &str,
        epoch: u64,
        candidate_last: (u64, u64),
        now_ms: u64,
        fx: &mut Effects,
    ) -> bool {
        if self.cfg.failover != Failover::Fenced || epoch < self.epoch {
            return false;
        }
        if self.joining {
            fx.log.push(format!(
                "not voting for {from} in epoch {epoch}: still joining (no leader heard yet)"
            ));
            return false;
        }
        let leader_alive = self.leader_alive(now_ms);
        if leader_alive {
            fx.log.push(format!(
                "not voting for {from} in epoch {epoch}: a leader was heard within the failover timeout"
            ));
            return false;
        }
        if epoch > self.epoch {
            self.adopt(
                epoch,
                None,
                &format!("{from} stands for epoch {epoch}"),
                now_ms,
                fx,
            );
        }
        let mine = (self.log.last_epoch(), self.log.last_index());
        let refusal = match &self.voted_for {
            Some(v) if v != from => Some(format!("already voted for {v}")),
            _ if candidate_last < mine => Some(format!(
                "its log (last epoch {}, last index {}) is behind this one (last epoch {}, last index {})",
                candidate_last.0, candidate_last.1, mine.0, mine.1
            )),
            _ => None,
        };
        match refusal {
            Some(why) => {
                fx.log
                    .push(format!("not voting for {from} in epoch {epoch}: {why}"));
                false
            }
            None => {
                self.voted_for = Some(from.to_string());
                self.arm_failover(now_ms);
                fx.log.push(format!("voted for {from} in epoch {epoch}"));
                true
            }
        }
    }

    fn on_vote_reply(
        &mut self,
        from: &str,
        epoch: u64,
        granted: bool,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        if self.cfg.failover != Failover::Fenced {
            return;
        }
        if self.adopt_voters_epoch(from, epoch, now_ms, fx) {
            return;
        }
        if self.role != Role::Candidate || epoch != self.epoch || !granted {
            return;
        }
        self.votes.insert(from.to_string());
        if self.votes.len() >= self.majority() {
            self.win_election(now_ms, fx);
        }
    }

    fn win_election(&mut self, now_ms: u64, fx: &mut Effects) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id.clone());
        self.epoch_leader = Some(self.cfg.id.clone());
        self.start_leading(now_ms, false);
        let voters: Vec<&str> = self.votes.iter().map(String::as_str).collect();
        fx.log.push(format!(
            "role: candidate -> leader at epoch {} with votes from {} (a majority of {})",
            self.epoch,
            voters.join(", "),
            self.cfg.peers.len() + 1
        ));
        self.votes.clear();
        self.append_noop(fx);
        for peer in self.cfg.peers.clone() {
            self.replicate_to(&peer, now_ms, fx);
        }
    }

    /// A new fenced leader's first entry: committing it commits every earlier entry.
    fn append_noop(&mut self, fx: &mut Effects) {
        let entry = Entry {
            index: self.log.last_index() + 1,
            epoch: self.epoch,
            noop: true,
            ..Entry::default()
        };
        self.log.push(entry.clone());
        fx.persist.push(Persist::Append(vec![entry]));
        self.update_commit(fx);
    }

    /// Whether a majority (this node included) answered within the failover timeout.
    fn hears_majority(&self, now_ms: u64) -> bool {
        let timeout = self.cfg.failover_timeout_ms;
        let heard = self
            .cfg
            .peers
            .iter()
            .filter(|p| {
                self.progress
                    .get(*p)
                    .is_some_and(|p| now_ms < p.heard_ms + timeout)
            })
            .count();
        heard + 1 >= self.majority()
    }

    /// Fencing: a leader cut off from the majority stops taking writes before a new leader
    /// can have been elected, and fails what it has pending (indefinitely: a majority may
    /// still have it).
    fn step_down_fenced(&mut self, now_ms: u64, fx: &mut Effects) {
        let timeout = self.cfg.failover_timeout_ms;
        fx.log.push(format!(
            "fencing: no majority answered for the failover timeout ({timeout} ms); stepping down and refusing writes"
        ));
        self.adopt(self.epoch, None, "lost the majority", now_ms, fx);
    }

    fn arm_failover(&mut self, now_ms: u64) {
        let timeout = self.cfg.failover_timeout_ms;
        let jitter = self.next_random() % (timeout / 2 + 1);
        self.failover_deadline_ms = now_ms + timeout + jitter;
    }

    /// SplitMix64: enough randomness for jitter, and deterministic for a seed.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn status_leader(&self) -> Option<NodeId> {
        if self.role == Role::Leader {
            Some(self.cfg.id.clone())
        } else {
            self.leader.clone()
        }
    }

    fn meta(&self) -> Meta {
        Meta {
            epoch: self.epoch,
            epoch_leader: self.epoch_leader.clone(),
            suspect_from: self.suspect_from,
            voted_for: self.voted_for.clone(),
        }
    }

    /// Persists the metadata if a handler changed it. It goes last among the persists: a
    /// crash before it loses at most an epoch that the log's entries still prove, and a
    /// cleared distrust mark is written only after the snapshot that justifies it.
    fn finish(&mut self, fx: &mut Effects) {
        let meta = self.meta();
        if self.persisted_meta.as_ref() != Some(&meta) {
            fx.persist.push(Persist::Meta(meta.clone()));
            self.persisted_meta = Some(meta);
        }
    }
}

/// Where to resend from when a follower has gone quiet: after what it acknowledged, or, when
/// it never acknowledged anything, probe at our end and let its answer say where it is.
fn resend_point(match_index: u64, last: u64) -> u64 {
    if match_index > 0 {
        match_index + 1
    } else {
        last + 1
    }
}

#[derive(Debug)]
struct AppendArgs {
    now_ms: u64,
    epoch: u64,
    prev_index: u64,
    prev_epoch: u64,
    entries: Vec<Entry>,
    commit_index: u64,
    leader_last_index: u64,
}

/// Entries must continue `prev_index` without gaps, with epochs that never decrease and never
/// exceed the sender's epoch.
fn well_formed(a: &AppendArgs) -> bool {
    let mut epoch = a.prev_epoch;
    for (k, e) in a.entries.iter().enumerate() {
        if e.index != a.prev_index + 1 + k as u64 || e.epoch < epoch || e.epoch > a.epoch {
            return false;
        }
        epoch = e.epoch;
    }
    a.prev_epoch <= a.epoch
}

fn describe_entry(e: &Entry) -> String {
    if e.noop {
        format!("[index {} epoch {} no-op]", e.index, e.epoch)
    } else {
        format!(
            "[index {} epoch {} key {} value {}]",
            e.index, e.epoch, e.key, e.value
        )
    }
}

fn into_result(result: Result<ReplyBody, ErrorReply>) -> ResponseResult {
    match result {
        Ok(r) => ResponseResult::Ok(r),
        Err(e) => ResponseResult::Err(e),
    }
}

#[cfg(test)]
mod tests;

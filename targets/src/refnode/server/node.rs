//! The replication protocol of one node, as effect-free handlers in the style of stateright:
//! every handler takes one input and the current time and returns the [`Effects`] to carry
//! out (entries and metadata to persist, messages to send, client replies, log lines). The
//! node never touches a socket, a file or a clock, so the same code runs under the real
//! transport (`super::driver`) and under the in-memory simulation in this file's tests.
//!
//! The driver must carry out `persist` before anything else in the same [`Effects`]: replies
//! and acknowledgements promise durability.
//!
//! The design is single-leader replication with naive failover, as *Designing Data-Intensive
//! Applications* (ch. 5) describes it: the most up-to-date reachable follower promotes itself
//! with no majority vote, so split brain and discarded writes are possible on purpose.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::refnode::protocol::{
    AppendOutcome, Entry, EpochStart, ErrorCode, ErrorReply, PeerMessage, ReplyBody, RequestBody,
    ResponseResult, Role, Status,
};

use super::state::{Durable, Meta, Registers, RepLog, Snapshot, epoch_at_in_starts};

pub type NodeId = String;

/// When a leader acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Replication {
    /// After every other configured node has persisted and applied it.
    Sync,
    /// As soon as the leader itself has persisted and applied it.
    Async,
}

/// Everything a node's behaviour depends on besides its inputs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The other nodes of the cluster (not this one).
    pub peers: Vec<NodeId>,
    /// Leader of epoch 1 when the data directory is fresh.
    pub initial_leader: NodeId,
    pub replication: Replication,
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
    /// Seed of the failover jitter.
    pub seed: u64,
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
    // Follower only.
    failover_deadline_ms: u64,
    election: Option<Election>,
    election_round: u64,
    rng: u64,
    unknown_peers_logged: BTreeSet<NodeId>,
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
            regs.apply_uncommitted(e.key, e.value);
        }
        let commit_index = log.base_index();
        let seed = cfg.seed;
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
            failover_deadline_ms: now_ms,
            election: None,
            election_round: 0,
            rng: seed,
            unknown_peers_logged: BTreeSet::new(),
        };
        if fresh {
            let initial = node.cfg.initial_leader.clone();
            node.epoch_leader = Some(initial.clone());
            node.leader = Some(initial.clone());
            if initial == node.cfg.id {
                node.role = Role::Leader;
                node.start_leading(now_ms, false);
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
            });
            // Entries of an epoch prove the node took part in it even if the metadata
            // write did not survive a crash.
            node.epoch = meta.epoch.max(node.log.last_epoch()).max(1);
            node.epoch_leader = meta.epoch_leader;
            node.suspect_from = meta.suspect_from;
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
        }
    }

    /// Handles a batch of client requests: reads and status at once, writes appended
    /// together so that they share one fsync (group commit).
    pub fn on_client(&mut self, batch: Vec<ClientRequest>, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let mut appended = Vec::new();
        for req in batch {
            let result = match req.body {
                RequestBody::Read { key } => {
                    // The leader shows only acknowledged (committed) writes; a follower shows
                    // whatever it has applied, stale or not.
                    let value = if self.role == Role::Leader {
                        self.regs.committed(key)
                    } else {
                        self.regs.head(key)
                    };
                    Ok(ReplyBody::ReadOk { value })
                }
                RequestBody::Status => Ok(ReplyBody::StatusOk(self.status())),
                RequestBody::Write { key, value } => match self.admit_write() {
                    Ok(()) => {
                        self.append_write(key, value, req.token, WriteKind::Write, now_ms);
                        appended.push(req.token);
                        continue;
                    }
                    Err(e) => Err(e),
                },
                RequestBody::Cas { key, from, to } => match self.admit_write() {
                    // Against the head, not the committed state: entries apply in log order,
                    // so a cas must see every write ordered before it.
                    Ok(()) if self.regs.head(key) != Some(from) => Err(ErrorReply {
                        code: ErrorCode::CasMismatch,
                        definite: true,
                        message: format!(
                            "key {key} holds {}, not {from}",
                            self.regs
                                .head(key)
                                .map_or("nothing".to_string(), |v| v.to_string())
                        ),
                        leader: None,
                    }),
                    Ok(()) => {
                        self.append_write(key, to, req.token, WriteKind::Cas, now_ms);
                        appended.push(req.token);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            fx.replies.push((req.token, into_result(result)));
        }
        if !appended.is_empty() {
            let count = appended.len();
            let last = self.log.last_index();
            let first = last + 1 - count as u64;
            fx.persist
                .push(Persist::Append(self.log.slice(first, last).to_vec()));
            if self.cfg.replication == Replication::Async || self.cfg.peers.is_empty() {
                self.advance_commit(last, &mut fx);
            }
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
            } => {
                let outcome = if self.observe_leader(from, epoch, now_ms, &mut fx) {
                    self.accept_entries(
                        from,
                        AppendArgs {
                            epoch,
                            prev_index,
                            prev_epoch,
                            entries,
                            commit_index,
                            leader_last_index,
                        },
                        &mut fx,
                    )
                } else {
                    self.rejection()
                };
                fx.respond = Some(PeerMessage::AppendReply {
                    epoch: self.epoch,
                    outcome,
                });
            }
            PeerMessage::Snapshot {
                epoch,
                index,
                index_epoch,
                map,
                commit_index,
                epochs,
            } => {
                let outcome = if self.observe_leader(from, epoch, now_ms, &mut fx) {
                    self.install_snapshot(
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
                    )
                } else {
                    Some(self.rejection())
                };
                fx.respond = outcome.map(|outcome| PeerMessage::AppendReply {
                    epoch: self.epoch,
                    outcome,
                });
            }
            PeerMessage::AppendReply { epoch, outcome } => {
                self.on_append_reply(from, epoch, outcome, now_ms, &mut fx);
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
        if self.role == Role::Leader {
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

    /// Time passes: heartbeats and resends (leader), sync-write timeouts (leader), failover
    /// (follower).
    pub fn on_tick(&mut self, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        match self.role {
            Role::Leader => {
                self.expire_pending(now_ms, &mut fx);
                if now_ms >= self.next_heartbeat_ms {
                    self.next_heartbeat_ms = now_ms + self.cfg.heartbeat_ms;
                    let last = self.log.last_index();
                    for peer in self.cfg.peers.clone() {
                        if let Some(p) = self.progress.get_mut(&peer) {
                            let unacknowledged = p.next_index > p.match_index + 1;
                            if unacknowledged
                                && now_ms >= p.last_reply_ms + self.cfg.resend_after_ms
                            {
                                p.next_index = resend_point(p.match_index, last);
                                // Once per silent window, not on every heartbeat.
                                p.last_reply_ms = now_ms;
                            }
                        }
                        self.replicate_to(&peer, now_ms, &mut fx);
                    }
                }
            }
            Role::Follower => match &self.election {
                Some(el) if now_ms >= el.deadline_ms => self.decide(now_ms, &mut fx),
                Some(_) => {}
                None if now_ms >= self.failover_deadline_ms => self.start_election(now_ms, &mut fx),
                None => {}
            },
        }
        self.finish(&mut fx);
        fx
    }

    // ---- client writes ----------------------------------------------------------------

    fn admit_write(&self) -> Result<(), ErrorReply> {
        if self.role != Role::Leader {
            return Err(ErrorReply {
                code: ErrorCode::NotLeader,
                definite: true,
                message: match &self.leader {
                    Some(l) => format!("{} is a follower; the leader is {l}", self.cfg.id),
                    None => format!("{} is a follower and knows no leader", self.cfg.id),
                },
                leader: self.leader.clone(),
            });
        }
        let uncommitted = self.log.last_index() - self.commit_index;
        if uncommitted >= self.cfg.max_uncommitted_entries {
            return Err(ErrorReply {
                code: ErrorCode::Unavailable,
                definite: true,
                message: format!(
                    "{uncommitted} entries await replication to every follower; refusing more"
                ),
                leader: None,
            });
        }
        Ok(())
    }

    fn append_write(&mut self, key: i64, value: i64, token: u64, kind: WriteKind, now_ms: u64) {
        let index = self.log.last_index() + 1;
        self.log.push(Entry {
            index,
            epoch: self.epoch,
            key,
            value,
        });
        self.regs.apply_uncommitted(key, value);
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
            self.regs.commit(entry.key, entry.value);
            self.commit_index = index;
        }
        while let Some(w) = self.pending.front() {
            if w.index > self.commit_index {
                break;
            }
            let reply = match w.kind {
                WriteKind::Write => ReplyBody::WriteOk,
                WriteKind::Cas => ReplyBody::CasOk,
            };
            fx.replies.push((w.token, ResponseResult::Ok(reply)));
            self.pending.pop_front();
        }
    }

    fn advance_commit_sync(&mut self, fx: &mut Effects) {
        let last = self.log.last_index();
        let everyone = self
            .cfg
            .peers
            .iter()
            .map(|p| self.progress.get(p).map_or(0, |p| p.match_index))
            .min()
            .unwrap_or(last);
        self.advance_commit(everyone, fx);
    }

    fn expire_pending(&mut self, now_ms: u64, fx: &mut Effects) {
        while let Some(w) = self.pending.front() {
            if w.deadline_ms > now_ms {
                break;
            }
            fx.replies.push((
                w.token,
                ResponseResult::Err(ErrorReply {
                    code: ErrorCode::Timeout,
                    definite: false,
                    message: format!(
                        "not every follower acknowledged index {} within {} ms; the write is in the leader's log and may still take effect",
                        w.index, self.cfg.sync_timeout_ms
                    ),
                    leader: None,
                }),
            ));
            self.pending.pop_front();
        }
    }

    fn fail_pending(&mut self, fx: &mut Effects) {
        for w in self.pending.drain(..) {
            fx.replies.push((
                w.token,
                ResponseResult::Err(ErrorReply {
                    code: ErrorCode::Timeout,
                    definite: false,
                    message: format!(
                        "the leader stepped down before index {} was replicated; the write may still take effect",
                        w.index
                    ),
                    leader: None,
                }),
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
                        snapshot_sent: None,
                        snapshot_only,
                    },
                )
            })
            .collect();
        self.pending.clear();
        self.next_heartbeat_ms = now_ms;
    }

    /// Sends `peer` the entries it lacks (at most `max_inflight_entries` beyond what it
    /// acknowledged), or a bare heartbeat, or a snapshot when its log cannot be repaired by
    /// entries.
    fn replicate_to(&mut self, peer: &str, now_ms: u64, fx: &mut Effects) {
        let last = self.log.last_index();
        let last_epoch = self.log.last_epoch();
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
                fx.send
                    .push((peer.to_string(), self.append_msg(last, last_epoch, vec![])));
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
            self.append_msg(prev_index, prev_epoch, entries),
        ));
    }

    fn append_msg(&self, prev_index: u64, prev_epoch: u64, entries: Vec<Entry>) -> PeerMessage {
        PeerMessage::Append {
            epoch: self.epoch,
            prev_index,
            prev_epoch,
            entries,
            commit_index: self.commit_index,
            leader_last_index: self.log.last_index(),
        }
    }

    fn send_snapshot(&mut self, peer: &str, now_ms: u64, fx: &mut Effects) {
        let index = self.log.last_index();
        let map = self.regs.head_map();
        fx.log.push(format!(
            "sending {peer} a snapshot at index {index} ({} keys)",
            map.len()
        ));
        fx.send.push((
            peer.to_string(),
            PeerMessage::Snapshot {
                epoch: self.epoch,
                index,
                index_epoch: self.log.last_epoch(),
                map,
                commit_index: self.commit_index,
                epochs: self.log.epoch_starts(),
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
        if self.role != Role::Leader || epoch < self.epoch {
            // An answer to a message from an earlier leadership of ours.
            return;
        }
        let last = self.log.last_index();
        let resend_ms = self.cfg.snapshot_resend_ms;
        let Some(p) = self.progress.get_mut(from) else {
            return;
        };
        p.last_reply_ms = now_ms;
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
                if self.cfg.replication == Replication::Sync {
                    self.advance_commit_sync(fx);
                }
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
                if let Some(other) = leader.filter(|l| id_cmp(l, &self.cfg.id).is_lt()) {
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
        true
    }

    fn rejection(&self) -> AppendOutcome {
        AppendOutcome::StaleEpoch {
            leader: self.status_leader(),
        }
    }

    fn accept_entries(&mut self, from: &str, a: AppendArgs, fx: &mut Effects) -> AppendOutcome {
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
        let new: Vec<Entry> = a.entries[first_new..].to_vec();
        for e in &new {
            self.log.push(e.clone());
            self.regs.apply_uncommitted(e.key, e.value);
        }
        if !new.is_empty() {
            fx.persist.push(Persist::Append(new));
        }
        let commit = a.commit_index.min(matched);
        if commit > self.commit_index {
            self.advance_commit(commit, fx);
        }
        self.maybe_compact(fx);
        AppendOutcome::Ok {
            match_index: matched,
        }
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
        let already_have = self.suspect_from.is_none()
            && self.log.epoch_at(index) == Some(snapshot.epoch)
            && self.log.epoch_at(index + 1).is_none_or(|e| e >= epoch);
        if already_have {
            // A resent snapshot this node already matches: nothing to discard.
            if commit_index.min(index) > self.commit_index {
                self.advance_commit(commit_index.min(index), fx);
            }
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
                    examples.push(format!(
                        "[index {} epoch {} key {} value {}]",
                        e.index, e.epoch, e.key, e.value
                    ));
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
        self.epoch = self.epoch.max(epoch);
        self.epoch_leader = leader.clone();
        self.leader = leader;
        self.role = Role::Follower;
        self.election = None;
        self.arm_failover(now_ms);
        let leader_name = self.leader.as_deref().unwrap_or("unknown").to_string();
        if was_leader {
            self.progress.clear();
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

fn into_result(result: Result<ReplyBody, ErrorReply>) -> ResponseResult {
    match result {
        Ok(r) => ResponseResult::Ok(r),
        Err(e) => ResponseResult::Err(e),
    }
}

#[cfg(test)]
mod tests;

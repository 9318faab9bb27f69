//! Leaderless replication in the style of Dynamo (DDIA ch. 5, "Leaderless Replication") as
//! effect-free handlers.
//!
//! Each key lives on `n` home replicas: the first `n` nodes of its consistent-hash preference
//! list ([`super::ring`]). Any node coordinates the requests of the clients that contact it:
//! a write gets a [`Dot`] from the coordinator and goes to all `n` replicas, and succeeds once
//! `w` of them stored it; a read asks all `n` and answers once `r` replied, with the merge of
//! their versions. There is no rollback: a write that reached fewer than `w` replicas is
//! reported as timed out but stays where it arrived, and a read concurrent with a write can
//! see it on one replica and miss it on the next, so even `w + r > n` is not linearizable.
//!
//! Concurrent writes are detected with version vectors per key and resolved as configured
//! ([`Conflict`]): siblings, last-write-wins or highest id.
//!
//! Three mechanisms bring stale replicas up to date, each switchable:
//! - **read repair**: once every replica asked has answered (or the request timed out), the
//!   coordinator sends the merged versions to each replica whose answer lacked some;
//! - **anti-entropy**: every interval a node compares, with the next peer in turn, a Merkle
//!   tree ([`super::merkle`]) over the keys both are home replicas of, descends into the
//!   ranges that differ and exchanges just those keys;
//! - **sloppy quorums with hinted handoff**: while a home replica is unreachable (not heard
//!   from for the suspicion timeout), writes and reads go to the next reachable node of the
//!   preference list instead, which keeps the versions as a *hint* for the home replica and
//!   hands them off when it is reachable again. Until then a read quorum of home replicas can
//!   miss a write that a sloppy write quorum acknowledged.

use std::collections::{BTreeMap, BTreeSet};

use crate::refnode::protocol::{
    ErrorCode, ErrorReply, Quorum, ReplicaCounters, ReplicaMessage, ReplicaStatus, ReplyBody,
    RequestBody,
};

use super::merkle::{self, MerkleTree};
use super::node::{ClientRequest, NodeId};
use super::replica::{Record, Replica, ReplicaEffects, WallClock, fresh_actor, unsupported};
use super::ring::{Ring, key_hash};
use super::version_vector::{Dot, VersionVector};
use super::versions::{self, Conflict, Datum, Version};

#[derive(Debug, Clone)]
pub struct LeaderlessConfig {
    pub id: NodeId,
    /// Every node, this one included.
    pub order: Vec<NodeId>,
    /// Replicas per key, and the write and read quorums.
    pub n: usize,
    pub w: usize,
    pub r: usize,
    pub conflict: Conflict,
    pub read_repair: bool,
    pub anti_entropy: bool,
    pub sloppy_quorum: bool,
    /// Interval of the pings that tell peers this node is alive.
    pub heartbeat_ms: u64,
    /// A peer not heard from for this long counts as unreachable.
    pub suspect_after_ms: u64,
    /// How long a coordinator waits for its quorum.
    pub request_timeout_ms: u64,
    /// How often hints are offered to their home replicas.
    pub handoff_interval_ms: u64,
    /// How often this node starts an anti-entropy comparison with the next peer.
    pub anti_entropy_interval_ms: u64,
    /// Most requests a coordinator has in flight; more are refused as `unavailable`.
    pub max_pending: usize,
    /// Most keys held as hints; beyond it a sloppy write is not acknowledged by this node.
    pub max_hinted_keys: usize,
    /// Most keys in one anti-entropy or handoff message.
    pub max_keys_per_message: usize,
    /// Compact the data file once it holds more than this many records beyond the live state.
    pub compact_after_records: usize,
    pub wall_base_ms: u64,
    pub clock_offset_ms: i64,
    pub seed: u64,
}

impl LeaderlessConfig {
    pub const MAX_PENDING: usize = 10_000;
    pub const MAX_HINTED_KEYS: usize = 100_000;
    pub const MAX_KEYS_PER_MESSAGE: usize = 256;
    pub const COMPACT_AFTER_RECORDS: usize = 20_000;
}

/// Where one request's copy goes: a home replica, or a fallback holding it for one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    node: NodeId,
    hint_for: Option<NodeId>,
}

#[derive(Debug, Clone)]
enum Kind {
    Write {
        version: Version,
    },
    Read {
        set: bool,
    },
    /// A set change: read a quorum, change the merged set, write it back.
    SetChange {
        element: i64,
        add: bool,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    /// The client's token until it has been answered.
    token: Option<u64>,
    /// Halfway to the deadline, targets that have not answered are asked once more (a
    /// message may have been dropped on a full queue or a replaced connection).
    retry_ms: Option<u64>,
    key: i64,
    kind: Kind,
    targets: Vec<Target>,
    acks: BTreeSet<NodeId>,
    answers: BTreeMap<NodeId, Vec<Version>>,
    deadline_ms: u64,
}

#[derive(Debug)]
pub struct Leaderless {
    cfg: LeaderlessConfig,
    actor: String,
    clock: WallClock,
    ring: Ring,
    store: BTreeMap<i64, Vec<Version>>,
    /// Versions held for unreachable home replicas: node -> key -> versions.
    hints: BTreeMap<NodeId, BTreeMap<i64, Vec<Version>>>,
    dot_counters: BTreeMap<i64, u64>,
    heard_ms: BTreeMap<NodeId, u64>,
    next_ping_ms: u64,
    next_handoff_ms: u64,
    next_anti_entropy_ms: u64,
    /// The peer the next anti-entropy round compares with (index into the other nodes).
    anti_entropy_turn: usize,
    pending: BTreeMap<u64, Pending>,
    next_op: u64,
    counters: ReplicaCounters,
    /// Records written since the data file was last rewritten.
    records: usize,
}

impl Leaderless {
    pub fn new(
        cfg: LeaderlessConfig,
        records: Vec<Record>,
        now_ms: u64,
    ) -> (Leaderless, ReplicaEffects) {
        let mut fx = ReplicaEffects::default();
        let clock = WallClock {
            base_ms: cfg.wall_base_ms,
            offset_ms: cfg.clock_offset_ms,
        };
        let ring = Ring::new(&cfg.order);
        // Operation ids of an earlier incarnation may still be answered on old connections;
        // start far from them.
        let next_op = (super::ring::mix64(cfg.seed ^ now_ms) >> 16).max(1);
        let record_count = records.len();
        let mut node = Leaderless {
            cfg,
            actor: String::new(),
            clock,
            ring,
            store: BTreeMap::new(),
            hints: BTreeMap::new(),
            dot_counters: BTreeMap::new(),
            heard_ms: BTreeMap::new(),
            next_ping_ms: now_ms,
            next_handoff_ms: now_ms,
            next_anti_entropy_ms: now_ms,
            anti_entropy_turn: 0,
            pending: BTreeMap::new(),
            next_op,
            counters: ReplicaCounters::default(),
            records: record_count,
        };
        let fresh = record_count == 0;
        for r in records {
            node.replay(r);
        }
        if node.actor.is_empty() {
            node.actor = fresh_actor(&node.cfg.id, clock.at(now_ms));
            node.persist(
                &mut fx,
                Record::Actor {
                    actor: node.actor.clone(),
                },
            );
        }
        // Spread the rounds of different nodes over the interval.
        let turn = node
            .cfg
            .order
            .iter()
            .position(|p| *p == node.cfg.id)
            .unwrap_or(0);
        node.anti_entropy_turn = turn;
        node.next_anti_entropy_ms = now_ms
            + node.cfg.anti_entropy_interval_ms * (turn as u64 + 1) / node.cfg.order.len() as u64;
        fx.log.push(format!(
            "leaderless (n={} w={} r={}, conflict {}, read repair {}, anti-entropy {}, sloppy quorum {}): {} as actor {}; {} keys, {} hinted keys",
            node.cfg.n,
            node.cfg.w,
            node.cfg.r,
            node.cfg.conflict.as_str(),
            on_off(node.cfg.read_repair),
            on_off(node.cfg.anti_entropy),
            on_off(node.cfg.sloppy_quorum),
            if fresh {
                "fresh data directory"
            } else {
                "recovered"
            },
            node.actor,
            node.store.len(),
            node.hinted_keys()
        ));
        (node, fx)
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// This node's own replica of `key` (hints excluded).
    pub fn versions(&self, key: i64) -> &[Version] {
        self.store.get(&key).map_or(&[], Vec::as_slice)
    }

    /// The key's home replicas.
    pub fn home(&self, key: i64) -> Vec<&str> {
        self.ring.home(key, self.cfg.n)
    }

    pub fn status(&self, now_ms: u64) -> ReplicaStatus {
        ReplicaStatus {
            node: self.cfg.id.clone(),
            replication: "leaderless".to_string(),
            conflict: self.cfg.conflict.as_str().to_string(),
            topology: None,
            home_leader_routing: false,
            quorum: Some(Quorum {
                n: self.cfg.n,
                w: self.cfg.w,
                r: self.cfg.r,
                read_repair: self.cfg.read_repair,
                anti_entropy: self.cfg.anti_entropy,
                sloppy_quorum: self.cfg.sloppy_quorum,
            }),
            keys: self.store.len(),
            max_siblings: self.store.values().map(Vec::len).max().unwrap_or(0),
            log_len: 0,
            backlog: BTreeMap::new(),
            alive: self
                .peers()
                .into_iter()
                .filter(|p| self.alive(p, now_ms))
                .collect(),
            blocked: Vec::new(),
            hints: self.hinted_keys(),
            counters: self.counters,
            clock_offset_ms: self.clock.offset_ms,
            wall_clock_ms: self.clock.at(now_ms),
        }
    }

    fn peers(&self) -> Vec<NodeId> {
        self.cfg
            .order
            .iter()
            .filter(|p| **p != self.cfg.id)
            .cloned()
            .collect()
    }

    /// Heard from within the suspicion timeout. A peer not heard from since this node
    /// started is not presumed alive: a sloppy quorum stands in for it until its first ping.
    fn alive(&self, node: &str, now_ms: u64) -> bool {
        node == self.cfg.id
            || self
                .heard_ms
                .get(node)
                .is_some_and(|t| now_ms < t + self.cfg.suspect_after_ms)
    }

    fn hinted_keys(&self) -> usize {
        self.hints.values().map(BTreeMap::len).sum()
    }

    fn persist(&mut self, fx: &mut ReplicaEffects, record: Record) {
        self.records += 1;
        fx.persist.push(record);
    }

    fn replay(&mut self, record: Record) {
        match record {
            Record::Actor { actor } => self.actor = actor,
            Record::Counter { key, counter } => {
                let c = self.dot_counters.entry(key).or_insert(0);
                *c = (*c).max(counter);
            }
            Record::Key { key, versions } => {
                self.store.insert(key, versions);
            }
            Record::Hint {
                for_node,
                key,
                versions,
            } => {
                let hints = self.hints.entry(for_node.clone()).or_default();
                if versions.is_empty() {
                    hints.remove(&key);
                    if hints.is_empty() {
                        self.hints.remove(&for_node);
                    }
                } else {
                    hints.insert(key, versions);
                }
            }
            Record::Change { .. } | Record::Received { .. } | Record::LogBase { .. } => {}
        }
    }

    /// Where a request for `key` goes: the home replicas, and with a sloppy quorum the next
    /// reachable nodes of the preference list in place of unreachable ones.
    fn targets(&self, key: i64, now_ms: u64) -> Vec<Target> {
        let list = self.ring.preference_list(key);
        let n = self.cfg.n.min(list.len());
        let (homes, rest) = list.split_at(n);
        if !self.cfg.sloppy_quorum {
            return homes
                .iter()
                .map(|h| Target {
                    node: h.to_string(),
                    hint_for: None,
                })
                .collect();
        }
        let mut fallbacks = rest.iter().filter(|f| self.alive(f, now_ms));
        homes
            .iter()
            .filter_map(|h| {
                if self.alive(h, now_ms) {
                    Some(Target {
                        node: h.to_string(),
                        hint_for: None,
                    })
                } else {
                    fallbacks.next().map(|f| Target {
                        node: f.to_string(),
                        hint_for: Some(h.to_string()),
                    })
                }
            })
            .collect()
    }

    fn next_dot(&mut self, key: i64, fx: &mut ReplicaEffects) -> Dot {
        let mut seen = versions::clock_of(self.versions(key)).max_counter(&self.actor);
        for hints in self.hints.values() {
            if let Some(vs) = hints.get(&key) {
                seen = seen.max(versions::clock_of(vs).max_counter(&self.actor));
            }
        }
        let counter = self.dot_counters.get(&key).copied().unwrap_or(0).max(seen) + 1;
        self.dot_counters.insert(key, counter);
        self.persist(fx, Record::Counter { key, counter });
        Dot::new(self.actor.clone(), counter)
    }

    /// Merges versions into this node's replica of `key` (or its hints for `hint_for`).
    /// Returns false when a hint could not be taken (the hint store is full).
    fn store_versions(
        &mut self,
        key: i64,
        incoming: Vec<Version>,
        hint_for: Option<&str>,
        fx: &mut ReplicaEffects,
    ) -> bool {
        let conflict = self.cfg.conflict;
        let (merged, record) = match hint_for.filter(|h| *h != self.cfg.id) {
            Some(h) => {
                let full = self.hinted_keys() >= self.cfg.max_hinted_keys;
                let hints = self.hints.entry(h.to_string()).or_default();
                if full && !hints.contains_key(&key) {
                    fx.log.push(format!(
                        "hint store full ({} keys): not holding key {key} for {h}",
                        self.cfg.max_hinted_keys
                    ));
                    return false;
                }
                let vs = hints.entry(key).or_default();
                let merged = versions::merge_all(conflict, vs, incoming);
                let record = Record::Hint {
                    for_node: h.to_string(),
                    key,
                    versions: vs.clone(),
                };
                (merged, record)
            }
            None => {
                let vs = self.store.entry(key).or_default();
                let merged = versions::merge_all(conflict, vs, incoming);
                (
                    merged,
                    Record::Key {
                        key,
                        versions: vs.clone(),
                    },
                )
            }
        };
        for dot in &merged.lost {
            self.counters.discarded_writes += 1;
            fx.log.push(format!(
                "conflict ({}): key {key} discarded the write {dot}, which no surviving version has seen",
                conflict.as_str()
            ));
        }
        if merged.changed {
            self.persist(fx, record);
        }
        true
    }

    /// This node's versions of `key` as a replica answers a read: its own replica merged with
    /// any hints it holds for the key.
    fn answer(&self, key: i64) -> Vec<Version> {
        let mut vs = self.versions(key).to_vec();
        for hints in self.hints.values() {
            if let Some(h) = hints.get(&key) {
                versions::merge_all(self.cfg.conflict, &mut vs, h.iter().cloned());
            }
        }
        vs
    }

    fn new_op(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    fn admit(&self) -> Result<(), ErrorReply> {
        if self.pending.len() >= self.cfg.max_pending {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                true,
                format!(
                    "{} requests are in flight at this coordinator; refusing more",
                    self.pending.len()
                ),
            ));
        }
        Ok(())
    }

    /// Sends `version` to the key's targets; answers at once when this node's own copy
    /// already makes the quorum.
    fn start_write(
        &mut self,
        token: Option<u64>,
        key: i64,
        version: Version,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) {
        let op = self.new_op();
        let targets = self.targets(key, now_ms);
        let mut acks = BTreeSet::new();
        for t in &targets {
            if t.node == self.cfg.id {
                if self.store_versions(key, vec![version.clone()], t.hint_for.as_deref(), fx) {
                    acks.insert(t.node.clone());
                }
            } else {
                fx.send.push((
                    t.node.clone(),
                    ReplicaMessage::Store {
                        op,
                        key,
                        versions: vec![version.clone()],
                        hint_for: t.hint_for.clone(),
                    },
                ));
            }
        }
        let pending = Pending {
            token,
            retry_ms: Some(now_ms + self.cfg.request_timeout_ms / 2),
            key,
            kind: Kind::Write { version },
            targets,
            acks,
            answers: BTreeMap::new(),
            deadline_ms: now_ms + self.cfg.request_timeout_ms,
        };
        self.pending.insert(op, pending);
        self.progress(op, now_ms, fx);
    }

    fn start_read(
        &mut self,
        token: u64,
        key: i64,
        kind: Kind,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) {
        let op = self.new_op();
        let targets = self.targets(key, now_ms);
        let mut answers = BTreeMap::new();
        for t in &targets {
            if t.node == self.cfg.id {
                answers.insert(t.node.clone(), self.answer(key));
            } else {
                fx.send
                    .push((t.node.clone(), ReplicaMessage::Fetch { op, key }));
            }
        }
        self.pending.insert(
            op,
            Pending {
                token: Some(token),
                retry_ms: Some(now_ms + self.cfg.request_timeout_ms / 2),
                key,
                kind,
                targets,
                acks: BTreeSet::new(),
                answers,
                deadline_ms: now_ms + self.cfg.request_timeout_ms,
            },
        );
        self.progress(op, now_ms, fx);
    }

    /// Answers the client once the quorum is there, and retires the request once every
    /// target answered (reads then repair the stale ones).
    fn progress(&mut self, op: u64, now_ms: u64, fx: &mut ReplicaEffects) {
        let Some(p) = self.pending.get(&op) else {
            return;
        };
        let (key, kind, token) = (p.key, p.kind.clone(), p.token);
        match kind {
            Kind::Write { version } => {
                let acks = p.acks.len();
                let complete = acks == p.targets.len();
                if let Some(token) = token.filter(|_| acks >= self.cfg.w) {
                    fx.reply(
                        token,
                        Ok(ReplyBody::Written {
                            context: version.clock(),
                            acks,
                        }),
                    );
                    self.answered(op);
                }
                if complete {
                    self.pending.remove(&op);
                }
            }
            Kind::Read { set } => {
                let quorum = p.answers.len() >= self.cfg.r;
                let complete = p.answers.len() == p.targets.len();
                if let Some(token) = token.filter(|_| quorum) {
                    let merged = self.merge_answers(&p.answers);
                    fx.reply(token, read_reply(key, &merged, set));
                    self.answered(op);
                }
                if complete {
                    self.finish_read(op, fx);
                }
            }
            Kind::SetChange { element, add } => {
                if p.answers.len() < self.cfg.r {
                    return;
                }
                let merged = self.merge_answers(&p.answers);
                self.pending.remove(&op);
                let mut set = match versions::set_union(&merged) {
                    Ok(set) => set,
                    Err(why) => {
                        if let Some(token) = token {
                            fx.reply(token, Err(malformed(key, why)));
                        }
                        return;
                    }
                };
                let dot = self.next_dot(key, fx);
                if add {
                    set.add(element, dot.clone());
                } else {
                    set.remove(element);
                }
                let version = Version {
                    dot,
                    context: versions::clock_of(&merged),
                    datum: Datum::Set(set),
                    ts_ms: self.clock.at(now_ms),
                    origin: self.cfg.id.clone(),
                };
                self.start_write(token, key, version, now_ms, fx);
            }
        }
    }

    fn answered(&mut self, op: u64) {
        if let Some(p) = self.pending.get_mut(&op) {
            p.token = None;
        }
    }

    fn merge_answers(&self, answers: &BTreeMap<NodeId, Vec<Version>>) -> Vec<Version> {
        let mut merged = Vec::new();
        for vs in answers.values() {
            versions::merge_all(self.cfg.conflict, &mut merged, vs.iter().cloned());
        }
        merged
    }

    /// Read repair: sends the merged versions to every replica whose answer lacked some.
    fn finish_read(&mut self, op: u64, fx: &mut ReplicaEffects) {
        let Some(p) = self.pending.remove(&op) else {
            return;
        };
        if !self.cfg.read_repair || p.answers.len() < 2 {
            return;
        }
        let merged = self.merge_answers(&p.answers);
        let want = versions::digest(p.key, &merged);
        for t in &p.targets {
            let Some(answer) = p.answers.get(&t.node) else {
                continue;
            };
            if versions::digest(p.key, answer) == want {
                continue;
            }
            self.counters.read_repairs += 1;
            if t.node == self.cfg.id {
                self.store_versions(p.key, merged.clone(), t.hint_for.as_deref(), fx);
            } else {
                fx.send.push((
                    t.node.clone(),
                    ReplicaMessage::Store {
                        op: 0,
                        key: p.key,
                        versions: merged.clone(),
                        hint_for: t.hint_for.clone(),
                    },
                ));
            }
        }
    }

    /// Asks the targets that have not answered once more, halfway to the deadline.
    fn retry(&mut self, now_ms: u64, fx: &mut ReplicaEffects) {
        for (op, p) in self.pending.iter_mut() {
            if p.retry_ms.is_none_or(|t| now_ms < t) {
                continue;
            }
            p.retry_ms = None;
            for t in p.targets.iter().filter(|t| t.node != self.cfg.id) {
                let msg = match &p.kind {
                    Kind::Write { version } if !p.acks.contains(&t.node) => ReplicaMessage::Store {
                        op: *op,
                        key: p.key,
                        versions: vec![version.clone()],
                        hint_for: t.hint_for.clone(),
                    },
                    Kind::Read { .. } | Kind::SetChange { .. }
                        if !p.answers.contains_key(&t.node) =>
                    {
                        ReplicaMessage::Fetch {
                            op: *op,
                            key: p.key,
                        }
                    }
                    _ => continue,
                };
                fx.send.push((t.node.clone(), msg));
            }
        }
    }

    fn expire(&mut self, now_ms: u64, fx: &mut ReplicaEffects) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(op, _)| *op)
            .collect();
        for op in expired {
            let Some(p) = self.pending.get_mut(&op) else {
                continue;
            };
            let timeout = self.cfg.request_timeout_ms;
            match p.kind {
                Kind::Write { .. } => {
                    if let Some(token) = p.token.take() {
                        fx.reply(
                            token,
                            Err(ErrorReply::new(
                                ErrorCode::Timeout,
                                false,
                                format!(
                                    "only {} of the {} replicas needed (w) stored key {} within {timeout} ms; the write stays on those that have it",
                                    p.acks.len(),
                                    self.cfg.w,
                                    p.key
                                ),
                            )),
                        );
                    }
                    self.pending.remove(&op);
                }
                Kind::Read { .. } | Kind::SetChange { .. } => {
                    if let Some(token) = p.token.take() {
                        fx.reply(
                            token,
                            Err(ErrorReply::new(
                                ErrorCode::Unavailable,
                                true,
                                format!(
                                    "only {} of the {} replicas needed (r) answered for key {} within {timeout} ms",
                                    p.answers.len(),
                                    self.cfg.r,
                                    p.key
                                ),
                            )),
                        );
                    }
                    if matches!(p.kind, Kind::Read { .. }) {
                        self.finish_read(op, fx);
                    } else {
                        self.pending.remove(&op);
                    }
                }
            }
        }
    }

    fn client_request(
        &mut self,
        token: u64,
        body: RequestBody,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) {
        let immediate = match body {
            RequestBody::Read { key, .. } => match self.admit() {
                Ok(()) => {
                    return self.start_read(token, key, Kind::Read { set: false }, now_ms, fx);
                }
                Err(e) => Err(e),
            },
            RequestBody::SetRead { key } => match self.admit() {
                Ok(()) => return self.start_read(token, key, Kind::Read { set: true }, now_ms, fx),
                Err(e) => Err(e),
            },
            RequestBody::Write { key, value } => {
                return self.put(token, key, value, VersionVector::new(), now_ms, fx);
            }
            RequestBody::Put {
                key,
                value,
                context,
            } => return self.put(token, key, value, context, now_ms, fx),
            RequestBody::SetAdd { key, element } | RequestBody::SetRemove { key, element } => {
                let add = matches!(body, RequestBody::SetAdd { .. });
                match self.admit() {
                    Ok(()) => {
                        return self.start_read(
                            token,
                            key,
                            Kind::SetChange { element, add },
                            now_ms,
                            fx,
                        );
                    }
                    Err(e) => Err(e),
                }
            }
            RequestBody::LocalRead { key } => {
                let vs = self.versions(key);
                let set = vs.iter().any(|v| matches!(v.datum, Datum::Set(_)));
                read_reply(key, vs, set)
            }
            RequestBody::Cas { .. } => Err(unsupported(
                "cas (there is no single copy to compare against)",
                "leaderless",
            )),
            RequestBody::Exec { .. } => Err(unsupported(
                "exec (there is no single copy to evaluate against)",
                "leaderless",
            )),
            RequestBody::Status => Ok(ReplyBody::ReplicaStatusOk(Box::new(self.status(now_ms)))),
            RequestBody::SetClock { offset_ms } => self.clock.set(offset_ms, now_ms, &mut fx.log),
            RequestBody::Block { .. } => Err(unsupported(
                "block (handled by the node's transport)",
                "this node's",
            )),
        };
        fx.reply(token, immediate);
    }

    fn put(
        &mut self,
        token: u64,
        key: i64,
        value: i64,
        context: VersionVector,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) {
        if let Err(e) = self.admit() {
            fx.reply(token, Err(e));
            return;
        }
        let dot = self.next_dot(key, fx);
        let version = Version {
            dot,
            context,
            datum: Datum::Int(value),
            ts_ms: self.clock.at(now_ms),
            origin: self.cfg.id.clone(),
        };
        self.start_write(Some(token), key, version, now_ms, fx);
    }

    // ---- hinted handoff ------------------------------------------------------------------

    fn offer_hints(&mut self, now_ms: u64, fx: &mut ReplicaEffects) {
        for (home, keys) in &self.hints {
            if !self.alive(home, now_ms) {
                continue;
            }
            for (key, vs) in keys.iter().take(self.cfg.max_keys_per_message) {
                fx.send.push((
                    home.clone(),
                    ReplicaMessage::Handoff {
                        key: *key,
                        versions: vs.clone(),
                        digest: versions::digest(*key, vs),
                    },
                ));
            }
        }
    }

    fn on_handoff_ack(&mut self, from: &str, key: i64, digest: u64, fx: &mut ReplicaEffects) {
        let Some(hints) = self.hints.get_mut(from) else {
            return;
        };
        // Only what was handed off: versions that arrived since stay for the next round.
        if hints
            .get(&key)
            .is_none_or(|vs| versions::digest(key, vs) != digest)
        {
            return;
        }
        hints.remove(&key);
        if hints.is_empty() {
            self.hints.remove(from);
        }
        self.counters.handed_off += 1;
        self.persist(
            fx,
            Record::Hint {
                for_node: from.to_string(),
                key,
                versions: Vec::new(),
            },
        );
        if !self.hints.contains_key(from) {
            fx.log
                .push(format!("hinted handoff: every hint for {from} delivered"));
        }
    }

    // ---- anti-entropy --------------------------------------------------------------------

    /// The Merkle tree of the keys this node and `peer` are both home replicas of.
    fn tree_with(&self, peer: &str) -> MerkleTree {
        let mut items: Vec<(u64, u64)> = self
            .shared_keys(peer)
            .map(|(k, vs)| (key_hash(k), versions::digest(k, vs)))
            .collect();
        items.sort_unstable();
        MerkleTree::build(items)
    }

    fn shared_keys<'a>(&'a self, peer: &'a str) -> impl Iterator<Item = (i64, &'a [Version])> + 'a {
        let n = self.cfg.n;
        self.store
            .iter()
            .filter(move |(k, _)| {
                self.ring.is_home(**k, n, peer) && self.ring.is_home(**k, n, &self.cfg.id)
            })
            .map(|(k, vs)| (*k, vs.as_slice()))
    }

    /// Our versions of the shared keys in `leaves`, at most one message's worth.
    fn keys_in(&self, peer: &str, leaves: &[u32]) -> Vec<(i64, Vec<Version>)> {
        let leaves: BTreeSet<u32> = leaves.iter().copied().collect();
        self.shared_keys(peer)
            .filter(|(k, _)| leaves.contains(&merkle::leaf_of(key_hash(*k))))
            .take(self.cfg.max_keys_per_message)
            .map(|(k, vs)| (k, vs.to_vec()))
            .collect()
    }

    fn start_anti_entropy(&mut self, now_ms: u64, fx: &mut ReplicaEffects) {
        let peers = self.peers();
        if peers.is_empty() {
            return;
        }
        // Next peer in turn that is reachable; an unreachable one is skipped this round.
        for _ in 0..peers.len() {
            self.anti_entropy_turn = (self.anti_entropy_turn + 1) % peers.len();
            let peer = peers[self.anti_entropy_turn].clone();
            if self.alive(&peer, now_ms) {
                let tree = self.tree_with(&peer);
                fx.send.push((
                    peer,
                    ReplicaMessage::Tree {
                        session: now_ms,
                        level: 0,
                        nodes: vec![(0, tree.root())],
                    },
                ));
                return;
            }
        }
    }

    fn on_tree(
        &mut self,
        from: &str,
        session: u64,
        level: u8,
        nodes: Vec<(u32, u64)>,
        fx: &mut ReplicaEffects,
    ) {
        if level > merkle::DEPTH {
            return;
        }
        let tree = self.tree_with(from);
        let differing = tree.differing(level, &nodes);
        if differing.is_empty() {
            self.counters.anti_entropy_rounds += 1;
            return;
        }
        // On this node's own link, not as an answer: the exchange goes back and forth, and
        // an answer to an answer has no connection to travel on.
        let next = if level == merkle::DEPTH {
            ReplicaMessage::SyncKeys {
                session,
                keys: self.keys_in(from, &differing),
                leaves: differing,
                reply: false,
            }
        } else {
            ReplicaMessage::Tree {
                session,
                level: level + 1,
                nodes: tree.children_of(level, &differing),
            }
        };
        fx.send.push((from.to_string(), next));
    }

    fn on_sync_keys(
        &mut self,
        from: &str,
        session: u64,
        leaves: Vec<u32>,
        keys: Vec<(i64, Vec<Version>)>,
        reply: bool,
        fx: &mut ReplicaEffects,
    ) {
        let n = self.cfg.n;
        for (key, vs) in keys {
            // Only keys this node is a home replica of: anything else is not its to keep.
            if !self.ring.is_home(key, n, &self.cfg.id) {
                continue;
            }
            let before = versions::digest(key, self.versions(key));
            self.store_versions(key, vs, None, fx);
            if versions::digest(key, self.versions(key)) != before {
                self.counters.anti_entropy_keys += 1;
            }
        }
        if reply {
            self.counters.anti_entropy_rounds += 1;
        } else {
            fx.send.push((
                from.to_string(),
                ReplicaMessage::SyncKeys {
                    session,
                    keys: self.keys_in(from, &leaves),
                    leaves,
                    reply: true,
                },
            ));
        }
    }

    /// Rewrites the data file as the live state once dead records dominate it.
    fn maybe_compact(&mut self, fx: &mut ReplicaEffects) {
        let live = 1 + self.dot_counters.len() + self.store.len() + self.hinted_keys();
        if self.records <= live + self.cfg.compact_after_records {
            return;
        }
        let mut records = Vec::with_capacity(live);
        records.push(Record::Actor {
            actor: self.actor.clone(),
        });
        for (key, counter) in &self.dot_counters {
            records.push(Record::Counter {
                key: *key,
                counter: *counter,
            });
        }
        for (key, versions) in &self.store {
            records.push(Record::Key {
                key: *key,
                versions: versions.clone(),
            });
        }
        for (node, keys) in &self.hints {
            for (key, versions) in keys {
                records.push(Record::Hint {
                    for_node: node.clone(),
                    key: *key,
                    versions: versions.clone(),
                });
            }
        }
        fx.log.push(format!(
            "compacting the data file: {} records down to {}",
            self.records,
            records.len()
        ));
        self.records = records.len();
        fx.rewrite = Some(records);
    }
}

impl Replica for Leaderless {
    fn on_client(&mut self, batch: Vec<ClientRequest>, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        for req in batch {
            self.client_request(req.token, req.body, now_ms, &mut fx);
        }
        self.maybe_compact(&mut fx);
        fx
    }

    fn on_peer(&mut self, from: &str, msg: ReplicaMessage, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        if !self.cfg.order.iter().any(|p| p == from) || from == self.cfg.id {
            return fx;
        }
        self.heard_ms.insert(from.to_string(), now_ms);
        match msg {
            ReplicaMessage::Ping => {}
            ReplicaMessage::Store {
                op,
                key,
                versions,
                hint_for,
            } => {
                let stored = self.store_versions(key, versions, hint_for.as_deref(), &mut fx);
                if op != 0 && stored {
                    fx.respond = Some(ReplicaMessage::StoreAck { op });
                }
            }
            ReplicaMessage::StoreAck { op } => {
                if let Some(p) = self.pending.get_mut(&op) {
                    if p.targets.iter().any(|t| t.node == from) {
                        p.acks.insert(from.to_string());
                    }
                }
                self.progress(op, now_ms, &mut fx);
            }
            ReplicaMessage::Fetch { op, key } => {
                fx.respond = Some(ReplicaMessage::FetchReply {
                    op,
                    versions: self.answer(key),
                });
            }
            ReplicaMessage::FetchReply { op, versions } => {
                if let Some(p) = self.pending.get_mut(&op) {
                    if p.targets.iter().any(|t| t.node == from) {
                        p.answers.insert(from.to_string(), versions);
                    }
                }
                self.progress(op, now_ms, &mut fx);
            }
            ReplicaMessage::Handoff {
                key,
                versions,
                digest,
            } => {
                self.store_versions(key, versions, None, &mut fx);
                fx.respond = Some(ReplicaMessage::HandoffAck { key, digest });
            }
            ReplicaMessage::HandoffAck { key, digest } => {
                self.on_handoff_ack(from, key, digest, &mut fx);
            }
            ReplicaMessage::Tree {
                session,
                level,
                nodes,
            } => {
                if self.cfg.anti_entropy {
                    self.on_tree(from, session, level, nodes, &mut fx);
                }
            }
            ReplicaMessage::SyncKeys {
                session,
                leaves,
                keys,
                reply,
            } => {
                if self.cfg.anti_entropy {
                    self.on_sync_keys(from, session, leaves, keys, reply, &mut fx);
                }
            }
            // Multi-leader messages: a misconfigured cluster mixing designs.
            ReplicaMessage::Changes { .. } | ReplicaMessage::ChangesAck { .. } => {}
        }
        self.maybe_compact(&mut fx);
        fx
    }

    fn on_peer_connected(&mut self, _peer: &str, _now_ms: u64) -> ReplicaEffects {
        // Requests in flight on the old connection time out; hints and anti-entropy retry
        // on their own schedule.
        ReplicaEffects::default()
    }

    fn on_tick(&mut self, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        if now_ms >= self.next_ping_ms {
            self.next_ping_ms = now_ms + self.cfg.heartbeat_ms;
            for p in self.peers() {
                fx.send.push((p, ReplicaMessage::Ping));
            }
        }
        self.retry(now_ms, &mut fx);
        self.expire(now_ms, &mut fx);
        if now_ms >= self.next_handoff_ms {
            self.next_handoff_ms = now_ms + self.cfg.handoff_interval_ms;
            self.offer_hints(now_ms, &mut fx);
        }
        if self.cfg.anti_entropy && now_ms >= self.next_anti_entropy_ms {
            self.next_anti_entropy_ms = now_ms + self.cfg.anti_entropy_interval_ms;
            self.start_anti_entropy(now_ms, &mut fx);
        }
        self.maybe_compact(&mut fx);
        fx
    }
}

fn read_reply(key: i64, vs: &[Version], set: bool) -> Result<ReplyBody, ErrorReply> {
    if set {
        let s = versions::set_union(vs).map_err(|e| malformed(key, e))?;
        return Ok(ReplyBody::SetValue {
            elements: s.elements(),
            siblings: vs.len(),
        });
    }
    Ok(ReplyBody::Versions {
        values: versions::int_values(vs),
        siblings: vs.len(),
        context: versions::clock_of(vs),
    })
}

fn malformed(key: i64, why: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::Malformed, true, format!("key {key}: {why}"))
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

#[cfg(test)]
mod tests;

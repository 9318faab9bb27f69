//! Multi-leader replication (DDIA ch. 5, "Multi-Leader Replication") as effect-free handlers.
//!
//! Every node is a leader: it accepts writes, applies them at once, acknowledges them, and
//! replicates them asynchronously. Each node keeps a durable *change log* of everything it
//! applied, its own writes and the changes it received, and sends its neighbours the
//! entries the [`Topology`] routes to them:
//!
//! - `all-to-all`: every node sends its own writes to every other node;
//! - `circular`: every node sends everything it applies to its successor in configured order;
//! - `star`: the first configured node is the centre; the others send their own writes to it,
//!   and it sends everything to every other node.
//!
//! A change carries the ids of the nodes it has passed through, origin first, and a node
//! ignores a change that already names it (the chapter's loop prevention). A failed node on a
//! circle or a failed centre interrupts the flow of changes between the others, as the
//! chapter warns; all-to-all tolerates it but can deliver causally dependent writes out of
//! order (an update before the insert it depends on). The conflict rule
//! ([`super::versions::Conflict`]) decides what survives: with `siblings` the version vectors
//! recognise the late insert as already superseded, and nothing concurrent is lost.
//!
//! Links are reliable on top of lossy messages: a batch names the sender's log position it
//! continues (`after`), the receiver takes it only without a gap and acknowledges what it has
//! persisted, and the sender resends from the acknowledged position when a batch was refused,
//! a connection was replaced, or the peer has been silent for the resend interval.
//!
//! With `home_leader_routing`, each key has one home leader (the first node of its
//! consistent-hash preference list) and other nodes refuse writes to it with `not-leader`
//! naming it: the chapter's conflict avoidance.
//!
//! The log is compacted once it is long: entries every out-neighbour has acknowledged are
//! dropped and the data file is rewritten as the live state. A peer that lost its data
//! (wiped) and needs dropped entries gets a snapshot of every key instead, which also brings
//! it the writes nobody forwards to it under all-to-all replication. A peer that stays down
//! holds compaction back: its backlog is the log.

use std::collections::{BTreeMap, VecDeque};

use crate::refnode::protocol::{
    Change, ChangeEntry, ErrorCode, ErrorReply, ReplicaCounters, ReplicaMessage, ReplicaStatus,
    ReplyBody, RequestBody,
};

use super::node::{ClientRequest, NodeId};
use super::replica::{
    Record, Replica, ReplicaEffects, WallClock, fresh_actor, next_random, unsupported,
};
use super::ring::Ring;
use super::statement::Stmt;
use super::version_vector::{Dot, VersionVector};
use super::versions::{self, Conflict, Datum, SetState, Version};

/// Which way changes travel between the leaders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// Each node forwards everything to the next in configured order, the last to the first.
    Circular,
    /// The first configured node relays between all the others.
    Star,
    /// Every node sends its own writes to every other.
    AllToAll,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Circular => "circular",
            Topology::Star => "star",
            Topology::AllToAll => "all-to-all",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MultiLeaderConfig {
    pub id: NodeId,
    /// Every node, this one included, in configured order (the circle's order; the first is
    /// the star's centre).
    pub order: Vec<NodeId>,
    pub topology: Topology,
    pub conflict: Conflict,
    pub home_leader_routing: bool,
    /// Interval of the empty batches that keep acknowledgements flowing.
    pub heartbeat_ms: u64,
    /// With entries unacknowledged and no acknowledgement for this long, resend them.
    pub resend_after_ms: u64,
    /// A peer not heard from for this long is reported as not alive in `status`.
    pub suspect_after_ms: u64,
    /// Most entries per batch.
    pub max_batch_entries: usize,
    /// Most log positions sent beyond what a peer acknowledged, so a slow peer costs bounded
    /// bandwidth and queue space.
    pub max_inflight_entries: u64,
    /// Compact once the change log holds more entries than this (and every peer this node
    /// sends to has acknowledged some of them).
    pub compact_after_entries: usize,
    pub wall_base_ms: u64,
    pub clock_offset_ms: i64,
    pub seed: u64,
}

impl MultiLeaderConfig {
    pub const MAX_BATCH_ENTRIES: usize = 256;
    pub const MAX_INFLIGHT_ENTRIES: u64 = 1024;
    pub const COMPACT_AFTER_ENTRIES: usize = 10_000;
}

/// A change at its position in this node's log.
#[derive(Debug, Clone)]
struct LogEntry {
    index: u64,
    change: Change,
    /// The peer it came from and its index there; `None` for this node's own writes.
    from: Option<(NodeId, u64)>,
}

/// This node's view of one peer it sends to.
#[derive(Debug, Clone)]
struct OutLink {
    /// The peer has taken this node's log up to here.
    acked: u64,
    /// Sent up to here (entries beyond `acked` may still be in flight).
    sent: u64,
    /// When the last acknowledgement arrived (or the link was reset).
    progress_ms: u64,
    next_heartbeat_ms: u64,
}

#[derive(Debug)]
pub struct MultiLeader {
    cfg: MultiLeaderConfig,
    actor: String,
    clock: WallClock,
    ring: Ring,
    store: BTreeMap<i64, Vec<Version>>,
    /// This actor's dot counter per key.
    dot_counters: BTreeMap<i64, u64>,
    /// The change log; `log[0]` has index `log_base + 1`.
    log: VecDeque<LogEntry>,
    log_base: u64,
    /// Per peer: its log has been taken up to here.
    received: BTreeMap<NodeId, u64>,
    out: BTreeMap<NodeId, OutLink>,
    heard_ms: BTreeMap<NodeId, u64>,
    counters: ReplicaCounters,
    rng: u64,
}

impl MultiLeader {
    /// Builds the node from its data file's records (none for a fresh directory).
    pub fn new(
        cfg: MultiLeaderConfig,
        records: Vec<Record>,
        now_ms: u64,
    ) -> (MultiLeader, ReplicaEffects) {
        let mut fx = ReplicaEffects::default();
        let clock = WallClock {
            base_ms: cfg.wall_base_ms,
            offset_ms: cfg.clock_offset_ms,
        };
        let ring = Ring::new(&cfg.order);
        let rng = cfg.seed;
        let mut node = MultiLeader {
            cfg,
            actor: String::new(),
            clock,
            ring,
            store: BTreeMap::new(),
            dot_counters: BTreeMap::new(),
            log: VecDeque::new(),
            log_base: 0,
            received: BTreeMap::new(),
            out: BTreeMap::new(),
            heard_ms: BTreeMap::new(),
            counters: ReplicaCounters::default(),
            rng,
        };
        let fresh = records.is_empty();
        for r in records {
            node.replay(r);
        }
        if node.actor.is_empty() {
            node.actor = fresh_actor(&node.cfg.id, clock.at(now_ms));
            fx.persist.push(Record::Actor {
                actor: node.actor.clone(),
            });
        }
        let last = node.last_index();
        for peer in node.out_neighbours() {
            node.out.insert(
                peer,
                OutLink {
                    acked: 0,
                    // Optimistic: the peer's answer to the first batch says where it is.
                    sent: last,
                    progress_ms: now_ms,
                    next_heartbeat_ms: now_ms,
                },
            );
        }
        for p in node.peers() {
            node.heard_ms.insert(p, now_ms);
        }
        fx.log.push(format!(
            "multi-leader ({} topology, conflict {}{}): {} as actor {}; {} keys, change log up to {}",
            node.cfg.topology.as_str(),
            node.cfg.conflict.as_str(),
            if node.cfg.home_leader_routing {
                ", home-leader routing"
            } else {
                ""
            },
            if fresh {
                "fresh data directory"
            } else {
                "recovered"
            },
            node.actor,
            node.store.len(),
            last
        ));
        (node, fx)
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// This node's replica of `key`.
    pub fn versions(&self, key: i64) -> &[Version] {
        self.store.get(&key).map_or(&[], Vec::as_slice)
    }

    /// The node whose writes to `key` home-leader routing accepts.
    pub fn home_leader(&self, key: i64) -> &str {
        self.ring.home(key, 1)[0]
    }

    pub fn status(&self, now_ms: u64) -> ReplicaStatus {
        let last = self.last_index();
        ReplicaStatus {
            node: self.cfg.id.clone(),
            replication: "multi-leader".to_string(),
            conflict: self.cfg.conflict.as_str().to_string(),
            topology: Some(self.cfg.topology.as_str().to_string()),
            home_leader_routing: self.cfg.home_leader_routing,
            quorum: None,
            keys: self.store.len(),
            max_siblings: self.store.values().map(Vec::len).max().unwrap_or(0),
            log_len: last,
            backlog: self
                .out
                .iter()
                .map(|(p, l)| (p.clone(), last.saturating_sub(l.acked)))
                .collect(),
            alive: self
                .heard_ms
                .iter()
                .filter(|(_, t)| now_ms < **t + self.cfg.suspect_after_ms)
                .map(|(p, _)| p.clone())
                .collect(),
            blocked: Vec::new(),
            hints: 0,
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

    fn centre(&self) -> &str {
        &self.cfg.order[0]
    }

    fn successor(&self) -> Option<NodeId> {
        let n = self.cfg.order.len();
        let me = self.cfg.order.iter().position(|p| *p == self.cfg.id)?;
        let next = &self.cfg.order[(me + 1) % n];
        (*next != self.cfg.id).then(|| next.clone())
    }

    /// The peers this node sends changes to.
    fn out_neighbours(&self) -> Vec<NodeId> {
        match self.cfg.topology {
            Topology::AllToAll => self.peers(),
            Topology::Circular => self.successor().into_iter().collect(),
            Topology::Star if self.cfg.id == self.centre() => self.peers(),
            Topology::Star => vec![self.centre().to_string()],
        }
    }

    /// Whether the topology routes `entry` to `peer` (an out-neighbour). A change never goes
    /// straight back to the peer it came from; beyond that, loops end at the receiver, which
    /// ignores a change whose path names it.
    fn routes(&self, entry: &LogEntry, peer: &str) -> bool {
        if entry.from.as_ref().is_some_and(|(f, _)| f == peer) {
            return false;
        }
        match self.cfg.topology {
            Topology::AllToAll => entry.from.is_none(),
            Topology::Circular => true,
            Topology::Star => self.cfg.id == self.centre() || entry.from.is_none(),
        }
    }

    fn last_index(&self) -> u64 {
        self.log_base + self.log.len() as u64
    }

    fn entry(&self, index: u64) -> Option<&LogEntry> {
        let offset = index.checked_sub(self.log_base + 1)?;
        let e = self.log.get(usize::try_from(offset).ok()?)?;
        debug_assert_eq!(e.index, index, "the change log has no gaps");
        Some(e)
    }

    fn replay(&mut self, record: Record) {
        match record {
            Record::Actor { actor } => self.actor = actor,
            Record::Counter { key, counter } => {
                let c = self.dot_counters.entry(key).or_insert(0);
                *c = (*c).max(counter);
            }
            Record::Change {
                index,
                change,
                from,
            } => {
                if let Some((peer, at)) = &from {
                    let r = self.received.entry(peer.clone()).or_insert(0);
                    *r = (*r).max(*at);
                }
                let versions = self.store.entry(change.key).or_default();
                versions::merge(self.cfg.conflict, versions, change.version.clone());
                if index == self.last_index() + 1 {
                    self.log.push_back(LogEntry {
                        index,
                        change,
                        from,
                    });
                }
            }
            Record::Received { from, upto } => {
                let r = self.received.entry(from).or_insert(0);
                *r = (*r).max(upto);
            }
            Record::Key { key, versions } => {
                self.store.insert(key, versions);
            }
            Record::LogBase { index } => {
                if index > self.last_index() {
                    self.log.clear();
                    self.log_base = index;
                }
            }
            Record::Hint { .. } => {}
        }
    }

    /// The dot this actor's next write to `key` gets; [`MultiLeader::take_dot`] claims it.
    fn peek_dot(&self, key: i64) -> Dot {
        let seen = versions::clock_of(self.versions(key)).max_counter(&self.actor);
        let counter = self.dot_counters.get(&key).copied().unwrap_or(0).max(seen) + 1;
        Dot::new(self.actor.clone(), counter)
    }

    fn take_dot(&mut self, key: i64, dot: &Dot, fx: &mut ReplicaEffects) {
        self.dot_counters.insert(key, dot.counter);
        fx.persist.push(Record::Counter {
            key,
            counter: dot.counter,
        });
    }

    /// Applies a write accepted here and appends it to the change log; returns the version.
    fn local_write(
        &mut self,
        key: i64,
        dot: Dot,
        datum: Datum,
        context: VersionVector,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) -> Version {
        let version = Version {
            dot,
            context,
            datum,
            ts_ms: self.clock.at(now_ms),
            origin: self.cfg.id.clone(),
        };
        let change = Change {
            key,
            version: version.clone(),
            path: vec![self.cfg.id.clone()],
        };
        self.apply(change, None, fx);
        version
    }

    /// Merges a change into the store and appends it to the log (persisted).
    fn apply(&mut self, change: Change, from: Option<(NodeId, u64)>, fx: &mut ReplicaEffects) {
        let index = self.last_index() + 1;
        let versions = self.store.entry(change.key).or_default();
        let merged = versions::merge(self.cfg.conflict, versions, change.version.clone());
        for dot in &merged.lost {
            self.counters.discarded_writes += 1;
            fx.log.push(format!(
                "conflict ({}): key {} discarded the write {dot}, which no surviving version has seen",
                self.cfg.conflict.as_str(),
                change.key
            ));
        }
        fx.persist.push(Record::Change {
            index,
            change: change.clone(),
            from: from.clone(),
        });
        self.log.push_back(LogEntry {
            index,
            change,
            from,
        });
    }

    /// Home-leader routing: refuses a write to a key homed elsewhere.
    fn may_write(&self, key: i64) -> Result<(), ErrorReply> {
        if !self.cfg.home_leader_routing {
            return Ok(());
        }
        let home = self.home_leader(key);
        if home == self.cfg.id {
            return Ok(());
        }
        let mut e = ErrorReply::new(
            ErrorCode::NotLeader,
            true,
            format!(
                "home-leader routing: key {key} is written at {home}, not {}",
                self.cfg.id
            ),
        );
        e.leader = Some(home.to_string());
        Err(e)
    }

    fn read_reply(&self, key: i64) -> Result<ReplyBody, ErrorReply> {
        let vs = self.versions(key);
        if vs.iter().any(|v| matches!(v.datum, Datum::Set(_))) {
            return self.set_reply(key);
        }
        Ok(ReplyBody::Versions {
            values: versions::int_values(vs),
            siblings: vs.len(),
            context: versions::clock_of(vs),
        })
    }

    fn set_reply(&self, key: i64) -> Result<ReplyBody, ErrorReply> {
        let vs = self.versions(key);
        let set = versions::set_union(vs).map_err(|e| malformed(key, e))?;
        Ok(ReplyBody::SetValue {
            elements: set.elements(),
            siblings: vs.len(),
        })
    }

    /// A write of `datum` built from this node's current versions of `key` (cas, statements,
    /// set changes): it has seen, and so supersedes, all of them.
    fn write_over_local(
        &mut self,
        key: i64,
        build: impl FnOnce(&[Version], &Dot) -> Result<Datum, ErrorReply>,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) -> Result<Version, ErrorReply> {
        self.may_write(key)?;
        let context = versions::clock_of(self.versions(key));
        let dot = self.peek_dot(key);
        // A refused operation (cas mismatch, wrong type) claims no dot.
        let datum = build(self.versions(key), &dot)?;
        self.take_dot(key, &dot, fx);
        Ok(self.local_write(key, dot, datum, context, now_ms, fx))
    }

    fn client_request(
        &mut self,
        body: RequestBody,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) -> Result<ReplyBody, ErrorReply> {
        match body {
            RequestBody::Read {
                key, leader_only, ..
            } => {
                if leader_only {
                    self.may_write(key)?;
                }
                self.read_reply(key)
            }
            RequestBody::LocalRead { key } => self.read_reply(key),
            RequestBody::SetRead { key } => self.set_reply(key),
            RequestBody::Write { key, value } => {
                self.put(key, value, VersionVector::new(), now_ms, fx)
            }
            RequestBody::Put {
                key,
                value,
                context,
            } => self.put(key, value, context, now_ms, fx),
            RequestBody::Cas { key, from, to } => {
                let v = self.write_over_local(
                    key,
                    |vs, _| match versions::single_int(vs) {
                        Ok(Some(x)) if x == from => Ok(Datum::Int(to)),
                        Ok(other) => Err(ErrorReply::new(
                            ErrorCode::CasMismatch,
                            true,
                            format!(
                                "key {key} holds {}, not {from}",
                                other.map_or("nothing".to_string(), |x| x.to_string())
                            ),
                        )),
                        Err(why) => Err(ErrorReply::new(ErrorCode::CasMismatch, true, why)),
                    },
                    now_ms,
                    fx,
                )?;
                Ok(ReplyBody::Written {
                    context: v.clock(),
                    acks: 1,
                })
            }
            RequestBody::Exec { key, stmt } => {
                let stmt = Stmt::parse(&stmt)
                    .map_err(|e| ErrorReply::new(ErrorCode::Malformed, true, e))?;
                let wall = self.clock.at(now_ms);
                let random = if stmt == Stmt::SetRand {
                    next_random(&mut self.rng)
                } else {
                    0
                };
                let v = self.write_over_local(
                    key,
                    |vs, _| {
                        let before = versions::single_int(vs).map_err(|e| malformed(key, e))?;
                        Ok(Datum::Int(stmt.eval(before, wall, random)))
                    },
                    now_ms,
                    fx,
                )?;
                let value = match v.datum {
                    Datum::Int(x) => x,
                    Datum::Set(_) => 0,
                };
                Ok(ReplyBody::ExecOk {
                    value,
                    index: self.last_index(),
                })
            }
            RequestBody::SetAdd { key, element } => {
                let v = self.write_over_local(
                    key,
                    |vs, dot| {
                        let mut s = set_of(key, vs)?;
                        s.add(element, dot.clone());
                        Ok(Datum::Set(s))
                    },
                    now_ms,
                    fx,
                )?;
                Ok(ReplyBody::Written {
                    context: v.clock(),
                    acks: 1,
                })
            }
            RequestBody::SetRemove { key, element } => {
                let v = self.write_over_local(
                    key,
                    |vs, _| {
                        let mut s = set_of(key, vs)?;
                        s.remove(element);
                        Ok(Datum::Set(s))
                    },
                    now_ms,
                    fx,
                )?;
                Ok(ReplyBody::Written {
                    context: v.clock(),
                    acks: 1,
                })
            }
            RequestBody::Status => Ok(ReplyBody::ReplicaStatusOk(Box::new(self.status(now_ms)))),
            RequestBody::SetClock { offset_ms } => self.clock.set(offset_ms, now_ms, &mut fx.log),
            RequestBody::Block { .. } => Err(unsupported(
                "block (handled by the node's transport)",
                "this node's",
            )),
        }
    }

    fn put(
        &mut self,
        key: i64,
        value: i64,
        context: VersionVector,
        now_ms: u64,
        fx: &mut ReplicaEffects,
    ) -> Result<ReplyBody, ErrorReply> {
        self.may_write(key)?;
        let dot = self.peek_dot(key);
        self.take_dot(key, &dot, fx);
        let v = self.local_write(key, dot, Datum::Int(value), context, now_ms, fx);
        Ok(ReplyBody::Written {
            context: v.clock(),
            acks: 1,
        })
    }

    /// Sends `peer` what it lacks of the entries routed to it, within the in-flight window;
    /// with nothing to send and a heartbeat due, an empty batch.
    fn pump(&mut self, peer: &str, now_ms: u64, fx: &mut ReplicaEffects) {
        let last = self.last_index();
        let Some(link) = self.out.get(peer).cloned() else {
            return;
        };
        let window_end = last.min(link.acked + self.cfg.max_inflight_entries);
        let mut entries = Vec::new();
        let mut upto = link.sent;
        let mut index = link.sent + 1;
        // Bounded by the window.
        while index <= window_end && entries.len() < self.cfg.max_batch_entries {
            if let Some(e) = self.entry(index) {
                if self.routes(e, peer) {
                    entries.push(ChangeEntry {
                        index,
                        change: e.change.clone(),
                    });
                }
            }
            upto = index;
            index += 1;
        }
        let heartbeat_due = now_ms >= link.next_heartbeat_ms;
        if upto == link.sent && !heartbeat_due {
            return;
        }
        fx.send.push((
            peer.to_string(),
            ReplicaMessage::Changes {
                after: link.sent,
                upto,
                entries,
            },
        ));
        if let Some(l) = self.out.get_mut(peer) {
            if l.sent == l.acked {
                // A new flight: the resend interval counts from now, not from the last
                // acknowledgement, which may be long ago.
                l.progress_ms = now_ms;
            }
            l.sent = upto;
            l.next_heartbeat_ms = now_ms + self.cfg.heartbeat_ms;
        }
    }

    fn pump_all(&mut self, now_ms: u64, fx: &mut ReplicaEffects) {
        let peers: Vec<NodeId> = self.out.keys().cloned().collect();
        for p in peers {
            self.pump(&p, now_ms, fx);
        }
    }

    fn on_changes(
        &mut self,
        from: &str,
        after: u64,
        upto: u64,
        mut entries: Vec<ChangeEntry>,
        fx: &mut ReplicaEffects,
    ) {
        let received = self.received.get(from).copied().unwrap_or(0);
        if after > received {
            // A batch before this one was lost: have the sender go back.
            fx.respond = Some(ReplicaMessage::ChangesAck {
                received,
                gap: true,
            });
            return;
        }
        entries.sort_by_key(|e| e.index);
        for e in entries {
            if e.index <= received || e.index > upto {
                continue;
            }
            if e.change.path.contains(&self.cfg.id) {
                self.counters.ignored_loops += 1;
                continue;
            }
            let mut change = e.change;
            change.path.push(self.cfg.id.clone());
            self.apply(change, Some((from.to_string(), e.index)), fx);
        }
        if upto > received {
            self.received.insert(from.to_string(), upto);
            fx.persist.push(Record::Received {
                from: from.to_string(),
                upto,
            });
        }
        fx.respond = Some(ReplicaMessage::ChangesAck {
            received: received.max(upto),
            gap: false,
        });
    }

    /// Returns true when the peer lost what it had acknowledged (a wiped data directory).
    fn on_ack(&mut self, from: &str, received: u64, gap: bool, now_ms: u64) -> bool {
        let last = self.last_index();
        let Some(link) = self.out.get_mut(from) else {
            return false;
        };
        let received = received.min(last);
        let regressed = received < link.acked;
        if received > link.acked {
            link.progress_ms = now_ms;
        }
        if regressed || gap {
            // A batch was lost, or the peer lost what it had acknowledged (a wiped data
            // directory): go on from what it has now.
            link.sent = received;
            link.progress_ms = now_ms;
        }
        link.acked = received;
        link.sent = link.sent.max(received);
        regressed
    }

    /// Sends `peer` every key this node holds, for a peer that lost its data: the log brings
    /// it this node's own writes again, but under all-to-all replication nobody forwards the
    /// others' writes, nor its own from before the loss.
    fn send_snapshot(&self, peer: &str, fx: &mut ReplicaEffects) {
        let keys: Vec<(i64, Vec<Version>)> =
            self.store.iter().map(|(k, v)| (*k, v.clone())).collect();
        for chunk in keys.chunks(SNAPSHOT_KEYS_PER_MESSAGE) {
            fx.send.push((
                peer.to_string(),
                ReplicaMessage::SyncKeys {
                    session: 0,
                    leaves: Vec::new(),
                    keys: chunk.to_vec(),
                    reply: true,
                },
            ));
        }
    }

    /// Merges a peer's snapshot into the store (not the log: the peer forwards what it has).
    fn on_snapshot(&mut self, from: &str, keys: Vec<(i64, Vec<Version>)>, fx: &mut ReplicaEffects) {
        let mut changed = 0;
        for (key, incoming) in keys {
            let versions = self.store.entry(key).or_default();
            let merged = versions::merge_all(self.cfg.conflict, versions, incoming);
            self.counters.discarded_writes += merged.lost.len() as u64;
            if merged.changed {
                changed += 1;
                fx.persist.push(Record::Key {
                    key,
                    versions: versions.clone(),
                });
            }
        }
        fx.log.push(format!(
            "took a snapshot from {from}, which saw this node lose its data: {changed} keys changed"
        ));
    }
}

/// Keys per snapshot message, so that one message stays far below the line limit.
const SNAPSHOT_KEYS_PER_MESSAGE: usize = 512;

impl MultiLeader {
    /// Drops the log entries every peer this node sends to has acknowledged, once the log
    /// is long, and rewrites the data file as the live state. A peer that later turns out
    /// to lack dropped entries (a wiped one) gets a snapshot instead (see `on_ack`).
    fn maybe_compact(&mut self, fx: &mut ReplicaEffects) {
        if self.log.len() <= self.cfg.compact_after_entries {
            return;
        }
        let acked = self
            .out
            .values()
            .map(|l| l.acked)
            .min()
            .unwrap_or_else(|| self.last_index());
        if acked <= self.log_base {
            return;
        }
        let drop = usize::try_from(acked - self.log_base).unwrap_or(usize::MAX);
        self.log.drain(..drop.min(self.log.len()));
        self.log_base = acked;
        // Replay order matters: the kept changes re-merge first, then the key records put
        // the store back exactly as it is (arrival-order resolution is not idempotent).
        let mut records = vec![Record::Actor {
            actor: self.actor.clone(),
        }];
        records.extend(
            self.dot_counters
                .iter()
                .map(|(key, counter)| Record::Counter {
                    key: *key,
                    counter: *counter,
                }),
        );
        records.push(Record::LogBase {
            index: self.log_base,
        });
        records.extend(self.log.iter().map(|e| Record::Change {
            index: e.index,
            change: e.change.clone(),
            from: e.from.clone(),
        }));
        records.extend(self.received.iter().map(|(from, upto)| Record::Received {
            from: from.clone(),
            upto: *upto,
        }));
        records.extend(self.store.iter().map(|(key, versions)| Record::Key {
            key: *key,
            versions: versions.clone(),
        }));
        fx.log.push(format!(
            "compacting the change log: entries up to {} dropped (every peer has them), {} kept",
            self.log_base,
            self.log.len()
        ));
        // The rewrite replaces everything, the records of this batch included.
        fx.persist.clear();
        fx.rewrite = Some(records);
    }
}

impl Replica for MultiLeader {
    fn on_client(&mut self, batch: Vec<ClientRequest>, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        for req in batch {
            let result = self.client_request(req.body, now_ms, &mut fx);
            fx.reply(req.token, result);
        }
        self.pump_all(now_ms, &mut fx);
        fx
    }

    fn on_peer(&mut self, from: &str, msg: ReplicaMessage, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        if !self.cfg.order.iter().any(|p| p == from) || from == self.cfg.id {
            return fx;
        }
        self.heard_ms.insert(from.to_string(), now_ms);
        match msg {
            ReplicaMessage::Changes {
                after,
                upto,
                entries,
            } => self.on_changes(from, after, upto, entries, &mut fx),
            ReplicaMessage::ChangesAck { received, gap } => {
                if self.on_ack(from, received, gap, now_ms) {
                    fx.log.push(format!(
                        "{from} acknowledged only {received} of this node's log after having more: it lost its data; sending it a snapshot"
                    ));
                    self.send_snapshot(from, &mut fx);
                }
                self.pump(from, now_ms, &mut fx);
                self.maybe_compact(&mut fx);
            }
            ReplicaMessage::SyncKeys { keys, .. } => self.on_snapshot(from, keys, &mut fx),
            // Leaderless messages: a misconfigured cluster mixing designs.
            _ => {}
        }
        fx
    }

    fn on_peer_connected(&mut self, peer: &str, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        if let Some(link) = self.out.get_mut(peer) {
            link.sent = link.acked;
            link.progress_ms = now_ms;
            link.next_heartbeat_ms = now_ms;
        }
        self.pump(peer, now_ms, &mut fx);
        fx
    }

    fn on_tick(&mut self, now_ms: u64) -> ReplicaEffects {
        let mut fx = ReplicaEffects::default();
        for link in self.out.values_mut() {
            if link.sent > link.acked && now_ms >= link.progress_ms + self.cfg.resend_after_ms {
                // Unacknowledged for the resend interval: they may have been dropped.
                link.sent = link.acked;
                link.progress_ms = now_ms;
            }
        }
        self.pump_all(now_ms, &mut fx);
        fx
    }
}

fn set_of(key: i64, vs: &[Version]) -> Result<SetState, ErrorReply> {
    versions::set_union(vs).map_err(|e| malformed(key, e))
}

fn malformed(key: i64, why: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::Malformed, true, format!("key {key}: {why}"))
}

#[cfg(test)]
mod tests;

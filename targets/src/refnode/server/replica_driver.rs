//! Connects a multi-leader or leaderless node ([`Replica`]) to the world, as
//! [`super::driver`] does for single-leader nodes and with the same shape: one TCP port for
//! clients and peers, one outbound link to every peer, one bounded event queue into a single
//! core task that owns the node and its storage, and bounded queues everywhere else (a slow
//! peer costs dropped messages, which the node resends or times out, never memory).
//!
//! The core also carries out the `block` request: it drops every message to and from the
//! blocked peers, which lets tests partition loopback clusters without privileges.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::config::{Config, Design};
use super::driver::{EVENT_QUEUE, LineSender, MAX_BATCH, TICK, json_line, seed_for};
use super::leaderless::{Leaderless, LeaderlessConfig};
use super::link::{self, Link};
use super::logger::Logger;
use super::multi_leader::{MultiLeader, MultiLeaderConfig};
use super::node::{ClientRequest, NodeId};
use super::replica::{Record, Replica, ReplicaEffects};
use super::replica_storage::ReplicaStorage;
use crate::refnode::protocol::{
    ErrorCode, ErrorReply, ReplicaEnvelope, ReplicaLine, ReplicaMessage, ReplyBody, RequestBody,
    Response, ResponseResult, classify_replica_line,
};

enum Event {
    Client {
        reply_to: LineSender,
        request_id: u64,
        body: RequestBody,
    },
    Peer {
        from: NodeId,
        msg: ReplicaMessage,
        /// The connection the message came on, for the node's answer; `None` for answers
        /// arriving on this node's own outbound links.
        respond_to: Option<LineSender>,
    },
    PeerConnected(NodeId),
}

/// Runs a multi-leader or leaderless node until the process is killed; returns only on a
/// startup error.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let started = link::start(&cfg).await?;
    let logger = Arc::clone(&started.logger);
    let (storage, recovery) = ReplicaStorage::open(&cfg.data_dir)?;
    for note in &recovery.notes {
        logger.log(note);
    }
    let wall_base_ms = link::wall_clock_ms();
    let (machine, startup) = build(&cfg, recovery.records, wall_base_ms);
    logger.log(&format!(
        "listening on {}; replication {}; peers {}",
        started.local,
        cfg.design.as_str(),
        link::peers_text(&started.peers)
    ));

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let links = link::spawn_all(&cfg.id, &started.peers, peer_link_spec, &events_tx, &logger);
    let core = Core {
        id: cfg.id.clone(),
        started: Instant::now(),
        storage,
        logger: logger.clone(),
        links,
        awaiting_reply: HashMap::new(),
        next_token: 0,
        blocked: BTreeSet::new(),
    };
    tokio::spawn(core.run(machine, startup, events_rx));

    link::announce_and_accept(&cfg.id, started, events_tx, connection).await
}

/// The node of the configured design, from the records of its data file.
fn build(
    cfg: &Config,
    records: Vec<Record>,
    wall_base_ms: u64,
) -> (Box<dyn Replica + Send>, ReplicaEffects) {
    let order: Vec<NodeId> = cfg.peers.iter().map(|(id, _)| id.clone()).collect();
    match &cfg.design {
        Design::Leaderless(f) => {
            let (node, fx) = Leaderless::new(
                LeaderlessConfig {
                    id: cfg.id.clone(),
                    order,
                    n: f.n,
                    w: f.w,
                    r: f.r,
                    conflict: f.conflict,
                    read_repair: f.read_repair,
                    anti_entropy: f.anti_entropy,
                    sloppy_quorum: f.sloppy_quorum,
                    heartbeat_ms: cfg.heartbeat_ms,
                    // Three missed pings, and never less than 100 ms, before a peer counts as
                    // unreachable.
                    suspect_after_ms: (cfg.heartbeat_ms * 3).max(100),
                    request_timeout_ms: f.quorum_timeout_ms,
                    handoff_interval_ms: f.handoff_interval_ms,
                    anti_entropy_interval_ms: f.anti_entropy_interval_ms,
                    max_pending: LeaderlessConfig::MAX_PENDING,
                    max_hinted_keys: LeaderlessConfig::MAX_HINTED_KEYS,
                    max_keys_per_message: LeaderlessConfig::MAX_KEYS_PER_MESSAGE,
                    compact_after_records: LeaderlessConfig::COMPACT_AFTER_RECORDS,
                    wall_base_ms,
                    clock_offset_ms: cfg.clock_offset_ms,
                    seed: seed_for(&cfg.id),
                },
                records,
                0,
            );
            (Box::new(node), fx)
        }
        // Single-leader configurations never get here (see `driver::serve`).
        Design::MultiLeader(f) => {
            let (node, fx) = MultiLeader::new(
                MultiLeaderConfig {
                    id: cfg.id.clone(),
                    order,
                    topology: f.topology,
                    conflict: f.conflict,
                    home_leader_routing: f.home_leader_routing,
                    heartbeat_ms: cfg.heartbeat_ms,
                    resend_after_ms: (cfg.heartbeat_ms * 3).max(50),
                    suspect_after_ms: (cfg.heartbeat_ms * 3).max(100),
                    max_batch_entries: MultiLeaderConfig::MAX_BATCH_ENTRIES,
                    max_inflight_entries: MultiLeaderConfig::MAX_INFLIGHT_ENTRIES,
                    compact_after_entries: MultiLeaderConfig::COMPACT_AFTER_ENTRIES,
                    wall_base_ms,
                    clock_offset_ms: cfg.clock_offset_ms,
                    seed: seed_for(&cfg.id),
                },
                records,
                0,
            );
            (Box::new(node), fx)
        }
        Design::SingleLeader => unreachable!("single-leader nodes run under driver::serve"),
    }
}

struct Core {
    id: NodeId,
    started: Instant,
    storage: ReplicaStorage,
    logger: Arc<Logger>,
    links: HashMap<NodeId, mpsc::Sender<ReplicaMessage>>,
    /// Client requests handed to the node, by token: where and under which id to answer.
    awaiting_reply: HashMap<u64, (LineSender, u64)>,
    next_token: u64,
    /// Peers whose messages are dropped both ways (`block`).
    blocked: BTreeSet<NodeId>,
}

impl Core {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(
        mut self,
        mut node: Box<dyn Replica + Send>,
        startup: ReplicaEffects,
        mut events: mpsc::Receiver<Event>,
    ) {
        self.apply(startup, None);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                received = events.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    self.handle(node.as_mut(), std::mem::take(&mut batch));
                }
                _ = ticker.tick() => {
                    let fx = node.on_tick(self.now_ms());
                    self.apply(fx, None);
                }
            }
        }
    }

    /// Peer events one by one in arrival order; all client requests of the batch together,
    /// after them, so their writes share one fsync.
    fn handle(&mut self, node: &mut (dyn Replica + Send), batch: Vec<Event>) {
        let mut clients = Vec::new();
        for event in batch {
            match event {
                Event::Client {
                    reply_to,
                    request_id,
                    body: RequestBody::Block { peers },
                } => {
                    let result = self.block(peers);
                    let _ = reply_to.try_send(json_line(&Response {
                        id: request_id,
                        result,
                    }));
                }
                Event::Client {
                    reply_to,
                    request_id,
                    body,
                } => {
                    let token = self.next_token;
                    self.next_token += 1;
                    self.awaiting_reply.insert(token, (reply_to, request_id));
                    clients.push(ClientRequest { token, body });
                }
                Event::Peer { from, .. } if self.blocked.contains(&from) => {}
                Event::Peer {
                    from,
                    msg,
                    respond_to,
                } => {
                    let fx = node.on_peer(&from, msg, self.now_ms());
                    self.apply(fx, respond_to.as_ref());
                }
                Event::PeerConnected(peer) => {
                    let fx = node.on_peer_connected(&peer, self.now_ms());
                    self.apply(fx, None);
                }
            }
        }
        if !clients.is_empty() {
            let fx = node.on_client(clients, self.now_ms());
            self.apply(fx, None);
        }
    }

    fn block(&mut self, peers: Vec<String>) -> ResponseResult {
        if let Some(unknown) = peers.iter().find(|p| !self.links.contains_key(*p)) {
            return ResponseResult::Err(ErrorReply::new(
                ErrorCode::Malformed,
                true,
                format!("cannot block {unknown:?}: not a peer of {}", self.id),
            ));
        }
        let now: BTreeSet<NodeId> = peers.into_iter().collect();
        if now != self.blocked {
            self.logger.log(&if now.is_empty() {
                "block: healed; exchanging messages with every peer again".to_string()
            } else {
                format!(
                    "block: dropping every message to and from {}",
                    now.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        }
        self.blocked = now;
        ResponseResult::Ok(ReplyBody::BlockOk {
            peers: self.blocked.iter().cloned().collect(),
        })
    }

    /// Carries out effects in the order the node requires: log, persist, then everything
    /// that promises durability.
    fn apply(&mut self, fx: ReplicaEffects, respond_to: Option<&LineSender>) {
        for line in &fx.log {
            self.logger.log(line);
        }
        let persisted = tokio::task::block_in_place(|| {
            self.storage.append(&fx.persist)?;
            match &fx.rewrite {
                Some(records) => self.storage.rewrite(records),
                None => Ok(()),
            }
        });
        if let Err(e) = persisted {
            // A node that cannot persist must not acknowledge anything: stop here.
            let message = format!(
                "cannot persist to {}: {e}; stopping",
                self.storage.dir().display()
            );
            self.logger.log(&message);
            eprintln!("refnode: {message}");
            std::process::exit(1);
        }
        if let (Some(msg), Some(conn)) = (fx.respond, respond_to) {
            let _ = conn.try_send(peer_line(&self.id, msg));
        }
        for (peer, msg) in fx.send {
            if self.blocked.contains(&peer) {
                continue;
            }
            if let Some(link) = self.links.get(&peer) {
                // Full or reconnecting: the node resends or times out.
                let _ = link.try_send(msg);
            }
        }
        for (token, mut result) in fx.replies {
            if let ResponseResult::Ok(ReplyBody::ReplicaStatusOk(status)) = &mut result {
                status.blocked = self.blocked.iter().cloned().collect();
            }
            if let Some((conn, id)) = self.awaiting_reply.remove(&token) {
                let _ = conn.try_send(json_line(&Response { id, result }));
            }
        }
    }
}

fn peer_line(me: &str, msg: ReplicaMessage) -> Vec<u8> {
    json_line(&ReplicaEnvelope {
        peer: me.to_string(),
        replica: msg,
    })
}

/// One accepted connection: a client's requests or a peer's messages, told apart line by
/// line.
async fn connection(socket: TcpStream, events: mpsc::Sender<Event>) {
    link::serve_connection(
        socket,
        events,
        classify_replica_line,
        |req, reply_to| Event::Client {
            reply_to,
            request_id: req.id,
            body: req.body,
        },
        |env, respond_to| Event::Peer {
            from: env.peer,
            msg: env.replica,
            respond_to: Some(respond_to),
        },
    )
    .await
}

/// This node's own connection to `peer` for the multi-leader and leaderless protocols.
fn peer_link_spec(me: NodeId, peer: NodeId, addr: SocketAddr) -> Link<ReplicaMessage, Event> {
    Link {
        me,
        peer,
        addr,
        encode: peer_line,
        connected: Event::PeerConnected,
        answer: |peer, line| match classify_replica_line(line) {
            ReplicaLine::Peer(env) => Some(Event::Peer {
                from: peer.clone(),
                msg: env.replica,
                respond_to: None,
            }),
            _ => None,
        },
    }
}

//! Connects a [`Node`] to the world: one TCP port for clients and peers, one outbound link to
//! every peer, the data directory and a clock.
//!
//! All events (client requests, peer messages, link changes, ticks) go through one bounded
//! queue into a single core task that owns the node and its storage, so the node's handlers
//! run one at a time in arrival order. The core drains whatever is queued before it acts,
//! which turns a burst of concurrent writes into one log append and one fsync (group commit).
//! Every queue is bounded: a slow or paused peer costs dropped messages (the node resends from
//! what each follower acknowledged), never unbounded memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::config::Config;
use super::link::{self, Link};
use super::logger::Logger;
use super::node::{ClientRequest, Effects, Node, NodeConfig, NodeId, Persist};
use super::storage::Storage;
use crate::refnode::protocol::{
    ErrorCode, ErrorReply, Line, PeerEnvelope, PeerMessage, RequestBody, Response, ResponseResult,
};

/// Events waiting for the core; producers wait when it is full, which pushes back on the
/// sockets they read from.
pub(super) const EVENT_QUEUE: usize = 8192;
/// Lines waiting to be written on one connection.
pub(super) const CONNECTION_QUEUE: usize = 4096;
/// Messages waiting for one peer link; beyond this they are dropped and later resent.
pub(super) const PEER_QUEUE: usize = 1024;
/// Events handled per core iteration, so ticks are never starved by a flood.
pub(super) const MAX_BATCH: usize = 1024;
/// Longest accepted line; longer ones are answered `malformed` and the connection closed.
const MAX_LINE_BYTES: usize = 16 << 20;
/// Granularity of the node's clock ticks (heartbeats, timeouts, failover).
pub(super) const TICK: Duration = Duration::from_millis(5);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(20);
pub(super) const MAX_BACKOFF: Duration = Duration::from_millis(500);

pub(super) type LineSender = mpsc::Sender<Vec<u8>>;

enum Event {
    Client {
        reply_to: LineSender,
        request_id: u64,
        body: RequestBody,
    },
    Peer {
        from: NodeId,
        msg: PeerMessage,
        /// The connection the message came on, for the node's answer; `None` for answers
        /// arriving on this node's own outbound links.
        respond_to: Option<LineSender>,
    },
    PeerConnected(NodeId),
}

/// Runs the node until the process is killed. Returns only on a startup error (data
/// directory, log file or listen address unusable).
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    if cfg.design != super::config::Design::SingleLeader {
        return super::replica_driver::serve(cfg).await;
    }
    let started = link::start(&cfg).await?;
    let logger = Arc::clone(&started.logger);
    let (storage, recovery) = Storage::open(&cfg.data_dir)?;
    for note in &recovery.notes {
        logger.log(note);
    }
    let peers = &started.peers;
    let node_cfg = NodeConfig {
        id: cfg.id.clone(),
        peers: peers.iter().map(|(id, _)| id.clone()).collect(),
        order: cfg.peers.iter().map(|(id, _)| id.clone()).collect(),
        initial_leader: cfg.initial_leader.clone(),
        replication: cfg.replication,
        failover: cfg.failover,
        log_kind: cfg.log_kind,
        heartbeat_ms: cfg.heartbeat_ms,
        failover_timeout_ms: cfg.failover_timeout_ms,
        sync_timeout_ms: cfg.sync_timeout_ms,
        position_timeout_ms: NodeConfig::POSITION_TIMEOUT_MS.min(cfg.failover_timeout_ms),
        max_inflight_entries: NodeConfig::MAX_INFLIGHT_ENTRIES,
        resend_after_ms: (cfg.heartbeat_ms * 3).max(50),
        snapshot_resend_ms: (cfg.heartbeat_ms * 10).max(500),
        compact_after_entries: cfg.compact_after_entries,
        max_uncommitted_entries: NodeConfig::MAX_UNCOMMITTED_ENTRIES,
        seed: seed_for(&cfg.id),
        wall_base_ms: link::wall_clock_ms(),
        clock_offset_ms: cfg.clock_offset_ms,
        join: cfg.join,
    };
    logger.log(&format!(
        "listening on {}; replication {}; failover {}; log {}; peers {}",
        started.local,
        cfg.replication.as_str(),
        cfg.failover.as_str(),
        cfg.log_kind.as_str(),
        link::peers_text(peers)
    ));

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let links = link::spawn_all(&cfg.id, peers, peer_link_spec, &events_tx, &logger);
    let core = Core {
        id: cfg.id.clone(),
        started: Instant::now(),
        storage,
        logger: logger.clone(),
        links,
        awaiting_reply: HashMap::new(),
        next_token: 0,
    };
    let (node, startup) = Node::new(node_cfg, recovery.durable, 0);
    tokio::spawn(core.run(node, startup, events_rx));

    link::announce_and_accept(&cfg.id, started, events_tx, connection).await
}

/// A per-node seed for the failover jitter, so that two followers draw different delays.
pub(super) fn seed_for(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) ^ u64::from(std::process::id())
}

struct Core {
    id: NodeId,
    started: Instant,
    storage: Storage,
    logger: Arc<Logger>,
    links: HashMap<NodeId, mpsc::Sender<PeerMessage>>,
    /// Client requests handed to the node, by token: where and under which id to answer.
    awaiting_reply: HashMap<u64, (LineSender, u64)>,
    next_token: u64,
}

impl Core {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(mut self, mut node: Node, startup: Effects, mut events: mpsc::Receiver<Event>) {
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
                    self.handle(&mut node, std::mem::take(&mut batch));
                }
                _ = ticker.tick() => {
                    let fx = node.on_tick(self.now_ms());
                    self.apply(fx, None);
                }
            }
        }
    }

    /// Peer events one by one in arrival order; all client requests of the batch together,
    /// after them, so their writes share one append and one fsync.
    fn handle(&mut self, node: &mut Node, batch: Vec<Event>) {
        let mut clients = Vec::new();
        for event in batch {
            match event {
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

    /// Carries out effects in the order the node requires: log, persist, then everything
    /// that promises durability.
    fn apply(&mut self, fx: Effects, respond_to: Option<&LineSender>) {
        for line in &fx.log {
            self.logger.log(line);
        }
        for change in &fx.persist {
            // fsync blocks; tell the runtime so its other workers keep serving sockets.
            let result = tokio::task::block_in_place(|| match change {
                Persist::Append(entries) => self.storage.append(entries),
                Persist::Meta(meta) => self.storage.write_meta(meta),
                Persist::Replace { snapshot, keep } => self.storage.replace(snapshot, keep),
                Persist::Truncate {
                    base_index,
                    base_epoch,
                    keep,
                } => self.storage.truncate(*base_index, *base_epoch, keep),
            });
            if let Err(e) = result {
                // A node that cannot persist must not acknowledge anything: stop here.
                let message = format!(
                    "cannot persist to {}: {e}; stopping",
                    self.storage.dir().display()
                );
                self.logger.log(&message);
                eprintln!("refnode: {message}");
                std::process::exit(1);
            }
        }
        if let (Some(msg), Some(conn)) = (fx.respond, respond_to) {
            let _ = conn.try_send(peer_line(&self.id, msg));
        }
        for (peer, msg) in fx.send {
            if let Some(link) = self.links.get(&peer) {
                // Full or reconnecting: the node resends what the peer did not acknowledge.
                let _ = link.try_send(msg);
            }
        }
        for (token, result) in fx.replies {
            if let Some((conn, id)) = self.awaiting_reply.remove(&token) {
                let _ = conn.try_send(json_line(&Response { id, result }));
            }
        }
    }
}

pub(super) fn json_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail; an empty line would be ignored by peers.
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

fn peer_line(me: &str, msg: PeerMessage) -> Vec<u8> {
    json_line(&PeerEnvelope {
        peer: me.to_string(),
        msg,
    })
}

/// Reads one line of at most [`MAX_LINE_BYTES`] into `buf` (without the newline). `Ok(false)`
/// at end of stream; an error for an overlong line.
pub(super) async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    buf.clear();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = reader.take(limit).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    Ok(true)
}

/// One accepted connection: a client's requests or a peer's replication messages, told apart
/// line by line.
async fn connection(socket: TcpStream, events: mpsc::Sender<Event>) {
    link::serve_connection(
        socket,
        events,
        crate::refnode::protocol::classify_line,
        |req, reply_to| Event::Client {
            reply_to,
            request_id: req.id,
            body: req.body,
        },
        |env, respond_to| Event::Peer {
            from: env.peer,
            msg: env.msg,
            respond_to: Some(respond_to),
        },
    )
    .await
}

pub(super) fn malformed(id: u64, message: String) -> Vec<u8> {
    json_line(&Response {
        id,
        result: ResponseResult::Err(ErrorReply::new(ErrorCode::Malformed, true, message)),
    })
}

/// This node's own connection to `peer` for the single-leader protocol.
fn peer_link_spec(me: NodeId, peer: NodeId, addr: SocketAddr) -> Link<PeerMessage, Event> {
    Link {
        me,
        peer,
        addr,
        encode: peer_line,
        connected: Event::PeerConnected,
        answer: |peer, line| match crate::refnode::protocol::classify_line(line) {
            Line::Peer(env) => Some(Event::Peer {
                from: peer.clone(),
                msg: env.msg,
                respond_to: None,
            }),
            _ => None,
        },
    }
}

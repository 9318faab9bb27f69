//! A Maelstrom host: runs any binary that speaks Maelstrom's node protocol (JSON messages,
//! one per line, on stdin and stdout) as the cluster, unchanged, whatever its language.
//!
//! Every message a node writes goes through the controller's router, which delivers it to
//! another node's stdin, to a built-in [service](services) (`lin-kv`, `seq-kv`, `lww-kv`,
//! `lin-tso`), or to a client. Node-to-node messages pass the network faults
//! ([`MaelstromHost::partition`], [`MaelstromHost::block`], [`MaelstromHost::set_loss`],
//! [`MaelstromHost::set_delay`]); the router counts every message as Maelstrom's network
//! statistics do ([`MaelstromHost::net_stats`]: sends, deliveries and messages per
//! operation, for all traffic, client traffic and server traffic).
//!
//! Each node gets `init` (from `c0`, the host's own client id) when it starts and, when a
//! [`Topology`] is set, a `topology` message; clients are `c1`, `c2`, ... (process + 1) and
//! each talks to node `process mod n`. Workload mappings are in [`workload`].

pub mod services;
pub mod workload;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use async_trait::async_trait;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use self::services::{Services, SplitMix64};
use super::procs::Procs;
use crate::db::{Client, Completion, Db, Invocation, Kill, NodeId, Pause};

/// Lines waiting for one node's stdin; beyond this (a paused node) messages are dropped,
/// as a congested network would.
const INBOX_LINES: usize = 4096;
/// Replies waiting for one client.
const CLIENT_REPLIES: usize = 64;
/// Delayed messages in flight at once; more are dropped.
const DELAYED_MAX: usize = 10_000;
/// A line longer than this from a node is a protocol error.
const MAX_LINE_BYTES: u64 = 4 << 20;

/// Which neighbours each node is told about (the broadcast workload's `topology`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// No `topology` message is sent.
    #[default]
    None,
    /// Nodes on a square grid, neighbours up, down, left and right (Maelstrom's default).
    Grid,
    /// A line: each node's neighbours are the one before and the one after.
    Line,
    /// Every node neighbours every other.
    Total,
}

impl std::str::FromStr for Topology {
    type Err = String;
    fn from_str(s: &str) -> Result<Topology, String> {
        match s {
            "none" => Ok(Topology::None),
            "grid" => Ok(Topology::Grid),
            "line" => Ok(Topology::Line),
            "total" => Ok(Topology::Total),
            _ => Err(format!(
                "unknown topology {s:?}; expected none, grid, line or total"
            )),
        }
    }
}

impl Topology {
    /// Each node's neighbours.
    pub fn neighbours(self, nodes: &[NodeId]) -> HashMap<NodeId, Vec<NodeId>> {
        let n = nodes.len();
        let width = (1..=n).find(|w| w * w >= n).unwrap_or(1);
        nodes
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut out: Vec<usize> = match self {
                    Topology::None => Vec::new(),
                    Topology::Total => (0..n).filter(|&j| j != i).collect(),
                    Topology::Line => [i.checked_sub(1), Some(i + 1)]
                        .into_iter()
                        .flatten()
                        .filter(|&j| j < n)
                        .collect(),
                    Topology::Grid => {
                        let (row, col) = (i / width, i % width);
                        let mut v = Vec::new();
                        if col > 0 {
                            v.push(i - 1);
                        }
                        if col + 1 < width && i + 1 < n {
                            v.push(i + 1);
                        }
                        if row > 0 {
                            v.push(i - width);
                        }
                        if i + width < n {
                            v.push(i + width);
                        }
                        v
                    }
                };
                out.sort_unstable();
                (
                    id.clone(),
                    out.into_iter().map(|j| nodes[j].clone()).collect(),
                )
            })
            .collect()
    }
}

/// How the harness wants the Maelstrom cluster run. Build it with
/// `..MaelstromConfig::default()`.
#[derive(Debug, Clone)]
pub struct MaelstromConfig {
    /// The node program (`--bin`), run once per node.
    pub binary: PathBuf,
    /// Arguments for it (e.g. a script for an interpreter given as `binary`).
    pub args: Vec<String>,
    pub node_count: usize,
    /// Where node logs (their stderr) and the `pids` file go.
    pub dir: PathBuf,
    pub topology: Topology,
    /// Seeds the services and the network's random choices.
    pub seed: u64,
    /// How long a node may take to answer `init` and `topology`.
    pub init_timeout_ms: u64,
}

impl Default for MaelstromConfig {
    fn default() -> MaelstromConfig {
        MaelstromConfig {
            binary: PathBuf::new(),
            args: Vec::new(),
            node_count: 3,
            dir: PathBuf::from("."),
            topology: Topology::None,
            seed: 0,
            init_timeout_ms: 10_000,
        }
    }
}

/// Message counts of one kind of traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages sent (written by a node or a client, or answered by a service).
    pub send_count: u64,
    /// Messages delivered.
    pub recv_count: u64,
}

/// Maelstrom's network statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    pub all: Counts,
    /// Between clients and nodes.
    pub clients: Counts,
    /// Between nodes, and between nodes and services.
    pub servers: Counts,
    /// Node-to-node messages the faults dropped (partition, loss) or that found no room.
    pub dropped: u64,
    /// Client operations invoked.
    pub ops: u64,
}

impl NetStats {
    /// Messages sent per client operation, as Maelstrom's `msgs-per-op`: all, clients,
    /// servers.
    pub fn msgs_per_op(&self) -> (f64, f64, f64) {
        let ops = self.ops.max(1) as f64;
        (
            self.all.send_count as f64 / ops,
            self.clients.send_count as f64 / ops,
            self.servers.send_count as f64 / ops,
        )
    }
}

#[derive(Debug, Default)]
struct Faults {
    /// Node -> component; nodes in different components cannot talk. Empty: no partition.
    components: HashMap<NodeId, usize>,
    /// `(from, to)`: node-to-node messages cut one way (a grudge). Empty: none.
    blocked: HashSet<(NodeId, NodeId)>,
    loss: f64,
    delay_ms: (u64, u64),
}

/// The router's state, shared by the node reader tasks, the clients and the host.
#[derive(Debug)]
struct Net {
    nodes: Vec<NodeId>,
    inboxes: HashMap<NodeId, mpsc::Sender<String>>,
    clients: HashMap<String, mpsc::Sender<Json>>,
    services: Services,
    faults: Faults,
    stats: NetStats,
    rng: SplitMix64,
    delayed: usize,
}

type SharedNet = Arc<Mutex<Net>>;

fn is_client(id: &str) -> bool {
    id.strip_prefix('c')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Routes one message (and any service replies it causes).
fn route(net: &SharedNet, msg: Json) {
    let mut queue = vec![msg];
    // A service reply goes to a node or a client, never to a service: two rounds at most.
    for _ in 0..4 {
        let Some(msg) = queue.pop() else { return };
        let mut guard = net.lock().expect("lock");
        let n = &mut *guard;
        let src = msg["src"].as_str().unwrap_or("").to_string();
        let dest = msg["dest"].as_str().unwrap_or("").to_string();
        let client_traffic = is_client(&src) || is_client(&dest);
        let kind = if client_traffic {
            &mut n.stats.clients
        } else {
            &mut n.stats.servers
        };
        kind.send_count += 1;
        n.stats.all.send_count += 1;
        if Services::is_service(&dest) {
            let reply = n.services.handle(&dest, &src, &msg["body"]);
            n.stats.servers.recv_count += 1;
            n.stats.all.recv_count += 1;
            queue.push(json!({"src": dest, "dest": src, "body": reply}));
            continue;
        }
        if is_client(&dest) {
            if let Some(tx) = n.clients.get(&dest)
                && tx.try_send(msg["body"].clone()).is_ok()
            {
                n.stats.clients.recv_count += 1;
                n.stats.all.recv_count += 1;
            }
            continue;
        }
        let between_nodes = n.nodes.contains(&src) && n.nodes.contains(&dest);
        if between_nodes {
            let f = &n.faults;
            let cut = (!f.components.is_empty()
                && f.components.get(&src) != f.components.get(&dest))
                || (!f.blocked.is_empty() && f.blocked.contains(&(src.clone(), dest.clone())));
            let (loss, (lo, hi)) = (f.loss, f.delay_ms);
            if cut || n.rng.chance(loss) {
                n.stats.dropped += 1;
                continue;
            }
            if hi > 0 {
                if n.delayed >= DELAYED_MAX {
                    n.stats.dropped += 1;
                    continue;
                }
                n.delayed += 1;
                let wait = lo + n.rng.below(hi - lo + 1);
                let net = net.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let mut n = net.lock().expect("lock");
                    n.delayed -= 1;
                    deliver(&mut n, &dest, &msg, false);
                });
                continue;
            }
        }
        deliver(n, &dest, &msg, client_traffic);
    }
}

/// Puts a message on a node's stdin queue, counting it, or drops it.
fn deliver(n: &mut Net, dest: &str, msg: &Json, client_traffic: bool) {
    let delivered = n
        .inboxes
        .get(dest)
        .is_some_and(|tx| tx.try_send(msg.to_string()).is_ok());
    if delivered {
        let kind = if client_traffic {
            &mut n.stats.clients
        } else {
            &mut n.stats.servers
        };
        kind.recv_count += 1;
        n.stats.all.recv_count += 1;
    } else if !client_traffic {
        n.stats.dropped += 1;
    }
}

/// One party that sends requests and waits for their replies: a client (`c1`, ...) or the
/// host's own `c0`.
#[derive(Debug)]
struct Caller {
    id: String,
    net: SharedNet,
    /// Our own registration, so that dropping an old caller of the same id leaves a newer
    /// one registered.
    registered: mpsc::Sender<Json>,
    replies: mpsc::Receiver<Json>,
    next_msg_id: u64,
}

impl Caller {
    fn new(net: &SharedNet, id: &str) -> Caller {
        let (tx, rx) = mpsc::channel(CLIENT_REPLIES);
        net.lock()
            .expect("lock")
            .clients
            .insert(id.to_string(), tx.clone());
        Caller {
            id: id.to_string(),
            net: net.clone(),
            registered: tx,
            replies: rx,
            next_msg_id: 1,
        }
    }

    /// Sends `body` to `dest` and waits for the reply to it; `None` on timeout. Replies to
    /// earlier (timed out) requests are skipped.
    async fn call(
        &mut self,
        dest: &str,
        mut body: Json,
        deadline: tokio::time::Instant,
    ) -> Option<Json> {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        body["msg_id"] = json!(msg_id);
        route(
            &self.net,
            json!({"src": self.id, "dest": dest, "body": body}),
        );
        loop {
            let reply = tokio::time::timeout_at(deadline, self.replies.recv())
                .await
                .ok()??;
            if reply["in_reply_to"].as_u64() == Some(msg_id) {
                return Some(reply);
            }
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        if let Ok(mut n) = self.net.lock()
            && n.clients
                .get(&self.id)
                .is_some_and(|tx| tx.same_channel(&self.registered))
        {
            n.clients.remove(&self.id);
        }
    }
}

/// A cluster of Maelstrom nodes with the controller as their network.
#[derive(Debug)]
pub struct MaelstromHost {
    config: MaelstromConfig,
    nodes: Vec<NodeId>,
    net: SharedNet,
    procs: Procs,
    /// The host's own caller (`c0`), for `init` and `topology`.
    control: tokio::sync::Mutex<Option<Caller>>,
}

impl MaelstromHost {
    pub fn new(config: MaelstromConfig) -> anyhow::Result<MaelstromHost> {
        if config.node_count == 0 {
            bail!("a cluster needs at least one node");
        }
        let binary = super::install::which(&config.binary.to_string_lossy())
            .ok_or_else(|| anyhow!("node binary {} not found", config.binary.display()))?;
        let nodes: Vec<NodeId> = (1..=config.node_count).map(|i| format!("n{i}")).collect();
        let net = Arc::new(Mutex::new(Net {
            nodes: nodes.clone(),
            inboxes: HashMap::new(),
            clients: HashMap::new(),
            services: Services::new(config.seed),
            faults: Faults::default(),
            stats: NetStats::default(),
            rng: SplitMix64(config.seed ^ 0x6D61_656C),
            delayed: 0,
        }));
        Ok(MaelstromHost {
            procs: Procs::new(&config.dir),
            config: MaelstromConfig { binary, ..config },
            nodes,
            net,
            control: tokio::sync::Mutex::new(None),
        })
    }

    /// The network statistics so far.
    pub fn net_stats(&self) -> NetStats {
        self.net.lock().expect("lock").stats
    }

    /// Cuts node-to-node traffic between groups; nodes in no group are alone.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let mut n = self.net.lock().expect("lock");
        let mut components = HashMap::new();
        for (i, id) in self.nodes.iter().enumerate() {
            let c = groups
                .iter()
                .position(|g| g.contains(id))
                .unwrap_or(groups.len() + i);
            components.insert(id.clone(), c);
        }
        n.faults.components = components;
    }

    /// Cuts node-to-node messages one way, replacing any earlier one-way cut: each
    /// `(from, to)` stops `from`'s messages to `to` (and nothing else).
    pub fn block(&self, directions: &[(NodeId, NodeId)]) {
        self.net.lock().expect("lock").faults.blocked = directions.iter().cloned().collect();
    }

    /// Ends any partition, by groups or one way.
    pub fn heal(&self) {
        let mut n = self.net.lock().expect("lock");
        n.faults.components.clear();
        n.faults.blocked.clear();
    }

    /// Drops each node-to-node message with probability `p` (0 to end the loss).
    pub fn set_loss(&self, p: f64) {
        self.net.lock().expect("lock").faults.loss = p.clamp(0.0, 1.0);
    }

    /// Delays each node-to-node message by a uniform `min_ms..=max_ms` (0, 0 to end it);
    /// delayed messages may overtake each other.
    pub fn set_delay(&self, min_ms: u64, max_ms: u64) {
        self.net.lock().expect("lock").faults.delay_ms = (min_ms.min(max_ms), max_ms);
    }

    /// Starts `node`, wires its pipes to the router, and initializes it.
    async fn boot(&self, node: &str) -> anyhow::Result<()> {
        let mut cmd = tokio::process::Command::new(&self.config.binary);
        cmd.args(&self.config.args);
        let (_, mut stdin, stdout) = self.procs.spawn_piped(node, cmd)?;
        let (tx, mut rx) = mpsc::channel::<String>(INBOX_LINES);
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let net = self.net.clone();
        let me = node.to_string();
        let log = self.procs.log_path(node);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                use tokio::io::AsyncReadExt as _;
                match (&mut lines).take(MAX_LINE_BYTES).read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                match serde_json::from_str::<Json>(&line) {
                    Ok(msg) if msg["src"] == me.as_str() => route(&net, msg),
                    _ => note(
                        &log,
                        &format!("maelstrom host: {me} wrote a bad message: {line}"),
                    ),
                }
            }
        });
        self.net
            .lock()
            .expect("lock")
            .inboxes
            .insert(node.to_string(), tx);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.init_timeout_ms);
        let mut control = self.control.lock().await;
        let control = control.get_or_insert_with(|| Caller::new(&self.net, "c0"));
        let init = json!({"type": "init", "node_id": node, "node_ids": self.nodes});
        match control.call(node, init, deadline).await {
            Some(r) if r["type"] == "init_ok" => {}
            Some(r) => bail!("{node} answered init with {r}"),
            None => bail!(
                "{node} did not answer init within {} ms; last log lines:\n{}",
                self.config.init_timeout_ms,
                super::procs::tail(&self.procs.log_path(node), 5)
            ),
        }
        if self.config.topology != Topology::None {
            let topology = self.config.topology.neighbours(&self.nodes);
            let body = json!({"type": "topology", "topology": topology});
            match control.call(node, body, deadline).await {
                Some(r) if r["type"] == "topology_ok" => {}
                other => bail!("{node} answered topology with {other:?}"),
            }
        }
        Ok(())
    }

    fn unplug(&self, node: &str) {
        self.net.lock().expect("lock").inboxes.remove(node);
    }
}

/// Appends a line to a node's log (the host's own remarks about it).
fn note(log: &std::path::Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
        let _ = writeln!(f, "{}", line.trim_end());
    }
}

#[async_trait]
impl Db for MaelstromHost {
    fn nodes(&self) -> Vec<NodeId> {
        self.nodes.clone()
    }

    async fn start(&self, _timeout: Duration) -> anyhow::Result<()> {
        for node in &self.nodes {
            self.boot(node).await?;
        }
        Ok(())
    }

    async fn teardown(&self) {
        for node in &self.nodes {
            self.unplug(node);
        }
        self.procs.stop_all(Duration::from_secs(1)).await;
        self.control.lock().await.take();
    }

    fn client(&self, process: u64) -> Box<dyn Client> {
        let node = self.nodes[(process % self.nodes.len() as u64) as usize].clone();
        Box::new(MaelstromClient {
            caller: Caller::new(&self.net, &format!("c{}", process + 1)),
            node,
        })
    }

    fn kill(&self) -> Option<&dyn Kill> {
        Some(self)
    }

    fn pause(&self) -> Option<&dyn Pause> {
        Some(self)
    }
}

#[async_trait]
impl Kill for MaelstromHost {
    /// Maelstrom nodes keep no durable state: a killed node restarts empty and is
    /// initialized again.
    async fn kill(&self, node: &str) -> anyhow::Result<()> {
        self.unplug(node);
        self.procs.kill(node).await
    }

    async fn restart(&self, node: &str) -> anyhow::Result<()> {
        if self.procs.is_running(node) {
            return Ok(());
        }
        self.boot(node).await
    }
}

#[async_trait]
impl Pause for MaelstromHost {
    async fn pause(&self, node: &str) -> anyhow::Result<()> {
        self.procs.pause(node)
    }

    async fn resume(&self, node: &str) -> anyhow::Result<()> {
        self.procs.resume(node)
    }
}

/// A Maelstrom client (`c<process+1>`) bound to node `process mod n`.
#[derive(Debug)]
pub struct MaelstromClient {
    caller: Caller,
    node: NodeId,
}

#[async_trait]
impl Client for MaelstromClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let deadline = tokio::time::Instant::now() + timeout;
        let body = match workload::request_for(call) {
            Ok(b) => b,
            Err(e) => return super::refuse(call, e),
        };
        let up = {
            let mut n = self.caller.net.lock().expect("lock");
            n.stats.ops += 1;
            n.inboxes.contains_key(&self.node)
        };
        if !up {
            let mut done = super::refuse(call, format!("{} is down", self.node));
            done.node = Some(self.node.clone());
            return done;
        }
        match self.caller.call(&self.node, body, deadline).await {
            Some(reply) => workload::completion_for(call, &self.node, &reply),
            None => workload::timed_out(call, &self.node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<NodeId> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn topologies_connect_the_expected_neighbours() {
        let grid = Topology::Grid.neighbours(&ids(5));
        // 3 wide: n1 n2 n3 / n4 n5
        assert_eq!(grid["n1"], vec!["n2", "n4"]);
        assert_eq!(grid["n5"], vec!["n2", "n4"]);
        assert_eq!(grid["n3"], vec!["n2"]);
        let line = Topology::Line.neighbours(&ids(3));
        assert_eq!(line["n2"], vec!["n1", "n3"]);
        let total = Topology::Total.neighbours(&ids(3));
        assert_eq!(total["n3"], vec!["n1", "n2"]);
        assert!(Topology::None.neighbours(&ids(2))["n1"].is_empty());
        assert_eq!("grid".parse::<Topology>(), Ok(Topology::Grid));
    }

    #[test]
    fn client_ids_are_c_and_digits() {
        assert!(is_client("c1") && is_client("c0") && is_client("c12"));
        assert!(!is_client("c") && !is_client("n1") && !is_client("cx"));
    }
}

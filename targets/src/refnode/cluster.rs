//! A cluster of refnode processes on 127.0.0.1, started and faulted by the harness, and the
//! client that drives it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use histories::{F, Key, OpType, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::client::{CallError, NodeClient};
use super::protocol::{ErrorCode, ReplicaStatus, ReplyBody, RequestBody, Role, Status};
use super::server::version_vector::VersionVector;
use crate::db::{
    Client, Clock, Completion, Db, Invocation, Kill, Member, NodeId, Pause, Primary, ReadRouting,
};
use crate::process;

/// How the harness wants the cluster built. Fields may be added; build it with
/// `..RefnodeConfig::default()` so that new ones take their defaults.
#[derive(Debug, Clone)]
pub struct RefnodeConfig {
    /// The `refnode` executable.
    pub binary: PathBuf,
    pub node_count: usize,
    /// `sync`, `semi-sync`, `async`, `chain`, `multi-leader` or `leaderless` (the
    /// `--replication` flag).
    pub replication: String,
    /// `naive` or `fenced` (the `--failover` flag).
    pub failover: String,
    /// `logical` or `statement` (the `--log` flag).
    pub log: String,
    /// Each node compacts its log into a snapshot beyond this many entries.
    pub compact_after_entries: u64,
    pub read_routing: ReadRouting,
    /// Where node data directories and logs go (the run's store directory).
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    pub failover_timeout_ms: u64,
    pub sync_timeout_ms: u64,
    /// Where the nodes listen and how they reach each other when the harness puts a network
    /// fabric between them (namespaces, proxies); `None`: free ports on 127.0.0.1, direct.
    pub network: Option<NodeNetwork>,
    /// Multi-leader: `circular`, `star` or `all-to-all` (`--topology`).
    pub topology: String,
    /// Multi-leader and leaderless: `none`, `lww`, `highest-id` or `siblings` (`--conflict`).
    pub conflict: String,
    /// Multi-leader: write each key at its home leader only (`--home-leader-routing`).
    pub home_leader_routing: bool,
    /// Leaderless: replicas per key and the write and read quorums (`--n`, `--w`, `--r`).
    pub n: usize,
    pub w: usize,
    pub r: usize,
    /// Leaderless: `--read-repair`, `--anti-entropy`, `--sloppy-quorum`.
    pub read_repair: bool,
    pub anti_entropy: bool,
    pub sloppy_quorum: bool,
    /// Leaderless: `--quorum-timeout-ms`, `--anti-entropy-interval-ms`,
    /// `--handoff-interval-ms`.
    pub quorum_timeout_ms: u64,
    pub anti_entropy_interval_ms: u64,
    pub handoff_interval_ms: u64,
}

impl RefnodeConfig {
    /// Whether the design has no single leader (multi-leader or leaderless).
    pub fn leaderless_or_multi_leader(&self) -> bool {
        matches!(self.replication.as_str(), "multi-leader" | "leaderless")
    }

    /// The flags of the multi-leader and leaderless designs, for the configured one.
    fn design_flags(&self) -> Vec<String> {
        let switch = |on: bool| if on { "on" } else { "off" }.to_string();
        match self.replication.as_str() {
            "multi-leader" => {
                let mut flags = vec![
                    "--topology".to_string(),
                    self.topology.clone(),
                    "--conflict".to_string(),
                    self.conflict.clone(),
                ];
                if self.home_leader_routing {
                    flags.push("--home-leader-routing".to_string());
                }
                flags
            }
            "leaderless" => vec![
                "--conflict".to_string(),
                self.conflict.clone(),
                "--n".to_string(),
                self.n.to_string(),
                "--w".to_string(),
                self.w.to_string(),
                "--r".to_string(),
                self.r.to_string(),
                "--read-repair".to_string(),
                switch(self.read_repair),
                "--anti-entropy".to_string(),
                switch(self.anti_entropy),
                "--sloppy-quorum".to_string(),
                switch(self.sloppy_quorum),
                "--quorum-timeout-ms".to_string(),
                self.quorum_timeout_ms.to_string(),
                "--anti-entropy-interval-ms".to_string(),
                self.anti_entropy_interval_ms.to_string(),
                "--handoff-interval-ms".to_string(),
                self.handoff_interval_ms.to_string(),
            ],
            _ => Vec::new(),
        }
    }
}

/// Addresses and launchers of a cluster behind a network fabric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNetwork {
    /// Each node's listen address, n1 first; exactly one per node.
    pub listen: Vec<SocketAddr>,
    /// The address node `from` dials to reach node `to`, keyed `(from, to)`, when it is not
    /// `to`'s listen address (e.g. a proxy port on that link).
    pub routes: BTreeMap<(NodeId, NodeId), SocketAddr>,
    /// Program and arguments a node is started under, its own command line following
    /// (e.g. `ip netns exec NS`); nodes not named are started directly.
    pub launcher: BTreeMap<NodeId, Vec<String>>,
}

impl Default for RefnodeConfig {
    fn default() -> RefnodeConfig {
        RefnodeConfig {
            binary: PathBuf::from("refnode"),
            node_count: 3,
            replication: "async".to_string(),
            failover: "naive".to_string(),
            log: "logical".to_string(),
            compact_after_entries: 10_000,
            read_routing: ReadRouting::Leader,
            dir: PathBuf::from("."),
            heartbeat_ms: 100,
            failover_timeout_ms: 1000,
            sync_timeout_ms: 1000,
            network: None,
            topology: "all-to-all".to_string(),
            conflict: "lww".to_string(),
            home_leader_routing: false,
            n: 3,
            w: 2,
            r: 2,
            read_repair: true,
            anti_entropy: true,
            sloppy_quorum: false,
            quorum_timeout_ms: 1000,
            anti_entropy_interval_ms: 1000,
            handoff_interval_ms: 500,
        }
    }
}

#[derive(Debug, Clone)]
struct NodeSpec {
    id: NodeId,
    addr: SocketAddr,
}

#[derive(Debug)]
struct Running {
    child: Child,
    pid: i32,
    paused: bool,
}

/// A refnode cluster. Processes die with the controller (parent-death signal) and on drop.
#[derive(Debug)]
pub struct RefnodeCluster {
    config: RefnodeConfig,
    specs: Vec<NodeSpec>,
    running: Mutex<HashMap<NodeId, Running>>,
    /// Each node's clock offset, passed again when it restarts.
    clock_offsets: Mutex<HashMap<NodeId, i64>>,
}

impl RefnodeCluster {
    /// Chooses free loopback ports for the nodes. Nothing starts until [`Db::start`].
    pub fn new(config: RefnodeConfig) -> anyhow::Result<RefnodeCluster> {
        if config.node_count == 0 {
            bail!("a cluster needs at least one node");
        }
        if !config.binary.is_file() {
            bail!(
                "refnode binary not found at {} (build it with `cargo build --release -p targets`, or pass --refnode-bin)",
                config.binary.display()
            );
        }
        let ports = match &config.network {
            Some(net) if net.listen.len() != config.node_count => bail!(
                "the network layout has {} listen addresses for {} nodes",
                net.listen.len(),
                config.node_count
            ),
            Some(net) => net.listen.clone(),
            None => free_loopback_ports(config.node_count)?,
        };
        let specs = ports
            .into_iter()
            .enumerate()
            .map(|(i, addr)| NodeSpec {
                id: format!("n{}", i + 1),
                addr,
            })
            .collect();
        Ok(RefnodeCluster {
            config,
            specs,
            running: Mutex::new(HashMap::new()),
            clock_offsets: Mutex::new(HashMap::new()),
        })
    }

    pub fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.specs.iter().find(|s| s.id == node).map(|s| s.addr)
    }

    /// The log file of a node, inside the run directory.
    pub fn log_path(&self, node: &str) -> PathBuf {
        self.config.dir.join(format!("{node}.log"))
    }

    /// `--peers` for `node`: every node's address as `node` dials it.
    fn peers_flag(&self, node: &str) -> String {
        let route = |to: &NodeSpec| {
            self.config
                .network
                .as_ref()
                .and_then(|n| n.routes.get(&(node.to_string(), to.id.clone())))
                .copied()
                .unwrap_or(to.addr)
        };
        self.specs
            .iter()
            .map(|s| format!("{}={}", s.id, route(s)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spec(&self, node: &str) -> anyhow::Result<&NodeSpec> {
        self.specs
            .iter()
            .find(|s| s.id == node)
            .ok_or_else(|| anyhow!("no node named {node}"))
    }

    /// Starts `node`. `join` is for every start after the cluster's first: a node whose
    /// data directory is empty (wiped) must join the running cluster rather than lead
    /// epoch 1 as the initial leader would.
    async fn spawn(&self, node: &str, join: bool) -> anyhow::Result<()> {
        let spec = self.spec(node)?.clone();
        let data_dir = self.config.dir.join(&spec.id);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let log_path = self.log_path(&spec.id);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let clock_offset_ms = self
            .clock_offsets
            .lock()
            .expect("lock")
            .get(node)
            .copied()
            .unwrap_or(0);
        let launcher = self
            .config
            .network
            .as_ref()
            .and_then(|n| n.launcher.get(node))
            .filter(|l| !l.is_empty());
        let mut cmd = match launcher {
            Some(l) => {
                let mut c = Command::new(&l[0]);
                c.args(&l[1..]).arg(&self.config.binary);
                c
            }
            None => Command::new(&self.config.binary),
        };
        cmd.arg("--id")
            .arg(&spec.id)
            .arg("--listen")
            .arg(spec.addr.to_string())
            .arg("--peers")
            .arg(self.peers_flag(node))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--log-file")
            .arg(&log_path)
            .arg("--replication")
            .arg(&self.config.replication)
            .arg("--failover")
            .arg(&self.config.failover)
            .arg("--log")
            .arg(&self.config.log)
            .arg("--initial-leader")
            .arg(&self.specs[0].id)
            .arg("--heartbeat-ms")
            .arg(self.config.heartbeat_ms.to_string())
            .arg("--failover-timeout-ms")
            .arg(self.config.failover_timeout_ms.to_string())
            .arg("--sync-timeout-ms")
            .arg(self.config.sync_timeout_ms.to_string())
            .arg(format!("--clock-offset-ms={clock_offset_ms}"))
            .arg("--compact-after-entries")
            .arg(self.config.compact_after_entries.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        if join {
            cmd.arg("--join");
        }
        cmd.args(self.config.design_flags());
        process::die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.config.binary.display()))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| anyhow!("{node} exited at once"))?;
        record_pid(&self.config.dir, node, pid);
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.starts_with("ready") => {}
            Ok(Ok(other)) => {
                let status = child.try_wait().ok().flatten();
                bail!(
                    "{node} did not start (said {:?}, exit {:?}); last log lines:\n{}",
                    other.unwrap_or_default(),
                    status,
                    tail(&log_path, 5)
                );
            }
            Ok(Err(e)) => bail!("{node}: cannot read its output: {e}"),
            Err(_) => bail!(
                "{node} did not report ready within 10 s; last log lines:\n{}",
                tail(&log_path, 5)
            ),
        }
        self.running.lock().expect("lock").insert(
            node.to_string(),
            Running {
                child,
                pid,
                paused: false,
            },
        );
        Ok(())
    }

    /// Asks every node for its status; `None` for nodes that do not answer in time.
    pub async fn statuses(&self, timeout: Duration) -> Vec<(NodeId, Option<Status>)> {
        let queries = self.specs.iter().cloned().map(|spec| async move {
            let mut client = NodeClient::new(spec.addr);
            let status = match client.call(RequestBody::Status, timeout).await {
                Ok(ReplyBody::StatusOk(s)) => Some(s),
                _ => None,
            };
            (spec.id, status)
        });
        futures_join_all(queries).await
    }

    /// Asks every multi-leader or leaderless node for its status; `None` for nodes that do
    /// not answer in time.
    pub async fn replica_statuses(
        &self,
        timeout: Duration,
    ) -> Vec<(NodeId, Option<ReplicaStatus>)> {
        let queries = self.specs.iter().cloned().map(|spec| async move {
            let mut client = NodeClient::new(spec.addr);
            let status = match client.call(RequestBody::Status, timeout).await {
                Ok(ReplyBody::ReplicaStatusOk(s)) => Some(*s),
                _ => None,
            };
            (spec.id, status)
        });
        futures_join_all(queries).await
    }

    /// Sends `node` one request directly (no routing, no retry).
    pub async fn call(
        &self,
        node: &str,
        body: RequestBody,
        timeout: Duration,
    ) -> anyhow::Result<ReplyBody> {
        let mut client = NodeClient::new(self.spec(node)?.addr);
        client
            .call(body, timeout)
            .await
            .map_err(|e| anyhow!("{node}: {e}"))
    }

    /// What `node` holds of `key` in its own replica, whatever its role: a single-leader
    /// node's local register (`nil` or the value), or a multi-leader / leaderless node's
    /// versions (one value, or a list of siblings) or set (a list of elements). The harness's
    /// final reads, which judge convergence.
    pub async fn local_read(
        &self,
        node: &str,
        key: i64,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let request = RequestBody::LocalRead { key };
        let ints = |v: Vec<i64>| Value::List(v.into_iter().map(Value::Int).collect());
        match self.call(node, request, timeout).await? {
            ReplyBody::ReadOk { value } => Ok(value.map_or(Value::Nil, Value::Int)),
            ReplyBody::Versions { values, .. } => Ok(match values.as_slice() {
                [] => Value::Nil,
                [v] => Value::Int(*v),
                _ => ints(values),
            }),
            ReplyBody::SetValue { elements, .. } => Ok(ints(elements)),
            other => Err(anyhow!(
                "{node}: unexpected answer to a local read: {other:?}"
            )),
        }
    }

    /// Multi-leader and leaderless nodes: from now on `node` drops every message to and from
    /// `peers` (an empty list heals it). This partitions a loopback cluster without a
    /// network fabric.
    pub async fn block(&self, node: &str, peers: &[&str]) -> anyhow::Result<()> {
        let peers: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        match self
            .call(node, RequestBody::Block { peers }, Duration::from_secs(1))
            .await?
        {
            ReplyBody::BlockOk { .. } => Ok(()),
            other => bail!("{node} answered block with {other:?}"),
        }
    }

    /// Blocks every pair of nodes in different `groups` (nodes in no group are cut off
    /// from all others).
    pub async fn partition(&self, groups: &[&[&str]]) -> anyhow::Result<()> {
        for spec in &self.specs {
            let mine = groups
                .iter()
                .find(|g| g.contains(&spec.id.as_str()))
                .copied()
                .unwrap_or(&[]);
            let others: Vec<&str> = self
                .specs
                .iter()
                .map(|s| s.id.as_str())
                .filter(|id| *id != spec.id && !mine.contains(id))
                .collect();
            self.block(&spec.id, &others).await?;
        }
        Ok(())
    }

    /// Lifts every `block` (paused or dead nodes are skipped: they block nothing after a
    /// restart either).
    pub async fn heal_blocks(&self) -> anyhow::Result<()> {
        for spec in &self.specs {
            let running = self
                .running
                .lock()
                .expect("lock")
                .get(&spec.id)
                .is_some_and(|p| !p.paused);
            if running {
                self.block(&spec.id, &[]).await?;
            }
        }
        Ok(())
    }

    async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let problem = if self.config.leaderless_or_multi_leader() {
                replica_health_problem(&self.replica_statuses(Duration::from_millis(300)).await)
            } else {
                health_problem(&self.statuses(Duration::from_millis(300)).await)
            };
            match problem {
                None => return Ok(()),
                Some(why) if tokio::time::Instant::now() >= deadline => {
                    bail!(
                        "the cluster did not become healthy within {} s: {why}",
                        timeout.as_secs()
                    )
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn signal(&self, node: &str, signal: nix::sys::signal::Signal) -> anyhow::Result<i32> {
        let running = self.running.lock().expect("lock");
        let proc = running
            .get(node)
            .ok_or_else(|| anyhow!("{node} is not running"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(proc.pid), signal)
            .with_context(|| format!("cannot send {signal} to {node}"))?;
        Ok(proc.pid)
    }
}

/// Multi-leader and leaderless clusters are healthy when every node answers (every node
/// accepts requests; there is no leader to agree on), and every leaderless node has heard
/// from every peer, so its links are up and its failure detector trusts them.
fn replica_health_problem(statuses: &[(NodeId, Option<ReplicaStatus>)]) -> Option<String> {
    for (id, status) in statuses {
        let Some(status) = status else {
            return Some(format!("{id} does not answer"));
        };
        if status.replication == "leaderless" {
            if let Some((peer, _)) = statuses
                .iter()
                .find(|(p, _)| p != id && !status.alive.contains(p))
            {
                return Some(format!("{id} has not heard from {peer} yet"));
            }
        }
    }
    None
}

/// Why the statuses do not describe a healthy cluster, or `None` when they do: every node
/// answers and all agree on one leader that says it is leader.
fn health_problem(statuses: &[(NodeId, Option<Status>)]) -> Option<String> {
    let mut leader: Option<&str> = None;
    for (id, status) in statuses {
        let Some(status) = status else {
            return Some(format!("{id} does not answer"));
        };
        let Some(l) = status.leader.as_deref() else {
            return Some(format!("{id} knows no leader"));
        };
        if status.replication.as_deref() == Some("chain") && status.chain.is_empty() {
            return Some(format!("{id} knows no chain yet"));
        }
        match leader {
            None => leader = Some(l),
            Some(prev) if prev != l => {
                return Some(format!("nodes disagree on the leader ({prev} vs {l})"));
            }
            Some(_) => {}
        }
    }
    let leader = leader?;
    let leader_says = statuses
        .iter()
        .find(|(id, _)| id == leader)
        .and_then(|(_, s)| s.as_ref())
        .map(|s| s.role);
    if leader_says != Some(Role::Leader) {
        return Some(format!("{leader} is named leader but does not say so"));
    }
    None
}

async fn futures_join_all<T, F>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    // Statuses are few (one per node), so tasks are cheap and keep queries concurrent.
    let mut set = Vec::new();
    for f in futures {
        set.push(tokio::spawn(f));
    }
    let mut out = Vec::with_capacity(set.len());
    for handle in set {
        if let Ok(v) = handle.await {
            out.push(v);
        }
    }
    out
}

#[async_trait]
impl Db for RefnodeCluster {
    fn nodes(&self) -> Vec<NodeId> {
        self.specs.iter().map(|s| s.id.clone()).collect()
    }

    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        for spec in &self.specs {
            self.spawn(&spec.id, false).await?;
        }
        self.wait_healthy(timeout).await
    }

    async fn teardown(&self) {
        let procs: Vec<(NodeId, Running)> = self.running.lock().expect("lock").drain().collect();
        for (_, mut proc) in procs {
            let pid = nix::unistd::Pid::from_raw(proc.pid);
            if proc.paused {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(3), proc.child.wait())
                .await
                .is_err()
            {
                let _ = proc.child.kill().await;
            }
        }
    }

    fn client(&self, process: u64) -> Box<dyn Client> {
        let client = RefnodeClient::new(
            self.specs.iter().map(|s| (s.id.clone(), s.addr)).collect(),
            process,
            self.config.read_routing,
        );
        Box::new(if self.config.leaderless_or_multi_leader() {
            client.writing_at_own_node()
        } else {
            client
        })
    }

    fn kill(&self) -> Option<&dyn Kill> {
        Some(self)
    }

    fn pause(&self) -> Option<&dyn Pause> {
        Some(self)
    }

    fn primary(&self) -> Option<&dyn Primary> {
        Some(self)
    }

    fn clock(&self) -> Option<&dyn Clock> {
        Some(self)
    }

    fn member(&self) -> Option<&dyn Member> {
        Some(self)
    }
}

#[async_trait]
impl Member for RefnodeCluster {
    async fn wipe_and_rejoin(&self, node: &str) -> anyhow::Result<()> {
        let data_dir = self.config.dir.join(&self.spec(node)?.id);
        if self.running.lock().expect("lock").contains_key(node) {
            Kill::kill(self, node).await?;
        }
        match std::fs::remove_dir_all(&data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot wipe {}: {e}", data_dir.display()),
        }
        self.spawn(node, true).await
    }
}

#[async_trait]
impl Kill for RefnodeCluster {
    async fn kill(&self, node: &str) -> anyhow::Result<()> {
        self.signal(node, nix::sys::signal::Signal::SIGKILL)?;
        let proc = self.running.lock().expect("lock").remove(node);
        if let Some(mut proc) = proc {
            // Reap it, so the port is free and no zombie remains.
            let _ = tokio::time::timeout(Duration::from_secs(5), proc.child.wait()).await;
        }
        Ok(())
    }

    async fn restart(&self, node: &str) -> anyhow::Result<()> {
        if self.running.lock().expect("lock").contains_key(node) {
            return Ok(());
        }
        self.spawn(node, true).await
    }
}

#[async_trait]
impl Pause for RefnodeCluster {
    async fn pause(&self, node: &str) -> anyhow::Result<()> {
        self.signal(node, nix::sys::signal::Signal::SIGSTOP)?;
        if let Some(p) = self.running.lock().expect("lock").get_mut(node) {
            p.paused = true;
        }
        Ok(())
    }

    async fn resume(&self, node: &str) -> anyhow::Result<()> {
        self.signal(node, nix::sys::signal::Signal::SIGCONT)?;
        if let Some(p) = self.running.lock().expect("lock").get_mut(node) {
            p.paused = false;
        }
        Ok(())
    }
}

#[async_trait]
impl Primary for RefnodeCluster {
    async fn primaries(&self) -> Vec<NodeId> {
        if self.config.leaderless_or_multi_leader() {
            // Every answering multi-leader node leads; leaderless nodes have no leader.
            return self
                .replica_statuses(Duration::from_millis(300))
                .await
                .into_iter()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s.replication == "multi-leader"))
                .map(|(id, _)| id)
                .collect();
        }
        let statuses = self.statuses(Duration::from_millis(300)).await;
        let mut leaders: Vec<(u64, NodeId)> = statuses
            .into_iter()
            .filter_map(|(id, s)| s.filter(|s| s.role == Role::Leader).map(|s| (s.epoch, id)))
            .collect();
        // Newest epoch first: that is the leader clients are most likely to be using.
        leaders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        leaders.into_iter().map(|(_, id)| id).collect()
    }
}

impl RefnodeCluster {
    /// Records `offset_ms` as `node`'s offset (so a restart keeps it) and, if the node runs,
    /// tells it.
    async fn set_clock(&self, node: &str, offset_ms: i64) -> anyhow::Result<()> {
        let addr = self.spec(node)?.addr;
        self.clock_offsets
            .lock()
            .expect("lock")
            .insert(node.to_string(), offset_ms);
        if !self.running.lock().expect("lock").contains_key(node) {
            return Ok(());
        }
        let mut client = NodeClient::new(addr);
        match client
            .call(RequestBody::SetClock { offset_ms }, Duration::from_secs(1))
            .await
        {
            Ok(ReplyBody::SetClockOk { offset_ms: set, .. }) if set == offset_ms => Ok(()),
            Ok(other) => bail!("{node} answered set-clock with {other:?}"),
            Err(e) => Err(anyhow!(
                "cannot set {node}'s clock (it takes the offset when it restarts): {e}"
            )),
        }
    }
}

#[async_trait]
impl Clock for RefnodeCluster {
    async fn bump_clock(&self, node: &str, offset_ms: i64) -> anyhow::Result<i64> {
        let current = self
            .clock_offsets
            .lock()
            .expect("lock")
            .get(node)
            .copied()
            .unwrap_or(0);
        let total = current.saturating_add(offset_ms);
        self.set_clock(node, total).await?;
        Ok(total)
    }

    async fn reset_clock(&self, node: &str) -> anyhow::Result<()> {
        self.set_clock(node, 0).await
    }
}

impl Drop for RefnodeCluster {
    fn drop(&mut self) {
        // kill_on_drop covers running children; paused ones need SIGCONT to die promptly.
        if let Ok(mut running) = self.running.lock() {
            for (_, proc) in running.drain() {
                let pid = nix::unistd::Pid::from_raw(proc.pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                if proc.paused {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                }
            }
        }
    }
}

fn free_loopback_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    Ok(crate::ports::free_ports(ip, n)?
        .into_iter()
        .map(|port| SocketAddr::new(ip, port))
        .collect())
}

/// Appends `node pid` to the run's `pids` file before anything else can go wrong, so that a
/// controller killed with SIGKILL leaves a record of what to clean up.
fn record_pid(dir: &Path, node: &str, pid: i32) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pids"))
    {
        let _ = writeln!(f, "{node} {pid}");
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A refnode client for one logical process. Writes go to the leader (following `not-leader`
/// hints); reads go where [`ReadRouting`] says, follow `not-tail` hints in chain mode, and
/// under `ryw` carry the log index of this client's last acknowledged write.
#[derive(Debug)]
pub struct RefnodeClient {
    nodes: Vec<(NodeId, NodeClient)>,
    /// The replica this process reads from under `sticky` and `ryw`.
    bound: usize,
    leader_guess: usize,
    /// The chain's tail, once a node named it.
    tail_guess: Option<usize>,
    routing: ReadRouting,
    /// Reads issued so far, which rotates `any` routing over the nodes.
    reads: u64,
    /// The log index of this client's last acknowledged write (0 = none yet).
    last_write_index: u64,
    /// Multi-leader and leaderless: per key, the context of this client's last read, plus
    /// its own writes since; passed with the next write of the key, which then supersedes
    /// exactly what this client has seen.
    contexts: HashMap<i64, VersionVector>,
}

/// Most keys a client remembers a context for; beyond it the client forgets them all, which
/// only makes its next writes concurrent with (siblings of) what it had read.
const MAX_CONTEXTS: usize = 10_000;

impl RefnodeClient {
    pub fn new(nodes: Vec<(NodeId, SocketAddr)>, process: u64, routing: ReadRouting) -> Self {
        let n = nodes.len().max(1);
        let bound = (process % n as u64) as usize;
        RefnodeClient {
            nodes: nodes
                .into_iter()
                .map(|(id, addr)| (id, NodeClient::new(addr)))
                .collect(),
            bound,
            leader_guess: 0,
            tail_guess: None,
            routing,
            reads: 0,
            last_write_index: 0,
            contexts: HashMap::new(),
        }
    }

    /// Multi-leader and leaderless clusters: this client writes at its own node (process
    /// modulo node count) rather than at a leader, following `not-leader` redirects of
    /// home-leader routing.
    pub fn writing_at_own_node(mut self) -> Self {
        self.leader_guess = self.bound;
        self
    }

    /// The context this client passes with its next write of `key`, if any.
    pub fn context(&self, key: i64) -> Option<&VersionVector> {
        self.contexts.get(&key)
    }

    fn remember_context(&mut self, key: i64, context: VersionVector) {
        if self.contexts.len() >= MAX_CONTEXTS && !self.contexts.contains_key(&key) {
            self.contexts.clear();
        }
        self.contexts.insert(key, context);
    }

    /// The log index of the last write this client saw acknowledged (what `ryw` reads ask
    /// a replica to have applied).
    pub fn last_write_index(&self) -> u64 {
        self.last_write_index
    }

    fn index_of(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|(id, _)| id == node)
    }

    /// Every node once, starting at `first` and going round.
    fn rotation(&self, first: usize) -> VecDeque<usize> {
        let n = self.nodes.len();
        (0..n).map(|k| (first + k) % n).collect()
    }

    /// The nodes to try for one call, in order; redirects may put others in front.
    fn plan(&mut self, is_read: bool) -> VecDeque<usize> {
        if !is_read {
            return self.rotation(self.leader_guess);
        }
        match self.routing {
            ReadRouting::Leader => {
                let mut order = self.rotation(self.leader_guess);
                if let Some(t) = self.tail_guess {
                    // Chain mode: the leader would only redirect to the tail.
                    order.retain(|&i| i != t);
                    order.push_front(t);
                }
                order
            }
            ReadRouting::Any => {
                let first = (self.bound as u64 + self.reads) % self.nodes.len() as u64;
                self.reads += 1;
                self.rotation(first as usize)
            }
            ReadRouting::Sticky => VecDeque::from([self.bound]),
            ReadRouting::Ryw => {
                // Replicas first (starting with our own), the leader as the last resort:
                // it has applied every write it acknowledged.
                let mut order = self.rotation(self.bound);
                order.retain(|&i| i != self.leader_guess);
                order.push_back(self.leader_guess);
                order
            }
        }
    }
}

fn request_for(call: &Invocation) -> Result<RequestBody, String> {
    let key = match &call.key {
        Some(Key::Int(k)) => *k,
        other => return Err(format!("refnode keys are integers, got {other:?}")),
    };
    match call.f {
        F::Read => Ok(RequestBody::Read {
            key,
            min_index: None,
            leader_only: false,
        }),
        F::Write => match call.value {
            Value::Int(value) => Ok(RequestBody::Write { key, value }),
            ref v => Err(format!("write needs an integer, got {v}")),
        },
        F::Cas => match call.value.as_cas() {
            Some((from, to)) => Ok(RequestBody::Cas { key, from, to }),
            None => Err(format!("cas needs [from to], got {}", call.value)),
        },
        // A counter increment, replicated as a statement or as its result (--log).
        F::Add => match call.value {
            Value::Int(n) => Ok(RequestBody::Exec {
                key,
                stmt: format!("add {n}"),
            }),
            ref v => Err(format!("add needs an integer, got {v}")),
        },
        F::Other(ref f) if f == "exec" => match &call.value {
            Value::Str(stmt) => Ok(RequestBody::Exec {
                key,
                stmt: stmt.clone(),
            }),
            v => Err(format!("exec needs a statement string, got {v}")),
        },
        // The set workload and per-node reads of the designs without a single leader.
        F::Other(ref f) if f == "set-add" || f == "set-remove" => match call.value {
            Value::Int(element) if f == "set-add" => Ok(RequestBody::SetAdd { key, element }),
            Value::Int(element) => Ok(RequestBody::SetRemove { key, element }),
            ref v => Err(format!("{f} needs an integer element, got {v}")),
        },
        F::Other(ref f) if f == "set-read" => Ok(RequestBody::SetRead { key }),
        F::Other(ref f) if f == "local-read" => Ok(RequestBody::LocalRead { key }),
        ref f => Err(format!("refnode does not support {f}")),
    }
}

#[async_trait]
impl Client for RefnodeClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let mut request = match request_for(call) {
            Ok(r) => r,
            Err(e) => {
                return Completion {
                    kind: OpType::Fail,
                    value: call.value.clone(),
                    node: None,
                    error: Some(e),
                };
            }
        };
        let is_read = matches!(
            request,
            RequestBody::Read { .. } | RequestBody::LocalRead { .. } | RequestBody::SetRead { .. }
        );
        let key = match call.key {
            Some(Key::Int(k)) => k,
            _ => 0,
        };
        if let (RequestBody::Write { key, value }, Some(context)) =
            (&request, self.contexts.get(&key))
        {
            request = RequestBody::Put {
                key: *key,
                value: *value,
                context: context.clone(),
            };
        }
        if let RequestBody::Read {
            min_index,
            leader_only,
            ..
        } = &mut request
        {
            if self.routing == ReadRouting::Ryw && self.last_write_index > 0 {
                *min_index = Some(self.last_write_index);
            }
            *leader_only = self.routing == ReadRouting::Leader;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut order = self.plan(is_read);
        // A definite failure (refused connection, not-leader, not-tail, behind) had no
        // effect, so trying another node is safe. Each node once, plus room for redirects.
        let max_attempts = self.nodes.len() + 2;
        let mut last_error = String::from("no node tried");
        let mut last_node = None;
        let mut attempts = 0;
        while let Some(target) = order.pop_front() {
            if attempts == max_attempts {
                break;
            }
            attempts += 1;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            let (node_id, client) = &mut self.nodes[target];
            let node = Some(node_id.clone());
            last_node = node.clone();
            match client.call(request.clone(), remaining).await {
                Ok(reply) => {
                    let value = match reply {
                        ReplyBody::ReadOk { value } => {
                            if self.routing == ReadRouting::Leader
                                && self.tail_guess != Some(target)
                            {
                                self.leader_guess = target;
                            }
                            value.map_or(Value::Nil, Value::Int)
                        }
                        ReplyBody::WriteOk { index } | ReplyBody::CasOk { index } => {
                            self.last_write_index = self.last_write_index.max(index);
                            call.value.clone()
                        }
                        ReplyBody::ExecOk { value, index } => {
                            self.last_write_index = self.last_write_index.max(index);
                            // An `add` records its argument, as Jepsen's counter does; an
                            // `exec` what the statement gave.
                            if call.f == F::Add {
                                call.value.clone()
                            } else {
                                Value::Int(value)
                            }
                        }
                        // Siblings read as a list of their values, one value as itself.
                        ReplyBody::Versions {
                            values, context, ..
                        } => {
                            if !matches!(request, RequestBody::LocalRead { .. }) {
                                self.remember_context(key, context);
                            }
                            match values.as_slice() {
                                [] => Value::Nil,
                                [v] => Value::Int(*v),
                                many => Value::List(many.iter().map(|v| Value::Int(*v)).collect()),
                            }
                        }
                        ReplyBody::Written { context, .. } => {
                            if matches!(
                                request,
                                RequestBody::Write { .. } | RequestBody::Put { .. }
                            ) {
                                self.remember_context(key, context);
                            }
                            call.value.clone()
                        }
                        ReplyBody::SetValue { elements, .. } => {
                            Value::List(elements.into_iter().map(Value::Int).collect())
                        }
                        _ => call.value.clone(),
                    };
                    if !is_read {
                        self.leader_guess = target;
                    }
                    return Completion {
                        kind: OpType::Ok,
                        value,
                        node,
                        error: None,
                    };
                }
                Err(CallError::Reply(e)) if e.code == ErrorCode::CasMismatch => {
                    return Completion {
                        kind: OpType::Fail,
                        value: call.value.clone(),
                        node,
                        error: Some("cas-mismatch".to_string()),
                    };
                }
                // Every node of the cluster would say the same.
                Err(CallError::Reply(e))
                    if matches!(e.code, ErrorCode::Unsupported | ErrorCode::Malformed) =>
                {
                    return Completion {
                        kind: OpType::Fail,
                        value: call.value.clone(),
                        node,
                        error: Some(CallError::Reply(e).to_string()),
                    };
                }
                Err(e) if e.definite() => {
                    last_error = e.to_string();
                    let redirect = match &e {
                        CallError::Reply(r) => r
                            .redirect()
                            .and_then(|h| self.index_of(h))
                            .map(|h| (r.code, h)),
                        _ => None,
                    };
                    match redirect {
                        Some((ErrorCode::NotTail, h)) => self.tail_guess = Some(h),
                        Some((_, h)) => self.leader_guess = h,
                        None if self.tail_guess == Some(target) => self.tail_guess = None,
                        None => {}
                    }
                    if let Some((_, h)) = redirect.filter(|(_, h)| *h != target) {
                        order.retain(|&i| i != h);
                        order.push_front(h);
                    }
                    if !is_read && redirect.is_none() && target == self.leader_guess {
                        self.leader_guess = (target + 1) % self.nodes.len();
                    }
                }
                Err(e) => {
                    // The request may have taken effect: indeterminate, and the process is
                    // considered crashed by the harness.
                    if !is_read {
                        self.leader_guess = (target + 1) % self.nodes.len();
                    }
                    return Completion {
                        kind: OpType::Info,
                        value: call.value.clone(),
                        node,
                        error: Some(e.to_string()),
                    };
                }
            }
        }
        Completion {
            kind: OpType::Fail,
            value: call.value.clone(),
            node: last_node,
            error: Some(last_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refnode::protocol::{ErrorReply, Request, Response, ResponseResult};

    fn status(node: &str, role: Role, leader: Option<&str>) -> (NodeId, Option<Status>) {
        (
            node.to_string(),
            Some(Status {
                node: node.to_string(),
                role,
                leader: leader.map(str::to_string),
                epoch: 1,
                ..Status::default()
            }),
        )
    }

    #[test]
    fn healthy_when_all_agree_on_a_leader_that_says_so() {
        let s = vec![
            status("n1", Role::Leader, Some("n1")),
            status("n2", Role::Follower, Some("n1")),
        ];
        assert_eq!(health_problem(&s), None);
    }

    #[test]
    fn unhealthy_when_a_node_is_silent_or_nodes_disagree() {
        let silent = vec![status("n1", Role::Leader, Some("n1")), ("n2".into(), None)];
        assert_eq!(health_problem(&silent).unwrap(), "n2 does not answer");
        let split = vec![
            status("n1", Role::Leader, Some("n1")),
            status("n2", Role::Leader, Some("n2")),
        ];
        assert!(health_problem(&split).unwrap().contains("disagree"));
        let no_leader = vec![status("n1", Role::Follower, None)];
        assert!(
            health_problem(&no_leader)
                .unwrap()
                .contains("knows no leader")
        );
    }

    #[test]
    fn requests_are_built_from_invocations() {
        let call = Invocation {
            f: F::Cas,
            key: Some(Key::Int(3)),
            value: Value::List(vec![Value::Int(1), Value::Int(2)]),
        };
        assert_eq!(
            request_for(&call).unwrap(),
            RequestBody::Cas {
                key: 3,
                from: 1,
                to: 2
            }
        );
        let exec = Invocation {
            f: F::Other("exec".into()),
            key: Some(Key::Int(1)),
            value: Value::Str("set now()".into()),
        };
        assert_eq!(
            request_for(&exec).unwrap(),
            RequestBody::Exec {
                key: 1,
                stmt: "set now()".into()
            }
        );
        let add = Invocation {
            f: F::Add,
            key: Some(Key::Int(2)),
            value: Value::Int(5),
        };
        assert_eq!(
            request_for(&add).unwrap(),
            RequestBody::Exec {
                key: 2,
                stmt: "add 5".into()
            }
        );
        let bad = Invocation {
            f: F::Write,
            key: Some(Key::Str("x".into())),
            value: Value::Int(1),
        };
        assert!(request_for(&bad).unwrap_err().contains("integers"));
    }

    /// A stand-in for one node: answers each request with `answer(&request)` and records
    /// what it was asked, so the client's routing can be checked without a cluster.
    async fn fake_node(
        answer: impl Fn(&RequestBody) -> ResponseResult + Send + Sync + 'static,
    ) -> (SocketAddr, std::sync::Arc<Mutex<Vec<RequestBody>>>) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let answer = std::sync::Arc::new(answer);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let (r, mut w) = socket.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let req: Request = serde_json::from_str(&line).unwrap();
                        log.lock().unwrap().push(req.body.clone());
                        let result = answer(&req.body);
                        let mut out = serde_json::to_vec(&Response { id: req.id, result }).unwrap();
                        out.push(b'\n');
                        if w.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn err(code: ErrorCode, redirect: Option<&str>) -> ResponseResult {
        let mut e = ErrorReply::new(code, true, "fake");
        e.leader = redirect
            .map(str::to_string)
            .filter(|_| code == ErrorCode::NotLeader);
        e.tail = redirect
            .map(str::to_string)
            .filter(|_| code == ErrorCode::NotTail);
        ResponseResult::Err(e)
    }

    /// A replica that has applied the log up to `applied` and holds `value` for every key;
    /// writes are refused with the leader named (`leader` itself accepts them at index 7).
    fn replica(
        applied: u64,
        value: i64,
        leader: &'static str,
        me: &'static str,
    ) -> impl Fn(&RequestBody) -> ResponseResult + Send + Sync + 'static {
        move |req| match req {
            RequestBody::Read { min_index, .. } if min_index.is_some_and(|m| m > applied) => {
                err(ErrorCode::Behind, None)
            }
            RequestBody::Read { .. } => {
                ResponseResult::Ok(ReplyBody::ReadOk { value: Some(value) })
            }
            _ if me == leader => ResponseResult::Ok(ReplyBody::WriteOk { index: 7 }),
            _ => err(ErrorCode::NotLeader, Some(leader)),
        }
    }

    fn reads_at(seen: &Mutex<Vec<RequestBody>>) -> Vec<Option<u64>> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                RequestBody::Read { min_index, .. } => Some(*min_index),
                _ => None,
            })
            .collect()
    }

    fn read_call() -> Invocation {
        Invocation {
            f: F::Read,
            key: Some(Key::Int(1)),
            value: Value::Nil,
        }
    }

    fn write_call() -> Invocation {
        Invocation {
            f: F::Write,
            key: Some(Key::Int(1)),
            value: Value::Int(9),
        }
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn ryw_reads_skip_replicas_behind_the_clients_last_write() {
        // n2 is the leader; n3 (this client's replica) has applied only up to index 3.
        let (a1, s1) = fake_node(replica(9, 1, "n2", "n1")).await;
        let (a2, s2) = fake_node(replica(9, 2, "n2", "n2")).await;
        let (a3, s3) = fake_node(replica(3, 3, "n2", "n3")).await;
        let nodes = vec![("n1".into(), a1), ("n2".into(), a2), ("n3".into(), a3)];
        let mut c = RefnodeClient::new(nodes, 2, ReadRouting::Ryw);
        let before = c.invoke(&read_call(), T).await;
        assert_eq!((before.kind, before.value), (OpType::Ok, Value::Int(3)));
        let w = c.invoke(&write_call(), T).await;
        assert_eq!((w.kind, w.node.as_deref()), (OpType::Ok, Some("n2")));
        assert_eq!(c.last_write_index(), 7);
        let after = c.invoke(&read_call(), T).await;
        assert_eq!(after.kind, OpType::Ok, "{after:?}");
        assert_eq!(
            after.node.as_deref(),
            Some("n1"),
            "next replica, not the leader"
        );
        assert_eq!(reads_at(&s3), vec![None, Some(7)]);
        assert_eq!(reads_at(&s1), vec![Some(7)]);
        assert!(reads_at(&s2).is_empty(), "the leader is the last resort");
    }

    #[tokio::test]
    async fn ryw_falls_back_to_the_leader_and_fails_definitely_when_all_are_behind() {
        let (a1, _) = fake_node(replica(0, 1, "n1", "n1")).await;
        let (a2, _) = fake_node(replica(0, 2, "n1", "n2")).await;
        let nodes = vec![("n1".into(), a1), ("n2".into(), a2)];
        let mut c = RefnodeClient::new(nodes, 1, ReadRouting::Ryw);
        assert_eq!(c.invoke(&write_call(), T).await.kind, OpType::Ok);
        let r = c.invoke(&read_call(), T).await;
        assert_eq!(r.kind, OpType::Fail, "{r:?}");
        assert!(r.error.unwrap().contains("behind"));
        assert_eq!(r.node.as_deref(), Some("n1"), "the leader was tried last");
    }

    #[tokio::test]
    async fn sticky_reads_stay_on_one_replica_and_any_reads_rotate() {
        let mut addrs = Vec::new();
        let mut seen = Vec::new();
        for (k, id) in ["n1", "n2", "n3"].into_iter().enumerate() {
            let (a, s) = fake_node(replica(0, k as i64, "n1", id)).await;
            addrs.push((id.to_string(), a));
            seen.push(s);
        }
        let mut sticky = RefnodeClient::new(addrs.clone(), 4, ReadRouting::Sticky);
        let mut any = RefnodeClient::new(addrs, 4, ReadRouting::Any);
        let mut sticky_nodes = Vec::new();
        let mut any_nodes = Vec::new();
        for _ in 0..4 {
            sticky_nodes.push(sticky.invoke(&read_call(), T).await.node.unwrap());
            any_nodes.push(any.invoke(&read_call(), T).await.node.unwrap());
        }
        assert_eq!(sticky_nodes, vec!["n2"; 4]);
        assert_eq!(any_nodes, vec!["n2", "n3", "n1", "n2"]);
    }

    #[tokio::test]
    async fn siblings_read_as_a_list_and_their_context_goes_back_with_the_next_write() {
        use crate::refnode::server::version_vector::Dot;
        let vv = |counter| {
            let mut v = VersionVector::new();
            v.add(&Dot::new("n1.a", counter));
            v
        };
        let (read_ctx, write_ctx) = (vv(1), vv(2));
        let (r, w) = (read_ctx.clone(), write_ctx.clone());
        let (addr, seen) = fake_node(move |req| match req {
            RequestBody::Read { .. } => ResponseResult::Ok(ReplyBody::Versions {
                values: vec![1, 2],
                siblings: 2,
                context: r.clone(),
            }),
            RequestBody::SetRead { .. } => ResponseResult::Ok(ReplyBody::SetValue {
                elements: vec![3, 4],
                siblings: 1,
            }),
            _ => ResponseResult::Ok(ReplyBody::Written {
                context: w.clone(),
                acks: 2,
            }),
        })
        .await;
        let mut c = RefnodeClient::new(vec![("n1".into(), addr)], 0, ReadRouting::Any)
            .writing_at_own_node();
        assert_eq!(c.invoke(&write_call(), T).await.kind, OpType::Ok);
        let r = c.invoke(&read_call(), T).await;
        assert_eq!(r.value, Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(c.invoke(&write_call(), T).await.kind, OpType::Ok);
        assert_eq!(c.invoke(&write_call(), T).await.kind, OpType::Ok);
        let set_read = Invocation {
            f: F::Other("set-read".into()),
            key: Some(Key::Int(1)),
            value: Value::Nil,
        };
        assert_eq!(
            c.invoke(&set_read, T).await.value,
            Value::List(vec![Value::Int(3), Value::Int(4)])
        );
        let sent = seen.lock().unwrap().clone();
        // A blind first write, then the read's context, then the previous write's.
        assert_eq!(sent[0], RequestBody::Write { key: 1, value: 9 });
        assert_eq!(
            sent[2],
            RequestBody::Put {
                key: 1,
                value: 9,
                context: read_ctx
            }
        );
        assert_eq!(
            sent[3],
            RequestBody::Put {
                key: 1,
                value: 9,
                context: write_ctx
            }
        );
    }

    #[test]
    fn replica_clusters_are_healthy_once_every_node_answers_and_hears_its_peers() {
        let st = |node: &str, replication: &str, alive: &[&str]| {
            (
                node.to_string(),
                Some(ReplicaStatus {
                    node: node.to_string(),
                    replication: replication.to_string(),
                    alive: alive.iter().map(|s| s.to_string()).collect(),
                    ..ReplicaStatus::default()
                }),
            )
        };
        let ok = vec![
            st("n1", "leaderless", &["n2"]),
            st("n2", "leaderless", &["n1"]),
        ];
        assert_eq!(replica_health_problem(&ok), None);
        let deaf = vec![st("n1", "leaderless", &[]), st("n2", "leaderless", &["n1"])];
        assert_eq!(
            replica_health_problem(&deaf).unwrap(),
            "n1 has not heard from n2 yet"
        );
        let multi = vec![st("n1", "multi-leader", &[]), ("n2".to_string(), None)];
        assert_eq!(
            replica_health_problem(&multi).unwrap(),
            "n2 does not answer"
        );
    }

    #[tokio::test]
    async fn reads_follow_not_tail_redirects_and_remember_the_tail() {
        let tail_only = |me: &'static str| {
            move |req: &RequestBody| match req {
                RequestBody::Read { .. } if me == "n3" => {
                    ResponseResult::Ok(ReplyBody::ReadOk { value: Some(3) })
                }
                RequestBody::Read { .. } => err(ErrorCode::NotTail, Some("n3")),
                _ => err(ErrorCode::Unavailable, None),
            }
        };
        let (a1, s1) = fake_node(tail_only("n1")).await;
        let (a2, _) = fake_node(tail_only("n2")).await;
        let (a3, s3) = fake_node(tail_only("n3")).await;
        let nodes = vec![("n1".into(), a1), ("n2".into(), a2), ("n3".into(), a3)];
        let mut c = RefnodeClient::new(nodes.clone(), 0, ReadRouting::Leader);
        for _ in 0..3 {
            let r = c.invoke(&read_call(), T).await;
            assert_eq!((r.kind, r.node.as_deref()), (OpType::Ok, Some("n3")));
        }
        assert_eq!(
            reads_at(&s1).len(),
            1,
            "redirected once, then straight to the tail"
        );
        assert_eq!(reads_at(&s3).len(), 3);
        let mut sticky = RefnodeClient::new(nodes, 1, ReadRouting::Sticky);
        let r = sticky.invoke(&read_call(), T).await;
        assert_eq!((r.kind, r.node.as_deref()), (OpType::Ok, Some("n3")));
    }
}

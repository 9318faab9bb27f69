//! A cluster of refnode processes on 127.0.0.1, started and faulted by the harness, and the
//! client that drives it.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
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
use super::protocol::{ErrorCode, ReplyBody, RequestBody, Role, Status};
use crate::db::{Client, Completion, Db, Invocation, Kill, NodeId, Pause, Primary, ReadRouting};
use crate::process;

/// How the harness wants the cluster built.
#[derive(Debug, Clone)]
pub struct RefnodeConfig {
    /// The `refnode` executable.
    pub binary: PathBuf,
    pub node_count: usize,
    /// `sync` or `async`.
    pub replication: String,
    pub read_routing: ReadRouting,
    /// Where node data directories and logs go (the run's store directory).
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    pub failover_timeout_ms: u64,
    pub sync_timeout_ms: u64,
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
        let ports = free_loopback_ports(config.node_count)?;
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
        })
    }

    pub fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.specs.iter().find(|s| s.id == node).map(|s| s.addr)
    }

    /// The log file of a node, inside the run directory.
    pub fn log_path(&self, node: &str) -> PathBuf {
        self.config.dir.join(format!("{node}.log"))
    }

    fn peers_flag(&self) -> String {
        self.specs
            .iter()
            .map(|s| format!("{}={}", s.id, s.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spec(&self, node: &str) -> anyhow::Result<&NodeSpec> {
        self.specs
            .iter()
            .find(|s| s.id == node)
            .ok_or_else(|| anyhow!("no node named {node}"))
    }

    async fn spawn(&self, node: &str) -> anyhow::Result<()> {
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
        let mut cmd = Command::new(&self.config.binary);
        cmd.arg("--id")
            .arg(&spec.id)
            .arg("--listen")
            .arg(spec.addr.to_string())
            .arg("--peers")
            .arg(self.peers_flag())
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--log-file")
            .arg(&log_path)
            .arg("--replication")
            .arg(&self.config.replication)
            .arg("--initial-leader")
            .arg(&self.specs[0].id)
            .arg("--heartbeat-ms")
            .arg(self.config.heartbeat_ms.to_string())
            .arg("--failover-timeout-ms")
            .arg(self.config.failover_timeout_ms.to_string())
            .arg("--sync-timeout-ms")
            .arg(self.config.sync_timeout_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
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

    async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = self.statuses(Duration::from_millis(300)).await;
            let problem = health_problem(&statuses);
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
            self.spawn(&spec.id).await?;
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
        Box::new(RefnodeClient::new(
            self.specs.iter().map(|s| (s.id.clone(), s.addr)).collect(),
            process,
            self.config.read_routing,
        ))
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
        self.spawn(node).await
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
    // Hold every listener until all are chosen so the ports are distinct.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| l.local_addr().context("cannot read a bound port"))
        .collect()
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

/// A refnode client for one logical process: writes go to the leader (following `not-leader`
/// hints), reads go to the leader or to the node this process is bound to.
#[derive(Debug)]
pub struct RefnodeClient {
    nodes: Vec<(NodeId, NodeClient)>,
    bound: usize,
    leader_guess: usize,
    routing: ReadRouting,
}

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
            routing,
        }
    }

    fn index_of(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|(id, _)| id == node)
    }
}

fn request_for(call: &Invocation) -> Result<RequestBody, String> {
    let key = match &call.key {
        Some(Key::Int(k)) => *k,
        other => return Err(format!("refnode keys are integers, got {other:?}")),
    };
    match call.f {
        F::Read => Ok(RequestBody::Read { key }),
        F::Write => match call.value {
            Value::Int(value) => Ok(RequestBody::Write { key, value }),
            ref v => Err(format!("write needs an integer, got {v}")),
        },
        F::Cas => match call.value.as_cas() {
            Some((from, to)) => Ok(RequestBody::Cas { key, from, to }),
            None => Err(format!("cas needs [from to], got {}", call.value)),
        },
        ref f => Err(format!("refnode does not support {f}")),
    }
}

#[async_trait]
impl Client for RefnodeClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let request = match request_for(call) {
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
        let deadline = tokio::time::Instant::now() + timeout;
        let to_bound_node = call.f == F::Read && self.routing == ReadRouting::Any;
        let mut target = if to_bound_node {
            self.bound
        } else {
            self.leader_guess
        };
        // A definite failure (refused connection, not-leader) had no effect, so trying the
        // next node is safe; each node is tried at most once per call.
        let attempts = if to_bound_node { 1 } else { self.nodes.len() };
        let mut last_error = String::from("no node tried");
        for _ in 0..attempts {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            let (node_id, client) = &mut self.nodes[target];
            let node = Some(node_id.clone());
            match client.call(request.clone(), remaining).await {
                Ok(reply) => {
                    if !to_bound_node {
                        self.leader_guess = target;
                    }
                    let value = match reply {
                        ReplyBody::ReadOk { value } => value.map_or(Value::Nil, Value::Int),
                        _ => call.value.clone(),
                    };
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
                Err(e) if e.definite() => {
                    last_error = e.to_string();
                    let hint = match &e {
                        CallError::Reply(r) => r.leader.as_deref().and_then(|l| self.index_of(l)),
                        _ => None,
                    };
                    target = match hint {
                        Some(h) if h != target => h,
                        _ => (target + 1) % self.nodes.len(),
                    };
                    if !to_bound_node {
                        self.leader_guess = target;
                    }
                }
                Err(e) => {
                    // The request may have taken effect: indeterminate, and the process is
                    // considered crashed by the harness.
                    self.leader_guess = (target + 1) % self.nodes.len();
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
            node: None,
            error: Some(last_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node: &str, role: Role, leader: Option<&str>) -> (NodeId, Option<Status>) {
        (
            node.to_string(),
            Some(Status {
                node: node.to_string(),
                role,
                leader: leader.map(str::to_string),
                epoch: 1,
                last_index: 0,
                commit_index: 0,
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
        let bad = Invocation {
            f: F::Write,
            key: Some(Key::Str("x".into())),
            value: Value::Int(1),
        };
        assert!(request_for(&bad).unwrap_err().contains("integers"));
    }
}

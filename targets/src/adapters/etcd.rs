//! etcd: a cluster of Debian's `etcd` (3.4) started by the harness, or an external one, and a
//! client over etcd's v3 JSON gateway.
//!
//! Why the JSON gateway rather than a gRPC crate: the maintained Rust client (`etcd-client`)
//! compiles etcd's `.proto` files at build time and so needs `protoc` installed before the
//! workspace even builds; the gateway is part of every etcd v3 server, speaks the same
//! `KV` API (range, put, txn with compares) with the same semantics, and a small HTTP client
//! lets this adapter tell "never sent" (definite) from "sent, no answer" (indeterminate).
//!
//! Operations (keys are integers or strings, stored as their decimal or plain text; values
//! as JSON text):
//! - `read k` → `ok` with the integer or `nil`; any error → `fail` (a read changes nothing).
//!   Linearizable (through the leader's read index) or serializable (the member's local
//!   state, possibly stale) as [`EtcdReads`] says.
//! - `write k v` → `ok`; an error etcd gives before proposing (no leader, too many
//!   requests, bad request) or a refused connection → `fail`; a timeout, a broken
//!   connection or "leader changed" / "request timed out" → `info`.
//! - `cas k [from to]` → one txn comparing the value: `ok` when it applied, `fail` when the
//!   compare failed; errors as for `write`.
//! - `txn [[r k nil] [append k v] [w k v] ...]` (list-append and rw-register): reads every
//!   key in one read-only txn (one revision), computes the results, then commits the writes
//!   in one txn guarded by each key's `mod_revision`: `ok` with the reads filled in, `fail`
//!   when another writer got in between (the guard failed) — strict serializable.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use histories::{F, MicroF, MicroOp, OpType, Value};
use serde_json::{Value as Json, json};

use super::http::{HttpClient, HttpError};
use super::procs::{self, Procs};
use super::{NodeHost, completion, hosts_for, install, key_text, ports_for, refuse, txn_ops};
use crate::db::{Client, Completion, Db, Invocation, Kill, NodeId, Pause, Primary};

/// Which read path `read` and read-only transactions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EtcdReads {
    /// Through the leader (ReadIndex): linearizable, fails on a minority member.
    #[default]
    Linearizable,
    /// From the member's own state: fast and available, but may be stale.
    Serializable,
}

impl EtcdReads {
    pub fn as_str(self) -> &'static str {
        match self {
            EtcdReads::Linearizable => "linearizable",
            EtcdReads::Serializable => "serializable",
        }
    }
}

impl std::str::FromStr for EtcdReads {
    type Err = String;
    fn from_str(s: &str) -> Result<EtcdReads, String> {
        match s {
            "linearizable" => Ok(EtcdReads::Linearizable),
            "serializable" => Ok(EtcdReads::Serializable),
            _ => Err(format!(
                "unknown etcd read mode {s:?}; expected linearizable or serializable"
            )),
        }
    }
}

/// How the harness wants an etcd cluster built. Build it with `..EtcdConfig::default()`.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// The `etcd` executable (a bare name is looked up on `PATH`).
    pub binary: PathBuf,
    pub node_count: usize,
    /// Where data directories (`n1.etcd`, ...), logs (`n1.log`) and the `pids` file go.
    pub dir: PathBuf,
    pub reads: EtcdReads,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// One per node, or empty for all on 127.0.0.1.
    pub hosts: Vec<NodeHost>,
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            binary: PathBuf::from("etcd"),
            node_count: 3,
            dir: PathBuf::from("."),
            reads: EtcdReads::Linearizable,
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            hosts: Vec::new(),
        }
    }
}

/// A cluster the harness did not start (`--endpoints host:port,...`): no process faults.
#[derive(Debug, Clone, Default)]
pub struct ExternalEtcdConfig {
    /// Client URLs' `host:port`, one per member; the members are named `n1`, `n2`, ... in
    /// this order.
    pub endpoints: Vec<String>,
    pub reads: EtcdReads,
}

/// Installs Debian's `etcd-server` when `etcd` is not on `PATH`.
pub fn ensure_installed() -> anyhow::Result<()> {
    install::ensure_package("etcd-server", || install::which("etcd").is_some())
}

#[derive(Debug, Clone)]
struct Member {
    id: NodeId,
    host: NodeHost,
    /// `ip:port` of the client (and gateway) listener.
    client_addr: String,
    peer_url: String,
}

#[derive(Debug)]
struct Local {
    config: EtcdConfig,
    binary: PathBuf,
    procs: Procs,
}

/// An etcd cluster: started here ([`EtcdCluster::new`]) or external
/// ([`EtcdCluster::external`]).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    reads: EtcdReads,
    /// `None` in external mode.
    local: Option<Local>,
    /// etcd member ids (decimal, as the gateway prints them) to node names, learned from
    /// each member's status.
    member_ids: Arc<Mutex<HashMap<String, NodeId>>>,
}

impl EtcdCluster {
    /// Chooses ports and directories. Nothing starts until [`Db::start`].
    pub fn new(config: EtcdConfig) -> anyhow::Result<EtcdCluster> {
        if config.node_count == 0 {
            bail!("a cluster needs at least one node");
        }
        let binary = install::which(&config.binary.to_string_lossy()).ok_or_else(|| {
            anyhow!(
                "etcd not found at {} (apt-get install etcd-server)",
                config.binary.display()
            )
        })?;
        let hosts = hosts_for(&config.hosts, config.node_count)?;
        let client_ports = ports_for(&hosts, 2379)?;
        let peer_ports = ports_for(&hosts, 2380)?;
        let members = hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| Member {
                id: format!("n{}", i + 1),
                client_addr: format!("{}:{}", host.ip, client_ports[i]),
                peer_url: format!("http://{}:{}", host.ip, peer_ports[i]),
                host,
            })
            .collect();
        Ok(EtcdCluster {
            members,
            reads: config.reads,
            local: Some(Local {
                procs: Procs::new(&config.dir),
                binary,
                config,
            }),
            member_ids: Arc::default(),
        })
    }

    /// A cluster somebody else runs. [`Db::start`] only waits for it to be healthy;
    /// [`Db::teardown`] leaves it alone; there is no kill or pause.
    pub fn external(config: ExternalEtcdConfig) -> anyhow::Result<EtcdCluster> {
        if config.endpoints.is_empty() {
            bail!("--endpoints names no etcd member");
        }
        let members = config
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let addr = e
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string();
                if addr.is_empty() || !addr.contains(':') {
                    bail!("endpoint {e:?} is not host:port");
                }
                Ok(Member {
                    id: format!("n{}", i + 1),
                    host: NodeHost::default(),
                    client_addr: addr,
                    peer_url: String::new(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(EtcdCluster {
            members,
            reads: config.reads,
            local: None,
            member_ids: Arc::default(),
        })
    }

    /// The `host:port` clients of `node` talk to.
    pub fn client_addr(&self, node: &str) -> Option<&str> {
        self.member(node).ok().map(|m| m.client_addr.as_str())
    }

    /// The log file of a node the harness started.
    pub fn log_path(&self, node: &str) -> Option<PathBuf> {
        self.local.as_ref().map(|l| l.procs.log_path(node))
    }

    fn member(&self, node: &str) -> anyhow::Result<&Member> {
        self.members
            .iter()
            .find(|m| m.id == node)
            .ok_or_else(|| anyhow!("no node named {node}"))
    }

    fn local(&self) -> anyhow::Result<&Local> {
        self.local
            .as_ref()
            .ok_or_else(|| anyhow!("an external etcd cluster has no process faults"))
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.id, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts `node` on its data directory (new or existing: etcd ignores the initial
    /// cluster flags once it has data).
    fn spawn(&self, node: &str) -> anyhow::Result<()> {
        let local = self.local()?;
        let m = self.member(node)?;
        let client_url = format!("http://{}", m.client_addr);
        let mut cmd = m.host.command(&local.binary);
        cmd.arg("--name")
            .arg(&m.id)
            .arg("--data-dir")
            .arg(local.config.dir.join(format!("{}.etcd", m.id)))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&m.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&m.peer_url)
            .arg("--initial-cluster")
            .arg(self.initial_cluster())
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg("splitbrain")
            // A member coming back from a partition must not depose a working leader.
            .arg("--pre-vote")
            .arg("--heartbeat-interval")
            .arg(local.config.heartbeat_ms.to_string())
            .arg("--election-timeout")
            .arg(local.config.election_timeout_ms.to_string())
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr");
        local.procs.spawn(node, cmd)?;
        Ok(())
    }

    /// Each member's status (`None` when it does not answer in `timeout`), concurrently.
    async fn statuses(&self, timeout: Duration) -> Vec<(NodeId, Option<Status>)> {
        let queries: Vec<_> = self
            .members
            .iter()
            .map(|m| {
                let (id, addr) = (m.id.clone(), m.client_addr.clone());
                tokio::spawn(async move {
                    let mut http = HttpClient::new(&addr);
                    let status = match http
                        .post_json("/v3/maintenance/status", &json!({}), timeout)
                        .await
                    {
                        Ok((200, body)) => Status::parse(&body),
                        _ => None,
                    };
                    (id, status)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            if let Ok(r) = q.await {
                out.push(r);
            }
        }
        let mut ids = self.member_ids.lock().expect("lock");
        for (node, status) in &out {
            if let Some(s) = status {
                ids.insert(s.member_id.clone(), node.clone());
            }
        }
        out
    }

    async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(local) = &self.local {
                for m in &self.members {
                    if let Some(status) = local.procs.exited(&m.id) {
                        bail!(
                            "etcd {} exited ({status}); last log lines:\n{}",
                            m.id,
                            procs::tail(&local.procs.log_path(&m.id), 5)
                        );
                    }
                }
            }
            let statuses = self.statuses(Duration::from_millis(500)).await;
            let problem = health_problem(&statuses);
            match problem {
                None => return Ok(()),
                Some(why) if tokio::time::Instant::now() >= deadline => bail!(
                    "the etcd cluster did not become healthy within {} ms: {why}",
                    timeout.as_millis()
                ),
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// What `/v3/maintenance/status` says, the parts used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    member_id: String,
    /// `"0"` when the member knows no leader.
    leader: String,
}

impl Status {
    fn parse(body: &Json) -> Option<Status> {
        Some(Status {
            member_id: body["header"]["member_id"].as_str()?.to_string(),
            leader: body["leader"].as_str().unwrap_or("0").to_string(),
        })
    }

    fn is_leader(&self) -> bool {
        self.leader != "0" && self.leader == self.member_id
    }
}

/// Why the statuses are not those of a healthy cluster: every member answers and names the
/// same leader.
fn health_problem(statuses: &[(NodeId, Option<Status>)]) -> Option<String> {
    let mut leader: Option<&str> = None;
    for (id, status) in statuses {
        let Some(s) = status else {
            return Some(format!("{id} does not answer"));
        };
        if s.leader == "0" {
            return Some(format!("{id} knows no leader"));
        }
        match leader {
            None => leader = Some(&s.leader),
            Some(l) if l != s.leader => return Some("members disagree on the leader".into()),
            Some(_) => {}
        }
    }
    None
}

#[async_trait]
impl Db for EtcdCluster {
    fn nodes(&self) -> Vec<NodeId> {
        self.members.iter().map(|m| m.id.clone()).collect()
    }

    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        if let Some(local) = &self.local {
            std::fs::create_dir_all(&local.config.dir)
                .with_context(|| format!("cannot create {}", local.config.dir.display()))?;
            for m in &self.members {
                self.spawn(&m.id)?;
            }
        }
        self.wait_healthy(timeout).await
    }

    async fn teardown(&self) {
        if let Some(local) = &self.local {
            // A leader told to stop tries to hand over leadership first; with its peers gone
            // that waits, so the grace is short.
            local.procs.stop_all(Duration::from_secs(2)).await;
        }
    }

    fn client(&self, process: u64) -> Box<dyn Client> {
        Box::new(EtcdClient::new(
            self.members
                .iter()
                .map(|m| (m.id.clone(), m.client_addr.clone()))
                .collect(),
            process,
            self.reads,
        ))
    }

    fn kill(&self) -> Option<&dyn Kill> {
        self.local.as_ref().map(|_| self as &dyn Kill)
    }

    fn pause(&self) -> Option<&dyn Pause> {
        self.local.as_ref().map(|_| self as &dyn Pause)
    }

    fn primary(&self) -> Option<&dyn Primary> {
        Some(self)
    }
}

#[async_trait]
impl Kill for EtcdCluster {
    async fn kill(&self, node: &str) -> anyhow::Result<()> {
        self.local()?.procs.kill(node).await
    }

    async fn restart(&self, node: &str) -> anyhow::Result<()> {
        if self.local()?.procs.is_running(node) {
            return Ok(());
        }
        self.spawn(node)
    }
}

#[async_trait]
impl Pause for EtcdCluster {
    async fn pause(&self, node: &str) -> anyhow::Result<()> {
        self.local()?.procs.pause(node)
    }

    async fn resume(&self, node: &str) -> anyhow::Result<()> {
        self.local()?.procs.resume(node)
    }
}

#[async_trait]
impl Primary for EtcdCluster {
    /// The members that say they lead. A deposed leader cut off from the others keeps saying
    /// so until its check-quorum timeout, so two may be listed for a moment.
    async fn primaries(&self) -> Vec<NodeId> {
        self.statuses(Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|(_, s)| s.as_ref().is_some_and(Status::is_leader))
            .map(|(id, _)| id)
            .collect()
    }
}

/// An etcd client for one logical process: bound to member `process mod n`, moving to the
/// next member only when a connection cannot be made (nothing was sent).
#[derive(Debug)]
pub struct EtcdClient {
    nodes: Vec<(NodeId, HttpClient)>,
    bound: usize,
    reads: EtcdReads,
}

/// Why one request did not succeed, and whether it certainly had no effect.
#[derive(Debug)]
struct CallFailure {
    message: String,
    definite: bool,
}

impl EtcdClient {
    /// `nodes` are `(name, host:port)` pairs of client URLs.
    pub fn new(nodes: Vec<(NodeId, String)>, process: u64, reads: EtcdReads) -> EtcdClient {
        let n = nodes.len().max(1) as u64;
        EtcdClient {
            bound: (process % n) as usize,
            nodes: nodes
                .into_iter()
                .map(|(id, addr)| (id, HttpClient::new(&addr)))
                .collect(),
            reads,
        }
    }

    /// POSTs to the bound member, or to the next ones if it cannot be reached. Returns the
    /// answering member's index with its JSON answer.
    async fn call(
        &mut self,
        path: &str,
        body: &Json,
        deadline: tokio::time::Instant,
    ) -> (usize, Result<Json, CallFailure>) {
        let n = self.nodes.len();
        let mut last = (self.bound, "no member to ask".to_string());
        for k in 0..n {
            let i = (self.bound + k) % n;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.nodes[i].1.post_json(path, body, left).await {
                Ok((200, answer)) => return (i, Ok(answer)),
                Ok((_, answer)) => return (i, Err(gateway_failure(&answer))),
                Err(e) if e.not_sent() => {
                    last = (i, format!("{}: {e}", self.nodes[i].1.addr()));
                }
                Err(e) => {
                    return (
                        i,
                        Err(CallFailure {
                            message: e.to_string(),
                            definite: matches!(e, HttpError::Connect(_)),
                        }),
                    );
                }
            }
        }
        (
            last.0,
            Err(CallFailure {
                message: last.1,
                definite: true,
            }),
        )
    }

    async fn read(&mut self, call: &Invocation, deadline: tokio::time::Instant) -> Completion {
        let Some(key) = &call.key else {
            return refuse(call, "read needs a key");
        };
        let body = json!({
            "key": B64.encode(key_text(key)),
            "serializable": self.reads == EtcdReads::Serializable,
        });
        let (i, answer) = self.call("/v3/kv/range", &body, deadline).await;
        let node = Some(self.nodes[i].0.as_str());
        match answer.and_then(|a| first_kv(&a).map_err(definite)) {
            Ok(kv) => completion(
                OpType::Ok,
                kv.map(|kv| kv.value).unwrap_or_default(),
                node,
                None,
            ),
            // A read has no effect, whatever happened to it.
            Err(f) => completion(OpType::Fail, Value::Nil, node, Some(f.message)),
        }
    }

    /// Completes a write-like call from its answer: `ok`, `fail` when etcd certainly did not
    /// apply it, `info` otherwise.
    fn finish_write(
        &self,
        call: &Invocation,
        i: usize,
        answer: Result<Json, CallFailure>,
    ) -> Completion {
        let node = Some(self.nodes[i].0.as_str());
        match answer {
            Ok(_) => completion(OpType::Ok, call.value.clone(), node, None),
            Err(f) => {
                let kind = if f.definite {
                    OpType::Fail
                } else {
                    OpType::Info
                };
                completion(kind, call.value.clone(), node, Some(f.message))
            }
        }
    }

    async fn write(&mut self, call: &Invocation, deadline: tokio::time::Instant) -> Completion {
        let (Some(key), Value::Int(_)) = (&call.key, &call.value) else {
            return refuse(
                call,
                format!("write needs a key and an integer, got {}", call.value),
            );
        };
        let body = json!({
            "key": B64.encode(key_text(key)),
            "value": B64.encode(super::value_text(&call.value)),
        });
        let (i, answer) = self.call("/v3/kv/put", &body, deadline).await;
        self.finish_write(call, i, answer)
    }

    async fn cas(&mut self, call: &Invocation, deadline: tokio::time::Instant) -> Completion {
        let (Some(key), Some((from, to))) = (&call.key, call.value.as_cas()) else {
            return refuse(
                call,
                format!("cas needs a key and [from to], got {}", call.value),
            );
        };
        let k = B64.encode(key_text(key));
        let body = json!({
            "compare": [{
                "key": k,
                "target": "VALUE",
                "result": "EQUAL",
                "value": B64.encode(super::value_text(&Value::Int(from))),
            }],
            "success": [{"request_put": {
                "key": k,
                "value": B64.encode(super::value_text(&Value::Int(to))),
            }}],
        });
        let (i, answer) = self.call("/v3/kv/txn", &body, deadline).await;
        match answer {
            Ok(a) if !succeeded(&a) => completion(
                OpType::Fail,
                call.value.clone(),
                Some(&self.nodes[i].0),
                Some(format!("the value is not {from}")),
            ),
            other => self.finish_write(call, i, other),
        }
    }

    async fn txn(&mut self, call: &Invocation, deadline: tokio::time::Instant) -> Completion {
        let mops = match txn_ops(call) {
            Ok(m) => m,
            Err(e) => return refuse(call, e),
        };
        let mut keys: Vec<String> = Vec::new();
        for m in &mops {
            let k = key_text(&m.key);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        // 1. Every key at one revision.
        let serializable = self.reads == EtcdReads::Serializable;
        let ranges: Vec<Json> = keys
            .iter()
            .map(|k| json!({"request_range": {"key": B64.encode(k), "serializable": serializable}}))
            .collect();
        let (i, answer) = self
            .call("/v3/kv/txn", &json!({"success": ranges}), deadline)
            .await;
        let node = self.nodes[i].0.clone();
        let snapshot = match answer.and_then(|a| snapshot_of(&a, &keys).map_err(definite)) {
            Ok(s) => s,
            // Nothing was written yet.
            Err(f) => {
                return completion(
                    OpType::Fail,
                    call.value.clone(),
                    Some(&node),
                    Some(f.message),
                );
            }
        };
        // 2. The transaction's results and the final values, computed here.
        let (done, writes) = match apply_micro_ops(&mops, &snapshot) {
            Ok(r) => r,
            Err(e) => return completion(OpType::Fail, call.value.clone(), Some(&node), Some(e)),
        };
        if writes.is_empty() {
            return completion(OpType::Ok, Value::Txn(done), Some(&node), None);
        }
        // 3. Commit only if no key changed since the snapshot.
        // Every key touched, also those read as absent (mod_revision 0).
        let compare: Vec<Json> = keys
            .iter()
            .map(|k| {
                json!({
                    "key": B64.encode(k),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": snapshot.get(k).map_or(0, |(_, rev)| *rev).to_string(),
                })
            })
            .collect();
        let success: Vec<Json> = writes
            .iter()
            .map(|(k, v)| {
                json!({"request_put": {"key": B64.encode(k), "value": B64.encode(super::value_text(v))}})
            })
            .collect();
        let body = json!({"compare": compare, "success": success});
        let (i, answer) = self.call("/v3/kv/txn", &body, deadline).await;
        match answer {
            Ok(a) if succeeded(&a) => {
                completion(OpType::Ok, Value::Txn(done), Some(&self.nodes[i].0), None)
            }
            Ok(_) => completion(
                OpType::Fail,
                call.value.clone(),
                Some(&self.nodes[i].0),
                Some("conflict: a key changed since it was read".into()),
            ),
            other => self.finish_write(call, i, other),
        }
    }
}

#[async_trait]
impl Client for EtcdClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let deadline = tokio::time::Instant::now() + timeout;
        match call.f {
            F::Read => self.read(call, deadline).await,
            F::Write => self.write(call, deadline).await,
            F::Cas => self.cas(call, deadline).await,
            F::Txn => self.txn(call, deadline).await,
            ref f => refuse(call, format!("the etcd client does not support {f}")),
        }
    }
}

fn definite(message: String) -> CallFailure {
    CallFailure {
        message,
        definite: true,
    }
}

/// Whether a txn's guard held. The gateway omits `succeeded` when it is false.
fn succeeded(answer: &Json) -> bool {
    answer["succeeded"].as_bool().unwrap_or(false)
}

/// An error answer of the gateway, `{"error", "message", "code"}`, judged definite or not.
fn gateway_failure(answer: &Json) -> CallFailure {
    let message = answer["message"]
        .as_str()
        .or_else(|| answer["error"].as_str())
        .map_or_else(|| answer.to_string(), str::to_string);
    let code = answer["code"].as_i64().unwrap_or(-1);
    CallFailure {
        definite: error_is_definite(code, &message),
        message,
    }
}

/// Whether an etcd error means the request was certainly not applied. Only errors etcd
/// returns before proposing to raft count; "request timed out" and "leader changed" may
/// come after the entry was proposed, and it may still commit.
fn error_is_definite(grpc_code: i64, message: &str) -> bool {
    const BEFORE_PROPOSING: [&str; 6] = [
        "etcdserver: no leader",
        "etcdserver: too many requests",
        "etcdserver: request is too large",
        "etcdserver: not capable",
        "etcdserver: mvcc: required revision",
        "etcdserver: duplicate key given in txn request",
    ];
    // InvalidArgument, OutOfRange, PermissionDenied, Unauthenticated: refused up front.
    matches!(grpc_code, 3 | 7 | 11 | 16) || BEFORE_PROPOSING.iter().any(|m| message.contains(m))
}

#[derive(Debug, Clone, PartialEq)]
struct Kv {
    value: Value,
    mod_revision: i64,
}

fn parse_kv(kv: &Json) -> Result<Kv, String> {
    let value = match kv["value"].as_str() {
        Some(b) => B64
            .decode(b)
            .map_err(|e| format!("value is not base64: {e}"))?,
        None => Vec::new(),
    };
    let mod_revision = kv["mod_revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| format!("kv without a mod_revision: {kv}"))?;
    Ok(Kv {
        value: super::parse_value_text(&value),
        mod_revision,
    })
}

/// The first key-value of a range answer, `None` when the key is absent.
fn first_kv(range: &Json) -> Result<Option<Kv>, String> {
    match range["kvs"].as_array().and_then(|kvs| kvs.first()) {
        Some(kv) => parse_kv(kv).map(Some),
        None => Ok(None),
    }
}

/// Each present key's value and mod revision, from a read-only txn of one range per key.
fn snapshot_of(answer: &Json, keys: &[String]) -> Result<BTreeMap<String, (Value, i64)>, String> {
    let responses = answer["responses"].as_array().cloned().unwrap_or_default();
    if responses.len() != keys.len() {
        return Err(format!(
            "expected {} range answers, got {}",
            keys.len(),
            responses.len()
        ));
    }
    let mut out = BTreeMap::new();
    for (k, r) in keys.iter().zip(&responses) {
        if let Some(kv) = first_kv(&r["response_range"])? {
            out.insert(k.clone(), (kv.value, kv.mod_revision));
        }
    }
    Ok(out)
}

type Writes = BTreeMap<String, Value>;

/// Runs micro-ops over a snapshot: the completed micro-ops (reads filled in, seeing the
/// transaction's own earlier writes) and the final value of every key written.
fn apply_micro_ops(
    mops: &[MicroOp],
    snapshot: &BTreeMap<String, (Value, i64)>,
) -> Result<(Vec<MicroOp>, Writes), String> {
    let mut writes = Writes::new();
    let mut done = Vec::with_capacity(mops.len());
    for m in mops {
        let k = key_text(&m.key);
        let current = writes
            .get(&k)
            .or_else(|| snapshot.get(&k).map(|(v, _)| v))
            .cloned()
            .unwrap_or(Value::Nil);
        let value = match m.f {
            MicroF::Read => current,
            MicroF::Write => {
                writes.insert(k, m.value.clone());
                m.value.clone()
            }
            MicroF::Append => {
                let mut list = match current {
                    Value::Nil => Vec::new(),
                    Value::List(items) => items,
                    other => return Err(format!("cannot append to {k}, which holds {other}")),
                };
                list.push(m.value.clone());
                writes.insert(k, Value::List(list));
                m.value.clone()
            }
        };
        done.push(MicroOp {
            f: m.f,
            key: m.key.clone(),
            value,
        });
    }
    Ok((done, writes))
}

#[cfg(test)]
mod tests {
    use histories::Key;

    use super::*;

    fn mop(f: MicroF, k: i64, v: Value) -> MicroOp {
        MicroOp {
            f,
            key: Key::Int(k),
            value: v,
        }
    }

    #[test]
    fn micro_ops_see_the_snapshot_and_their_own_writes() {
        let snapshot = BTreeMap::from([("1".to_string(), (Value::List(vec![Value::Int(1)]), 5))]);
        let mops = vec![
            mop(MicroF::Read, 1, Value::Nil),
            mop(MicroF::Append, 1, Value::Int(2)),
            mop(MicroF::Read, 1, Value::Nil),
            mop(MicroF::Read, 2, Value::Nil),
            mop(MicroF::Write, 3, Value::Int(7)),
            mop(MicroF::Read, 3, Value::Nil),
        ];
        let (done, writes) = apply_micro_ops(&mops, &snapshot).unwrap();
        let reads: Vec<&Value> = done.iter().map(|m| &m.value).collect();
        let l1 = Value::List(vec![Value::Int(1)]);
        let l12 = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(
            reads,
            vec![
                &l1,
                &Value::Int(2),
                &l12,
                &Value::Nil,
                &Value::Int(7),
                &Value::Int(7)
            ]
        );
        assert_eq!(writes.get("1"), Some(&l12));
        assert_eq!(writes.get("3"), Some(&Value::Int(7)));
        assert!(
            apply_micro_ops(
                &[mop(MicroF::Append, 3, Value::Int(1))],
                &BTreeMap::from([("3".to_string(), (Value::Int(4), 1))])
            )
            .is_err()
        );
    }

    #[test]
    fn only_errors_before_proposing_are_definite() {
        assert!(error_is_definite(14, "etcdserver: no leader"));
        assert!(error_is_definite(3, "etcdserver: key is not provided"));
        assert!(!error_is_definite(14, "etcdserver: request timed out"));
        assert!(!error_is_definite(14, "etcdserver: leader changed"));
        assert!(!error_is_definite(-1, "{}"));
    }

    #[test]
    fn status_and_health_follow_the_gateway_answers() {
        let s = Status::parse(&json!({"header": {"member_id": "7"}, "leader": "7"})).unwrap();
        assert!(s.is_leader());
        let f = Status::parse(&json!({"header": {"member_id": "8"}, "leader": "7"})).unwrap();
        assert!(!f.is_leader());
        let none = Status::parse(&json!({"header": {"member_id": "9"}})).unwrap();
        let ok = vec![("n1".to_string(), Some(s.clone())), ("n2".into(), Some(f))];
        assert_eq!(health_problem(&ok), None);
        let bad = vec![("n1".to_string(), Some(s)), ("n3".into(), Some(none))];
        assert_eq!(health_problem(&bad).unwrap(), "n3 knows no leader");
        assert_eq!(
            health_problem(&[("n2".to_string(), None)]).unwrap(),
            "n2 does not answer"
        );
    }

    #[test]
    fn read_modes_parse_back_from_their_names() {
        for r in [EtcdReads::Linearizable, EtcdReads::Serializable] {
            assert_eq!(r.as_str().parse::<EtcdReads>(), Ok(r));
        }
        assert!("stale".parse::<EtcdReads>().is_err());
    }

    #[test]
    fn external_endpoints_are_checked() {
        let c = EtcdCluster::external(ExternalEtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379/".into(), "10.0.0.2:2379".into()],
            reads: EtcdReads::Serializable,
        })
        .unwrap();
        assert_eq!(c.nodes(), vec!["n1", "n2"]);
        assert_eq!(c.client_addr("n1"), Some("127.0.0.1:2379"));
        assert!(Db::kill(&c).is_none() && Db::pause(&c).is_none() && c.primary().is_some());
        assert!(
            EtcdCluster::external(ExternalEtcdConfig {
                endpoints: vec!["nohost".into()],
                ..Default::default()
            })
            .is_err()
        );
    }
}

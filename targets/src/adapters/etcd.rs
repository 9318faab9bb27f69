//! etcd: a cluster of Debian's `etcd` (3.4) started by the harness, or an external one, and a
//! client over etcd's gRPC API through the maintained `etcd-client` crate (tonic underneath).
//!
//! Each client holds one gRPC channel per member, connected on first use under the
//! operation's deadline, so a dead member only costs the process that is bound to it. The
//! adapter keeps Jepsen's distinction between "certainly not applied" (`fail`) and "maybe
//! applied" (`info`); [`effect_of`] says how each error is judged and why.
//!
//! Operations (keys are integers or strings, stored as their decimal or plain text; values
//! as JSON text):
//! - `read k` → `ok` with the integer or `nil`; any error → `fail` (a read changes nothing).
//!   Linearizable (through the leader's read index) or serializable (the member's local
//!   state, possibly stale) as [`EtcdReads`] says.
//! - `write k v` → `ok`; an error etcd gives before proposing (no leader, too many
//!   requests, bad request) or a connection that could not be made → `fail`; a timeout, a
//!   connection broken after sending or "leader changed" / "request timed out" → `info`.
//! - `cas k [from to]` → one txn comparing the value: `ok` when it applied, `fail` when the
//!   compare failed; errors as for `write`.
//! - `txn [[r k nil] [append k v] [w k v] ...]` (list-append and rw-register): reads every
//!   key in one read-only txn (one revision), computes the results, then commits the writes
//!   in one txn guarded by each key's `mod_revision`: `ok` with the reads filled in, `fail`
//!   when another writer got in between (the guard failed) — strict serializable.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use histories::{F, MicroF, MicroOp, OpType, Value};
use tokio::time::Instant;
use tonic::Code;

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
    /// `ip:port` of the client (gRPC) listener.
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
                    let status = tokio::time::timeout(timeout, Status::of(&addr))
                        .await
                        .ok()
                        .flatten();
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

/// What a member's `Maintenance.Status` says, the parts used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    member_id: u64,
    /// 0 when the member knows no leader.
    leader: u64,
}

impl Status {
    /// Asks the member at `addr` on a connection of its own (the caller bounds the time).
    async fn of(addr: &str) -> Option<Status> {
        let mut client = connect(addr).await.ok()?;
        let answer = client.status().await.ok()?;
        Some(Status {
            member_id: answer.header()?.member_id(),
            leader: answer.leader(),
        })
    }

    fn is_leader(&self) -> bool {
        self.leader != 0 && self.leader == self.member_id
    }
}

/// Why the statuses are not those of a healthy cluster: every member answers and names the
/// same leader.
fn health_problem(statuses: &[(NodeId, Option<Status>)]) -> Option<String> {
    let mut leader: Option<u64> = None;
    for (id, status) in statuses {
        let Some(s) = status else {
            return Some(format!("{id} does not answer"));
        };
        if s.leader == 0 {
            return Some(format!("{id} knows no leader"));
        }
        match leader {
            None => leader = Some(s.leader),
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
/// next member only when a connection to it cannot be made (nothing was sent).
#[derive(Debug)]
pub struct EtcdClient {
    members: Vec<MemberConn>,
    bound: usize,
    reads: EtcdReads,
}

/// One member as one client sees it: its address and, once a connection was made, a gRPC
/// channel to it (which tonic reconnects on the next request after the connection breaks).
struct MemberConn {
    id: NodeId,
    addr: String,
    client: Option<etcd_client::Client>,
}

impl fmt::Debug for MemberConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberConn")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

/// How long a TCP connect to a member may take, also when tonic reconnects a broken channel.
/// A connect that fails is certainly "not sent" and the next member is asked, while a request
/// still waiting at the operation's deadline has to be called indeterminate; so a member that
/// drops packets should fail the connect before most operations time out (1.5 s by default).
/// A connect on a working network takes one round trip.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens a channel to the member at `addr` (`ip:port`) and waits until it is connected.
/// Nothing is sent before this returns, so any error here is "not sent".
async fn connect(addr: &str) -> Result<etcd_client::Client, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {}", error_chain(&e)))?;
    etcd_client::Client::from_channel(etcd_client::Channel::Tonic(channel), None)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))
}

/// Why one request did not succeed, and whether it certainly had no effect.
#[derive(Debug)]
struct CallFailure {
    message: String,
    definite: bool,
}

fn definite(message: String) -> CallFailure {
    CallFailure {
        message,
        definite: true,
    }
}

fn indeterminate(message: String) -> CallFailure {
    CallFailure {
        message,
        definite: false,
    }
}

impl EtcdClient {
    /// `nodes` are `(name, host:port)` pairs of client URLs. Connects to nothing yet: each
    /// member's channel is made on the first request that needs it.
    pub fn new(nodes: Vec<(NodeId, String)>, process: u64, reads: EtcdReads) -> EtcdClient {
        let n = nodes.len().max(1) as u64;
        EtcdClient {
            bound: (process % n) as usize,
            members: nodes
                .into_iter()
                .map(|(id, addr)| MemberConn {
                    id,
                    addr,
                    client: None,
                })
                .collect(),
            reads,
        }
    }

    /// Member `i`'s client, connecting first if there is none yet. An error means nothing
    /// was sent.
    async fn connected(
        &mut self,
        i: usize,
        deadline: Instant,
    ) -> Result<etcd_client::Client, String> {
        let member = &mut self.members[i];
        if let Some(client) = &member.client {
            // A clone shares the channel; the call future owns it, so it can be timed out.
            return Ok(client.clone());
        }
        let client = tokio::time::timeout_at(deadline, connect(&member.addr))
            .await
            .map_err(|_| format!("connect to {} timed out", member.addr))??;
        member.client = Some(client.clone());
        Ok(client)
    }

    /// Runs `request` at the bound member, or at the next ones while a member cannot be
    /// reached, never past `deadline`. Returns the index of the member that answered (or
    /// was tried last) with the answer.
    async fn call<T, Fut>(
        &mut self,
        deadline: Instant,
        request: impl Fn(etcd_client::Client) -> Fut,
    ) -> (usize, Result<T, CallFailure>)
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.members.len();
        let mut last = (self.bound, definite("no member to ask".into()));
        for k in 0..n {
            if Instant::now() >= deadline {
                break;
            }
            let i = (self.bound + k) % n;
            let client = match self.connected(i, deadline).await {
                Ok(c) => c,
                Err(why) => {
                    last = (i, definite(why));
                    continue;
                }
            };
            let answer = match tokio::time::timeout_at(deadline, request(client)).await {
                Ok(answer) => answer,
                // The request may be on its way or applied already.
                Err(_) => {
                    let message = format!("timeout: no answer from {}", self.members[i].addr);
                    return (i, Err(indeterminate(message)));
                }
            };
            let e = match answer {
                Ok(a) => return (i, Ok(a)),
                Err(e) => e,
            };
            let message = format!("{}: {}", self.members[i].addr, describe(&e));
            match effect_of(&e) {
                Effect::NotSent => last = (i, definite(message)),
                Effect::Refused => return (i, Err(definite(message))),
                Effect::Unknown => return (i, Err(indeterminate(message))),
            }
        }
        (last.0, Err(last.1))
    }

    fn get_options(&self) -> Option<GetOptions> {
        match self.reads {
            EtcdReads::Linearizable => None,
            EtcdReads::Serializable => Some(GetOptions::new().with_serializable()),
        }
    }

    async fn read(&mut self, call: &Invocation, deadline: Instant) -> Completion {
        let Some(key) = &call.key else {
            return refuse(call, "read needs a key");
        };
        let key = key_text(key);
        let options = self.get_options();
        let (i, answer) = self
            .call(deadline, |mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.get(key, options).await }
            })
            .await;
        let node = Some(self.members[i].id.as_str());
        match answer {
            Ok(got) => completion(
                OpType::Ok,
                got.kvs().first().map(kv_value).unwrap_or_default(),
                node,
                None,
            ),
            // A read has no effect, whatever happened to it.
            Err(f) => completion(OpType::Fail, Value::Nil, node, Some(f.message)),
        }
    }

    /// Completes a write-like call from its answer: `ok`, `fail` when etcd certainly did not
    /// apply it, `info` otherwise.
    fn finish_write<T>(
        &self,
        call: &Invocation,
        i: usize,
        answer: Result<T, CallFailure>,
    ) -> Completion {
        let node = Some(self.members[i].id.as_str());
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

    async fn write(&mut self, call: &Invocation, deadline: Instant) -> Completion {
        let (Some(key), Value::Int(_)) = (&call.key, &call.value) else {
            return refuse(
                call,
                format!("write needs a key and an integer, got {}", call.value),
            );
        };
        let (key, value) = (key_text(key), super::value_text(&call.value));
        let (i, answer) = self
            .call(deadline, |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move { c.put(key, value, None).await }
            })
            .await;
        self.finish_write(call, i, answer)
    }

    async fn cas(&mut self, call: &Invocation, deadline: Instant) -> Completion {
        let (Some(key), Some((from, to))) = (&call.key, call.value.as_cas()) else {
            return refuse(
                call,
                format!("cas needs a key and [from to], got {}", call.value),
            );
        };
        let k = key_text(key);
        let txn = Txn::new()
            .when([Compare::value(
                k.clone(),
                CompareOp::Equal,
                super::value_text(&Value::Int(from)),
            )])
            .and_then([TxnOp::put(k, super::value_text(&Value::Int(to)), None)]);
        let (i, answer) = self.run_txn(txn, deadline).await;
        match answer {
            Ok(false) => completion(
                OpType::Fail,
                call.value.clone(),
                Some(&self.members[i].id),
                Some(format!("the value is not {from}")),
            ),
            other => self.finish_write(call, i, other),
        }
    }

    /// Runs a txn; `Ok` tells whether its compares held.
    async fn run_txn(&mut self, txn: Txn, deadline: Instant) -> (usize, Result<bool, CallFailure>) {
        let (i, answer) = self
            .call(deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await;
        (i, answer.map(|a| a.succeeded()))
    }

    async fn txn(&mut self, call: &Invocation, deadline: Instant) -> Completion {
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
        // 1. Every key at one revision (a txn of ranges only is serializable when every
        //    range is).
        let options = self.get_options();
        let ranges: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::get(k.clone(), options.clone()))
            .collect();
        let read = Txn::new().and_then(ranges);
        let (i, answer) = self
            .call(deadline, |mut c| {
                let read = read.clone();
                async move { c.txn(read).await }
            })
            .await;
        let node = self.members[i].id.clone();
        let snapshot =
            match answer.and_then(|a| snapshot_of(&a.op_responses(), &keys).map_err(definite)) {
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
        let guard: Vec<Compare> = keys
            .iter()
            .map(|k| {
                let revision = snapshot.get(k).map_or(0, |(_, rev)| *rev);
                Compare::mod_revision(k.clone(), CompareOp::Equal, revision)
            })
            .collect();
        let puts: Vec<TxnOp> = writes
            .iter()
            .map(|(k, v)| TxnOp::put(k.clone(), super::value_text(v), None))
            .collect();
        let (i, answer) = self
            .run_txn(Txn::new().when(guard).and_then(puts), deadline)
            .await;
        match answer {
            Ok(true) => completion(
                OpType::Ok,
                Value::Txn(done),
                Some(&self.members[i].id),
                None,
            ),
            Ok(false) => completion(
                OpType::Fail,
                call.value.clone(),
                Some(&self.members[i].id),
                Some("conflict: a key changed since it was read".into()),
            ),
            other => self.finish_write(call, i, other),
        }
    }
}

#[async_trait]
impl Client for EtcdClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        // Every await below is bounded by this deadline: connects, requests, both halves of
        // a transaction.
        let deadline = Instant::now() + timeout;
        match call.f {
            F::Read => self.read(call, deadline).await,
            F::Write => self.write(call, deadline).await,
            F::Cas => self.cas(call, deadline).await,
            F::Txn => self.txn(call, deadline).await,
            ref f => refuse(call, format!("the etcd client does not support {f}")),
        }
    }
}

/// What a failed request says about its effect on the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// It never left this process: no connection to the member could be made. Certainly no
    /// effect; another member may be asked.
    NotSent,
    /// The server refused it before acting on it: certainly no effect.
    Refused,
    /// It may have been applied, or may still be: an indeterminate (`info`) outcome.
    Unknown,
}

/// Judges a failed request. The rule is Jepsen's: `fail` only when the request certainly had
/// no effect, because a client that calls an applied write failed makes a correct database
/// look broken; anything uncertain is `info`, which only costs the checker more search.
///
/// - Errors `etcd-client` raises itself (bad arguments, a bad URI or header) come before
///   anything is sent: [`Effect::Refused`].
/// - A gRPC status is judged by [`effect_of_status`].
/// - Anything else (I/O, transport or internal errors mid-request) is [`Effect::Unknown`].
fn effect_of(e: &etcd_client::Error) -> Effect {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => effect_of_status(status),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) => Effect::Refused,
        _ => Effect::Unknown,
    }
}

/// Judges a gRPC status.
///
/// - tonic turns a failed (re)connection into `Unavailable` with a [`tonic::ConnectError`]
///   among its sources. A channel writes a request only on an established connection, so
///   such a request was not sent: [`Effect::NotSent`]. (A channel whose connection broke
///   reconnects on the next request; a member that was killed refuses that connection.)
/// - Any other status with a source was made by tonic from a local transport error after a
///   connection existed (reset, broken pipe, HTTP/2 error, keep-alive timeout): the request
///   may have reached the server: [`Effect::Unknown`].
/// - A status the server sent (no source) is judged by [`effect_of_answer`].
fn effect_of_status(status: &tonic::Status) -> Effect {
    let mut source = std::error::Error::source(status);
    if source.is_none() {
        return effect_of_answer(status.code(), status.message());
    }
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return Effect::NotSent;
        }
        source = e.source();
    }
    Effect::Unknown
}

/// Messages of errors etcd returns before it proposes a request to raft (or that raft
/// returns when it drops the proposal): the request certainly had no effect, whatever the
/// status code (etcd sends most of them as `Unavailable`, which in general is uncertain).
const BEFORE_PROPOSING: [&str; 8] = [
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: unhealthy cluster",
    "etcdserver: too many requests",
    "etcdserver: request is too large",
    "etcdserver: mvcc: required revision",
    "etcdserver: duplicate key given in txn request",
    "raft proposal dropped",
];

/// Statuses tonic makes locally while *receiving* an answer (too large, bad compression):
/// the request was served, so these codes say nothing about its effect.
const WHILE_RECEIVING: [&str; 3] = [
    "Error, decoded message length too large",
    "Error decompressing",
    "Content is compressed with",
];

/// Judges a status from its code and message.
///
/// Refused (certainly no effect):
/// - `InvalidArgument` (empty key, too many ops, duplicate key, request too large),
///   `OutOfRange` (compacted or future revision; also tonic's "encoded message too large",
///   raised before sending), `FailedPrecondition` ("not leader"), `PermissionDenied`,
///   `Unauthenticated`, `NotFound`, `AlreadyExists`, `Unimplemented`: checks made before the
///   request is applied.
/// - `ResourceExhausted`: "too many requests" comes before proposing; "database space
///   exceeded" is checked before proposing and again by the applier, which then applies
///   nothing.
/// - Any code with a message in [`BEFORE_PROPOSING`] ("no leader", "not capable", "raft
///   proposal dropped", ...).
///
/// Unknown (maybe applied): `DeadlineExceeded`, `Cancelled`, `Unknown`, `Internal`,
/// `Aborted`, `DataLoss`, and `Unavailable` otherwise — "request timed out", "leader
/// changed", "server stopped", "timed out due to leader failure": etcd says these after
/// proposing, and the entry may still commit. Also any message in [`WHILE_RECEIVING`].
fn effect_of_answer(code: Code, message: &str) -> Effect {
    if WHILE_RECEIVING.iter().any(|m| message.starts_with(m)) {
        return Effect::Unknown;
    }
    if BEFORE_PROPOSING.iter().any(|m| message.contains(m)) {
        return Effect::Refused;
    }
    match code {
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::AlreadyExists
        | Code::Unimplemented
        | Code::ResourceExhausted => Effect::Refused,
        _ => Effect::Unknown,
    }
}

/// An error in a few words: a status as its code and message, with the innermost cause of a
/// transport error ("Connection refused").
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let mut text = format!("{:?}: {}", s.code(), s.message());
            if let Some(source) = std::error::Error::source(s) {
                let root = error_chain(source);
                if !text.contains(&root) {
                    text = format!("{text} ({root})");
                }
            }
            text
        }
        other => other.to_string(),
    }
}

/// The innermost cause of an error, where the useful words usually are.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(inner) = e.source() {
        e = inner;
    }
    e.to_string()
}

fn kv_value(kv: &KeyValue) -> Value {
    super::parse_value_text(kv.value())
}

/// Each present key's value and mod revision, from a read-only txn of one range per key.
fn snapshot_of(
    responses: &[TxnOpResponse],
    keys: &[String],
) -> Result<BTreeMap<String, (Value, i64)>, String> {
    if responses.len() != keys.len() {
        return Err(format!(
            "expected {} range answers, got {}",
            keys.len(),
            responses.len()
        ));
    }
    let mut out = BTreeMap::new();
    for (k, r) in keys.iter().zip(responses) {
        let TxnOpResponse::Get(range) = r else {
            return Err(format!("expected a range answer for {k}, got {r:?}"));
        };
        if let Some(kv) = range.kvs().first() {
            out.insert(k.clone(), (kv_value(kv), kv.mod_revision()));
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

    fn status(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    /// A status as tonic makes it from a transport error (the error becomes its source).
    fn local(error: impl std::error::Error + Send + Sync + 'static) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::from_error(Box::new(error)))
    }

    #[test]
    fn errors_etcd_gives_before_proposing_are_refusals() {
        for message in [
            "etcdserver: no leader",
            "etcdserver: not capable",
            "etcdserver: too many requests",
            "raft proposal dropped",
        ] {
            let code = if message.starts_with("raft") {
                Code::Unknown
            } else {
                Code::Unavailable
            };
            assert_eq!(
                effect_of(&status(code, message)),
                Effect::Refused,
                "{message}"
            );
        }
        for (code, message) in [
            (Code::InvalidArgument, "etcdserver: key is not provided"),
            (
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (Code::FailedPrecondition, "etcdserver: not leader"),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (Code::PermissionDenied, "etcdserver: permission denied"),
            (Code::Unauthenticated, "etcdserver: invalid auth token"),
            (Code::Unimplemented, "unknown service etcdserverpb.KV"),
        ] {
            assert_eq!(
                effect_of(&status(code, message)),
                Effect::Refused,
                "{message}"
            );
        }
        let bad_args = etcd_client::Error::InvalidArgs("empty endpoints".into());
        assert_eq!(effect_of(&bad_args), Effect::Refused);
    }

    #[test]
    fn errors_that_may_follow_a_proposal_are_indeterminate() {
        for (code, message) in [
            (Code::Unavailable, "etcdserver: request timed out"),
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::Unavailable, "etcdserver: server stopped"),
            (
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            (
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to connection lost",
            ),
            (Code::DeadlineExceeded, "context deadline exceeded"),
            (Code::Cancelled, "context canceled"),
            (Code::Unknown, "transport error"),
            (
                Code::Internal,
                "h2 protocol error: error reading a body from connection",
            ),
            (Code::DataLoss, "etcdserver: corrupt cluster"),
            (Code::Aborted, ""),
            // Made by tonic while receiving: the request was served.
            (
                Code::OutOfRange,
                "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
            ),
        ] {
            assert_eq!(
                effect_of(&status(code, message)),
                Effect::Unknown,
                "{message}"
            );
        }
        let io = etcd_client::Error::IoError(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(effect_of(&io), Effect::Unknown);
    }

    #[test]
    fn only_a_failed_connection_means_not_sent() {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        // What tonic gives when it cannot (re)connect: Unavailable, the ConnectError below.
        let not_sent = local(tonic::ConnectError(Box::new(refused())));
        assert_eq!(effect_of(&not_sent), Effect::NotSent);
        assert!(
            describe(&not_sent).contains("Unavailable"),
            "{}",
            describe(&not_sent)
        );
        // A reset on a connection that existed, and a request timeout: maybe applied. The
        // same Unavailable code as a server's "no leader" or a failed connect, so the code
        // alone cannot tell.
        let reset = local(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(effect_of(&reset), Effect::Unknown);
        let timeout = local(tonic::TimeoutExpired(()));
        assert_eq!(effect_of(&timeout), Effect::Unknown);
        // A ConnectError deeper in the chain still counts.
        #[derive(Debug)]
        struct Wrapper(tonic::ConnectError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = local(Wrapper(tonic::ConnectError(Box::new(refused()))));
        assert_eq!(effect_of(&wrapped), Effect::NotSent);
    }

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn write(k: i64, v: i64) -> Invocation {
        Invocation {
            f: F::Write,
            key: Some(Key::Int(k)),
            value: Value::Int(v),
        }
    }

    #[tokio::test]
    async fn writes_to_members_that_refuse_connections_fail_definitely() {
        let nodes = vec![
            ("n1".to_string(), closed_port()),
            ("n2".into(), closed_port()),
        ];
        let mut c = EtcdClient::new(nodes, 1, EtcdReads::Linearizable);
        let done = c.invoke(&write(1, 1), Duration::from_secs(2)).await;
        assert_eq!(done.kind, OpType::Fail, "{done:?}");
        // Bound to n2, it tried n2 and then n1.
        assert_eq!(done.node.as_deref(), Some("n1"), "{done:?}");
        let why = done.error.unwrap_or_default();
        assert!(why.contains("onnection refused"), "{why}");
    }

    /// A member that accepts connections and never answers (a paused process, from the
    /// client's side): the bound member that refuses is skipped, the write to the silent one
    /// is indeterminate, a read fails, and neither outlives its timeout.
    #[tokio::test]
    async fn a_silent_member_makes_writes_indeterminate_within_the_timeout() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                open.push(conn);
            }
        });
        let nodes = vec![("n1".to_string(), closed_port()), ("n2".into(), addr)];
        let mut c = EtcdClient::new(nodes, 0, EtcdReads::Serializable);
        let timeout = Duration::from_millis(400);
        let t0 = std::time::Instant::now();
        let done = c.invoke(&write(1, 1), timeout).await;
        assert!(
            t0.elapsed() < timeout + Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(
            (done.kind, done.node.as_deref()),
            (OpType::Info, Some("n2")),
            "{done:?}"
        );
        let t0 = std::time::Instant::now();
        let read = Invocation {
            f: F::Read,
            key: Some(Key::Int(1)),
            value: Value::Nil,
        };
        let done = c.invoke(&read, timeout).await;
        assert!(
            t0.elapsed() < timeout + Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(done.kind, OpType::Fail, "{done:?}");
        held.abort();
    }

    #[test]
    fn health_needs_every_member_to_name_the_same_leader() {
        let s = Status {
            member_id: 7,
            leader: 7,
        };
        assert!(s.is_leader());
        let f = Status {
            member_id: 8,
            leader: 7,
        };
        assert!(!f.is_leader());
        let none = Status {
            member_id: 9,
            leader: 0,
        };
        assert!(!none.is_leader());
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

//! Redis with Sentinel: a primary (n1), replicas (n2, n3) and Sentinels (s1, s2, s3) from
//! Debian's `redis-server` and `redis-sentinel`, and a client that asks the Sentinels which
//! node is the primary, as Sentinel-aware Redis clients do. The protocol is redis-rs's
//! (`redis` crate, one multiplexed connection per server, on a socket opened here so that
//! "never sent" stays apart from "sent, no answer").
//!
//! Operations (keys as decimal text; values as decimal text):
//! - `read k` → `ok` with the register's integer, the set's sorted elements, or `nil` (one
//!   Lua script, so the type check and the read are atomic); `set-read k` (`SMEMBERS`, the
//!   set workload) → `ok` with the sorted elements (an absent set is empty); a read that
//!   gets no answer is `fail`.
//! - `write k v` (`SET`), `add k v` and `set-add k v` (`SADD`; without a key the set is
//!   `set`), `set-remove k v` (`SREM`), `cas k [from to]` (a Lua compare-and-set) → `ok`;
//!   `fail` when nothing was sent, when Redis answers with an error (it refused the command
//!   before running it: `READONLY` from a demoted primary, `NOREPLICAS`, `LOADING`,
//!   `MASTERDOWN`, ...) or when the compare failed; `info` on a timeout or a connection
//!   that broke after sending. With [`RedisConfig::wait_replicas`] set, a write is followed
//!   by `WAIT`; fewer acknowledgements than asked make it `info` (applied on the primary,
//!   maybe lost).
//!
//! Known ground truth: a partition that isolates the primary, followed by a Sentinel
//! failover, loses acknowledged writes and set elements (Redis replication is
//! asynchronous).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use histories::{F, Key, OpType, Value};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisConnectionInfo, Role};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::procs::{self, Procs};
use super::{NodeHost, completion, hosts_for, install, key_text, ports_for, refuse};
use crate::db::{Client, Completion, Db, Invocation, Kill, NodeId, Pause, Primary};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "mymaster";

/// How the harness wants the deployment built. Build it with `..RedisConfig::default()`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub server_binary: PathBuf,
    pub sentinel_binary: PathBuf,
    /// Server data (`n1/`), Sentinel configs (`s1.conf`), logs and the `pids` file.
    pub dir: PathBuf,
    /// Replicas besides the primary.
    pub replicas: usize,
    pub sentinels: usize,
    /// Sentinel's `down-after-milliseconds`: how long a silent primary is tolerated.
    pub down_after_ms: u64,
    /// Sentinel's `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// After each write, `WAIT wait_replicas wait_timeout_ms` (0: no WAIT).
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
    /// One per data node (n1, n2, ...) or empty for 127.0.0.1.
    pub hosts: Vec<NodeHost>,
    /// One per Sentinel or empty for 127.0.0.1.
    pub sentinel_hosts: Vec<NodeHost>,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            server_binary: PathBuf::from("redis-server"),
            sentinel_binary: PathBuf::from("redis-sentinel"),
            dir: PathBuf::from("."),
            replicas: 2,
            sentinels: 3,
            down_after_ms: 1000,
            failover_timeout_ms: 3000,
            wait_replicas: 0,
            wait_timeout_ms: 1000,
            hosts: Vec::new(),
            sentinel_hosts: Vec::new(),
        }
    }
}

/// Installs Debian's `redis-server` and `redis-sentinel` when they are missing.
pub fn ensure_installed() -> anyhow::Result<()> {
    install::ensure_package("redis-server", || install::which("redis-server").is_some())?;
    install::ensure_package("redis-sentinel", || {
        install::which("redis-sentinel").is_some()
    })
}

#[derive(Debug, Clone)]
struct Proc {
    id: String,
    host: NodeHost,
    port: u16,
}

impl Proc {
    fn addr(&self) -> String {
        format!("{}:{}", self.host.ip, self.port)
    }
}

/// A Redis primary with replicas and Sentinels, started and faulted here. [`Db::nodes`]
/// lists the data nodes; kill and pause also take a Sentinel's name (`s1`, ...).
#[derive(Debug)]
pub struct RedisCluster {
    config: RedisConfig,
    server: PathBuf,
    sentinel: PathBuf,
    nodes: Vec<Proc>,
    sentinels: Vec<Proc>,
    procs: Procs,
}

const T_ADMIN: Duration = Duration::from_millis(500);

/// What keeps the deployment from being healthy.
#[derive(Debug)]
enum Problem {
    /// The primary and its replicas are not all connected yet.
    Replication(String),
    /// The Sentinels do not all follow the primary and know each other yet.
    Sentinels(String),
}

impl RedisCluster {
    /// Chooses ports. Nothing starts until [`Db::start`].
    pub fn new(config: RedisConfig) -> anyhow::Result<RedisCluster> {
        let find = |p: &PathBuf| {
            install::which(&p.to_string_lossy()).ok_or_else(|| {
                anyhow!(
                    "{} not found (apt-get install redis-server redis-sentinel)",
                    p.display()
                )
            })
        };
        let server = find(&config.server_binary)?;
        let sentinel = find(&config.sentinel_binary)?;
        if config.sentinels == 0 {
            bail!("failover needs at least one Sentinel");
        }
        let procs_of = |prefix: &str, hosts: &[NodeHost], count: usize, fixed: u16| {
            let hosts = hosts_for(hosts, count)?;
            let ports = ports_for(&hosts, fixed)?;
            Ok::<_, anyhow::Error>(
                hosts
                    .into_iter()
                    .zip(ports)
                    .enumerate()
                    .map(|(i, (host, port))| Proc {
                        id: format!("{prefix}{}", i + 1),
                        host,
                        port,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let nodes = procs_of("n", &config.hosts, config.replicas + 1, 6379)?;
        let sentinels = procs_of("s", &config.sentinel_hosts, config.sentinels, 26379)?;
        Ok(RedisCluster {
            procs: Procs::new(&config.dir),
            config,
            server,
            sentinel,
            nodes,
            sentinels,
        })
    }

    /// `host:port` of a data node or Sentinel.
    pub fn addr_of(&self, name: &str) -> Option<String> {
        self.find(name).ok().map(Proc::addr)
    }

    /// The Sentinels' names.
    pub fn sentinels(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| s.id.clone()).collect()
    }

    fn find(&self, name: &str) -> anyhow::Result<&Proc> {
        self.nodes
            .iter()
            .chain(&self.sentinels)
            .find(|p| p.id == name)
            .ok_or_else(|| anyhow!("no node or Sentinel named {name}"))
    }

    fn spawn_server(&self, node: &Proc, replica_of: Option<&Proc>) -> anyhow::Result<()> {
        let data = self.config.dir.join(&node.id);
        std::fs::create_dir_all(&data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let mut cmd = node.host.command(&self.server);
        cmd.arg("--port")
            .arg(node.port.to_string())
            .arg("--bind")
            .arg(node.host.ip.to_string())
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&data)
            // An append-only file written before each reply: a killed node restarts with
            // every write it acknowledged (a process kill keeps the page cache).
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", ""])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--replica-announce-ip")
            .arg(node.host.ip.to_string());
        if let Some(p) = replica_of {
            cmd.arg("--replicaof")
                .arg(p.host.ip.to_string())
                .arg(p.port.to_string());
        }
        self.procs.spawn(&node.id, cmd)?;
        Ok(())
    }

    fn sentinel_conf(&self, s: &Proc) -> String {
        let primary = &self.nodes[0];
        let quorum = self.sentinels.len() / 2 + 1;
        format!(
            "port {port}\nbind {ip}\nprotected-mode no\ndaemonize no\ndir {dir}\n\
             sentinel announce-ip {ip}\n\
             sentinel monitor {MASTER_NAME} {pip} {pport} {quorum}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
             sentinel failover-timeout {MASTER_NAME} {failover}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = s.port,
            ip = s.host.ip,
            dir = self.config.dir.display(),
            pip = primary.host.ip,
            pport = primary.port,
            down = self.config.down_after_ms,
            failover = self.config.failover_timeout_ms,
        )
    }

    fn spawn_sentinel(&self, s: &Proc, fresh: bool) -> anyhow::Result<()> {
        // Sentinel rewrites its own config (the primary it follows, the others it knows),
        // so a restart keeps what it learnt.
        let conf = self.config.dir.join(format!("{}.conf", s.id));
        if fresh {
            std::fs::write(&conf, self.sentinel_conf(s))
                .with_context(|| format!("cannot write {}", conf.display()))?;
        }
        let mut cmd = s.host.command(&self.sentinel);
        cmd.arg(&conf);
        self.procs.spawn(&s.id, cmd)?;
        Ok(())
    }

    /// What `ROLE` says of a data node, or why it said nothing readable.
    async fn role(&self, node: &Proc) -> Result<Role, String> {
        ask(&node.addr(), &redis::cmd("ROLE"), T_ADMIN).await
    }

    /// The primary the Sentinels name (the first that answers).
    async fn sentinel_primary(&self) -> Option<&Proc> {
        for s in &self.sentinels {
            let Ok(Some((ip, port))) = ask::<Option<(String, u16)>>(
                &s.addr(),
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(MASTER_NAME),
                T_ADMIN,
            )
            .await
            else {
                continue;
            };
            let addr = format!("{ip}:{port}");
            if let Some(p) = self.nodes.iter().find(|n| n.addr() == addr) {
                return Some(p);
            }
        }
        None
    }

    /// Why the deployment is not yet healthy: the primary has every replica connected, and
    /// every Sentinel follows it and knows the replicas and the other Sentinels.
    async fn health_problem(&self) -> Option<Problem> {
        let primary = &self.nodes[0];
        match self.role(primary).await {
            Ok(Role::Primary { replicas, .. }) => {
                if replicas.len() < self.nodes.len() - 1 {
                    return Some(Problem::Replication(format!(
                        "the primary has {} replicas",
                        replicas.len()
                    )));
                }
            }
            other => {
                return Some(Problem::Replication(format!(
                    "{} is not primary: {other:?}",
                    primary.id
                )));
            }
        }
        for s in &self.sentinels {
            // A flat list of field names and values.
            let Ok(fields) = ask::<HashMap<String, String>>(
                &s.addr(),
                redis::cmd("SENTINEL").arg("master").arg(MASTER_NAME),
                T_ADMIN,
            )
            .await
            else {
                return Some(Problem::Sentinels(format!("{} does not answer", s.id)));
            };
            let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
            if get("port") != primary.port.to_string() || get("flags") != "master" {
                return Some(Problem::Sentinels(format!(
                    "{} does not follow the primary yet",
                    s.id
                )));
            }
            if get("num-slaves") != (self.nodes.len() - 1).to_string() {
                return Some(Problem::Sentinels(format!(
                    "{} knows {} replicas",
                    s.id,
                    get("num-slaves")
                )));
            }
            if get("num-other-sentinels") != (self.sentinels.len() - 1).to_string() {
                return Some(Problem::Sentinels(format!(
                    "{} knows {} other Sentinels",
                    s.id,
                    get("num-other-sentinels")
                )));
            }
        }
        None
    }
}

#[async_trait]
impl Db for RedisCluster {
    fn nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.config.dir)
            .with_context(|| format!("cannot create {}", self.config.dir.display()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        self.spawn_server(&self.nodes[0], None)?;
        for n in &self.nodes[1..] {
            self.spawn_server(n, Some(&self.nodes[0]))?;
        }
        // Sentinels learn the replicas from the primary's INFO, which they poll every 10 s:
        // start them once the replicas are connected, so the first poll finds them all.
        let mut sentinels_started = false;
        loop {
            for p in self.nodes.iter().chain(&self.sentinels) {
                if let Some(status) = self.procs.exited(&p.id) {
                    bail!(
                        "{} exited ({status}); last log lines:\n{}",
                        p.id,
                        procs::tail(&self.procs.log_path(&p.id), 5)
                    );
                }
            }
            let why = match self.health_problem().await {
                None => return Ok(()),
                Some(Problem::Replication(why)) => why,
                Some(Problem::Sentinels(why)) if !sentinels_started => {
                    for s in &self.sentinels {
                        self.spawn_sentinel(s, true)?;
                    }
                    sentinels_started = true;
                    why
                }
                Some(Problem::Sentinels(why)) => why,
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "Redis did not become healthy within {} ms: {why}",
                    timeout.as_millis()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn teardown(&self) {
        self.procs.stop_all(Duration::from_secs(2)).await;
    }

    fn client(&self, _process: u64) -> Box<dyn Client> {
        Box::new(RedisClient::new(
            self.nodes
                .iter()
                .map(|n| (n.id.clone(), n.addr()))
                .collect(),
            self.sentinels.iter().map(Proc::addr).collect(),
            self.config.wait_replicas,
            self.config.wait_timeout_ms,
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
impl Kill for RedisCluster {
    async fn kill(&self, name: &str) -> anyhow::Result<()> {
        self.find(name)?;
        self.procs.kill(name).await
    }

    /// A data node comes back as a replica of whatever the Sentinels call the primary now
    /// (or as primary if that is itself), on its append-only file; a Sentinel on the
    /// config it rewrote.
    async fn restart(&self, name: &str) -> anyhow::Result<()> {
        let p = self.find(name)?.clone();
        if self.procs.is_running(name) {
            return Ok(());
        }
        if p.id.starts_with('s') {
            return self.spawn_sentinel(&p, false);
        }
        let primary = self.sentinel_primary().await.filter(|q| q.id != p.id);
        self.spawn_server(&p, primary)
    }
}

#[async_trait]
impl Pause for RedisCluster {
    async fn pause(&self, name: &str) -> anyhow::Result<()> {
        self.find(name)?;
        self.procs.pause(name)
    }

    async fn resume(&self, name: &str) -> anyhow::Result<()> {
        self.procs.resume(name)
    }
}

#[async_trait]
impl Primary for RedisCluster {
    /// The data nodes whose `ROLE` is `master` (two during a split brain).
    async fn primaries(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if matches!(self.role(n).await, Ok(Role::Primary { .. })) {
                out.push(n.id.clone());
            }
        }
        out
    }
}

/// A Redis client for one logical process: one connection to the node the Sentinels name
/// as primary, rediscovered after any error.
#[derive(Debug)]
pub struct RedisClient {
    nodes: Vec<(NodeId, String)>,
    sentinels: Vec<Conn>,
    conn: Option<(usize, Conn)>,
    wait_replicas: u32,
    wait_timeout_ms: u64,
}

const READ_SCRIPT: &str = "local t = redis.call('TYPE', KEYS[1])['ok'] \
    if t == 'string' then return {t, redis.call('GET', KEYS[1])} \
    elseif t == 'set' then return {t, redis.call('SMEMBERS', KEYS[1])} \
    else return {t} end";

const CAS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end";

impl RedisClient {
    /// `nodes` are `(name, host:port)` of the data nodes, `sentinels` the Sentinels'
    /// `host:port`.
    pub fn new(
        nodes: Vec<(NodeId, String)>,
        sentinels: Vec<String>,
        wait_replicas: u32,
        wait_timeout_ms: u64,
    ) -> RedisClient {
        RedisClient {
            nodes,
            sentinels: sentinels.iter().map(|s| Conn::new(s)).collect(),
            conn: None,
            wait_replicas,
            wait_timeout_ms,
        }
    }

    /// The connection to the primary: asks each Sentinel in turn and checks with `ROLE`
    /// that the node it names agrees. Nothing of the call was sent when this fails.
    async fn ensure_conn(&mut self, deadline: Instant) -> Result<usize, String> {
        if let Some((i, _)) = &self.conn {
            return Ok(*i);
        }
        let mut why = Vec::new();
        for s in &mut self.sentinels {
            if Instant::now() >= deadline {
                break;
            }
            let named = s
                .call(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(MASTER_NAME),
                    deadline,
                )
                .await;
            let addr = match answer_as::<Option<(String, u16)>>(named) {
                Ok(Some((ip, port))) => format!("{ip}:{port}"),
                Ok(None) => {
                    why.push(format!("sentinel {} names no primary", s.addr));
                    continue;
                }
                Err(e) => {
                    why.push(format!("sentinel {}: {e}", s.addr));
                    continue;
                }
            };
            let Some(i) = self.nodes.iter().position(|(_, a)| *a == addr) else {
                why.push(format!("sentinel {} names {addr:?}", s.addr));
                continue;
            };
            let mut conn = Conn::new(&self.nodes[i].1);
            let role = conn.call(&redis::cmd("ROLE"), deadline).await;
            match answer_as::<Role>(role) {
                Ok(Role::Primary { .. }) => {
                    self.conn = Some((i, conn));
                    return Ok(i);
                }
                Ok(other) => why.push(format!("{} says {other:?}", self.nodes[i].0)),
                Err(e) => why.push(format!("{}: {e}", self.nodes[i].0)),
            }
        }
        Err(format!("no primary found ({})", why.join("; ")))
    }

    /// Sends `cmd` to the primary: its answer, or the call's completion when there is none.
    /// After anything but an answer the client looks for the primary again (a demoted or
    /// loading node refuses, a partitioned one stays silent).
    async fn exchange(
        &mut self,
        call: &Invocation,
        cmd: &Cmd,
        deadline: Instant,
    ) -> Result<(usize, redis::Value), Completion> {
        let i = self
            .ensure_conn(deadline)
            .await
            .map_err(|e| refuse(call, e))?;
        let conn = &mut self.conn.as_mut().expect("connected").1;
        match conn.call(cmd, deadline).await {
            Judged::Answer(v) => Ok((i, v)),
            judged => {
                self.conn = None;
                Err(failed(call, &self.nodes[i].0, judged))
            }
        }
    }

    /// After an applied write: `ok`, or `info` if `WAIT` got fewer replicas than asked.
    async fn acknowledged(&mut self, call: &Invocation, i: usize, deadline: Instant) -> Completion {
        let node = self.nodes[i].0.clone();
        if self.wait_replicas == 0 {
            return completion(OpType::Ok, call.value.clone(), Some(&node), None);
        }
        let conn = &mut self.conn.as_mut().expect("connected").1;
        let judged = conn
            .call(
                redis::cmd("WAIT")
                    .arg(self.wait_replicas)
                    .arg(self.wait_timeout_ms),
                deadline,
            )
            .await;
        let replicas = i64::from(self.wait_replicas);
        if matches!(judged, Judged::Answer(redis::Value::Int(n)) if n >= replicas) {
            return completion(OpType::Ok, call.value.clone(), Some(&node), None);
        }
        if !matches!(judged, Judged::Answer(_)) {
            self.conn = None;
        }
        completion(
            OpType::Info,
            call.value.clone(),
            Some(&node),
            Some(format!("applied on the primary, WAIT answered {judged:?}")),
        )
    }
}

/// The Redis command for a call, or why there is none.
fn command_for(call: &Invocation) -> Result<Cmd, String> {
    let key = match (&call.key, &call.f) {
        (Some(k), _) => key_text(k),
        (None, F::Add | F::Read) => key_text(&Key::Str("set".into())),
        (None, f) => return Err(format!("{f} needs a key")),
    };
    let int = |what: &str| {
        call.value
            .as_int()
            .ok_or_else(|| format!("{what} needs an integer, got {}", call.value))
    };
    let mut cmd = Cmd::new();
    match &call.f {
        F::Read => cmd.arg("EVAL").arg(READ_SCRIPT).arg(1).arg(key),
        F::Write => cmd.arg("SET").arg(key).arg(int("write")?),
        F::Add => cmd.arg("SADD").arg(key).arg(int("add")?),
        F::Cas => match call.value.as_cas() {
            Some((from, to)) => cmd
                .arg("EVAL")
                .arg(CAS_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(from)
                .arg(to),
            None => return Err(format!("cas needs [from to], got {}", call.value)),
        },
        F::Other(f) => match f.as_str() {
            SET_ADD => cmd.arg("SADD").arg(key).arg(int(SET_ADD)?),
            SET_REMOVE => cmd.arg("SREM").arg(key).arg(int(SET_REMOVE)?),
            SET_READ => cmd.arg("SMEMBERS").arg(key),
            _ => return Err(format!("the redis client does not support {f}")),
        },
        f => return Err(format!("the redis client does not support {f}")),
    };
    Ok(cmd)
}

/// The set workload's calls (`harness`'s generator and `checkers`' `set-add-wins`).
const SET_ADD: &str = "set-add";
const SET_REMOVE: &str = "set-remove";
const SET_READ: &str = "set-read";

fn is_read(f: &F) -> bool {
    *f == F::Read || matches!(f, F::Other(o) if o == SET_READ)
}

/// A register's integer, a set's sorted elements, or nil, from the read script's answer.
fn read_result(r: redis::Value) -> Result<Value, String> {
    let (t, value): (String, Option<redis::Value>) = match r {
        redis::Value::Array(items) => {
            let mut items = items.into_iter();
            let t = items
                .next()
                .map(redis::from_redis_value::<String>)
                .transpose()
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            (t, items.next())
        }
        other => return Err(format!("unexpected answer {other:?}")),
    };
    match (t.as_str(), value) {
        ("none", _) => Ok(Value::Nil),
        ("string", Some(v)) => redis::from_redis_value::<i64>(v)
            .map(Value::Int)
            .map_err(|e| format!("not an integer: {e}")),
        ("set", Some(v)) => set_result(v),
        (other, _) => Err(format!("unexpected type {other:?}")),
    }
}

/// A set's elements, sorted, from `SMEMBERS` (an absent key is the empty set).
fn set_result(v: redis::Value) -> Result<Value, String> {
    let mut elems = redis::from_redis_value::<Vec<i64>>(v)
        .map_err(|e| format!("not a set of integers: {e}"))?;
    elems.sort_unstable();
    Ok(Value::List(elems.into_iter().map(Value::Int).collect()))
}

#[async_trait]
impl Client for RedisClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let deadline = Instant::now() + timeout;
        let cmd = match command_for(call) {
            Ok(cmd) => cmd,
            Err(why) => return refuse(call, why),
        };
        let (i, answer) = match self.exchange(call, &cmd, deadline).await {
            Ok(r) => r,
            Err(done) => return done,
        };
        let node = self.nodes[i].0.clone();
        let read = match &call.f {
            F::Read => Some(read_result(answer)),
            F::Other(f) if f == SET_READ => Some(set_result(answer)),
            F::Cas if answer != redis::Value::Int(1) => {
                return completion(
                    OpType::Fail,
                    call.value.clone(),
                    Some(&node),
                    Some("the value differs".into()),
                );
            }
            _ => None,
        };
        match read {
            Some(Ok(v)) => completion(OpType::Ok, v, Some(&node), None),
            // A read changes nothing: an answer it cannot use is a failed read.
            Some(Err(e)) => completion(OpType::Fail, Value::Nil, Some(&node), Some(e)),
            None => self.acknowledged(call, i, deadline).await,
        }
    }
}

/// One connection to one Redis server or Sentinel through redis-rs, made on demand. A
/// command goes out only on a connection that is still open, and anything but a proper
/// answer drops the connection, so that a late answer is never taken for the next
/// command's.
#[derive(Debug)]
struct Conn {
    addr: String,
    live: Option<Live>,
}

/// A redis-rs connection on a socket this module opened: the driver task that redis-rs
/// multiplexes it with (aborted on drop), and a second handle on the socket to look at it
/// while it is idle.
#[derive(Debug)]
struct Live {
    conn: MultiplexedConnection,
    driver: tokio::task::JoinHandle<()>,
    socket: std::net::TcpStream,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Live {
    /// Whether a command sent now would reach the server: the driver still runs and the
    /// server has not closed the idle connection (Sentinel closes the clients of a node it
    /// demotes). Sending on a closed one would turn a certain "not sent" into an uncertain
    /// "no answer".
    fn usable(&self) -> bool {
        !self.driver.is_finished() && still_open(&self.socket)
    }
}

impl Conn {
    fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.to_string(),
            live: None,
        }
    }

    /// Connects unless connected. Nothing is sent on connecting (no `HELLO`, `AUTH`,
    /// `SELECT` or `CLIENT SETINFO`), so an error here means the command was not sent.
    async fn connect(&mut self, deadline: Instant) -> Result<&mut MultiplexedConnection, String> {
        if self.live.as_ref().is_some_and(|l| !l.usable()) {
            self.live = None;
        }
        if self.live.is_none() {
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let std_stream = stream.into_std().map_err(|e| e.to_string())?;
            let socket = std_stream.try_clone().map_err(|e| e.to_string())?;
            let stream = TcpStream::from_std(std_stream).map_err(|e| e.to_string())?;
            let info = RedisConnectionInfo::default().set_skip_set_lib_name();
            // The deadline is the caller's; redis-rs's own response timeout would cut it.
            let config = AsyncConnectionConfig::new().set_response_timeout(None);
            let setup = MultiplexedConnection::new_with_config(&info, stream, config);
            let (conn, driver) = tokio::time::timeout_at(deadline, setup)
                .await
                .map_err(|_| "connection setup timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            self.live = Some(Live {
                conn,
                driver: tokio::spawn(driver),
                socket,
            });
        }
        Ok(&mut self.live.as_mut().expect("connected above").conn)
    }

    /// Sends one command and waits for its answer until `deadline`.
    async fn call(&mut self, cmd: &Cmd, deadline: Instant) -> Judged {
        let exchanged = match self.connect(deadline).await {
            Ok(conn) => {
                match tokio::time::timeout_at(deadline, conn.send_packed_command(cmd)).await {
                    Ok(answer) => Exchange::Done(answer),
                    Err(_) => Exchange::TimedOut,
                }
            }
            Err(why) => Exchange::NotSent(why),
        };
        let judged = judge(exchanged);
        if !matches!(judged, Judged::Answer(_)) {
            self.live = None;
        }
        judged
    }
}

/// Asks one server or Sentinel one question on a fresh connection.
async fn ask<T: FromRedisValue>(addr: &str, cmd: &Cmd, timeout: Duration) -> Result<T, String> {
    let mut conn = Conn::new(addr);
    answer_as(conn.call(cmd, Instant::now() + timeout).await)
}

/// An answer as `T`, or why there is none.
fn answer_as<T: FromRedisValue>(judged: Judged) -> Result<T, String> {
    match judged {
        Judged::Answer(v) => redis::from_redis_value(v).map_err(|e| e.to_string()),
        Judged::NotSent(why) | Judged::Refused(why) | Judged::Unknown(why) => Err(why),
    }
}

/// How one command's exchange ended, before it is judged.
#[derive(Debug)]
enum Exchange {
    /// No connection could be made: the command was not sent.
    NotSent(String),
    /// No answer before the deadline; the command may have run.
    TimedOut,
    /// What redis-rs returned once the command was handed to it: a reply (an error reply
    /// among them), or an error on the way (a broken connection, an unreadable answer).
    Done(redis::RedisResult<redis::Value>),
}

/// What an exchange means for the call.
#[derive(Debug, PartialEq)]
enum Judged {
    /// The server's reply, which is not an error.
    Answer(redis::Value),
    /// The command was never sent: no connection could be made.
    NotSent(String),
    /// The server answered with an error, which Redis sends instead of running the command
    /// (`READONLY` from a demoted primary, `NOREPLICAS`, `LOADING`, `MASTERDOWN`, ...): the
    /// command certainly did not run.
    Refused(String),
    /// The command may have run: no answer in time, or the connection broke after sending.
    Unknown(String),
}

/// Sorts an exchange into answer, certain failure and unknown outcome. Pure, so that the
/// line between `fail` and `info` is tested without a server.
fn judge(exchanged: Exchange) -> Judged {
    match exchanged {
        Exchange::NotSent(why) => Judged::NotSent(why),
        Exchange::TimedOut => Judged::Unknown("timeout".into()),
        Exchange::Done(Ok(redis::Value::ServerError(e))) => Judged::Refused(match e.details() {
            Some(detail) => format!("{} {detail}", e.code()),
            None => e.code().to_string(),
        }),
        Exchange::Done(Ok(v)) => Judged::Answer(v),
        // An error reply that redis-rs hands back as an error still carries its code.
        Exchange::Done(Err(e)) if e.code().is_some() => Judged::Refused(e.to_string()),
        Exchange::Done(Err(e)) => Judged::Unknown(format!("sent, no usable answer: {e}")),
    }
}

/// The completion of a call that got no usable answer: `fail` when it certainly did not
/// run, or when it is a read (which changes nothing either way); `info` for a write that
/// may have run.
fn failed(call: &Invocation, node: &str, judged: Judged) -> Completion {
    let read = is_read(&call.f);
    let value = if read { Value::Nil } else { call.value.clone() };
    match judged {
        // Nothing reached the node: like any other refusal before sending.
        Judged::NotSent(why) => completion(OpType::Fail, value, None, Some(why)),
        Judged::Answer(v) => completion(
            OpType::Fail,
            value,
            Some(node),
            Some(format!("unexpected answer {v:?}")),
        ),
        Judged::Refused(why) => completion(OpType::Fail, value, Some(node), Some(why)),
        Judged::Unknown(why) if read => completion(OpType::Fail, value, Some(node), Some(why)),
        Judged::Unknown(why) => completion(OpType::Info, value, Some(node), Some(why)),
    }
}

/// Whether an idle connection is still usable: nothing to read yet (no FIN, no stray bytes).
/// The socket is non-blocking (tokio made it), so an empty one answers `WouldBlock`.
fn still_open(socket: &std::net::TcpStream) -> bool {
    matches!(socket.peek(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    /// A reply as redis-rs reads it off the wire.
    fn reply(wire: &str) -> redis::Value {
        redis::parse_redis_value(wire.as_bytes()).unwrap()
    }

    fn call(f: F, value: Value) -> Invocation {
        Invocation {
            f,
            key: Some(Key::Int(1)),
            value,
        }
    }

    #[test]
    fn error_replies_are_refusals_and_silence_after_sending_is_unknown() {
        for wire in [
            "-READONLY You can't write against a read only replica.\r\n",
            "-NOREPLICAS Not enough good replicas to write.\r\n",
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
        ] {
            let code = wire[1..].split(' ').next().unwrap();
            match judge(Exchange::Done(Ok(reply(wire)))) {
                Judged::Refused(why) => assert!(why.starts_with(code), "{why}"),
                other => panic!("{wire:?} judged {other:?}"),
            }
        }
        assert_eq!(
            judge(Exchange::NotSent("connect: Connection refused".into())),
            Judged::NotSent("connect: Connection refused".into())
        );
        assert!(matches!(judge(Exchange::TimedOut), Judged::Unknown(_)));
        let broken =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            judge(Exchange::Done(Err(broken))),
            Judged::Unknown(_)
        ));
        let coded = redis::make_extension_error("NOREPLICAS".into(), None);
        assert!(matches!(
            judge(Exchange::Done(Err(coded))),
            Judged::Refused(_)
        ));
        assert_eq!(
            judge(Exchange::Done(Ok(reply(":1\r\n")))),
            Judged::Answer(redis::Value::Int(1))
        );
    }

    #[test]
    fn writes_without_an_answer_are_info_and_reads_fail() {
        let unknown = || Judged::Unknown("timeout".into());
        let refused = || Judged::Refused("READONLY".into());
        for f in [
            F::Write,
            F::Cas,
            F::Other(SET_ADD.into()),
            F::Other(SET_REMOVE.into()),
        ] {
            let c = call(f, Value::Int(3));
            let done = failed(&c, "n1", unknown());
            assert_eq!(
                (done.kind, done.value, done.node.as_deref()),
                (OpType::Info, Value::Int(3), Some("n1"))
            );
            let done = failed(&c, "n1", refused());
            assert_eq!(
                (done.kind, done.node.as_deref()),
                (OpType::Fail, Some("n1"))
            );
            let done = failed(&c, "n1", Judged::NotSent("connect".into()));
            assert_eq!((done.kind, done.node), (OpType::Fail, None));
        }
        for f in [F::Read, F::Other(SET_READ.into())] {
            let done = failed(&call(f, Value::Nil), "n1", unknown());
            assert_eq!((done.kind, done.value), (OpType::Fail, Value::Nil));
        }
    }

    #[test]
    fn set_workload_calls_become_set_commands() {
        let args = |c: &Invocation| -> Vec<String> {
            command_for(c)
                .unwrap()
                .args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => "<cursor>".into(),
                })
                .collect()
        };
        assert_eq!(
            args(&call(F::Other(SET_ADD.into()), Value::Int(4))),
            ["SADD", "1", "4"]
        );
        assert_eq!(
            args(&call(F::Other(SET_REMOVE.into()), Value::Int(4))),
            ["SREM", "1", "4"]
        );
        assert_eq!(
            args(&call(F::Other(SET_READ.into()), Value::Nil)),
            ["SMEMBERS", "1"]
        );
        assert!(command_for(&call(F::Other(SET_ADD.into()), Value::Nil)).is_err());
        assert!(command_for(&call(F::Other("local-read".into()), Value::Nil)).is_err());
    }

    #[test]
    fn reads_decode_registers_sets_and_absence() {
        let reg = redis::Value::Array(vec![bulk("string"), bulk("5")]);
        assert_eq!(read_result(reg), Ok(Value::Int(5)));
        let set = redis::Value::Array(vec![
            bulk("set"),
            redis::Value::Array(vec![bulk("3"), bulk("1")]),
        ]);
        assert_eq!(
            read_result(set),
            Ok(Value::List(vec![Value::Int(1), Value::Int(3)]))
        );
        assert_eq!(
            read_result(redis::Value::Array(vec![bulk("none")])),
            Ok(Value::Nil)
        );
        assert!(read_result(redis::Value::Array(vec![bulk("list")])).is_err());
        assert_eq!(
            set_result(redis::Value::Array(vec![bulk("10"), bulk("2")])),
            Ok(Value::List(vec![Value::Int(2), Value::Int(10)]))
        );
        assert_eq!(
            set_result(redis::Value::Array(vec![])),
            Ok(Value::List(vec![]))
        );
    }
}

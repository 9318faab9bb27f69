//! Redis with Sentinel: a primary (n1), replicas (n2, n3) and Sentinels (s1, s2, s3) from
//! Debian's `redis-server` and `redis-sentinel`, and a client that asks the Sentinels which
//! node is the primary, as Sentinel-aware Redis clients do.
//!
//! Operations (keys as decimal text; values as decimal text):
//! - `read k` → `ok` with the register's integer, the set's sorted elements, or `nil` (one
//!   Lua script, so the type check and the read are atomic); any error → `fail`.
//! - `write k v` (`SET`), `add k v` (`SADD`, the set workload; without a key the set is
//!   `set`), `cas k [from to]` (a Lua compare-and-set) → `ok`; `fail` when Redis answers
//!   with an error (it refused the command before running it: `READONLY` from a demoted
//!   primary, `MASTERDOWN`, ...) or the compare failed; `info` on a timeout or a broken
//!   connection. With [`RedisConfig::wait_replicas`] set, a write is followed by `WAIT`;
//!   fewer acknowledgements than asked make it `info` (applied on the primary, maybe lost).
//!
//! Known ground truth: a partition that isolates the primary, followed by a Sentinel
//! failover, loses acknowledged writes (Redis replication is asynchronous).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use histories::{F, Key, OpType, Value};

use super::procs::{self, Procs};
use super::resp::{Resp, RespConn};
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

    /// What `ROLE` says of a data node: `master` or `slave`, or `None` when it is silent.
    async fn role(&self, node: &Proc) -> Option<(String, Resp)> {
        let mut c = RespConn::new(&node.addr());
        let r = c.call(&["ROLE"], T_ADMIN).await.ok()?;
        Some((r.items().first()?.as_text()?, r))
    }

    /// The primary the Sentinels name (the first that answers).
    async fn sentinel_primary(&self) -> Option<&Proc> {
        for s in &self.sentinels {
            let mut c = RespConn::new(&s.addr());
            let Ok(r) = c
                .call(
                    &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
                    T_ADMIN,
                )
                .await
            else {
                continue;
            };
            let addr: Vec<String> = r.items().iter().filter_map(Resp::as_text).collect();
            if let [ip, port] = addr.as_slice() {
                let addr = format!("{ip}:{port}");
                if let Some(p) = self.nodes.iter().find(|n| n.addr() == addr) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Why the deployment is not yet healthy: the primary has every replica connected, and
    /// every Sentinel follows it and knows the replicas and the other Sentinels.
    async fn health_problem(&self) -> Option<Problem> {
        let primary = &self.nodes[0];
        match self.role(primary).await {
            Some((role, r)) if role == "master" => {
                let replicas = r.items().get(2).map_or(0, |l| l.items().len());
                if replicas < self.nodes.len() - 1 {
                    return Some(Problem::Replication(format!(
                        "the primary has {replicas} replicas"
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
            let mut c = RespConn::new(&s.addr());
            let Ok(r) = c.call(&["SENTINEL", "master", MASTER_NAME], T_ADMIN).await else {
                return Some(Problem::Sentinels(format!("{} does not answer", s.id)));
            };
            let fields: Vec<String> = r.items().iter().filter_map(Resp::as_text).collect();
            let get = |k: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0] == k)
                    .and_then(|kv| kv.get(1).cloned())
                    .unwrap_or_default()
            };
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
            if self.role(n).await.is_some_and(|(r, _)| r == "master") {
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
    sentinels: Vec<RespConn>,
    conn: Option<(usize, RespConn)>,
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
            sentinels: sentinels.iter().map(|s| RespConn::new(s)).collect(),
            conn: None,
            wait_replicas,
            wait_timeout_ms,
        }
    }

    /// The connection to the primary: asks each Sentinel in turn and checks with `ROLE`
    /// that the node it names agrees. Nothing of the call was sent when this fails.
    async fn ensure_conn(&mut self, deadline: tokio::time::Instant) -> Result<usize, String> {
        if let Some((i, _)) = &self.conn {
            return Ok(*i);
        }
        let mut why = Vec::new();
        for s in &mut self.sentinels {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let named = match s
                .call(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME], left)
                .await
            {
                Ok(r) => r
                    .items()
                    .iter()
                    .filter_map(Resp::as_text)
                    .collect::<Vec<_>>(),
                Err(e) => {
                    why.push(format!("sentinel {}: {e}", s.addr()));
                    continue;
                }
            };
            let addr = named.join(":");
            let Some(i) = self.nodes.iter().position(|(_, a)| *a == addr) else {
                why.push(format!("sentinel {} names {addr:?}", s.addr()));
                continue;
            };
            let mut conn = RespConn::new(&self.nodes[i].1);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match conn.call(&["ROLE"], left).await {
                Ok(r) if r.items().first().and_then(Resp::as_text).as_deref() == Some("master") => {
                    self.conn = Some((i, conn));
                    return Ok(i);
                }
                Ok(r) => why.push(format!("{} says {r:?}", self.nodes[i].0)),
                Err(e) => why.push(format!("{}: {e}", self.nodes[i].0)),
            }
        }
        Err(format!("no primary found ({})", why.join("; ")))
    }

    async fn exchange(
        &mut self,
        call: &Invocation,
        args: Vec<String>,
        deadline: tokio::time::Instant,
    ) -> Result<(usize, Resp), Completion> {
        let i = self
            .ensure_conn(deadline)
            .await
            .map_err(|e| refuse(call, e))?;
        let node = self.nodes[i].0.clone();
        let conn = &mut self.conn.as_mut().expect("connected").1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let is_read = call.f == F::Read;
        let indefinite = |e: String| {
            let kind = if is_read { OpType::Fail } else { OpType::Info };
            let value = if is_read {
                Value::Nil
            } else {
                call.value.clone()
            };
            completion(kind, value, Some(&node), Some(e))
        };
        match conn.call(&args, left).await {
            Ok(Resp::Error(e)) => {
                // Refused before running; a demoted or loading node sends us looking again.
                self.conn = None;
                let value = if is_read {
                    Value::Nil
                } else {
                    call.value.clone()
                };
                Err(completion(OpType::Fail, value, Some(&node), Some(e)))
            }
            Ok(r) => Ok((i, r)),
            Err(e) if e.not_sent() => {
                self.conn = None;
                Err(refuse(call, e.to_string()))
            }
            Err(e) => {
                self.conn = None;
                Err(indefinite(e.to_string()))
            }
        }
    }

    /// After an applied write: `ok`, or `info` if `WAIT` got fewer replicas than asked.
    async fn acknowledged(
        &mut self,
        call: &Invocation,
        i: usize,
        deadline: tokio::time::Instant,
    ) -> Completion {
        let node = self.nodes[i].0.clone();
        if self.wait_replicas == 0 {
            return completion(OpType::Ok, call.value.clone(), Some(&node), None);
        }
        let args = vec![
            "WAIT".to_string(),
            self.wait_replicas.to_string(),
            self.wait_timeout_ms.to_string(),
        ];
        let conn = &mut self.conn.as_mut().expect("connected").1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.call(&args, left).await {
            Ok(Resp::Int(n)) if n >= i64::from(self.wait_replicas) => {
                completion(OpType::Ok, call.value.clone(), Some(&node), None)
            }
            other => {
                if other.is_err() {
                    self.conn = None;
                }
                completion(
                    OpType::Info,
                    call.value.clone(),
                    Some(&node),
                    Some(format!("applied on the primary, WAIT answered {other:?}")),
                )
            }
        }
    }
}

fn int_arg(v: &Value) -> Option<String> {
    v.as_int().map(|i| i.to_string())
}

/// A register's integer, a set's sorted elements, or nil, from the read script's answer.
fn read_result(r: &Resp) -> Result<Value, String> {
    let items = r.items();
    let t = items.first().and_then(Resp::as_text).unwrap_or_default();
    let parse = |s: String| {
        s.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("not an integer: {s:?}"))
    };
    match t.as_str() {
        "none" => Ok(Value::Nil),
        "string" => parse(items.get(1).and_then(Resp::as_text).unwrap_or_default()),
        "set" => {
            let mut elems = items
                .get(1)
                .map(Resp::items)
                .unwrap_or_default()
                .iter()
                .filter_map(Resp::as_text)
                .map(parse)
                .collect::<Result<Vec<_>, _>>()?;
            elems.sort_by_key(|v| v.as_int());
            Ok(Value::List(elems))
        }
        other => Err(format!("unexpected type {other:?}")),
    }
}

#[async_trait]
impl Client for RedisClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let deadline = tokio::time::Instant::now() + timeout;
        let key = match (&call.key, &call.f) {
            (Some(k), _) => key_text(k),
            (None, F::Add | F::Read) => key_text(&Key::Str("set".into())),
            (None, f) => return refuse(call, format!("{f} needs a key")),
        };
        let s = |x: &str| x.to_string();
        let args = match &call.f {
            F::Read => vec![s("EVAL"), s(READ_SCRIPT), s("1"), key],
            F::Write => match int_arg(&call.value) {
                Some(v) => vec![s("SET"), key, v],
                None => return refuse(call, format!("write needs an integer, got {}", call.value)),
            },
            F::Add => match int_arg(&call.value) {
                Some(v) => vec![s("SADD"), key, v],
                None => return refuse(call, format!("add needs an integer, got {}", call.value)),
            },
            F::Cas => match call.value.as_cas() {
                Some((from, to)) => vec![
                    s("EVAL"),
                    s(CAS_SCRIPT),
                    s("1"),
                    key,
                    from.to_string(),
                    to.to_string(),
                ],
                None => return refuse(call, format!("cas needs [from to], got {}", call.value)),
            },
            f => return refuse(call, format!("the redis client does not support {f}")),
        };
        let (i, answer) = match self.exchange(call, args, deadline).await {
            Ok(r) => r,
            Err(done) => return done,
        };
        let node = self.nodes[i].0.clone();
        match call.f {
            F::Read => match read_result(&answer) {
                Ok(v) => completion(OpType::Ok, v, Some(&node), None),
                Err(e) => completion(OpType::Fail, Value::Nil, Some(&node), Some(e)),
            },
            F::Cas if answer != Resp::Int(1) => completion(
                OpType::Fail,
                call.value.clone(),
                Some(&node),
                Some("the value differs".into()),
            ),
            _ => self.acknowledged(call, i, deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Resp {
        Resp::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn reads_decode_registers_sets_and_absence() {
        let reg = Resp::Array(Some(vec![bulk("string"), bulk("5")]));
        assert_eq!(read_result(&reg), Ok(Value::Int(5)));
        let set = Resp::Array(Some(vec![
            bulk("set"),
            Resp::Array(Some(vec![bulk("3"), bulk("1")])),
        ]));
        assert_eq!(
            read_result(&set),
            Ok(Value::List(vec![Value::Int(1), Value::Int(3)]))
        );
        assert_eq!(
            read_result(&Resp::Array(Some(vec![bulk("none")]))),
            Ok(Value::Nil)
        );
        assert!(read_result(&Resp::Array(Some(vec![bulk("list")]))).is_err());
    }
}

//! PostgreSQL: a primary with streaming replicas (Debian's `postgresql`, run as the `postgres`
//! user from `initdb`), synchronous or asynchronous, and a transactional client.
//!
//! Data lives in one table, `kv (k text primary key, v jsonb)`: a register holds a JSON
//! integer, a list a JSON array, so list-append and rw-register share it.
//!
//! Operations and their completions:
//! - `txn [[r k nil] [append k v] [w k v] ...]`: `BEGIN ISOLATION LEVEL <isolation>`, one
//!   statement per micro-op (an interactive transaction, which is what lets the isolation
//!   level show), `COMMIT`. `ok` with the reads filled in. Anything that goes wrong before
//!   `COMMIT` is sent is `fail` (the server rolls the transaction back). At `COMMIT`: a
//!   serialization failure or deadlock (SQLSTATE class 40) or another error the server
//!   reports is `fail`; a timeout or a broken connection is `info` — in particular a commit
//!   waiting for a synchronous standby has already committed locally and becomes visible
//!   later.
//! - `read k` / `write k v` / `cas k [from to]`: single autocommit statements; a read that
//!   fails is `fail`, a write or cas that times out is `info`, a cas whose compare fails is
//!   `fail`.
//!
//! Clients connect to the first node that is not in recovery (the primary; there is no
//! automatic failover in PostgreSQL itself).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use histories::{F, MicroF, MicroOp, OpType, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use super::procs::{self, Procs};
use super::{NodeHost, completion, hosts_for, install, key_text, ports_for, refuse, txn_ops};
use crate::db::{Client, Completion, Db, Invocation, Kill, NodeId, Pause, Primary};

/// A transaction isolation level, as `--isolation` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    ReadCommitted,
    /// Snapshot isolation in PostgreSQL: write skew (G2-item) is allowed.
    RepeatableRead,
    /// Serializable snapshot isolation: one side of a dangerous structure aborts (40001).
    #[default]
    Serializable,
}

impl Isolation {
    pub const ALL: [Isolation; 3] = [
        Isolation::ReadCommitted,
        Isolation::RepeatableRead,
        Isolation::Serializable,
    ];

    /// The flag value, which [`str::parse`] reads back.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read-committed",
            Isolation::RepeatableRead => "repeatable-read",
            Isolation::Serializable => "serializable",
        }
    }

    /// The level as SQL spells it, for `BEGIN ISOLATION LEVEL ...`.
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Isolation, String> {
        Isolation::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown isolation {s:?}; expected read-committed, repeatable-read or serializable"
                )
            })
    }
}

/// How commits wait for the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgReplication {
    /// A commit returns once it is durable on the primary.
    #[default]
    Async,
    /// `synchronous_standby_names = 'FIRST 1 (n2)'`: a commit also waits for the first
    /// replica to flush it.
    Sync,
}

/// How the harness wants the cluster built. Build it with `..PostgresConfig::default()`.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// The directory of `initdb`, `postgres`, `pg_basebackup`; `None` for the newest
    /// `/usr/lib/postgresql/<version>/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Data directories (`n1/`, `n2/`, ...), logs and the `pids` file. The `postgres` user
    /// must be able to traverse it; the adapter adds the search bit for others to it.
    pub dir: PathBuf,
    /// Streaming replicas besides the primary (n1); they are n2, n3, ...
    pub replicas: usize,
    pub replication: PgReplication,
    pub isolation: Isolation,
    /// One per node, or empty for all on 127.0.0.1.
    pub hosts: Vec<NodeHost>,
}

impl Default for PostgresConfig {
    fn default() -> PostgresConfig {
        PostgresConfig {
            bin_dir: None,
            dir: PathBuf::from("."),
            replicas: 1,
            replication: PgReplication::Async,
            isolation: Isolation::Serializable,
            hosts: Vec::new(),
        }
    }
}

/// The newest installed PostgreSQL's binary directory.
pub fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Installs Debian's `postgresql` when no server binary is found.
pub fn ensure_installed() -> anyhow::Result<()> {
    install::ensure_package("postgresql", || find_bin_dir().is_some())
}

#[derive(Debug, Clone)]
struct PgNode {
    id: NodeId,
    host: NodeHost,
    port: u16,
}

/// A PostgreSQL primary (n1) with streaming replicas, started and faulted here.
#[derive(Debug)]
pub struct PostgresCluster {
    config: PostgresConfig,
    bin_dir: PathBuf,
    nodes: Vec<PgNode>,
    procs: Procs,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

impl PostgresCluster {
    /// Chooses ports and finds the binaries and the `postgres` user. Nothing starts until
    /// [`Db::start`].
    pub fn new(config: PostgresConfig) -> anyhow::Result<PostgresCluster> {
        let bin_dir = match &config.bin_dir {
            Some(d) => d.clone(),
            None => find_bin_dir()
                .ok_or_else(|| anyhow!("PostgreSQL not found (apt-get install postgresql)"))?,
        };
        let user = nix::unistd::User::from_name("postgres")
            .context("cannot look up the postgres user")?
            .ok_or_else(|| anyhow!("there is no postgres user (apt-get install postgresql)"))?;
        let count = config.replicas + 1;
        let hosts = hosts_for(&config.hosts, count)?;
        let ports = ports_for(&hosts, 5432)?;
        let nodes = hosts
            .into_iter()
            .zip(ports)
            .enumerate()
            .map(|(i, (host, port))| PgNode {
                id: format!("n{}", i + 1),
                host,
                port,
            })
            .collect();
        Ok(PostgresCluster {
            procs: Procs::new(&config.dir),
            config,
            bin_dir,
            nodes,
            uid: user.uid,
            gid: user.gid,
        })
    }

    /// `host:port` of a node.
    pub fn addr_of(&self, node: &str) -> Option<String> {
        self.node(node)
            .ok()
            .map(|n| format!("{}:{}", n.host.ip, n.port))
    }

    fn node(&self, node: &str) -> anyhow::Result<&PgNode> {
        self.nodes
            .iter()
            .find(|n| n.id == node)
            .ok_or_else(|| anyhow!("no node named {node}"))
    }

    fn data_dir(&self, node: &str) -> PathBuf {
        self.config.dir.join(node)
    }

    /// A command run as the postgres user, on the node's host.
    fn as_postgres(&self, host: &NodeHost, program: &str) -> tokio::process::Command {
        let program = self.bin_dir.join(program);
        let mut cmd = match &host.netns {
            None => {
                let mut cmd = tokio::process::Command::new(&program);
                cmd.uid(self.uid.as_raw()).gid(self.gid.as_raw());
                cmd
            }
            // Entering a namespace needs root, so the switch to postgres comes after it;
            // setpriv sets the parent-death signal again, which a change of user clears.
            Some(_) => {
                let mut cmd = host.command(Path::new("setpriv"));
                cmd.arg(format!("--reuid={}", self.uid))
                    .arg(format!("--regid={}", self.gid))
                    .args(["--clear-groups", "--pdeathsig", "KILL"])
                    .arg(&program);
                cmd
            }
        };
        cmd.current_dir(&self.config.dir).env("LC_ALL", "C.UTF-8");
        cmd
    }

    /// Runs a setup tool to its end, with its output in the node's log on failure.
    async fn run_tool(&self, node: &PgNode, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = self.as_postgres(&node.host, program);
        cmd.args(args).kill_on_drop(true);
        crate::process::die_with_parent(&mut cmd);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .with_context(|| format!("{program} for {} took over 120 s", node.id))?
            .with_context(|| format!("cannot run {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} for {} failed ({}): {}{}",
                node.id,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn append_settings(&self, node: &PgNode) -> anyhow::Result<()> {
        use std::io::Write as _;
        let path = self.data_dir(&node.id).join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.write_all(node_settings(&self.nodes, self.config.replication, node).as_bytes())?;
        std::os::unix::fs::chown(&path, Some(self.uid.as_raw()), Some(self.gid.as_raw()))?;
        Ok(())
    }

    fn hba(&self, node: &PgNode) -> anyhow::Result<()> {
        use std::io::Write as _;
        let path = self.data_dir(&node.id).join("pg_hba.conf");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
        // Only the chosen address listens; trust keeps the harness free of passwords.
        f.write_all(b"host all all 0.0.0.0/0 trust\nhost replication all 0.0.0.0/0 trust\n")?;
        Ok(())
    }

    fn spawn(&self, node: &str) -> anyhow::Result<()> {
        let n = self.node(node)?;
        let mut cmd = self.as_postgres(&n.host, "postgres");
        cmd.arg("-D").arg(self.data_dir(node));
        self.procs.spawn(node, cmd)?;
        Ok(())
    }

    /// Waits until `node` accepts connections.
    async fn wait_ready(&self, node: &str, timeout: Duration) -> anyhow::Result<()> {
        let n = self.node(node)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.procs.exited(node) {
                bail!(
                    "postgres {node} exited ({status}); last log lines:\n{}",
                    procs::tail(&self.procs.log_path(node), 8)
                );
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if connect(n, left.min(Duration::from_secs(1))).await.is_ok() {
                return Ok(());
            }
            if left.is_zero() {
                bail!(
                    "postgres {node} did not accept connections within {} ms; last log lines:\n{}",
                    timeout.as_millis(),
                    procs::tail(&self.procs.log_path(node), 8)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the primary sees every replica streaming (and the first one as its
    /// synchronous standby in sync mode).
    async fn wait_replicating(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let want = self.nodes.len() - 1;
        let mut seen = String::new();
        loop {
            if let Ok(conn) = connect(&self.nodes[0], Duration::from_secs(1)).await {
                let rows = conn
                    .client
                    .query(
                        "SELECT application_name, state, sync_state FROM pg_stat_replication",
                        &[],
                    )
                    .await;
                if let Ok(rows) = rows {
                    let streaming: Vec<(String, String)> = rows
                        .iter()
                        .filter(|r| r.get::<_, Option<String>>(1).as_deref() == Some("streaming"))
                        .map(|r| {
                            (
                                r.get::<_, Option<String>>(0).unwrap_or_default(),
                                r.get::<_, Option<String>>(2).unwrap_or_default(),
                            )
                        })
                        .collect();
                    let sync_ok = self.config.replication == PgReplication::Async
                        || streaming.iter().any(|(_, s)| s == "sync");
                    if streaming.len() >= want && sync_ok {
                        return Ok(());
                    }
                    seen = format!("{streaming:?}");
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the replicas did not stream within {} ms (primary sees {seen})",
                    timeout.as_millis()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes `dir` reachable for the postgres user and gives it an empty data directory
    /// per node.
    fn prepare_dirs(&self) -> anyhow::Result<()> {
        let dir = &self.config.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut perms = std::fs::metadata(dir)?.permissions();
        perms.set_mode(perms.mode() | 0o011);
        std::fs::set_permissions(dir, perms)
            .with_context(|| format!("cannot open {} to the postgres user", dir.display()))?;
        for n in &self.nodes {
            let data = self.data_dir(&n.id);
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
            std::os::unix::fs::chown(&data, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
                .with_context(|| format!("cannot give {} to postgres", data.display()))?;
        }
        Ok(())
    }
}

/// The settings of one node, appended to `postgresql.auto.conf` (later lines win).
fn node_settings(nodes: &[PgNode], replication: PgReplication, node: &PgNode) -> String {
    let mut s = format!(
        "\n# splitbrain\nlisten_addresses = '{}'\nport = {}\nunix_socket_directories = ''\n\
         wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n\
         # A process kill keeps the page cache, so fsync only costs time here.\n\
         fsync = off\nfull_page_writes = off\n",
        node.host.ip, node.port
    );
    if replication == PgReplication::Sync {
        let standby = nodes.get(1).map_or("n2", |n| n.id.as_str());
        s.push_str(&format!(
            "synchronous_standby_names = 'FIRST 1 ({standby})'\n"
        ));
    }
    if node.id != nodes[0].id {
        let primary = &nodes[0];
        s.push_str(&format!(
            "primary_conninfo = 'host={} port={} user=postgres application_name={}'\n",
            primary.host.ip, primary.port, node.id
        ));
    }
    s
}

#[async_trait]
impl Db for PostgresCluster {
    fn nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.prepare_dirs()?;
        let primary = &self.nodes[0];
        let data = self.data_dir(&primary.id);
        let data_str = data.to_string_lossy().into_owned();
        self.run_tool(
            primary,
            "initdb",
            &[
                "-D",
                &data_str,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        .await?;
        self.hba(primary)?;
        self.append_settings(primary)?;
        self.spawn(&primary.id)?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_ready(&primary.id, left).await?;
        let conn = connect(primary, Duration::from_secs(5)).await?;
        let create = conn.client.batch_execute(
            // No standby streams yet: a synchronous commit would wait for one forever.
            "SET synchronous_commit = local; \
             CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v jsonb NOT NULL)",
        );
        tokio::time::timeout(Duration::from_secs(10), create)
            .await
            .context("creating the kv table took over 10 s")?
            .context("cannot create the kv table")?;
        drop(conn);
        for replica in &self.nodes[1..] {
            let dir = self.data_dir(&replica.id).to_string_lossy().into_owned();
            let port = primary.port.to_string();
            let ip = primary.host.ip.to_string();
            self.run_tool(
                replica,
                "pg_basebackup",
                &[
                    "-h",
                    &ip,
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-D",
                    &dir,
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                ],
            )
            .await?;
            self.append_settings(replica)?;
            self.spawn(&replica.id)?;
        }
        for replica in &self.nodes[1..] {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.wait_ready(&replica.id, left).await?;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_replicating(left).await
    }

    async fn teardown(&self) {
        // SIGTERM is PostgreSQL's "smart" shutdown, which waits for clients; go fast.
        for n in &self.nodes {
            if let Some(pid) = self.procs.pid(&n.id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
        }
        self.procs.stop_all(Duration::from_secs(5)).await;
    }

    fn client(&self, _process: u64) -> Box<dyn Client> {
        Box::new(PostgresClient::new(
            self.nodes
                .iter()
                .map(|n| (n.id.clone(), n.host.ip.to_string(), n.port))
                .collect(),
            self.config.isolation,
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
impl Kill for PostgresCluster {
    /// SIGKILL to the postmaster and every backend (its process group).
    async fn kill(&self, node: &str) -> anyhow::Result<()> {
        self.procs.kill(node).await
    }

    /// Starts the node on its data; it runs crash recovery (a replica then streams again).
    async fn restart(&self, node: &str) -> anyhow::Result<()> {
        if self.procs.is_running(node) {
            return Ok(());
        }
        self.spawn(node)?;
        self.wait_ready(node, Duration::from_secs(30)).await
    }
}

#[async_trait]
impl Pause for PostgresCluster {
    /// SIGSTOP to the postmaster and every backend.
    async fn pause(&self, node: &str) -> anyhow::Result<()> {
        self.procs.pause(node)
    }

    async fn resume(&self, node: &str) -> anyhow::Result<()> {
        self.procs.resume(node)
    }
}

#[async_trait]
impl Primary for PostgresCluster {
    /// The nodes that answer and are not in recovery.
    async fn primaries(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if let Ok(conn) = connect(n, Duration::from_millis(500)).await {
                let row = tokio::time::timeout(
                    Duration::from_millis(500),
                    conn.client.query_one("SELECT pg_is_in_recovery()", &[]),
                )
                .await;
                if let Ok(Ok(row)) = row
                    && !row.get::<_, bool>(0)
                {
                    out.push(n.id.clone());
                }
            }
        }
        out
    }
}

/// A connection, with the task that drives it (aborted when the connection is dropped).
#[derive(Debug)]
struct Conn {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(node: &PgNode, timeout: Duration) -> anyhow::Result<Conn> {
    connect_addr(&node.host.ip.to_string(), node.port, timeout).await
}

/// Connects as `postgres` to database `postgres`.
async fn connect_addr(host: &str, port: u16, timeout: Duration) -> anyhow::Result<Conn> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .application_name("splitbrain")
        .connect_timeout(timeout);
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| anyhow!("connect to {host}:{port} timed out"))??;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { client, task })
}

/// A PostgreSQL client for one logical process: one connection to the primary, one
/// transaction at a time.
#[derive(Debug)]
pub struct PostgresClient {
    /// `(name, host, port)` of every node, tried in order for the primary.
    nodes: Vec<(NodeId, String, u16)>,
    isolation: Isolation,
    /// The node connected to, and the connection.
    conn: Option<(usize, Conn)>,
}

/// How a call went wrong: `definite` when the server certainly applied nothing.
#[derive(Debug)]
struct Failure {
    message: String,
    definite: bool,
}

impl PostgresClient {
    pub fn new(nodes: Vec<(NodeId, String, u16)>, isolation: Isolation) -> PostgresClient {
        PostgresClient {
            nodes,
            isolation,
            conn: None,
        }
    }

    /// The connection to the primary, made if needed: the first node that answers and is
    /// not in recovery. Nothing of the call has been sent when this fails.
    async fn ensure_conn(&mut self, deadline: tokio::time::Instant) -> Result<usize, String> {
        if let Some((i, _)) = &self.conn {
            return Ok(*i);
        }
        let mut why = Vec::new();
        for (i, (id, host, port)) in self.nodes.iter().enumerate() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                why.push("out of time".to_string());
                break;
            }
            let conn = match connect_addr(host, *port, left.min(Duration::from_secs(2))).await {
                Ok(c) => c,
                Err(e) => {
                    why.push(format!("{id}: {e}"));
                    continue;
                }
            };
            let recovery = tokio::time::timeout_at(
                deadline,
                conn.client.query_one("SELECT pg_is_in_recovery()", &[]),
            )
            .await;
            match recovery {
                Ok(Ok(row)) if !row.get::<_, bool>(0) => {
                    self.conn = Some((i, conn));
                    return Ok(i);
                }
                Ok(Ok(_)) => why.push(format!("{id} is a replica")),
                Ok(Err(e)) => why.push(format!("{id}: {e}")),
                Err(_) => why.push(format!("{id}: timeout")),
            }
        }
        Err(format!("no primary to connect to ({})", why.join("; ")))
    }

    fn client(&self) -> &tokio_postgres::Client {
        &self.conn.as_ref().expect("connected").1.client
    }

    fn node(&self, i: usize) -> Option<&str> {
        self.nodes.get(i).map(|n| n.0.as_str())
    }

    async fn txn(&mut self, call: &Invocation, deadline: tokio::time::Instant) -> Completion {
        let mops = match txn_ops(call) {
            Ok(m) => m,
            Err(e) => return refuse(call, e),
        };
        let i = match self.ensure_conn(deadline).await {
            Ok(i) => i,
            Err(e) => return refuse(call, e),
        };
        let node = self.node(i).map(str::to_string);
        let node = node.as_deref();
        let begin = format!("BEGIN ISOLATION LEVEL {}", self.isolation.sql());
        let body = tokio::time::timeout_at(deadline, async {
            self.client().batch_execute(&begin).await?;
            let mut done = Vec::with_capacity(mops.len());
            for m in &mops {
                done.push(run_micro_op(self.client(), m).await?);
            }
            Ok::<_, tokio_postgres::Error>(done)
        })
        .await;
        // Until COMMIT is sent, every failure rolls the transaction back.
        let done = match body {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                let message = describe(&e);
                self.roll_back(deadline).await;
                return completion(OpType::Fail, call.value.clone(), node, Some(message));
            }
            Err(_) => {
                self.conn = None;
                return completion(
                    OpType::Fail,
                    call.value.clone(),
                    node,
                    Some("timeout before commit (rolled back)".into()),
                );
            }
        };
        let commit = tokio::time::timeout_at(deadline, self.client().batch_execute("COMMIT")).await;
        match commit
            .map_err(|_| timeout_failure())
            .and_then(|r| r.map_err(|e| failure(&e)))
        {
            Ok(()) => completion(OpType::Ok, Value::Txn(done), node, None),
            Err(f) => self.failed(call, node, f),
        }
    }

    /// Rolls back an aborted transaction so the connection can be reused, or drops it.
    async fn roll_back(&mut self, deadline: tokio::time::Instant) {
        let Some((_, conn)) = &self.conn else { return };
        let limit = deadline.max(tokio::time::Instant::now() + Duration::from_millis(200));
        let ok = matches!(
            tokio::time::timeout_at(limit, conn.client.batch_execute("ROLLBACK")).await,
            Ok(Ok(()))
        );
        if !ok {
            self.conn = None;
        }
    }

    /// Completes a call that may have changed data: `fail` when the server said no, `info`
    /// when the answer was lost (the connection is dropped then).
    fn failed(&mut self, call: &Invocation, node: Option<&str>, f: Failure) -> Completion {
        if f.definite {
            completion(OpType::Fail, call.value.clone(), node, Some(f.message))
        } else {
            self.conn = None;
            completion(OpType::Info, call.value.clone(), node, Some(f.message))
        }
    }

    async fn single(&mut self, call: &Invocation, deadline: tokio::time::Instant) -> Completion {
        let Some(key) = &call.key else {
            return refuse(call, format!("{} needs a key", call.f));
        };
        let k = key_text(key);
        let (sql, params): (&str, Vec<String>) = match (&call.f, &call.value) {
            (F::Read, _) => (READ_SQL, vec![k]),
            (F::Write, v @ Value::Int(_)) => (WRITE_SQL, vec![k, super::value_text(v)]),
            (F::Cas, v) => match v.as_cas() {
                Some((from, to)) => (
                    "UPDATE kv SET v = $3::text::jsonb WHERE k = $1 AND v = $2::text::jsonb RETURNING 1",
                    vec![k, from.to_string(), to.to_string()],
                ),
                None => return refuse(call, format!("cas needs [from to], got {v}")),
            },
            (f, v) => return refuse(call, format!("postgres cannot {f} {v}")),
        };
        let i = match self.ensure_conn(deadline).await {
            Ok(i) => i,
            Err(e) => return refuse(call, e),
        };
        let node = self.node(i).map(str::to_string);
        let node = node.as_deref();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let result = tokio::time::timeout_at(deadline, self.client().query(sql, &refs)).await;
        let rows = match result
            .map_err(|_| timeout_failure())
            .and_then(|r| r.map_err(|e| failure(&e)))
        {
            Ok(rows) => rows,
            Err(f) if call.f == F::Read => {
                if !f.definite {
                    self.conn = None;
                }
                return completion(OpType::Fail, Value::Nil, node, Some(f.message));
            }
            Err(f) => return self.failed(call, node, f),
        };
        match call.f {
            F::Read => completion(OpType::Ok, read_value(rows.first()), node, None),
            F::Cas if rows.is_empty() => completion(
                OpType::Fail,
                call.value.clone(),
                node,
                Some("the value differs".into()),
            ),
            _ => completion(OpType::Ok, call.value.clone(), node, None),
        }
    }
}

const READ_SQL: &str = "SELECT v::text FROM kv WHERE k = $1";
const WRITE_SQL: &str = "INSERT INTO kv (k, v) VALUES ($1, $2::text::jsonb) \
     ON CONFLICT (k) DO UPDATE SET v = excluded.v RETURNING 1";
const APPEND_SQL: &str = "INSERT INTO kv (k, v) VALUES ($1, jsonb_build_array($2::text::jsonb)) \
     ON CONFLICT (k) DO UPDATE SET v = kv.v || jsonb_build_array($2::text::jsonb)";

async fn run_micro_op(
    client: &tokio_postgres::Client,
    m: &MicroOp,
) -> Result<MicroOp, tokio_postgres::Error> {
    let k = key_text(&m.key);
    let value = match m.f {
        MicroF::Read => read_value(client.query(READ_SQL, &[&k]).await?.first()),
        MicroF::Write => {
            client
                .execute(WRITE_SQL, &[&k, &super::value_text(&m.value)])
                .await?;
            m.value.clone()
        }
        MicroF::Append => {
            client
                .execute(APPEND_SQL, &[&k, &super::value_text(&m.value)])
                .await?;
            m.value.clone()
        }
    };
    Ok(MicroOp {
        f: m.f,
        key: m.key.clone(),
        value,
    })
}

fn read_value(row: Option<&Row>) -> Value {
    row.and_then(|r| r.get::<_, Option<String>>(0))
        .map_or(Value::Nil, |t| super::parse_value_text(t.as_bytes()))
}

fn timeout_failure() -> Failure {
    Failure {
        message: "timeout".into(),
        definite: false,
    }
}

/// A server error answer means the statement (or COMMIT) did not take effect; a lost
/// connection means nobody knows.
fn failure(e: &tokio_postgres::Error) -> Failure {
    Failure {
        message: describe(e),
        definite: e
            .as_db_error()
            .is_some_and(|db| db_error_is_definite(db.code())),
    }
}

/// Errors that end a session (admin shutdown, crash of another backend) are reported as
/// server errors too, but the fate of an in-flight COMMIT is unknown with them.
fn db_error_is_definite(code: &SqlState) -> bool {
    let class = &code.code()[..2];
    !matches!(class, "57" | "58" | "XX" | "08")
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

#[async_trait]
impl Client for PostgresClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let deadline = tokio::time::Instant::now() + timeout;
        match call.f {
            F::Txn => self.txn(call, deadline).await,
            F::Read | F::Write | F::Cas => self.single(call, deadline).await,
            ref f => refuse(call, format!("the postgres client does not support {f}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_levels_parse_back_from_their_names() {
        for i in Isolation::ALL {
            assert_eq!(i.as_str().parse::<Isolation>(), Ok(i));
        }
        assert!(
            "snapshot"
                .parse::<Isolation>()
                .unwrap_err()
                .contains("repeatable-read")
        );
    }

    #[test]
    fn serialization_failures_are_definite_and_lost_sessions_are_not() {
        assert!(db_error_is_definite(&SqlState::T_R_SERIALIZATION_FAILURE));
        assert!(db_error_is_definite(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(db_error_is_definite(&SqlState::UNIQUE_VIOLATION));
        assert!(!db_error_is_definite(&SqlState::ADMIN_SHUTDOWN));
        assert!(!db_error_is_definite(&SqlState::CONNECTION_FAILURE));
    }

    #[test]
    fn sync_settings_name_the_first_replica_and_replicas_point_at_the_primary() {
        let nodes: Vec<PgNode> = [5432, 5433]
            .into_iter()
            .enumerate()
            .map(|(i, port)| PgNode {
                id: format!("n{}", i + 1),
                host: NodeHost::default(),
                port,
            })
            .collect();
        let primary = node_settings(&nodes, PgReplication::Sync, &nodes[0]);
        assert!(primary.contains("synchronous_standby_names = 'FIRST 1 (n2)'"));
        assert!(primary.contains("port = 5432"));
        assert!(!primary.contains("primary_conninfo"));
        let replica = node_settings(&nodes, PgReplication::Sync, &nodes[1]);
        assert!(replica.contains("port = 5433"));
        assert!(replica.contains(
            "primary_conninfo = 'host=127.0.0.1 port=5432 user=postgres application_name=n2'"
        ));
        let async_primary = node_settings(&nodes, PgReplication::Async, &nodes[0]);
        assert!(!async_primary.contains("synchronous_standby_names"));
    }
}

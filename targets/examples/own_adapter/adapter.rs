//! A worked example of an adapter: one `redis-server` used as a store of integer registers
//! (`read`, `write` and `cas` by key). [`OneRedis`] is the [`Db`]: it starts, kills, pauses,
//! restarts and tears down the server. [`RedisClient`] is the [`Client`]: it speaks to the
//! server through redis-rs and says `fail` only when a call certainly had no effect.

use std::io::{ErrorKind, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use histories::{F, Key, OpType, Value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, RedisConnectionInfo};
use targets::{Client, Completion, Db, Invocation, Kill, NodeId, Pause};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its log (`n1.log`), its data and the `pids` file go.
    pub dir: PathBuf,
    /// Keep an append-only file, written and fsynced before every reply: a killed server
    /// comes back with every write it acknowledged. Without it a kill loses them all.
    pub append_only: bool,
}

/// One `redis-server` on a free loopback port: a cluster of one node, `n1`.
#[derive(Debug)]
pub struct OneRedis {
    config: Config,
    port: u16,
    /// The running server. A std mutex, never held across an `.await`.
    server: Mutex<Option<Child>>,
}

const NODE: &str = "n1";

impl OneRedis {
    /// Chooses the port; nothing starts until [`Db::start`].
    pub fn new(config: Config) -> anyhow::Result<OneRedis> {
        // A free port below the kernel's ephemeral range, so no client connection of this
        // or another run takes it before the server binds it.
        let port = targets::ports::free_ports(Ipv4Addr::LOCALHOST.into(), 1)?[0];
        Ok(OneRedis {
            config,
            port,
            server: Mutex::new(None),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// Starts the server on its data and waits until it answers `PING`.
    async fn spawn(&self, timeout: Duration) -> anyhow::Result<()> {
        if self.server.lock().expect("lock").is_some() {
            bail!("{NODE} is already running");
        }
        let dir = &self.config.dir;
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("n1.log"))?;
        let aof = if self.config.append_only { "yes" } else { "no" };
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            // No snapshots: the append-only file, or nothing, is the data.
            .args(["--save", "", "--appendonly", aof, "--appendfsync", "always"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // The server must not outlive us: killed when its `Child` is dropped, and by the
            // kernel when this process dies, even by SIGKILL.
            .kill_on_drop(true);
        targets::process::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        // As the built-in adapters do: a record of what was started, kept in the run directory.
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("redis-server exited at once"))?;
        writeln!(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(dir.join("pids"))?,
            "{NODE} {pid}"
        )?;
        *self.server.lock().expect("lock") = Some(child);
        let deadline = Instant::now() + timeout;
        let mut probe = RedisClient::new(self.addr());
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "redis-server exited ({status}); see {}",
                    dir.join("n1.log").display()
                );
            }
            let probe_deadline = Instant::now() + Duration::from_millis(200);
            match probe.call(&redis::cmd("PING"), probe_deadline).await {
                Reply::Answer(_) => return Ok(()),
                _ if Instant::now() >= deadline => bail!("redis-server silent for {timeout:?}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn exited(&self) -> Option<ExitStatus> {
        let mut server = self.server.lock().expect("lock");
        server.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL, then waits until the server is gone, so that its port is free again.
    async fn stop(&self) -> anyhow::Result<()> {
        let taken = self.server.lock().expect("lock").take();
        let mut child = taken.ok_or_else(|| anyhow!("{NODE} is not running"))?;
        child.start_kill()?; // SIGKILL works on a stopped (paused) process too
        child.wait().await?;
        Ok(())
    }

    fn signal(&self, node: &str, signal: Signal) -> anyhow::Result<()> {
        one_node(node)?;
        let pid = self
            .server
            .lock()
            .expect("lock")
            .as_ref()
            .and_then(Child::id);
        let pid = pid.ok_or_else(|| anyhow!("{NODE} is not running"))?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }
}

fn one_node(node: &str) -> anyhow::Result<()> {
    if node != NODE {
        bail!("no node {node}; the only node is {NODE}");
    }
    Ok(())
}

#[async_trait]
impl Db for OneRedis {
    fn nodes(&self) -> Vec<NodeId> {
        vec![NODE.into()]
    }

    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        self.spawn(timeout).await
    }

    /// Idempotent: nothing to do when nothing runs.
    async fn teardown(&self) {
        let _ = self.stop().await;
    }

    fn client(&self, _process: u64) -> Box<dyn Client> {
        Box::new(RedisClient::new(self.addr()))
    }

    // The capabilities this target offers; a nemesis fault needing another (say `Primary`)
    // is refused before a run starts.
    fn kill(&self) -> Option<&dyn Kill> {
        Some(self)
    }

    fn pause(&self) -> Option<&dyn Pause> {
        Some(self)
    }
}

#[async_trait]
impl Kill for OneRedis {
    async fn kill(&self, node: &str) -> anyhow::Result<()> {
        one_node(node)?;
        self.stop().await
    }

    /// On the same port and data: with the append-only file, every acknowledged write is back.
    async fn restart(&self, node: &str) -> anyhow::Result<()> {
        one_node(node)?;
        self.spawn(Duration::from_secs(10)).await
    }
}

#[async_trait]
impl Pause for OneRedis {
    async fn pause(&self, node: &str) -> anyhow::Result<()> {
        self.signal(node, Signal::SIGSTOP)
    }

    async fn resume(&self, node: &str) -> anyhow::Result<()> {
        self.signal(node, Signal::SIGCONT)
    }
}

/// The client of one logical process: one connection, made on first use and again after
/// anything but a proper answer.
#[derive(Debug)]
pub struct RedisClient {
    addr: SocketAddr,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Conn {
    redis: MultiplexedConnection,
    /// redis-rs's task that reads and writes the socket.
    driver: tokio::task::JoinHandle<()>,
    /// The same socket, to look at while idle.
    socket: std::net::TcpStream,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What one command's exchange says about its effect.
#[derive(Debug)]
enum Reply {
    Answer(redis::Value),
    /// Certainly no effect: nothing was sent (no connection), or Redis answered with an
    /// error, which it does instead of running the command.
    NoEffect(String),
    /// Maybe an effect: sent, then no answer in time, or the connection broke.
    Unknown(String),
}

/// Compare-and-set in one step: Redis runs a script without running anything in between.
/// A script that fails halfway keeps what it wrote; this one writes last, so an error
/// reply still means "no effect".
const CAS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end";

impl RedisClient {
    pub fn new(addr: SocketAddr) -> RedisClient {
        RedisClient { addr, conn: None }
    }

    /// Sends `cmd` and waits for its answer until `deadline`.
    async fn call(&mut self, cmd: &Cmd, deadline: Instant) -> Reply {
        let redis = match self.connect(deadline).await {
            Ok(redis) => redis,
            Err(why) => return Reply::NoEffect(why),
        };
        let reply = match tokio::time::timeout_at(deadline, redis.send_packed_command(cmd)).await {
            Err(_) => Reply::Unknown("timeout".into()),
            Ok(Ok(redis::Value::ServerError(e))) => Reply::NoEffect(e.to_string()),
            Ok(Ok(answer)) => Reply::Answer(answer),
            // An error reply that redis-rs hands back as an error still carries its code.
            Ok(Err(e)) if e.code().is_some() => Reply::NoEffect(e.to_string()),
            Ok(Err(e)) => Reply::Unknown(format!("sent, no answer: {e}")),
        };
        if !matches!(reply, Reply::Answer(_)) {
            // A late answer must never be taken for the next command's.
            self.conn = None;
        }
        reply
    }

    /// The connection, made now if there is none. Making it sends nothing of the call (and
    /// with `skip_set_lib_name`, nothing at all), so an error here means "not sent".
    async fn connect(&mut self, deadline: Instant) -> Result<&mut MultiplexedConnection, String> {
        // A connection the server closed while idle (it was killed) would still take the
        // command, then fail: an `info` for a write that never left this process. Looking
        // first keeps that a `fail`.
        if let Some(c) = &self.conn {
            let idle_and_open =
                matches!(c.socket.peek(&mut [0]), Err(e) if e.kind() == ErrorKind::WouldBlock);
            if c.driver.is_finished() || !idle_and_open {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(self.addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            // Keep a handle on the socket (non-blocking, as tokio made it) to peek at above.
            let stream = stream.into_std().map_err(|e| e.to_string())?;
            let socket = stream.try_clone().map_err(|e| e.to_string())?;
            let stream = TcpStream::from_std(stream).map_err(|e| e.to_string())?;
            let info = RedisConnectionInfo::default().set_skip_set_lib_name();
            // Our deadline rules; redis-rs's own response timeout is off.
            let config = AsyncConnectionConfig::new().set_response_timeout(None);
            let setup = MultiplexedConnection::new_with_config(&info, stream, config);
            let (redis, driver) = tokio::time::timeout_at(deadline, setup)
                .await
                .map_err(|_| "connection setup timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            let driver = tokio::spawn(driver);
            self.conn = Some(Conn {
                redis,
                driver,
                socket,
            });
        }
        Ok(&mut self.conn.as_mut().expect("connected above").redis)
    }
}

#[async_trait]
impl Client for RedisClient {
    async fn invoke(&mut self, call: &Invocation, timeout: Duration) -> Completion {
        let done = |kind, value, error: Option<String>| Completion {
            kind,
            value,
            node: Some(NODE.into()),
            error,
        };
        let cmd = match command(call) {
            Ok(cmd) => cmd,
            Err(why) => return done(OpType::Fail, call.value.clone(), Some(why)),
        };
        let reply = self.call(&cmd, Instant::now() + timeout).await;
        match (&call.f, reply) {
            (F::Read, Reply::Answer(v)) => match redis::from_redis_value::<Option<i64>>(v) {
                Ok(v) => done(OpType::Ok, v.map_or(Value::Nil, Value::Int), None),
                Err(e) => done(OpType::Fail, Value::Nil, Some(e.to_string())),
            },
            (F::Cas, Reply::Answer(redis::Value::Int(0))) => done(
                OpType::Fail,
                call.value.clone(),
                Some("cas: the value differs".into()),
            ),
            // The acknowledgement: SET's `OK`, the script's 1.
            (_, Reply::Answer(_)) => done(OpType::Ok, call.value.clone(), None),
            (F::Read, Reply::NoEffect(why)) => done(OpType::Fail, Value::Nil, Some(why)),
            (_, Reply::NoEffect(why)) => done(OpType::Fail, call.value.clone(), Some(why)),
            // A read changes nothing: whatever happened to it, it failed.
            (F::Read, Reply::Unknown(why)) => done(OpType::Fail, Value::Nil, Some(why)),
            // The write may have been applied, or may be applied later: indeterminate.
            (_, Reply::Unknown(why)) => done(OpType::Info, call.value.clone(), Some(why)),
        }
    }
}

/// The Redis command for a call (keys and values as decimal text), or why there is none.
fn command(call: &Invocation) -> Result<Cmd, String> {
    let key = match &call.key {
        Some(Key::Int(k)) => k.to_string(),
        Some(Key::Str(k)) => k.clone(),
        None => return Err(format!("{} needs a key", call.f)),
    };
    let mut cmd = Cmd::new();
    match (&call.f, &call.value, call.value.as_cas()) {
        (F::Read, _, _) => cmd.arg("GET").arg(key),
        (F::Write, Value::Int(v), _) => cmd.arg("SET").arg(key).arg(*v),
        (F::Cas, _, Some((from, to))) => cmd.arg("EVAL").arg(CAS).arg(1).arg(key).arg(from).arg(to),
        (f, v, _) => return Err(format!("this client cannot {f} {v}")),
    };
    Ok(cmd)
}

//! The server processes of one adapter's cluster: each in its own process group, tied to
//! the controller's life, recorded in the run's `pids` file, and killed on drop. Signals go
//! to a server's whole family (its group and every descendant): PostgreSQL's backends and
//! WAL processes each call setsid(), so a group signal alone would miss them, and a paused
//! postmaster whose walreceiver still streams is no pause at all.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::process;

#[derive(Debug)]
struct Running {
    child: Child,
    pid: i32,
    paused: bool,
}

/// Named server processes (`n1`, `s2`, ...), at most one per name.
#[derive(Debug)]
pub(crate) struct Procs {
    dir: PathBuf,
    running: Mutex<HashMap<String, Running>>,
}

impl Procs {
    pub(crate) fn new(dir: &Path) -> Procs {
        Procs {
            dir: dir.to_path_buf(),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The file a process's stdout and stderr go to.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `cmd` as process `name`, its output appended to [`Procs::log_path`]. The caller
    /// waits for readiness in its own way.
    pub(crate) fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<i32> {
        Ok(self.spawn_inner(name, cmd, false)?.0)
    }

    /// Like [`Procs::spawn`], but stdin and stdout are pipes handed to the caller (only
    /// stderr goes to the log): for servers that talk over their standard streams.
    pub(crate) fn spawn_piped(
        &self,
        name: &str,
        cmd: Command,
    ) -> anyhow::Result<(i32, ChildStdin, ChildStdout)> {
        let (pid, stdin, stdout) = self.spawn_inner(name, cmd, true)?;
        match (stdin, stdout) {
            (Some(i), Some(o)) => Ok((pid, i, o)),
            _ => Err(anyhow!("{name} has no pipes")),
        }
    }

    fn spawn_inner(
        &self,
        name: &str,
        mut cmd: Command,
        piped: bool,
    ) -> anyhow::Result<(i32, Option<ChildStdin>, Option<ChildStdout>)> {
        if self.is_running(name) {
            return Err(anyhow!("{name} is already running"));
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let log_path = self.log_path(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            let log2 = log.try_clone().context("cannot duplicate a log handle")?;
            cmd.stdin(Stdio::null()).stdout(Stdio::from(log2));
        }
        cmd.stderr(Stdio::from(log))
            .kill_on_drop(true)
            .process_group(0);
        process::die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.as_std().get_program()))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| anyhow!("{name} exited at once"))?;
        record_pid(&self.dir, name, pid);
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        self.running.lock().expect("lock").insert(
            name.to_string(),
            Running {
                child,
                pid,
                paused: false,
            },
        );
        Ok((pid, stdin, stdout))
    }

    pub(crate) fn is_running(&self, name: &str) -> bool {
        self.running.lock().expect("lock").contains_key(name)
    }

    pub(crate) fn pid(&self, name: &str) -> Option<i32> {
        self.running.lock().expect("lock").get(name).map(|r| r.pid)
    }

    /// The exit status of `name` if it has exited on its own (it stays recorded until killed).
    pub(crate) fn exited(&self, name: &str) -> Option<std::process::ExitStatus> {
        let mut running = self.running.lock().expect("lock");
        running.get_mut(name)?.child.try_wait().ok().flatten()
    }

    fn signal(&self, name: &str, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        signal_family(&family(pid), signal);
        // The leader's own delivery is the one that must work.
        kill(Pid::from_raw(pid), signal).with_context(|| format!("cannot send {signal} to {name}"))
    }

    /// SIGKILL to the server and its family, then reaps it so its ports come free.
    pub(crate) async fn kill(&self, name: &str) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        let members = family(pid);
        signal_family(&members, Signal::SIGKILL);
        let proc = self.running.lock().expect("lock").remove(name);
        if let Some(mut proc) = proc {
            let _ = tokio::time::timeout(Duration::from_secs(5), proc.child.wait()).await;
        }
        // A restart must not meet the old workers (PostgreSQL refuses to start while they
        // hold its shared memory).
        wait_gone(&members, Duration::from_secs(5)).await;
        Ok(())
    }

    pub(crate) fn pause(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, Signal::SIGSTOP)?;
        if let Some(p) = self.running.lock().expect("lock").get_mut(name) {
            p.paused = true;
        }
        Ok(())
    }

    pub(crate) fn resume(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, Signal::SIGCONT)?;
        if let Some(p) = self.running.lock().expect("lock").get_mut(name) {
            p.paused = false;
        }
        Ok(())
    }

    /// Stops every process, all at once.
    pub(crate) async fn stop_all(&self, grace: Duration) {
        let procs: Vec<Running> = self
            .running
            .lock()
            .expect("lock")
            .drain()
            .map(|(_, r)| r)
            .collect();
        let stops: Vec<_> = procs
            .into_iter()
            .map(|p| tokio::spawn(stop_one(p, grace)))
            .collect();
        for s in stops {
            let _ = s.await;
        }
    }
}

async fn stop_one(mut proc: Running, grace: Duration) {
    let pid = Pid::from_raw(proc.pid);
    if proc.paused {
        signal_family(&family(proc.pid), Signal::SIGCONT);
    }
    let _ = kill(pid, Signal::SIGTERM);
    let mut members = family(proc.pid);
    if tokio::time::timeout(grace, proc.child.wait())
        .await
        .is_err()
    {
        members = family(proc.pid);
        signal_family(&members, Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), proc.child.wait()).await;
    }
    // The leader is gone; none of its workers may linger.
    signal_family(&members, Signal::SIGKILL);
    wait_gone(&members, Duration::from_secs(5)).await;
}

/// A process and everything it started that is still alive: its process group and all
/// its descendants (by parent pid), from one reading of `/proc`.
pub(crate) fn family(root: i32) -> Vec<i32> {
    let table = process_table();
    let mut members = vec![root];
    // Descendants by a bounded fixpoint: each round adds the children of known members.
    for _ in 0..64 {
        let before = members.len();
        for p in &table {
            if !members.contains(&p.pid) && (members.contains(&p.ppid) || p.pgrp == root) {
                members.push(p.pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    members
}

fn signal_family(members: &[i32], signal: Signal) {
    for &pid in members {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Waits (bounded) until none of `members` is alive. Zombies do not count: orphaned
/// workers are reparented to pid 1, which here need not reap them, and a zombie holds
/// neither ports nor shared memory.
async fn wait_gone(members: &[i32], limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let table = process_table();
        if !table.iter().any(|p| p.alive && members.contains(&p.pid)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug)]
struct ProcEntry {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    /// Not a zombie.
    alive: bool,
}

fn process_table() -> Vec<ProcEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            let pgrp = fields.next()?.parse().ok()?;
            Some(ProcEntry {
                pid,
                ppid,
                pgrp,
                alive: state != "Z" && state != "X",
            })
        })
        .collect()
}

impl Drop for Procs {
    fn drop(&mut self) {
        // kill_on_drop covers the leaders; their workers and paused ones need this.
        if let Ok(mut running) = self.running.lock() {
            for (_, proc) in running.drain() {
                let members = family(proc.pid);
                signal_family(&members, Signal::SIGKILL);
                signal_family(&members, Signal::SIGCONT);
            }
        }
    }
}

/// Appends `name pid` to the run's `pids` file before anything else can go wrong, so that a
/// controller killed with SIGKILL leaves a record of what to clean up. The pid is also the
/// process group id.
fn record_pid(dir: &Path, name: &str, pid: i32) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pids"))
    {
        let _ = writeln!(f, "{name} {pid}");
    }
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

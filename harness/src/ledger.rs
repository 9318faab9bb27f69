//! The run's ledger: everything a run creates outside its own memory (network namespaces,
//! links, filter tables, queueing disciplines, claimed subnets, temporary directories) is written to
//! `<run>/resources.jsonl` and flushed to disk *before* it is created, so that
//! `splitbrain clean` can remove what a controller killed with SIGKILL left behind. Node
//! processes are in `<run>/pids` (written by the cluster as it starts them) and are also
//! found by their command line, which names the run directory.
//!
//! A run that tears down normally ends its ledger with a `released` line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub const LEDGER_FILE: &str = "resources.jsonl";

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resource {
    /// The controller that owns the run; while it lives, `clean` leaves the run alone.
    Controller { pid: u32, start_ticks: u64 },
    /// A /24 of 10.77.0.0/16, claimed by the file `claim` (which names this run).
    Slot { slot: u8, claim: PathBuf },
    /// A network namespace (`ip netns`).
    Netns { name: String },
    /// A network interface in the root namespace (bridge or host end of a veth pair).
    Link { name: String },
    /// A packet-filter table or chain inside a namespace.
    Rules { netns: String, table: String },
    /// A root queueing discipline (the bandwidth fault's `tbf`) on interface `dev`, inside
    /// `netns` or, without one, in the root namespace. It goes with its interface, so
    /// removing the slot's namespaces and links removes it.
    Qdisc { netns: Option<String>, dev: String },
    /// A directory the run created outside its store directory.
    TempDir { path: PathBuf },
    /// Everything above was removed by the run itself.
    Released,
}

/// Appends resources to the run's ledger, each flushed and synced before it is returned.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Ledger {
    /// Creates `<run_dir>/resources.jsonl` and records this controller in it.
    pub fn create(run_dir: &Path) -> anyhow::Result<Ledger> {
        let path = run_dir.join(LEDGER_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let ledger = Ledger {
            path,
            file: Mutex::new(file),
        };
        let pid = std::process::id();
        ledger.record(&Resource::Controller {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        })?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `r` and syncs it to disk.
    pub fn record(&self, r: &Resource) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(r)?;
        line.push(b'\n');
        let mut f = self.file.lock().expect("ledger lock");
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The resources in a ledger file; a torn last line (controller killed mid-write) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Resource>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
/// with the pid, it names one process even after the pid is reused. `None` for a process
/// that does not exist or has exited (a zombie not yet reaped).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let mut fields = stat[stat.rfind(')')? + 2..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the process recorded as `(pid, start_ticks)` still runs.
pub fn alive(pid: u32, ticks: u64) -> bool {
    match start_ticks(pid) {
        Some(t) => ticks == 0 || t == ticks,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_on_disk_as_soon_as_recorded_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(dir.path()).unwrap();
        ledger
            .record(&Resource::Netns {
                name: "sb9-n1".into(),
            })
            .unwrap();
        let read_back = read(ledger.path()).unwrap();
        assert!(
            matches!(read_back[0], Resource::Controller { pid, .. } if pid == std::process::id())
        );
        assert_eq!(
            read_back[1],
            Resource::Netns {
                name: "sb9-n1".into()
            }
        );
        // A controller killed in the middle of a line leaves half of it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(ledger.path())
            .unwrap()
            .write_all(br#"{"kind":"link","na"#)
            .unwrap();
        assert_eq!(read(ledger.path()).unwrap().len(), 2);
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let ticks = start_ticks(me).unwrap();
        assert!(alive(me, ticks));
        assert!(!alive(me, ticks + 1));
        assert!(!alive(u32::MAX - 1, 0));
    }
}

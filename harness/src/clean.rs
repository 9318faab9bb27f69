//! `splitbrain clean [STORE]`: removes what runs whose controller died (SIGKILL, power loss)
//! left behind, from what their ledgers say: node processes, network namespaces, links and
//! the rules inside the namespaces, slot claims, temporary directories. Runs whose controller
//! still lives are left alone. Slots claimed in `/run/splitbrain` by dead controllers are
//! freed too, even when their store is gone.

use std::path::{Path, PathBuf};

use crate::fabric::netns;
use crate::ledger::{self, LEDGER_FILE, Resource};

/// What `clean` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// Run directories with a ledger.
    pub runs: usize,
    /// Run directories left alone because their controller is still running.
    pub live: Vec<PathBuf>,
    /// Runs that had something to clean.
    pub cleaned: Vec<PathBuf>,
    pub processes: Vec<i32>,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub claims: Vec<PathBuf>,
    pub temp_dirs: Vec<PathBuf>,
}

impl Cleaned {
    /// One line per thing removed, then a summary line.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for p in &self.live {
            out.push_str(&format!(
                "left alone (its controller is running): {}\n",
                p.display()
            ));
        }
        for p in &self.processes {
            out.push_str(&format!("killed process {p}\n"));
        }
        for n in &self.namespaces {
            out.push_str(&format!("removed network namespace {n}\n"));
        }
        for l in &self.links {
            out.push_str(&format!("removed link {l}\n"));
        }
        for c in &self.claims {
            out.push_str(&format!("released subnet claim {}\n", c.display()));
        }
        for d in &self.temp_dirs {
            out.push_str(&format!("removed directory {}\n", d.display()));
        }
        out.push_str(&format!(
            "clean: {} runs checked, {} cleaned, {} still running\n",
            self.runs,
            self.cleaned.len(),
            self.live.len()
        ));
        out
    }
}

/// `splitbrain clean STORE`: cleans and says what it removed; exit 0.
pub fn command(store: &Path) -> i32 {
    let cleaned = clean(store);
    print!("{}", cleaned.describe());
    crate::cli::exit::VALID
}

/// Cleans every run under `store` (`store/<test>/<run>/`), then orphaned slot claims.
pub fn clean(store: &Path) -> Cleaned {
    let mut out = Cleaned::default();
    for run_dir in run_dirs(store) {
        clean_run(&run_dir, &mut out);
    }
    clean_orphan_claims(&mut out);
    out
}

/// The run directories of a store: `store/<test>/<run>/` holding a ledger or a pids file.
/// Links (`latest`) are skipped so no run is seen twice.
pub fn run_dirs(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(tests) = std::fs::read_dir(store) else {
        return out;
    };
    for t in tests.flatten() {
        if !t.file_type().is_ok_and(|ft| ft.is_dir()) {
            continue;
        }
        let Ok(runs) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for r in runs.flatten() {
            if !r.file_type().is_ok_and(|ft| ft.is_dir()) {
                continue;
            }
            let p = r.path();
            if p.join(LEDGER_FILE).is_file() || p.join("pids").is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Cleans one run directory, unless its controller still runs or it released everything.
pub fn clean_run(run_dir: &Path, out: &mut Cleaned) {
    out.runs += 1;
    let resources = ledger::read(&run_dir.join(LEDGER_FILE)).unwrap_or_default();
    let controller = resources.iter().find_map(|r| match r {
        Resource::Controller { pid, start_ticks } => Some((*pid, *start_ticks)),
        _ => None,
    });
    if let Some((pid, ticks)) = controller
        && ledger::alive(pid, ticks)
    {
        out.live.push(run_dir.to_path_buf());
        return;
    }
    let before = (
        out.processes.len(),
        out.namespaces.len(),
        out.links.len(),
        out.claims.len(),
        out.temp_dirs.len(),
    );
    kill_run_processes(run_dir, out);
    if !resources.contains(&Resource::Released) {
        let canonical = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
        for r in &resources {
            match r {
                Resource::Slot { slot, claim } => {
                    // Only a claim that names this run: the slot may have been taken by
                    // another run when this one tried it.
                    let ours = netns::read_claim(claim).is_some_and(|c| c.run_dir == canonical);
                    if ours {
                        let removed = netns::remove_slot(*slot);
                        out.processes.extend(removed.processes);
                        out.namespaces.extend(removed.namespaces);
                        out.links.extend(removed.links);
                        if std::fs::remove_file(claim).is_ok() {
                            out.claims.push(claim.clone());
                        }
                    }
                }
                Resource::TempDir { path } if std::fs::remove_dir_all(path).is_ok() => {
                    out.temp_dirs.push(path.clone());
                }
                // Namespaces, links, rules and qdiscs are named by their slot and go with it.
                _ => {}
            }
        }
    }
    let after = (
        out.processes.len(),
        out.namespaces.len(),
        out.links.len(),
        out.claims.len(),
        out.temp_dirs.len(),
    );
    if before != after {
        out.cleaned.push(run_dir.to_path_buf());
    }
    if !resources.is_empty() && !resources.contains(&Resource::Released) {
        // Mark the run clean, so the next `clean` skips it quickly.
        if let Ok(l) = std::fs::OpenOptions::new()
            .append(true)
            .open(run_dir.join(LEDGER_FILE))
        {
            use std::io::Write as _;
            let mut l = l;
            let _ = l.write_all(b"{\"kind\":\"released\"}\n");
        }
    }
}

/// Kills the processes of a run: those in its `pids` file whose command line still names
/// the run directory or that work inside it (a pid may have been reused), and any other
/// process whose command line names it (started but not yet recorded when the controller
/// died).
fn kill_run_processes(run_dir: &Path, out: &mut Cleaned) {
    let needles = needles(run_dir);
    let mut recorded: Vec<i32> = Vec::new();
    if let Ok(text) = std::fs::read_to_string(run_dir.join("pids")) {
        recorded.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<i32>().ok()),
        );
    }
    let mut pids = recorded.clone();
    pids.extend(processes_mentioning(&needles));
    pids.sort_unstable();
    pids.dedup();
    let me = std::process::id() as i32;
    for pid in pids {
        // A recorded pid may since have been reused by an unrelated process.
        let ours =
            cmdline_mentions(pid, &needles) || (recorded.contains(&pid) && works_in(pid, &needles));
        if pid == me || !ours {
            continue;
        }
        let p = nix::unistd::Pid::from_raw(pid);
        if nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL).is_ok() {
            // A stopped (paused) process dies only once continued.
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGCONT);
            out.processes.push(pid);
        }
    }
}

/// The run directory as it may appear in a command line, followed by a `/` so that
/// `.../T` does not match `.../T-1`.
fn needles(run_dir: &Path) -> Vec<String> {
    let mut v = vec![format!("{}/", run_dir.display())];
    if let Ok(c) = std::fs::canonicalize(run_dir) {
        let c = format!("{}/", c.display());
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}

/// The command line of `pid`. Right after an exec the kernel may answer an empty one for a
/// moment; a process that has arguments (its stat says where they are: kernel threads and
/// zombies have none) is asked again, a bounded number of times.
fn cmdline(pid: i32) -> Option<String> {
    for _ in 0..20 {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !raw.is_empty() {
            return Some(String::from_utf8_lossy(&raw).replace('\0', " "));
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // Fields 3 (state), 48 (arg_start) and 49 (arg_end) of stat.
        let has_args = matches!(
            (fields.get(45), fields.get(46)),
            (Some(a), Some(b)) if a != b
        );
        if matches!(fields.first(), Some(&"Z" | &"X")) || !has_args {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    None
}

fn cmdline_mentions(pid: i32, needles: &[String]) -> bool {
    cmdline(pid).is_some_and(|c| needles.iter().any(|n| c.contains(n.as_str())))
}

/// Whether `pid` works inside the run directory. For recorded pids only: a server that
/// rewrites its command line (redis-server shows just `redis-server *:PORT`) still runs in
/// its data directory; a process found by scanning is not judged by this, since a user's
/// shell may well sit in a run directory.
fn works_in(pid: i32, needles: &[String]) -> bool {
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| {
        let cwd = format!("{}/", cwd.display());
        needles.iter().any(|n| cwd.starts_with(n.as_str()))
    })
}

fn processes_mentioning(needles: &[String]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| cmdline_mentions(*pid, needles))
        .collect()
}

/// Frees slots whose claiming controller is dead (their run directory may be gone).
fn clean_orphan_claims(out: &mut Cleaned) {
    for (slot, path, claim) in netns::claims() {
        let dead = match &claim {
            Some(c) => c.pid != std::process::id() && !ledger::alive(c.pid, c.start_ticks),
            // Unreadable: written by a controller killed between create and write.
            None => std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60)),
        };
        if !dead {
            continue;
        }
        if let Some(c) = &claim {
            kill_run_processes(&c.run_dir, out);
        }
        let removed = netns::remove_slot(slot);
        out.processes.extend(removed.processes);
        out.namespaces.extend(removed.namespaces);
        out.links.extend(removed.links);
        if std::fs::remove_file(&path).is_ok() {
            out.claims.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger whose controller (an impossible pid) is gone.
    fn ledger_of_a_dead_controller(run_dir: &Path) {
        std::fs::write(
            run_dir.join(LEDGER_FILE),
            "{\"kind\":\"controller\",\"pid\":4294967000,\"start_ticks\":1}\n",
        )
        .unwrap();
    }

    #[test]
    fn a_run_of_a_live_controller_is_left_alone_and_a_dead_ones_processes_are_killed() {
        let store = tempfile::tempdir().unwrap();
        let live = store.path().join("t/20260101T000000");
        std::fs::create_dir_all(&live).unwrap();
        // This test process plays the live controller.
        let _ledger = crate::ledger::Ledger::create(&live).unwrap();
        let dead = store.path().join("t/20260101T000001");
        std::fs::create_dir_all(&dead).unwrap();
        ledger_of_a_dead_controller(&dead);
        // A process the dead run left: its command line names the run directory (`read`
        // is a shell builtin, so no other process is involved).
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("read x")
            .arg(format!("{}/marker", dead.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = Cleaned::default();
        // Not `clean`, which would also sweep this machine's slot claims.
        for d in run_dirs(store.path()) {
            clean_run(&d, &mut out);
        }
        assert_eq!(out.runs, 2);
        assert_eq!(out.live, vec![live.clone()]);
        assert_eq!(out.processes, vec![child.id() as i32], "{out:?}");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the leftover process was killed");
        // The second time there is nothing left to do.
        let mut again = Cleaned::default();
        clean_run(&dead, &mut again);
        assert!(
            again.processes.is_empty() && again.cleaned.is_empty(),
            "{again:?}"
        );
        assert!(out.describe().contains("killed process"));
    }

    #[test]
    fn a_leftover_that_hides_its_command_line_is_known_by_its_working_directory() {
        let store = tempfile::tempdir().unwrap();
        let dead = store.path().join("t/20260101T000002");
        let data = dead.join("n1");
        std::fs::create_dir_all(&data).unwrap();
        ledger_of_a_dead_controller(&dead);
        // Nothing in its command line names the run, as with a redis-server that rewrote it.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("read x")
            .current_dir(&data)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(dead.join("pids"), format!("n1 {}\n", child.id())).unwrap();
        let mut out = Cleaned::default();
        clean_run(&dead, &mut out);
        assert_eq!(out.processes, vec![child.id() as i32], "{out:?}");
        assert!(!child.wait().unwrap().success(), "the leftover was killed");
    }
}

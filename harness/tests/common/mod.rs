//! Shared helpers for the end-to-end tests: real binaries, real processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

pub fn splitbrain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_splitbrain"))
}

/// The refnode binary beside splitbrain. `cargo test --workspace` builds it; when only this
/// crate's tests are built, build it here rather than fail for a reason unrelated to the test.
pub fn refnode() -> PathBuf {
    static BUILD: Once = Once::new();
    target_bin("refnode", &BUILD)
}

/// The example Maelstrom node beside splitbrain, built like [`refnode`].
pub fn maelstrom_example() -> PathBuf {
    static BUILD: Once = Once::new();
    target_bin("maelstrom-echo-broadcast", &BUILD)
}

fn target_bin(name: &str, build: &Once) -> PathBuf {
    let path = splitbrain().with_file_name(name);
    build.call_once(|| {
        if !path.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "targets", "--bin", name]);
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
            assert!(status.success(), "building {name} failed");
        }
    });
    assert!(path.is_file(), "{name} not found at {}", path.display());
    path
}

pub fn run_splitbrain(args: &[&str]) -> Output {
    Command::new(splitbrain())
        .args(args)
        .env("SPLITBRAIN_REFNODE", refnode())
        .output()
        .expect("cannot start splitbrain")
}

/// Pids of live processes whose command line mentions `needle` (e.g. a test's store path).
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().to_string();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        // Zombies have an empty cmdline; they are reaped and hold nothing.
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

pub fn results_json(store: &Path, test: &str) -> serde_json::Value {
    let path = store.join(test).join("latest").join("results.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("results.json is JSON")
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Timed runs take turns within a test binary: each is a three-node cluster under a timed
/// workload, and two at once on a small machine would measure the machine, not the design.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `splitbrain run ARGS --store <fresh dir>`, one at a time: returns the exit code and the
/// run's results.json, after asserting that nothing the run started is still running.
pub fn timed_run(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let store = tempfile::tempdir().unwrap();
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--store", store.path().to_str().unwrap(), "--quiet"]);
    let out = run_splitbrain(&all);
    let run = std::fs::read_dir(store.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("latest/results.json").is_file())
        .unwrap_or_else(|| panic!("no results.json: {}", describe(&out)));
    let text = std::fs::read_to_string(run.join("latest/results.json")).unwrap();
    assert_eq!(
        processes_mentioning(store.path()),
        vec![],
        "processes left behind"
    );
    (out.status.code(), serde_json::from_str(&text).unwrap())
}

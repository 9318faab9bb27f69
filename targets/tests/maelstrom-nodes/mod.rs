//! Maelstrom nodes written in other languages, as their authors write them, which the tests
//! run unchanged under the Maelstrom host: `echo.py` (Python), `echo.js` (JavaScript for
//! Node.js), `echo.rb` (Ruby) and `broadcast.go` (Go, standard library only: echo and
//! broadcast by gossip between nodes). The scripts run under their interpreter; the Go node
//! is built here. `ci/test.sh` installs python3, node, ruby and go; a missing one fails the
//! test rather than skipping it.
//!
//! Included by the tests of `targets` and of `harness` (`#[path]`), so it finds the sources
//! from either crate.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The path of a node source in this directory.
pub fn source(file: &str) -> PathBuf {
    // Both crates that include this module sit beside `targets` in the workspace.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../targets/tests/maelstrom-nodes")
        .join(file);
    assert!(path.is_file(), "no node source {}", path.display());
    path
}

/// A Go node built into a temporary directory that also holds the build's cache and Go's
/// home: dropping it leaves nothing behind.
pub struct GoNode {
    pub dir: tempfile::TempDir,
    pub binary: PathBuf,
}

/// Builds `file` (a `package main` with no dependencies outside the standard library) into
/// a binary called `name`, offline.
pub fn go_build(file: &str, name: &str) -> GoNode {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join(name);
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(source(file))
        .current_dir(dir.path())
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOPATH", dir.path().join("gopath"))
        // Whatever Go writes under its home or config directory goes into `dir` too.
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        // No network: never fetch another toolchain or a module.
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run go (ci/test.sh installs golang-go): {e}"));
    assert!(
        out.status.success(),
        "go build {file} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    GoNode { dir, binary }
}

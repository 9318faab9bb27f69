//! Debian packages some end-to-end tests need (nftables for the namespace fabric, chromium
//! for the report), installed with apt-get when missing. The test suite runs as root on a
//! fresh machine; elsewhere the tests that need them say they are skipped.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// `program` on the PATH.
pub fn find(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `program`, installing `package` first if it is missing and we are root. Serialised:
/// apt-get holds a lock, and tests run in parallel.
pub fn ensure(program: &str, package: &str) -> Option<PathBuf> {
    static APT: Mutex<()> = Mutex::new(());
    if let Some(p) = find(program) {
        return Some(p);
    }
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = find(program) {
        return Some(p);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("{program} is missing and installing {package} needs root");
        return None;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        install();
    }
    find(program)
}

//! Installing the Debian packages a real target needs, when they are missing. Tests and the
//! harness call [`ensure_package`] before starting a cluster, so a fresh machine needs no
//! setup step: the first call runs `apt-get update` once, then `apt-get install -y`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, bail};

/// Serializes installs within this process (tests run in parallel threads) and remembers
/// whether the package lists were already updated.
static APT: Mutex<bool> = Mutex::new(false);

/// Makes sure the Debian `package` is installed, judged by `present()` (usually "its binary
/// exists"); installs it with apt-get when not. Fails with apt-get's last lines when the
/// install does not make `present()` true.
pub fn ensure_package(package: &str, present: impl Fn() -> bool) -> anyhow::Result<()> {
    if present() {
        return Ok(());
    }
    let mut updated = APT.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return Ok(());
    }
    if !*updated {
        apt(&["update"])?;
        *updated = true;
    }
    apt(&["install", "-y", package])?;
    if !present() {
        bail!("apt-get installed {package}, but what it should provide is still missing");
    }
    Ok(())
}

/// The path of executable `name` on `PATH`, or `None`.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("apt-get")
        // Another apt (a parallel test binary, the lead's shell) may hold the lock briefly.
        .args(["-o", "DPkg::Lock::Timeout=600", "-q"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .context("cannot run apt-get (the real targets need Debian packages)")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            out.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

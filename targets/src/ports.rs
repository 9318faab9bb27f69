//! Free TCP ports for the servers and listeners the harness starts.
//!
//! A port picked by binding port 0 comes from the kernel's ephemeral range, the same range
//! every outgoing connection takes its local port from. Between picking such a port and the
//! server binding it, a client connection of another run (or of this one) can take it, and the
//! server then fails with "address already in use" (seen once in CI with two etcd runs side by
//! side). Ports below the ephemeral range are never handed out implicitly, so only another
//! explicit bind can collide; a random start makes that unlikely across concurrent runs.

use std::net::{IpAddr, TcpListener};

use anyhow::Context as _;

/// The lowest port handed out: above the well-known and most registered service ports.
const FLOOR: u16 = 20_000;

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `n` distinct TCP ports on `ip` that nothing listens on now, held bound until all are chosen.
/// They come from below the ephemeral range when it leaves room, else from the kernel (port 0).
pub fn free_ports(ip: IpAddr, n: usize) -> anyhow::Result<Vec<u16>> {
    let top = ephemeral_start();
    let span = top.saturating_sub(FLOOR);
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    if usize::from(span) >= n * 16 {
        let start = rand::random_range(0..span);
        for step in 0..span {
            if held.len() == n {
                break;
            }
            let port = FLOOR + (start + step) % span;
            if let Ok(l) = TcpListener::bind((ip, port)) {
                held.push(l);
            }
        }
    }
    while held.len() < n {
        held.push(
            TcpListener::bind((ip, 0))
                .with_context(|| format!("cannot find free ports on {ip}"))?,
        );
    }
    held.iter()
        .map(|l| Ok(l.local_addr().context("cannot read a bound port")?.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ports = free_ports(ip, 8).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "{ports:?}");
        for &p in &ports {
            assert!((FLOOR..ephemeral_start()).contains(&p), "{p}");
            // Released on return: a server can bind each.
            TcpListener::bind((ip, p)).unwrap();
        }
    }
}

//! Command-line flags of the `refnode` binary and their validation.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::node::{Failover, LogKind, NodeConfig, NodeId, Replication};

/// A reference replicated key-value node of splitbrain: single-leader replication (sync,
/// semi-sync, async or chain) with failover, as in Designing Data-Intensive Applications,
/// chapter 5.
///
/// Prints `ready <id> <listen-addr>` on stdout once it listens; logs go to --log-file.
#[derive(Debug, Parser)]
#[command(name = "refnode", version)]
struct Cli {
    /// This node's id; must appear in --peers.
    #[arg(long)]
    id: String,
    /// Address to listen on, for clients and peers alike.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Every node of the cluster, this one included: ID=ADDR,ID=ADDR,...
    #[arg(long, value_name = "ID=ADDR,...", value_delimiter = ',', value_parser = parse_peer, required = true)]
    peers: Vec<(NodeId, SocketAddr)>,
    /// Directory for the log, snapshot and metadata (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// File to append the node's log lines to.
    #[arg(long, value_name = "FILE")]
    log_file: PathBuf,
    /// When the leader acknowledges a write: after every follower has it (sync), after one
    /// synchronous follower has it (semi-sync), at once (async), or after it has passed
    /// down the chain of nodes in --peers order to the tail (chain; reads at the tail).
    #[arg(long, value_enum)]
    replication: Replication,
    /// How a follower takes over from a silent leader: the most up-to-date reachable
    /// follower promotes itself (naive; split brain possible), or a Raft-style majority
    /// election with majority commit and fencing of a cut-off leader (fenced).
    #[arg(long, value_enum, default_value_t = Failover::Naive)]
    failover: Failover,
    /// What the replication log ships for `exec` statements: the statement, which every
    /// replica evaluates again (statement), or the value it gave on the leader (logical).
    #[arg(long = "log", value_enum, default_value_t = LogKind::Logical)]
    log_kind: LogKind,
    /// The leader of epoch 1 when the data directories are fresh.
    #[arg(long, value_name = "ID")]
    initial_leader: String,
    /// Interval between the leader's heartbeats.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_ms: u64,
    /// Silence from the leader after which a follower fails over (plus up to 50% jitter).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    failover_timeout_ms: u64,
    /// How long a sync write waits for every follower before replying `timeout`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    sync_timeout_ms: u64,
    /// Start as a new member of a running cluster: with a fresh data directory, follow no
    /// one (never lead epoch 1 as --initial-leader would) until the leader is heard, then
    /// catch up from it by snapshot and log. Ignored when the directory holds data.
    #[arg(long)]
    join: bool,
    /// Compact the log into a snapshot once it holds more entries than this.
    #[arg(
        long,
        default_value_t = NodeConfig::COMPACT_AFTER_ENTRIES as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    compact_after_entries: u64,
    /// This node's wall clock runs this far from the real one (negative: behind); the
    /// `set-clock` request changes it at run time.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    clock_offset_ms: i64,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// Every node, this one included, in the order given.
    pub peers: Vec<(NodeId, SocketAddr)>,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    pub replication: Replication,
    pub failover: Failover,
    pub log_kind: LogKind,
    pub initial_leader: NodeId,
    pub heartbeat_ms: u64,
    pub failover_timeout_ms: u64,
    pub sync_timeout_ms: u64,
    pub clock_offset_ms: i64,
    pub join: bool,
    pub compact_after_entries: usize,
}

/// Why the flags did not produce a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// `--help` or `--version`: print this on stdout and exit 0.
    Info(String),
    /// Bad flags: print this one line on stderr and exit 254.
    Bad(String),
}

/// Parses and validates the command line (`args` includes the program name).
pub fn parse_args<I, T>(args: I) -> Result<Config, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ArgsError::Info(e.render().to_string())
        }
        _ => ArgsError::Bad(one_line(&e.render().to_string())),
    })?;
    validate(cli).map_err(ArgsError::Bad)
}

fn validate(cli: Cli) -> Result<Config, String> {
    let mut seen = std::collections::BTreeSet::new();
    for (id, _) in &cli.peers {
        if !seen.insert(id.as_str()) {
            return Err(format!("error: --peers names {id} twice"));
        }
    }
    if !seen.contains(cli.id.as_str()) {
        return Err(format!(
            "error: --peers must include this node (--id {})",
            cli.id
        ));
    }
    if !seen.contains(cli.initial_leader.as_str()) {
        return Err(format!(
            "error: --initial-leader {} is not in --peers",
            cli.initial_leader
        ));
    }
    if cli.clock_offset_ms.unsigned_abs() > super::node::MAX_CLOCK_OFFSET_MS {
        return Err(format!(
            "error: --clock-offset-ms {} is beyond +-{} ms",
            cli.clock_offset_ms,
            super::node::MAX_CLOCK_OFFSET_MS
        ));
    }
    if cli.failover_timeout_ms <= cli.heartbeat_ms {
        return Err(format!(
            "error: --failover-timeout-ms ({}) must exceed --heartbeat-ms ({}), or followers fail over between heartbeats",
            cli.failover_timeout_ms, cli.heartbeat_ms
        ));
    }
    Ok(Config {
        id: cli.id,
        listen: cli.listen,
        peers: cli.peers,
        data_dir: cli.data_dir,
        log_file: cli.log_file,
        replication: cli.replication,
        failover: cli.failover,
        log_kind: cli.log_kind,
        initial_leader: cli.initial_leader,
        heartbeat_ms: cli.heartbeat_ms,
        failover_timeout_ms: cli.failover_timeout_ms,
        sync_timeout_ms: cli.sync_timeout_ms,
        clock_offset_ms: cli.clock_offset_ms,
        join: cli.join,
        compact_after_entries: usize::try_from(cli.compact_after_entries).unwrap_or(usize::MAX),
    })
}

fn parse_peer(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR, got {s:?}"))?;
    if id.is_empty() {
        return Err(format!("empty node id in {s:?}"));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?} for {id}: {e}"))?;
    Ok((id.to_string(), addr))
}

/// Clap's message up to its first blank line, joined into one line (the usage and tips that
/// follow are for people at a terminal, not for the harness's log).
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid command line with the flags in `extra` added, replacing base flags of the
    /// same name (clap rejects a repeated flag).
    fn args(extra: &[&str]) -> Vec<String> {
        let base: &[(&str, &str)] = &[
            ("--id", "n1"),
            ("--listen", "127.0.0.1:7001"),
            ("--peers", "n1=127.0.0.1:7001,n2=127.0.0.1:7002"),
            ("--data-dir", "/tmp/d"),
            ("--log-file", "/tmp/l"),
            ("--replication", "sync"),
            ("--initial-leader", "n1"),
        ];
        let mut v = vec!["refnode".to_string()];
        for (flag, value) in base {
            if !extra.contains(flag) {
                v.push(flag.to_string());
                v.push(value.to_string());
            }
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    #[test]
    fn good_flags_give_a_config_with_defaults() {
        let c = parse_args(args(&[])).unwrap();
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.replication, Replication::Sync);
        assert_eq!(c.failover, Failover::Naive);
        let c = parse_args(args(&["--failover", "fenced"])).unwrap();
        assert_eq!(c.failover, Failover::Fenced);
        assert_eq!(c.log_kind, LogKind::Logical);
        let c = parse_args(args(&["--log", "statement"])).unwrap();
        assert_eq!(c.log_kind, LogKind::Statement);
        assert!(!c.join);
        assert_eq!(c.compact_after_entries, 10_000);
        let c = parse_args(args(&["--join", "--compact-after-entries", "5"])).unwrap();
        assert!(c.join);
        assert_eq!(c.compact_after_entries, 5);
        let c = parse_args(args(&["--clock-offset-ms", "-1500"])).unwrap();
        assert_eq!(c.clock_offset_ms, -1500);
        assert_eq!(
            (c.heartbeat_ms, c.failover_timeout_ms, c.sync_timeout_ms),
            (100, 1000, 1000)
        );
    }

    #[test]
    fn every_replication_mode_parses_by_its_name() {
        for mode in ["sync", "semi-sync", "async", "chain"] {
            let c = parse_args(args(&["--replication", mode])).unwrap();
            assert_eq!(c.replication.as_str(), mode);
        }
    }

    #[test]
    fn bad_flags_give_one_line() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "unexpected argument '--bogus'"),
            (&["--replication", "maybe"], "invalid value 'maybe'"),
            (&["--replication", "semisync"], "semi-sync"),
            (&["--heartbeat-ms", "0"], "--heartbeat-ms"),
            (&["--failover-timeout-ms", "50"], "must exceed"),
            (&["--initial-leader", "n9"], "not in --peers"),
            (&["--peers", "n2=127.0.0.1:1"], "must include this node"),
            (&["--peers", "n1=nowhere"], "bad address"),
            (&["--clock-offset-ms", "9e9"], "invalid value"),
            (&["--clock-offset-ms", "-999999999999999"], "is beyond"),
        ];
        for (extra, needle) in cases {
            match parse_args(args(extra)) {
                Err(ArgsError::Bad(line)) => {
                    assert!(!line.contains('\n'), "{line}");
                    assert!(line.contains(needle), "{extra:?}: {line}");
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        match parse_args(["refnode"]) {
            Err(ArgsError::Bad(line)) => assert!(line.contains("--id"), "{line}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_is_information_not_an_error() {
        assert!(matches!(
            parse_args(["refnode", "--help"]),
            Err(ArgsError::Info(text)) if text.contains("--failover-timeout-ms")
        ));
    }
}

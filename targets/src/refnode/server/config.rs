//! Command-line flags of the `refnode` binary and their validation.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::multi_leader::Topology;
use super::node::{Failover, LogKind, NodeConfig, NodeId, Replication};
use super::versions::Conflict;

/// A reference replicated key-value node of splitbrain: single-leader replication (sync,
/// semi-sync, async or chain) with failover, multi-leader replication over a topology with
/// conflict resolution, or leaderless (Dynamo-style) quorums, as in Designing Data-Intensive
/// Applications, chapter 5.
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
    /// Or no single leader: every node accepts writes and replicates them asynchronously
    /// (multi-leader), or every node coordinates quorum reads and writes (leaderless).
    #[arg(long, value_enum)]
    replication: ReplicationFlag,
    /// How a follower takes over from a silent leader: the most up-to-date reachable
    /// follower promotes itself (naive; split brain possible), or a Raft-style majority
    /// election with majority commit and fencing of a cut-off leader (fenced).
    #[arg(long, value_enum, default_value_t = Failover::Naive)]
    failover: Failover,
    /// What the replication log ships for `exec` statements: the statement, which every
    /// replica evaluates again (statement), or the value it gave on the leader (logical).
    #[arg(long = "log", value_enum, default_value_t = LogKind::Logical)]
    log_kind: LogKind,
    /// The leader of epoch 1 when the data directories are fresh (single-leader only).
    #[arg(long, value_name = "ID")]
    initial_leader: Option<String>,
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
    /// Multi-leader: which way changes travel between the leaders [default: all-to-all].
    #[arg(long, value_enum)]
    topology: Option<Topology>,
    /// Multi-leader and leaderless: how concurrent writes are resolved: applied in arrival
    /// order (none; multi-leader only), last write wins by the accepting node's clock (lww),
    /// the highest node id wins (highest-id), or all kept as siblings detected with version
    /// vectors (siblings) [default: lww].
    #[arg(long, value_enum)]
    conflict: Option<Conflict>,
    /// Multi-leader: each key is written at its home leader only (the first node of its
    /// consistent-hash preference list); others answer not-leader naming it.
    #[arg(long)]
    home_leader_routing: bool,
    /// Leaderless: replicas per key [default: 3, or the node count if smaller].
    #[arg(long = "n", value_name = "N")]
    replicas: Option<usize>,
    /// Leaderless: replicas that must store a write [default: a majority of N].
    #[arg(long = "w", value_name = "W")]
    write_quorum: Option<usize>,
    /// Leaderless: replicas that must answer a read [default: a majority of N].
    #[arg(long = "r", value_name = "R")]
    read_quorum: Option<usize>,
    /// Leaderless: repair stale replicas a read found [default: on].
    #[arg(long, value_enum)]
    read_repair: Option<Switch>,
    /// Leaderless: compare replicas in the background with Merkle trees [default: on].
    #[arg(long, value_enum)]
    anti_entropy: Option<Switch>,
    /// Leaderless: while home replicas are unreachable, use the next nodes of the ring and
    /// hand their copies off later [default: off].
    #[arg(long, value_enum)]
    sloppy_quorum: Option<Switch>,
    /// Leaderless: how long a coordinator waits for its quorum [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    quorum_timeout_ms: Option<u64>,
    /// Leaderless: interval between anti-entropy comparisons [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    anti_entropy_interval_ms: Option<u64>,
    /// Leaderless: interval between offers of hinted versions to their home [default: 500].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    handoff_interval_ms: Option<u64>,
}

/// The `--replication` values: the single-leader modes and the two other families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReplicationFlag {
    Sync,
    SemiSync,
    Async,
    Chain,
    MultiLeader,
    Leaderless,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Which family of replication design the node runs, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Design {
    /// `Config::replication`, `failover` and `log_kind` describe it.
    SingleLeader,
    MultiLeader(MultiLeaderFlags),
    Leaderless(LeaderlessFlags),
}

impl Design {
    pub fn as_str(&self) -> &'static str {
        match self {
            Design::SingleLeader => "single-leader",
            Design::MultiLeader(_) => "multi-leader",
            Design::Leaderless(_) => "leaderless",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiLeaderFlags {
    pub topology: Topology,
    pub conflict: Conflict,
    pub home_leader_routing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderlessFlags {
    pub n: usize,
    pub w: usize,
    pub r: usize,
    pub conflict: Conflict,
    pub read_repair: bool,
    pub anti_entropy: bool,
    pub sloppy_quorum: bool,
    pub quorum_timeout_ms: u64,
    pub anti_entropy_interval_ms: u64,
    pub handoff_interval_ms: u64,
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
    /// The single-leader mode; `Async` (unused) for the other designs.
    pub replication: Replication,
    pub design: Design,
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
    let design = design(&cli)?;
    let replication = match cli.replication {
        ReplicationFlag::Sync => Replication::Sync,
        ReplicationFlag::SemiSync => Replication::SemiSync,
        ReplicationFlag::Chain => Replication::Chain,
        ReplicationFlag::Async | ReplicationFlag::MultiLeader | ReplicationFlag::Leaderless => {
            Replication::Async
        }
    };
    let initial_leader = match (&cli.initial_leader, &design) {
        (Some(l), _) if !seen.contains(l.as_str()) => {
            return Err(format!("error: --initial-leader {l} is not in --peers"));
        }
        (Some(l), _) => l.clone(),
        (None, Design::SingleLeader) => {
            return Err(format!(
                "error: --initial-leader is required with --replication {}",
                replication.as_str()
            ));
        }
        // Unused by designs without a single leader.
        (None, _) => cli.id.clone(),
    };
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
        replication,
        design,
        failover: cli.failover,
        log_kind: cli.log_kind,
        initial_leader,
        heartbeat_ms: cli.heartbeat_ms,
        failover_timeout_ms: cli.failover_timeout_ms,
        sync_timeout_ms: cli.sync_timeout_ms,
        clock_offset_ms: cli.clock_offset_ms,
        join: cli.join,
        compact_after_entries: usize::try_from(cli.compact_after_entries).unwrap_or(usize::MAX),
    })
}

/// The design and its settings, refusing flags that belong to another design.
fn design(cli: &Cli) -> Result<Design, String> {
    let multi_only = [
        ("--topology", cli.topology.is_some()),
        ("--home-leader-routing", cli.home_leader_routing),
    ];
    let leaderless_only = [
        ("--n", cli.replicas.is_some()),
        ("--w", cli.write_quorum.is_some()),
        ("--r", cli.read_quorum.is_some()),
        ("--read-repair", cli.read_repair.is_some()),
        ("--anti-entropy", cli.anti_entropy.is_some()),
        ("--sloppy-quorum", cli.sloppy_quorum.is_some()),
        ("--quorum-timeout-ms", cli.quorum_timeout_ms.is_some()),
        (
            "--anti-entropy-interval-ms",
            cli.anti_entropy_interval_ms.is_some(),
        ),
        ("--handoff-interval-ms", cli.handoff_interval_ms.is_some()),
    ];
    let refuse = |flags: &[(&str, bool)], family: &str| match flags.iter().find(|(_, given)| *given)
    {
        Some((flag, _)) => Err(format!(
            "error: {flag} applies to --replication {family} only"
        )),
        None => Ok(()),
    };
    let conflict = cli.conflict.unwrap_or(Conflict::Lww);
    match cli.replication {
        ReplicationFlag::MultiLeader => {
            refuse(&leaderless_only, "leaderless")?;
            Ok(Design::MultiLeader(MultiLeaderFlags {
                topology: cli.topology.unwrap_or(Topology::AllToAll),
                conflict,
                home_leader_routing: cli.home_leader_routing,
            }))
        }
        ReplicationFlag::Leaderless => {
            refuse(&multi_only, "multi-leader")?;
            if conflict == Conflict::None {
                return Err(
                    "error: --conflict none applies to --replication multi-leader only; leaderless nodes merge every answer, so they need a rule"
                        .to_string(),
                );
            }
            let nodes = cli.peers.len();
            let n = cli.replicas.unwrap_or(nodes.min(3));
            if n == 0 || n > nodes {
                return Err(format!(
                    "error: --n {n} must be between 1 and the number of nodes ({nodes})"
                ));
            }
            let majority = n / 2 + 1;
            let (w, r) = (
                cli.write_quorum.unwrap_or(majority),
                cli.read_quorum.unwrap_or(majority),
            );
            for (flag, q) in [("--w", w), ("--r", r)] {
                if q == 0 || q > n {
                    return Err(format!("error: {flag} {q} must be between 1 and --n ({n})"));
                }
            }
            let on = |s: Option<Switch>, default: bool| s.map_or(default, |s| s == Switch::On);
            Ok(Design::Leaderless(LeaderlessFlags {
                n,
                w,
                r,
                conflict,
                read_repair: on(cli.read_repair, true),
                anti_entropy: on(cli.anti_entropy, true),
                sloppy_quorum: on(cli.sloppy_quorum, false),
                quorum_timeout_ms: cli.quorum_timeout_ms.unwrap_or(1000),
                anti_entropy_interval_ms: cli.anti_entropy_interval_ms.unwrap_or(1000),
                handoff_interval_ms: cli.handoff_interval_ms.unwrap_or(500),
            }))
        }
        _ => {
            refuse(&multi_only, "multi-leader")?;
            refuse(&leaderless_only, "leaderless")?;
            if cli.conflict.is_some() {
                return Err(
                    "error: --conflict applies to --replication multi-leader or leaderless only"
                        .to_string(),
                );
            }
            Ok(Design::SingleLeader)
        }
    }
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
        for design in ["multi-leader", "leaderless"] {
            let c = parse_args(args(&["--replication", design])).unwrap();
            assert_eq!(c.design.as_str(), design);
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
    fn multi_leader_and_leaderless_flags_parse_with_defaults() {
        let c = parse_args(args(&["--replication", "multi-leader"])).unwrap();
        assert_eq!(
            c.design,
            Design::MultiLeader(MultiLeaderFlags {
                topology: Topology::AllToAll,
                conflict: Conflict::Lww,
                home_leader_routing: false,
            })
        );
        let c = parse_args(args(&[
            "--replication",
            "multi-leader",
            "--topology",
            "circular",
            "--conflict",
            "siblings",
            "--home-leader-routing",
        ]))
        .unwrap();
        assert!(matches!(
            c.design,
            Design::MultiLeader(MultiLeaderFlags {
                topology: Topology::Circular,
                conflict: Conflict::Siblings,
                home_leader_routing: true,
            })
        ));
        let c = parse_args(args(&["--replication", "leaderless"])).unwrap();
        let Design::Leaderless(f) = c.design else {
            panic!("{:?}", c.design)
        };
        // Two nodes in the base flags: n defaults to 2, quorums to its majority.
        assert_eq!((f.n, f.w, f.r), (2, 2, 2));
        assert!(f.read_repair && f.anti_entropy && !f.sloppy_quorum);
        let c = parse_args(args(&[
            "--replication",
            "leaderless",
            "--n",
            "2",
            "--w",
            "1",
            "--r",
            "1",
            "--read-repair",
            "off",
            "--sloppy-quorum",
            "on",
            "--conflict",
            "highest-id",
        ]))
        .unwrap();
        let Design::Leaderless(f) = c.design else {
            panic!()
        };
        assert_eq!((f.n, f.w, f.r, f.conflict), (2, 1, 1, Conflict::HighestId));
        assert!(!f.read_repair && f.sloppy_quorum);
        // No initial leader needed without a single leader.
        let mut no_leader = args(&["--replication", "leaderless"]);
        let at = no_leader
            .iter()
            .position(|a| a == "--initial-leader")
            .unwrap();
        no_leader.drain(at..at + 2);
        assert!(parse_args(no_leader).is_ok());
        assert_eq!(parse_args(args(&[])).unwrap().design, Design::SingleLeader);
    }

    #[test]
    fn flags_of_another_design_are_refused() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--topology", "star"],
                "--topology applies to --replication multi-leader",
            ),
            (&["--conflict", "lww"], "--conflict applies"),
            (
                &["--replication", "multi-leader", "--w", "1"],
                "--w applies to --replication leaderless",
            ),
            (
                &["--replication", "leaderless", "--home-leader-routing"],
                "multi-leader only",
            ),
            (
                &["--replication", "leaderless", "--conflict", "none"],
                "--conflict none",
            ),
            (
                &["--replication", "leaderless", "--n", "3"],
                "--n 3 must be between 1 and the number of nodes (2)",
            ),
            (
                &["--replication", "leaderless", "--r", "3"],
                "--r 3 must be between 1 and --n (2)",
            ),
            (
                &["--replication", "leaderless", "--anti-entropy", "maybe"],
                "invalid value 'maybe'",
            ),
        ];
        for (extra, needle) in cases {
            match parse_args(args(extra)) {
                Err(ArgsError::Bad(line)) => assert!(line.contains(needle), "{extra:?}: {line}"),
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        let mut no_leader = args(&[]);
        let at = no_leader
            .iter()
            .position(|a| a == "--initial-leader")
            .unwrap();
        no_leader.drain(at..at + 2);
        match parse_args(no_leader) {
            Err(ArgsError::Bad(line)) => {
                assert!(line.contains("--initial-leader is required"), "{line}")
            }
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

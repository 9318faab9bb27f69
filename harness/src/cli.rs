//! The command line: flags and dispatch, nothing else.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use targets::ReadRouting;
use tokio::sync::watch;

use crate::check::{CheckConfig, CheckerKind};
use crate::fabric::grudge::Shape;
use crate::nemesis::NemesisSpec;
use crate::run::{Replication, RunConfig, Workload};
use crate::target::{MaelstromWorkload, Target, TargetOptions};
use targets::adapters::etcd::EtcdReads;
use targets::adapters::postgres::Isolation;

/// Exit codes, as Jepsen users expect them.
pub mod exit {
    pub const VALID: i32 = 0;
    pub const INVALID: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const BAD_INPUT: i32 = 254;
    pub const CRASH: i32 = 255;
}

#[derive(Debug, Parser)]
// A flag given twice takes its last value, so scripts can pass overrides after their defaults
// (`ci/demo.sh --time-limit 30`).
#[command(
    args_override_self = true,
    name = "splitbrain",
    version,
    about = "Fault injection and consistency checking for replicated systems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster, run a workload under faults, and check the history.
    Run(Box<RunArgs>),
    /// Check a recorded history file.
    Check(CheckArgs),
    /// Remove what runs whose controller died left behind: node processes, network
    /// namespaces and their rules, links, subnet claims.
    Clean(CleanArgs),
    /// Run a matrix of configurations × nemeses × seeds with expected verdicts.
    Campaign(crate::campaign::CampaignArgs),
    /// Serve a small web UI on loopback listing the stored runs and their reports.
    Serve(crate::serve::ServeArgs),
    /// Measure which isolation anomalies a real database allows at each isolation level
    /// (Hermitage's tests; PostgreSQL).
    Hermitage(crate::hermitage::HermitageArgs),
}

#[derive(Debug, Args)]
struct CleanArgs {
    /// The store whose runs to clean.
    #[arg(default_value = "store")]
    store: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The system under test: refnode (splitbrain's reference nodes), etcd, redis, postgres
    /// (Debian's servers, started under the run directory) or maelstrom (any program that
    /// speaks Maelstrom's node protocol, see --bin).
    #[arg(long, default_value = "refnode")]
    target: Target,
    /// postgres: the isolation level of every transaction: read-committed,
    /// repeatable-read or serializable (default).
    #[arg(long)]
    isolation: Option<Isolation>,
    /// etcd: reads (and read-only transactions) through the leader, linearizable (default),
    /// or from the member's own state, serializable (may be stale).
    #[arg(long)]
    reads: Option<EtcdReads>,
    /// etcd: test a cluster somebody else runs, given as host:port of each member's client
    /// URL, comma-separated. No process or network faults then.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    endpoints: Vec<String>,
    /// maelstrom: the node program, run once per node (default: maelstrom-echo-broadcast
    /// beside splitbrain).
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// maelstrom: the workload, as Maelstrom names it: echo, unique-ids, broadcast
    /// (default), g-set, g-counter, pn-counter, lin-kv, txn-list-append or txn-rw-register.
    #[arg(long, value_name = "NAME")]
    maelstrom_workload: Option<MaelstromWorkload>,
    /// list-append and rw-register: the consistency models to check for, with Elle's names,
    /// instead of what the target promises (postgres: read-committed, snapshot-isolation or
    /// serializable by --isolation; etcd: strict-serializable, serializable with
    /// --reads serializable). Asking for more than the promise shows what the database does
    /// not guarantee.
    #[arg(long, value_delimiter = ',', value_name = "MODEL,...")]
    consistency_models: Vec<checkers::txn::ConsistencyModel>,
    /// Number of nodes in the cluster (etcd members; Redis and PostgreSQL: the primary and
    /// its replicas; Maelstrom nodes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Replication design: single-leader sync (ack after all followers applied), semi-sync
    /// (ack after one synchronous follower), async (ack after the leader) or chain (ack by the
    /// tail); or multi-leader, or leaderless (quorums; see --n, --w, --r).
    #[arg(long, default_value = "sync")]
    replication: Replication,
    /// Leader failover: naive (most up-to-date reachable follower, no majority) or fenced
    /// (majority votes and commit, the old leader fenced).
    #[arg(long, default_value = "naive")]
    failover: crate::run::Failover,
    /// Workload the clients run: register (default), session, conflicts or set (refnode);
    /// register, session, list-append or rw-register (etcd, postgres); register, session or
    /// set (redis); Maelstrom's come from --maelstrom-workload.
    #[arg(long)]
    workload: Option<Workload>,
    /// Faults: none, or a comma list of kill, pause, partition, clock, member (or wipe), loss,
    /// delay, bandwidth.
    #[arg(long, default_value = "none")]
    nemesis: NemesisSpec,
    /// Seconds between the starts of two faults; each lasts half of it. With
    /// --nemesis-schedule random, the mean time between the starts.
    #[arg(long, default_value_t = 4.0, value_parser = positive_seconds)]
    nemesis_interval: f64,
    /// How faults follow each other: interval (a gap and a fault of half an interval each,
    /// one kind drawn at random each time) or random (kinds, durations and the gaps before
    /// them drawn from the seed, each duration and gap between a tenth and nine tenths of the
    /// interval).
    #[arg(long, default_value = "interval")]
    nemesis_schedule: crate::nemesis::Schedule,
    /// Seconds at the start of the run before the fault schedule begins: no fault in them.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_seconds)]
    quiet_period: f64,
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    concurrency: u16,
    /// Seconds of workload (faults stop a little before the end to let the cluster recover).
    #[arg(long, default_value_t = 20.0, value_parser = positive_seconds)]
    time_limit: f64,
    /// Target invocations per second over all clients.
    #[arg(long, default_value_t = 200.0, value_parser = positive_seconds)]
    rate: f64,
    /// Seed for the generator and the nemesis schedule (random when omitted; always printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory where runs are stored.
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// Where clients send reads: leader; any (each read to the next node in turn); sticky
    /// (always the client's own replica); ryw (the client's replica if it has applied the
    /// client's last write, else another that has, the leader last).
    #[arg(long, default_value = "leader")]
    read_routing: ReadRouting,
    /// Milliseconds a client waits for an answer before recording the call as indeterminate.
    #[arg(long, default_value_t = 1500)]
    op_timeout_ms: u64,
    /// The refnode executable (default: beside splitbrain).
    #[arg(long, env = "SPLITBRAIN_REFNODE")]
    refnode_bin: Option<PathBuf>,
    /// Seconds the checker may run before answering unknown.
    #[arg(long, default_value_t = 120.0, value_parser = positive_seconds)]
    check_time_limit: f64,
    /// Network fabric: auto (direct without network faults, else netns when root, else
    /// proxy), netns (a namespace per node, kernel drop rules), proxy (userspace TCP proxy on
    /// every link) or direct (loopback, no network faults).
    #[arg(long, default_value = "auto")]
    net: crate::fabric::NetMode,
    /// Shapes the partition fault picks from: a comma list of halves, random-halves, one,
    /// majorities-ring, bridge, primaries (these six are the default), minority (a random
    /// minority cut off), majority (a random smallest majority cut off), grudge (the cut
    /// --grudge spells out; the default when --grudge is given).
    #[arg(long, value_parser = crate::nemesis::parse_shapes)]
    partition_shapes: Option<std::vec::Vec<crate::fabric::grudge::Shape>>,
    /// The cut of the grudge partition shape: components of nodes that cannot talk to each
    /// other, like "n1,n2|n3" (nodes not named keep talking to everyone), or one-way cuts like
    /// "n1>n2" (what n1 sends, n2 drops); several clauses separated by ";" add up.
    #[arg(long, value_name = "SPEC")]
    grudge: Option<crate::fabric::grudge::GrudgeSpec>,
    /// Share of packets the loss fault drops, in percent.
    #[arg(long, default_value_t = 20.0, value_parser = percent)]
    loss_percent: f64,
    /// Milliseconds the delay fault adds to each direction of a link.
    #[arg(long, default_value_t = 100)]
    delay_ms: u64,
    /// Random variation of the delay, +/- milliseconds.
    #[arg(long, default_value_t = 50)]
    jitter_ms: u64,
    /// What the bandwidth fault leaves to and from its nodes, in kilobits per second each way.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    bandwidth_kbit: u64,
    /// No live progress line (it is only drawn when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
    /// Single-leader designs: what the replication log carries, logical (the values) or
    /// statement (the statement text, evaluated again by every replica).
    #[arg(long, default_value = "logical")]
    log: crate::run::LogKind,
    /// Checkers to run instead of the workload's defaults, a comma list (see `check
    /// --checker`; `session` stands for the five session guarantees).
    #[arg(long, value_parser = crate::check::parse_checkers)]
    checkers: Option<std::vec::Vec<crate::check::CheckerKind>>,
    /// Seconds the cluster gets after the workload before the final reads of every key at
    /// every node (session and set workloads).
    #[arg(long, default_value_t = 2.0, value_parser = non_negative_seconds)]
    settle: f64,
    /// Multi-leader: how changes travel between the leaders.
    #[arg(long, default_value = "all-to-all", value_parser = ["circular", "star", "all-to-all"])]
    topology: String,
    /// Multi-leader and leaderless: how concurrent writes of a key are resolved: lww
    /// (last write wins by the writer's clock), highest-id (the highest node id wins),
    /// siblings (keep them all, detected with version vectors) or none.
    #[arg(long, default_value = "lww", value_parser = ["none", "lww", "highest-id", "siblings"])]
    conflict: String,
    /// Multi-leader: write each key only at its home leader (conflict avoidance).
    #[arg(long)]
    home_leader_routing: bool,
    /// Leaderless: replicas per key.
    #[arg(long, default_value_t = 3)]
    n: usize,
    /// Leaderless: write quorum.
    #[arg(long, default_value_t = 2)]
    w: usize,
    /// Leaderless: read quorum.
    #[arg(long, default_value_t = 2)]
    r: usize,
    /// Leaderless: repair stale replicas seen by a read.
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    read_repair: bool,
    /// Leaderless: compare replicas in the background (Merkle trees) and copy what differs.
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    anti_entropy: bool,
    /// Leaderless: when home replicas are unreachable, write to other nodes with a hint and
    /// hand the write off after heal.
    #[arg(long, default_value = "off", value_parser = on_off, action = clap::ArgAction::Set)]
    sloppy_quorum: bool,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("expected on or off, found {s:?}")),
    }
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a percentage, found {s:?}"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("expected a percentage from 0 to 100, found {s}"))
    }
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Checkers to run, a comma list: linearizable; list-append, rw-register (Elle-style
    /// transactions); read-your-writes, monotonic-reads, monotonic-writes,
    /// writes-follow-reads, consistent-prefix (or `session` for all five), lost-writes
    /// (versioned registers); lost-writes-siblings, convergence, staleness, siblings,
    /// set-add-wins (replicated registers and sets); echo, unique-ids, broadcast, counter
    /// (Maelstrom workloads).
    #[arg(long, default_value = "linearizable", value_parser = crate::check::parse_checkers)]
    checker: std::vec::Vec<CheckerKind>,
    /// Model for the linearizable checker: register, cas-register, multi-register, kv, set,
    /// queue or mutex.
    #[arg(long, default_value = "cas-register")]
    model: checkers::linearizable::ModelKind,
    /// History format: jsonl, edn, porcupine-etcd or porcupine-kv (detected when omitted).
    #[arg(long)]
    format: Option<histories::Format>,
    /// Seconds the checker may run before answering unknown.
    #[arg(long, default_value_t = 300.0, value_parser = positive_seconds)]
    time_limit: f64,
    /// Most memory the checker may use, e.g. 512M or 4G (default: a quarter of the machine's
    /// memory); beyond it the verdict is unknown, never an out-of-memory kill.
    #[arg(long, value_name = "BYTES", value_parser = byte_size)]
    memory_limit: Option<u64>,
    /// Linearizable: check all keys as one object instead of splitting by key (same verdict;
    /// to measure what the split buys).
    #[arg(long)]
    no_partition: bool,
    /// Transactional checkers: comma-separated consistency models the history must satisfy,
    /// with Elle's names (default strict-serializable).
    #[arg(long, value_delimiter = ',', value_name = "MODEL,...")]
    consistency_models: Vec<checkers::txn::ConsistencyModel>,
    /// Write the counterexample as a self-contained HTML page with a timeline per failing key.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Transactional checkers: write each explained dependency cycle into DIR as DOT, and as
    /// SVG when graphviz is installed.
    #[arg(long, value_name = "DIR")]
    graphs: Option<PathBuf>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
    /// The history file.
    file: PathBuf,
}

/// `1048576`, `512K`, `64M`, `4G` (powers of 1024).
fn byte_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("expected a size like 512M or 4G, found {s:?}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size like 512M or 4G, found {s:?}"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("expected a positive size below 16E, found {s:?}"))
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a number, found {s:?}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!(
            "expected a number of seconds, 0 or more, found {s}"
        ))
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a number, found {s:?}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a positive number, found {s}"))
    }
}

/// Parses the arguments and runs the command; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return exit::VALID;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return exit::BAD_INPUT;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "splitbrain: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return exit::BAD_INPUT;
        }
    };
    match cli.command {
        Command::Run(args) => run_command(*args),
        Command::Check(args) => check_command(args),
        Command::Clean(args) => crate::clean::command(&args.store),
        Command::Campaign(args) => crate::campaign::command(args),
        Command::Serve(args) => crate::serve::command(args),
        Command::Hermitage(args) => crate::hermitage::command(args),
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}

fn run_command(args: RunArgs) -> i32 {
    let target = match target_options(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("splitbrain: {e}");
            return exit::BAD_INPUT;
        }
    };
    let refnode_bin = match args.refnode_bin.clone().or_else(refnode_beside_us) {
        Some(p) => p,
        None if !target.is_refnode() => PathBuf::new(),
        None => {
            eprintln!(
                "splitbrain: cannot find the refnode executable beside splitbrain; build it with `cargo build --release --workspace` or pass --refnode-bin PATH"
            );
            return exit::BAD_INPUT;
        }
    };
    let workload = match target.target {
        Target::Maelstrom => target
            .maelstrom_workload
            .shared_workload()
            .unwrap_or(Workload::Register),
        _ => args.workload.unwrap_or(Workload::Register),
    };
    let seed = args.seed.unwrap_or_else(random_seed);
    // Giving a grudge means partitioning by it, unless the shapes say otherwise.
    let partition_shapes = match args.partition_shapes {
        Some(shapes) => shapes,
        None if args.grudge.is_some() => vec![Shape::Grudge],
        None => Shape::ALL.to_vec(),
    };
    let node_names: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
    if let Err(e) = crate::nemesis::check_grudge(
        &args.nemesis,
        &partition_shapes,
        args.grudge.as_ref(),
        &node_names,
    ) {
        eprintln!("splitbrain: {e}");
        return exit::BAD_INPUT;
    }
    let config = RunConfig {
        nodes: usize::from(args.nodes),
        replication: args.replication,
        failover: args.failover,
        workload,
        nemesis: args.nemesis,
        nemesis_interval: Duration::from_secs_f64(args.nemesis_interval),
        nemesis_schedule: args.nemesis_schedule,
        quiet_period: Duration::from_secs_f64(args.quiet_period),
        concurrency: usize::from(args.concurrency),
        time_limit: Duration::from_secs_f64(args.time_limit),
        rate: args.rate,
        seed,
        store: args.store,
        read_routing: args.read_routing,
        op_timeout: Duration::from_millis(args.op_timeout_ms.max(1)),
        refnode_bin,
        check_time_limit: Duration::from_secs_f64(args.check_time_limit),
        net: args.net,
        partition_shapes,
        grudge: args.grudge,
        loss_percent: args.loss_percent,
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        bandwidth_kbit: args.bandwidth_kbit,
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        log: args.log,
        checkers: args.checkers,
        settle: Duration::from_secs_f64(args.settle),
        design: crate::run::DesignOptions {
            topology: args.topology,
            conflict: args.conflict,
            home_leader_routing: args.home_leader_routing,
            n: args.n,
            w: args.w,
            r: args.r,
            read_repair: args.read_repair,
            anti_entropy: args.anti_entropy,
            sloppy_quorum: args.sloppy_quorum,
        },
        target,
    };
    if let Err(e) = config.validate() {
        eprintln!("splitbrain: {e}");
        return exit::BAD_INPUT;
    }
    let rt = runtime();
    rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(stop_on_signals(stop_tx));
        match crate::run::run(config, stop_rx).await {
            Ok(results) => {
                print!("{}", crate::report::summary(&results));
                results.valid.exit_code()
            }
            Err(e) => {
                eprintln!("splitbrain: {}", one_line(&e));
                exit::BAD_INPUT
            }
        }
    })
}

/// The target and its options from the flags; a flag meant for another target is a
/// mistake worth one line, not something to ignore.
fn target_options(args: &RunArgs) -> Result<TargetOptions, String> {
    let t = args.target;
    let only = |given: bool, flag: &str, owner: Target| {
        if given && t != owner {
            Err(format!(
                "{flag} applies to --target {} only, not {}",
                owner.as_str(),
                t.as_str()
            ))
        } else {
            Ok(())
        }
    };
    only(args.isolation.is_some(), "--isolation", Target::Postgres)?;
    only(args.reads.is_some(), "--reads", Target::Etcd)?;
    only(!args.endpoints.is_empty(), "--endpoints", Target::Etcd)?;
    only(args.bin.is_some(), "--bin", Target::Maelstrom)?;
    only(
        args.maelstrom_workload.is_some(),
        "--maelstrom-workload",
        Target::Maelstrom,
    )?;
    if t == Target::Maelstrom && args.workload.is_some() {
        return Err(
            "--target maelstrom takes its workload from --maelstrom-workload NAME, not --workload"
                .into(),
        );
    }
    let bin = match (t, &args.bin) {
        (Target::Maelstrom, Some(bin)) => bin.clone(),
        (Target::Maelstrom, None) => beside_us(MAELSTROM_EXAMPLE).ok_or_else(|| {
            format!(
                "cannot find {MAELSTROM_EXAMPLE} beside splitbrain; build it with `cargo build --release --workspace` or pass --bin PATH"
            )
        })?,
        _ => PathBuf::new(),
    };
    Ok(TargetOptions {
        target: t,
        isolation: args.isolation.unwrap_or_default(),
        reads: args.reads.unwrap_or_default(),
        endpoints: args.endpoints.clone(),
        bin,
        maelstrom_workload: args.maelstrom_workload.unwrap_or_default(),
        consistency_models: args.consistency_models.clone(),
    })
}

/// The example Maelstrom node the workspace builds, the default `--bin`.
const MAELSTROM_EXAMPLE: &str = "maelstrom-echo-broadcast";

/// Ctrl-C or SIGTERM ask the run to stop early; it still heals, tears down and checks.
pub(crate) async fn stop_on_signals(stop: watch::Sender<bool>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("splitbrain: stopping: healing faults and stopping the cluster");
    let _ = stop.send(true);
}

fn check_command(args: CheckArgs) -> i32 {
    let loaded = match histories::read_any(&args.file, args.format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("splitbrain: {e}");
            return exit::BAD_INPUT;
        }
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let config = CheckConfig {
        checkers: args.checker.clone(),
        model: args.model,
        time_limit: Duration::from_secs_f64(args.time_limit),
        memory_limit_bytes: args.memory_limit,
        no_partition: args.no_partition,
        consistency_models: args.consistency_models.clone(),
    };
    let rt = runtime();
    let verdicts = rt.block_on(crate::check::run_checkers(&loaded.history, &config));
    let valid = verdicts
        .values()
        .fold(checkers::Validity::True, |acc, v| acc.merge(v.valid));
    // A closed stdout (`| head`) ends the printing quietly, as with other Unix tools.
    let printed = if args.json {
        match serde_json::to_string_pretty(&verdicts) {
            Ok(text) => writeln!(std::io::stdout(), "{text}"),
            Err(e) => {
                eprintln!("splitbrain: cannot print the verdict: {e}");
                return exit::CRASH;
            }
        }
    } else {
        print_verdicts(&verdicts)
    };
    if let Err(e) = printed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("splitbrain: cannot print the verdict: {e}");
        return exit::CRASH;
    }
    if let Some(dir) = &args.graphs {
        for v in verdicts.values() {
            match crate::cycle_graphs::write(v, dir) {
                Ok((files, warnings)) => {
                    for w in warnings {
                        eprintln!("warning: {w}");
                    }
                    if !files.is_empty() {
                        eprintln!(
                            "splitbrain: {} cycle graph files written to {}",
                            files.len(),
                            dir.display()
                        );
                    }
                }
                Err(e) => {
                    eprintln!("splitbrain: cannot write into {}: {e}", dir.display());
                    return exit::BAD_INPUT;
                }
            }
        }
    }
    if let Some(path) = &args.html {
        let title = format!("{}: {}", args.file.display(), valid);
        let mut sections = Vec::new();
        for v in verdicts.values() {
            let timelines = crate::timeline::from_linearizable(&v.details);
            if timelines.is_empty() {
                let mut text = vec![format!("{}: {} ({})", v.checker, v.valid, v.summary)];
                text.extend(v.explanation.iter().cloned());
                sections.push((text, crate::timeline::Timeline::empty()));
            } else {
                sections.extend(timelines);
            }
        }
        if let Err(e) = std::fs::write(path, crate::timeline::render_page(&title, &sections)) {
            eprintln!("splitbrain: cannot write {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
        eprintln!("splitbrain: counterexample written to {}", path.display());
    }
    valid.exit_code()
}

fn print_verdicts(
    verdicts: &std::collections::BTreeMap<String, checkers::Verdict>,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for v in verdicts.values() {
        writeln!(out, "{}: {} ({})", v.checker, v.valid, v.summary)?;
        for line in &v.explanation {
            writeln!(out, "  {line}")?;
        }
    }
    out.flush()
}

fn one_line(e: &anyhow::Error) -> String {
    // The chain is joined into one line; a cause with several lines (log tails) keeps them.
    format!("{e:#}")
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// `refnode` in the directory of this executable, or its parent (test binaries live in
/// `target/<profile>/deps`, the binaries one level up).
pub(crate) fn refnode_beside_us() -> Option<PathBuf> {
    beside_us("refnode")
}

/// The executable `name` in the directory of this executable, or its parent.
fn beside_us(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir, dir.parent().unwrap_or(Path::new("/nonexistent"))]
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

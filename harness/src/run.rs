//! `splitbrain run`: start a cluster, drive clients and the nemesis against it, record the
//! history, check it, and store everything under the run's directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use checkers::{Validity, Verdict};
use histories::{F, History, Key, OpType, Process, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use targets::refnode::cluster::{RefnodeClient, RefnodeCluster, RefnodeConfig};
use targets::{Db, Invocation, ReadRouting};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::check::{self, CheckConfig, CheckerKind};
use crate::fabric::grudge::Shape;
use crate::fabric::{Fabric, NetMode, NetNeeds};
use crate::generator::{
    ConflictsWorkload, RegisterConfig, RegisterWorkload, RollingKeys, SessionConfig,
    SessionWorkload, SetWorkload, Shared, Source, TxnConfig, TxnKind, TxnWorkload,
};
use crate::ledger::{Ledger, Resource};
use crate::nemesis::{self, NemesisConfig, NemesisSpec};
use crate::recorder::{Event, Recorder};
use crate::store;
use crate::target::TargetOptions;

/// `as_str` and `FromStr` for an enum of flag values, from one list of names (the kebab-case
/// names serde also writes into `results.json`).
macro_rules! flag_values {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<$ty, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of {}",
                        $what,
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    };
}

flag_values!(Replication, "replication", {
    Sync => "sync",
    SemiSync => "semi-sync",
    Async => "async",
    Chain => "chain",
    MultiLeader => "multi-leader",
    Leaderless => "leaderless",
});
flag_values!(Failover, "failover", { Naive => "naive", Fenced => "fenced" });
flag_values!(Workload, "workload", {
    Register => "register",
    Session => "session",
    Conflicts => "conflicts",
    Set => "set",
    ListAppend => "list-append",
    RwRegister => "rw-register",
});
flag_values!(LogKind, "log", { Logical => "logical", Statement => "statement" });

/// Replication mode of the refnode cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replication {
    /// The leader acknowledges a write once every follower has applied it.
    Sync,
    /// The leader acknowledges a write once it has applied it; followers catch up later.
    Async,
    /// The leader acknowledges once one synchronous follower has it; the others are async.
    SemiSync,
    /// Writes flow down a chain of nodes and are acknowledged by the tail, which serves reads.
    Chain,
    /// Every node is a leader for the writes it receives and replicates them asynchronously
    /// to the others over a topology; conflicts are resolved as `--conflict` says.
    MultiLeader,
    /// Dynamo-style: n replicas per key, write and read quorums w and r.
    Leaderless,
}

impl Replication {
    /// Whether one leader orders every write (the designs with failover and read routing).
    pub fn single_leader(self) -> bool {
        !matches!(self, Replication::MultiLeader | Replication::Leaderless)
    }
}

/// How the refnode cluster replaces a silent leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failover {
    /// The most up-to-date reachable follower promotes itself, no majority: split brain and
    /// lost writes are possible (DDIA's warning).
    Naive,
    /// Raft-style terms, majority votes and commit, and fencing of a leader without a majority.
    Fenced,
}

/// The workload the clients run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// read / write / cas on integer registers by key, checked for linearizability.
    Register,
    /// One writer per key writing 1, 2, 3, ...; everybody reads; on refnode, a few `exec`
    /// statements (`set now()`, `set rand()`) on keys of their own. Checked for
    /// linearizability, the session guarantees, lost writes, staleness and (refnode, whose
    /// nodes are read one by one at the end) convergence of the replicas.
    Session,
    /// Every client writes unique values to the same few keys and reads them: concurrent
    /// writes meet, and the design's conflict resolution shows (multi-leader, leaderless).
    Conflicts,
    /// Adds, removals and reads of a set per key (multi-leader, leaderless).
    Set,
    /// Elle-style transactions appending unique values to lists and reading them whole
    /// (etcd, PostgreSQL), checked for the consistency model the target promises.
    ListAppend,
    /// Elle-style transactions writing unique values to registers and reading them.
    RwRegister,
}

impl Workload {
    /// The checkers a run of this workload uses unless `--checkers` says otherwise.
    pub fn default_checkers(self) -> Vec<CheckerKind> {
        match self {
            Workload::Register => vec![CheckerKind::Linearizable],
            Workload::Session => {
                let mut all = vec![
                    CheckerKind::Linearizable,
                    CheckerKind::LostWrites,
                    CheckerKind::Convergence,
                    CheckerKind::Staleness,
                ];
                all.extend(CheckerKind::SESSION);
                all.sort();
                all
            }
            Workload::Conflicts => vec![
                CheckerKind::LostWritesSiblings,
                CheckerKind::Convergence,
                CheckerKind::Staleness,
                CheckerKind::Siblings,
            ],
            Workload::Set => vec![CheckerKind::Convergence, CheckerKind::SetAddWins],
            Workload::ListAppend => vec![CheckerKind::ListAppend],
            Workload::RwRegister => vec![CheckerKind::RwRegister],
        }
    }
}

/// What the single-leader designs replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogKind {
    /// The values a write produced (row-based).
    Logical,
    /// The statement text, evaluated again by every replica (`now()`, `rand()` diverge).
    Statement,
}

/// The options of the multi-leader and leaderless designs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DesignOptions {
    /// Multi-leader: circular, star or all-to-all.
    pub topology: String,
    /// none, lww, highest-id or siblings.
    pub conflict: String,
    /// Multi-leader: write each key at its home leader only.
    pub home_leader_routing: bool,
    /// Leaderless: replicas per key and quorums.
    pub n: usize,
    pub w: usize,
    pub r: usize,
    pub read_repair: bool,
    pub anti_entropy: bool,
    pub sloppy_quorum: bool,
}

impl Default for DesignOptions {
    fn default() -> Self {
        let d = RefnodeConfig::default();
        DesignOptions {
            topology: d.topology,
            conflict: d.conflict,
            home_leader_routing: d.home_leader_routing,
            n: d.n,
            w: d.w,
            r: d.r,
            read_repair: d.read_repair,
            anti_entropy: d.anti_entropy,
            sloppy_quorum: d.sloppy_quorum,
        }
    }
}

/// Everything a run needs; the seed makes the generator and the nemesis schedule repeatable.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub nodes: usize,
    pub replication: Replication,
    pub failover: Failover,
    pub workload: Workload,
    pub nemesis: NemesisSpec,
    pub nemesis_interval: Duration,
    pub nemesis_schedule: nemesis::Schedule,
    /// No fault starts this long after the run began.
    pub quiet_period: Duration,
    pub concurrency: usize,
    pub time_limit: Duration,
    /// Target rate of invocations per second, over all clients.
    pub rate: f64,
    pub seed: u64,
    pub store: PathBuf,
    pub read_routing: ReadRouting,
    pub op_timeout: Duration,
    pub refnode_bin: PathBuf,
    pub check_time_limit: Duration,
    /// Which network fabric carries the cluster's traffic.
    pub net: NetMode,
    /// Shapes the partition fault picks from.
    pub partition_shapes: Vec<Shape>,
    /// The cut of the `grudge` shape.
    pub grudge: Option<crate::fabric::grudge::GrudgeSpec>,
    /// Share of packets the loss fault drops, in percent.
    pub loss_percent: f64,
    /// What the delay fault adds to each direction of a link: `delay_ms ± jitter_ms`.
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// What the bandwidth fault leaves each way, in kilobits per second.
    pub bandwidth_kbit: u64,
    /// Draw the live progress line on stderr.
    pub progress: bool,
    /// Single-leader designs: what the replication log carries.
    pub log: LogKind,
    /// Multi-leader and leaderless designs: topology, conflicts, quorums.
    pub design: DesignOptions,
    /// The checkers to run; `None`: the workload's defaults.
    pub checkers: Option<Vec<CheckerKind>>,
    /// How long the cluster gets, after the workload and the last fault, before the final
    /// reads of every key at every node.
    pub settle: Duration,
    /// The system under test and its options (refnode unless `--target` says otherwise).
    pub target: TargetOptions,
}

impl RunConfig {
    /// A configuration with the CLI's defaults for everything but the essentials.
    pub fn new(refnode_bin: PathBuf, store: PathBuf, seed: u64) -> RunConfig {
        RunConfig {
            nodes: 3,
            replication: Replication::Sync,
            failover: Failover::Naive,
            workload: Workload::Register,
            nemesis: NemesisSpec::default(),
            nemesis_interval: Duration::from_secs(4),
            nemesis_schedule: nemesis::Schedule::Interval,
            quiet_period: Duration::ZERO,
            concurrency: 5,
            time_limit: Duration::from_secs(20),
            rate: 200.0,
            seed,
            store,
            read_routing: ReadRouting::Leader,
            op_timeout: Duration::from_millis(1500),
            refnode_bin,
            check_time_limit: Duration::from_secs(120),
            net: NetMode::Auto,
            partition_shapes: Shape::ALL.to_vec(),
            grudge: None,
            loss_percent: 20.0,
            delay_ms: 100,
            jitter_ms: 50,
            bandwidth_kbit: 1000,
            progress: false,
            log: LogKind::Logical,
            design: DesignOptions::default(),
            checkers: None,
            settle: Duration::from_secs(2),
            target: TargetOptions::default(),
        }
    }

    /// Combinations the flags allow but the cluster cannot run.
    pub fn validate(&self) -> Result<(), String> {
        self.target.validate(self.workload, &self.nemesis)?;
        if !self.target.is_refnode() {
            return Ok(());
        }
        let d = &self.design;
        if self.replication == Replication::Leaderless {
            if d.n == 0 || d.n > self.nodes {
                return Err(format!(
                    "--n {} must be between 1 and the number of nodes ({})",
                    d.n, self.nodes
                ));
            }
            if d.w == 0 || d.w > d.n || d.r == 0 || d.r > d.n {
                return Err(format!(
                    "--w {} and --r {} must be between 1 and --n {}",
                    d.w, d.r, d.n
                ));
            }
        }
        if self.workload == Workload::Register && !self.replication.single_leader() {
            return Err(format!(
                "the register workload's cas needs a single leader; use --workload session, conflicts or set with --replication {}",
                self.replication.as_str()
            ));
        }
        if matches!(self.workload, Workload::Conflicts | Workload::Set)
            && self.replication.single_leader()
        {
            return Err(format!(
                "the {} workload is for --replication multi-leader or leaderless (a single leader orders every write; use --workload session)",
                self.workload.as_str()
            ));
        }
        Ok(())
    }

    /// The checkers this run uses.
    pub fn checker_kinds(&self) -> Vec<CheckerKind> {
        self.checkers
            .clone()
            .unwrap_or_else(|| self.target.default_checkers(self.workload))
    }
}

impl RunConfig {
    pub fn test_name(&self) -> String {
        if !self.target.is_refnode() {
            return self.target.test_name(self.workload, &self.nemesis);
        }
        format!(
            "refnode-{}-{}{}-{}",
            self.workload.as_str(),
            self.replication.as_str(),
            match self.failover {
                Failover::Naive => "",
                Failover::Fenced => "-fenced",
            },
            self.nemesis.name()
        )
    }

    /// The command that repeats this run.
    pub fn command(&self) -> String {
        if !self.target.is_refnode() {
            return self.adapter_command();
        }
        let mut extra = String::new();
        if self.net != NetMode::Auto {
            extra.push_str(&format!(" --net {}", self.net.as_str()));
        }
        if self.partition_shapes != Shape::ALL.to_vec() {
            let shapes: Vec<&str> = self.partition_shapes.iter().map(|s| s.as_str()).collect();
            extra.push_str(&format!(" --partition-shapes {}", shapes.join(",")));
        }
        if let Some(g) = &self.grudge {
            // Its characters are names, `,|>;` and spaces: single quotes keep them whole.
            extra.push_str(&format!(" --grudge '{}'", g.as_str()));
        }
        if self.nemesis_schedule != nemesis::Schedule::Interval {
            extra.push_str(&format!(
                " --nemesis-schedule {}",
                self.nemesis_schedule.as_str()
            ));
        }
        if !self.quiet_period.is_zero() {
            extra.push_str(&format!(
                " --quiet-period {}",
                self.quiet_period.as_secs_f64()
            ));
        }
        let needs = self.nemesis.net_needs();
        if needs.loss {
            extra.push_str(&format!(" --loss-percent {}", self.loss_percent));
        }
        if needs.delay {
            extra.push_str(&format!(
                " --delay-ms {} --jitter-ms {}",
                self.delay_ms, self.jitter_ms
            ));
        }
        if needs.bandwidth {
            extra.push_str(&format!(" --bandwidth-kbit {}", self.bandwidth_kbit));
        }
        if self.log != LogKind::Logical {
            extra.push_str(&format!(" --log {}", self.log.as_str()));
        }
        if let Some(kinds) = &self.checkers {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            extra.push_str(&format!(" --checkers {}", names.join(",")));
        }
        if self.settle != Duration::from_secs(2) {
            extra.push_str(&format!(" --settle {}", self.settle.as_secs_f64()));
        }
        let d = &self.design;
        let switch = |on: bool| if on { "on" } else { "off" };
        match self.replication {
            Replication::MultiLeader => {
                extra.push_str(&format!(
                    " --topology {} --conflict {}",
                    d.topology, d.conflict
                ));
                if d.home_leader_routing {
                    extra.push_str(" --home-leader-routing");
                }
            }
            Replication::Leaderless => extra.push_str(&format!(
                " --conflict {} --n {} --w {} --r {} --read-repair {} --anti-entropy {} --sloppy-quorum {}",
                d.conflict,
                d.n,
                d.w,
                d.r,
                switch(d.read_repair),
                switch(d.anti_entropy),
                switch(d.sloppy_quorum)
            )),
            _ => {}
        }
        let base = format!(
            "splitbrain run --nodes {} --replication {} --failover {} --workload {} --nemesis {} --nemesis-interval {} --concurrency {} --time-limit {} --rate {} --read-routing {} --seed {} --store {}",
            self.nodes,
            self.replication.as_str(),
            self.failover.as_str(),
            self.workload.as_str(),
            self.nemesis.flag(),
            self.nemesis_interval.as_secs_f64(),
            self.concurrency,
            self.time_limit.as_secs_f64(),
            self.rate,
            self.read_routing.as_str(),
            self.seed,
            self.store.display()
        );
        base + &extra
    }

    /// The repeat command of a run against an adapter: the target's flags and the ones
    /// every run has.
    fn adapter_command(&self) -> String {
        let mut out = format!("splitbrain run {}", self.target.flags());
        if !self.target.external() {
            out.push_str(&format!(" --nodes {}", self.nodes));
        }
        if self.target.target != crate::target::Target::Maelstrom {
            out.push_str(&format!(" --workload {}", self.workload.as_str()));
        }
        out.push_str(&format!(
            " --nemesis {} --nemesis-interval {} --concurrency {} --time-limit {} --rate {} --op-timeout-ms {} --seed {} --store {}",
            self.nemesis.flag(),
            self.nemesis_interval.as_secs_f64(),
            self.concurrency,
            self.time_limit.as_secs_f64(),
            self.rate,
            self.op_timeout.as_millis(),
            self.seed,
            self.store.display()
        ));
        if self.net != NetMode::Auto {
            out.push_str(&format!(" --net {}", self.net.as_str()));
        }
        if self.nemesis.net_needs().partition && self.partition_shapes != Shape::ALL.to_vec() {
            let shapes: Vec<&str> = self.partition_shapes.iter().map(|s| s.as_str()).collect();
            out.push_str(&format!(" --partition-shapes {}", shapes.join(",")));
        }
        if self.nemesis.net_needs().loss {
            out.push_str(&format!(" --loss-percent {}", self.loss_percent));
        }
        if let Some(kinds) = &self.checkers {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            out.push_str(&format!(" --checkers {}", names.join(",")));
        }
        if self.settle != Duration::from_secs(2) {
            out.push_str(&format!(" --settle {}", self.settle.as_secs_f64()));
        }
        out
    }

    /// Faults stop this long before the end, so the cluster can recover under load and a
    /// lost write shows up in the reads that follow.
    fn recovery(&self) -> Duration {
        (self.time_limit / 4).min(Duration::from_secs(5))
    }
}

/// What `results.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub test: String,
    pub valid: Validity,
    pub seed: u64,
    pub command: String,
    pub store: PathBuf,
    pub interrupted: bool,
    pub config: ConfigSummary,
    pub checker: std::collections::BTreeMap<String, Verdict>,
    pub stats: checkers::stats::Stats,
    pub faults_injected: usize,
    pub warnings: Vec<String>,
    /// Maelstrom targets: the network statistics of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_stats: Option<crate::target::NetSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub target: &'static str,
    pub nodes: usize,
    pub replication: Replication,
    pub failover: Failover,
    pub workload: Workload,
    pub nemesis: String,
    pub nemesis_interval_s: f64,
    pub concurrency: usize,
    pub time_limit_s: f64,
    pub rate: f64,
    pub read_routing: &'static str,
    pub op_timeout_ms: u64,
    pub log: LogKind,
    /// Multi-leader and leaderless only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub design: Option<DesignOptions>,
    /// The fabric the run used (`direct`, `proxy` or `netns`) and why.
    pub net: &'static str,
    pub net_why: String,
    /// Adapters: the target's options and the models the transactional checkers checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_options: Option<crate::target::TargetSummary>,
}

/// Runs the test end to end and writes its store directory. Errors are setup failures (the
/// cluster could not start, the store is not writable, a fault the target lacks); a bad
/// verdict is not an error.
pub async fn run(config: RunConfig, mut stop: watch::Receiver<bool>) -> anyhow::Result<Results> {
    // Refused before anything is created: no run directory for a run that cannot be.
    let net = config
        .target
        .net_mode(config.net, config.nemesis.net_needs())
        .map_err(anyhow::Error::msg)?;
    let dir = store::create_run_dir(&config.store, &config.test_name())?;
    eprintln!(
        "splitbrain: test {} · seed {} · store {}",
        config.test_name(),
        config.seed,
        dir.display()
    );
    let ledger = Arc::new(Ledger::create(&dir)?);
    let node_names = config.target.node_names(config.nodes);
    // Declared before the cluster, so that on unwinding the cluster's processes die first
    // and the fabric (namespaces, proxies) goes after them.
    // A Maelstrom cluster's faults are its host's router's (swapped in below), so the
    // fabric built here is `direct` and needs nothing.
    let fabric_needs = if config.target.target == crate::target::Target::Maelstrom {
        NetNeeds::default()
    } else {
        config.nemesis.net_needs()
    };
    let fabric = Fabric::build(
        net,
        fabric_needs,
        &node_names,
        Arc::clone(&ledger),
        &dir,
        config.seed,
    )
    .await?;
    let fabric = match fabric.namespaces() {
        Some(ns) if net != config.net => {
            let why = format!(
                "{} cannot sit behind the userspace proxy, so each node runs in its own namespace; subnet {} on bridge {}",
                config.target.target.as_str(),
                ns.subnet(),
                ns.bridge()
            );
            fabric.because(why)
        }
        _ => fabric,
    };
    let (db, cluster, maelstrom) = if config.target.is_refnode() {
        let cluster = refnode_cluster(&config, &fabric, &dir)?;
        let db: Arc<dyn Db> = Arc::new(FabricDb {
            cluster: Arc::clone(&cluster),
            client_addrs: fabric.client_addrs(),
            read_routing: config.read_routing,
            writes_at_own_node: !config.replication.single_leader(),
        });
        (db, Some(cluster), None)
    } else {
        let adapter = crate::target::build(&config, &fabric, &dir)?;
        (adapter.db, None, adapter.maelstrom)
    };
    let fabric = match &maelstrom {
        Some(host) => Fabric::maelstrom(Arc::clone(host), &node_names),
        None => fabric,
    };
    eprintln!("splitbrain: network: {} ({})", fabric.kind(), fabric.why());
    if let Err(refused) = config
        .nemesis
        .check_capabilities(db.as_ref(), &config.partition_shapes)
    {
        // Nothing has started; what the fabric made goes with it, and the run directory,
        // which would hold only an empty ledger, goes too.
        drop((db, cluster, maelstrom));
        fabric.teardown();
        let _ = ledger.record(&Resource::Released);
        drop(ledger);
        store::discard_run_dir(&config.store, &config.test_name(), &dir);
        return Err(anyhow::Error::msg(refused));
    }
    let started = tokio::select! {
        r = db.start(config.target.start_timeout()) => r,
        _ = stop.wait_for(|s| *s) => Err(anyhow::anyhow!("interrupted while the cluster was starting")),
    };
    if let Err(e) = started {
        db.teardown().await;
        return Err(e.context(format!("node logs are in {}", dir.display())));
    }
    let cluster_text = if config.target.is_refnode() {
        format!(
            "{} refnodes ({} replication)",
            config.nodes,
            config.replication.as_str()
        )
    } else {
        config.target.describe(config.nodes)
    };
    eprintln!(
        "splitbrain: cluster of {cluster_text} is up; running {} clients for {} s at {} ops/s, nemesis {}",
        config.concurrency,
        config.time_limit.as_secs_f64(),
        config.rate,
        config.nemesis.name()
    );

    let history_path = dir.join("history.jsonl");
    let start = Instant::now();
    let (recorder, writer) = Recorder::create(&history_path, start.into_std())
        .with_context(|| format!("cannot create {}", history_path.display()))?;
    let end = start + config.time_limit;
    let faults_end = end - config.recovery();
    let mut sources = crate::target::sources(&config, workload_sources);
    let keys_used: Arc<Mutex<BTreeSet<i64>>> = Arc::default();

    let progress = crate::progress::Progress::start(
        config.progress,
        recorder.clone(),
        start,
        config.time_limit,
    );
    let mut workers = Vec::with_capacity(config.concurrency);
    for w in 0..config.concurrency {
        workers.push(tokio::spawn(worker(
            w,
            Arc::clone(&db),
            recorder.clone(),
            WorkerCalls {
                source: sources.remove(0),
                keys_used: Arc::clone(&keys_used),
            },
            WorkerConfig {
                concurrency: config.concurrency,
                rate: config.rate,
                seed: config.seed,
                op_timeout: config.op_timeout,
            },
            end,
            stop.clone(),
        )));
    }
    let nemesis_config = NemesisConfig {
        shapes: config.partition_shapes.clone(),
        loss_percent: config.loss_percent,
        delay_ms: config.delay_ms,
        jitter_ms: config.jitter_ms,
        schedule: config.nemesis_schedule,
        quiet_period: config.quiet_period,
        grudge: config.grudge.clone(),
        bandwidth_kbit: config.bandwidth_kbit,
        ..NemesisConfig::new(config.nemesis.clone(), config.nemesis_interval, config.seed)
    };
    let faults_injected = nemesis::run(
        Arc::clone(&db),
        &fabric,
        &recorder,
        &nemesis_config,
        faults_end,
        stop.clone(),
    )
    .await;
    let mut worker_panics = 0;
    for w in workers {
        if w.await.is_err() {
            worker_panics += 1;
        }
    }
    drop(progress);
    let interrupted = *stop.borrow();
    // Refnode runs end with per-node reads of every workload but the register's; an
    // adapter's session and set runs with the recovery read alone.
    let wants_final_reads = match &cluster {
        Some(_) => config.workload != Workload::Register,
        None => matches!(config.workload, Workload::Session | Workload::Set),
    };
    if !interrupted && wants_final_reads {
        let keys = keys_used.lock().expect("keys lock").clone();
        final_reads(
            &config,
            cluster.as_deref(),
            &db,
            &recorder,
            &keys,
            stop.clone(),
        )
        .await;
    }
    if !interrupted && crate::target::wants_final_reads(&config.target) {
        read_every_node(&config, &db, &recorder, stop.clone()).await;
    }
    db.teardown().await;
    let net_stats = maelstrom.as_ref().map(|h| h.net_stats().into());
    fabric.teardown();
    let _ = ledger.record(&Resource::Released);
    drop(recorder);
    let written = writer
        .finish()
        .with_context(|| format!("cannot finish {}", history_path.display()))?;
    eprintln!("splitbrain: recorded {written} operations; checking");

    let mut warnings = Vec::new();
    if worker_panics > 0 {
        warnings.push(format!("{worker_panics} client workers crashed"));
    }
    if interrupted {
        warnings.push("the run was interrupted; the history is complete up to that point".into());
    }
    let loaded = histories::read_any(&history_path, Some(histories::Format::Jsonl))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    warnings.extend(loaded.warnings);
    let history = loaded.history;
    let check_config = CheckConfig {
        checkers: Vec::new(),
        model: checkers::linearizable::ModelKind::CasRegister,
        time_limit: config.check_time_limit,
        memory_limit_bytes: None,
        no_partition: false,
        consistency_models: config.target.models(),
    };
    let kinds = config.checker_kinds();
    let (linearizable, others): (Vec<CheckerKind>, Vec<CheckerKind>) = kinds
        .into_iter()
        .partition(|k| *k == CheckerKind::Linearizable);
    let mut verdicts = check::run_checkers(
        &history,
        &CheckConfig {
            checkers: others,
            ..check_config.clone()
        },
    )
    .await;
    if !linearizable.is_empty() {
        // The register model knows reads, writes and cas; statement keys and the per-node
        // final reads (which may rightly be stale at a follower) are left out.
        let registers = register_calls(&history)?;
        verdicts.extend(
            check::run_checkers(
                &registers,
                &CheckConfig {
                    checkers: linearizable,
                    ..check_config
                },
            )
            .await,
        );
    }
    let valid = verdicts
        .values()
        .fold(Validity::True, |acc, v| acc.merge(v.valid));
    let results = Results {
        test: config.test_name(),
        valid,
        seed: config.seed,
        command: config.command(),
        store: dir.clone(),
        interrupted,
        config: ConfigSummary {
            target: config.target.target.as_str(),
            nodes: config.nodes,
            replication: config.replication,
            failover: config.failover,
            workload: config.workload,
            nemesis: config.nemesis.name(),
            nemesis_interval_s: config.nemesis_interval.as_secs_f64(),
            concurrency: config.concurrency,
            time_limit_s: config.time_limit.as_secs_f64(),
            rate: config.rate,
            read_routing: config.read_routing.as_str(),
            op_timeout_ms: config.op_timeout.as_millis() as u64,
            log: config.log,
            design: (!config.replication.single_leader()).then(|| config.design.clone()),
            net: fabric.kind(),
            net_why: fabric.why().to_string(),
            target_options: config.target.summary(&config.checker_kinds()),
        },
        checker: verdicts,
        stats: checkers::stats::stats(&history),
        faults_injected,
        warnings,
        net_stats,
    };
    write_results(&dir, &results)?;
    crate::report_html::write(&dir, &results, &history)?;
    crate::junit::write_run(&dir, &results)?;
    Ok(results)
}

/// The reference-node cluster of a `--target refnode` run, on the fabric's network.
fn refnode_cluster(
    config: &RunConfig,
    fabric: &Fabric,
    dir: &Path,
) -> anyhow::Result<Arc<RefnodeCluster>> {
    Ok(Arc::new(RefnodeCluster::new(RefnodeConfig {
        binary: config.refnode_bin.clone(),
        node_count: config.nodes,
        replication: config.replication.as_str().to_string(),
        failover: config.failover.as_str().to_string(),
        read_routing: config.read_routing,
        dir: dir.to_path_buf(),
        heartbeat_ms: 100,
        failover_timeout_ms: 1000,
        sync_timeout_ms: 1000,
        network: fabric.node_network(),
        log: config.log.as_str().to_string(),
        topology: config.design.topology.clone(),
        conflict: config.design.conflict.clone(),
        home_leader_routing: config.design.home_leader_routing,
        n: config.design.n,
        w: config.design.w,
        r: config.design.r,
        read_repair: config.design.read_repair,
        anti_entropy: config.design.anti_entropy,
        sloppy_quorum: config.design.sloppy_quorum,
        ..RefnodeConfig::default()
    })?))
}

/// The cluster as the workers and the nemesis see it: clients reach the nodes through the
/// fabric (proxy ports) when it says so; everything else is the cluster's.
struct FabricDb {
    cluster: Arc<RefnodeCluster>,
    client_addrs: Option<Vec<(String, std::net::SocketAddr)>>,
    read_routing: ReadRouting,
    /// Multi-leader and leaderless: clients write at their own node, not at a leader.
    writes_at_own_node: bool,
}

#[async_trait::async_trait]
impl Db for FabricDb {
    fn nodes(&self) -> Vec<targets::NodeId> {
        self.cluster.nodes()
    }
    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        self.cluster.start(timeout).await
    }
    async fn teardown(&self) {
        self.cluster.teardown().await
    }
    fn client(&self, process: u64) -> Box<dyn targets::Client> {
        match &self.client_addrs {
            Some(addrs) => {
                let client = RefnodeClient::new(addrs.clone(), process, self.read_routing);
                Box::new(if self.writes_at_own_node {
                    client.writing_at_own_node()
                } else {
                    client
                })
            }
            None => self.cluster.client(process),
        }
    }
    fn kill(&self) -> Option<&dyn targets::Kill> {
        self.cluster.kill()
    }
    fn pause(&self) -> Option<&dyn targets::Pause> {
        self.cluster.pause()
    }
    fn primary(&self) -> Option<&dyn targets::Primary> {
        self.cluster.primary()
    }
    fn clock(&self) -> Option<&dyn targets::Clock> {
        self.cluster.clock()
    }
    fn member(&self) -> Option<&dyn targets::Member> {
        self.cluster.member()
    }
}

fn write_results(dir: &Path, results: &Results) -> anyhow::Result<()> {
    let path = dir.join("results.json");
    let text = serde_json::to_string_pretty(results)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

#[derive(Debug, Clone, Copy)]
struct WorkerConfig {
    concurrency: usize,
    rate: f64,
    seed: u64,
    op_timeout: Duration,
}

/// Where a worker's calls come from, and where it notes the keys they touch (for the final
/// reads).
struct WorkerCalls {
    source: Box<dyn Source>,
    keys_used: Arc<Mutex<BTreeSet<i64>>>,
}

/// One client worker: invoke, wait, record, pause, repeat until the end. After an `info` the
/// process is considered crashed (its call may still take effect at any time), so the worker
/// continues as a new process, numbered as Jepsen does: old + concurrency.
async fn worker(
    w: usize,
    db: Arc<dyn Db>,
    recorder: Recorder,
    calls: WorkerCalls,
    config: WorkerConfig,
    end: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let WorkerCalls {
        mut source,
        keys_used,
    } = calls;
    let mut process = w as u64;
    let mut client = db.client(process);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(w as u64 + 1));
    // Each worker waits on average concurrency/rate seconds between calls, so together they
    // issue about `rate` calls per second; the jitter keeps them from moving in lockstep.
    let mean_gap_s = config.concurrency as f64 / config.rate.max(1e-3);
    loop {
        let gap = Duration::from_secs_f64(rng.random_range(0.0..2.0 * mean_gap_s));
        let wake = Instant::now() + gap;
        if wake >= end {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let invocation: Invocation = source.next_invocation();
        if let Some(Key::Int(k)) = invocation.key {
            keys_used.lock().expect("keys lock").insert(k);
        }
        recorder.record(Event {
            process: Process::Client(process),
            kind: OpType::Invoke,
            f: invocation.f.clone(),
            key: invocation.key.clone(),
            value: invocation.value.clone(),
            node: None,
            error: None,
        });
        let completion = client.invoke(&invocation, config.op_timeout).await;
        source.completed(&invocation, completion.kind);
        recorder.record(Event {
            process: Process::Client(process),
            kind: completion.kind,
            f: invocation.f,
            key: invocation.key,
            value: completion.value,
            node: completion.node,
            error: completion.error,
        });
        if completion.kind == OpType::Info {
            process += config.concurrency as u64;
            client = db.client(process);
        }
    }
}

/// One call source per worker.
fn workload_sources(config: &RunConfig) -> Vec<Box<dyn Source>> {
    let workers = config.concurrency;
    match config.workload {
        Workload::Register => Shared::for_workers(
            RegisterWorkload::new(config.seed, RegisterConfig::default()),
            workers,
        ),
        Workload::Session => {
            // `exec` statements are refnode's (what a statement-based log replays); a real
            // system gets only the registers' reads and writes.
            let shape = if config.target.is_refnode() {
                SessionConfig::default()
            } else {
                SessionConfig {
                    statement_share: 0.0,
                    ..SessionConfig::default()
                }
            };
            let active = SessionWorkload::shared_keys(workers, &shape);
            (0..workers)
                .map(|w| {
                    Box::new(SessionWorkload::new(
                        config.seed,
                        w,
                        workers,
                        shape.clone(),
                        Arc::clone(&active),
                    )) as Box<dyn Source>
                })
                .collect()
        }
        Workload::Conflicts => Shared::for_workers(
            ConflictsWorkload::new(
                config.seed,
                RollingKeys {
                    active_keys: 3,
                    ops_per_key: 150,
                },
            ),
            workers,
        ),
        Workload::ListAppend | Workload::RwRegister => {
            let kind = if config.workload == Workload::ListAppend {
                TxnKind::ListAppend
            } else {
                TxnKind::RwRegister
            };
            Shared::for_workers(
                TxnWorkload::new(config.seed, kind, TxnConfig::default()),
                workers,
            )
        }
        Workload::Set => Shared::for_workers(
            SetWorkload::new(
                config.seed,
                RollingKeys {
                    active_keys: 3,
                    ops_per_key: 150,
                },
            ),
            workers,
        ),
    }
}

/// Process numbers of the final reads, far above any worker's.
const FINAL_PROCESS: u64 = 1_000_000_000;

/// After the workload and the last fault: let the cluster settle, then read every key the
/// workload touched, once through an ordinary client (the session workload's recovery read,
/// which `lost-writes` judges) and, on refnode, once at every node directly (`local-read`
/// with the node named, which `convergence` compares). An adapter's recovery read goes
/// through a fresh client of the target, which finds the primary (or the member) the way
/// the workers' clients do; for the set workload it is a `set-read`, the final set that
/// `set-add-wins` judges. Every call is bounded by the op timeout.
async fn final_reads(
    config: &RunConfig,
    cluster: Option<&RefnodeCluster>,
    db: &Arc<dyn Db>,
    recorder: &Recorder,
    keys: &BTreeSet<i64>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        () = tokio::time::sleep(config.settle) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    match cluster {
        Some(_) => eprintln!(
            "splitbrain: final reads of {} keys at {} nodes",
            keys.len(),
            config.nodes
        ),
        None => eprintln!("splitbrain: recovery reads of {} keys", keys.len()),
    }
    let record = |process: u64, kind: OpType, f: &F, key: i64, value: Value, node, error| {
        recorder.record(Event {
            process: Process::Client(process),
            kind,
            f: f.clone(),
            key: Some(Key::Int(key)),
            value,
            node,
            error,
        });
    };
    // A real system's replicas are not read one by one: its final set is what a client
    // reads now.
    let recovery_f = match (config.workload, cluster) {
        (Workload::Session, _) => Some(F::Read),
        (Workload::Set, None) => Some(F::Other("set-read".into())),
        _ => None,
    };
    if let Some(f) = recovery_f {
        // The recovery read asks the leader, whatever the run's read routing: its answer is
        // what the cluster now holds.
        let leader_client = |process: u64| -> Box<dyn targets::Client> {
            match cluster.and_then(|c| cluster_client_addrs(c, db)) {
                Some(addrs) if config.replication.single_leader() => {
                    Box::new(RefnodeClient::new(addrs, process, ReadRouting::Leader))
                }
                // Without a leader, an ordinary read (a quorum, or the client's own node);
                // an adapter's client.
                _ => db.client(process),
            }
        };
        let mut client = leader_client(FINAL_PROCESS);
        let mut process = FINAL_PROCESS;
        for &key in keys {
            if *stop.borrow() {
                return;
            }
            let call = Invocation {
                f: f.clone(),
                key: Some(Key::Int(key)),
                value: Value::Nil,
            };
            record(process, OpType::Invoke, &f, key, Value::Nil, None, None);
            let done = client.invoke(&call, config.op_timeout).await;
            record(
                process, done.kind, &f, key, done.value, done.node, done.error,
            );
            if done.kind == OpType::Info {
                process += 1;
                client = leader_client(process);
            }
        }
    }
    let Some(cluster) = cluster else {
        return;
    };
    // A set's final reads are `set-read`s naming the node, which `set-add-wins` judges.
    let local_read = F::Other(
        if config.workload == Workload::Set {
            "set-read"
        } else {
            "local-read"
        }
        .into(),
    );
    // Leaderless with more nodes than replicas per key: only a key's home replicas are meant
    // to hold it (a stand-in's hinted copy goes away with the handoff).
    let ring = (config.replication == Replication::Leaderless)
        .then(|| targets::refnode::server::ring::Ring::new(&cluster.nodes()));
    for (i, node) in cluster.nodes().into_iter().enumerate() {
        let process = FINAL_PROCESS + 1_000 + i as u64;
        for &key in keys {
            if *stop.borrow() {
                return;
            }
            if ring
                .as_ref()
                .is_some_and(|r| !r.is_home(key, config.design.n, &node))
            {
                continue;
            }
            record(
                process,
                OpType::Invoke,
                &local_read,
                key,
                Value::Nil,
                None,
                None,
            );
            let done = cluster.local_read(&node, key, config.op_timeout).await;
            let (kind, value, error) = match done {
                Ok(value) => (OpType::Ok, value, None),
                // The node did not answer in time: nothing was changed, but nothing was
                // seen either, so the read counts for nothing.
                Err(e) => (OpType::Fail, Value::Nil, Some(format!("{e:#}"))),
            };
            record(
                process,
                kind,
                &local_read,
                key,
                value,
                Some(node.clone()),
                error,
            );
        }
    }
}

/// After the workload of a set-like Maelstrom run: let the nodes settle, then read once at
/// every node (the broadcast checker's final reads). Every call is bounded by the op timeout.
async fn read_every_node(
    config: &RunConfig,
    db: &Arc<dyn Db>,
    recorder: &Recorder,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        () = tokio::time::sleep(config.settle) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let nodes = db.nodes().len();
    eprintln!("splitbrain: final reads at {nodes} nodes");
    for process in crate::target::final_read_processes(FINAL_PROCESS, nodes) {
        if *stop.borrow() {
            return;
        }
        let call = Invocation {
            f: F::Read,
            key: None,
            value: Value::Nil,
        };
        let event = |kind, value, node, error| Event {
            process: Process::Client(process),
            kind,
            f: F::Read,
            key: None,
            value,
            node,
            error,
        };
        recorder.record(event(OpType::Invoke, Value::Nil, None, None));
        let done = db.client(process).invoke(&call, config.op_timeout).await;
        recorder.record(event(done.kind, done.value, done.node, done.error));
    }
}

/// Where a client outside the workers reaches each node: the nodes' own addresses (the
/// faults are healed by now, so going around the fabric's proxies changes nothing).
fn cluster_client_addrs(
    cluster: &RefnodeCluster,
    db: &Arc<dyn Db>,
) -> Option<Vec<(String, std::net::SocketAddr)>> {
    db.nodes()
        .into_iter()
        .map(|n| cluster.addr_of(&n).map(|a| (n, a)))
        .collect()
}

/// The history restricted to what the register model can judge: reads, writes and cas on
/// keys that saw nothing else (statement keys are left out), and the nemesis.
fn register_calls(history: &History) -> anyhow::Result<History> {
    let register_f = |f: &F| matches!(f, F::Read | F::Write | F::Cas);
    let other_keys: BTreeSet<&Key> = history
        .ops()
        .iter()
        .filter(|op| {
            matches!(op.process, Process::Client(_))
                && !register_f(&op.f)
                && op.f.as_str() != "local-read"
        })
        .filter_map(|op| op.key.as_ref())
        .collect();
    let kept: Vec<histories::Op> = history
        .ops()
        .iter()
        .filter(|op| match op.process {
            Process::Nemesis => true,
            Process::Client(_) => {
                register_f(&op.f) && op.key.as_ref().is_none_or(|k| !other_keys.contains(k))
            }
        })
        .cloned()
        .collect();
    History::from_ops(kept).map_err(|e| anyhow::anyhow!("{}", e.message))
}

//! Which system `splitbrain run` drives: the reference nodes (built in `run.rs`) or one of the
//! adapters for real systems (`targets::adapters`), and what each brings to a run: its node
//! names, the `Db` the workers and the nemesis use, the network it can sit behind, the
//! workloads it speaks and the checkers and consistency models its promises imply.
//!
//! A real database cannot sit behind the userspace proxy (each member dials its peers at one
//! advertised address), so its network faults come from the `netns` fabric: every node runs
//! in its own namespace (`NodeHost`), and partitions and loss are kernel drop rules there.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use checkers::txn::ConsistencyModel;
use serde::Serialize;
use targets::Db;
use targets::adapters::NodeHost;
use targets::adapters::etcd::{EtcdCluster, EtcdConfig, EtcdReads, ExternalEtcdConfig};
use targets::adapters::maelstrom::{MaelstromConfig, MaelstromHost, NetStats, Topology};
use targets::adapters::postgres::{Isolation, PostgresCluster, PostgresConfig};
use targets::adapters::redis::{RedisCluster, RedisConfig};

use crate::check::CheckerKind;
use crate::fabric::{Fabric, NetMode, NetNeeds};
use crate::generator::{
    KeyOffset, MaelstromOps, MaelstromWorkload as MaelstromCalls, Shared, Source,
};
use crate::nemesis::{FaultKind, NemesisSpec};
use crate::run::{RunConfig, Workload};

/// The `--target` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// splitbrain's own reference nodes (DDIA ch. 5 designs).
    #[default]
    Refnode,
    /// Debian's etcd, three members started here, or an external cluster (`--endpoints`).
    Etcd,
    /// Redis: a primary, replicas and Sentinels.
    Redis,
    /// PostgreSQL: a primary and streaming replicas.
    Postgres,
    /// Any binary speaking Maelstrom's node protocol (`--bin`).
    Maelstrom,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Refnode,
        Target::Etcd,
        Target::Redis,
        Target::Postgres,
        Target::Maelstrom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Refnode => "refnode",
            Target::Etcd => "etcd",
            Target::Redis => "redis",
            Target::Postgres => "postgres",
            Target::Maelstrom => "maelstrom",
        }
    }

    /// The workloads this target's clients speak (Maelstrom's come from
    /// `--maelstrom-workload`).
    fn workloads(self) -> &'static [Workload] {
        match self {
            Target::Refnode => &[
                Workload::Register,
                Workload::Session,
                Workload::Conflicts,
                Workload::Set,
            ],
            Target::Etcd | Target::Postgres => &[
                Workload::Register,
                Workload::Session,
                Workload::ListAppend,
                Workload::RwRegister,
            ],
            Target::Redis => &[Workload::Register, Workload::Session, Workload::Set],
            Target::Maelstrom => &[],
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown target {s:?}; expected refnode, etcd, redis, postgres or maelstrom"
                )
            })
    }
}

/// The `--maelstrom-workload` flag: Maelstrom's workload names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaelstromWorkload {
    Echo,
    UniqueIds,
    #[default]
    Broadcast,
    GSet,
    /// `add {delta}` of positive deltas, and reads of the total.
    GCounter,
    /// `add {delta}` of deltas of either sign, and reads of the total.
    PnCounter,
    /// read / write / cas on keys, checked for linearizability.
    LinKv,
    TxnListAppend,
    TxnRwRegister,
}

impl MaelstromWorkload {
    pub const ALL: [MaelstromWorkload; 9] = [
        MaelstromWorkload::Echo,
        MaelstromWorkload::UniqueIds,
        MaelstromWorkload::Broadcast,
        MaelstromWorkload::GSet,
        MaelstromWorkload::GCounter,
        MaelstromWorkload::PnCounter,
        MaelstromWorkload::LinKv,
        MaelstromWorkload::TxnListAppend,
        MaelstromWorkload::TxnRwRegister,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MaelstromWorkload::Echo => "echo",
            MaelstromWorkload::UniqueIds => "unique-ids",
            MaelstromWorkload::Broadcast => "broadcast",
            MaelstromWorkload::GSet => "g-set",
            MaelstromWorkload::GCounter => "g-counter",
            MaelstromWorkload::PnCounter => "pn-counter",
            MaelstromWorkload::LinKv => "lin-kv",
            MaelstromWorkload::TxnListAppend => "txn-list-append",
            MaelstromWorkload::TxnRwRegister => "txn-rw-register",
        }
    }

    /// The splitbrain workload that generates its calls and checks them, for the workloads
    /// both share; `None` for the ones only Maelstrom has.
    pub fn shared_workload(self) -> Option<Workload> {
        match self {
            MaelstromWorkload::LinKv => Some(Workload::Register),
            MaelstromWorkload::TxnListAppend => Some(Workload::ListAppend),
            MaelstromWorkload::TxnRwRegister => Some(Workload::RwRegister),
            _ => None,
        }
    }

    fn ops(self) -> Option<MaelstromOps> {
        match self {
            MaelstromWorkload::Echo => Some(MaelstromOps::Echo),
            MaelstromWorkload::UniqueIds => Some(MaelstromOps::UniqueIds),
            MaelstromWorkload::Broadcast => Some(MaelstromOps::Broadcast),
            MaelstromWorkload::GSet => Some(MaelstromOps::GSet),
            MaelstromWorkload::GCounter => Some(MaelstromOps::GCounter),
            MaelstromWorkload::PnCounter => Some(MaelstromOps::PnCounter),
            _ => None,
        }
    }

    /// Whether the run ends with a read at every node (what the broadcast and counter
    /// checkers judge).
    fn final_reads(self) -> bool {
        matches!(
            self,
            MaelstromWorkload::Broadcast
                | MaelstromWorkload::GSet
                | MaelstromWorkload::GCounter
                | MaelstromWorkload::PnCounter
        )
    }
}

impl FromStr for MaelstromWorkload {
    type Err = String;
    fn from_str(s: &str) -> Result<MaelstromWorkload, String> {
        MaelstromWorkload::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = MaelstromWorkload::ALL.iter().map(|w| w.as_str()).collect();
                format!(
                    "unknown Maelstrom workload {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The target and its options, as the flags give them.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOptions {
    pub target: Target,
    /// postgres: the isolation level of every transaction.
    pub isolation: Isolation,
    /// etcd: the read path of reads and read-only transactions.
    pub reads: EtcdReads,
    /// etcd: `host:port` of the members of a cluster somebody else runs; empty to start one.
    pub endpoints: Vec<String>,
    /// maelstrom: the node program.
    pub bin: PathBuf,
    pub maelstrom_workload: MaelstromWorkload,
    /// Transactional checkers: the models to check for instead of what the target promises
    /// (e.g. serializable at repeatable read, to see what the database does not promise).
    pub consistency_models: Vec<ConsistencyModel>,
}

impl Default for TargetOptions {
    fn default() -> TargetOptions {
        TargetOptions {
            target: Target::Refnode,
            isolation: Isolation::Serializable,
            reads: EtcdReads::Linearizable,
            endpoints: Vec::new(),
            bin: PathBuf::new(),
            maelstrom_workload: MaelstromWorkload::default(),
            consistency_models: Vec::new(),
        }
    }
}

/// What `results.json` says of the target beyond its name.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maelstrom_workload: Option<&'static str>,
    /// The models the transactional checkers checked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consistency_models: Vec<&'static str>,
}

impl TargetOptions {
    pub fn is_refnode(&self) -> bool {
        self.target == Target::Refnode
    }

    /// etcd run against `--endpoints`: a cluster splitbrain neither starts nor faults.
    pub fn external(&self) -> bool {
        self.target == Target::Etcd && !self.endpoints.is_empty()
    }

    /// Combinations the flags allow but the target cannot run, in one line each.
    pub fn validate(&self, workload: Workload, nemesis: &NemesisSpec) -> Result<(), String> {
        let t = self.target.as_str();
        if self.target != Target::Maelstrom && !self.target.workloads().contains(&workload) {
            let names: Vec<&str> = self.target.workloads().iter().map(|w| w.as_str()).collect();
            return Err(format!(
                "--target {t} does not run the {} workload; choose one of {}",
                workload.as_str(),
                names.join(", ")
            ));
        }
        if self.external() {
            let process: Vec<&str> = nemesis
                .faults
                .iter()
                .filter(|f| **f != FaultKind::Loss && **f != FaultKind::Delay)
                .map(|f| f.as_str())
                .collect();
            if !nemesis.faults.is_empty() {
                return Err(format!(
                    "--endpoints: an external etcd cluster runs outside splitbrain, so it has no process or network faults ({}); use --nemesis none or let splitbrain start etcd",
                    if process.is_empty() {
                        nemesis.flag()
                    } else {
                        process.join(", ")
                    }
                ));
            }
        }
        let needs = nemesis.net_needs();
        if self.is_refnode() || !needs.any() {
            return Ok(());
        }
        if self.target == Target::Maelstrom {
            // The host's router cuts, drops and delays node-to-node messages; it has no
            // notion of bandwidth.
            if needs.bandwidth {
                return Err(
                    "--target maelstrom: the Maelstrom host cannot limit bandwidth; use partition, loss or delay"
                        .into(),
                );
            }
            return Ok(());
        }
        if needs.delay {
            return Err(format!(
                "--nemesis delay needs the userspace proxy, which {t} cannot sit behind (its members dial one address per peer) and tc netem is missing; use partition or loss"
            ));
        }
        Ok(())
    }

    /// The fabric to build: a real database's network faults need namespaces.
    pub fn net_mode(&self, asked: NetMode, needs: NetNeeds) -> Result<NetMode, String> {
        if self.target == Target::Maelstrom {
            // No sockets between the nodes: the host's router is the fabric (run.rs).
            return Ok(NetMode::Direct);
        }
        if self.is_refnode() || !needs.any() {
            return Ok(asked);
        }
        let t = self.target.as_str();
        match asked {
            NetMode::Auto | NetMode::Netns => {
                crate::fabric::netns::available().map_err(|why| {
                    format!(
                        "network faults on {t} need a namespace per node (--net netns), which is not possible here: {why}"
                    )
                })?;
                Ok(NetMode::Netns)
            }
            NetMode::Proxy => Err(format!(
                "--net proxy: {t} cannot sit behind the userspace proxy (its members dial one address per peer); use --net netns"
            )),
            NetMode::Direct => Ok(NetMode::Direct),
        }
    }

    /// The part of the test name after the target: workload and options.
    pub fn test_name(&self, workload: Workload, nemesis: &NemesisSpec) -> String {
        let t = self.target.as_str();
        let nemesis = nemesis.name();
        match self.target {
            Target::Refnode => unreachable!("refnode names its tests in run.rs"),
            Target::Etcd => format!(
                "{t}-{}-{}{}{}-{nemesis}",
                workload.as_str(),
                self.reads.as_str(),
                if self.external() { "-external" } else { "" },
                self.checked_for()
            ),
            Target::Postgres => format!(
                "{t}-{}-{}{}-{nemesis}",
                workload.as_str(),
                self.isolation.as_str(),
                self.checked_for()
            ),
            Target::Redis => format!("{t}-{}-{nemesis}", workload.as_str()),
            Target::Maelstrom => format!(
                "{t}-{}-{}-{nemesis}",
                self.maelstrom_workload.as_str(),
                bin_name(&self.bin)
            ),
        }
    }

    /// `-check-serializable` when `--consistency-models` asks for other models than the
    /// target promises: such a run answers another question and gets its own store folder.
    fn checked_for(&self) -> String {
        if self.consistency_models.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = self.consistency_models.iter().map(|m| m.name()).collect();
        format!("-check-{}", names.join("+"))
    }

    /// The flags that repeat the target's choice, for the repeat command.
    pub fn flags(&self) -> String {
        let mut out = format!("--target {}", self.target.as_str());
        match self.target {
            Target::Refnode => {}
            Target::Etcd => {
                out.push_str(&format!(" --reads {}", self.reads.as_str()));
                if self.external() {
                    out.push_str(&format!(" --endpoints {}", self.endpoints.join(",")));
                }
            }
            Target::Postgres => {
                out.push_str(&format!(" --isolation {}", self.isolation.as_str()));
            }
            Target::Redis => {}
            Target::Maelstrom => out.push_str(&format!(
                " --bin {} --maelstrom-workload {}",
                self.bin.display(),
                self.maelstrom_workload.as_str()
            )),
        }
        if !self.consistency_models.is_empty() {
            let names: Vec<&str> = self.consistency_models.iter().map(|m| m.name()).collect();
            out.push_str(&format!(" --consistency-models {}", names.join(",")));
        }
        out
    }

    /// The models the transactional checkers check: the flag's, else what the target
    /// promises at its settings.
    pub fn models(&self) -> Vec<ConsistencyModel> {
        if !self.consistency_models.is_empty() {
            return self.consistency_models.clone();
        }
        match self.target {
            Target::Postgres => vec![match self.isolation {
                // SSI on one primary: every client talks to it, but PostgreSQL documents
                // serializability, not real-time order.
                Isolation::Serializable => ConsistencyModel::Serializable,
                Isolation::RepeatableRead => ConsistencyModel::SnapshotIsolation,
                Isolation::ReadCommitted => ConsistencyModel::ReadCommitted,
            }],
            // Writes commit through Raft guarded by every key's revision; linearizable reads
            // add real-time order, serializable reads may be stale snapshots.
            Target::Etcd => vec![match self.reads {
                EtcdReads::Linearizable => ConsistencyModel::StrictSerializable,
                EtcdReads::Serializable => ConsistencyModel::Serializable,
            }],
            _ => vec![ConsistencyModel::StrictSerializable],
        }
    }

    /// The checkers the target's workload implies, for Maelstrom's own workloads. An
    /// adapter's run has no per-node reads (a real system's replicas are not read one by
    /// one), so `convergence`, which compares them, is refnode's alone.
    pub fn default_checkers(&self, workload: Workload) -> Vec<CheckerKind> {
        if self.target != Target::Maelstrom {
            let mut kinds = workload.default_checkers();
            if !self.is_refnode() {
                kinds.retain(|k| *k != CheckerKind::Convergence);
            }
            return kinds;
        }
        match self.maelstrom_workload {
            MaelstromWorkload::Echo => vec![CheckerKind::Echo],
            MaelstromWorkload::UniqueIds => vec![CheckerKind::UniqueIds],
            MaelstromWorkload::Broadcast | MaelstromWorkload::GSet => vec![CheckerKind::Broadcast],
            MaelstromWorkload::GCounter | MaelstromWorkload::PnCounter => {
                vec![CheckerKind::Counter]
            }
            other => other
                .shared_workload()
                .map_or_else(Vec::new, Workload::default_checkers),
        }
    }

    pub fn summary(&self, checkers: &[CheckerKind]) -> Option<TargetSummary> {
        if self.is_refnode() {
            return None;
        }
        let txn = checkers
            .iter()
            .any(|k| matches!(k, CheckerKind::ListAppend | CheckerKind::RwRegister));
        Some(TargetSummary {
            isolation: (self.target == Target::Postgres).then(|| self.isolation.as_str()),
            reads: (self.target == Target::Etcd).then(|| self.reads.as_str()),
            endpoints: self.endpoints.clone(),
            bin: (self.target == Target::Maelstrom).then(|| self.bin.clone()),
            maelstrom_workload: (self.target == Target::Maelstrom)
                .then(|| self.maelstrom_workload.as_str()),
            consistency_models: if txn {
                self.models().iter().map(|m| m.name()).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// How long the cluster may take to come up: PostgreSQL runs initdb and a base backup.
    pub fn start_timeout(&self) -> Duration {
        match self.target {
            Target::Refnode | Target::Redis | Target::Maelstrom => Duration::from_secs(20),
            Target::Etcd | Target::Postgres => Duration::from_secs(60),
        }
    }

    /// One line for the "cluster is up" message.
    pub fn describe(&self, nodes: usize) -> String {
        match self.target {
            Target::Refnode => format!("{nodes} refnodes"),
            Target::Etcd if self.external() => format!(
                "external etcd at {} ({} reads)",
                self.endpoints.join(","),
                self.reads.as_str()
            ),
            Target::Etcd => format!("{nodes} etcd members ({} reads)", self.reads.as_str()),
            Target::Redis => format!(
                "Redis primary, {} replicas and {nodes} Sentinels",
                nodes.saturating_sub(1)
            ),
            Target::Postgres => format!(
                "PostgreSQL primary and {} streaming replicas ({})",
                nodes.saturating_sub(1),
                self.isolation.as_str()
            ),
            Target::Maelstrom => format!(
                "{nodes} Maelstrom nodes of {} ({})",
                self.bin.display(),
                self.maelstrom_workload.as_str()
            ),
        }
    }

    /// The node names the fabric places: the members an external cluster has, else n1...
    pub fn node_names(&self, nodes: usize) -> Vec<String> {
        let count = if self.external() {
            self.endpoints.len()
        } else {
            nodes
        };
        (1..=count).map(|i| format!("n{i}")).collect()
    }
}

/// The file name of a node program, for test names.
fn bin_name(bin: &Path) -> String {
    bin.file_name()
        .map_or_else(|| "node".into(), |n| n.to_string_lossy().into_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An adapter's cluster, as the run uses it.
pub struct Adapter {
    pub db: Arc<dyn Db>,
    /// The Maelstrom host, whose network statistics go into the results.
    pub maelstrom: Option<Arc<MaelstromHost>>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("nodes", &self.db.nodes())
            .finish()
    }
}

/// Builds the adapter `config.target` names, placing its nodes where the fabric says (a
/// namespace per node on the netns fabric). Nothing starts until `Db::start`.
pub fn build(config: &RunConfig, fabric: &Fabric, dir: &Path) -> anyhow::Result<Adapter> {
    let opts = &config.target;
    let names = opts.node_names(config.nodes);
    let hosts: Vec<NodeHost> = match fabric.namespaces() {
        Some(ns) => names
            .iter()
            .map(|n| {
                Ok(NodeHost {
                    ip: ns
                        .addr(n)
                        .ok_or_else(|| anyhow::anyhow!("no namespace for {n}"))?
                        .into(),
                    netns: Some(ns.ns_name(n)),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };
    let plain = |db: Arc<dyn Db>| Adapter {
        db,
        maelstrom: None,
    };
    Ok(match opts.target {
        Target::Refnode => anyhow::bail!("the refnode cluster is built in run.rs"),
        Target::Etcd if opts.external() => {
            plain(Arc::new(EtcdCluster::external(ExternalEtcdConfig {
                endpoints: opts.endpoints.clone(),
                reads: opts.reads,
            })?))
        }
        Target::Etcd => plain(Arc::new(EtcdCluster::new(EtcdConfig {
            node_count: config.nodes,
            dir: dir.to_path_buf(),
            reads: opts.reads,
            hosts,
            ..EtcdConfig::default()
        })?)),
        Target::Redis => plain(Arc::new(RedisCluster::new(RedisConfig {
            dir: dir.to_path_buf(),
            replicas: config.nodes - 1,
            // A Sentinel beside every data node, in its namespace: a partition cuts both,
            // as in Jepsen's Redis tests.
            sentinels: config.nodes,
            sentinel_hosts: hosts.clone(),
            hosts,
            ..RedisConfig::default()
        })?)),
        Target::Postgres => {
            postgres_reachable(dir)?;
            plain(Arc::new(PostgresCluster::new(PostgresConfig {
                dir: dir.to_path_buf(),
                replicas: config.nodes - 1,
                isolation: opts.isolation,
                hosts,
                ..PostgresConfig::default()
            })?))
        }
        Target::Maelstrom => {
            let host = Arc::new(MaelstromHost::new(MaelstromConfig {
                binary: opts.bin.clone(),
                node_count: config.nodes,
                dir: dir.to_path_buf(),
                topology: if opts.maelstrom_workload == MaelstromWorkload::Broadcast {
                    Topology::Grid
                } else {
                    Topology::None
                },
                seed: config.seed,
                ..MaelstromConfig::default()
            })?);
            Adapter {
                db: Arc::clone(&host) as Arc<dyn Db>,
                maelstrom: Some(host),
            }
        }
    })
}

/// PostgreSQL runs as the `postgres` user, which must be able to walk down to the run
/// directory; a store under a private directory (root's home, a 0700 temporary directory)
/// would make initdb fail with a message about permissions far from the cause.
fn postgres_reachable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = dir.canonicalize()?;
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            anyhow::bail!(
                "the postgres user cannot reach the store: {} is not searchable by others (chmod o+x it, or use a --store elsewhere)",
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// One call source per worker: Maelstrom's own workloads here, the shared ones from
/// `shared` (run.rs). Against an external etcd, keys start at a base of this run's own,
/// since earlier runs' keys are still there and the checkers assume keys start empty.
pub fn sources(
    config: &RunConfig,
    shared: fn(&RunConfig) -> Vec<Box<dyn Source>>,
) -> Vec<Box<dyn Source>> {
    let maelstrom_ops = match config.target.target {
        Target::Maelstrom => config.target.maelstrom_workload.ops(),
        _ => None,
    };
    if let Some(ops) = maelstrom_ops {
        return Shared::for_workers(MaelstromCalls::new(config.seed, ops), config.concurrency);
    }
    let sources = shared(config);
    if !config.target.external() {
        return sources;
    }
    // Milliseconds since the epoch, times a thousand: a fresh range of keys for every run
    // (a run uses far fewer than a thousand keys per millisecond of the clock).
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        .saturating_mul(1_000);
    sources
        .into_iter()
        .map(|inner| Box::new(KeyOffset { inner, base }) as Box<dyn Source>)
        .collect()
}

/// Whether the run ends with a read at every node.
pub fn wants_final_reads(opts: &TargetOptions) -> bool {
    opts.target == Target::Maelstrom && opts.maelstrom_workload.final_reads()
}

/// The process numbers of the final reads, one client bound to each node: Maelstrom clients
/// talk to node `process mod n`, so n consecutive numbers reach every node once.
pub fn final_read_processes(first: u64, nodes: usize) -> Vec<u64> {
    (first..first + nodes.max(1) as u64).collect()
}

/// Maelstrom's network statistics, as `results.json` keeps them.
#[derive(Debug, Clone, Serialize)]
pub struct NetSummary {
    /// Messages sent per client operation: all traffic, client traffic, server traffic
    /// (Maelstrom's `msgs-per-op`).
    pub msgs_per_op: MsgsPerOp,
    pub all: Counts,
    pub clients: Counts,
    pub servers: Counts,
    /// Node-to-node messages the faults dropped.
    pub dropped: u64,
    /// Client operations invoked.
    pub ops: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MsgsPerOp {
    pub all: f64,
    pub clients: f64,
    pub servers: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub send_count: u64,
    pub recv_count: u64,
}

impl From<NetStats> for NetSummary {
    fn from(s: NetStats) -> NetSummary {
        let (all, clients, servers) = s.msgs_per_op();
        let counts = |c: targets::adapters::maelstrom::Counts| Counts {
            send_count: c.send_count,
            recv_count: c.recv_count,
        };
        NetSummary {
            msgs_per_op: MsgsPerOp {
                all,
                clients,
                servers,
            },
            all: counts(s.all),
            clients: counts(s.clients),
            servers: counts(s.servers),
            dropped: s.dropped,
            ops: s.ops,
        }
    }
}

impl NetSummary {
    /// One line for the terminal summary.
    pub fn line(&self) -> String {
        format!(
            "Maelstrom network: {:.2} msgs per op (clients {:.2}, servers {:.2}) · {} sent, {} delivered, {} dropped over {} ops",
            self.msgs_per_op.all,
            self.msgs_per_op.clients,
            self.msgs_per_op.servers,
            self.all.send_count,
            self.all.recv_count,
            self.dropped,
            self.ops
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_maelstrom_workloads_parse_back_from_their_names() {
        for t in Target::ALL {
            assert_eq!(t.as_str().parse::<Target>(), Ok(t));
        }
        for w in MaelstromWorkload::ALL {
            assert_eq!(w.as_str().parse::<MaelstromWorkload>(), Ok(w));
        }
        assert!(
            "mongodb"
                .parse::<Target>()
                .unwrap_err()
                .contains("postgres")
        );
    }

    #[test]
    fn final_reads_reach_every_node_once() {
        for first in [0u64, 1, 7, 1_000_000_000] {
            let mut nodes: Vec<u64> = final_read_processes(first, 3)
                .into_iter()
                .map(|p| p % 3)
                .collect();
            nodes.sort();
            assert_eq!(nodes, vec![0, 1, 2], "first {first}");
        }
    }

    #[test]
    fn the_checked_model_follows_the_isolation_level_unless_asked() {
        let pg = |isolation| TargetOptions {
            target: Target::Postgres,
            isolation,
            ..TargetOptions::default()
        };
        assert_eq!(
            pg(Isolation::RepeatableRead).models(),
            vec![ConsistencyModel::SnapshotIsolation]
        );
        assert_eq!(
            pg(Isolation::Serializable).models(),
            vec![ConsistencyModel::Serializable]
        );
        // Read committed is judged as read committed: the read skew and write skew it permits
        // are reported as allowed anomalies, and only G0 / G1 would make the run invalid.
        assert_eq!(
            pg(Isolation::ReadCommitted).models(),
            vec![ConsistencyModel::ReadCommitted]
        );
        let asked = TargetOptions {
            consistency_models: vec![ConsistencyModel::Serializable],
            ..pg(Isolation::RepeatableRead)
        };
        assert_eq!(asked.models(), vec![ConsistencyModel::Serializable]);
        assert!(asked.flags().contains("--consistency-models serializable"));
    }

    #[test]
    fn adapters_run_the_session_workload_without_per_node_checks() {
        let redis = TargetOptions {
            target: Target::Redis,
            ..TargetOptions::default()
        };
        let none = NemesisSpec::default();
        assert_eq!(redis.validate(Workload::Session, &none), Ok(()));
        let kinds = redis.default_checkers(Workload::Session);
        assert!(!kinds.contains(&CheckerKind::Convergence), "{kinds:?}");
        for kind in [
            CheckerKind::Linearizable,
            CheckerKind::LostWrites,
            CheckerKind::Staleness,
            CheckerKind::ReadYourWrites,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} missing from {kinds:?}");
        }
        let refnode = TargetOptions::default().default_checkers(Workload::Session);
        assert!(refnode.contains(&CheckerKind::Convergence), "{refnode:?}");
    }

    #[test]
    fn redis_runs_the_set_workload_judged_by_its_final_set_alone() {
        let redis = TargetOptions {
            target: Target::Redis,
            ..TargetOptions::default()
        };
        assert_eq!(
            redis.validate(Workload::Set, &NemesisSpec::default()),
            Ok(())
        );
        assert_eq!(
            redis.default_checkers(Workload::Set),
            vec![CheckerKind::SetAddWins]
        );
        let etcd = TargetOptions {
            target: Target::Etcd,
            ..TargetOptions::default()
        };
        assert!(
            etcd.validate(Workload::Set, &NemesisSpec::default())
                .is_err()
        );
    }

    #[test]
    fn misfits_are_refused_in_one_line() {
        let none = NemesisSpec::default();
        let redis = TargetOptions {
            target: Target::Redis,
            ..TargetOptions::default()
        };
        let err = redis.validate(Workload::ListAppend, &none).unwrap_err();
        assert!(err.contains("register") && !err.contains('\n'), "{err}");
        let external = TargetOptions {
            target: Target::Etcd,
            endpoints: vec!["127.0.0.1:2379".into()],
            ..TargetOptions::default()
        };
        let kill: NemesisSpec = "kill".parse().unwrap();
        let err = external.validate(Workload::Register, &kill).unwrap_err();
        assert!(err.contains("external") && err.contains("kill"), "{err}");
        assert_eq!(external.validate(Workload::Register, &none), Ok(()));
        let etcd = TargetOptions {
            target: Target::Etcd,
            ..TargetOptions::default()
        };
        let delay: NemesisSpec = "delay".parse().unwrap();
        assert!(
            etcd.validate(Workload::Register, &delay)
                .unwrap_err()
                .contains("proxy")
        );
        assert_eq!(etcd.validate(Workload::Register, &kill), Ok(()));
        let maelstrom = TargetOptions {
            target: Target::Maelstrom,
            ..TargetOptions::default()
        };
        let net: NemesisSpec = "partition,loss,delay,kill".parse().unwrap();
        assert_eq!(maelstrom.validate(Workload::Register, &net), Ok(()));
        let bandwidth: NemesisSpec = "bandwidth".parse().unwrap();
        let err = maelstrom
            .validate(Workload::Register, &bandwidth)
            .unwrap_err();
        assert!(err.contains("bandwidth") && !err.contains('\n'), "{err}");
    }
}

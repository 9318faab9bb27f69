//! The nemesis: a seeded schedule of faults against the cluster and its network. Each fault
//! is recorded in the history as `nemesis` operations: an invoke/info pair when it starts
//! (`kill`, `pause`, `start-partition`, `bump-clock` / `strobe-clock`, `start-loss`,
//! `start-delay`, `start-bandwidth`, `wipe`) and another when it heals (`start`, `resume`,
//! `stop-partition`, `reset-clock`, `stop-loss`, `stop-delay`, `stop-bandwidth`; a wipe heals
//! itself by rejoining). One fault is active at a time; everything is healed before the run's
//! final recovery window, and network faults are guards that heal on drop even when the
//! controller unwinds.
//!
//! Two schedules ([`Schedule`]): `interval` alternates a gap and a fault of half an interval
//! each; `random` draws each fault's kind, its duration and the gap before it from the seed
//! ([`RandomSchedule`]). Both start after the quiet period.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use histories::{F, OpType, Process, Value};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use targets::Db;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::fabric::grudge::{self, GrudgeSpec, Shape};
use crate::fabric::{Fabric, NetFault, NetNeeds};
use crate::recorder::{Event, Recorder};

/// One kind of fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// SIGKILL a node, restart it on its data when the fault heals.
    Kill,
    /// SIGSTOP a node, SIGCONT it when the fault heals.
    Pause,
    /// Cut the network into a partition shape; heal it.
    Partition,
    /// Bump a node's clock, or strobe it back and forth; reset it.
    Clock,
    /// Wipe a node's data and let it rejoin as a new member.
    Member,
    /// Drop a share of the packets to and from some nodes.
    Loss,
    /// Delay the traffic to and from some nodes (the proxy fabric).
    Delay,
    /// Limit the bandwidth to and from some nodes.
    Bandwidth,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Clock,
        FaultKind::Member,
        FaultKind::Loss,
        FaultKind::Delay,
        FaultKind::Bandwidth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Clock => "clock",
            FaultKind::Member => "member",
            FaultKind::Loss => "loss",
            FaultKind::Delay => "delay",
            FaultKind::Bandwidth => "bandwidth",
        }
    }
}

/// The nemesis operation names that start a fault, and the ones that end one. A `wipe`
/// both starts and ends its fault (its completion is the rejoin).
pub const START_FS: [&str; 9] = [
    "kill",
    "pause",
    "start-partition",
    "bump-clock",
    "strobe-clock",
    "start-loss",
    "start-delay",
    "start-bandwidth",
    "wipe",
];
pub const HEAL_FS: [&str; 7] = [
    "start",
    "resume",
    "stop-partition",
    "reset-clock",
    "stop-loss",
    "stop-delay",
    "stop-bandwidth",
];

const NEMESIS_LIST: &str =
    "kill, pause, partition, clock, member (or wipe), loss, delay, bandwidth";

/// The `--nemesis` flag: `none` or a comma list of fault kinds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NemesisSpec {
    pub faults: Vec<FaultKind>,
}

impl FromStr for NemesisSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<NemesisSpec, String> {
        if s == "none" {
            return Ok(NemesisSpec::default());
        }
        let mut faults = Vec::new();
        for name in s.split(',') {
            let kind = match name.trim() {
                "kill" => FaultKind::Kill,
                "pause" => FaultKind::Pause,
                "partition" => FaultKind::Partition,
                "clock" => FaultKind::Clock,
                "member" | "wipe" => FaultKind::Member,
                "loss" => FaultKind::Loss,
                "delay" => FaultKind::Delay,
                "bandwidth" => FaultKind::Bandwidth,
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; expected none or a comma list of {NEMESIS_LIST}"
                    ));
                }
            };
            if !faults.contains(&kind) {
                faults.push(kind);
            }
        }
        Ok(NemesisSpec { faults })
    }
}

impl NemesisSpec {
    /// `kill+pause`: the spec in test names and store paths.
    pub fn name(&self) -> String {
        self.joined("+")
    }

    /// The value of `--nemesis` that gives this spec.
    pub fn flag(&self) -> String {
        self.joined(",")
    }

    fn joined(&self, separator: &str) -> String {
        if self.faults.is_empty() {
            return "none".to_string();
        }
        self.faults
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(separator)
    }

    /// The network faults this nemesis injects, which decide the fabric.
    pub fn net_needs(&self) -> NetNeeds {
        NetNeeds {
            partition: self.faults.contains(&FaultKind::Partition),
            loss: self.faults.contains(&FaultKind::Loss),
            delay: self.faults.contains(&FaultKind::Delay),
            bandwidth: self.faults.contains(&FaultKind::Bandwidth),
        }
    }

    /// Says which requested fault the target cannot perform, in one line. Network faults
    /// are the fabric's, which every target can sit behind.
    pub fn check_capabilities(&self, db: &dyn Db, shapes: &[Shape]) -> Result<(), String> {
        for fault in &self.faults {
            let (has, what) = match fault {
                FaultKind::Kill => (db.kill().is_some(), "kill and restart nodes (Kill)"),
                FaultKind::Pause => (db.pause().is_some(), "pause nodes (Pause)"),
                FaultKind::Clock => (db.clock().is_some(), "skew node clocks (Clock)"),
                FaultKind::Member => (
                    db.member().is_some(),
                    "wipe a node and let it rejoin (Member)",
                ),
                FaultKind::Partition => (
                    db.primary().is_some() || shapes.iter().any(|s| *s != Shape::Primaries),
                    "name its primaries for --partition-shapes primaries (Primary)",
                ),
                FaultKind::Loss | FaultKind::Delay | FaultKind::Bandwidth => (true, ""),
            };
            if !has {
                return Err(format!(
                    "--nemesis {}: the target cannot {what}; choose another fault",
                    fault.as_str()
                ));
            }
        }
        Ok(())
    }
}

/// Parses `--partition-shapes`: a comma list of shapes.
pub fn parse_shapes(s: &str) -> Result<Vec<Shape>, String> {
    let mut out = Vec::new();
    for name in s.split(',') {
        let shape: Shape = name.trim().parse()?;
        if !out.contains(&shape) {
            out.push(shape);
        }
    }
    if out.is_empty() {
        return Err("expected at least one partition shape".into());
    }
    Ok(out)
}

/// Checks, in one line, that `--grudge` and the `grudge` partition shape come together
/// with the partition fault, and that the grudge names only nodes of the cluster.
pub fn check_grudge(
    spec: &NemesisSpec,
    shapes: &[Shape],
    grudge: Option<&GrudgeSpec>,
    nodes: &[String],
) -> Result<(), String> {
    let shaped = shapes.contains(&Shape::Grudge);
    match grudge {
        None if shaped => {
            Err("--partition-shapes grudge needs --grudge SPEC, e.g. --grudge \"n1,n2|n3\"".into())
        }
        None => Ok(()),
        Some(g) if !shaped => Err(format!(
            "--grudge {:?} is only used by the grudge partition shape; add grudge to --partition-shapes",
            g.as_str()
        )),
        Some(g) if !spec.faults.contains(&FaultKind::Partition) => Err(format!(
            "--grudge {:?} needs --nemesis partition",
            g.as_str()
        )),
        Some(g) => g.grudge(nodes).map(|_| ()),
    }
}

/// The `--nemesis-schedule` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// A gap of half an interval, then a fault of half an interval, and again.
    #[default]
    Interval,
    /// Faults drawn from the listed ones, with durations and gaps drawn from the seed.
    Random,
}

impl Schedule {
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Interval => "interval",
            Schedule::Random => "random",
        }
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Schedule, String> {
        match s {
            "interval" => Ok(Schedule::Interval),
            "random" => Ok(Schedule::Random),
            other => Err(format!(
                "unknown nemesis schedule {other:?}; expected interval or random"
            )),
        }
    }
}

/// One fault of the random schedule: `gap` after the previous fault healed (or after the
/// quiet period), `kind` starts, and heals `duration` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub gap: Duration,
    pub kind: FaultKind,
    pub duration: Duration,
}

/// The random schedule: an endless, seeded stream of [`Planned`] faults. Kinds are drawn
/// evenly from the listed faults; gaps and durations each evenly from a tenth to nine tenths
/// of the interval, so that on average a fault starts every interval, as in the interval
/// schedule, but no two runs of different seeds keep the same rhythm. It has its own random
/// stream, apart from the one that picks each fault's nodes and shape, so the plan alone is
/// a function of the seed (which the run loop's timing cannot disturb).
#[derive(Debug)]
pub struct RandomSchedule {
    rng: ChaCha8Rng,
    faults: Vec<FaultKind>,
    interval: Duration,
}

impl RandomSchedule {
    pub fn new(config: &NemesisConfig) -> RandomSchedule {
        RandomSchedule {
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7363_6865_6475_6c65),
            faults: config.spec.faults.clone(),
            interval: config.interval,
        }
    }

    /// The next fault, or `None` when no fault is listed.
    pub fn next_fault(&mut self) -> Option<Planned> {
        let kind = *self.faults.choose(&mut self.rng)?;
        let interval_s = self.interval.as_secs_f64();
        let gap = Duration::from_secs_f64(self.rng.random_range(0.1..=0.9) * interval_s);
        let duration = Duration::from_secs_f64(self.rng.random_range(0.1..=0.9) * interval_s);
        Some(Planned {
            gap,
            kind,
            duration,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub spec: NemesisSpec,
    /// Time between the starts of two faults; each fault lasts half of it. With the random
    /// schedule, the mean time between the starts.
    pub interval: Duration,
    pub seed: u64,
    pub schedule: Schedule,
    /// The schedule begins this long after the nemesis starts (with the run).
    pub quiet_period: Duration,
    /// Shapes a partition picks from.
    pub shapes: Vec<Shape>,
    /// The cut of the `grudge` shape.
    pub grudge: Option<GrudgeSpec>,
    /// What the bandwidth fault leaves each way, in kilobits per second.
    pub bandwidth_kbit: u64,
    /// Share of packets the loss fault drops, in percent.
    pub loss_percent: f64,
    /// What the delay fault adds to each direction: `delay_ms ± jitter_ms`.
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// Largest clock bump, in either direction.
    pub clock_bump_max_ms: i64,
}

impl NemesisConfig {
    pub fn new(spec: NemesisSpec, interval: Duration, seed: u64) -> NemesisConfig {
        NemesisConfig {
            spec,
            interval,
            seed,
            schedule: Schedule::Interval,
            quiet_period: Duration::ZERO,
            shapes: Shape::ALL.to_vec(),
            grudge: None,
            bandwidth_kbit: 1000,
            loss_percent: 20.0,
            delay_ms: 100,
            jitter_ms: 50,
            clock_bump_max_ms: 60_000,
        }
    }
}

/// Runs the fault schedule until `faults_end` (or a stop request), then heals what is still
/// broken. Returns the number of faults injected.
pub async fn run(
    db: Arc<dyn Db>,
    fabric: &Fabric,
    recorder: &Recorder,
    config: &NemesisConfig,
    faults_end: Instant,
    mut stop: watch::Receiver<bool>,
) -> usize {
    if config.spec.faults.is_empty() {
        return 0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x006e_656d_6573_6973);
    let mut random = RandomSchedule::new(config);
    let half = config.interval / 2;
    let mut quiet = config.quiet_period;
    let mut injected = 0;
    let nodes = db.nodes();
    let mut ctx = Ctx {
        db,
        fabric,
        recorder,
        config,
        nodes,
    };
    // Bounded by `faults_end`: every pass sleeps a gap of at least a tenth of an interval.
    loop {
        let (gap, planned_kind, duration) = match config.schedule {
            Schedule::Interval => (half, None, half),
            Schedule::Random => match random.next_fault() {
                Some(p) => (p.gap, Some(p.kind), p.duration),
                None => break,
            },
        };
        let gap = gap + std::mem::take(&mut quiet);
        if !sleep_until(Instant::now() + gap, faults_end, &mut stop).await {
            break;
        }
        // The interval schedule draws its kind here, from the stream that also picks the
        // fault's nodes, as it always has: a seed repeats the schedules recorded before.
        let kind = planned_kind
            .unwrap_or_else(|| config.spec.faults[rng.random_range(0..config.spec.faults.len())]);
        let active = ctx.start(kind, &mut rng).await;
        injected += 1;
        // The fault lasts its duration, or until the end of the fault phase.
        let _ = sleep_until(Instant::now() + duration, faults_end, &mut stop).await;
        ctx.heal(active).await;
    }
    injected
}

/// A fault that is in force, and what healing it takes.
#[derive(Debug)]
enum Active {
    Killed(String),
    Paused(String),
    Partition(Option<NetFault>),
    Loss(Option<NetFault>),
    Delay(Option<NetFault>),
    Bandwidth(Option<NetFault>),
    Clock {
        node: String,
        strobe: Option<StrobeTask>,
    },
    /// A wipe is over when its rejoin is: nothing to heal.
    Done,
}

/// Flips a node's clock back and forth until dropped.
#[derive(Debug)]
struct StrobeTask(tokio::task::JoinHandle<()>);

impl Drop for StrobeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Ctx<'a> {
    db: Arc<dyn Db>,
    fabric: &'a Fabric,
    recorder: &'a Recorder,
    config: &'a NemesisConfig,
    nodes: Vec<String>,
}

impl Ctx<'_> {
    fn record(
        &self,
        f: &str,
        kind: OpType,
        value: Value,
        node: Option<&str>,
        error: Option<String>,
    ) {
        self.recorder.record(Event {
            process: Process::Nemesis,
            kind,
            f: F::Other(f.to_string()),
            key: None,
            value,
            node: node.map(str::to_string),
            error,
        });
    }

    /// Records the invoke, performs `action`, records the completion as `info` with the
    /// error if it failed.
    async fn step<T>(
        &self,
        f: &str,
        value: Value,
        node: Option<&str>,
        action: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> Option<T> {
        self.record(f, OpType::Invoke, value.clone(), node, None);
        let result = action.await;
        let (out, error) = match result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        self.record(f, OpType::Info, value, node, error);
        out
    }

    /// A random node, or (half the time, when the target can say) the current primary.
    async fn pick_node(&self, rng: &mut ChaCha8Rng) -> String {
        let random_node = self.nodes[rng.random_range(0..self.nodes.len())].clone();
        if !rng.random_bool(0.5) {
            return random_node;
        }
        match self.db.primary() {
            Some(p) => p
                .primaries()
                .await
                .into_iter()
                .next()
                .unwrap_or(random_node),
            None => random_node,
        }
    }

    /// One node, a majority, or every node, for packet faults (Jepsen's targets).
    fn pick_targets(&self, rng: &mut ChaCha8Rng) -> Vec<String> {
        let mut nodes = self.nodes.clone();
        let count = match rng.random_range(0..3) {
            0 => 1,
            1 => nodes.len() / 2 + 1,
            _ => nodes.len(),
        };
        nodes.sort();
        let mut picked: Vec<String> = nodes.choose_multiple(rng, count).cloned().collect();
        picked.sort();
        picked
    }

    async fn start(&mut self, kind: FaultKind, rng: &mut ChaCha8Rng) -> Active {
        match kind {
            FaultKind::Kill => {
                let node = self.pick_node(rng).await;
                let action = async {
                    match self.db.kill() {
                        Some(k) => k.kill(&node).await,
                        None => Err(anyhow::anyhow!("the target cannot kill")),
                    }
                };
                self.step("kill", Value::Str(node.clone()), Some(&node), action)
                    .await;
                Active::Killed(node)
            }
            FaultKind::Pause => {
                let node = self.pick_node(rng).await;
                let action = async {
                    match self.db.pause() {
                        Some(p) => p.pause(&node).await,
                        None => Err(anyhow::anyhow!("the target cannot pause")),
                    }
                };
                self.step("pause", Value::Str(node.clone()), Some(&node), action)
                    .await;
                Active::Paused(node)
            }
            FaultKind::Partition => {
                let shape = *self
                    .config
                    .shapes
                    .choose(rng)
                    .unwrap_or(&Shape::RandomHalves);
                let primaries = match (shape, self.db.primary()) {
                    (Shape::Primaries, Some(p)) => p.primaries().await,
                    _ => Vec::new(),
                };
                let g = match (shape, &self.config.grudge) {
                    (Shape::Grudge, Some(spec)) => spec.grudge(&self.nodes),
                    (Shape::Grudge, None) => Err("the grudge shape needs --grudge".to_string()),
                    _ => Ok(grudge::grudge(shape, &self.nodes, &primaries, rng)),
                };
                let cut = match &g {
                    Ok(g) => grudge::describe(g, &self.nodes),
                    Err(_) => grudge::describe(&grudge::Grudge::new(), &self.nodes),
                };
                let value = map([
                    ("shape", Value::Str(shape.as_str().into())),
                    ("cut", Value::Str(cut)),
                ]);
                let fault = self
                    .step("start-partition", value, None, async {
                        self.fabric.partition(&g.map_err(anyhow::Error::msg)?)
                    })
                    .await;
                Active::Partition(fault)
            }
            FaultKind::Loss => {
                let targets = self.pick_targets(rng);
                let percent = self.config.loss_percent;
                let value = map([
                    ("nodes", list(&targets)),
                    ("percent", Value::Int(percent.round() as i64)),
                ]);
                let fault = self
                    .step("start-loss", value, None, async {
                        self.fabric.loss(&targets, percent)
                    })
                    .await;
                Active::Loss(fault)
            }
            FaultKind::Delay => {
                let targets = self.pick_targets(rng);
                let (d, j) = (self.config.delay_ms, self.config.jitter_ms);
                let value = map([
                    ("nodes", list(&targets)),
                    ("delay_ms", Value::Int(d as i64)),
                    ("jitter_ms", Value::Int(j as i64)),
                ]);
                let fault = self
                    .step("start-delay", value, None, async {
                        self.fabric.delay(&targets, d, j)
                    })
                    .await;
                Active::Delay(fault)
            }
            FaultKind::Bandwidth => {
                let targets = self.pick_targets(rng);
                let kbit = self.config.bandwidth_kbit;
                let value = map([
                    ("nodes", list(&targets)),
                    ("kbit", Value::Int(i64::try_from(kbit).unwrap_or(i64::MAX))),
                ]);
                let fault = self
                    .step("start-bandwidth", value, None, async {
                        self.fabric.bandwidth(&targets, kbit)
                    })
                    .await;
                Active::Bandwidth(fault)
            }
            FaultKind::Clock => {
                let node = self.pick_node(rng).await;
                let max = self.config.clock_bump_max_ms.max(1);
                let magnitude = rng.random_range(max / 10 + 1..=max);
                let delta = if rng.random_bool(0.5) {
                    magnitude
                } else {
                    -magnitude
                };
                if rng.random_bool(0.5) {
                    let value = map([
                        ("node", Value::Str(node.clone())),
                        ("delta_ms", Value::Int(delta)),
                    ]);
                    let action = async {
                        match self.db.clock() {
                            Some(c) => c.bump_clock(&node, delta).await,
                            None => Err(anyhow::anyhow!("the target has no clock to bump")),
                        }
                    };
                    self.step("bump-clock", value, Some(&node), action).await;
                    Active::Clock { node, strobe: None }
                } else {
                    let period_ms = 50;
                    let value = map([
                        ("node", Value::Str(node.clone())),
                        ("delta_ms", Value::Int(delta)),
                        ("period_ms", Value::Int(period_ms)),
                    ]);
                    let strobe = self
                        .step("strobe-clock", value, Some(&node), async {
                            strobe(Arc::clone(&self.db), &node, delta, period_ms as u64)
                        })
                        .await;
                    Active::Clock { node, strobe }
                }
            }
            FaultKind::Member => {
                let node = self.pick_node(rng).await;
                let action = async {
                    match self.db.member() {
                        Some(m) => m.wipe_and_rejoin(&node).await,
                        None => Err(anyhow::anyhow!("the target cannot wipe a member")),
                    }
                };
                self.step("wipe", Value::Str(node.clone()), Some(&node), action)
                    .await;
                Active::Done
            }
        }
    }

    async fn heal(&mut self, active: Active) {
        match active {
            Active::Killed(node) => {
                let action = async {
                    match self.db.kill() {
                        Some(k) => k.restart(&node).await,
                        None => Ok(()),
                    }
                };
                self.step("start", Value::Str(node.clone()), Some(&node), action)
                    .await;
            }
            Active::Paused(node) => {
                let action = async {
                    match self.db.pause() {
                        Some(p) => p.resume(&node).await,
                        None => Ok(()),
                    }
                };
                self.step("resume", Value::Str(node.clone()), Some(&node), action)
                    .await;
            }
            Active::Partition(fault) => self.heal_net("stop-partition", fault).await,
            Active::Loss(fault) => self.heal_net("stop-loss", fault).await,
            Active::Delay(fault) => self.heal_net("stop-delay", fault).await,
            Active::Bandwidth(fault) => self.heal_net("stop-bandwidth", fault).await,
            Active::Clock { node, strobe } => {
                drop(strobe);
                let action = async {
                    match self.db.clock() {
                        Some(c) => c.reset_clock(&node).await,
                        None => Ok(()),
                    }
                };
                self.step("reset-clock", Value::Str(node.clone()), Some(&node), action)
                    .await;
            }
            Active::Done => {}
        }
    }

    async fn heal_net(&self, f: &str, fault: Option<NetFault>) {
        self.step(f, Value::Nil, None, async move {
            if let Some(fault) = fault {
                fault.heal();
            }
            Ok(())
        })
        .await;
    }
}

/// Starts flipping `node`'s clock between `delta_ms` off and its normal time every
/// `period_ms`, until the returned task is dropped (the heal then resets the clock).
fn strobe(
    db: Arc<dyn Db>,
    node: &str,
    delta_ms: i64,
    period_ms: u64,
) -> anyhow::Result<StrobeTask> {
    if db.clock().is_none() {
        anyhow::bail!("the target has no clock to strobe");
    }
    let node = node.to_string();
    let task = tokio::spawn(async move {
        let mut sign = 1;
        // Bounded by the fault's lifetime: the heal aborts the task.
        loop {
            if let Some(c) = db.clock() {
                let _ = c.bump_clock(&node, sign * delta_ms).await;
            }
            sign = -sign;
            tokio::time::sleep(Duration::from_millis(period_ms)).await;
        }
    });
    Ok(StrobeTask(task))
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn list(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| Value::Str(s.clone())).collect())
}

/// Sleeps until `t`; returns false (early) if `end` comes first or a stop is requested.
async fn sleep_until(t: Instant, end: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    let wake = t.min(end);
    tokio::select! {
        () = tokio::time::sleep_until(wake) => t <= end,
        _ = stop.wait_for(|s| *s) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn nemesis_flag_parses_lists_and_rejects_unknown_faults() {
        assert_eq!("none".parse::<NemesisSpec>().unwrap().faults, vec![]);
        assert_eq!(
            "kill,pause".parse::<NemesisSpec>().unwrap().faults,
            vec![FaultKind::Kill, FaultKind::Pause]
        );
        assert_eq!(
            "kill,pause".parse::<NemesisSpec>().unwrap().name(),
            "kill+pause"
        );
        let all = "kill,pause,partition,clock,member,wipe,loss,delay,bandwidth"
            .parse::<NemesisSpec>()
            .unwrap();
        assert_eq!(all.faults, FaultKind::ALL.to_vec(), "wipe is member");
        assert_eq!(
            all.net_needs(),
            NetNeeds {
                partition: true,
                loss: true,
                delay: true,
                bandwidth: true,
            }
        );
        let err = "kill,explode".parse::<NemesisSpec>().unwrap_err();
        assert!(
            err.contains("explode") && err.contains("kill, pause"),
            "{err}"
        );
        assert_eq!(
            parse_shapes("halves,one,halves").unwrap(),
            vec![Shape::Halves, Shape::One]
        );
        assert!(parse_shapes("halves,zigzag").is_err());
        assert_eq!(
            parse_shapes("minority,majority,grudge").unwrap(),
            vec![Shape::Minority, Shape::Majority, Shape::Grudge]
        );
        assert_eq!("random".parse::<Schedule>(), Ok(Schedule::Random));
        assert!(
            "bursty"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("interval")
        );
    }

    #[test]
    fn grudge_flags_must_come_together_and_name_cluster_nodes() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let partition: NemesisSpec = "partition".parse().unwrap();
        let spec: GrudgeSpec = "n1,n2|n3".parse().unwrap();
        let grudge = [Shape::Grudge];
        assert_eq!(
            check_grudge(&partition, &grudge, Some(&spec), &nodes),
            Ok(())
        );
        assert_eq!(check_grudge(&partition, &Shape::ALL, None, &nodes), Ok(()));
        for (nemesis, shapes, g, needle) in [
            ("partition", &grudge[..], None, "needs --grudge"),
            ("partition", &Shape::ALL[..], Some(&spec), "add grudge"),
            ("kill", &grudge[..], Some(&spec), "--nemesis partition"),
        ] {
            let err = check_grudge(&nemesis.parse().unwrap(), shapes, g, &nodes).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let stranger: GrudgeSpec = "n1|n7".parse().unwrap();
        let err = check_grudge(&partition, &grudge, Some(&stranger), &nodes).unwrap_err();
        assert!(err.contains("no node n7"), "{err}");
    }

    fn plan(config: &NemesisConfig, n: usize) -> Vec<Planned> {
        let mut schedule = RandomSchedule::new(config);
        (0..n).map(|_| schedule.next_fault().unwrap()).collect()
    }

    #[test]
    fn the_random_schedule_is_a_function_of_the_seed() {
        let spec: NemesisSpec = "kill,partition,bandwidth".parse().unwrap();
        let interval = Duration::from_secs(2);
        let config = NemesisConfig::new(spec.clone(), interval, 7);
        let first = plan(&config, 200);
        assert_eq!(first, plan(&config, 200), "same seed, same schedule");
        let other = plan(&NemesisConfig::new(spec.clone(), interval, 8), 200);
        assert_ne!(first, other, "another seed, another schedule");
        for p in &first {
            assert!(spec.faults.contains(&p.kind));
            for d in [p.gap, p.duration] {
                assert!(d >= interval / 10 && d <= interval * 9 / 10, "{p:?}");
            }
        }
        for kind in &spec.faults {
            assert!(
                first.iter().any(|p| p.kind == *kind),
                "{kind:?} never drawn"
            );
        }
        let durations: BTreeSet<Duration> = first.iter().map(|p| p.duration).collect();
        assert!(durations.len() > 100, "durations vary");
        // On average a fault starts every interval, as with the interval schedule.
        let mean_period_s = first
            .iter()
            .map(|p| (p.gap + p.duration).as_secs_f64())
            .sum::<f64>()
            / first.len() as f64;
        assert!((mean_period_s - 2.0).abs() < 0.2, "{mean_period_s}");
        assert!(
            RandomSchedule::new(&NemesisConfig::new(NemesisSpec::default(), interval, 7))
                .next_fault()
                .is_none()
        );
    }

    /// A target with no optional capability at all.
    struct Bare;

    #[async_trait::async_trait]
    impl Db for Bare {
        fn nodes(&self) -> Vec<String> {
            vec!["n1".into()]
        }
        async fn start(&self, _: Duration) -> anyhow::Result<()> {
            Ok(())
        }
        async fn teardown(&self) {}
        fn client(&self, _: u64) -> Box<dyn targets::Client> {
            unreachable!("no clients in this test")
        }
    }

    #[test]
    fn a_fault_the_target_lacks_is_named_in_one_line() {
        let all = Shape::ALL.to_vec();
        for (flag, needle) in [
            ("kill", "(Kill)"),
            ("pause", "(Pause)"),
            ("clock", "(Clock)"),
            ("wipe", "(Member)"),
        ] {
            let spec: NemesisSpec = flag.parse().unwrap();
            let err = spec.check_capabilities(&Bare, &all).unwrap_err();
            assert!(err.contains(needle) && !err.contains('\n'), "{err}");
        }
        let partition: NemesisSpec = "partition,loss,delay".parse().unwrap();
        assert_eq!(partition.check_capabilities(&Bare, &all), Ok(()));
        let err = partition
            .check_capabilities(&Bare, &[Shape::Primaries])
            .unwrap_err();
        assert!(err.contains("(Primary)"), "{err}");
    }

    /// A target whose faults do nothing, so that a whole schedule runs in paused time.
    struct Inert;

    #[async_trait::async_trait]
    impl Db for Inert {
        fn nodes(&self) -> Vec<String> {
            ["n1", "n2", "n3"].map(String::from).to_vec()
        }
        async fn start(&self, _: Duration) -> anyhow::Result<()> {
            Ok(())
        }
        async fn teardown(&self) {}
        fn client(&self, _: u64) -> Box<dyn targets::Client> {
            unreachable!("no clients in this test")
        }
        fn kill(&self) -> Option<&dyn targets::Kill> {
            Some(self)
        }
        fn pause(&self) -> Option<&dyn targets::Pause> {
            Some(self)
        }
        fn primary(&self) -> Option<&dyn targets::Primary> {
            Some(self)
        }
    }

    #[async_trait::async_trait]
    impl targets::Kill for Inert {
        async fn kill(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        async fn restart(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl targets::Pause for Inert {
        async fn pause(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        async fn resume(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl targets::Primary for Inert {
        async fn primaries(&self) -> Vec<String> {
            vec!["n2".into()]
        }
    }

    /// Runs a schedule for `phase` (of paused time) against [`Inert`] behind the proxy and
    /// returns what it recorded, without indexes and times, and how many faults it injected.
    async fn schedule_ops(
        schedule: Schedule,
        seed: u64,
        quiet_period: Duration,
        phase: Duration,
    ) -> (Vec<(F, OpType, Value, Option<String>)>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(crate::ledger::Ledger::create(dir.path()).unwrap());
        let spec: NemesisSpec = "kill,pause,partition,loss,bandwidth".parse().unwrap();
        let fabric = Fabric::build(
            crate::fabric::NetMode::Proxy,
            spec.net_needs(),
            &Inert.nodes(),
            ledger,
            dir.path(),
            seed,
        )
        .await
        .unwrap();
        let path = dir.path().join("history.jsonl");
        let (recorder, writer) = Recorder::create(&path, std::time::Instant::now()).unwrap();
        let config = NemesisConfig {
            schedule,
            quiet_period,
            shapes: Shape::NAMED.to_vec(),
            grudge: Some("n1>n3;n2|n3".parse().unwrap()),
            ..NemesisConfig::new(spec, Duration::from_secs(2), seed)
        };
        let (_stop_tx, stop) = watch::channel(false);
        let end = Instant::now() + phase;
        let injected = run(Arc::new(Inert), &fabric, &recorder, &config, end, stop).await;
        drop(recorder);
        writer.finish().unwrap();
        let ops = histories::jsonl::read_file(&path)
            .unwrap()
            .history
            .ops()
            .iter()
            .map(|op| (op.f.clone(), op.kind, op.value.clone(), op.error.clone()))
            .collect();
        (ops, injected)
    }

    #[tokio::test(start_paused = true)]
    async fn a_seed_repeats_every_fault_of_both_schedules() {
        let minute = Duration::from_secs(60);
        for schedule in [Schedule::Interval, Schedule::Random] {
            let (first, injected) = schedule_ops(schedule, 3, Duration::ZERO, minute).await;
            assert!(
                injected >= 20,
                "{schedule:?}: {injected} faults in a minute"
            );
            assert_eq!(
                first.len(),
                4 * injected,
                "an invoke and an info per start and heal"
            );
            assert!(
                first.iter().all(|(_, _, _, error)| error.is_none()),
                "{schedule:?}: {first:#?}"
            );
            let again = schedule_ops(schedule, 3, Duration::ZERO, minute).await.0;
            assert_eq!(first, again, "{schedule:?}: same seed, same faults");
            let other = schedule_ops(schedule, 4, Duration::ZERO, minute).await.0;
            assert_ne!(first, other, "{schedule:?}: another seed, other faults");
            for f in ["start-bandwidth", "start-partition", "kill"] {
                assert!(
                    first.iter().any(|(op_f, ..)| op_f.as_str() == f),
                    "{schedule:?}: no {f}"
                );
            }
            // The quiet period holds off every fault: none when it outlasts the phase.
            let quiet = schedule_ops(schedule, 3, minute, minute).await;
            assert_eq!(quiet.1, 0, "{schedule:?}: {:?}", quiet.0);
        }
    }
}

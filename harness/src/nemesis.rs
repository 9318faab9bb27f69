//! The nemesis: a seeded schedule of faults against the cluster and its network. Each fault
//! is recorded in the history as `nemesis` operations: an invoke/info pair when it starts
//! (`kill`, `pause`, `start-partition`, `bump-clock` / `strobe-clock`, `start-loss`,
//! `start-delay`, `wipe`) and another when it heals (`start`, `resume`, `stop-partition`,
//! `reset-clock`, `stop-loss`, `stop-delay`; a wipe heals itself by rejoining). One fault is
//! active at a time; everything is healed before the run's final recovery window, and network
//! faults are guards that heal on drop even when the controller unwinds.

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

use crate::fabric::grudge::{self, Shape};
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
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Clock,
        FaultKind::Member,
        FaultKind::Loss,
        FaultKind::Delay,
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
        }
    }
}

/// The nemesis operation names that start a fault, and the ones that end one. A `wipe`
/// both starts and ends its fault (its completion is the rejoin).
pub const START_FS: [&str; 8] = [
    "kill",
    "pause",
    "start-partition",
    "bump-clock",
    "strobe-clock",
    "start-loss",
    "start-delay",
    "wipe",
];
pub const HEAL_FS: [&str; 6] = [
    "start",
    "resume",
    "stop-partition",
    "reset-clock",
    "stop-loss",
    "stop-delay",
];

const NEMESIS_LIST: &str = "kill, pause, partition, clock, member (or wipe), loss, delay";

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
                FaultKind::Loss | FaultKind::Delay => (true, ""),
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

#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub spec: NemesisSpec,
    /// Time between the starts of two faults; each fault lasts half of it.
    pub interval: Duration,
    pub seed: u64,
    /// Shapes a partition picks from.
    pub shapes: Vec<Shape>,
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
            shapes: Shape::ALL.to_vec(),
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
    let half = config.interval / 2;
    let mut injected = 0;
    let nodes = db.nodes();
    let mut ctx = Ctx {
        db,
        fabric,
        recorder,
        config,
        nodes,
    };
    loop {
        if !sleep_until(Instant::now() + half, faults_end, &mut stop).await {
            break;
        }
        let kind = config.spec.faults[rng.random_range(0..config.spec.faults.len())];
        let active = ctx.start(kind, &mut rng).await;
        injected += 1;
        // The fault lasts half an interval, or until the end of the fault phase.
        let _ = sleep_until(Instant::now() + half, faults_end, &mut stop).await;
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
                let g = grudge::grudge(shape, &self.nodes, &primaries, rng);
                let value = map([
                    ("shape", Value::Str(shape.as_str().into())),
                    ("cut", Value::Str(grudge::describe(&g, &self.nodes))),
                ]);
                let fault = self
                    .step("start-partition", value, None, async {
                        self.fabric.partition(&g)
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
        let all = "kill,pause,partition,clock,member,wipe,loss,delay"
            .parse::<NemesisSpec>()
            .unwrap();
        assert_eq!(all.faults, FaultKind::ALL.to_vec(), "wipe is member");
        assert_eq!(
            all.net_needs(),
            NetNeeds {
                partition: true,
                loss: true,
                delay: true
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
}

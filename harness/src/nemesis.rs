//! The nemesis: a seeded schedule of faults against the cluster, each recorded in the history
//! as a `nemesis` invoke/info pair when it starts and when it heals, and every fault healed
//! before the run's final recovery window.

use std::str::FromStr;
use std::time::Duration;

use histories::{F, OpType, Process, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use targets::Db;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::recorder::{Event, Recorder};

/// One kind of fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// SIGKILL a node, restart it on its data when the fault heals.
    Kill,
    /// SIGSTOP a node, SIGCONT it when the fault heals.
    Pause,
}

impl FaultKind {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            FaultKind::Kill => ("kill", "start"),
            FaultKind::Pause => ("pause", "resume"),
        }
    }
}

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
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; expected none or a comma list of kill, pause"
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
    pub fn name(&self) -> String {
        if self.faults.is_empty() {
            return "none".to_string();
        }
        self.faults
            .iter()
            .map(|f| f.names().0)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The value of `--nemesis` that gives this spec.
    pub fn flag(&self) -> String {
        if self.faults.is_empty() {
            return "none".to_string();
        }
        self.faults
            .iter()
            .map(|f| f.names().0)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Says which requested fault the target cannot perform.
    pub fn check_capabilities(&self, db: &dyn Db) -> Result<(), String> {
        for fault in &self.faults {
            let has = match fault {
                FaultKind::Kill => db.kill().is_some(),
                FaultKind::Pause => db.pause().is_some(),
            };
            if !has {
                return Err(format!(
                    "the target cannot {} nodes; choose another --nemesis",
                    fault.names().0
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub spec: NemesisSpec,
    /// Time between the starts of two faults; each fault lasts half of it.
    pub interval: Duration,
    pub seed: u64,
}

/// Runs the fault schedule until `faults_end` (or a stop request), then heals what is still
/// broken. Returns the number of faults injected.
pub async fn run(
    db: &dyn Db,
    recorder: &Recorder,
    config: &NemesisConfig,
    faults_end: Instant,
    mut stop: watch::Receiver<bool>,
) -> usize {
    if config.spec.faults.is_empty() {
        return 0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x006e_656d_6573_6973);
    let nodes = db.nodes();
    let half = config.interval / 2;
    let mut injected = 0;
    loop {
        if !sleep_until(Instant::now() + half, faults_end, &mut stop).await {
            break;
        }
        let kind = config.spec.faults[rng.random_range(0..config.spec.faults.len())];
        let random_node = nodes[rng.random_range(0..nodes.len())].clone();
        let at_leader = rng.random_bool(0.5);
        let node = if at_leader {
            match db.primary() {
                Some(p) => p
                    .primaries()
                    .await
                    .into_iter()
                    .next()
                    .unwrap_or(random_node),
                None => random_node,
            }
        } else {
            random_node
        };
        apply(db, recorder, kind, &node, true).await;
        injected += 1;
        // The fault lasts half an interval, or until the end of the fault phase.
        let _ = sleep_until(Instant::now() + half, faults_end, &mut stop).await;
        apply(db, recorder, kind, &node, false).await;
    }
    injected
}

/// Sleeps until `t`; returns false (early) if `end` comes first or a stop is requested.
async fn sleep_until(t: Instant, end: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    let wake = t.min(end);
    tokio::select! {
        () = tokio::time::sleep_until(wake) => t <= end,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn apply(db: &dyn Db, recorder: &Recorder, kind: FaultKind, node: &str, start: bool) {
    let (fault, heal) = kind.names();
    let f = F::Other(if start { fault } else { heal }.to_string());
    let event = |kind: OpType, error: Option<String>| Event {
        process: Process::Nemesis,
        kind,
        f: f.clone(),
        key: None,
        value: Value::Str(node.to_string()),
        node: Some(node.to_string()),
        error,
    };
    recorder.record(event(OpType::Invoke, None));
    let result = match (kind, start) {
        (FaultKind::Kill, true) => match db.kill() {
            Some(k) => k.kill(node).await,
            None => Err(anyhow::anyhow!("cannot kill")),
        },
        (FaultKind::Kill, false) => match db.kill() {
            Some(k) => k.restart(node).await,
            None => Err(anyhow::anyhow!("cannot restart")),
        },
        (FaultKind::Pause, true) => match db.pause() {
            Some(p) => p.pause(node).await,
            None => Err(anyhow::anyhow!("cannot pause")),
        },
        (FaultKind::Pause, false) => match db.pause() {
            Some(p) => p.resume(node).await,
            None => Err(anyhow::anyhow!("cannot resume")),
        },
    };
    recorder.record(event(OpType::Info, result.err().map(|e| format!("{e:#}"))));
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
        let err = "kill,explode".parse::<NemesisSpec>().unwrap_err();
        assert!(
            err.contains("explode") && err.contains("kill, pause"),
            "{err}"
        );
    }
}

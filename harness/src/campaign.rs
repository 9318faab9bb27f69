//! `splitbrain campaign FILE.toml`: a matrix of cluster configurations × nemeses × seeds,
//! each cell with the verdicts it is expected to give; a summary table, JUnit for the whole
//! campaign, and exit 1 if any run gave a verdict its cell did not expect.
//!
//! ```toml
//! name = "smoke"
//! test-count = 2            # runs per cell; seeds seed, seed+1, ... (--test-count overrides)
//! seed = 1
//! nemeses = ["none", "kill", "partition"]
//!
//! [run]                     # defaults for every cell: the flags of `splitbrain run`
//! time-limit = 8
//! nemesis-interval = 2
//!
//! [[configs]]
//! name = "sync-leader"
//! replication = "sync"
//! read-routing = "leader"
//! expect = { "*" = "valid" }
//!
//! [[configs]]
//! name = "async-any"
//! replication = "async"
//! read-routing = "any"
//! expect = { none = "valid", kill = "invalid", "*" = ["valid", "invalid"] }
//! ```
//!
//! `expect` maps a nemesis (as written in `nemeses`, or `*` for the others) to `valid`,
//! `invalid`, `unknown`, `any`, or a list of them; a cell without an expectation accepts
//! any verdict. Runs go one after another (they would compete for the machine otherwise);
//! Ctrl-C stops the campaign after healing and checking the run in progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use checkers::Validity;
use serde::Deserialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};
use tokio::sync::watch;

use crate::fabric::NetMode;
use crate::junit::{self, Case, Outcome, Suite};
use crate::matrix::{Expected, Matrix, RunFacts};
use crate::nemesis::{self, NemesisSpec};
use crate::run::{Replication, RunConfig, Workload};

/// The flags of `splitbrain campaign`.
#[derive(Debug, clap::Args)]
pub struct CampaignArgs {
    /// The campaign file (TOML).
    pub file: PathBuf,
    /// Runs per cell (overrides the file's `test-count`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub test_count: Option<u32>,
    /// First seed (overrides the file's `seed`); run k of a cell uses seed + k.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory where runs and the campaign's summary are stored.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// The refnode executable (default: beside splitbrain).
    #[arg(long, env = "SPLITBRAIN_REFNODE")]
    pub refnode_bin: Option<PathBuf>,
    /// No live progress line during runs.
    #[arg(long)]
    pub quiet: bool,
}

/// The campaign file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CampaignFile {
    pub name: String,
    #[serde(default = "one")]
    pub test_count: u32,
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// `--nemesis` values, e.g. `"none"`, `"kill"`, `"partition,clock"`.
    pub nemeses: Vec<String>,
    /// Defaults for every cell.
    #[serde(default)]
    pub run: RunOptions,
    pub configs: Vec<ConfigEntry>,
    /// Checker names to show as the columns of a guarantee matrix (rows = configs), each
    /// cell aggregating every run of its config; configs state `guarantees` to expect.
    #[serde(default)]
    pub columns: Vec<String>,
}

fn one() -> u32 {
    1
}

fn one_u64() -> u64 {
    1
}

/// The options of `splitbrain run` a campaign may set; missing ones take the run's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunOptions {
    pub nodes: Option<usize>,
    pub replication: Option<String>,
    pub failover: Option<String>,
    pub workload: Option<String>,
    pub read_routing: Option<String>,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub time_limit: Option<f64>,
    pub nemesis_interval: Option<f64>,
    pub op_timeout_ms: Option<u64>,
    pub check_time_limit: Option<f64>,
    pub net: Option<String>,
    pub partition_shapes: Option<String>,
    pub loss_percent: Option<f64>,
    pub delay_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub log: Option<String>,
    pub checkers: Option<String>,
    pub settle: Option<f64>,
    pub topology: Option<String>,
    pub conflict: Option<String>,
    pub home_leader_routing: Option<bool>,
    pub n: Option<usize>,
    pub w: Option<usize>,
    pub r: Option<usize>,
    pub read_repair: Option<bool>,
    pub anti_entropy: Option<bool>,
    pub sloppy_quorum: Option<bool>,
}

impl RunOptions {
    /// `self` with `over`'s values where it has them.
    fn merged(&self, over: &RunOptions) -> RunOptions {
        macro_rules! pick {
            ($($f:ident),*) => { RunOptions { $($f: over.$f.clone().or_else(|| self.$f.clone())),* } };
        }
        pick!(
            nodes,
            replication,
            failover,
            workload,
            read_routing,
            concurrency,
            rate,
            time_limit,
            nemesis_interval,
            op_timeout_ms,
            check_time_limit,
            net,
            partition_shapes,
            loss_percent,
            delay_ms,
            jitter_ms,
            log,
            checkers,
            settle,
            topology,
            conflict,
            home_leader_routing,
            n,
            w,
            r,
            read_repair,
            anti_entropy,
            sloppy_quorum
        )
    }

    /// Applies the options to `c`, checking them as the CLI would.
    fn apply(&self, c: &mut RunConfig) -> anyhow::Result<()> {
        if let Some(n) = self.nodes {
            if !(1..=9).contains(&n) {
                bail!("nodes must be 1 to 9, not {n}");
            }
            c.nodes = n;
        }
        if let Some(r) = &self.replication {
            c.replication = r.parse::<Replication>().map_err(|e| anyhow!(e))?;
        }
        if let Some(f) = &self.failover {
            c.failover = f.parse::<crate::run::Failover>().map_err(|e| anyhow!(e))?;
        }
        if let Some(w) = &self.workload {
            c.workload = w.parse::<Workload>().map_err(|e| anyhow!(e))?;
        }
        if let Some(r) = &self.read_routing {
            c.read_routing = r.parse().map_err(|e: String| anyhow!(e))?;
        }
        if let Some(n) = self.concurrency {
            if !(1..=1000).contains(&n) {
                bail!("concurrency must be 1 to 1000, not {n}");
            }
            c.concurrency = n;
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(anyhow!("{name} must be a positive number, not {v}"))
            }
        };
        if let Some(v) = self.rate {
            c.rate = positive("rate", v)?;
        }
        if let Some(v) = self.time_limit {
            c.time_limit = Duration::from_secs_f64(positive("time-limit", v)?);
        }
        if let Some(v) = self.nemesis_interval {
            c.nemesis_interval = Duration::from_secs_f64(positive("nemesis-interval", v)?);
        }
        if let Some(v) = self.check_time_limit {
            c.check_time_limit = Duration::from_secs_f64(positive("check-time-limit", v)?);
        }
        if let Some(v) = self.op_timeout_ms {
            c.op_timeout = Duration::from_millis(v.max(1));
        }
        if let Some(n) = &self.net {
            c.net = n.parse::<NetMode>().map_err(|e| anyhow!(e))?;
        }
        if let Some(s) = &self.partition_shapes {
            c.partition_shapes = nemesis::parse_shapes(s).map_err(|e| anyhow!(e))?;
        }
        if let Some(v) = self.loss_percent {
            if !(0.0..=100.0).contains(&v) {
                bail!("loss-percent must be 0 to 100, not {v}");
            }
            c.loss_percent = v;
        }
        if let Some(v) = self.delay_ms {
            c.delay_ms = v;
        }
        if let Some(v) = self.jitter_ms {
            c.jitter_ms = v;
        }
        if let Some(v) = &self.log {
            c.log = v.parse().map_err(|e: String| anyhow!(e))?;
        }
        if let Some(v) = &self.checkers {
            c.checkers = Some(crate::check::parse_checkers(v).map_err(|e| anyhow!(e))?);
        }
        if let Some(v) = self.settle {
            if !(v.is_finite() && v >= 0.0) {
                bail!("settle must be a number of seconds >= 0, not {v}");
            }
            c.settle = Duration::from_secs_f64(v);
        }
        let d = &mut c.design;
        let one_of = |name: &str, v: &str, allowed: &[&str]| {
            if allowed.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(anyhow!(
                    "unknown {name} {v:?}; expected one of {}",
                    allowed.join(", ")
                ))
            }
        };
        if let Some(v) = &self.topology {
            d.topology = one_of("topology", v, &["circular", "star", "all-to-all"])?;
        }
        if let Some(v) = &self.conflict {
            d.conflict = one_of("conflict", v, &["none", "lww", "highest-id", "siblings"])?;
        }
        macro_rules! copy {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { d.$f = v; })* };
        }
        copy!(
            home_leader_routing,
            n,
            w,
            r,
            read_repair,
            anti_entropy,
            sloppy_quorum
        );
        c.validate().map_err(|e| anyhow!(e))?;
        Ok(())
    }
}

/// One configuration of the matrix.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConfigEntry {
    pub name: String,
    /// Expected verdicts by nemesis (`*` for the nemeses not named).
    #[serde(default)]
    pub expect: BTreeMap<String, Expectation>,
    /// The nemeses of this config instead of the campaign's (e.g. only the faults under
    /// which a guarantee is claimed).
    #[serde(default)]
    pub nemeses: Option<Vec<String>>,
    /// Expected guarantee-matrix cells by column: `held`, `violated` or `any`.
    #[serde(default)]
    pub guarantees: BTreeMap<String, String>,
    #[serde(flatten)]
    pub options: RunOptionsFlat,
}

/// [`RunOptions`] inside a config entry (flattened next to `name` and `expect`; serde cannot
/// flatten a struct that denies unknown fields, so unknown keys are caught in [`parse`]).
pub type RunOptionsFlat = BTreeMap<String, toml::Value>;

/// What a cell may give: `"valid"`, `"invalid"`, `"unknown"`, `"any"` or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expectation {
    One(String),
    Many(Vec<String>),
}

impl Expectation {
    fn verdicts(&self) -> anyhow::Result<Vec<Validity>> {
        let names: Vec<&str> = match self {
            Expectation::One(s) => vec![s.as_str()],
            Expectation::Many(v) => v.iter().map(String::as_str).collect(),
        };
        let mut out = Vec::new();
        for n in names {
            match n {
                "valid" => out.push(Validity::True),
                "invalid" => out.push(Validity::False),
                "unknown" => out.push(Validity::Unknown),
                "any" => out.extend([Validity::True, Validity::False, Validity::Unknown]),
                other => bail!(
                    "unknown expected verdict {other:?}; expected valid, invalid, unknown or any"
                ),
            }
        }
        out.dedup();
        Ok(out)
    }
}

/// One cell of the matrix, ready to run.
#[derive(Debug, Clone)]
pub struct Cell {
    pub config: String,
    pub nemesis: String,
    pub base: RunConfig,
    /// Verdicts the cell accepts.
    pub expected: Vec<Validity>,
}

/// The cells of a campaign, in order, with run configurations as the CLI would build them.
pub fn parse(
    text: &str,
    refnode_bin: &Path,
    store: &Path,
) -> anyhow::Result<(CampaignFile, Vec<Cell>)> {
    let file: CampaignFile = toml::from_str(text).map_err(|e| anyhow!("{}", e.message()))?;
    if file.configs.is_empty() {
        bail!("no [[configs]]");
    }
    if file.nemeses.is_empty() {
        bail!("`nemeses` is empty");
    }
    for column in &file.columns {
        crate::check::parse_checkers(column).map_err(|e| anyhow!("columns: {e}"))?;
    }
    let mut cells = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for entry in &file.configs {
        if !names.insert(entry.name.clone()) {
            bail!("config {:?} appears twice", entry.name);
        }
        // Round-trip the flattened keys through RunOptions to reject unknown ones.
        let table: toml::Table = entry.options.clone().into_iter().collect();
        let over: RunOptions = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("config {:?}: {}", entry.name, e.message()))?;
        let options = file.run.merged(&over);
        let nemeses = entry.nemeses.as_ref().unwrap_or(&file.nemeses);
        if nemeses.is_empty() {
            bail!("config {:?}: `nemeses` is empty", entry.name);
        }
        for key in entry.expect.keys() {
            if key != "*" && !nemeses.contains(key) {
                bail!(
                    "config {:?} expects a verdict for nemesis {key:?}, which is not in `nemeses`",
                    entry.name
                );
            }
        }
        for (column, value) in &entry.guarantees {
            if !file.columns.contains(column) {
                bail!(
                    "config {:?} expects guarantee {column:?}, which is not in `columns`",
                    entry.name
                );
            }
            crate::matrix::Expected::parse(value)
                .map_err(|e| anyhow!("config {:?}: {e}", entry.name))?;
        }
        for nem in nemeses {
            let spec: NemesisSpec = nem.parse().map_err(|e: String| anyhow!("nemeses: {e}"))?;
            let mut base =
                RunConfig::new(refnode_bin.to_path_buf(), store.to_path_buf(), file.seed);
            base.nemesis = spec;
            options
                .apply(&mut base)
                .with_context(|| format!("config {:?}", entry.name))?;
            let expected = match entry.expect.get(nem).or_else(|| entry.expect.get("*")) {
                Some(e) => e
                    .verdicts()
                    .with_context(|| format!("config {:?}, nemesis {nem:?}", entry.name))?,
                None => vec![Validity::True, Validity::False, Validity::Unknown],
            };
            cells.push(Cell {
                config: entry.name.clone(),
                nemesis: nem.clone(),
                base,
                expected,
            });
        }
    }
    Ok((file, cells))
}

/// The result of one run of a cell.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub seed: u64,
    /// `None` when the run could not be set up (the error says why).
    pub valid: Option<Validity>,
    pub error: Option<String>,
    pub expected: bool,
    pub store: Option<PathBuf>,
    pub command: String,
    pub duration_s: f64,
    pub summary: String,
    /// Verdict per checker, for the guarantee matrix.
    pub checkers: BTreeMap<String, Validity>,
    /// The staleness checker's p99 lag of stale reads, in milliseconds.
    pub stale_p99_ms: Option<u64>,
    /// The most values one read returned, when the siblings checker ran.
    pub max_siblings: Option<u64>,
    /// Client operations the run recorded.
    pub ops: u64,
}

#[derive(Tabled)]
struct Row {
    config: String,
    nemesis: String,
    runs: usize,
    valid: usize,
    invalid: usize,
    unknown: usize,
    errors: usize,
    expected: String,
    result: String,
}

fn expected_text(v: &[Validity]) -> String {
    if v.len() == 3 {
        return "any".into();
    }
    v.iter()
        .map(|v| match v {
            Validity::True => "valid",
            Validity::False => "invalid",
            Validity::Unknown => "unknown",
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The summary table of a campaign.
pub fn summary_table(cells: &[(Cell, Vec<RunOutcome>)]) -> String {
    let rows: Vec<Row> = cells
        .iter()
        .map(|(cell, runs)| {
            let count = |v: Validity| runs.iter().filter(|r| r.valid == Some(v)).count();
            let unexpected = runs.iter().filter(|r| !r.expected).count();
            Row {
                config: cell.config.clone(),
                nemesis: cell.nemesis.clone(),
                runs: runs.len(),
                valid: count(Validity::True),
                invalid: count(Validity::False),
                unknown: count(Validity::Unknown),
                errors: runs.iter().filter(|r| r.valid.is_none()).count(),
                expected: expected_text(&cell.expected),
                result: if unexpected == 0 {
                    "ok".into()
                } else {
                    format!("UNEXPECTED ({unexpected})")
                },
            }
        })
        .collect();
    let mut t = Table::new(rows);
    t.with(Style::rounded());
    t.to_string()
}

/// The campaign's JUnit: a suite per cell, a case per run.
pub fn junit_suites(cells: &[(Cell, Vec<RunOutcome>)]) -> Vec<Suite> {
    cells
        .iter()
        .map(|(cell, runs)| {
            let name = format!("{}/{}", cell.config, cell.nemesis);
            Suite {
                name: name.clone(),
                time_s: runs.iter().map(|r| r.duration_s).sum(),
                properties: vec![("expected".into(), expected_text(&cell.expected))],
                cases: runs
                    .iter()
                    .map(|r| {
                        let outcome = match (&r.valid, &r.error) {
                            (None, err) => Outcome::Error {
                                message: format!(
                                    "the run could not be set up: {}",
                                    err.as_deref().unwrap_or("?")
                                ),
                                text: String::new(),
                            },
                            (Some(_), _) if r.expected => Outcome::Passed,
                            (Some(v), _) => Outcome::Failed {
                                message: format!(
                                    "unexpected verdict {v} (expected {})",
                                    expected_text(&cell.expected)
                                ),
                                text: r.summary.clone(),
                            },
                        };
                        Case {
                            name: format!("seed {}", r.seed),
                            classname: name.clone(),
                            time_s: r.duration_s,
                            outcome,
                            system_out: format!(
                                "store {}\nrepeat with: {}",
                                r.store
                                    .as_ref()
                                    .map_or("(none)".into(), |p| p.display().to_string()),
                                r.command
                            ),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Runs every cell `test_count` times; stops early when `stop` is set. Prints a line per run.
pub async fn run_cells(
    cells: &[Cell],
    test_count: u32,
    progress: bool,
    stop: watch::Receiver<bool>,
) -> Vec<(Cell, Vec<RunOutcome>)> {
    let total = cells.len() * test_count as usize;
    let mut done = 0;
    let mut out = Vec::new();
    for cell in cells {
        let mut runs = Vec::new();
        for k in 0..test_count {
            if *stop.borrow() {
                break;
            }
            done += 1;
            let mut config = cell.base.clone();
            config.seed = cell.base.seed.wrapping_add(u64::from(k));
            config.progress = progress;
            let command = config.command();
            let seed = config.seed;
            let outcome = match crate::run::run(config, stop.clone()).await {
                Ok(results) => {
                    let expected = cell.expected.contains(&results.valid);
                    RunOutcome {
                        seed,
                        valid: Some(results.valid),
                        error: None,
                        expected,
                        store: Some(results.store.clone()),
                        command: results.command.clone(),
                        duration_s: results.stats.duration_s,
                        summary: results
                            .checker
                            .values()
                            .map(|v| format!("{}: {} ({})", v.checker, v.valid, v.summary))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        checkers: results
                            .checker
                            .iter()
                            .map(|(k, v)| (k.clone(), v.valid))
                            .collect(),
                        stale_p99_ms: results
                            .checker
                            .get("staleness")
                            .map(|v| v.details["ms_behind"]["p99"].as_u64().unwrap_or(0)),
                        max_siblings: results
                            .checker
                            .get("siblings")
                            .map(|v| v.details["max"].as_u64().unwrap_or(0)),
                        ops: results.stats.total.invoke,
                    }
                }
                Err(e) => RunOutcome {
                    seed,
                    valid: None,
                    error: Some(format!("{e:#}")),
                    expected: false,
                    store: None,
                    command,
                    duration_s: 0.0,
                    summary: String::new(),
                    checkers: BTreeMap::new(),
                    stale_p99_ms: None,
                    max_siblings: None,
                    ops: 0,
                },
            };
            println!(
                "[{done}/{total}] {} · {} · seed {}: {} (expected {}){}",
                cell.config,
                cell.nemesis,
                seed,
                outcome
                    .valid
                    .map_or_else(|| "ERROR".to_string(), |v| v.to_string()),
                expected_text(&cell.expected),
                if outcome.expected {
                    ""
                } else {
                    "  <- UNEXPECTED"
                }
            );
            if let Some(e) = &outcome.error {
                println!("    {e}");
            }
            runs.push(outcome);
        }
        out.push((cell.clone(), runs));
    }
    out
}

/// `splitbrain campaign`: returns the exit code.
pub fn command(args: CampaignArgs) -> i32 {
    use crate::cli::exit;
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("splitbrain: cannot read {}: {e}", args.file.display());
            return exit::BAD_INPUT;
        }
    };
    let Some(refnode) = args
        .refnode_bin
        .clone()
        .or_else(crate::cli::refnode_beside_us)
    else {
        eprintln!(
            "splitbrain: cannot find the refnode executable beside splitbrain; pass --refnode-bin PATH"
        );
        return exit::BAD_INPUT;
    };
    let (file, mut cells) = match parse(&text, &refnode, &args.store) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("splitbrain: {}: {e:#}", args.file.display());
            return exit::BAD_INPUT;
        }
    };
    if let Some(seed) = args.seed {
        for c in &mut cells {
            c.base.seed = seed;
        }
    }
    let test_count = args.test_count.unwrap_or(file.test_count).max(1);
    let progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    println!(
        "campaign {}: {} configs, {} cells × {} runs = {} runs",
        file.name,
        file.configs.len(),
        cells.len(),
        test_count,
        cells.len() * test_count as usize
    );
    let rt = crate::cli::runtime();
    let results = rt.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(crate::cli::stop_on_signals(stop_tx));
        run_cells(&cells, test_count, progress, stop_rx).await
    });
    let planned = cells.len() * test_count as usize;
    let ran: usize = results.iter().map(|(_, r)| r.len()).sum();
    let unexpected: usize = results
        .iter()
        .map(|(_, r)| r.iter().filter(|o| !o.expected).count())
        .sum();
    let mut table = summary_table(&results);
    let matrix = (!file.columns.is_empty()).then(|| guarantee_matrix(&file, &results));
    let mut mismatched = 0;
    if let Some(m) = &matrix {
        mismatched = m.mismatches().len();
        table.push_str(&format!("\nguarantee matrix\n{}", m.table()));
    }
    println!("{table}");
    match write_summary(&args.store, &file.name, &results, &table, matrix.as_ref()) {
        Ok(dir) => println!("campaign results: {}", dir.display()),
        Err(e) => eprintln!("splitbrain: {e:#}"),
    }
    println!(
        "campaign {}: {ran} of {planned} runs, {unexpected} unexpected verdicts{}",
        file.name,
        if matrix.is_some() {
            format!(", {mismatched} guarantee cells differ from the expected")
        } else {
            String::new()
        }
    );
    if unexpected > 0 || mismatched > 0 {
        exit::INVALID
    } else if ran < planned {
        exit::UNKNOWN
    } else {
        exit::VALID
    }
}

/// The guarantee matrix of a campaign's results: rows in the file's order, every run of a
/// config (all nemeses and seeds) in its row.
pub fn guarantee_matrix(file: &CampaignFile, results: &[(Cell, Vec<RunOutcome>)]) -> Matrix {
    let configs: Vec<(String, Vec<RunFacts>)> = file
        .configs
        .iter()
        .map(|entry| {
            let facts = results
                .iter()
                .filter(|(cell, _)| cell.config == entry.name)
                .flat_map(|(cell, runs)| {
                    runs.iter().filter_map(move |r| {
                        Some(RunFacts {
                            seed: r.seed,
                            nemesis: cell.nemesis.clone(),
                            verdicts: r.checkers.clone(),
                            stale_p99_ms: r.stale_p99_ms,
                            max_siblings: r.max_siblings,
                            ops: r.ops,
                            store: r.store.clone()?,
                        })
                    })
                })
                .collect();
            (entry.name.clone(), facts)
        })
        .collect();
    let mut expected = BTreeMap::new();
    for entry in &file.configs {
        for (column, value) in &entry.guarantees {
            // Checked when the file was parsed.
            if let Ok(e) = Expected::parse(value) {
                expected.insert((entry.name.clone(), column.clone()), e);
            }
        }
    }
    Matrix::build(&file.columns, &configs, &expected)
}

/// `store/campaign-<name>/<time>/`: `junit.xml` and `summary.txt` (and `matrix.html` with a
/// guarantee matrix), with `latest` links.
fn write_summary(
    store: &Path,
    name: &str,
    results: &[(Cell, Vec<RunOutcome>)],
    table: &str,
    matrix: Option<&Matrix>,
) -> anyhow::Result<PathBuf> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = crate::store::create_run_dir(store, &format!("campaign-{safe}"))?;
    let mut suites = junit_suites(results);
    if let Some(m) = matrix {
        suites.push(m.junit_suite());
        std::fs::write(
            dir.join("matrix.html"),
            m.html(&format!("campaign {name}: guarantee matrix"), &dir),
        )
        .context("cannot write matrix.html")?;
    }
    std::fs::write(
        dir.join("junit.xml"),
        junit::render(&format!("campaign {name}"), &suites),
    )
    .context("cannot write the campaign's junit.xml")?;
    let mut text = String::from(table);
    text.push('\n');
    for (cell, runs) in results {
        for r in runs {
            text.push_str(&format!(
                "{} {} seed {}: {} expected {}{} · {}\n",
                cell.config,
                cell.nemesis,
                r.seed,
                r.valid.map_or("ERROR".to_string(), |v| v.to_string()),
                expected_text(&cell.expected),
                if r.expected { "" } else { " UNEXPECTED" },
                r.store.as_ref().map_or_else(
                    || r.error.clone().unwrap_or_default(),
                    |p| p.display().to_string()
                )
            ));
        }
    }
    std::fs::write(dir.join("summary.txt"), text).context("cannot write summary.txt")?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "t"
test-count = 2
seed = 5
nemeses = ["none", "kill"]

[run]
time-limit = 3
nemesis-interval = 1

[[configs]]
name = "sync"
replication = "sync"
expect = { "*" = "valid" }

[[configs]]
name = "async"
replication = "async"
read-routing = "any"
time-limit = 4
expect = { kill = ["invalid", "unknown"] }
"#;

    #[test]
    fn a_campaign_file_becomes_cells_with_merged_options_and_expectations() {
        let (file, cells) = parse(FILE, Path::new("/bin/refnode"), Path::new("s")).unwrap();
        assert_eq!(file.test_count, 2);
        assert_eq!(cells.len(), 4);
        let c = &cells[3];
        assert_eq!((c.config.as_str(), c.nemesis.as_str()), ("async", "kill"));
        assert_eq!(c.base.replication, Replication::Async);
        assert_eq!(
            c.base.time_limit,
            Duration::from_secs(4),
            "a config overrides [run]"
        );
        assert_eq!(
            c.base.nemesis_interval,
            Duration::from_secs(1),
            "[run] applies"
        );
        assert_eq!(c.expected, vec![Validity::False, Validity::Unknown]);
        assert_eq!(cells[2].expected.len(), 3, "no expectation: any verdict");
        assert_eq!(
            cells[0].expected,
            vec![Validity::True],
            "`*` covers every nemesis"
        );
        assert_eq!(cells[0].base.seed, 5);
    }

    #[test]
    fn bad_campaign_files_say_what_is_wrong() {
        let refnode = Path::new("/bin/refnode");
        for (text, needle) in [
            (
                FILE.replace("read-routing = \"any\"", "read-routing = \"nearest\""),
                "nearest",
            ),
            (FILE.replace("time-limit = 4", "time-limt = 4"), "time-limt"),
            (
                FILE.replace("[\"none\", \"kill\"]", "[\"none\", \"explode\"]"),
                "explode",
            ),
            (
                FILE.replace("[\"invalid\", \"unknown\"]", "\"wrong\""),
                "wrong",
            ),
            (FILE.replace("kill = [", "pause = ["), "pause"),
        ] {
            let err = parse(&text, refnode, Path::new("s")).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{needle}: {err:#}");
        }
    }

    #[test]
    fn the_summary_and_junit_flag_unexpected_verdicts() {
        let (_, cells) = parse(FILE, Path::new("/bin/refnode"), Path::new("s")).unwrap();
        let run = |valid: Validity, expected: bool| RunOutcome {
            seed: 5,
            valid: Some(valid),
            error: None,
            expected,
            store: Some("s/x".into()),
            command: "splitbrain run".into(),
            duration_s: 3.0,
            summary: "linearizable: INVALID (p1 read)".into(),
            checkers: BTreeMap::new(),
            stale_p99_ms: None,
            max_siblings: None,
            ops: 10,
        };
        let results = vec![
            (cells[0].clone(), vec![run(Validity::True, true)]),
            (cells[1].clone(), vec![run(Validity::False, false)]),
        ];
        let table = summary_table(&results);
        assert!(table.contains("UNEXPECTED (1)"), "{table}");
        let x = junit::render("c", &junit_suites(&results));
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(
            x.contains("unexpected verdict INVALID (expected valid)"),
            "{x}"
        );
    }
}

//! `splitbrain hermitage`: which isolation anomalies a database lets happen at each of its
//! isolation levels, measured by running a fixed interleaving of two or three transactions per
//! anomaly against a real server the command starts itself.
//!
//! The catalogue of anomalies and the interleaving that shows each one follow Martin
//! Kleppmann's Hermitage (<https://github.com/ept/hermitage>), as does the expected table that
//! a measured table is compared with; the scripts, the driver and the judges are ours.
//!
//! ```text
//! PostgresCluster (one node, temp dir) ──> for each level × anomaly:
//!     session::run: fresh table, sessions T1..T3, steps in order, lock waits observed ──> Trace
//!     Script::judge(Trace) ──> Cell { prevented | possible | unknown, reason }
//! Table ──> terminal table, comparison with EXPECTED_POSTGRES, hermitage.json + report.html
//! ```

pub mod html;
pub mod scripts;
pub mod session;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use checkers::Validity;
use serde::Serialize;
use targets::Db as _;
use targets::adapters::postgres::{self, Isolation, PostgresCluster, PostgresConfig};

use scripts::{Script, Trace};

/// An anomaly, named as Adya and Hermitage name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anomaly {
    G0,
    G1a,
    G1b,
    G1c,
    Otv,
    Pmp,
    P4,
    GSingle,
    G2Item,
    G2,
}

impl Anomaly {
    /// The table's columns, in order.
    pub const ALL: [Anomaly; 10] = [
        Anomaly::G0,
        Anomaly::G1a,
        Anomaly::G1b,
        Anomaly::G1c,
        Anomaly::Otv,
        Anomaly::Pmp,
        Anomaly::P4,
        Anomaly::GSingle,
        Anomaly::G2Item,
        Anomaly::G2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Anomaly::G0 => "G0",
            Anomaly::G1a => "G1a",
            Anomaly::G1b => "G1b",
            Anomaly::G1c => "G1c",
            Anomaly::Otv => "OTV",
            Anomaly::Pmp => "PMP",
            Anomaly::P4 => "P4",
            Anomaly::GSingle => "G-single",
            Anomaly::G2Item => "G2-item",
            Anomaly::G2 => "G2",
        }
    }

    /// The anomaly's everyday name.
    pub fn title(self) -> &'static str {
        match self {
            Anomaly::G0 => "dirty write",
            Anomaly::G1a => "aborted read",
            Anomaly::G1b => "intermediate read",
            Anomaly::G1c => "circular information flow",
            Anomaly::Otv => "observed transaction vanishes",
            Anomaly::Pmp => "predicate-many-preceders",
            Anomaly::P4 => "lost update",
            Anomaly::GSingle => "read skew",
            Anomaly::G2Item => "write skew",
            Anomaly::G2 => "anti-dependency cycle over predicates",
        }
    }

    /// What the test does and what would count as the anomaly.
    pub fn description(self) -> &'static str {
        match self {
            Anomaly::G0 => {
                "T1 and T2 both write x and y. If T2 may overwrite x while T1's write is uncommitted, the two transactions' writes interleave and the final rows mix them."
            }
            Anomaly::G1a => {
                "T2 reads x while T1's write of x is uncommitted, and again after T1 rolls back. Reading T1's value would be reading data that never existed."
            }
            Anomaly::G1b => {
                "T1 writes x twice before committing; T2 reads x in between. Reading the first value would be reading a state T1 never committed."
            }
            Anomaly::G1c => {
                "T1 and T2 each write one row and read the row the other wrote, before either commits. If each sees the other's write, information flowed in a circle."
            }
            Anomaly::Otv => {
                "T1 writes x and y and commits; T2 then writes x and y. T3 reads x and y while T2 runs and after it commits. Once T3 has seen one of a transaction's writes, missing another would be seeing the transaction vanish."
            }
            Anomaly::Pmp => {
                "T1 reads with a predicate and finds nothing; T2 inserts a matching row and commits; T1 reads with an overlapping predicate. Seeing the new row means T1's reads observe different states."
            }
            Anomaly::P4 => {
                "T1 and T2 both read x=10 and both write x=11 (their read plus one). If both commit, one increment is lost."
            }
            Anomaly::GSingle => {
                "T1 reads x; T2 rewrites x and y and commits; T1 reads y. Seeing x from before T2 and y from after it is seeing a state that never existed."
            }
            Anomaly::G2Item => {
                "T1 and T2 each read x and y, then T1 writes x and T2 writes y. If both commit, each acted on a read the other invalidated."
            }
            Anomaly::G2 => {
                "T1 and T2 each look for a row with value % 3 = 0, find none, and insert one. If both commit, each missed the other's insert."
            }
        }
    }
}

/// What a cell says about its anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The anomaly could not happen: a session waited and then saw the right data, or the
    /// database aborted a transaction.
    Prevented,
    /// The anomalous outcome was observed.
    Possible,
    /// The test itself went wrong (an unexpected error or value).
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Prevented => "prevented",
            Outcome::Possible => "possible",
            Outcome::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use Outcome::{Possible as Po, Prevented as Pr};

/// Hermitage's published PostgreSQL results (measured there on PostgreSQL 9.3), in the order of
/// [`Anomaly::ALL`]: read committed ("monotonic atomic view") prevents G0 to OTV; repeatable
/// read is snapshot isolation and allows only write skew and predicate anti-dependency cycles;
/// serializable (SSI) prevents everything. A measured table is compared with it to flag
/// surprises; it is never used to fill a cell.
pub const EXPECTED_POSTGRES: [(Isolation, [Outcome; 10]); 3] = [
    (
        Isolation::ReadCommitted,
        [Pr, Pr, Pr, Pr, Pr, Po, Po, Po, Po, Po],
    ),
    (
        Isolation::RepeatableRead,
        [Pr, Pr, Pr, Pr, Pr, Pr, Pr, Pr, Po, Po],
    ),
    (
        Isolation::Serializable,
        [Pr, Pr, Pr, Pr, Pr, Pr, Pr, Pr, Pr, Pr],
    ),
];

/// The expected outcome of one cell.
pub fn expected(isolation: Isolation, anomaly: Anomaly) -> Outcome {
    let row = EXPECTED_POSTGRES
        .iter()
        .find(|(i, _)| *i == isolation)
        .map(|(_, row)| row)
        .expect("every isolation level has an expected row");
    let col = Anomaly::ALL
        .iter()
        .position(|a| *a == anomaly)
        .expect("every anomaly has a column");
    row[col]
}

/// One measured cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub isolation: Isolation,
    pub anomaly: Anomaly,
    pub outcome: Outcome,
    pub reason: String,
    pub trace: Trace,
}

/// Every measured cell, level by level in [`Isolation::ALL`] order, anomalies in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub server_version: String,
    pub cells: Vec<Cell>,
    pub elapsed: Duration,
}

impl Measured {
    pub fn cell(&self, isolation: Isolation, anomaly: Anomaly) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.isolation == isolation && c.anomaly == anomaly)
    }

    /// Lines naming each cell that differs from the expected table.
    pub fn differences(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter(|c| c.outcome != Outcome::Unknown)
            .filter_map(|c| {
                let want = expected(c.isolation, c.anomaly);
                (c.outcome != want).then(|| {
                    format!(
                        "{} × {}: measured {}, expected {} ({})",
                        c.isolation.as_str(),
                        c.anomaly.name(),
                        c.outcome,
                        want,
                        c.reason
                    )
                })
            })
            .collect()
    }

    /// False when a cell differs from the expected table, else unknown when a cell could not
    /// be measured, else true.
    pub fn validity(&self) -> Validity {
        if !self.differences().is_empty() {
            Validity::False
        } else if self.cells.iter().any(|c| c.outcome == Outcome::Unknown) {
            Validity::Unknown
        } else {
            Validity::True
        }
    }
}

/// The table for the terminal: a row per isolation level, a column per anomaly; a cell that
/// differs from the expected table is marked with `*`.
pub fn render_table(measured: &Measured) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(
        std::iter::once("isolation".to_string())
            .chain(Anomaly::ALL.iter().map(|a| a.name().to_string())),
    );
    for isolation in Isolation::ALL {
        let mut row = vec![isolation.as_str().to_string()];
        for anomaly in Anomaly::ALL {
            row.push(match measured.cell(isolation, anomaly) {
                Some(c)
                    if c.outcome != Outcome::Unknown
                        && c.outcome != expected(isolation, anomaly) =>
                {
                    format!("{}*", c.outcome)
                }
                Some(c) => c.outcome.to_string(),
                None => "-".into(),
            });
        }
        b.push_record(row);
    }
    let mut table = b.build();
    table.with(tabled::settings::Style::rounded());
    table.to_string()
}

/// Everything printed after the run: the table, then whether it matches, the differing and
/// unknown cells, and (verbose) every cell's reason.
pub fn summary(measured: &Measured, verbose: bool) -> String {
    let mut s = format!(
        "splitbrain: hermitage · PostgreSQL {} · {} anomalies × {} isolation levels in {:.1} s\n",
        measured.server_version,
        Anomaly::ALL.len(),
        Isolation::ALL.len(),
        measured.elapsed.as_secs_f64()
    );
    s.push_str(&render_table(measured));
    s.push('\n');
    let differences = measured.differences();
    if differences.is_empty() {
        s.push_str("the measured table matches the expected PostgreSQL results (Hermitage)\n");
    } else {
        s.push_str("the measured table differs from the expected PostgreSQL results (Hermitage); * marks:\n");
        for d in &differences {
            let _ = writeln!(s, "  {d}");
        }
    }
    for c in measured
        .cells
        .iter()
        .filter(|c| c.outcome == Outcome::Unknown)
    {
        let _ = writeln!(
            s,
            "  {} × {}: unknown ({})",
            c.isolation.as_str(),
            c.anomaly.name(),
            c.reason
        );
    }
    if verbose {
        for c in &measured.cells {
            let _ = writeln!(
                s,
                "{} × {}: {}: {}",
                c.isolation.as_str(),
                c.anomaly.name(),
                c.outcome,
                c.reason
            );
        }
    }
    s
}

/// `hermitage.json`.
pub fn to_json(measured: &Measured) -> serde_json::Value {
    let scripts = scripts::all();
    let tests: Vec<serde_json::Value> = scripts
        .iter()
        .map(|s| {
            serde_json::json!({
                "anomaly": s.anomaly.name(),
                "title": s.anomaly.title(),
                "description": s.anomaly.description(),
                "setup": s.setup_sql(),
                "sessions": s.sessions,
                "statements": s.steps.iter().map(|st| serde_json::json!({
                    "session": format!("T{}", st.session),
                    "sql": st.sql,
                })).collect::<Vec<_>>(),
                "after": s.after,
            })
        })
        .collect();
    let cells: Vec<serde_json::Value> = measured
        .cells
        .iter()
        .map(|c| {
            serde_json::json!({
                "isolation": c.isolation.as_str(),
                "anomaly": c.anomaly.name(),
                "measured": c.outcome,
                "expected": expected(c.isolation, c.anomaly),
                "reason": c.reason,
                "trace": c.trace.steps,
            })
        })
        .collect();
    let table: serde_json::Map<String, serde_json::Value> = Isolation::ALL
        .iter()
        .map(|i| {
            let row: serde_json::Map<String, serde_json::Value> = Anomaly::ALL
                .iter()
                .filter_map(|a| {
                    let c = measured.cell(*i, *a)?;
                    Some((a.name().to_string(), c.outcome.as_str().into()))
                })
                .collect();
            (i.as_str().to_string(), row.into())
        })
        .collect();
    serde_json::json!({
        "target": "postgres",
        "server_version": measured.server_version,
        "elapsed_ms": measured.elapsed.as_millis() as u64,
        "valid": measured.validity(),
        "matches_expected": measured.differences().is_empty(),
        "differences": measured.differences(),
        "table": table,
        "cells": cells,
        "tests": tests,
        "credit": "test catalogue and expected PostgreSQL results after Martin Kleppmann's Hermitage, https://github.com/ept/hermitage",
    })
}

/// The arguments of `splitbrain hermitage`.
#[derive(Debug, clap::Args)]
pub struct HermitageArgs {
    /// The database to test (only postgres for now). The command starts its own server.
    #[arg(long, default_value = "postgres")]
    target: String,
    /// Write hermitage.json, report.html and the server's log under
    /// DIR/hermitage-postgres/<YYYYMMDDTHHMMSS>/.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print every cell's reason under the table.
    #[arg(long)]
    verbose: bool,
}

/// Runs `splitbrain hermitage`; returns the exit code.
pub fn command(args: HermitageArgs) -> i32 {
    use crate::cli::exit;
    if args.target != "postgres" {
        eprintln!(
            "splitbrain: hermitage supports only --target postgres for now, not {:?}",
            args.target
        );
        return exit::BAD_INPUT;
    }
    let rt = crate::cli::runtime();
    let measured = rt.block_on(measure_postgres(args.store.is_some()));
    let (measured, log) = match measured {
        Ok(m) => m,
        Err(e) => {
            eprintln!("splitbrain: hermitage: {e:#}");
            return exit::BAD_INPUT;
        }
    };
    print!("{}", summary(&measured, args.verbose));
    if let Some(store) = &args.store {
        match write_store(store, &measured, log.as_deref()) {
            Ok(dir) => println!("stored in {}", dir.display()),
            Err(e) => {
                eprintln!("splitbrain: hermitage: {e:#}");
                return exit::BAD_INPUT;
            }
        }
    }
    measured.validity().exit_code()
}

/// Writes `hermitage.json`, `report.html` and `postgres.log` into a new run directory.
fn write_store(store: &Path, measured: &Measured, log: Option<&str>) -> anyhow::Result<PathBuf> {
    let dir = crate::store::create_run_dir(store, "hermitage-postgres")?;
    let json = serde_json::to_string_pretty(&to_json(measured))?;
    std::fs::write(dir.join("hermitage.json"), json + "\n")
        .with_context(|| format!("cannot write {}/hermitage.json", dir.display()))?;
    std::fs::write(dir.join("report.html"), html::render(measured))
        .with_context(|| format!("cannot write {}/report.html", dir.display()))?;
    if let Some(log) = log {
        std::fs::write(dir.join("postgres.log"), log)
            .with_context(|| format!("cannot write {}/postgres.log", dir.display()))?;
    }
    Ok(dir)
}

/// Starts a one-node PostgreSQL in a fresh directory under the system's temporary directory,
/// measures every cell, stops the server and removes the directory. Returns the server's log
/// too when `keep_log`.
async fn measure_postgres(keep_log: bool) -> anyhow::Result<(Measured, Option<String>)> {
    postgres::ensure_installed()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "splitbrain-hermitage-{}-{stamp}",
        std::process::id()
    ));
    let cluster = PostgresCluster::new(PostgresConfig {
        dir: dir.clone(),
        replicas: 0,
        ..PostgresConfig::default()
    })?;
    let started = Instant::now();
    // Ctrl-C ends the measuring, not the clean-up below.
    let result = tokio::select! {
        r = async {
            cluster
                .start(Duration::from_secs(60))
                .await
                .context("cannot start PostgreSQL")?;
            measure_cells(&cluster, started).await
        } => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    cluster.teardown().await;
    drop(cluster);
    let log = keep_log
        .then(|| std::fs::read_to_string(dir.join("n1.log")).ok())
        .flatten();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|m| (m, log))
}

async fn measure_cells(cluster: &PostgresCluster, started: Instant) -> anyhow::Result<Measured> {
    let addr = cluster
        .addr_of("n1")
        .ok_or_else(|| anyhow!("the cluster has no node n1"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow!("bad address {addr}"))?;
    let admin = session::connect(&host, port).await?;
    let (rows, _) = session::query_text(&admin.client, "SHOW server_version").await?;
    drop(admin);
    let server_version = rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or_else(|| "?".into());
    let scripts = scripts::all();
    let mut cells = Vec::with_capacity(scripts.len() * Isolation::ALL.len());
    for isolation in Isolation::ALL {
        for script in &scripts {
            cells.push(measure_cell(&host, port, isolation, script).await);
        }
    }
    Ok(Measured {
        server_version,
        cells,
        elapsed: started.elapsed(),
    })
}

async fn measure_cell(host: &str, port: u16, isolation: Isolation, script: &Script) -> Cell {
    let limits = session::Limits::default();
    let (outcome, reason, trace) = match session::run(host, port, isolation, script, limits).await {
        Ok(trace) => {
            let (outcome, reason) = script.judge(&trace);
            (outcome, reason, trace)
        }
        Err(e) => (Outcome::Unknown, format!("{e:#}"), Trace::default()),
    };
    Cell {
        isolation,
        anomaly: script.anomaly,
        outcome,
        reason,
        trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with the expected outcome in every cell, each with `reason` "r".
    fn as_expected() -> Measured {
        let cells = Isolation::ALL
            .iter()
            .flat_map(|i| {
                Anomaly::ALL.iter().map(move |a| Cell {
                    isolation: *i,
                    anomaly: *a,
                    outcome: expected(*i, *a),
                    reason: "r".into(),
                    trace: Trace::default(),
                })
            })
            .collect();
        Measured {
            server_version: "15.0".into(),
            cells,
            elapsed: Duration::from_millis(1500),
        }
    }

    fn set(m: &mut Measured, i: Isolation, a: Anomaly, o: Outcome, reason: &str) {
        let c = m
            .cells
            .iter_mut()
            .find(|c| c.isolation == i && c.anomaly == a)
            .unwrap();
        c.outcome = o;
        c.reason = reason.into();
    }

    #[test]
    fn the_expected_table_is_hermitages_postgresql_row_by_row() {
        use Isolation::*;
        assert_eq!(expected(ReadCommitted, Anomaly::Otv), Outcome::Prevented);
        assert_eq!(expected(ReadCommitted, Anomaly::Pmp), Outcome::Possible);
        assert_eq!(expected(ReadCommitted, Anomaly::GSingle), Outcome::Possible);
        assert_eq!(expected(RepeatableRead, Anomaly::P4), Outcome::Prevented);
        assert_eq!(expected(RepeatableRead, Anomaly::G2Item), Outcome::Possible);
        assert_eq!(expected(RepeatableRead, Anomaly::G2), Outcome::Possible);
        assert!(
            Anomaly::ALL
                .iter()
                .all(|a| expected(Serializable, *a) == Outcome::Prevented)
        );
    }

    #[test]
    fn a_table_as_expected_is_valid_and_renders_levels_by_anomalies() {
        let m = as_expected();
        assert!(m.differences().is_empty());
        assert_eq!(m.validity(), Validity::True);
        let table = render_table(&m);
        let lines: Vec<&str> = table.lines().collect();
        // Border, header, separator, three levels, border.
        assert_eq!(lines.len(), 7, "{table}");
        let header: Vec<&str> = lines[1].split('│').map(str::trim).collect();
        assert_eq!(
            header[1..12],
            [
                "isolation",
                "G0",
                "G1a",
                "G1b",
                "G1c",
                "OTV",
                "PMP",
                "P4",
                "G-single",
                "G2-item",
                "G2"
            ]
        );
        let rr: Vec<&str> = lines[4].split('│').map(str::trim).collect();
        assert_eq!(rr[1], "repeatable-read");
        assert_eq!(rr[8], "prevented", "P4");
        assert_eq!(rr[10], "possible", "G2-item");
        assert!(!table.contains('*'));
        let text = summary(&m, false);
        assert!(
            text.contains("matches the expected PostgreSQL results"),
            "{text}"
        );
    }

    #[test]
    fn a_cell_that_differs_is_starred_named_and_invalid() {
        let mut m = as_expected();
        set(
            &mut m,
            Isolation::Serializable,
            Anomaly::G2Item,
            Outcome::Possible,
            "both committed",
        );
        assert_eq!(
            m.differences(),
            vec!["serializable × G2-item: measured possible, expected prevented (both committed)"]
        );
        assert_eq!(m.validity(), Validity::False);
        assert_eq!(m.validity().exit_code(), 1);
        assert!(render_table(&m).contains("possible*"));
        let text = summary(&m, false);
        assert!(
            text.contains("differs from the expected PostgreSQL results"),
            "{text}"
        );
        assert!(
            text.contains("serializable × G2-item: measured possible"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_cell_is_unknown_unless_another_differs() {
        let mut m = as_expected();
        set(
            &mut m,
            Isolation::ReadCommitted,
            Anomaly::G0,
            Outcome::Unknown,
            "lock timeout",
        );
        assert!(m.differences().is_empty());
        assert_eq!(m.validity(), Validity::Unknown);
        assert!(summary(&m, false).contains("read-committed × G0: unknown (lock timeout)"));
        set(
            &mut m,
            Isolation::ReadCommitted,
            Anomaly::P4,
            Outcome::Prevented,
            "x",
        );
        assert_eq!(m.validity(), Validity::False);
    }

    #[test]
    fn the_json_has_the_table_every_cell_and_every_script() {
        let m = as_expected();
        let j = to_json(&m);
        assert_eq!(j["table"]["repeatable-read"]["G2-item"], "possible");
        assert_eq!(j["table"]["serializable"]["G2-item"], "prevented");
        assert_eq!(j["cells"].as_array().unwrap().len(), 30);
        assert_eq!(j["tests"].as_array().unwrap().len(), 10);
        assert_eq!(j["matches_expected"], true);
        assert_eq!(j["valid"], true);
    }
}

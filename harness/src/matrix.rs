//! The replication guarantee matrix of a campaign: one row per configuration, one column per
//! guarantee (a checker's verdict), each cell aggregating every run of the configuration
//! (all its nemeses and seeds) into "held (n/n)" or "violated (k/n)", checked against what
//! the campaign file expects from DDIA ch. 5, with a link to the smallest counterexample.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use checkers::Validity;
use tabled::builder::Builder;
use tabled::settings::Style;

use crate::junit::{Case, Outcome, Suite};
use crate::timeline::escape;

/// What a cell of the matrix is expected to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Valid in every run.
    Held,
    /// Invalid in at least one run.
    Violated,
    /// Not checked against anything.
    Any,
}

impl Expected {
    pub fn parse(s: &str) -> Result<Expected, String> {
        match s {
            "held" => Ok(Expected::Held),
            "violated" => Ok(Expected::Violated),
            "any" => Ok(Expected::Any),
            other => Err(format!(
                "unknown guarantee expectation {other:?}; expected held, violated or any"
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Expected::Held => "held",
            Expected::Violated => "violated",
            Expected::Any => "any",
        }
    }
}

/// What one run said about the matrix's columns.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub seed: u64,
    pub nemesis: String,
    /// Verdict per checker name.
    pub verdicts: BTreeMap<String, Validity>,
    /// The staleness checker's p99 lag of stale reads, in milliseconds.
    pub stale_p99_ms: Option<u64>,
    /// The most values one read returned (the siblings checker).
    pub max_siblings: Option<u64>,
    /// Client operations in the history: the size of the run's counterexample.
    pub ops: u64,
    /// The run's store directory.
    pub store: PathBuf,
}

/// One aggregated cell.
#[derive(Debug, Clone)]
pub struct MatrixCell {
    pub runs: usize,
    pub held: usize,
    pub violated: usize,
    pub expected: Expected,
    /// The smallest violating run (fewest operations), if any.
    pub smallest: Option<PathBuf>,
}

impl MatrixCell {
    pub fn text(&self) -> String {
        if self.runs == 0 {
            return "no runs".into();
        }
        if self.violated > 0 {
            format!("violated ({}/{})", self.violated, self.runs)
        } else if self.held == self.runs {
            format!("held ({}/{})", self.held, self.runs)
        } else {
            format!("unknown ({}/{})", self.runs - self.held, self.runs)
        }
    }

    /// Whether the measurement agrees with the expectation.
    pub fn as_expected(&self) -> bool {
        match self.expected {
            Expected::Any => true,
            Expected::Held => self.runs > 0 && self.held == self.runs,
            Expected::Violated => self.violated > 0,
        }
    }
}

/// One row: a configuration.
#[derive(Debug, Clone)]
pub struct MatrixRow {
    pub config: String,
    pub cells: Vec<MatrixCell>,
    /// The worst run's staleness p99 (over its stale reads), in milliseconds.
    pub stale_p99_ms: Option<u64>,
    /// The most siblings any read of any run returned.
    pub max_siblings: Option<u64>,
}

/// The whole matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub columns: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

impl Matrix {
    /// Aggregates `runs` per configuration; `expected` maps (config, column) to the
    /// expectation (missing: any).
    pub fn build(
        columns: &[String],
        configs: &[(String, Vec<RunFacts>)],
        expected: &BTreeMap<(String, String), Expected>,
    ) -> Matrix {
        let rows = configs
            .iter()
            .map(|(config, runs)| {
                let cells = columns
                    .iter()
                    .map(|column| {
                        let judged: Vec<&RunFacts> = runs
                            .iter()
                            .filter(|r| r.verdicts.contains_key(column))
                            .collect();
                        let violated: Vec<&&RunFacts> = judged
                            .iter()
                            .filter(|r| r.verdicts[column] == Validity::False)
                            .collect();
                        MatrixCell {
                            runs: judged.len(),
                            held: judged
                                .iter()
                                .filter(|r| r.verdicts[column] == Validity::True)
                                .count(),
                            violated: violated.len(),
                            expected: expected
                                .get(&(config.clone(), column.clone()))
                                .copied()
                                .unwrap_or(Expected::Any),
                            smallest: violated
                                .iter()
                                .min_by_key(|r| r.ops)
                                .map(|r| r.store.clone()),
                        }
                    })
                    .collect();
                MatrixRow {
                    config: config.clone(),
                    cells,
                    stale_p99_ms: runs.iter().filter_map(|r| r.stale_p99_ms).max(),
                    max_siblings: runs.iter().filter_map(|r| r.max_siblings).max(),
                }
            })
            .collect();
        Matrix {
            columns: columns.to_vec(),
            rows,
        }
    }

    /// Cells whose measurement disagrees with the expectation.
    pub fn mismatches(&self) -> Vec<(&str, &str, &MatrixCell)> {
        self.rows
            .iter()
            .flat_map(|row| {
                row.cells
                    .iter()
                    .zip(&self.columns)
                    .filter(|(cell, _)| !cell.as_expected())
                    .map(|(cell, column)| (row.config.as_str(), column.as_str(), cell))
            })
            .collect()
    }

    /// The terminal table: a mismatching cell says what was expected.
    pub fn table(&self) -> String {
        let mut b = Builder::default();
        let mut header = vec!["configuration".to_string()];
        header.extend(self.columns.iter().cloned());
        header.push("p99 staleness (worst run)".into());
        let siblings = self.rows.iter().any(|r| r.max_siblings.is_some());
        if siblings {
            header.push("max siblings".into());
        }
        b.push_record(header);
        for row in &self.rows {
            let mut record = vec![row.config.clone()];
            for cell in &row.cells {
                record.push(if cell.as_expected() {
                    cell.text()
                } else {
                    format!("{} ≠ expected {}", cell.text(), cell.expected.as_str())
                });
            }
            record.push(row.stale_p99_ms.map_or("-".into(), |ms| format!("{ms} ms")));
            if siblings {
                record.push(row.max_siblings.map_or("-".into(), |n| n.to_string()));
            }
            b.push_record(record);
        }
        let mut t = b.build();
        t.with(Style::rounded());
        t.to_string()
    }

    /// A self-contained HTML page: the matrix with each violated cell linking to the report
    /// of its smallest counterexample (paths relative to `dir`, where the page is written).
    pub fn html(&self, title: &str, dir: &Path) -> String {
        let mut out = String::new();
        out.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>");
        out.push_str(&escape(title));
        out.push_str(
            "</title><style>body{font:14px system-ui,sans-serif;margin:2em}\
             table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4em .7em}\
             .held{background:#e6f4ea}.violated{background:#fde7e9}.unknown{background:#fff4ce}\
             .mismatch{outline:3px solid #c00}</style></head><body><h1>",
        );
        out.push_str(&escape(title));
        out.push_str("</h1><table><tr><th>configuration</th>");
        for c in &self.columns {
            out.push_str(&format!("<th>{}</th>", escape(c)));
        }
        let siblings = self.rows.iter().any(|r| r.max_siblings.is_some());
        out.push_str("<th>p99 staleness (worst run)</th>");
        if siblings {
            out.push_str("<th>max siblings</th>");
        }
        out.push_str("</tr>");
        for row in &self.rows {
            out.push_str(&format!("<tr><th>{}</th>", escape(&row.config)));
            for cell in &row.cells {
                let class = if cell.violated > 0 {
                    "violated"
                } else if cell.runs > 0 && cell.held == cell.runs {
                    "held"
                } else {
                    "unknown"
                };
                let mismatch = if cell.as_expected() { "" } else { " mismatch" };
                let mut text = escape(&cell.text());
                if let Some(store) = &cell.smallest {
                    let report = relative(dir, &store.join("report.html"));
                    text = format!(
                        "<a href=\"{}\" title=\"smallest counterexample\">{text}</a>",
                        escape(&report)
                    );
                }
                if !cell.as_expected() {
                    text.push_str(&format!(
                        "<br><small>expected {}</small>",
                        cell.expected.as_str()
                    ));
                }
                out.push_str(&format!("<td class=\"{class}{mismatch}\">{text}</td>"));
            }
            out.push_str(&format!(
                "<td>{}</td>",
                row.stale_p99_ms.map_or("-".into(), |ms| format!("{ms} ms"))
            ));
            if siblings {
                out.push_str(&format!(
                    "<td>{}</td>",
                    row.max_siblings.map_or("-".into(), |n| n.to_string())
                ));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table></body></html>\n");
        out
    }

    /// A JUnit suite: one case per cell with an expectation.
    pub fn junit_suite(&self) -> Suite {
        let mut cases = Vec::new();
        for row in &self.rows {
            for (cell, column) in row.cells.iter().zip(&self.columns) {
                if cell.expected == Expected::Any {
                    continue;
                }
                let outcome = if cell.as_expected() {
                    Outcome::Passed
                } else {
                    Outcome::Failed {
                        message: format!(
                            "{column}: measured {}, expected {}",
                            cell.text(),
                            cell.expected.as_str()
                        ),
                        text: cell.smallest.as_ref().map_or(String::new(), |p| {
                            format!("counterexample: {}", p.display())
                        }),
                    }
                };
                cases.push(Case {
                    name: column.clone(),
                    classname: format!("matrix/{}", row.config),
                    time_s: 0.0,
                    outcome,
                    system_out: String::new(),
                });
            }
        }
        Suite {
            name: "guarantee matrix".into(),
            time_s: 0.0,
            properties: Vec::new(),
            cases,
        }
    }
}

/// `target` as a path relative to `from` when both are relative to the same place or both
/// absolute; otherwise `target` itself.
fn relative(from: &Path, target: &Path) -> String {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (from, target) = (canon(from), canon(target));
    let common = from
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return target.display().to_string();
    }
    let ups = from.components().count() - common;
    let mut parts: Vec<String> = vec!["..".to_string(); ups];
    parts.extend(
        target
            .components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, verdicts: &[(&str, Validity)], ops: u64) -> RunFacts {
        RunFacts {
            seed,
            nemesis: "kill".into(),
            verdicts: verdicts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            stale_p99_ms: Some(seed * 10),
            max_siblings: (seed == 2).then_some(3),
            ops,
            store: PathBuf::from(format!("store/run-{seed}")),
        }
    }

    fn matrix() -> Matrix {
        let columns = vec!["monotonic-reads".to_string(), "lost-writes".to_string()];
        let configs = vec![
            (
                "async-any".to_string(),
                vec![
                    run(
                        1,
                        &[
                            ("monotonic-reads", Validity::False),
                            ("lost-writes", Validity::True),
                        ],
                        900,
                    ),
                    run(
                        2,
                        &[
                            ("monotonic-reads", Validity::False),
                            ("lost-writes", Validity::True),
                        ],
                        400,
                    ),
                    run(
                        3,
                        &[
                            ("monotonic-reads", Validity::True),
                            ("lost-writes", Validity::True),
                        ],
                        100,
                    ),
                ],
            ),
            (
                "sync-leader".to_string(),
                vec![run(
                    1,
                    &[
                        ("monotonic-reads", Validity::True),
                        ("lost-writes", Validity::Unknown),
                    ],
                    50,
                )],
            ),
        ];
        let mut expected = BTreeMap::new();
        expected.insert(
            ("async-any".into(), "monotonic-reads".into()),
            Expected::Violated,
        );
        expected.insert(
            ("async-any".into(), "lost-writes".into()),
            Expected::Violated,
        );
        expected.insert(
            ("sync-leader".into(), "monotonic-reads".into()),
            Expected::Held,
        );
        expected.insert(("sync-leader".into(), "lost-writes".into()), Expected::Held);
        Matrix::build(&columns, &configs, &expected)
    }

    #[test]
    fn cells_count_runs_and_name_the_smallest_counterexample() {
        let m = matrix();
        let cell = &m.rows[0].cells[0];
        assert_eq!(cell.text(), "violated (2/3)");
        assert_eq!(cell.smallest, Some(PathBuf::from("store/run-2")));
        assert_eq!(m.rows[0].cells[1].text(), "held (3/3)");
        assert_eq!(m.rows[1].cells[1].text(), "unknown (1/1)");
        assert_eq!(m.rows[0].stale_p99_ms, Some(30), "the worst of 10, 20, 30");
        assert_eq!(m.rows[0].max_siblings, Some(3));
        assert!(m.table().contains("max siblings"), "{}", m.table());
    }

    #[test]
    fn mismatches_are_flagged_in_the_table_html_and_junit() {
        let m = matrix();
        let bad: Vec<(&str, &str)> = m.mismatches().iter().map(|(r, c, _)| (*r, *c)).collect();
        assert_eq!(
            bad,
            vec![("async-any", "lost-writes"), ("sync-leader", "lost-writes")]
        );
        let table = m.table();
        assert!(table.contains("held (3/3) ≠ expected violated"), "{table}");
        let html = m.html("t <x>", Path::new("store/campaign"));
        assert!(html.contains("t &lt;x&gt;"), "{html}");
        assert!(html.contains("run-2/report.html"), "{html}");
        assert_eq!(html.matches("mismatch\"").count(), 2, "{html}");
        let suite = m.junit_suite();
        assert_eq!(suite.cases.len(), 4);
        let failed = suite
            .cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count();
        assert_eq!(failed, 2);
    }

    #[test]
    fn expectations_parse_and_reject_typos() {
        assert_eq!(Expected::parse("held"), Ok(Expected::Held));
        assert!(Expected::parse("hold").unwrap_err().contains("hold"));
    }
}

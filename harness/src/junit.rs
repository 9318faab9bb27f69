//! JUnit XML, the format CI systems show as test results: `junit.xml` per run (one test case
//! per checker) and per campaign (one suite per cell, one case per run).
//!
//! Verdicts map as CI users expect: valid passes, invalid is a `<failure>` whose message is
//! the checker's summary and whose text its explanation, unknown is an `<error>` (the checker
//! could not decide; a CI job must not read that as a pass).

use std::fmt::Write as _;

use checkers::Validity;

use crate::run::Results;
use crate::timeline::escape;

/// One JUnit test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub classname: String,
    pub time_s: f64,
    pub outcome: Outcome,
    /// Shown by CI beside the case (where the run is stored, how to repeat it).
    pub system_out: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed { message: String, text: String },
    Error { message: String, text: String },
}

impl Outcome {
    /// The outcome of a verdict.
    pub fn of(valid: Validity, summary: &str, explanation: &[String]) -> Outcome {
        let text = explanation.join("\n");
        match valid {
            Validity::True => Outcome::Passed,
            Validity::False => Outcome::Failed {
                message: summary.to_string(),
                text,
            },
            Validity::Unknown => Outcome::Error {
                message: format!("unknown: {summary}"),
                text,
            },
        }
    }
}

/// One JUnit test suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub time_s: f64,
    pub properties: Vec<(String, String)>,
    pub cases: Vec<Case>,
}

/// The suite of one run: a case per checker.
pub fn run_suite(results: &Results) -> Suite {
    let system_out = format!(
        "store {}\nseed {}\nrepeat with: {}",
        results.store.display(),
        results.seed,
        results.command
    );
    let cases = results
        .checker
        .values()
        .map(|v| Case {
            name: v.checker.clone(),
            classname: results.test.clone(),
            time_s: results.stats.duration_s,
            outcome: Outcome::of(v.valid, &v.summary, &v.explanation),
            system_out: system_out.clone(),
        })
        .collect();
    Suite {
        name: results.test.clone(),
        time_s: results.stats.duration_s,
        properties: vec![
            ("seed".into(), results.seed.to_string()),
            ("command".into(), results.command.clone()),
            ("store".into(), results.store.display().to_string()),
            ("nemesis".into(), results.config.nemesis.clone()),
            ("net".into(), results.config.net.to_string()),
            (
                "faults_injected".into(),
                results.faults_injected.to_string(),
            ),
        ],
        cases,
    }
}

/// `<testsuites>` with every suite.
pub fn render(name: &str, suites: &[Suite]) -> String {
    let count = |f: fn(&Outcome) -> bool| -> usize {
        suites
            .iter()
            .flat_map(|s| &s.cases)
            .filter(|c| f(&c.outcome))
            .count()
    };
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures = count(|o| matches!(o, Outcome::Failed { .. }));
    let errors = count(|o| matches!(o, Outcome::Error { .. }));
    let time: f64 = suites.iter().map(|s| s.time_s).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">",
        escape(name)
    );
    for s in suites {
        let f = s
            .cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count();
        let e = s
            .cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Error { .. }))
            .count();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\" skipped=\"0\" time=\"{:.3}\">",
            escape(&s.name),
            s.cases.len(),
            s.time_s
        );
        if !s.properties.is_empty() {
            x.push_str("    <properties>\n");
            for (k, v) in &s.properties {
                let _ = writeln!(
                    x,
                    "      <property name=\"{}\" value=\"{}\"/>",
                    escape(k),
                    escape(v)
                );
            }
            x.push_str("    </properties>\n");
        }
        for c in &s.cases {
            let _ = write!(
                x,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">",
                escape(&c.name),
                escape(&c.classname),
                c.time_s
            );
            match &c.outcome {
                Outcome::Passed => {}
                Outcome::Failed { message, text } => {
                    let _ = write!(
                        x,
                        "\n      <failure message=\"{}\" type=\"invalid\">{}</failure>",
                        escape(message),
                        escape(text)
                    );
                }
                Outcome::Error { message, text } => {
                    let _ = write!(
                        x,
                        "\n      <error message=\"{}\" type=\"unknown\">{}</error>",
                        escape(message),
                        escape(text)
                    );
                }
            }
            if !c.system_out.is_empty() {
                let _ = write!(
                    x,
                    "\n      <system-out>{}</system-out>",
                    escape(&c.system_out)
                );
            }
            x.push_str("\n    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Writes `<dir>/junit.xml` for a run.
pub fn write_run(dir: &std::path::Path, results: &Results) -> anyhow::Result<()> {
    let path = dir.join("junit.xml");
    std::fs::write(&path, render("splitbrain", &[run_suite(results)]))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_become_passes_failures_and_errors_with_escaped_text() {
        let suite = Suite {
            name: "t<1>".into(),
            time_s: 2.0,
            properties: vec![("seed".into(), "7".into())],
            cases: vec![
                Case {
                    name: "linearizable".into(),
                    classname: "t".into(),
                    time_s: 1.0,
                    outcome: Outcome::of(Validity::True, "ok", &[]),
                    system_out: String::new(),
                },
                Case {
                    name: "elle".into(),
                    classname: "t".into(),
                    time_s: 1.0,
                    outcome: Outcome::of(
                        Validity::False,
                        "G1c: cycle \"a\" -> b",
                        &["T1 < T2 & \u{1}".into()],
                    ),
                    system_out: "seed 7".into(),
                },
                Case {
                    name: "slow".into(),
                    classname: "t".into(),
                    time_s: 1.0,
                    outcome: Outcome::of(Validity::Unknown, "out of time", &[]),
                    system_out: String::new(),
                },
            ],
        };
        let x = render("all", &[suite]);
        assert!(
            x.contains(r#"<testsuites name="all" tests="3" failures="1" errors="1""#),
            "{x}"
        );
        assert!(x.contains(r#"<testsuite name="t&lt;1&gt;""#), "{x}");
        assert!(x.contains(r#"<failure message="G1c: cycle &quot;a&quot; -&gt; b" type="invalid">T1 &lt; T2 &amp; \u{1}</failure>"#), "{x}");
        assert!(
            x.contains(r#"<error message="unknown: out of time" type="unknown">"#),
            "{x}"
        );
        assert!(x.contains(r#"<property name="seed" value="7"/>"#));
        assert!(
            !x.chars().any(|c| c.is_control() && c != '\n'),
            "no control characters in XML"
        );
    }
}

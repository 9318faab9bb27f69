//! `report.html` of a hermitage run: one self-contained page (no script, no external
//! resource) with the measured table, each cell's reason, each test's statements and, per
//! cell, what every statement did. Every value that comes from the server or the run (rows,
//! error messages, reasons, the version string) goes through [`escape`].

use std::fmt::Write as _;

use targets::adapters::postgres::Isolation;

use super::scripts::{self, StepRecord, StepResult, result_text};
use super::{Anomaly, Measured, Outcome, expected};
use crate::timeline::escape;

/// The page.
pub fn render(measured: &Measured) -> String {
    let validity = measured.validity();
    let (verdict_class, verdict) = match validity {
        checkers::Validity::True => ("valid", "matches the expected PostgreSQL results"),
        checkers::Validity::False => ("invalid", "differs from the expected PostgreSQL results"),
        checkers::Validity::Unknown => ("unknown", "some cells could not be measured"),
    };
    let mut s = String::with_capacity(128 * 1024);
    let title = format!("Hermitage: PostgreSQL {}", measured.server_version);
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1><p id=\"verdict\" class=\"verdict {verdict_class}\">{}</p></header>",
        escape(&title),
        escape(&title),
        escape(verdict),
    );
    let _ = write!(
        s,
        "<p>Each cell is measured: a fixed interleaving of two or three transactions ran against a \
         PostgreSQL {} that splitbrain started, at the row's isolation level. <b>prevented</b>: a \
         session waited and then saw the right data, or the server aborted a transaction; \
         <b>possible</b>: the anomalous outcome was observed. A cell marked * differs from \
         Hermitage's published PostgreSQL results. Measured in {:.1} s.</p>",
        escape(&measured.server_version),
        measured.elapsed.as_secs_f64()
    );

    // The table.
    s.push_str("<section><h2>Isolation table</h2><table id=\"table\" class=\"grid\"><tr><th>isolation</th>");
    for a in Anomaly::ALL {
        let _ = write!(
            s,
            "<th title=\"{}\">{}</th>",
            escape(a.title()),
            escape(a.name())
        );
    }
    s.push_str("</tr>");
    for i in Isolation::ALL {
        let _ = write!(s, "<tr><th>{}</th>", escape(i.as_str()));
        for a in Anomaly::ALL {
            match measured.cell(i, a) {
                Some(c) => {
                    let differs = c.outcome != Outcome::Unknown && c.outcome != expected(i, a);
                    let _ = write!(
                        s,
                        "<td class=\"{}{}\" title=\"{}\"><a href=\"#{}\">{}{}</a></td>",
                        c.outcome.as_str(),
                        if differs { " differs" } else { "" },
                        escape(&c.reason),
                        anchor(i, a),
                        c.outcome.as_str(),
                        if differs { "*" } else { "" },
                    );
                }
                None => s.push_str("<td>-</td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    let differences = measured.differences();
    if !differences.is_empty() {
        s.push_str("<p class=\"warning\">Differs from the expected table:</p><ul>");
        for d in &differences {
            let _ = write!(s, "<li>{}</li>", escape(d));
        }
        s.push_str("</ul>");
    }
    s.push_str(
        "<p class=\"credit\">The catalogue of anomaly tests and the expected PostgreSQL results \
         follow Martin Kleppmann's <a href=\"https://github.com/ept/hermitage\">Hermitage</a>; \
         the scripts and the judging are splitbrain's own.</p></section>",
    );

    // One section per test.
    for script in scripts::all() {
        let a = script.anomaly;
        let _ = write!(
            s,
            "<section id=\"{}\"><h2>{} · {}</h2><p>{}</p><p>Table, fresh for every run:</p><pre>{}</pre>",
            escape(a.name()),
            escape(a.name()),
            escape(a.title()),
            escape(a.description()),
            escape(&script.setup_sql())
        );
        s.push_str("<p>Statements, in order (each session first runs <code>BEGIN ISOLATION LEVEL …</code>):</p>");
        s.push_str(&statements(&script));
        for i in Isolation::ALL {
            let Some(c) = measured.cell(i, a) else {
                continue;
            };
            let _ = write!(
                s,
                "<h3 id=\"{}\">{} · <span class=\"tag {}\">{}</span></h3><p class=\"reason\">{}</p>",
                anchor(i, a),
                escape(i.as_str()),
                c.outcome.as_str(),
                c.outcome.as_str(),
                escape(&c.reason)
            );
            if !c.trace.steps.is_empty() {
                s.push_str(&trace_table(&c.trace.steps, script.sessions));
            }
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}

fn anchor(i: Isolation, a: Anomaly) -> String {
    format!("{}-{}", a.name(), i.as_str())
}

/// The script as columns T1, T2, ...: one row per statement.
fn statements(script: &scripts::Script) -> String {
    let mut s = String::from("<table class=\"script\"><tr><th>#</th>");
    for t in 1..=script.sessions {
        let _ = write!(s, "<th>T{t}</th>");
    }
    s.push_str("</tr>");
    for (n, step) in script.steps.iter().enumerate() {
        let _ = write!(s, "<tr><td>{}</td>", n + 1);
        for t in 1..=script.sessions {
            if t == step.session {
                let _ = write!(s, "<td><code>{}</code></td>", escape(step.sql));
            } else {
                s.push_str("<td></td>");
            }
        }
        s.push_str("</tr>");
    }
    if let Some(after) = script.after {
        let _ = write!(
            s,
            "<tr><td>after</td><td colspan=\"{}\"><code>{}</code> (a new connection, once every session has ended)</td></tr>",
            script.sessions,
            escape(after)
        );
    }
    s.push_str("</table>");
    s
}

/// What each statement did, in the order run, in its session's column.
fn trace_table(steps: &[StepRecord], sessions: usize) -> String {
    let mut s = String::from("<table class=\"trace\"><tr><th>#</th>");
    for t in 1..=sessions {
        let _ = write!(s, "<th>T{t}</th>");
    }
    s.push_str("</tr>");
    for (n, step) in steps.iter().enumerate() {
        let col = step
            .session
            .strip_prefix('T')
            .and_then(|t| t.parse::<usize>().ok());
        let class = match &step.result {
            StepResult::Failed { .. } => "failed",
            StepResult::Skipped | StepResult::Pending => "skipped",
            StepResult::Ok { .. } => "",
        };
        let mut cell = format!("<code>{}</code>", escape(&step.sql));
        if step.blocked {
            match step.resumed_after {
                Some(k) => {
                    let _ = write!(cell, " <i>waited for a lock until step {}</i>", k + 1);
                }
                None => cell.push_str(" <i>waited for a lock</i>"),
            }
        }
        let _ = write!(
            cell,
            "<br><span class=\"result {class}\">→ {}</span>",
            escape(&result_text(&step.sql, &step.result))
        );
        let _ = write!(s, "<tr><td>{}</td>", n + 1);
        match col {
            Some(c) if (1..=sessions).contains(&c) => {
                for t in 1..=sessions {
                    if t == c {
                        let _ = write!(s, "<td>{cell}</td>");
                    } else {
                        s.push_str("<td></td>");
                    }
                }
            }
            _ => {
                let _ = write!(
                    s,
                    "<td colspan=\"{sessions}\">{}: {cell}</td>",
                    escape(&step.session)
                );
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}\
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}\
.verdict{display:inline-block;font-weight:bold;padding:.15em .6em;border-radius:4px}\
p.verdict{font-size:1.4em;margin:.2em 0}\
.valid{background:#d8f0d8;color:#1e6b1e}.invalid{background:#f8d4d4;color:#a11}.unknown{background:#fbeec4;color:#7a5b00}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
table.grid{font-size:.92em}table.grid td{text-align:center;padding:.25em .4em}table.grid th{white-space:nowrap}table.grid a{color:inherit;text-decoration:none}\
td.prevented,.tag.prevented{background:#d8f0d8}td.possible,.tag.possible{background:#fbe0c8}\
td.unknown,.tag.unknown{background:#eee}td.differs{outline:3px solid #a11}\
.tag{padding:0 .4em;border-radius:3px}.result{color:#555}.result.failed{color:#a11}.result.skipped{color:#999}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}.warning{color:#a11}\
.credit{font-size:.9em;color:#555}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hermitage::scripts::Trace;
    use crate::hermitage::{Cell, Measured};
    use std::time::Duration;

    #[test]
    fn every_value_from_the_server_is_escaped() {
        let trace = Trace {
            steps: vec![StepRecord {
                session: "T1".into(),
                sql: "SELECT value FROM g0 WHERE id = 1".into(),
                label: String::new(),
                blocked: true,
                resumed_after: Some(3),
                result: StepResult::Failed {
                    code: "40001".into(),
                    message: "<script>alert(1)</script>".into(),
                },
            }],
        };
        let m = Measured {
            server_version: "15 <b>".into(),
            cells: vec![Cell {
                isolation: Isolation::Serializable,
                anomaly: Anomaly::G0,
                outcome: Outcome::Possible,
                reason: "T1 read \"11\" & <img>".into(),
                trace,
            }],
            elapsed: Duration::from_secs(2),
        };
        let page = render(&m);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img>"));
        assert!(!page.contains("15 <b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("T1 read &quot;11&quot; &amp; &lt;img&gt;"));
        assert!(page.contains("waited for a lock until step 4"));
        // The cell differs from the expected table (serializable prevents G0) and says so.
        assert!(page.contains("possible*"));
        assert!(page.contains("ept/hermitage"));
        assert!(page.contains("<code>UPDATE g0 SET value = 12 WHERE id = 1</code>"));
    }
}

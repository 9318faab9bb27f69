//! Dependency cycles of the transactional checkers as files a person can open: one DOT file
//! per explained cycle and, when graphviz's `dot` is installed, its SVG rendering.

use std::path::{Path, PathBuf};
use std::process::Command;

use checkers::Verdict;

/// Writes `<checker>-<anomaly>-<n>.dot` (and `.svg` when `dot` is available) into `dir` for
/// every cycle in the verdict's details; returns the files written. A verdict without cycles
/// writes nothing. Rendering failures are reported as warnings, the DOT file stays.
pub fn write(verdict: &Verdict, dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<String>)> {
    let mut written = Vec::new();
    let mut warnings = Vec::new();
    let Some(anomalies) = verdict.details.get("anomalies").and_then(|a| a.as_object()) else {
        return Ok((written, warnings));
    };
    let graphviz = graphviz_available();
    for (anomaly, cases) in anomalies {
        let Some(cases) = cases.as_array() else {
            continue;
        };
        for (n, case) in cases.iter().enumerate() {
            let Some(dot) = case.get("dot").and_then(|d| d.as_str()) else {
                continue;
            };
            std::fs::create_dir_all(dir)?;
            let stem = format!("{}-{}-{}", verdict.checker, file_safe(anomaly), n + 1);
            let dot_path = dir.join(format!("{stem}.dot"));
            std::fs::write(&dot_path, dot)?;
            written.push(dot_path.clone());
            if graphviz {
                let svg_path = dir.join(format!("{stem}.svg"));
                match Command::new("dot")
                    .arg("-Tsvg")
                    .arg(&dot_path)
                    .arg("-o")
                    .arg(&svg_path)
                    .output()
                {
                    Ok(out) if out.status.success() => written.push(svg_path),
                    Ok(out) => warnings.push(format!(
                        "graphviz could not render {}: {}",
                        dot_path.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => warnings.push(format!("cannot run graphviz's dot: {e}")),
                }
            }
        }
    }
    if !graphviz && !written.is_empty() {
        warnings.push("graphviz's `dot` is not installed: wrote DOT files only".to_string());
    }
    Ok((written, warnings))
}

fn graphviz_available() -> bool {
    Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Anomaly names are ours (`G-single-realtime`), but keep file names plain whatever they are.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cycle_becomes_a_dot_file_and_an_svg() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../checkers/tests/data/txn/la-g1c.edn"
        );
        let loaded = histories::read_any(Path::new(path), None).unwrap();
        let verdict = checkers::txn::check(
            &loaded.history,
            &checkers::txn::TxnOptions::new(checkers::txn::Workload::ListAppend),
        );
        let dir = tempfile::tempdir().unwrap();
        let (files, warnings) = write(&verdict, dir.path()).unwrap();
        let dot = dir.path().join("elle-list-append-G1c-1.dot");
        assert!(files.contains(&dot), "{files:?}");
        assert!(
            std::fs::read_to_string(&dot)
                .unwrap()
                .starts_with("digraph")
        );
        // ci/test.sh installs graphviz, so the picture must be there too.
        let svg = dir.path().join("elle-list-append-G1c-1.svg");
        assert!(files.contains(&svg), "{files:?} {warnings:?}");
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    }

    #[test]
    fn a_verdict_without_cycles_writes_nothing() {
        let verdict = Verdict {
            checker: "linearizable".into(),
            valid: checkers::Validity::True,
            summary: String::new(),
            explanation: Vec::new(),
            details: serde_json::json!({"partitions": []}),
        };
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = write(&verdict, &dir.path().join("none")).unwrap();
        assert!(files.is_empty());
        assert!(!dir.path().join("none").exists());
    }
}

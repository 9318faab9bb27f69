//! `report.html` opened in headless Chromium: the browser lays out the verdict and the
//! plots, and a screenshot lands in the run's directory. Chromium is installed with apt-get
//! when missing (the test suite runs as root); where that is impossible the test says so.

mod common;
mod packages;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{describe, results_json, run_splitbrain};

/// The Chromium executable, installing the Debian package if needed.
fn chromium() -> Option<PathBuf> {
    packages::find("chromium-browser")
        .or_else(|| packages::find("google-chrome"))
        .or_else(|| packages::ensure("chromium", "chromium"))
}

fn headless(chromium: &Path, profile: &Path, extra: &[&str], page: &Path) -> std::process::Output {
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1200,3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("cannot start chromium")
}

#[test]
fn report_html_renders_the_verdict_and_plots_in_headless_chromium() {
    let store = tempfile::tempdir().unwrap();
    let out = run_splitbrain(&[
        "run",
        "--replication",
        "async",
        "--read-routing",
        "any",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "7",
        "--seed",
        "3",
        "--store",
        store.path().to_str().unwrap(),
    ]);
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{}",
        describe(&out)
    );
    let test = "refnode-register-async-partition";
    let results = results_json(store.path(), test);
    let run = std::fs::canonicalize(store.path().join(test).join("latest")).unwrap();
    let report = run.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(junit.contains("<testcase name=\"linearizable\""), "{junit}");
    for external in ["src=", "href=\"http", "url(", "@import"] {
        assert!(
            !html.contains(external),
            "{external}: the page must be self-contained"
        );
    }
    assert!(
        html.contains("start-partition"),
        "fault windows are labelled"
    );
    assert!(html.contains("href=\"n1.log\""), "node logs are linked");

    let Some(chromium) = chromium() else {
        eprintln!(
            "report_html_renders_the_verdict_and_plots_in_headless_chromium: no chromium, checked the file only"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let dom = headless(&chromium, profile.path(), &["--dump-dom"], &report);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let check = dom_text
        .split("id=\"render-check\"")
        .nth(1)
        .and_then(|rest| rest.split('>').nth(1))
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no render check in the DOM: {}", describe(&dom)));
    let verdict = match &results["valid"] {
        serde_json::Value::Bool(true) => "valid",
        serde_json::Value::Bool(false) => "INVALID",
        _ => "unknown",
    };
    assert_eq!(
        check,
        format!("plots=3 verdict={verdict} verdict_visible=true"),
        "what Chromium laid out"
    );
    let shot = run.join("report.png");
    let snap = headless(
        &chromium,
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
        &report,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot of {size} bytes: {}",
        describe(&snap)
    );
}

/// Runs splitbrain under `script`, which gives it a pseudo-terminal; `None` without `script`.
fn on_a_terminal(store: &Path, extra: &str) -> Option<String> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let command = format!(
        "{} run --time-limit 1.5 --rate 100 --seed 1 --store {} {extra}",
        common::splitbrain().display(),
        store.display()
    );
    let out = Command::new(script)
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("SPLITBRAIN_REFNODE", common::refnode())
        .output()
        .expect("cannot run script");
    assert!(out.status.success(), "{}", describe(&out));
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn the_progress_line_shows_live_counts_on_a_terminal_unless_quiet() {
    let store = tempfile::tempdir().unwrap();
    let Some(tty) = on_a_terminal(store.path(), "") else {
        eprintln!("no `script` to give splitbrain a terminal; skipped");
        return;
    };
    assert!(tty.contains(" invoked · "), "{tty}");
    assert!(tty.contains("\r\x1b[K["), "redrawn in place: {tty:?}");
    let quiet = on_a_terminal(store.path(), "--quiet").unwrap();
    assert!(!quiet.contains(" invoked · "), "{quiet}");
}

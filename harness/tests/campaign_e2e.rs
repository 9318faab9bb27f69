//! `splitbrain campaign`: the project's own campaign files stay valid, and a verdict a cell
//! did not expect fails the campaign, in the table, the JUnit and the exit code.

mod common;

use std::path::PathBuf;

use common::{describe, refnode, run_splitbrain};

fn ci_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci")
}

#[test]
fn the_campaign_files_in_ci_parse() {
    let mut found = 0;
    for entry in std::fs::read_dir(ci_dir()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = harness::campaign::parse(&text, &refnode(), std::path::Path::new("store"));
            assert!(
                parsed.is_ok(),
                "{}: {:#}",
                path.display(),
                parsed.unwrap_err()
            );
            found += 1;
        }
    }
    assert!(found >= 2, "ci/ holds the smoke and the nightly campaigns");
}

#[test]
fn an_unexpected_verdict_fails_the_campaign_table_junit_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        r#"
name = "surprise"
test-count = 5
seed = 3
nemeses = ["none"]

[run]
time-limit = 2
rate = 100

[[configs]]
name = "as-expected"
replication = "sync"
expect = { none = "valid" }

[[configs]]
name = "wrongly-expected"
replication = "sync"
expect = { none = "invalid" }
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = run_splitbrain(&[
        "campaign",
        file.to_str().unwrap(),
        "--test-count",
        "1",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 of 2 runs, 1 unexpected"),
        "--test-count overrides: {stdout}"
    );
    assert!(stdout.contains("UNEXPECTED (1)"), "{stdout}");
    assert!(
        stdout.contains("wrongly-expected · none · seed 3: valid (expected invalid)"),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(store.join("campaign-surprise/latest/junit.xml")).unwrap();
    assert!(
        junit.contains(r#"tests="2" failures="1" errors="0""#),
        "{junit}"
    );
    assert!(
        junit.contains("unexpected verdict valid (expected invalid)"),
        "{junit}"
    );
    // Each run of the campaign is a normal run in the store, with its report.
    assert!(
        store
            .join("refnode-register-sync-none/latest/report.html")
            .is_file()
    );
}

#[test]
fn a_bad_campaign_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "name = \"x\"\nnemeses = [\"none\"]\n[[configs]]\nname = \"a\"\nreplicaton = \"sync\"\n",
    )
    .unwrap();
    let out = run_splitbrain(&["campaign", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(254), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("replicaton"), "{stderr}");
}

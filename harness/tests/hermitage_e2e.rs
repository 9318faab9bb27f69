//! `splitbrain hermitage` against a real PostgreSQL that the command starts and stops itself:
//! the measured table matches Hermitage's published PostgreSQL results, the store holds the
//! JSON and the report, and no server process or data directory is left behind.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Instant;

use common::{describe, processes_mentioning, splitbrain};

/// Pids of live processes whose working directory is under `dir`: the postmaster and every
/// backend chdir into their data directory, and backends rename their command lines.
fn processes_working_under(dir: &std::path::Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.starts_with(&dir).then_some(pid)
        })
        .collect()
}

/// The cells of the terminal table: `(isolation, [10 outcomes])` per row.
fn table_rows(stdout: &str) -> Vec<(String, Vec<String>)> {
    stdout
        .lines()
        .filter(|l| l.starts_with('│'))
        .map(|l| {
            let cols: Vec<String> = l
                .split('│')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            (cols[0].clone(), cols[1..].to_vec())
        })
        .collect()
}

#[test]
fn postgres_isolation_levels_measure_as_hermitage_published_and_nothing_is_left_running() {
    let work = tempfile::tempdir().unwrap();
    // The server runs as the postgres user, with its data under TMPDIR = work.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let store = work.path().join("store");
    let t0 = Instant::now();
    let out = Command::new(splitbrain())
        .args(["hermitage", "--target", "postgres", "--store"])
        .arg(&store)
        .env("TMPDIR", work.path())
        .output()
        .expect("cannot start splitbrain");
    let took = t0.elapsed();
    eprintln!("splitbrain hermitage took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout.contains("matches the expected PostgreSQL results"),
        "{}",
        describe(&out)
    );

    let rows = table_rows(&stdout);
    let header = &rows[0];
    assert_eq!(header.0, "isolation");
    assert_eq!(
        header.1,
        [
            "G0", "G1a", "G1b", "G1c", "OTV", "PMP", "P4", "G-single", "G2-item", "G2"
        ]
    );
    let cell = |level: &str, anomaly: &str| -> String {
        let col = header.1.iter().position(|a| a == anomaly).unwrap();
        let row = rows.iter().find(|r| r.0 == level).unwrap();
        row.1[col].clone()
    };
    assert_eq!(cell("read-committed", "G0"), "prevented");
    assert_eq!(cell("read-committed", "G1a"), "prevented");
    assert_eq!(cell("read-committed", "G-single"), "possible");
    assert_eq!(cell("read-committed", "P4"), "possible");
    assert_eq!(cell("repeatable-read", "G2-item"), "possible");
    assert_eq!(cell("repeatable-read", "P4"), "prevented");
    assert_eq!(cell("repeatable-read", "G-single"), "prevented");
    for anomaly in &header.1 {
        assert_eq!(cell("serializable", anomaly), "prevented", "{anomaly}");
    }

    // The store: the same table as JSON, each cell with its reason and trace, and the report.
    let run = store.join("hermitage-postgres").join("latest");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("hermitage.json")).unwrap())
            .unwrap();
    assert_eq!(json["matches_expected"], true);
    assert_eq!(json["table"]["serializable"]["G2-item"], "prevented");
    assert_eq!(json["table"]["repeatable-read"]["G2-item"], "possible");
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 30);
    let g2_item_ser = cells
        .iter()
        .find(|c| c["isolation"] == "serializable" && c["anomaly"] == "G2-item")
        .unwrap();
    assert!(
        g2_item_ser["reason"].as_str().unwrap().contains("40001"),
        "{g2_item_ser}"
    );
    let p4_rr = cells
        .iter()
        .find(|c| c["isolation"] == "repeatable-read" && c["anomaly"] == "P4")
        .unwrap();
    assert!(
        p4_rr["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["blocked"] == true),
        "T2's update of x waits for T1: {p4_rr}"
    );
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("id=\"table\""));
    assert!(report.contains("UPDATE p4 SET value = 11 WHERE id = 1"));
    assert!(report.contains("ept/hermitage"));
    assert!(run.join("postgres.log").is_file());

    // Nothing left: no server process mentions the work dir, and its data directory is gone.
    assert!(
        processes_mentioning(work.path()).is_empty(),
        "left running: {:?}",
        processes_mentioning(work.path())
    );
    assert!(
        processes_working_under(work.path()).is_empty(),
        "left running: {:?}",
        processes_working_under(work.path())
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "store")
        .collect();
    assert!(leftovers.is_empty(), "left in TMPDIR: {leftovers:?}");
}

#[test]
fn an_unsupported_target_is_one_line_and_exit_254() {
    let out = Command::new(splitbrain())
        .args(["hermitage", "--target", "etcd"])
        .output()
        .expect("cannot start splitbrain");
    assert_eq!(out.status.code(), Some(254), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("only --target postgres"), "{stderr}");
    assert!(out.stdout.is_empty());
}

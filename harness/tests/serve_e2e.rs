//! `splitbrain serve`: lists the store's runs with their verdicts over HTTP on loopback,
//! serves their reports, and nothing outside the store.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use common::{describe, run_splitbrain, splitbrain};

/// Stops the server when the test ends, whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn serve_lists_runs_and_serves_their_files_but_nothing_else() {
    let store = tempfile::tempdir().unwrap();
    let run = store
        .path()
        .join("refnode-register-sync-kill/20260101T000000");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("results.json"),
        r#"{"valid": false, "seed": 42, "config": {"nemesis": "kill", "net": "direct"}, "stats": {"total": {"ok": 99}}}"#,
    )
    .unwrap();
    std::fs::write(run.join("report.html"), "<p id=\"verdict\">INVALID</p>").unwrap();
    std::fs::write(store.path().join("secret.txt"), "do not serve").unwrap();

    let mut child = Command::new(splitbrain())
        .args(["serve", store.path().to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _server = Server(child);
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let (status, index) = get(&addr, "/");
    assert_eq!(status, 200);
    assert!(index.contains("refnode-register-sync-kill"), "{index}");
    assert!(
        index.contains("INVALID") && index.contains(">42<"),
        "{index}"
    );
    assert!(
        index.contains("/runs/refnode-register-sync-kill/20260101T000000/report.html"),
        "{index}"
    );
    let (status, report) = get(
        &addr,
        "/runs/refnode-register-sync-kill/20260101T000000/report.html",
    );
    assert_eq!(
        (status, report.as_str()),
        (200, "<p id=\"verdict\">INVALID</p>")
    );
    for bad in [
        "/runs/refnode-register-sync-kill/../secret.txt",
        "/secret.txt",
        "/runs/x/y/z",
    ] {
        assert_eq!(get(&addr, bad).0, 404, "{bad}");
    }
}

#[test]
fn serve_refuses_to_listen_beyond_loopback() {
    let store = tempfile::tempdir().unwrap();
    let out = run_splitbrain(&["serve", store.path().to_str().unwrap(), "--bind", "0.0.0.0"]);
    assert_eq!(out.status.code(), Some(254), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));
}

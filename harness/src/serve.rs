//! `splitbrain serve [STORE]`: a small web UI on the loopback interface listing the stored
//! runs with their verdicts, linking each run's report, results, history, JUnit and node
//! logs, and the campaigns' summaries.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once (more wait in the kernel's
//! backlog), a request head of at most [`MAX_REQUEST_BYTES`] read within
//! [`REQUEST_TIMEOUT`], one request per connection, files streamed (never read whole), the
//! index lists the newest [`MAX_LISTED`] runs. Only files directly inside a run's directory
//! are served, and only from inside the store. Only loopback addresses may be bound: the
//! pages show command lines and logs of the systems under test.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::timeline::escape;

pub const MAX_CONNECTIONS: usize = 32;
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_LISTED: usize = 500;

/// The flags of `splitbrain serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The store to show.
    #[arg(default_value = "store")]
    pub store: PathBuf,
    /// Port on the loopback interface (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Loopback address to listen on (127.0.0.1 or ::1).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// `splitbrain serve`: returns the exit code (serves until Ctrl-C or SIGTERM).
pub fn command(args: ServeArgs) -> i32 {
    use crate::cli::exit;
    if !args.bind.is_loopback() {
        eprintln!(
            "splitbrain: serve listens on loopback only (127.0.0.1 or ::1), not {}",
            args.bind
        );
        return exit::BAD_INPUT;
    }
    let store = match std::fs::canonicalize(&args.store) {
        Ok(s) if s.is_dir() => s,
        _ => {
            eprintln!(
                "splitbrain: {} is not a store directory",
                args.store.display()
            );
            return exit::BAD_INPUT;
        }
    };
    let rt = crate::cli::runtime();
    rt.block_on(async move {
        let listener = match TcpListener::bind(SocketAddr::new(args.bind, args.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "splitbrain: cannot listen on {}:{}: {e}",
                    args.bind, args.port
                );
                return exit::BAD_INPUT;
            }
        };
        let addr = listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        println!("serving {} at http://{addr}/", store.display());
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::cli::stop_on_signals(stop_tx));
        tokio::select! {
            () = serve(listener, store) => {}
            _ = stop_rx.wait_for(|s| *s) => {}
        }
        exit::VALID
    })
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, store: PathBuf) {
    let store = Arc::new(store);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(300), handle(socket, &store)).await;
            drop(permit);
        });
    }
}

async fn handle(mut socket: TcpStream, store: &Path) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut socket)).await {
        Ok(Ok(Some(h))) => h,
        _ => return respond(&mut socket, 400, "text/plain", b"bad request\n").await,
    };
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut socket, 405, "text/plain", b"only GET\n").await;
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    if path == "/" {
        let page = index(store);
        return respond(
            &mut socket,
            200,
            "text/html; charset=utf-8",
            page.as_bytes(),
        )
        .await;
    }
    match resolve(store, path) {
        Some(file) => send_file(&mut socket, &file, method == "HEAD").await,
        None => respond(&mut socket, 404, "text/plain", b"not found\n").await,
    }
}

/// Reads up to the end of the request head; `None` if it is too long or the peer left.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).to_string()));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

/// `/runs/<test>/<run>/<file>` as a file of the store, or `None`: every component is a plain
/// name (no `..`, no hidden files), and the file, links resolved, lies inside the store.
pub fn resolve(store: &Path, path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix("/runs/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [test, run, file] = parts.as_slice() else {
        return None;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    };
    if ![test, run, file].iter().all(|s| plain(s)) {
        return None;
    }
    let candidate = std::fs::canonicalize(store.join(test).join(run).join(file)).ok()?;
    (candidate.starts_with(store) && candidate.is_file()).then_some(candidate)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

async fn send_file(socket: &mut TcpStream, path: &Path, head_only: bool) -> std::io::Result<()> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => return respond(socket, 404, "text/plain", b"not found\n").await,
    };
    let len = file.metadata().await?.len();
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {len}\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self'\r\nConnection: close\r\n\r\n",
        content_type(path)
    );
    socket.write_all(header.as_bytes()).await?;
    if !head_only {
        tokio::io::copy(&mut file, socket).await?;
    }
    socket.shutdown().await
}

async fn respond(
    socket: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(header.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.shutdown().await
}

/// One stored run, as the index shows it.
#[derive(Debug, Clone)]
struct Listed {
    test: String,
    run: String,
    results: Option<serde_json::Value>,
    files: Vec<String>,
}

/// The directories `store/<test>/<run>/`, newest first (run names are timestamps), at most
/// [`MAX_LISTED`].
fn listed(store: &Path) -> Vec<Listed> {
    let mut out: Vec<(String, String, PathBuf)> = Vec::new();
    let Ok(tests) = std::fs::read_dir(store) else {
        return Vec::new();
    };
    for t in tests.flatten() {
        if !t.file_type().is_ok_and(|ft| ft.is_dir()) {
            continue;
        }
        let test = t.file_name().to_string_lossy().to_string();
        let Ok(runs) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for r in runs.flatten() {
            if !r.file_type().is_ok_and(|ft| ft.is_dir()) {
                continue;
            }
            out.push((
                test.clone(),
                r.file_name().to_string_lossy().to_string(),
                r.path(),
            ));
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(MAX_LISTED);
    out.into_iter()
        .map(|(test, run, dir)| {
            let results = std::fs::read(dir.join("results.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .map(|es| {
                    es.flatten()
                        .filter(|e| e.file_type().is_ok_and(|ft| ft.is_file()))
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .filter(|n| !n.starts_with('.'))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            Listed {
                test,
                run,
                results,
                files,
            }
        })
        .collect()
}

/// The index page.
pub fn index(store: &Path) -> String {
    let runs = listed(store);
    let mut s = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>splitbrain store</title><style>\
body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
.valid{background:#d8f0d8}.invalid{background:#f8d4d4}.unknown{background:#fbeec4}a{margin-right:.5em}</style></head><body>",
    );
    s.push_str(&format!(
        "<h1>splitbrain store</h1><p>{}</p>",
        escape(&store.display().to_string())
    ));
    let (tests, campaigns): (Vec<&Listed>, Vec<&Listed>) = runs
        .iter()
        .partition(|r| r.results.is_some() || !r.files.iter().any(|f| f == "summary.txt"));
    s.push_str("<h2>Runs</h2><table><thead><tr><th>run</th><th>test</th><th>verdict</th><th>seed</th><th>nemesis</th><th>net</th><th>ok ops</th><th>files</th></tr></thead><tbody>");
    for r in &tests {
        let res = r.results.as_ref();
        let field = |path: &[&str]| -> String {
            let mut v = res;
            for p in path {
                v = v.and_then(|x| x.get(*p));
            }
            match v {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        let (verdict, class) = match res.and_then(|r| r.get("valid")) {
            Some(serde_json::Value::Bool(true)) => ("valid", "valid"),
            Some(serde_json::Value::Bool(false)) => ("INVALID", "invalid"),
            Some(_) => ("unknown", "unknown"),
            None => ("(no results)", ""),
        };
        let base = format!("/runs/{}/{}/", r.test, r.run);
        let links: String = r
            .files
            .iter()
            .filter(|f| !f.ends_with(".png") || f.as_str() == "report.png")
            .map(|f| {
                format!(
                    "<a href=\"{}{}\">{}</a>",
                    escape(&base),
                    escape(f),
                    escape(f)
                )
            })
            .collect();
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{links}</td></tr>",
            if r.files.iter().any(|f| f == "report.html") {
                format!("<a href=\"{}report.html\">{}</a>", escape(&base), escape(&r.run))
            } else {
                escape(&r.run)
            },
            escape(&r.test),
            verdict,
            escape(&field(&["seed"])),
            escape(&field(&["config", "nemesis"])),
            escape(&field(&["config", "net"])),
            escape(&field(&["stats", "total", "ok"])),
        ));
    }
    s.push_str("</tbody></table>");
    if !campaigns.is_empty() {
        s.push_str("<h2>Campaigns</h2><ul>");
        for c in &campaigns {
            let base = format!("/runs/{}/{}/", c.test, c.run);
            s.push_str(&format!(
                "<li>{} {} <a href=\"{}summary.txt\">summary</a> <a href=\"{}junit.xml\">junit.xml</a></li>",
                escape(&c.test),
                escape(&c.run),
                escape(&base),
                escape(&base)
            ));
        }
        s.push_str("</ul>");
    }
    if runs.len() == MAX_LISTED {
        s.push_str(&format!(
            "<p>Only the newest {MAX_LISTED} runs are listed.</p>"
        ));
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_files_inside_run_directories_resolve() {
        let store = tempfile::tempdir().unwrap();
        let run = store.path().join("t/20260101T000000");
        std::fs::create_dir_all(run.join("n1")).unwrap();
        std::fs::write(run.join("report.html"), "<p>r</p>").unwrap();
        std::fs::write(store.path().join("secret"), "s").unwrap();
        let root = std::fs::canonicalize(store.path()).unwrap();
        assert!(resolve(&root, "/runs/t/20260101T000000/report.html").is_some());
        for bad in [
            "/runs/t/20260101T000000/../../secret",
            "/runs/t/../secret",
            "/runs/t/20260101T000000/n1",
            "/runs/t/20260101T000000/.hidden",
            "/runs/t/20260101T000000/report.html/x",
            "/etc/passwd",
            "/runs/..%2f..%2fsecret",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad}");
        }
        // A link out of the store is not followed.
        std::os::unix::fs::symlink("/etc/hostname", run.join("out.txt")).unwrap();
        assert!(resolve(&root, "/runs/t/20260101T000000/out.txt").is_none());
    }

    #[test]
    fn the_index_lists_runs_with_escaped_values() {
        let store = tempfile::tempdir().unwrap();
        let run = store.path().join("t<x>/20260101T000000");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(
            run.join("results.json"),
            r#"{"valid": false, "seed": 7, "config": {"nemesis": "<script>", "net": "proxy"}, "stats": {"total": {"ok": 12}}}"#,
        )
        .unwrap();
        std::fs::write(run.join("report.html"), "").unwrap();
        let page = index(store.path());
        assert!(page.contains("INVALID"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("report.html"));
    }
}

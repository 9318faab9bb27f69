//! A worked example of a splitbrain adapter: `cargo run -p targets --example own_adapter`.
//!
//! Starts one `redis-server` through the adapter in `adapter.rs`, drives it with four clients
//! for two seconds while a nemesis kills and restarts it (`demo.rs`), checks the history for
//! linearizability (a cas-register per key) and tears the server down. Exit code 0 valid,
//! 1 invalid, 2 unknown, 255 when the demo itself could not run.

mod adapter;
mod demo;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use checkers::Validity;
use checkers::linearizable::{self, LinOptions, ModelKind};
use histories::OpType;
use targets::Db;

#[tokio::main]
async fn main() -> ExitCode {
    match demo_and_check().await {
        Ok(valid) => ExitCode::from(valid.exit_code() as u8),
        Err(e) => {
            eprintln!("own_adapter: {e:#}");
            ExitCode::from(255)
        }
    }
}

async fn demo_and_check() -> anyhow::Result<Validity> {
    let dir = tempfile::tempdir()?;
    let config = adapter::Config {
        dir: dir.path().to_path_buf(),
        append_only: true,
    };
    let db = Arc::new(adapter::OneRedis::new(config)?);
    println!(
        "redis-server on {} (append-only file, fsync always)",
        db.addr()
    );
    let ran = match db.start(Duration::from_secs(10)).await {
        Ok(()) => demo::run(Arc::clone(&db)).await,
        Err(e) => Err(e),
    };
    // Whatever happened, the server goes.
    db.teardown().await;
    let history = ran?;

    let calls: Vec<_> = history
        .ops()
        .iter()
        .filter(|op| op.is_client() && !op.is_invoke())
        .collect();
    let count = |kind| calls.iter().filter(|op| op.kind == kind).count();
    println!(
        "{} clients for {:?}, killed at {:?}, restarted at {:?}: {} calls, {} ok, {} fail, {} info",
        demo::WORKERS,
        demo::RUN,
        demo::KILL_AT,
        demo::RESTART_AT,
        calls.len(),
        count(OpType::Ok),
        count(OpType::Fail),
        count(OpType::Info)
    );
    // Why calls did not succeed, in the client's words: the fail/info rule at work.
    let mut why: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for op in calls.iter().filter(|op| op.kind != OpType::Ok) {
        let error = op.error.as_deref().unwrap_or("");
        *why.entry((op.kind.as_str(), error)).or_default() += 1;
    }
    for ((kind, error), n) in why {
        println!("  {n:>4} {kind:<4} {error}");
    }

    let verdict = linearizable::check(&history, ModelKind::CasRegister, &LinOptions::default());
    println!("linearizable: {} - {}", verdict.valid, verdict.summary);
    for line in verdict.explanation.iter().take(20) {
        println!("  {line}");
    }
    Ok(verdict.valid)
}

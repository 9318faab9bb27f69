//! Runs a [`Script`] against PostgreSQL: one connection per session, the statements in the
//! script's order, and a statement that waits for another session's lock left waiting while
//! the script goes on.
//!
//! Whether a statement waits is asked of the server (`pg_blocking_pids` of its backend), not
//! guessed from a timeout: each statement is sent from its own task, and the driver polls until
//! it has either finished or is waiting for a lock. After every step, statements left waiting
//! are polled the same way, so one that a COMMIT or ROLLBACK released has finished before the
//! next step is sent and the trace's order is the order things happened in.
//!
//! Nothing can hang: every session has a `lock_timeout`, every poll has a deadline, and at the
//! end every session's backend is terminated (rolling back whatever it held) and waited for.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use targets::adapters::postgres::Isolation;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::scripts::{Script, StepRecord, StepResult, Trace};

/// Time bounds of one script run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest a statement may take to finish or to be seen waiting for a lock.
    pub settle: Duration,
    /// The sessions' `lock_timeout`: the longest a statement waits for a lock at all.
    pub lock_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            settle: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(4),
        }
    }
}

/// A connection and the task that drives it (aborted on drop).
#[derive(Debug)]
pub struct Conn {
    pub client: Arc<tokio_postgres::Client>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects as `postgres` to database `postgres` at `host:port`.
pub async fn connect(host: &str, port: u16) -> anyhow::Result<Conn> {
    let timeout = Duration::from_secs(5);
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .application_name("splitbrain-hermitage")
        .connect_timeout(timeout);
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| anyhow!("connecting to {host}:{port} timed out"))?
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn {
        client: Arc::new(client),
        task,
    })
}

/// The rows of a simple query as text (`NULL` for null) and the row count of its last
/// command.
pub async fn query_text(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<(Vec<Vec<String>>, Option<u64>), tokio_postgres::Error> {
    Ok(rows_of(client.simple_query(sql).await?))
}

fn rows_of(messages: Vec<SimpleQueryMessage>) -> (Vec<Vec<String>>, Option<u64>) {
    let mut rows = Vec::new();
    let mut affected = None;
    for m in messages {
        match m {
            SimpleQueryMessage::Row(r) => rows.push(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => affected = Some(n),
            _ => {}
        }
    }
    (rows, affected)
}

type Running = JoinHandle<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>>;

/// A session: its connection, its backend's pid, and its statement still waiting, if any.
struct Session {
    conn: Conn,
    pid: i32,
    waiting: Option<(usize, Running)>,
    /// The transaction failed (or a statement never finished): later steps are not sent.
    done_for: bool,
}

enum Settled {
    Done(StepResult),
    Waiting(Running),
}

/// Runs `script` at `isolation` on a fresh table and returns what every statement did.
pub async fn run(
    host: &str,
    port: u16,
    isolation: Isolation,
    script: &Script,
    limits: Limits,
) -> anyhow::Result<Trace> {
    let admin = connect(host, port).await?;
    // The admin connection never waits long either: an earlier run's leftovers would show here.
    let admin_setup = format!(
        "SET lock_timeout = {}; {}",
        limits.lock_timeout.as_millis(),
        script.setup_sql()
    );
    admin
        .client
        .batch_execute(&admin_setup)
        .await
        .with_context(|| format!("cannot create the table {}", script.table))?;
    let mut sessions = Vec::with_capacity(script.sessions);
    for _ in 0..script.sessions {
        let conn = connect(host, port).await?;
        let (rows, _) = query_text(
            &conn.client,
            &format!(
                "SET lock_timeout = {}; SELECT pg_backend_pid()",
                limits.lock_timeout.as_millis()
            ),
        )
        .await
        .context("cannot set up a session")?;
        let pid = rows
            .first()
            .and_then(|r| r.first())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("no backend pid"))?;
        sessions.push(Session {
            conn,
            pid,
            waiting: None,
            done_for: false,
        });
    }
    let pids: Vec<i32> = sessions.iter().map(|s| s.pid).collect();
    let steps = drive(&admin, &mut sessions, isolation, script, limits).await;
    // Whatever happened, no backend of this script outlives it.
    drop(sessions);
    end_backends(&admin, &pids, limits.settle).await?;
    let mut steps = steps?;
    if let Some(sql) = script.after {
        let result = match query_text(&admin.client, sql).await {
            Ok((rows, affected)) => StepResult::Ok { rows, affected },
            Err(e) => failed(&e),
        };
        steps.push(StepRecord {
            session: "after".into(),
            sql: sql.into(),
            label: "after".into(),
            blocked: false,
            resumed_after: None,
            result,
        });
    }
    Ok(Trace { steps })
}

/// The steps: every session's BEGIN, then the script.
async fn drive(
    admin: &Conn,
    sessions: &mut [Session],
    isolation: Isolation,
    script: &Script,
    limits: Limits,
) -> anyhow::Result<Vec<StepRecord>> {
    let begin = format!("BEGIN ISOLATION LEVEL {}", isolation.sql());
    let plan: Vec<(usize, String, &str)> = (1..=script.sessions)
        .map(|s| (s, begin.clone(), ""))
        .chain(
            script
                .steps
                .iter()
                .map(|s| (s.session, s.sql.to_string(), s.label)),
        )
        .collect();
    let mut records: Vec<StepRecord> = Vec::with_capacity(plan.len());
    for (session, sql, label) in plan {
        let i = session - 1;
        // The session's next statement is due: its earlier one must have finished by now.
        if let Some((at, running)) = sessions[i].waiting.take() {
            let waited = settle(admin, sessions[i].pid, running, limits.settle).await?;
            finish(&mut records, &mut sessions[i], at, waited);
        }
        let mut record = StepRecord {
            session: format!("T{session}"),
            sql: sql.clone(),
            label: label.to_string(),
            blocked: false,
            resumed_after: None,
            result: StepResult::Skipped,
        };
        if sessions[i].done_for {
            records.push(record);
            continue;
        }
        let client = Arc::clone(&sessions[i].conn.client);
        let running: Running = tokio::spawn(async move { client.simple_query(&sql).await });
        let at = records.len();
        match settle(admin, sessions[i].pid, running, limits.settle).await? {
            Settled::Done(result) => {
                sessions[i].done_for = matches!(result, StepResult::Failed { .. });
                record.result = result;
                records.push(record);
            }
            Settled::Waiting(running) => {
                record.blocked = true;
                record.result = StepResult::Pending;
                records.push(record);
                sessions[i].waiting = Some((at, running));
            }
        }
        // What this step released finishes now, before the next step.
        for s in sessions.iter_mut() {
            if let Some((at, running)) = s.waiting.take() {
                let waited = settle(admin, s.pid, running, limits.settle).await?;
                finish(&mut records, s, at, waited);
            }
        }
    }
    Ok(records)
}

/// Records what a statement that waited did, or puts it back to wait on.
fn finish(records: &mut [StepRecord], session: &mut Session, at: usize, waited: Settled) {
    match waited {
        Settled::Done(result) => {
            session.done_for = matches!(result, StepResult::Failed { .. });
            if at + 1 < records.len() {
                records[at].resumed_after = Some(records.len() - 1);
            }
            records[at].result = result;
        }
        Settled::Waiting(running) => session.waiting = Some((at, running)),
    }
}

/// Waits until the statement has finished or its backend waits for a lock.
async fn settle(
    admin: &Conn,
    pid: i32,
    mut running: Running,
    limit: Duration,
) -> anyhow::Result<Settled> {
    let deadline = Instant::now() + limit;
    let probe = format!("SELECT cardinality(pg_blocking_pids({pid})) > 0");
    loop {
        if let Ok(joined) = tokio::time::timeout(Duration::from_millis(5), &mut running).await {
            return Ok(Settled::Done(match joined {
                Ok(Ok(messages)) => {
                    let (rows, affected) = rows_of(messages);
                    StepResult::Ok { rows, affected }
                }
                Ok(Err(e)) => failed(&e),
                Err(e) => StepResult::Failed {
                    code: "connection".into(),
                    message: e.to_string(),
                },
            }));
        }
        let (rows, _) = query_text(&admin.client, &probe)
            .await
            .context("cannot ask the server which sessions wait")?;
        if rows.first().and_then(|r| r.first()).map(String::as_str) == Some("t") {
            return Ok(Settled::Waiting(running));
        }
        if Instant::now() >= deadline {
            running.abort();
            bail!(
                "a statement neither finished nor waited for a lock within {} ms",
                limit.as_millis()
            );
        }
    }
}

/// Terminates the sessions' backends and waits until they are gone.
async fn end_backends(admin: &Conn, pids: &[i32], limit: Duration) -> anyhow::Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let list = pids
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let deadline = Instant::now() + limit;
    loop {
        let (rows, _) = query_text(
            &admin.client,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({list})"
            ),
        )
        .await
        .context("cannot end the sessions")?;
        if rows.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "sessions {list} did not end within {} ms",
                limit.as_millis()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn failed(e: &tokio_postgres::Error) -> StepResult {
    match e.as_db_error() {
        Some(db) => StepResult::Failed {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
        },
        None => StepResult::Failed {
            code: "connection".into(),
            message: e.to_string(),
        },
    }
}

//! The anomaly tests: for each anomaly a fixed interleaving of two or three sessions over a
//! table of its own, and a judge that reads what the sessions saw and decides whether the
//! anomaly happened.
//!
//! Every table is `(id int PRIMARY KEY, value int NOT NULL)` holding two rows, x = (1, 10) and
//! y = (2, 20). Which interleaving shows which anomaly follows the catalogue of Martin
//! Kleppmann's Hermitage; the scripts and judges here are our own.
//!
//! Judges are pure functions of a [`Trace`]: what each statement returned, whether it waited
//! for a lock first, and which statements failed. A serialization failure or deadlock
//! (SQLSTATE class 40) is the database refusing the interleaving, so it counts as prevention;
//! any other error means the test itself went wrong, and the cell is unknown.

use serde::Serialize;

use super::{Anomaly, Outcome};

/// One anomaly test.
#[derive(Debug, Clone)]
pub struct Script {
    pub anomaly: Anomaly,
    /// The table the script works on, created afresh before each run.
    pub table: &'static str,
    /// Number of sessions, T1..Tn; each begins a transaction before the first step.
    pub sessions: usize,
    pub steps: Vec<Step>,
    /// A read by a fresh autocommit connection once every session has ended.
    pub after: Option<&'static str>,
    judge: fn(&Trace) -> Judgement,
}

/// One statement of one session.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1 for T1, 2 for T2, ...
    pub session: usize,
    pub sql: &'static str,
    /// The name the judge finds the step's result by; empty when the judge does not look.
    pub label: &'static str,
}

/// A cell's verdict and the one-line reason for it.
pub type Judgement = (Outcome, String);

/// What one statement did, in the order the script ran them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// `T1`, `T2`, ... or `after` for the read once every session has ended.
    pub session: String,
    pub sql: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub label: String,
    /// The statement waited for a lock held by another session.
    pub blocked: bool,
    /// For a blocked statement, the step (index in the trace) after which it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<usize>,
    pub result: StepResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepResult {
    /// Rows as text (`NULL` for null), and the number of rows a write touched.
    Ok {
        rows: Vec<Vec<String>>,
        affected: Option<u64>,
    },
    /// The server's SQLSTATE and message (`connection` when there was no server answer).
    Failed { code: String, message: String },
    /// Not sent: the session's transaction had already failed.
    Skipped,
    /// Still waiting for a lock when the script ended.
    Pending,
}

/// The record of one run of a script.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trace {
    pub steps: Vec<StepRecord>,
}

/// Every test, in the order of the table's columns.
pub fn all() -> Vec<Script> {
    vec![
        g0(),
        g1a(),
        g1b(),
        g1c(),
        otv(),
        pmp(),
        p4(),
        g_single(),
        g2_item(),
        g2(),
    ]
}

impl Script {
    /// The statements that create and fill the script's table.
    pub fn setup_sql(&self) -> String {
        let t = self.table;
        format!(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, value int NOT NULL); \
             INSERT INTO {t} (id, value) VALUES (1, 10), (2, 20)"
        )
    }

    /// Decides the cell from a trace of this script: unknown when a statement failed for a
    /// reason other than a serialization failure or deadlock, or never finished.
    pub fn judge(&self, trace: &Trace) -> Judgement {
        if let Some(s) = trace.steps.iter().find(|s| s.result == StepResult::Pending) {
            return (
                Outcome::Unknown,
                format!(
                    "{}'s `{}` was still waiting for a lock at the end",
                    s.session, s.sql
                ),
            );
        }
        if let Some(s) = trace.steps.iter().find(|s| match &s.result {
            StepResult::Failed { code, .. } => !is_refusal(code),
            _ => false,
        }) && let StepResult::Failed { code, message } = &s.result
        {
            return (
                Outcome::Unknown,
                format!("{}'s `{}` failed with {code}: {message}", s.session, s.sql),
            );
        }
        (self.judge)(trace)
    }
}

/// Serialization failures (40001) and deadlocks (40P01): the database aborting a transaction
/// to keep its isolation promise.
fn is_refusal(code: &str) -> bool {
    code.starts_with("40")
}

impl Trace {
    fn step(&self, label: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.label == label)
    }

    fn rows(&self, label: &str) -> Option<&[Vec<String>]> {
        match &self.step(label)?.result {
            StepResult::Ok { rows, .. } => Some(rows),
            _ => None,
        }
    }

    /// The single value a `SELECT value ...` returned.
    fn int(&self, label: &str) -> Option<i64> {
        match self.rows(label)? {
            [row] => row.last()?.parse().ok(),
            _ => None,
        }
    }

    /// The ids of the rows a `SELECT id, value ...` returned.
    fn ids(&self, label: &str) -> Option<Vec<i64>> {
        self.rows(label)?
            .iter()
            .map(|r| r.first()?.parse().ok())
            .collect()
    }

    /// `(id, value)` pairs a `SELECT id, value ...` returned.
    fn pairs(&self, label: &str) -> Option<Vec<(i64, i64)>> {
        self.rows(label)?
            .iter()
            .map(|r| Some((r.first()?.parse().ok()?, r.get(1)?.parse().ok()?)))
            .collect()
    }

    /// The session's COMMIT went through.
    fn committed(&self, session: usize) -> bool {
        let name = format!("T{session}");
        self.steps.iter().any(|s| {
            s.session == name
                && s.sql.eq_ignore_ascii_case("COMMIT")
                && matches!(s.result, StepResult::Ok { .. })
        })
    }

    /// The first statement the database refused with a serialization failure or deadlock,
    /// told in words.
    fn refusal(&self) -> Option<String> {
        self.steps.iter().find_map(|s| match &s.result {
            StepResult::Failed { code, .. } if is_refusal(code) => {
                let what = match code.as_str() {
                    "40001" => "serialization failure",
                    "40P01" => "deadlock",
                    _ => "transaction rollback",
                };
                let waited = if s.blocked {
                    "waited for a lock, then "
                } else {
                    ""
                };
                Some(format!(
                    "{}'s `{}` {waited}failed with {code} ({what})",
                    s.session, s.sql
                ))
            }
            _ => None,
        })
    }
}

fn step(session: usize, sql: &'static str) -> Step {
    Step {
        session,
        sql,
        label: "",
    }
}

fn read(session: usize, label: &'static str, sql: &'static str) -> Step {
    Step {
        session,
        sql,
        label,
    }
}

fn unexpected(trace: &Trace, what: &str) -> Judgement {
    let seen: Vec<String> = trace
        .steps
        .iter()
        .filter(|s| !s.label.is_empty())
        .map(|s| format!("{}={}", s.label, result_text(&s.sql, &s.result)))
        .collect();
    (
        Outcome::Unknown,
        format!("unexpected {what} ({})", seen.join(", ")),
    )
}

/// What a statement returned in a few words: `10`, `(1, 10) (2, 20)`, `no rows` for a read;
/// `1 row` for a write; `ok` for BEGIN and COMMIT; `failed 40001: ...`.
pub fn result_text(sql: &str, r: &StepResult) -> String {
    match r {
        StepResult::Ok { rows, affected } => {
            let verb = sql
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match (verb.as_str(), rows.as_slice()) {
                ("SELECT", []) => "no rows".into(),
                ("SELECT", [row]) if row.len() == 1 => row[0].clone(),
                ("SELECT", rows) => rows
                    .iter()
                    .map(|r| format!("({})", r.join(", ")))
                    .collect::<Vec<_>>()
                    .join(" "),
                ("UPDATE" | "INSERT" | "DELETE", _) => {
                    let n = affected.unwrap_or(0);
                    format!("{n} row{}", if n == 1 { "" } else { "s" })
                }
                _ => "ok".into(),
            }
        }
        StepResult::Failed { code, message } => format!("failed {code}: {message}"),
        StepResult::Skipped => "skipped (transaction already failed)".into(),
        StepResult::Pending => "still waiting".into(),
    }
}

// G0: T2 overwrites x while T1's write of x is uncommitted; if it may, the final rows mix the
// two transactions.
fn g0() -> Script {
    Script {
        anomaly: Anomaly::G0,
        table: "g0",
        sessions: 2,
        steps: vec![
            step(1, "UPDATE g0 SET value = 11 WHERE id = 1"),
            read(2, "t2-write-x", "UPDATE g0 SET value = 12 WHERE id = 1"),
            step(1, "UPDATE g0 SET value = 21 WHERE id = 2"),
            step(1, "COMMIT"),
            step(2, "UPDATE g0 SET value = 22 WHERE id = 2"),
            step(2, "COMMIT"),
        ],
        after: Some("SELECT id, value FROM g0 ORDER BY id"),
        judge: judge_g0,
    }
}

fn judge_g0(t: &Trace) -> Judgement {
    let Some(w) = t.step("t2-write-x") else {
        return unexpected(t, "trace");
    };
    if !w.blocked && matches!(w.result, StepResult::Ok { .. }) {
        return (
            Outcome::Possible,
            "T2 overwrote x while T1's write of x was uncommitted (no wait)".into(),
        );
    }
    if let Some(r) = t.refusal() {
        return (Outcome::Prevented, r);
    }
    match t.pairs("after").as_deref() {
        Some([(1, 12), (2, 22)]) => (
            Outcome::Prevented,
            "T2's write of x waited until T1 committed; final x=12, y=22 (T1 then T2 on both rows)"
                .into(),
        ),
        Some([(1, x), (2, y)]) => (
            Outcome::Possible,
            format!("final x={x}, y={y}: the writes of T1 and T2 interleave"),
        ),
        _ => unexpected(t, "final rows"),
    }
}

// G1a: T2 reads x while T1's write is uncommitted and again after T1 rolls back.
fn g1a() -> Script {
    Script {
        anomaly: Anomaly::G1a,
        table: "g1a",
        sessions: 2,
        steps: vec![
            step(1, "UPDATE g1a SET value = 101 WHERE id = 1"),
            read(2, "t2-x-1", "SELECT value FROM g1a WHERE id = 1"),
            step(1, "ROLLBACK"),
            read(2, "t2-x-2", "SELECT value FROM g1a WHERE id = 1"),
            step(2, "COMMIT"),
        ],
        after: None,
        judge: judge_g1a,
    }
}

fn judge_g1a(t: &Trace) -> Judgement {
    match (t.int("t2-x-1"), t.int("t2-x-2")) {
        (Some(101), _) | (_, Some(101)) => (
            Outcome::Possible,
            "T2 read x=101, written by T1, which rolled back".into(),
        ),
        (Some(10), Some(10)) => (
            Outcome::Prevented,
            "T2 read x=10 before and after T1 rolled back; never T1's 101".into(),
        ),
        _ => unexpected(t, "reads"),
    }
}

// G1b: T2 reads x while it holds T1's intermediate value 101, which T1 overwrites with 11
// before committing.
fn g1b() -> Script {
    Script {
        anomaly: Anomaly::G1b,
        table: "g1b",
        sessions: 2,
        steps: vec![
            step(1, "UPDATE g1b SET value = 101 WHERE id = 1"),
            read(2, "t2-x-1", "SELECT value FROM g1b WHERE id = 1"),
            step(1, "UPDATE g1b SET value = 11 WHERE id = 1"),
            step(1, "COMMIT"),
            read(2, "t2-x-2", "SELECT value FROM g1b WHERE id = 1"),
            step(2, "COMMIT"),
        ],
        after: None,
        judge: judge_g1b,
    }
}

fn judge_g1b(t: &Trace) -> Judgement {
    match (t.int("t2-x-1"), t.int("t2-x-2")) {
        (Some(101), _) | (_, Some(101)) => (
            Outcome::Possible,
            "T2 read x=101, an intermediate value T1 overwrote with 11 before committing".into(),
        ),
        (Some(10), Some(later @ (10 | 11))) => (
            Outcome::Prevented,
            format!(
                "T2 read x=10 while T1 was running and x={later} after it committed; never 101"
            ),
        ),
        _ => unexpected(t, "reads"),
    }
}

// G1c: each transaction writes one row and then reads the row the other wrote.
fn g1c() -> Script {
    Script {
        anomaly: Anomaly::G1c,
        table: "g1c",
        sessions: 2,
        steps: vec![
            step(1, "UPDATE g1c SET value = 11 WHERE id = 1"),
            step(2, "UPDATE g1c SET value = 22 WHERE id = 2"),
            read(1, "t1-y", "SELECT value FROM g1c WHERE id = 2"),
            read(2, "t2-x", "SELECT value FROM g1c WHERE id = 1"),
            step(1, "COMMIT"),
            step(2, "COMMIT"),
        ],
        after: None,
        judge: judge_g1c,
    }
}

fn judge_g1c(t: &Trace) -> Judgement {
    match (t.int("t1-y"), t.int("t2-x")) {
        (Some(22), Some(11)) => (
            Outcome::Possible,
            "T1 read y=22 from T2 and T2 read x=11 from T1: information flowed both ways".into(),
        ),
        (Some(y), Some(x)) if matches!(y, 20 | 22) && matches!(x, 10 | 11) => (
            Outcome::Prevented,
            format!(
                "T1 read y={y} and T2 read x={x}: no read of the other's uncommitted write both ways"
            ),
        ),
        _ => unexpected(t, "reads"),
    }
}

// OTV: T1 writes x=11, y=19 and commits; T2, which waited on T1 for x, writes x=12, y=18. T3
// reads x and y while T2 runs and after it commits; once T3 has seen a write of a
// transaction, a later read must not miss that transaction's other write.
fn otv() -> Script {
    Script {
        anomaly: Anomaly::Otv,
        table: "otv",
        sessions: 3,
        steps: vec![
            step(1, "UPDATE otv SET value = 11 WHERE id = 1"),
            step(1, "UPDATE otv SET value = 19 WHERE id = 2"),
            step(2, "UPDATE otv SET value = 12 WHERE id = 1"),
            step(1, "COMMIT"),
            read(3, "t3-x-1", "SELECT value FROM otv WHERE id = 1"),
            step(2, "UPDATE otv SET value = 18 WHERE id = 2"),
            read(3, "t3-y-1", "SELECT value FROM otv WHERE id = 2"),
            step(2, "COMMIT"),
            read(3, "t3-y-2", "SELECT value FROM otv WHERE id = 2"),
            read(3, "t3-x-2", "SELECT value FROM otv WHERE id = 1"),
            step(3, "COMMIT"),
        ],
        after: None,
        judge: judge_otv,
    }
}

fn judge_otv(t: &Trace) -> Judgement {
    // Each value's writer: 0 the initial rows, 1 T1, 2 T2 (later writers overwrite earlier).
    fn writer(key: char, value: i64) -> Option<usize> {
        match (key, value) {
            ('x', 10) | ('y', 20) => Some(0),
            ('x', 11) | ('y', 19) => Some(1),
            ('x', 12) | ('y', 18) => Some(2),
            _ => None,
        }
    }
    let reads = [
        ('x', "t3-x-1"),
        ('y', "t3-y-1"),
        ('y', "t3-y-2"),
        ('x', "t3-x-2"),
    ];
    let mut seen = 0;
    let mut seen_what = String::new();
    let mut values = Vec::new();
    for (key, label) in reads {
        let Some(v) = t.int(label) else {
            return unexpected(t, "reads");
        };
        let Some(w) = writer(key, v) else {
            return unexpected(t, "reads");
        };
        if w < seen {
            return (
                Outcome::Possible,
                format!(
                    "T3 saw T{seen}'s {seen_what}, then read {key}={v}: T{seen}'s write of {key} vanished"
                ),
            );
        }
        if w > seen {
            seen = w;
            seen_what = format!("{key}={v}");
        }
        values.push(format!("{key}={v}"));
    }
    let how = t.refusal().map_or_else(String::new, |r| format!(" ({r})"));
    (
        Outcome::Prevented,
        format!(
            "T3 read {}: never an older value after seeing a transaction's write{how}",
            values.join(", ")
        ),
    )
}

// PMP: T1 reads a predicate, T2 inserts a matching row and commits, T1 reads a predicate the
// new row also matches.
fn pmp() -> Script {
    Script {
        anomaly: Anomaly::Pmp,
        table: "pmp",
        sessions: 2,
        steps: vec![
            read(1, "t1-p-1", "SELECT id, value FROM pmp WHERE value = 30"),
            step(2, "INSERT INTO pmp (id, value) VALUES (3, 30)"),
            step(2, "COMMIT"),
            read(
                1,
                "t1-p-2",
                "SELECT id, value FROM pmp WHERE value % 3 = 0 ORDER BY id",
            ),
            step(1, "COMMIT"),
        ],
        after: None,
        judge: judge_pmp,
    }
}

fn judge_pmp(t: &Trace) -> Judgement {
    match (t.ids("t1-p-1").as_deref(), t.ids("t1-p-2").as_deref()) {
        (Some([]), Some([3])) if t.committed(2) => (
            Outcome::Possible,
            "T1's second predicate read saw row 3, which T2 inserted and committed after T1's first predicate read found none"
                .into(),
        ),
        (Some([]), Some([])) => (
            Outcome::Prevented,
            "both of T1's predicate reads missed T2's row 3 (one snapshot for T1)".into(),
        ),
        _ => match t.refusal() {
            Some(r) => (Outcome::Prevented, r),
            None => unexpected(t, "reads"),
        },
    }
}

// P4: both transactions read x=10 and write x=11 (their read plus one).
fn p4() -> Script {
    Script {
        anomaly: Anomaly::P4,
        table: "p4",
        sessions: 2,
        steps: vec![
            read(1, "t1-x", "SELECT value FROM p4 WHERE id = 1"),
            read(2, "t2-x", "SELECT value FROM p4 WHERE id = 1"),
            step(1, "UPDATE p4 SET value = 11 WHERE id = 1"),
            step(2, "UPDATE p4 SET value = 11 WHERE id = 1"),
            step(1, "COMMIT"),
            step(2, "COMMIT"),
        ],
        after: Some("SELECT value FROM p4 WHERE id = 1"),
        judge: judge_p4,
    }
}

fn judge_p4(t: &Trace) -> Judgement {
    if t.committed(1) && t.committed(2) {
        return match (t.int("t1-x"), t.int("t2-x"), t.int("after")) {
            (Some(10), Some(10), Some(v)) => (
                Outcome::Possible,
                format!(
                    "T1 and T2 both read x=10 and both committed an increment; final x={v}: one increment lost"
                ),
            ),
            _ => unexpected(t, "reads"),
        };
    }
    match t.refusal() {
        Some(r) => (Outcome::Prevented, r),
        None => unexpected(t, "end (a transaction neither committed nor failed)"),
    }
}

// G-single: T1 reads x, T2 rewrites x and y and commits, then T1 reads y; a T1 that sees x
// from before T2 and y from after it sees a state that never existed.
fn g_single() -> Script {
    Script {
        anomaly: Anomaly::GSingle,
        table: "gsingle",
        sessions: 2,
        steps: vec![
            read(1, "t1-x", "SELECT value FROM gsingle WHERE id = 1"),
            step(2, "SELECT value FROM gsingle WHERE id = 1"),
            step(2, "SELECT value FROM gsingle WHERE id = 2"),
            step(2, "UPDATE gsingle SET value = 12 WHERE id = 1"),
            step(2, "UPDATE gsingle SET value = 18 WHERE id = 2"),
            step(2, "COMMIT"),
            read(1, "t1-y", "SELECT value FROM gsingle WHERE id = 2"),
            step(1, "COMMIT"),
        ],
        after: None,
        judge: judge_g_single,
    }
}

fn judge_g_single(t: &Trace) -> Judgement {
    match (t.int("t1-x"), t.int("t1-y")) {
        (Some(10), Some(18)) => (
            Outcome::Possible,
            "T1 read x=10 from before T2 and y=18 written by T2: x+y=28, a state that never existed"
                .into(),
        ),
        (Some(10), Some(20)) => (
            Outcome::Prevented,
            "T1 read x=10 and y=20, both from before T2 (one snapshot)".into(),
        ),
        _ => match t.refusal() {
            Some(r) => (Outcome::Prevented, r),
            None => unexpected(t, "reads"),
        },
    }
}

// G2-item: each transaction reads both rows and then writes the row the other did not.
fn g2_item() -> Script {
    Script {
        anomaly: Anomaly::G2Item,
        table: "g2item",
        sessions: 2,
        steps: vec![
            read(
                1,
                "t1-r",
                "SELECT id, value FROM g2item WHERE id IN (1, 2) ORDER BY id",
            ),
            read(
                2,
                "t2-r",
                "SELECT id, value FROM g2item WHERE id IN (1, 2) ORDER BY id",
            ),
            step(1, "UPDATE g2item SET value = 11 WHERE id = 1"),
            step(2, "UPDATE g2item SET value = 21 WHERE id = 2"),
            step(1, "COMMIT"),
            step(2, "COMMIT"),
        ],
        after: None,
        judge: judge_g2_item,
    }
}

fn judge_g2_item(t: &Trace) -> Judgement {
    if t.committed(1) && t.committed(2) {
        let initial = [(1, 10), (2, 20)];
        return if t.pairs("t1-r").as_deref() == Some(&initial[..])
            && t.pairs("t2-r").as_deref() == Some(&initial[..])
        {
            (
                Outcome::Possible,
                "T1 and T2 each read x=10, y=20 and wrote the row the other read; both committed"
                    .into(),
            )
        } else {
            unexpected(t, "reads")
        };
    }
    match t.refusal() {
        Some(r) => (Outcome::Prevented, r),
        None => unexpected(t, "end (a transaction neither committed nor failed)"),
    }
}

// G2: each transaction finds no row matching a predicate and inserts one that matches it.
fn g2() -> Script {
    Script {
        anomaly: Anomaly::G2,
        table: "g2",
        sessions: 2,
        steps: vec![
            read(1, "t1-p", "SELECT id, value FROM g2 WHERE value % 3 = 0"),
            read(2, "t2-p", "SELECT id, value FROM g2 WHERE value % 3 = 0"),
            step(1, "INSERT INTO g2 (id, value) VALUES (3, 30)"),
            step(2, "INSERT INTO g2 (id, value) VALUES (4, 42)"),
            step(1, "COMMIT"),
            step(2, "COMMIT"),
        ],
        after: None,
        judge: judge_g2,
    }
}

fn judge_g2(t: &Trace) -> Judgement {
    if t.committed(1) && t.committed(2) {
        return match (t.ids("t1-p").as_deref(), t.ids("t2-p").as_deref()) {
            (Some([]), Some([])) => (
                Outcome::Possible,
                "T1 and T2 each found no row with value % 3 = 0 and inserted one; both committed"
                    .into(),
            ),
            _ => unexpected(t, "reads"),
        };
    }
    match t.refusal() {
        Some(r) => (Outcome::Prevented, r),
        None => unexpected(t, "end (a transaction neither committed nor failed)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(session: &str, sql: &str, label: &str, result: StepResult) -> StepRecord {
        StepRecord {
            session: session.into(),
            sql: sql.into(),
            label: label.into(),
            blocked: false,
            resumed_after: None,
            result,
        }
    }

    fn ok(rows: &[&[&str]]) -> StepResult {
        StepResult::Ok {
            rows: rows
                .iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
            affected: Some(rows.len() as u64),
        }
    }

    fn failed(code: &str) -> StepResult {
        StepResult::Failed {
            code: code.into(),
            message: "could not serialize access".into(),
        }
    }

    /// A trace of `script` where every step succeeded with no rows, with `results` given for
    /// labelled steps and `fail` for the steps at the given positions; as in the driver, a
    /// session's steps after a failure are skipped.
    fn trace(script: &Script, results: &[(&str, StepResult)], fail: &[(usize, &str)]) -> Trace {
        let mut failed_sessions = Vec::new();
        let mut steps: Vec<StepRecord> = Vec::new();
        for (i, s) in script.steps.iter().enumerate() {
            let result = if failed_sessions.contains(&s.session) {
                StepResult::Skipped
            } else if let Some((_, code)) = fail.iter().find(|(j, _)| *j == i) {
                failed_sessions.push(s.session);
                failed(code)
            } else {
                results
                    .iter()
                    .find(|(l, _)| *l == s.label && !s.label.is_empty())
                    .map_or_else(|| ok(&[]), |(_, r)| r.clone())
            };
            steps.push(rec(&format!("T{}", s.session), s.sql, s.label, result));
        }
        if let Some((_, r)) = results.iter().find(|(l, _)| *l == "after") {
            steps.push(rec("after", "SELECT", "after", r.clone()));
        }
        Trace { steps }
    }

    #[test]
    fn every_anomaly_has_one_script_in_column_order() {
        let names: Vec<Anomaly> = all().iter().map(|s| s.anomaly).collect();
        assert_eq!(names, Anomaly::ALL.to_vec());
        for s in all() {
            assert!(
                s.steps
                    .iter()
                    .all(|st| (1..=s.sessions).contains(&st.session))
            );
            assert!(
                s.steps.iter().all(|st| st.sql.contains(s.table)
                    || st.sql == "COMMIT"
                    || st.sql == "ROLLBACK")
            );
        }
    }

    #[test]
    fn write_skew_committed_by_both_is_possible_and_a_serialization_failure_prevents_it() {
        let s = g2_item();
        let reads = [
            ("t1-r", ok(&[&["1", "10"], &["2", "20"]])),
            ("t2-r", ok(&[&["1", "10"], &["2", "20"]])),
        ];
        assert_eq!(s.judge(&trace(&s, &reads, &[])).0, Outcome::Possible);
        let (outcome, reason) = s.judge(&trace(&s, &reads, &[(5, "40001")]));
        assert_eq!(outcome, Outcome::Prevented);
        assert_eq!(
            reason,
            "T2's `COMMIT` failed with 40001 (serialization failure)"
        );
    }

    #[test]
    fn lost_update_needs_both_increments_committed() {
        let s = p4();
        let reads = [
            ("t1-x", ok(&[&["10"]])),
            ("t2-x", ok(&[&["10"]])),
            ("after", ok(&[&["11"]])),
        ];
        let (o, why) = s.judge(&trace(&s, &reads, &[]));
        assert_eq!(o, Outcome::Possible);
        assert!(why.contains("final x=11"), "{why}");
        assert_eq!(
            s.judge(&trace(&s, &reads, &[(3, "40001")])).0,
            Outcome::Prevented
        );
    }

    #[test]
    fn otv_is_seeing_a_transaction_and_then_missing_its_other_write() {
        let s = otv();
        let fine = [
            ("t3-x-1", ok(&[&["11"]])),
            ("t3-y-1", ok(&[&["19"]])),
            ("t3-y-2", ok(&[&["18"]])),
            ("t3-x-2", ok(&[&["12"]])),
        ];
        assert_eq!(s.judge(&trace(&s, &fine, &[])).0, Outcome::Prevented);
        let vanish = [
            ("t3-x-1", ok(&[&["11"]])),
            ("t3-y-1", ok(&[&["18"]])),
            ("t3-y-2", ok(&[&["18"]])),
            ("t3-x-2", ok(&[&["11"]])),
        ];
        let (o, why) = s.judge(&trace(&s, &vanish, &[]));
        assert_eq!(o, Outcome::Possible);
        assert_eq!(
            why,
            "T3 saw T2's y=18, then read x=11: T2's write of x vanished"
        );
    }

    #[test]
    fn read_skew_and_predicate_reads_are_judged_from_values() {
        let s = g_single();
        let skew = [("t1-x", ok(&[&["10"]])), ("t1-y", ok(&[&["18"]]))];
        assert_eq!(s.judge(&trace(&s, &skew, &[])).0, Outcome::Possible);
        let snap = [("t1-x", ok(&[&["10"]])), ("t1-y", ok(&[&["20"]]))];
        assert_eq!(s.judge(&trace(&s, &snap, &[])).0, Outcome::Prevented);

        let s = pmp();
        let saw = [("t1-p-1", ok(&[])), ("t1-p-2", ok(&[&["3", "30"]]))];
        assert_eq!(s.judge(&trace(&s, &saw, &[])).0, Outcome::Possible);
        let missed = [("t1-p-1", ok(&[])), ("t1-p-2", ok(&[]))];
        assert_eq!(s.judge(&trace(&s, &missed, &[])).0, Outcome::Prevented);
    }

    #[test]
    fn dirty_reads_are_possible_and_values_out_of_the_script_are_unknown() {
        let s = g1a();
        let dirty = [("t2-x-1", ok(&[&["101"]])), ("t2-x-2", ok(&[&["10"]]))];
        assert_eq!(s.judge(&trace(&s, &dirty, &[])).0, Outcome::Possible);
        let odd = [("t2-x-1", ok(&[&["7"]])), ("t2-x-2", ok(&[&["10"]]))];
        let (o, why) = s.judge(&trace(&s, &odd, &[]));
        assert_eq!(o, Outcome::Unknown);
        assert!(why.contains("t2-x-1=7"), "{why}");
    }

    #[test]
    fn errors_other_than_refusals_and_statements_left_waiting_make_the_cell_unknown() {
        let s = g2();
        let (o, why) = s.judge(&trace(&s, &[], &[(2, "55P03")]));
        assert_eq!(o, Outcome::Unknown);
        assert!(why.starts_with("T1's `INSERT INTO g2"), "{why}");
        let mut t = trace(&s, &[], &[]);
        t.steps[3].result = StepResult::Pending;
        assert_eq!(s.judge(&t).0, Outcome::Unknown);
    }

    #[test]
    fn a_dirty_write_without_a_wait_is_possible() {
        let s = g0();
        let after = [("after", ok(&[&["1", "12"], &["2", "22"]]))];
        let mut t = trace(&s, &after, &[]);
        assert_eq!(s.judge(&t).0, Outcome::Possible);
        t.steps[1].blocked = true;
        let (o, why) = s.judge(&t);
        assert_eq!(o, Outcome::Prevented);
        assert!(why.contains("final x=12, y=22"), "{why}");
    }
}

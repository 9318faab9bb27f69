//! The two formats of Porcupine's linearizability test corpus (`tests/data/porcupine/FORMAT.md`).
//!
//! **etcd logs** (`jepsen/etcd_NNN.log`): Jepsen log output, where only lines of the form
//!
//! ```text
//! INFO  jepsen.util - <process> <type> <f> <value>
//! ```
//!
//! are operations (fields separated by tabs or runs of spaces); every other line is noise, and
//! so is a `jepsen.util` line that does not start with a process and an op type. Each
//! operation becomes an [`Op`] with process `Client(n)` (or `Nemesis` for `:nemesis`), `f`
//! `Read`, `Write` or `Cas`, no key, and value `Nil` or `Int` (read), `Int` (write) or
//! `List([Int from, Int to])` (cas). A `:fail` or `:info` whose value is a keyword
//! (`:fail :read :timed-out`) carries no value: the keyword's name becomes the op's `error`
//! and the value is `Nil`; an `:info` stays an `Info` completion, which leaves the call
//! indeterminate.
//!
//! **kv** (`kv/cNN-{ok,bad}.txt`): one EDN map per line,
//! `{:process 3, :type :invoke, :f :append, :key "4", :value "x 3 1 y"}`, read by the EDN
//! reader and then checked to be a `:get`, `:put` or `:append` on a string key with a string
//! (or, for a `:get` invocation, nil) value.
//!
//! Neither format records time. Ops are numbered in line order; an etcd op's `time_ns` is its
//! line number and a kv op's is its position, so time order is line order either way, and an
//! invocation written before a return at the same instant comes first.

use std::io::{BufRead, BufReader, Read};

use edn_format::Value as Edn;

use crate::edn::{self, Exactness};
use crate::error::HistoryError;
use crate::formats::{Format, Loaded};
use crate::history::History;
use crate::op::{F, Key, Op, OpType, Process, Value};

/// What marks an operation line of a Jepsen log.
pub(crate) const LOG_MARKER: &str = "jepsen.util - ";

/// Reads a Jepsen etcd log of a compare-and-set register, naming it `path` in messages.
pub fn read_etcd<R: Read>(input: R, path: &str) -> Result<Loaded, HistoryError> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut raw = Vec::new();
    let mut ops = Vec::new();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut line_no = 0;
    let mut non_blank_lines = 0usize;
    loop {
        raw.clear();
        let n = input
            .read_until(b'\n', &mut raw)
            .map_err(|e| HistoryError::new(path, line_no + 1, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = raw.ends_with(b"\n");
        // Logs carry whatever the nodes printed; only operation lines need to be clean text,
        // and a stray byte in one of those fails its field checks below.
        let text = String::from_utf8_lossy(&raw);
        if !text.trim().is_empty() {
            non_blank_lines += 1;
        }
        match etcd_op(&text, ops.len(), line_no) {
            Ok(None) => {}
            Ok(Some(op)) => {
                ops.push(op);
                lines.push(line_no);
            }
            // A log cut off mid-line by a crash: keep what came before.
            Err(message) if !complete => warnings.push(format!(
                "{path}:{line_no}: skipped the last line, which is cut short ({message})"
            )),
            Err(message) => return Err(HistoryError::new(path, line_no, message)),
        }
    }
    if ops.is_empty() && non_blank_lines > 0 {
        warnings.push(format!(
            "{path}: none of its {non_blank_lines} lines is an operation (`INFO  jepsen.util - <process> <type> <f> <value>`); the history is empty"
        ));
    }
    match History::from_ops(ops) {
        Ok(history) => Ok(Loaded {
            history,
            format: Format::PorcupineEtcd,
            warnings,
        }),
        Err(bad) => Err(HistoryError::new(
            path,
            lines.get(bad.position).copied().unwrap_or(0),
            bad.message,
        )),
    }
}

/// Reads a Porcupine kv history (one EDN map per line), naming it `path` in messages.
pub fn read_kv<R: Read>(input: R, path: &str) -> Result<Loaded, HistoryError> {
    let read = edn::read_ops(input, path)?;
    for (position, op) in read.ops.iter().enumerate() {
        check_kv(op).map_err(|message| read.error_at(path, position, &message))?;
    }
    read.into_loaded(path, Format::PorcupineKv)
}

/// Parses one log line: `Ok(None)` for noise, an error for an operation line gone wrong.
fn etcd_op(text: &str, position: usize, line_no: usize) -> Result<Option<Op>, String> {
    let Some(at) = text.find(LOG_MARKER) else {
        return Ok(None);
    };
    let rest = &text[at + LOG_MARKER.len()..];
    let (process_field, rest) = next_field(rest);
    let (type_field, rest) = next_field(rest);
    // jepsen.util also logs prose ("Relative time begins now"); an op starts with a process
    // and a type, and only then is a malformed remainder worth an error.
    let process = match process_field {
        ":nemesis" => Process::Nemesis,
        p => match p.parse::<u64>() {
            Ok(p) => Process::Client(p),
            Err(_) => return Ok(None),
        },
    };
    let Some(kind) = type_field.strip_prefix(':').and_then(OpType::parse) else {
        return Ok(None);
    };
    let (f_field, rest) = next_field(rest);
    let Some(f_name) = f_field.strip_prefix(':').filter(|name| !name.is_empty()) else {
        return Err(format!(
            "expected the function (:read, :write or :cas) after {type_field}, found `{f_field}`"
        ));
    };
    let value_text = rest.trim();
    let f = F::parse(f_name);
    let op = |value, error| Op {
        index: position as u64,
        time_ns: line_no as u64,
        process,
        kind,
        f: f.clone(),
        key: None,
        value,
        node: None,
        error,
    };

    if process == Process::Nemesis {
        // A fault's description is only shown to people; keep it even when it is not EDN.
        let value = if value_text.is_empty() {
            Value::Nil
        } else {
            edn::parse_one(value_text)
                .and_then(|v| edn::to_value(&v, Exactness::Descriptive))
                .unwrap_or_else(|_| Value::Str(value_text.to_string()))
        };
        return Ok(Some(op(value, None)));
    }

    if !matches!(f, F::Read | F::Write | F::Cas) {
        return Err(format!(
            "expected the function :read, :write or :cas, found {f_field}"
        ));
    }
    if value_text.is_empty() {
        return Err(format!(
            "expected a value after {f_field} ({}), found nothing",
            expected_value(&f, kind)
        ));
    }
    let v = edn::parse_one(value_text).map_err(|m| {
        format!("expected an EDN value after {f_field}, found `{value_text}` ({m})")
    })?;
    if let (Edn::Keyword(reason), OpType::Fail | OpType::Info) = (&v, kind) {
        // `:fail :read :timed-out`: the keyword says why there is no value.
        return Ok(Some(op(Value::Nil, Some(edn::keyword_text(reason)))));
    }
    let value = register_value(&f, kind, &v).ok_or_else(|| {
        format!(
            "expected {} for {type_field} {f_field}, found {}",
            expected_value(&f, kind),
            edn::short(&v)
        )
    })?;
    Ok(Some(op(value, None)))
}

/// The value of a register operation, when it has the shape its function calls for.
fn register_value(f: &F, kind: OpType, v: &Edn) -> Option<Value> {
    match (f, kind, v) {
        (F::Read, _, Edn::Nil) => Some(Value::Nil),
        // The argument of a read is always nil; only its result is a number.
        (F::Read, OpType::Invoke, _) => None,
        (F::Read | F::Write, _, Edn::Integer(n)) => Some(Value::Int(*n)),
        (F::Cas, _, Edn::Vector(pair) | Edn::List(pair)) => match pair.as_slice() {
            [Edn::Integer(from), Edn::Integer(to)] => {
                Some(Value::List(vec![Value::Int(*from), Value::Int(*to)]))
            }
            _ => None,
        },
        _ => None,
    }
}

fn expected_value(f: &F, kind: OpType) -> &'static str {
    match (f, kind) {
        (F::Read, OpType::Invoke) => "nil",
        (F::Read, _) => "nil or an integer",
        (F::Cas, _) => "[from to], two integers",
        _ => "an integer",
    }
}

/// The first whitespace-separated field of `s`, and the rest after it.
fn next_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(end) => (&s[..end], &s[end..]),
        None => (s, ""),
    }
}

/// Checks that an op read from EDN is one Porcupine's kv model describes.
fn check_kv(op: &Op) -> Result<(), String> {
    if op.process == Process::Nemesis {
        return Err("expected a client process number; kv histories have no nemesis".into());
    }
    if !matches!(op.f, F::Get | F::Put | F::Append) {
        return Err(format!(
            "expected :f to be :get, :put or :append, found :{}",
            op.f
        ));
    }
    match &op.key {
        Some(Key::Str(_)) => {}
        Some(Key::Int(k)) => {
            return Err(format!(
                "expected :key to be a string such as \"4\", found the integer {k}"
            ));
        }
        None => return Err("expected a :key (a string); the map has none".into()),
    }
    let fits = match (&op.f, op.kind, &op.value) {
        (F::Get, OpType::Invoke, value) => value.is_nil(),
        (_, _, Value::Str(_)) => true,
        // A call that failed or timed out may have no value to report.
        (_, OpType::Fail | OpType::Info, Value::Nil) => true,
        _ => false,
    };
    if !fits {
        let expected = if op.f == F::Get && op.kind == OpType::Invoke {
            "nil (a get has no argument)"
        } else {
            "a string"
        };
        return Err(format!(
            "expected :value to be {expected}, found {}",
            op.value
        ));
    }
    Ok(())
}

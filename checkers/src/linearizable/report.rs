//! From search results to a verdict: words for people, JSON for the timeline renderer.

use histories::{History, Key, OpType, Process};
use serde_json::{Value as Json, json};

use super::PartOutcome;
use super::model::Model;
use super::prepare::{PCall, Part, PrepareError, Prepared};
use super::search::{Outcome, SearchResult, Stop};
use crate::verdict::{Validity, Verdict};

const CHECKER: &str = "linearizable";
/// Calls of the longest prefix spelled out in the explanation (the last ones).
const PREFIX_TEXT_CALLS: usize = 20;
/// Calls of the longest prefix given in the details (the last ones).
const PREFIX_JSON_CALLS: usize = 1000;
/// Failing or unanswered partitions explained in words, and in the details, at most (the
/// counts are always given).
const MAX_EXPLAINED_PARTITIONS: usize = 20;
const MAX_DETAILED_PARTITIONS: usize = 100;

/// The verdict for a history the model cannot read.
pub(crate) fn unreadable(history: &History, e: &PrepareError) -> Verdict {
    let op = &history.ops()[e.position];
    Verdict {
        checker: CHECKER.into(),
        valid: Validity::Unknown,
        summary: format!(
            "cannot check: op {} (process {} {}): {}",
            op.index, op.process, op.f, e.message
        ),
        explanation: Vec::new(),
        details: json!({ "unreadable_op": op.index, "reason": e.message }),
    }
}

pub(crate) fn verdict<M: Model>(
    history: &History,
    model: &M,
    prepared: &Prepared<M>,
    results: &[PartOutcome],
) -> Verdict {
    let mut failing: Vec<(&Part, &SearchResult)> = Vec::new();
    let mut unknown: Vec<(&Part, String, Option<&SearchResult>)> = Vec::new();
    let (mut states, mut steps) = (0u64, 0u64);
    for (part, outcome) in prepared.parts.iter().zip(results) {
        match outcome {
            PartOutcome::Trivial => {}
            PartOutcome::Searched(r) => {
                states += r.states;
                steps += r.steps;
                match r.outcome {
                    Outcome::Linearizable => {}
                    Outcome::NotLinearizable => failing.push((part, r)),
                    Outcome::Stopped(stop) => unknown.push((part, stop_reason(stop), Some(r))),
                }
            }
            PartOutcome::Crashed(msg) => {
                unknown.push((part, format!("internal error in the search: {msg}"), None));
            }
        }
    }
    let key_count: usize = prepared.parts.iter().map(|p| p.keys.len()).sum();
    let mut details = json!({
        "ops": prepared.calls.len(),
        "skipped_ops": prepared.skipped,
        "partitions_checked": prepared.parts.len(),
        "keys": key_count,
        "states": states,
        "steps": steps,
    });
    let mut explanation = Vec::new();
    let mut failing_json = Vec::new();
    for (i, (part, r)) in failing.iter().enumerate().take(MAX_DETAILED_PARTITIONS) {
        let (lines, j) = explain_failure(history, model, prepared, part, r);
        if i < MAX_EXPLAINED_PARTITIONS {
            explanation.extend(lines);
        }
        failing_json.push(j);
    }
    if failing.len() > MAX_EXPLAINED_PARTITIONS {
        explanation.push(format!(
            "... and {} more partitions that are not linearizable",
            failing.len() - MAX_EXPLAINED_PARTITIONS
        ));
    }
    let mut unknown_json = Vec::new();
    for (i, (part, reason, r)) in unknown.iter().enumerate().take(MAX_DETAILED_PARTITIONS) {
        let calls = part.members.len();
        let depth = r.map_or(0, |r| r.max_depth);
        if i < MAX_EXPLAINED_PARTITIONS {
            explanation.push(format!(
                "{}{reason}; linearized at most {depth} of {calls} calls",
                label_prefix(&part.keys)
            ));
        }
        unknown_json.push(json!({
            "key": key_json(&part.keys),
            "reason": reason,
            "max_linearized": depth,
            "calls": calls,
        }));
    }
    if unknown.len() > MAX_EXPLAINED_PARTITIONS {
        explanation.push(format!(
            "... and {} more partitions without an answer",
            unknown.len() - MAX_EXPLAINED_PARTITIONS
        ));
    }
    if let Json::Object(map) = &mut details {
        map.insert("partitions".into(), Json::Array(failing_json));
        map.insert("partitions_failed".into(), failing.len().into());
        if !unknown.is_empty() {
            map.insert("unknown_partitions".into(), Json::Array(unknown_json));
            map.insert("partitions_unknown".into(), unknown.len().into());
        }
    }
    let (valid, summary) = if let Some((part, r)) = failing.first() {
        let what = match r.culprit {
            Some(c) => format!(
                "{} cannot be linearized",
                call_text(history, model, &prepared.calls[c])
            ),
            None => "no order of the calls fits the model".to_string(),
        };
        let more = match failing.len() {
            1 => String::new(),
            n => format!(" (and {} more partitions)", n - 1),
        };
        (
            Validity::False,
            format!("not linearizable: {}{what}{more}", label_prefix(&part.keys)),
        )
    } else if let Some((part, reason, _)) = unknown.first() {
        let more = match unknown.len() {
            1 => String::new(),
            n => format!(" (and {} more partitions)", n - 1),
        };
        (
            Validity::Unknown,
            format!("unknown: {}{reason}{more}", label_prefix(&part.keys)),
        )
    } else {
        let summary = if key_count == 0 {
            format!("linearizable ({} ops)", prepared.calls.len())
        } else {
            format!(
                "linearizable ({} ops, {key_count} keys)",
                prepared.calls.len()
            )
        };
        (Validity::True, summary)
    };
    Verdict {
        checker: CHECKER.into(),
        valid,
        summary,
        explanation,
        details,
    }
}

fn stop_reason(stop: Stop) -> String {
    match stop {
        Stop::Cancelled => "the search was cancelled (time limit)".to_string(),
        Stop::Steps => "the search stopped at its step limit".to_string(),
        Stop::MaxStates(max) => {
            format!("the search stopped at its limit of {max} states (max_states)")
        }
        Stop::Memory(limit) => format!(
            "the search stopped at its memory limit of {} (memory_limit_bytes)",
            human_bytes(limit)
        ),
    }
}

/// `512 B`, `64 KiB`, `2 GiB`, `1536 MiB`: the largest unit that shows the number exactly,
/// down to bytes.
fn human_bytes(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

fn explain_failure<M: Model>(
    history: &History,
    model: &M,
    prepared: &Prepared<M>,
    part: &Part,
    r: &SearchResult,
) -> (Vec<String>, Json) {
    let label = label_prefix(&part.keys);
    let mut lines = Vec::new();
    let prefix: &[usize] = &r.order;
    let culprit = r.culprit;
    match culprit {
        Some(c) => {
            let call = &prepared.calls[c];
            lines.push(format!(
                "{label}{} {} cannot be linearized",
                call_text(history, model, call),
                span_text(history, call)
            ));
        }
        None => lines.push(format!("{label}no order of the calls fits the model")),
    }
    // Replay the prefix for the state it leaves; it is legal by construction.
    let mut state = model.init();
    for &c in prefix {
        let call = &prepared.calls[c];
        match model.step(&state, &call.input, &call.output) {
            Some(s) => state = s,
            None => break,
        }
    }
    let shown = prefix.len().min(PREFIX_TEXT_CALLS);
    let texts: Vec<String> = prefix[prefix.len() - shown..]
        .iter()
        .map(|&c| call_text(history, model, &prepared.calls[c]))
        .collect();
    let earlier = if shown < prefix.len() {
        format!("... {} earlier calls, ", prefix.len() - shown)
    } else {
        String::new()
    };
    lines.push(format!(
        "  the longest linearizable prefix has {} calls and leaves the state {}: {earlier}{}",
        prefix.len(),
        model.describe_state(&state),
        if texts.is_empty() {
            "(none)".to_string()
        } else {
            texts.join(", ")
        }
    ));
    let mut concurrent = Vec::new();
    if let Some(c) = culprit {
        let me = &prepared.calls[c];
        let my_end = me.completion.unwrap_or(usize::MAX);
        for &o in &part.members {
            let other = &prepared.calls[o];
            if o != c && other.invoke < my_end && other.completion.is_none_or(|end| end > me.invoke)
            {
                concurrent.push(o);
            }
        }
        if !concurrent.is_empty() {
            let texts: Vec<String> = concurrent
                .iter()
                .map(|&o| {
                    let call = &prepared.calls[o];
                    format!(
                        "{} {}",
                        call_text(history, model, call),
                        span_text(history, call)
                    )
                })
                .collect();
            lines.push(format!("  concurrent with it: {}", texts.join(", ")));
        }
    }
    let prefix_from = prefix.len().saturating_sub(PREFIX_JSON_CALLS);
    let j = json!({
        "key": key_json(&part.keys),
        "culprit": culprit.map(|c| call_json(history, model, &prepared.calls[c])),
        "concurrent": concurrent.iter().map(|&o| call_json(history, model, &prepared.calls[o])).collect::<Vec<_>>(),
        "longest_prefix_fields": PREFIX_ROW_FIELDS,
        "longest_prefix": prefix[prefix_from..].iter().map(|&c| call_row(history, model, &prepared.calls[c])).collect::<Vec<_>>(),
        "longest_prefix_len": prefix.len(),
        "longest_prefix_omitted": prefix_from,
        "state_after_prefix": model.describe_state(&state),
    });
    (lines, j)
}

fn label_prefix(keys: &[Key]) -> String {
    match keys {
        [] => String::new(),
        [k] => format!("key {k}: "),
        ks => format!(
            "keys {}: ",
            ks.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn key_json(keys: &[Key]) -> Json {
    match keys {
        [] => Json::Null,
        [k] => serde_json::to_value(k).unwrap_or(Json::Null),
        ks => serde_json::to_value(ks).unwrap_or(Json::Null),
    }
}

fn process_text(p: Process) -> String {
    match p {
        Process::Client(n) => format!("p{n}"),
        Process::Nemesis => "nemesis".to_string(),
    }
}

/// `p3 write 4`, with `(info)` or `(never completed)` for calls that may not have happened.
fn call_text<M: Model>(history: &History, model: &M, call: &PCall<M>) -> String {
    let op = &history.ops()[call.invoke];
    let mut s = format!(
        "{} {}",
        process_text(op.process),
        model.describe(&call.input, &call.output)
    );
    if !call.required {
        match call.completion {
            Some(_) => s.push_str(" (info)"),
            None => s.push_str(" (never completed)"),
        }
    }
    s
}

/// `(ops 17-22)`: the history indices of the invocation and completion.
fn span_text<M: Model>(history: &History, call: &PCall<M>) -> String {
    let ops = history.ops();
    match call.completion {
        Some(end) => format!("(ops {}-{})", ops[call.invoke].index, ops[end].index),
        None => format!("(op {}-)", ops[call.invoke].index),
    }
}

/// The columns of a `longest_prefix` row. The prefix can hold a thousand calls, so it is a
/// table rather than a list of objects: building one object per call cost more than deciding
/// small histories.
const PREFIX_ROW_FIELDS: [&str; 9] = [
    "index",
    "process",
    "f",
    "value",
    "type",
    "complete_index",
    "invoke_time_ns",
    "complete_time_ns",
    "text",
];

/// One call as a row of [`PREFIX_ROW_FIELDS`].
fn call_row<M: Model>(history: &History, model: &M, call: &PCall<M>) -> Json {
    let (invoke, done, kind, value) = call_parts(history, call);
    Json::Array(vec![
        invoke.index.into(),
        serde_json::to_value(invoke.process).unwrap_or(Json::Null),
        invoke.f.as_str().into(),
        serde_json::to_value(value).unwrap_or(Json::Null),
        kind.into(),
        done.map(|d| d.index).into(),
        invoke.time_ns.into(),
        done.map(|d| d.time_ns).into(),
        call_text(history, model, call).into(),
    ])
}

/// The invocation, the completion if any, the outcome's name and the value worth showing.
fn call_parts<'h, M: Model>(
    history: &'h History,
    call: &PCall<M>,
) -> (
    &'h histories::Op,
    Option<&'h histories::Op>,
    &'static str,
    &'h histories::Value,
) {
    let ops = history.ops();
    let invoke = &ops[call.invoke];
    let done = call.completion.map(|c| &ops[c]);
    let kind = match done.map(|d| d.kind) {
        None => "pending",
        Some(OpType::Ok) => "ok",
        Some(OpType::Fail) => "fail",
        Some(OpType::Info) => "info",
        Some(OpType::Invoke) => "invoke",
    };
    let value = match done {
        Some(d) if d.kind == OpType::Ok || d.kind == OpType::Fail => &d.value,
        _ => &invoke.value,
    };
    (invoke, done, kind, value)
}

fn call_json<M: Model>(history: &History, model: &M, call: &PCall<M>) -> Json {
    let (invoke, done, kind, value) = call_parts(history, call);
    json!({
        "index": invoke.index,
        "process": invoke.process,
        "f": invoke.f.as_str(),
        "value": value,
        "type": kind,
        "invoke_index": invoke.index,
        "complete_index": done.map(|d| d.index),
        "invoke_time_ns": invoke.time_ns,
        "complete_time_ns": done.map(|d| d.time_ns),
        "text": call_text(history, model, call),
    })
}

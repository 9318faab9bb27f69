//! From a cycle of transaction numbers back to words: which transaction had to precede which,
//! and why, ending with the anomaly the cycle shows.

use histories::History;
use serde_json::json;

use super::common::{Case, EdgeExplainer, PROCESS, REALTIME, label_name};
use super::cycles::Found;
use super::prepare::{Txn, txn_json, txn_text};

/// What each cycle class means, in one sentence.
pub fn describe(anomaly: &str) -> String {
    let (base, order) = match anomaly.strip_suffix("-process") {
        Some(b) => (b, Some("process order")),
        None => match anomaly.strip_suffix("-realtime") {
            Some(b) => (b, Some("real-time order")),
            None => (anomaly, None),
        },
    };
    let what = match base {
        "G0" => "a cycle of write-write (ww) dependencies only: dirty writes",
        "G1c" => {
            "a cycle of write-write (ww) and write-read (wr) dependencies: circular information flow"
        }
        "G-single" => {
            "a cycle with exactly one read-write anti-dependency (rw), the other edges ww or wr: read skew"
        }
        "G-nonadjacent" => {
            "a cycle with two or more read-write anti-dependencies (rw), no two of them adjacent"
        }
        "G2-item" => {
            "a cycle with two or more read-write anti-dependencies (rw), some adjacent: write skew"
        }
        _ => "a cycle",
    };
    match order {
        Some(o) => format!("{anomaly}: {what}, closed only by {o}"),
        None => format!("{anomaly}: {what}"),
    }
}

/// The case for one cycle: the transactions, each step with its reason, and a DOT drawing.
pub fn cycle_case(
    history: &History,
    txns: &[Txn<'_>],
    explainer: &dyn EdgeExplainer,
    found: &Found,
) -> Case {
    let c = &found.cycle;
    let n = c.nodes.len();
    let names: Vec<String> = (1..=n).map(|i| format!("T{i}")).collect();
    let mut text = vec![describe(found.anomaly), "Let:".to_string()];
    for (i, &t) in c.nodes.iter().enumerate() {
        text.push(format!(
            "  {} = {}",
            names[i],
            txn_text(history, &txns[t as usize])
        ));
    }
    text.push("Then:".to_string());
    let mut steps = Vec::with_capacity(n);
    let mut dot_edges = Vec::with_capacity(n);
    for i in 0..n {
        let j = (i + 1) % n;
        let (a, b, label) = (c.nodes[i], c.nodes[j], c.labels[i]);
        let (an, bn) = (&names[i], &names[j]);
        let (why, mut data) = edge_reason(history, txns, explainer, a, b, label, an, bn);
        let kind = label_name(label);
        let line = if i + 1 == n {
            format!("  - However, {an} < {bn}, because {why} ({kind}): a cycle.")
        } else {
            format!("  - {an} < {bn}, because {why} ({kind}).")
        };
        text.push(line);
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), json!(kind));
            obj.insert("from".into(), json!(an));
            obj.insert("to".into(), json!(bn));
            obj.insert("explanation".into(), json!(why));
        }
        let key = data.get("key").map(|k| format!(" {k}")).unwrap_or_default();
        dot_edges.push(format!(
            "  {an} -> {bn} [label=\"{kind}{}\"{}];",
            key.replace('"', "\\\""),
            if label == REALTIME || label == PROCESS {
                ", style=dashed"
            } else {
                ""
            }
        ));
        steps.push(data);
    }
    let mut dot = String::from("digraph cycle {\n  node [shape=box, fontname=\"monospace\"];\n");
    for (i, &t) in c.nodes.iter().enumerate() {
        let txn = &txns[t as usize];
        dot.push_str(&format!(
            "  {} [label=\"{}\\nindex {}, p{}\"];\n",
            names[i],
            names[i],
            history.ops()[txn.position()].index,
            txn.process
        ));
    }
    for e in dot_edges {
        dot.push_str(&e);
        dot.push('\n');
    }
    dot.push_str("}\n");
    let mut cycle: Vec<serde_json::Value> = c
        .nodes
        .iter()
        .map(|&t| txn_json(history, &txns[t as usize]))
        .collect();
    cycle.push(cycle[0].clone());
    Case {
        json: json!({
            "type": found.anomaly,
            "cycle": cycle,
            "steps": steps,
            "explanation": text,
            "dot": dot,
        }),
        text,
    }
}

#[allow(clippy::too_many_arguments)]
fn edge_reason(
    history: &History,
    txns: &[Txn<'_>],
    explainer: &dyn EdgeExplainer,
    a: u32,
    b: u32,
    label: u8,
    an: &str,
    bn: &str,
) -> (String, serde_json::Value) {
    let ta = &txns[a as usize];
    let tb = &txns[b as usize];
    let ops = history.ops();
    match label {
        PROCESS => (
            format!("process {} performed {an} and then {bn}", ta.process),
            json!({}),
        ),
        REALTIME => (
            format!(
                "{an} completed (index {}) before {bn} was invoked (index {})",
                ops[ta.position()].index,
                ops[tb.invoke].index
            ),
            json!({}),
        ),
        _ => explainer
            .explain(a, b, label, an, bn)
            .unwrap_or_else(|| (format!("{an} precedes {bn}"), json!({}))),
    }
}

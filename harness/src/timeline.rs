//! Counterexample timelines: one lane per process, each operation a bar from its invocation to
//! its completion, the culprit highlighted, details on hover. Rendered as a self-contained
//! SVG (no script, no external resource) so the file opens anywhere, years later.
//!
//! Every string shown comes from the system under test (values, error messages), so all of it
//! goes through [`escape`].

use std::fmt::Write as _;

/// What a bar means in the counterexample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The operation no linearization could place.
    Culprit,
    /// Concurrent with the culprit: one of the operations it could have been ordered around.
    Concurrent,
    /// Part of the longest linearizable prefix; `order` is its position in that order.
    Linearized { order: usize },
    /// Shown for context only.
    Other,
}

/// One operation on the timeline. Positions are in any monotone unit (history positions or
/// nanoseconds); `end: None` means it never returned (indeterminate).
#[derive(Debug, Clone)]
pub struct Bar {
    pub lane: String,
    pub start: u64,
    pub end: Option<u64>,
    pub label: String,
    /// Shown on hover.
    pub detail: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    pub title: String,
    pub bars: Vec<Bar>,
}

impl Timeline {
    /// Nothing to draw: a page section with text only.
    pub fn empty() -> Timeline {
        Timeline {
            title: String::new(),
            bars: Vec::new(),
        }
    }
}

const LANE_HEIGHT: u32 = 34;
const BAR_HEIGHT: u32 = 22;
const LABEL_WIDTH: u32 = 90;
const PLOT_WIDTH: u32 = 900;
const TOP: u32 = 28;

/// The timeline as an `<svg>` element, to embed in a page or save as a file.
pub fn render_svg(t: &Timeline) -> String {
    let mut lanes: Vec<&str> = t.bars.iter().map(|b| b.lane.as_str()).collect();
    lanes.sort_by(|a, b| natural_cmp(a, b));
    lanes.dedup();
    let min = t.bars.iter().map(|b| b.start).min().unwrap_or(0);
    let max = t
        .bars
        .iter()
        .map(|b| b.end.unwrap_or(b.start).max(b.start))
        .max()
        .unwrap_or(1);
    // Open bars run to the right edge, a little past the last event.
    let span = (max - min).max(1) as f64 * 1.08;
    let x = |pos: u64| LABEL_WIDTH as f64 + (pos - min) as f64 / span * PLOT_WIDTH as f64;
    let height = TOP + LANE_HEIGHT * lanes.len() as u32 + 30;
    let width = LABEL_WIDTH + PLOT_WIDTH + 20;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="4" y="16" font-weight="bold">{}</text>"#,
        escape(&t.title)
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + LANE_HEIGHT * i as u32;
        let _ = write!(
            s,
            r##"<text x="4" y="{}">{}</text><line x1="{LABEL_WIDTH}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##,
            y + BAR_HEIGHT / 2 + 4,
            escape(lane),
            LABEL_WIDTH + PLOT_WIDTH,
            y + LANE_HEIGHT - 4,
            y + LANE_HEIGHT - 4,
        );
    }
    for bar in &t.bars {
        let lane = lanes.iter().position(|l| *l == bar.lane).unwrap_or(0);
        let y = TOP + LANE_HEIGHT * lane as u32;
        let x0 = x(bar.start);
        let x1 = bar
            .end
            .map_or((LABEL_WIDTH + PLOT_WIDTH) as f64, |e| x(e.max(bar.start)))
            .max(x0 + 3.0);
        let (fill, stroke) = match bar.role {
            Role::Culprit => ("#f4b6b6", "#c0392b"),
            Role::Concurrent => ("#fde9b8", "#c98b00"),
            Role::Linearized { .. } => ("#cfe8cf", "#3c873c"),
            Role::Other => ("#e6e6e6", "#888"),
        };
        let dash = if bar.end.is_none() {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let order = match bar.role {
            Role::Linearized { order } => format!("#{} ", order + 1),
            _ => String::new(),
        };
        let _ = write!(
            s,
            r#"<g class="op"><title>{}</title><rect x="{x0:.1}" y="{y}" width="{:.1}" height="{BAR_HEIGHT}" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{}"{dash}/><text x="{:.1}" y="{}">{}{}</text></g>"#,
            escape(&bar.detail),
            x1 - x0,
            if bar.role == Role::Culprit { 2 } else { 1 },
            x0 + 3.0,
            y + BAR_HEIGHT / 2 + 4,
            escape(&order),
            escape(&bar.label),
        );
    }
    let legend_y = height - 10;
    let _ = write!(
        s,
        r##"<text x="{LABEL_WIDTH}" y="{legend_y}" fill="#555">red: cannot be linearized · amber: concurrent with it · green #n: longest linearizable order · dashed: never returned</text></svg>"##
    );
    s
}

/// A complete HTML page holding one or more timelines with explanatory text above each.
pub fn render_page(title: &str, sections: &[(Vec<String>, Timeline)]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:1.5em}} g.op:hover rect{{stroke-width:3}} pre{{background:#f6f6f6;padding:.6em}}</style></head><body><h1>{}</h1>",
        escape(title),
        escape(title)
    );
    for (text, timeline) in sections {
        s.push_str("<section><pre>");
        for line in text {
            s.push_str(&escape(line));
            s.push('\n');
        }
        s.push_str("</pre>");
        if !timeline.bars.is_empty() {
            s.push_str(&render_svg(timeline));
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML; show them instead of breaking the file.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `p2` before `p10`: numbers inside names compare as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let digits = s.trim_start_matches(|c: char| !c.is_ascii_digit());
        let prefix = &s[..s.len() - digits.len()];
        (prefix.to_string(), digits.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(lane: &str, start: u64, end: Option<u64>, label: &str, role: Role) -> Bar {
        Bar {
            lane: lane.into(),
            start,
            end,
            label: label.into(),
            detail: format!("{lane} {label}"),
            role,
        }
    }

    #[test]
    fn values_from_the_system_under_test_are_escaped() {
        let t = Timeline {
            title: "key <script>".into(),
            bars: vec![bar(
                "p1",
                0,
                Some(5),
                "read -> \"</text><script>alert(1)</script>",
                Role::Culprit,
            )],
        };
        let svg = render_svg(&t);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        let page = render_page("<b>", &[(vec!["x < y & \u{7}".into()], t)]);
        assert!(!page.contains("<b>"));
        assert!(page.contains("x &lt; y &amp; \\u{7}"));
    }

    #[test]
    fn lanes_are_in_natural_order_and_every_bar_is_drawn() {
        let t = Timeline {
            title: "t".into(),
            bars: vec![
                bar("p10", 0, Some(4), "a", Role::Other),
                bar("p2", 1, None, "b", Role::Concurrent),
                bar("p2", 5, Some(6), "c", Role::Linearized { order: 0 }),
            ],
        };
        let svg = render_svg(&t);
        assert!(svg.find(">p2<").unwrap() < svg.find(">p10<").unwrap());
        assert_eq!(svg.matches("<g class=\"op\">").count(), 3);
        assert!(svg.contains("stroke-dasharray"), "open bars are dashed");
        assert!(svg.contains("#1 c"), "linearized bars show their order");
    }

    #[test]
    fn an_empty_timeline_still_renders() {
        let svg = render_svg(&Timeline {
            title: "empty".into(),
            bars: vec![],
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}

/// The timelines of a linearizability verdict: one per failing partition, from the `partitions`
/// of its details (culprit, concurrent calls, longest linearizable prefix). Empty for a valid
/// verdict or details of another shape.
pub fn from_linearizable(details: &serde_json::Value) -> Vec<(Vec<String>, Timeline)> {
    let Some(parts) = details.get("partitions").and_then(|p| p.as_array()) else {
        return Vec::new();
    };
    parts.iter().map(partition_timeline).collect()
}

fn partition_timeline(part: &serde_json::Value) -> (Vec<String>, Timeline) {
    let key = match part.get("key") {
        Some(serde_json::Value::Null) | None => String::new(),
        Some(k) => format!("key {k}: "),
    };
    let mut bars = Vec::new();
    let mut text = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if let Some(c) = part.get("culprit").filter(|c| !c.is_null()) {
        text.push(format!(
            "{key}{} cannot be linearized",
            c.get("text").and_then(|t| t.as_str()).unwrap_or("?")
        ));
        push_bar(&mut bars, &mut seen, c, Role::Culprit);
    }
    let prefix = part
        .get("longest_prefix")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let omitted = part
        .get("longest_prefix_omitted")
        .and_then(|n| n.as_u64())
        .unwrap_or(0) as usize;
    text.push(format!(
        "the longest linearizable prefix has {} calls and leaves the state {}",
        part.get("longest_prefix_len")
            .and_then(|n| n.as_u64())
            .unwrap_or(prefix.len() as u64),
        part.get("state_after_prefix")
            .and_then(|s| s.as_str())
            .unwrap_or("?")
    ));
    for op in part
        .get("concurrent")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        push_bar(&mut bars, &mut seen, op, Role::Concurrent);
    }
    // The prefix is a table: rows of the columns in `longest_prefix_fields`.
    let fields: Vec<&str> = part
        .get("longest_prefix_fields")
        .and_then(|f| f.as_array())
        .map(|f| f.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    for (i, row) in prefix.iter().enumerate() {
        let op = row_object(&fields, row);
        push_bar(
            &mut bars,
            &mut seen,
            &op,
            Role::Linearized { order: omitted + i },
        );
    }
    let title = format!("{}not linearizable", if key.is_empty() { "" } else { &key });
    (text, Timeline { title, bars })
}

/// A table row as an object with `invoke_index` (the row's `index`); objects pass through.
fn row_object(fields: &[&str], row: &serde_json::Value) -> serde_json::Value {
    let Some(cells) = row.as_array() else {
        return row.clone();
    };
    let mut map = serde_json::Map::new();
    for (name, cell) in fields.iter().zip(cells) {
        map.insert((*name).to_string(), cell.clone());
    }
    if let Some(index) = map.get("index").cloned() {
        map.entry("invoke_index").or_insert(index);
    }
    serde_json::Value::Object(map)
}

/// Adds the op unless already drawn (an op concurrent with the culprit may also be in the
/// prefix: the first role given wins, culprit over concurrent over linearized).
fn push_bar(
    bars: &mut Vec<Bar>,
    seen: &mut std::collections::HashSet<u64>,
    op: &serde_json::Value,
    role: Role,
) {
    let Some(invoke) = op.get("invoke_index").and_then(|i| i.as_u64()) else {
        return;
    };
    if !seen.insert(invoke) {
        if let (Role::Linearized { order }, Some(bar)) = (
            role,
            bars.iter_mut()
                .find(|b| b.start == invoke && b.role == Role::Concurrent),
        ) {
            // Concurrent and linearized: show its place in the order too.
            bar.label = format!("#{} {}", order + 1, bar.label);
        }
        return;
    }
    let kind = op.get("type").and_then(|t| t.as_str()).unwrap_or("");
    // An info op's completion says nothing about when it took effect: draw it open.
    let end = match kind {
        "ok" | "fail" => op.get("complete_index").and_then(|c| c.as_u64()),
        _ => None,
    };
    let process = match op.get("process") {
        Some(serde_json::Value::Number(n)) => format!("p{n}"),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => "?".to_string(),
    };
    let text = op.get("text").and_then(|t| t.as_str()).unwrap_or("?");
    let label = text
        .strip_prefix(&format!("{process} "))
        .unwrap_or(text)
        .to_string();
    bars.push(Bar {
        lane: process,
        start: invoke,
        end,
        label,
        detail: format!(
            "{text}\nhistory ops {invoke}-{}\ntype {kind}\nvalue {}",
            op.get("complete_index")
                .and_then(|c| c.as_u64())
                .map_or("(none)".to_string(), |c| c.to_string()),
            op.get("value").map_or("nil".to_string(), |v| v.to_string())
        ),
        role,
    });
}

#[cfg(test)]
mod linearizable_tests {
    use super::*;

    #[test]
    fn a_real_counterexample_becomes_a_timeline_with_the_culprit_highlighted() {
        let corpus = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../histories/tests/data/porcupine/jepsen/etcd_000.log"
        );
        let loaded = histories::read_any(std::path::Path::new(corpus), None).unwrap();
        let verdict = checkers::linearizable::check(
            &loaded.history,
            checkers::linearizable::ModelKind::Register,
            &Default::default(),
        );
        let sections = from_linearizable(&verdict.details);
        assert_eq!(sections.len(), 1);
        let (text, timeline) = &sections[0];
        assert!(text[0].contains("cannot be linearized"), "{text:?}");
        let culprits: Vec<_> = timeline
            .bars
            .iter()
            .filter(|b| b.role == Role::Culprit)
            .collect();
        assert_eq!(culprits.len(), 1);
        assert!(
            timeline.bars.len() > 10,
            "prefix and concurrent calls are drawn"
        );
        let page = render_page("etcd_000", &sections);
        assert!(page.contains("#c0392b"), "the culprit's colour is used");
    }

    #[test]
    fn a_valid_verdict_has_no_timeline() {
        assert!(from_linearizable(&serde_json::json!({"partitions": []})).is_empty());
        assert!(from_linearizable(&serde_json::Value::Null).is_empty());
    }
}

//! `report.html`: one self-contained page per run (no external resource, no network): the
//! verdict, the checkers' results with their explanations and counterexample timelines,
//! latency (scatter and quantiles over time) and throughput plots with the fault windows
//! shaded and labelled, op counts, the faults, and links to the node logs.
//!
//! Every string that comes from the system under test or the history (values, errors, node
//! names, explanations) goes through [`escape`]. The plots are inline SVG; a few lines of
//! inline script only fill in a render check (what the browser laid out), which the
//! end-to-end test reads back from headless Chromium.

use std::fmt::Write as _;
use std::path::Path;

use histories::{History, OpType, Process};

use crate::nemesis::{HEAL_FS, START_FS};
use crate::run::Results;
use crate::timeline::{self, escape};

/// Most points drawn per outcome in the latency scatter; beyond it the points are sampled
/// evenly, so a page stays small whatever the history's length.
const MAX_SCATTER_POINTS: usize = 4000;
/// Number of time buckets for the quantile and throughput plots.
const BUCKETS: usize = 60;
/// Most counterexample timelines drawn per checker.
const MAX_TIMELINES: usize = 5;

/// A fault in force from `start_ns` to `end_ns` (history time).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultWindow {
    pub start_ns: u64,
    pub end_ns: u64,
    /// `kill n2`, `start-partition halves n1 n2 | n3`, ...
    pub label: String,
    /// The fault's start operation name.
    pub f: String,
}

/// The fault windows of a history: each starts at a fault's invocation and ends at the
/// completion of the heal that follows (a wipe ends with its own completion; a fault never
/// healed ends with the history).
pub fn fault_windows(history: &History) -> Vec<FaultWindow> {
    let ops = history.ops();
    let end_of_history = ops.last().map_or(0, |o| o.time_ns);
    let mut out = Vec::new();
    let mut open: Option<FaultWindow> = None;
    for op in ops.iter().filter(|o| o.process == Process::Nemesis) {
        let f = op.f.as_str();
        match op.kind {
            OpType::Invoke if START_FS.contains(&f) => {
                if let Some(mut w) = open.take() {
                    w.end_ns = op.time_ns;
                    out.push(w);
                }
                open = Some(FaultWindow {
                    start_ns: op.time_ns,
                    end_ns: end_of_history,
                    label: format!("{f} {}", value_text(&op.value)),
                    f: f.to_string(),
                });
            }
            OpType::Info | OpType::Ok | OpType::Fail
                if HEAL_FS.contains(&f)
                    || (f == "wipe" && open.as_ref().is_some_and(|w| w.f == "wipe")) =>
            {
                if let Some(mut w) = open.take() {
                    w.end_ns = op.time_ns;
                    out.push(w);
                }
            }
            _ => {}
        }
    }
    out.extend(open);
    out
}

fn value_text(v: &histories::Value) -> String {
    match v {
        histories::Value::Str(s) => s.clone(),
        histories::Value::Map(m) => m
            .iter()
            .map(|(k, v)| match v {
                histories::Value::Str(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        histories::Value::Nil => String::new(),
        other => other.to_string(),
    }
}

/// One completed client call: when it was invoked, how long it took, how it ended.
#[derive(Debug, Clone, Copy)]
struct Call {
    invoke_ns: u64,
    complete_ns: u64,
    kind: OpType,
}

fn calls(history: &History) -> Vec<Call> {
    let mut pending: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for op in history.ops() {
        let Process::Client(p) = op.process else {
            continue;
        };
        match op.kind {
            OpType::Invoke => {
                pending.insert(p, op.time_ns);
            }
            kind => {
                if let Some(invoke_ns) = pending.remove(&p) {
                    out.push(Call {
                        invoke_ns,
                        complete_ns: op.time_ns,
                        kind,
                    });
                }
            }
        }
    }
    out
}

/// Writes `<dir>/report.html`.
pub fn write(dir: &Path, results: &Results, history: &History) -> anyhow::Result<()> {
    let path = dir.join("report.html");
    let logs = node_logs(dir);
    std::fs::write(&path, render(results, history, &logs))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The node log files in a run directory (`n1.log`, ...), sorted.
fn node_logs(dir: &Path) -> Vec<String> {
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs
}

/// The page. `logs` are file names beside it.
pub fn render(results: &Results, history: &History, logs: &[String]) -> String {
    let windows = fault_windows(history);
    let calls = calls(history);
    let duration_ns = history.ops().last().map_or(1, |o| o.time_ns).max(1);
    let verdict_class = match results.valid {
        checkers::Validity::True => "valid",
        checkers::Validity::False => "invalid",
        checkers::Validity::Unknown => "unknown",
    };
    let mut s = String::with_capacity(64 * 1024);
    let title = format!("{} · {}", results.test, results.valid);
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>",
        escape(&title),
        STYLE
    );
    let _ = write!(
        s,
        "<header><h1>{}</h1><p id=\"verdict\" class=\"verdict {verdict_class}\">{}</p></header>",
        escape(&results.test),
        escape(&results.valid.to_string()),
    );

    // Summary.
    let st = &results.stats;
    s.push_str("<section><h2>Run</h2><dl>");
    let mut row = |k: &str, v: String| {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    };
    row("seed", results.seed.to_string());
    row("repeat with", results.command.clone());
    row(
        "network",
        format!("{} ({})", results.config.net, results.config.net_why),
    );
    row(
        "cluster",
        format!(
            "{} × {} · {} replication · reads at {}",
            results.config.nodes,
            results.config.target,
            results.config.replication.as_str(),
            results.config.read_routing
        ),
    );
    row(
        "nemesis",
        format!(
            "{} every {} s · {} faults injected",
            results.config.nemesis, results.config.nemesis_interval_s, results.faults_injected
        ),
    );
    row(
        "load",
        format!(
            "{} clients · {} ops/s asked · {:.0} ok ops/s over {:.1} s",
            results.config.concurrency, results.config.rate, st.ok_per_s, st.duration_s
        ),
    );
    row(
        "latency",
        format!(
            "p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            st.latency_ms.p50, st.latency_ms.p90, st.latency_ms.p99, st.latency_ms.max
        ),
    );
    if results.interrupted {
        row(
            "interrupted",
            "yes: the history ends where the run was stopped".into(),
        );
    }
    s.push_str("</dl>");
    for w in &results.warnings {
        let _ = write!(s, "<p class=\"warning\">warning: {}</p>", escape(w));
    }
    s.push_str("</section>");

    // Op counts.
    s.push_str("<section><h2>Operations</h2><table class=\"counts\"><thead><tr><th>f</th><th>invoked</th><th>ok</th><th>fail</th><th>info</th></tr></thead><tbody>");
    let t = &st.total;
    for (f, c) in st
        .ops
        .iter()
        .map(|(f, c)| (f.as_str(), c))
        .chain([("total", t)])
    {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(f),
            c.invoke,
            c.ok,
            c.fail,
            c.info
        );
    }
    let _ = write!(
        s,
        "</tbody></table><p>{} nemesis operations.</p></section>",
        st.nemesis_ops
    );

    // Checkers.
    s.push_str("<section><h2>Checkers</h2>");
    for v in results.checker.values() {
        let class = match v.valid {
            checkers::Validity::True => "valid",
            checkers::Validity::False => "invalid",
            checkers::Validity::Unknown => "unknown",
        };
        let _ = write!(
            s,
            "<article class=\"checker\"><h3>{} <span class=\"verdict {class}\">{}</span></h3><p>{}</p>",
            escape(&v.checker),
            escape(&v.valid.to_string()),
            escape(&v.summary)
        );
        if !v.explanation.is_empty() {
            s.push_str("<pre class=\"explanation\">");
            for line in &v.explanation {
                s.push_str(&escape(line));
                s.push('\n');
            }
            s.push_str("</pre>");
        }
        let timelines = timeline::from_linearizable(&v.details);
        for (text, tl) in timelines.iter().take(MAX_TIMELINES) {
            s.push_str("<figure class=\"timeline\"><figcaption>");
            for line in text {
                s.push_str(&escape(line));
                s.push_str("<br>");
            }
            s.push_str("</figcaption>");
            s.push_str(&timeline::render_svg(tl));
            s.push_str("</figure>");
        }
        if timelines.len() > MAX_TIMELINES {
            let _ = write!(
                s,
                "<p>{} more counterexamples are in results.json.</p>",
                timelines.len() - MAX_TIMELINES
            );
        }
        s.push_str("</article>");
    }
    s.push_str("</section>");

    // Plots.
    s.push_str("<section><h2>Latency and throughput</h2><p class=\"legend\">Shaded bands are faults, labelled at the top; hover for details.</p>");
    s.push_str(&latency_scatter(&calls, &windows, duration_ns));
    s.push_str(&latency_quantiles(&calls, &windows, duration_ns));
    s.push_str(&throughput(&calls, &windows, duration_ns));
    s.push_str("</section>");

    // Faults.
    s.push_str("<section><h2>Faults</h2>");
    if windows.is_empty() {
        s.push_str("<p>No faults were injected.</p>");
    } else {
        s.push_str("<table class=\"faults\"><thead><tr><th>from (s)</th><th>to (s)</th><th>fault</th></tr></thead><tbody>");
        for w in &windows {
            let _ = write!(
                s,
                "<tr><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                w.start_ns as f64 / 1e9,
                w.end_ns as f64 / 1e9,
                escape(&w.label)
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");

    // Files.
    s.push_str("<section><h2>Files</h2><ul class=\"files\">");
    for f in ["history.jsonl", "results.json", "junit.xml"] {
        let _ = write!(s, "<li><a href=\"{0}\">{0}</a></li>", escape(f));
    }
    for log in logs {
        let _ = write!(
            s,
            "<li><a class=\"log\" href=\"{0}\">{0}</a></li>",
            escape(log)
        );
    }
    s.push_str("</ul></section>");
    s.push_str("<p id=\"render-check\" hidden></p>");
    s.push_str(RENDER_CHECK);
    s.push_str("</body></html>\n");
    s
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}\
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}\
.verdict{display:inline-block;font-weight:bold;padding:.15em .6em;border-radius:4px}\
p.verdict{font-size:1.6em;margin:.2em 0}\
.valid{background:#d8f0d8;color:#1e6b1e}.invalid{background:#f8d4d4;color:#a11}.unknown{background:#fbeec4;color:#7a5b00}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0;word-break:break-all}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child,th:first-child{text-align:left}\
table.faults td:last-child{text-align:left}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}\
.warning{color:#a11}figure{margin:1em 0}figcaption{font-size:.9em;margin-bottom:.3em}\
svg.plot{display:block;margin:.8em 0}g.op:hover rect{stroke-width:3}";

/// Fills `#render-check` with what the browser actually laid out: the number of plots with
/// a real size and the verdict's text. Only the end-to-end test reads it.
const RENDER_CHECK: &str = "<script>(function(){var p=document.querySelectorAll('svg.plot');var n=0;\
for(var i=0;i<p.length;i++){var r=p[i].getBoundingClientRect();if(r.width>100&&r.height>50)n++;}\
var v=document.getElementById('verdict');var vr=v.getBoundingClientRect();\
document.getElementById('render-check').textContent='plots='+n+' verdict='+v.textContent+' verdict_visible='+(vr.width>0&&vr.height>0);})();</script>";

const PLOT_W: f64 = 1000.0;
const PLOT_H: f64 = 260.0;
const MARGIN_L: f64 = 60.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 30.0;
const MARGIN_B: f64 = 36.0;

/// Axes, title and the fault bands of a plot over `[0, duration]` seconds. `y_ticks` are
/// (position 0..1 from the bottom, label).
fn plot_frame(
    title: &str,
    y_label: &str,
    windows: &[FaultWindow],
    duration_ns: u64,
    y_ticks: &[(f64, String)],
) -> String {
    let mut s = String::new();
    let (w, h) = (PLOT_W, PLOT_H);
    let inner_w = w - MARGIN_L - MARGIN_R;
    let inner_h = h - MARGIN_T - MARGIN_B;
    let _ = write!(
        s,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11"><text x="{MARGIN_L}" y="14" font-weight="bold" font-size="13">{}</text>"#,
        escape(title)
    );
    for (i, win) in windows.iter().enumerate() {
        let x0 = MARGIN_L + win.start_ns as f64 / duration_ns as f64 * inner_w;
        let x1 = MARGIN_L + win.end_ns as f64 / duration_ns as f64 * inner_w;
        let color = fault_color(&win.f);
        let _ = write!(
            s,
            r##"<g class="fault"><title>{}</title><rect x="{x0:.1}" y="{MARGIN_T}" width="{:.1}" height="{inner_h}" fill="{color}" fill-opacity="0.25"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#555">{}</text></g>"##,
            escape(&format!(
                "{} ({:.2}-{:.2} s)",
                win.label,
                win.start_ns as f64 / 1e9,
                win.end_ns as f64 / 1e9
            )),
            (x1 - x0).max(1.0),
            x0 + 2.0,
            MARGIN_T - 3.0 + if i % 2 == 0 { 0.0 } else { 10.0 },
            escape(&short_label(&win.f)),
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{MARGIN_L}" y1="{0}" x2="{1}" y2="{0}" stroke="#333"/><line x1="{MARGIN_L}" y1="{MARGIN_T}" x2="{MARGIN_L}" y2="{0}" stroke="#333"/>"##,
        MARGIN_T + inner_h,
        MARGIN_L + inner_w
    );
    let secs = duration_ns as f64 / 1e9;
    let step = nice_step(secs / 8.0);
    let mut t = 0.0;
    while t <= secs + 1e-9 {
        let x = MARGIN_L + t / secs * inner_w;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{0}" x2="{x:.1}" y2="{1}" stroke="#333"/><text x="{x:.1}" y="{2}" text-anchor="middle">{t}</text>"##,
            MARGIN_T + inner_h,
            MARGIN_T + inner_h + 4.0,
            MARGIN_T + inner_h + 16.0
        );
        t += step;
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
        MARGIN_L + inner_w / 2.0,
        h - 4.0
    );
    for (pos, label) in y_ticks {
        let y = MARGIN_T + inner_h * (1.0 - pos);
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="{y:.1}" x2="{1}" y2="{y:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            MARGIN_L,
            MARGIN_L + inner_w,
            MARGIN_L - 4.0,
            y + 4.0,
            escape(label)
        );
    }
    let _ = write!(
        s,
        r#"<text transform="translate(12 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        MARGIN_T + inner_h / 2.0,
        escape(y_label)
    );
    s
}

fn fault_color(f: &str) -> &'static str {
    match f {
        "kill" | "wipe" => "#d9534f",
        "pause" => "#f0ad4e",
        "start-partition" => "#5b8def",
        "bump-clock" | "strobe-clock" => "#9b59b6",
        "start-loss" | "start-delay" => "#16a085",
        _ => "#999",
    }
}

fn short_label(f: &str) -> String {
    f.trim_start_matches("start-").to_string()
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn x_of(ns: u64, duration_ns: u64) -> f64 {
    MARGIN_L + ns as f64 / duration_ns as f64 * (PLOT_W - MARGIN_L - MARGIN_R)
}

/// Log-scale y from 0.1 ms to the largest latency.
struct LogY {
    lo: f64,
    hi: f64,
}

impl LogY {
    fn new(max_ms: f64) -> LogY {
        let hi = 10f64.powf(max_ms.max(1.0).log10().ceil());
        LogY { lo: 0.1, hi }
    }
    fn pos(&self, ms: f64) -> f64 {
        let v = ms.clamp(self.lo, self.hi);
        (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
    }
    fn y(&self, ms: f64) -> f64 {
        MARGIN_T + (PLOT_H - MARGIN_T - MARGIN_B) * (1.0 - self.pos(ms))
    }
    fn ticks(&self) -> Vec<(f64, String)> {
        let mut out = Vec::new();
        let mut v = self.lo;
        while v <= self.hi * 1.0001 {
            out.push((self.pos(v), format_ms(v)));
            v *= 10.0;
        }
        out
    }
}

fn format_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", v / 1000.0)
    } else {
        format!("{v} ms")
    }
}

fn latency_ms(c: &Call) -> f64 {
    c.complete_ns.saturating_sub(c.invoke_ns) as f64 / 1e6
}

fn latency_scatter(calls: &[Call], windows: &[FaultWindow], duration_ns: u64) -> String {
    let max = calls.iter().map(latency_ms).fold(1.0, f64::max);
    let y = LogY::new(max);
    let mut s = plot_frame(
        "Latency of each call (by invocation time)",
        "latency",
        windows,
        duration_ns,
        &y.ticks(),
    );
    for (kind, color, name) in [
        (OpType::Ok, "#2b7bb9", "ok"),
        (OpType::Fail, "#e08e0b", "fail"),
        (OpType::Info, "#c0392b", "info"),
    ] {
        let of_kind: Vec<&Call> = calls.iter().filter(|c| c.kind == kind).collect();
        let stride = of_kind.len().div_ceil(MAX_SCATTER_POINTS).max(1);
        let _ = write!(
            s,
            r#"<g class="points {name}" fill="{color}" fill-opacity="0.6">"#
        );
        for c in of_kind.iter().step_by(stride) {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="1.6"/>"#,
                x_of(c.invoke_ns, duration_ns),
                y.y(latency_ms(c))
            );
        }
        s.push_str("</g>");
    }
    s.push_str(&legend(&[
        ("#2b7bb9", "ok"),
        ("#e08e0b", "fail"),
        ("#c0392b", "info (indeterminate)"),
    ]));
    s.push_str("</svg>");
    s
}

/// Calls bucketed by completion time.
fn buckets(calls: &[Call], duration_ns: u64) -> Vec<Vec<&Call>> {
    let mut b: Vec<Vec<&Call>> = vec![Vec::new(); BUCKETS];
    for c in calls {
        let i = ((c.complete_ns as f64 / duration_ns as f64) * BUCKETS as f64) as usize;
        b[i.min(BUCKETS - 1)].push(c);
    }
    b
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn latency_quantiles(calls: &[Call], windows: &[FaultWindow], duration_ns: u64) -> String {
    let done: Vec<Call> = calls
        .iter()
        .filter(|c| c.kind != OpType::Info)
        .copied()
        .collect();
    let max = done.iter().map(latency_ms).fold(1.0, f64::max);
    let y = LogY::new(max);
    let mut s = plot_frame(
        "Latency quantiles over time (ok and fail calls)",
        "latency",
        windows,
        duration_ns,
        &y.ticks(),
    );
    let bucket_ns = duration_ns as f64 / BUCKETS as f64;
    let per_bucket: Vec<Vec<f64>> = buckets(&done, duration_ns)
        .into_iter()
        .map(|b| {
            let mut l: Vec<f64> = b.into_iter().map(latency_ms).collect();
            l.sort_by(f64::total_cmp);
            l
        })
        .collect();
    for (q, color, name) in [
        (0.5, "#2b7bb9", "p50"),
        (0.95, "#e08e0b", "p95"),
        (0.99, "#c0392b", "p99"),
        (1.0, "#555", "max"),
    ] {
        let points: Vec<String> = per_bucket
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| {
                let mid = ((i as f64 + 0.5) * bucket_ns) as u64;
                format!("{:.1},{:.1}", x_of(mid, duration_ns), y.y(quantile(l, q)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="{name}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    s.push_str(&legend(&[
        ("#2b7bb9", "p50"),
        ("#e08e0b", "p95"),
        ("#c0392b", "p99"),
        ("#555", "max"),
    ]));
    s.push_str("</svg>");
    s
}

fn throughput(calls: &[Call], windows: &[FaultWindow], duration_ns: u64) -> String {
    let bucket_s = duration_ns as f64 / 1e9 / BUCKETS as f64;
    let b = buckets(calls, duration_ns);
    let rate = |kind: OpType| -> Vec<f64> {
        b.iter()
            .map(|calls| calls.iter().filter(|c| c.kind == kind).count() as f64 / bucket_s)
            .collect()
    };
    let series = [
        (rate(OpType::Ok), "#2b7bb9", "ok"),
        (rate(OpType::Fail), "#e08e0b", "fail"),
        (rate(OpType::Info), "#c0392b", "info"),
    ];
    let max = series
        .iter()
        .flat_map(|(v, _, _)| v.iter().copied())
        .fold(1.0, f64::max);
    let top = nice_step(max / 4.0) * 4.0;
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| (i as f64 / 4.0, format!("{}", top * i as f64 / 4.0)))
        .collect();
    let mut s = plot_frame(
        "Throughput (completions per second)",
        "ops/s",
        windows,
        duration_ns,
        &ticks,
    );
    let inner_h = PLOT_H - MARGIN_T - MARGIN_B;
    for (values, color, name) in &series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mid = ((i as f64 + 0.5) * bucket_s * 1e9) as u64;
                format!(
                    "{:.1},{:.1}",
                    x_of(mid, duration_ns),
                    MARGIN_T + inner_h * (1.0 - v / top)
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="{name}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    s.push_str(&legend(&[
        ("#2b7bb9", "ok"),
        ("#e08e0b", "fail"),
        ("#c0392b", "info"),
    ]));
    s.push_str("</svg>");
    s
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut s = String::new();
    let mut x = PLOT_W - MARGIN_R - 10.0;
    for (color, name) in items.iter().rev() {
        x -= 8.0 * name.len() as f64 + 22.0;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="4" width="10" height="10" fill="{color}"/><text x="{:.1}" y="13">{}</text>"#,
            x + 14.0,
            escape(name)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use histories::{F, Op, Value};

    fn op(index: u64, time_ns: u64, process: Process, kind: OpType, f: F, value: Value) -> Op {
        Op {
            index,
            time_ns,
            process,
            kind,
            f,
            key: None,
            value,
            node: None,
            error: None,
        }
    }

    fn history() -> History {
        let n = Process::Nemesis;
        let p = Process::Client(0);
        let part = Value::Map(
            [
                ("shape".to_string(), Value::Str("halves".into())),
                ("cut".to_string(), Value::Str("n1 <b>x</b> | n3".into())),
            ]
            .into_iter()
            .collect(),
        );
        let ops = vec![
            op(0, 0, p, OpType::Invoke, F::Write, Value::Int(1)),
            op(1, 2_000_000, p, OpType::Ok, F::Write, Value::Int(1)),
            op(
                2,
                1_000_000_000,
                n,
                OpType::Invoke,
                F::Other("start-partition".into()),
                part.clone(),
            ),
            op(
                3,
                1_001_000_000,
                n,
                OpType::Info,
                F::Other("start-partition".into()),
                part,
            ),
            op(4, 1_500_000_000, p, OpType::Invoke, F::Read, Value::Nil),
            op(5, 3_000_000_000, p, OpType::Info, F::Read, Value::Nil),
            op(
                6,
                3_000_000_001,
                n,
                OpType::Invoke,
                F::Other("stop-partition".into()),
                Value::Nil,
            ),
            op(
                7,
                3_100_000_000,
                n,
                OpType::Info,
                F::Other("stop-partition".into()),
                Value::Nil,
            ),
            op(
                8,
                3_200_000_000,
                n,
                OpType::Invoke,
                F::Other("wipe".into()),
                Value::Str("n2".into()),
            ),
            op(
                9,
                3_300_000_000,
                n,
                OpType::Info,
                F::Other("wipe".into()),
                Value::Str("n2".into()),
            ),
            op(
                10,
                4_000_000_000,
                n,
                OpType::Invoke,
                F::Other("kill".into()),
                Value::Str("n1".into()),
            ),
            op(
                11,
                4_100_000_000,
                n,
                OpType::Info,
                F::Other("kill".into()),
                Value::Str("n1".into()),
            ),
        ];
        History::from_ops(ops).unwrap()
    }

    #[test]
    fn fault_windows_pair_starts_with_heals_and_wipes_with_themselves() {
        let w = fault_windows(&history());
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!((w[0].start_ns, w[0].end_ns), (1_000_000_000, 3_100_000_000));
        assert!(w[0].label.starts_with("start-partition"), "{}", w[0].label);
        assert_eq!((w[1].start_ns, w[1].end_ns), (3_200_000_000, 3_300_000_000));
        assert_eq!(w[2].f, "kill");
        assert_eq!(
            w[2].end_ns, 4_100_000_000,
            "an unhealed fault lasts to the end"
        );
    }

    #[test]
    fn plots_shade_faults_and_escape_labels() {
        let h = history();
        let windows = fault_windows(&h);
        let calls = calls(&h);
        assert_eq!(calls.len(), 2);
        let svg = latency_scatter(&calls, &windows, 4_100_000_000);
        assert!(svg.contains("class=\"fault\""), "{svg}");
        assert!(!svg.contains("<b>"), "labels are escaped: {svg}");
        assert!(svg.contains("&lt;b&gt;"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let q = latency_quantiles(&calls, &windows, 4_100_000_000);
        assert!(q.contains("<polyline class=\"p99\""));
        let t = throughput(&calls, &windows, 4_100_000_000);
        assert!(t.contains("<polyline class=\"ok\""));
    }

    #[test]
    fn nice_steps_are_one_two_or_five() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(30.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn every_value_from_the_system_under_test_is_escaped_on_the_page() {
        let evil = "<script>alert(1)</script>";
        let verdict = checkers::Verdict {
            checker: "linearizable".into(),
            valid: checkers::Validity::False,
            summary: format!("p1 read -> {evil} cannot be linearized"),
            explanation: vec![format!("key {evil}: nope")],
            details: serde_json::json!({"partitions": [{
                "key": evil,
                "culprit": {"process": 1, "type": "ok", "invoke_index": 4, "complete_index": 5,
                            "text": format!("p1 read -> {evil}"), "value": evil},
                "concurrent": [], "longest_prefix": [], "longest_prefix_len": 0,
                "state_after_prefix": evil
            }]}),
        };
        let results = Results {
            test: format!("t{evil}"),
            valid: checkers::Validity::False,
            seed: 1,
            command: format!("splitbrain run {evil}"),
            store: "/tmp/x".into(),
            interrupted: false,
            config: crate::run::ConfigSummary {
                target: "refnode",
                nodes: 3,
                replication: crate::run::Replication::Sync,
                failover: crate::run::Failover::Naive,
                workload: crate::run::Workload::Register,
                nemesis: "partition".into(),
                nemesis_interval_s: 1.0,
                concurrency: 1,
                time_limit_s: 1.0,
                rate: 1.0,
                read_routing: "leader",
                op_timeout_ms: 1,
                log: crate::run::LogKind::Logical,
                design: None,
                net: "proxy",
                net_why: evil.into(),
                target_options: None,
            },
            checker: [("linearizable".to_string(), verdict)]
                .into_iter()
                .collect(),
            stats: checkers::stats::stats(&history()),
            faults_injected: 2,
            warnings: vec![evil.into()],
            net_stats: None,
        };
        let page = render(&results, &history(), &[format!("n1{evil}.log")]);
        // The only script on the page is the render check.
        assert_eq!(page.matches("<script>").count(), 1, "{page}");
        assert!(!page.contains("alert(1)</script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<svg class=\"plot\""));
        assert!(page.contains("id=\"verdict\" class=\"verdict invalid\""));
    }
}

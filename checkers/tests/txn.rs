//! Conformance of the transactional (Elle-style) checker: one hand-written history per anomaly
//! (the smallest that shows it), asserting the exact anomaly names and the models ruled out;
//! close variants that must be accepted; model selection; histories the checker cannot judge.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use checkers::txn::synth::{GenOptions, generate};
use checkers::txn::{ConsistencyModel, TxnOptions, Workload, check};
use checkers::{Validity, Verdict};
use histories::History;

const LA: Workload = Workload::ListAppend;
const RW: Workload = Workload::RwRegister;

fn fixture_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/txn")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> History {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/txn")
        .join(name);
    histories::read_any(&path, None)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .history
}

fn parse(edn: &str) -> History {
    histories::edn::read(edn.as_bytes(), "inline.edn")
        .unwrap_or_else(|e| panic!("{e}\n{edn}"))
        .history
}

fn run(history: &History, workload: Workload, models: &[&str]) -> Verdict {
    let mut opts = TxnOptions::new(workload);
    if !models.is_empty() {
        opts.models = models
            .iter()
            .map(|m| m.parse::<ConsistencyModel>().unwrap())
            .collect();
    }
    check(history, &opts)
}

fn strings(v: &Verdict, field: &str) -> Vec<String> {
    v.details[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {}", v.details))
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The fixture is invalid under strict-serializable with exactly these anomaly types, and these
/// weakest models ruled out.
fn assert_anomalies(file: &str, workload: Workload, types: &[&str], not: &[&str]) -> Verdict {
    let v = run(&load(file), workload, &[]);
    assert_eq!(v.valid, Validity::False, "{file}: {}", v.summary);
    assert_eq!(strings(&v, "anomaly-types"), types, "{file}: {}", v.summary);
    assert_eq!(strings(&v, "not"), not, "{file}: {}", v.summary);
    assert_eq!(v.checker, workload.checker_name());
    v
}

fn assert_valid(history: &History, workload: Workload) {
    let v = run(history, workload, &[]);
    assert_eq!(
        v.valid,
        Validity::True,
        "{}\n{:#?}",
        v.summary,
        v.explanation
    );
    assert_eq!(strings(&v, "anomaly-types"), Vec::<String>::new());
}

/// The fixture with `from` replaced by `to` (which must occur).
fn variant(file: &str, from: &str, to: &str) -> History {
    let text = fixture_text(file);
    assert!(text.contains(from), "{file} has no {from:?}");
    parse(&text.replacen(from, to, 1))
}

// ---- list-append: one fixture per anomaly ----

#[test]
fn list_append_g0_write_cycle() {
    assert_anomalies("la-g0.edn", LA, &["G0"], &["read-uncommitted"]);
    // Both keys in the same order: no cycle.
    assert_valid(&variant("la-g0.edn", "[:r 2 [2 1]]", "[:r 2 [1 2]]"), LA);
}

#[test]
fn list_append_g1a_aborted_read() {
    assert_anomalies("la-g1a.edn", LA, &["G1a"], &["read-committed"]);
    assert_valid(&variant("la-g1a.edn", ":fail", ":ok"), LA);
    // An info transaction may have committed: observing its append is fine.
    assert_valid(&variant("la-g1a.edn", ":fail", ":info"), LA);
}

#[test]
fn list_append_g1b_intermediate_read() {
    // Reading [1] misses T1's own later append of 2, which is also a G-single cycle.
    assert_anomalies("la-g1b.edn", LA, &["G-single", "G1b"], &["read-committed"]);
    assert_valid(&variant("la-g1b.edn", "[:r 1 [1]]", "[:r 1 [1 2]]"), LA);
}

#[test]
fn list_append_g1c_circular_information_flow() {
    assert_anomalies("la-g1c.edn", LA, &["G1c"], &["read-committed"]);
    assert_valid(&variant("la-g1c.edn", "[:r 1 [1]]", "[:r 1 []]"), LA);
}

#[test]
fn list_append_g_single_read_skew() {
    let v = assert_anomalies(
        "la-g-single.edn",
        LA,
        &["G-single"],
        &["consistent-view", "repeatable-read"],
    );
    assert!(strings(&v, "also-not").contains(&"snapshot-isolation".to_string()));
    assert_valid(&variant("la-g-single.edn", "[:r 1 []]", "[:r 1 [1]]"), LA);
}

#[test]
fn list_append_g_nonadjacent() {
    assert_anomalies(
        "la-g-nonadjacent.edn",
        LA,
        &["G-nonadjacent"],
        &["repeatable-read", "snapshot-isolation"],
    );
    assert_valid(
        &variant("la-g-nonadjacent.edn", "[:r 3 []]", "[:r 3 [1]]"),
        LA,
    );
}

#[test]
fn list_append_g2_item_write_skew() {
    let v = assert_anomalies("la-g2-item.edn", LA, &["G2-item"], &["repeatable-read"]);
    // Write skew is allowed by snapshot isolation.
    assert!(!strings(&v, "also-not").contains(&"snapshot-isolation".to_string()));
    assert_eq!(
        run(&load("la-g2-item.edn"), LA, &["snapshot-isolation"]).valid,
        Validity::True
    );
    assert_valid(
        &variant(
            "la-g2-item.edn",
            "[:r 2 []] [:append 1 1]]",
            "[:r 2 [1]] [:append 1 1]]",
        ),
        LA,
    );
}

#[test]
fn list_append_internal() {
    assert_anomalies("la-internal.edn", LA, &["internal"], &["read-atomic"]);
    assert_valid(&variant("la-internal.edn", "[:r 1 []]", "[:r 1 [1]]"), LA);
}

#[test]
fn list_append_lost_update() {
    assert_anomalies(
        "la-lost-update.edn",
        LA,
        &["G-single", "lost-update"],
        &["cursor-stability", "ROLA"],
    );
    assert_valid(
        &variant(
            "la-lost-update.edn",
            "{:type :ok, :f :txn, :value [[:r 1 []] [:append 1 2]]",
            "{:type :ok, :f :txn, :value [[:r 1 [1]] [:append 1 2]]",
        ),
        LA,
    );
}

#[test]
fn list_append_duplicate_elements() {
    assert_anomalies(
        "la-duplicate-elements.edn",
        LA,
        &["duplicate-elements"],
        &["read-uncommitted"],
    );
    assert_valid(&variant("la-duplicate-elements.edn", "[1 1]", "[1]"), LA);
}

#[test]
fn list_append_incompatible_order() {
    assert_anomalies(
        "la-incompatible-order.edn",
        LA,
        &["incompatible-order"],
        &["read-committed"],
    );
    assert_valid(&variant("la-incompatible-order.edn", "[2 1]", "[1 2]"), LA);
    // A shorter read is a prefix, but here it would be stale: both appends completed first.
    let stale = run(
        &variant("la-incompatible-order.edn", "[2 1]", "[1]"),
        LA,
        &[],
    );
    assert_eq!(strings(&stale, "anomaly-types"), ["G-single-realtime"]);
}

#[test]
fn list_append_dirty_update() {
    assert_anomalies(
        "la-dirty-update.edn",
        LA,
        &["G1a", "dirty-update"],
        &["read-committed"],
    );
    assert_valid(&variant("la-dirty-update.edn", ":fail", ":info"), LA);
}

#[test]
fn list_append_garbage_read() {
    assert_anomalies("la-garbage.edn", LA, &["garbage"], &["read-uncommitted"]);
    assert_valid(&variant("la-garbage.edn", "[1 5]", "[1]"), LA);
}

#[test]
fn list_append_future_read() {
    assert_anomalies(
        "la-future-read.edn",
        LA,
        &["future-read"],
        &["read-committed"],
    );
    assert_valid(
        &variant("la-future-read.edn", "[:r 1 [1]]", "[:r 1 []]"),
        LA,
    );
}

#[test]
fn list_append_g0_realtime() {
    assert_anomalies(
        "la-g0-realtime.edn",
        LA,
        &["G0-realtime"],
        &["strong-read-uncommitted"],
    );
    // The same appends, concurrent: either order is fine.
    let concurrent = "{:type :invoke, :f :txn, :value [[:append 1 2]], :process 0}\n\
                      {:type :invoke, :f :txn, :value [[:append 1 1]], :process 1}\n\
                      {:type :ok, :f :txn, :value [[:append 1 2]], :process 0}\n\
                      {:type :ok, :f :txn, :value [[:append 1 1]], :process 1}\n\
                      {:type :invoke, :f :txn, :value [[:r 1 nil]], :process 2}\n\
                      {:type :ok, :f :txn, :value [[:r 1 [1 2]]], :process 2}\n";
    assert_valid(&parse(concurrent), LA);
}

#[test]
fn list_append_g_single_process_needs_a_session_model() {
    let h = load("la-g-single-process.edn");
    let v = assert_anomalies(
        "la-g-single-process.edn",
        LA,
        &["G-single-process"],
        &["strong-session-snapshot-isolation"],
    );
    assert!(strings(&v, "also-not").contains(&"strong-session-serializable".to_string()));
    assert_eq!(run(&h, LA, &["serializable"]).valid, Validity::True);
    assert_eq!(
        run(&h, LA, &["strong-session-serializable"]).valid,
        Validity::False
    );
}

// ---- the stale read: serializable, not strict-serializable ----

#[test]
fn a_stale_read_is_serializable_but_not_strict_serializable() {
    let h = load("la-stale-read.edn");
    let strict = run(&h, LA, &["strict-serializable"]);
    assert_eq!(strict.valid, Validity::False);
    assert_eq!(
        strict.summary,
        "not strict-serializable: G-single-realtime (1)"
    );
    assert_eq!(strings(&strict, "not"), ["strong-snapshot-isolation"]);
    assert_eq!(strings(&strict, "also-not"), ["strict-serializable"]);

    let serializable = run(&h, LA, &["serializable"]);
    assert_eq!(
        serializable.valid,
        Validity::True,
        "{}",
        serializable.summary
    );
    assert_eq!(
        serializable.summary,
        "valid under serializable: no anomalies in 2 transactions"
    );
    // PL names select the same models.
    assert_eq!(run(&h, LA, &["pl-3"]).valid, Validity::True);
    assert_eq!(run(&h, LA, &["pl-ss"]).valid, Validity::False);
    // One prohibiting model among several is enough.
    assert_eq!(
        run(&h, LA, &["serializable", "strict-serializable"]).valid,
        Validity::False
    );
    assert_valid(&variant("la-stale-read.edn", "[:r 1 []]", "[:r 1 [1]]"), LA);
}

#[test]
fn anomalies_the_models_allow_are_reported_but_do_not_invalidate() {
    // Write skew under snapshot isolation, with every model searched that SI needs.
    let v = run(&load("la-g2-item.edn"), LA, &["snapshot-isolation"]);
    assert_eq!(v.valid, Validity::True);
    assert_eq!(strings(&v, "anomaly-types"), ["G2-item"]);
    assert_eq!(
        strings(&v, "prohibited-anomaly-types"),
        Vec::<String>::new()
    );
    assert_eq!(
        v.summary,
        "valid under snapshot-isolation: 3 transactions; found only anomalies these models allow: G2-item (1); not checked (undetectable here): G-SIa, G-SIb"
    );
}

#[test]
fn anomalies_a_selected_model_names_but_no_graph_shows_are_listed_as_not_checked() {
    let h = load("la-valid.edn");
    // The serializable models are defined by G1 and G2 cycles, all of which are searched.
    let strict = run(&h, LA, &[]);
    assert_eq!(strings(&strict, "not-checked"), Vec::<String>::new());
    assert!(
        !strict.summary.contains("not checked"),
        "{}",
        strict.summary
    );
    // Snapshot isolation is defined over start points the history does not record.
    let si = run(&h, LA, &["snapshot-isolation"]);
    assert_eq!(si.valid, Validity::True);
    assert_eq!(strings(&si, "not-checked"), ["G-SIa", "G-SIb"]);
    assert_eq!(
        si.summary,
        "valid under snapshot-isolation: no anomalies in 8 transactions; not checked (undetectable here): G-SIa, G-SIb"
    );
    assert_eq!(
        si.explanation,
        [
            "G-SIa is not checked: interference needs each transaction's start point (its snapshot), which the history does not record.",
            "G-SIb is not checked: missed effects are found only where they form a G-single cycle; cycles that need start-order edges cannot be seen without start points.",
        ]
    );
    let cs = run(&h, LA, &["cursor-stability", "monotonic-view"]);
    assert_eq!(strings(&cs, "not-checked"), ["G-cursor", "G-monotonic"]);
    // An invalid verdict says it too.
    let v = run(&load("la-g1a.edn"), LA, &["update-serializable"]);
    assert_eq!(v.valid, Validity::False);
    assert_eq!(
        v.summary,
        "not update-serializable: G1a (1); not checked (undetectable here): G-update"
    );
}

// ---- explanations ----

#[test]
fn a_g_single_is_explained_step_by_step() {
    let v = run(&load("la-g-single.edn"), LA, &[]);
    assert_eq!(
        v.explanation[..8],
        [
            "G-single: 1 found (prohibited)",
            "  G-single: a cycle with exactly one read-write anti-dependency (rw), the other edges ww or wr: read skew",
            "  Let:",
            "    T1 = index 3, p0: [[r 1 []] [r 2 [1]]]",
            "    T2 = index 2, p1: [[append 1 1] [append 2 1]]",
            "  Then:",
            "    - T1 < T2, because T1 read key 1 = [] (the initial, empty state), before T2 appended 1 (rw).",
            "    - However, T2 < T1, because T1 read key 2 = [1], observing T2's append of 1 (wr): a cycle.",
        ]
    );
    let case = &v.details["anomalies"]["G-single"][0];
    assert_eq!(case["type"], "G-single");
    assert_eq!(case["cycle"].as_array().map(Vec::len), Some(3));
    assert_eq!(case["steps"][0]["type"], "rw");
    assert_eq!(case["steps"][0]["key"], 1);
    assert_eq!(case["steps"][1]["type"], "wr");
    assert!(
        case["dot"]
            .as_str()
            .is_some_and(|d| d.starts_with("digraph"))
    );
    assert_eq!(v.details["anomaly-counts"]["G-single"], 1);
}

#[test]
fn a_ww_step_says_which_read_shows_the_order() {
    let v = run(&load("la-g0.edn"), LA, &[]);
    assert!(
        v.explanation.iter().any(|l| l
            == "    - T1 < T2, because T2 appended 2 after T1 appended 1 to key 1 (as the longest read of key 1, [1 2] at index 5, shows) (ww)."),
        "{:#?}",
        v.explanation
    );
}

#[test]
fn a_realtime_step_names_the_completion_and_the_invocation() {
    let v = run(&load("la-stale-read.edn"), LA, &[]);
    assert!(
        v.explanation.iter().any(|l| l
            == "    - T1 < T2, because T1 completed (index 1) before T2 was invoked (index 2) (realtime)."),
        "{:#?}",
        v.explanation
    );
}

// ---- rw-register ----

#[test]
fn rw_register_g0() {
    // Each transaction read the other's write before overwriting its own key: ww both ways.
    assert_anomalies("rw-g0.edn", RW, &["G0", "G1c"], &["read-uncommitted"]);
}

#[test]
fn rw_register_g1a() {
    assert_anomalies("rw-g1a.edn", RW, &["G1a"], &["read-committed"]);
    assert_valid(&variant("rw-g1a.edn", ":fail", ":ok"), RW);
    assert_valid(&variant("rw-g1a.edn", ":fail", ":info"), RW);
}

#[test]
fn rw_register_g1b() {
    assert_anomalies("rw-g1b.edn", RW, &["G1b"], &["read-committed"]);
    assert_valid(&variant("rw-g1b.edn", "[:r 1 1]", "[:r 1 2]"), RW);
}

#[test]
fn rw_register_g_single() {
    assert_anomalies(
        "rw-g-single.edn",
        RW,
        &["G-single"],
        &["consistent-view", "repeatable-read"],
    );
    assert_valid(
        &variant(
            "rw-g-single.edn",
            "[:r 1 nil] [:r 2 1]]",
            "[:r 1 1] [:r 2 1]]",
        ),
        RW,
    );
}

#[test]
fn rw_register_lost_update() {
    assert_anomalies(
        "rw-lost-update.edn",
        RW,
        &["G2-item", "lost-update"],
        &["cursor-stability", "ROLA"],
    );
    assert_valid(
        &variant(
            "rw-lost-update.edn",
            "{:type :ok, :f :txn, :value [[:r 1 nil] [:w 1 2]]",
            "{:type :ok, :f :txn, :value [[:r 1 1] [:w 1 2]]",
        ),
        RW,
    );
}

#[test]
fn rw_register_internal() {
    assert_anomalies("rw-internal.edn", RW, &["internal"], &["read-atomic"]);
    assert_valid(&variant("rw-internal.edn", "[:r 1 2]", "[:r 1 1]"), RW);
}

#[test]
fn rw_register_cyclic_versions() {
    assert_anomalies(
        "rw-cyclic-versions.edn",
        RW,
        &["G1c", "cyclic-versions"],
        &["read-uncommitted"],
    );
}

#[test]
fn rw_register_garbage_read() {
    assert_anomalies("rw-garbage.edn", RW, &["garbage"], &["read-uncommitted"]);
    assert_valid(&variant("rw-garbage.edn", "[:r 1 7]", "[:r 1 nil]"), RW);
}

// ---- rw-register: optional version-order assumptions ----

fn run_with(history: &History, sequential_keys: bool, linearizable_keys: bool) -> Verdict {
    let mut opts = TxnOptions::new(RW);
    opts.sequential_keys = sequential_keys;
    opts.linearizable_keys = linearizable_keys;
    check(history, &opts)
}

#[test]
fn rw_register_sequential_keys_order_versions_along_each_process() {
    // p0 writes 1 then 2 to key 1; p1, concurrent with both, reads 1 and p0's later write to
    // key 2. Only per-process order says 1 < 2, making p1's read of 1 precede p0's write of 2.
    let h = load("rw-sequential-keys.edn");
    assert_valid(&h, RW);
    let v = run_with(&h, true, false);
    assert_eq!(v.valid, Validity::False, "{}", v.summary);
    assert_eq!(strings(&v, "anomaly-types"), ["G-single"]);
    assert_eq!(
        v.explanation[1..8],
        [
            "  G-single: a cycle with exactly one read-write anti-dependency (rw), the other edges ww or wr: read skew",
            "  Let:",
            "    T1 = index 5, p1: [[r 1 1] [r 2 1]]",
            "    T2 = index 4, p0: [[w 1 2] [w 2 1]]",
            "  Then:",
            "    - T1 < T2, because T1 read key 1 = 1, which T2 overwrote with 2 (keys are assumed sequential, and process 0 saw 1 (index 2) before 2 (index 4)) (rw).",
            "    - However, T2 < T1, because T1 read key 2 = 1, written by T2 (wr): a cycle.",
        ]
    );
    assert_eq!(
        v.details["anomalies"]["G-single"][0]["steps"][0]["source"],
        "sequential-keys"
    );
    // The two writes are also one after the other in real time, so linearizable keys (a
    // stronger assumption) find the same cycle.
    assert_eq!(run_with(&h, false, true).valid, Validity::False);
}

#[test]
fn rw_register_linearizable_keys_order_versions_in_real_time() {
    // As above, but the two writes are by different processes, one after the other.
    let h = load("rw-linearizable-keys.edn");
    assert_valid(&h, RW);
    assert_eq!(run_with(&h, true, false).valid, Validity::True);
    let v = run_with(&h, false, true);
    assert_eq!(v.valid, Validity::False, "{}", v.summary);
    assert_eq!(strings(&v, "anomaly-types"), ["G-single"]);
    assert_eq!(
        v.explanation[6],
        "    - T1 < T2, because T1 read key 1 = 1, which T2 overwrote with 2 (keys are assumed linearizable, and the transaction that saw 1 completed (index 2) before the one that saw 2 was invoked (index 3)) (rw)."
    );
}

#[test]
fn rw_register_sequential_keys_that_go_back_to_nil_are_cyclic_versions() {
    // A process writes 1, then reads nil: a stale read either way, and under sequential keys a
    // version order that returns to the initial state.
    let h = load("rw-sequential-nil.edn");
    assert_eq!(
        strings(&run(&h, RW, &[]), "anomaly-types"),
        ["G-single-process"]
    );
    let v = run_with(&h, true, false);
    assert_eq!(
        strings(&v, "anomaly-types"),
        ["G-single-process", "cyclic-versions"]
    );
    let case = &v.details["anomalies"]["cyclic-versions"][0];
    assert_eq!(case["values"], serde_json::json!([null, 1]));
    assert_eq!(
        case["sources"],
        serde_json::json!(["initial-state", "wfr-keys", "sequential-keys"])
    );
}

#[test]
fn rw_register_optional_sources_keep_simulated_serializable_histories_valid() {
    for seed in 0..20 {
        let g = generate(&GenOptions {
            workload: RW,
            txns: 600,
            seed,
            keys: 3,
            ..GenOptions::default()
        });
        let v = run_with(&g.history, true, true);
        assert_eq!(v.valid, Validity::True, "seed {seed}: {}", v.summary);
    }
}

// ---- valid histories ----

#[test]
fn a_list_append_history_with_info_fail_and_concurrency_is_valid() {
    let v = run(&load("la-valid.edn"), LA, &[]);
    assert_eq!(v.valid, Validity::True, "{:#?}", v.explanation);
    assert_eq!(
        v.summary,
        "valid under strict-serializable: no anomalies in 8 transactions"
    );
    assert_eq!(strings(&v, "not"), Vec::<String>::new());
}

#[test]
fn a_rw_register_history_with_info_fail_and_concurrency_is_valid() {
    assert_valid(&load("rw-valid.edn"), RW);
}

#[test]
fn simulated_serializable_histories_are_valid_in_both_workloads() {
    for workload in [LA, RW] {
        let g = generate(&GenOptions {
            workload,
            txns: 3000,
            seed: 11,
            ..GenOptions::default()
        });
        assert_valid(&g.history, workload);
    }
}

#[test]
fn a_native_jsonl_history_checks_like_its_edn_twin() {
    let g = generate(&GenOptions {
        txns: 500,
        seed: 3,
        ..GenOptions::default()
    });
    let dir = std::env::temp_dir().join(format!("splitbrain-txn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    histories::jsonl::write(file, g.history.ops()).unwrap();
    let loaded = histories::read_any(&path, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.history.ops(), g.history.ops());
    assert_valid(&loaded.history, LA);
}

#[test]
fn the_generator_is_deterministic() {
    let opts = GenOptions {
        txns: 300,
        seed: 99,
        ..GenOptions::default()
    };
    assert_eq!(generate(&opts).history, generate(&opts).history);
    let v1 = check(&generate(&opts).history, &TxnOptions::new(LA));
    let v2 = check(&generate(&opts).history, &TxnOptions::new(LA));
    assert_eq!(v1, v2);
}

// ---- histories the checker cannot judge ----

#[test]
fn duplicate_appends_make_the_verdict_unknown() {
    let h = parse(
        "{:type :invoke, :f :txn, :value [[:append 1 1]], :process 0}\n\
         {:type :ok, :f :txn, :value [[:append 1 1]], :process 0}\n\
         {:type :invoke, :f :txn, :value [[:append 1 1]], :process 1}\n\
         {:type :ok, :f :txn, :value [[:append 1 1]], :process 1}\n",
    );
    let v = run(&h, LA, &[]);
    assert_eq!(v.valid, Validity::Unknown);
    assert_eq!(
        v.summary,
        "unknown: value 1 was appended to key 1 twice (index 1 and index 3); list-append needs unique appended values"
    );
}

#[test]
fn duplicate_writes_make_the_verdict_unknown() {
    let h = parse(
        "{:type :invoke, :f :txn, :value [[:w 1 1]], :process 0}\n\
         {:type :ok, :f :txn, :value [[:w 1 1]], :process 0}\n\
         {:type :invoke, :f :txn, :value [[:w 1 1]], :process 1}\n\
         {:type :ok, :f :txn, :value [[:w 1 1]], :process 1}\n",
    );
    assert_eq!(run(&h, RW, &[]).valid, Validity::Unknown);
}

#[test]
fn a_micro_op_of_the_other_workload_makes_the_verdict_unknown() {
    let h = load("rw-valid.edn");
    let v = run(&h, LA, &[]);
    assert_eq!(v.valid, Validity::Unknown);
    assert!(v.summary.contains("no [w ...] micro-op"), "{}", v.summary);
    let v = run(&load("la-valid.edn"), RW, &[]);
    assert_eq!(v.valid, Validity::Unknown);
    assert!(
        v.summary.contains("no [append ...] micro-op"),
        "{}",
        v.summary
    );
}

#[test]
fn a_non_transaction_operation_makes_the_verdict_unknown() {
    let h = parse(
        "{:type :invoke, :f :read, :value nil, :process 0}\n\
         {:type :ok, :f :read, :value 3, :process 0}\n",
    );
    let v = run(&h, LA, &[]);
    assert_eq!(v.valid, Validity::Unknown);
    assert_eq!(
        v.summary,
        "unknown: expected only txn operations, found read by process 0 at index 0"
    );
}

#[test]
fn a_cancelled_check_says_unknown_unless_it_already_proved_a_violation() {
    let mut opts = TxnOptions::new(LA);
    opts.cancel = Some(Arc::new(AtomicBool::new(true)));
    let v = check(&load("la-g-single.edn"), &opts);
    assert_eq!(v.valid, Validity::Unknown, "{}", v.summary);
    // G1a needs no cycle search, so it is proven before the search is cancelled.
    let v = check(&load("la-g1a.edn"), &opts);
    assert_eq!(v.valid, Validity::False, "{}", v.summary);
}

#[test]
fn model_and_workload_names_parse_as_elle_spells_them() {
    for name in [
        "read-uncommitted",
        "read-committed",
        "monotonic-atomic-view",
        "repeatable-read",
        "snapshot-isolation",
        "serializable",
        "strong-session-serializable",
        "strict-serializable",
    ] {
        let m: ConsistencyModel = name.parse().unwrap();
        assert_eq!(m.name(), name);
    }
    let pl = [
        ("pl-1", "read-uncommitted"),
        ("pl-2", "read-committed"),
        ("pl-2.99", "repeatable-read"),
        ("pl-si", "snapshot-isolation"),
        ("pl-3", "serializable"),
        ("pl-ss", "strict-serializable"),
    ];
    for (alias, name) in pl {
        assert_eq!(alias.parse::<ConsistencyModel>().unwrap().name(), name);
    }
    assert_eq!("list-append".parse::<Workload>(), Ok(LA));
    assert_eq!("rw-register".parse::<Workload>(), Ok(RW));
    assert!("bank".parse::<Workload>().is_err());
}

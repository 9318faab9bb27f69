//! Conformance with Porcupine's corpus: every file of `VERDICTS.tsv`, read with
//! `histories::read_any`, gets the verdict Porcupine gives it (`kv/` files with the kv model,
//! `jepsen/` files with the register model).

use std::path::{Path, PathBuf};

use checkers::Validity;
use checkers::linearizable::{LinOptions, ModelKind, check};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../histories/tests/data/porcupine")
}

/// (file, model, expected verdict, whether the file is expected to be empty)
fn expectations() -> Vec<(String, ModelKind, Validity, bool)> {
    let path = corpus().join("VERDICTS.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let [file, model, verdict] = cols[..] else {
                panic!("expected file, model and verdict in {l:?}");
            };
            let model: ModelKind = model.parse().unwrap_or_else(|e| panic!("{e}"));
            let (valid, empty) = match verdict {
                "true" => (Validity::True, false),
                "false" => (Validity::False, false),
                "empty" => (Validity::True, true),
                other => panic!("unexpected verdict {other:?} in {l:?}"),
            };
            (file.to_string(), model, valid, empty)
        })
        .collect()
}

#[test]
fn every_corpus_verdict_matches_porcupine() {
    let cases = expectations();
    assert_eq!(
        cases.len(),
        109,
        "the corpus lists 103 etcd logs and 6 kv files"
    );
    let mut wrong = Vec::new();
    for (file, model, expected, empty) in &cases {
        let loaded = histories::read_any(&corpus().join(file), None)
            .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        assert_eq!(loaded.history.is_empty(), *empty, "{file}");
        let verdict = check(&loaded.history, *model, &LinOptions::default());
        if verdict.valid != *expected {
            wrong.push(format!(
                "{file}: expected {expected}, got {}: {}",
                verdict.valid, verdict.summary
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} verdicts differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_failing_key_of_kv_c50_bad_is_reported() {
    let loaded = histories::read_any(&corpus().join("kv/c50-bad.txt"), None).expect("readable");
    let v = check(&loaded.history, ModelKind::KeyValue, &LinOptions::default());
    assert_eq!(v.valid, Validity::False);
    let parts = v.details["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 10, "{v:#?}");
    for p in parts {
        assert!(p["culprit"]["index"].is_u64());
        assert!(p["key"].is_string());
    }
}

#[test]
fn etcd_counterexample_names_a_culprit_with_its_interval() {
    let loaded =
        histories::read_any(&corpus().join("jepsen/etcd_000.log"), None).expect("readable");
    let v = check(&loaded.history, ModelKind::Register, &LinOptions::default());
    assert_eq!(v.valid, Validity::False);
    let culprit = &v.details["partitions"][0]["culprit"];
    let invoke = culprit["invoke_index"].as_u64().expect("an invocation");
    let complete = culprit["complete_index"].as_u64().expect("a completion");
    assert!(invoke < complete);
    assert!(
        v.summary.starts_with("not linearizable: p"),
        "{}",
        v.summary
    );
    assert!(
        v.summary.ends_with(" cannot be linearized"),
        "{}",
        v.summary
    );
}

/// Linearizability is local: checking every key as one object must give the per-key verdict.
/// (c50 is left out: without the split it is the slow case the split exists for.)
#[test]
fn checking_without_the_key_split_gives_the_same_verdicts() {
    use checkers::linearizable::check_unpartitioned;
    for (file, model, valid, _) in expectations() {
        if file.contains("c50") || (file.starts_with("jepsen/") && !file.ends_with("0.log")) {
            continue;
        }
        let loaded = histories::read_any(&corpus().join(&file), None).unwrap();
        let whole = check_unpartitioned(&loaded.history, model, &LinOptions::default());
        assert_eq!(whole.valid, valid, "{file}: {}", whole.summary);
    }
}

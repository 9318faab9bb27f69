//! Format names, content detection and `read_any` on files.

use std::path::{Path, PathBuf};

use histories::{F, Format, OpType, Process, Value, read_any};

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

#[test]
fn names_parse_and_print_both_ways() {
    for format in Format::ALL {
        assert_eq!(format.to_string().parse::<Format>(), Ok(format));
    }
    assert_eq!(
        "porcupine-etcd".parse::<Format>(),
        Ok(Format::PorcupineEtcd)
    );
    let err = "json".parse::<Format>().expect_err("not a format");
    assert_eq!(
        err.to_string(),
        "unknown history format \"json\"; expected one of jsonl, edn, porcupine-etcd, porcupine-kv"
    );
}

#[test]
fn detection_follows_the_documented_rules() {
    let cases: &[(&str, Option<Format>)] = &[
        (
            "{\"index\":0,\"time\":1,\"process\":0}\n",
            Some(Format::Jsonl),
        ),
        ("\n  { \"index\": 0}\n", Some(Format::Jsonl)),
        (
            "{:index 0, :time 1, :type :invoke, :process 0, :f :read}\n",
            Some(Format::Edn),
        ),
        (
            "[{:type :invoke, :f :read, :process 0}\n",
            Some(Format::Edn),
        ),
        ("#jepsen.history.Op{:index 0}\n", Some(Format::Edn)),
        ("; comment\n{:type :invoke}\n", Some(Format::Edn)),
        (
            "{:process 3, :type :invoke, :f :append, :key \"4\", :value \"x 3 1 y\"}\n",
            Some(Format::PorcupineKv),
        ),
        (
            "{:process 3, :type :invoke, :f :get, :key \"4\", :value nil}\n",
            Some(Format::PorcupineKv),
        ),
        // A Jepsen map with a time, or a kv-looking map on an integer key, is general EDN.
        (
            "{:process 3, :type :invoke, :f :get, :key \"4\", :value nil, :time 5}\n",
            Some(Format::Edn),
        ),
        (
            "{:process 3, :type :invoke, :f :get, :key 4}\n",
            Some(Format::Edn),
        ),
        (
            "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
            Some(Format::PorcupineEtcd),
        ),
        (
            "INFO  jepsen.core - Running test\nWARN  some.node - hello\nINFO  jepsen.util - 0   :invoke :read   nil\n",
            Some(Format::PorcupineEtcd),
        ),
        ("", None),
        ("  \n\n", None),
        ("hello world\n", None),
        ("[package]\nname = \"x\"\n", None),
        ("[\n {:type :invoke}]\n", Some(Format::Edn)),
        ("[]\n", Some(Format::Edn)),
    ];
    for (text, expected) in cases {
        assert_eq!(Format::detect(text.as_bytes()), *expected, "{text:?}");
    }
    // A prefix cut inside a multi-byte character still detects.
    let cut = "{\"f\":\"é\"}".as_bytes();
    assert_eq!(Format::detect(&cut[..cut.len() - 3]), Some(Format::Jsonl));
}

#[test]
fn read_any_detects_and_reads_each_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jsonl = write_file(
        dir.path(),
        "h.jsonl",
        b"{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n",
    );
    let edn = write_file(
        dir.path(),
        "h.txt",
        b"{:type :invoke, :f :read, :process 0}\n",
    );
    let etcd = write_file(
        dir.path(),
        "h",
        b"INFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
    );
    let kv = write_file(
        dir.path(),
        "h.edn",
        b"{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n",
    );
    for (path, format) in [
        (&jsonl, Format::Jsonl),
        (&edn, Format::Edn),
        (&etcd, Format::PorcupineEtcd),
        (&kv, Format::PorcupineKv),
    ] {
        let loaded = read_any(path, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.format, format, "{}", path.display());
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let op = &loaded.history.ops()[0];
        assert_eq!(
            (op.process, op.kind, &op.f),
            (Process::Client(0), OpType::Invoke, op_f(format))
        );
    }
}

fn op_f(format: Format) -> &'static F {
    match format {
        Format::PorcupineKv => &F::Get,
        _ => &F::Read,
    }
}

#[test]
fn an_explicit_format_overrides_detection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let edn = write_file(
        dir.path(),
        "h.jsonl",
        b"{:type :invoke, :f :read, :process 0}\n",
    );
    let e = read_any(&edn, Some(Format::Jsonl)).expect_err("EDN is not JSONL");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:1: expected one operation as a JSON object",
            edn.display()
        )),
        "{text}"
    );
    // Read as an etcd log, the same file has no operation lines: empty, and said so.
    let loaded = read_any(&edn, Some(Format::PorcupineEtcd)).expect("noise only");
    assert!(loaded.history.is_empty());
    assert_eq!(loaded.format, Format::PorcupineEtcd);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].contains("none of its 1 lines is an operation"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn empty_files_are_empty_histories_in_the_format_their_name_suggests() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, format) in [
        ("a.log", Format::PorcupineEtcd),
        ("a.edn", Format::Edn),
        ("a.jsonl", Format::Jsonl),
        ("a.txt", Format::Jsonl),
        ("blank.edn", Format::Edn),
    ] {
        let content: &[u8] = if name.starts_with("blank") {
            b"\n \n"
        } else {
            b""
        };
        let path = write_file(dir.path(), name, content);
        let loaded = read_any(&path, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.history.is_empty());
        assert_eq!(loaded.format, format, "{name}");
        assert_eq!(
            loaded.warnings,
            vec![format!(
                "{}: the file is empty; read as an empty history",
                path.display()
            )]
        );
    }
}

#[test]
fn undetectable_and_missing_files_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = write_file(dir.path(), "junk.txt", b"\n\nhello world\n");
    let e = read_any(&junk, None).expect_err("junk").to_string();
    assert!(
        e.starts_with(&format!(
            "{}:3: cannot tell the history format",
            junk.display()
        )),
        "{e}"
    );
    assert!(e.contains("found `hello world`"), "{e}");
    assert!(
        e.contains("jsonl, edn, porcupine-etcd, porcupine-kv"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    let missing = dir.path().join("nope.jsonl");
    let e = read_any(&missing, None).expect_err("missing");
    assert_eq!(e.line, 0);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot open the history: ", missing.display())),
        "{e}"
    );

    let e = read_any(dir.path(), None).expect_err("a directory");
    assert!(e.to_string().contains("cannot read the history"), "{e}");
}

#[test]
fn a_truncated_jsonl_line_becomes_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(
        dir.path(),
        "h.jsonl",
        b"{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n{\"index\":1,\"ti",
    );
    let loaded = read_any(&path, None).expect("tolerated");
    assert_eq!(loaded.history.len(), 1);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with(&format!("{}:2: skipped the last line", path.display())),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn files_longer_than_the_detection_prefix_read_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::new();
    let mut n = 0;
    while text.len() < 3 * histories::DETECT_BYTES {
        text.push_str(&format!(
            "{{:type :invoke, :f :write, :value {n}, :process 0}}\n{{:type :ok, :f :write, :value {n}, :process 0}}\n"
        ));
        n += 1;
    }
    let path = write_file(dir.path(), "big.edn", text.as_bytes());
    let loaded = read_any(&path, None).expect("big");
    assert_eq!(loaded.history.len(), 2 * n);
    assert_eq!(
        loaded.history.ops().last().map(|op| &op.value),
        Some(&Value::Int(n as i64 - 1))
    );
}

/// Text made of EDN and log tokens, so that generated inputs get past the first character.
fn arb_edn_ish() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let token = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "#",
        "#_",
        "#{",
        "\"",
        "\\",
        ";",
        ",",
        " ",
        "\n",
        ":type",
        ":invoke",
        ":ok",
        ":info",
        ":f",
        ":read",
        ":txn",
        ":process",
        ":nemesis",
        ":value",
        "nil",
        "0",
        "-1",
        "1.5",
        "99999999999999999999",
        "[:r 1 nil]",
        ":key",
        "\"k\"",
        "\t",
        "INFO  jepsen.util - ",
        ":cas",
        "[1 2]",
        "é",
        "\u{feff}",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest::proptest! {
    #[test]
    fn no_input_makes_a_reader_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        text in arb_edn_ish(),
    ) {
        for input in [bytes.as_slice(), text.as_bytes()] {
            let _ = Format::detect(input);
            let results = [
                histories::edn::read(input, "x").map(|_| ()),
                histories::porcupine::read_etcd(input, "x").map(|_| ()),
                histories::porcupine::read_kv(input, "x").map(|_| ()),
                histories::jsonl::read(input, "x").map(|_| ()),
            ];
            for result in results {
                if let Err(e) = result {
                    let text = e.to_string();
                    proptest::prop_assert!(text.starts_with("x:"), "{text}");
                    proptest::prop_assert!(!text.contains('\n'), "{text:?}");
                }
            }
        }
    }
}

/// Strings with everything JSON escapes: quotes, backslashes, every control character, and
/// text beyond ASCII.
fn arb_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let chars = prop::sample::select(vec![
        'a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{0}', '\u{1}',
        '\u{1f}', '\u{7f}', 'é', '\u{2028}', '\u{feff}', '🦀',
    ]);
    prop::collection::vec(chars, 0..12).prop_map(|cs| cs.into_iter().collect())
}

fn arb_key() -> impl proptest::strategy::Strategy<Value = histories::Key> {
    use proptest::prelude::*;
    prop_oneof![
        any::<i64>().prop_map(histories::Key::Int),
        arb_text().prop_map(histories::Key::Str),
    ]
}

fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        arb_text().prop_map(Value::Str),
    ];
    let nested = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map(arb_text(), inner, 0..4).prop_map(Value::Map),
        ]
    });
    let micro = (
        prop::sample::select(vec![
            histories::MicroF::Append,
            histories::MicroF::Read,
            histories::MicroF::Write,
        ]),
        arb_key(),
        nested.clone(),
    )
        .prop_map(|(f, key, value)| histories::MicroOp { f, key, value });
    prop_oneof![
        4 => nested,
        1 => prop::collection::vec(micro, 0..3).prop_map(Value::Txn),
    ]
}

fn arb_op() -> impl proptest::strategy::Strategy<Value = histories::Op> {
    use proptest::prelude::*;
    let process = prop_oneof![
        any::<u64>().prop_map(Process::Client),
        Just(Process::Nemesis)
    ];
    let kind = prop::sample::select(vec![OpType::Invoke, OpType::Ok, OpType::Fail, OpType::Info]);
    let f = prop_oneof![
        Just(F::Read),
        Just(F::Cas),
        Just(F::Txn),
        arb_text().prop_map(F::Other),
    ];
    (
        (any::<u64>(), any::<u64>(), process, kind, f),
        (
            proptest::option::of(arb_key()),
            arb_value(),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
        ),
    )
        .prop_map(
            |((index, time_ns, process, kind, f), (key, value, node, error))| histories::Op {
                index,
                time_ns,
                process,
                kind,
                f,
                key,
                value,
                node,
                error,
            },
        )
}

proptest::proptest! {
    /// The recorder writes lines with `jsonl::write_line`, not serde: the bytes must be the
    /// ones serde_json writes, and read back to the same operation.
    #[test]
    fn hand_written_lines_are_serde_json_lines(op in arb_op()) {
        let mut line = Vec::new();
        histories::jsonl::write_line(&op, &mut line);
        let mut expected = serde_json::to_vec(&op).unwrap();
        expected.push(b'\n');
        proptest::prop_assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&expected)
        );
        // A txn value reads back as such only under f = txn, and f = txn only with one.
        if (op.f == F::Txn) == matches!(op.value, Value::Txn(_)) {
            let back: histories::Op = serde_json::from_slice(&line).unwrap();
            proptest::prop_assert_eq!(back, op);
        }
    }
}

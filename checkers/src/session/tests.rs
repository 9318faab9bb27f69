//! Hand-made histories for each session checker (one it must reject, one it must accept, and
//! the edges of its definition), and randomized single-copy executions that all six accept
//! until one read is made stale.

use histories::{History, OpType, Value};
use proptest::prelude::*;

use super::*;
use crate::replication::test_history::H;

fn int(v: i64) -> Value {
    Value::Int(v)
}

fn assert_valid(v: &Verdict) {
    assert_eq!(v.valid, Validity::True, "{v:#?}");
}

fn assert_invalid(v: &Verdict) {
    assert_eq!(v.valid, Validity::False, "{v:#?}");
}

// --- read-your-writes ------------------------------------------------------------------------

#[test]
fn ryw_rejects_a_read_that_misses_the_processs_own_write() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 1, 2)
        .read(0, 1, &[1])
        .read(0, 1, &[]);
    let v = read_your_writes(&h.build());
    assert_invalid(&v);
    assert_eq!(
        v.summary,
        "2 reads missed the process's own acknowledged write"
    );
    assert_eq!(v.details["violation_count"], 2);
    // The newest own write is named, with the read.
    assert_eq!(v.details["violations"][0]["write"]["value"], "2");
    assert_eq!(v.details["violations"][0]["write"]["invoke_index"], 2);
    assert_eq!(v.details["violations"][0]["read"]["invoke_index"], 4);
    assert_eq!(v.details["violations"][1]["read"]["value"], "nil");
    assert!(
        v.explanation[0].contains("p0 write 2 (ok, op 2)"),
        "{:?}",
        v.explanation
    );
}

#[test]
fn ryw_accepts_reads_of_own_or_newer_versions_and_ignores_other_processes() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .read(0, 1, &[1])
        .write(1, 1, 2)
        .read(0, 1, &[2])
        // Process 2 never wrote: a stale read is not its own write missed.
        .read(2, 1, &[]);
    let v = read_your_writes(&h.build());
    assert_valid(&v);
    assert_eq!(
        v.summary,
        "every read saw the process's own writes (2 reads checked)"
    );
    assert_eq!(v.details["reads_checked"], 2);
}

#[test]
fn ryw_and_mr_are_valid_with_nothing_to_check() {
    let h = H::new().build();
    for v in [read_your_writes(&h), monotonic_reads(&h)] {
        assert_valid(&v);
        assert_eq!(v.details["reads_checked"], 0);
    }
}

#[test]
fn an_indeterminate_or_failed_write_is_not_acknowledged() {
    for kind in [OpType::Info, OpType::Fail] {
        let mut h = H::new();
        h.call(0, kind, "write", 1, int(1)).read(0, 1, &[]);
        let history = h.build();
        assert_valid(&read_your_writes(&history));
        assert_eq!(read_your_writes(&history).details["reads_checked"], 0);
    }
}

#[test]
fn a_read_concurrent_with_a_write_does_not_owe_it() {
    // Process 1's read overlaps process 0's write and misses it; process 0's own read after
    // the write sees it.
    let mut h = H::new();
    h.invoke(0, "write", 1, int(1))
        .read(1, 1, &[])
        .complete(0, OpType::Ok, "write", 1, int(1))
        .read(0, 1, &[1]);
    let history = h.build();
    assert_valid(&read_your_writes(&history));
    assert_valid(&monotonic_reads(&history));
    assert_valid(&consistent_prefix(&history));
}

#[test]
fn within_a_session_every_earlier_call_ended_before_the_next_began() {
    // The checkers read "after" within a process as "later in its calls"; that holds because
    // a history where a process invokes while its call is open is rejected when built, so a
    // process's read can never be concurrent with its own write.
    let line = |index: u64, kind: OpType, f: F, value: Value| histories::Op {
        index,
        time_ns: index,
        process: Process::Client(0),
        kind,
        f,
        key: Some(Key::Int(1)),
        value,
        node: None,
        error: None,
    };
    let ops = vec![
        line(0, OpType::Invoke, F::Write, int(1)),
        line(1, OpType::Invoke, F::Read, Value::Nil),
        line(2, OpType::Ok, F::Read, Value::Nil),
    ];
    assert!(History::from_ops(ops).is_err());
}

#[test]
fn keys_with_other_calls_are_skipped_by_every_checker() {
    let mut h = H::new();
    h.write(0, 1, 2)
        .read(0, 1, &[])
        .read(0, 1, &[2])
        .read(0, 1, &[1])
        .call(1, OpType::Ok, "exec", 1, Value::Str("SET 1 7".into()))
        .read(2, 1, &[]);
    let history = h.build();
    let all = check_all(&history);
    for (name, v) in &all {
        if name == "lost-writes" {
            assert_eq!(v.valid, Validity::Unknown, "{v:#?}");
        } else {
            assert_valid(v);
        }
        assert_eq!(v.details["keys_skipped"][0], "1", "{name}");
        assert_eq!(v.details["keys_checked"], 0, "{name}");
    }
}

#[test]
fn local_reads_are_ignored() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .read_at(0, "n1", "local-read", 1, &[])
        .read(0, 1, &[1])
        .read_at(0, "n2", "local-read", 1, &[]);
    let all = check_all(&h.build());
    for v in all.values() {
        assert_valid(v);
    }
    assert_eq!(all["read-your-writes"].details["reads_checked"], 1);
    assert_eq!(all["lost-writes"].details["keys_checked"], 1);
}

// --- monotonic reads -------------------------------------------------------------------------

#[test]
fn mr_rejects_a_read_older_than_an_earlier_one() {
    let mut h = H::new();
    h.write(9, 1, 1)
        .write(9, 1, 2)
        .read(0, 1, &[2])
        .read(0, 1, &[1])
        .read(0, 1, &[]);
    let v = monotonic_reads(&h.build());
    assert_invalid(&v);
    assert_eq!(
        v.summary,
        "2 reads went back to an older version than the process had read"
    );
    // Both are measured against the newest version read before.
    assert_eq!(v.details["violations"][0]["earlier"]["invoke_index"], 4);
    assert_eq!(v.details["violations"][1]["earlier"]["invoke_index"], 4);
    assert_eq!(v.details["violations"][1]["later"]["value"], "nil");
}

#[test]
fn mr_accepts_reads_moving_forward_per_key_and_per_process() {
    let mut h = H::new();
    h.read(0, 1, &[])
        .write(9, 1, 1)
        .read(0, 1, &[1])
        .read(0, 1, &[1])
        .write(9, 2, 5)
        .read(0, 2, &[5])
        // Another key, and another process: no order owed across them.
        .read(0, 1, &[1])
        .read(1, 1, &[]);
    let v = monotonic_reads(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["reads_checked"], 3);
}

// --- monotonic writes ------------------------------------------------------------------------

#[test]
fn mw_rejects_a_reader_that_sees_the_later_write_but_not_the_earlier() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 2, 1)
        .read(1, 2, &[1])
        .read(1, 1, &[]);
    let v = monotonic_writes(&h.build());
    assert_invalid(&v);
    assert_eq!(
        v.summary,
        "1 read saw a process's later write but missed its earlier one"
    );
    let viol = &v.details["violations"][0];
    assert_eq!(viol["w1"]["invoke_index"], 0);
    assert_eq!(viol["w1"]["key"], "1");
    assert_eq!(viol["w2"]["invoke_index"], 2);
    assert_eq!(viol["w2"]["key"], "2");
    assert_eq!(viol["r1"]["invoke_index"], 4);
    assert_eq!(viol["r2"]["invoke_index"], 6);
    assert_eq!(viol["r2"]["process"], "1");
}

#[test]
fn mw_counts_a_newer_version_as_seeing_the_write() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 2, 1)
        .write(0, 2, 2)
        .read(1, 2, &[2])
        .read(1, 1, &[]);
    assert_invalid(&monotonic_writes(&h.build()));
}

#[test]
fn mw_accepts_readers_that_see_both_or_read_in_the_other_order() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 2, 1)
        .read(1, 2, &[1])
        .read(1, 1, &[1])
        // Reading k1 before seeing the later write owes nothing.
        .read(2, 1, &[])
        .read(2, 2, &[1]);
    let v = monotonic_writes(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["reads_checked"], 1);
}

#[test]
fn mw_ignores_overlapping_writes_and_same_key_pairs() {
    // Process 0's two writes of key 1, then a reader of key 1 that goes back: monotonic
    // reads' business, not monotonic writes'.
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 1, 2)
        .read(1, 1, &[2])
        .read(1, 1, &[1]);
    let history = h.build();
    assert_valid(&monotonic_writes(&history));
    assert_invalid(&monotonic_reads(&history));
}

#[test]
fn mw_owes_what_preceded_the_latest_write_seen_on_each_other_key() {
    // The reader saw w(3,1), which followed w(1,1) and w(2,1): both owed, each read names
    // the write it missed and w(3,1) as the write that made it owed.
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 2, 1)
        .write(0, 3, 1)
        .read(1, 3, &[1])
        .read(1, 2, &[])
        .read(1, 1, &[]);
    let v = monotonic_writes(&h.build());
    assert_invalid(&v);
    assert_eq!(v.details["violation_count"], 2);
    assert_eq!(v.details["violations"][0]["w1"]["key"], "2");
    assert_eq!(v.details["violations"][0]["w2"]["key"], "3");
    assert_eq!(v.details["violations"][1]["w1"]["key"], "1");
    assert_eq!(v.details["violations"][1]["w2"]["key"], "3");
}

#[test]
fn mw_owes_nothing_through_a_write_of_the_key_read() {
    // The latest write the reader saw, w(1,2), is on the key it then reads: what preceded it
    // on key 1 is monotonic reads' business. Through w(2,1) (key 2) nothing on key 1 is owed.
    let mut h = H::new();
    h.write(0, 2, 1)
        .write(0, 1, 1)
        .write(0, 1, 2)
        .read(1, 2, &[1])
        .read(1, 1, &[2])
        .read(1, 1, &[]);
    let history = h.build();
    let v = monotonic_writes(&history);
    assert_valid(&v);
    // Both reads of key 1 came after the reader saw w(2,1): checked, and nothing owed.
    assert_eq!(v.details["reads_checked"], 2);
    assert_invalid(&monotonic_reads(&history));
}

// --- writes follow reads ---------------------------------------------------------------------

#[test]
fn wfr_rejects_a_reader_that_sees_the_answer_but_not_the_question() {
    let mut h = H::new();
    h.write(0, 1, 5) // the question
        .read(1, 1, &[5])
        .write(1, 2, 1) // the answer, written after reading the question
        .read(2, 2, &[1])
        .read(2, 1, &[]);
    let history = h.build();
    let v = writes_follow_reads(&history);
    assert_invalid(&v);
    assert_eq!(
        v.summary,
        "1 read saw a write but missed what its writer had read before it"
    );
    let viol = &v.details["violations"][0];
    assert_eq!(viol["r0"]["invoke_index"], 2);
    assert_eq!(viol["w2"]["invoke_index"], 4);
    assert_eq!(viol["r1"]["invoke_index"], 6);
    assert_eq!(viol["r2"]["invoke_index"], 8);
    // Writes by different processes: not a monotonic-writes violation.
    assert_valid(&monotonic_writes(&history));
}

#[test]
fn wfr_accepts_readers_that_see_the_cause_and_ignores_nil_reads() {
    let mut h = H::new();
    h.write(0, 1, 5)
        .read(1, 1, &[5])
        .write(1, 2, 1)
        .read(2, 2, &[1])
        .read(2, 1, &[5]);
    assert_valid(&writes_follow_reads(&h.build()));

    // The writer read nil: nothing to follow.
    let mut h = H::new();
    h.read(1, 1, &[])
        .write(1, 2, 1)
        .read(2, 2, &[1])
        .read(2, 1, &[]);
    let v = writes_follow_reads(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["reads_checked"], 1);
}

// --- consistent prefix -----------------------------------------------------------------------

#[test]
fn cp_catches_a_real_time_violation_across_processes_that_mw_and_wfr_do_not() {
    let mut h = H::new();
    h.write(0, 1, 1) // w1, acknowledged ...
        .write(1, 2, 1) // ... before w2, by another process, was invoked
        .read(2, 2, &[1])
        .read(2, 1, &[]);
    let history = h.build();
    let v = consistent_prefix(&history);
    assert_invalid(&v);
    assert_eq!(
        v.summary,
        "1 read saw a write but missed one acknowledged before it was invoked"
    );
    let viol = &v.details["violations"][0];
    assert_eq!(viol["w1"]["invoke_index"], 0);
    assert_eq!(viol["w2"]["invoke_index"], 2);
    assert_eq!(viol["w2"]["key"], "2");
    assert_eq!(viol["r1"]["invoke_index"], 4);
    assert_eq!(viol["r2"]["invoke_index"], 6);
    assert_valid(&monotonic_writes(&history));
    assert_valid(&writes_follow_reads(&history));
    assert_valid(&read_your_writes(&history));
    assert_valid(&monotonic_reads(&history));
}

#[test]
fn cp_accepts_concurrent_writes_seen_in_either_order() {
    let mut h = H::new();
    h.invoke(0, "write", 1, int(1))
        .write(1, 2, 1) // invoked before w(1,1) completed: no order between them
        .complete(0, OpType::Ok, "write", 1, int(1))
        .read(2, 2, &[1])
        .read(2, 1, &[]);
    let v = consistent_prefix(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["reads_checked"], 0);
}

#[test]
fn cp_observes_through_later_versions_and_indeterminate_writes() {
    // Seeing version 2 of key 2 is seeing its version 1, whose write followed w(1,1).
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(1, 2, 1)
        .write(1, 2, 2)
        .read(2, 2, &[2])
        .read(2, 1, &[]);
    assert_invalid(&consistent_prefix(&h.build()));

    // An indeterminate write that a read returned certainly happened, after w(1,1).
    let mut h = H::new();
    h.write(0, 1, 1)
        .call(1, OpType::Info, "write", 2, int(1))
        .read(2, 2, &[1])
        .read(2, 1, &[]);
    let v = consistent_prefix(&h.build());
    assert_invalid(&v);
    assert_eq!(v.details["violations"][0]["w2"]["type"], "info");
}

#[test]
fn cp_skips_reads_of_values_nobody_wrote_and_nil_reads() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(1, 2, 1)
        .read(2, 2, &[7])
        .read(2, 2, &[])
        .read(2, 1, &[]);
    let v = consistent_prefix(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["reads_checked"], 0);
}

#[test]
fn cp_names_the_newest_owed_write_and_the_write_that_set_the_bound() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 1, 2)
        .write(1, 2, 1)
        .write(0, 1, 3) // after w2 was invoked: not owed
        .read(2, 2, &[1])
        .read(2, 1, &[1]);
    let v = consistent_prefix(&h.build());
    assert_invalid(&v);
    assert_eq!(v.details["violations"][0]["w1"]["value"], "2");
    assert_eq!(v.details["violations"][0]["w2"]["invoke_index"], 4);
}

// --- lost writes -----------------------------------------------------------------------------

#[test]
fn lost_writes_is_unknown_without_final_reads() {
    let mut h = H::new();
    h.write(0, 1, 1).read(1, 1, &[1]).nemesis("kill");
    let v = versioned_lost_writes(&h.build());
    assert_eq!(v.valid, Validity::Unknown, "{v:#?}");
    assert_eq!(v.summary, "no final reads");
    assert_eq!(v.details["keys_without_recovery_read"][0], "1");
}

#[test]
fn lost_writes_rejects_a_recovery_read_older_than_an_acknowledged_write() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 1, 2)
        .nemesis("kill")
        .read(1, 1, &[2]) // a final read, but not the last one
        .read(1, 1, &[1]);
    let v = versioned_lost_writes(&h.build());
    assert_invalid(&v);
    assert_eq!(
        v.summary,
        "1 acknowledged write lost: the recovery read of the key returned an older version"
    );
    assert_eq!(v.details["lost"][0]["write"]["value"], "2");
    assert_eq!(v.details["lost"][0]["recovery_read"]["invoke_index"], 7);
    assert_eq!(v.details["keys_checked"], 1);
    assert_eq!(v.details["acknowledged_writes"], 2);
}

#[test]
fn lost_writes_accepts_a_recovery_read_of_the_newest_version() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .write(0, 1, 2)
        .read(1, 1, &[2])
        // A key without a final read is simply not checked.
        .invoke(0, "write", 2, int(1));
    let v = versioned_lost_writes(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["keys_without_recovery_read"][0], "2");
}

#[test]
fn lost_writes_does_not_count_an_indeterminate_write() {
    let mut h = H::new();
    h.write(0, 1, 1)
        .call(0, OpType::Info, "write", 1, int(2))
        .read(1, 1, &[1]);
    let v = versioned_lost_writes(&h.build());
    assert_valid(&v);
    assert_eq!(v.details["acknowledged_writes"], 1);
}

#[test]
fn lost_writes_final_reads_follow_every_write_and_the_last_fault() {
    // A read overlapping a write, or before the last fault, or a local read, is not final.
    let mut h = H::new();
    h.write(0, 1, 1)
        .invoke(0, "write", 1, int(2))
        .read(1, 1, &[1])
        .complete(0, OpType::Ok, "write", 1, int(2))
        .read(1, 1, &[])
        .nemesis("heal")
        .read_at(1, "n1", "local-read", 1, &[]);
    let v = versioned_lost_writes(&h.build());
    assert_eq!(v.valid, Validity::Unknown, "{v:#?}");
}

// --- all six ---------------------------------------------------------------------------------

#[test]
fn check_all_names_the_six_verdicts() {
    let mut h = H::new();
    h.write(0, 1, 1).read(0, 1, &[1]);
    let all = check_all(&h.build());
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "consistent-prefix",
            "lost-writes",
            "monotonic-reads",
            "monotonic-writes",
            "read-your-writes",
            "writes-follow-reads"
        ]
    );
    for (name, v) in &all {
        assert_eq!(&v.checker, name);
        assert_valid(v);
    }
}

#[test]
fn explanations_are_capped_and_details_count_everything() {
    let mut h = H::new();
    h.write(0, 1, 1);
    for _ in 0..(MAX_EXPLAINED + 5) {
        h.read(0, 1, &[]);
    }
    let v = read_your_writes(&h.build());
    assert_eq!(v.explanation.len(), MAX_EXPLAINED);
    assert_eq!(v.details["violation_count"], MAX_EXPLAINED + 5);
}

// --- randomized single-copy executions -------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Read {
        slot: u64,
        key: i64,
    },
    Write {
        slot: u64,
        key: i64,
        outcome: u8,
        lands: bool,
    },
    Fault,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..4u64, 0..3i64).prop_map(|(slot, key)| Step::Read { slot, key }),
        4 => (0..4u64, 0..3i64, 0..10u8, any::<bool>())
            .prop_map(|(slot, key, outcome, lands)| Step::Write { slot, key, outcome, lands }),
        1 => Just(Step::Fault),
    ]
}

/// A read that its process owes a version: (completion position, key, version owed).
type Owed = (usize, i64, i64);

/// A single register per key, called one call at a time.
#[derive(Default)]
struct SingleCopy {
    h: H,
    lines: usize,
    state: BTreeMap<i64, i64>,
    /// Per key, every version it held, oldest first.
    held: BTreeMap<i64, Vec<i64>>,
    /// Per (process, key), the version its own writes and reads oblige it to see.
    owes: BTreeMap<(u64, i64), i64>,
    owed: Vec<Owed>,
}

impl SingleCopy {
    fn read(&mut self, p: u64, key: i64) {
        let value = self.state.get(&key).copied();
        self.h.read(p, key, value.as_slice());
        self.lines += 2;
        if let Some(&x) = self.owes.get(&(p, key)) {
            self.owed.push((self.lines - 1, key, x));
        }
        if let Some(v) = value {
            self.owe(p, key, v);
        }
    }

    fn write(&mut self, p: u64, key: i64, v: i64, kind: OpType, lands: bool) {
        self.h.call(p, kind, "write", key, int(v));
        self.lines += 2;
        if kind == OpType::Ok || (kind == OpType::Info && lands) {
            self.state.insert(key, v);
            self.held.entry(key).or_default().push(v);
        }
        if kind == OpType::Ok {
            self.owe(p, key, v);
        }
    }

    fn owe(&mut self, p: u64, key: i64, v: i64) {
        let slot = self.owes.entry((p, key)).or_insert(v);
        *slot = (*slot).max(v);
    }
}

/// Runs `steps` against a single copy, honouring the workload's contract: values increase,
/// a key is abandoned after an indeterminate write and its process retires. Ends with a
/// write and read of a fresh key by a fresh process (so some read is owed a version) and a
/// final read of every key.
fn execute(steps: &[Step]) -> (History, Vec<Owed>, BTreeMap<i64, Vec<i64>>) {
    let mut sim = SingleCopy::default();
    let mut abandoned = [false; 3];
    let mut process = [0, 1, 2, 3];
    let mut next_process = 4;
    let mut next_value = 1;
    for s in steps {
        match *s {
            Step::Read { slot, key } => sim.read(process[slot as usize], key),
            Step::Write {
                slot,
                key,
                outcome,
                lands,
            } => {
                if abandoned[key as usize] {
                    continue;
                }
                let kind = match outcome {
                    0 => OpType::Info,
                    1 => OpType::Fail,
                    _ => OpType::Ok,
                };
                sim.write(process[slot as usize], key, next_value, kind, lands);
                next_value += 1;
                if kind == OpType::Info {
                    abandoned[key as usize] = true;
                    process[slot as usize] = next_process;
                    next_process += 1;
                }
            }
            Step::Fault => {
                sim.h.nemesis("kill");
                sim.lines += 1;
            }
        }
    }
    let (p, key) = (next_process, 9);
    sim.write(p, key, next_value, OpType::Ok, true);
    sim.read(p, key);
    for key in [0, 1, 2, 9] {
        sim.read(p + 1, key);
    }
    let history = sim.h.build();
    assert_eq!(history.len(), sim.lines);
    (history, sim.owed, sim.held)
}

proptest! {
    #[test]
    fn single_copy_executions_are_valid_until_a_read_goes_stale(
        steps in prop::collection::vec(step(), 0..60),
        which in any::<prop::sample::Index>(),
        older in any::<prop::sample::Index>(),
    ) {
        let (history, owed, held) = execute(&steps);
        for (name, v) in check_all(&history) {
            prop_assert_eq!(v.valid, Validity::True, "{}: {:#?}", name, v);
        }

        // Make one owed read return a version older than what it owes (nil, or a version
        // the key held before): its process had read or written the owed version earlier,
        // so monotonic reads or read-your-writes must object.
        let (position, key, x) = owed[which.index(owed.len())];
        let mut choices: Vec<Option<i64>> = vec![None];
        choices.extend(held[&key].iter().copied().filter(|v| *v < x).map(Some));
        let stale = choices[older.index(choices.len())];
        let mut ops = history.into_ops();
        prop_assert!(ops[position].value.as_int().is_some_and(|v| v >= x));
        ops[position].value = stale.map_or(Value::Nil, Value::Int);
        let corrupted = History::from_ops(ops).unwrap();
        let all = check_all(&corrupted);
        prop_assert!(
            ["monotonic-reads", "consistent-prefix", "read-your-writes"]
                .iter()
                .any(|n| all[*n].valid == Validity::False),
            "stale read at {} not caught: {:#?}", position, all
        );
    }
}

// --- the definitions, by brute force ---------------------------------------------------------

/// One call of a generated history, read back from the lines with no help from the module.
#[derive(Debug, Clone, Copy)]
struct Plain {
    invoke: usize,
    complete: Option<usize>,
    process: u64,
    write: bool,
    key: i64,
    kind: Option<OpType>,
    /// Written value, or an ok read's result.
    version: Option<i64>,
}

impl Plain {
    fn ok(&self) -> bool {
        self.kind == Some(OpType::Ok)
    }

    fn before(&self, later: &Plain) -> bool {
        self.complete.is_some_and(|c| c < later.invoke)
    }
}

fn plain(history: &History) -> Vec<Plain> {
    let ops = history.ops();
    history
        .client_calls()
        .map(|(invoke, complete)| {
            let op = &ops[invoke];
            let done = complete.map(|c| &ops[c]);
            let write = op.f == F::Write;
            Plain {
                invoke,
                complete,
                process: match op.process {
                    Process::Client(p) => p,
                    Process::Nemesis => unreachable!(),
                },
                write,
                key: match op.key {
                    Some(Key::Int(k)) => k,
                    _ => unreachable!(),
                },
                kind: done.map(|d| d.kind),
                version: if write {
                    op.value.as_int()
                } else {
                    done.and_then(|d| d.value.as_int())
                },
            }
        })
        .collect()
}

/// The invocation lines of the reads each definition rejects, straight from the definitions:
/// (read-your-writes, monotonic-reads, monotonic-writes, writes-follow-reads,
/// consistent-prefix).
fn brute_force(history: &History) -> [Vec<usize>; 5] {
    let calls = plain(history);
    let reads: Vec<&Plain> = calls.iter().filter(|c| !c.write && c.ok()).collect();
    let writes: Vec<&Plain> = calls.iter().filter(|c| c.write && c.ok()).collect();
    // (observed write, the read that observed it), for the three guarantees about others.
    let sees = |w: &Plain, r: &Plain| r.key == w.key && r.version >= w.version;
    let mut out: [Vec<usize>; 5] = Default::default();
    for r2 in &reads {
        let x = r2.version;
        let own = |c: &&&Plain| c.process == r2.process && c.key == r2.key && c.before(r2);
        if writes.iter().filter(own).any(|w| x < w.version) {
            out[0].push(r2.invoke);
        }
        if reads.iter().filter(own).any(|r| x < r.version) {
            out[1].push(r2.invoke);
        }
        let earlier_reads: Vec<&&Plain> = reads
            .iter()
            .filter(|r1| r1.process == r2.process && r1.before(r2))
            .collect();
        let seen = |w2: &Plain| earlier_reads.iter().any(|r1| sees(w2, r1));
        let mw = writes.iter().any(|w1| {
            w1.key == r2.key
                && x < w1.version
                && writes.iter().any(|w2| {
                    w2.process == w1.process && w2.key != w1.key && w1.before(w2) && seen(w2)
                })
        });
        if mw {
            out[2].push(r2.invoke);
        }
        let wfr = reads.iter().any(|r0| {
            r0.key == r2.key
                && r0.version.is_some()
                && x < r0.version
                && writes.iter().any(|w2| {
                    w2.process == r0.process && w2.key != r0.key && r0.before(w2) && seen(w2)
                })
        });
        if wfr {
            out[3].push(r2.invoke);
        }
        // What a read of version u of key k observed: ok writes of k older than u, and the
        // earliest-invoked write of u that may have happened; nothing if nobody wrote u.
        let observed = |r1: &Plain| -> Vec<Plain> {
            let Some(u) = r1.version else {
                return Vec::new();
            };
            let exact = calls
                .iter()
                .filter(|w| w.write && w.key == r1.key && w.version == Some(u))
                .find(|w| w.kind != Some(OpType::Fail));
            let Some(exact) = exact else {
                return Vec::new();
            };
            let mut o: Vec<Plain> = writes
                .iter()
                .filter(|w| w.key == r1.key && w.version < Some(u))
                .map(|w| **w)
                .collect();
            o.push(*exact);
            o
        };
        let cp = writes.iter().any(|w1| {
            w1.key == r2.key
                && x < w1.version
                && earlier_reads
                    .iter()
                    .any(|r1| observed(r1).iter().any(|w2| w1.before(w2)))
        });
        if cp {
            out[4].push(r2.invoke);
        }
    }
    out
}

/// A reported violation names calls that make it one: the first call ended before w2
/// began, r1 saw w2 and ended before r2 began, both by one process, and r2 is older than
/// the first call's version.
fn witness_holds(
    name: &str,
    first: &serde_json::Value,
    w2: &serde_json::Value,
    r1: &serde_json::Value,
    r2: &serde_json::Value,
) {
    let line = |c: &serde_json::Value, f: &str| c[f].as_u64().unwrap();
    let version = |c: &serde_json::Value| c["value"].as_str().unwrap().parse::<i64>().ok();
    let context = format!("{name}: {first} {w2} {r1} {r2}");
    assert!(
        line(first, "complete_index") < line(w2, "invoke_index"),
        "{context}"
    );
    assert!(
        line(r1, "complete_index") < line(r2, "invoke_index"),
        "{context}"
    );
    assert_eq!(r1["process"], r2["process"], "{context}");
    assert_eq!(r1["key"], w2["key"], "{context}");
    assert_eq!(r2["key"], first["key"], "{context}");
    assert!(version(r1) >= version(w2), "{context}");
    assert!(version(r2) < version(first), "{context}");
    if name != "consistent-prefix" {
        assert_eq!(first["process"], w2["process"], "{context}");
        assert_ne!(first["key"], w2["key"], "{context}");
    }
}

/// The invocation lines of the reads a verdict names as violating.
fn rejected(v: &Verdict, read: &str) -> Vec<usize> {
    let mut out: Vec<usize> = v.details["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[read]["invoke_index"].as_u64().unwrap() as usize)
        .collect();
    out.sort_unstable();
    out
}

/// A random concurrent history of up to five processes on three keys: writes of unique,
/// increasing values with every outcome, some left open; reads returning nil, any value
/// written to the key so far (stale, in-flight, failed) or one nobody wrote.
fn concurrent(events: &[(usize, u8, i64, u8, usize)]) -> History {
    let mut h = H::new();
    let mut open: [Option<(bool, i64, i64)>; 5] = [None; 5];
    let mut written: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut next_value = 1;
    for &(p, choice, key, outcome, pick) in events {
        match open[p] {
            None if choice % 2 == 0 => {
                h.invoke(p as u64, "write", key, int(next_value));
                written.entry(key).or_default().push(next_value);
                open[p] = Some((true, key, next_value));
                next_value += 1;
            }
            None => {
                h.invoke(p as u64, "read", key, Value::Nil);
                open[p] = Some((false, key, 0));
            }
            Some((true, key, v)) => {
                let kind = match outcome {
                    0 => OpType::Info,
                    1 => OpType::Fail,
                    _ => OpType::Ok,
                };
                h.complete(p as u64, kind, "write", key, int(v));
                open[p] = None;
            }
            Some((false, key, _)) => {
                let values = written.get(&key).map_or(&[][..], Vec::as_slice);
                let value = match pick % (values.len() + 3) {
                    0 => Value::Nil,
                    1 => int(99),
                    // Mostly the latest value, so that not every read is a violation.
                    2 => values.last().map_or(Value::Nil, |v| int(*v)),
                    i => int(values[i - 3]),
                };
                let kind = if outcome == 0 {
                    OpType::Fail
                } else {
                    OpType::Ok
                };
                h.complete(p as u64, kind, "read", key, value);
                open[p] = None;
            }
        }
    }
    h.build()
}

proptest! {
    #[test]
    fn every_route_rejects_exactly_the_reads_the_definitions_reject(
        events in prop::collection::vec((0..5usize, any::<u8>(), 0..3i64, 0..10u8, any::<usize>()), 20..120),
    ) {
        let history = concurrent(&events);
        let expected = brute_force(&history);
        let all = check_all(&history);
        let got = [
            rejected(&all["read-your-writes"], "read"),
            rejected(&all["monotonic-reads"], "later"),
            rejected(&all["monotonic-writes"], "r2"),
            rejected(&all["writes-follow-reads"], "r2"),
            rejected(&all["consistent-prefix"], "r2"),
        ];
        prop_assert_eq!(&got, &expected, "{:#?}", history.ops());
        for (name, first) in [
            ("monotonic-writes", "w1"),
            ("writes-follow-reads", "r0"),
            ("consistent-prefix", "w1"),
        ] {
            for w in all[name].details["violations"].as_array().unwrap() {
                witness_holds(name, &w[first], &w["w2"], &w["r1"], &w["r2"]);
            }
        }
        let prep = prepare(&history);
        for dependency in [causal::Dependency::EarlierWrites, causal::Dependency::EarlierReads] {
            let cheapest = causal::check_by(&prep, dependency, causal::Route::Cheapest);
            for route in [causal::Route::Window, causal::Route::Writers, causal::Route::Holders] {
                let forced = causal::check_by(&prep, dependency, route);
                prop_assert_eq!(&forced, &cheapest, "{:?} {:?}", dependency, route);
            }
        }
    }
}

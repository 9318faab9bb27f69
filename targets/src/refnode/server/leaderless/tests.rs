//! Leaderless nodes in the deterministic simulation: quorums, the limits of `w + r > n` the
//! chapter lists, read repair, anti-entropy, sloppy quorums and hinted handoff.

use super::*;
use crate::refnode::protocol::ResponseResult;
use crate::refnode::server::replica_sim::Sim;

fn ids(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("n{i}")).collect()
}

fn config(id: &str, count: usize) -> LeaderlessConfig {
    LeaderlessConfig {
        id: id.to_string(),
        order: ids(count),
        n: 3,
        w: 2,
        r: 2,
        conflict: Conflict::Lww,
        read_repair: true,
        anti_entropy: false,
        sloppy_quorum: false,
        heartbeat_ms: 50,
        suspect_after_ms: 200,
        request_timeout_ms: 500,
        handoff_interval_ms: 100,
        anti_entropy_interval_ms: 100,
        max_pending: 100,
        max_hinted_keys: 1000,
        max_keys_per_message: 64,
        compact_after_records: 1000,
        wall_base_ms: 1_700_000_000_000,
        clock_offset_ms: 0,
        seed: 11,
    }
}

fn sim(count: usize, tweak: impl Fn(&mut LeaderlessConfig) + 'static) -> Sim<Leaderless> {
    let names = ids(count);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut sim = Sim::new(&refs, move |id, records, now_ms| {
        let mut cfg = config(id, count);
        tweak(&mut cfg);
        Leaderless::new(cfg, records, now_ms)
    });
    sim.run(100);
    sim
}

fn write(sim: &mut Sim<Leaderless>, at: &str, key: i64, value: i64) -> u64 {
    sim.request(at, RequestBody::Write { key, value })
}

fn read(sim: &mut Sim<Leaderless>, at: &str, key: i64) -> u64 {
    sim.request(
        at,
        RequestBody::Read {
            key,
            min_index: None,
            leader_only: false,
        },
    )
}

fn values_of(sim: &Sim<Leaderless>, token: u64) -> Vec<i64> {
    match sim.ok(token) {
        ReplyBody::Versions { values, .. } => values,
        other => panic!("{other:?}"),
    }
}

/// What `at` holds of `key` in its own replica.
fn local(sim: &mut Sim<Leaderless>, at: &str, key: i64) -> Vec<i64> {
    match sim.call(at, RequestBody::LocalRead { key }) {
        ReplyBody::Versions { values, .. } => values,
        other => panic!("{other:?}"),
    }
}

/// A key whose home replicas are exactly the first three of the result; the rest are the
/// other nodes in preference order.
fn key_and_nodes(sim: &Sim<Leaderless>, other_than: &[&str]) -> (i64, Vec<String>) {
    let ring = Ring::new(&sim.node("n1").cfg.order);
    for key in 0..1000 {
        let list: Vec<String> = ring
            .preference_list(key)
            .iter()
            .map(|s| s.to_string())
            .collect();
        if list[..3].iter().all(|h| !other_than.contains(&h.as_str())) {
            return (key, list);
        }
    }
    panic!("no key found");
}

#[test]
fn a_write_is_acknowledged_after_w_replicas_and_a_read_merges_r_answers() {
    let mut sim = sim(3, |_| {});
    let t = write(&mut sim, "n1", 1, 5);
    assert!(
        sim.reply(t).is_none(),
        "one replica (the coordinator) is not w = 2"
    );
    sim.deliver();
    match sim.ok(t) {
        ReplyBody::Written { acks, .. } => assert!(acks >= 2),
        other => panic!("{other:?}"),
    }
    let r = read(&mut sim, "n2", 1);
    sim.deliver();
    assert_eq!(values_of(&sim, r), vec![5]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(local(&mut sim, n, 1), vec![5], "{n}");
    }
}

/// DDIA's "Limitations of Quorum Consistency": while a write is in flight a quorum read
/// can see it and a later quorum read can miss it, even with w + r > n.
#[test]
fn with_w_plus_r_over_n_a_read_concurrent_with_a_write_sees_new_then_a_later_read_old() {
    let mut sim = sim(5, |_| {});
    let (key, list) = key_and_nodes(&sim, &[]);
    let (a, b, c, x, y) = (&list[0], &list[1], &list[2], &list[3], &list[4]);
    write(&mut sim, x, key, 1);
    sim.deliver();
    // The second write reaches a only: it is in flight for as long as b and c lag.
    sim.now_ms += 10;
    sim.hold(x, b);
    sim.hold(x, c);
    let w = write(&mut sim, x, key, 2);
    sim.deliver();
    assert!(sim.reply(w).is_none());
    // Reader 1, through y: a and b answer; a has the new value. c's answer is slow, so y's
    // read repair waits, and then it is held up on the way.
    sim.hold(c, y);
    let r1 = read(&mut sim, y, key);
    sim.deliver();
    assert_eq!(values_of(&sim, r1), vec![2], "the new value");
    sim.hold(y, b);
    sim.hold(y, c);
    sim.release(c, y);
    sim.deliver();
    // Reader 2, later, through b: b and c answer; a's answer is slow.
    sim.hold(a, b);
    let r2 = read(&mut sim, b, key);
    sim.deliver();
    assert_eq!(
        values_of(&sim, r2),
        vec![1],
        "the old value, after the new one was read"
    );
    assert!(
        sim.reply(w).is_none(),
        "both reads ran while the write was in flight"
    );
    for (from, to) in [(x, b), (x, c), (y, b), (y, c), (a, b)] {
        sim.release(from, to);
    }
    sim.deliver();
    assert!(matches!(sim.reply(w), Some(ResponseResult::Ok(_))));
}

#[test]
fn a_write_that_fails_its_quorum_stays_on_the_replica_it_reached() {
    let mut sim = sim(3, |c| {
        c.r = 1;
        c.read_repair = false;
    });
    sim.crash("n2");
    sim.crash("n3");
    let t = write(&mut sim, "n1", 1, 7);
    sim.run(600);
    let e = sim.error(t);
    assert_eq!((e.code, e.definite), (ErrorCode::Timeout, false));
    assert!(e.message.contains("only 1 of the 2"), "{}", e.message);
    sim.start("n2");
    sim.start("n3");
    sim.run(100);
    // The failed write was not rolled back: a read may or may not return it.
    let r = read(&mut sim, "n1", 1);
    assert_eq!(values_of(&sim, r), vec![7]);
    let r = read(&mut sim, "n2", 1);
    assert_eq!(values_of(&sim, r), Vec::<i64>::new());
}

fn partitioned_write(sloppy: bool) -> (Sim<Leaderless>, i64, Vec<String>, u64) {
    let mut sim = sim(5, move |c| {
        c.sloppy_quorum = sloppy;
        c.read_repair = false;
    });
    let (key, list) = key_and_nodes(&sim, &[]);
    let (a, b) = (list[0].clone(), list[1].clone());
    sim.partition(&[&a, &b]);
    sim.run(300);
    // Through a node on the majority side.
    let t = write(&mut sim, &list[3], key, 9);
    sim.run(600);
    (sim, key, list, t)
}

#[test]
fn a_sloppy_quorum_acknowledges_a_write_that_a_home_read_quorum_misses_until_handoff() {
    let (mut sim, key, list, t) = partitioned_write(true);
    assert!(matches!(sim.ok(t), ReplyBody::Written { .. }));
    let (a, b) = (list[0].clone(), list[1].clone());
    let hints: usize = list[3..]
        .iter()
        .map(|n| sim.node(n).status(sim.now_ms).hints)
        .sum();
    assert_eq!(hints, 2, "the fallbacks hold the write for a and b");
    let r = read(&mut sim, &a, key);
    sim.run(100);
    assert_eq!(
        values_of(&sim, r),
        Vec::<i64>::new(),
        "w + r > n, and still missed"
    );
    sim.heal();
    sim.run(500);
    assert_eq!(local(&mut sim, &a, key), vec![9], "handed off");
    assert_eq!(local(&mut sim, &b, key), vec![9]);
    let r = read(&mut sim, &a, key);
    sim.deliver();
    assert_eq!(values_of(&sim, r), vec![9]);
    let handed: u64 = list
        .iter()
        .map(|n| sim.node(n).status(sim.now_ms).counters.handed_off)
        .sum();
    assert_eq!(handed, 2);
    assert!(
        list.iter()
            .all(|n| sim.node(n).status(sim.now_ms).hints == 0)
    );
}

#[test]
fn a_strict_quorum_refuses_the_same_write_but_it_stays_on_the_home_replica_it_reached() {
    let (mut sim, key, list, t) = partitioned_write(false);
    assert_eq!(sim.error(t).code, ErrorCode::Timeout);
    assert_eq!(local(&mut sim, &list[2], key), vec![9]);
}

fn stale_after_partition(read_repair: bool, anti_entropy: bool) -> Sim<Leaderless> {
    let mut sim = sim(3, move |c| {
        c.w = 1;
        c.r = 1;
        c.read_repair = read_repair;
        c.anti_entropy = anti_entropy;
    });
    sim.partition(&["n1"]);
    for key in 0..40 {
        let t = write(&mut sim, "n1", key, 100 + key);
        assert!(matches!(sim.reply(t), Some(ResponseResult::Ok(_))));
    }
    // Past the request deadline, so the coordinator has stopped retrying.
    sim.run(600);
    sim.heal();
    sim.run(100);
    sim
}

#[test]
fn read_repair_updates_the_stale_replicas_of_the_keys_that_are_read() {
    let mut sim = stale_after_partition(true, false);
    assert_eq!(local(&mut sim, "n2", 3), Vec::<i64>::new());
    let r = read(&mut sim, "n2", 3);
    sim.deliver();
    assert!(matches!(sim.reply(r), Some(ResponseResult::Ok(_))));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(local(&mut sim, n, 3), vec![103], "{n}");
    }
    assert!(sim.node("n2").status(sim.now_ms).counters.read_repairs >= 2);
    // Keys nobody read stay stale: read repair alone never converges them.
    sim.run(2000);
    assert_eq!(local(&mut sim, "n2", 4), Vec::<i64>::new());
}

#[test]
fn without_read_repair_a_read_leaves_the_stale_replicas_stale() {
    let mut sim = stale_after_partition(false, false);
    let r = read(&mut sim, "n2", 3);
    sim.deliver();
    assert!(matches!(sim.reply(r), Some(ResponseResult::Ok(_))));
    assert_eq!(local(&mut sim, "n2", 3), Vec::<i64>::new());
}

#[test]
fn anti_entropy_converges_every_replica_after_a_partition_heals() {
    let mut sim = stale_after_partition(false, true);
    sim.run(3000);
    for key in 0..40 {
        for n in ["n1", "n2", "n3"] {
            assert_eq!(local(&mut sim, n, key), vec![100 + key], "{n} key {key}");
        }
    }
    let st = sim.node("n2").status(sim.now_ms).counters;
    assert!(
        st.anti_entropy_keys > 0 && st.anti_entropy_rounds > 0,
        "{st:?}"
    );
}

#[test]
fn replicas_that_agree_settle_anti_entropy_at_the_root() {
    let mut sim = sim(3, |c| c.anti_entropy = true);
    for key in 0..10 {
        write(&mut sim, "n1", key, key);
    }
    sim.run(1000);
    let rounds = sim
        .node("n1")
        .status(sim.now_ms)
        .counters
        .anti_entropy_rounds;
    let before = sim.logs.len();
    sim.run(1000);
    assert!(
        sim.node("n1")
            .status(sim.now_ms)
            .counters
            .anti_entropy_rounds
            > rounds
    );
    assert_eq!(sim.logs.len(), before, "nothing to repair");
}

#[test]
fn siblings_keep_concurrent_writes_through_different_coordinators() {
    let mut sim = sim(3, |c| c.conflict = Conflict::Siblings);
    let a = write(&mut sim, "n1", 1, 1);
    let b = write(&mut sim, "n2", 1, 2);
    sim.deliver();
    assert!(matches!(sim.reply(a), Some(ResponseResult::Ok(_))));
    assert!(matches!(sim.reply(b), Some(ResponseResult::Ok(_))));
    let r = read(&mut sim, "n3", 1);
    sim.deliver();
    let context = match sim.ok(r) {
        ReplyBody::Versions {
            values,
            siblings,
            context,
        } => {
            assert_eq!((values, siblings), (vec![1, 2], 2));
            context
        }
        other => panic!("{other:?}"),
    };
    let w = sim.request(
        "n3",
        RequestBody::Put {
            key: 1,
            value: 3,
            context,
        },
    );
    sim.deliver();
    assert!(matches!(sim.reply(w), Some(ResponseResult::Ok(_))));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(local(&mut sim, n, 1), vec![3], "{n}");
    }
}

#[test]
fn lww_keeps_one_of_two_concurrent_writes() {
    let mut sim = sim(3, |_| {});
    write(&mut sim, "n1", 1, 1);
    sim.now_ms += 5;
    write(&mut sim, "n2", 1, 2);
    sim.deliver();
    for n in ["n1", "n2", "n3"] {
        assert_eq!(local(&mut sim, n, 1), vec![2], "{n}");
    }
    let discarded: u64 = ["n1", "n2", "n3"]
        .iter()
        .map(|n| sim.node(n).status(sim.now_ms).counters.discarded_writes)
        .sum();
    assert!(discarded >= 2);
}

#[test]
fn set_changes_read_a_quorum_first_and_concurrent_adds_survive_as_siblings() {
    let mut sim = sim(3, |c| c.conflict = Conflict::Siblings);
    let add = |e| RequestBody::SetAdd { key: 5, element: e };
    let t1 = sim.request("n1", add(1));
    let t2 = sim.request("n2", add(2));
    sim.deliver();
    for t in [t1, t2] {
        assert!(matches!(sim.ok(t), ReplyBody::Written { .. }));
    }
    let r = sim.request("n3", RequestBody::SetRead { key: 5 });
    sim.deliver();
    assert!(
        matches!(sim.ok(r), ReplyBody::SetValue { ref elements, .. } if *elements == vec![1, 2]),
        "{:?}",
        sim.ok(r)
    );
    let rm = sim.request("n3", RequestBody::SetRemove { key: 5, element: 1 });
    sim.deliver();
    assert!(matches!(sim.ok(rm), ReplyBody::Written { .. }));
    let r = sim.request("n1", RequestBody::SetRead { key: 5 });
    sim.deliver();
    assert!(matches!(sim.ok(r), ReplyBody::SetValue { ref elements, .. } if *elements == vec![2]));
}

#[test]
fn cas_and_statements_are_unsupported() {
    let mut sim = sim(3, |_| {});
    let t = sim.request(
        "n1",
        RequestBody::Cas {
            key: 1,
            from: 1,
            to: 2,
        },
    );
    assert_eq!(sim.error(t).code, ErrorCode::Unsupported);
    let t = sim.request(
        "n1",
        RequestBody::Exec {
            key: 1,
            stmt: "add 1".into(),
        },
    );
    assert_eq!(sim.error(t).code, ErrorCode::Unsupported);
}

#[test]
fn a_restarted_node_keeps_its_replica_and_hints_and_compaction_keeps_them_too() {
    let mut sim = sim(5, |c| {
        c.sloppy_quorum = true;
        c.compact_after_records = 20;
    });
    let (key, list) = key_and_nodes(&sim, &[]);
    for v in 0..60 {
        let t = write(&mut sim, &list[0], 1000 + v % 3, v);
        sim.deliver();
        assert!(matches!(sim.reply(t), Some(ResponseResult::Ok(_))));
    }
    assert!(sim.logged(&list[0], "compacting the data file"));
    assert!(
        sim.disks[&list[0]].len() < 80,
        "{}",
        sim.disks[&list[0]].len()
    );
    sim.crash(&list[1]);
    sim.run(300);
    let t = write(&mut sim, &list[0], key, 77);
    sim.run(100);
    assert!(matches!(sim.reply(t), Some(ResponseResult::Ok(_))));
    let holder = list[3].clone();
    assert_eq!(sim.node(&holder).status(sim.now_ms).hints, 1);
    sim.crash(&holder);
    sim.start(&holder);
    assert_eq!(
        sim.node(&holder).status(sim.now_ms).hints,
        1,
        "hints are durable"
    );
    sim.crash(&list[0]);
    sim.start(&list[0]);
    for k in 0..3 {
        let home = sim
            .node(&list[0])
            .home(1000 + k)
            .contains(&list[0].as_str());
        let expected = if home { vec![57 + k] } else { Vec::new() };
        assert_eq!(local(&mut sim, &list[0], 1000 + k), expected, "key {k}");
    }
    sim.start(&list[1]);
    sim.run(500);
    assert_eq!(local(&mut sim, &list[1], key), vec![77]);
}

//! Multi-leader nodes in the deterministic simulation: topologies, loop prevention, the
//! all-to-all causality problem, and what each conflict rule keeps and loses.

use super::*;
use crate::refnode::protocol::ResponseResult;
use crate::refnode::server::replica_sim::Sim;

const IDS: [&str; 3] = ["n1", "n2", "n3"];

fn config(id: &str, topology: Topology, conflict: Conflict) -> MultiLeaderConfig {
    MultiLeaderConfig {
        id: id.to_string(),
        order: IDS.iter().map(|s| s.to_string()).collect(),
        topology,
        conflict,
        home_leader_routing: false,
        heartbeat_ms: 50,
        resend_after_ms: 150,
        suspect_after_ms: 300,
        max_batch_entries: 4,
        max_inflight_entries: 16,
        compact_after_entries: 10_000,
        wall_base_ms: 1_700_000_000_000,
        clock_offset_ms: 0,
        seed: 7,
    }
}

fn sim_with(
    topology: Topology,
    conflict: Conflict,
    tweak: impl Fn(&mut MultiLeaderConfig) + 'static,
) -> Sim<MultiLeader> {
    let mut sim = Sim::new(&IDS, move |id, records, now_ms| {
        let mut cfg = config(id, topology, conflict);
        tweak(&mut cfg);
        MultiLeader::new(cfg, records, now_ms)
    });
    sim.run(100);
    sim
}

fn sim(topology: Topology, conflict: Conflict) -> Sim<MultiLeader> {
    sim_with(topology, conflict, |_| {})
}

fn write(sim: &mut Sim<MultiLeader>, at: &str, key: i64, value: i64) -> VersionVector {
    match sim.call(at, RequestBody::Write { key, value }) {
        ReplyBody::Written { context, .. } => context,
        other => panic!("{other:?}"),
    }
}

/// The values and context `at` holds for `key`.
fn read(sim: &mut Sim<MultiLeader>, at: &str, key: i64) -> (Vec<i64>, VersionVector) {
    match sim.call(at, RequestBody::LocalRead { key }) {
        ReplyBody::Versions {
            values, context, ..
        } => (values, context),
        other => panic!("{other:?}"),
    }
}

fn values(sim: &mut Sim<MultiLeader>, at: &str, key: i64) -> Vec<i64> {
    read(sim, at, key).0
}

fn everywhere(sim: &mut Sim<MultiLeader>, key: i64) -> Vec<Vec<i64>> {
    IDS.iter().map(|n| values(sim, n, key)).collect()
}

fn set(sim: &mut Sim<MultiLeader>, at: &str, key: i64) -> Vec<i64> {
    match sim.call(at, RequestBody::SetRead { key }) {
        ReplyBody::SetValue { elements, .. } => elements,
        other => panic!("{other:?}"),
    }
}

fn counters(sim: &Sim<MultiLeader>, at: &str) -> ReplicaCounters {
    sim.node(at).status(sim.now_ms).counters
}

#[test]
fn every_leader_accepts_writes_and_all_to_all_replicates_them_to_every_node() {
    let mut sim = sim(Topology::AllToAll, Conflict::Lww);
    for (k, n) in IDS.iter().enumerate() {
        write(&mut sim, n, k as i64, 10 + k as i64);
    }
    // Asynchronous: acknowledged before any other node has it.
    assert_eq!(values(&mut sim, "n2", 0), Vec::<i64>::new());
    sim.run(100);
    for n in IDS {
        for k in 0..3 {
            assert_eq!(values(&mut sim, n, k), vec![10 + k], "{n} key {k}");
        }
    }
    assert_eq!(
        counters(&sim, "n1").ignored_loops,
        0,
        "no change travels twice"
    );
}

#[test]
fn circular_replication_goes_round_the_ring_and_the_origin_ignores_its_own_change() {
    let mut sim = sim(Topology::Circular, Conflict::Lww);
    write(&mut sim, "n1", 1, 5);
    sim.run(100);
    for n in IDS {
        assert_eq!(values(&mut sim, n, 1), vec![5], "{n}");
    }
    assert_eq!(counters(&sim, "n1").ignored_loops, 1, "back at its origin");
    assert_eq!(counters(&sim, "n2").ignored_loops, 0);
    let path = sim
        .node("n3")
        .log
        .back()
        .map(|e| e.change.path.clone())
        .unwrap();
    assert_eq!(path, vec!["n1", "n2", "n3"], "each hop tags the change");
}

#[test]
fn a_failed_node_on_the_circle_cuts_the_others_off_until_it_returns() {
    let mut sim = sim(Topology::Circular, Conflict::Lww);
    sim.crash("n2");
    write(&mut sim, "n1", 1, 5);
    sim.run(1000);
    assert_eq!(
        values(&mut sim, "n3", 1),
        Vec::<i64>::new(),
        "n3 hears only via n2"
    );
    sim.start("n2");
    sim.run(300);
    assert_eq!(values(&mut sim, "n3", 1), vec![5]);
}

#[test]
fn star_relays_through_the_centre_and_a_failed_centre_stops_replication() {
    let mut sim = sim(Topology::Star, Conflict::Lww);
    write(&mut sim, "n2", 1, 5);
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![5]; 3]);
    sim.crash("n1");
    write(&mut sim, "n2", 2, 6);
    sim.run(1000);
    assert_eq!(values(&mut sim, "n3", 2), Vec::<i64>::new());
    sim.start("n1");
    sim.run(300);
    assert_eq!(values(&mut sim, "n3", 2), vec![6]);
}

/// DDIA figure 5-9: client A inserts at n1; client B, having read the insert at n3, updates
/// it there; n2 receives the update before the insert.
fn update_overtakes_insert(conflict: Conflict) -> Sim<MultiLeader> {
    let mut sim = sim(Topology::AllToAll, conflict);
    sim.hold("n1", "n2");
    write(&mut sim, "n1", 1, 100);
    sim.deliver();
    let (seen, context) = read(&mut sim, "n3", 1);
    assert_eq!(seen, vec![100]);
    sim.call(
        "n3",
        RequestBody::Put {
            key: 1,
            value: 101,
            context,
        },
    );
    sim.deliver();
    assert_eq!(
        values(&mut sim, "n2", 1),
        vec![101],
        "the update came first"
    );
    sim.release("n1", "n2");
    sim.run(200);
    sim
}

#[test]
fn all_to_all_delivers_an_update_before_its_insert_and_arrival_order_diverges() {
    let mut sim = update_overtakes_insert(Conflict::None);
    assert_eq!(
        everywhere(&mut sim, 1),
        vec![vec![101], vec![100], vec![101]],
        "n2 applied the insert last and undid the update"
    );
    assert_eq!(counters(&sim, "n2").discarded_writes, 1);
}

#[test]
fn version_vectors_recognise_the_late_insert_as_already_superseded() {
    for conflict in [Conflict::Siblings, Conflict::Lww] {
        let mut sim = update_overtakes_insert(conflict);
        assert_eq!(everywhere(&mut sim, 1), vec![vec![101]; 3], "{conflict:?}");
        assert_eq!(counters(&sim, "n2").discarded_writes, 0, "{conflict:?}");
    }
}

#[test]
fn lww_silently_discards_one_of_two_concurrent_writes() {
    let mut sim = sim(Topology::AllToAll, Conflict::Lww);
    write(&mut sim, "n1", 1, 1);
    // 10 ms later, before either has heard of the other.
    sim.now_ms += 10;
    write(&mut sim, "n2", 1, 2);
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![2]; 3]);
    let discarded: u64 = IDS.iter().map(|n| counters(&sim, n).discarded_writes).sum();
    assert_eq!(
        discarded, 3,
        "every node threw the acknowledged write of 1 away"
    );
    assert!(sim.logged("n1", "discarded the write"));
}

#[test]
fn lww_with_clock_skew_discards_a_later_write() {
    let mut sim = sim(Topology::AllToAll, Conflict::Lww);
    sim.call("n1", RequestBody::SetClock { offset_ms: 10_000 });
    write(&mut sim, "n1", 1, 1);
    sim.run(100);
    // A second later, a client reads 1 at n2 and overwrites it, with the context: the
    // write happened after the first in every sense but the skewed timestamp.
    sim.run(1000);
    let (_, context) = read(&mut sim, "n2", 1);
    let t = sim.request(
        "n2",
        RequestBody::Put {
            key: 1,
            value: 2,
            context,
        },
    );
    assert!(
        matches!(sim.reply(t), Some(ResponseResult::Ok(_))),
        "acknowledged"
    );
    sim.run(100);
    assert_eq!(
        everywhere(&mut sim, 1),
        vec![vec![1]; 3],
        "the later write is gone"
    );
    assert_eq!(counters(&sim, "n2").discarded_writes, 1);
}

#[test]
fn highest_id_wins_even_over_a_later_write() {
    let mut sim = sim(Topology::AllToAll, Conflict::HighestId);
    write(&mut sim, "n3", 1, 3);
    sim.run(100);
    let (_, context) = read(&mut sim, "n1", 1);
    sim.call(
        "n1",
        RequestBody::Put {
            key: 1,
            value: 1,
            context,
        },
    );
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![3]; 3]);
}

#[test]
fn siblings_keep_concurrent_writes_until_a_write_with_their_context_merges_them() {
    let mut sim = sim(Topology::AllToAll, Conflict::Siblings);
    write(&mut sim, "n1", 1, 1);
    write(&mut sim, "n2", 1, 2);
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![1, 2]; 3]);
    let (_, context) = read(&mut sim, "n3", 1);
    let merged = match sim.call(
        "n3",
        RequestBody::Put {
            key: 1,
            value: 12,
            context,
        },
    ) {
        ReplyBody::Written { context, .. } => context,
        other => panic!("{other:?}"),
    };
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![12]; 3]);
    // The writer's next write supersedes its own previous one with the returned context.
    sim.call(
        "n3",
        RequestBody::Put {
            key: 1,
            value: 13,
            context: merged,
        },
    );
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![13]; 3]);
    // A write without context is concurrent with everything: one more sibling.
    write(&mut sim, "n1", 1, 14);
    sim.run(100);
    assert_eq!(everywhere(&mut sim, 1), vec![vec![13, 14]; 3]);
    let total: u64 = IDS.iter().map(|n| counters(&sim, n).discarded_writes).sum();
    assert_eq!(total, 0);
}

#[test]
fn sets_merge_by_union_with_tombstones_and_a_concurrent_add_wins() {
    let mut sim = sim(Topology::AllToAll, Conflict::Siblings);
    let add = |e| RequestBody::SetAdd { key: 7, element: e };
    let remove = |e| RequestBody::SetRemove { key: 7, element: e };
    sim.call("n1", add(1));
    sim.call("n2", add(2));
    sim.run(100);
    for n in IDS {
        assert_eq!(set(&mut sim, n, 7), vec![1, 2], "{n}");
    }
    // n1 removes 1 while n2 adds it again, concurrently: the add wins.
    sim.call("n1", remove(1));
    sim.call("n2", add(1));
    sim.run(100);
    for n in IDS {
        assert_eq!(set(&mut sim, n, 7), vec![1, 2], "{n}");
    }
    // A removal that saw every add sticks: union with the older states does not bring the
    // element back.
    sim.call("n3", remove(2));
    sim.run(100);
    for n in IDS {
        assert_eq!(set(&mut sim, n, 7), vec![1], "{n}");
    }
}

#[test]
fn lww_sets_lose_one_of_two_concurrent_adds() {
    let mut sim = sim(Topology::AllToAll, Conflict::Lww);
    sim.call("n1", RequestBody::SetAdd { key: 7, element: 1 });
    sim.now_ms += 10;
    sim.call("n2", RequestBody::SetAdd { key: 7, element: 2 });
    sim.run(100);
    for n in IDS {
        assert_eq!(set(&mut sim, n, 7), vec![2], "{n}");
    }
}

#[test]
fn home_leader_routing_refuses_writes_to_keys_homed_elsewhere() {
    let mut sim = sim_with(Topology::AllToAll, Conflict::Lww, |c| {
        c.home_leader_routing = true;
    });
    let key = (0..100)
        .find(|k| sim.node("n1").home_leader(*k) == "n2")
        .unwrap();
    let t = sim.request("n1", RequestBody::Write { key, value: 1 });
    let e = sim.error(t);
    assert_eq!(
        (e.code, e.leader.as_deref()),
        (ErrorCode::NotLeader, Some("n2"))
    );
    assert!(e.definite);
    write(&mut sim, "n2", key, 1);
    let t = sim.request(
        "n1",
        RequestBody::Read {
            key,
            min_index: None,
            leader_only: true,
        },
    );
    assert_eq!(sim.error(t).code, ErrorCode::NotLeader);
    sim.run(100);
    assert_eq!(
        values(&mut sim, "n1", key),
        vec![1],
        "any node serves local reads"
    );
}

#[test]
fn cas_and_statements_act_on_the_local_value_and_refuse_siblings() {
    let mut sim = sim(Topology::AllToAll, Conflict::Siblings);
    write(&mut sim, "n1", 1, 5);
    let ok = sim.call(
        "n1",
        RequestBody::Cas {
            key: 1,
            from: 5,
            to: 6,
        },
    );
    assert!(matches!(ok, ReplyBody::Written { .. }), "{ok:?}");
    let t = sim.request(
        "n1",
        RequestBody::Cas {
            key: 1,
            from: 5,
            to: 7,
        },
    );
    assert_eq!(sim.error(t).code, ErrorCode::CasMismatch);
    let add = sim.call(
        "n1",
        RequestBody::Exec {
            key: 1,
            stmt: "add 4".into(),
        },
    );
    assert!(
        matches!(add, ReplyBody::ExecOk { value: 10, .. }),
        "{add:?}"
    );
    sim.run(100);
    write(&mut sim, "n2", 1, 20);
    sim.now_ms += 1;
    write(&mut sim, "n3", 1, 30);
    sim.run(100);
    let t = sim.request(
        "n1",
        RequestBody::Cas {
            key: 1,
            from: 20,
            to: 21,
        },
    );
    assert!(sim.error(t).message.contains("siblings"));
}

#[test]
fn a_restarted_node_recovers_its_data_and_takes_each_change_once() {
    let mut sim = sim(Topology::AllToAll, Conflict::None);
    write(&mut sim, "n1", 1, 1);
    sim.run(100);
    sim.crash("n3");
    write(&mut sim, "n1", 1, 2);
    write(&mut sim, "n2", 2, 9);
    sim.run(300);
    sim.start("n3");
    assert_eq!(
        values(&mut sim, "n3", 1),
        vec![1],
        "recovered from its records"
    );
    sim.run(300);
    assert_eq!(values(&mut sim, "n3", 1), vec![2]);
    assert_eq!(values(&mut sim, "n3", 2), vec![9]);
    assert_eq!(sim.node("n3").last_index(), 3, "every change applied once");
    // A leader that crashes right after acknowledging ships the write after its restart.
    write(&mut sim, "n1", 3, 3);
    sim.crash("n1");
    sim.start("n1");
    sim.run(300);
    assert_eq!(everywhere(&mut sim, 3), vec![vec![3]; 3]);
}

#[test]
fn batches_lost_in_a_partition_are_resent_after_it_heals() {
    let mut sim = sim(Topology::AllToAll, Conflict::Lww);
    sim.partition(&["n1"]);
    for v in 0..20 {
        write(&mut sim, "n1", v, v);
    }
    sim.run(500);
    assert_eq!(values(&mut sim, "n2", 3), Vec::<i64>::new());
    let status = sim.node("n1").status(sim.now_ms);
    assert_eq!(status.backlog.get("n2"), Some(&20));
    assert!(status.alive.is_empty(), "{status:?}");
    sim.heal();
    sim.run(1000);
    for v in 0..20 {
        assert_eq!(everywhere(&mut sim, v), vec![vec![v]; 3]);
    }
    assert_eq!(
        sim.node("n1").status(sim.now_ms).backlog.get("n2"),
        Some(&0)
    );
}

#[test]
fn a_wiped_node_gets_every_change_again_as_a_new_actor() {
    let mut sim = sim(Topology::AllToAll, Conflict::Siblings);
    write(&mut sim, "n2", 1, 1);
    write(&mut sim, "n3", 2, 2);
    sim.run(100);
    let before = sim.node("n2").actor.clone();
    sim.wipe("n2");
    sim.run(100);
    sim.now_ms += 1;
    sim.start("n2");
    sim.run(1000);
    assert_ne!(sim.node("n2").actor, before);
    assert_eq!(values(&mut sim, "n2", 2), vec![2]);
    // Its own write from before the wipe comes back from the others.
    assert_eq!(values(&mut sim, "n2", 1), vec![1]);
}

#[test]
fn compaction_drops_what_every_peer_has_and_a_restart_or_a_wiped_peer_loses_nothing() {
    for conflict in [Conflict::None, Conflict::Siblings] {
        let mut sim = sim_with(Topology::AllToAll, conflict, |c| {
            c.compact_after_entries = 5
        });
        for v in 0..30 {
            write(&mut sim, "n1", v % 4, v);
            sim.run(10);
        }
        sim.run(200);
        assert!(
            sim.logged("n1", "compacting the change log"),
            "{conflict:?}"
        );
        assert!(
            sim.node("n1").log.len() <= 6,
            "{}",
            sim.node("n1").log.len()
        );
        // Uncompacted, it would hold 61 records (a counter and a change per write).
        assert!(sim.disks["n1"].len() < 40, "{}", sim.disks["n1"].len());
        let before: Vec<Vec<i64>> = (0..4).map(|k| values(&mut sim, "n1", k)).collect();
        sim.crash("n1");
        sim.start("n1");
        let after: Vec<Vec<i64>> = (0..4).map(|k| values(&mut sim, "n1", k)).collect();
        assert_eq!(
            before, after,
            "{conflict:?}: the rewritten file replays the same state"
        );
        assert_eq!(sim.node("n1").last_index(), 30);
        // n2 loses everything after n1 compacted: a snapshot and the log's tail restore it.
        sim.wipe("n2");
        sim.run(100);
        sim.now_ms += 1;
        sim.start("n2");
        write(&mut sim, "n1", 9, 99);
        sim.run(1000);
        for k in 0..4 {
            assert_eq!(
                values(&mut sim, "n2", k),
                before[k as usize],
                "{conflict:?} key {k}"
            );
        }
        assert_eq!(values(&mut sim, "n2", 9), vec![99]);
    }
}

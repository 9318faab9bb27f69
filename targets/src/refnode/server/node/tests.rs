//! The node's handlers driven by an in-memory network and disk: crashes, restarts and
//! partitions happen exactly where a test puts them, so each property is checked
//! deterministically.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;

fn config(id: &str, n: usize, replication: Replication) -> NodeConfig {
    NodeConfig {
        id: id.to_string(),
        peers: (1..=n)
            .map(|i| format!("n{i}"))
            .filter(|p| p != id)
            .collect(),
        initial_leader: "n1".to_string(),
        replication,
        heartbeat_ms: 50,
        failover_timeout_ms: 500,
        sync_timeout_ms: 300,
        position_timeout_ms: 100,
        max_inflight_entries: 8,
        resend_after_ms: 150,
        snapshot_resend_ms: 300,
        compact_after_entries: 10_000,
        max_uncommitted_entries: 1_000,
        seed: 7,
    }
}

/// What a data directory would hold after these changes.
fn apply_persist(disk: &mut Durable, p: &Persist) {
    match p {
        Persist::Append(entries) => disk.entries.extend(entries.iter().cloned()),
        Persist::Meta(m) => disk.meta = Some(m.clone()),
        Persist::Replace { snapshot, keep } => {
            disk.snapshot = snapshot.clone();
            disk.entries = keep.clone();
        }
    }
}

/// Messages handled per `deliver`, far above what any test needs, so a livelock fails the
/// test instead of hanging it.
const MAX_DELIVERIES: usize = 100_000;

struct Sim {
    now_ms: u64,
    configs: BTreeMap<String, NodeConfig>,
    nodes: BTreeMap<String, Node>,
    disks: BTreeMap<String, Durable>,
    down: BTreeSet<String>,
    /// Unordered pairs of nodes that cannot reach each other.
    cut: BTreeSet<(String, String)>,
    network: VecDeque<(String, String, PeerMessage)>,
    replies: BTreeMap<u64, ResponseResult>,
    logs: Vec<(String, String)>,
    sent: Vec<(String, String, PeerMessage)>,
    next_token: u64,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Sim {
    fn new(n: usize, replication: Replication) -> Sim {
        let mut sim = Sim {
            now_ms: 0,
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            network: VecDeque::new(),
            replies: BTreeMap::new(),
            logs: Vec::new(),
            sent: Vec::new(),
            next_token: 1,
        };
        for i in 1..=n {
            let id = format!("n{i}");
            sim.configs.insert(id.clone(), config(&id, n, replication));
            sim.disks.insert(id.clone(), Durable::default());
            sim.start(&id);
        }
        sim
    }

    fn with_config(mut self, f: impl Fn(&mut NodeConfig)) -> Sim {
        let ids: Vec<String> = self.configs.keys().cloned().collect();
        for id in ids {
            f(self.configs.get_mut(&id).unwrap());
            self.disks.insert(id.clone(), Durable::default());
            self.start(&id);
        }
        self
    }

    fn start(&mut self, id: &str) {
        let cfg = self.configs[id].clone();
        let (node, fx) = Node::new(cfg, self.disks[id].clone(), self.now_ms);
        self.nodes.insert(id.to_string(), node);
        self.down.remove(id);
        self.apply(id, fx, None);
    }

    fn crash(&mut self, id: &str) {
        self.down.insert(id.to_string());
    }

    fn isolate(&mut self, id: &str) {
        for other in self.configs.keys() {
            if other != id {
                self.cut.insert(pair(id, other));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn reachable(&self, a: &str, b: &str) -> bool {
        !self.down.contains(a) && !self.down.contains(b) && !self.cut.contains(&pair(a, b))
    }

    fn apply(&mut self, at: &str, fx: Effects, reply_to: Option<&str>) {
        for line in fx.log {
            self.logs.push((at.to_string(), line));
        }
        let disk = self.disks.get_mut(at).unwrap();
        for p in &fx.persist {
            apply_persist(disk, p);
        }
        if let (Some(msg), Some(to)) = (fx.respond, reply_to) {
            self.sent
                .push((at.to_string(), to.to_string(), msg.clone()));
            self.network
                .push_back((at.to_string(), to.to_string(), msg));
        }
        for (to, msg) in fx.send {
            self.sent.push((at.to_string(), to.clone(), msg.clone()));
            self.network.push_back((at.to_string(), to, msg));
        }
        for (token, result) in fx.replies {
            let earlier = self.replies.insert(token, result);
            assert!(earlier.is_none(), "token {token} answered twice");
        }
    }

    fn deliver(&mut self) {
        for _ in 0..MAX_DELIVERIES {
            let Some((from, to, msg)) = self.network.pop_front() else {
                return;
            };
            if !self.reachable(&from, &to) {
                continue;
            }
            let fx = self
                .nodes
                .get_mut(&to)
                .unwrap()
                .on_peer(&from, msg, self.now_ms);
            self.apply(&to, fx, Some(&from));
        }
        panic!("the network did not go quiet within {MAX_DELIVERIES} deliveries");
    }

    /// Lets `ms` pass in 10 ms steps, ticking every live node and delivering everything.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms / 10 {
            self.now_ms += 10;
            let ids: Vec<String> = self.nodes.keys().cloned().collect();
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                let fx = self.nodes.get_mut(&id).unwrap().on_tick(self.now_ms);
                self.apply(&id, fx, None);
            }
            self.deliver();
        }
    }

    fn request(&mut self, at: &str, body: RequestBody) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let fx = self
            .nodes
            .get_mut(at)
            .unwrap()
            .on_client(vec![ClientRequest { token, body }], self.now_ms);
        self.apply(at, fx, None);
        token
    }

    fn write(&mut self, at: &str, key: i64, value: i64) -> u64 {
        self.request(at, RequestBody::Write { key, value })
    }

    fn read(&mut self, at: &str, key: i64) -> Option<i64> {
        let token = self.request(at, RequestBody::Read { key });
        match self.replies.get(&token) {
            Some(ResponseResult::Ok(ReplyBody::ReadOk { value })) => *value,
            other => panic!("read at {at}: {other:?}"),
        }
    }

    fn status(&self, id: &str) -> Status {
        self.nodes[id].status()
    }

    fn leaders(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(id, n)| !self.down.contains(*id) && n.role() == Role::Leader)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn logged(&self, at: &str, needle: &str) -> bool {
        self.logs
            .iter()
            .any(|(id, line)| id == at && line.contains(needle))
    }

    fn ok(&self, token: u64) -> bool {
        matches!(self.replies.get(&token), Some(ResponseResult::Ok(_)))
    }

    fn error(&self, token: u64) -> ErrorReply {
        match self.replies.get(&token) {
            Some(ResponseResult::Err(e)) => e.clone(),
            other => panic!("expected an error for token {token}, got {other:?}"),
        }
    }
}

#[test]
fn a_sync_write_is_acknowledged_and_visible_only_once_every_follower_has_it() {
    let mut sim = Sim::new(3, Replication::Sync);
    sim.run(100);
    let t = sim.write("n1", 1, 5);
    assert!(
        !sim.replies.contains_key(&t),
        "acknowledged before replication"
    );
    assert_eq!(
        sim.read("n1", 1),
        None,
        "the leader showed an unacknowledged write"
    );
    sim.deliver();
    assert!(sim.ok(t));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(sim.read(n, 1), Some(5), "{n}");
    }
}

#[test]
fn a_sync_write_times_out_while_a_follower_is_down_and_becomes_visible_later() {
    let mut sim = Sim::new(3, Replication::Sync);
    sim.run(100);
    sim.crash("n3");
    let t = sim.write("n1", 1, 7);
    sim.run(400);
    let e = sim.error(t);
    assert_eq!((e.code, e.definite), (ErrorCode::Timeout, false));
    assert_eq!(sim.read("n1", 1), None);
    assert_eq!(
        sim.read("n2", 1),
        Some(7),
        "followers apply what they receive"
    );
    sim.start("n3");
    sim.run(500);
    assert_eq!(
        sim.read("n1", 1),
        Some(7),
        "the timed-out write committed later"
    );
    assert_eq!(sim.read("n3", 1), Some(7));
}

#[test]
fn cas_is_evaluated_against_the_head_of_the_log_and_a_mismatch_writes_nothing() {
    let mut sim = Sim::new(3, Replication::Sync);
    sim.run(100);
    let w = sim.write("n1", 1, 10);
    // Not yet replicated, so not readable, but a cas ordered after it must see it.
    let c = sim.request(
        "n1",
        RequestBody::Cas {
            key: 1,
            from: 10,
            to: 11,
        },
    );
    let bad = sim.request(
        "n1",
        RequestBody::Cas {
            key: 1,
            from: 10,
            to: 12,
        },
    );
    assert_eq!(sim.error(bad).code, ErrorCode::CasMismatch);
    assert!(sim.error(bad).definite);
    sim.deliver();
    assert!(sim.ok(w) && sim.ok(c));
    assert_eq!(sim.read("n1", 1), Some(11));
    assert_eq!(
        sim.status("n1").last_index,
        2,
        "the mismatch appended nothing"
    );
}

#[test]
fn writes_to_a_follower_are_refused_with_the_leader_named() {
    let mut sim = Sim::new(3, Replication::Async);
    let t = sim.write("n2", 1, 1);
    let e = sim.error(t);
    assert_eq!(e.code, ErrorCode::NotLeader);
    assert!(e.definite);
    assert_eq!(e.leader.as_deref(), Some("n1"));
}

#[test]
fn naive_failover_discards_the_old_leaders_unreplicated_writes() {
    let mut sim = Sim::new(3, Replication::Async);
    sim.run(100);
    let t = sim.write("n1", 1, 1);
    sim.run(100);
    assert!(sim.ok(t));
    sim.crash("n2");
    sim.crash("n3");
    let lost = sim.write("n1", 2, 20);
    assert!(sim.ok(lost), "async acknowledges at once");
    sim.crash("n1");
    sim.start("n2");
    sim.start("n3");
    sim.run(2_000);
    assert_eq!(
        sim.leaders(),
        vec!["n2".to_string()],
        "equal positions: lowest id wins"
    );
    assert_eq!(sim.status("n2").epoch, 2);
    let t = sim.write("n2", 1, 3);
    assert!(sim.ok(t));
    sim.start("n1");
    sim.run(1_000);
    let s = sim.status("n1");
    assert_eq!((s.role, s.leader.as_deref()), (Role::Follower, Some("n2")));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(sim.read(n, 1), Some(3), "{n}");
        assert_eq!(sim.read(n, 2), None, "{n} still has the discarded write");
    }
    assert!(sim.logged(
        "n1",
        "discarded 1 of its own entries: [index 2 epoch 1 key 2 value 20]"
    ));
}

#[test]
fn a_deposed_leader_steps_down_and_loses_what_it_acknowledged_meanwhile() {
    let mut sim = Sim::new(3, Replication::Async);
    sim.run(100);
    sim.isolate("n1");
    sim.run(1_500);
    assert_eq!(
        sim.leaders(),
        vec!["n1".to_string(), "n2".to_string()],
        "split brain"
    );
    let lost = sim.write("n1", 5, 50);
    assert!(sim.ok(lost));
    let kept = sim.write("n2", 5, 60);
    sim.run(50);
    assert!(sim.ok(kept));
    sim.heal();
    sim.run(500);
    assert_eq!(sim.leaders(), vec!["n2".to_string()]);
    assert!(sim.logged("n1", "role: leader -> follower at epoch 2"));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(sim.read(n, 5), Some(60), "{n}");
    }
}

#[test]
fn of_two_leaders_in_one_epoch_the_higher_id_steps_down() {
    let mut sim = Sim::new(3, Replication::Async);
    sim.run(100);
    sim.crash("n1");
    // n2 and n3 cannot see each other, so each finds itself the best and takes epoch 2.
    sim.cut.insert(pair("n2", "n3"));
    sim.run(1_500);
    assert_eq!(sim.leaders(), vec!["n2".to_string(), "n3".to_string()]);
    assert_eq!((sim.status("n2").epoch, sim.status("n3").epoch), (2, 2));
    let a = sim.write("n2", 1, 2);
    let b = sim.write("n3", 1, 3);
    assert!(sim.ok(a) && sim.ok(b));
    // Both wrote index 1 of epoch 2 with different values: the prev-entry check alone
    // would take them for the same entry.
    sim.heal();
    sim.run(500);
    assert_eq!(sim.leaders(), vec!["n2".to_string()]);
    assert!(sim.logged("n3", "both lead epoch 2"));
    assert!(sim.logged("n3", "discarded 1 of its own entries"));
    assert_eq!(sim.read("n3", 1), Some(2));
    sim.start("n1");
    sim.run(500);
    assert_eq!(sim.read("n1", 1), Some(2));
}

#[test]
fn failover_promotes_the_most_up_to_date_follower_not_the_lowest_id() {
    let mut sim = Sim::new(3, Replication::Async);
    sim.run(100);
    sim.cut.insert(pair("n1", "n2"));
    let t = sim.write("n1", 1, 1);
    sim.run(100);
    assert!(sim.ok(t));
    assert_eq!(sim.read("n3", 1), Some(1));
    assert_eq!(sim.read("n2", 1), None);
    sim.crash("n1");
    sim.heal();
    sim.run(2_000);
    assert_eq!(sim.leaders(), vec!["n3".to_string()]);
    assert!(sim.logged("n2", "most up to date: n3"));
    assert_eq!(
        sim.read("n2", 1),
        Some(1),
        "the acknowledged write survived"
    );
}

#[test]
fn a_silent_follower_is_sent_at_most_max_inflight_entries_beyond_its_acknowledgements() {
    let mut sim = Sim::new(3, Replication::Async);
    sim.run(100);
    // n3 hears nothing from the leader, as if paused, while the rest carries on.
    sim.cut.insert(pair("n1", "n3"));
    let before = sim.sent.len();
    for v in 0..100 {
        sim.write("n1", 1, v);
        sim.run(10);
    }
    let max_inflight = sim.configs["n1"].max_inflight_entries;
    for (from, to, msg) in &sim.sent[before..] {
        if let (true, PeerMessage::Append { entries, .. }) = (from == "n1" && to == "n3", msg) {
            assert!(
                entries.iter().all(|e| e.index <= max_inflight),
                "sent index beyond the in-flight cap: {entries:?}"
            );
        }
    }
    sim.heal();
    sim.run(1_000);
    assert_eq!(sim.read("n3", 1), Some(99), "caught up after the pause");
    assert_eq!(sim.status("n3").last_index, 100);
}

#[test]
fn a_restarted_leader_comes_back_as_a_follower_with_no_leader() {
    let mut sim = Sim::new(3, Replication::Async);
    sim.run(100);
    sim.write("n1", 1, 1);
    sim.crash("n1");
    sim.start("n1");
    let s = sim.status("n1");
    assert_eq!((s.role, s.leader, s.epoch), (Role::Follower, None, 1));
    assert_eq!(sim.read("n1", 1), Some(1), "recovered from its own disk");
    sim.run(2_000);
    assert_eq!(sim.leaders().len(), 1);
    let leader = sim.leaders()[0].clone();
    assert_eq!(sim.status(&leader).epoch, 2);
}

#[test]
fn compaction_keeps_state_and_lagging_followers_catch_up_by_snapshot() {
    let mut sim = Sim::new(3, Replication::Async).with_config(|c| c.compact_after_entries = 10);
    sim.run(100);
    sim.crash("n3");
    for v in 0..30 {
        sim.write("n1", v % 4, v);
        sim.run(10);
    }
    let disk = sim.disks["n1"].clone();
    assert!(disk.snapshot.index > 0, "never compacted");
    assert!(disk.entries.len() <= 11);
    sim.start("n3");
    sim.run(1_000);
    assert!(sim.logged("n3", "installed a snapshot from n1"));
    for k in 0..4 {
        assert_eq!(sim.read("n3", k), sim.read("n1", k));
    }
    // And the leader rebuilds the same state from its compacted disk.
    sim.crash("n1");
    sim.start("n1");
    for k in 0..4 {
        assert_eq!(sim.read("n1", k), sim.read("n2", k));
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    fn scenario() -> Vec<(String, String)> {
        let mut sim = Sim::new(3, Replication::Async);
        sim.run(100);
        sim.crash("n1");
        sim.run(2_000);
        sim.start("n1");
        sim.run(500);
        sim.logs
    }
    let first = scenario();
    assert!(
        first
            .iter()
            .any(|(_, l)| l.contains("role: follower -> leader"))
    );
    assert_eq!(first, scenario());
}

#[test]
fn malformed_appends_are_refused_without_changing_the_log() {
    let mut sim = Sim::new(2, Replication::Async);
    let fx = sim.nodes.get_mut("n2").unwrap().on_peer(
        "n1",
        PeerMessage::Append {
            epoch: 1,
            prev_index: 0,
            prev_epoch: 0,
            entries: vec![Entry {
                index: 5,
                epoch: 1,
                key: 1,
                value: 1,
            }],
            commit_index: 5,
            leader_last_index: 5,
        },
        0,
    );
    assert!(matches!(
        fx.respond,
        Some(PeerMessage::AppendReply {
            outcome: AppendOutcome::Mismatch { .. },
            ..
        })
    ));
    assert!(fx.persist.is_empty());
    assert_eq!(sim.status("n2").last_index, 0);
    let fx = sim.nodes.get_mut("n2").unwrap().on_peer(
        "stranger",
        PeerMessage::PositionRequest { round: 1 },
        0,
    );
    assert!(fx.respond.is_none() && fx.log.len() == 1);
}

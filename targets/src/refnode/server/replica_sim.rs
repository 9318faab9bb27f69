//! An in-memory network and disk for multi-leader and leaderless nodes: crashes, restarts,
//! partitions and delayed links happen exactly where a test puts them, so every property is
//! checked deterministically.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::refnode::protocol::{
    ErrorReply, ReplicaMessage, ReplyBody, RequestBody, ResponseResult,
};

use super::node::ClientRequest;
use super::replica::{Record, Replica, ReplicaEffects};

/// Messages handled per `deliver`, far above what any test needs, so a livelock fails the
/// test instead of hanging it.
const MAX_DELIVERIES: usize = 200_000;

type Factory<M> = Box<dyn Fn(&str, Vec<Record>, u64) -> (M, ReplicaEffects)>;

pub struct Sim<M: Replica> {
    pub now_ms: u64,
    ids: Vec<String>,
    make: Factory<M>,
    pub nodes: BTreeMap<String, M>,
    pub disks: BTreeMap<String, Vec<Record>>,
    down: BTreeSet<String>,
    /// Unordered pairs that cannot reach each other: messages between them are dropped.
    cut: BTreeSet<(String, String)>,
    /// Directed links whose messages wait (in order) until released.
    held: BTreeSet<(String, String)>,
    network: VecDeque<(String, String, ReplicaMessage)>,
    parked: VecDeque<(String, String, ReplicaMessage)>,
    pub replies: BTreeMap<u64, ResponseResult>,
    pub logs: Vec<(String, String)>,
    next_token: u64,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl<M: Replica> Sim<M> {
    pub fn new(
        ids: &[&str],
        make: impl Fn(&str, Vec<Record>, u64) -> (M, ReplicaEffects) + 'static,
    ) -> Sim<M> {
        let mut sim = Sim {
            now_ms: 0,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            make: Box::new(make),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            held: BTreeSet::new(),
            network: VecDeque::new(),
            parked: VecDeque::new(),
            replies: BTreeMap::new(),
            logs: Vec::new(),
            next_token: 1,
        };
        for id in ids {
            sim.disks.insert(id.to_string(), Vec::new());
            sim.start(id);
        }
        sim
    }

    pub fn node(&self, id: &str) -> &M {
        &self.nodes[id]
    }

    /// Starts (or restarts) `id` from its disk; links to and from it reconnect.
    pub fn start(&mut self, id: &str) {
        let restart = self.nodes.contains_key(id);
        let (node, fx) = (self.make)(id, self.disks[id].clone(), self.now_ms);
        self.nodes.insert(id.to_string(), node);
        self.down.remove(id);
        self.apply(id, fx, None);
        if restart {
            for peer in self.ids.clone() {
                if peer == id || self.down.contains(&peer) {
                    continue;
                }
                let fx = self
                    .nodes
                    .get_mut(id)
                    .unwrap()
                    .on_peer_connected(&peer, self.now_ms);
                self.apply(id, fx, None);
                let fx = self
                    .nodes
                    .get_mut(&peer)
                    .unwrap()
                    .on_peer_connected(id, self.now_ms);
                self.apply(&peer, fx, None);
            }
        }
    }

    pub fn crash(&mut self, id: &str) {
        self.down.insert(id.to_string());
    }

    /// Crashes `id` and deletes its data: it restarts empty, as a new actor.
    pub fn wipe(&mut self, id: &str) {
        self.crash(id);
        self.disks.insert(id.to_string(), Vec::new());
    }

    pub fn cut(&mut self, a: &str, b: &str) {
        self.cut.insert(pair(a, b));
    }

    /// Cuts `group` off from every other node.
    pub fn partition(&mut self, group: &[&str]) {
        for a in group {
            for b in self.ids.clone() {
                if !group.contains(&b.as_str()) {
                    self.cut(a, &b);
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Messages from `from` to `to` wait until [`Sim::release`].
    pub fn hold(&mut self, from: &str, to: &str) {
        self.held.insert((from.to_string(), to.to_string()));
    }

    pub fn release(&mut self, from: &str, to: &str) {
        self.held.remove(&(from.to_string(), to.to_string()));
        let (go, stay): (VecDeque<_>, VecDeque<_>) = self
            .parked
            .drain(..)
            .partition(|(f, t, _)| f == from && t == to);
        self.parked = stay;
        self.network.extend(go);
    }

    fn reachable(&self, a: &str, b: &str) -> bool {
        !self.down.contains(a) && !self.down.contains(b) && !self.cut.contains(&pair(a, b))
    }

    pub fn apply(&mut self, at: &str, fx: ReplicaEffects, reply_to: Option<&str>) {
        for line in fx.log {
            self.logs.push((at.to_string(), line));
        }
        let disk = self.disks.get_mut(at).unwrap();
        disk.extend(fx.persist);
        if let Some(records) = fx.rewrite {
            *disk = records;
        }
        if let (Some(msg), Some(to)) = (fx.respond, reply_to) {
            self.network
                .push_back((at.to_string(), to.to_string(), msg));
        }
        for (to, msg) in fx.send {
            self.network.push_back((at.to_string(), to, msg));
        }
        for (token, result) in fx.replies {
            let earlier = self.replies.insert(token, result);
            assert!(earlier.is_none(), "token {token} answered twice");
        }
    }

    /// Delivers messages until the network is quiet (held links wait).
    pub fn deliver(&mut self) {
        for _ in 0..MAX_DELIVERIES {
            let Some((from, to, msg)) = self.network.pop_front() else {
                return;
            };
            if !self.reachable(&from, &to) {
                continue;
            }
            if self.held.contains(&(from.clone(), to.clone())) {
                self.parked.push_back((from, to, msg));
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
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms / 10 {
            self.now_ms += 10;
            for id in self.ids.clone() {
                if self.down.contains(&id) {
                    continue;
                }
                let fx = self.nodes.get_mut(&id).unwrap().on_tick(self.now_ms);
                self.apply(&id, fx, None);
            }
            self.deliver();
        }
    }

    pub fn request(&mut self, at: &str, body: RequestBody) -> u64 {
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

    pub fn reply(&self, token: u64) -> Option<&ResponseResult> {
        self.replies.get(&token)
    }

    pub fn ok(&self, token: u64) -> ReplyBody {
        match self.replies.get(&token) {
            Some(ResponseResult::Ok(r)) => r.clone(),
            other => panic!("expected success for token {token}, got {other:?}"),
        }
    }

    pub fn error(&self, token: u64) -> ErrorReply {
        match self.replies.get(&token) {
            Some(ResponseResult::Err(e)) => e.clone(),
            other => panic!("expected an error for token {token}, got {other:?}"),
        }
    }

    /// A request answered at once (reads and writes of multi-leader nodes, local reads).
    pub fn call(&mut self, at: &str, body: RequestBody) -> ReplyBody {
        let t = self.request(at, body);
        self.ok(t)
    }

    pub fn logged(&self, at: &str, needle: &str) -> bool {
        self.logs
            .iter()
            .any(|(id, line)| id == at && line.contains(needle))
    }
}

//! A small Maelstrom node, the worked example for splitbrain's Maelstrom host. It speaks the
//! plain protocol (JSON lines on stdin and stdout, diagnostics on stderr) and handles the
//! workloads `echo`, `unique-ids` (`generate`), `broadcast` (`topology`, `broadcast`,
//! `read`: messages spread by gossip that is retried until acknowledged, so they survive
//! partitions and loss), `g-counter` and `pn-counter` (`add {delta}`, `read` of the total:
//! each node counts its own increments and decrements and sends its whole table to every
//! other node on each tick, merged by maximum, so it converges once messages get through),
//! and `lin-kv` (`read` / `write` / `cas` with a key, passed on to the `lin-kv` service and
//! its answer passed back).
//!
//! A keyless `read` answers the broadcast messages once a `topology` came (the host sends
//! one for broadcast only), and the counter's total otherwise.
//!
//! Run under the host: `MaelstromConfig { binary: "maelstrom-echo-broadcast".into(), .. }`.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value as Json, json};

/// How often unacknowledged broadcast messages are offered to the neighbours again.
const GOSSIP_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Node {
    id: String,
    peers: Vec<String>,
    next_msg_id: u64,
    next_unique: u64,
    messages: BTreeSet<i64>,
    /// Whether a `topology` came: keyless reads are broadcast reads, not counter reads.
    broadcast: bool,
    /// Every node named in `init`, for the counter's gossip.
    all_peers: Vec<String>,
    /// Per node, the (increments, decrements) it counted; each node writes only its own.
    counts: HashMap<String, (i64, i64)>,
    /// Per neighbour, the messages it is known to have.
    known: HashMap<String, BTreeSet<i64>>,
    /// Our request to the lin-kv service -> (client, client's msg_id).
    pending: HashMap<u64, (String, Json)>,
}

impl Node {
    fn send(&mut self, dest: &str, mut body: Json, out: &mut impl Write) {
        if body.get("msg_id").is_none() && body.get("in_reply_to").is_none() {
            self.next_msg_id += 1;
            body["msg_id"] = json!(self.next_msg_id);
        }
        let msg = json!({"src": self.id, "dest": dest, "body": body});
        // A closed stdout means the host is gone; the stdin loop will end too.
        let _ = writeln!(out, "{msg}");
        let _ = out.flush();
    }

    fn reply(&mut self, to: &Json, mut body: Json, out: &mut impl Write) {
        body["in_reply_to"] = to["body"]["msg_id"].clone();
        let dest = to["src"].as_str().unwrap_or("").to_string();
        self.send(&dest, body, out);
    }

    fn handle(&mut self, msg: &Json, out: &mut impl Write) {
        let body = &msg["body"];
        let src = msg["src"].as_str().unwrap_or("");
        match body["type"].as_str().unwrap_or("") {
            "init" => {
                self.id = body["node_id"].as_str().unwrap_or("").to_string();
                self.peers = body["node_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .filter(|n| *n != self.id)
                    .map(str::to_string)
                    .collect();
                self.all_peers = self.peers.clone();
                self.reply(msg, json!({"type": "init_ok"}), out);
            }
            "echo" => self.reply(msg, json!({"type": "echo_ok", "echo": body["echo"]}), out),
            "generate" => {
                self.next_unique += 1;
                let id = format!("{}-{}", self.id, self.next_unique);
                self.reply(msg, json!({"type": "generate_ok", "id": id}), out);
            }
            "topology" => {
                self.broadcast = true;
                if let Some(mine) = body["topology"][&self.id].as_array() {
                    self.peers = mine
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect();
                }
                self.reply(msg, json!({"type": "topology_ok"}), out);
            }
            "broadcast" => {
                if let Some(m) = body["message"].as_i64() {
                    self.messages.insert(m);
                }
                self.reply(msg, json!({"type": "broadcast_ok"}), out);
            }
            "gossip" => {
                let got: Vec<i64> = ints(&body["messages"]);
                self.messages.extend(&got);
                self.known.entry(src.to_string()).or_default().extend(&got);
                self.reply(msg, json!({"type": "gossip_ok", "messages": got}), out);
            }
            "add" if body.get("delta").is_some() => {
                let delta = body["delta"].as_i64().unwrap_or(0);
                let mine = self.counts.entry(self.id.clone()).or_default();
                if delta >= 0 {
                    mine.0 += delta;
                } else {
                    mine.1 -= delta;
                }
                self.reply(msg, json!({"type": "add_ok"}), out);
            }
            "counts" => {
                for (node, pair) in body["counts"].as_object().into_iter().flatten() {
                    let theirs = (pair[0].as_i64().unwrap_or(0), pair[1].as_i64().unwrap_or(0));
                    let ours = self.counts.entry(node.clone()).or_default();
                    *ours = (ours.0.max(theirs.0), ours.1.max(theirs.1));
                }
            }
            "gossip_ok" => {
                let got = ints(&body["messages"]);
                self.known.entry(src.to_string()).or_default().extend(got);
            }
            "read" | "write" | "cas" if body.get("key").is_some() => {
                // Pass it on to the lin-kv service under our own msg_id.
                self.next_msg_id += 1;
                let ours = self.next_msg_id;
                self.pending
                    .insert(ours, (src.to_string(), body["msg_id"].clone()));
                let mut forward = body.clone();
                forward["msg_id"] = json!(ours);
                self.send("lin-kv", forward, out);
            }
            "read" if !self.broadcast => {
                let total: i64 = self.counts.values().map(|(inc, dec)| inc - dec).sum();
                self.reply(msg, json!({"type": "read_ok", "value": total}), out);
            }
            "read" => {
                let all: Vec<i64> = self.messages.iter().copied().collect();
                self.reply(msg, json!({"type": "read_ok", "messages": all}), out);
            }
            _ if src == "lin-kv" => {
                let Some(ours) = body["in_reply_to"].as_u64() else {
                    return;
                };
                if let Some((client, their_id)) = self.pending.remove(&ours) {
                    let mut back = body.clone();
                    back["in_reply_to"] = their_id;
                    self.send(&client, back, out);
                }
            }
            other => {
                let text = format!("{other} is not supported");
                self.reply(msg, json!({"type": "error", "code": 10, "text": text}), out);
            }
        }
    }

    /// Offers each neighbour the messages it is not known to have, and every node the
    /// counter table (no acknowledgement: the next tick sends it again).
    fn gossip(&mut self, out: &mut impl Write) {
        if !self.counts.is_empty() {
            let counts: serde_json::Map<String, Json> = self
                .counts
                .iter()
                .map(|(n, (inc, dec))| (n.clone(), json!([inc, dec])))
                .collect();
            for peer in self.all_peers.clone() {
                self.send(&peer, json!({"type": "counts", "counts": counts}), out);
            }
        }
        for peer in self.peers.clone() {
            let known = self.known.entry(peer.clone()).or_default();
            let missing: Vec<i64> = self.messages.difference(known).copied().collect();
            if !missing.is_empty() {
                self.send(&peer, json!({"type": "gossip", "messages": missing}), out);
            }
        }
    }
}

fn ints(v: &Json) -> Vec<i64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_i64)
        .collect()
}

fn main() {
    let (tx, rx) = mpsc::sync_channel::<String>(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut node = Node::default();
    let mut last_gossip = std::time::Instant::now();
    loop {
        match rx.recv_timeout(GOSSIP_EVERY) {
            Ok(line) => match serde_json::from_str::<Json>(&line) {
                Ok(msg) => node.handle(&msg, &mut out),
                Err(e) => eprintln!("{}: bad message {line:?}: {e}", node.id),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdin closed: the host is done with us.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_gossip.elapsed() >= GOSSIP_EVERY {
            node.gossip(&mut out);
            last_gossip = std::time::Instant::now();
        }
    }
}

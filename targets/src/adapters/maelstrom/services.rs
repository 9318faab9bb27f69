//! Maelstrom's built-in services, which nodes address by name like any other node:
//! `lin-kv` (linearizable), `seq-kv` (sequentially consistent: reads may return any state
//! at or after the caller's last one), `lww-kv` (last-write-wins over three replicas that
//! converge lazily: stale reads and lost compare-and-sets on purpose) and `lin-tso` (a
//! timestamp oracle). Pure: a request body in, a reply body out; randomness from a seed.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value as Json, json};

/// The service names, as nodes address them.
pub const SERVICES: [&str; 4] = ["lin-kv", "seq-kv", "lww-kv", "lin-tso"];

/// Versions of one key that `seq-kv` keeps (older ones are forgotten).
const SEQ_VERSIONS_KEPT: usize = 32;
const LWW_REPLICAS: usize = 3;

/// All four services, with their state.
#[derive(Debug)]
pub struct Services {
    lin: HashMap<String, Json>,
    seq: SeqKv,
    lww: LwwKv,
    tso: u64,
    rng: SplitMix64,
}

impl Services {
    pub fn new(seed: u64) -> Services {
        Services {
            lin: HashMap::new(),
            seq: SeqKv::default(),
            lww: LwwKv::default(),
            tso: 0,
            rng: SplitMix64(seed),
        }
    }

    pub fn is_service(name: &str) -> bool {
        SERVICES.contains(&name)
    }

    /// The reply body to `body`, sent by `src` to `service`.
    pub fn handle(&mut self, service: &str, src: &str, body: &Json) -> Json {
        let mut reply = match service {
            "lin-kv" => kv_op(body, |key, op| lin_op(&mut self.lin, key, op)),
            "seq-kv" => {
                let (seq, rng) = (&mut self.seq, &mut self.rng);
                kv_op(body, |key, op| seq.op(src, key, op, rng))
            }
            "lww-kv" => {
                let (lww, rng) = (&mut self.lww, &mut self.rng);
                kv_op(body, |key, op| lww.op(key, op, rng))
            }
            "lin-tso" if body["type"] == "ts" => {
                self.tso += 1;
                json!({"type": "ts_ok", "ts": self.tso})
            }
            _ => error(10, &format!("{service} does not support {}", body["type"])),
        };
        if let Some(id) = body.get("msg_id") {
            reply["in_reply_to"] = id.clone();
        }
        reply
    }
}

/// A key-value request, decoded.
#[derive(Debug, Clone, PartialEq)]
enum KvOp {
    Read,
    Write(Json),
    Cas { from: Json, to: Json, create: bool },
}

fn kv_op(body: &Json, apply: impl FnOnce(String, KvOp) -> Json) -> Json {
    let key = body["key"].to_string();
    let op = match body["type"].as_str() {
        Some("read") => KvOp::Read,
        Some("write") => KvOp::Write(body["value"].clone()),
        Some("cas") => KvOp::Cas {
            from: body["from"].clone(),
            to: body["to"].clone(),
            create: body["create_if_not_exists"].as_bool().unwrap_or(false),
        },
        _ => return error(10, &format!("unsupported request {}", body["type"])),
    };
    apply(key, op)
}

fn error(code: i64, text: &str) -> Json {
    json!({"type": "error", "code": code, "text": text})
}

/// Applies `op` to `current` (the value the key has for this caller): the reply and, for
/// a change, the new value.
fn decide(current: Option<&Json>, op: &KvOp) -> (Json, Option<Json>) {
    match (op, current) {
        (KvOp::Read, Some(v)) => (json!({"type": "read_ok", "value": v}), None),
        (KvOp::Read, None) => (error(20, "key does not exist"), None),
        (KvOp::Write(v), _) => (json!({"type": "write_ok"}), Some(v.clone())),
        (
            KvOp::Cas {
                to, create: true, ..
            },
            None,
        ) => (json!({"type": "cas_ok"}), Some(to.clone())),
        (KvOp::Cas { .. }, None) => (error(20, "key does not exist"), None),
        (KvOp::Cas { from, to, .. }, Some(v)) if v == from => {
            (json!({"type": "cas_ok"}), Some(to.clone()))
        }
        (KvOp::Cas { from, .. }, Some(v)) => {
            (error(22, &format!("expected {from}, but had {v}")), None)
        }
    }
}

fn lin_op(map: &mut HashMap<String, Json>, key: String, op: KvOp) -> Json {
    let (reply, new) = decide(map.get(&key), &op);
    if let Some(v) = new {
        map.insert(key, v);
    }
    reply
}

/// Sequential consistency: one order of writes (numbered), and each caller sees a prefix
/// of it that never shrinks, possibly lagging behind the newest write.
#[derive(Debug, Default)]
struct SeqKv {
    /// Per key, its recent versions `(write number, value)`, oldest first.
    versions: HashMap<String, Vec<(u64, Json)>>,
    writes: u64,
    /// Per caller, the prefix of the write order it has seen.
    seen: HashMap<String, u64>,
}

impl SeqKv {
    fn op(&mut self, src: &str, key: String, op: KvOp, rng: &mut SplitMix64) -> Json {
        let seen = self.seen.get(src).copied().unwrap_or(0);
        let versions = self.versions.entry(key).or_default();
        if op == KvOp::Read {
            // Any view from the caller's last one up to the newest, but not before the
            // oldest version still kept.
            let oldest = versions.first().map_or(0, |v| v.0.saturating_sub(1));
            let lo = seen.max(oldest.min(self.writes));
            let view = lo + rng.below(self.writes - lo + 1);
            self.seen.insert(src.to_string(), view);
            let current = versions
                .iter()
                .rev()
                .find(|(n, _)| *n <= view)
                .map(|(_, v)| v);
            return decide(current, &op).0;
        }
        // Changes act on the newest state, and the caller sees everything up to them.
        let (reply, new) = decide(versions.last().map(|(_, v)| v), &op);
        if let Some(v) = new {
            self.writes += 1;
            versions.push((self.writes, v));
            if versions.len() > SEQ_VERSIONS_KEPT {
                versions.remove(0);
            }
        }
        self.seen.insert(src.to_string(), self.writes);
        reply
    }
}

/// Three replicas of `key -> (timestamp, value)`; each request goes to one at random, and a
/// key's newest version spreads to all of them only now and then.
#[derive(Debug, Default)]
struct LwwKv {
    replicas: [BTreeMap<String, (u64, Json)>; LWW_REPLICAS],
    clock: u64,
}

impl LwwKv {
    fn op(&mut self, key: String, op: KvOp, rng: &mut SplitMix64) -> Json {
        let r = rng.below(LWW_REPLICAS as u64) as usize;
        let (reply, new) = decide(self.replicas[r].get(&key).map(|(_, v)| v), &op);
        if let Some(v) = new {
            self.clock += 1;
            self.replicas[r].insert(key.clone(), (self.clock, v));
        }
        if rng.below(10) < 3 {
            let newest = self
                .replicas
                .iter()
                .filter_map(|m| m.get(&key))
                .max_by_key(|(ts, _)| *ts)
                .cloned();
            if let Some(newest) = newest {
                for m in &mut self.replicas {
                    m.insert(key.clone(), newest.clone());
                }
            }
        }
        reply
    }
}

/// A small seeded generator (SplitMix64), enough for the services' choices.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &mut Services, service: &str, src: &str, body: Json) -> Json {
        s.handle(service, src, &body)
    }

    #[test]
    fn lin_kv_reads_writes_and_compares_atomically() {
        let mut s = Services::new(1);
        let r = req(
            &mut s,
            "lin-kv",
            "n1",
            json!({"type": "read", "key": "x", "msg_id": 4}),
        );
        assert_eq!(
            (r["code"].clone(), r["in_reply_to"].clone()),
            (json!(20), json!(4))
        );
        let c = req(
            &mut s,
            "lin-kv",
            "n1",
            json!({"type": "cas", "key": "x", "from": 1, "to": 2, "create_if_not_exists": true}),
        );
        assert_eq!(c["type"], "cas_ok");
        let c = req(
            &mut s,
            "lin-kv",
            "n2",
            json!({"type": "cas", "key": "x", "from": 1, "to": 3}),
        );
        assert_eq!(c["code"], 22);
        let w = req(
            &mut s,
            "lin-kv",
            "n2",
            json!({"type": "write", "key": "x", "value": 5}),
        );
        assert_eq!(w["type"], "write_ok");
        let r = req(&mut s, "lin-kv", "n3", json!({"type": "read", "key": "x"}));
        assert_eq!(r["value"], 5);
    }

    #[test]
    fn seq_kv_reads_never_go_back_and_callers_see_their_own_writes() {
        let mut s = Services::new(7);
        for v in 1..=20 {
            req(
                &mut s,
                "seq-kv",
                "n1",
                json!({"type": "write", "key": "k", "value": v}),
            );
            let own = req(&mut s, "seq-kv", "n1", json!({"type": "read", "key": "k"}));
            assert_eq!(own["value"], v, "n1 sees its own write");
        }
        let mut last = 0;
        let mut stale = false;
        for _ in 0..50 {
            let r = req(&mut s, "seq-kv", "n2", json!({"type": "read", "key": "k"}));
            let v = r["value"].as_i64().unwrap_or(0);
            assert!(v >= last, "n2 went back from {last} to {v}");
            stale |= v < 20;
            last = v;
        }
        assert!(stale, "a lagging view was never chosen");
    }

    #[test]
    fn lww_kv_serves_stale_values_but_converges() {
        let mut s = Services::new(3);
        req(
            &mut s,
            "lww-kv",
            "n1",
            json!({"type": "write", "key": "k", "value": 1}),
        );
        let mut answers = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let r = req(&mut s, "lww-kv", "n2", json!({"type": "read", "key": "k"}));
            answers.insert(r.to_string());
        }
        assert!(answers.iter().any(|a| a.contains("read_ok")));
        let last = req(&mut s, "lww-kv", "n2", json!({"type": "read", "key": "k"}));
        assert_eq!(last["value"], 1, "converged after many operations");
    }

    #[test]
    fn lin_tso_counts_up_and_unknown_requests_are_not_supported() {
        let mut s = Services::new(0);
        let a = req(&mut s, "lin-tso", "n1", json!({"type": "ts"}));
        let b = req(&mut s, "lin-tso", "n2", json!({"type": "ts"}));
        assert!(b["ts"].as_u64() > a["ts"].as_u64());
        assert_eq!(
            req(&mut s, "lin-tso", "n1", json!({"type": "read"}))["code"],
            10
        );
    }
}

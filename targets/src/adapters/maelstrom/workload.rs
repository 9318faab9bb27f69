//! The client side of Maelstrom's workloads: how an invocation becomes a request body and
//! how the reply (or an error, or silence) becomes a completion. Pure functions.
//!
//! | workload | invocation | request | reply → value |
//! |---|---|---|---|
//! | echo | `echo v` (`F::Other("echo")`) | `echo {echo}` | `echo_ok` → the echo |
//! | unique-ids | `generate` | `generate` | `generate_ok` → the id |
//! | broadcast | `broadcast v` | `broadcast {message}` | `broadcast_ok` |
//! | broadcast, g-set, counters | `read` without key | `read` | `read_ok` → sorted `messages` / `value` |
//! | g-set | `add v` | `add {element}` | `add_ok` |
//! | g-counter, pn-counter | `add v` with `Value::Map{delta}` or `increment v` | `add {delta}` | `add_ok` |
//! | lin-kv | `read k` / `write k v` / `cas k [from to]` | `read` / `write` / `cas` | `read_ok` → value |
//! | txn-list-append, txn-rw-register | `txn [[f k v] ...]` | `txn {txn}` | `txn_ok` → the completed micro-ops |
//!
//! An error reply is `fail` when its code is definite (Maelstrom's codes 1, 10, 11, 12, 14,
//! 20, 21, 22, 30) and `info` otherwise; no reply in time is `info`, except for reads,
//! which change nothing and so are `fail`.

use histories::{F, Key, MicroOp, OpType, Value};
use serde_json::{Value as Json, json};

use crate::db::{Completion, Invocation};

/// Maelstrom's error codes whose meaning is "this certainly did not happen".
pub const DEFINITE_ERROR_CODES: [i64; 9] = [1, 10, 11, 12, 14, 20, 21, 22, 30];

/// Whether a Maelstrom error code says the operation certainly had no effect.
pub fn error_is_definite(code: i64) -> bool {
    DEFINITE_ERROR_CODES.contains(&code)
}

/// The request body (without `msg_id`) for an invocation, or why there is none.
pub fn request_for(call: &Invocation) -> Result<Json, String> {
    let key = call.key.as_ref().map(key_json);
    let int = |what: &str| {
        call.value
            .as_int()
            .ok_or_else(|| format!("{what} needs an integer, got {}", call.value))
    };
    match (&call.f, key) {
        (F::Other(f), _) if f == "echo" => {
            Ok(json!({"type": "echo", "echo": to_json(&call.value)}))
        }
        (F::Other(f), _) if f == "generate" => Ok(json!({"type": "generate"})),
        (F::Other(f), _) if f == "broadcast" => {
            Ok(json!({"type": "broadcast", "message": int("broadcast")?}))
        }
        (F::Other(f), _) if f == "increment" => {
            Ok(json!({"type": "add", "delta": int("increment")?}))
        }
        (F::Add, _) => match &call.value {
            Value::Map(m) if m.contains_key("delta") => {
                Ok(json!({"type": "add", "delta": to_json(&m["delta"])}))
            }
            v => Ok(json!({"type": "add", "element": to_json(v)})),
        },
        (F::Read, None) => Ok(json!({"type": "read"})),
        (F::Read, Some(k)) => Ok(json!({"type": "read", "key": k})),
        (F::Write, Some(k)) => {
            Ok(json!({"type": "write", "key": k, "value": to_json(&call.value)}))
        }
        (F::Cas, Some(k)) => match call.value.as_cas() {
            Some((from, to)) => Ok(json!({"type": "cas", "key": k, "from": from, "to": to})),
            None => Err(format!("cas needs [from to], got {}", call.value)),
        },
        (F::Txn, _) => {
            let mops = super::super::txn_ops(call)?;
            let txn: Vec<Json> = mops
                .iter()
                .map(|m| json!([m.f.as_str(), key_json(&m.key), to_json(&m.value)]))
                .collect();
            Ok(json!({"type": "txn", "txn": txn}))
        }
        (f, key) => Err(format!("no Maelstrom workload has {f} (key {key:?})")),
    }
}

/// The completion for a reply body to `call`.
pub fn completion_for(call: &Invocation, node: &str, reply: &Json) -> Completion {
    let done = |kind, value, error| Completion {
        kind,
        value,
        node: Some(node.to_string()),
        error,
    };
    let typ = reply["type"].as_str().unwrap_or("");
    if typ == "error" {
        let code = reply["code"].as_i64().unwrap_or(-1);
        let text = reply["text"].as_str().unwrap_or("");
        let kind = if error_is_definite(code) || call.f == F::Read {
            OpType::Fail
        } else {
            OpType::Info
        };
        let value = if call.f == F::Read {
            Value::Nil
        } else {
            call.value.clone()
        };
        return done(kind, value, Some(format!("error {code}: {text}")));
    }
    let expected = match request_for(call) {
        Ok(req) => format!("{}_ok", req["type"].as_str().unwrap_or("")),
        Err(e) => return done(OpType::Fail, call.value.clone(), Some(e)),
    };
    if typ != expected {
        // A reply of the wrong kind says nothing about whether the request took effect.
        let kind = if call.f == F::Read {
            OpType::Fail
        } else {
            OpType::Info
        };
        return done(
            kind,
            call.value.clone(),
            Some(format!("expected {expected}, got {reply}")),
        );
    }
    let value = match &call.f {
        F::Other(f) if f == "echo" => from_json(&reply["echo"]),
        F::Other(f) if f == "generate" => from_json(&reply["id"]),
        F::Read if call.key.is_none() => {
            let v = if reply.get("messages").is_some() {
                &reply["messages"]
            } else {
                &reply["value"]
            };
            sorted(from_json(v))
        }
        F::Read => from_json(&reply["value"]),
        F::Txn => match reply["txn"].as_array() {
            Some(items) => match items
                .iter()
                .map(|m| MicroOp::from_value(&from_json(m)))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(mops) => Value::Txn(mops),
                Err(e) => return done(OpType::Info, call.value.clone(), Some(e)),
            },
            None => {
                return done(
                    OpType::Info,
                    call.value.clone(),
                    Some("txn_ok without txn".into()),
                );
            }
        },
        _ => call.value.clone(),
    };
    done(OpType::Ok, value, None)
}

/// The completion when no reply came in time: a read changed nothing (`fail`); anything
/// else may have happened (`info`).
pub fn timed_out(call: &Invocation, node: &str) -> Completion {
    let (kind, value) = if call.f == F::Read {
        (OpType::Fail, Value::Nil)
    } else {
        (OpType::Info, call.value.clone())
    };
    Completion {
        kind,
        value,
        node: Some(node.to_string()),
        error: Some("timeout".into()),
    }
}

fn key_json(k: &Key) -> Json {
    match k {
        Key::Int(i) => json!(i),
        Key::Str(s) => json!(s),
    }
}

pub(crate) fn to_json(v: &Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

pub(crate) fn from_json(v: &Json) -> Value {
    serde_json::from_value(v.clone()).unwrap_or_else(|_| Value::Str(v.to_string()))
}

fn sorted(v: Value) -> Value {
    match v {
        Value::List(mut items) => {
            items.sort_by(|a, b| match (a, b) {
                (Value::Int(x), Value::Int(y)) => x.cmp(y),
                _ => a.to_string().cmp(&b.to_string()),
            });
            Value::List(items)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use histories::MicroF;

    use super::*;

    fn inv(f: F, key: Option<i64>, value: Value) -> Invocation {
        Invocation {
            f,
            key: key.map(Key::Int),
            value,
        }
    }

    #[test]
    fn workload_ops_become_maelstrom_requests() {
        let echo = inv(F::Other("echo".into()), None, Value::Str("hi".into()));
        assert_eq!(
            request_for(&echo).unwrap(),
            json!({"type": "echo", "echo": "hi"})
        );
        let cas = inv(
            F::Cas,
            Some(3),
            Value::List(vec![Value::Int(1), Value::Int(2)]),
        );
        assert_eq!(
            request_for(&cas).unwrap(),
            json!({"type": "cas", "key": 3, "from": 1, "to": 2})
        );
        let txn = Invocation {
            f: F::Txn,
            key: None,
            value: Value::Txn(vec![MicroOp {
                f: MicroF::Append,
                key: Key::Int(1),
                value: Value::Int(5),
            }]),
        };
        assert_eq!(
            request_for(&txn).unwrap(),
            json!({"type": "txn", "txn": [["append", 1, 5]]})
        );
        assert_eq!(
            request_for(&inv(F::Add, None, Value::Int(4))).unwrap(),
            json!({"type": "add", "element": 4})
        );
        assert!(request_for(&inv(F::Write, None, Value::Int(1))).is_err());
    }

    #[test]
    fn replies_become_completions_with_definite_and_indefinite_errors() {
        let read = inv(F::Read, None, Value::Nil);
        let ok = completion_for(
            &read,
            "n1",
            &json!({"type": "read_ok", "messages": [3, 1, 2]}),
        );
        assert_eq!(
            (ok.kind, ok.value),
            (
                OpType::Ok,
                Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
            )
        );
        let write = inv(F::Write, Some(1), Value::Int(2));
        let refused = completion_for(
            &write,
            "n1",
            &json!({"type": "error", "code": 22, "text": "no"}),
        );
        assert_eq!(refused.kind, OpType::Fail);
        let crashed = completion_for(&write, "n1", &json!({"type": "error", "code": 13}));
        assert_eq!(crashed.kind, OpType::Info);
        let custom = completion_for(&write, "n1", &json!({"type": "error", "code": 1000}));
        assert_eq!(custom.kind, OpType::Info);
        assert_eq!(timed_out(&write, "n1").kind, OpType::Info);
        assert_eq!(timed_out(&read, "n1").kind, OpType::Fail);
        let txn = Invocation {
            f: F::Txn,
            key: None,
            value: Value::Txn(vec![MicroOp {
                f: MicroF::Read,
                key: Key::Int(1),
                value: Value::Nil,
            }]),
        };
        let done = completion_for(
            &txn,
            "n2",
            &json!({"type": "txn_ok", "txn": [["r", 1, [1, 2]]]}),
        );
        assert_eq!(done.kind, OpType::Ok);
        assert_eq!(
            done.value,
            Value::Txn(vec![MicroOp {
                f: MicroF::Read,
                key: Key::Int(1),
                value: Value::List(vec![Value::Int(1), Value::Int(2)]),
            }])
        );
    }
}

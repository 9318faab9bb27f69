//! The operation model: what one line of a history says.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether an operation line is the start of a call or one of its three possible ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The client is about to send the request.
    Invoke,
    /// The operation definitely happened, with the returned value.
    Ok,
    /// The operation definitely did not happen.
    Fail,
    /// Indeterminate: the operation may have happened, at any point after its invocation, or
    /// never. The process that issued it is considered crashed and never invokes again.
    Info,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<OpType> {
        match s {
            "invoke" => Some(OpType::Invoke),
            "ok" => Some(OpType::Ok),
            "fail" => Some(OpType::Fail),
            "info" => Some(OpType::Info),
            _ => None,
        }
    }
}

/// Who performed an operation: a client process (numbered as in Jepsen: a worker that crashes
/// continues under a new process number) or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a process number or \"nemesis\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Process, E> {
                u64::try_from(v)
                    .map(Process::Client)
                    .map_err(|_| E::custom("a process number must not be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Process, E> {
                if v == "nemesis" {
                    Ok(Process::Nemesis)
                } else {
                    Err(E::custom(format!(
                        "expected a process number or \"nemesis\", found \"{v}\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The function an operation calls. The names are Jepsen's; anything else (nemesis faults,
/// workload-specific calls) is kept verbatim in `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum F {
    Read,
    Write,
    Cas,
    Txn,
    Get,
    Put,
    Append,
    Add,
    Other(String),
}

impl F {
    pub fn as_str(&self) -> &str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Txn => "txn",
            F::Get => "get",
            F::Put => "put",
            F::Append => "append",
            F::Add => "add",
            F::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> F {
        match s {
            "read" => F::Read,
            "write" => F::Write,
            "cas" => F::Cas,
            "txn" => F::Txn,
            "get" => F::Get,
            "put" => F::Put,
            "append" => F::Append,
            "add" => F::Add,
            other => F::Other(other.to_string()),
        }
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for F {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for F {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(F::parse(&s))
    }
}

/// A key of a key-value operation or micro-operation: an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    Int(i64),
    Str(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(k) => write!(f, "{k}"),
            Key::Str(k) => write!(f, "{k:?}"),
        }
    }
}

/// The function of a micro-operation inside a transaction, as Elle names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MicroF {
    /// `[:append k v]`: append `v` to the list at `k`.
    Append,
    /// `[:r k v]`: read `k`; `v` is nil before completion.
    Read,
    /// `[:w k v]`: overwrite `k` with `v`.
    Write,
}

impl MicroF {
    pub fn as_str(self) -> &'static str {
        match self {
            MicroF::Append => "append",
            MicroF::Read => "r",
            MicroF::Write => "w",
        }
    }

    pub fn parse(s: &str) -> Option<MicroF> {
        match s {
            "append" => Some(MicroF::Append),
            "r" => Some(MicroF::Read),
            "w" => Some(MicroF::Write),
            _ => None,
        }
    }
}

/// One micro-operation of a transaction: `[f key value]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MicroOp {
    pub f: MicroF,
    pub key: Key,
    pub value: Value,
}

impl MicroOp {
    /// Parses `[f key value]` from a generic value; says what was expected when it is not one.
    pub fn from_value(v: &Value) -> Result<MicroOp, String> {
        let Value::List(items) = v else {
            return Err(format!("expected a micro-op [f key value], found {v}"));
        };
        let [f, key, value] = items.as_slice() else {
            return Err(format!(
                "expected a micro-op of 3 elements [f key value], found {} elements",
                items.len()
            ));
        };
        let f = match f {
            Value::Str(s) => MicroF::parse(s),
            _ => None,
        }
        .ok_or_else(|| format!("expected a micro-op function append, r or w, found {f}"))?;
        let key = match key {
            Value::Int(k) => Key::Int(*k),
            Value::Str(k) => Key::Str(k.clone()),
            other => return Err(format!("expected an integer or string key, found {other}")),
        };
        Ok(MicroOp {
            f,
            key,
            value: value.clone(),
        })
    }

    pub fn to_value(&self) -> Value {
        Value::List(vec![
            Value::Str(self.f.as_str().to_string()),
            match &self.key {
                Key::Int(k) => Value::Int(*k),
                Key::Str(k) => Value::Str(k.clone()),
            },
            self.value.clone(),
        ])
    }
}

/// The value an operation carries: the argument on invoke, the result on completion.
///
/// Registers carry `Int` or `Nil` (absent); cas carries `List([from, to])`; transactions carry
/// `Txn`; nemesis operations carry whatever describes the fault (often `Str` or `Map`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Value {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// The micro-operations of a `txn` operation. Only produced for `f = txn`.
    Txn(Vec<MicroOp>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Reads `[from to]`, the argument of a compare-and-set.
    pub fn as_cas(&self) -> Option<(i64, i64)> {
        match self {
            Value::List(items) => match items.as_slice() {
                [Value::Int(from), Value::Int(to)] => Some((*from, *to)),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Value::Txn(mops) => {
                f.write_str("[")?;
                for (i, m) in mops.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "[{} {} {}]", m.f.as_str(), m.key, m.value)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Str(v) => s.serialize_str(v),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Value::Txn(mops) => {
                let mut seq = s.serialize_seq(Some(mops.len()))?;
                for m in mops {
                    seq.serialize_element(&(m.f.as_str(), &m.key, &m.value))?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null, a boolean, an integer, a string, a list or a map")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Nil)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Nil)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
                i64::try_from(v)
                    .map(Value::Int)
                    .map_err(|_| E::custom(format!("integer {v} does not fit in 64 signed bits")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
                Err(E::custom(format!(
                    "expected an integer, found the fraction {v}"
                )))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.insert(k, v);
                }
                Ok(Value::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Position in the history, from 0, without gaps.
    pub index: u64,
    /// Nanoseconds since the test started.
    pub time_ns: u64,
    pub process: Process,
    pub kind: OpType,
    pub f: F,
    /// The key, for operations on one key of a key-value store (registers by key, Porcupine's
    /// kv). Transactions carry their keys in their micro-ops instead.
    pub key: Option<Key>,
    pub value: Value,
    /// The node the client sent the operation to, when known.
    pub node: Option<String>,
    /// Why an operation failed or is indeterminate, in the client's words.
    pub error: Option<String>,
}

impl Op {
    pub fn is_invoke(&self) -> bool {
        self.kind == OpType::Invoke
    }

    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }

    /// The micro-operations of a transaction, or `None` when this is not one.
    pub fn txn(&self) -> Option<&[MicroOp]> {
        match &self.value {
            Value::Txn(mops) => Some(mops),
            _ => None,
        }
    }
}

/// The on-disk shape of an [`Op`] in the native JSONL format.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpLine {
    index: u64,
    time: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: F,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Key>,
    #[serde(default)]
    value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// [`OpLine`] borrowed from an [`Op`], to write one without copying its strings and values
/// (the recorder's writer thread serializes every operation of a run). Same fields, same
/// order, same omissions as `OpLine`.
#[derive(Serialize)]
struct OpLineRef<'a> {
    index: u64,
    time: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: &'a F,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a Key>,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a String>,
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OpLineRef {
            index: self.index,
            time: self.time_ns,
            process: self.process,
            kind: self.kind,
            f: &self.f,
            key: self.key.as_ref(),
            value: &self.value,
            node: self.node.as_ref(),
            error: self.error.as_ref(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let line = OpLine::deserialize(d)?;
        let value = if line.f == F::Txn {
            txn_from_value(line.value).map_err(serde::de::Error::custom)?
        } else {
            line.value
        };
        Ok(Op {
            index: line.index,
            time_ns: line.time,
            process: line.process,
            kind: line.kind,
            f: line.f,
            key: line.key,
            value,
            node: line.node,
            error: line.error,
        })
    }
}

/// Turns the generic list value of a `txn` operation into typed micro-operations.
pub fn txn_from_value(value: Value) -> Result<Value, String> {
    match value {
        Value::List(items) => items
            .iter()
            .map(MicroOp::from_value)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Txn),
        Value::Txn(_) => Ok(value),
        other => Err(format!(
            "expected the value of a txn to be a list of micro-ops, found {other}"
        )),
    }
}

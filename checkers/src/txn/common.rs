//! What the two workload analysers share: edge labels, interned keys and values, and the
//! collection of anomaly cases.

use std::collections::BTreeMap;

use histories::{Key, Value};

use super::graph::{FxHashMap, Labels};

/// Write-write dependency: the source installed the version the target overwrote.
pub const WW: Labels = 1;
/// Write-read dependency: the target observed the source's write.
pub const WR: Labels = 2;
/// Read-write anti-dependency: the source observed a version the target overwrote.
pub const RW: Labels = 4;
/// Process order: the same process ran the source, then the target.
pub const PROCESS: Labels = 8;
/// Real-time order: the source completed before the target was invoked.
pub const REALTIME: Labels = 16;

pub fn label_name(l: Labels) -> &'static str {
    match l {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        PROCESS => "process",
        REALTIME => "realtime",
        _ => "?",
    }
}

/// No transaction / no position.
pub const NONE: u32 = u32::MAX;

/// A value as the analysers compare it: integers directly, anything else by interned number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elem {
    Int(i64),
    Other(u32),
}

/// Numbers keys and non-integer values so the analysis works on small copyable ids.
#[derive(Debug, Default)]
pub struct Interner<'h> {
    keys: FxHashMap<&'h Key, u32>,
    pub key_list: Vec<&'h Key>,
    others: FxHashMap<&'h Value, u32>,
    pub other_list: Vec<&'h Value>,
}

impl<'h> Interner<'h> {
    pub fn key(&mut self, k: &'h Key) -> u32 {
        let next = self.key_list.len() as u32;
        let id = *self.keys.entry(k).or_insert(next);
        if id == next {
            self.key_list.push(k);
        }
        id
    }

    pub fn elem(&mut self, v: &'h Value) -> Elem {
        match v {
            Value::Int(i) => Elem::Int(*i),
            other => {
                let next = self.other_list.len() as u32;
                let id = *self.others.entry(other).or_insert(next);
                if id == next {
                    self.other_list.push(other);
                }
                Elem::Other(id)
            }
        }
    }

    pub fn value(&self, e: Elem) -> Value {
        match e {
            Elem::Int(i) => Value::Int(i),
            Elem::Other(id) => self.other_list[id as usize].clone(),
        }
    }

    /// The id of `k` if it was ever seen, without interning anything new.
    pub fn key_lookup(&self, k: &Key) -> Option<u32> {
        self.keys.get(k).copied()
    }

    /// The element of `v` if it was ever seen, without interning anything new.
    pub fn elem_lookup(&self, v: &Value) -> Option<Elem> {
        match v {
            Value::Int(i) => Some(Elem::Int(*i)),
            other => self.others.get(other).map(|&id| Elem::Other(id)),
        }
    }

    pub fn key_of(&self, id: u32) -> &'h Key {
        self.key_list[id as usize]
    }
}

/// One anomaly instance, as data and as words.
#[derive(Debug, Clone)]
pub struct Case {
    pub json: serde_json::Value,
    pub text: Vec<String>,
}

/// Anomaly cases by type: every case is counted, the first `max_per_type` are kept.
#[derive(Debug, Default)]
pub struct Cases {
    pub max_per_type: usize,
    pub by_type: BTreeMap<&'static str, (u64, Vec<Case>)>,
}

impl Cases {
    pub fn new(max_per_type: usize) -> Cases {
        Cases {
            max_per_type,
            by_type: BTreeMap::new(),
        }
    }

    /// Records one case of `kind`; `make` runs only when the case is kept.
    pub fn add(&mut self, kind: &'static str, make: impl FnOnce() -> Case) {
        let entry = self.by_type.entry(kind).or_default();
        entry.0 += 1;
        if entry.1.len() < self.max_per_type {
            entry.1.push(make());
        }
    }

    pub fn count(&self, kind: &str) -> u64 {
        self.by_type.get(kind).map_or(0, |e| e.0)
    }
}

/// Turns one labelled edge between two transactions back into the reason it exists.
pub trait EdgeExplainer {
    /// Why `a -> b` carries data label `label` (ww, wr or rw), in words using the names given
    /// for the two transactions, with the facts as JSON; `None` if it does not.
    fn explain(
        &self,
        a: u32,
        b: u32,
        label: Labels,
        a_name: &str,
        b_name: &str,
    ) -> Option<(String, serde_json::Value)>;
}

/// `[1 2 3]` for a list of interned values.
pub fn list_text(interner: &Interner<'_>, elems: &[Elem]) -> String {
    let vals: Vec<String> = elems
        .iter()
        .map(|&e| interner.value(e).to_string())
        .collect();
    format!("[{}]", vals.join(" "))
}

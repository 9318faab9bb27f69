//! Read-write registers: transactions of `[:w k v]` and `[:r k v]`.
//!
//! Assumptions (checked; a history that breaks them is `unknown`): every value is written to a
//! key at most once, no transaction writes `nil`, and every key starts as `nil`.
//!
//! A register's value does not record its history, so the version order is only partly known:
//! - the initial `nil` precedes every written version;
//! - when a committed transaction's first access to a key reads `x` and it then writes `y`
//!   (writes follow reads), `x` precedes `y`.
//!
//! From those version edges `x -> y`: ww from the writer of `x` to the writer of `y`; rw from
//! each transaction whose first access read `x` to the writer of `y`; and wr from the writer of
//! every value read to its reader. A cycle among version edges is `cyclic-versions`; its key
//! then contributes no ww or rw edges.

use histories::{History, MicroF, Value};
use serde_json::json;

use super::common::{Case, Cases, EdgeExplainer, Elem, Interner, NONE, RW, WR, WW, label_name};
use super::graph::{FxHashMap, LabelledGraph, Labels};
use super::prepare::{Status, Txn, txn_json, txn_text};

/// One written version.
#[derive(Debug, Clone, Copy)]
struct Version {
    key: u32,
    elem: Elem,
    writer: u32,
    mop: u32,
    /// The writer's last write to the key (an earlier one is an intermediate version).
    final_in_txn: bool,
}

/// The analysis of a rw-register history, kept for explaining edges.
#[derive(Debug)]
pub struct RwRegister<'h, 'a> {
    txns: &'a [Txn<'h>],
    interner: Interner<'h>,
    versions: Vec<Version>,
    by_value: FxHashMap<(u32, Elem), u32>,
    /// Version edges x -> y from writes following reads (version ids).
    preds: FxHashMap<u32, Vec<u32>>,
    cyclic_keys: Vec<bool>,
}

/// The first access of each key in a transaction, when it is a read: (mop index, key id).
fn external_reads(txn: &Txn<'_>, keys: &[u32]) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for (i, mop) in txn.mops.iter().enumerate() {
        let k = keys[i];
        if keys[..i].contains(&k) {
            continue;
        }
        if mop.f == MicroF::Read {
            out.push((i, k));
        }
    }
    out
}

/// The last write of each key in a transaction: (mop index, key id).
fn external_writes(txn: &Txn<'_>, keys: &[u32]) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for (i, mop) in txn.mops.iter().enumerate().rev() {
        if mop.f == MicroF::Write && !out.iter().any(|&(_, k)| k == keys[i]) {
            out.push((i, keys[i]));
        }
    }
    out.reverse();
    out
}

pub fn analyze<'h, 'a>(
    history: &'h History,
    txns: &'a [Txn<'h>],
    graph: &mut LabelledGraph,
    cases: &mut Cases,
    observed: &mut [bool],
) -> Result<RwRegister<'h, 'a>, String> {
    let ops = history.ops();
    let mut interner = Interner::default();
    let mut versions: Vec<Version> = Vec::new();
    let mut by_value: FxHashMap<(u32, Elem), u32> = FxHashMap::default();
    let mut keys_of: Vec<Vec<u32>> = Vec::with_capacity(txns.len());

    for (t, txn) in txns.iter().enumerate() {
        if let Some(m) = txn.mops.iter().find(|m| m.f == MicroF::Append) {
            return Err(format!(
                "the rw-register workload has no [{} ...] micro-op (index {}); expected [w k v] and [r k v]",
                m.f.as_str(),
                ops[txn.position()].index
            ));
        }
        let keys: Vec<u32> = txn.mops.iter().map(|m| interner.key(&m.key)).collect();
        let mut last_write: Vec<(u32, u32)> = Vec::new();
        for (m, mop) in txn.mops.iter().enumerate() {
            if mop.f != MicroF::Write {
                continue;
            }
            if mop.value.is_nil() {
                return Err(format!(
                    "the transaction at index {} writes nil to key {}; rw-register reserves nil for the initial state",
                    ops[txn.position()].index,
                    mop.key
                ));
            }
            let k = keys[m];
            let e = interner.elem(&mop.value);
            let id = versions.len() as u32;
            if let Some(&other) = by_value.get(&(k, e)) {
                let o = &versions[other as usize];
                return Err(format!(
                    "value {} was written to key {} twice (index {} and index {}); rw-register needs unique written values",
                    mop.value,
                    mop.key,
                    ops[txns[o.writer as usize].position()].index,
                    ops[txn.position()].index
                ));
            }
            by_value.insert((k, e), id);
            versions.push(Version {
                key: k,
                elem: e,
                writer: t as u32,
                mop: m as u32,
                final_in_txn: true,
            });
            if let Some(prev) = last_write.iter_mut().find(|(pk, _)| *pk == k) {
                versions[prev.1 as usize].final_in_txn = false;
                prev.1 = id;
            } else {
                last_write.push((k, id));
            }
        }
        keys_of.push(keys);
    }
    let nkeys = interner.key_list.len();

    // Reads of committed transactions: anomalies of the value read, and wr edges.
    // ext_readers[v]: transactions whose first access to v's key read v; nil_readers per key.
    let mut ext_readers: Vec<Vec<u32>> = vec![Vec::new(); versions.len()];
    let mut nil_readers: Vec<Vec<u32>> = vec![Vec::new(); nkeys];
    let mut preds: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    let mut lost: FxHashMap<(u32, u32), Vec<u32>> = FxHashMap::default();
    for (t, txn) in txns.iter().enumerate() {
        if txn.status != Status::Ok {
            continue;
        }
        let keys = &keys_of[t];
        let ext_reads = external_reads(txn, keys);
        let ext_writes = external_writes(txn, keys);
        // internal: each read equals the transaction's latest read or write of the key.
        let mut known: Vec<(u32, &Value)> = Vec::new();
        for (m, mop) in txn.mops.iter().enumerate() {
            let k = keys[m];
            let slot = known.iter().position(|(kk, _)| *kk == k);
            if mop.f == MicroF::Read {
                if let Some(s) = slot {
                    let expected = known[s].1;
                    if *expected != mop.value {
                        cases.add("internal", || Case {
                            json: json!({
                                "op": txn_json(history, txn),
                                "mop": [mop.f.as_str(), &mop.key, &mop.value],
                                "expected": expected,
                            }),
                            text: vec![format!(
                                "the transaction at {} read key {} = {}, but its own latest read or write of that key means it should have read {}",
                                txn_text(history, txn),
                                mop.key,
                                mop.value,
                                expected
                            )],
                        });
                    }
                }
            }
            match slot {
                Some(s) => known[s].1 = &mop.value,
                None => known.push((k, &mop.value)),
            }
            if mop.f != MicroF::Read || mop.value.is_nil() {
                continue;
            }
            let e = interner.elem(&mop.value);
            let Some(&vid) = by_value.get(&(k, e)) else {
                cases.add("garbage", || Case {
                    json: json!({
                        "op": txn_json(history, txn),
                        "mop": [mop.f.as_str(), &mop.key, &mop.value],
                    }),
                    text: vec![format!(
                        "the transaction at {} read key {} = {}, a value no transaction ever wrote to key {}",
                        txn_text(history, txn),
                        mop.key,
                        mop.value,
                        mop.key
                    )],
                });
                continue;
            };
            let v = versions[vid as usize];
            let w = &txns[v.writer as usize];
            if v.writer == t as u32 {
                if v.mop > m as u32 {
                    cases.add("future-read", || Case {
                        json: json!({
                            "op": txn_json(history, txn),
                            "mop": [mop.f.as_str(), &mop.key, &mop.value],
                        }),
                        text: vec![format!(
                            "the transaction at {} read key {} = {}, a value it writes only later",
                            txn_text(history, txn),
                            mop.key,
                            mop.value
                        )],
                    });
                }
                continue;
            }
            match w.status {
                Status::Fail => {
                    cases.add("G1a", || Case {
                        json: json!({
                            "op": txn_json(history, txn),
                            "mop": [mop.f.as_str(), &mop.key, &mop.value],
                            "writer": txn_json(history, w),
                        }),
                        text: vec![format!(
                            "aborted read: the transaction at {} read key {} = {}, written by the failed transaction at {}",
                            txn_text(history, txn),
                            mop.key,
                            mop.value,
                            txn_text(history, w)
                        )],
                    });
                    continue;
                }
                Status::Info => observed[v.writer as usize] = true,
                Status::Ok => {}
            }
            if !v.final_in_txn {
                cases.add("G1b", || Case {
                    json: json!({
                        "op": txn_json(history, txn),
                        "mop": [mop.f.as_str(), &mop.key, &mop.value],
                        "writer": txn_json(history, w),
                    }),
                    text: vec![format!(
                        "intermediate read: the transaction at {} read key {} = {}, which the transaction at {} overwrote itself before committing",
                        txn_text(history, txn),
                        mop.key,
                        mop.value,
                        txn_text(history, w)
                    )],
                });
            }
            graph.add_edge(v.writer, t as u32, WR);
        }
        // Version edges and readers from external reads.
        for &(m, k) in &ext_reads {
            let value = &txn.mops[m].value;
            let read_vid = if value.is_nil() {
                None
            } else {
                match interner
                    .elem_lookup(value)
                    .and_then(|e| by_value.get(&(k, e)))
                {
                    Some(&vid)
                        if txns[versions[vid as usize].writer as usize].status != Status::Fail =>
                    {
                        Some(vid)
                    }
                    _ => continue,
                }
            };
            match read_vid {
                Some(vid) => ext_readers[vid as usize].push(t as u32),
                None => nil_readers[k as usize].push(t as u32),
            }
            if let Some(&(wm, _)) = ext_writes.iter().find(|&&(_, wk)| wk == k) {
                let we = interner.elem(&txn.mops[wm].value);
                let wid = by_value[&(k, we)];
                if let Some(rid) = read_vid {
                    preds.entry(wid).or_default().push(rid);
                }
                lost.entry((k, read_vid.unwrap_or(NONE)))
                    .or_default()
                    .push(t as u32);
            }
        }
    }

    // Lost updates: committed transactions that read the same version of a key and wrote it.
    let mut groups: Vec<(&(u32, u32), &Vec<u32>)> =
        lost.iter().filter(|(_, ts)| ts.len() > 1).collect();
    groups.sort_unstable_by_key(|(_, ts)| ts[0]);
    for ((k, vid), ts) in groups {
        let key = interner.key_of(*k);
        let value = if *vid == NONE {
            Value::Nil
        } else {
            interner.value(versions[*vid as usize].elem)
        };
        cases.add("lost-update", || Case {
            json: json!({
                "key": key,
                "value": &value,
                "txns": ts.iter().map(|&t| txn_json(history, &txns[t as usize])).collect::<Vec<_>>(),
            }),
            text: vec![format!(
                "lost update: {} committed transactions read key {} = {} and then wrote it: {}",
                ts.len(),
                key,
                value,
                ts.iter()
                    .map(|&t| format!("({})", txn_text(history, &txns[t as usize])))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        });
    }

    // cyclic-versions: the version edges must form no cycle.
    let mut vg = LabelledGraph::with_capacity(versions.len(), preds.len());
    for (&y, xs) in &preds {
        for &x in xs {
            vg.add_edge(x, y, 1);
        }
    }
    let mut cyclic_keys = vec![false; nkeys];
    for comp in vg.sccs(1) {
        let k = versions[comp[0] as usize].key;
        cyclic_keys[k as usize] = true;
        let key = interner.key_of(k);
        let values: Vec<Value> = comp
            .iter()
            .map(|&v| interner.value(versions[v as usize].elem))
            .collect();
        cases.add("cyclic-versions", || Case {
            json: json!({"key": key, "values": &values}),
            text: vec![format!(
                "the versions {} of key {} each follow another (transactions read one and then wrote the next), which no order of versions allows",
                Value::List(values.clone()),
                key
            )],
        });
    }

    // ww and rw from version edges; rw from reads of the initial nil to the first versions.
    let live = |w: u32| txns[w as usize].status != Status::Fail;
    for (y, v) in versions.iter().enumerate() {
        if cyclic_keys[v.key as usize] || !live(v.writer) || !v.final_in_txn {
            continue;
        }
        let ps = preds.get(&(y as u32));
        match ps {
            Some(xs) => {
                for &x in xs {
                    let xw = versions[x as usize].writer;
                    if live(xw) && xw != v.writer {
                        graph.add_edge(xw, v.writer, WW);
                    }
                    for &r in &ext_readers[x as usize] {
                        if r != v.writer {
                            graph.add_edge(r, v.writer, RW);
                        }
                    }
                }
            }
            None => {
                for &r in &nil_readers[v.key as usize] {
                    if r != v.writer {
                        graph.add_edge(r, v.writer, RW);
                    }
                }
            }
        }
    }

    Ok(RwRegister {
        txns,
        interner,
        versions,
        by_value,
        preds,
        cyclic_keys,
    })
}

impl RwRegister<'_, '_> {
    fn version_of(&self, k: u32, v: &Value) -> Option<u32> {
        let e = self.interner.elem_lookup(v)?;
        self.by_value.get(&(k, e)).copied()
    }

    /// The value `txn`'s first access to key `k` read, if that access was a read: `None` when it
    /// was not, `Some(None)` for nil.
    fn ext_read(&self, txn: &Txn<'_>, k: u32) -> Option<Option<u32>> {
        let mop = txn
            .mops
            .iter()
            .find(|m| self.interner.key_lookup(&m.key) == Some(k))?;
        if mop.f != MicroF::Read {
            return None;
        }
        if mop.value.is_nil() {
            Some(None)
        } else {
            self.version_of(k, &mop.value).map(Some)
        }
    }
}

impl EdgeExplainer for RwRegister<'_, '_> {
    fn explain(
        &self,
        a: u32,
        b: u32,
        label: Labels,
        an: &str,
        bn: &str,
    ) -> Option<(String, serde_json::Value)> {
        let ta = &self.txns[a as usize];
        let tb = &self.txns[b as usize];
        match label {
            WR => tb.mops.iter().find_map(|mop| {
                if mop.f != MicroF::Read {
                    return None;
                }
                let k = self.interner.key_lookup(&mop.key)?;
                let vid = self.version_of(k, &mop.value)?;
                (self.versions[vid as usize].writer == a).then(|| {
                    (
                        format!("{bn} read key {} = {}, written by {an}", mop.key, mop.value),
                        json!({"type": label_name(label), "key": &mop.key, "value": &mop.value}),
                    )
                })
            }),
            WW | RW => {
                // b's final write y of some key whose version edge comes from what a wrote (ww)
                // or what a read (rw).
                tb.mops.iter().enumerate().find_map(|(m, mop)| {
                    if mop.f != MicroF::Write {
                        return None;
                    }
                    let k = self.interner.key_lookup(&mop.key)?;
                    if self.cyclic_keys[k as usize] {
                        return None;
                    }
                    let y = self.version_of(k, &mop.value)?;
                    let yv = self.versions[y as usize];
                    if yv.mop != m as u32 || !yv.final_in_txn {
                        return None;
                    }
                    let key = &mop.key;
                    let preds = self.preds.get(&y);
                    if label == WW {
                        let x = preds?
                            .iter()
                            .copied()
                            .find(|&x| self.versions[x as usize].writer == a)?;
                        let xval = self.interner.value(self.versions[x as usize].elem);
                        return Some((
                            format!(
                                "{bn} wrote key {key} = {} after {an} wrote {xval}, because {bn} read {xval} before writing {}",
                                mop.value, mop.value
                            ),
                            json!({"type": "ww", "key": key, "value": xval, "value'": &mop.value}),
                        ));
                    }
                    let read = self.ext_read(ta, k)?;
                    match (read, preds) {
                        (None, None) => Some((
                            format!(
                                "{an} read key {key} = nil (the initial state), which {bn} overwrote with {}",
                                mop.value
                            ),
                            json!({"type": "rw", "key": key, "value": Value::Nil, "value'": &mop.value}),
                        )),
                        (Some(x), Some(xs)) if xs.contains(&x) => {
                            let xval = self.interner.value(self.versions[x as usize].elem);
                            Some((
                                format!(
                                    "{an} read key {key} = {xval}, which {bn} overwrote with {} (it read {xval} before writing)",
                                    mop.value
                                ),
                                json!({"type": "rw", "key": key, "value": xval, "value'": &mop.value}),
                            ))
                        }
                        _ => None,
                    }
                })
            }
            _ => None,
        }
    }
}

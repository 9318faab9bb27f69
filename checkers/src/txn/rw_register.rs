//! Read-write registers: transactions of `[:w k v]` and `[:r k v]`.
//!
//! Assumptions (checked; a history that breaks them is `unknown`): every value is written to a
//! key at most once, no transaction writes `nil`, and every key starts as `nil`.
//!
//! A register's value does not record its history, so the version order is only partly known.
//! It is built from sources, as Elle does, each added only where it keeps the order acyclic:
//! - initial state: the initial `nil` precedes every written version;
//! - writes follow reads: when a committed transaction's first access to a key reads `x` and it
//!   then writes `y`, `x` precedes `y`;
//! - sequential keys ([`super::TxnOptions::sequential_keys`], off by default): each process
//!   observes a key's versions in order, so the last version a transaction read or wrote
//!   precedes the first version the same process's next transaction on that key read or wrote;
//! - linearizable keys ([`super::TxnOptions::linearizable_keys`], off by default): the same
//!   along real-time order, from every transaction to those invoked after it completed.
//!
//! From those version edges `x -> y`: ww from the writer of `x` to the writer of `y`; rw from
//! each transaction whose first access read `x` to the writer of `y`; and wr from the writer of
//! every value read to its reader. A cycle among the versions of a key is `cyclic-versions`: when
//! writes-follow-reads alone makes one, the key contributes no ww or rw edges; when an optional
//! source makes one, that source's edges for the key are left out.
//!
//! Everything is indexed by dense numbers (transactions, keys, versions) in flat vectors; the
//! only hash lookups are the interning of keys and of non-integer values.

use histories::{History, MicroF, Value};
use serde_json::json;

use super::common::{Case, Cases, EdgeExplainer, Elem, Interner, NONE, RW, WR, WW, label_name};
use super::graph::{FxHashMap, LabelledGraph, Labels};
use super::prepare::{Status, Txn, txn_json, txn_text};

/// The initial `nil` of a key, where a version id is expected.
const NIL: u32 = u32::MAX - 1;

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

/// Where an inferred version edge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    WritesFollowReads,
    SequentialKeys,
    LinearizableKeys,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::WritesFollowReads => "wfr-keys",
            Source::SequentialKeys => "sequential-keys",
            Source::LinearizableKeys => "linearizable-keys",
        }
    }
}

/// A version edge `x -> y` from an optional source, with the two transactions that show it:
/// `from` read or wrote `x`, and `to` then read or wrote `y`. `x` may be [`NIL`] only as the
/// target of a contradiction, never in an accepted edge.
#[derive(Debug, Clone, Copy)]
struct ExtraEdge {
    x: u32,
    y: u32,
    source: Source,
    from: u32,
    to: u32,
}

/// Which optional sources of version order to use.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionSources {
    pub sequential_keys: bool,
    pub linearizable_keys: bool,
}

/// Versions grouped by key, sorted by value within each key, for lookups by (key, value).
#[derive(Debug, Default)]
struct VersionIndex {
    /// (value, version id); entries[start[k]..start[k + 1]] belong to key k.
    entries: Vec<(Elem, u32)>,
    start: Vec<u32>,
}

impl VersionIndex {
    fn build(versions: &[Version], nkeys: usize) -> VersionIndex {
        let mut start = vec![0u32; nkeys + 1];
        for v in versions {
            start[v.key as usize + 1] += 1;
        }
        for k in 0..nkeys {
            start[k + 1] += start[k];
        }
        let mut fill = start.clone();
        let mut entries = vec![(Elem::Int(0), NONE); versions.len()];
        for (id, v) in versions.iter().enumerate() {
            let slot = &mut fill[v.key as usize];
            entries[*slot as usize] = (v.elem, id as u32);
            *slot += 1;
        }
        for k in 0..nkeys {
            entries[start[k] as usize..start[k + 1] as usize].sort_unstable();
        }
        VersionIndex { entries, start }
    }

    fn of_key(&self, k: u32) -> &[(Elem, u32)] {
        match self.start.get(k as usize + 1) {
            Some(&end) => &self.entries[self.start[k as usize] as usize..end as usize],
            None => &[],
        }
    }

    fn find(&self, k: u32, e: Elem) -> Option<u32> {
        let vs = self.of_key(k);
        let i = vs.partition_point(|&(x, _)| x < e);
        vs.get(i).filter(|&&(x, _)| x == e).map(|&(_, id)| id)
    }

    /// The earliest-written version whose value an earlier version of the same key already had:
    /// (first, second) version ids, with the smallest second.
    fn first_duplicate(&self) -> Option<(u32, u32)> {
        (0..self.start.len().saturating_sub(1) as u32)
            .flat_map(|k| {
                self.of_key(k)
                    .windows(2)
                    .filter(|w| w[0].0 == w[1].0)
                    .map(|w| (w[0].1, w[1].1))
            })
            .min_by_key(|&(_, second)| second)
    }
}

/// Items grouped by a dense number (compressed sparse rows): the items of group g are
/// items[start[g]..start[g + 1]], in the order they were pushed.
#[derive(Debug, Default)]
struct Groups {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Groups {
    /// Groups `pairs` of (group, item); groups are numbered below `ngroups`.
    fn build(pairs: &[(u32, u32)], ngroups: usize) -> Groups {
        let mut start = vec![0u32; ngroups + 1];
        for &(g, _) in pairs {
            start[g as usize + 1] += 1;
        }
        for g in 0..ngroups {
            start[g + 1] += start[g];
        }
        let mut fill = start.clone();
        let mut items = vec![0u32; pairs.len()];
        for &(g, item) in pairs {
            let slot = &mut fill[g as usize];
            items[*slot as usize] = item;
            *slot += 1;
        }
        Groups { start, items }
    }

    fn get(&self, g: u32) -> &[u32] {
        match self.start.get(g as usize + 1) {
            Some(&end) => &self.items[self.start[g as usize] as usize..end as usize],
            None => &[],
        }
    }
}

/// The analysis of a rw-register history, kept for explaining edges.
#[derive(Debug)]
pub struct RwRegister<'h, 'a> {
    history: &'h History,
    txns: &'a [Txn<'h>],
    interner: Interner<'h>,
    versions: Vec<Version>,
    index: VersionIndex,
    /// Per version: the version it follows by writes-follow-reads, or NONE.
    wfr_pred: Vec<u32>,
    /// Accepted edges of the optional sources, and their indices grouped by target version.
    extra: Vec<ExtraEdge>,
    extra_into: Groups,
    cyclic_keys: Vec<bool>,
}

/// Per-transaction scratch buffers, reused so that the walk over a million transactions does
/// not allocate per transaction.
#[derive(Debug, Default)]
struct Scratch<'h> {
    /// (mop index, key id) of the first access of each key, when it is a read.
    ext_reads: Vec<(usize, u32)>,
    /// (mop index, key id) of the last write of each key.
    ext_writes: Vec<(usize, u32)>,
    /// (key id, latest value read or written) for the internal-consistency check.
    known: Vec<(u32, &'h Value)>,
    /// (key id, latest version id) while numbering one transaction's writes.
    last_write: Vec<(u32, u32)>,
}

/// Fills `out` with the first access of each key, when it is a read: (mop index, key id).
fn external_reads(txn: &Txn<'_>, keys: &[u32], out: &mut Vec<(usize, u32)>) {
    out.clear();
    for (i, mop) in txn.mops.iter().enumerate() {
        let k = keys[i];
        if mop.f == MicroF::Read && !keys[..i].contains(&k) {
            out.push((i, k));
        }
    }
}

/// Fills `out` with the last write of each key, in mop order: (mop index, key id).
fn external_writes(txn: &Txn<'_>, keys: &[u32], out: &mut Vec<(usize, u32)>) {
    out.clear();
    for (i, mop) in txn.mops.iter().enumerate().rev() {
        if mop.f == MicroF::Write && !out.iter().any(|&(_, k)| k == keys[i]) {
            out.push((i, keys[i]));
        }
    }
    out.reverse();
}

pub fn analyze<'h, 'a>(
    history: &'h History,
    txns: &'a [Txn<'h>],
    sources: VersionSources,
    graph: &mut LabelledGraph,
    cases: &mut Cases,
    observed: &mut [bool],
) -> Result<RwRegister<'h, 'a>, String> {
    let ops = history.ops();
    let mut interner = Interner::default();
    let mut versions: Vec<Version> = Vec::with_capacity(txns.len() * 2);
    // The key of every micro-op, flat: txn t's are mop_keys[mop_start[t]..mop_start[t + 1]].
    let mut mop_keys: Vec<u32> = Vec::with_capacity(txns.len() * 4);
    let mut mop_start: Vec<u32> = Vec::with_capacity(txns.len() + 1);
    let mut scratch = Scratch::default();
    let mut error: Option<String> = None;

    // Pass 1: number keys and written versions.
    'txns: for (t, txn) in txns.iter().enumerate() {
        if let Some(m) = txn.mops.iter().find(|m| m.f == MicroF::Append) {
            error = Some(format!(
                "the rw-register workload has no [{} ...] micro-op (index {}); expected [w k v] and [r k v]",
                m.f.as_str(),
                ops[txn.position()].index
            ));
            break;
        }
        mop_start.push(mop_keys.len() as u32);
        let first_key = mop_keys.len();
        for mop in txn.mops {
            mop_keys.push(interner.key(&mop.key));
        }
        scratch.last_write.clear();
        for (m, mop) in txn.mops.iter().enumerate() {
            if mop.f != MicroF::Write {
                continue;
            }
            if mop.value.is_nil() {
                error = Some(format!(
                    "the transaction at index {} writes nil to key {}; rw-register reserves nil for the initial state",
                    ops[txn.position()].index,
                    mop.key
                ));
                break 'txns;
            }
            let k = mop_keys[first_key + m];
            let e = interner.elem(&mop.value);
            let id = versions.len() as u32;
            versions.push(Version {
                key: k,
                elem: e,
                writer: t as u32,
                mop: m as u32,
                final_in_txn: true,
            });
            if let Some(prev) = scratch.last_write.iter_mut().find(|(pk, _)| *pk == k) {
                versions[prev.1 as usize].final_in_txn = false;
                prev.1 = id;
            } else {
                scratch.last_write.push((k, id));
            }
        }
    }
    mop_start.push(mop_keys.len() as u32);
    let nkeys = interner.key_list.len();
    let index = VersionIndex::build(&versions, nkeys);
    // A duplicate write found before the first other error happened first.
    if let Some((first, second)) = index.first_duplicate() {
        let (a, b) = (versions[first as usize], versions[second as usize]);
        let tb = &txns[b.writer as usize];
        let mop = &tb.mops[b.mop as usize];
        return Err(format!(
            "value {} was written to key {} twice (index {} and index {}); rw-register needs unique written values",
            mop.value,
            mop.key,
            ops[txns[a.writer as usize].position()].index,
            ops[tb.position()].index
        ));
    }
    if let Some(e) = error {
        return Err(e);
    }
    let keys_of = |t: usize| &mop_keys[mop_start[t] as usize..mop_start[t + 1] as usize];
    let nversions = versions.len();

    // Pass 2: reads of committed transactions: anomalies of the value read, and wr edges.
    // Readers whose first access to a key read a version (or nil), as (version or key, txn).
    let mut ext_reader_pairs: Vec<(u32, u32)> = Vec::with_capacity(txns.len());
    let mut nil_reader_pairs: Vec<(u32, u32)> = Vec::new();
    let mut wfr_pred: Vec<u32> = vec![NONE; nversions];
    // Read-then-write: (state read, txn); a state is a version id, or nversions + key for nil.
    let mut lost_pairs: Vec<(u32, u32)> = Vec::new();
    for (t, txn) in txns.iter().enumerate() {
        if txn.status != Status::Ok {
            continue;
        }
        let keys = keys_of(t);
        external_reads(txn, keys, &mut scratch.ext_reads);
        external_writes(txn, keys, &mut scratch.ext_writes);
        // internal: each read equals the transaction's latest read or write of the key.
        scratch.known.clear();
        for (m, mop) in txn.mops.iter().enumerate() {
            let k = keys[m];
            let slot = scratch.known.iter().position(|(kk, _)| *kk == k);
            if mop.f == MicroF::Read {
                if let Some(s) = slot {
                    let expected = scratch.known[s].1;
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
                Some(s) => scratch.known[s].1 = &mop.value,
                None => scratch.known.push((k, &mop.value)),
            }
            if mop.f != MicroF::Read || mop.value.is_nil() {
                continue;
            }
            let found = interner
                .elem_lookup(&mop.value)
                .and_then(|e| index.find(k, e));
            let Some(vid) = found else {
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
        for &(m, k) in &scratch.ext_reads {
            let read_vid = match ext_read_version(&interner, &index, &versions, txns, txn, m, k) {
                Some(r) => r,
                None => continue,
            };
            if read_vid == NIL {
                nil_reader_pairs.push((k, t as u32));
            } else {
                ext_reader_pairs.push((read_vid, t as u32));
            }
            if let Some(&(wm, _)) = scratch.ext_writes.iter().find(|&&(_, wk)| wk == k) {
                let we = interner.elem_lookup(&txn.mops[wm].value);
                let wid = we.and_then(|e| index.find(k, e)).unwrap_or(NONE);
                debug_assert!(wid != NONE, "every write was numbered in pass 1");
                if read_vid != NIL && wid != NONE {
                    // One transaction wrote wid, and it has one first access to the key.
                    debug_assert_eq!(wfr_pred[wid as usize], NONE);
                    wfr_pred[wid as usize] = read_vid;
                }
                let state = if read_vid == NIL {
                    nversions as u32 + k
                } else {
                    read_vid
                };
                lost_pairs.push((state, t as u32));
            }
        }
    }
    let ext_readers = Groups::build(&ext_reader_pairs, nversions);
    let nil_readers = Groups::build(&nil_reader_pairs, nkeys);
    drop(ext_reader_pairs);
    drop(nil_reader_pairs);

    lost_update_cases(
        history,
        txns,
        &interner,
        &versions,
        &lost_pairs,
        nkeys,
        cases,
    );
    drop(lost_pairs);

    // cyclic-versions: writes-follow-reads first; a key it makes cyclic is left out entirely.
    let wfr_edges: Vec<(u32, u32)> = wfr_pred
        .iter()
        .enumerate()
        .filter(|&(y, &x)| x != NONE && x != y as u32)
        .map(|(y, &x)| (x, y as u32))
        .collect();
    let mut cyclic_keys = vec![false; nkeys];
    let mut accepted: Vec<(u32, u32)> = Vec::new();
    for comp in cyclic_components(&versions, &wfr_edges) {
        let k = versions[comp[0] as usize].key;
        cyclic_keys[k as usize] = true;
        cyclic_case(&interner, &versions, k, &comp, &[], cases);
    }
    drop(wfr_edges);

    // The optional sources, one at a time, each kept per key only where it adds no cycle.
    let mut extra: Vec<ExtraEdge> = Vec::new();
    let optional = [
        (sources.sequential_keys, Source::SequentialKeys),
        (sources.linearizable_keys, Source::LinearizableKeys),
    ];
    let mut used: Vec<Source> = vec![Source::WritesFollowReads];
    for (on, source) in optional {
        if !on {
            continue;
        }
        let touches = Touches::build(txns, &keys_of, &interner, &index, &versions);
        let candidates = match source {
            Source::SequentialKeys => sequential_edges(txns, &touches),
            _ => linearizable_edges(txns, &touches, nkeys),
        };
        used.push(source);
        let mut rejected = vec![false; nkeys];
        let mut new_edges: Vec<ExtraEdge> = Vec::new();
        for e in candidates {
            if e.x == e.y || e.x == NIL {
                continue;
            }
            let k = versions[e.x as usize].key;
            if cyclic_keys[k as usize] {
                continue;
            }
            if e.y == NIL {
                // Everything follows the initial nil: observing it after x is a contradiction.
                if !rejected[k as usize] {
                    rejected[k as usize] = true;
                    nil_contradiction_case(history, txns, &interner, &versions, &e, &used, cases);
                }
                continue;
            }
            new_edges.push(e);
        }
        // With the edges accepted so far, which keys would this source make cyclic?
        let all: Vec<(u32, u32)> = wfr_pred
            .iter()
            .enumerate()
            .filter(|&(y, &x)| x != NONE && x != y as u32)
            .map(|(y, &x)| (x, y as u32))
            .chain(accepted.iter().copied())
            .chain(
                new_edges
                    .iter()
                    .filter(|e| !rejected[versions[e.x as usize].key as usize])
                    .map(|e| (e.x, e.y)),
            )
            .collect();
        for comp in cyclic_components(&versions, &all) {
            let k = versions[comp[0] as usize].key;
            if !cyclic_keys[k as usize] {
                rejected[k as usize] = true;
                cyclic_case(&interner, &versions, k, &comp, &used, cases);
            }
        }
        for e in new_edges {
            if !rejected[versions[e.x as usize].key as usize] {
                accepted.push((e.x, e.y));
                extra.push(e);
            }
        }
    }
    let extra_into = Groups::build(
        &extra
            .iter()
            .enumerate()
            .map(|(i, e)| (e.y, i as u32))
            .collect::<Vec<_>>(),
        if extra.is_empty() { 0 } else { nversions },
    );

    // ww and rw from version edges; rw from reads of the initial nil to the first versions.
    let live = |w: u32| txns[w as usize].status != Status::Fail;
    for (y, v) in versions.iter().enumerate() {
        if cyclic_keys[v.key as usize] || !live(v.writer) || !v.final_in_txn {
            continue;
        }
        let wfr = wfr_pred[y];
        let extras = extra_into.get(y as u32);
        if wfr == NONE && extras.is_empty() {
            for &r in nil_readers.get(v.key) {
                if r != v.writer {
                    graph.add_edge(r, v.writer, RW);
                }
            }
            continue;
        }
        let preds = (wfr != NONE)
            .then_some(wfr)
            .into_iter()
            .chain(extras.iter().map(|&i| extra[i as usize].x));
        for x in preds {
            let xw = versions[x as usize].writer;
            if live(xw) && xw != v.writer {
                graph.add_edge(xw, v.writer, WW);
            }
            for &r in ext_readers.get(x) {
                if r != v.writer {
                    graph.add_edge(r, v.writer, RW);
                }
            }
        }
    }

    Ok(RwRegister {
        history,
        txns,
        interner,
        versions,
        index,
        wfr_pred,
        extra,
        extra_into,
        cyclic_keys,
    })
}

/// The version a committed transaction's first access (a read, mop `m`) of key `k` observed:
/// [`NIL`] for nil, `None` when it is no version a live transaction wrote (garbage, aborted).
fn ext_read_version(
    interner: &Interner<'_>,
    index: &VersionIndex,
    versions: &[Version],
    txns: &[Txn<'_>],
    txn: &Txn<'_>,
    m: usize,
    k: u32,
) -> Option<u32> {
    let value = &txn.mops[m].value;
    if value.is_nil() {
        return Some(NIL);
    }
    let vid = index.find(k, interner.elem_lookup(value)?)?;
    (txns[versions[vid as usize].writer as usize].status != Status::Fail).then_some(vid)
}

/// Lost updates: committed transactions that read the same version of a key and wrote it.
fn lost_update_cases(
    history: &History,
    txns: &[Txn<'_>],
    interner: &Interner<'_>,
    versions: &[Version],
    pairs: &[(u32, u32)],
    nkeys: usize,
    cases: &mut Cases,
) {
    let nversions = versions.len();
    let nstates = nversions + nkeys;
    let by_state = Groups::build(pairs, nstates);
    let mut groups: Vec<u32> = (0..nstates as u32)
        .filter(|&s| by_state.get(s).len() > 1)
        .collect();
    groups.sort_by_key(|&s| by_state.get(s)[0]);
    for s in groups {
        let ts = by_state.get(s);
        let (k, value) = if (s as usize) < nversions {
            let v = versions[s as usize];
            (v.key, interner.value(v.elem))
        } else {
            (s - nversions as u32, Value::Nil)
        };
        let key = interner.key_of(k);
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
}

/// The strongly connected components (of at least two versions) of the version graph with
/// `edges`, each sorted, ordered by their smallest version. Kahn's algorithm first peels off
/// every version on no cycle, in linear time; only what remains (rare) goes to petgraph.
fn cyclic_components(versions: &[Version], edges: &[(u32, u32)]) -> Vec<Vec<u32>> {
    let n = versions.len();
    if edges.is_empty() {
        return Vec::new();
    }
    let out = Groups::build(edges, n);
    let mut indegree = vec![0u32; n];
    for &(_, y) in edges {
        indegree[y as usize] += 1;
    }
    let mut queue: Vec<u32> = (0..n as u32)
        .filter(|&v| indegree[v as usize] == 0)
        .collect();
    let mut head = 0;
    while head < queue.len() {
        let v = queue[head];
        head += 1;
        for &y in out.get(v) {
            indegree[y as usize] -= 1;
            if indegree[y as usize] == 0 {
                queue.push(y);
            }
        }
    }
    if queue.len() == n {
        return Vec::new();
    }
    // What is left lies on a cycle or after one, always within one key.
    let left: Vec<u32> = (0..n as u32)
        .filter(|&v| indegree[v as usize] > 0)
        .collect();
    let local = |v: u32| left.binary_search(&v).ok().map(|i| i as u32);
    let mut g = LabelledGraph::with_capacity(left.len(), left.len());
    for (i, &v) in left.iter().enumerate() {
        for &y in out.get(v) {
            if let Some(j) = local(y) {
                g.add_edge(i as u32, j, 1);
            }
        }
    }
    g.sccs(1)
        .into_iter()
        .map(|c| c.into_iter().map(|i| left[i as usize]).collect())
        .collect()
}

fn sources_json(used: &[Source]) -> Vec<&'static str> {
    std::iter::once("initial-state")
        .chain(used.iter().map(|s| s.name()))
        .collect()
}

/// `(transactions read one and then wrote the next)`, or the optional sources involved.
fn sources_text(used: &[Source]) -> String {
    let mut parts = vec!["transactions read one and then wrote the next"];
    for s in used {
        match s {
            Source::WritesFollowReads => {}
            Source::SequentialKeys => {
                parts.push("each process observed the key's versions in order (sequential-keys)")
            }
            Source::LinearizableKeys => parts.push(
                "transactions observed the key's versions in real-time order (linearizable-keys)",
            ),
        }
    }
    parts.join("; ")
}

fn cyclic_case(
    interner: &Interner<'_>,
    versions: &[Version],
    k: u32,
    comp: &[u32],
    used: &[Source],
    cases: &mut Cases,
) {
    let key = interner.key_of(k);
    let values: Vec<Value> = comp
        .iter()
        .map(|&v| interner.value(versions[v as usize].elem))
        .collect();
    let used = if used.is_empty() {
        &[Source::WritesFollowReads][..]
    } else {
        used
    };
    cases.add("cyclic-versions", || Case {
        json: json!({"key": key, "values": &values, "sources": sources_json(used)}),
        text: vec![format!(
            "the versions {} of key {} each follow another ({}), which no order of versions allows",
            Value::List(values.clone()),
            key,
            sources_text(used)
        )],
    });
}

fn nil_contradiction_case(
    history: &History,
    txns: &[Txn<'_>],
    interner: &Interner<'_>,
    versions: &[Version],
    e: &ExtraEdge,
    used: &[Source],
    cases: &mut Cases,
) {
    let xv = versions[e.x as usize];
    let key = interner.key_of(xv.key);
    let x = interner.value(xv.elem);
    let values = vec![Value::Nil, x.clone()];
    let (from, to) = (&txns[e.from as usize], &txns[e.to as usize]);
    cases.add("cyclic-versions", || Case {
        json: json!({"key": key, "values": &values, "sources": sources_json(used)}),
        text: vec![format!(
            "key {key} went back to nil, the initial version that precedes every write: the transaction at {} saw {x}, and then the transaction at {} saw nil, although {}",
            txn_text(history, from),
            txn_text(history, to),
            match e.source {
                Source::SequentialKeys => "each process observes the key's versions in order (sequential-keys)",
                _ => "the second was invoked after the first completed and the key is linearizable (linearizable-keys)",
            }
        )],
    });
}

/// Each transaction's external interaction with each key, for the optional sources: the first
/// version it observed (its first read, else its final write) and the last (its final write,
/// else its first read). Reads count only for committed transactions; unknown versions
/// (garbage, aborted) are NONE.
#[derive(Debug, Default)]
struct Touches {
    /// (key, first, last); txn t's are list[start[t]..start[t + 1]].
    list: Vec<(u32, u32, u32)>,
    start: Vec<u32>,
}

impl Touches {
    fn build<'k>(
        txns: &[Txn<'_>],
        keys_of: &dyn Fn(usize) -> &'k [u32],
        interner: &Interner<'_>,
        index: &VersionIndex,
        versions: &[Version],
    ) -> Touches {
        let mut out = Touches::default();
        out.start.reserve(txns.len() + 1);
        for (t, txn) in txns.iter().enumerate() {
            out.start.push(out.list.len() as u32);
            if txn.status == Status::Fail {
                continue;
            }
            let keys = keys_of(t);
            let begin = out.list.len();
            for (m, mop) in txn.mops.iter().enumerate() {
                let k = keys[m];
                let write = || {
                    interner
                        .elem_lookup(&mop.value)
                        .and_then(|e| index.find(k, e))
                        .unwrap_or(NONE)
                };
                match out.list[begin..].iter().position(|e| e.0 == k) {
                    None if mop.f == MicroF::Read => {
                        if txn.status == Status::Ok {
                            let r = ext_read_version(interner, index, versions, txns, txn, m, k)
                                .unwrap_or(NONE);
                            out.list.push((k, r, r));
                        }
                    }
                    None => {
                        let w = write();
                        out.list.push((k, w, w));
                    }
                    Some(i) if mop.f == MicroF::Write => {
                        let w = write();
                        let e = &mut out.list[begin + i];
                        // The first version stays the first read; a first write is
                        // superseded by the final one, as Elle's ext-writes are.
                        if versions
                            .get(e.1 as usize)
                            .is_some_and(|v| v.writer == t as u32)
                        {
                            e.1 = w;
                        }
                        e.2 = w;
                    }
                    Some(_) => {}
                }
            }
        }
        out.start.push(out.list.len() as u32);
        out
    }

    fn of(&self, t: usize) -> &[(u32, u32, u32)] {
        &self.list[self.start[t] as usize..self.start[t + 1] as usize]
    }
}

/// The version a later transaction is linked to: its first known version, else its last.
fn entry_version(first: u32, last: u32) -> u32 {
    if first == NONE { last } else { first }
}

/// Sequential keys: along each process, the last version of a key one transaction observed
/// precedes the first version the process's next transaction on that key observed.
fn sequential_edges(txns: &[Txn<'_>], touches: &Touches) -> Vec<ExtraEdge> {
    let mut last: FxHashMap<(u64, u32), (u32, u32)> = FxHashMap::default();
    let mut out = Vec::new();
    for (t, txn) in txns.iter().enumerate() {
        for &(k, first, l) in touches.of(t) {
            let y = entry_version(first, l);
            if y == NONE {
                continue;
            }
            if let Some(&(x, from)) = last.get(&(txn.process, k)) {
                out.push(ExtraEdge {
                    x,
                    y,
                    source: Source::SequentialKeys,
                    from,
                    to: t as u32,
                });
            }
            let l = if l == NONE { y } else { l };
            last.insert((txn.process, k), (l, t as u32));
        }
    }
    out
}

/// Linearizable keys: the last version of a key a committed transaction observed precedes the
/// first version observed by every transaction invoked after it completed. Per key, only the
/// real-time frontier (completed transactions not known to precede another completed one) is
/// linked, as for real-time edges.
fn linearizable_edges(txns: &[Txn<'_>], touches: &Touches, nkeys: usize) -> Vec<ExtraEdge> {
    // (position, txn, is completion), in history order.
    let mut events: Vec<(usize, u32, bool)> = Vec::with_capacity(txns.len() * 2);
    for (t, txn) in txns.iter().enumerate() {
        if touches.of(t).is_empty() {
            continue;
        }
        events.push((txn.invoke, t as u32, false));
        if let (Status::Ok, Some(c)) = (txn.status, txn.complete) {
            events.push((c, t as u32, true));
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    // Per key: (txn, completion position, last version).
    let mut frontier: Vec<Vec<(u32, usize, u32)>> = vec![Vec::new(); nkeys];
    let mut out = Vec::new();
    for (pos, t, completes) in events {
        let invoked = txns[t as usize].invoke;
        for &(k, first, last) in touches.of(t as usize) {
            let y = entry_version(first, last);
            if y == NONE {
                continue;
            }
            let f = &mut frontier[k as usize];
            if completes {
                f.retain(|&(_, done, _)| done > invoked);
                f.push((t, pos, if last == NONE { y } else { last }));
            } else {
                for &(from, _, x) in f.iter() {
                    out.push(ExtraEdge {
                        x,
                        y,
                        source: Source::LinearizableKeys,
                        from,
                        to: t,
                    });
                }
            }
        }
    }
    out
}

impl RwRegister<'_, '_> {
    fn version_of(&self, k: u32, v: &Value) -> Option<u32> {
        self.index.find(k, self.interner.elem_lookup(v)?)
    }

    /// The value `txn`'s first access to key `k` read, if that access was a read: `None` when it
    /// was not, `Some(NIL)` for nil.
    fn ext_read(&self, txn: &Txn<'_>, k: u32) -> Option<u32> {
        let mop = txn
            .mops
            .iter()
            .find(|m| self.interner.key_lookup(&m.key) == Some(k))?;
        if mop.f != MicroF::Read {
            return None;
        }
        if mop.value.is_nil() {
            Some(NIL)
        } else {
            self.version_of(k, &mop.value)
        }
    }

    /// Why an optional source put `e.x` before `e.y`, in words.
    fn evidence(&self, e: &ExtraEdge) -> String {
        let ops = self.history.ops();
        let (from, to) = (&self.txns[e.from as usize], &self.txns[e.to as usize]);
        let value = |v: u32| self.interner.value(self.versions[v as usize].elem);
        match e.source {
            Source::SequentialKeys => format!(
                "keys are assumed sequential, and process {} saw {} (index {}) before {} (index {})",
                from.process,
                value(e.x),
                ops[from.position()].index,
                value(e.y),
                ops[to.position()].index
            ),
            _ => format!(
                "keys are assumed linearizable, and the transaction that saw {} completed (index {}) before the one that saw {} was invoked (index {})",
                value(e.x),
                ops[from.position()].index,
                value(e.y),
                ops[to.invoke].index
            ),
        }
    }

    /// The optional-source edges into version `y`.
    fn extras_into(&self, y: u32) -> impl Iterator<Item = &ExtraEdge> + '_ {
        self.extra_into
            .get(y)
            .iter()
            .map(|&i| &self.extra[i as usize])
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
                    let wfr = self.wfr_pred[y as usize];
                    let xval = |x: u32| self.interner.value(self.versions[x as usize].elem);
                    if label == WW {
                        if wfr != NONE && self.versions[wfr as usize].writer == a {
                            let xval = xval(wfr);
                            return Some((
                                format!(
                                    "{bn} wrote key {key} = {} after {an} wrote {xval}, because {bn} read {xval} before writing {}",
                                    mop.value, mop.value
                                ),
                                json!({"type": "ww", "key": key, "value": xval, "value'": &mop.value}),
                            ));
                        }
                        let e = self
                            .extras_into(y)
                            .find(|e| self.versions[e.x as usize].writer == a)?;
                        let x = xval(e.x);
                        return Some((
                            format!(
                                "{bn} wrote key {key} = {} after {an} wrote {x}, because {}",
                                mop.value,
                                self.evidence(e)
                            ),
                            json!({"type": "ww", "key": key, "value": x, "value'": &mop.value, "source": e.source.name()}),
                        ));
                    }
                    let read = self.ext_read(ta, k)?;
                    let no_preds = wfr == NONE && self.extras_into(y).next().is_none();
                    if read == NIL {
                        return no_preds.then(|| (
                            format!(
                                "{an} read key {key} = nil (the initial state), which {bn} overwrote with {}",
                                mop.value
                            ),
                            json!({"type": "rw", "key": key, "value": Value::Nil, "value'": &mop.value}),
                        ));
                    }
                    let x = xval(read);
                    if wfr == read {
                        return Some((
                            format!(
                                "{an} read key {key} = {x}, which {bn} overwrote with {} (it read {x} before writing)",
                                mop.value
                            ),
                            json!({"type": "rw", "key": key, "value": x, "value'": &mop.value}),
                        ));
                    }
                    let e = self.extras_into(y).find(|e| e.x == read)?;
                    Some((
                        format!(
                            "{an} read key {key} = {x}, which {bn} overwrote with {} ({})",
                            mop.value,
                            self.evidence(e)
                        ),
                        json!({"type": "rw", "key": key, "value": x, "value'": &mop.value, "source": e.source.name()}),
                    ))
                })
            }
            _ => None,
        }
    }
}

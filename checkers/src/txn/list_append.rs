//! List-append: transactions of `[:append k v]` and `[:r k [v1 v2 ...]]` over lists.
//!
//! Assumptions (checked; a history that breaks them is `unknown`): every value is appended to a
//! key at most once, and micro-ops are only appends and reads.
//!
//! Because a list is the record of its appends, every committed read of a key is a prefix of the
//! key's one true order of appends; the longest read gives that order (the version order). From
//! it:
//! - ww: the writer of each element precedes the writer of the next one; an append nobody read
//!   came after every element anybody read, so the writer of the last one read precedes it;
//! - wr: the writer of the last element of a read precedes the reader;
//! - rw: a reader precedes the writer of the element that follows what it read (for a read of
//!   the longest state, the writers of every append nobody read).

use histories::{History, MicroF, Value};
use serde_json::json;

use super::common::{
    Case, Cases, EdgeExplainer, Elem, Interner, NONE, RW, WR, WW, label_name, list_text,
};
use super::graph::{LabelledGraph, Labels};
use super::prepare::{Status, Txn, txn_json, txn_text};

/// One append: who appended which element to which key, and where reads put it.
#[derive(Debug, Clone, Copy)]
struct AppendRec {
    key: u32,
    elem: Elem,
    writer: u32,
    /// Index of the append among the writer's micro-ops.
    mop: u32,
    /// Whether it was the writer's last append to this key.
    final_in_txn: bool,
    /// Position in the key's version order, or NONE when no read observed it.
    pos: u32,
}

/// Appends grouped by key (a counting sort by key id), sorted by element within each key, so
/// that everything about one key sits together in memory.
#[derive(Debug, Default)]
struct AppendIndex {
    recs: Vec<AppendRec>,
    /// recs[start[k]..start[k + 1]] are the appends to key k.
    start: Vec<u32>,
}

impl AppendIndex {
    fn build(mut recs: Vec<AppendRec>, nkeys: usize) -> AppendIndex {
        let mut start = vec![0u32; nkeys + 1];
        for r in &recs {
            start[r.key as usize + 1] += 1;
        }
        for k in 0..nkeys {
            start[k + 1] += start[k];
        }
        let mut fill = start.clone();
        let mut sorted = vec![
            AppendRec {
                key: 0,
                elem: Elem::Int(0),
                writer: NONE,
                mop: NONE,
                final_in_txn: true,
                pos: NONE,
            };
            recs.len()
        ];
        for r in recs.drain(..) {
            let slot = &mut fill[r.key as usize];
            sorted[*slot as usize] = r;
            *slot += 1;
        }
        for k in 0..nkeys {
            sorted[start[k] as usize..start[k + 1] as usize].sort_unstable_by_key(|r| r.elem);
        }
        AppendIndex {
            recs: sorted,
            start,
        }
    }

    fn of_key(&self, k: u32) -> &[AppendRec] {
        &self.recs[self.start[k as usize] as usize..self.start[k as usize + 1] as usize]
    }

    fn find(&self, k: u32, e: Elem) -> Option<usize> {
        let lo = self.start[k as usize] as usize;
        self.of_key(k)
            .binary_search_by_key(&e, |r| r.elem)
            .ok()
            .map(|i| lo + i)
    }

    fn get(&self, k: u32, e: Elem) -> Option<&AppendRec> {
        self.find(k, e).map(|i| &self.recs[i])
    }
}

/// One position of a key's version order.
#[derive(Debug, Clone, Copy)]
struct VoEntry {
    elem: Elem,
    /// Who appended it, or NONE.
    writer: u32,
    /// Whether it was the writer's last append to the key.
    final_in_txn: bool,
}

/// The analysis of a list-append history, kept for explaining edges.
#[derive(Debug)]
pub struct ListAppend<'h, 'a> {
    history: &'h History,
    txns: &'a [Txn<'h>],
    interner: Interner<'h>,
    appends: AppendIndex,
    /// Per key: the version order (distinct elements of the longest read).
    order: Vec<Vec<VoEntry>>,
    /// Per key: the (txn, mop) of the longest read, NONE if none.
    longest: Vec<(u32, u32)>,
}

/// Reads a list value: `nil` is the empty list.
fn read_list(v: &Value) -> Option<&[Value]> {
    match v {
        Value::List(items) => Some(items),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

/// Infers the dependency edges of a list-append history into `graph` (nodes are indices into
/// `txns`) and records its non-cycle anomalies in `cases`. `observed[t]` is set for info
/// transactions whose writes somebody read.
///
/// The history is walked twice: once over every micro-op, once over every committed read.
/// Appends are indexed by key; a read that is a prefix of its key's version order (the usual
/// case) is checked by comparing it with that order, without any lookup.
pub fn analyze<'h, 'a>(
    history: &'h History,
    txns: &'a [Txn<'h>],
    graph: &mut LabelledGraph,
    cases: &mut Cases,
    observed: &mut [bool],
) -> Result<ListAppend<'h, 'a>, String> {
    let ops = history.ops();
    let mut interner = Interner::default();
    let mut recs: Vec<AppendRec> = Vec::with_capacity(txns.len() * 2);
    // Committed reads: (txn, mop, key); the longest read of each key and its length.
    let mut reads: Vec<(u32, u32, u32)> = Vec::with_capacity(txns.len() * 2);
    let mut longest: Vec<(u32, u32)> = Vec::new();
    let mut longest_len: Vec<usize> = Vec::new();
    // Reads of a key followed by an append to it in the same transaction: (key, state, txn).
    let mut rmw: Vec<(u32, Option<Elem>, u32)> = Vec::new();
    let mut keys: Vec<u32> = Vec::new();
    let mut internal = Internal::default();

    // Pass 1: every micro-op.
    for (t, txn) in txns.iter().enumerate() {
        keys.clear();
        let first_rec = recs.len();
        for (m, mop) in txn.mops.iter().enumerate() {
            let k = interner.key(&mop.key);
            keys.push(k);
            match mop.f {
                MicroF::Append => {
                    let e = interner.elem(&mop.value);
                    if let Some(prev) = recs[first_rec..].iter_mut().rev().find(|r| r.key == k) {
                        prev.final_in_txn = false;
                    }
                    recs.push(AppendRec {
                        key: k,
                        elem: e,
                        writer: t as u32,
                        mop: m as u32,
                        final_in_txn: true,
                        pos: NONE,
                    });
                }
                MicroF::Read => {
                    if txn.status != Status::Ok {
                        continue;
                    }
                    let Some(items) = read_list(&mop.value) else {
                        return Err(format!(
                            "the read of key {} at index {} returned {}; expected a list or nil",
                            mop.key,
                            ops[txn.position()].index,
                            mop.value
                        ));
                    };
                    reads.push((t as u32, m as u32, k));
                    if longest.len() <= k as usize {
                        longest.resize(k as usize + 1, (NONE, NONE));
                        longest_len.resize(k as usize + 1, 0);
                    }
                    if longest[k as usize].0 == NONE || items.len() > longest_len[k as usize] {
                        longest[k as usize] = (t as u32, m as u32);
                        longest_len[k as usize] = items.len();
                    }
                    let first_access = !keys[..m].contains(&k);
                    let appends_later = txn.mops[m + 1..]
                        .iter()
                        .any(|o| o.f == MicroF::Append && o.key == mop.key);
                    if first_access && appends_later {
                        rmw.push((k, items.last().map(|v| interner.elem(v)), t as u32));
                    }
                }
                MicroF::Write => {
                    return Err(format!(
                        "the list-append workload has no [w ...] micro-op (index {}); expected [append k v] and [r k [v ...]]",
                        ops[txn.position()].index
                    ));
                }
            }
        }
        if txn.status == Status::Ok && (1..keys.len()).any(|i| keys[..i].contains(&keys[i])) {
            internal.check(history, txn, &keys, &mut interner, cases);
        }
    }
    let nkeys = interner.key_list.len();
    longest.resize(nkeys, (NONE, NONE));
    let mut appends = AppendIndex::build(recs, nkeys);
    for k in 0..nkeys as u32 {
        let recs = appends.of_key(k);
        if let Some(w) = recs.windows(2).find(|w| w[0].elem == w[1].elem) {
            let (a, b) = (&txns[w[0].writer as usize], &txns[w[1].writer as usize]);
            return Err(format!(
                "value {} was appended to key {} twice (index {} and index {}); list-append needs unique appended values",
                interner.value(w[0].elem),
                interner.key_of(k),
                ops[a.position()].index,
                ops[b.position()].index
            ));
        }
    }
    let live = |w: u32| w != NONE && txns[w as usize].status != Status::Fail;

    // Pass 2: the version order of each key, the longest committed read without repeats. Along
    // it: ww edges, dirty updates, and the first position a read must not reach unremarked (an
    // element nobody appended, or a failed transaction appended).
    let mut order: Vec<Vec<VoEntry>> = vec![Vec::new(); nkeys];
    let mut first_suspect: Vec<u32> = vec![NONE; nkeys];
    for k in 0..nkeys {
        let (lt, lm) = longest[k];
        if lt == NONE {
            continue;
        }
        let items = read_list(&txns[lt as usize].mops[lm as usize].value).unwrap_or(&[]);
        let vo = &mut order[k];
        let mut aborted: Option<(u32, usize)> = None;
        for v in items {
            let e = interner.elem(v);
            let (w, final_in_txn) = match appends.find(k as u32, e) {
                Some(i) => {
                    let r = &mut appends.recs[i];
                    if r.pos != NONE {
                        continue;
                    }
                    r.pos = vo.len() as u32;
                    (r.writer, r.final_in_txn)
                }
                None if vo.iter().any(|o| o.elem == e) => continue,
                None => (NONE, true),
            };
            let i = vo.len();
            vo.push(VoEntry {
                elem: e,
                writer: w,
                final_in_txn,
            });
            let status = (w != NONE).then(|| txns[w as usize].status);
            if matches!(status, None | Some(Status::Fail)) && first_suspect[k] == NONE {
                first_suspect[k] = i as u32;
            }
            match status {
                Some(Status::Info) => observed[w as usize] = true,
                Some(Status::Fail) if aborted.is_none() => aborted = Some((w, i)),
                Some(Status::Ok) => {
                    if let Some((fw, fi)) = aborted.take() {
                        let key = interner.key_of(k as u32);
                        let (failed, committed) = (&txns[fw as usize], &txns[w as usize]);
                        let values: Vec<Value> =
                            vo[fi..=i].iter().map(|o| interner.value(o.elem)).collect();
                        cases.add("dirty-update", || Case {
                            json: json!({
                                "key": key,
                                "values": values,
                                "txns": [txn_json(history, failed), txn_json(history, committed)],
                            }),
                            text: vec![format!(
                                "dirty update: on key {}, the committed transaction at {} appended {} after {} by the failed transaction at {}",
                                key,
                                txn_text(history, committed),
                                v,
                                values[0],
                                txn_text(history, failed)
                            )],
                        });
                    }
                }
                _ => {}
            }
            if i > 0 {
                let pw = vo[i - 1].writer;
                if live(pw) && live(w) && pw != w {
                    graph.add_edge(pw, w, WW);
                }
            }
        }
    }

    // Pass 3: every committed read against the version order of its key.
    let mut incompatible_reported = vec![false; nkeys];
    let mut final_readers: Vec<Vec<u32>> = vec![Vec::new(); nkeys];
    let mut vs: Vec<Elem> = Vec::new();
    let mut scratch: Vec<Elem> = Vec::new();
    for &(t, m, k) in &reads {
        let txn = &txns[t as usize];
        let mop = &txn.mops[m as usize];
        let items = read_list(&mop.value).unwrap_or(&[]);
        let vo = &order[k as usize];
        let len = items.len();
        let prefix = len <= vo.len()
            && items
                .iter()
                .zip(vo.iter())
                .all(|(v, o)| interner.elem_lookup(v) == Some(o.elem));
        if prefix {
            // Elements before the first suspect one were appended by ok or info transactions.
            let suspect = first_suspect[k as usize] as usize;
            if len > suspect {
                for (v, o) in items.iter().zip(vo.iter()).skip(suspect) {
                    element_cases(history, txns, cases, txn, mop, v, o.writer);
                }
            }
            // A read containing an element its own transaction appends only later.
            for later in &txn.mops[m as usize + 1..] {
                if later.f == MicroF::Append && later.key == mop.key {
                    let pos = interner
                        .elem_lookup(&later.value)
                        .and_then(|e| appends.get(k, e))
                        .map_or(NONE, |r| r.pos);
                    if (pos as usize) < len {
                        future_read_case(history, cases, txn, mop, &later.value);
                    }
                }
            }
            if len > 0 {
                let last = vo[len - 1];
                if last.writer != t && live(last.writer) {
                    if !last.final_in_txn {
                        g1b_case(history, txns, cases, txn, mop, &items[len - 1], last.writer);
                    }
                    graph.add_edge(last.writer, t, WR);
                }
            }
            // rw: the reader precedes whoever appended the next element.
            match vo.get(len) {
                Some(next) => {
                    if next.writer != t && live(next.writer) {
                        graph.add_edge(t, next.writer, RW);
                    }
                }
                None => final_readers[k as usize].push(t),
            }
            continue;
        }

        // Not a prefix of the version order: duplicates, or an incompatible order.
        vs.clear();
        vs.extend(items.iter().map(|v| interner.elem(v)));
        scratch.clear();
        scratch.extend_from_slice(&vs);
        scratch.sort_unstable();
        let mut dups: Vec<Elem> = scratch
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        dups.dedup();
        if !dups.is_empty() {
            cases.add("duplicate-elements", || {
                let dup_text = list_text(&interner, &dups);
                Case {
                    json: json!({
                        "op": txn_json(history, txn),
                        "mop": [mop.f.as_str(), &mop.key, &mop.value],
                        "duplicates": dups.iter().map(|&e| interner.value(e)).collect::<Vec<_>>(),
                    }),
                    text: vec![format!(
                        "the transaction at {} read key {} = {}, which contains {} more than once; each value is appended only once",
                        txn_text(history, txn),
                        mop.key,
                        mop.value,
                        dup_text
                    )],
                }
            });
        } else if !incompatible_reported[k as usize] {
            incompatible_reported[k as usize] = true;
            let (lt, lm) = longest[k as usize];
            let ltxn = &txns[lt as usize];
            cases.add("incompatible-order", || Case {
                json: json!({
                    "key": &mop.key,
                    "values": [&mop.value, &ltxn.mops[lm as usize].value],
                    "ops": [txn_json(history, txn), txn_json(history, ltxn)],
                }),
                text: vec![format!(
                    "key {} was read as {} (at {}) and as {} (at {}); neither is a prefix of the other, so no single order of appends explains both",
                    mop.key,
                    mop.value,
                    txn_text(history, txn),
                    ltxn.mops[lm as usize].value,
                    txn_text(history, ltxn)
                )],
            });
        }
        for (v, &e) in items.iter().zip(vs.iter()) {
            let r = appends.get(k, e);
            let writer = r.map_or(NONE, |r| r.writer);
            element_cases(history, txns, cases, txn, mop, v, writer);
            if writer != NONE && txns[writer as usize].status == Status::Info {
                observed[writer as usize] = true;
            }
            if writer == t && r.is_some_and(|r| r.mop > m) {
                future_read_case(history, cases, txn, mop, v);
            }
        }
        if let (Some(v), Some(&e)) = (items.last(), vs.last()) {
            if let Some(&r) = appends.get(k, e) {
                if r.writer != t && live(r.writer) {
                    if !r.final_in_txn {
                        g1b_case(history, txns, cases, txn, mop, v, r.writer);
                    }
                    graph.add_edge(r.writer, t, WR);
                }
            }
        }
    }

    // Appends nobody read came after every element anybody read.
    let mut unobserved: Vec<(u32, u32)> = appends
        .recs
        .iter()
        .filter(|r| r.pos == NONE && live(r.writer))
        .map(|r| (r.key, r.writer))
        .collect();
    unobserved.dedup();
    for (k, t) in unobserved {
        if let Some(last) = order[k as usize].last() {
            if live(last.writer) && last.writer != t {
                graph.add_edge(last.writer, t, WW);
            }
        }
        for &r in &final_readers[k as usize] {
            graph.add_edge(r, t, RW);
        }
    }

    // Lost updates: committed transactions that read the same state of a key, then appended.
    rmw.sort_unstable();
    for group in rmw.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        if group.len() < 2 {
            continue;
        }
        let (k, state, _) = group[0];
        let key = interner.key_of(k);
        let state_text = match state {
            None => "the initial (empty) state".to_string(),
            Some(e) => format!("the state ending in {}", interner.value(e)),
        };
        cases.add("lost-update", || Case {
            json: json!({
                "key": key,
                "value": state.map(|e| interner.value(e)),
                "txns": group.iter().map(|&(_, _, t)| txn_json(history, &txns[t as usize])).collect::<Vec<_>>(),
            }),
            text: vec![format!(
                "lost update: {} committed transactions read key {} in {} and then appended to it: {}",
                group.len(),
                key,
                state_text,
                group
                    .iter()
                    .map(|&(_, _, t)| format!("({})", txn_text(history, &txns[t as usize])))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        });
    }

    Ok(ListAppend {
        history,
        txns,
        interner,
        appends,
        order,
        longest,
    })
}

/// garbage and G1a: an element of a committed read that nobody, or a failed transaction,
/// appended.
fn element_cases(
    history: &History,
    txns: &[Txn<'_>],
    cases: &mut Cases,
    txn: &Txn<'_>,
    mop: &histories::MicroOp,
    v: &Value,
    writer: u32,
) {
    if writer == NONE {
        cases.add("garbage", || Case {
            json: json!({
                "op": txn_json(history, txn),
                "mop": [mop.f.as_str(), &mop.key, &mop.value],
                "element": v,
            }),
            text: vec![format!(
                "the transaction at {} read key {} = {}, but no transaction ever appended {} to key {}",
                txn_text(history, txn),
                mop.key,
                mop.value,
                v,
                mop.key
            )],
        });
        return;
    }
    let w = &txns[writer as usize];
    if w.status == Status::Fail {
        cases.add("G1a", || Case {
            json: json!({
                "op": txn_json(history, txn),
                "mop": [mop.f.as_str(), &mop.key, &mop.value],
                "writer": txn_json(history, w),
                "element": v,
            }),
            text: vec![format!(
                "aborted read: the transaction at {} read key {} = {}, which contains {}, appended by the failed transaction at {}",
                txn_text(history, txn),
                mop.key,
                mop.value,
                v,
                txn_text(history, w)
            )],
        });
    }
}

fn future_read_case(
    history: &History,
    cases: &mut Cases,
    txn: &Txn<'_>,
    mop: &histories::MicroOp,
    v: &Value,
) {
    cases.add("future-read", || Case {
        json: json!({
            "op": txn_json(history, txn),
            "mop": [mop.f.as_str(), &mop.key, &mop.value],
            "element": v,
        }),
        text: vec![format!(
            "the transaction at {} read key {} = {}, which contains {}, a value it appends only later",
            txn_text(history, txn),
            mop.key,
            mop.value,
            v
        )],
    });
}

fn g1b_case(
    history: &History,
    txns: &[Txn<'_>],
    cases: &mut Cases,
    txn: &Txn<'_>,
    mop: &histories::MicroOp,
    v: &Value,
    writer: u32,
) {
    let w = &txns[writer as usize];
    cases.add("G1b", || Case {
        json: json!({
            "op": txn_json(history, txn),
            "mop": [mop.f.as_str(), &mop.key, &mop.value],
            "writer": txn_json(history, w),
            "element": v,
        }),
        text: vec![format!(
            "intermediate read: the transaction at {} read key {} = {}, ending in {}, but the transaction at {} appended more to key {} after {}",
            txn_text(history, txn),
            mop.key,
            mop.value,
            v,
            txn_text(history, w),
            mop.key,
            v
        )],
    });
}

/// internal: a read that disagrees with what the same transaction read or appended earlier.
#[derive(Debug, Default)]
struct Internal {
    /// Per key: (key, known prefix?, expected elements). With an unknown prefix, a read must
    /// end with the expected elements; with a known one, it must equal them.
    state: Vec<(u32, bool, Vec<Elem>)>,
    read: Vec<Elem>,
}

impl Internal {
    fn check<'h>(
        &mut self,
        history: &History,
        txn: &Txn<'h>,
        keys: &[u32],
        interner: &mut Interner<'h>,
        cases: &mut Cases,
    ) {
        self.state.clear();
        for (mop, &k) in txn.mops.iter().zip(keys) {
            let slot = match self.state.iter().position(|s| s.0 == k) {
                Some(i) => i,
                None => {
                    self.state.push((k, false, Vec::new()));
                    self.state.len() - 1
                }
            };
            if mop.f == MicroF::Append {
                let e = interner.elem(&mop.value);
                self.state[slot].2.push(e);
                continue;
            }
            self.read.clear();
            if let Some(items) = read_list(&mop.value) {
                for v in items {
                    let e = interner.elem(v);
                    self.read.push(e);
                }
            }
            let (_, known, expected) = &self.state[slot];
            let fresh = !*known && expected.is_empty();
            let ok = fresh
                || if *known {
                    self.read == *expected
                } else {
                    self.read.ends_with(expected)
                };
            if !ok {
                let exp = if *known {
                    list_text(interner, expected)
                } else {
                    let inner = list_text(interner, expected);
                    format!("[... {}", &inner[1..])
                };
                cases.add("internal", || Case {
                    json: json!({
                        "op": txn_json(history, txn),
                        "mop": [mop.f.as_str(), &mop.key, &mop.value],
                        "expected": exp,
                    }),
                    text: vec![format!(
                        "the transaction at {} read key {} = {}, but its own earlier reads and appends mean it should have read {}",
                        txn_text(history, txn),
                        mop.key,
                        mop.value,
                        exp
                    )],
                });
            }
            let slot = &mut self.state[slot];
            slot.1 = true;
            slot.2.clear();
            slot.2.extend_from_slice(&self.read);
        }
    }
}

impl ListAppend<'_, '_> {
    fn info(&self, k: u32, e: Elem) -> (u32, u32) {
        self.appends
            .get(k, e)
            .map_or((NONE, NONE), |r| (r.writer, r.pos))
    }

    fn key_id(&self, key: &histories::Key) -> Option<u32> {
        self.interner.key_lookup(key)
    }

    /// The element appended right before `e` on key `k` in the version order (for an append
    /// nobody read: the last element anybody read); `None` for the first.
    fn previous(&self, k: u32, e: Elem) -> Option<Elem> {
        let (_, pos) = self.info(k, e);
        let vo = &self.order[k as usize];
        if pos == NONE {
            vo.last().map(|o| o.elem)
        } else if pos == 0 {
            None
        } else {
            Some(vo[pos as usize - 1].elem)
        }
    }

    fn evidence(&self, k: u32) -> String {
        let (t, m) = self.longest[k as usize];
        if t == NONE {
            return "no read of the key observed any append".to_string();
        }
        let txn = &self.txns[t as usize];
        format!(
            "as the longest read of key {}, {} at index {}, shows",
            self.interner.key_of(k),
            txn.mops[m as usize].value,
            self.history.ops()[txn.position()].index
        )
    }
}

impl EdgeExplainer for ListAppend<'_, '_> {
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
            WW => tb.mops.iter().find_map(|mop| {
                if mop.f != MicroF::Append {
                    return None;
                }
                let k = self.key_id(&mop.key)?;
                let e = self.interner.elem_lookup(&mop.value)?;
                let prev = self.previous(k, e)?;
                if self.info(k, prev).0 != a {
                    return None;
                }
                let unread = self.info(k, e).1 == NONE;
                let why = if unread {
                    format!(
                        "{bn}'s append of {} was never read, so it came after {}, the last element any read of key {} observed",
                        mop.value,
                        self.interner.value(prev),
                        mop.key
                    )
                } else {
                    self.evidence(k)
                };
                Some((
                    format!(
                        "{bn} appended {} after {an} appended {} to key {} ({why})",
                        mop.value,
                        self.interner.value(prev),
                        mop.key
                    ),
                    json!({"type": label_name(label), "key": &mop.key, "value": self.interner.value(prev), "value'": &mop.value}),
                ))
            }),
            WR => tb.mops.iter().find_map(|mop| {
                if mop.f != MicroF::Read || tb.status != Status::Ok {
                    return None;
                }
                let k = self.key_id(&mop.key)?;
                let last = read_list(&mop.value)?.last()?;
                let e = self.interner.elem_lookup(last)?;
                if self.info(k, e).0 != a {
                    return None;
                }
                Some((
                    format!(
                        "{bn} read key {} = {}, observing {an}'s append of {}",
                        mop.key, mop.value, last
                    ),
                    json!({"type": label_name(label), "key": &mop.key, "value": last}),
                ))
            }),
            RW => ta.mops.iter().find_map(|mop| {
                if mop.f != MicroF::Read || ta.status != Status::Ok {
                    return None;
                }
                let k = self.key_id(&mop.key)?;
                let items = read_list(&mop.value)?;
                let vo = &self.order[k as usize];
                let next = match items.last() {
                    None => 0usize,
                    Some(v) => {
                        let e = self.interner.elem_lookup(v)?;
                        let pos = self.info(k, e).1;
                        if pos == NONE {
                            return None;
                        }
                        pos as usize + 1
                    }
                };
                // The element b appended that a's read did not contain.
                let (e, unread) = if next < vo.len() {
                    (vo[next].elem, false)
                } else {
                    let m = tb.mops.iter().find(|o| {
                        o.f == MicroF::Append
                            && o.key == mop.key
                            && self
                                .interner
                                .elem_lookup(&o.value)
                                .is_some_and(|e| self.info(k, e).1 == NONE)
                    })?;
                    (self.interner.elem_lookup(&m.value)?, true)
                };
                if self.info(k, e).0 != b {
                    return None;
                }
                let ev = self.interner.value(e);
                let text = if items.is_empty() {
                    format!(
                        "{an} read key {} = {} (the initial, empty state), before {bn} appended {}",
                        mop.key, mop.value, ev
                    )
                } else if unread {
                    format!(
                        "{an} read key {} = {}, which did not contain {}, appended by {bn} (never read, so after every observed append)",
                        mop.key, mop.value, ev
                    )
                } else {
                    format!(
                        "{an} read key {} = {}, which did not yet contain {}, appended next by {bn}",
                        mop.key, mop.value, ev
                    )
                };
                Some((
                    text,
                    json!({"type": label_name(label), "key": &mop.key, "value": items.last(), "value'": ev}),
                ))
            }),
            _ => None,
        }
    }
}

//! The search for a linearization of one partition: Wing & Gong's tree search made "just in
//! time" as in Lowe's *Testing for linearizability* (2017), with a memo of explored
//! configurations.
//!
//! Calls and returns sit in one doubly linked list in history order. A call may be linearized
//! when its call entry comes before the first return entry still in the list (no remaining call
//! finished before it began). Linearizing a call unlinks its entries; reaching a return entry
//! means that call was not linearized in time, so the search backtracks. Pending calls have no
//! return entry: they may be linearized late or never, and the search succeeds once every
//! required call is in.
//!
//! Candidates are tried in list order, required calls first and pending ones after: a
//! linearization rarely needs a pending call, and when none is needed this finds it without
//! detours. These prunings keep the search small:
//! - the memo: a configuration (set of linearized calls, state) explored once and left is known
//!   to fail, so meeting it again ends that branch;
//! - reads go first: if a candidate can never change the state ([`Model::read_only`]) and is
//!   legal now, any linearization from here can be reordered to put it first, so it is
//!   linearized at once and nothing else is tried in its place; when that branch fails, so does
//!   the configuration that led to it;
//! - twins: of pending calls that behave the same, only the earliest not yet linearized is
//!   tried, since once both are invoked either can stand for the other;
//! - dead ends: when the only calls that can come before a read still to be linearized are
//!   monotone ones ([`Model::monotone`]: appends, adds) and blind writes ([`Model::reset`]),
//!   and none of them can produce what the read saw any more ([`Model::may_reach`]), the
//!   branch ends at once instead of at the read's return.
//!
//! All of them keep the search complete: a configuration is given up only when no
//! linearization can start from it, so the verdict is exact. Everything is iterative, with an
//! explicit stack bounded by the number of calls; configurations are remembered compactly (see
//! [`Memo`]) and the memo, the transition table and the search count against the memory
//! budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::memo::{Insert, Memo};
use super::model::Model;
use super::prepare::PCall;

/// Limits shared by the searches of all partitions.
#[derive(Debug)]
pub(crate) struct Shared<'a> {
    pub cancel: Option<&'a AtomicBool>,
    pub max_states: Option<u64>,
    pub memory_limit_bytes: u64,
    /// Memo entries stored so far, all partitions together.
    pub states: AtomicU64,
    /// Estimated bytes held by the searches running now.
    pub bytes: AtomicU64,
}

/// Why a search stopped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Cancelled,
    /// Only from [`SearchConfig::max_steps`].
    Steps,
    MaxStates(u64),
    Memory(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Linearizable,
    NotLinearizable,
    Stopped(Stop),
}

#[derive(Debug, Clone)]
pub(crate) struct SearchResult {
    pub outcome: Outcome,
    /// Linearizable: a linearization (indices into the calls, in order, pending calls that
    /// were left out absent). Otherwise: the linearized prefix when the search got furthest.
    pub order: Vec<usize>,
    /// The call whose return the search could not get past, at its furthest.
    pub culprit: Option<usize>,
    /// The most calls linearized at once.
    pub max_depth: usize,
    pub states: u64,
    pub steps: u64,
}

const NIL: u32 = u32::MAX;
const UNKNOWN: u32 = u32::MAX;
const ILLEGAL: u32 = u32::MAX - 1;
const KIND_CALL: u8 = 0;
const KIND_RETURN: u8 = 1;
const KIND_TAIL: u8 = 2;
const HEAD: usize = 0;
/// Lookahead classes of entries: go on; a read's return, to check; a blind write's call, to
/// remember; anything else ends the lookahead.
const LOOK_PASS: u8 = 0;
const LOOK_READ: u8 = 1;
const LOOK_RESET: u8 = 2;
const LOOK_STOP: u8 = 3;
/// The budget is looked at every this many steps (a power of two).
const CHECK_EVERY_STEPS: u64 = 1 << 12;
/// Transition-table entries kept at most (5 bytes each, with the `may_reach` table); beyond,
/// steps are recomputed.
const MAX_TABLE_ENTRIES: usize = 1 << 22;
/// List entries the dead-end lookahead looks at, at most. Far reads rarely become
/// unsatisfiable, but when one does (a read of the initial value late in the history), seeing
/// it at every configuration is what saves an exhaustive search.
const LOOKAHEAD_ENTRIES: usize = 1024;
/// Blind writes the lookahead keeps track of, at most; it stops at one more.
const MAX_LOOKAHEAD_RESETS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Frame {
    /// The call entry that was linearized.
    entry: u32,
    /// The state before it.
    prev_state: u32,
    /// A read linearized as soon as it could be: nothing else is to be tried in its place.
    forced: bool,
    /// Tried in the pass over pending calls.
    pending_pass: bool,
}

/// Searches for a linearization of `members` (indices into `calls`, in invocation order).
pub(crate) fn search<M: Model>(
    model: &M,
    calls: &[PCall<M>],
    members: &[usize],
    shared: &Shared<'_>,
    config: SearchConfig,
) -> SearchResult {
    let mut s = Search::new(model, calls, members, shared, config);
    let mut result = s.run();
    shared.bytes.fetch_sub(s.reported_bytes, Ordering::Relaxed);
    for c in &mut result.order {
        *c = members[*c];
    }
    if let Some(c) = &mut result.culprit {
        *c = members[*c];
    }
    result
}

/// How one search runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchConfig {
    /// Prune with the dead-end lookahead. It makes refuting much faster, but the search then
    /// stops short of where a failing linearization could have got, so counterexamples are
    /// best taken from a search without it.
    pub lookahead: bool,
    /// Steps before stopping with [`Stop::Steps`].
    pub max_steps: u64,
}

struct Search<'a, M: Model> {
    model: &'a M,
    calls: Vec<&'a PCall<M>>,
    shared: &'a Shared<'a>,

    // The entry list: 0 is the head, 1..=m the entries, m + 1 the tail.
    kind: Vec<u8>,
    call_of: Vec<u32>,
    pos: Vec<usize>,
    next: Vec<u32>,
    prev: Vec<u32>,
    call_entry: Vec<u32>,
    return_entry: Vec<u32>,
    read_only: Vec<bool>,
    monotone: Vec<bool>,
    /// For a pending call: the pending call invoked last before it that behaves the same
    /// (equal input and output), or `NIL`. Of such twins only the earliest unlinearized one is
    /// tried: once both are invoked, either can stand for the other.
    twin_before: Vec<u32>,
    /// The state each blind write leaves, interned; `NIL` for other calls.
    reset_state: Vec<u32>,
    /// What the lookahead does at each entry: `LOOK_*`.
    look: Vec<u8>,
    /// Whether the dead-end lookahead can ever prune: some read has a `may_reach` to ask.
    lookahead: bool,
    max_steps: u64,

    // Interned states and the transition table.
    states: Vec<M::State>,
    state_ids: HashMap<M::State, u32>,
    state_hash: Vec<u64>,
    table: Vec<u32>,
    /// `may_reach` answers by (state, call): 0 not asked yet, 1 yes, 2 no.
    reach_table: Vec<u8>,
    table_rows: usize,

    zobrist: Vec<u64>,
    memo: Memo,

    // The search itself.
    state: u32,
    /// The linearized calls: required ones and pending ones in separate bitsets, each call at
    /// its `rank` among its kind. Required calls are linearized roughly in order, so the
    /// required bitset is all ones up to `lo` and all zeros from `hi`; the memo stores only
    /// the words between.
    required_bits: Vec<u64>,
    pending_bits: Vec<u64>,
    lo: usize,
    hi: usize,
    rank: Vec<u32>,
    pending: Vec<bool>,
    /// The Zobrist hash of the linearized set.
    zob: u64,
    stack: Vec<Frame>,
    required_left: usize,
    steps: u64,
    max_depth: usize,
    /// The furthest return the search got stuck at, and the prefix it had then.
    best_pos: usize,
    best_culprit: Option<u32>,
    best_order: Vec<u32>,

    reported_states: u64,
    reported_bytes: u64,
    /// Memo entries this search may still hold, from `max_states`.
    states_cap: u64,
    /// Bytes this search's memo may grow to.
    allowance_bytes: u64,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        calls: &'a [PCall<M>],
        members: &[usize],
        shared: &'a Shared<'a>,
        config: SearchConfig,
    ) -> Self {
        let calls: Vec<&PCall<M>> = members.iter().map(|&i| &calls[i]).collect();
        let n = calls.len();
        let mut events: Vec<(usize, u32, u8)> = Vec::with_capacity(2 * n);
        for (c, call) in calls.iter().enumerate() {
            events.push((call.invoke, c as u32, KIND_CALL));
            if let (true, Some(done)) = (call.required, call.completion) {
                events.push((done, c as u32, KIND_RETURN));
            }
        }
        // History positions are distinct, so the order is total.
        events.sort_unstable_by_key(|e| e.0);
        let m = events.len();
        let mut kind = vec![KIND_TAIL; m + 2];
        let mut call_of = vec![NIL; m + 2];
        let mut pos = vec![usize::MAX; m + 2];
        let mut call_entry = vec![NIL; n];
        let mut return_entry = vec![NIL; n];
        for (i, &(p, c, k)) in events.iter().enumerate() {
            let e = i + 1;
            kind[e] = k;
            call_of[e] = c;
            pos[e] = p;
            if k == KIND_CALL {
                call_entry[c as usize] = e as u32;
            } else {
                return_entry[c as usize] = e as u32;
            }
        }
        kind[HEAD] = KIND_TAIL; // never inspected as an entry
        let next: Vec<u32> = (0..m + 2)
            .map(|e| if e == m + 1 { NIL } else { e as u32 + 1 })
            .collect();
        let prev: Vec<u32> = (0..m + 2)
            .map(|e| if e == 0 { NIL } else { e as u32 - 1 })
            .collect();
        let read_only = calls
            .iter()
            .map(|c| model.read_only(&c.input, &c.output))
            .collect();
        let monotone: Vec<bool> = calls
            .iter()
            .map(|c| model.monotone(&c.input, &c.output))
            .collect();
        let required_left = calls.iter().filter(|c| c.required).count();
        let mut twin_before = vec![NIL; n];
        let mut last_twin: HashMap<(&M::Input, &M::Output), u32> = HashMap::new();
        for (c, call) in calls.iter().enumerate() {
            if return_entry[c] == NIL {
                if let Some(prev) = last_twin.insert((&call.input, &call.output), c as u32) {
                    twin_before[c] = prev;
                }
            }
        }
        let zobrist = (0..n as u64)
            .map(|c| splitmix64(c ^ 0x5851_F42D_4C95_7F2D))
            .collect();
        let pending: Vec<bool> = return_entry.iter().map(|&r| r == NIL).collect();
        let mut counts = [0u32; 2];
        let rank: Vec<u32> = pending
            .iter()
            .map(|&p| {
                counts[usize::from(p)] += 1;
                counts[usize::from(p)] - 1
            })
            .collect();
        let required_words = (counts[0] as usize).div_ceil(64);
        let pending_words = (counts[1] as usize).div_ceil(64);
        Search {
            model,
            calls,
            shared,
            kind,
            call_of,
            pos,
            next,
            prev,
            call_entry,
            return_entry,
            read_only,
            monotone,
            twin_before,
            reset_state: Vec::new(),
            look: vec![LOOK_STOP; m + 2],
            lookahead: config.lookahead,
            max_steps: config.max_steps,
            states: Vec::new(),
            state_ids: HashMap::new(),
            state_hash: Vec::new(),
            table: Vec::new(),
            reach_table: Vec::new(),
            table_rows: (MAX_TABLE_ENTRIES / n.max(1)).max(1),
            zobrist,
            memo: Memo::new(pending_words),
            state: 0,
            required_bits: vec![0; required_words],
            pending_bits: vec![0; pending_words],
            lo: 0,
            hi: 0,
            rank,
            pending,
            zob: 0,
            stack: Vec::with_capacity(n),
            required_left,
            steps: 0,
            max_depth: 0,
            best_pos: 0,
            best_culprit: None,
            best_order: Vec::new(),
            reported_states: 0,
            reported_bytes: 0,
            states_cap: u64::MAX,
            allowance_bytes: u64::MAX,
        }
    }

    fn intern(&mut self, state: M::State) -> u32 {
        if let Some(&id) = self.state_ids.get(&state) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(state.clone());
        self.state_ids.insert(state, id);
        self.state_hash
            .push(splitmix64(u64::from(id) ^ 0xA076_1D64_78BD_642F));
        if (id as usize) < self.table_rows {
            self.table
                .resize(self.table.len() + self.calls.len(), UNKNOWN);
            self.reach_table
                .resize(self.reach_table.len() + self.calls.len(), 0);
        }
        id
    }

    /// The state after call `c` from state `s`, or `ILLEGAL`.
    #[inline]
    fn step(&mut self, s: u32, c: u32) -> u32 {
        let n = self.calls.len();
        let at = s as usize * n + c as usize;
        if (s as usize) < self.table_rows {
            let t = self.table[at];
            if t != UNKNOWN {
                return t;
            }
        }
        let call = self.calls[c as usize];
        let t = match self
            .model
            .step(&self.states[s as usize], &call.input, &call.output)
        {
            Some(next) => self.intern(next),
            None => ILLEGAL,
        };
        if (s as usize) < self.table_rows {
            self.table[at] = t;
        }
        t
    }

    #[inline]
    fn lift(&mut self, c: u32) {
        let e = self.call_entry[c as usize] as usize;
        self.unlink(e);
        let r = self.return_entry[c as usize];
        if r != NIL {
            self.unlink(r as usize);
        }
    }

    #[inline]
    fn unlift(&mut self, c: u32) {
        let r = self.return_entry[c as usize];
        if r != NIL {
            self.relink(r as usize);
        }
        self.relink(self.call_entry[c as usize] as usize);
    }

    #[inline]
    fn unlink(&mut self, e: usize) {
        // Every entry lies strictly between the head and the tail, so both neighbours exist.
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    #[inline]
    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p as usize] = e as u32;
        self.prev[n as usize] = e as u32;
    }

    fn bytes(&self) -> u64 {
        let per_entry = 1 + 4 + 8 + 4 + 4;
        self.memo.bytes()
            + (self.table.capacity() * 4 + self.reach_table.capacity()) as u64
            + (self.kind.len() * per_entry) as u64
            + (self.states.len() * (2 * std::mem::size_of::<M::State>() + 24)) as u64
    }

    /// Publishes this search's usage and reads everyone's; says whether to stop.
    fn check_budget(&mut self) -> Option<Stop> {
        let shared = self.shared;
        if self.steps >= self.max_steps {
            return Some(Stop::Steps);
        }
        if shared.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Some(Stop::Cancelled);
        }
        let mine = self.memo.len() as u64;
        let all_states = shared
            .states
            .fetch_add(mine - self.reported_states, Ordering::Relaxed)
            + (mine - self.reported_states);
        self.reported_states = mine;
        if let Some(max) = shared.max_states {
            if all_states >= max {
                return Some(Stop::MaxStates(max));
            }
            self.states_cap = mine + (max - all_states);
        }
        let bytes = self.bytes();
        let all_bytes = if bytes >= self.reported_bytes {
            shared
                .bytes
                .fetch_add(bytes - self.reported_bytes, Ordering::Relaxed)
                + (bytes - self.reported_bytes)
        } else {
            shared
                .bytes
                .fetch_sub(self.reported_bytes - bytes, Ordering::Relaxed)
                - (self.reported_bytes - bytes)
        };
        self.reported_bytes = bytes;
        let limit = shared.memory_limit_bytes;
        if all_bytes > limit {
            return Some(Stop::Memory(limit));
        }
        let others = all_bytes - bytes;
        let table_and_rest = bytes - self.memo.bytes();
        self.allowance_bytes = (limit - others).saturating_sub(table_and_rest);
        None
    }

    /// Linearizes the call of entry `e` if it is legal and leads somewhere new.
    #[inline]
    fn try_push(&mut self, e: usize, forced: bool, pending_pass: bool) -> Push {
        let c = self.call_of[e];
        let next = self.step(self.state, c);
        if next == ILLEGAL {
            return Push::Illegal;
        }
        if self.memo.len() as u64 >= self.states_cap {
            return Push::Stop(Stop::MaxStates(self.shared.max_states.unwrap_or(0)));
        }
        self.set_bit(c);
        let z = self.zob ^ self.zobrist[c as usize];
        let hash = z ^ self.state_hash[next as usize];
        let header = u64::from(next) | (self.lo as u64) << 32;
        let required = &self.required_bits[self.lo..self.hi];
        match self.memo.insert(
            hash,
            header,
            required,
            &self.pending_bits,
            self.allowance_bytes,
        ) {
            Insert::New => {
                self.stack.push(Frame {
                    entry: e as u32,
                    prev_state: self.state,
                    forced,
                    pending_pass,
                });
                self.max_depth = self.max_depth.max(self.stack.len());
                self.zob = z;
                self.state = next;
                self.lift(c);
                self.required_left -= usize::from(self.calls[c as usize].required);
                Push::Pushed
            }
            Insert::Present => {
                self.clear_bit(c);
                Push::Seen
            }
            Insert::OutOfMemory => {
                self.clear_bit(c);
                Push::Stop(Stop::Memory(self.shared.memory_limit_bytes))
            }
        }
    }

    #[inline]
    fn set_bit(&mut self, c: u32) {
        let r = self.rank[c as usize] as usize;
        let (w, b) = (r / 64, 1u64 << (r % 64));
        if self.pending[c as usize] {
            self.pending_bits[w] |= b;
        } else {
            self.required_bits[w] |= b;
            self.hi = self.hi.max(w + 1);
            while self.lo < self.required_bits.len() && self.required_bits[self.lo] == !0 {
                self.lo += 1;
            }
        }
    }

    #[inline]
    fn clear_bit(&mut self, c: u32) {
        let r = self.rank[c as usize] as usize;
        let (w, b) = (r / 64, 1u64 << (r % 64));
        if self.pending[c as usize] {
            self.pending_bits[w] &= !b;
        } else {
            self.required_bits[w] &= !b;
            self.lo = self.lo.min(w);
            while self.hi > 0 && self.required_bits[self.hi - 1] == 0 {
                self.hi -= 1;
            }
        }
    }

    #[inline]
    fn is_set(&self, c: u32) -> bool {
        let r = self.rank[c as usize] as usize;
        let bits = if self.pending[c as usize] {
            &self.pending_bits
        } else {
            &self.required_bits
        };
        bits[r / 64] & (1u64 << (r % 64)) != 0
    }

    /// Undoes the last linearization.
    fn pop(&mut self) -> Option<Frame> {
        let f = self.stack.pop()?;
        let c = self.call_of[f.entry as usize];
        self.unlift(c);
        self.clear_bit(c);
        self.zob ^= self.zobrist[c as usize];
        self.required_left += usize::from(self.calls[c as usize].required);
        self.state = f.prev_state;
        Some(f)
    }

    /// A candidate read that is legal now, if there is one.
    fn legal_read(&mut self) -> Option<usize> {
        let mut x = self.next[HEAD] as usize;
        while self.kind[x] == KIND_CALL {
            let c = self.call_of[x];
            if self.read_only[c as usize] && self.step(self.state, c) != ILLEGAL {
                return Some(x);
            }
            x = self.next[x] as usize;
        }
        None
    }

    /// Whether `may_reach` holds for read `c` from state `s`.
    #[inline]
    fn reach(&mut self, s: u32, c: usize) -> bool {
        if (s as usize) < self.table_rows {
            match self.reach_table[s as usize * self.calls.len() + c] {
                1 => return true,
                2 => return false,
                _ => {}
            }
        }
        self.reach_slow(s, c)
    }

    #[cold]
    fn reach_slow(&mut self, s: u32, c: usize) -> bool {
        let call = self.calls[c];
        let yes = self
            .model
            .may_reach(&self.states[s as usize], &call.input, &call.output);
        if (s as usize) < self.table_rows {
            self.reach_table[s as usize * self.calls.len() + c] = if yes { 1 } else { 2 };
        }
        yes
    }

    /// Looks ahead for a read that must still be linearized and that nothing able to come
    /// before it (monotone calls from the current state, or from a blind write's state) can
    /// satisfy any more. Returns that read's return entry.
    fn dead_end(&mut self) -> Option<usize> {
        let mut resets = [0u32; MAX_LOOKAHEAD_RESETS];
        let mut n_resets = 0;
        let mut x = self.next[HEAD] as usize;
        for _ in 0..LOOKAHEAD_ENTRIES {
            match self.look[x] {
                LOOK_PASS => {}
                LOOK_READ => {
                    let c = self.call_of[x] as usize;
                    if !self.reach(self.state, c)
                        && resets[..n_resets].iter().all(|&r| !self.reach(r, c))
                    {
                        return Some(x);
                    }
                }
                LOOK_RESET => {
                    let r = self.reset_state[self.call_of[x] as usize];
                    if !resets[..n_resets].contains(&r) {
                        if n_resets == MAX_LOOKAHEAD_RESETS {
                            return None;
                        }
                        resets[n_resets] = r;
                        n_resets += 1;
                    }
                }
                // A call that could take the state anywhere, or the end.
                _ => return None,
            }
            x = self.next[x] as usize;
        }
        None
    }

    /// Remembers where the search got furthest: stuck at return entry `r`.
    fn note_stuck(&mut self, r: usize) {
        let pos = self.pos[r];
        let further = pos > self.best_pos
            || (pos == self.best_pos && self.stack.len() > self.best_order.len());
        if self.best_culprit.is_none() || further {
            self.best_pos = pos;
            self.best_culprit = Some(self.call_of[r]);
            self.best_order = self.order();
        }
    }

    fn order(&self) -> Vec<u32> {
        self.stack
            .iter()
            .map(|f| self.call_of[f.entry as usize])
            .collect()
    }

    fn result(&mut self, outcome: Outcome) -> SearchResult {
        let (order, culprit) = match outcome {
            Outcome::Linearizable => (self.order(), None),
            _ => (std::mem::take(&mut self.best_order), self.best_culprit),
        };
        let order = order.into_iter().map(|c| c as usize).collect();
        let culprit = culprit.map(|c| c as usize);
        SearchResult {
            outcome,
            order,
            culprit,
            max_depth: self.max_depth,
            states: self.memo.len() as u64,
            steps: self.steps,
        }
    }

    fn run(&mut self) -> SearchResult {
        let init = self.model.init();
        self.state = self.intern(init);
        let mut reset_state = vec![NIL; self.calls.len()];
        for (c, slot) in reset_state.iter_mut().enumerate() {
            let call = self.calls[c];
            if let Some(s) = self.model.reset(&call.input, &call.output) {
                *slot = self.intern(s);
            }
        }
        self.reset_state = reset_state;
        for x in 1..self.look.len() - 1 {
            let c = self.call_of[x] as usize;
            self.look[x] = match self.kind[x] {
                KIND_CALL if self.monotone[c] || self.read_only[c] => LOOK_PASS,
                KIND_CALL if self.reset_state[c] != NIL => LOOK_RESET,
                KIND_CALL => LOOK_STOP,
                _ if self.read_only[c] => LOOK_READ,
                _ => LOOK_PASS,
            };
        }
        // Without reads there is nothing to look ahead for.
        self.lookahead &= self
            .read_only
            .iter()
            .zip(&self.calls)
            .any(|(&r, c)| r && c.required);
        if let Some(stop) = self.check_budget() {
            return self.result(Outcome::Stopped(stop));
        }
        // `arrived`: the configuration is new, so prune it or take a legal read first.
        let mut arrived = true;
        let mut e = self.next[HEAD] as usize;
        // Candidates are tried in two passes over the list: required calls, then pending ones,
        // which a linearization rarely needs.
        let mut pending_pass = false;
        loop {
            self.steps += 1;
            if self.steps & (CHECK_EVERY_STEPS - 1) == 0 {
                if let Some(stop) = self.check_budget() {
                    return self.result(Outcome::Stopped(stop));
                }
            }
            if self.required_left == 0 {
                return self.result(Outcome::Linearizable);
            }
            let mut fails = false;
            if arrived {
                arrived = false;
                let changed = self.stack.last().is_none_or(|f| f.prev_state != self.state);
                let dead = if self.lookahead && changed {
                    self.dead_end()
                } else {
                    None
                };
                if let Some(r) = dead {
                    self.note_stuck(r);
                    fails = true;
                } else if let Some(x) = self.legal_read() {
                    match self.try_push(x, true, false) {
                        Push::Pushed => {
                            arrived = true;
                            continue;
                        }
                        // Known to fail, and it could have gone first: so does this.
                        Push::Seen | Push::Illegal => fails = true,
                        Push::Stop(stop) => return self.result(Outcome::Stopped(stop)),
                    }
                } else {
                    e = self.next[HEAD] as usize;
                    pending_pass = false;
                }
            }
            if !fails {
                match self.kind[e] {
                    KIND_CALL => {
                        let c = self.call_of[e];
                        let twin = self.twin_before[c as usize];
                        if self.pending[c as usize] != pending_pass
                            || (twin != NIL && !self.is_set(twin))
                        {
                            e = self.next[e] as usize;
                            continue;
                        }
                        match self.try_push(e, false, pending_pass) {
                            Push::Pushed => {
                                arrived = true;
                                e = self.next[HEAD] as usize;
                            }
                            Push::Seen | Push::Illegal => e = self.next[e] as usize,
                            Push::Stop(stop) => return self.result(Outcome::Stopped(stop)),
                        }
                        continue;
                    }
                    KIND_RETURN if !pending_pass => {
                        pending_pass = true;
                        e = self.next[HEAD] as usize;
                        continue;
                    }
                    KIND_RETURN => {
                        // This call had to be linearized by now and was not.
                        self.note_stuck(e);
                    }
                    // Only pending calls remain, so every required call is in.
                    _ => return self.result(Outcome::Linearizable),
                }
            }
            // Undo until a linearization leaves alternatives to try.
            loop {
                match self.pop() {
                    None => return self.result(Outcome::NotLinearizable),
                    Some(f) if f.forced => {}
                    Some(f) => {
                        e = self.next[f.entry as usize] as usize;
                        pending_pass = f.pending_pass;
                        break;
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Pushed,
    /// Already explored from there.
    Seen,
    Illegal,
    Stop(Stop),
}

/// A 64-bit mixer (Steele, Lea and Flood's SplitMix64 finalizer).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

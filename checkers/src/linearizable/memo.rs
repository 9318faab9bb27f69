//! The memo of configurations already explored: (set of linearized calls, model state).
//!
//! An open-addressing table over a flat arena, so that inserting costs no allocation except when
//! the table doubles. The caller supplies the hash (kept incrementally, Zobrist style), so no
//! hashing happens here; keys are still compared in full, so a hash collision can never merge
//! two configurations.
//!
//! A key is a header word and two runs of words, stored as they come: the search passes the
//! linearized set trimmed of the all-ones words at its start and the zero words at its end,
//! so that a long history costs a few words per entry, not one bit per call.

use std::collections::TryReserveError;

/// What an insertion found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Not seen before; now remembered.
    New,
    /// Seen before (and so already known to lead nowhere).
    Present,
    /// Remembering it would take the memo past its byte allowance.
    OutOfMemory,
}

const TAG_MASK: u64 = 0xFFFF_FFFF_0000_0000;
const INITIAL_SLOTS: usize = 1 << 10;
/// Arena words before an entry's key: hash, header, length of the first run.
const ENTRY_HEADER_WORDS: usize = 3;

#[derive(Debug)]
pub(crate) struct Memo {
    /// Entries `[hash, header, first.len(), first..., second...]`, back to back.
    arena: Vec<u64>,
    /// Words of every key's second run.
    second_words: usize,
    /// 0 = empty; otherwise the hash's high half, and in the low half the entry's offset in
    /// the arena plus one.
    slots: Vec<u64>,
    len: usize,
}

impl Memo {
    pub(crate) fn new(second_words: usize) -> Memo {
        Memo {
            arena: Vec::new(),
            second_words,
            slots: vec![0; INITIAL_SLOTS],
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held, as counted against the memory budget.
    pub(crate) fn bytes(&self) -> u64 {
        ((self.arena.capacity() + self.slots.len()) * std::mem::size_of::<u64>()) as u64
    }

    /// Remembers the key `(header, first, second)` unless it is already there.
    /// `allowance_bytes` caps what the memo may hold after growing.
    #[inline]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        header: u64,
        first: &[u64],
        second: &[u64],
        allowance_bytes: u64,
    ) -> Insert {
        debug_assert_eq!(second.len(), self.second_words);
        if (self.len + 1) * 2 > self.slots.len() && self.grow_slots(allowance_bytes).is_err() {
            return Insert::OutOfMemory;
        }
        let mask = self.slots.len() - 1;
        let tag = hash & TAG_MASK;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            if slot & TAG_MASK == tag
                && self.matches((slot & !TAG_MASK) as usize - 1, header, first, second)
            {
                return Insert::Present;
            }
            i = (i + 1) & mask;
        }
        let at = self.arena.len();
        let need = ENTRY_HEADER_WORDS + first.len() + second.len();
        // Offsets live in the low 32 bits of a slot, with 0 meaning empty.
        if at + need >= u32::MAX as usize {
            return Insert::OutOfMemory;
        }
        if at + need > self.arena.capacity() && self.grow_arena(need, allowance_bytes).is_err() {
            return Insert::OutOfMemory;
        }
        self.arena.push(hash);
        self.arena.push(header);
        self.arena.push(first.len() as u64);
        self.arena.extend_from_slice(first);
        self.arena.extend_from_slice(second);
        self.len += 1;
        self.slots[i] = tag | (at as u64 + 1);
        Insert::New
    }

    #[inline]
    fn matches(&self, at: usize, header: u64, first: &[u64], second: &[u64]) -> bool {
        let a = &self.arena;
        if a[at + 1] != header || a[at + 2] != first.len() as u64 {
            return false;
        }
        let start = at + ENTRY_HEADER_WORDS;
        let stored = &a[start..start + first.len() + second.len()];
        stored
            .iter()
            .zip(first.iter().chain(second))
            .all(|(x, y)| x == y)
    }

    fn grow_arena(&mut self, need: usize, allowance_bytes: u64) -> Result<(), ()> {
        let want = (self.arena.capacity() * 2)
            .max(self.arena.len() + need)
            .max(INITIAL_SLOTS * 8);
        let bytes = ((want + self.slots.len()) * 8) as u64;
        if bytes > allowance_bytes {
            return Err(());
        }
        let extra = want - self.arena.len();
        self.arena
            .try_reserve_exact(extra)
            .map_err(|_: TryReserveError| ())
    }

    fn grow_slots(&mut self, allowance_bytes: u64) -> Result<(), ()> {
        let new_len = self.slots.len() * 2;
        let bytes = ((self.arena.capacity() + new_len) * 8) as u64;
        if bytes > allowance_bytes {
            return Err(());
        }
        let mut slots: Vec<u64> = Vec::new();
        slots.try_reserve_exact(new_len).map_err(|_| ())?;
        slots.resize(new_len, 0);
        let mask = new_len - 1;
        let mut at = 0;
        while at < self.arena.len() {
            let hash = self.arena[at];
            let mut i = hash as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (hash & TAG_MASK) | (at as u64 + 1);
            at += ENTRY_HEADER_WORDS + self.arena[at + 2] as usize + self.second_words;
        }
        self.slots = slots;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

    #[test]
    fn remembers_configurations_and_tells_collisions_apart() {
        let mut memo = Memo::new(1);
        assert_eq!(memo.insert(7, 1, &[1, 0], &[5], u64::MAX), Insert::New);
        assert_eq!(memo.insert(7, 1, &[1, 0], &[5], u64::MAX), Insert::Present);
        // Same hash, different keys: all kept.
        assert_eq!(memo.insert(7, 2, &[1, 0], &[5], u64::MAX), Insert::New);
        assert_eq!(memo.insert(7, 1, &[0, 1], &[5], u64::MAX), Insert::New);
        assert_eq!(memo.insert(7, 1, &[1], &[5], u64::MAX), Insert::New);
        assert_eq!(memo.insert(7, 1, &[1, 0], &[6], u64::MAX), Insert::New);
        assert_eq!(memo.insert(7, 1, &[], &[5], u64::MAX), Insert::New);
        for i in 0..10_000u64 {
            let first = vec![i; (i % 4) as usize];
            assert_eq!(
                memo.insert(i.wrapping_mul(MIX), i, &first, &[9], u64::MAX),
                Insert::New
            );
        }
        for i in 0..10_000u64 {
            let first = vec![i; (i % 4) as usize];
            assert_eq!(
                memo.insert(i.wrapping_mul(MIX), i, &first, &[9], u64::MAX),
                Insert::Present
            );
        }
        assert_eq!(memo.len(), 10_006);
    }

    #[test]
    fn refuses_to_grow_past_its_allowance() {
        let mut memo = Memo::new(0);
        let allowance = memo.bytes() + 64 * 1024;
        let mut stopped = false;
        for i in 0..1_000_000u64 {
            match memo.insert(i.wrapping_mul(MIX), 0, &[i], &[], allowance) {
                Insert::New => {}
                Insert::Present => panic!("keys are distinct"),
                Insert::OutOfMemory => {
                    stopped = true;
                    break;
                }
            }
        }
        assert!(stopped);
        assert!(memo.bytes() <= allowance);
    }
}

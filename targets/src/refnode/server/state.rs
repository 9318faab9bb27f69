//! The in-memory data of a node, free of I/O: the replication log after the last snapshot, the
//! registers, and the values that are persisted.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::refnode::protocol::{Entry, EpochStart};

/// Small durable facts that are not entries: written atomically whenever one changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The highest epoch this node has taken part in.
    pub epoch: u64,
    /// The leader this node followed (or was) in `epoch`, kept across restarts so that two
    /// nodes claiming the same epoch are still recognised as two.
    pub epoch_leader: Option<String>,
    /// Set when this node learnt that a second leader claimed its epoch: its entries from this
    /// index on may collide with the other leader's (same index and epoch, different content),
    /// so they cannot be trusted by the prev-entry check and only a snapshot repairs the log.
    #[serde(default)]
    pub suspect_from: Option<u64>,
    /// Fenced failover: whom this node voted for in `epoch`, so a restart cannot make it
    /// vote twice in one epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voted_for: Option<String>,
}

/// The state after entry `index`, whose epoch is `epoch`; the log continues after it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub epoch: u64,
    /// `[key, value]` pairs sorted by key, so files and messages are deterministic.
    pub map: Vec<(i64, i64)>,
}

/// What a node finds in its data directory when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    pub snapshot: Snapshot,
    /// The entries after `snapshot.index`, contiguous.
    pub entries: Vec<Entry>,
    /// `None` for a fresh directory.
    pub meta: Option<Meta>,
}

impl Durable {
    pub fn is_fresh(&self) -> bool {
        self.meta.is_none() && self.entries.is_empty() && self.snapshot.index == 0
    }
}

/// The replication log after its base (the last snapshot): entries `base_index + 1 ..=
/// last_index()`, in order, without gaps.
#[derive(Debug, Clone, Default)]
pub struct RepLog {
    base_index: u64,
    base_epoch: u64,
    entries: Vec<Entry>,
}

impl RepLog {
    /// Panics when `entries` do not continue the base without gaps; storage recovery checks
    /// this before, so a failure here is a bug, not bad input.
    pub fn new(base_index: u64, base_epoch: u64, entries: Vec<Entry>) -> RepLog {
        for (k, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                base_index + 1 + k as u64,
                "log entries must be contiguous"
            );
        }
        RepLog {
            base_index,
            base_epoch,
            entries,
        }
    }

    pub fn base_index(&self) -> u64 {
        self.base_index
    }

    pub fn base_epoch(&self) -> u64 {
        self.base_epoch
    }

    pub fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    pub fn last_epoch(&self) -> u64 {
        self.entries.last().map_or(self.base_epoch, |e| e.epoch)
    }

    /// Entries held in memory (after the base).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The epoch of the entry at `index`, if this log can tell (the base counts; compacted
    /// entries before it do not).
    pub fn epoch_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            Some(self.base_epoch)
        } else {
            self.get(index).map(|e| e.epoch)
        }
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        if index <= self.base_index {
            return None;
        }
        let offset = usize::try_from(index - self.base_index - 1).ok()?;
        self.entries.get(offset)
    }

    /// The entries `from ..= to` that this log holds (empty when none).
    pub fn slice(&self, from: u64, to: u64) -> &[Entry] {
        let from = from.max(self.base_index + 1);
        let to = to.min(self.last_index());
        if from > to {
            return &[];
        }
        let start = (from - self.base_index - 1) as usize;
        let end = (to - self.base_index) as usize;
        &self.entries[start..end]
    }

    pub fn push(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log append must not leave a gap"
        );
        assert!(
            entry.epoch >= self.last_epoch(),
            "epochs never decrease along a log"
        );
        self.entries.push(entry);
    }

    /// Drops the entries from `index` on (which must lie after the base).
    pub fn truncate_from(&mut self, index: u64) {
        assert!(index > self.base_index, "cannot truncate into the snapshot");
        let keep = usize::try_from(index - self.base_index - 1).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
    }

    /// Drops the entries up to `index`, which becomes the base.
    pub fn compact_to(&mut self, index: u64) {
        let Some(epoch) = self.epoch_at(index) else {
            return;
        };
        let drop = (index - self.base_index) as usize;
        self.entries.drain(..drop);
        self.base_index = index;
        self.base_epoch = epoch;
    }

    /// Replaces everything with an empty log after `(index, epoch)`.
    pub fn reset(&mut self, index: u64, epoch: u64) {
        self.entries.clear();
        self.base_index = index;
        self.base_epoch = epoch;
    }

    /// The first index of each epoch in this log, starting with the base.
    pub fn epoch_starts(&self) -> Vec<EpochStart> {
        let mut starts = vec![EpochStart {
            epoch: self.base_epoch,
            first_index: self.base_index,
        }];
        for e in &self.entries {
            if starts.last().is_some_and(|s| s.epoch != e.epoch) {
                starts.push(EpochStart {
                    epoch: e.epoch,
                    first_index: e.index,
                });
            }
        }
        starts
    }

    /// The first index of the trailing run of entries with `epoch` (epochs never decrease
    /// along a log, so these entries form a suffix).
    pub fn first_index_of_epoch(&self, epoch: u64) -> Option<u64> {
        let mut first = None;
        for e in self.entries.iter().rev() {
            if e.epoch != epoch {
                break;
            }
            first = Some(e.index);
        }
        first
    }
}

/// The leader's epoch at `index` according to `starts` (from a snapshot message), or `None`
/// when `index` lies before the first start (compacted away on the leader).
pub fn epoch_at_in_starts(starts: &[EpochStart], index: u64) -> Option<u64> {
    starts
        .iter()
        .take_while(|s| s.first_index <= index)
        .last()
        .map(|s| s.epoch)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// The value of the newest uncommitted entry for the key.
    value: i64,
    /// How many uncommitted entries touch the key.
    count: u64,
}

/// The registers as two layers: the committed state (after entries up to the commit index)
/// and, above it, the newest value of every key written by an uncommitted entry. The leader
/// answers reads from the committed layer and evaluates cas on the head (both layers), so a
/// write that is not yet acknowledged is invisible to readers but still ordered for cas.
#[derive(Debug, Clone, Default)]
pub struct Registers {
    committed: HashMap<i64, i64>,
    uncommitted: HashMap<i64, Pending>,
}

impl Registers {
    pub fn from_map(map: &[(i64, i64)]) -> Registers {
        Registers {
            committed: map.iter().copied().collect(),
            uncommitted: HashMap::new(),
        }
    }

    pub fn committed(&self, key: i64) -> Option<i64> {
        self.committed.get(&key).copied()
    }

    pub fn head(&self, key: i64) -> Option<i64> {
        match self.uncommitted.get(&key) {
            Some(p) => Some(p.value),
            None => self.committed(key),
        }
    }

    /// Applies an appended, not yet committed entry (a no-op changes nothing).
    pub fn apply_entry(&mut self, e: &Entry) {
        if !e.noop {
            self.apply_uncommitted(e.key, e.value);
        }
    }

    /// Moves an entry applied with [`Registers::apply_entry`] into the committed layer.
    pub fn commit_entry(&mut self, e: &Entry) {
        if !e.noop {
            self.commit(e.key, e.value);
        }
    }

    /// Forgets every uncommitted entry and applies `entries` (those after the commit
    /// index) again: after a follower truncated a suffix of its log.
    pub fn rebuild_uncommitted(&mut self, entries: &[Entry]) {
        self.uncommitted.clear();
        for e in entries {
            self.apply_entry(e);
        }
    }

    /// Applies an appended, not yet committed write.
    pub fn apply_uncommitted(&mut self, key: i64, value: i64) {
        let p = self
            .uncommitted
            .entry(key)
            .or_insert(Pending { value, count: 0 });
        p.value = value;
        p.count += 1;
    }

    /// Moves the oldest uncommitted entry of `key` (which wrote `value`) into the committed
    /// layer. Entries commit in log order, so it is always the oldest one.
    pub fn commit(&mut self, key: i64, value: i64) {
        self.committed.insert(key, value);
        if let Some(p) = self.uncommitted.get_mut(&key) {
            p.count -= 1;
            if p.count == 0 {
                self.uncommitted.remove(&key);
            }
        }
    }

    pub fn committed_map(&self) -> Vec<(i64, i64)> {
        let mut map: Vec<(i64, i64)> = self.committed.iter().map(|(k, v)| (*k, *v)).collect();
        map.sort_unstable();
        map
    }

    pub fn head_map(&self) -> Vec<(i64, i64)> {
        let mut head = self.committed.clone();
        for (k, p) in &self.uncommitted {
            head.insert(*k, p.value);
        }
        let mut map: Vec<(i64, i64)> = head.into_iter().collect();
        map.sort_unstable();
        map
    }

    pub fn key_count(&self) -> usize {
        self.committed.len()
            + self
                .uncommitted
                .keys()
                .filter(|k| !self.committed.contains_key(k))
                .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, epoch: u64, key: i64, value: i64) -> Entry {
        Entry::write(index, epoch, key, value)
    }

    #[test]
    fn log_positions_slices_and_compaction() {
        let mut log = RepLog::new(2, 1, vec![e(3, 1, 0, 0), e(4, 2, 0, 1)]);
        log.push(e(5, 2, 1, 1));
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.epoch_at(2), Some(1));
        assert_eq!(log.epoch_at(1), None);
        assert_eq!(log.epoch_at(6), None);
        assert_eq!(log.slice(1, 4).len(), 2);
        assert_eq!(log.slice(5, 9)[0].index, 5);
        assert!(log.slice(6, 9).is_empty());
        assert_eq!(log.first_index_of_epoch(2), Some(4));
        assert_eq!(
            log.epoch_starts(),
            vec![
                EpochStart {
                    epoch: 1,
                    first_index: 2
                },
                EpochStart {
                    epoch: 2,
                    first_index: 4
                }
            ]
        );
        log.compact_to(4);
        assert_eq!((log.base_index(), log.base_epoch(), log.len()), (4, 2, 1));
        assert_eq!(epoch_at_in_starts(&log.epoch_starts(), 3), None);
        assert_eq!(epoch_at_in_starts(&log.epoch_starts(), 9), Some(2));
    }

    #[test]
    fn registers_hide_uncommitted_values_from_the_committed_layer() {
        let mut r = Registers::from_map(&[(1, 10)]);
        r.apply_uncommitted(1, 11);
        r.apply_uncommitted(1, 12);
        r.apply_uncommitted(2, 20);
        assert_eq!((r.committed(1), r.head(1)), (Some(10), Some(12)));
        assert_eq!(r.head_map(), vec![(1, 12), (2, 20)]);
        assert_eq!(r.key_count(), 2);
        r.commit(1, 11);
        assert_eq!((r.committed(1), r.head(1)), (Some(11), Some(12)));
        r.commit(1, 12);
        r.commit(2, 20);
        assert_eq!(r.committed_map(), r.head_map());
        r.apply_entry(&e(9, 1, 3, 30));
        r.apply_entry(&Entry {
            noop: true,
            ..e(10, 2, 3, 99)
        });
        assert_eq!(r.head(3), Some(30), "a no-op writes nothing");
        r.rebuild_uncommitted(&[]);
        assert_eq!(r.head(3), None, "the truncated entry is gone");
        assert_eq!(r.head(1), Some(12));
    }

    #[test]
    fn truncation_keeps_the_prefix() {
        let mut log = RepLog::new(2, 1, vec![e(3, 1, 0, 0), e(4, 2, 0, 1), e(5, 2, 0, 2)]);
        log.truncate_from(4);
        assert_eq!((log.last_index(), log.last_epoch()), (3, 1));
        log.push(e(4, 3, 0, 9));
        assert_eq!(log.epoch_at(4), Some(3));
    }
}

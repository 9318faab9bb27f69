//! Merkle trees over key ranges, for anti-entropy between leaderless replicas (DDIA ch. 5,
//! "Read repair and anti-entropy"; Dynamo §4.7).
//!
//! The ring is cut into [`LEAVES`] ranges by the top bits of the key hash. A leaf's hash
//! covers the digests of the keys in its range; each inner node's hash covers its
//! [`FANOUT`] children. Two replicas compare roots, descend only into children whose hashes
//! differ, and exchange the keys of the differing leaves alone, so replicas that agree cost one
//! message and a single differing key costs [`DEPTH`] + 1 round trips and one leaf of keys.

use super::ring::Fnv;

pub const FANOUT: usize = 4;
/// Levels below the root.
pub const DEPTH: u8 = 4;
/// `FANOUT ^ DEPTH` leaf ranges.
pub const LEAVES: usize = 256;

/// The hashes of one replica's tree, level by level (level 0 is the root, level `DEPTH` the
/// leaves). An empty range hashes to 0, so two replicas without keys agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<u64>>,
}

/// The leaf range of a key hash.
pub fn leaf_of(key_hash: u64) -> u32 {
    (key_hash >> 56) as u32
}

/// The children of node `index` at some level, as indexes one level down.
pub fn children(index: u32) -> std::ops::Range<u32> {
    let first = index * FANOUT as u32;
    first..first + FANOUT as u32
}

/// The number of nodes at `level`.
pub fn width(level: u8) -> usize {
    FANOUT.pow(u32::from(level))
}

impl MerkleTree {
    /// Builds the tree from `(key_hash, digest)` pairs, which must come sorted by key hash (so
    /// that a leaf's hash does not depend on the order keys were stored).
    pub fn build(items: impl IntoIterator<Item = (u64, u64)>) -> MerkleTree {
        let mut leaf_hashers: Vec<Option<Fnv>> = vec![None; LEAVES];
        let mut last = None;
        for (key_hash, digest) in items {
            debug_assert!(last.is_none_or(|l| l <= key_hash), "items must be sorted");
            last = Some(key_hash);
            let h = leaf_hashers[leaf_of(key_hash) as usize].get_or_insert_with(Fnv::new);
            h.write(&key_hash.to_le_bytes());
            h.write(&digest.to_le_bytes());
        }
        let leaves: Vec<u64> = leaf_hashers
            .iter()
            .map(|h| h.map_or(0, |h| h.finish()))
            .collect();
        let mut levels = vec![leaves];
        for _ in 0..DEPTH {
            let below = levels.last().expect("one level at least");
            let above: Vec<u64> = below
                .chunks(FANOUT)
                .map(|children| {
                    if children.iter().all(|h| *h == 0) {
                        return 0;
                    }
                    let mut h = Fnv::new();
                    for c in children {
                        h.write(&c.to_le_bytes());
                    }
                    h.finish()
                })
                .collect();
            levels.push(above);
        }
        levels.reverse();
        MerkleTree { levels }
    }

    pub fn root(&self) -> u64 {
        self.levels[0][0]
    }

    pub fn hash(&self, level: u8, index: u32) -> u64 {
        self.levels
            .get(usize::from(level))
            .and_then(|l| l.get(index as usize))
            .copied()
            .unwrap_or(0)
    }

    /// The nodes of `theirs` (index, hash) at `level` whose hash differs from ours.
    pub fn differing(&self, level: u8, theirs: &[(u32, u64)]) -> Vec<u32> {
        theirs
            .iter()
            .filter(|(i, h)| self.hash(level, *i) != *h)
            .map(|(i, _)| *i)
            .collect()
    }

    /// Our hashes of the children of `parents` (nodes at `level`), for the next comparison.
    pub fn children_of(&self, level: u8, parents: &[u32]) -> Vec<(u32, u64)> {
        parents
            .iter()
            .flat_map(|p| children(*p))
            .map(|c| (c, self.hash(level + 1, c)))
            .collect()
    }

    /// The leaf ranges where the two trees differ, found by descending from the root as two
    /// replicas do over the network (used by tests and as the reference for the protocol).
    pub fn diff(&self, other: &MerkleTree) -> Vec<u32> {
        let mut frontier = other.differing_root(self);
        for level in 0..DEPTH {
            let theirs = other.children_of(level, &frontier);
            frontier = self.differing(level + 1, &theirs);
        }
        frontier
    }

    fn differing_root(&self, other: &MerkleTree) -> Vec<u32> {
        if self.root() == other.root() {
            Vec::new()
        } else {
            vec![0]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refnode::server::ring::key_hash;

    fn tree(keys: &[(i64, u64)]) -> MerkleTree {
        let mut items: Vec<(u64, u64)> = keys.iter().map(|(k, d)| (key_hash(*k), *d)).collect();
        items.sort_unstable();
        MerkleTree::build(items)
    }

    #[test]
    fn equal_replicas_agree_at_the_root() {
        let a = tree(&[(1, 10), (2, 20), (3, 30)]);
        let b = tree(&[(3, 30), (1, 10), (2, 20)]);
        assert_eq!(a.root(), b.root());
        assert!(a.diff(&b).is_empty());
        assert_eq!(tree(&[]).root(), 0);
        assert_ne!(a.root(), 0);
    }

    #[test]
    fn descending_finds_exactly_the_leaves_that_differ() {
        let keys: Vec<(i64, u64)> = (0..500).map(|k| (k, k as u64 * 7)).collect();
        let a = tree(&keys);
        let mut changed = keys.clone();
        changed[17].1 = 1;
        changed[300].1 = 2;
        changed.push((1000, 5));
        let b = tree(&changed);
        let mut expected: Vec<u32> = [17i64, 300, 1000]
            .iter()
            .map(|k| leaf_of(key_hash(*k)))
            .collect();
        expected.sort_unstable();
        expected.dedup();
        let mut got = a.diff(&b);
        got.sort_unstable();
        assert_eq!(got, expected);
        let mut back = b.diff(&a);
        back.sort_unstable();
        assert_eq!(back, expected);
    }

    #[test]
    fn the_shape_is_fanout_to_the_depth() {
        assert_eq!(width(DEPTH), LEAVES);
        assert_eq!(children(2), 8..12);
        assert_eq!(leaf_of(u64::MAX), LEAVES as u32 - 1);
    }
}

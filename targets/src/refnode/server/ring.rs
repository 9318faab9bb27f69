//! Consistent hashing: which nodes hold a key (DDIA ch. 6's partitioning by hash, used by the
//! leaderless design of ch. 5 for its N replicas per key, and by multi-leader home-leader
//! routing with N = 1).
//!
//! Every node owns [`Ring::VNODES`] points on a 64-bit ring; a key hashes to a point and its
//! *preference list* is the distinct nodes met walking clockwise from there. The first N are
//! the key's home replicas; the rest, in order, are the fallbacks a sloppy quorum borrows.
//! Adding or removing a node moves only the keys next to its points. The hashes are fixed
//! functions (FNV-1a and SplitMix64), so every node and every test computes the same
//! placement.

/// FNV-1a, 64 bits: a small, fixed hash for digests and ring points (the standard library's
/// hasher may change between releases, and nodes must agree).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

/// SplitMix64's finaliser: spreads nearby integers (keys 1, 2, 3) over the whole ring.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where `key` lies on the ring.
pub fn key_hash(key: i64) -> u64 {
    mix64(key as u64)
}

/// The ring of a fixed set of nodes.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, index into `nodes`), sorted by point.
    points: Vec<(u64, usize)>,
    nodes: Vec<String>,
}

impl Ring {
    /// Points per node: enough that three to five nodes split the ring roughly evenly.
    pub const VNODES: usize = 64;

    pub fn new(nodes: &[String]) -> Ring {
        let mut points = Vec::with_capacity(nodes.len() * Ring::VNODES);
        for (i, node) in nodes.iter().enumerate() {
            for v in 0..Ring::VNODES {
                let mut h = Fnv::new();
                h.write(node.as_bytes());
                h.write(b"#");
                h.write(&(v as u64).to_le_bytes());
                points.push((mix64(h.finish()), i));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            nodes: nodes.to_vec(),
        }
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Every node, in the order a key's replicas are chosen: home replicas first, then
    /// fallbacks.
    pub fn preference_list(&self, key: i64) -> Vec<&str> {
        let h = key_hash(key);
        let start = self.points.partition_point(|(p, _)| *p < h);
        let mut seen = vec![false; self.nodes.len()];
        let mut out = Vec::with_capacity(self.nodes.len());
        // Bounded by the number of points; stops as soon as every node was met.
        for k in 0..self.points.len() {
            let (_, i) = self.points[(start + k) % self.points.len()];
            if !seen[i] {
                seen[i] = true;
                out.push(self.nodes[i].as_str());
                if out.len() == self.nodes.len() {
                    break;
                }
            }
        }
        out
    }

    /// The key's `n` home replicas.
    pub fn home(&self, key: i64, n: usize) -> Vec<&str> {
        let mut list = self.preference_list(key);
        list.truncate(n);
        list
    }

    /// Whether `node` is one of the key's `n` home replicas.
    pub fn is_home(&self, key: i64, n: usize, node: &str) -> bool {
        self.home(key, n).contains(&node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn a_preference_list_names_every_node_once_and_is_deterministic() {
        let ring = Ring::new(&ids(5));
        for key in -50..50 {
            let list = ring.preference_list(key);
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "{key}: {list:?}");
            assert_eq!(Ring::new(&ids(5)).preference_list(key), list);
            assert_eq!(ring.home(key, 3), list[..3].to_vec());
            assert!(ring.is_home(key, 3, list[2]));
            assert!(!ring.is_home(key, 3, list[3]));
        }
    }

    #[test]
    fn keys_spread_over_the_nodes() {
        let ring = Ring::new(&ids(3));
        let mut firsts = std::collections::BTreeMap::new();
        for key in 0..3000 {
            *firsts.entry(ring.home(key, 1)[0]).or_insert(0) += 1;
        }
        for (node, count) in &firsts {
            assert!(
                (600..=1400).contains(count),
                "{node} is home to {count} of 3000"
            );
        }
    }

    #[test]
    fn adding_a_node_moves_only_some_keys() {
        let three = Ring::new(&ids(3));
        let four = Ring::new(&ids(4));
        let moved = (0..2000)
            .filter(|k| three.home(*k, 1) != four.home(*k, 1))
            .count();
        // About a quarter should move to the new node; hashing mod n would move 3/4.
        assert!((250..=800).contains(&moved), "{moved} of 2000 moved");
        for k in 0..2000 {
            if three.home(k, 1) != four.home(k, 1) {
                assert_eq!(
                    four.home(k, 1),
                    vec!["n4"],
                    "key {k} moved between old nodes"
                );
            }
        }
    }

    #[test]
    fn fnv_matches_its_reference_values() {
        let mut h = Fnv::new();
        assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}

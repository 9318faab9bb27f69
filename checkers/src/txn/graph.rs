//! Labelled directed graphs and constrained cycle search.
//!
//! This module knows nothing of transactions: nodes are numbers, every edge carries a small set
//! of labels (bits of a `u8`), and a cycle search is steered by an [`Automaton`] that reads the
//! label chosen for each edge. The transactional analysers give the labels their meaning; the
//! explainer turns the cycles found here back into words.
//!
//! Every search here is iterative (petgraph's Kosaraju for components, breadth-first search with
//! an explicit queue for cycles) and bounded by a step budget, so a history of any size neither
//! overflows the stack nor runs away with time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use petgraph::Directed;
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{Graph, NodeIndex};
use petgraph::visit::{EdgeFiltered, EdgeRef};

/// A set of edge labels, one bit per label.
pub type Labels = u8;

/// A directed graph whose edges carry label sets. Parallel edges may exist in a graph built with
/// [`LabelledGraph::with_capacity`]; [`LabelledGraph::induced`] merges them.
#[derive(Debug, Clone, Default)]
pub struct LabelledGraph {
    g: Graph<(), Labels, Directed, u32>,
}

impl LabelledGraph {
    /// A graph of `nodes` nodes, numbered from 0, and no edges yet.
    pub fn with_capacity(nodes: usize, edges: usize) -> LabelledGraph {
        let mut g = Graph::with_capacity(nodes, edges);
        for _ in 0..nodes {
            g.add_node(());
        }
        LabelledGraph { g }
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    pub fn edge_count(&self) -> usize {
        self.g.edge_count()
    }

    /// Adds an edge; self-loops and empty label sets are ignored (a node never depends on itself
    /// in the graphs built here).
    pub fn add_edge(&mut self, from: u32, to: u32, labels: Labels) {
        if from != to && labels != 0 {
            self.g.add_edge(
                NodeIndex::new(from as usize),
                NodeIndex::new(to as usize),
                labels,
            );
        }
    }

    /// The union of the labels of all edges `from -> to` (0 when there is none).
    #[cfg(test)]
    pub fn labels_between(&self, from: u32, to: u32) -> Labels {
        self.g
            .edges(NodeIndex::new(from as usize))
            .filter(|e| e.target().index() as u32 == to)
            .fold(0, |acc, e| acc | *e.weight())
    }

    /// Out-edges of `node` as (target, labels).
    pub fn out_edges(&self, node: u32) -> impl Iterator<Item = (u32, Labels)> + '_ {
        self.g
            .edges(NodeIndex::new(node as usize))
            .map(|e| (e.target().index() as u32, *e.weight()))
    }

    /// Strongly connected components of at least two nodes, using only edges that carry a label
    /// of `mask`. Nodes inside each component are sorted.
    pub fn sccs(&self, mask: Labels) -> Vec<Vec<u32>> {
        let filtered = EdgeFiltered::from_fn(&self.g, |e| *e.weight() & mask != 0);
        let mut out: Vec<Vec<u32>> = kosaraju_scc(&filtered)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut c: Vec<u32> = c.into_iter().map(|n| n.index() as u32).collect();
                c.sort_unstable();
                c
            })
            .collect();
        out.sort_unstable_by_key(|c| c[0]);
        out
    }

    /// The subgraph on `nodes` (sorted, distinct), renumbered 0..nodes.len() in that order, with
    /// parallel edges merged into one edge carrying the union of their labels.
    pub fn induced(&self, nodes: &[u32]) -> LabelledGraph {
        debug_assert!(nodes.windows(2).all(|w| w[0] < w[1]));
        let local = |global: u32| nodes.binary_search(&global).ok().map(|i| i as u32);
        let mut edges: Vec<(u32, u32, Labels)> = Vec::new();
        for (i, &n) in nodes.iter().enumerate() {
            for (t, l) in self.out_edges(n) {
                if let Some(j) = local(t) {
                    edges.push((i as u32, j, l));
                }
            }
        }
        edges.sort_unstable_by_key(|&(a, b, _)| (a, b));
        let mut sub = LabelledGraph::with_capacity(nodes.len(), edges.len());
        let mut iter = edges.into_iter().peekable();
        while let Some((a, b, mut l)) = iter.next() {
            while let Some(&(a2, b2, l2)) = iter.peek() {
                if (a2, b2) != (a, b) {
                    break;
                }
                l |= l2;
                iter.next();
            }
            sub.add_edge(a, b, l);
        }
        sub
    }
}

/// A finite automaton over edge labels that decides which cycles a search accepts.
///
/// A state is any `u16` the automaton likes; the search remembers the (node, state) pairs it has
/// seen. [`Automaton::step`] may offer several successor states for one edge (one per way of
/// reading the edge's labels), each with the single label it chose.
pub trait Automaton {
    fn start(&self) -> u16;
    /// Pushes the (next state, chosen label) pairs for following an edge with `labels`.
    fn step(&self, state: u16, labels: Labels, out: &mut Vec<(u16, Labels)>);
    fn accepts(&self, state: u16) -> bool;
}

/// A cycle: edge `i` goes from `nodes[i]` to `nodes[(i + 1) % len]`, read as label `labels[i]`
/// (a single bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub nodes: Vec<u32>,
    pub labels: Vec<Labels>,
}

impl Cycle {
    /// Whether no node repeats. Cycles are short, so pairwise comparison beats hashing.
    pub fn is_simple(&self) -> bool {
        let n = &self.nodes;
        (0..n.len()).all(|i| !n[i + 1..].contains(&n[i]))
    }

    /// Splits a closed walk into simple cycles (each node at most once), which together use
    /// its edges once each. A search over (node, automaton state) pairs can return a walk that
    /// passes a transaction twice; such a walk is not a cycle in Adya's sense, and its class,
    /// read off all its labels, may be none of its pieces' classes. A simple cycle comes back
    /// as itself.
    pub fn simple_pieces(&self) -> Vec<Cycle> {
        let mut pieces = Vec::new();
        // The path so far: each node with the label of the edge leaving it.
        let mut path: Vec<(u32, Labels)> = Vec::with_capacity(self.nodes.len());
        let mut at: HashMap<u32, usize> = HashMap::new();
        for (&node, &label) in self.nodes.iter().zip(&self.labels) {
            if let Some(&p) = at.get(&node) {
                // The walk came back to `node`: path[p..] closes on itself.
                let closed: Vec<(u32, Labels)> = path.drain(p..).collect();
                for (n, _) in &closed {
                    at.remove(n);
                }
                pieces.push(Cycle {
                    nodes: closed.iter().map(|&(n, _)| n).collect(),
                    labels: closed.iter().map(|&(_, l)| l).collect(),
                });
            }
            at.insert(node, path.len());
            path.push((node, label));
        }
        // What is left is a path from the walk's first node whose last edge leads back to it.
        if !path.is_empty() {
            pieces.push(Cycle {
                nodes: path.iter().map(|&(n, _)| n).collect(),
                labels: path.iter().map(|&(_, l)| l).collect(),
            });
        }
        pieces
    }
}

/// What one constrained search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    Found(Cycle),
    /// There is no accepted cycle through the anchor edge.
    None,
    /// The step budget ran out, or the search was cancelled, before an answer.
    GaveUp,
}

/// A small, fast, non-cryptographic hasher (FxHash) for integer keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(buf));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// One discovered (node, state) pair and how it was reached.
#[derive(Debug, Clone, Copy)]
struct Entry {
    node: u32,
    state: u16,
    label: Labels,
    parent: u32,
}

/// Reusable buffers for [`shortest_cycle_through`].
#[derive(Debug, Default)]
pub struct Scratch {
    entries: Vec<Entry>,
    seen: FxHashMap<(u32, u16), ()>,
    next: Vec<(u16, Labels)>,
}

/// The shortest cycle that starts with the edge `from -> to` read as label `anchor` and is
/// accepted by `automaton`, moving only through nodes for which `allowed` holds.
///
/// Breadth-first over (node, automaton state) pairs, so the first accepting return to `from` is
/// a shortest one. Each expanded pair costs one unit of `budget`; when the budget reaches zero,
/// or `cancel` is set, the answer is [`Search::GaveUp`].
#[allow(clippy::too_many_arguments)]
pub fn shortest_cycle_through<A: Automaton>(
    g: &LabelledGraph,
    from: u32,
    to: u32,
    anchor: Labels,
    automaton: &A,
    allowed: &dyn Fn(u32) -> bool,
    scratch: &mut Scratch,
    budget: &mut u64,
    cancel: Option<&AtomicBool>,
) -> Search {
    scratch.entries.clear();
    scratch.seen.clear();
    scratch.next.clear();
    automaton.step(automaton.start(), anchor, &mut scratch.next);
    let firsts: Vec<u16> = scratch
        .next
        .iter()
        .filter(|&&(_, l)| l == anchor)
        .map(|&(s, _)| s)
        .collect();
    for s in firsts {
        if scratch.seen.insert((to, s), ()).is_none() {
            scratch.entries.push(Entry {
                node: to,
                state: s,
                label: anchor,
                parent: u32::MAX,
            });
        }
    }
    let mut head = 0usize;
    while head < scratch.entries.len() {
        if *budget == 0 {
            return Search::GaveUp;
        }
        *budget -= 1;
        if head % 4096 == 0 && cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Search::GaveUp;
        }
        let cur = scratch.entries[head];
        if cur.node == from && automaton.accepts(cur.state) {
            return Search::Found(unwind(&scratch.entries, head, from, anchor));
        }
        // A cycle returns to `from` only once: going on from it would make a longer walk.
        if cur.node != from {
            for (t, l) in g.out_edges(cur.node) {
                if !allowed(t) {
                    continue;
                }
                scratch.next.clear();
                automaton.step(cur.state, l, &mut scratch.next);
                for i in 0..scratch.next.len() {
                    let (s, chosen) = scratch.next[i];
                    if scratch.seen.insert((t, s), ()).is_none() {
                        scratch.entries.push(Entry {
                            node: t,
                            state: s,
                            label: chosen,
                            parent: head as u32,
                        });
                    }
                }
            }
        }
        head += 1;
    }
    Search::None
}

/// Rebuilds the cycle `from -anchor-> to -> ... -> from` from the parent links ending at `last`.
fn unwind(entries: &[Entry], last: usize, from: u32, anchor: Labels) -> Cycle {
    // Walk back: entries[last] is `from`, reached by some label; its parents lead to `to`.
    let mut rev_nodes = Vec::new();
    let mut rev_labels = Vec::new();
    let mut i = last;
    loop {
        let e = entries[i];
        if e.parent == u32::MAX {
            break;
        }
        // The edge parent -> e.node, read as e.label.
        rev_labels.push(e.label);
        i = e.parent as usize;
        rev_nodes.push(entries[i].node);
    }
    // rev_nodes holds the sources of the path edges from last to first; the path starts at `to`.
    let mut nodes = vec![from];
    let mut labels = vec![anchor];
    nodes.extend(rev_nodes.into_iter().rev());
    labels.extend(rev_labels.into_iter().rev());
    debug_assert_eq!(nodes.len(), labels.len());
    Cycle { nodes, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts any cycle; reads every edge by its lowest label.
    struct Any;
    impl Automaton for Any {
        fn start(&self) -> u16 {
            0
        }
        fn step(&self, _: u16, labels: Labels, out: &mut Vec<(u16, Labels)>) {
            out.push((1, labels & labels.wrapping_neg()));
        }
        fn accepts(&self, s: u16) -> bool {
            s == 1
        }
    }

    /// Accepts cycles with exactly one edge read as label 2, the others read as label 1.
    struct OneOfTwo;
    impl Automaton for OneOfTwo {
        fn start(&self) -> u16 {
            0
        }
        fn step(&self, s: u16, labels: Labels, out: &mut Vec<(u16, Labels)>) {
            if labels & 1 != 0 {
                out.push((s, 1));
            }
            if labels & 2 != 0 && s == 0 {
                out.push((1, 2));
            }
        }
        fn accepts(&self, s: u16) -> bool {
            s == 1
        }
    }

    fn graph(n: usize, edges: &[(u32, u32, Labels)]) -> LabelledGraph {
        let mut g = LabelledGraph::with_capacity(n, edges.len());
        for &(a, b, l) in edges {
            g.add_edge(a, b, l);
        }
        g
    }

    #[test]
    fn sccs_respect_the_label_mask() {
        let g = graph(4, &[(0, 1, 1), (1, 0, 2), (2, 3, 1), (3, 2, 1)]);
        assert_eq!(g.sccs(1 | 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(g.sccs(1), vec![vec![2, 3]]);
    }

    #[test]
    fn induced_merges_parallel_edges() {
        let g = graph(3, &[(0, 2, 1), (0, 2, 4), (2, 0, 2), (1, 2, 1)]);
        let sub = g.induced(&[0, 2]);
        assert_eq!(sub.node_count(), 2);
        assert_eq!(sub.edge_count(), 2);
        assert_eq!(sub.labels_between(0, 1), 5);
        assert_eq!(sub.labels_between(1, 0), 2);
    }

    #[test]
    fn a_closed_walk_splits_into_simple_cycles_using_each_edge_once() {
        // 641 -> 638 -> 639 -> 638 -> 639 -> 640 -> 641, as a search once reported it.
        let walk = Cycle {
            nodes: vec![641, 638, 639, 638, 639, 640],
            labels: vec![1, 2, 4, 2, 1, 4],
        };
        let pieces = walk.simple_pieces();
        assert_eq!(
            pieces,
            vec![
                Cycle {
                    nodes: vec![638, 639],
                    labels: vec![2, 4]
                },
                Cycle {
                    nodes: vec![641, 638, 639, 640],
                    labels: vec![1, 2, 1, 4]
                },
            ]
        );
        let simple = Cycle {
            nodes: vec![1, 2, 3],
            labels: vec![1, 1, 4],
        };
        assert_eq!(simple.simple_pieces(), vec![simple.clone()]);
    }

    #[test]
    fn finds_the_shortest_cycle_through_an_edge() {
        // 0 -> 1 -> 2 -> 0 and a shortcut 1 -> 0.
        let g = graph(3, &[(0, 1, 1), (1, 2, 1), (2, 0, 1), (1, 0, 1)]);
        let mut scratch = Scratch::default();
        let mut budget = 1000;
        let found = shortest_cycle_through(
            &g,
            0,
            1,
            1,
            &Any,
            &|_| true,
            &mut scratch,
            &mut budget,
            None,
        );
        assert_eq!(
            found,
            Search::Found(Cycle {
                nodes: vec![0, 1],
                labels: vec![1, 1]
            })
        );
    }

    #[test]
    fn the_automaton_steers_the_search() {
        // 0 -2-> 1 -2-> 0 has two label-2 edges; 0 -2-> 1 -1-> 2 -1-> 0 has one.
        let g = graph(3, &[(0, 1, 2), (1, 0, 2), (1, 2, 1), (2, 0, 1)]);
        let mut scratch = Scratch::default();
        let mut budget = 1000;
        let found = shortest_cycle_through(
            &g,
            0,
            1,
            2,
            &OneOfTwo,
            &|_| true,
            &mut scratch,
            &mut budget,
            None,
        );
        assert_eq!(
            found,
            Search::Found(Cycle {
                nodes: vec![0, 1, 2],
                labels: vec![2, 1, 1]
            })
        );
        let mut budget = 1000;
        let none = shortest_cycle_through(
            &g,
            0,
            1,
            2,
            &OneOfTwo,
            &|n| n != 2,
            &mut scratch,
            &mut budget,
            None,
        );
        assert_eq!(none, Search::None);
    }

    #[test]
    fn an_exhausted_budget_gives_up() {
        let g = graph(3, &[(0, 1, 1), (1, 2, 1), (2, 0, 1)]);
        let mut scratch = Scratch::default();
        let mut budget = 1;
        let r = shortest_cycle_through(
            &g,
            0,
            1,
            1,
            &Any,
            &|_| true,
            &mut scratch,
            &mut budget,
            None,
        );
        assert_eq!(r, Search::GaveUp);
    }
}

//! Partition shapes as Jepsen names them. A [`Grudge`] says, for each node, which nodes it
//! drops traffic *from*. Every shape but the majorities ring is symmetric (a cut goes both
//! ways); on a ring with an even majority a node may hear a neighbour that does not hear it,
//! exactly as in Jepsen.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use rand::Rng;
use rand::seq::SliceRandom;

/// Node -> the nodes whose traffic it drops.
pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// How the nemesis cuts the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// The first half of the nodes (in order) against the rest: a majority and a minority.
    Halves,
    /// Like `Halves`, over the nodes shuffled.
    RandomHalves,
    /// One random node cut off from all others.
    One,
    /// Every node sees a majority, but no two nodes see the same one (Jepsen's
    /// majorities-ring): each node talks to the nodes next to it on a shuffled ring.
    MajoritiesRing,
    /// Two halves that cannot talk to each other, and one node in the middle that talks to
    /// both.
    Bridge,
    /// Each current primary cut off on its own, the other nodes together.
    Primaries,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Halves,
        Shape::RandomHalves,
        Shape::One,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::Primaries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::RandomHalves => "random-halves",
            Shape::One => "one",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
            Shape::Primaries => "primaries",
        }
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        Shape::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown partition shape {s:?}; expected {}",
                    Shape::ALL.map(Shape::as_str).join(", ")
                )
            })
    }
}

/// The grudge of `shape` over `nodes`. `primaries` is only read by [`Shape::Primaries`];
/// with no primary known it falls back to isolating one random node. With fewer than two
/// nodes every grudge is empty.
pub fn grudge(shape: Shape, nodes: &[String], primaries: &[String], rng: &mut impl Rng) -> Grudge {
    if nodes.len() < 2 {
        return Grudge::new();
    }
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    match shape {
        Shape::Halves => {
            let (a, b) = nodes.split_at(nodes.len().div_ceil(2));
            complete(&[a.to_vec(), b.to_vec()])
        }
        Shape::RandomHalves => {
            let (a, b) = shuffled.split_at(shuffled.len().div_ceil(2));
            complete(&[a.to_vec(), b.to_vec()])
        }
        Shape::One => {
            let (a, b) = shuffled.split_at(1);
            complete(&[a.to_vec(), b.to_vec()])
        }
        Shape::MajoritiesRing => majorities_ring(&shuffled),
        Shape::Bridge => bridge(&shuffled),
        Shape::Primaries => {
            let isolated: Vec<&String> =
                shuffled.iter().filter(|n| primaries.contains(n)).collect();
            if isolated.is_empty() {
                return grudge(Shape::One, nodes, primaries, rng);
            }
            let mut components: Vec<Vec<String>> =
                isolated.iter().map(|n| vec![(*n).clone()]).collect();
            let rest: Vec<String> = shuffled
                .iter()
                .filter(|n| !primaries.contains(n))
                .cloned()
                .collect();
            if !rest.is_empty() {
                components.push(rest);
            }
            complete(&components)
        }
    }
}

/// Every node drops traffic from every node outside its own component.
pub fn complete(components: &[Vec<String>]) -> Grudge {
    let mut g = Grudge::new();
    for (i, comp) in components.iter().enumerate() {
        let others: BTreeSet<String> = components
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        for n in comp {
            if !others.is_empty() {
                g.insert(n.clone(), others.clone());
            }
        }
    }
    g
}

/// Each node on the ring hears a majority of nodes around it (itself included);
/// it drops the rest.
fn majorities_ring(ring: &[String]) -> Grudge {
    let n = ring.len();
    let majority = n / 2 + 1;
    let mut g = Grudge::new();
    for (i, node) in ring.iter().enumerate() {
        // A window of `majority` nodes with i in its middle (Jepsen's majorities-ring-perfect).
        let left = majority / 2;
        let visible: BTreeSet<&String> = (0..majority)
            .map(|k| &ring[(i + n - left + k) % n])
            .collect();
        let dropped: BTreeSet<String> = ring
            .iter()
            .filter(|m| !visible.contains(m))
            .cloned()
            .collect();
        if !dropped.is_empty() {
            g.insert(node.clone(), dropped);
        }
    }
    g
}

/// `[a.. | bridge | ..b]`: the bridge node (the middle one) hears everyone.
fn bridge(nodes: &[String]) -> Grudge {
    if nodes.len() < 3 {
        return complete(&[vec![nodes[0].clone()], nodes[1..].to_vec()]);
    }
    let mid = nodes.len() / 2;
    let (a, b) = (&nodes[..mid], &nodes[mid + 1..]);
    let mut g = complete(&[a.to_vec(), b.to_vec()]);
    g.remove(&nodes[mid]);
    g
}

/// `n1 n2 | n3` style text for the history and the report: the groups of nodes that can
/// still talk to each other when the grudge is a set of components, else `n1 -x- n3, ...`.
pub fn describe(g: &Grudge, nodes: &[String]) -> String {
    if g.is_empty() {
        return "no cut".to_string();
    }
    let hears = |a: &String, b: &String| !g.get(a).is_some_and(|d| d.contains(b));
    let mut groups: Vec<Vec<String>> = Vec::new();
    for n in nodes {
        match groups
            .iter_mut()
            .find(|grp| hears(&grp[0], n) && hears(n, &grp[0]))
        {
            Some(grp) => grp.push(n.clone()),
            None => groups.push(vec![n.clone()]),
        }
    }
    let group_of = |n: &String| groups.iter().position(|grp| grp.contains(n));
    let is_partition = nodes.iter().all(|a| {
        nodes
            .iter()
            .all(|b| hears(a, b) == (group_of(a) == group_of(b)))
    });
    if is_partition {
        return groups
            .iter()
            .map(|grp| grp.join(" "))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let mut cuts = Vec::new();
    for (a, bs) in g {
        for b in bs {
            if a < b {
                cuts.push(format!("{a} -x- {b}"));
            }
        }
    }
    cuts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Nodes that `node` can still hear (itself included).
    fn hears(g: &Grudge, nodes: &[String], node: &str) -> BTreeSet<String> {
        let empty = BTreeSet::new();
        let d = g.get(node).unwrap_or(&empty);
        nodes.iter().filter(|m| !d.contains(*m)).cloned().collect()
    }

    fn assert_symmetric(g: &Grudge) {
        for (a, bs) in g {
            for b in bs {
                assert!(
                    g.get(b).is_some_and(|s| s.contains(a)),
                    "{a} drops {b} only one way: {g:?}"
                );
                assert_ne!(a, b, "a node never drops itself");
            }
        }
    }

    #[test]
    fn halves_split_into_majority_and_minority() {
        let nodes = names(5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let g = grudge(Shape::Halves, &nodes, &[], &mut rng);
        assert_symmetric(&g);
        assert_eq!(hears(&g, &nodes, "n1").len(), 3);
        assert_eq!(hears(&g, &nodes, "n5").len(), 2);
        assert_eq!(describe(&g, &nodes), "n1 n2 n3 | n4 n5");
    }

    #[test]
    fn one_isolates_exactly_one_node() {
        let nodes = names(3);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let g = grudge(Shape::One, &nodes, &[], &mut rng);
        assert_symmetric(&g);
        let alone: Vec<_> = nodes
            .iter()
            .filter(|n| hears(&g, &nodes, n).len() == 1)
            .collect();
        assert_eq!(alone.len(), 1, "{g:?}");
    }

    #[test]
    fn majorities_ring_gives_everyone_a_different_majority() {
        for n in [3, 4, 5, 7] {
            let nodes = names(n);
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let g = grudge(Shape::MajoritiesRing, &nodes, &[], &mut rng);
            assert!(g.iter().all(|(a, d)| !d.contains(a)), "{g:?}");
            let views: BTreeSet<BTreeSet<String>> =
                nodes.iter().map(|m| hears(&g, &nodes, m)).collect();
            for m in &nodes {
                assert!(hears(&g, &nodes, m).len() > n / 2, "n={n} {m}: {g:?}");
            }
            if n >= 5 {
                assert_eq!(views.len(), n, "n={n}: majorities must differ: {g:?}");
            }
        }
    }

    #[test]
    fn bridge_node_hears_both_sides_which_do_not_hear_each_other() {
        let nodes = names(5);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let g = grudge(Shape::Bridge, &nodes, &[], &mut rng);
        assert_symmetric(&g);
        let bridges: Vec<_> = nodes.iter().filter(|m| !g.contains_key(*m)).collect();
        assert_eq!(bridges.len(), 1, "{g:?}");
        assert_eq!(g.len(), 4);
        assert!(g.values().all(|d| d.len() == 2));
    }

    #[test]
    fn primaries_are_cut_off_each_on_its_own() {
        let nodes = names(5);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let prim = vec!["n2".to_string(), "n4".to_string()];
        let g = grudge(Shape::Primaries, &nodes, &prim, &mut rng);
        assert_symmetric(&g);
        assert_eq!(hears(&g, &nodes, "n2"), BTreeSet::from(["n2".to_string()]));
        assert_eq!(hears(&g, &nodes, "n4"), BTreeSet::from(["n4".to_string()]));
        assert_eq!(hears(&g, &nodes, "n1").len(), 3);
        // Unknown primaries: one node is isolated instead.
        let g = grudge(Shape::Primaries, &nodes, &[], &mut rng);
        assert_eq!(g.len(), 5);
    }

    #[test]
    fn shapes_parse_from_their_names_and_one_node_has_no_cut() {
        for s in Shape::ALL {
            assert_eq!(s.as_str().parse::<Shape>(), Ok(s));
        }
        assert!(
            "diagonal"
                .parse::<Shape>()
                .unwrap_err()
                .contains("majorities-ring")
        );
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        assert!(grudge(Shape::Halves, &names(1), &[], &mut rng).is_empty());
    }
}

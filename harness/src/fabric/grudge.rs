//! Partition shapes as Jepsen names them. A [`Grudge`] says, for each node, which nodes it
//! drops traffic *from*. Every drawn shape but the majorities ring is symmetric (a cut goes
//! both ways); on a ring with an even majority a node may hear a neighbour that does not hear
//! it, exactly as in Jepsen. An explicit grudge from `--grudge` ([`GrudgeSpec`]) may also cut
//! one way only.

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
    /// A random minority (one node up to the largest minority) cut off from the rest.
    Minority,
    /// A random smallest majority cut off from the rest (Jepsen's `:majority`: the majority
    /// is the target; the cut is the same from both sides).
    Majority,
    /// The cut `--grudge` spells out ([`GrudgeSpec`]); never drawn at random.
    Grudge,
}

impl Shape {
    /// The shapes a partition draws from when `--partition-shapes` is not given. Kept as it
    /// was before `minority`, `majority` and `grudge` existed, so that a seed recorded with
    /// the default shapes repeats the same schedule; the newer shapes are chosen by name.
    pub const ALL: [Shape; 6] = [
        Shape::Halves,
        Shape::RandomHalves,
        Shape::One,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::Primaries,
    ];

    /// Every shape `--partition-shapes` accepts.
    pub const NAMED: [Shape; 9] = [
        Shape::Halves,
        Shape::RandomHalves,
        Shape::One,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::Primaries,
        Shape::Minority,
        Shape::Majority,
        Shape::Grudge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::RandomHalves => "random-halves",
            Shape::One => "one",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
            Shape::Primaries => "primaries",
            Shape::Minority => "minority",
            Shape::Majority => "majority",
            Shape::Grudge => "grudge",
        }
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        Shape::NAMED
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown partition shape {s:?}; expected {}",
                    Shape::NAMED.map(Shape::as_str).join(", ")
                )
            })
    }
}

/// The grudge of `shape` over `nodes`. `primaries` is only read by [`Shape::Primaries`];
/// with no primary known it falls back to isolating one random node. With fewer than two
/// nodes every grudge is empty, and so is [`Shape::Grudge`]'s: an explicit grudge is
/// [`GrudgeSpec::grudge`]'s to build, since it needs the spec.
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
        Shape::Minority => {
            // At least one node, so that two nodes still get a cut.
            let largest = ((shuffled.len() - 1) / 2).max(1);
            let (a, b) = shuffled.split_at(rng.random_range(1..=largest));
            complete(&[a.to_vec(), b.to_vec()])
        }
        Shape::Majority => {
            // The smallest majority, leaving at least one node on the other side.
            let (a, b) = shuffled.split_at((shuffled.len() / 2 + 1).min(shuffled.len() - 1));
            complete(&[a.to_vec(), b.to_vec()])
        }
        Shape::Grudge => Grudge::new(),
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

/// An explicit cut from `--grudge`: clauses separated by `;`, each either
/// - components `n1,n2|n3`: nodes in different components cannot talk (both ways); nodes
///   the clause does not name keep talking to everyone;
/// - a one-way cut `n1>n2` (either side may be a comma list): what `n1` sends, `n2` drops;
///   `n1` still hears `n2`.
///
/// The clauses' cuts add up. Parsing checks the syntax; [`GrudgeSpec::grudge`] checks the
/// names against the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrudgeSpec {
    text: String,
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Clause {
    Components(Vec<Vec<String>>),
    OneWay { from: Vec<String>, to: Vec<String> },
}

impl FromStr for GrudgeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<GrudgeSpec, String> {
        let mut clauses = Vec::new();
        for clause in s.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let has_pipe = clause.contains('|');
            let has_arrow = clause.contains('>');
            let parsed = match (has_pipe, has_arrow) {
                (true, true) => {
                    return Err(format!(
                        "{clause:?} mixes | and >; separate the clauses with ;"
                    ));
                }
                (false, false) => {
                    return Err(format!(
                        "{clause:?} cuts nothing; expected components like n1,n2|n3 or a one-way cut like n1>n2"
                    ));
                }
                (true, false) => {
                    let components = clause
                        .split('|')
                        .map(node_list)
                        .collect::<Result<Vec<_>, _>>()?;
                    Clause::Components(components)
                }
                (false, true) => {
                    let sides: Vec<&str> = clause.split('>').collect();
                    if sides.len() != 2 {
                        return Err(format!(
                            "{clause:?} has more than one >; write one-way cuts as a>b;b>c"
                        ));
                    }
                    Clause::OneWay {
                        from: node_list(sides[0])?,
                        to: node_list(sides[1])?,
                    }
                }
            };
            let named: Vec<&String> = match &parsed {
                Clause::Components(c) => c.iter().flatten().collect(),
                Clause::OneWay { from, to } => from.iter().chain(to).collect(),
            };
            if let Some(twice) = named
                .iter()
                .enumerate()
                .find_map(|(i, n)| named[..i].contains(n).then_some(*n))
            {
                return Err(format!("{clause:?} names {twice} twice"));
            }
            clauses.push(parsed);
        }
        if clauses.is_empty() {
            return Err("expected components like n1,n2|n3 or a one-way cut like n1>n2".into());
        }
        Ok(GrudgeSpec {
            text: s.trim().to_string(),
            clauses,
        })
    }
}

/// `n1,n2`: a non-empty list of node names.
fn node_list(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(format!("empty group of nodes in {s:?}"));
    }
    if let Some(bad) = names.iter().find(|n| {
        !n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) {
        return Err(format!("{bad:?} is not a node name"));
    }
    Ok(names)
}

impl GrudgeSpec {
    /// The text it was parsed from, as `--grudge` takes it back.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The grudge over `nodes`, or a one-line error naming the first node that is not one
    /// of them.
    pub fn grudge(&self, nodes: &[String]) -> Result<Grudge, String> {
        let mut g = Grudge::new();
        for clause in &self.clauses {
            let named: Vec<&String> = match clause {
                Clause::Components(c) => c.iter().flatten().collect(),
                Clause::OneWay { from, to } => from.iter().chain(to).collect(),
            };
            if let Some(unknown) = named.iter().find(|n| !nodes.contains(n)) {
                return Err(format!(
                    "--grudge {:?}: no node {unknown} in this cluster ({})",
                    self.text,
                    nodes.join(", ")
                ));
            }
            let cut = match clause {
                Clause::Components(c) => complete(c),
                Clause::OneWay { from, to } => to
                    .iter()
                    .map(|t| (t.clone(), from.iter().cloned().collect()))
                    .collect(),
            };
            for (node, froms) in cut {
                g.entry(node).or_default().extend(froms);
            }
        }
        Ok(g)
    }
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
/// still talk to each other when the grudge is a set of components, else `n1 -x- n3, ...`
/// (`n1 -x> n2` for a one-way cut: what n1 sends, n2 drops).
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
    // `a -x- b` for a cut both ways, `b -x> a` when only `a` drops what `b` sends.
    let mut cuts = Vec::new();
    for (a, bs) in g {
        for b in bs {
            let mutual = g.get(b).is_some_and(|d| d.contains(a));
            if !mutual {
                cuts.push(format!("{b} -x> {a}"));
            } else if a < b {
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

    /// Nodes cut off from every node outside their own side, for a two-sided cut: the
    /// smaller side's size.
    fn smaller_side(g: &Grudge, nodes: &[String]) -> usize {
        nodes
            .iter()
            .map(|n| hears(g, nodes, n).len())
            .min()
            .unwrap()
    }

    #[test]
    fn minority_cuts_off_between_one_node_and_the_largest_minority() {
        for n in [2, 3, 5, 7] {
            let nodes = names(n);
            let mut sizes = BTreeSet::new();
            for seed in 0..40 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let g = grudge(Shape::Minority, &nodes, &[], &mut rng);
                assert_symmetric(&g);
                assert_eq!(g.len(), n, "n={n}: every node is on one side: {g:?}");
                let small = smaller_side(&g, &nodes);
                assert!(small >= 1 && small <= ((n - 1) / 2).max(1), "n={n}: {g:?}");
                sizes.insert(small);
            }
            assert_eq!(
                sizes.len(),
                ((n - 1) / 2).max(1),
                "n={n}: every minority size is drawn: {sizes:?}"
            );
        }
    }

    #[test]
    fn majority_cuts_off_a_random_smallest_majority() {
        let nodes = names(4);
        let mut majorities = BTreeSet::new();
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let g = grudge(Shape::Majority, &nodes, &[], &mut rng);
            assert_symmetric(&g);
            // 4 nodes: 3 against 1 (random halves would give 2 against 2).
            let big: BTreeSet<String> = nodes
                .iter()
                .filter(|m| hears(&g, &nodes, m).len() == 3)
                .cloned()
                .collect();
            assert_eq!(big.len(), 3, "{g:?}");
            majorities.insert(big);
        }
        assert!(majorities.len() > 1, "the majority is drawn at random");
        let two = names(2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            describe(&grudge(Shape::Majority, &two, &[], &mut rng), &two)
                .matches('|')
                .count(),
            1,
            "two nodes still get a cut"
        );
    }

    #[test]
    fn grudge_specs_give_components_and_one_way_cuts() {
        let nodes = names(4);
        let spec: GrudgeSpec = "n1,n2|n3".parse().unwrap();
        let g = spec.grudge(&nodes).unwrap();
        assert_symmetric(&g);
        assert_eq!(describe(&g, &nodes[..3]), "n1 n2 | n3");
        assert!(!g.contains_key("n4"), "n4 is not named: it hears everyone");
        assert_eq!(hears(&g, &nodes, "n4").len(), 4);

        let one_way: GrudgeSpec = "n1>n2".parse().unwrap();
        let g = one_way.grudge(&nodes).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g["n2"], BTreeSet::from(["n1".to_string()]), "n2 drops n1");
        assert!(!g.contains_key("n1"), "n1 still hears n2");
        assert_eq!(describe(&g, &nodes), "n1 -x> n2");

        let both: GrudgeSpec = " n1|n2,n3 ; n4>n1,n2 ".parse().unwrap();
        assert_eq!(both.as_str(), "n1|n2,n3 ; n4>n1,n2");
        let g = both.grudge(&nodes).unwrap();
        assert_eq!(
            g["n1"],
            BTreeSet::from(["n2".to_string(), "n3".to_string(), "n4".to_string()])
        );
        assert_eq!(
            g["n2"],
            BTreeSet::from(["n1".to_string(), "n4".to_string()])
        );

        for (bad, needle) in [
            ("", "expected components"),
            ("n1", "cuts nothing"),
            ("n1|", "empty group"),
            ("n1,n1|n2", "twice"),
            ("n1>n2>n3", "more than one"),
            ("n1|n2>n3", "mixes"),
            ("n 1|n2", "not a node name"),
        ] {
            let err = bad.parse::<GrudgeSpec>().unwrap_err();
            assert!(
                err.contains(needle) && !err.contains('\n'),
                "{bad:?}: {err}"
            );
        }
        let err = "n1,n2|n9"
            .parse::<GrudgeSpec>()
            .unwrap()
            .grudge(&nodes)
            .unwrap_err();
        assert!(
            err.contains("no node n9") && err.contains("n1, n2, n3, n4"),
            "{err}"
        );
    }

    #[test]
    fn shapes_parse_from_their_names_and_one_node_has_no_cut() {
        for s in Shape::NAMED {
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

//! Cycle anomalies: which cycles of the dependency graph count as which anomaly, and the search
//! that finds a shortest example of each inside each strongly connected component.
//!
//! The classes, with Adya's and Elle's names (a cycle's edges read as ww, wr, rw, process or
//! realtime; "data" edges are ww, wr and rw):
//! - G0: only ww edges;
//! - G1c: ww and wr edges, at least one wr;
//! - G-single: exactly one rw edge, the rest ww or wr;
//! - G-nonadjacent: two or more rw edges, no two of them next to each other;
//! - G2-item: two or more rw edges, some of them next to each other;
//! - `-process` variants: the same, but the cycle also needs process-order edges;
//! - `-realtime` variants: the same, but the cycle also needs real-time-order edges.
//!
//! An edge carrying several labels is read as the strongest data label it has (ww, then wr),
//! so a cycle is classified by the least it needs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use super::common::{PROCESS, REALTIME, RW, WR, WW};
use super::graph::{
    Automaton, Cycle, LabelledGraph, Labels, Scratch, Search, shortest_cycle_through,
};

const DATA: Labels = WW | WR | RW;

/// How many rw edges a class allows, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RwRule {
    None,
    One,
    Nonadjacent,
    Adjacent,
    Any,
}

/// One cycle class as an automaton over edge labels.
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    /// Labels an edge may be read as without counting.
    free: Labels,
    /// A free label the cycle must use at least once (wr for G1c), or 0.
    need: Labels,
    rw: RwRule,
    /// Order labels the cycle may use (process, or process and realtime).
    extra: Labels,
    /// The order label the cycle must use at least once, or 0.
    extra_need: Labels,
}

const STARTED: u16 = 1;
const NEED: u16 = 2;
const EXTRA: u16 = 4;
const COUNT_SHIFT: u16 = 3;
const COUNT_MASK: u16 = 3 << COUNT_SHIFT;
const FIRST_RW: u16 = 32;
const LAST_RW: u16 = 64;
const ADJ: u16 = 128;

fn lowest(l: Labels) -> Labels {
    l & l.wrapping_neg()
}

impl Automaton for Spec {
    fn start(&self) -> u16 {
        0
    }

    fn step(&self, s: u16, labels: Labels, out: &mut Vec<(u16, Labels)>) {
        let free = labels & self.free;
        if free != 0 {
            let l = if free & self.need != 0 {
                lowest(free & self.need)
            } else {
                lowest(free)
            };
            let mut n = (s | STARTED) & !LAST_RW;
            if l & self.need != 0 {
                n |= NEED;
            }
            out.push((n, l));
            return;
        }
        if labels & RW != 0 && self.rw != RwRule::None {
            let count = (s & COUNT_MASK) >> COUNT_SHIFT;
            let count = (count + 1).min(2);
            let mut n = ((s | STARTED | LAST_RW) & !COUNT_MASK) | (count << COUNT_SHIFT);
            if s & STARTED == 0 {
                n |= FIRST_RW;
            }
            if s & LAST_RW != 0 {
                n |= ADJ;
            }
            let ok = match self.rw {
                RwRule::One => count == 1,
                RwRule::Nonadjacent => n & ADJ == 0,
                _ => true,
            };
            if ok {
                out.push((n, RW));
            }
        }
        let extra = labels & self.extra;
        if extra != 0 {
            let l = if extra & PROCESS != 0 {
                PROCESS
            } else {
                REALTIME
            };
            let mut n = (s | STARTED) & !LAST_RW;
            if l & self.extra_need != 0 {
                n |= EXTRA;
            }
            out.push((n, l));
        }
    }

    fn accepts(&self, s: u16) -> bool {
        let count = (s & COUNT_MASK) >> COUNT_SHIFT;
        let wraps = s & FIRST_RW != 0 && s & LAST_RW != 0;
        s & STARTED != 0
            && (self.need == 0 || s & NEED != 0)
            && (self.extra_need == 0 || s & EXTRA != 0)
            && match self.rw {
                RwRule::None => count == 0,
                RwRule::One => count == 1,
                RwRule::Nonadjacent => count >= 2 && s & ADJ == 0 && !wraps,
                RwRule::Adjacent => count >= 2 && (s & ADJ != 0 || wraps),
                RwRule::Any => true,
            }
    }
}

impl Spec {
    /// Every label the class may read an edge as.
    fn mask(&self) -> Labels {
        self.free | if self.rw == RwRule::None { 0 } else { RW } | self.extra
    }

    /// The label every searched cycle starts with, and labels that disqualify an anchor edge
    /// (an edge the class would read as something else).
    fn anchor(&self) -> (Labels, Labels) {
        if self.extra_need == REALTIME {
            (REALTIME, self.free | PROCESS)
        } else if self.extra_need == PROCESS {
            (PROCESS, self.free)
        } else if self.rw != RwRule::None {
            (RW, self.free)
        } else if self.need != 0 {
            (self.need, 0)
        } else {
            (lowest(self.free), 0)
        }
    }
}

const fn spec(name: &'static str, free: Labels, need: Labels, rw: RwRule, order: Labels) -> Spec {
    let (extra, extra_need) = if order == PROCESS {
        (PROCESS, PROCESS)
    } else if order == REALTIME {
        (PROCESS | REALTIME, REALTIME)
    } else {
        (0, 0)
    };
    Spec {
        name,
        free,
        need,
        rw,
        extra,
        extra_need,
    }
}

/// The classes in the order they are searched: data cycles first, then those needing process
/// order, then those needing real-time order; within each, the most severe first.
const SPECS: [Spec; 15] = [
    spec("G0", WW, 0, RwRule::None, 0),
    spec("G1c", WW | WR, WR, RwRule::None, 0),
    spec("G-single", WW | WR, 0, RwRule::One, 0),
    spec("G-nonadjacent", WW | WR, 0, RwRule::Nonadjacent, 0),
    spec("G2-item", WW | WR, 0, RwRule::Adjacent, 0),
    spec("G0-process", WW, 0, RwRule::None, PROCESS),
    spec("G1c-process", WW | WR, WR, RwRule::None, PROCESS),
    spec("G-single-process", WW | WR, 0, RwRule::One, PROCESS),
    spec(
        "G-nonadjacent-process",
        WW | WR,
        0,
        RwRule::Nonadjacent,
        PROCESS,
    ),
    spec("G2-item-process", WW | WR, 0, RwRule::Adjacent, PROCESS),
    spec("G0-realtime", WW, 0, RwRule::None, REALTIME),
    spec("G1c-realtime", WW | WR, WR, RwRule::None, REALTIME),
    spec("G-single-realtime", WW | WR, 0, RwRule::One, REALTIME),
    spec(
        "G-nonadjacent-realtime",
        WW | WR,
        0,
        RwRule::Nonadjacent,
        REALTIME,
    ),
    spec("G2-item-realtime", WW | WR, 0, RwRule::Adjacent, REALTIME),
];

/// All cycle anomaly names this search can report.
pub fn cycle_anomaly_names() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.name)
}

/// The class of a cycle whose edges were read as `labels`.
pub fn classify(labels: &[Labels]) -> &'static str {
    let n = labels.len();
    let rw = labels.iter().filter(|&&l| l == RW).count();
    let adjacent = (0..n).any(|i| labels[i] == RW && labels[(i + 1) % n] == RW);
    let base = match rw {
        0 if labels.contains(&WR) => 1,
        0 => 0,
        1 => 2,
        _ if !adjacent => 3,
        _ => 4,
    };
    // SPECS holds five classes per family, in family order.
    SPECS[5 * family_of(labels) + base].name
}

/// Which edge kinds the graph holds beyond data edges, and how hard to look.
#[derive(Debug, Clone, Copy)]
pub struct SearchConfig {
    pub process: bool,
    pub realtime: bool,
    /// Steps allowed for each class in each component (see [`shortest_cycle_through`]).
    pub budget_per_class: u64,
}

/// One cycle found, in global node numbers.
#[derive(Debug, Clone)]
pub struct Found {
    pub anomaly: &'static str,
    pub cycle: Cycle,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub found: Vec<Found>,
    /// Strongly connected components of the whole graph (at least two nodes).
    pub sccs: usize,
    pub largest_scc: usize,
    /// Components where a class search ran out of budget before finishing.
    pub gave_up: usize,
    pub cancelled: bool,
}

/// Finds, in each strongly connected component, a shortest cycle of each class.
pub fn search(g: &LabelledGraph, cfg: SearchConfig, cancel: Option<&AtomicBool>) -> Outcome {
    let mut all = DATA;
    if cfg.process {
        all |= PROCESS;
    }
    if cfg.realtime {
        all |= PROCESS | REALTIME;
    }
    let specs: Vec<Spec> = SPECS
        .iter()
        .copied()
        .filter(|s| s.mask() & !all == 0)
        .collect();
    let mut out = Outcome::default();
    let sccs = g.sccs(all);
    out.sccs = sccs.len();
    out.largest_scc = sccs.iter().map(Vec::len).max().unwrap_or(0);
    let mut scratch = Scratch::default();
    for scc in &sccs {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            out.cancelled = true;
            return out;
        }
        let local = g.induced(scc);
        search_component(&local, scc, &specs, cfg, cancel, &mut scratch, &mut out);
    }
    out
}

/// Component memberships of the local graph under one label mask.
struct Components {
    /// For each local node, its component number, or u32::MAX when in none of size >= 2.
    of: Vec<u32>,
    list: Vec<Vec<u32>>,
}

fn components(g: &LabelledGraph, mask: Labels) -> Components {
    let list = g.sccs(mask);
    let mut of = vec![u32::MAX; g.node_count()];
    for (i, c) in list.iter().enumerate() {
        for &n in c {
            of[n as usize] = i as u32;
        }
    }
    Components { of, list }
}

fn search_component(
    g: &LabelledGraph,
    global: &[u32],
    specs: &[Spec],
    cfg: SearchConfig,
    cancel: Option<&AtomicBool>,
    scratch: &mut Scratch,
    out: &mut Outcome,
) {
    let mut cache: Vec<(Labels, Components)> = Vec::new();
    // Per family (data, process, realtime): nodes on cycles already reported.
    let mut covered: [BTreeSet<u32>; 3] = Default::default();
    let mut gave_up = false;
    let first_found = out.found.len();
    // Simple cycles split off walks that passed a transaction twice, reported under their own
    // classes unless a search of that class already found one here.
    let mut pieces: Vec<Cycle> = Vec::new();
    for spec in specs {
        let mask = spec.mask();
        if !cache.iter().any(|(m, _)| *m == mask) {
            cache.push((mask, components(g, mask)));
        }
        let comps = &cache
            .iter()
            .find(|(m, _)| *m == mask)
            .unwrap_or_else(|| unreachable!("just inserted"))
            .1;
        for comp in &comps.list {
            let (best, exhausted, split) =
                best_in(g, comps, comp, spec, cfg.budget_per_class, cancel, scratch);
            pieces.extend(split);
            match (best, exhausted) {
                (Some(cycle), exhausted) => {
                    gave_up |= exhausted;
                    covered[family(spec)].extend(cycle.nodes.iter().copied());
                    out.found.push(Found {
                        anomaly: spec.name,
                        cycle: to_global(cycle, global),
                    });
                }
                (None, exhausted) => gave_up |= exhausted,
            }
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                out.cancelled = true;
                return;
            }
        }
    }
    for piece in pieces {
        let anomaly = classify(&piece.labels);
        if !out.found[first_found..]
            .iter()
            .any(|f| f.anomaly == anomaly)
        {
            covered[family_of(&piece.labels)].extend(piece.nodes.iter().copied());
            out.found.push(Found {
                anomaly,
                cycle: to_global(piece, global),
            });
        }
    }
    // A component with a cycle that no class search managed to pin down (out of budget) still
    // gets one cycle, from an unconstrained search, classified by what it uses (each simple
    // piece of it, when the search's walk passed a transaction twice).
    let families: [(Labels, Spec); 3] = [
        (DATA, spec("any", WW | WR, 0, RwRule::Any, 0)),
        (
            DATA | PROCESS,
            spec("any-process", WW | WR, 0, RwRule::Any, PROCESS),
        ),
        (
            DATA | PROCESS | REALTIME,
            spec("any-realtime", WW | WR, 0, RwRule::Any, REALTIME),
        ),
    ];
    for (fi, (mask, any)) in families.iter().enumerate() {
        if specs
            .iter()
            .all(|s| s.mask() & !mask != 0 || family(s) != fi)
        {
            continue;
        }
        let comps = components(g, *mask);
        for comp in &comps.list {
            if comp.iter().any(|n| covered[fi].contains(n)) {
                continue;
            }
            let (label, forbidden) = if fi == 0 { (RW, WW | WR) } else { any.anchor() };
            let mut budget = cfg.budget_per_class;
            let members = |n: u32| comps.of[n as usize] == comps.of[comp[0] as usize];
            'anchors: for &u in comp {
                for (v, l) in g.out_edges(u) {
                    if l & label == 0 || l & forbidden != 0 || !members(v) {
                        continue;
                    }
                    if let Search::Found(c) = shortest_cycle_through(
                        g,
                        u,
                        v,
                        label,
                        any,
                        &members,
                        scratch,
                        &mut budget,
                        cancel,
                    ) {
                        for piece in c.simple_pieces() {
                            out.found.push(Found {
                                anomaly: classify(&piece.labels),
                                cycle: to_global(piece, global),
                            });
                        }
                        break 'anchors;
                    }
                    if budget == 0 {
                        break 'anchors;
                    }
                }
            }
        }
    }
    if gave_up {
        out.gave_up += 1;
    }
}

/// The family (0 data, 1 process, 2 realtime) of a cycle by the strongest edge kind it uses.
fn family_of(labels: &[Labels]) -> usize {
    if labels.contains(&REALTIME) {
        2
    } else if labels.contains(&PROCESS) {
        1
    } else {
        0
    }
}

fn family(s: &Spec) -> usize {
    match s.extra_need {
        PROCESS => 1,
        REALTIME => 2,
        _ => 0,
    }
}

fn to_global(c: Cycle, global: &[u32]) -> Cycle {
    Cycle {
        nodes: c.nodes.iter().map(|&n| global[n as usize]).collect(),
        labels: c.labels,
    }
}

/// The shortest cycle of `spec` through any anchor edge of component `comp`, within `budget`
/// steps; also says whether the budget ran out first, and returns the simple pieces of walks
/// the search found that passed a transaction twice and held no simple cycle of `spec`.
fn best_in(
    g: &LabelledGraph,
    comps: &Components,
    comp: &[u32],
    spec: &Spec,
    budget: u64,
    cancel: Option<&AtomicBool>,
    scratch: &mut Scratch,
) -> (Option<Cycle>, bool, Vec<Cycle>) {
    let (label, forbidden) = spec.anchor();
    let id = comps.of[comp[0] as usize];
    let members = |n: u32| comps.of[n as usize] == id;
    let mut budget = budget;
    let mut best: Option<Cycle> = None;
    let mut pieces = Vec::new();
    for &u in comp {
        for (v, l) in g.out_edges(u) {
            if l & label == 0 || l & forbidden != 0 || !members(v) {
                continue;
            }
            match shortest_cycle_through(
                g,
                u,
                v,
                label,
                spec,
                &members,
                scratch,
                &mut budget,
                cancel,
            ) {
                Search::Found(walk) => {
                    let c = if walk.is_simple() {
                        walk
                    } else {
                        let mut split = walk.simple_pieces();
                        match split.iter().position(|p| classify(&p.labels) == spec.name) {
                            Some(i) => split.swap_remove(i),
                            None => {
                                // Not a cycle of this class, but its pieces are real cycles:
                                // by the rw edges they share out, at least one is of a class
                                // every model that forbids this one also forbids.
                                pieces.extend(split);
                                continue;
                            }
                        }
                    };
                    if best.as_ref().is_none_or(|b| c.nodes.len() < b.nodes.len()) {
                        best = Some(c);
                    }
                    if best.as_ref().is_some_and(|b| b.nodes.len() == 2) {
                        return (best, false, pieces);
                    }
                }
                Search::None => {}
                Search::GaveUp => return (best, true, pieces),
            }
        }
    }
    (best, false, pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, edges: &[(u32, u32, Labels)]) -> LabelledGraph {
        let mut g = LabelledGraph::with_capacity(n, edges.len());
        for &(a, b, l) in edges {
            g.add_edge(a, b, l);
        }
        g
    }

    fn names(g: &LabelledGraph, process: bool, realtime: bool) -> Vec<&'static str> {
        let cfg = SearchConfig {
            process,
            realtime,
            budget_per_class: 100_000,
        };
        search(g, cfg, None)
            .found
            .iter()
            .map(|f| f.anomaly)
            .collect()
    }

    #[test]
    fn classifies_by_labels() {
        assert_eq!(classify(&[WW, WW]), "G0");
        assert_eq!(classify(&[WW, WR]), "G1c");
        assert_eq!(classify(&[RW, WR]), "G-single");
        assert_eq!(classify(&[RW, WR, RW, WW]), "G-nonadjacent");
        assert_eq!(classify(&[RW, RW]), "G2-item");
        assert_eq!(classify(&[RW, WR, WW, RW]), "G2-item");
        assert_eq!(classify(&[RW, PROCESS]), "G-single-process");
        assert_eq!(classify(&[RW, REALTIME, PROCESS]), "G-single-realtime");
    }

    #[test]
    fn a_walk_through_a_transaction_twice_is_reported_as_its_simple_cycles() {
        // 0 -rw-> 1 -wr-> 2 -rw-> 1 -ww-> 3 -wr-> 0 has two rw edges, never adjacent, but passes
        // 1 twice. Its simple cycles are 1 -wr-> 2 -rw-> 1 and 0 -rw-> 1 -ww-> 3 -wr-> 0: both
        // G-single. Both rw edges enter 1, so no simple cycle holds two: no G-nonadjacent.
        let g = graph(
            4,
            &[(0, 1, RW), (1, 2, WR), (2, 1, RW), (1, 3, WW), (3, 0, WR)],
        );
        let outcome = search(
            &g,
            SearchConfig {
                process: false,
                realtime: false,
                budget_per_class: 100_000,
            },
            None,
        );
        let found: Vec<&str> = outcome.found.iter().map(|f| f.anomaly).collect();
        assert!(found.contains(&"G-single"), "{found:?}");
        assert!(!found.contains(&"G-nonadjacent"), "{found:?}");
        for f in &outcome.found {
            let mut nodes = f.cycle.nodes.clone();
            nodes.sort_unstable();
            nodes.dedup();
            assert_eq!(nodes.len(), f.cycle.nodes.len(), "{f:?} is not simple");
        }
    }

    #[test]
    fn finds_each_data_class() {
        assert_eq!(
            names(&graph(2, &[(0, 1, WW), (1, 0, WW)]), false, false),
            ["G0"]
        );
        assert_eq!(
            names(&graph(2, &[(0, 1, WW), (1, 0, WR)]), false, false),
            ["G1c"]
        );
        assert_eq!(
            names(&graph(2, &[(0, 1, RW), (1, 0, WR)]), false, false),
            ["G-single"]
        );
        assert_eq!(
            names(
                &graph(4, &[(0, 1, RW), (1, 2, WR), (2, 3, RW), (3, 0, WW)]),
                false,
                false
            ),
            ["G-nonadjacent"]
        );
        assert_eq!(
            names(&graph(2, &[(0, 1, RW), (1, 0, RW)]), false, false),
            ["G2-item"]
        );
    }

    #[test]
    fn an_edge_is_read_as_its_strongest_label() {
        // 0 -> 1 is both wr and rw: the cycle is G1c, not G-single.
        assert_eq!(
            names(&graph(2, &[(0, 1, WR | RW), (1, 0, WW)]), false, false),
            ["G1c"]
        );
    }

    #[test]
    fn order_edges_make_their_own_classes() {
        let g = graph(2, &[(0, 1, RW), (1, 0, PROCESS | REALTIME)]);
        assert_eq!(names(&g, true, true), ["G-single-process"]);
        let g = graph(2, &[(0, 1, RW), (1, 0, REALTIME)]);
        assert_eq!(names(&g, true, true), ["G-single-realtime"]);
        assert!(names(&g, true, false).is_empty());
    }

    #[test]
    fn reports_both_a_g_single_and_a_g2_item_in_one_component() {
        // 0 -rw-> 1 -wr-> 0 (G-single) and 1 -rw-> 2 -rw-> 1 (G2-item).
        let g = graph(3, &[(0, 1, RW), (1, 0, WR), (1, 2, RW), (2, 1, RW)]);
        assert_eq!(names(&g, false, false), ["G-single", "G2-item"]);
    }
}

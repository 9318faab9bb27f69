//! The guarantees a session owes others: monotonic writes and writes-follow-reads. Both say
//! "whoever sees this process's write w2 also sees what the process did or saw before w2";
//! they differ only in what came before, so one pass checks either.

use std::collections::BTreeMap;

use histories::History;

use super::{Access, Findings, LatestInvoked, NewestCompleted, Prepared, Version, prepare, show};
use crate::replication::plural;
use crate::verdict::Verdict;

/// *Monotonic writes* (Terry et al.'s "Monotonic Writes"; DDIA ch. 5 reaches it through
/// consistent prefix reads): if process p's ok write w1(k1, v1) completed before p's ok write
/// w2(k2, v2) was invoked, k1 != k2, then for any process q, an ok read r1 of k2 returning a
/// version `>= v2` followed by q's ok read r2 of k1 invoked after r1 completed must return a
/// version `>= v1`. A store that replicates keys independently can apply a session's writes
/// out of order; readers then see an effect without its cause (a reply before the question).
///
/// Reading a version `>= v2` counts as seeing w2: under the contract later versions of k2
/// descend from it. Writes of the same key are left to [`super::monotonic_reads`] and
/// [`super::read_your_writes`]. Each violating read is reported once, naming the w1 with the
/// newest version it missed and the w2 and r1 through which it was required.
///
/// Details: `violations: [{w1, w2, r1, r2}]` (each with its key), `violation_count`,
/// `reads_checked` (reads made after their process had seen a write of another key),
/// `keys_checked`, `keys_skipped`.
pub fn monotonic_writes(history: &History) -> Verdict {
    check(&prepare(history), Dependency::EarlierWrites)
}

/// *Writes follow reads* (Terry et al.'s "Writes Follow Reads"; DDIA ch. 5's causality
/// between a question and its answer): if process p's ok read r0 of k1 returned v1 (not nil)
/// and completed before p's ok write w(k2, v2) was invoked, k2 != k1, then for any process q,
/// an ok read of k2 returning a version `>= v2` followed by q's ok read of k1 invoked after it
/// completed must return a version `>= v1`. The writer may have written because of what it
/// read; a reader that sees the write but not its cause sees an answer to a question not yet
/// asked.
///
/// As for [`monotonic_writes`], reading a version `>= v2` counts as seeing w, and each
/// violating read is reported once, naming the r0 with the newest version it missed.
///
/// Details: `violations: [{r0, w2, r1, r2}]` (each with its key), `violation_count`,
/// `reads_checked`, `keys_checked`, `keys_skipped`.
pub fn writes_follow_reads(history: &History) -> Verdict {
    check(&prepare(history), Dependency::EarlierReads)
}

/// What a writer's write depends on: what seeing the write obliges a reader to see too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dependency {
    /// The writer's earlier ok writes (monotonic writes).
    EarlierWrites,
    /// What the writer's earlier ok reads returned (writes follow reads).
    EarlierReads,
}

/// Of one writer's writes that a reader has seen, the latest-invoked one: its dependencies
/// are the writer's calls that completed before that invocation, a superset of those of any
/// write of it seen earlier, since the writer's calls never overlap.
#[derive(Debug, Clone, Copy)]
struct Seen<'a> {
    w2: Access<'a>,
    /// The reader's read that saw it.
    r1: Access<'a>,
}

/// The latest-invoked write seen, and the latest-invoked one on a different key. A read of
/// k1 is owed the dependencies of seen writes of keys other than k1 only (the guarantees are
/// about pairs of keys), and the latest of those is one of the two.
#[derive(Debug, Default, Clone, Copy)]
struct LatestTwoKeys<'a> {
    best: Option<Seen<'a>>,
    /// Never on `best`'s key.
    other: Option<Seen<'a>>,
}

impl<'a> LatestTwoKeys<'a> {
    fn offer(&mut self, s: Seen<'a>) {
        let line = s.w2.call.invoke;
        match self.best {
            None => self.best = Some(s),
            Some(b) if line > b.w2.call.invoke => {
                if b.w2.key != s.w2.key {
                    self.other = Some(b);
                }
                self.best = Some(s);
            }
            Some(b) => {
                if b.w2.key != s.w2.key && self.other.is_none_or(|o| line > o.w2.call.invoke) {
                    self.other = Some(s);
                }
            }
        }
    }

    fn excluding(&self, key: usize) -> Option<&Seen<'a>> {
        match &self.best {
            Some(b) if b.w2.key != key => Some(b),
            _ => self.other.as_ref(),
        }
    }
}

/// All dependencies on one key, by completion line, with the running newest version: the
/// ones newer than a version that completed before a line are a range of it.
#[derive(Debug, Default)]
struct DepsByCompletion<'a> {
    deps: Vec<Access<'a>>,
    prefix_newest: Vec<Version>,
}

impl<'a> DepsByCompletion<'a> {
    fn new(mut deps: Vec<Access<'a>>) -> DepsByCompletion<'a> {
        deps.sort_by_key(|d| d.complete);
        let prefix_newest = deps
            .iter()
            .scan(None, |newest: &mut Version, d| {
                *newest = (*newest).max(d.version);
                Some(*newest)
            })
            .collect();
        DepsByCompletion {
            deps,
            prefix_newest,
        }
    }

    /// Every dependency newer than `version` that completed before `line` lies in this slice
    /// (which also holds older ones).
    fn window(&self, version: Version, line: usize) -> &[Access<'a>] {
        let lo = self.prefix_newest.partition_point(|v| *v <= version);
        let hi = self.deps.partition_point(|d| d.complete < line);
        self.deps.get(lo..hi).unwrap_or_default()
    }
}

/// How it runs. Per key, the writers' writes by version ([`LatestInvoked`]) and each
/// session's dependencies by completion ([`NewestCompleted`]). Per reader q, in a table
/// indexed by session, the latest write of each writer p that q has seen on each side of a
/// key ([`LatestTwoKeys`]). What q's read r2 of k1 is owed is the newest, over writers p, of
/// p's dependencies on k1 completed before the latest write of p that q saw on another key.
///
/// Visiting every writer on every read costs O(processes) per read, and a long run with many
/// crashed (renumbered) processes has thousands. So each read takes the cheapest of three
/// exact routes: the writers q saw, or the sessions with dependencies on k1, whichever are
/// fewer; or the dependencies on k1 newer than what r2 returned that completed before the
/// latest write q saw at all, a range found by binary search ([`DepsByCompletion`]). That
/// range holds every dependency a violation could come from, and when the history has no
/// consistent-prefix violation it is little more than the reads of k1 made while its next
/// version was being written. All routes pick the same newest dependency (ties to the
/// earliest-invoked), so the report does not depend on the route.
pub(super) fn check(prep: &Prepared<'_>, dependency: Dependency) -> Verdict {
    check_by(prep, dependency, Route::Cheapest)
}

/// Which way a read's debt is found; every route gives the same answer (tests compare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Per read, the cheapest of the three below.
    Cheapest,
    /// The dependencies on the key newer than the read's version, in a range.
    Window,
    /// The writers the reader saw.
    Writers,
    /// The sessions with dependencies on the key.
    Holders,
}

pub(super) fn check_by(prep: &Prepared<'_>, dependency: Dependency, route: Route) -> Verdict {
    let n_keys = prep.keys.len();
    // Per key, per session: its ok writes of the key, and its dependencies on it.
    let mut writes: Vec<BTreeMap<usize, Vec<Access<'_>>>> = vec![BTreeMap::new(); n_keys];
    let mut deps: Vec<BTreeMap<usize, Vec<Access<'_>>>> = vec![BTreeMap::new(); n_keys];
    for (_, accesses) in &prep.sessions {
        for a in accesses {
            let is_dep = match dependency {
                Dependency::EarlierWrites => a.write,
                // A nil read obliges nobody to anything.
                Dependency::EarlierReads => !a.write && a.version.is_some(),
            };
            if a.write {
                writes[a.key].entry(a.session).or_default().push(*a);
            }
            if is_dep {
                deps[a.key].entry(a.session).or_default().push(*a);
            }
        }
    }
    let writers: Vec<Vec<(usize, LatestInvoked<'_>)>> = writes
        .into_iter()
        .map(|by| {
            by.into_iter()
                .map(|(s, w)| (s, LatestInvoked::new(w)))
                .collect()
        })
        .collect();
    let all_deps: Vec<DepsByCompletion<'_>> = deps
        .iter()
        .map(|by| DepsByCompletion::new(by.values().flatten().copied().collect()))
        .collect();
    // Sorted by session, for binary search.
    let holders: Vec<Vec<(usize, NewestCompleted<'_>)>> = deps
        .into_iter()
        .map(|by| {
            by.into_iter()
                .map(|(s, d)| (s, NewestCompleted::new(d)))
                .collect()
        })
        .collect();

    let mut findings = Findings::default();
    let mut checked = 0;
    // Per writer's session, what the current reader has seen of its writes; reset between
    // readers through `touched`.
    let mut seen: Vec<Option<LatestTwoKeys<'_>>> = vec![None; prep.sessions.len()];
    let mut touched: Vec<usize> = Vec::new();
    for (_, accesses) in &prep.sessions {
        for p in touched.drain(..) {
            seen[p] = None;
        }
        // Over all writers: bounds what any of them can owe.
        let mut any = LatestTwoKeys::default();
        for r2 in accesses.iter().filter(|a| !a.write) {
            if let (Some(_), Some(latest)) = (any.excluding(r2.key), any.best) {
                checked += 1;
                let window = all_deps[r2.key].window(r2.version, latest.w2.call.invoke);
                let holders = &holders[r2.key];
                let mut owed: Option<(Access<'_>, Seen<'_>)> = None;
                let route = match route {
                    Route::Cheapest if window.len() <= touched.len().min(holders.len()) => {
                        Route::Window
                    }
                    Route::Cheapest if touched.len() <= holders.len() => Route::Writers,
                    Route::Cheapest => Route::Holders,
                    forced => forced,
                };
                if route == Route::Window {
                    for d in window.iter().filter(|d| d.version > r2.version) {
                        let through = seen[d.session].as_ref().and_then(|l| l.excluding(r2.key));
                        if let Some(s) = through.filter(|s| d.complete < s.w2.call.invoke) {
                            stronger(&mut owed, Some((*d, *s)));
                        }
                    }
                } else if route == Route::Writers {
                    for p in &touched {
                        if let Ok(i) = holders.binary_search_by_key(p, |(h, _)| *h) {
                            let latest = seen[*p].as_ref();
                            stronger(
                                &mut owed,
                                latest.and_then(|l| owed_through(&holders[i].1, l, r2.key)),
                            );
                        }
                    }
                } else {
                    for (p, index) in holders {
                        let latest = seen[*p].as_ref();
                        stronger(
                            &mut owed,
                            latest.and_then(|l| owed_through(index, l, r2.key)),
                        );
                    }
                }
                if let Some((d, s)) = owed.filter(|(d, _)| r2.version < d.version) {
                    report(prep, dependency, &mut findings, &d, &s, r2);
                }
            }
            // What r2 saw, for the reads after it.
            for (p, index) in &writers[r2.key] {
                if let Some(w2) = index.up_to(r2.version, true) {
                    let s = Seen { w2: *w2, r1: *r2 };
                    let slot = &mut seen[*p];
                    if slot.is_none() {
                        touched.push(*p);
                    }
                    slot.get_or_insert_default().offer(s);
                    any.offer(s);
                }
            }
        }
    }
    let n = findings.count;
    let reads = plural(checked, "read", "reads");
    let (checker, invalid, valid) = match dependency {
        Dependency::EarlierWrites => (
            "monotonic-writes",
            format!(
                "{} a process's later write but missed its earlier one",
                plural(n, "read saw", "reads saw")
            ),
            format!(
                "every read that saw a process's write saw its earlier writes ({reads} checked)"
            ),
        ),
        Dependency::EarlierReads => (
            "writes-follow-reads",
            format!(
                "{} a write but missed what its writer had read before it",
                plural(n, "read saw", "reads saw")
            ),
            format!(
                "every read that saw a write saw what its writer had read before it ({reads} checked)"
            ),
        ),
    };
    findings.verdict(
        checker,
        "violations",
        invalid,
        valid,
        serde_json::json!({
            "reads_checked": checked,
            "keys_checked": prep.keys.len(),
            "keys_skipped": prep.skipped_json(),
        }),
    )
}

/// What a read of `key` is owed through one writer: the writer's newest dependency on the
/// key that completed before the latest write of the writer the reader saw on another key.
fn owed_through<'a>(
    deps: &NewestCompleted<'a>,
    latest: &LatestTwoKeys<'a>,
    key: usize,
) -> Option<(Access<'a>, Seen<'a>)> {
    let s = latest.excluding(key)?;
    let d = deps.before(s.w2.call.invoke)?;
    Some((*d, *s))
}

/// Keeps the dependency with the newest version; ties go to the earliest-invoked one, so
/// the report does not depend on the order writers are visited in.
fn stronger<'a>(
    owed: &mut Option<(Access<'a>, Seen<'a>)>,
    candidate: Option<(Access<'a>, Seen<'a>)>,
) {
    let Some((d, s)) = candidate else {
        return;
    };
    let rank = |a: &Access<'_>| (a.version, std::cmp::Reverse(a.call.invoke));
    if owed.as_ref().is_none_or(|(o, _)| rank(&d) > rank(o)) {
        *owed = Some((d, s));
    }
}

fn report(
    prep: &Prepared<'_>,
    dependency: Dependency,
    findings: &mut Findings,
    d: &Access<'_>,
    s: &Seen<'_>,
    r2: &Access<'_>,
) {
    let (dep_field, what) = match dependency {
        Dependency::EarlierWrites => ("w1", "wrote"),
        Dependency::EarlierReads => ("r0", "read"),
    };
    findings.add(
        || {
            format!(
                "{} (key {}) completed before {} (key {}) was invoked; {} saw that write, then {} returned {}, older than the {} its writer had {} before",
                d.describe(),
                prep.key(d),
                s.w2.describe(),
                prep.key(&s.w2),
                s.r1.describe(),
                r2.describe(),
                show(r2.version),
                show(d.version),
                what,
            )
        },
        || {
            serde_json::json!({
                dep_field: prep.json(d),
                "w2": prep.json(&s.w2),
                "r1": prep.json(&s.r1),
                "r2": prep.json(r2),
            })
        },
    );
}

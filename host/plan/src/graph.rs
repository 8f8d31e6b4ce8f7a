//! Pure planning: Alembic's revision graph, its targets, and the ordered steps of an
//! upgrade, a downgrade or a stamp.
//!
//! Everything here is computed from plain data (the revisions' ids, down revisions, branch
//! labels and dependencies, the heads stored in the database, the user's target) with no
//! database, wasm or I/O in scope, so it is unit-tested exhaustively below, and checked
//! against Alembic itself by the cases in `tests/alembic/graph_cases.json` (see
//! `tests/alembic/alembic_oracle.py`).
//!
//! The semantics are Alembic's (`alembic/script/revision.py`), so that a team can move over
//! without relearning anything:
//! - a revision has down revisions (several make a merge point), branch labels, and
//!   `depends_on` revisions that must be applied first without joining the branch;
//! - the version table stores only the applied revisions no other applied revision
//!   follows or depends on: the rest are implied;
//! - targets: full ids and prefixes of ids longer than 3 characters, branch labels, `head`,
//!   `heads`, `base`, `+N`, `-N`, `REV+N`, `REV-N`, `LABEL@head`, `LABEL@heads`,
//!   `LABEL@base`, `LABEL@+N`, `LABEL@-N`, `REV@head`. `up` and `down` count `+N` / `-N`
//!   from the current revision ([`Graph::plan_upgrade`], [`Graph::plan_downgrade`]);
//!   everything else reads no current revision, so `-N` counts down from the head
//!   (`Graph::absolute`, Alembic's `get_revisions`), and `history -r` counts END `+N` from
//!   START ([`Graph::range`], Alembic's `walk_revisions`);
//! - steps are ordered by Alembic's topological sort, which keeps each branch together.
//!
//! Where Alembic only warns or returns several revisions, wasmig refuses: `-1` from several
//! heads is an error naming them (Alembic: "ambiguous; will be disallowed in a future
//! release"). The README lists every deliberate difference.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::error::GraphError;

/// A revision as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The full revision id.
    pub id: String,
    /// The revisions this one follows (empty for a base; several for a merge point).
    pub down: Vec<String>,
    /// Revisions (ids or branch labels) that must be applied before this one.
    pub depends_on: Vec<String>,
    /// Branch labels declared by this revision.
    pub branch_labels: Vec<String>,
}

/// Which way a step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Apply the revision.
    Upgrade,
    /// Revert the revision.
    Downgrade,
}

impl Direction {
    /// `upgrade` or `downgrade`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upgrade => "upgrade",
            Direction::Downgrade => "downgrade",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "upgrade" => Ok(Direction::Upgrade),
            "downgrade" => Ok(Direction::Downgrade),
            other => Err(format!(
                "`{other}` is not a direction (upgrade or downgrade)"
            )),
        }
    }
}

/// What a row of the history table records: a step run one way or the other, or one of the
/// commands that move the heads or accept a checksum without running a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A revision applied.
    Upgrade,
    /// A revision reverted.
    Downgrade,
    /// `wasmig stamp`: the heads set without running anything (the row's revision is the
    /// new heads, comma-separated).
    Stamp,
    /// `wasmig rehash`: a changed applied revision accepted.
    Rehash,
    /// A `transaction = "none"` step that stopped part-way.
    Failed,
    /// `wasmig resolve`: a failed or part-way revision settled by hand.
    Resolve,
}

impl Event {
    /// Every event, in the order of the history table's check constraint.
    pub const ALL: [Event; 6] = [
        Event::Upgrade,
        Event::Downgrade,
        Event::Stamp,
        Event::Rehash,
        Event::Failed,
        Event::Resolve,
    ];

    /// The history table's spelling (pinned, as the table's layout is).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Upgrade => "upgrade",
            Event::Downgrade => "downgrade",
            Event::Stamp => "stamp",
            Event::Rehash => "rehash",
            Event::Failed => "failed",
            Event::Resolve => "resolve",
        }
    }
}

impl From<Direction> for Event {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::Upgrade => Event::Upgrade,
            Direction::Downgrade => Event::Downgrade,
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Event {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not an event of the history table"))
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Upgrade or downgrade.
    pub action: Direction,
    /// The full revision id.
    pub revision: String,
    /// The heads to remove from the version table when the step commits.
    #[serde(skip)]
    pub remove_heads: Vec<String>,
    /// The heads to add.
    #[serde(skip)]
    pub add_heads: Vec<String>,
}

/// A relative target: `[LABEL@][SYMBOL](+|-)N`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relative<'a> {
    label: Option<&'a str>,
    symbol: Option<&'a str>,
    steps: i64,
}

impl<'a> Relative<'a> {
    /// Parses Alembic's relative form; `None` when `raw` is not relative.
    fn parse(raw: &'a str) -> Option<Self> {
        let (label, rest) = match raw.split_once('@') {
            Some((label, rest)) if !label.is_empty() => (Some(label), rest),
            _ => (None, raw),
        };
        let sign = rest.find(['+', '-'])?;
        let (symbol, number) = rest.split_at(sign);
        if !symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return None;
        }
        let digits = &number[1..];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let magnitude: i64 = digits.parse().ok()?;
        Some(Relative {
            label,
            symbol: (!symbol.is_empty()).then_some(symbol),
            steps: if number.starts_with('-') {
                -magnitude
            } else {
                magnitude
            },
        })
    }
}

/// A position while walking the graph: nothing chosen yet, the base, or a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Nothing,
    Base,
    Rev(usize),
}

/// One revision with its resolved edges (indices into [`Graph::revs`]).
#[derive(Debug, Clone)]
struct Rev {
    id: String,
    /// Down revisions, as written.
    down: Vec<usize>,
    /// Dependencies, resolved from ids or labels.
    deps: Vec<usize>,
    /// Dependencies not already implied by a dependency of an ancestor.
    norm_deps: Vec<usize>,
    /// `down` then `norm_deps`: what must be applied just before this revision.
    norm_down: Vec<usize>,
    /// Revisions whose down revisions include this one.
    children: Vec<usize>,
    /// `children` and the revisions that depend on this one.
    all_children: Vec<usize>,
    /// Labels declared here.
    own_labels: Vec<String>,
    /// Labels declared here or inherited along the branch.
    labels: BTreeSet<String>,
    /// `depends_on` as written (labels kept), for display.
    depends_on: Vec<String>,
}

/// What `show` and `history` display about one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionInfo {
    /// The full id.
    pub revision: String,
    /// Down revisions.
    pub down_revisions: Vec<String>,
    /// Branch labels, declared and inherited.
    pub branch_labels: Vec<String>,
    /// Dependencies as written.
    pub depends_on: Vec<String>,
    /// Revisions that follow this one.
    pub next_revisions: Vec<String>,
    /// No revision follows it.
    pub is_head: bool,
    /// Several revisions follow it.
    pub is_branch_point: bool,
    /// It follows several revisions.
    pub is_merge_point: bool,
}

/// A validated revision graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// In load order (directory name order), which breaks ties when sorting.
    revs: Vec<Rev>,
    index: HashMap<String, usize>,
    /// Declared branch labels.
    labels: HashMap<String, usize>,
}

const RESERVED: [&str; 4] = ["head", "heads", "base", "current"];

impl Graph {
    /// Validates the nodes and builds the graph.
    ///
    /// # Errors
    /// A duplicate id or branch label, a bad label, a missing down revision or dependency,
    /// or a cycle, each naming the revisions involved.
    pub fn new(nodes: &[Node]) -> Result<Self, GraphError> {
        let mut index = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if index.insert(node.id.clone(), i).is_some() {
                return Err(GraphError::DuplicateId(node.id.clone()));
            }
        }
        let labels = label_index(nodes, &index)?;
        let mut revs = nodes
            .iter()
            .map(|node| resolve_node(node, &index, &labels))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(cycle) = find_cycle(&revs) {
            return Err(GraphError::Cycle(cycle));
        }
        for i in 0..revs.len() {
            for d in revs[i].down.clone() {
                revs[d].children.push(i);
                revs[d].all_children.push(i);
            }
            for d in revs[i].deps.clone() {
                if !revs[d].all_children.contains(&i) {
                    revs[d].all_children.push(i);
                }
            }
        }
        let mut graph = Graph {
            revs,
            index,
            labels,
        };
        graph.normalize_dependencies();
        graph.propagate_labels();
        Ok(graph)
    }

    /// A dependency already required by an ancestor's dependency is not a direct one.
    fn normalize_dependencies(&mut self) {
        for i in 0..self.revs.len() {
            if self.revs[i].deps.is_empty() {
                continue;
            }
            let mut norm: Vec<usize> = self.revs[i].deps.clone();
            for a in self.ancestors(&[i], false) {
                if a != i {
                    let implied = self.revs[a].deps.clone();
                    norm.retain(|d| !implied.contains(d));
                }
            }
            self.revs[i].norm_deps = norm;
        }
        for rev in &mut self.revs {
            let mut norm_down = rev.down.clone();
            norm_down.extend(rev.norm_deps.iter().filter(|d| !rev.down.contains(d)));
            rev.norm_down = norm_down;
        }
    }

    /// A label applies to the revision declaring it and everything after it; and, when the
    /// line from it up to its head is linear, to the revisions before it down to the branch
    /// point. (Alembic walks down from the last revision after it, stopping at a branch or
    /// merge point, so a label declared below a branch or merge point stays there.)
    fn propagate_labels(&mut self) {
        let declared: Vec<(usize, Vec<String>)> = self
            .revs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.own_labels.is_empty())
            .map(|(i, r)| (i, r.own_labels.clone()))
            .collect();
        for (i, own) in declared {
            let above = self.descendants(&[i], false);
            for &d in &above {
                self.revs[d].labels.extend(own.iter().cloned());
            }
            let splits = |r: &Rev| r.all_children.len() > 1 || r.down.len() > 1;
            if above.iter().any(|&d| d != i && splits(&self.revs[d])) {
                continue;
            }
            let mut cursor = Some(i);
            while let Some(c) = cursor {
                let rev = &self.revs[c];
                if splits(rev) {
                    break;
                }
                cursor = rev.down.first().copied();
                self.revs[c].labels.extend(own.iter().cloned());
            }
        }
    }

    // ---- structure ------------------------------------------------------------------

    /// Number of revisions.
    pub fn len(&self) -> usize {
        self.revs.len()
    }

    /// Whether the project has no revisions.
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Revisions no other revision follows (Alembic's `heads`), in load order.
    pub fn heads(&self) -> Vec<&str> {
        self.ids(self.head_indices())
    }

    /// Heads, counting dependencies: revisions nothing follows or depends on.
    pub fn real_heads(&self) -> Vec<&str> {
        self.ids(self.real_head_indices())
    }

    /// Revisions with no down revision.
    pub fn bases(&self) -> Vec<&str> {
        self.ids(
            (0..self.revs.len())
                .filter(|&i| self.revs[i].down.is_empty())
                .collect::<Vec<_>>(),
        )
    }

    /// The single head, `None` for an empty project.
    ///
    /// # Errors
    /// [`GraphError::MultipleHeads`] when there are several.
    pub fn head(&self) -> Result<Option<&str>, GraphError> {
        Ok(self.current_head(None)?.map(|i| self.revs[i].id.as_str()))
    }

    /// Revisions several revisions follow, in load order.
    pub fn branch_points(&self) -> Vec<&str> {
        self.ids(
            (0..self.revs.len())
                .filter(|&i| self.revs[i].children.len() > 1)
                .collect::<Vec<_>>(),
        )
    }

    /// Everything `show` displays about a revision, given its full id.
    pub fn info(&self, id: &str) -> Option<RevisionInfo> {
        let &i = self.index.get(id)?;
        let rev = &self.revs[i];
        Some(RevisionInfo {
            revision: rev.id.clone(),
            down_revisions: rev.down.iter().map(|&d| self.revs[d].id.clone()).collect(),
            branch_labels: rev.labels.iter().cloned().collect(),
            depends_on: rev.depends_on.clone(),
            next_revisions: rev
                .children
                .iter()
                .map(|&c| self.revs[c].id.clone())
                .collect(),
            is_head: rev.children.is_empty(),
            is_branch_point: rev.children.len() > 1,
            is_merge_point: rev.down.len() > 1,
        })
    }

    /// Every revision from the heads down to the bases, in Alembic's `history` order.
    pub fn walk(&self) -> Vec<&str> {
        let all: BTreeSet<usize> = (0..self.revs.len()).collect();
        let order = self.topological(&all, &self.real_head_indices());
        self.ids(order)
    }

    fn head_indices(&self) -> Vec<usize> {
        (0..self.revs.len())
            .filter(|&i| self.revs[i].children.is_empty())
            .collect()
    }

    fn real_head_indices(&self) -> Vec<usize> {
        (0..self.revs.len())
            .filter(|&i| self.revs[i].all_children.is_empty())
            .collect()
    }

    fn ids(&self, indices: impl IntoIterator<Item = usize>) -> Vec<&str> {
        indices
            .into_iter()
            .map(|i| self.revs[i].id.as_str())
            .collect()
    }

    /// The revisions reached from `from` following down revisions (and dependencies when
    /// `deps`), `from` included.
    fn ancestors(&self, from: &[usize], deps: bool) -> BTreeSet<usize> {
        self.reach(from, |r| if deps { &r.norm_down } else { &r.down })
    }

    /// The revisions reached from `from` following children (and dependents when `deps`),
    /// `from` included.
    fn descendants(&self, from: &[usize], deps: bool) -> BTreeSet<usize> {
        self.reach(from, |r| if deps { &r.all_children } else { &r.children })
    }

    fn reach(&self, from: &[usize], next: impl Fn(&Rev) -> &Vec<usize>) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = from.to_vec();
        while let Some(i) = todo.pop() {
            if seen.insert(i) {
                todo.extend(next(&self.revs[i]).iter().copied());
            }
        }
        seen
    }

    /// Whether `target` is an ancestor or descendant of (or is) one of `against`.
    fn shares_lineage(&self, target: usize, against: &[usize], deps: bool) -> bool {
        against.is_empty() || {
            let up = self.descendants(&[target], deps);
            let down = self.ancestors(&[target], deps);
            against.iter().any(|a| up.contains(a) || down.contains(a))
        }
    }

    // ---- resolving identifiers ------------------------------------------------------
}

impl From<Option<usize>> for Pos {
    fn from(found: Option<usize>) -> Self {
        found.map_or(Pos::Base, Pos::Rev)
    }
}

fn qualified(label: Option<&str>, symbol: &str) -> String {
    match label {
        Some(l) => format!("{l}@{symbol}"),
        None => symbol.to_owned(),
    }
}

/// Each branch label's revision (by position), every label checked and unique.
fn label_index(
    nodes: &[Node],
    index: &HashMap<String, usize>,
) -> Result<HashMap<String, usize>, GraphError> {
    let mut labels: HashMap<String, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for label in &node.branch_labels {
            check_label(label).map_err(|reason| GraphError::BadLabel {
                revision: node.id.clone(),
                label: label.clone(),
                reason,
            })?;
            if index.contains_key(label) {
                return Err(GraphError::BadLabel {
                    revision: node.id.clone(),
                    label: label.clone(),
                    reason: "it is also a revision id",
                });
            }
            if let Some(&other) = labels.get(label)
                && other != i
            {
                return Err(GraphError::DuplicateLabel {
                    label: label.clone(),
                    first: nodes[other].id.clone(),
                    second: node.id.clone(),
                });
            }
            labels.insert(label.clone(), i);
        }
    }
    Ok(labels)
}

/// A node with its down revisions and dependencies resolved to positions.
fn resolve_node(
    node: &Node,
    index: &HashMap<String, usize>,
    labels: &HashMap<String, usize>,
) -> Result<Rev, GraphError> {
    let mut down = Vec::new();
    for d in &node.down {
        if d == &node.id {
            return Err(GraphError::Cycle(vec![d.clone(), d.clone()]));
        }
        let &j = index.get(d).ok_or_else(|| GraphError::MissingDown {
            revision: node.id.clone(),
            down: d.clone(),
        })?;
        if down.contains(&j) {
            return Err(GraphError::Repeated {
                revision: node.id.clone(),
                field: "down_revision",
                id: d.clone(),
            });
        }
        down.push(j);
    }
    let mut deps = Vec::new();
    for d in &node.depends_on {
        let &j = index.get(d).or_else(|| labels.get(d)).ok_or_else(|| {
            GraphError::MissingDependency {
                revision: node.id.clone(),
                dependency: d.clone(),
            }
        })?;
        if j == index[&node.id] {
            return Err(GraphError::Cycle(vec![node.id.clone(), node.id.clone()]));
        }
        if node.depends_on.iter().filter(|x| *x == d).count() > 1 {
            return Err(GraphError::Repeated {
                revision: node.id.clone(),
                field: "depends_on",
                id: d.clone(),
            });
        }
        // A dependency that is also a down revision, or named twice (by id and by
        // label), adds nothing (Alembic normalizes it away too).
        if !deps.contains(&j) && !down.contains(&j) {
            deps.push(j);
        }
    }
    Ok(Rev {
        id: node.id.clone(),
        down,
        deps,
        norm_deps: Vec::new(),
        norm_down: Vec::new(),
        children: Vec::new(),
        all_children: Vec::new(),
        own_labels: node.branch_labels.clone(),
        labels: node.branch_labels.iter().cloned().collect(),
        depends_on: node.depends_on.clone(),
    })
}

/// Why a branch label is unusable, if it is.
pub fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("it is empty");
    }
    if RESERVED.contains(&label) {
        return Err("it is a reserved word (head, heads, base, current)");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err("use only letters, digits, `_` and `.`");
    }
    Ok(())
}

/// Finds a cycle following down revisions and dependencies, returned in order with the
/// first id repeated.
fn find_cycle(revs: &[Rev]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let edges = |i: usize| -> Vec<usize> {
        let mut e = revs[i].down.clone();
        e.extend(&revs[i].deps);
        e
    };
    let mut marks: Vec<Option<Mark>> = vec![None; revs.len()];
    let mut order: Vec<usize> = (0..revs.len()).collect();
    order.sort_by(|&a, &b| revs[a].id.cmp(&revs[b].id));
    for start in order {
        if marks[start].is_some() {
            continue;
        }
        // Iterative DFS keeping the path, so deep chains cannot overflow the stack.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Some(Mark::Visiting);
        while let Some(&(id, next)) = path.last() {
            let downs = edges(id);
            if next < downs.len() {
                path.last_mut().expect("non-empty").1 += 1;
                let down = downs[next];
                match marks[down] {
                    Some(Mark::Visiting) => {
                        let from = path.iter().position(|(p, _)| *p == down).expect("on path");
                        let mut cycle: Vec<String> = path[from..]
                            .iter()
                            .map(|(p, _)| revs[*p].id.clone())
                            .collect();
                        cycle.push(revs[down].id.clone());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks[down] = Some(Mark::Visiting);
                        path.push((down, 0));
                    }
                }
            } else {
                marks[id] = Some(Mark::Done);
                path.pop();
            }
        }
    }
    None
}

mod plan;
mod targets;

#[cfg(test)]
mod tests;

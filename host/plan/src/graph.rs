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
        let mut revs = Vec::with_capacity(nodes.len());
        for node in nodes {
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
            revs.push(Rev {
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
            });
        }
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

    /// A full id, a branch label, or a unique id prefix; with `branch`, the revision must
    /// be on that branch.
    fn ident(&self, raw: &str, branch: Option<&str>) -> Result<usize, GraphError> {
        let branch_rev = branch.map(|b| self.branch(b)).transpose()?;
        let found = match self.index.get(raw).or_else(|| self.labels.get(raw)) {
            Some(&i) => i,
            None => {
                // As in Alembic, only ids longer than 3 characters match by prefix: `a`
                // must not silently mean the revision `a1`.
                let mut matches: Vec<usize> = (0..self.revs.len())
                    .filter(|&i| self.revs[i].id.len() > 3 && self.revs[i].id.starts_with(raw))
                    .collect();
                if let Some(b) = branch_rev {
                    matches.retain(|&m| self.shares_lineage(m, &[b], false));
                }
                match matches.as_slice() {
                    [] => {
                        let short: Vec<String> = self
                            .revs
                            .iter()
                            .filter(|r| r.id.len() <= 3 && r.id.starts_with(raw))
                            .map(|r| r.id.clone())
                            .collect();
                        return Err(if short.is_empty() {
                            GraphError::NotFound(raw.to_owned())
                        } else {
                            GraphError::ShortId {
                                prefix: raw.to_owned(),
                                ids: short,
                            }
                        });
                    }
                    [one] => *one,
                    many => {
                        let mut candidates: Vec<String> =
                            many.iter().map(|&m| self.revs[m].id.clone()).collect();
                        candidates.sort();
                        return Err(GraphError::Ambiguous {
                            prefix: raw.to_owned(),
                            candidates,
                        });
                    }
                }
            }
        };
        if let (Some(b), Some(label)) = (branch_rev, branch)
            && !self.shares_lineage(found, &[b], false)
        {
            return Err(GraphError::NotOnBranch {
                revision: self.revs[found].id.clone(),
                branch: label.to_owned(),
            });
        }
        Ok(found)
    }

    /// The revision a branch name stands for: a declared label, else a revision.
    fn branch(&self, label: &str) -> Result<usize, GraphError> {
        if let Some(&i) = self.labels.get(label) {
            return Ok(i);
        }
        self.ident(label, None).map_err(|e| match e {
            GraphError::NotFound(_) => GraphError::NoSuchBranch(label.to_owned()),
            other => other,
        })
    }

    /// `heads`, `head`, `base`, `LABEL@...`, or a plain identifier, to revisions (empty for
    /// base).
    fn revisions(&self, raw: &str) -> Result<Vec<usize>, GraphError> {
        let (branch, id) = match raw.split_once('@') {
            Some((b, id)) => (Some(b), id),
            None => (None, raw),
        };
        match id {
            "heads" => match branch {
                Some(b) => self.filter_lineage(&self.head_indices(), b, false),
                None => Ok(self.real_head_indices()),
            },
            "head" => Ok(self.current_head(branch)?.into_iter().collect()),
            "base" | "" => Ok(Vec::new()),
            "current" => Err(GraphError::NoRevision {
                target: raw.to_owned(),
                reason: "`current` (the database's revisions) is accepted only by `show` and `history -r`",
            }),
            _ => Ok(vec![self.ident(id, branch)?]),
        }
    }

    /// Like [`Graph::revisions`] for a spec that must name at most one revision.
    fn revision(&self, raw: &str) -> Result<Option<usize>, GraphError> {
        let found = self.revisions(raw)?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(GraphError::MultipleHeads {
                target: raw.to_owned(),
                heads: self
                    .ids(many.iter().copied())
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            }),
        }
    }

    fn current_head(&self, branch: Option<&str>) -> Result<Option<usize>, GraphError> {
        let mut heads = self.head_indices();
        if let Some(b) = branch {
            heads = self.filter_lineage(&heads, b, false)?;
        }
        match heads.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(GraphError::MultipleHeads {
                target: branch.map_or("head".to_owned(), |b| format!("{b}@head")),
                heads: many.iter().map(|&h| self.revs[h].id.clone()).collect(),
            }),
        }
    }

    /// The revisions of `targets` that share lineage with what `spec` names.
    fn filter_lineage(
        &self,
        targets: &[usize],
        spec: &str,
        deps: bool,
    ) -> Result<Vec<usize>, GraphError> {
        let (branch, id) = match spec.split_once('@') {
            Some((b, id)) => (Some(b), id),
            None => (None, spec),
        };
        let mut against = Vec::new();
        if let Some(b) = branch {
            against.push(self.branch(b)?);
        }
        match id {
            // `LABEL@heads`: the heads on that branch (Alembic's `_resolve_revision_number`).
            "heads" => against.extend(match branch {
                Some(b) => {
                    let on = self.branch(b)?;
                    self.head_indices()
                        .into_iter()
                        .filter(|&h| self.shares_lineage(h, &[on], false))
                        .collect()
                }
                None => self.real_head_indices(),
            }),
            "head" => against.extend(self.current_head(branch)?),
            "base" | "" => {}
            other => against.push(self.branch(other)?),
        }
        Ok(targets
            .iter()
            .copied()
            .filter(|&t| self.shares_lineage(t, &against, deps))
            .collect())
    }

    /// Resolves a revision argument read without the database (`show`, `rehash`,
    /// `--depends-on`...) to exactly one revision, read as Alembic's `get_revisions` reads it
    /// (`-N` counts down from the head; `REV+N`, `REV-N` walk from REV; `+N` is refused).
    ///
    /// # Errors
    /// Not found, ambiguous, several heads, a form counting from the current revision
    /// (`+N`), or a target that names no revision (`base`).
    pub fn resolve(&self, raw: &str) -> Result<&str, GraphError> {
        match self.resolve_all(raw)?.as_slice() {
            [one] => Ok(one),
            many => Err(GraphError::MultipleHeads {
                target: raw.to_owned(),
                heads: many.iter().map(|m| (*m).to_owned()).collect(),
            }),
        }
    }

    /// Every revision a revision argument names, read without the database as
    /// [`Graph::resolve`] reads it, for `show`: `heads` and `LABEL@heads` name several, as in
    /// Alembic's `show heads`.
    ///
    /// # Errors
    /// As [`Graph::resolve`]; `base` (no revision) is an error here too.
    pub fn resolve_all(&self, raw: &str) -> Result<Vec<&str>, GraphError> {
        let found = self.absolute(raw)?;
        if found.is_empty() {
            return Err(GraphError::NoRevision {
                target: raw.to_owned(),
                reason: "it is the empty state before the first revision",
            });
        }
        Ok(self.ids(found))
    }

    /// What a revision argument names where the database's current revision plays no part
    /// (`show`, `stamp`, `history -r START`, `revision --head`, `--depends-on`, `rehash`):
    /// the revisions, empty for base. As Alembic's `get_revisions`: ids, prefixes, labels,
    /// `head`, `heads`, `base`, `LABEL@...`, and `-N` / `LABEL@-N` counted down from the head
    /// (of that branch). wasmig also takes `REV+N` and `REV-N` (Alembic: not found), and
    /// refuses `+N` / `LABEL@+N`, which count from the current revision.
    ///
    /// # Errors
    /// Not found, ambiguous, several heads for `-N`, `+N`, an ambiguous or too long walk.
    fn absolute(&self, raw: &str) -> Result<Vec<usize>, GraphError> {
        let Some(rel) = self.relative(raw) else {
            return self.revisions(raw);
        };
        let start = match rel.symbol {
            Some(symbol) => Pos::from(self.revision(&qualified(rel.label, symbol))?),
            None if rel.steps > 0 => return Err(GraphError::CountsFromCurrent(raw.to_owned())),
            None => {
                // Alembic walks down from every head (on the branch) and returns them all;
                // wasmig wants one, and names the heads when there are several.
                let mut heads = self.real_head_indices();
                if let Some(b) = rel.label {
                    let branch = self.branch(b)?;
                    heads.retain(|&h| self.shares_lineage(h, &[branch], false));
                }
                match heads.as_slice() {
                    [] => return Err(GraphError::OutOfRange(raw.to_owned())),
                    [one] => Pos::Rev(*one),
                    many => {
                        return Err(GraphError::MultipleHeads {
                            target: raw.to_owned(),
                            heads: many.iter().map(|&m| self.revs[m].id.clone()).collect(),
                        });
                    }
                }
            }
        };
        match self.walk_from(start, rel.steps, rel.label, false)? {
            None => Err(GraphError::OutOfRange(raw.to_owned())),
            Some(Pos::Rev(i)) => Ok(vec![i]),
            Some(_) => Ok(Vec::new()),
        }
    }

    /// `raw` as a relative target, unless it is exactly a revision id (ids may contain `-`).
    fn relative<'a>(&self, raw: &'a str) -> Option<Relative<'a>> {
        if self.index.contains_key(raw) {
            return None;
        }
        Relative::parse(raw)
    }

    /// The stored heads as indices.
    fn stored(&self, heads: &[String]) -> Result<Vec<usize>, GraphError> {
        heads
            .iter()
            .map(|h| {
                self.index
                    .get(h)
                    .copied()
                    .ok_or_else(|| GraphError::UnknownApplied(h.clone()))
            })
            .collect()
    }

    // ---- walking ----------------------------------------------------------------------

    /// Walks `steps` revisions up (positive) or down (negative) from `start`; `None` when
    /// the walk leaves the graph, unless `clamp`, which stops at the end instead (Alembic's
    /// `no_overwalk=False`, used by `history -r`).
    fn walk_from(
        &self,
        start: Pos,
        steps: i64,
        branch: Option<&str>,
        clamp: bool,
    ) -> Result<Option<Pos>, GraphError> {
        let mut at = start;
        for _ in 0..steps.unsigned_abs() {
            let next: Vec<Pos> = if steps > 0 {
                let up: Vec<usize> = match at {
                    Pos::Nothing | Pos::Base => (0..self.revs.len())
                        .filter(|&i| self.revs[i].down.is_empty())
                        .collect(),
                    Pos::Rev(i) => self.revs[i].children.clone(),
                };
                let up = match branch {
                    Some(b) => self.filter_lineage(&up, b, false)?,
                    None => up,
                };
                up.into_iter().map(Pos::Rev).collect()
            } else {
                match at {
                    Pos::Base => Vec::new(),
                    Pos::Nothing => self.head_indices().into_iter().map(Pos::Rev).collect(),
                    Pos::Rev(i) if self.revs[i].down.is_empty() => vec![Pos::Base],
                    Pos::Rev(i) => self.revs[i].down.iter().map(|&d| Pos::Rev(d)).collect(),
                }
            };
            at = match next.as_slice() {
                [] if clamp => return Ok(Some(at)),
                [] => return Ok(None),
                [one] => *one,
                many => {
                    return Err(GraphError::AmbiguousWalk {
                        from: self.pos_name(at),
                        candidates: many.iter().map(|&p| self.pos_name(p)).collect(),
                    });
                }
            };
        }
        Ok(Some(at))
    }

    fn pos_name(&self, pos: Pos) -> String {
        match pos {
            Pos::Rev(i) => self.revs[i].id.clone(),
            Pos::Base | Pos::Nothing => "base".to_owned(),
        }
    }

    // ---- sorting ----------------------------------------------------------------------

    /// Alembic's topological sort: `todo` ordered from `heads` downwards, each revision
    /// after everything that follows or depends on it, walking one branch as far as it
    /// goes before switching. Reverse it for upgrade order.
    fn topological(&self, todo: &BTreeSet<usize>, heads: &[usize]) -> Vec<usize> {
        let out = self.topological_from(todo, heads);
        debug_assert_eq!(
            out.len(),
            todo.len(),
            "every revision is reachable from a head"
        );
        out
    }

    /// [`Graph::topological`], leaving out what cannot be reached from `heads` within `todo`
    /// (a `history -r` range whose END lies outside it, where Alembic fails an assertion).
    fn topological_from(&self, todo: &BTreeSet<usize>, heads: &[usize]) -> Vec<usize> {
        let mut todo = todo.clone();
        let mut current: Vec<usize> = heads
            .iter()
            .copied()
            .filter(|h| todo.contains(h))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut ancestors: Vec<BTreeSet<usize>> = current
            .iter()
            .map(|&h| self.ancestors(&[h], true))
            .collect();
        let mut out = Vec::with_capacity(todo.len());
        let mut at = 0;
        while !current.is_empty() {
            let candidate = current[at];
            if let Some(other) = ancestors
                .iter()
                .enumerate()
                .position(|(j, a)| j != at && a.contains(&candidate))
            {
                // Another head needs this revision: walk that one first.
                at = other;
                continue;
            }
            if todo.remove(&candidate) {
                out.push(candidate);
            }
            let rev = &self.revs[candidate];
            let next: Vec<usize> = rev
                .norm_down
                .iter()
                .copied()
                .filter(|r| todo.contains(r) && !current.contains(r))
                .collect();
            if next.is_empty() {
                current.remove(at);
                ancestors.remove(at);
                at = at.saturating_sub(1);
            } else if rev.norm_deps.is_empty() && rev.down.len() == 1 {
                current[at] = next[0];
                ancestors[at].remove(&candidate);
            } else {
                current[at] = next[0];
                ancestors[at] = self.ancestors(&[next[0]], true);
                for &n in &next[1..] {
                    current.push(n);
                    ancestors.push(self.ancestors(&[n], true));
                }
            }
        }
        out
    }

    // ---- heads bookkeeping ---------------------------------------------------------

    /// The heads to store for an applied set: applied revisions that no applied revision
    /// follows or depends on (everything else is implied by them, as in Alembic).
    fn heads_of(&self, applied: &BTreeSet<usize>) -> BTreeSet<usize> {
        applied
            .iter()
            .copied()
            .filter(|&a| {
                !self.revs[a]
                    .all_children
                    .iter()
                    .any(|c| applied.contains(c))
            })
            .collect()
    }

    /// Turns an ordered list of revisions into steps with their version-table changes.
    fn steps(&self, stored: &[usize], order: &[usize], action: Direction) -> Vec<Step> {
        let mut applied = self.ancestors(stored, true);
        let mut heads: BTreeSet<usize> = stored.iter().copied().collect();
        order
            .iter()
            .map(|&r| {
                match action {
                    Direction::Upgrade => applied.insert(r),
                    Direction::Downgrade => applied.remove(&r),
                };
                let next = self.heads_of(&applied);
                let step = Step {
                    action,
                    revision: self.revs[r].id.clone(),
                    remove_heads: self.sorted_ids(heads.difference(&next)),
                    add_heads: self.sorted_ids(next.difference(&heads)),
                };
                heads = next;
                step
            })
            .collect()
    }

    fn sorted_ids<'a>(&self, indices: impl Iterator<Item = &'a usize>) -> Vec<String> {
        let mut ids: Vec<String> = indices.map(|&i| self.revs[i].id.clone()).collect();
        ids.sort();
        ids
    }

    // ---- plans ---------------------------------------------------------------------

    /// Plans an upgrade from the stored heads to `target`.
    ///
    /// # Errors
    /// Target errors (not found, ambiguous, several heads, out of range, overlapping
    /// targets), or a stored head the project does not contain.
    pub fn plan_upgrade(&self, heads: &[String], target: &str) -> Result<Vec<Step>, GraphError> {
        let stored = self.stored(heads)?;
        let targets = self.upgrade_targets(&stored, target)?;
        self.check_overlap(&targets)?;
        let required = self.ancestors(&targets, true);
        let current = self.ancestors(&stored, true);
        let needs: BTreeSet<usize> = required.difference(&current).copied().collect();
        let mut order = self.topological(&needs, &targets);
        order.reverse();
        Ok(self.steps(&stored, &order, Direction::Upgrade))
    }

    fn upgrade_targets(&self, stored: &[usize], raw: &str) -> Result<Vec<usize>, GraphError> {
        let Some(rel) = self.relative(raw) else {
            return self.revisions(raw);
        };
        let walked = if rel.steps > 0 {
            let start = match rel.symbol {
                Some(symbol) => Pos::from(self.revision(symbol)?),
                None => self.relative_start(stored, rel.label)?,
            };
            self.walk_from(start, rel.steps, rel.label, false)?
        } else {
            let Some(symbol) = rel.symbol else {
                return Err(GraphError::WrongWay {
                    target: raw.to_owned(),
                    direction: "upgrade",
                });
            };
            let start = Pos::from(self.revision(&qualified(rel.label, symbol))?);
            self.walk_from(start, rel.steps, None, false)?
        };
        match walked {
            None => Err(GraphError::OutOfRange(raw.to_owned())),
            Some(Pos::Rev(i)) => Ok(vec![i]),
            Some(_) => Ok(Vec::new()),
        }
    }

    /// Where `+N` (or `LABEL@+N`) starts from: the current revision (on that branch).
    fn relative_start(&self, stored: &[usize], label: Option<&str>) -> Result<Pos, GraphError> {
        let mut starts: Vec<Pos> = stored.iter().map(|&s| Pos::Rev(s)).collect();
        if let Some(b) = label {
            let on_branch = self.filter_lineage(stored, b, false)?;
            starts = if on_branch.is_empty() {
                // The branch has not started yet: start from its tip below the current heads.
                let active: Vec<usize> = self.ancestors(stored, true).into_iter().collect();
                let active = self.filter_lineage(&active, b, false)?;
                let below: HashSet<usize> = active
                    .iter()
                    .flat_map(|&a| self.revs[a].norm_down.iter().copied())
                    .collect();
                active
                    .into_iter()
                    .filter(|a| !below.contains(a))
                    .map(Pos::Rev)
                    .collect()
            } else {
                on_branch.into_iter().map(Pos::Rev).collect()
            };
        }
        match starts.as_slice() {
            [] => Ok(Pos::Nothing),
            [one] => Ok(*one),
            many => Err(GraphError::AmbiguousCurrent {
                target: qualified(label, "+N"),
                heads: many.iter().map(|&p| self.pos_name(p)).collect(),
            }),
        }
    }

    /// Plans a downgrade from the stored heads to `target`.
    ///
    /// # Errors
    /// Target errors, a target that is not below the current heads, or a stored head the
    /// project does not contain.
    pub fn plan_downgrade(&self, heads: &[String], target: &str) -> Result<Vec<Step>, GraphError> {
        let stored = self.stored(heads)?;
        let (branch, to) = self.downgrade_target(&stored, target)?;
        let mut roots: Vec<usize> = match to {
            Pos::Rev(t) => self.revs[t].children.clone(),
            _ => (0..self.revs.len())
                .filter(|&i| self.revs[i].down.is_empty())
                .collect(),
        };
        if let Some(b) = &branch
            && roots.len() > 1
        {
            let on_branch = self.ancestors(&[self.branch(b)?], false);
            roots.retain(|r| on_branch.contains(r));
            if roots.is_empty() {
                return Err(GraphError::NotAncestor {
                    target: target.to_owned(),
                    heads: heads.to_vec(),
                });
            }
        }
        let above = self.descendants(&roots, true);
        let active = self.ancestors(&stored, true);
        let drop: BTreeSet<usize> = above.intersection(&active).copied().collect();
        if let Pos::Rev(t) = to
            && drop.is_empty()
            && !stored.contains(&t)
        {
            return Err(GraphError::NotAncestor {
                target: target.to_owned(),
                heads: heads.to_vec(),
            });
        }
        let order = self.topological(&drop, &stored);
        Ok(self.steps(&stored, &order, Direction::Downgrade))
    }

    /// The branch a downgrade is restricted to, and the position to go down to.
    fn downgrade_target(
        &self,
        stored: &[usize],
        raw: &str,
    ) -> Result<(Option<String>, Pos), GraphError> {
        let Some(rel) = self.relative(raw) else {
            let (branch, symbol) = match raw.rsplit_once('@') {
                Some((b, s)) if !b.is_empty() => (Some(b.to_owned()), s),
                _ => (None, raw),
            };
            return Ok((branch, Pos::from(self.revision(symbol)?)));
        };
        if rel.steps >= 0 {
            let Some(symbol) = rel.symbol else {
                return Err(GraphError::WrongWay {
                    target: raw.to_owned(),
                    direction: "downgrade",
                });
            };
            let start = Pos::from(self.revision(symbol)?);
            let to = self
                .walk_from(start, rel.steps, rel.label, false)?
                .ok_or_else(|| GraphError::OutOfRange(raw.to_owned()))?;
            return Ok((rel.label.map(str::to_owned), to));
        }
        let (branch, symbol) = match (rel.symbol, rel.label) {
            (Some(symbol), label) => (label.map(str::to_owned), symbol.to_owned()),
            (None, Some(label)) => {
                let mut on_branch = self.filter_lineage(stored, label, false)?;
                if on_branch.is_empty() {
                    // Every head of this branch is below another head: look at all applied tips.
                    let tips = self.branch_tips(stored);
                    on_branch = self.filter_lineage(&tips, label, false)?;
                }
                match on_branch.as_slice() {
                    [one] => (Some(label.to_owned()), self.revs[*one].id.clone()),
                    [] => return Err(GraphError::OutOfRange(raw.to_owned())),
                    many => {
                        return Err(GraphError::AmbiguousCurrent {
                            target: raw.to_owned(),
                            heads: many.iter().map(|&m| self.revs[m].id.clone()).collect(),
                        });
                    }
                }
            }
            (None, None) => match stored {
                [] => return Err(GraphError::OutOfRange(raw.to_owned())),
                [one] => {
                    let id = self.revs[*one].id.clone();
                    (Some(id.clone()), id)
                }
                many => {
                    return Err(GraphError::AmbiguousCurrent {
                        target: raw.to_owned(),
                        heads: self.sorted_ids(many.iter()),
                    });
                }
            },
        };
        let start = Pos::from(self.revision(&qualified(branch.as_deref(), &symbol))?);
        let to = self
            .walk_from(start, rel.steps, None, false)?
            .ok_or_else(|| GraphError::OutOfRange(raw.to_owned()))?;
        Ok((branch, to))
    }

    /// Applied revisions that no other applied revision follows, dependencies counted.
    fn branch_tips(&self, stored: &[usize]) -> Vec<usize> {
        let all = self.ancestors(stored, true);
        all.iter()
            .copied()
            .filter(|&a| {
                !self
                    .descendants(&[a], false)
                    .iter()
                    .any(|d| *d != a && all.contains(d))
            })
            .collect()
    }

    /// The heads to store after `stamp TARGETS` (`--purge`: ignore the stored ones).
    ///
    /// # Errors
    /// Target errors, or a stored head the project does not contain (use `--purge`).
    pub fn plan_stamp(
        &self,
        heads: &[String],
        targets: &[String],
        purge: bool,
    ) -> Result<Vec<String>, GraphError> {
        let mut current: BTreeSet<usize> = if purge {
            BTreeSet::new()
        } else {
            // Unlike `down`, stamp cannot revert an unknown revision from its stored copy:
            // the way out is `--purge`.
            self.stored(heads)
                .map_err(|e| match e {
                    GraphError::UnknownApplied(h) => GraphError::UnknownStamped(h),
                    other => other,
                })?
                .into_iter()
                .collect()
        };
        let stored: Vec<usize> = current.iter().copied().collect();
        let mut replaced = BTreeSet::new();
        for raw in targets {
            let dests = self.absolute(raw)?;
            match self.relative(raw) {
                None => replaced.extend(self.filter_lineage(&stored, raw, true)?),
                // `REV-1`, `LABEL@-1`: the stored heads on the line of where it lands.
                Some(rel) => {
                    let mut against = dests.clone();
                    if let Some(b) = rel.label {
                        against.push(self.branch(b)?);
                    }
                    replaced.extend(
                        stored
                            .iter()
                            .filter(|&&s| self.shares_lineage(s, &against, true)),
                    );
                }
            }
            current.retain(|c| !replaced.contains(c));
            current.extend(dests);
        }
        let applied = self.ancestors(&current.into_iter().collect::<Vec<_>>(), true);
        Ok(self.sorted_ids(self.heads_of(&applied).iter()))
    }

    /// The down revisions of a new revision created on `specs` (`head`, `base`, ids,
    /// `LABEL@head`, `heads`...). Without `splice`, each must be a head.
    ///
    /// # Errors
    /// Target errors, a revision named twice, or a non-head without `splice`.
    pub fn parents_for_new(
        &self,
        specs: &[String],
        splice: bool,
    ) -> Result<Vec<String>, GraphError> {
        let mut parents: Vec<usize> = Vec::new();
        for spec in specs {
            for p in self.absolute(spec)? {
                if parents.contains(&p) {
                    return Err(GraphError::DuplicateHead(self.revs[p].id.clone()));
                }
                parents.push(p);
            }
        }
        if !splice && let Some(&p) = parents.iter().find(|&&p| !self.revs[p].children.is_empty()) {
            return Err(GraphError::NotAHead(self.revs[p].id.clone()));
        }
        Ok(self.ids(parents).into_iter().map(str::to_owned).collect())
    }

    /// A `depends_on` entry as stored: a branch label stays a label, anything else becomes
    /// the full id.
    ///
    /// # Errors
    /// Not found, ambiguous, or naming no revision.
    pub fn dependency(&self, spec: &str) -> Result<String, GraphError> {
        if self.labels.contains_key(spec) {
            return Ok(spec.to_owned());
        }
        self.resolve(spec).map(str::to_owned)
    }

    /// Whether `label` is declared by some revision.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.contains_key(label)
    }

    /// The revision that declares `label`, or whose id it is.
    pub fn label_owner(&self, label: &str) -> Option<&str> {
        self.labels
            .get(label)
            .or_else(|| self.index.get(label))
            .map(|&i| self.revs[i].id.as_str())
    }

    /// The revisions not yet applied, in upgrade order (everything up to `heads`).
    ///
    /// # Errors
    /// A stored head the project does not contain.
    pub fn pending(&self, heads: &[String]) -> Result<Vec<String>, GraphError> {
        Ok(self
            .plan_upgrade(heads, "heads")?
            .into_iter()
            .map(|s| s.revision)
            .collect())
    }

    /// The revisions applied when the database is at `heads`: the heads and everything
    /// below them (down revisions and dependencies), in upgrade order.
    ///
    /// # Errors
    /// [`GraphError::UnknownApplied`] for a stored head the project does not contain.
    pub fn applied(&self, heads: &[String]) -> Result<Vec<String>, GraphError> {
        let stored = self.stored(heads)?;
        let all = self.ancestors(&stored, true);
        let mut order = self.topological(&all, &stored);
        order.reverse();
        Ok(self.ids(order).into_iter().map(str::to_owned).collect())
    }

    /// `history -r START:END`: the revisions from `end` down to `start` (both included),
    /// in history order. `current` names the stored heads; an empty END means `heads`.
    ///
    /// As Alembic's `walk_revisions`: START is read like a `show` argument (`-N` counts down
    /// from the head); END like an upgrade target whose current revision is START, so END
    /// `+N` counts up from START, stopping at the top; `LABEL@...` in START keeps only the
    /// END revisions on that branch.
    ///
    /// # Errors
    /// Target errors, END `-N`, or START not below END.
    pub fn range(&self, heads: &[String], start: &str, end: &str) -> Result<Vec<&str>, GraphError> {
        let stored = self.stored(heads)?;
        let bad_range = || GraphError::BadRange {
            start: start.to_owned(),
            end: end.to_owned(),
        };
        let lower: Vec<usize> = match start {
            "current" => stored.clone(),
            raw => self.absolute(raw)?,
        };
        // Alembic takes a START `-N` that walks down to base as no revision at all.
        if lower.is_empty() && self.relative(start).is_some() {
            return Err(bad_range());
        }
        let mut upper: Vec<usize> = match (end, self.relative(end)) {
            ("", _) => self.real_head_indices(),
            ("current", _) => stored.clone(),
            (raw, None) => self.revisions(raw)?,
            (raw, Some(rel)) => {
                let from = match rel.symbol {
                    None if rel.steps < 0 => {
                        return Err(GraphError::RangeEndDown(raw.to_owned()));
                    }
                    None => self
                        .relative_start(&lower, rel.label)
                        .map_err(|e| match e {
                            GraphError::AmbiguousCurrent { heads, .. } => {
                                GraphError::MultipleHeads {
                                    target: start.to_owned(),
                                    heads,
                                }
                            }
                            other => other,
                        })?,
                    Some(symbol) if rel.steps > 0 => Pos::from(self.revision(symbol)?),
                    Some(symbol) => Pos::from(self.revision(&qualified(rel.label, symbol))?),
                };
                match self.walk_from(from, rel.steps, rel.label, true)? {
                    Some(Pos::Rev(i)) => vec![i],
                    _ => Vec::new(),
                }
            }
        };
        if let Some((branch, _)) = start.split_once('@')
            && !branch.is_empty()
        {
            upper = self.on_branch(&upper, branch)?;
        }
        self.check_overlap(&upper)?;
        self.check_overlap(&lower)?;
        let required = self.ancestors(&upper, true);
        if lower.iter().any(|l| !required.contains(l)) {
            return Err(bad_range());
        }
        let mut wanted = required;
        if !lower.is_empty() {
            let below = self.ancestors(&lower, true);
            let above = self.descendants(&lower, false);
            wanted.retain(|w| above.contains(w) && (lower.contains(w) || !below.contains(w)));
        }
        Ok(self.ids(self.topological_from(&wanted, &upper)))
    }

    /// The revisions of `targets` that carry branch label `branch` (Alembic: a revision id
    /// stands for its one label; wasmig falls back to its line when it has none or several).
    fn on_branch(&self, targets: &[usize], branch: &str) -> Result<Vec<usize>, GraphError> {
        let label = if self.labels.contains_key(branch) {
            Some(branch.to_owned())
        } else {
            let rev = &self.revs[self.branch(branch)?];
            (rev.labels.len() == 1)
                .then(|| rev.labels.iter().next().cloned())
                .flatten()
        };
        Ok(match label {
            Some(l) => targets
                .iter()
                .copied()
                .filter(|&t| self.revs[t].labels.contains(&l))
                .collect(),
            None => {
                let b = self.branch(branch)?;
                targets
                    .iter()
                    .copied()
                    .filter(|&t| self.shares_lineage(t, &[b], false))
                    .collect()
            }
        })
    }

    /// Refuses targets where one is below another (Alembic: "overlaps with other requested
    /// revisions").
    fn check_overlap(&self, targets: &[usize]) -> Result<(), GraphError> {
        for (k, &t) in targets.iter().enumerate() {
            let below = self.ancestors(&[t], true);
            let overlaps: Vec<String> = targets
                .iter()
                .enumerate()
                .filter(|&(j, o)| j != k && below.contains(o))
                .map(|(_, &o)| self.revs[o].id.clone())
                .collect();
            if !overlaps.is_empty() {
                return Err(GraphError::Overlap {
                    revision: self.revs[t].id.clone(),
                    others: overlaps,
                });
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests;

//! Pure planning: the revision graph, targets, and the ordered steps of an upgrade or
//! downgrade.
//!
//! Everything here is computed from plain data (the revisions' ids and down revisions, the
//! heads stored in the database, the user's target) with no database, wasm or I/O in scope,
//! so it is unit-tested exhaustively below. This version plans over a single linear chain;
//! branches, merges and labels (Alembic's full graph) grow from [`Graph`] without changing
//! its callers.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::GraphError;

/// A revision as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The full revision id.
    pub id: String,
    /// The revisions this one follows (empty for a base).
    pub down: Vec<String>,
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

/// A target as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `head`: the newest revision.
    Head,
    /// `base`: before the first revision.
    Base,
    /// A full id or a unique prefix.
    Revision(String),
    /// `+N` / `-N`: relative to the current revision.
    Relative(i64),
    /// `REV+N` / `REV-N`.
    RevisionRelative(String, i64),
}

impl Target {
    /// Parses `head`, `base`, `+N`, `-N`, `REV+N`, `REV-N` or a revision (prefix).
    ///
    /// # Errors
    /// [`GraphError::NotFound`] for an empty string.
    pub fn parse(raw: &str) -> Result<Self, GraphError> {
        let raw = raw.trim();
        match raw {
            "" => return Err(GraphError::NotFound(String::new())),
            "head" | "heads" => return Ok(Target::Head),
            "base" => return Ok(Target::Base),
            _ => {}
        }
        if let Some(n) = parse_signed(raw) {
            return Ok(Target::Relative(n));
        }
        if let Some(pos) = raw.rfind(['+', '-'])
            && pos > 0
            && let Some(n) = parse_signed(&raw[pos..])
        {
            return Ok(Target::RevisionRelative(raw[..pos].to_owned(), n));
        }
        Ok(Target::Revision(raw.to_owned()))
    }
}

fn parse_signed(s: &str) -> Option<i64> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(|n| sign * n)
}

/// A validated revision graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Revision ids from base to head.
    chain: Vec<String>,
    /// Position of each id in `chain`.
    index: HashMap<String, usize>,
}

impl Graph {
    /// Validates the nodes and orders them from base to head.
    ///
    /// # Errors
    /// A missing down revision, a cycle, several bases or several heads.
    pub fn new(nodes: &[Node]) -> Result<Self, GraphError> {
        let ids: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        for node in nodes {
            for down in &node.down {
                if !ids.contains(down.as_str()) {
                    return Err(GraphError::MissingDown {
                        revision: node.id.clone(),
                        down: down.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = find_cycle(nodes) {
            return Err(GraphError::Cycle(cycle));
        }
        // Children of each revision, to find heads and walk the chain.
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for node in nodes {
            for down in &node.down {
                children
                    .entry(down.as_str())
                    .or_default()
                    .push(node.id.as_str());
            }
        }
        let mut heads: Vec<String> = nodes
            .iter()
            .filter(|n| !children.contains_key(n.id.as_str()))
            .map(|n| n.id.clone())
            .collect();
        heads.sort();
        if heads.len() > 1 {
            return Err(GraphError::MultipleHeads(heads));
        }
        let mut bases: Vec<String> = nodes
            .iter()
            .filter(|n| n.down.is_empty())
            .map(|n| n.id.clone())
            .collect();
        bases.sort();
        if bases.len() > 1 {
            return Err(GraphError::MultipleHeads(heads_of_bases(&bases)));
        }
        if let Some(merge) = nodes.iter().find(|n| n.down.len() > 1) {
            return Err(GraphError::MultipleHeads(merge.down.clone()));
        }
        // One base, one head, no merges, no cycle: the graph is a chain.
        let mut chain = Vec::with_capacity(nodes.len());
        let mut cursor = bases.first().map(String::as_str);
        while let Some(id) = cursor {
            chain.push(id.to_owned());
            cursor = children.get(id).and_then(|c| c.first().copied());
        }
        let index = chain
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Ok(Graph { chain, index })
    }

    /// Revision ids from base to head.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// The head, or `None` for an empty project.
    pub fn head(&self) -> Option<&str> {
        self.chain.last().map(String::as_str)
    }

    /// Resolves a full id or a unique prefix.
    ///
    /// # Errors
    /// [`GraphError::NotFound`] or [`GraphError::Ambiguous`].
    pub fn resolve(&self, prefix: &str) -> Result<&str, GraphError> {
        if let Some(&i) = self.index.get(prefix) {
            return Ok(&self.chain[i]);
        }
        let mut matches: Vec<&String> = self
            .chain
            .iter()
            .filter(|id| id.starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Err(GraphError::NotFound(prefix.to_owned())),
            1 => Ok(matches[0]),
            _ => {
                matches.sort();
                Err(GraphError::Ambiguous {
                    prefix: prefix.to_owned(),
                    candidates: matches.into_iter().cloned().collect(),
                })
            }
        }
    }

    /// The current position from the heads stored in the database: the number of applied
    /// revisions along the chain (0 = base).
    ///
    /// # Errors
    /// Several stored heads, or a stored head the project does not contain.
    pub fn position(&self, heads: &[String]) -> Result<usize, GraphError> {
        match heads {
            [] => Ok(0),
            [one] => self
                .index
                .get(one)
                .map(|i| i + 1)
                .ok_or_else(|| GraphError::UnknownApplied(one.clone())),
            many => Err(GraphError::MultipleHeads(many.to_vec())),
        }
    }

    /// The revision at a position (`None` for base).
    fn at(&self, position: usize) -> Option<&str> {
        position.checked_sub(1).map(|i| self.chain[i].as_str())
    }

    /// Resolves a target to a position along the chain.
    fn target_position(
        &self,
        target: &Target,
        current: usize,
        raw: &str,
    ) -> Result<usize, GraphError> {
        let offset = |from: usize, n: i64| -> Result<usize, GraphError> {
            let to = from as i64 + n;
            if to < 0 || to > self.chain.len() as i64 {
                return Err(GraphError::OutOfRange(raw.to_owned()));
            }
            Ok(to as usize)
        };
        match target {
            Target::Head => Ok(self.chain.len()),
            Target::Base => Ok(0),
            Target::Revision(prefix) => Ok(self.index[self.resolve(prefix)?] + 1),
            Target::Relative(n) => offset(current, *n),
            Target::RevisionRelative(prefix, n) => {
                offset(self.index[self.resolve(prefix)?] + 1, *n)
            }
        }
    }

    /// Plans an upgrade from the stored heads to `target`.
    ///
    /// # Errors
    /// Target errors, or a target below the current revision.
    pub fn plan_upgrade(&self, heads: &[String], target: &str) -> Result<Vec<Step>, GraphError> {
        let current = self.position(heads)?;
        let to = self.target_position(&Target::parse(target)?, current, target)?;
        if to < current {
            return Err(GraphError::WrongDirection {
                direction: "upgrade",
                target: self.at(to).unwrap_or("base").to_owned(),
                relation: "after",
                current: self.at(current).unwrap_or("base").to_owned(),
            });
        }
        Ok((current..to)
            .map(|p| Step {
                action: Direction::Upgrade,
                revision: self.chain[p].clone(),
                remove_heads: self.at(p).map(str::to_owned).into_iter().collect(),
                add_heads: vec![self.chain[p].clone()],
            })
            .collect())
    }

    /// Plans a downgrade from the stored heads to `target` (default in the CLI: `-1`).
    ///
    /// # Errors
    /// Target errors, or a target above the current revision.
    pub fn plan_downgrade(&self, heads: &[String], target: &str) -> Result<Vec<Step>, GraphError> {
        let current = self.position(heads)?;
        let to = self.target_position(&Target::parse(target)?, current, target)?;
        if to > current {
            return Err(GraphError::WrongDirection {
                direction: "downgrade",
                target: self.at(to).unwrap_or("base").to_owned(),
                relation: "before",
                current: self.at(current).unwrap_or("base").to_owned(),
            });
        }
        Ok((to..current)
            .rev()
            .map(|p| Step {
                action: Direction::Downgrade,
                revision: self.chain[p].clone(),
                remove_heads: vec![self.chain[p].clone()],
                add_heads: self.at(p).map(str::to_owned).into_iter().collect(),
            })
            .collect())
    }

    /// The revisions not yet applied, in upgrade order.
    ///
    /// # Errors
    /// As [`Graph::position`].
    pub fn pending(&self, heads: &[String]) -> Result<&[String], GraphError> {
        Ok(&self.chain[self.position(heads)?..])
    }
}

fn heads_of_bases(bases: &[String]) -> Vec<String> {
    bases.iter().map(|b| format!("{b} (a base)")).collect()
}

/// Finds a cycle following down revisions, returned in order with the first id repeated.
fn find_cycle(nodes: &[Node]) -> Option<Vec<String>> {
    let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut sorted: Vec<&str> = by_id.keys().copied().collect();
    sorted.sort();
    for start in sorted {
        if marks.contains_key(start) {
            continue;
        }
        // Iterative DFS keeping the path, so deep chains cannot overflow the stack.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Visiting);
        while let Some((id, next)) = path.last().copied() {
            let downs = &by_id[id].down;
            if next < downs.len() {
                path.last_mut().expect("non-empty").1 += 1;
                let down = downs[next].as_str();
                if !by_id.contains_key(down) {
                    continue;
                }
                match marks.get(down) {
                    Some(Mark::Visiting) => {
                        let from = path.iter().position(|(p, _)| *p == down).expect("on path");
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(p, _)| (*p).to_owned()).collect();
                        cycle.push(down.to_owned());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(down, Mark::Visiting);
                        path.push((down, 0));
                    }
                }
            } else {
                marks.insert(id, Mark::Done);
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(ids: &[&str]) -> Vec<Node> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Node {
                id: (*id).to_owned(),
                down: if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].to_owned()]
                },
            })
            .collect()
    }

    fn revs(steps: &[Step]) -> Vec<(&'static str, &str)> {
        steps
            .iter()
            .map(|s| (s.action.as_str(), s.revision.as_str()))
            .collect()
    }

    fn heads(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn orders_a_shuffled_chain_from_base_to_head() {
        let mut nodes = chain(&["a1", "b2", "c3", "d4"]);
        nodes.reverse();
        let g = Graph::new(&nodes).unwrap();
        assert_eq!(g.chain(), ["a1", "b2", "c3", "d4"]);
        assert_eq!(g.head(), Some("d4"));
    }

    #[test]
    fn empty_project_has_no_head_and_nothing_to_do() {
        let g = Graph::new(&[]).unwrap();
        assert_eq!(g.head(), None);
        assert!(g.plan_upgrade(&[], "head").unwrap().is_empty());
    }

    #[test]
    fn upgrade_to_head_from_base_applies_everything_in_order() {
        let g = Graph::new(&chain(&["a1", "b2", "c3"])).unwrap();
        let plan = g.plan_upgrade(&[], "head").unwrap();
        assert_eq!(
            revs(&plan),
            [("upgrade", "a1"), ("upgrade", "b2"), ("upgrade", "c3")]
        );
        assert_eq!(plan[0].remove_heads, Vec::<String>::new());
        assert_eq!(plan[1].remove_heads, ["a1"]);
        assert_eq!(plan[1].add_heads, ["b2"]);
    }

    #[test]
    fn upgrade_from_the_middle_and_to_a_prefix() {
        let g = Graph::new(&chain(&["a1", "b2", "c3", "d4"])).unwrap();
        assert_eq!(
            revs(&g.plan_upgrade(&heads(&["a1"]), "c").unwrap()),
            [("upgrade", "b2"), ("upgrade", "c3")]
        );
        assert!(g.plan_upgrade(&heads(&["d4"]), "head").unwrap().is_empty());
    }

    #[test]
    fn relative_targets_move_along_the_chain() {
        let g = Graph::new(&chain(&["a1", "b2", "c3", "d4"])).unwrap();
        assert_eq!(
            revs(&g.plan_upgrade(&heads(&["a1"]), "+2").unwrap()),
            [("upgrade", "b2"), ("upgrade", "c3")]
        );
        assert_eq!(revs(&g.plan_upgrade(&[], "b2+1").unwrap()).len(), 3);
        assert_eq!(
            revs(&g.plan_downgrade(&heads(&["d4"]), "-2").unwrap()),
            [("downgrade", "d4"), ("downgrade", "c3")]
        );
        assert_eq!(
            revs(&g.plan_downgrade(&heads(&["d4"]), "d4-3").unwrap()).len(),
            3
        );
        assert_eq!(
            g.plan_upgrade(&heads(&["d4"]), "+1"),
            Err(GraphError::OutOfRange("+1".into()))
        );
        assert_eq!(
            g.plan_downgrade(&[], "-1"),
            Err(GraphError::OutOfRange("-1".into()))
        );
    }

    #[test]
    fn downgrade_reverts_in_reverse_order_and_restores_heads() {
        let g = Graph::new(&chain(&["a1", "b2", "c3"])).unwrap();
        let plan = g.plan_downgrade(&heads(&["c3"]), "base").unwrap();
        assert_eq!(
            revs(&plan),
            [
                ("downgrade", "c3"),
                ("downgrade", "b2"),
                ("downgrade", "a1")
            ]
        );
        assert_eq!(plan[0].add_heads, ["b2"]);
        assert_eq!(plan[2].add_heads, Vec::<String>::new());
        assert_eq!(
            revs(&g.plan_downgrade(&heads(&["c3"]), "a1").unwrap()),
            [("downgrade", "c3"), ("downgrade", "b2")]
        );
    }

    #[test]
    fn wrong_direction_is_an_error_naming_both_revisions() {
        let g = Graph::new(&chain(&["a1", "b2", "c3"])).unwrap();
        let err = g.plan_upgrade(&heads(&["c3"]), "a1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot upgrade to `a1`: it is not after the current revision `c3`"
        );
        assert!(g.plan_downgrade(&heads(&["a1"]), "c3").is_err());
    }

    #[test]
    fn prefixes_resolve_or_are_ambiguous_or_not_found() {
        let g = Graph::new(&chain(&["abc1", "abd2", "x9"])).unwrap();
        assert_eq!(g.resolve("x"), Ok("x9"));
        assert_eq!(
            g.resolve("ab"),
            Err(GraphError::Ambiguous {
                prefix: "ab".into(),
                candidates: vec!["abc1".into(), "abd2".into()]
            })
        );
        assert_eq!(g.resolve("zz"), Err(GraphError::NotFound("zz".into())));
    }

    #[test]
    fn invalid_graphs_are_refused_with_the_revisions_named() {
        let missing = vec![Node {
            id: "b".into(),
            down: vec!["a".into()],
        }];
        assert_eq!(
            Graph::new(&missing).unwrap_err(),
            GraphError::MissingDown {
                revision: "b".into(),
                down: "a".into()
            }
        );

        let cycle = vec![
            Node {
                id: "a".into(),
                down: vec!["c".into()],
            },
            Node {
                id: "b".into(),
                down: vec!["a".into()],
            },
            Node {
                id: "c".into(),
                down: vec!["b".into()],
            },
        ];
        let Err(GraphError::Cycle(c)) = Graph::new(&cycle) else {
            panic!("cycle not found")
        };
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);

        let mut branched = chain(&["a", "b"]);
        branched.push(Node {
            id: "c".into(),
            down: vec!["a".into()],
        });
        assert_eq!(
            Graph::new(&branched).unwrap_err(),
            GraphError::MultipleHeads(vec!["b".into(), "c".into()])
        );
    }

    #[test]
    fn stored_heads_must_be_known_and_single() {
        let g = Graph::new(&chain(&["a1", "b2"])).unwrap();
        assert_eq!(
            g.position(&heads(&["zz"])),
            Err(GraphError::UnknownApplied("zz".into()))
        );
        assert!(matches!(
            g.position(&heads(&["a1", "b2"])),
            Err(GraphError::MultipleHeads(_))
        ));
        assert_eq!(g.pending(&heads(&["a1"])).unwrap(), ["b2"]);
    }

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("head"), Ok(Target::Head));
        assert_eq!(Target::parse("base"), Ok(Target::Base));
        assert_eq!(Target::parse("+3"), Ok(Target::Relative(3)));
        assert_eq!(Target::parse("-1"), Ok(Target::Relative(-1)));
        assert_eq!(
            Target::parse("ab12-2"),
            Ok(Target::RevisionRelative("ab12".into(), -2))
        );
        assert_eq!(Target::parse("ab12"), Ok(Target::Revision("ab12".into())));
        assert_eq!(Target::parse("a-b"), Ok(Target::Revision("a-b".into())));
    }
}

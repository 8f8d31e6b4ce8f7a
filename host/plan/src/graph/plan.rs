//! Plans: Alembic's topological order, the steps of an upgrade, a downgrade and a stamp,
//! the parents of a new revision, and the revision lists (`pending`, `applied`, `range`).
//!
//! Not here: resolving a target to revisions (`targets`).

use std::collections::BTreeSet;

use super::*;

impl Graph {
    /// Alembic's topological sort: `todo` ordered from `heads` downwards, each revision
    /// after everything that follows or depends on it, walking one branch as far as it
    /// goes before switching. Reverse it for upgrade order.
    pub(super) fn topological(&self, todo: &BTreeSet<usize>, heads: &[usize]) -> Vec<usize> {
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
    pub(super) fn topological_from(&self, todo: &BTreeSet<usize>, heads: &[usize]) -> Vec<usize> {
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
    pub(super) fn heads_of(&self, applied: &BTreeSet<usize>) -> BTreeSet<usize> {
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
    pub(super) fn steps(&self, stored: &[usize], order: &[usize], action: Direction) -> Vec<Step> {
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

    pub(super) fn sorted_ids<'a>(&self, indices: impl Iterator<Item = &'a usize>) -> Vec<String> {
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

    pub(super) fn upgrade_targets(
        &self,
        stored: &[usize],
        raw: &str,
    ) -> Result<Vec<usize>, GraphError> {
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
                    direction: Direction::Upgrade,
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
    pub(super) fn relative_start(
        &self,
        stored: &[usize],
        label: Option<&str>,
    ) -> Result<Pos, GraphError> {
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
    pub(super) fn downgrade_target(
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
                    direction: Direction::Downgrade,
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
    pub(super) fn branch_tips(&self, stored: &[usize]) -> Vec<usize> {
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
    pub(super) fn on_branch(
        &self,
        targets: &[usize],
        branch: &str,
    ) -> Result<Vec<usize>, GraphError> {
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
    pub(super) fn check_overlap(&self, targets: &[usize]) -> Result<(), GraphError> {
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

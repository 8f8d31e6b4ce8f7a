//! Resolving targets: revision ids and prefixes, branch labels, `head`/`heads`/`base`,
//! relative targets (`+N`, `-N`, `REV+N`, `LABEL@-N`), and walking from a position.
//!
//! Not here: the order of steps and the plans built from targets (`plan`).

use super::*;

impl Graph {
    /// A full id, a branch label, or a unique id prefix; with `branch`, the revision must
    /// be on that branch.
    pub(super) fn ident(&self, raw: &str, branch: Option<&str>) -> Result<usize, GraphError> {
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
    pub(super) fn branch(&self, label: &str) -> Result<usize, GraphError> {
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
    pub(super) fn revisions(&self, raw: &str) -> Result<Vec<usize>, GraphError> {
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
    pub(super) fn revision(&self, raw: &str) -> Result<Option<usize>, GraphError> {
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

    pub(super) fn current_head(&self, branch: Option<&str>) -> Result<Option<usize>, GraphError> {
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
    pub(super) fn filter_lineage(
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
    pub(super) fn absolute(&self, raw: &str) -> Result<Vec<usize>, GraphError> {
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
    pub(super) fn relative<'a>(&self, raw: &'a str) -> Option<Relative<'a>> {
        if self.index.contains_key(raw) {
            return None;
        }
        Relative::parse(raw)
    }

    /// The stored heads as indices.
    pub(super) fn stored(&self, heads: &[String]) -> Result<Vec<usize>, GraphError> {
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
    pub(super) fn walk_from(
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

    pub(super) fn pos_name(&self, pos: Pos) -> String {
        match pos {
            Pos::Rev(i) => self.revs[i].id.clone(),
            Pos::Base | Pos::Nothing => "base".to_owned(),
        }
    }

    // ---- sorting ----------------------------------------------------------------------
}

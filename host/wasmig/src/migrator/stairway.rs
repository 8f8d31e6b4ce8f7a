//! `wasmig test`: the stairway on a scratch database. For each revision in the order `up`
//! applies them: read the schema (S0), load the revision's `fixture.sql`, `up` one step, run
//! its `check.sql`, read the schema (S1), `down` the same step, read it (S2, which must be
//! S0), `up` again (which must work after its own `down`) and read it (S3, which must be
//! S1). It stops at the first revision that fails and says why.
//!
//! The steps run through the runner, as `up` and `down` run them (components included,
//! under the sandbox's limits); the schema is read by `wasmig_db::snapshot`. The scratch
//! database is created beside the configured one (`wasmig_db::scratch`) and dropped on every
//! path out, unless asked to keep it; the configured database is never written.
//!
//! Not here: rendering and exit codes (the CLI), the walk's order (the planner's).

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::db::scratch::Scratch;
use crate::db::snapshot::{self, Change, Schema};
use crate::db::{self, Database};
use crate::error::{GraphError, Interrupted};
use crate::graph::{Direction, Step};
use crate::revision::RevisionSet;
use crate::runner::{self, RunOptions};

use super::{Migrator, Options};

/// The file of data a revision's directory may hold, loaded before its `up`.
pub const FIXTURE_FILE: &str = "fixture.sql";
/// The file of checks a revision's directory may hold: queries run after its `up`, each of
/// which must return one row of one true value.
pub const CHECK_FILE: &str = "check.sql";

/// How `wasmig test` runs.
#[derive(Debug, Clone, Default)]
pub struct StairwayOptions {
    /// Refuse a project with more than one head (pytest-alembic's `test_single_head_revision`)
    /// instead of walking every branch.
    pub single_head: bool,
    /// The most a revision's up, down and up again (with their checks and schema reads)
    /// may take.
    pub budget: Option<Duration>,
    /// Keep the scratch database for inspection instead of dropping it.
    pub keep: bool,
    /// Create the scratch database on this server instead of the configured database's.
    pub scratch_url: Option<String>,
}

/// What `wasmig test` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StairwayReport {
    /// The scratch database's URL, without its password.
    pub scratch: String,
    /// Whether it was kept (`--keep`).
    pub kept: bool,
    /// The revisions walked, in order, up to and including the first that failed.
    pub revisions: Vec<RevisionOutcome>,
    /// The revisions not walked because one before them failed.
    pub not_run: Vec<String>,
}

impl StairwayReport {
    /// The revision that failed, if one did.
    pub fn failed(&self) -> Option<&RevisionOutcome> {
        self.revisions.iter().find(|r| r.failure.is_some())
    }
}

/// One revision's stair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevisionOutcome {
    /// The revision id.
    pub revision: String,
    /// Its message.
    pub message: String,
    /// Milliseconds its up, down and up again took, with their checks and schema reads.
    pub duration_ms: u64,
    /// Whether it loaded a fixture.
    pub fixture: bool,
    /// How many checks it ran.
    pub checks: usize,
    /// Why it failed (`None`: it passed).
    pub failure: Option<StairFailure>,
}

/// Why a revision failed the stairway.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "stage", rename_all = "kebab-case")]
pub enum StairFailure {
    /// The schema could not be read from the catalogs.
    Schema {
        /// The error.
        error: String,
    },
    /// Its `fixture.sql` failed to load.
    Fixture {
        /// The error.
        error: String,
    },
    /// Its `up` failed.
    Up {
        /// The error.
        error: String,
    },
    /// A query of its `check.sql` failed or did not return one true value.
    Check {
        /// The query.
        query: String,
        /// What it returned, or its error.
        got: String,
    },
    /// Its `down` failed.
    Down {
        /// The error.
        error: String,
    },
    /// Its `down` did not leave the schema as its `up` found it.
    DownLeftChanges {
        /// From the schema before `up` to the schema after `down`.
        changes: Vec<Change>,
    },
    /// Its `up` failed after its `down`.
    UpAgain {
        /// The error.
        error: String,
    },
    /// Its `up` after its `down` did not give the schema its first `up` gave.
    UpAgainDiffers {
        /// From the schema after the first `up` to the schema after the second.
        changes: Vec<Change>,
    },
    /// It took longer than the budget.
    OverBudget {
        /// Milliseconds it took (or had taken when it was stopped).
        took_ms: u64,
        /// The budget, in milliseconds.
        budget_ms: u64,
    },
}

impl StairFailure {
    /// A line saying what failed.
    pub fn summary(&self) -> String {
        match self {
            StairFailure::Schema { .. } => "the schema could not be read".into(),
            StairFailure::Fixture { .. } => format!("its {FIXTURE_FILE} failed to load"),
            StairFailure::Up { .. } => "up failed".into(),
            StairFailure::Check { .. } => format!("a check of its {CHECK_FILE} failed"),
            StairFailure::Down { .. } => "down failed".into(),
            StairFailure::DownLeftChanges { .. } => "down does not undo up".into(),
            StairFailure::UpAgain { .. } => "up failed after down".into(),
            StairFailure::UpAgainDiffers { .. } => {
                "up after down gives another schema than the first up".into()
            }
            StairFailure::OverBudget { took_ms, budget_ms } => format!(
                "up, down and up again took {took_ms} ms, over the budget of {budget_ms} ms"
            ),
        }
    }

    /// The lines of detail: the error, or each difference in words.
    pub fn details(&self) -> Vec<String> {
        match self {
            StairFailure::Schema { error }
            | StairFailure::Fixture { error }
            | StairFailure::Up { error }
            | StairFailure::Down { error }
            | StairFailure::UpAgain { error } => vec![error.clone()],
            StairFailure::Check { query, got } => {
                vec![format!("query: {}", one_line(query)), format!("got: {got}")]
            }
            StairFailure::DownLeftChanges { changes } => changes
                .iter()
                .map(|c| match c {
                    Change::Added { key, .. } => format!("{key} remains after down"),
                    Change::Removed { key, definition } => format!(
                        "{key} is gone after down (it was there before up: {})",
                        one_line(definition)
                    ),
                    Change::Changed { key, before, after } => format!(
                        "{key} differs after down: {} before up, {} after down",
                        one_line(before),
                        one_line(after)
                    ),
                })
                .collect(),
            StairFailure::UpAgainDiffers { changes } => changes
                .iter()
                .map(|c| match c {
                    Change::Added { key, .. } => {
                        format!("{key} appears only after the second up")
                    }
                    Change::Removed { key, .. } => {
                        format!("{key} is missing after the second up")
                    }
                    Change::Changed { key, before, after } => format!(
                        "{key} differs: {} after the first up, {} after the second",
                        one_line(before),
                        one_line(after)
                    ),
                })
                .collect(),
            StairFailure::OverBudget { .. } => Vec::new(),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Migrator {
    /// The stairway test on a scratch database (see the module's documentation). The
    /// scratch database is dropped on every path out (unless `options.keep`), including
    /// when `interrupted` completes first (Ctrl-C), which ends the walk.
    ///
    /// # Errors
    /// [`GraphError::NotSingleHead`] with `single_head` and several heads; [`GraphError`],
    /// [`crate::error::ConfigError`] for the project; [`db::scratch::ScratchError`] when the
    /// scratch database cannot be created; [`crate::error::BuildError`]; [`Interrupted`]. A revision that fails the stairway is not an error: it is in the report
    /// ([`StairwayReport::failed`]).
    pub async fn test(
        &self,
        options: &StairwayOptions,
        interrupted: impl Future<Output = ()>,
    ) -> anyhow::Result<StairwayReport> {
        self.refuse_untrusted()?;
        let set = self.revisions()?;
        let heads = set.graph().heads();
        if options.single_head && heads.len() > 1 {
            return Err(
                GraphError::NotSingleHead(heads.into_iter().map(str::to_owned).collect()).into(),
            );
        }
        let steps = set.plan(Direction::Upgrade, &[], "heads")?;
        if self.options.build && runner::needs_build(set.revisions(), &steps) {
            crate::artifact::build_off_thread(&self.project, set.revisions()).await?;
        }
        let beside = match &options.scratch_url {
            Some(url) => db::DatabaseUrl::parse(url)?,
            None => self.database_url()?.0,
        };
        let schema = &self.project.config.database_schema;
        let scratch = Scratch::create(&beside, schema).await?;
        tracing::info!(
            "scratch database: {}{}",
            scratch.url,
            if options.keep {
                " (kept at the end)"
            } else {
                " (dropped at the end)"
            }
        );
        let on_scratch = Migrator {
            project: self.project.clone(),
            options: Options {
                database_url: Some(url_text(&scratch.url)),
                ..self.options.clone()
            },
            untrusted_setup: None,
            preloaded: None,
            in_fleet: false,
        };
        let walk = on_scratch.locked(async |db: &dyn Database| {
            Ok(walk(&on_scratch, db, &set, &steps, options).await)
        });
        let result = tokio::select! {
            r = walk => r,
            () = interrupted => Err(Interrupted {
                scratch: if options.keep {
                    format!("{} was kept", scratch.url)
                } else {
                    "was dropped".to_owned()
                },
            }
            .into()),
        };
        if options.keep {
            tracing::info!("kept the scratch database: {}", scratch.url);
        } else {
            scratch.drop_database().await;
        }
        let (revisions, not_run) = result?;
        Ok(StairwayReport {
            scratch: scratch.url.to_string(),
            kept: options.keep,
            revisions,
            not_run,
        })
    }
}

/// The URL a migrator connects with (the password kept).
fn url_text(url: &db::DatabaseUrl) -> String {
    match url {
        db::DatabaseUrl::Postgres { url } | db::DatabaseUrl::Mysql { url } => url.clone(),
        db::DatabaseUrl::Sqlite { path } => format!("sqlite:{}", path.display()),
    }
}

/// Walks the steps; returns each revision's outcome up to the first failure, and the ids not
/// walked after it.
async fn walk(
    migrator: &Migrator,
    db: &dyn Database,
    set: &RevisionSet,
    steps: &[Step],
    options: &StairwayOptions,
) -> (Vec<RevisionOutcome>, Vec<String>) {
    let mut heads: Vec<String> = Vec::new();
    let mut outcomes = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let revision = set
            .revisions()
            .iter()
            .find(|r| r.manifest.revision == step.revision);
        let (message, dir) = revision.map_or((String::new(), PathBuf::new()), |r| {
            (r.manifest.message.clone(), r.dir.clone())
        });
        let start = Instant::now();
        let mut outcome = RevisionOutcome {
            revision: step.revision.clone(),
            message,
            duration_ms: 0,
            fixture: false,
            checks: 0,
            failure: None,
        };
        let stair = stair(migrator, db, set, step, &heads, &dir, &mut outcome);
        let failure = match options.budget {
            Some(budget) => match tokio::time::timeout(budget, stair).await {
                Ok(r) => r.err(),
                Err(_) => Some(StairFailure::OverBudget {
                    took_ms: millis(start.elapsed()),
                    budget_ms: millis(budget),
                }),
            },
            None => stair.await.err(),
        };
        outcome.duration_ms = millis(start.elapsed());
        outcome.failure = failure.or_else(|| {
            options
                .budget
                .filter(|b| start.elapsed() > *b)
                .map(|b| StairFailure::OverBudget {
                    took_ms: outcome.duration_ms,
                    budget_ms: millis(b),
                })
        });
        let failed = outcome.failure.is_some();
        outcomes.push(outcome);
        if failed {
            let rest = steps[i + 1..].iter().map(|s| s.revision.clone()).collect();
            return (outcomes, rest);
        }
        heads = after(&heads, step);
    }
    (outcomes, Vec::new())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The heads after `step` ran from `heads`.
fn after(heads: &[String], step: &Step) -> Vec<String> {
    let mut next: Vec<String> = heads
        .iter()
        .filter(|h| !step.remove_heads.contains(h))
        .cloned()
        .collect();
    next.extend(step.add_heads.iter().cloned());
    next.sort();
    next
}

/// The step that undoes `step`.
fn reverse(step: &Step) -> Step {
    Step {
        action: Direction::Downgrade,
        revision: step.revision.clone(),
        remove_heads: step.add_heads.clone(),
        add_heads: step.remove_heads.clone(),
    }
}

/// One revision's up, down and up again from `heads`.
async fn stair(
    migrator: &Migrator,
    db: &dyn Database,
    set: &RevisionSet,
    step: &Step,
    heads: &[String],
    dir: &std::path::Path,
    outcome: &mut RevisionOutcome,
) -> Result<(), StairFailure> {
    let schema_name = &migrator.project.config.database_schema;
    let read = async || -> Result<Schema, StairFailure> {
        snapshot::snapshot(db, schema_name)
            .await
            .map_err(|e| StairFailure::Schema {
                error: format!("{e:#}"),
            })
    };
    let run = async |steps: &[Step], from: &[String]| -> Result<(), String> {
        let options = RunOptions {
            use_cache: migrator.options.use_cache && !migrator.untrusted(),
            atomic: false,
            allow_modified: false,
            untrusted: migrator.untrusted(),
            dry_run: false,
            dry_run_batches: 1,
            journal: None,
            sandbox: None,
            workers: migrator.options.workers.unwrap_or(1),
            per_statement: migrator
                .per_statement(db, set, steps)
                .await
                .map_err(|e| format!("{e:#}"))?,
            memo: None,
        };
        runner::run(&migrator.project, db, set.revisions(), from, steps, options)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    if let Ok(fixture) = std::fs::read_to_string(dir.join(FIXTURE_FILE)) {
        outcome.fixture = true;
        load(db, &fixture)
            .await
            .map_err(|error| StairFailure::Fixture { error })?;
    }
    let s0 = read().await?;
    run(std::slice::from_ref(step), heads)
        .await
        .map_err(|error| StairFailure::Up { error })?;
    let up_heads = after(heads, step);
    if let Ok(checks) = std::fs::read_to_string(dir.join(CHECK_FILE)) {
        outcome.checks = check(db, &checks).await?;
    }
    let s1 = read().await?;
    run(&[reverse(step)], &up_heads)
        .await
        .map_err(|error| StairFailure::Down { error })?;
    let s2 = read().await?;
    let changes = s0.diff(&s2);
    if !changes.is_empty() {
        return Err(StairFailure::DownLeftChanges { changes });
    }
    run(std::slice::from_ref(step), heads)
        .await
        .map_err(|error| StairFailure::UpAgain { error })?;
    let s3 = read().await?;
    let changes = s1.diff(&s3);
    if !changes.is_empty() {
        return Err(StairFailure::UpAgainDiffers { changes });
    }
    Ok(())
}

/// Loads a fixture in one transaction.
async fn load(db: &dyn Database, sql: &str) -> Result<(), String> {
    let mut session = db.begin().await.map_err(|e| format!("{e:#}"))?;
    if let Err(e) = session.batch(sql).await {
        let _ = session.rollback().await;
        return Err(e.describe());
    }
    session.commit().await.map_err(|e| format!("{e:#}"))
}

/// Runs each query of a `check.sql` in one transaction, rolled back; each must return one
/// row of one true value (SQLite: 1). Returns how many ran.
async fn check(db: &dyn Database, sql: &str) -> Result<usize, StairFailure> {
    let failed = |query: &str, got: String| StairFailure::Check {
        query: query.to_owned(),
        got,
    };
    let queries =
        db::split_statements(sql, db.dialect()).map_err(|e| failed(CHECK_FILE, e.describe()))?;
    let mut session = db
        .begin()
        .await
        .map_err(|e| failed(CHECK_FILE, format!("{e:#}")))?;
    let mut result = Ok(queries.len());
    for query in &queries {
        use crate::bindings::Value;
        let got = match session.query(query, &[]).await {
            Err(e) => Some(e.describe()),
            Ok(r) => match r.rows.as_slice() {
                [row] => match row.as_slice() {
                    [Value::Bool(true)] | [Value::Int64(1)] | [Value::Int32(1)] => None,
                    [v] => Some(shown(v)),
                    _ => Some(format!("{} columns", row.len())),
                },
                rows => Some(format!("{} rows", rows.len())),
            },
        };
        if let Some(got) = got {
            result = Err(failed(query.trim(), got));
            break;
        }
    }
    let _ = session.rollback().await;
    result
}

/// A check's value as SQL would print it.
fn shown(v: &crate::bindings::Value) -> String {
    use crate::bindings::Value;
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int16(n) => n.to_string(),
        Value::Int32(n) => n.to_string(),
        Value::Int64(n) => n.to_string(),
        Value::Text(t) => format!("'{}'", crate::bindings::text::shown(t)),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rev: &str, remove: &[&str], add: &[&str]) -> Step {
        Step {
            action: Direction::Upgrade,
            revision: rev.into(),
            remove_heads: remove.iter().map(|s| (*s).to_owned()).collect(),
            add_heads: add.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn a_step_and_its_reverse_leave_the_heads_as_they_were() {
        let heads = vec!["a".to_owned(), "b".to_owned()];
        let merge = step("m", &["a", "b"], &["m"]);
        let up = after(&heads, &merge);
        assert_eq!(up, ["m"]);
        assert_eq!(after(&up, &reverse(&merge)), heads);
    }
}

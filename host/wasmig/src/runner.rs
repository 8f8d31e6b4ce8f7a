//! The runner: executes a plan step by step, each step in one transaction together with its
//! version-table update.
//!
//! For every step: read the artifact, compile or load the component *before* opening the
//! transaction (a broken component must not hold a transaction open), begin, run the SQL or
//! the guest call, record the step, commit. Recording an upgrade also stores the artifact in
//! the artifact table, and recording a downgrade deletes it, so the table holds exactly what
//! the applied revisions ran: `wasmig down` reverts from it a revision whose files are gone.
//! Any failure rolls the step back and stops the run; steps already committed stay, and the
//! error lists them.
//!
//! A SQL revision with `transaction = "none"` runs differently: its statements run one by
//! one, each committed on its own ([`Database::run_autocommit`]), and the step is recorded
//! afterwards in a transaction of its own. When it stops part-way nothing can be rolled
//! back, so the revision is recorded as failed (a `failed` history row and a mark in
//! `wasmig_failed`) and the run stops; `wasmig resolve` clears the mark.
//!
//! A component is called once per batch (the WIT's `batch` interface): as long as a call
//! asks for another batch, it is called again with the checkpoint it passed. In a
//! `per-migration` revision every call runs in the step's one transaction. In a `batched`
//! revision every call is a transaction of its own that commits with the checkpoint
//! ([`Database::checkpoints`]); the last one commits with the step's record, and a run that
//! finds a checkpoint for a step it runs resumes from it.
//!
//! Not here: choosing the steps (`graph`), what a guest may do (`sandbox`).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use crate::bindings::{Dialect, SqlError};
use crate::config::{Project, StatementTimeouts};
use crate::db::{
    Checkpoint, Database, FailedMark, FinishedStep, ScriptFailure, Session, StepRecord,
    StoredArtifact,
};
use crate::error::{ConfigError, Failure, MigrationError, ResumeModified};
use crate::graph::{Direction, Step};
use crate::progress::Progress;
use crate::revision::{self, Artifact, Revision, TransactionMode};
use crate::sandbox::{CacheStatus, Call, Limits, Loaded, Sandbox};

/// How long rolling back a failed step may take before its connection is ended instead.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(15);

/// What happened to one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Upgrade or downgrade.
    pub action: Direction,
    /// The revision.
    pub revision: String,
    /// SQL or component.
    pub kind: &'static str,
    /// For components: whether the compile cache was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStatus>,
    /// Milliseconds spent compiling or loading the component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<u64>,
    /// Milliseconds from begin to commit.
    pub duration_ms: u64,
    /// For components: how many calls (batches) the step took in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<u64>,
    /// For a step resumed from a checkpoint: the batches committed by earlier runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<i64>,
}

/// Options for a run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Use the compile cache.
    pub use_cache: bool,
    /// Run every step in one transaction: all of them commit, or none.
    pub atomic: bool,
    /// Resume a batched step from its checkpoint even if its artifact changed since its
    /// first batch (warns).
    pub allow_modified: bool,
}

/// Runs `steps` in order.
///
/// # Errors
/// [`MigrationError`] for the first failing step (after rolling it back), listing the steps
/// already committed; configuration or component errors before any transaction began.
pub async fn run(
    project: &Project,
    db: &dyn Database,
    revisions: &[Revision],
    steps: &[Step],
    options: RunOptions,
) -> anyhow::Result<Vec<StepReport>> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let build_dir = crate::artifact::build_dir(project);
    // Batched steps an earlier run left part-way: the steps below resume from them.
    let checkpoints = db.checkpoints().await?;
    let run = Run {
        project,
        db,
        revisions,
        steps,
        options,
        checkpoints,
        sandbox: None,
        build_dir,
    };
    // Every artifact must be there before the first step runs, not only when its turn comes.
    for step in steps {
        run.check(step)?;
    }
    db.ensure_version_tables().await?;
    let run = Run {
        sandbox: run.start_sandbox()?,
        ..run
    };
    run.all_steps().await
}

/// One run of a plan: what every step needs.
struct Run<'a> {
    project: &'a Project,
    db: &'a dyn Database,
    revisions: &'a [Revision],
    steps: &'a [Step],
    options: RunOptions,
    /// Batched steps an earlier run left part-way.
    checkpoints: Vec<Checkpoint>,
    /// The sandbox, when a step runs a component; created before the first step.
    sandbox: Option<Sandbox>,
    build_dir: std::path::PathBuf,
}

impl Run<'_> {
    /// Refuses a step before anything runs: a missing artifact, a changed artifact under a
    /// checkpoint, limits or timeouts out of range or unsupported, a mode `--atomic` cannot
    /// hold.
    fn check(&self, step: &Step) -> anyhow::Result<()> {
        let revision = find(self.revisions, &step.revision);
        revision::check_artifact(revision, &self.build_dir)?;
        if let Some(c) = self.resume_of(step) {
            let current = revision::read_artifact(revision, &self.build_dir)?.checksum();
            if current != c.checksum {
                let changed = ResumeModified {
                    revision: step.revision.clone(),
                    direction: c.direction.clone(),
                    recorded: c.checksum.clone(),
                    current,
                };
                if !self.options.allow_modified {
                    return Err(changed.into());
                }
                tracing::warn!("{changed} (resuming anyway: --allow-modified)");
            }
        }
        limits(self.project, revision)?;
        self.check_size(revision)?;
        let timeouts = timeouts(self.project, revision)?;
        if timeouts.any() && self.db.dialect() == Dialect::Sqlite {
            return Err(ConfigError::new(format!(
                "revision {}: lock_timeout_secs and statement_timeout_secs are PostgreSQL settings and SQLite has neither; remove them from {} or the [timeouts] of wasmig.toml",
                step.revision,
                revision.dir.join(revision::MANIFEST).display()
            ))
            .into());
        }
        let mode = revision.manifest.transaction;
        if self.options.atomic && mode != TransactionMode::PerMigration {
            return Err(ConfigError::new(format!(
                "revision {}: --atomic runs every step in one transaction, but {} sets `transaction = \"{}\"`; run without --atomic, or up to the revision before it first",
                step.revision,
                revision.dir.join(revision::MANIFEST).display(),
                if mode == TransactionMode::None { "none" } else { "batched" }
            ))
            .into());
        }
        Ok(())
    }

    /// Refuses a component over `max_component_mib` before the first step runs (the
    /// sandbox checks it again when it loads the component).
    fn check_size(&self, revision: &Revision) -> anyhow::Result<()> {
        let size = match (&revision.stored, revision.component_path(&self.build_dir)) {
            (Some(Artifact::Component { bytes, .. }), _) => bytes.len() as u64,
            (None, Some(path)) => std::fs::metadata(&path).map_or(0, |m| m.len()),
            _ => return Ok(()),
        };
        let max = self
            .project
            .config
            .sandbox
            .sandbox_options()
            .max_component_bytes;
        if size > max {
            return Err(crate::sandbox::CompileLimit {
                revision: revision.id().to_owned(),
                what: format!(
                    "the component is {} MiB, over the {} MiB that `max_component_mib` allows",
                    size.div_ceil(1024 * 1024),
                    max / (1024 * 1024)
                ),
            }
            .into());
        }
        Ok(())
    }

    /// The checkpoint a step resumes from, if an earlier run left one.
    fn resume_of(&self, step: &Step) -> Option<&Checkpoint> {
        self.checkpoints
            .iter()
            .find(|c| c.revision == step.revision && c.direction == step.action.as_str())
    }

    /// The sandbox, when any step runs a component, with every new component compiled on
    /// every core before the first step (rather than one after another as their steps come).
    fn start_sandbox(&self) -> anyhow::Result<Option<Sandbox>> {
        let components: Vec<&Revision> = self
            .steps
            .iter()
            .map(|s| find(self.revisions, &s.revision))
            .filter(|r| is_component(r))
            .collect();
        if components.is_empty() {
            return Ok(None);
        }
        let cache = self.options.use_cache.then(|| self.project.cache_dir());
        let sandbox = Sandbox::new(
            &self.project.root,
            cache,
            self.project.config.sandbox.sandbox_options(),
        )?;
        let artifacts: Vec<Artifact> = components
            .into_iter()
            .filter_map(|r| revision::read_artifact(r, &self.build_dir).ok())
            .collect();
        let bytes: Vec<&[u8]> = artifacts
            .iter()
            .filter_map(|a| match a {
                Artifact::Component { bytes, .. } => Some(bytes.as_slice()),
                Artifact::Sql { .. } => None,
            })
            .collect();
        sandbox.precompile(&bytes);
        Ok(Some(sandbox))
    }

    /// Runs every step; with `--atomic`, in one transaction handed from step to step.
    async fn all_steps(&self) -> anyhow::Result<Vec<StepReport>> {
        // With --atomic, every artifact is read and every component compiled before the
        // run's one transaction begins: nothing slow may happen while it holds its locks.
        let mut prepared: Vec<Option<Prepared>> = Vec::new();
        if self.options.atomic {
            for step in self.steps {
                let revision = find(self.revisions, &step.revision);
                prepared.push(Some(prepare(
                    revision,
                    step,
                    &self.build_dir,
                    self.sandbox.as_ref(),
                )?));
            }
        }
        let mut reports = Vec::with_capacity(self.steps.len());
        // With --atomic, the one transaction of the run, between steps.
        let mut held: Option<Box<dyn Session>> = None;
        for (index, step) in self.steps.iter().enumerate() {
            let at = At {
                index,
                step,
                completed: &reports,
            };
            // Read and compiled before any transaction begins (with --atomic, all of them
            // were, before the run's one transaction began).
            let ready = match prepared.get_mut(index).and_then(Option::take) {
                Some(p) => p,
                None => prepare(
                    find(self.revisions, &step.revision),
                    step,
                    &self.build_dir,
                    self.sandbox.as_ref(),
                )?,
            };
            let (report, session) = self.one_step(&at, ready, held.take()).await?;
            held = session;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Runs one step by its transaction mode; returns its report and, with `--atomic` before
    /// the last step, the transaction to hand on.
    async fn one_step(
        &self,
        at: &At<'_>,
        ready: Prepared,
        held: Option<Box<dyn Session>>,
    ) -> anyhow::Result<(StepReport, Option<Box<dyn Session>>)> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        let resume = self.resume_of(step).cloned();
        if revision.stored.is_some() {
            tracing::info!(
                "{} {} from the copy stored in the database (its files are not in this project)",
                verb(step.action),
                step.revision
            );
        } else {
            // The message is the author's text: one visible line.
            tracing::info!(
                "{} {} ({})",
                verb(step.action),
                step.revision,
                crate::bindings::text::shown(&revision.manifest.message)
            );
        }
        if let Some(c) = &resume {
            tracing::info!(
                "{}: resuming after batch {} of an earlier run, from its checkpoint",
                step.revision,
                c.batches
            );
        }
        match revision.manifest.transaction {
            TransactionMode::Batched => Ok((self.batched_step(at, ready, resume).await?, None)),
            TransactionMode::None => Ok((self.autocommitted_step(at, ready).await?, None)),
            TransactionMode::PerMigration => self.transactional_step(at, ready, resume, held).await,
        }
    }

    /// A `transaction = "batched"` step: one transaction per batch.
    async fn batched_step(
        &self,
        at: &At<'_>,
        ready: Prepared,
        resume: Option<Checkpoint>,
    ) -> anyhow::Result<StepReport> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        let (Some(loaded), Some(sandbox)) = (&ready.loaded, &self.sandbox) else {
            unreachable!("manifests refuse `transaction = \"batched\"` for SQL revisions")
        };
        let started = Instant::now();
        let batched = Batched {
            step,
            checksum: &ready.checksum,
            to_store: ready.to_store.as_ref(),
            limits: limits(self.project, revision)?,
            timeouts: timeouts(self.project, revision)?,
            resume: resume.clone(),
        };
        let progress = Progress::new(step.revision.clone());
        let batches = run_batched(self.db, sandbox, loaded, batched, progress)
            .await
            .map_err(|f| self.fail(at, f))?;
        Ok(StepReport {
            action: step.action,
            revision: step.revision.clone(),
            kind: "component",
            cache: Some(loaded.cache),
            load_ms: Some(loaded.load_time.as_millis() as u64),
            duration_ms: started.elapsed().as_millis() as u64,
            batches: Some(batches),
            resumed_after: resume.map(|c| c.batches),
        })
    }

    /// A `transaction = "none"` SQL step: statement by statement, then recorded.
    async fn autocommitted_step(&self, at: &At<'_>, ready: Prepared) -> anyhow::Result<StepReport> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        let Artifact::Sql { up, down } = &ready.artifact else {
            unreachable!("manifests refuse `transaction = \"none\"` for components")
        };
        let script = if step.action == Direction::Upgrade {
            up
        } else {
            down
        };
        let started = Instant::now();
        let step_timeouts = timeouts(self.project, revision)?;
        run_autocommitted(
            self.db,
            step,
            script,
            &ready.checksum,
            ready.to_store.as_ref(),
            &step_timeouts,
        )
        .await
        .map_err(|f| self.fail(at, f))?;
        Ok(StepReport {
            action: step.action,
            revision: step.revision.clone(),
            kind: "sql",
            cache: None,
            load_ms: None,
            duration_ms: started.elapsed().as_millis() as u64,
            batches: None,
            resumed_after: None,
        })
    }

    /// A `per-migration` step: the SQL script or every guest call, then the record, in one
    /// transaction (the run's, with `--atomic`).
    async fn transactional_step(
        &self,
        at: &At<'_>,
        ready: Prepared,
        resume: Option<Checkpoint>,
        held: Option<Box<dyn Session>>,
    ) -> anyhow::Result<(StepReport, Option<Box<dyn Session>>)> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        let atomic = self.options.atomic;
        let limits = limits(self.project, revision)?;
        let started_at = Utc::now();
        let started = Instant::now();
        let mut session = match held {
            Some(session) => session,
            None => self
                .db
                .begin()
                .await
                .map_err(|e| self.fail(at, Failure::Host(e)))?,
        };
        let step_timeouts = timeouts(self.project, revision)?;
        // In one transaction for the whole run, a step without timeouts must not inherit
        // the previous step's.
        if (step_timeouts.any() || (atomic && self.db.dialect() == Dialect::Postgres))
            && let Err(e) = session
                .set_timeouts(step_timeouts.lock(), step_timeouts.statement())
                .await
        {
            let _ = session.rollback().await;
            return Err(self.fail(at, Failure::Host(e)).into());
        }
        let (session, outcome, calls) = match (&ready.artifact, &ready.loaded, &self.sandbox) {
            (Artifact::Sql { up, down }, _, _) => {
                let script = if step.action == Direction::Upgrade {
                    up
                } else {
                    down
                };
                // A script honours the step's deadline as a guest does: its statement is
                // cancelled, then its connection ended.
                let canceller = session.canceller();
                let outcome = match crate::sandbox::against_deadline(
                    session.batch(script),
                    limits.deadline_from_now(),
                    &*canceller,
                )
                .await
                {
                    Ok(result) => result.map_err(Failure::from_sql),
                    Err(_) => Err(Failure::Deadline(limits.timeout)),
                };
                (session, outcome, None)
            }
            (Artifact::Component { .. }, Some(loaded), Some(sandbox)) => {
                let called =
                    call_until_done(sandbox, loaded, step, session, limits, resume.as_ref())
                        .await
                        .map_err(|f| self.fail(at, f))?;
                (called.0, called.1, Some(called.2))
            }
            _ => unreachable!("components are loaded above"),
        };
        let mut session = session;
        if let Err(failure) = outcome {
            roll_back(session, &step.revision).await;
            return Err(self.fail(at, failure).into());
        }
        let recorded = finish(
            &mut session,
            step,
            &ready.checksum,
            started_at,
            ready.to_store.as_ref(),
            resume.is_some(),
            ready.loaded.is_some(),
        )
        .await;
        if let Err(failure) = recorded {
            let _ = session.rollback().await;
            return Err(self.fail(at, failure).into());
        }
        let last = at.index + 1 == self.steps.len();
        let held = if atomic && !last {
            Some(session)
        } else {
            session
                .commit()
                .await
                .map_err(|e| self.fail(at, Failure::Host(e)))?;
            tracing::debug!(
                "{}: committed with its version-table update in {} ms{}",
                step.revision,
                started.elapsed().as_millis(),
                if atomic {
                    " (and every earlier step of this --atomic run)"
                } else {
                    ""
                }
            );
            None
        };
        let report = StepReport {
            action: step.action,
            revision: step.revision.clone(),
            kind: if ready.loaded.is_some() {
                "component"
            } else {
                "sql"
            },
            cache: ready.loaded.as_ref().map(|l| l.cache),
            load_ms: ready
                .loaded
                .as_ref()
                .map(|l| l.load_time.as_millis() as u64),
            duration_ms: started.elapsed().as_millis() as u64,
            batches: calls,
            resumed_after: resume.map(|c| c.batches),
        };
        Ok((report, held))
    }

    /// The error for a failed step, naming the steps this run committed before it.
    fn fail(&self, at: &At<'_>, failure: Failure) -> MigrationError {
        let atomic = self.options.atomic;
        if atomic && at.index > 0 {
            tracing::warn!(
                "--atomic: the {} earlier step(s) of this run were rolled back with it",
                at.index
            );
        }
        MigrationError {
            revision: at.step.revision.clone(),
            direction: at.step.action.as_str(),
            failure,
            // With --atomic nothing was committed: the whole run rolls back.
            completed: if atomic {
                Vec::new()
            } else {
                at.completed.iter().map(|r| r.revision.clone()).collect()
            },
        }
    }
}

/// Where a run is: the step, its position, and the steps reported before it.
struct At<'a> {
    index: usize,
    step: &'a Step,
    completed: &'a [StepReport],
}

/// Calls a component's export in the step's one transaction until it asks for no further
/// batch, under one deadline for the step. Returns the session, the outcome and the number
/// of calls.
///
/// # Errors
/// [`Failure::Host`] when the guest kept the session (nothing to roll back through).
async fn call_until_done(
    sandbox: &Sandbox,
    loaded: &Loaded,
    step: &Step,
    mut session: Box<dyn Session>,
    limits: Limits,
    resume: Option<&Checkpoint>,
) -> Result<(Box<dyn Session>, Result<(), Failure>, u64), Failure> {
    let deadline = limits.deadline_from_now();
    let mut checkpoint = resume.map(|c| c.checkpoint.clone());
    let mut progress = Progress::new(step.revision.clone());
    let mut n = 0;
    loop {
        n += 1;
        let returned = sandbox
            .run(
                loaded,
                Call {
                    revision: &step.revision,
                    direction: step.action,
                    session,
                    limits,
                    deadline,
                    checkpoint: checkpoint.clone(),
                    progress,
                },
            )
            .await;
        progress = returned.progress;
        session = returned
            .session
            .ok_or_else(|| Failure::Host(anyhow::anyhow!("the guest kept the session")))?;
        match returned.outcome {
            Err(failure) => return Ok((session, Err(failure), n)),
            Ok(None) => return Ok((session, Ok(()), n)),
            Ok(Some(next)) if checkpoint.as_ref() == Some(&next) => {
                return Ok((session, Err(repeated_checkpoint(n, &next)), n));
            }
            Ok(Some(next)) => checkpoint = Some(next),
        }
    }
}

/// The failure of a guest that asks for another batch from the checkpoint it was given: it
/// would run forever.
fn repeated_checkpoint(batch: u64, checkpoint: &str) -> Failure {
    Failure::GuestError(format!(
        "batch {batch} asked for another batch from the checkpoint it started from ({checkpoint:?}), so it would repeat forever; pass `next-batch` the point after the work this batch did"
    ))
}

/// Rolls back a failed step's (or batch's) transaction. After a deadline the connection
/// may still be busy with a statement that ignored its cancel: the rollback must not wait
/// for it forever, so past [`ROLLBACK_TIMEOUT`] the connection is ended instead.
async fn roll_back(session: Box<dyn Session>, revision: &str) {
    let canceller = session.canceller();
    match tokio::time::timeout(ROLLBACK_TIMEOUT, session.rollback()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            "rollback of {revision} failed: {e:#} (the server discards the transaction anyway)"
        ),
        Err(_) => {
            canceller.terminate().await;
            tracing::warn!(
                "rollback of {revision} did not finish within {} s; its connection was ended, which discards the transaction",
                ROLLBACK_TIMEOUT.as_secs()
            );
        }
    }
}

/// Checks that the transaction is still the one wasmig began: a statement that ended it
/// (and perhaps began another) must not let the version-table update land in a transaction
/// the step's work is not in.
async fn check_intact(session: &mut Box<dyn Session>, guest: bool) -> Result<(), Failure> {
    match session.transaction_intact().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::TransactionEnded { guest }),
        Err(e) => Err(Failure::Host(e)),
    }
}

/// Records a finished step in its transaction, once [`check_intact`]'s check passes (in the
/// same round trip on PostgreSQL): the version tables, the artifact stored (upgrade) or
/// forgotten (downgrade), and the checkpoint of a resumed step deleted.
async fn finish(
    session: &mut Box<dyn Session>,
    step: &Step,
    checksum: &str,
    started_at: chrono::DateTime<Utc>,
    to_store: Option<&StoredArtifact>,
    had_checkpoint: bool,
    guest: bool,
) -> Result<(), Failure> {
    let finished = FinishedStep {
        record: completed(step, checksum, started_at),
        artifact: to_store,
        clear_checkpoint: had_checkpoint,
    };
    match session.finish_step(&finished).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::TransactionEnded { guest }),
        Err(e) => Err(Failure::Host(e)),
    }
}

/// The version-table record of `step` run to its end, now.
fn completed<'a>(
    step: &'a Step,
    checksum: &'a str,
    started_at: chrono::DateTime<Utc>,
) -> StepRecord<'a> {
    StepRecord {
        remove: &step.remove_heads,
        add: &step.add_heads,
        revision: &step.revision,
        direction: step.action.as_str(),
        checksum,
        started_at,
        finished_at: Utc::now(),
        error: None,
        sqlstate: None,
    }
}

/// What [`run_batched`] needs of its step.
struct Batched<'a> {
    step: &'a Step,
    checksum: &'a str,
    /// The copy to store with the last batch (upgrades).
    to_store: Option<&'a StoredArtifact>,
    limits: Limits,
    timeouts: StatementTimeouts,
    /// The checkpoint an earlier run left, to resume from.
    resume: Option<Checkpoint>,
}

/// Runs a `transaction = "batched"` step: one transaction per call, each committing with
/// its checkpoint, the last with the step's record. Returns how many calls this run made.
///
/// # Errors
/// [`Failure::Batch`] for the failed batch (rolled back; the earlier ones stay committed).
async fn run_batched(
    db: &dyn Database,
    sandbox: &Sandbox,
    loaded: &Loaded,
    batched: Batched<'_>,
    mut progress: Progress,
) -> Result<u64, Failure> {
    let Batched {
        step,
        checksum,
        to_store,
        limits,
        timeouts,
        resume,
    } = batched;
    let started_at = resume.as_ref().map_or_else(Utc::now, |c| c.started_at);
    let batched_step = BatchedStep {
        step,
        checksum,
        to_store,
        started_at,
    };
    let mut committed = resume.as_ref().map_or(0, |c| c.batches);
    let mut checkpoint = resume.as_ref().map(|c| c.checkpoint.clone());
    let had_checkpoint = resume.is_some();
    let mut calls = 0;
    let run_started = Instant::now();
    loop {
        // The limits of one run, checked between batches: a guest that never stops asking
        // for another batch (two checkpoints in turn) stops here, its work committed.
        if calls > 0 {
            let limit = if calls >= limits.max_batches {
                Some(format!("max_batches = {}", limits.max_batches))
            } else if run_started.elapsed() >= limits.batched_timeout {
                Some(format!(
                    "batched_timeout_secs = {}",
                    limits.batched_timeout.as_secs_f64()
                ))
            } else {
                None
            };
            if let Some(limit) = limit {
                return Err(Failure::BatchLimit {
                    batches: calls,
                    limit,
                });
            }
        }
        calls += 1;
        let batch = committed + 1;
        let in_batch = |cause: Failure| Failure::Batch {
            revision: step.revision.clone(),
            direction: step.action.as_str(),
            batch,
            cause: Box::new(cause),
        };
        let mut session = db.begin().await.map_err(|e| in_batch(Failure::Host(e)))?;
        if timeouts.any()
            && let Err(e) = session
                .set_timeouts(timeouts.lock(), timeouts.statement())
                .await
        {
            let _ = session.rollback().await;
            return Err(in_batch(Failure::Host(e)));
        }
        let returned = sandbox
            .run(
                loaded,
                Call {
                    revision: &step.revision,
                    direction: step.action,
                    session,
                    limits,
                    // The deadline bounds each batch: the step may run for hours.
                    deadline: limits.deadline_from_now(),
                    checkpoint: checkpoint.clone(),
                    progress,
                },
            )
            .await;
        progress = returned.progress;
        let Some(mut session) = returned.session else {
            return Err(in_batch(Failure::Host(anyhow::anyhow!(
                "the guest kept the session"
            ))));
        };
        let next = match returned.outcome {
            Ok(Some(next)) if checkpoint.as_ref() == Some(&next) => {
                Err(repeated_checkpoint(batch as u64, &next))
            }
            other => other,
        };
        let next = match next {
            Ok(next) => next,
            Err(failure) => {
                roll_back(session, &step.revision).await;
                return Err(in_batch(failure));
            }
        };
        let written = write_batch(
            &mut session,
            &batched_step,
            batch,
            next.as_deref(),
            had_checkpoint,
        )
        .await;
        if let Err(failure) = written {
            let _ = session.rollback().await;
            return Err(in_batch(failure));
        }
        session
            .commit()
            .await
            .map_err(|e| in_batch(Failure::Host(e)))?;
        match next {
            Some(next) => {
                tracing::debug!(
                    "{}: batch {batch} committed with its checkpoint",
                    step.revision
                );
                committed = batch;
                checkpoint = Some(next);
            }
            None => {
                tracing::debug!(
                    "{}: last batch ({batch}) committed with the version-table update",
                    step.revision
                );
                return Ok(calls);
            }
        }
    }
}

/// What every batch of a batched step records.
struct BatchedStep<'a> {
    step: &'a Step,
    checksum: &'a str,
    to_store: Option<&'a StoredArtifact>,
    started_at: chrono::DateTime<Utc>,
}

/// Writes what a batch commits with: its checkpoint when the guest asked for another batch
/// (`next`), else the step's record (the last batch).
async fn write_batch(
    session: &mut Box<dyn Session>,
    batched: &BatchedStep<'_>,
    batch: i64,
    next: Option<&str>,
    had_checkpoint: bool,
) -> Result<(), Failure> {
    let BatchedStep {
        step,
        checksum,
        to_store,
        started_at,
    } = *batched;
    match next {
        Some(next) => {
            check_intact(session, true).await?;
            let saved = Checkpoint {
                revision: step.revision.clone(),
                direction: step.action.as_str().to_owned(),
                remove_heads: step.remove_heads.clone(),
                add_heads: step.add_heads.clone(),
                checkpoint: next.to_owned(),
                batches: batch,
                checksum: checksum.to_owned(),
                started_at,
                updated_at: Utc::now(),
            };
            session.save_checkpoint(&saved).await.map_err(Failure::Host)
        }
        None => {
            finish(
                session,
                step,
                checksum,
                started_at,
                to_store,
                had_checkpoint || batch > 1,
                true,
            )
            .await
        }
    }
}

/// One step of a `transaction = "none"` SQL revision: the script's statements each
/// autocommitted, then the version-table update in a transaction of its own. A failure
/// after the first statement ran marks the revision failed.
///
/// # Errors
/// The step's [`Failure`]: the plain SQL error when nothing ran, else
/// [`Failure::NotRolledBack`].
async fn run_autocommitted(
    db: &dyn Database,
    step: &Step,
    script: &str,
    checksum: &str,
    to_store: Option<&StoredArtifact>,
    timeouts: &StatementTimeouts,
) -> Result<(), Failure> {
    let started_at = Utc::now();
    // Marked failed before the first statement runs, so a wasmig killed half-way leaves
    // the mark (and `up` refuses until someone resolves it) rather than a silent half.
    let provisional = FailedMark {
        revision: step.revision.clone(),
        direction: step.action.as_str().to_owned(),
        remove_heads: step.remove_heads.clone(),
        add_heads: step.add_heads.clone(),
        statement: 0,
        error: format!(
            "{} was interrupted: wasmig stopped while this non-transactional revision ran, so some of its statements may have run",
            step.action.as_str()
        ),
        sqlstate: None,
        failed_at: started_at,
    };
    alone(db, |s| {
        Box::pin(async move { s.set_failed(&provisional).await })
    })
    .await
    .map_err(Failure::Host)?;
    let (statement, total, cause, error) = match db
        .run_autocommit(script, timeouts.lock(), timeouts.statement())
        .await
    {
        Ok(total) => {
            let record = completed(step, checksum, started_at);
            match record_in_own_transaction(db, &record, Recorded::Step(to_store)).await {
                Ok(()) => {
                    tracing::debug!(
                        "{}: {total} statement(s) autocommitted, then recorded",
                        step.revision
                    );
                    return Ok(());
                }
                Err(e) => {
                    let error = SqlError::wasmig("IO", format!("{e:#}"));
                    (total + 1, total, Failure::Host(e), error)
                }
            }
        }
        // Refused before anything ran (transaction control), or no connection: an
        // ordinary failure with nothing to resolve.
        Err(ScriptFailure {
            statement: 0,
            error,
            ..
        }) => {
            let revision = step.revision.clone();
            if let Err(e) = alone(db, |s| {
                Box::pin(async move { s.clear_failed(&revision).await })
            })
            .await
            {
                tracing::warn!(
                    "{}: nothing ran, but its interrupted mark could not be cleared ({e:#}); `wasmig resolve {} --as rolled-back` clears it",
                    step.revision,
                    step.revision
                );
            }
            return Err(Failure::from_sql(*error));
        }
        Err(ScriptFailure {
            statement,
            total,
            error,
        }) => (
            statement,
            total,
            Failure::from_sql((*error).clone()),
            *error,
        ),
    };
    let stopped = Stopped {
        statement,
        total,
        error,
    };
    Err(mark_failed(db, step, checksum, started_at, stopped, cause).await)
}

/// Where a non-transactional script stopped.
struct Stopped {
    statement: usize,
    total: usize,
    error: SqlError,
}

/// Records that a `transaction = "none"` step stopped part-way (a `failed` history row
/// and its mark, in a transaction of their own) and returns the step's failure.
async fn mark_failed(
    db: &dyn Database,
    step: &Step,
    checksum: &str,
    started_at: chrono::DateTime<Utc>,
    stopped: Stopped,
    cause: Failure,
) -> Failure {
    let Stopped {
        statement,
        total,
        error,
    } = stopped;
    let finished_at = Utc::now();
    let message = format!(
        "{} stopped at statement {statement} of {total}: {}",
        step.action.as_str(),
        error.message
    );
    let mark = FailedMark {
        revision: step.revision.clone(),
        direction: step.action.as_str().to_owned(),
        remove_heads: step.remove_heads.clone(),
        add_heads: step.add_heads.clone(),
        statement: statement as i64,
        error: message.clone(),
        sqlstate: Some(error.code.clone()),
        failed_at: finished_at,
    };
    let record = StepRecord {
        remove: &[],
        add: &[],
        revision: &step.revision,
        direction: "failed",
        checksum,
        started_at,
        finished_at,
        error: Some(&message),
        sqlstate: Some(&error.code),
    };
    let unmarked = record_in_own_transaction(db, &record, Recorded::Failure(&mark))
        .await
        .err()
        .map(|e| format!("{e:#}"));
    Failure::NotRolledBack {
        revision: step.revision.clone(),
        statement,
        total,
        cause: Box::new(cause),
        unmarked,
    }
}

/// What [`record_in_own_transaction`] writes beside the history row.
enum Recorded<'a> {
    /// A completed step: its artifact stored (upgrade) or forgotten (downgrade).
    Step(Option<&'a StoredArtifact>),
    /// A failure: the failed mark (the artifact table stays as it was).
    Failure(&'a FailedMark),
}

/// Records a step (and its artifact, or the failed mark) in a transaction of its own.
async fn record_in_own_transaction(
    db: &dyn Database,
    record: &StepRecord<'_>,
    with: Recorded<'_>,
) -> anyhow::Result<()> {
    let mut session = db.begin().await?;
    let written = async {
        session.record_step(record).await?;
        match with {
            Recorded::Step(stored) => {
                // The provisional mark of a `transaction = "none"` step goes with its record.
                session.clear_failed(record.revision).await?;
                match stored {
                    Some(stored) => session.store_artifact(stored).await,
                    None => session.forget_artifact(record.revision).await,
                }
            }
            Recorded::Failure(mark) => session.set_failed(mark).await,
        }
    }
    .await;
    match written {
        Ok(()) => session.commit().await,
        Err(e) => {
            let _ = session.rollback().await;
            Err(e)
        }
    }
}

/// What a step needs before its transaction begins.
struct Prepared {
    artifact: Artifact,
    checksum: String,
    /// The copy to store in the database (upgrades).
    to_store: Option<StoredArtifact>,
    /// The compiled component, for component revisions.
    loaded: Option<crate::sandbox::Loaded>,
}

/// Reads a step's artifact and compiles its component.
fn prepare(
    revision: &Revision,
    step: &Step,
    build_dir: &std::path::Path,
    sandbox: Option<&Sandbox>,
) -> anyhow::Result<Prepared> {
    let artifact = revision::read_artifact(revision, build_dir)?;
    let checksum = artifact.checksum();
    let to_store = match step.action {
        Direction::Upgrade => Some(revision.to_stored(&artifact)?),
        Direction::Downgrade => None,
    };
    let loaded = match (&artifact, sandbox) {
        (Artifact::Component { path, bytes }, Some(sandbox)) => {
            Some(sandbox.load(&step.revision, path, bytes)?)
        }
        _ => None,
    };
    if let Some(l) = &loaded {
        tracing::debug!(
            "{}: component {} in {} ms",
            step.revision,
            match l.cache {
                CacheStatus::Hit => "loaded from the cache",
                CacheStatus::Miss => "compiled and cached",
                CacheStatus::Disabled => "compiled (cache disabled)",
            },
            l.load_time.as_millis()
        );
    }
    Ok(Prepared {
        artifact,
        checksum,
        to_store,
        loaded,
    })
}

/// Runs `write` in a transaction of its own and commits it.
async fn alone<F>(db: &dyn Database, write: F) -> anyhow::Result<()>
where
    F: for<'s> FnOnce(
        &'s mut Box<dyn crate::db::Session>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 's>,
    >,
{
    let mut session = db.begin().await?;
    match write(&mut session).await {
        Ok(()) => session.commit().await,
        Err(e) => {
            let _ = session.rollback().await;
            Err(e)
        }
    }
}

/// The statement and lock timeouts of a revision: its manifest's, else the project's.
///
/// # Errors
/// [`ConfigError`] naming the manifest for a value out of range.
fn timeouts(project: &Project, revision: &Revision) -> anyhow::Result<StatementTimeouts> {
    Ok(project.config.timeouts.with_overrides(
        &revision.manifest.timeouts(),
        &revision.dir.join(revision::MANIFEST),
    )?)
}

/// The sandbox limits of a revision: its manifest's overrides, else the project's.
///
/// # Errors
/// [`crate::error::ConfigError`] naming the manifest for a value out of range.
fn limits(project: &Project, revision: &Revision) -> anyhow::Result<Limits> {
    let settings = project
        .config
        .sandbox
        .with_overrides(&revision.manifest, &revision.dir.join(revision::MANIFEST))?;
    Ok(Limits {
        memory: settings.memory_limit_bytes(),
        timeout: settings.timeout(),
        max_batches: settings.max_batches,
        batched_timeout: Duration::try_from_secs_f64(
            settings
                .batched_timeout_secs
                .min(crate::config::MAX_TIMEOUT_SECS),
        )
        .unwrap_or(Duration::ZERO),
    })
}

fn verb(direction: Direction) -> &'static str {
    match direction {
        Direction::Upgrade => "applying",
        Direction::Downgrade => "reverting",
    }
}

fn find<'a>(revisions: &'a [Revision], id: &str) -> &'a Revision {
    revisions
        .iter()
        .find(|r| r.id() == id)
        .expect("the planner only returns known revisions")
}

fn is_component(revision: &Revision) -> bool {
    revision.manifest.kind != crate::revision::Kind::Sql
}

/// Whether any of `steps` needs a build from source (a stored revision brings its component).
pub fn needs_build(revisions: &[Revision], steps: &[Step]) -> bool {
    steps.iter().any(|s| {
        let revision = find(revisions, &s.revision);
        revision.manifest.kind.is_built() && revision.stored.is_none()
    })
}

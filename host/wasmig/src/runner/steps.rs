//! Running a plan: checking every step before the first, the sandbox, and each step by its
//! transaction mode (`per-migration` here, `batched` and `none` in their modules), with
//! `--atomic`'s one transaction handed from step to step.

use super::*;
use crate::sandbox::journal::{Entry, ms_since, observe_by, script_entry};

/// Runs `steps` in order, planned from `heads_before` (the heads read under the lock):
/// each step's record is written only if wasmig's tables hold what the run expects
/// ([`Expected`]), and after the last commit the heads are read back and must be what the
/// steps recorded.
///
/// # Errors
/// [`MigrationError`] for the first failing step (after rolling it back), listing the steps
/// already committed; configuration or component errors before any transaction began.
pub async fn run(
    project: &Project,
    db: &dyn Database,
    revisions: &[Revision],
    heads_before: &[String],
    steps: &[Step],
    options: RunOptions,
) -> anyhow::Result<Vec<StepReport>> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let build_dir = crate::artifact::build_dir(project);
    let dry_run = options.dry_run;
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
        start: Expected::default(),
    };
    // Every artifact must be there before the first step runs, not only when its turn comes.
    for step in steps {
        run.check(step)?;
    }
    // A dry run records nothing, and must not create wasmig's tables either.
    if !dry_run {
        db.ensure_version_tables().await?;
        // What an earlier run on this database object left unchecked (it failed before
        // its check) is not this run's.
        db.forget_run_writes();
    } else {
        // Its steps' guards compare the tables with what they were as it began, as a real
        // run's records do.
        db.know_tables().await?;
    }
    let mut heads = heads_before.to_vec();
    heads.sort();
    let start = Expected {
        heads,
        history: db.history_len().await?,
    };
    let run = Run {
        sandbox: run.start_sandbox()?,
        start,
        ..run
    };
    let reports = run.all_steps().await;
    // The steps committed lazily are on disk before the run reports (a run that ended with
    // a step of its own transaction wrote them with it, and this does nothing).
    if let Err(e) = db.flush().await {
        tracing::warn!(
            "{e:#}: the steps this run committed are on disk once the server writes its log (within a second, unless it stops first)"
        );
    }
    let reports = match reports {
        Ok(reports) => reports,
        // The steps committed before the failure are checked too: a forgery at one of
        // their commits must not stay hidden behind the failure that followed. (Not when
        // the failed step's own commit is unknown, or a statement of its ended wasmig's
        // transaction: what it committed is in no record's account.)
        Err(failed) if !dry_run && !commit_in_doubt(&failed) => {
            return Err(match db.verify_run_writes().await {
                Err(tampered) if tampered.is::<crate::db::TamperedAfterCommit>() => tampered
                    .context(format!(
                        "{failed:#}; and after the steps that committed before it"
                    )),
                Err(e) => {
                    tracing::debug!("checking the steps committed before the failure: {e:#}");
                    failed
                }
                Ok(()) => failed,
            });
        }
        Err(failed) => return Err(failed),
    };
    if !dry_run {
        read_back(db, &run.expected_before(steps.len()).heads, "the run").await?;
        db.verify_run_writes().await?;
    }
    Ok(reports)
}

/// Whether `failed` is a step whose transaction may have committed outside wasmig's
/// account: its `COMMIT` unanswered, or ended by a statement of its own.
fn commit_in_doubt(failed: &anyhow::Error) -> bool {
    failed.chain().any(|cause| {
        cause
            .downcast_ref::<crate::runner::MigrationError>()
            .is_some_and(|e| {
                matches!(
                    e.failure,
                    crate::runner::Failure::CommitUnknown(_)
                        | crate::runner::Failure::TransactionEnded { .. }
                )
            })
    })
}

/// How long reading the heads back after a run may wait for the server.
const READ_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// After a step commits (and after the run), reads the heads back and compares them with
/// what the steps recorded: something that runs at or after `COMMIT` (a deferred trigger of
/// a migration's table, say) could change the version table after wasmig wrote it, and a
/// run must neither report revisions applied that the table no longer shows (they would run
/// again next time) nor go on to the next step from a state it did not make. `what`
/// committed, for the message: "step a1", "the run".
///
/// When the lock's session does not answer in time, or has ended, the heads are read on
/// another session ([`read_elsewhere`]). A read-back that cannot be made there either is an
/// error, never taken for a match: whatever kept the server from answering (a lock on the
/// version table, held from another session by the same migration) could have changed the
/// table first.
///
/// # Errors
/// [`TamperedAfterCommit`](crate::db::TamperedAfterCommit) naming both sets of heads;
/// [`ReadBackUnanswered`](crate::db::ReadBackUnanswered) when no session could read them in
/// time; [`LockLostAfter`](crate::db::LockLostAfter) when the lock's session ended and the
/// heads read on another show what the steps recorded.
async fn read_back(db: &dyn Database, expected: &[String], what: &str) -> anyhow::Result<()> {
    // Bounded: the connection it reads on is the lock's, and a server that stopped
    // answering there must not hold a run whose steps all committed.
    let Ok(found) = tokio::time::timeout(READ_BACK_WAIT, db.heads()).await else {
        // That session may be all that stopped (a frozen backend): read on another.
        return match read_elsewhere(db).await {
            Some(heads) => {
                tracing::warn!(
                    "the session holding the migration lock did not answer within {} s; the heads were read back on another",
                    READ_BACK_WAIT.as_secs()
                );
                same_heads(&heads, expected, what)
            }
            None => Err(crate::db::ReadBackUnanswered {
                what: what.to_owned(),
                waited: READ_BACK_WAIT,
            }
            .into()),
        };
    };
    let mut found = match found {
        Ok(found) => found,
        // The lock's connection ended (a migration can end any session its role may
        // signal) after the step checked the lock in its own transaction and committed.
        // What ended it may have changed the heads as the step committed (a deferred
        // trigger can do both): they are read on another session, and a mismatch is
        // tampering, not a lost lock.
        Err(e)
            if e.downcast_ref::<crate::db::DbError>()
                .is_some_and(crate::db::DbError::connection_lost) =>
        {
            return Err(match read_elsewhere(db).await {
                Some(heads) => match same_heads(&heads, expected, what) {
                    Err(tampered) => {
                        tampered.context("the session holding the migration lock ended")
                    }
                    Ok(()) => crate::db::LockLostAfter.into(),
                },
                None => crate::db::LockLostAfter.into(),
            });
        }
        Err(e) => return Err(e),
    };
    found.sort();
    same_heads(&found, expected, what)
}

/// The heads (sorted) as a session of the pool reads them when it begins, within
/// [`READ_BACK_WAIT`]: for [`read_back`] when the lock's own session cannot answer.
/// `None` when they could not be read in time (or the backend reads none as it begins).
async fn read_elsewhere(db: &dyn Database) -> Option<Vec<String>> {
    let read = tokio::time::timeout(READ_BACK_WAIT, async {
        let session = db.begin().await?;
        let heads = session.begun().map(|begun| begun.heads.clone());
        let _ = session.rollback().await;
        anyhow::Ok(heads)
    });
    match read.await {
        Ok(Ok(heads)) => heads,
        Ok(Err(e)) => {
            tracing::debug!("reading the heads back on another session: {e:#}");
            None
        }
        Err(_) => None,
    }
}

/// [`read_back`]'s comparison: `found` (sorted) must be the heads the steps recorded.
///
/// # Errors
/// [`TamperedAfterCommit`](crate::db::TamperedAfterCommit) naming both sets of heads.
fn same_heads(found: &[String], expected: &[String], what: &str) -> anyhow::Result<()> {
    if found == expected {
        return Ok(());
    }
    let list = |heads: &[String]| {
        if heads.is_empty() {
            "none".to_owned()
        } else {
            heads.join(", ")
        }
    };
    Err(crate::db::TamperedAfterCommit(format!(
        "after {what} committed, wasmig_version holds {} where the steps recorded {} (something changed it at or after COMMIT, such as a deferred trigger of a migration's table); the steps' work was committed",
        list(found),
        list(expected)
    ))
    .into())
}

/// [`check_read_back`]'s comparison of history's rows, as the next step's begin read
/// them: a deferred trigger that forged or erased a history row at the step's `COMMIT`
/// is named here, before the next step runs, rather than blamed on that step's SQL by its
/// record.
///
/// # Errors
/// [`TamperedAfterCommit`](crate::db::TamperedAfterCommit) naming both counts.
fn same_history(found: i64, expected: i64, what: &str) -> anyhow::Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(crate::db::TamperedAfterCommit(format!(
        "after {what} committed, wasmig_history holds {found} rows where the steps recorded {expected} (something changed it at or after COMMIT, such as a deferred trigger of a migration's table); the steps' work was committed"
    ))
    .into())
}

/// The read-back a committed step leaves to the next (see [`read_back`]): the heads it
/// recorded, and what committed, for the message.
struct ReadBack {
    heads: Vec<String>,
    /// The history rows the steps left, compared when the next step's begin read them.
    history: i64,
    what: String,
}

/// Checks the step before from what `session` read as it began, when it did (no round trip
/// of its own): the lock still held (else [`LockLostAfter`](crate::db::LockLostAfter)) and
/// the heads it recorded; otherwise reads them back as [`read_back`] does. Rolls `session`
/// back when the check fails.
async fn check_read_back(
    db: &dyn Database,
    session: Box<dyn Session>,
    check: &ReadBack,
) -> anyhow::Result<Box<dyn Session>> {
    let checked = match session.begun() {
        // The heads first: what ended the lock's session may have changed them as the step
        // committed (see `lock_lost_after`).
        Some(begun) if !begun.lock_held => {
            match same_heads(&begun.heads, &check.heads, &check.what) {
                Err(tampered) => {
                    Err(tampered.context("the session holding the migration lock ended"))
                }
                Ok(()) => Err(crate::db::LockLostAfter.into()),
            }
        }
        Some(begun) => same_heads(&begun.heads, &check.heads, &check.what)
            .and_then(|()| same_history(begun.history, check.history, &check.what)),
        None => read_back(db, &check.heads, &check.what).await,
    };
    match checked {
        Ok(()) => Ok(session),
        Err(e) => {
            let _ = session.rollback().await;
            Err(e)
        }
    }
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
    sandbox: Option<std::sync::Arc<Sandbox>>,
    build_dir: std::path::PathBuf,
    /// wasmig's tables as the run found them under the lock.
    start: Expected,
}

impl Run<'_> {
    /// What wasmig's tables hold before the step at `index` records itself: the start with
    /// the steps before it applied.
    fn expected_before(&self, index: usize) -> Expected {
        self.steps[..index]
            .iter()
            .fold(self.start.clone(), |e, step| {
                e.after(&step.remove_heads, &step.add_heads)
            })
    }

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
                    direction: c.direction,
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
        check_capabilities(self.project, revision)?;
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
        let mode = revision.manifest.transaction_for(step.action);
        if self.options.atomic
            && let Some(why) = self.runs_per_statement(step)
        {
            return Err(ConfigError::new(format!(
                "revision {}: --atomic runs every step in one transaction, but its script has DDL, which runs statement by statement here ({why}); run without --atomic, or up to the revision before it first",
                step.revision,
            ))
            .into());
        }
        if self.options.atomic && mode != TransactionMode::PerMigration {
            return Err(ConfigError::new(format!(
                "revision {}: --atomic runs every step in one transaction, but {} sets `{} = \"{}\"`; run without --atomic, or {} first",
                step.revision,
                revision.dir.join(revision::MANIFEST).display(),
                revision.manifest.transaction_key(step.action),
                mode.as_str(),
                match step.action {
                    Direction::Upgrade => "up to the revision before it".to_owned(),
                    Direction::Downgrade => format!("down to {} (leaving it applied)", step.revision),
                }
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

    /// How `step`'s revision runs: as its manifest says, or statement by statement under
    /// `execution` (see [`PerStatement`]).
    fn transaction_mode(&self, step: &Step) -> TransactionMode {
        if self.runs_per_statement(step).is_some() {
            return TransactionMode::None;
        }
        find(self.revisions, &step.revision)
            .manifest
            .transaction_for(step.action)
    }

    /// Why `step`'s revision runs statement by statement though its manifest asks for a
    /// transaction, if it does.
    fn runs_per_statement(&self, step: &Step) -> Option<&str> {
        self.options
            .per_statement
            .as_ref()
            .filter(|p| p.revisions.contains(&step.revision))
            .map(|p| p.why.as_str())
    }

    /// The checkpoint a step resumes from, if an earlier run left one.
    fn resume_of(&self, step: &Step) -> Option<&Checkpoint> {
        self.checkpoints
            .iter()
            .find(|c| c.revision == step.revision && c.direction == step.action)
    }

    /// The sandbox, when any step runs a component, with every new component being compiled
    /// on every core in the background, in step order, while the first steps run (rather
    /// than one after another as their steps come).
    fn start_sandbox(&self) -> anyhow::Result<Option<std::sync::Arc<Sandbox>>> {
        let components: Vec<&Revision> = self
            .steps
            .iter()
            .map(|s| find(self.revisions, &s.revision))
            .filter(|r| is_component(r))
            .collect();
        if components.is_empty() {
            return Ok(None);
        }
        // A fleet's: each component is compiled by the first target that runs it.
        if let Some(shared) = &self.options.sandbox {
            return Ok(Some(std::sync::Arc::clone(shared)));
        }
        let sandbox = new_sandbox(self.project, self.options.use_cache)?;
        let bytes: Vec<Vec<u8>> = components
            .into_iter()
            .filter_map(|r| match revision::read_artifact(r, &self.build_dir) {
                Ok(Artifact::Component { bytes, .. }) => Some(bytes),
                Ok(Artifact::Sql { .. }) | Err(_) => None,
            })
            .collect();
        sandbox.precompile(bytes);
        Ok(Some(std::sync::Arc::new(sandbox)))
    }

    /// Runs every step; with `--atomic`, in one transaction handed from step to step.
    async fn all_steps(&self) -> anyhow::Result<Vec<StepReport>> {
        // With --atomic, every artifact is read and every component compiled before the
        // run's one transaction begins: nothing slow may happen while it holds its locks.
        let mut prepared: Vec<Option<Prepared>> = Vec::new();
        if self.options.atomic || self.options.dry_run {
            for step in self.steps {
                prepared.push(Some(joined(self.prepare_in_background(step)).await?));
            }
        }
        let mut reports = Vec::with_capacity(self.steps.len());
        // With --atomic, the one transaction of the run, between steps.
        let mut held: Option<Box<dyn Session>> = None;
        // The read-back of the step before, left to the next step's first message.
        let mut pending: Option<ReadBack> = None;
        // The next step's artifact, being read (and its component loaded) on a blocking
        // thread while this step runs.
        let mut next: Option<tokio::task::JoinHandle<anyhow::Result<Prepared>>> = None;
        for (index, step) in self.steps.iter().enumerate() {
            // Read and compiled before any transaction begins (with --atomic, all of them
            // were, before the run's one transaction began; otherwise while the step before
            // ran, and its error, if any, is reported here, in step order).
            let ready = match prepared.get_mut(index).and_then(Option::take) {
                Some(p) => p,
                None => {
                    let handle = next
                        .take()
                        .unwrap_or_else(|| self.prepare_in_background(step));
                    joined(handle).await?
                }
            };
            if prepared.is_empty()
                && let Some(following) = self.steps.get(index + 1)
            {
                next = Some(self.prepare_in_background(following));
            }
            let at = At {
                index,
                step,
                completed: &reports,
                next: next.as_ref(),
            };
            // A step of its own in one transaction checks the step before as it begins.
            let deferred = self.transaction_mode(step) == TransactionMode::PerMigration;
            if let Some(check) = pending.take_if(|_| !deferred) {
                read_back(self.db, &check.heads, &check.what).await?;
            }
            // Its transaction begun here, before the step says it is applying: the step before
            // is checked from what the begin read.
            let mut session = held.take();
            if let Some(check) = pending.take() {
                let begun = self
                    .db
                    .begin()
                    .await
                    .map_err(|e| self.fail(&at, Failure::Host(e)))?;
                session = Some(check_read_back(self.db, begun, &check).await?);
            }
            let (report, session) = self.one_step_retrying(&at, ready, session).await?;
            held = session;
            reports.push(report);
            // Committed (not an --atomic step handing its transaction on), and not the last
            // (the run reads that one back): the next step starts from what was recorded.
            if held.is_none() && index + 1 < self.steps.len() {
                let expected = self.expected_before(index + 1);
                pending = Some(ReadBack {
                    heads: expected.heads,
                    history: expected.history,
                    what: format!("step {}", step.revision),
                });
            }
        }
        // A dry run's one transaction ends here, undone.
        if let Some(session) = held {
            session.rollback().await?;
            tracing::info!(
                "dry run: the {} step(s) ran in one transaction, now rolled back; nothing was recorded",
                reports.len()
            );
        }
        Ok(reports)
    }

    /// Whether the run's next use of the database after `at`'s commit is the next step's
    /// `begin` ([`Session::begin_next_in_commit`]): that step runs in a transaction of its
    /// own, which `all_steps` begins first thing, and its artifact is read already, so
    /// that a transaction begun in the commit does not wait open while a component
    /// compiles. (When that read failed, the run stops before the step, and the run's
    /// flush undoes the transaction.)
    fn begins_next_at_once(&self, at: &At<'_>) -> bool {
        !self.options.atomic
            && !self.options.dry_run
            && self
                .steps
                .get(at.index + 1)
                .is_some_and(|next| self.transaction_mode(next) == TransactionMode::PerMigration)
            && at.next.is_some_and(tokio::task::JoinHandle::is_finished)
    }

    /// [`prepare`] on a blocking thread, never on the runtime's (one) thread: compiling a
    /// component can take seconds, while the relay and a lease's renewal must go on. The
    /// next step's is started while the step before waits on the database: nothing it does
    /// depends on that step (a step cannot change the project's files), and its result
    /// (an error included) is taken in step order.
    fn prepare_in_background(
        &self,
        step: &Step,
    ) -> tokio::task::JoinHandle<anyhow::Result<Prepared>> {
        let revision = find(self.revisions, &step.revision).clone();
        let step = step.clone();
        let build_dir = self.build_dir.clone();
        let sandbox = self.sandbox.clone();
        let memo = self.options.memo.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            prepare(
                &revision,
                &step,
                &build_dir,
                sandbox.as_deref(),
                memo.as_deref(),
            )
        })
    }

    /// [`Runner::one_step`], tried again while it fails waiting for a lock (55P03: a
    /// statement ran out of `lock_timeout`, say behind a long transaction of the
    /// application's) and the revision's `lock_timeout_retries` allow, after a back-off with
    /// jitter. Only a step in one transaction of its own, which rolled back whole: not a
    /// dry run's or an `--atomic` run's (their transaction holds the earlier steps), not a
    /// `none` script (its earlier statements committed) nor a batched step (its batches
    /// resume by themselves on the next run).
    async fn one_step_retrying(
        &self,
        at: &At<'_>,
        mut ready: Prepared,
        mut held: Option<Box<dyn Session>>,
    ) -> anyhow::Result<(StepReport, Option<Box<dyn Session>>)> {
        let revision = find(self.revisions, &at.step.revision);
        let retries = if self.options.atomic
            || self.options.dry_run
            || self.transaction_mode(at.step) != TransactionMode::PerMigration
        {
            0
        } else {
            timeouts(self.project, revision)?
                .lock_timeout_retries
                .unwrap_or(0)
        };
        let mut retry = 0;
        loop {
            match self.one_step(at, ready, held).await {
                Err(e) if retry < retries && waited_for_a_lock(&e) => {
                    retry += 1;
                    let pause = backoff(retry);
                    tracing::warn!(
                        "{}: a statement gave up waiting for a lock (55P03, lock_timeout) and the step was rolled back; trying again in {} ms (retry {retry} of {retries})",
                        at.step.revision,
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                    ready = joined(self.prepare_in_background(at.step)).await?;
                    held = None;
                }
                other => return other,
            }
        }
    }

    /// Runs one step by its transaction mode (`held`: a transaction already begun for it);
    /// returns its report and, with `--atomic` before the last step, the transaction to hand
    /// on.
    async fn one_step(
        &self,
        at: &At<'_>,
        ready: Prepared,
        held: Option<Box<dyn Session>>,
    ) -> anyhow::Result<(StepReport, Option<Box<dyn Session>>)> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        let resume = self.resume_of(step).cloned();
        let verb = if self.options.dry_run {
            match step.action {
                Direction::Upgrade => "dry run: applying",
                Direction::Downgrade => "dry run: reverting",
            }
        } else {
            verb(step.action)
        };
        if revision.stored.is_some() {
            tracing::info!(
                "{} {} from the copy stored in the database (its files are not in this project)",
                verb,
                step.revision
            );
        } else {
            // The message is the author's text: one visible line.
            tracing::info!(
                "{} {} ({})",
                verb,
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
        match self.transaction_mode(step) {
            // A dry run calls a batched revision in its one transaction, for the first
            // batches only (`--batches`), committing none.
            TransactionMode::Batched if !self.options.dry_run => {
                Ok((self.batched_step(at, ready, resume).await?, None))
            }
            TransactionMode::Batched => self.transactional_step(at, ready, resume, held).await,
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
        let partitions = revision
            .manifest
            .partitions
            .as_ref()
            .filter(|_| step.action == Direction::Upgrade);
        let in_partitions = resume
            .as_ref()
            .is_some_and(|c| crate::db::Partition::parts_of(&c.checkpoint).is_some());
        // A walk an earlier run began as one (before [partitions] was added) finishes as
        // one: its checkpoint is not a range's.
        let partitions = match (partitions, &resume) {
            (Some(_), Some(c)) if !in_partitions => {
                tracing::warn!(
                    "{}: an earlier run began it as one walk (batch {} committed), so it finishes as one; [partitions] applies to a walk begun afresh",
                    step.revision,
                    c.batches
                );
                None
            }
            (p, _) => p,
        };
        if in_partitions || partitions.is_some() {
            if self.db.dialect() == Dialect::Postgres {
                return self
                    .partitioned_step(at, &ready, (loaded, sandbox), resume, partitions)
                    .await;
            }
            let why = match self.db.dialect() {
                Dialect::Sqlite => "SQLite has one writer at a time",
                _ => "partitioned walks run on PostgreSQL only so far",
            };
            tracing::info!(
                "{}: {why}, so its [partitions] run as one walk",
                step.revision
            );
        }
        let started = Instant::now();
        let batched = Batched {
            step,
            checksum: &ready.checksum,
            to_store: ready.to_store.as_ref(),
            limits: limits(self.project, revision)?,
            timeouts: timeouts(self.project, revision)?,
            resume: resume.clone(),
            expected: self.expected_before(at.index),
            policy: policy(self.project, &self.options, revision),
            journal: self.options.journal.clone(),
            throttle: self.project.config.throttle,
        };
        let progress = Progress::new(step.revision.clone());
        let batches = run_batched(self.db, sandbox, loaded, batched, progress)
            .await
            .map_err(|f| self.fail(at, f))?;
        Ok(batched_report(
            step,
            loaded,
            started,
            batches,
            resume.as_ref(),
        ))
    }

    /// A batched step split into partitions (PostgreSQL): created unless an earlier run
    /// did, worked by `--workers` workers here (and by any other run that joins), then
    /// recorded once every partition is done.
    async fn partitioned_step(
        &self,
        at: &At<'_>,
        ready: &Prepared,
        (loaded, sandbox): (&crate::sandbox::Loaded, &std::sync::Arc<Sandbox>),
        resume: Option<Checkpoint>,
        partitions: Option<&crate::revision::Partitions>,
    ) -> anyhow::Result<StepReport> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        let started = Instant::now();
        let work = partitioned::Work {
            db: self.db,
            sandbox,
            loaded,
            step,
            limits: limits(self.project, revision)?,
            timeouts: timeouts(self.project, revision)?,
            policy: policy(self.project, &self.options, revision),
            journal: self.options.journal.clone(),
            throttle: self.project.config.throttle,
            lease: self.project.config.lock_settings()?.lease,
            owner: partitioned::owner_name(),
        };
        let expected = self.expected_before(at.index);
        let batched = BatchedStep {
            step,
            checksum: &ready.checksum,
            to_store: ready.to_store.as_ref(),
            started_at: resume.as_ref().map_or_else(Utc::now, |c| c.started_at),
            expected: &expected,
        };
        let in_partitions = resume
            .as_ref()
            .is_some_and(|c| crate::db::Partition::parts_of(&c.checkpoint).is_some());
        let mut created = 0;
        if !in_partitions {
            let Some(p) = partitions else {
                unreachable!("a step not yet in partitions is partitioned by its manifest")
            };
            created = partitioned::create(&work, &batched, p.count, &p.bounds)
                .await
                .map_err(|f| self.fail(at, f))? as i64;
        }
        let workers = self.options.workers.max(1);
        tracing::info!(
            "{}: running its partitions with {workers} worker(s) here; other `wasmig up` runs on this database join in",
            step.revision
        );
        let parts = match resume
            .as_ref()
            .and_then(|c| crate::db::Partition::parts_of(&c.checkpoint))
        {
            Some(parts) => parts,
            None => created,
        };
        let mut batches = 0;
        loop {
            batches += work.run(workers).await.map_err(|f| self.fail(at, f))?;
            if partitioned::record(&work, &batched, parts)
                .await
                .map_err(|f| self.fail(at, f))?
            {
                break;
            }
        }
        Ok(batched_report(
            step,
            loaded,
            started,
            batches,
            resume.as_ref(),
        ))
    }

    /// A `transaction = "none"` SQL step (or one with DDL under `execution =
    /// "per-statement"`): statement by statement, then recorded.
    async fn autocommitted_step(&self, at: &At<'_>, ready: Prepared) -> anyhow::Result<StepReport> {
        let step = at.step;
        let revision = find(self.revisions, &step.revision);
        if let Some(why) = self.runs_per_statement(step) {
            tracing::info!(
                "{}: its script has DDL, which runs statement by statement here ({why}): each statement commits on its own, and the revision is marked failed until it is recorded",
                step.revision
            );
        }
        let Artifact::Sql { up, down } = &ready.artifact else {
            unreachable!("manifests refuse `transaction = \"none\"` for components")
        };
        let script = if step.action == Direction::Upgrade {
            up
        } else {
            down
        };
        let started = Instant::now();
        let mut step_timeouts = timeouts(self.project, revision)?;
        // The step's deadline (with the operator's ceiling) bounds each statement of the
        // script on the server: a none script has no guest for wasmig's own deadline to
        // stop, and no transaction to cancel.
        let deadline = limits(self.project, revision)?.timeout.as_secs_f64();
        step_timeouts.statement_timeout_secs = Some(
            step_timeouts
                .statement_timeout_secs
                .map_or(deadline, |s| s.min(deadline)),
        );
        let ran = run_autocommitted(
            self.db,
            step,
            script,
            &ready.checksum,
            ready.to_store.as_ref(),
            super::autocommit::How {
                timeouts: &step_timeouts,
                policy: policy(self.project, &self.options, revision),
                per_statement: self.runs_per_statement(step),
                by_downgrade_key: revision.manifest.transaction_key(step.action)
                    == "downgrade_transaction",
            },
        )
        .await;
        // Each statement committed on its own: there is no transaction left to count.
        if let Some(journal) = &self.options.journal {
            journal.record(&script_entry(
                &step.revision,
                step.action.as_str(),
                script,
                ms_since(started),
                ran.as_ref().err().map(ToString::to_string),
            ));
        }
        ran.map_err(|f| self.fail(at, f))?;
        Ok(StepReport {
            observed: None,
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
    /// transaction: `held` (the run's, with `--atomic`, or one the run began to check the step
    /// before), or a new one.
    async fn transactional_step(
        &self,
        at: &At<'_>,
        mut ready: Prepared,
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
        // Every step's statements, the held session of an --atomic run's included.
        session.set_policy(policy(self.project, &self.options, revision));
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
        let dry_run = self.options.dry_run;
        let before = if dry_run {
            match session.observe().await {
                Ok(o) => Some(o),
                Err(e) => {
                    let _ = session.rollback().await;
                    return Err(self.fail(at, Failure::Host(e)).into());
                }
            }
        } else {
            None
        };
        let (session, outcome, calls) = self
            .work(at, &ready, session, limits, resume.as_ref())
            .await?;
        if let Some(before) = before {
            let atomic = self.options.atomic;
            let dry = Dry {
                atomic,
                expected: &self.start,
                before: &before,
            };
            let (session, observed) = dry_step(step, session, outcome, &ready, dry)
                .await
                .map_err(|f| self.fail(at, f))?;
            let report = StepReport {
                resumed_after: None,
                observed: Some(observed),
                ..ran_report(step, &ready, started, calls)
            };
            return Ok((report, Some(session)));
        }
        // The guest made its last call: its compiled code goes before the record, which
        // for an upgrade binds the component's bytes (issue 18: the Python guest's peak).
        if let Some(loaded) = &mut ready.loaded {
            loaded.release();
        }
        let last = at.index + 1 == self.steps.len();
        let keep = atomic && !last;
        let settled = Settle {
            ready: &ready,
            started_at,
            limits,
            resumed: resume.is_some(),
            keep,
            expected: self.expected_before(at.index),
        };
        let session = settle(step, session, outcome, settled)
            .await
            .map_err(|f| self.fail(at, f))?;
        let held = if keep {
            Some(session)
        } else {
            let mut session = session;
            // Another step follows: its commit writes this one to disk too (or the run's
            // flush does, when it ends without one).
            if !last {
                session.commit_lazily();
            }
            if self.begins_next_at_once(at) {
                session.begin_next_in_commit();
            }
            commit(session, limits.timeout)
                .await
                .map_err(|f| self.fail(at, f))?;
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
            resumed_after: resume.map(|c| c.batches),
            ..ran_report(step, &ready, started, calls)
        };
        Ok((report, held))
    }

    /// The step's work in its transaction: the SQL script under the deadline, or every
    /// guest call. Returns the session, the outcome and the number of guest calls.
    async fn work(
        &self,
        at: &At<'_>,
        ready: &Prepared,
        mut session: Box<dyn Session>,
        limits: Limits,
        resume: Option<&Checkpoint>,
    ) -> Result<(Box<dyn Session>, Result<(), Failure>, Option<u64>), MigrationError> {
        let step = at.step;
        Ok(match (&ready.artifact, &ready.loaded, &self.sandbox) {
            (Artifact::Sql { up, down }, _, _) => {
                let script = if step.action == Direction::Upgrade {
                    up
                } else {
                    down
                };
                // A script honours the step's deadline as a guest does: its statement is
                // cancelled, then its connection ended.
                let canceller = session.canceller();
                let deadline = limits.deadline_from_now();
                let journal = self.options.journal.as_ref();
                let before = match journal {
                    Some(_) => observe_by(&mut *session, deadline).await,
                    None => None,
                };
                let started = Instant::now();
                // With a journal, the rows of each statement too (the same one message).
                // Else, outside a dry run (which observes the step before it rolls it
                // back), the record follows at once: the backend may send what it needs
                // first with the script.
                let dry_run = self.options.dry_run;
                let run = async {
                    match journal {
                        Some(_) => session.batch_counted(script).await,
                        None if dry_run => session.batch(script).await.map(|()| Vec::new()),
                        None => session.batch_then_record(script).await.map(|()| Vec::new()),
                    }
                };
                let (outcome, counts) =
                    match crate::sandbox::against_deadline(run, deadline, &*canceller).await {
                        Ok(Ok(counts)) => (Ok(()), counts),
                        Ok(Err(e)) => (Err(Failure::from_sql(e)), Vec::new()),
                        Err(_) => (Err(Failure::Deadline(limits.timeout)), Vec::new()),
                    };
                if let Some(journal) = journal {
                    let ms = ms_since(started);
                    let after = observe_by(&mut *session, deadline).await;
                    journal.record(&Entry {
                        statements: per_statement(script, self.db.dialect(), &counts),
                        observed: after.zip(before).map(|(a, b)| a.since(&b)),
                        ..script_entry(
                            &step.revision,
                            step.action.as_str(),
                            script,
                            ms,
                            outcome.as_ref().err().map(ToString::to_string),
                        )
                    });
                }
                (session, outcome, None)
            }
            (Artifact::Component { .. }, Some(loaded), Some(sandbox)) => {
                let called = call_until_done(
                    sandbox,
                    loaded,
                    step,
                    session,
                    limits,
                    resume,
                    Calls {
                        journal: self.options.journal.as_ref(),
                        rate: self.project.config.throttle.row_rate(),
                        max_calls: (self.options.dry_run
                            && find(self.revisions, &step.revision).manifest.transaction
                                == TransactionMode::Batched)
                            .then_some(self.options.dry_run_batches),
                    },
                )
                .await
                .map_err(|f| self.fail(at, f))?;
                (called.0, called.1, Some(called.2))
            }
            _ => unreachable!("components are loaded above"),
        })
    }

    /// The error for a failed step, naming the steps this run committed before it.
    fn fail(&self, at: &At<'_>, failure: Failure) -> MigrationError {
        let atomic = self.options.atomic;
        let ended = matches!(failure, Failure::TransactionEnded { .. });
        if atomic && at.index > 0 && !ended {
            tracing::warn!(
                "--atomic: the {} earlier step(s) of this run were rolled back with it",
                at.index
            );
        } else if atomic && at.index > 0 {
            tracing::warn!(
                "--atomic: the {} earlier step(s) of this run were in the transaction the migration ended, so they may have been committed with their records: compare the version table with the database",
                at.index
            );
        }
        MigrationError {
            revision: at.step.revision.clone(),
            direction: at.step.action,
            failure,
            // With --atomic nothing was committed: the whole run rolls back; a dry run
            // commits nothing either.
            completed: if atomic || self.options.dry_run {
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
    /// The next step's artifact being read ([`Run::prepare_in_background`]), if any.
    next: Option<&'a tokio::task::JoinHandle<anyhow::Result<Prepared>>>,
}

/// Calls a component's export in the step's one transaction until it asks for no further
/// batch, under one deadline for the step. Returns the session, the outcome and the number
/// of calls.
///
/// # Errors
/// [`Failure::Host`] when the guest kept the session (nothing to roll back through).
/// Whether a step failed because a statement of the migration gave up waiting for a lock
/// (SQLSTATE 55P03, `lock_not_available`): a SQL script's statement, or one a guest left
/// unhandled.
fn waited_for_a_lock(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<MigrationError>()
        .is_some_and(|e| match &e.failure {
            Failure::Sql(sql) | Failure::UnhandledSql(sql) => sql.code == "55P03",
            _ => false,
        })
}

/// The pause before retry `n` (from 1) of a step that waited too long for a lock: 0.5 s
/// doubling up to 30 s, each a random point between half and all of it, so runners that
/// queued behind one lock do not all come back at once.
fn backoff(n: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let full = Duration::from_millis(500)
        .saturating_mul(1 << n.saturating_sub(1).min(6))
        .min(Duration::from_secs(30));
    // A random fraction from the hasher's per-process random keys (no extra dependency).
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(n);
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    full.mul_f64(0.5 + fraction / 2.0)
}

async fn call_until_done(
    sandbox: &Sandbox,
    loaded: &Loaded,
    step: &Step,
    mut session: Box<dyn Session>,
    limits: Limits,
    resume: Option<&Checkpoint>,
    calls: Calls<'_>,
) -> Result<(Box<dyn Session>, Result<(), Failure>, u64), Failure> {
    let Calls {
        journal,
        max_calls,
        rate,
    } = calls;
    let journal = journal.cloned();
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
                    journal: journal.clone(),
                    rate: rate.clone(),
                },
            )
            .await;
        progress = returned.progress;
        session = returned
            .session
            .ok_or_else(|| Failure::Host(anyhow::anyhow!("the guest kept the session")))?;
        if let (Some(rate), Err(_) | Ok(None)) = (&rate, &returned.outcome) {
            rate.report(&step.revision);
        }
        match returned.outcome {
            Err(failure) => return Ok((session, Err(failure), n)),
            Ok(None) => return Ok((session, Ok(()), n)),
            Ok(Some(next)) if checkpoint.as_ref() == Some(&next) => {
                return Ok((session, Err(repeated_checkpoint(n, &next)), n));
            }
            Ok(Some(_)) if max_calls.is_some_and(|max| n >= max) => {
                tracing::info!(
                    "{}: dry run stopped after {n} batch(es) (--batches); the rest of the backfill was not run",
                    step.revision
                );
                return Ok((session, Ok(()), n));
            }
            Ok(Some(next)) => checkpoint = Some(next),
        }
    }
}

/// What [`settle`] needs of a step besides its session.
struct Settle<'a> {
    ready: &'a Prepared,
    started_at: chrono::DateTime<Utc>,
    limits: Limits,
    resumed: bool,
    /// Whether the transaction goes on to the next step (`--atomic`, not the last).
    keep: bool,
    /// What wasmig's tables must hold before the step records itself.
    expected: Expected,
}

/// The report of a `per-migration` step that ran (in a dry run or for real).
fn ran_report(step: &Step, ready: &Prepared, started: Instant, calls: Option<u64>) -> StepReport {
    StepReport {
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
        resumed_after: None,
        observed: None,
    }
}

/// How [`call_until_done`] calls: the run's journal, and the most calls a dry run makes of
/// a batched revision.
struct Calls<'a> {
    journal: Option<&'a std::sync::Arc<crate::sandbox::journal::Journal>>,
    max_calls: Option<u64>,
    /// The step's row rate (`[throttle] max_rows_per_sec`).
    rate: Option<std::sync::Arc<crate::sandbox::throttle::RowRate>>,
}

/// A script's statements beside the rows each affected, when the server gave one count per
/// statement as wasmig splits them (else none: a pairing that may be off is not shown).
fn per_statement(script: &str, dialect: Dialect, counts: &[u64]) -> Vec<serde_json::Value> {
    let Ok(statements) = crate::db::split_statements(script, dialect) else {
        return Vec::new();
    };
    if statements.len() != counts.len() {
        return Vec::new();
    }
    statements
        .iter()
        .zip(counts)
        .map(|(sql, rows)| serde_json::json!({ "sql": sql.trim(), "rows": rows }))
        .collect()
}

/// What [`dry_step`] compares a dry run's step with.
struct Dry<'a> {
    /// An `--atomic` dry run (its temporary objects are refused, not dropped).
    atomic: bool,
    /// wasmig's tables as the run began: a dry run records nothing.
    expected: &'a Expected,
    /// What the server counted before the step.
    before: &'a crate::db::Observed,
}

/// After a dry run's step: rolls back a failure as [`settle`] does, else checks what the
/// real run's record would (the step's deferred constraints, wasmig's tables, their rows
/// against `expected`: the run's start, since nothing is recorded), observes what the step
/// did and resets the session for the next step; records nothing.
async fn dry_step(
    step: &Step,
    mut session: Box<dyn Session>,
    outcome: Result<(), Failure>,
    ready: &Prepared,
    dry: Dry<'_>,
) -> Result<(Box<dyn Session>, crate::db::Observed), Failure> {
    let Dry {
        atomic,
        expected,
        before,
    } = dry;
    let guest = ready.loaded.is_some();
    if let Err(failure) = outcome {
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    // A step that ended the transaction (past the refusal of transaction control) may have
    // committed its work: the dry run must say so, not report a rollback.
    if let Err(failure) = check_intact(&mut session, guest).await {
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    // What a real run's COMMIT of this step would check and fire (deferred constraints and
    // constraint triggers), now: the dry run never commits.
    if let Err(e) = session.check_deferred().await {
        return Err(roll_back(session, &step.revision, Failure::Sql(Box::new(e)), guest).await);
    }
    // What the real run's record would refuse before writing anything (wasmig's tables
    // changed, rows of them written, the migration's role left, the lock lost): the same
    // guard, in the same transaction, so the dry run fails as that run would rather than
    // say "would apply".
    if let Err(e) = session
        .guard(
            &format!("checking wasmig's tables after {}", step.revision),
            false,
        )
        .await
    {
        let failure = super::wasmigs_write_failed(e);
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    // And what the record would find written: the heads, history's rows (which a forged
    // row changes without the guard's counts seeing it), as the run began them (a dry run
    // records nothing).
    let unwritten = {
        let (store, d) = session.books();
        store.check_unwritten(d, &step.revision, expected).await
    };
    if let Err(e) = unwritten {
        let failure = super::wasmigs_write_failed(e);
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    let observed = match session.observe().await {
        Ok(o) => o.since(before),
        Err(e) => return Err(roll_back(session, &step.revision, Failure::Host(e), guest).await),
    };
    // Rows of wasmig's tables the step wrote, as the server counted them (PostgreSQL):
    // the dry run writes none, so any is the step's, which the real run's record refuses
    // (a head rewritten to the value it had, say, which the comparison above cannot see).
    let written = {
        let (store, _) = session.books();
        store.own_rows_written(&observed)
    };
    if let Some(found) = written {
        let failure = Failure::Host(
            crate::db::RowsWritten {
                revision: step.revision.clone(),
                found: format!("{found} (a dry run writes none of wasmig's tables)"),
            }
            .into(),
        );
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    // Steps of their own transactions lose their temporary objects between steps (at
    // commit, or in the reset after it); a dry run of them, in one transaction, drops
    // them here as that would. Under --atomic the reset refuses them, as the real run's.
    let discarded = if atomic {
        Ok(())
    } else {
        session.discard_temp().await
    };
    let reset = match discarded {
        Ok(()) => session.reset_session().await,
        Err(e) => Err(e),
    };
    if let Err(e) = reset {
        let failure = Failure::Sql(Box::new(e));
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    Ok((session, observed))
}

/// After a step's work: rolls back a failure (saying how the transaction really ended),
/// else records the step within the step's time limit (wasmig's own statements may wait
/// on a lock, or on a server that stopped answering), and, when the transaction goes on to
/// the next step of an `--atomic` run, resets the session (state that cannot be reset
/// fails this step). Returns the session, ready to commit or to hold.
async fn settle(
    step: &Step,
    mut session: Box<dyn Session>,
    outcome: Result<(), Failure>,
    s: Settle<'_>,
) -> Result<Box<dyn Session>, Failure> {
    let guest = s.ready.loaded.is_some();
    if let Err(failure) = outcome {
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    let recorded = tokio::time::timeout(
        s.limits.timeout,
        finish(
            &mut session,
            &Finishing {
                step,
                checksum: &s.ready.checksum,
                started_at: s.started_at,
                to_store: s.ready.to_store.as_ref(),
                had_checkpoint: s.resumed,
                expected: &s.expected,
            },
            guest,
        ),
    )
    .await
    .unwrap_or(Err(Failure::Deadline(s.limits.timeout)));
    if let Err(failure) = recorded {
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    if s.keep
        && let Err(e) = session.reset_session().await
    {
        let failure = Failure::Sql(Box::new(e));
        return Err(roll_back(session, &step.revision, failure, guest).await);
    }
    Ok(session)
}

/// The result of [`Run::prepare_in_background`]'s task.
async fn joined(
    handle: tokio::task::JoinHandle<anyhow::Result<Prepared>>,
) -> anyhow::Result<Prepared> {
    crate::artifact::joined(handle, "reading a step's artifact").await
}

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
    Checkpoint, Database, Event, Expected, FailedMark, FinishedStep, Policy, ScriptFailure,
    Session, StepRecord, StoredArtifact,
};
use crate::error::{ConfigError, Failure, MigrationError, ResumeModified};
use crate::graph::{Direction, Step};
use crate::progress::Progress;
use crate::revision::{self, Artifact, Revision, TransactionMode};
use crate::sandbox::{CacheStatus, Call, Limits, Loaded, Sandbox};

mod autocommit;
mod batched;
mod partitioned;
mod steps;

use self::autocommit::run_autocommitted;
use self::batched::{Batched, BatchedStep, run_batched};
pub use self::partitioned::join as join_partitions;
pub use self::steps::run;

/// How long rolling back a failed step may take before its connection is ended instead.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(15);

/// How long rolling back a step stopped by its deadline may take: its statement was already
/// cancelled and, if that did not stop it, its connection ended, so a rollback that takes
/// longer is waiting on a server that stopped answering.
const ROLLBACK_AFTER_DEADLINE: Duration = Duration::from_secs(2);

/// How long asking the server to end a session may take.
const TERMINATE_WAIT: Duration = Duration::from_secs(2);

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
    /// `--dry-run`: what the server counted of the step's work (rows, locks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<crate::db::Observed>,
}

/// Options for a run.
#[derive(Clone)]
pub struct RunOptions {
    /// Use the compile cache.
    pub use_cache: bool,
    /// Run every step in one transaction: all of them commit, or none.
    pub atomic: bool,
    /// Resume a batched step from its checkpoint even if its artifact changed since its
    /// first batch (warns).
    pub allow_modified: bool,
    /// The project is untrusted: migration SQL is held to the untrusted SQL policy.
    pub untrusted: bool,
    /// Run every step in one transaction that is rolled back at the end, recording
    /// nothing, and observe what each step did (`up --dry-run`); the steps must all be
    /// `per-migration` ones.
    pub dry_run: bool,
    /// A dry run: how many batches of a batched revision it runs (at least 1).
    pub dry_run_batches: u64,
    /// Where every SQL call of every step is written (`up --journal FILE`).
    pub journal: Option<std::sync::Arc<crate::sandbox::journal::Journal>>,
    /// A sandbox shared with other runs (a fleet's targets), which compiles each component
    /// once for all of them; `None`: the run makes its own.
    pub sandbox: Option<std::sync::Arc<Sandbox>>,
    /// How many workers run the partitions of a partitioned batched step (at least 1).
    pub workers: u32,
    /// SQL revisions of this run whose script runs statement by statement under
    /// `execution` (see [`PerStatement`]); `None`: every step as its manifest says.
    pub per_statement: Option<PerStatement>,
    /// The checksum memo ([`crate::memo`]): each step records what its files hashed to, so
    /// that the next run need not read them again; `None`: no memo.
    pub memo: Option<std::sync::Arc<std::sync::Mutex<crate::memo::Memo>>>,
}

/// SQL revisions run as `transaction = "none"` is, though their manifest asks for one
/// transaction: their script has DDL, and `execution` says DDL runs statement by
/// statement (set so, or `auto` on an engine whose DDL is not transactional).
#[derive(Debug, Clone, Default)]
pub struct PerStatement {
    /// Their ids.
    pub revisions: std::collections::BTreeSet<String>,
    /// Why, for messages: `WASMIG_EXECUTION=per-statement`, or `the server is CockroachDB…`.
    pub why: String,
}

impl RunOptions {
    /// What every session a migration's SQL runs in is held to: the untrusted SQL policy
    /// when the project is untrusted.
    pub fn policy(&self) -> Policy {
        Policy::new(self.untrusted)
    }
}

/// What `revision`'s statements are held to: the run's policy, and the capabilities the
/// revision declares and the operator allows.
fn policy(project: &Project, options: &RunOptions, revision: &Revision) -> Policy {
    options.policy().with_capabilities(
        revision.id(),
        revision.manifest.declared_capabilities(),
        project.ceilings().allowed_capabilities,
    )
}

/// Refuses a revision that declares a capability the operator does not allow
/// (`WASMIG_ALLOWED_CAPABILITIES`), before any step runs.
///
/// # Errors
/// [`ConfigError`] naming the revision, its manifest and the capabilities.
fn check_capabilities(project: &Project, revision: &Revision) -> Result<(), ConfigError> {
    let (Some(declared), Some(allowed)) = (
        revision.manifest.declared_capabilities(),
        project.ceilings().allowed_capabilities,
    ) else {
        return Ok(());
    };
    let beyond = declared.beyond(allowed);
    if beyond.is_empty() {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "revision {} declares the capabilities {beyond} in {}, which the operator does not allow ({}: {allowed}); ask the operator to allow them, or remove them from the revision's `capabilities`",
        revision.id(),
        revision.dir.join(revision::MANIFEST).display(),
        crate::ceilings::ALLOWED_CAPABILITIES,
    )))
}

/// The failure of a guest that asks for another batch from the checkpoint it was given: it
/// would run forever.
fn repeated_checkpoint(batch: u64, checkpoint: &str) -> Failure {
    Failure::GuestError(format!(
        "batch {batch} asked for another batch from the checkpoint it started from ({checkpoint:?}), so it would repeat forever; pass `next-batch` the point after the work this batch did"
    ))
}

/// Rolls back a failed step's (or batch's) transaction, and returns how it really ended:
/// when a statement had ended wasmig's transaction before the step failed (a `COMMIT` the
/// statement check did not see), what ran before it may be committed, so the failure is
/// [`Failure::TransactionEnded`], never "rolled back". The server says which (the
/// session's transaction id), not wasmig's reading of the statements.
///
/// After a deadline the connection may still be busy with a statement that ignored its
/// cancel, or its server may have stopped answering: the check is skipped then, and the
/// rollback waits at most [`ROLLBACK_AFTER_DEADLINE`] (otherwise [`ROLLBACK_TIMEOUT`])
/// before the connection is closed instead.
async fn roll_back(
    mut session: Box<dyn Session>,
    revision: &str,
    failure: Failure,
    guest: bool,
) -> Failure {
    // Past a deadline the connection may still be busy, and a host failure may have lost
    // it: the check would only delay the rollback there.
    let checkable = !matches!(failure, Failure::Deadline(_) | Failure::Host(_));
    let ended = checkable
        && matches!(
            tokio::time::timeout(ROLLBACK_TIMEOUT, session.transaction_intact()).await,
            Ok(Ok(false))
        );
    let failure = if ended {
        tracing::debug!(
            "{revision}: failed after its transaction was ended by a statement ({failure})"
        );
        Failure::TransactionEnded { guest }
    } else {
        failure
    };
    let bound = if matches!(failure, Failure::Deadline(_)) {
        ROLLBACK_AFTER_DEADLINE
    } else {
        ROLLBACK_TIMEOUT
    };
    rollback_or_end(session, revision, bound).await;
    failure
}

/// Rolls back, or closes the connection when the rollback does not finish within `bound`:
/// the session is dropped unfinished, which closes its connection on the client's side
/// (nothing waits for the server), and the server is asked to end its session too.
async fn rollback_or_end(session: Box<dyn Session>, revision: &str, bound: Duration) {
    let canceller = session.canceller();
    match tokio::time::timeout(bound, session.rollback()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            "rollback of {revision} failed: {e:#} (the server discards the transaction anyway)"
        ),
        Err(_) => {
            let _ = tokio::time::timeout(TERMINATE_WAIT, canceller.terminate()).await;
            tracing::warn!(
                "rollback of {revision} did not finish within {} s; its connection was closed, which discards the transaction",
                bound.as_secs()
            );
        }
    }
}

/// Commits a step's transaction, waiting at most `bound` (the step's time limit) for the
/// server: past it the session is dropped, which closes its connection on this side, and
/// whether the step committed is unknown ([`Failure::CommitUnknown`], exit 10).
async fn commit(session: Box<dyn Session>, bound: Duration) -> Result<(), Failure> {
    match tokio::time::timeout(bound, session.commit()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => match e.downcast::<crate::db::CommitRefused>() {
            Ok(refused) => Err(Failure::Sql(refused.0)),
            Err(e) => Err(Failure::Host(e)),
        },
        Err(_) => Err(Failure::CommitUnknown(bound)),
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

/// What [`finish`] records of a step that ran to its end.
struct Finishing<'a> {
    step: &'a Step,
    checksum: &'a str,
    started_at: chrono::DateTime<Utc>,
    /// The copy to store (upgrades).
    to_store: Option<&'a StoredArtifact>,
    /// Whether the revision has a checkpoint to delete.
    had_checkpoint: bool,
    /// What wasmig's tables must hold before the record is written.
    expected: &'a Expected,
}

/// Records a finished step in its transaction, once [`check_intact`]'s check passes (in the
/// same round trip on PostgreSQL): the version tables, the artifact stored (upgrade) or
/// forgotten (downgrade), and the checkpoint of a resumed step deleted; refused when
/// wasmig's tables are not what the run expects (the step's SQL wrote them).
async fn finish(
    session: &mut Box<dyn Session>,
    f: &Finishing<'_>,
    guest: bool,
) -> Result<(), Failure> {
    let finished = FinishedStep {
        record: completed(f.step, f.checksum, f.started_at),
        artifact: f.to_store,
        clear_checkpoint: f.had_checkpoint,
        expected: Some(f.expected),
    };
    match session.finish_step(&finished).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::TransactionEnded { guest }),
        Err(e) => Err(wasmigs_write_failed(e)),
    }
}

/// A write of wasmig's in the step's transaction failed (its record, a batch's
/// checkpoint): the host's failure, or the migration's where the server refused it for a
/// state the migration left (`DbError::left_by_migration`).
pub(super) fn wasmigs_write_failed(e: anyhow::Error) -> Failure {
    match e
        .downcast_ref::<crate::db::DbError>()
        .and_then(crate::db::DbError::left_by_migration)
    {
        Some(sql) => Failure::Sql(Box::new(sql)),
        None => Failure::Host(e),
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
        direction: step.action.into(),
        checksum,
        started_at,
        finished_at: Utc::now(),
        error: None,
        sqlstate: None,
    }
}

/// A sandbox for `project`'s components, with the compile cache when `use_cache`.
///
/// # Errors
/// The cache directory cannot be made, or the engine cannot start.
fn new_sandbox(project: &Project, use_cache: bool) -> anyhow::Result<Sandbox> {
    let cache = use_cache.then(|| project.cache_dir());
    // A cache in the project (the default, `.wasmig/cache`) committed as a link out of it
    // must not make wasmig write there.
    if let Some(dir) = &cache
        && dir.starts_with(&project.root)
    {
        crate::confined::create_dir_all(&project.root, dir)?;
    }
    Sandbox::new(
        &project.root,
        cache,
        project.sandbox_settings().sandbox_options(),
    )
}

/// The report of a batched component step (one walk or partitioned) that ran `batches`
/// batches in this run.
fn batched_report(
    step: &Step,
    loaded: &Loaded,
    started: Instant,
    batches: u64,
    resume: Option<&Checkpoint>,
) -> StepReport {
    StepReport {
        observed: None,
        action: step.action,
        revision: step.revision.clone(),
        kind: "component",
        cache: Some(loaded.cache),
        load_ms: Some(loaded.load_time.as_millis() as u64),
        duration_ms: started.elapsed().as_millis() as u64,
        batches: Some(batches),
        resumed_after: resume.map(|c| c.batches),
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

/// Reads a step's artifact and compiles its component. With a checksum `memo`, records
/// what the files read hash to (see [`crate::memo`]).
fn prepare(
    revision: &Revision,
    step: &Step,
    build_dir: &std::path::Path,
    sandbox: Option<&Sandbox>,
    memo: Option<&std::sync::Mutex<crate::memo::Memo>>,
) -> anyhow::Result<Prepared> {
    // A copy stored in the database has no files to stamp.
    let memo = memo.filter(|_| revision.stored.is_none());
    let files = memo.map(|_| crate::integrity::files(revision, build_dir));
    let looked = files.as_deref().and_then(crate::memo::Memo::before_reading);
    let mut read = Vec::new();
    let mut artifact = revision::read_artifact_seen(revision, build_dir, &mut read)?;
    let checksum = artifact.checksum();
    if let (Some(memo), Some(files), Some(looked)) = (memo, &files, looked)
        && let Ok(mut memo) = memo.lock()
    {
        memo.record(&step.revision, files, looked, &read, &checksum);
    }
    let loaded = match (&artifact, sandbox) {
        (Artifact::Component { path, bytes }, Some(sandbox)) => {
            Some(sandbox.load(&step.revision, path, bytes)?)
        }
        _ => None,
    };
    // Loaded, a component's bytes are not needed again but for the database's copy: they
    // move into it (an upgrade) or go (a downgrade), never held twice, nor through the
    // step (18 MB for a Python one).
    let to_store = match step.action {
        Direction::Upgrade if loaded.is_some() => Some(revision.take_stored(&mut artifact)?),
        Direction::Upgrade => Some(revision.to_stored(&artifact)?),
        Direction::Downgrade => None,
    };
    if loaded.is_some()
        && let Artifact::Component { bytes, .. } = &mut artifact
    {
        *bytes = Vec::new();
    }
    if let Some(l) = &loaded {
        tracing::debug!(
            "{}: component {} in {} ms",
            step.revision,
            match l.cache {
                CacheStatus::Hit => "loaded from the cache",
                CacheStatus::Miss => "compiled and cached",
                CacheStatus::Disabled => "compiled (cache disabled)",
                CacheStatus::Reused => "compiled earlier in this fleet run",
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
pub(crate) fn timeouts(
    project: &Project,
    revision: &Revision,
) -> anyhow::Result<StatementTimeouts> {
    let manifest = revision.dir.join(revision::MANIFEST);
    let asked = project
        .config
        .timeouts
        .with_overrides(&revision.manifest.timeouts(), &manifest)?;
    Ok(project
        .ceilings()
        .clamp_timeouts(asked, Some(&manifest.display().to_string())))
}

/// The sandbox limits of a revision: its manifest's overrides, else the project's.
///
/// # Errors
/// [`crate::error::ConfigError`] naming the manifest for a value out of range.
fn limits(project: &Project, revision: &Revision) -> anyhow::Result<Limits> {
    let manifest = revision.dir.join(revision::MANIFEST);
    let asked = project
        .config
        .sandbox
        .with_overrides(&revision.manifest, &manifest)?;
    // The operator's ceilings hold whatever the project's files ask for.
    let settings = project
        .ceilings()
        .clamp(asked, Some(&manifest.display().to_string()));
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

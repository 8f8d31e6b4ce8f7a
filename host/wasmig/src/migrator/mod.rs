//! The front door: [`Migrator`] runs wasmig's commands on one project and one database, for
//! the `wasmig` command and for an application that migrates its own database at start-up
//! (the counterpart of `sqlx::migrate!().run(&pool)` or refinery's `Runner`).
//!
//! Each command returns a typed report and prints nothing: the library only emits `tracing`
//! events. What `up` means lives here: refuse failed marks and unfinished checkpoints, plan,
//! reuse stored components, build, verify checksums, run, all under the migration lock. The
//! connection and the lock are scoped: [`Migrator::connected`] and [`Migrator::locked`] close
//! the connection and release the lock on every path out of the work they wrap.
//!
//! Not here: planning (`wasmig-plan`), executing the steps (`runner`), rendering and exit
//! codes (the CLI).

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Project;
use crate::db::{self, Checkpoint, Database, Event, FailedMark, HistoryEntry, StepRecord};
use crate::error::{ConfigError, FailedError, GraphError, InProgressError, NotFailed};
use crate::graph::{Direction, Step};
use crate::integrity::{self, Verification};
use crate::memo::Memo;
use crate::revision::{self, RevisionSet};
use crate::runner::{self, RunOptions, StepReport};
use wasmig_plan::manifest::TransactionMode;

mod adopt;
mod offline;
mod resolve;
mod stairway;

pub use self::adopt::Adoption;
use self::resolve::resolve;
pub use self::stairway::{
    CHECK_FILE, FIXTURE_FILE, RevisionOutcome, StairFailure, StairwayOptions, StairwayReport,
};

/// How a [`Migrator`] runs; the defaults are those of the `wasmig` command.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database URL, overriding `DATABASE_URL` and `wasmig.toml` (`None`: those, or
    /// the embedded SQLite default).
    pub database_url: Option<String>,
    /// How long to wait for another run's migration lock (default 60 s).
    pub lock_timeout: Duration,
    /// Build stale Rust, Python, JavaScript and C revisions before running (default on).
    pub build: bool,
    /// Read and write the compile cache (default on).
    pub use_cache: bool,
    /// Run every step in one transaction (default off).
    pub atomic: bool,
    /// Run even if applied revisions changed since they ran, warning for each (default off).
    pub allow_modified: bool,
    /// Treat the project as untrusted (a pull request in shared CI): builds run in a jail
    /// and from a copy of the sources, nothing under `.wasmig/` from the checkout is used,
    /// the compile cache is off, the operator's ceilings are the default limits, and
    /// migration SQL is held to the untrusted SQL policy. Also turned on by
    /// `untrusted = true` in `wasmig.toml` (a project can turn it on, never off).
    pub untrusted: bool,
    /// `up --dry-run`: run the steps in one transaction that is rolled back, recording
    /// nothing, and report what the server counted of each (default off). Steps from the
    /// first that cannot run in a transaction on are listed, not run.
    pub dry_run: bool,
    /// `--dry-run --batches N`: the batches of a batched revision a dry run runs (default
    /// 1).
    pub dry_run_batches: u64,
    /// `--journal FILE`: write every SQL call of every step to FILE, one JSON line each
    /// (created or truncated when the run starts; default none).
    pub journal: Option<std::path::PathBuf>,
    /// PostgreSQL: the target is this schema of the database (a fleet's schema-per-tenant
    /// target): wasmig's tables live in it, overriding `database_schema`, and it is the
    /// migrations' whole `search_path` (default none: `database_schema`, and the server's
    /// `search_path`).
    pub schema: Option<String>,
    /// A sandbox shared with other runs in this process (a fleet's targets), so that each
    /// component is compiled once for all of them (default none: each run makes its own).
    pub sandbox: Option<std::sync::Arc<crate::sandbox::Sandbox>>,
    /// `up --workers N`: how many workers run the partitions of a partitioned batched step
    /// in this process (default none: one); and, given, a run that finds the migration lock
    /// held joins the holder's partitioned step instead of only waiting for the lock.
    pub workers: Option<u32>,
    /// A journal that keeps every component call whole (`Journal::capturing`), used in
    /// the place of `journal`: how `up --sql` sees what a component sends (default none).
    pub capture: Option<std::sync::Arc<crate::sandbox::journal::Journal>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            database_url: None,
            lock_timeout: Duration::from_secs(60),
            build: true,
            use_cache: true,
            atomic: false,
            allow_modified: false,
            untrusted: false,
            dry_run: false,
            dry_run_batches: 1,
            journal: None,
            schema: None,
            sandbox: None,
            workers: None,
            capture: None,
        }
    }
}

/// The steps a run would take, without running them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Batched steps part-way through that the plan resumes.
    #[serde(skip)]
    pub resuming: Vec<Checkpoint>,
}

/// What an `up` or `down` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Upgrade or downgrade.
    #[serde(skip)]
    pub direction: Direction,
    /// The heads before the run (empty: base).
    #[serde(skip)]
    pub heads_before: Vec<String>,
    /// The steps that ran, in order (empty: nothing to do).
    pub steps: Vec<StepReport>,
    /// Whether the run was a dry run (everything rolled back, nothing recorded).
    pub dry_run: bool,
    /// A dry run: the planned steps it did not run, from the first that cannot run in a
    /// transaction, with the reason on the first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<NotRun>,
}

/// A planned step a dry run did not run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotRun {
    /// The revision.
    pub revision: String,
    /// Why.
    pub reason: String,
}

/// What the database holds, beside the project's revisions.
#[derive(Debug, Clone)]
pub struct Status {
    /// The heads the database is at (empty: base).
    pub heads: Vec<String>,
    /// Revisions marked failed.
    pub failed: Vec<FailedMark>,
    /// Batched steps part-way through.
    pub in_progress: Vec<Checkpoint>,
    /// The partitions of those running in partitions, by revision.
    pub partitions: Vec<(String, Vec<db::Partition>)>,
    /// Revisions not applied yet, in the order `up` would apply them.
    pub pending: Vec<String>,
    /// PostgreSQL or SQLite.
    pub dialect: &'static str,
}

/// How the heads moved (`stamp`, `resolve`).
#[derive(Debug, Clone)]
pub struct HeadsMoved {
    /// The revision resolved (empty for a stamp).
    pub revision: String,
    /// The heads before.
    pub before: Vec<String>,
    /// The heads after.
    pub after: Vec<String>,
}

/// What `wasmig resolve` records about a failed revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The revision's upgrade is complete in the database: it is applied.
    Applied,
    /// None of the revision's upgrade is in the database: it is not applied.
    RolledBack,
}

impl Resolution {
    /// `applied` or `rolled-back`, as `--as` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Applied => "applied",
            Resolution::RolledBack => "rolled-back",
        }
    }
}

/// Runs wasmig's commands on one project.
///
/// ```no_run
/// # async fn start() -> anyhow::Result<()> {
/// // At start-up: apply every pending migration of ./migrations to DATABASE_URL.
/// let migrator = wasmig::Migrator::open("migrations")?;
/// let report = migrator.up(None).await?;
/// println!("{} revision(s) applied", report.steps.len());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Migrator {
    project: Project,
    options: Options,
    /// Why untrusted mode could not be set up (its private working directory), reported by
    /// the first command that needs it.
    untrusted_setup: Option<String>,
    /// A fleet's target: the revisions, read once for the whole fleet.
    preloaded: Option<RevisionSet>,
    /// A fleet's target: its build directory is the fleet's, shared with the targets
    /// running beside it.
    in_fleet: bool,
}

impl Migrator {
    /// A migrator for a loaded project, with default options.
    pub fn new(project: Project) -> Self {
        Migrator {
            project,
            options: Options::default(),
            untrusted_setup: None,
            preloaded: None,
            in_fleet: false,
        }
        .set_up_untrusted()
    }

    /// A migrator for the project at `dir` or above it (the nearest `wasmig.toml`).
    ///
    /// # Errors
    /// [`ConfigError`] when no project is found or its configuration is invalid.
    pub fn open(dir: impl AsRef<Path>) -> anyhow::Result<Self> {
        Ok(Migrator::new(Project::discover(dir.as_ref())?))
    }

    /// The same migrator with these options.
    #[must_use]
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self.set_up_untrusted()
    }

    /// In untrusted mode, moves the working directory out of the checkout.
    fn set_up_untrusted(mut self) -> Self {
        if self.untrusted() && !self.project.is_untrusted() {
            match self.project.clone().untrusted() {
                Ok(project) => self.project = project,
                Err(e) => {
                    self.untrusted_setup = Some(format!(
                        "cannot make untrusted mode's working directory in {}: {e}",
                        std::env::temp_dir().display()
                    ));
                }
            }
        }
        self
    }

    /// Untrusted mode refuses `--allow-modified`.
    ///
    /// # Errors
    /// [`ConfigError`] (exit 3).
    fn refuse_allow_modified(&self) -> anyhow::Result<()> {
        if self.untrusted() && self.options.allow_modified {
            return Err(ConfigError::new(
                "untrusted mode refuses --allow-modified: an untrusted change may not alter revisions the database already applied; run it trusted after review",
            )
            .into());
        }
        Ok(())
    }

    /// Untrusted mode refuses the commands that change wasmig's record without running a
    /// migration: they are the operator's, after review.
    ///
    /// # Errors
    /// [`ConfigError`] (exit 3) naming the command.
    fn refuse_operator_only(&self, command: &str) -> anyhow::Result<()> {
        if self.untrusted() {
            return Err(ConfigError::new(format!(
                "untrusted mode refuses `wasmig {command}`: it changes what the database records without running a migration, which is the operator's decision after review; run it trusted"
            ))
            .into());
        }
        Ok(())
    }

    /// Untrusted mode's refusals, before a command that builds or runs: escape hatches,
    /// and a checkout that chooses its own toolchain or cargo configuration.
    ///
    /// # Errors
    /// [`ConfigError`] (exit 3) saying what is refused and why.
    fn refuse_untrusted(&self) -> anyhow::Result<()> {
        if !self.untrusted() {
            return Ok(());
        }
        if let Some(why) = &self.untrusted_setup {
            return Err(ConfigError::new(why.clone()).into());
        }
        self.refuse_allow_modified()?;
        if !self.options.build {
            return Err(ConfigError::new(
                "untrusted mode refuses --no-build: it always builds from the reviewed sources, never from build outputs in the checkout",
            )
            .into());
        }
        crate::untrusted::refuse_toolchain_files(&self.project.root)?;
        Ok(())
    }

    /// The same migrator on another database.
    #[must_use]
    pub fn with_database_url(mut self, url: impl Into<String>) -> Self {
        self.options.database_url = Some(url.into());
        self
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether this run treats the project as untrusted: [`Options::untrusted`], or
    /// `untrusted = true` in `wasmig.toml`.
    pub fn untrusted(&self) -> bool {
        self.options.untrusted || self.project.config.untrusted
    }

    /// The project's revisions and their graph, from its files.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable project or manifest, [`GraphError`] for an
    /// inconsistent graph.
    pub fn revisions(&self) -> anyhow::Result<RevisionSet> {
        match &self.preloaded {
            Some(set) => Ok(set.clone()),
            None => RevisionSet::load(&self.project),
        }
    }

    /// The migrator of one of a fleet's targets: the same project and options on `url`
    /// (and `schema`), with the revisions the fleet read once, and its sandbox.
    pub(crate) fn for_target(
        &self,
        set: &RevisionSet,
        url: String,
        schema: Option<String>,
        sandbox: Option<std::sync::Arc<crate::sandbox::Sandbox>>,
    ) -> Migrator {
        Migrator {
            project: self.project.clone(),
            options: Options {
                database_url: Some(url),
                schema,
                sandbox,
                ..self.options.clone()
            },
            untrusted_setup: self.untrusted_setup.clone(),
            preloaded: Some(set.clone()),
            in_fleet: true,
        }
    }

    /// The database URL in force and whether it is the embedded default.
    ///
    /// # Errors
    /// [`db::DbError::InvalidUrl`] for a malformed URL.
    pub fn database_url(&self) -> anyhow::Result<(db::DatabaseUrl, bool)> {
        self.project
            .database_url(self.options.database_url.as_deref())
    }

    /// Connects, runs `work`, and closes the connection on every path out of it.
    ///
    /// # Errors
    /// [`db::DbError`] when the database cannot be reached; else the error of `work`.
    pub async fn connected<T>(
        &self,
        work: impl AsyncFnOnce(&dyn Database) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.connected_for(db::Intent::Read, work).await
    }

    /// [`Migrator::connected`], for work that needs what `intent` says.
    async fn connected_for<T>(
        &self,
        intent: db::Intent,
        work: impl AsyncFnOnce(&dyn Database) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let (url, is_default) = self.database_url()?;
        if is_default {
            tracing::info!("no database configured: using the embedded SQLite database {url}");
        } else {
            tracing::debug!("database: {url}");
        }
        let role = self.project.config.role.as_deref();
        let mut lock = self.project.config.lock_settings()?;
        lock.wait = self.options.lock_timeout;
        let db = match &self.options.schema {
            Some(schema) => db::connect_schema(&url, schema, role, &lock, intent).await?,
            None => {
                let schema = &self.project.config.database_schema;
                db::connect(&url, schema, role, &lock, intent).await?
            }
        };
        let result = match work(db.as_ref()).await {
            Err(mut e) => {
                // A step's failure keeps its report (the steps applied before it): what
                // failed on the host inside it is explained in place.
                // (At least a second: see `db::LockSettings::wait`.)
                let wait = self.options.lock_timeout.max(Duration::from_secs(1));
                match e
                    .downcast_mut::<crate::error::MigrationError>()
                    .and_then(|m| host_failure(&mut m.failure))
                {
                    Some(inner) => {
                        let taken = std::mem::replace(inner, anyhow::anyhow!("(explained)"));
                        *inner = explained(db.as_ref(), taken, &url, wait).await;
                        Err(e)
                    }
                    None => Err(explained(db.as_ref(), e, &url, wait).await),
                }
            }
            ok => ok,
        };
        db.close().await;
        result
    }

    /// As [`Migrator::connected`], but `None` without connecting when no database is
    /// configured and the embedded default's file does not exist (so a read-only command
    /// does not create it).
    ///
    /// # Errors
    /// As [`Migrator::connected`].
    pub async fn connected_if_exists<T>(
        &self,
        work: impl AsyncFnOnce(&dyn Database) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let (url, is_default) = self.database_url()?;
        if let (true, db::DatabaseUrl::Sqlite { path }) = (is_default, &url)
            && !path.exists()
        {
            tracing::debug!(
                "no database configured and no {}: nothing applied",
                path.display()
            );
            return Ok(None);
        }
        self.connected(work).await.map(Some)
    }

    /// Connects, takes the migration lock, runs `work`, releases the lock and closes the
    /// connection, on every path out of `work`: it cannot return past the guard. A panic or
    /// a kill releases the lock too, as its connection or file closes.
    ///
    /// # Errors
    /// [`crate::error::LockTimeout`] when the lock stays held past the lock timeout; an
    /// error when the lock was lost during `work` (another run may have overlapped); else the
    /// error of `work`.
    pub async fn locked<T>(
        &self,
        work: impl AsyncFnOnce(&dyn Database) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let timeout = self.options.lock_timeout;
        self.connected_for(db::Intent::Lock, async move |db: &dyn Database| {
            with_lock(db, timeout, work(db)).await
        })
        .await
    }

    /// The steps `direction` to `target` would take (`None`: `head` up, `-1` down),
    /// without running them or taking the lock, and without creating the embedded default
    /// database. Applied revisions are verified as for a run.
    ///
    /// # Errors
    /// As [`Migrator::run`], except that nothing is built or run.
    pub async fn plan(&self, direction: Direction, target: Option<&str>) -> anyhow::Result<Plan> {
        self.refuse_untrusted()?;
        let set = self.revisions()?;
        let target = target.unwrap_or(default_target(direction));
        // A database that does not exist yet is at base: `--plan` writes nothing, not even
        // a SQLite file.
        if let (db::DatabaseUrl::Sqlite { path }, _) = self.database_url()?
            && !path.exists()
        {
            return Ok(Plan {
                steps: set.plan(direction, &[], target)?,
                resuming: Vec::new(),
            });
        }
        self.connected(async |db: &dyn Database| {
            let prepared = self.prepare(db, set, direction, target, false).await?;
            Ok(Plan {
                steps: prepared.steps,
                resuming: prepared.checkpoints,
            })
        })
        .await
    }

    /// Applies revisions up to `target` (`None`: `head`).
    ///
    /// # Errors
    /// As [`Migrator::run`].
    pub async fn up(&self, target: Option<&str>) -> anyhow::Result<RunReport> {
        self.run(Direction::Upgrade, target).await
    }

    /// Reverts revisions down to `target` (`None`: one step, `-1`).
    ///
    /// # Errors
    /// As [`Migrator::run`].
    pub async fn down(&self, target: Option<&str>) -> anyhow::Result<RunReport> {
        self.run(Direction::Downgrade, target).await
    }

    /// Runs the plan `direction` to `target` under the migration lock: refuses while a
    /// revision is marked failed or a batched step is part-way through (unless the plan
    /// finishes it), builds what must be built, verifies the applied revisions' checksums,
    /// then runs the steps.
    ///
    /// # Errors
    /// [`FailedError`] / [`InProgressError`] (a revision to resolve first), [`GraphError`]
    /// (the target), [`crate::error::ModifiedError`] (changed applied revisions),
    /// [`crate::error::BuildError`], [`crate::error::LockTimeout`], and
    /// [`crate::error::MigrationError`] for a step that failed (naming the steps applied
    /// before it).
    pub async fn run(
        &self,
        direction: Direction,
        target: Option<&str>,
    ) -> anyhow::Result<RunReport> {
        self.refuse_untrusted()?;
        let set = self.revisions()?;
        let target = target.unwrap_or(default_target(direction));
        let timeout = self.options.lock_timeout;
        // With --workers, a run that finds the lock held joins the holder's partitioned
        // step, if it runs one, between its tries for the lock.
        let joins = self.options.workers.is_some()
            && direction == Direction::Upgrade
            && !self.options.dry_run;
        if !joins {
            return self
                .locked(async |db: &dyn Database| self.run_locked(db, set, direction, target).await)
                .await;
        }
        self.connected_for(db::Intent::Lock, async |db: &dyn Database| {
            let mut since = std::time::Instant::now();
            let mut told = false;
            loop {
                // One try at a time: between tries, partitions to join are looked for.
                let tried = with_lock(
                    db,
                    Duration::ZERO,
                    self.run_locked(db, set.clone(), direction, target),
                )
                .await;
                let mut busy = match tried {
                    Err(e) if e.is::<db::LockTimeout>() => e,
                    other => return other,
                };
                if !told {
                    tracing::info!(
                        "{busy}; joining its partitioned revision when it runs one, and waiting up to {} s for the lock otherwise",
                        timeout.as_secs()
                    );
                    told = true;
                }
                if self.join(db, &set).await? {
                    // Work done here: the lock timeout counts again from now.
                    since = std::time::Instant::now();
                    continue;
                }
                if since.elapsed() >= timeout {
                    if let Some(t) = busy.downcast_mut::<db::LockTimeout>() {
                        t.waited = since.elapsed();
                    }
                    return Err(busy);
                }
                tokio::time::sleep(JOIN_POLL).await;
            }
        })
        .await
    }

    /// With the lock held by another run: works that run's partitioned step, if it runs
    /// one (PostgreSQL), until its partitions are done. `false`: nothing to join.
    async fn join(&self, db: &dyn Database, set: &RevisionSet) -> anyhow::Result<bool> {
        if db.dialect() != crate::bindings::Dialect::Postgres {
            return Ok(false);
        }
        let checkpoints = db.checkpoints().await?;
        let Some(checkpoint) = checkpoints.iter().find(|c| {
            db::Partition::parts_of(&c.checkpoint).is_some() && c.direction == Direction::Upgrade
        }) else {
            return Ok(false);
        };
        let Some(revision) = set.find(&checkpoint.revision) else {
            return Err(ConfigError::new(format!(
                "the run holding the migration lock is running revision {} in partitions, and this project does not have it: run `wasmig up --workers N` from the same version of the project",
                checkpoint.revision
            ))
            .into());
        };
        if self.options.build && revision.manifest.kind.is_built() && revision.stored.is_none() {
            crate::artifact::build_off_thread(&self.project, set.revisions()).await?;
        }
        let options = RunOptions {
            use_cache: self.options.use_cache && !self.untrusted(),
            atomic: false,
            allow_modified: self.options.allow_modified,
            untrusted: self.untrusted(),
            dry_run: false,
            dry_run_batches: 1,
            journal: None,
            sandbox: self.options.sandbox.clone(),
            workers: self.options.workers.unwrap_or(1),
            // A partitioned step is batched: it never runs statement by statement.
            per_statement: None,
            memo: None,
        };
        let batches =
            runner::join_partitions(&self.project, db, revision, checkpoint, &options).await?;
        tracing::info!(
            "{}: {batches} batch(es) committed here; every partition is done, and the run holding the lock records the revision",
            checkpoint.revision
        );
        // Only work done here counts as progress (the lock timeout counts again).
        Ok(batches > 0)
    }

    /// [`Migrator::run`]'s work under the lock.
    async fn run_locked(
        &self,
        db: &dyn Database,
        set: RevisionSet,
        direction: Direction,
        target: &str,
    ) -> anyhow::Result<RunReport> {
        {
            let mut prepared = self.prepare(db, set, direction, target, true).await?;
            let memo = prepared
                .memo
                .take()
                .map(|m| std::sync::Arc::new(std::sync::Mutex::new(m)));
            let save_memo = || {
                if let Some(memo) = memo.as_ref().and_then(|m| m.lock().ok()) {
                    memo.save();
                }
            };
            // Created (empty) even when there is nothing to do, so a reader finds it.
            let journal = match &self.options.journal {
                _ if self.options.capture.is_some() => self.options.capture.clone(),
                Some(path) => Some(std::sync::Arc::new(
                    crate::sandbox::journal::Journal::create(path).map_err(|e| {
                        ConfigError::new(format!(
                            "cannot create the journal {}: {e}",
                            path.display()
                        ))
                    })?,
                )),
                None => None,
            };
            if prepared.steps.is_empty() {
                save_memo();
                return Ok(RunReport {
                    direction,
                    heads_before: prepared.heads,
                    steps: Vec::new(),
                    dry_run: self.options.dry_run,
                    not_run: Vec::new(),
                });
            }
            if self.options.dry_run && db.dialect() == crate::bindings::Dialect::Mysql {
                return Err(ConfigError::new(
                    "--dry-run is not available on MySQL yet: the server commits DDL implicitly and counts no rows per transaction, so a dry run could neither undo all it ran nor say what it did; try the range on a copy of the database, or on PostgreSQL",
                )
                .into());
            }
            let per_statement = self
                .per_statement(db, &prepared.set, &prepared.steps)
                .await?;
            // A dry run undoes everything it runs: it stops before the first step that
            // cannot run inside its transaction (the steps after it may depend on it).
            let mut run_steps: &[Step] = &prepared.steps;
            let mut not_run = Vec::new();
            if self.options.dry_run {
                let mode = |step: &Step| {
                    if per_statement
                        .as_ref()
                        .is_some_and(|p| p.revisions.contains(&step.revision))
                    {
                        return TransactionMode::None;
                    }
                    prepared
                        .set
                        .find(&step.revision)
                        .map_or(TransactionMode::PerMigration, |r| {
                            r.manifest.transaction_for(step.action)
                        })
                };
                if let Some(cut) = prepared
                    .steps
                    .iter()
                    .position(|s| mode(s) == TransactionMode::None)
                {
                    run_steps = &prepared.steps[..cut];
                    for (k, step) in prepared.steps[cut..].iter().enumerate() {
                        let why = per_statement
                            .as_ref()
                            .filter(|p| p.revisions.contains(&step.revision));
                        let reason = if let (0, Some(p)) = (k, why) {
                            format!(
                                "its script has DDL, which runs statement by statement here ({}): its statements commit one by one, so a dry run cannot undo them",
                                p.why
                            )
                        } else if k == 0 {
                            let key = prepared
                                .set
                                .find(&step.revision)
                                .map_or("transaction", |r| r.manifest.transaction_key(step.action));
                            format!(
                                "{key} = \"none\": its statements commit one by one, so a dry run cannot undo them"
                            )
                        } else {
                            format!(
                                "after {}, which a dry run does not run",
                                prepared.steps[cut].revision
                            )
                        };
                        not_run.push(NotRun {
                            revision: step.revision.clone(),
                            reason,
                        });
                    }
                }
            }
            let options = RunOptions {
                // A cache an untrusted run could read or write is a way to run native
                // code of its making in a later trusted run.
                use_cache: self.options.use_cache && !self.untrusted(),
                atomic: self.options.atomic,
                allow_modified: self.options.allow_modified,
                untrusted: self.untrusted(),
                dry_run: self.options.dry_run,
                dry_run_batches: self.options.dry_run_batches.max(1),
                journal,
                sandbox: self.options.sandbox.clone(),
                workers: self.options.workers.unwrap_or(1),
                per_statement,
                memo: memo.clone(),
            };
            let steps = runner::run(
                &self.project,
                db,
                prepared.set.revisions(),
                &prepared.heads,
                run_steps,
                options,
            )
            .await;
            save_memo();
            let steps = steps?;
            Ok(RunReport {
                direction,
                heads_before: prepared.heads,
                steps,
                dry_run: self.options.dry_run,
                not_run,
            })
        }
    }

    /// The SQL revisions among `steps` whose script runs statement by statement under
    /// `execution` (a script with DDL in a revision that asks for one transaction), and why;
    /// `None` when every step runs as its manifest says. The server is asked its
    /// `version()` only under `auto`, and only when such a script is among the steps.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad `WASMIG_EXECUTION`, or `per-statement` on SQLite; a read
    /// error of a script, or of the server's version.
    pub(crate) async fn per_statement(
        &self,
        db: &dyn Database,
        set: &RevisionSet,
        steps: &[Step],
    ) -> anyhow::Result<Option<runner::PerStatement>> {
        use crate::db::Execution;
        let (mode, source) = self.project.config.execution()?;
        if db.dialect() == crate::bindings::Dialect::Sqlite {
            if mode == Execution::PerStatement {
                return Err(ConfigError::new(format!(
                    "{source} asks to run DDL statement by statement, a setting for engines whose DDL is not transactional: SQLite's is; remove it, or point the project at PostgreSQL"
                ))
                .into());
            }
            return Ok(None);
        }
        let mysql = db.dialect() == crate::bindings::Dialect::Mysql;
        if mode == Execution::Transaction {
            if mysql {
                return Err(ConfigError::new(format!(
                    "{source} asks to run each SQL revision in one transaction, which MySQL and MariaDB cannot do for DDL (they commit it implicitly); remove it: wasmig then runs a script with DDL statement by statement, and a script of data statements in one transaction"
                ))
                .into());
            }
            return Ok(None);
        }
        let build_dir = crate::artifact::build_dir(&self.project);
        let mut candidates = Vec::new();
        for step in steps {
            let Some(revision) = set.find(&step.revision) else {
                continue;
            };
            if revision.manifest.kind == revision::Kind::Sql
                && revision.manifest.transaction_for(step.action) == TransactionMode::PerMigration
            {
                candidates.push((step, revision));
            }
        }
        if candidates.is_empty() {
            return Ok(None);
        }
        let why = match mode {
            Execution::Auto if mysql => {
                "the server is MySQL or MariaDB, which commits DDL implicitly".to_owned()
            }
            Execution::Auto => match db.server_version().await? {
                Some(version) if db::not_postgres(&version) => format!(
                    "execution = \"auto\", and the server is {}, whose DDL is not transactional",
                    version.trim()
                ),
                _ => return Ok(None),
            },
            _ => source,
        };
        let mut revisions = std::collections::BTreeSet::new();
        for (step, revision) in candidates {
            let revision::Artifact::Sql { up, down } =
                revision::read_artifact(revision, &build_dir)?
            else {
                continue;
            };
            let script = if step.action == Direction::Upgrade {
                &up
            } else {
                &down
            };
            if !db::only_data(script, db.dialect()) {
                revisions.insert(step.revision.clone());
            }
        }
        Ok((!revisions.is_empty()).then_some(runner::PerStatement { revisions, why }))
    }

    /// Everything before the first step: refusals, the plan, builds and verification.
    /// `for_run`: build (a plan alone builds nothing).
    async fn prepare(
        &self,
        db: &dyn Database,
        set: RevisionSet,
        direction: Direction,
        target: &str,
        for_run: bool,
    ) -> anyhow::Result<Prepared> {
        // Reads of tables with a view, rule, trigger or row-level security attached could lie.
        db.verify_tables().await?;
        // A revision that stopped part-way leaves the database in a state no plan starts from.
        let failed = db.failed().await?;
        if !failed.is_empty() {
            return Err(FailedError(failed).into());
        }
        let heads = db.heads().await?;
        // Down may need applied revisions this checkout no longer has: the database stored
        // a copy of each when it applied it.
        let set = match direction {
            Direction::Upgrade => set,
            Direction::Downgrade => set.with_stored(&self.project, db, &heads).await?,
        };
        let steps = set.plan(direction, &heads, target)?;
        // A batched step part-way through is finished by a plan that runs it again (it
        // resumes from its checkpoint); any other plan would build on half of a data
        // migration.
        let checkpoints = db.checkpoints().await?;
        let unfinished: Vec<_> = checkpoints
            .iter()
            .filter(|c| {
                !steps
                    .iter()
                    .any(|s| s.revision == c.revision && s.action == c.direction)
            })
            .cloned()
            .collect();
        if !unfinished.is_empty() {
            return Err(InProgressError(unfinished).into());
        }
        let applied = set.graph().applied(&heads)?;
        let build = for_run && self.options.build;
        // A fleet's targets share the build directory: copying stored components into it,
        // building, and verifying against it are one target's at a time (the verification
        // reads what the copy wrote). The first target builds; the others find it built.
        let _turn = match self.in_fleet {
            true => Some(BUILD_DIR_TURN.lock().await),
            false => None,
        };
        // Applied revisions of non-reproducible toolchains run the component they ran, from
        // the database, when this checkout has not built it from the same sources.
        if build {
            crate::toolchain::reuse_stored(
                db,
                set.revisions(),
                &applied,
                &crate::artifact::build_dir(&self.project),
            )
            .await?;
        }
        // Build first, so applied Rust revisions are verified against the components that
        // would run (a rebuild may change them).
        if build && !steps.is_empty() && runner::needs_build(set.revisions(), &steps) {
            crate::artifact::build_off_thread(&self.project, set.revisions()).await?;
        }
        // With the compile cache, an unchanged file's checksum may come from the memo.
        let mut memo = match self.options.use_cache && !self.untrusted() {
            true => Memo::open(&self.project),
            false => None,
        };
        let verified = integrity::verify(
            &self.project,
            db,
            set.revisions(),
            &applied,
            self.options.allow_modified,
            memo.as_mut(),
        )
        .await;
        // Saved whatever the verification found: what it read holds either way.
        let memo = match verified {
            Ok(_) => memo,
            Err(e) => {
                if let Some(memo) = &memo {
                    memo.save();
                }
                return Err(e);
            }
        };
        Ok(Prepared {
            set,
            heads,
            steps,
            checkpoints,
            memo,
        })
    }

    /// The database's state: heads, failed marks, batched steps part-way, what is pending.
    ///
    /// # Errors
    /// Database errors; [`GraphError`] when the database is at a revision the project does
    /// not have.
    pub async fn status(&self, set: &RevisionSet) -> anyhow::Result<Status> {
        let (heads, failed, in_progress, partitions, dialect) = self
            .connected(async |db: &dyn Database| {
                let in_progress = db.checkpoints().await?;
                let mut partitions = Vec::new();
                for c in &in_progress {
                    if db::Partition::parts_of(&c.checkpoint).is_some() {
                        let mut reader = db.reader().await?;
                        let parts = db.store().partitions(reader.driver(), &c.revision).await?;
                        partitions.push((c.revision.clone(), parts));
                    }
                }
                Ok((
                    db.heads().await?,
                    db.failed().await?,
                    in_progress,
                    partitions,
                    db.dialect().name(),
                ))
            })
            .await?;
        let pending = set.graph().pending(&heads)?;
        Ok(Status {
            heads,
            failed,
            in_progress,
            partitions,
            pending,
            dialect,
        })
    }

    /// The heads the database is at, or `None` when no database is configured and the
    /// embedded default does not exist (nothing applied, nothing created).
    ///
    /// # Errors
    /// Database errors.
    pub async fn heads_if_exists(&self) -> anyhow::Result<Option<Vec<String>>> {
        self.connected_if_exists(async |db: &dyn Database| db.heads().await)
            .await
    }

    /// The heads the database is at (connecting, and creating the embedded default).
    ///
    /// # Errors
    /// Database errors.
    pub async fn heads(&self) -> anyhow::Result<Vec<String>> {
        self.connected(async |db: &dyn Database| db.heads().await)
            .await
    }

    /// The database's history log, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        self.connected(async |db: &dyn Database| db.history().await)
            .await
    }

    /// Verifies the applied revisions' checksums, when there is a database to ask (a
    /// configured one, which must be reachable, or the embedded default if its file
    /// exists); `None` otherwise.
    ///
    /// # Errors
    /// [`crate::error::ModifiedError`] unless `allow_modified`; database errors.
    pub async fn verify(&self, set: &RevisionSet) -> anyhow::Result<Option<Verification>> {
        self.refuse_allow_modified()?;
        self.connected_if_exists(async |db: &dyn Database| {
            db.verify_tables().await?;
            let applied = set.graph().applied(&db.heads().await?)?;
            crate::toolchain::reuse_stored(
                db,
                set.revisions(),
                &applied,
                &crate::artifact::build_dir(&self.project),
            )
            .await?;
            // `check` is the thorough look: every file read again.
            integrity::verify(
                &self.project,
                db,
                set.revisions(),
                &applied,
                self.options.allow_modified,
                None,
            )
            .await
        })
        .await
    }

    /// Builds every revision built from source; returns those whose component changed.
    ///
    /// # Errors
    /// [`crate::error::BuildError`].
    pub fn build(&self) -> anyhow::Result<Vec<String>> {
        self.refuse_untrusted()?;
        let set = self.revisions()?;
        crate::artifact::build(&self.project, set.revisions())
    }

    /// Records the current checksum of each applied revision in `targets` (accepting an
    /// intended change); returns those whose checksum changed.
    ///
    /// # Errors
    /// [`GraphError`] for an unknown or unapplied revision, [`FailedError`], database and
    /// lock errors.
    pub async fn rehash(&self, targets: &[String]) -> anyhow::Result<Vec<String>> {
        self.refuse_operator_only("rehash")?;
        let set = self.revisions()?;
        // Like stamp, rehash writes the history table: not while a run is in progress.
        self.locked(async |db: &dyn Database| {
            integrity::rehash(&self.project, db, set.revisions(), set.graph(), targets).await
        })
        .await
    }

    /// Sets the version table to `targets` without running any migration.
    ///
    /// # Errors
    /// [`FailedError`] / [`InProgressError`] (resolve first), [`GraphError`], database and
    /// lock errors.
    pub async fn stamp(&self, targets: &[String], purge: bool) -> anyhow::Result<HeadsMoved> {
        self.refuse_operator_only("stamp")?;
        let set = self.revisions()?;
        let graph = set.graph();
        self.locked(async |db: &dyn Database| {
            db.ensure_version_tables().await?;
            refuse_unfinished(db).await?;
            let heads = db.heads().await?;
            let new = graph.plan_stamp(&heads, targets, purge)?;
            if new != heads {
                let label = if new.is_empty() {
                    "base".to_owned()
                } else {
                    new.join(",")
                };
                let record = StepRecord::bookkeeping(Event::Stamp, &label, &heads, &new, "");
                // Revisions the stamp un-applies lose their stored copy, so a later `down`
                // without their files never runs what an earlier application stored; that
                // includes unknown stored heads a --purge drops, and what lies below them.
                let after = graph.applied(&new)?;
                let mut session = db.begin().await?;
                let written = async {
                    session.record_step(&record).await?;
                    session.forget_artifacts_except(&after).await
                }
                .await;
                if let Err(e) = written {
                    let _ = session.rollback().await;
                    return Err(e);
                }
                session.commit().await?;
            }
            Ok(HeadsMoved {
                revision: String::new(),
                before: heads,
                after: new,
            })
        })
        .await
    }

    /// Records as applied the imported revisions of `plan` that the tool it came from had
    /// applied, from that tool's history table, in one transaction under the migration lock
    /// (see `adopt`). With `dry_run`, reads and checks the same and records nothing (the
    /// revisions need not be written yet).
    ///
    /// # Errors
    /// [`crate::import::AdoptRefused`] (dirty or failed, a gap, an unknown migration, a
    /// changed file), [`ConfigError`] (the table cannot be read; wasmig's tables are past
    /// where the import begins), [`FailedError`] / [`InProgressError`], database and lock
    /// errors. Nothing is recorded on any error.
    pub async fn adopt(
        &self,
        plan: &crate::import::ImportPlan,
        dry_run: bool,
    ) -> anyhow::Result<Adoption> {
        self.refuse_operator_only("import --adopt")?;
        let set = if dry_run {
            None
        } else {
            Some(self.revisions()?)
        };
        let build_dir = crate::artifact::build_dir(&self.project);
        self.locked(async |db: &dyn Database| {
            if !dry_run {
                db.ensure_version_tables().await?;
            }
            adopt::adopt(db, plan, set.as_ref(), &build_dir).await
        })
        .await
    }

    /// Clears a revision's failed mark (or a batched step's checkpoint) and, when its step
    /// is to count as done, moves the heads as that step would have (the step's head change
    /// is stored with the mark, as the planner made it).
    ///
    /// # Errors
    /// [`NotFailed`] when the revision is neither marked failed nor in progress,
    /// [`GraphError::HeadsMoved`] when the heads moved since, [`ConfigError`] when an
    /// applied revision's checksum cannot be known, database and lock errors.
    pub async fn resolve(&self, target: &str, state: Resolution) -> anyhow::Result<HeadsMoved> {
        self.refuse_operator_only("resolve")?;
        let set = self.revisions()?;
        self.locked(async |db: &dyn Database| resolve(&self.project, &set, db, target, state).await)
            .await
    }
}

/// Refuses to move the heads under a failed mark (its resolution would be wrong) or under
/// a batched step part-way through (`stamp`, `import --adopt`).
///
/// # Errors
/// [`FailedError`], [`InProgressError`], database errors.
async fn refuse_unfinished(db: &dyn Database) -> anyhow::Result<()> {
    let failed = db.failed().await?;
    if !failed.is_empty() {
        return Err(FailedError(failed).into());
    }
    let checkpoints = db.checkpoints().await?;
    if !checkpoints.is_empty() {
        return Err(InProgressError(checkpoints).into());
    }
    Ok(())
}

/// Held by a fleet's target while it copies stored components into the build directory,
/// builds and verifies: the fleet's targets run at once in one process.
static BUILD_DIR_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The default target: `head` up, `-1` down.
fn default_target(direction: Direction) -> &'static str {
    match direction {
        Direction::Upgrade => "head",
        Direction::Downgrade => "-1",
    }
}

/// What [`Migrator::prepare`] found.
struct Prepared {
    set: RevisionSet,
    heads: Vec<String>,
    steps: Vec<Step>,
    checkpoints: Vec<Checkpoint>,
    /// The checksum memo the verification used, for the run's steps to add to; saved
    /// when the run ends.
    memo: Option<Memo>,
}

/// How often a run with `--workers` that finds the lock held tries it again, looking for
/// partitions to join in between.
const JOIN_POLL: Duration = Duration::from_millis(250);

/// Runs `work` holding the database's migration lock, and releases it on every path out.
async fn with_lock<T>(
    db: &dyn Database,
    timeout: Duration,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let guard = db.lock(timeout).await?;
    // The end-to-end tests drive the panic path through this (debug builds only): a panic
    // while the lock is held must still release it, and exit with code 1.
    #[cfg(debug_assertions)]
    if std::env::var_os("WASMIG_TEST_PANIC_WHILE_LOCKED").is_some() {
        panic!("WASMIG_TEST_PANIC_WHILE_LOCKED is set");
    }
    let result = work.await;
    // Closing the guard's connection or file releases the lock anyway. But an unlock that
    // finds the lock gone means it was lost during the run (its connection was ended), and
    // another run may have overlapped: a successful run must not report plain success.
    match (guard.release().await, result) {
        (Ok(()), result) => result,
        (Err(e), Ok(_)) => Err(e.context(
            "the run finished, but wasmig could not confirm it held the migration lock throughout; another run may have overlapped it: compare the version table and its history with the database",
        )),
        (Err(e), Err(run)) => {
            tracing::warn!("releasing the migration lock: {e:#}");
            Err(run)
        }
    }
}

/// The host's error inside a step's failure (a statement of wasmig's own that failed), if
/// that is what failed.
fn host_failure(failure: &mut crate::error::Failure) -> Option<&mut anyhow::Error> {
    use crate::error::Failure;
    match failure {
        Failure::Host(e) => Some(e),
        Failure::NotRolledBack { cause, .. } | Failure::Batch { cause, .. } => host_failure(cause),
        _ => None,
    }
}

/// A statement of wasmig's own that failed, explained by what the server says: one that
/// gave up waiting for a lock another session holds on wasmig's tables is
/// [`db::TablesLocked`], naming the session; one that found a column or table of them gone
/// (42703, 42P01) is the tampering the full check names ([`db::TablesTampered`]), not the
/// database's failure. (A migration's own statements fail as SQL errors, not
/// [`db::DbError::Query`]: never taken for wasmig's.)
async fn explained(
    db: &dyn Database,
    e: anyhow::Error,
    url: &db::DatabaseUrl,
    waited: Duration,
) -> anyhow::Error {
    let own = |code: &str| {
        e.chain().any(|c| {
            c.downcast_ref::<db::DbError>()
                .and_then(db::DbError::sqlstate)
                .is_some_and(|s| s == code)
        })
    };
    let gave_up = e.chain().any(|c| {
        c.downcast_ref::<db::DbError>()
            .is_some_and(db::DbError::gave_up_waiting_for_a_lock)
    });
    if gave_up {
        // Named while the holder still holds it (best effort: `None` once it let go).
        let holder = db
            .tables_locked_by()
            .await
            .unwrap_or_else(|| "a session that no longer holds it (try again)".to_owned());
        return db::TablesLocked {
            database: url.to_string(),
            holder,
            waited,
            source: e.into(),
        }
        .into();
    }
    if (own("42703") || own("42P01"))
        && let Err(tampered) = db.verify_tables().await
        && tampered.is::<db::TablesTampered>()
    {
        return tampered;
    }
    e
}

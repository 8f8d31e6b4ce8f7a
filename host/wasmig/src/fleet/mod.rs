//! Fleet mode: one project's migrations run on many targets (databases, schemas of one
//! database, SQLite files), as `wasmig up --targets FILE` or `--fleet`.
//!
//! The revisions are read, built and checksummed once, and every component is compiled once
//! for the whole fleet (one [`Sandbox`] shared by every target, see [`Sandbox::shared`]);
//! each target then runs as `wasmig up` would on it alone, under its own migration lock,
//! with fresh instances and its own connections. Targets run `jobs` at a time, group by
//! group in list order (a canary group first: the next group starts when the last target of
//! this one ended). A failed target stops the run with `on_error = "stop"` (targets under
//! way finish; none starts after), or is reported and passed over with `continue`. The
//! [`Ledger`] records each target as it ends, so a run killed half-way resumes where it
//! stopped.
//!
//! Not here: the targets' grammar and sources (`targets`), the ledger's file (`ledger`),
//! the summary's rendering and exit codes (the CLI).

mod ledger;
mod targets;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config::Project;
use crate::error::ConfigError;
use crate::graph::Direction;
use crate::migrator::{Migrator, RunReport};
use crate::revision::RevisionSet;
use crate::sandbox::Sandbox;

pub use self::ledger::{Ledger, LedgerBusy};
pub use self::targets::{DEFAULT_GROUP, Source, Target, groups, parse};

/// The most targets run at once.
pub const MAX_JOBS: usize = 256;

/// Targets run at once unless `--jobs` or `fleet.jobs` say otherwise.
pub const DEFAULT_JOBS: usize = 4;

/// Where the ledger is unless `--ledger` or `fleet.ledger` say otherwise, in the project.
pub const DEFAULT_LEDGER: &str = ".wasmig/fleet-ledger.jsonl";

/// What a failed target does to the rest of the fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// No target starts after it (those under way finish): the default.
    #[default]
    Stop,
    /// It is reported, and the others run.
    Continue,
}

/// How a fleet runs.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Targets at once.
    pub jobs: usize,
    /// What a failed target does to the rest.
    pub on_error: OnError,
    /// The ledger's file.
    pub ledger: PathBuf,
    /// Ignore what the ledger says an earlier run finished.
    pub fresh: bool,
}

impl FleetOptions {
    /// The options: the command line's, else `[fleet]`'s, else the defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for `jobs` out of range.
    pub fn new(
        project: &Project,
        jobs: Option<usize>,
        on_error: Option<OnError>,
        ledger: Option<PathBuf>,
        fresh: bool,
    ) -> Result<Self, ConfigError> {
        let fleet = &project.config.fleet;
        let jobs = jobs.or(fleet.jobs).unwrap_or(DEFAULT_JOBS);
        if !(1..=MAX_JOBS).contains(&jobs) {
            return Err(ConfigError::new(format!(
                "--jobs {jobs} is not between 1 and {MAX_JOBS}"
            )));
        }
        Ok(FleetOptions {
            jobs,
            on_error: on_error.or(fleet.on_error).unwrap_or_default(),
            ledger: ledger.unwrap_or_else(|| {
                project
                    .root
                    .join(fleet.ledger.as_deref().unwrap_or(DEFAULT_LEDGER.as_ref()))
            }),
            fresh,
        })
    }
}

/// How a target's part of the fleet run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// It ran: its revisions were applied (or reverted), or it had nothing to do.
    Done,
    /// An earlier run of this fleet finished it (the ledger says so): not visited.
    Skipped,
    /// It failed: its error says how, and the database is as `wasmig up` leaves it on
    /// that failure.
    Failed,
    /// It was not started: an earlier target failed and `on_error` is `stop`.
    NotRun,
}

/// One target's part of a fleet run.
#[derive(Debug, Serialize)]
pub struct TargetOutcome {
    /// The target's name.
    pub target: String,
    /// Its group.
    pub group: String,
    /// How it ended.
    pub state: State,
    /// The revisions applied (or reverted) there, in order.
    pub steps: Vec<String>,
    /// Milliseconds from connecting to the end.
    pub duration_ms: u64,
    /// Why it failed, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure, for the exit code of its own (the CLI's).
    #[serde(skip)]
    pub cause: Option<anyhow::Error>,
}

/// What a fleet run did.
#[derive(Debug, Serialize)]
pub struct FleetReport {
    /// Every target, in list order.
    pub targets: Vec<TargetOutcome>,
    /// The failed target that stopped the run (`on_error = "stop"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// Whether an interrupt (Ctrl-C, SIGTERM) stopped the run.
    pub interrupted: bool,
    /// Targets a second interrupt abandoned under way (reported failed).
    #[serde(skip_serializing_if = "is_zero")]
    pub abandoned: usize,
    /// The ledger, when the run left one (not every target done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<PathBuf>,
    /// Milliseconds the whole run took.
    pub duration_ms: u64,
}

impl FleetReport {
    /// How many targets ended in `state`.
    pub fn count(&self, state: State) -> usize {
        self.targets.iter().filter(|t| t.state == state).count()
    }

    /// The run's failure, when a target failed or was not run.
    pub fn failure(&self) -> Option<FleetFailed> {
        let failed = self.count(State::Failed);
        let not_run = self.count(State::NotRun);
        (failed + not_run > 0).then(|| FleetFailed {
            failed,
            not_run,
            succeeded: self.count(State::Done) + self.count(State::Skipped),
            total: self.targets.len(),
        })
    }
}

/// A fleet run in which some targets failed or did not run: exit 16, or 17 when no target
/// succeeded.
#[derive(Debug, thiserror::Error)]
#[error(
    "{failed} of {total} target(s) failed and {not_run} did not run; {succeeded} succeeded{}",
    if *.succeeded == 0 { " (none)" } else { "" }
)]
pub struct FleetFailed {
    /// Targets that failed.
    pub failed: usize,
    /// Targets not started.
    pub not_run: usize,
    /// Targets done (now or by an earlier run).
    pub succeeded: usize,
    /// Every target.
    pub total: usize,
}

/// One target's state, for `wasmig current --targets`.
#[derive(Debug, Serialize)]
pub struct TargetStatus {
    /// The target's name.
    pub target: String,
    /// Its group.
    pub group: String,
    /// The heads it is at (empty: base).
    pub current: Vec<String>,
    /// Revisions not applied there yet.
    pub pending: usize,
    /// Revisions marked failed there.
    pub failed: Vec<String>,
    /// Batched revisions part-way through there.
    pub in_progress: Vec<String>,
    /// Why it could not be read, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure, for the exit code.
    #[serde(skip)]
    pub cause: Option<anyhow::Error>,
}

/// Untrusted mode refuses fleets: a fleet is the operator's rollout, after review. Called
/// before the list is read too: its command or query comes from `wasmig.toml`, which is
/// the change's own in untrusted mode.
///
/// # Errors
/// [`ConfigError`] in untrusted mode.
pub fn refuse_untrusted(migrator: &Migrator) -> Result<(), ConfigError> {
    if migrator.untrusted() {
        return Err(ConfigError::new(
            "untrusted mode refuses fleet runs (--targets, --fleet): rolling migrations out to a fleet is the operator's step after review; run it trusted",
        ));
    }
    Ok(())
}

/// Runs `direction` to `target` (as `wasmig up`/`down` would) on every target of the fleet.
///
/// # Errors
/// Before any target runs: [`ConfigError`] (no targets, untrusted mode, the ledger),
/// [`LedgerBusy`], build and graph errors. A target's failure is in the report, not here.
pub async fn run(
    migrator: &Migrator,
    direction: Direction,
    target: Option<&str>,
    targets: &[Target],
    options: &FleetOptions,
    interrupts: &mut Interrupts,
) -> anyhow::Result<FleetReport> {
    refuse_untrusted(migrator)?;
    if targets.is_empty() {
        return Err(ConfigError::new("the fleet's list has no targets: nothing to run").into());
    }
    let absolute = target.unwrap_or(match direction {
        Direction::Upgrade => "head",
        Direction::Downgrade => "-1",
    });
    if relative(absolute) {
        return Err(ConfigError::new(format!(
            "a fleet takes an absolute target, not `{absolute}`: a relative one names another revision on each target, and a run resumed after a kill would move a target that finished once more; name the revision (REV, base, heads, LABEL@head){}",
            if direction == Direction::Downgrade && target.is_none() {
                " (`down` alone means -1)"
            } else {
                ""
            }
        ))
        .into());
    }
    let started = Instant::now();
    let set = migrator.revisions()?;
    let key = fleet_key(migrator, &set, direction, target);
    let ledger = Ledger::open(&options.ledger, &key, options.fresh)?;
    let sandbox = Arc::new(shared_sandbox(migrator)?);
    let target = target.map(str::to_owned);
    let mut outcomes: Vec<Option<TargetOutcome>> = (0..targets.len()).map(|_| None).collect();
    let mut stopped_by = None;
    let mut interrupted = false;
    let mut abandoned = 0;
    for (group, members) in groups(targets) {
        if stopped_by.is_some() || interrupted {
            break;
        }
        let mut to_run = Vec::new();
        for t in members {
            let index = index_of(targets, t);
            if ledger.is_done(&t.name, &t.identity()) {
                outcomes[index] = Some(outcome(t, State::Skipped, Vec::new(), 0, None));
            } else {
                to_run.push((index, t));
            }
        }
        tracing::info!(
            "fleet: group {group}: {} target(s) to run, {} at a time",
            to_run.len(),
            options.jobs
        );
        let work = |(index, t): (usize, &Target)| {
            let one = migrator.for_target(
                &set,
                t.url.clone(),
                t.schema.clone(),
                Some(Arc::clone(&sandbox)),
            );
            let target = target.clone();
            let span = tracing::info_span!("target", target = %t.name);
            async move {
                let started = Instant::now();
                let result = on_own_thread(span, move || async move {
                    one.run(direction, target.as_deref()).await
                })
                .await;
                (index, result, started.elapsed())
            }
        };
        let on_error = options.on_error;
        let ended =
            |(index, result, elapsed): (usize, anyhow::Result<RunReport>, std::time::Duration)| {
                let t = &targets[index];
                let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                let (done, stop) = match result {
                    Ok(report) => {
                        let steps = steps_of(&report);
                        log_done(t, direction, &steps, ms);
                        ledger.record(&ledger::Entry {
                            target: t.name.clone(),
                            identity: t.identity(),
                            state: "done".into(),
                            at: chrono::Utc::now(),
                            steps: steps.clone(),
                            error: None,
                        });
                        (outcome(t, State::Done, steps, ms, None), false)
                    }
                    Err(e) => {
                        let line = crate::bindings::text::shown(&format!("{e:#}"));
                        tracing::warn!("[{}] failed: {line}", t.name);
                        ledger.record(&ledger::Entry {
                            target: t.name.clone(),
                            identity: t.identity(),
                            state: "failed".into(),
                            at: chrono::Utc::now(),
                            steps: Vec::new(),
                            error: Some(line),
                        });
                        let stop = on_error == OnError::Stop;
                        if stop && stopped_by.is_none() {
                            stopped_by = Some(t.name.clone());
                        }
                        (outcome(t, State::Failed, Vec::new(), ms, Some(e)), stop)
                    }
                };
                outcomes[index] = Some(done);
                stop
            };
        let left = bounded(options.jobs, to_run.clone(), work, ended, interrupts).await;
        for (index, _) in &left.unstarted {
            outcomes[*index] = Some(outcome(
                &targets[*index],
                State::NotRun,
                Vec::new(),
                0,
                None,
            ));
        }
        if left.abandoned {
            // Started, never ended: their step in flight rolls back as wasmig exits.
            for (index, t) in to_run {
                if outcomes[index].is_none() {
                    let cause = anyhow::anyhow!(
                        "interrupted under way: the steps it committed before stay applied, the one in flight rolls back"
                    );
                    outcomes[index] = Some(outcome(t, State::Failed, Vec::new(), 0, Some(cause)));
                    abandoned += 1;
                }
            }
        }
        interrupted |= left.interrupted;
    }
    let targets: Vec<TargetOutcome> = outcomes
        .into_iter()
        .zip(targets)
        .map(|(o, t)| o.unwrap_or_else(|| outcome(t, State::NotRun, Vec::new(), 0, None)))
        .collect();
    let clean = targets
        .iter()
        .all(|t| matches!(t.state, State::Done | State::Skipped));
    let ledger_path = ledger.path().to_path_buf();
    if clean {
        ledger.finish();
    } else {
        drop(ledger);
    }
    Ok(FleetReport {
        targets,
        stopped_by,
        interrupted,
        abandoned,
        ledger: (!clean).then_some(ledger_path),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Every target's state, `jobs` at a time (`wasmig current --targets`). A SQLite target
/// whose file does not exist is at base, and is not created.
///
/// # Errors
/// [`ConfigError`] (no targets); graph errors. A target that cannot be read is in the list.
pub async fn status(
    migrator: &Migrator,
    targets: &[Target],
    jobs: usize,
) -> anyhow::Result<Vec<TargetStatus>> {
    if targets.is_empty() {
        return Err(ConfigError::new("the fleet's list has no targets").into());
    }
    let set = migrator.revisions()?;
    let work = |(index, t): (usize, &Target)| {
        let one = migrator.for_target(&set, t.url.clone(), t.schema.clone(), None);
        let set = set.clone();
        let missing_file = t
            .url
            .strip_prefix("sqlite:")
            .is_some_and(|path| !std::path::Path::new(path).exists());
        let span = tracing::info_span!("target", target = %t.name);
        async move {
            let result = if missing_file {
                set.graph()
                    .pending(&[])
                    .map(|pending| (Vec::new(), pending.len(), Vec::new(), Vec::new()))
                    .map_err(anyhow::Error::from)
            } else {
                one.status(&set).await.map(|s| {
                    (
                        s.heads,
                        s.pending.len(),
                        s.failed.into_iter().map(|f| f.revision).collect(),
                        s.in_progress.into_iter().map(|c| c.revision).collect(),
                    )
                })
            };
            (index, result)
        }
        .instrument(span)
    };
    let items: Vec<(usize, &Target)> = targets.iter().enumerate().collect();
    let mut found = Vec::with_capacity(targets.len());
    // Reads only: nothing to interrupt gracefully (a signal ends the process).
    let (_keep, mut never) = tokio::sync::mpsc::unbounded_channel::<()>();
    bounded(
        jobs,
        items,
        work,
        |(index, result)| {
            let t: &Target = &targets[index];
            let (current, pending, failed, in_progress, cause) = match result {
                Ok((h, p, f, i)) => (h, p, f, i, None),
                Err(e) => (Vec::new(), 0, Vec::new(), Vec::new(), Some(e)),
            };
            found.push(TargetStatus {
                target: t.name.clone(),
                group: t.group.clone(),
                current,
                pending,
                failed,
                in_progress,
                error: cause
                    .as_ref()
                    .map(|e| crate::bindings::text::shown(&format!("{e:#}"))),
                cause,
            });
            false
        },
        &mut never,
    )
    .await;
    found.sort_by_key(|s| index_of_name(targets, &s.target));
    Ok(found)
}

/// What [`bounded`] left: the items never started, and whether it was interrupted (and
/// how: a second interrupt abandons the work under way).
struct Left<I> {
    unstarted: Vec<I>,
    interrupted: bool,
    abandoned: bool,
}

/// Runs `work` on each item, at most `jobs` at once, starting them in order, and hands
/// each result to `ended` as soon as it is there (a fleet's ledger records a target as it
/// ends, not with its group); once `ended` returns true, starts no more. An interrupt
/// (`interrupts`) starts no more either, and lets the work under way finish; a second one
/// abandons it. The futures are polled together on this task (a fleet's targets run on
/// threads of their own, see [`on_own_thread`]).
async fn bounded<I, T, F, Fut>(
    jobs: usize,
    items: Vec<I>,
    work: F,
    mut ended: impl FnMut(T) -> bool,
    interrupts: &mut Interrupts,
) -> Left<I>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut items = items.into_iter();
    let mut stopped = false;
    let mut interrupted = false;
    loop {
        while !stopped && running.len() < jobs.max(1) {
            match items.next() {
                Some(item) => running.push(work(item)),
                None => break,
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = running.next() => match done {
                Some(done) => stopped |= ended(done),
                None => break,
            },
            Some(()) = interrupts.recv() => {
                if interrupted {
                    tracing::warn!(
                        "fleet: interrupted again: abandoning the {} target(s) under way (their step in flight rolls back as wasmig exits)",
                        running.len()
                    );
                    return Left { unstarted: items.collect(), interrupted, abandoned: true };
                }
                interrupted = true;
                stopped = true;
                tracing::warn!(
                    "fleet: interrupted: no other target starts; the {} under way finish (interrupt again to abandon them)",
                    running.len()
                );
            }
        }
    }
    Left {
        unstarted: items.collect(),
        interrupted,
        abandoned: false,
    }
}

/// Interrupts of a fleet run (Ctrl-C, SIGTERM), one `()` each: the first starts no other
/// target and lets those under way finish, a second abandons them. A closed channel never
/// interrupts.
pub type Interrupts = tokio::sync::mpsc::UnboundedReceiver<()>;

/// A fleet run stopped by an interrupt, after its report was printed (exit 130); the same
/// command resumes it from its ledger.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: {not_run} target(s) not run{}; the same command resumes from the ledger",
    if *.abandoned > 0 { format!(", {} abandoned under way (their step in flight rolled back)", .abandoned) } else { String::new() }
)]
pub struct FleetInterrupted {
    /// Targets not started.
    pub not_run: usize,
    /// Targets abandoned under way.
    pub abandoned: usize,
}

/// Runs one target's work on a thread of its own (the runtime's blocking pool), driven there
/// with the runtime's handle: a guest's CPU time or a component's compile in one target
/// does not hold up the others (whose deadlines are wall-clock), and a panic in one target
/// fails that target, not the fleet.
async fn on_own_thread<T, F, Fut>(span: tracing::Span, make: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || handle.block_on(make().instrument(span))).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow::anyhow!(
                "internal error: wasmig panicked on this target ({message}); a bug, please report it; the step in flight did not commit"
            ))
        }
        Err(e) => Err(anyhow::anyhow!("the target's task was cancelled: {e}")),
    }
}

/// The sandbox every target shares, with the compile cache a run would use.
fn shared_sandbox(migrator: &Migrator) -> anyhow::Result<Sandbox> {
    let project = migrator.project();
    let cache = migrator.options().use_cache.then(|| project.cache_dir());
    if let Some(dir) = &cache
        && dir.starts_with(&project.root)
    {
        crate::confined::create_dir_all(&project.root, dir)?;
    }
    Ok(Sandbox::new(
        &project.root,
        cache,
        project.sandbox_settings().sandbox_options(),
    )?
    .shared())
}

/// What names one fleet run in its ledger: the direction, the target revision, and every
/// revision with its checksum (a revision added or changed makes another run): its sources'
/// for a kind wasmig builds (built or not yet), its artifact's for the others.
fn fleet_key(
    migrator: &Migrator,
    set: &RevisionSet,
    direction: Direction,
    target: Option<&str>,
) -> String {
    use sha2::Digest;
    let build_dir = crate::artifact::build_dir(migrator.project());
    let mut hash = sha2::Sha256::new();
    hash.update(format!("{direction:?}\n{}\n", target.unwrap_or("")));
    let mut revisions: Vec<_> = set.revisions().iter().collect();
    revisions.sort_by_key(|r| r.id());
    for r in revisions {
        let checksum = match crate::toolchain::toolchain(r.manifest.kind) {
            Some(_) if r.stored.is_none() => crate::toolchain::source_checksum(r)
                .map_or_else(|_| "unreadable".to_owned(), |c| format!("sources {c}")),
            _ => crate::revision::read_artifact(r, &build_dir)
                .map_or_else(|_| "unreadable".to_owned(), |a| a.checksum()),
        };
        hash.update(format!("{} {checksum}\n", r.id()));
    }
    hex::encode(hash.finalize())
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Whether a target revision is relative to where each database is (`+1`, `-2`, `REV+1`,
/// `LABEL@-1`).
fn relative(target: &str) -> bool {
    let last = target.rsplit('@').next().unwrap_or(target);
    let digits = last.trim_end_matches(|c: char| c.is_ascii_digit());
    digits.len() < last.len() && (digits.ends_with('+') || digits.ends_with('-'))
}

/// The revisions a run's steps applied or reverted.
fn steps_of(report: &RunReport) -> Vec<String> {
    report.steps.iter().map(|s| s.revision.clone()).collect()
}

/// Logs a target's end.
fn log_done(t: &Target, direction: Direction, steps: &[String], ms: u64) {
    if steps.is_empty() {
        tracing::info!("[{}] nothing to do", t.name);
    } else {
        tracing::info!(
            "[{}] {} {} revision(s) in {ms} ms",
            t.name,
            match direction {
                Direction::Upgrade => "applied",
                Direction::Downgrade => "reverted",
            },
            steps.len()
        );
    }
}

fn outcome(
    t: &Target,
    state: State,
    steps: Vec<String>,
    duration_ms: u64,
    cause: Option<anyhow::Error>,
) -> TargetOutcome {
    TargetOutcome {
        target: t.name.clone(),
        group: t.group.clone(),
        state,
        steps,
        duration_ms,
        error: cause
            .as_ref()
            .map(|e| crate::bindings::text::shown(&format!("{e:#}"))),
        cause,
    }
}

/// `t`'s place in the list (targets are told apart by name).
fn index_of(targets: &[Target], t: &Target) -> usize {
    index_of_name(targets, &t.name)
}

fn index_of_name(targets: &[Target], name: &str) -> usize {
    targets
        .iter()
        .position(|x| x.name == name)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn relative_targets_are_told_from_absolute_ones() {
        for r in ["-1", "+2", "ab12-1", "ab12+3", "core@-1", "core@+1"] {
            assert!(relative(r), "{r}");
        }
        for a in [
            "head",
            "heads",
            "base",
            "ab12",
            "core@head",
            "core@base",
            "v2",
        ] {
            assert!(!relative(a), "{a}");
        }
    }
}

//! Batched steps split into key ranges (`[partitions]` in the manifest): run by the workers
//! of `wasmig up --workers N` in this process and by any other `wasmig up` on the same
//! database, each batch committing with its partition's checkpoint under the claim that
//! began it (`db::store::partition`), the step recorded by the run holding the migration
//! lock once every partition is done.
//!
//! The run that holds the lock creates the partitions (the `bounds` query, the ranges, and
//! the step's checkpoint row saying it runs in partitions) in one transaction, then works
//! them with its workers; a run that finds the lock held joins ([`join`]), working
//! partitions without the lock. Partition 0 runs alone until its first batch commits: that
//! batch does the step's one-time work (DDL before a backfill).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::batched::{BatchedStep, LagThrottle, begin_batch, write_batch};
use super::*;
use crate::db::Partition;

/// How often a worker with nothing to claim looks again, while other workers (perhaps in
/// other processes) still hold partitions.
const POLL: Duration = Duration::from_millis(200);

/// What the workers of one partitioned step share.
pub(super) struct Work<'a> {
    pub(super) db: &'a dyn Database,
    pub(super) sandbox: &'a Sandbox,
    pub(super) loaded: &'a Loaded,
    pub(super) step: &'a Step,
    pub(super) limits: Limits,
    pub(super) timeouts: StatementTimeouts,
    pub(super) policy: Policy,
    pub(super) journal: Option<Arc<crate::sandbox::journal::Journal>>,
    pub(super) throttle: crate::config::ThrottleSettings,
    /// How long a claim lasts unrenewed (renewed by every batch).
    pub(super) lease: Duration,
    /// The worker's name in the claims: host, process, worker.
    pub(super) owner: String,
}

/// What the workers of this process share: what they did, and the throttles.
struct Tally {
    /// Batches committed by this process's workers.
    batches: AtomicU64,
    started: Instant,
    /// `max_rows_per_sec`: one bucket for every worker of the process.
    rate: Option<Arc<crate::sandbox::throttle::RowRate>>,
    /// `max_batches_per_sec`: when the next batch of any worker may start.
    next_batch: tokio::sync::Mutex<Option<Instant>>,
    /// `max_replication_lag_secs`: the batches the workers committed that a standby may
    /// not have replayed yet.
    lag: Option<tokio::sync::Mutex<LagThrottle>>,
}

impl Work<'_> {
    /// Runs `workers` workers until every partition is done (by them or by workers
    /// elsewhere); returns the batches they committed.
    ///
    /// # Errors
    /// The first worker's failure (a batch that failed, a limit of one run); the others
    /// stop after the batch they are running, and give their partitions back.
    pub(super) async fn run(&self, workers: u32) -> Result<u64, Failure> {
        let tally = Tally {
            batches: AtomicU64::new(0),
            started: Instant::now(),
            rate: self.throttle.row_rate(),
            next_batch: tokio::sync::Mutex::new(None),
            lag: self
                .throttle
                .max_replication_lag()
                .map(|ceiling| tokio::sync::Mutex::new(LagThrottle::new(ceiling))),
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let results = futures_util::future::join_all(
            (0..workers.max(1)).map(|w| self.worker(w, &tally, &stop)),
        )
        .await;
        let batches = tally.batches.load(Ordering::Relaxed);
        for result in results {
            result?;
        }
        Ok(batches)
    }

    /// One worker: claims partitions and runs them until none is left to claim and every
    /// partition is done.
    async fn worker(
        &self,
        worker: u32,
        tally: &Tally,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), Failure> {
        let owner = format!("{}/{worker}", self.owner);
        let revision = &self.step.revision;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(limit) = batched::batch_limit(
                tally.batches.load(Ordering::Relaxed),
                tally.started,
                &self.limits,
            ) {
                stop.store(true, Ordering::Relaxed);
                return Err(limit);
            }
            let failed = |e: anyhow::Error| {
                stop.store(true, Ordering::Relaxed);
                Failure::Host(e)
            };
            let claimed = {
                let mut reader = self.db.reader().await.map_err(failed)?;
                self.db
                    .store()
                    .claim_partition(
                        reader.driver(),
                        revision,
                        &owner,
                        self.lease.as_millis() as i64,
                    )
                    .await
                    .map_err(failed)?
            };
            let Some(partition) = claimed else {
                let partitions = {
                    let mut reader = self.db.reader().await.map_err(failed)?;
                    self.db
                        .store()
                        .partitions(reader.driver(), revision)
                        .await
                        .map_err(failed)?
                };
                if partitions.iter().all(|p| p.done) {
                    return Ok(());
                }
                tokio::time::sleep(POLL).await;
                continue;
            };
            tracing::debug!(
                "{revision}: {owner} claimed partition {} of {} (keys {}..={}, {} batch(es) committed before)",
                partition.part + 1,
                partition.parts,
                partition.first_key,
                partition.last_key,
                partition.batches
            );
            match self.partition(&partition, tally, stop).await {
                Ok(()) => {}
                Err(failure) => {
                    stop.store(true, Ordering::Relaxed);
                    self.give_back(&partition).await;
                    return Err(failure);
                }
            }
        }
    }

    /// Gives a claim back at once (a worker that stops), so another worker need not wait
    /// out the lease; a release that fails leaves the lease to run out.
    async fn give_back(&self, claimed: &Partition) {
        if let Ok(mut reader) = self.db.reader().await {
            let _ = self
                .db
                .store()
                .release_partition(
                    reader.driver(),
                    &self.step.revision,
                    claimed.part,
                    claimed.token,
                )
                .await;
        }
    }

    /// Runs a claimed partition's batches until it is done, the claim is lost (another
    /// worker took it over after the lease ran out), or the workers stop.
    async fn partition(
        &self,
        claimed: &Partition,
        tally: &Tally,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), Failure> {
        let revision = &self.step.revision;
        let rate = tally.rate.clone();
        let interval = self.throttle.batch_interval();
        let mut checkpoint = claimed.checkpoint.clone();
        let mut committed = claimed.batches;
        let mut progress = Progress::new(format!(
            "{revision} (partition {} of {})",
            claimed.part + 1,
            claimed.parts
        ));
        let lease_ms = self.lease.as_millis() as i64;
        loop {
            // The limits of one run, between batches, as for one walk: a guest alternating
            // two checkpoints stops here.
            let limit = batched::batch_limit(
                tally.batches.load(Ordering::Relaxed),
                tally.started,
                &self.limits,
            );
            if let Some(limit) = limit {
                return Err(limit);
            }
            if stop.load(Ordering::Relaxed) {
                self.give_back(claimed).await;
                return Ok(());
            }
            // At most max_batches_per_sec over the process's workers: each takes the next
            // start an interval after the last one taken.
            if let Some(interval) = interval {
                let start = {
                    let mut next = tally.next_batch.lock().await;
                    let start = next.map_or_else(Instant::now, |n| n.max(Instant::now()));
                    *next = Some(start + interval);
                    start
                };
                tokio::time::sleep_until(start.into()).await;
            }
            if let Some(lag) = &tally.lag {
                lag.lock().await.wait(self.db, revision).await;
            }
            if let Some(rate) = &rate {
                rate.wait(self.limits.deadline_from_now()).await;
            }
            let batch = committed + 1;
            let in_batch = |cause: Failure| Failure::Batch {
                revision: revision.clone(),
                direction: self.step.action,
                batch,
                cause: Box::new(cause),
            };
            let mut session = begin_batch(self.db, &self.timeouts, self.policy.clone())
                .await
                .map_err(in_batch)?;
            // The claim, checked with the row locked for the whole batch.
            let fenced = {
                let (store, driver) = session.books();
                store
                    .fence_partition(driver, revision, claimed.part, claimed.token)
                    .await
            };
            let fenced = match fenced {
                Ok(true) => {
                    let (store, driver) = session.books();
                    store.batch_table_writes(driver).await.map(Some)
                }
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            let writes_before = match fenced {
                Ok(Some(writes)) => writes,
                Ok(None) => {
                    let _ = session.rollback().await;
                    tracing::info!(
                        "{revision}: partition {} of {} was taken over by another worker after this one's lease ran out; this worker leaves it",
                        claimed.part + 1,
                        claimed.parts
                    );
                    return Ok(());
                }
                Err(e) => {
                    let _ = session.rollback().await;
                    return Err(in_batch(Failure::Host(e)));
                }
            };
            let returned = self
                .sandbox
                .run(
                    self.loaded,
                    Call {
                        revision,
                        direction: self.step.action,
                        session,
                        limits: self.limits,
                        deadline: self.limits.deadline_from_now(),
                        checkpoint: Some(checkpoint.clone()),
                        progress,
                        journal: self.journal.clone(),
                        rate: rate.clone(),
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
                Ok(Some(next)) if next == checkpoint => {
                    Err(repeated_checkpoint(batch as u64, &next))
                }
                other => other,
            };
            let next = match next {
                Ok(next) => next,
                Err(failure) => {
                    let failure = roll_back(session, revision, failure, true).await;
                    return Err(in_batch(failure));
                }
            };
            let saved = tokio::time::timeout(self.limits.timeout, async {
                check_intact(&mut session, true).await?;
                // The guest's own SQL must not have written the partitions or the
                // checkpoints: ending other ranges, or forging a later step's progress.
                let (store, driver) = session.books();
                let writes = store
                    .batch_table_writes(driver)
                    .await
                    .map_err(Failure::Host)?;
                if writes != writes_before {
                    return Err(Failure::Host(
                        crate::db::TablesTampered(format!(
                            "the SQL of {revision} wrote {} or {} in a batch of partition {}",
                            crate::db::PARTITION_TABLE,
                            crate::db::CHECKPOINT_TABLE,
                            claimed.part + 1
                        ))
                        .into(),
                    ));
                }
                let (store, driver) = session.books();
                store
                    .save_partition(
                        driver,
                        revision,
                        (claimed.part, claimed.token),
                        next.as_deref(),
                        batch,
                        lease_ms,
                    )
                    .await
                    .map_err(Failure::Host)
            })
            .await
            .unwrap_or(Err(Failure::Deadline(self.limits.timeout)));
            if let Err(failure) = saved {
                let failure = roll_back(session, revision, failure, true).await;
                return Err(in_batch(failure));
            }
            commit(session, self.limits.timeout)
                .await
                .map_err(in_batch)?;
            tally.batches.fetch_add(1, Ordering::Relaxed);
            if let Some(lag) = &tally.lag {
                lag.lock().await.committed(self.db).await;
            }
            committed = batch;
            match next {
                Some(next) => checkpoint = next,
                None => {
                    tracing::debug!(
                        "{revision}: partition {} of {} done after {batch} batch(es)",
                        claimed.part + 1,
                        claimed.parts
                    );
                    return Ok(());
                }
            }
        }
    }
}

/// The worker's name in its claims: the host, the process and a random part, so two runs
/// never share one.
pub(crate) fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}

/// Starts a partitioned step: runs the `bounds` query, creates the partitions and the
/// step's checkpoint row (which says it runs in partitions) in one transaction.
///
/// # Errors
/// [`Failure::Sql`] when the bounds query fails, [`Failure::GuestError`] when it does not
/// return two 64-bit integers (or NULLs), a host failure writing the rows.
pub(super) async fn create(
    work: &Work<'_>,
    batched: &BatchedStep<'_>,
    count: u32,
    bounds: &str,
) -> Result<usize, Failure> {
    let revision = &work.step.revision;
    let mut session = begin_batch(work.db, &work.timeouts, work.policy.clone()).await?;
    let created = async {
        let result = session.query(bounds, &[]).await.map_err(|e| {
            if crate::db::is_connection_failure(&e.code) {
                Failure::connection_lost(&e)
            } else {
                Failure::Sql(Box::new(e))
            }
        })?;
        let range = bounds_of(&result).map_err(|what| {
            Failure::GuestError(format!(
                "the [partitions] bounds query of {revision} returned {what}; it must return one row of two 64-bit integers, the least and greatest key (`SELECT min(id), max(id) FROM ...`)"
            ))
        })?;
        let ranges = Partition::ranges(count, range);
        check_intact(&mut session, true).await?;
        let saved = Checkpoint {
            revision: revision.clone(),
            direction: work.step.action,
            remove_heads: work.step.remove_heads.clone(),
            add_heads: work.step.add_heads.clone(),
            checkpoint: Partition::step_checkpoint(ranges.len() as i64),
            batches: 0,
            checksum: batched.checksum.to_owned(),
            started_at: batched.started_at,
            updated_at: Utc::now(),
        };
        // The checkpoint first: its save checks the tables, and refuses a transaction that
        // already wrote the partitions.
        session
            .save_checkpoint(&saved)
            .await
            .map_err(Failure::Host)?;
        {
            // Rows of this revision without its checkpoint row are none of wasmig's (a
            // run that began the step wrote both at once): gone before the real ones.
            let (store, driver) = session.books();
            store
                .clear_partitions(driver, revision)
                .await
                .map_err(Failure::Host)?;
            let (store, driver) = session.books();
            store
                .create_partitions(driver, revision, &ranges)
                .await
                .map_err(Failure::Host)?;
        }
        match range {
            Some((min, max)) => tracing::info!(
                "{revision}: {} partition(s) of the keys {min}..={max} (rows added outside them later fall in the first or last)",
                ranges.len()
            ),
            None => tracing::info!("{revision}: the bounds query found no keys: one partition"),
        }
        Ok(ranges.len())
    }
    .await;
    match created {
        Ok(n) => {
            commit(session, work.limits.timeout).await?;
            Ok(n)
        }
        Err(failure) => Err(roll_back(session, revision, failure, true).await),
    }
}

/// The least and greatest key of a bounds query's result: `None` for NULLs (no rows to
/// walk); what it returned instead, for the message.
fn bounds_of(result: &crate::bindings::QueryResult) -> Result<Option<(i64, i64)>, String> {
    use crate::bindings::Value;
    let int = |v: &Value| match v {
        Value::Int64(i) => Ok(Some(*i)),
        Value::Int32(i) => Ok(Some(i64::from(*i))),
        Value::Int16(i) => Ok(Some(i64::from(*i))),
        Value::Null => Ok(None),
        other => Err(format!("a {} value", value_kind(other))),
    };
    match result.rows.as_slice() {
        [row] if row.len() == 2 => match (int(&row[0])?, int(&row[1])?) {
            (Some(min), Some(max)) => Ok(Some((min, max))),
            _ => Ok(None),
        },
        [row] => Err(format!("{} column(s)", row.len())),
        rows => Err(format!("{} rows", rows.len())),
    }
}

fn value_kind(v: &crate::bindings::Value) -> &'static str {
    use crate::bindings::Value;
    match v {
        Value::Bool(_) => "boolean",
        Value::Float32(_) | Value::Float64(_) => "floating-point",
        Value::Numeric(_) => "numeric",
        Value::Text(_) => "text",
        _ => "non-integer",
    }
}

/// Records a partitioned step once every partition is done, in a transaction of its own
/// under the migration lock: the partitions deleted, then the step's record as a batched
/// step's last batch writes it. `Ok(false)`: a partition is not done after all (it was
/// claimed again), nothing written.
pub(super) async fn record(
    work: &Work<'_>,
    batched: &BatchedStep<'_>,
    parts: i64,
) -> Result<bool, Failure> {
    let revision = &work.step.revision;
    let mut session = begin_batch(work.db, &work.timeouts, Policy::TRUSTED).await?;
    let open = {
        let (store, driver) = session.books();
        store.finish_partitions(driver, revision, parts).await
    };
    match open {
        Ok(0) => {}
        Ok(_) => {
            let _ = session.rollback().await;
            return Ok(false);
        }
        Err(e) => return Err(roll_back(session, revision, Failure::Host(e), false).await),
    }
    // The record first: its tamper check refuses a transaction that already wrote the
    // partitions, so they go after it.
    let written = tokio::time::timeout(work.limits.timeout, async {
        write_batch(&mut session, batched, 1, None, true).await?;
        let (store, driver) = session.books();
        store
            .clear_partitions(driver, revision)
            .await
            .map_err(Failure::Host)
    })
    .await
    .unwrap_or(Err(Failure::Deadline(work.limits.timeout)));
    if let Err(failure) = written {
        return Err(roll_back(session, revision, failure, false).await);
    }
    commit(session, work.limits.timeout).await?;
    Ok(true)
}

/// Joins the partitioned step `checkpoint` of another run (which holds the migration lock)
/// with `workers` workers: works its partitions until every one is done, and leaves the
/// record to that run. Returns the batches committed here.
///
/// # Errors
/// [`ResumeModified`] when this checkout's artifact of the revision is not the one the step
/// began with (unless `allow_modified`); the artifact's and the sandbox's errors; a
/// [`MigrationError`] for a batch that failed.
pub async fn join(
    project: &Project,
    db: &dyn Database,
    revision: &Revision,
    checkpoint: &Checkpoint,
    options: &RunOptions,
) -> anyhow::Result<u64> {
    let build_dir = crate::artifact::build_dir(project);
    let step = Step {
        action: checkpoint.direction,
        revision: checkpoint.revision.clone(),
        remove_heads: checkpoint.remove_heads.clone(),
        add_heads: checkpoint.add_heads.clone(),
    };
    revision::check_artifact(revision, &build_dir)?;
    let current = revision::read_artifact(revision, &build_dir)?.checksum();
    if current != checkpoint.checksum {
        let changed = ResumeModified {
            revision: step.revision.clone(),
            direction: step.action,
            recorded: checkpoint.checksum.clone(),
            current,
        };
        if !options.allow_modified {
            return Err(changed.into());
        }
        tracing::warn!("{changed} (joining anyway: --allow-modified)");
    }
    check_capabilities(project, revision)?;
    let sandbox = match &options.sandbox {
        Some(shared) => Arc::clone(shared),
        None => Arc::new(new_sandbox(project, options.use_cache)?),
    };
    let ready = prepare(revision, &step, &build_dir, Some(&sandbox), None)?;
    let Some(loaded) = &ready.loaded else {
        unreachable!("a partitioned step is a component's")
    };
    let work = Work {
        db,
        sandbox: &sandbox,
        loaded,
        step: &step,
        limits: limits(project, revision)?,
        timeouts: timeouts(project, revision)?,
        policy: policy(project, options, revision),
        journal: options.journal.clone(),
        throttle: project.config.throttle,
        lease: project.config.lock_settings()?.lease,
        owner: owner_name(),
    };
    tracing::info!(
        "{}: another run holds the migration lock and is running this revision in partitions; joining it with {} worker(s)",
        step.revision,
        options.workers.max(1)
    );
    work.run(options.workers).await.map_err(|failure| {
        anyhow::Error::from(MigrationError {
            revision: step.revision.clone(),
            direction: step.action,
            failure,
            completed: Vec::new(),
        })
    })
}

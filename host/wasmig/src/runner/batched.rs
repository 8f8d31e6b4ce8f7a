//! `transaction = "batched"` steps: one transaction per call of the guest, each committing
//! with its checkpoint, the last with the step's record; the limits of one run between
//! batches.

use super::*;

/// What [`run_batched`] needs of its step.
pub(super) struct Batched<'a> {
    pub(super) step: &'a Step,
    pub(super) checksum: &'a str,
    /// The copy to store with the last batch (upgrades).
    pub(super) to_store: Option<&'a StoredArtifact>,
    pub(super) limits: Limits,
    pub(super) timeouts: StatementTimeouts,
    /// The checkpoint an earlier run left, to resume from.
    pub(super) resume: Option<Checkpoint>,
    /// What wasmig's tables must hold before the last batch records the step.
    pub(super) expected: Expected,
    /// What the guest's statements are held to.
    pub(super) policy: Policy,
    /// The run's journal, if it keeps one.
    pub(super) journal: Option<std::sync::Arc<crate::sandbox::journal::Journal>>,
    /// The limits between batches and on the guest's writes (`[throttle]`).
    pub(super) throttle: crate::config::ThrottleSettings,
}

/// Runs a `transaction = "batched"` step: one transaction per call, each committing with
/// its checkpoint, the last with the step's record. Returns how many calls this run made.
///
/// # Errors
/// [`Failure::Batch`] for the failed batch (rolled back; the earlier ones stay committed).
pub(super) async fn run_batched(
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
        expected,
        policy,
        journal,
        throttle,
    } = batched;
    let mut lag = throttle.max_replication_lag().map(LagThrottle::new);
    let rate = throttle.row_rate();
    let interval = throttle.batch_interval();
    let mut last_batch: Option<Instant> = None;
    let started_at = resume.as_ref().map_or_else(Utc::now, |c| c.started_at);
    let batched_step = BatchedStep {
        step,
        checksum,
        to_store,
        started_at,
        expected: &expected,
    };
    let mut committed = resume.as_ref().map_or(0, |c| c.batches);
    let mut checkpoint = resume.as_ref().map(|c| c.checkpoint.clone());
    let had_checkpoint = resume.is_some();
    let mut calls = 0;
    let run_started = Instant::now();
    loop {
        // The limits of one run, checked between batches: a guest that never stops asking
        // for another batch (two checkpoints in turn) stops here, its work committed.
        if calls > 0
            && let Some(limit) = batch_limit(calls, run_started, &limits)
        {
            return Err(limit);
        }
        if calls > 0
            && let Some(lag) = &mut lag
        {
            lag.wait(db, &step.revision).await;
        }
        // At most max_batches_per_sec: the next batch starts an interval after the last.
        if let (Some(interval), Some(last)) = (interval, last_batch) {
            let due = last + interval;
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        last_batch = Some(Instant::now());
        // The rows the last batches wrote are paid off before this one's transaction
        // begins, not inside it.
        if let Some(rate) = &rate {
            rate.wait(limits.deadline_from_now()).await;
        }
        calls += 1;
        let batch = committed + 1;
        let in_batch = |cause: Failure| Failure::Batch {
            revision: step.revision.clone(),
            direction: step.action,
            batch,
            cause: Box::new(cause),
        };
        let session = begin_batch(db, &timeouts, policy.clone())
            .await
            .map_err(in_batch)?;
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
                    journal: journal.clone(),
                    rate: rate.clone(),
                },
            )
            .await;
        progress = returned.progress;
        let Some(session) = returned.session else {
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
                let failure = roll_back(session, &step.revision, failure, true).await;
                return Err(in_batch(failure));
            }
        };
        commit_batch(
            session,
            &batched_step,
            batch,
            next.as_deref(),
            had_checkpoint,
            limits.timeout,
        )
        .await
        .map_err(in_batch)?;
        match next {
            Some(next) => {
                tracing::debug!(
                    "{}: batch {batch} committed with its checkpoint",
                    step.revision
                );
                if let Some(lag) = &mut lag {
                    lag.committed(db).await;
                }
                committed = batch;
                checkpoint = Some(next);
            }
            None => {
                tracing::debug!(
                    "{}: last batch ({batch}) committed with the version-table update",
                    step.revision
                );
                if let Some(rate) = &rate {
                    rate.report(&step.revision);
                }
                return Ok(calls);
            }
        }
    }
}

/// The replication-lag throttle (`[throttle] max_replication_lag_secs`): before each batch,
/// waits while a standby is behind this step's batches by more than the ceiling, or would be
/// once it has replayed what is already committed and the next batch.
///
/// Two rules, both from the server's positions: the oldest batch a standby has not replayed
/// is older than the ceiling; or the WAL this step committed that the slowest standby has not
/// replayed, plus one more batch's worth, would take it longer than the ceiling at the pace it
/// has replayed so far. The first alone lets the lag grow to the ceiling times the primary's
/// pace over the standby's (the batches committed within the ceiling still have to be
/// replayed); the second stops the batches early enough for them to be.
pub(super) struct LagThrottle {
    ceiling: Duration,
    /// (WAL position after the commit, when) of each batch not known to be replayed.
    pending: std::collections::VecDeque<(i64, Instant)>,
    /// The WAL the last batch wrote (bytes), the estimate of the next one's.
    batch_bytes: Option<i64>,
    /// The position after the last commit this throttle noted.
    last_commit: Option<i64>,
    /// The slowest standby's replay position when it last moved, and when it was seen.
    replayed: Option<(i64, Instant)>,
    /// The slowest standby's replay pace, bytes per second (moving average), once seen.
    pace: Option<f64>,
}

impl LagThrottle {
    pub(super) fn new(ceiling: Duration) -> Self {
        LagThrottle {
            ceiling,
            pending: std::collections::VecDeque::new(),
            batch_bytes: None,
            last_commit: None,
            replayed: None,
            pace: None,
        }
    }

    /// Notes a batch just committed.
    pub(super) async fn committed(&mut self, db: &dyn Database) {
        match db.wal_positions().await {
            Ok(Some(at)) => {
                if let Some(last) = self.last_commit
                    && at.current > last
                {
                    self.batch_bytes = Some(at.current - last);
                }
                self.last_commit = Some(at.current);
                self.pending.push_back((at.current, Instant::now()));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("replication-lag throttle: {e:#}"),
        }
    }

    /// Takes in the slowest standby's replay position read now: its pace, from how far it
    /// moved since it last moved (a standby reports its position when WAL arrives, when it
    /// has replayed all it received, and every `wal_receiver_status_interval`: a pace
    /// averaged over a stale report is lower than the real one, which only waits longer).
    fn saw(&mut self, replayed: i64, now: Instant) {
        match self.replayed {
            Some((before, at)) if replayed > before => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    let pace = (replayed - before) as f64 / secs;
                    self.pace = Some(match self.pace {
                        Some(p) => 0.5 * p + 0.5 * pace,
                        None => pace,
                    });
                }
                self.replayed = Some((replayed, now));
            }
            Some(_) => {}
            None => self.replayed = Some((replayed, now)),
        }
    }

    /// How long the next batch would wait to be replayed if it began now (the WAL of this
    /// step not yet replayed, and one batch more, at the standby's pace), once a pace is
    /// known.
    fn foreseen(&self, replayed: i64) -> Option<Duration> {
        let pace = self.pace.filter(|p| *p > 0.0)?;
        let backlog = self.last_commit.map_or(0, |c| (c - replayed).max(0));
        let bytes = backlog + self.batch_bytes.unwrap_or(0);
        Duration::try_from_secs_f64(bytes as f64 / pace).ok()
    }

    /// Waits while a standby is behind by more than the ceiling, or would be (see
    /// [`LagThrottle`]).
    pub(super) async fn wait(&mut self, db: &dyn Database, revision: &str) {
        let mut logged = false;
        loop {
            if self.pending.is_empty() {
                return;
            }
            let positions = match db.wal_positions().await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("replication-lag throttle: {e:#}");
                    return;
                }
            };
            let Some(replayed) = positions.slowest_replayed else {
                // No standby (any more): nothing to wait for.
                self.pending.clear();
                return;
            };
            self.saw(replayed, Instant::now());
            while self
                .pending
                .front()
                .is_some_and(|&(lsn, _)| lsn <= replayed)
            {
                self.pending.pop_front();
            }
            let behind = match self.pending.front() {
                Some(&(_, oldest)) => oldest.elapsed(),
                None => return,
            };
            let foreseen = self.foreseen(replayed).unwrap_or_default();
            if behind <= self.ceiling && foreseen <= self.ceiling {
                return;
            }
            if !logged {
                tracing::info!(
                    "{revision}: waiting for the standbys to replay this step's batches (the slowest is {} ms behind, and would be {} ms behind the next batch at its pace; max_replication_lag_secs = {})",
                    behind.as_millis(),
                    foreseen.as_millis(),
                    self.ceiling.as_secs_f64()
                );
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Writes what a batch commits with ([`write_batch`]) and commits it.
pub(super) async fn commit_batch(
    mut session: Box<dyn Session>,
    batched: &BatchedStep<'_>,
    batch: i64,
    next: Option<&str>,
    had_checkpoint: bool,
    bound: std::time::Duration,
) -> Result<(), Failure> {
    // Bounded by the batch's time limit, as the batch was: the record may wait on a lock,
    // or on a server that stopped answering.
    let written = tokio::time::timeout(
        bound,
        write_batch(&mut session, batched, batch, next, had_checkpoint),
    )
    .await
    .unwrap_or(Err(Failure::Deadline(bound)));
    if let Err(failure) = written {
        return Err(roll_back(session, &batched.step.revision, failure, true).await);
    }
    super::commit(session, bound).await
}

/// The limit of one run a batched step reached after `calls` batches, if any.
pub(super) fn batch_limit(calls: u64, started: Instant, limits: &Limits) -> Option<Failure> {
    let limit = if calls >= limits.max_batches {
        format!("max_batches = {}", limits.max_batches)
    } else if started.elapsed() >= limits.batched_timeout {
        format!(
            "batched_timeout_secs = {}",
            limits.batched_timeout.as_secs_f64()
        )
    } else {
        return None;
    };
    Some(Failure::BatchLimit {
        batches: calls,
        limit,
    })
}

/// Begins a batch's own transaction, with the step's statement timeouts and SQL policy.
pub(super) async fn begin_batch(
    db: &dyn Database,
    timeouts: &StatementTimeouts,
    policy: Policy,
) -> Result<Box<dyn Session>, Failure> {
    let mut session = db.begin().await.map_err(Failure::Host)?;
    session.set_policy(policy);
    if timeouts.any()
        && let Err(e) = session
            .set_timeouts(timeouts.lock(), timeouts.statement())
            .await
    {
        let _ = session.rollback().await;
        return Err(Failure::Host(e));
    }
    Ok(session)
}

/// What every batch of a batched step records.
pub(super) struct BatchedStep<'a> {
    pub(super) step: &'a Step,
    pub(super) checksum: &'a str,
    pub(super) to_store: Option<&'a StoredArtifact>,
    pub(super) started_at: chrono::DateTime<Utc>,
    /// What wasmig's tables must hold before the last batch records the step.
    pub(super) expected: &'a Expected,
}

/// Writes what a batch commits with: its checkpoint when the guest asked for another batch
/// (`next`), else the step's record (the last batch).
pub(super) async fn write_batch(
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
        expected,
    } = *batched;
    match next {
        Some(next) => {
            check_intact(session, true).await?;
            let saved = Checkpoint {
                revision: step.revision.clone(),
                direction: step.action,
                remove_heads: step.remove_heads.clone(),
                add_heads: step.add_heads.clone(),
                checkpoint: next.to_owned(),
                batches: batch,
                checksum: checksum.to_owned(),
                started_at,
                updated_at: Utc::now(),
            };
            session
                .save_checkpoint(&saved)
                .await
                .map_err(wasmigs_write_failed)
        }
        None => {
            let finishing = Finishing {
                step,
                checksum,
                started_at,
                to_store,
                had_checkpoint: had_checkpoint || batch > 1,
                expected,
            };
            finish(session, &finishing, true).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_throttle_foresees_the_backlog_at_the_standbys_pace() {
        let mut lag = LagThrottle::new(Duration::from_secs(2));
        let t0 = Instant::now();
        // No pace seen yet: nothing foreseen (the age rule alone holds).
        lag.saw(1_000, t0);
        assert_eq!(lag.foreseen(1_000), None);
        // Batches of 1 MB each, committed up to 10 MB.
        lag.last_commit = Some(10_000_000);
        lag.batch_bytes = Some(1_000_000);
        // The standby replayed 2 MB in a second: 2 MB/s.
        lag.saw(2_001_000, t0 + Duration::from_secs(1));
        assert_eq!(lag.pace, Some(2_000_000.0));
        // 8 MB not replayed, and 1 MB more: 4.5 s at 2 MB/s, over the 2 s ceiling.
        let foreseen = lag.foreseen(2_001_000).unwrap();
        assert!(
            (foreseen.as_secs_f64() - 4.4995).abs() < 0.001,
            "{foreseen:?}"
        );
        // A report that did not move changes nothing; the next move averages in.
        lag.saw(2_001_000, t0 + Duration::from_secs(2));
        lag.saw(8_001_000, t0 + Duration::from_secs(3));
        assert_eq!(lag.pace, Some(0.5 * 2_000_000.0 + 0.5 * 3_000_000.0));
        // Nearly caught up: 2 MB left and one batch, at 2.5 MB/s, is 1.2 s.
        let foreseen = lag.foreseen(8_001_000).unwrap();
        assert!(foreseen < lag.ceiling, "{foreseen:?}");
    }
}

//! `transaction = "none"` SQL steps (and scripts with DDL under `execution =
//! "per-statement"`): the script's statements each autocommitted, then the record in a
//! transaction of its own; a failure part-way marks the revision failed.

use super::*;

/// One step of a `transaction = "none"` SQL revision: the script's statements each
/// autocommitted, then the version-table update in a transaction of its own. A failure
/// after the first statement ran marks the revision failed.
///
/// # Errors
/// The step's [`Failure`]: the plain SQL error when nothing ran, else
/// [`Failure::NotRolledBack`].
pub(super) async fn run_autocommitted(
    db: &dyn Database,
    step: &Step,
    script: &str,
    checksum: &str,
    to_store: Option<&StoredArtifact>,
    how: How<'_>,
) -> Result<(), Failure> {
    let How {
        timeouts,
        policy,
        per_statement,
    } = how;
    let started_at = Utc::now();
    // Marked failed before the first statement runs, so a wasmig killed half-way leaves
    // the mark (and `up` refuses until someone resolves it) rather than a silent half.
    let provisional = FailedMark {
        revision: step.revision.clone(),
        direction: step.action,
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
        .run_autocommit(script, &policy, timeouts.lock(), timeouts.statement())
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
                    "{}: nothing ran, but its interrupted mark could not be cleared ({e:#}); resolving {} as rolled back clears it",
                    step.revision,
                    step.revision
                );
            }
            // The check's refusals (and its parser's syntax errors) ran nothing; a failed
            // connection is what `from_sql` makes of it.
            return Err(
                if matches!(
                    error.code.as_str(),
                    "WASMIG-STATE" | "WASMIG-POLICY" | "42601"
                ) {
                    Failure::Refused(error)
                } else {
                    Failure::from_sql(*error)
                },
            );
        }
        Err(ScriptFailure {
            statement,
            total,
            error,
        }) => (statement, total, script_failure(&error), *error),
    };
    let stopped = Stopped {
        statement,
        total,
        error,
        per_statement: per_statement.map(str::to_owned),
    };
    Err(mark_failed(db, step, checksum, started_at, stopped, cause).await)
}

/// The failure of a script stopped at a statement: a statement's own error, or what the
/// backend found between two statements (MySQL reads wasmig's rows and the lock back after
/// each): rows only wasmig writes written (`WASMIG-TAMPERED`, exit 12), or the lock taken
/// from the run (`WASMIG-LOCK`, exit 11). No server sends a `WASMIG-` code.
fn script_failure(error: &SqlError) -> Failure {
    match error.code.as_str() {
        "WASMIG-TAMPERED" => Failure::Host(crate::db::TablesTampered(error.message.clone()).into()),
        "WASMIG-LOCK" => {
            Failure::Host(anyhow::Error::new(crate::db::LockLost).context(error.message.clone()))
        }
        _ => Failure::from_sql(error.clone()),
    }
}

/// How a step's statements run one by one.
pub(super) struct How<'a> {
    /// The step's `lock_timeout` and `statement_timeout`, for each statement.
    pub(super) timeouts: &'a StatementTimeouts,
    /// What the statements are held to.
    pub(super) policy: Policy,
    /// Why they run one by one, when not for `transaction = "none"` (`execution`).
    pub(super) per_statement: Option<&'a str>,
}

/// Where a non-transactional script stopped.
pub(super) struct Stopped {
    pub(super) statement: usize,
    pub(super) total: usize,
    pub(super) error: SqlError,
    /// Why it ran statement by statement, when not for `transaction = "none"`.
    pub(super) per_statement: Option<String>,
}

/// Records that a `transaction = "none"` step stopped part-way (a `failed` history row
/// and its mark, in a transaction of their own) and returns the step's failure.
pub(super) async fn mark_failed(
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
        per_statement,
    } = stopped;
    let finished_at = Utc::now();
    // The server's text is stored as data: one line, capped (it could be megabytes).
    let message = format!(
        "{} stopped at statement {statement} of {total}: {}",
        step.action.as_str(),
        crate::bindings::text::shown(&error.message)
    );
    let code = crate::bindings::text::shown(&error.code);
    let mark = FailedMark {
        revision: step.revision.clone(),
        direction: step.action,
        remove_heads: step.remove_heads.clone(),
        add_heads: step.add_heads.clone(),
        statement: statement as i64,
        error: message.clone(),
        sqlstate: Some(code.clone()),
        failed_at: finished_at,
    };
    let record = StepRecord {
        remove: &[],
        add: &[],
        revision: &step.revision,
        direction: Event::Failed,
        checksum,
        started_at,
        finished_at,
        error: Some(&message),
        sqlstate: Some(&code),
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
        per_statement,
        postgres: db.dialect() == crate::bindings::Dialect::Postgres,
    }
}

/// What [`record_in_own_transaction`] writes beside the history row.
pub(super) enum Recorded<'a> {
    /// A completed step: its artifact stored (upgrade) or forgotten (downgrade).
    Step(Option<&'a StoredArtifact>),
    /// A failure: the failed mark (the artifact table stays as it was).
    Failure(&'a FailedMark),
}

/// Records a step (and its artifact, or the failed mark) in a transaction of its own.
pub(super) async fn record_in_own_transaction(
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

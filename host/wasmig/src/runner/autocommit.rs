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
        by_downgrade_key,
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
    let mark = provisional.clone();
    alone(db, |s| {
        Box::pin(async move { s.set_failed(&provisional).await })
    })
    .await
    .map_err(Failure::Host)?;
    // What a failed concurrent index build leaves is named from the server's catalog:
    // the invalid indexes after the failure that were not there before the script.
    let invalid_before = match db.dialect() == crate::bindings::Dialect::Postgres
        && crate::db::builds_index_concurrently(script)
    {
        true => Some(db.invalid_indexes().await),
        false => None,
    };
    let ran = db
        .run_autocommit(script, &policy, timeouts.lock(), timeouts.statement())
        .await;
    // The script's statements could write wasmig's tables as well: one that erased this
    // mark (and ended the lock's session, so that no mark could be written again) would
    // leave a half-applied revision for the next `up` to run as new. Read back once the
    // script stopped, however it stopped (MySQL also watches every statement: `tamper`).
    if !matches!(ran, Err(ScriptFailure { statement: 0, .. }))
        && let Some(failure) = mark_erased(db, &mark, &ran, (per_statement, by_downgrade_key)).await
    {
        return Err(failure);
    }
    let (statement, total, cause, error) = match ran {
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
        invalid_indexes: match invalid_before {
            Some(before) => db
                .invalid_indexes()
                .await
                .into_iter()
                .filter(|index| !before.contains(index))
                .collect(),
            None => Vec::new(),
        },
        statement,
        total,
        error,
        per_statement: per_statement.map(str::to_owned),
        by_downgrade_key,
    };
    Err(mark_failed(db, step, checksum, started_at, stopped, cause).await)
}

/// When the script erased (or rewrote) the revision's failed mark written before it: the
/// mark put back, without the lock fence (the script may have ended the lock's session, and
/// a mark only ever makes runs refuse), and the step's failure as tampering (exit 12).
/// `None` when the mark is as written.
async fn mark_erased(
    db: &dyn Database,
    mark: &FailedMark,
    ran: &Result<usize, ScriptFailure>,
    why_alone: (Option<&str>, bool),
) -> Option<Failure> {
    let kept = |marks: &[FailedMark]| {
        marks.iter().any(|m| {
            m.revision == mark.revision && m.statement == mark.statement && m.error == mark.error
        })
    };
    // Read in a session of its own, which begins on a live connection even when the
    // script ended the one the last step kept (any session holding an advisory lock).
    let mut session = match db.begin().await {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(
                "{}: its failed mark could not be read back: {e:#}",
                mark.revision
            );
            return None;
        }
    };
    let marks = {
        let (store, d) = session.books();
        store.failed(d).await
    };
    match marks {
        Ok(marks) if kept(&marks) => {
            let _ = session.rollback().await;
            // No other mark can be there: a run begins only without any, and stops at the
            // first step that leaves one. Another is the script's own (every later run
            // would stop at exit 13 over a revision that never failed).
            let others: Vec<&str> = marks
                .iter()
                .filter(|m| m.revision != mark.revision)
                .map(|m| m.revision.as_str())
                .collect();
            if others.is_empty() {
                return None;
            }
            return Some(tampered(
                mark,
                ran,
                why_alone,
                None,
                format!(
                    "the script of {} wrote failed marks of other revisions ({}) in {}, which only wasmig writes; once the revision is fixed, `wasmig resolve` each of them",
                    mark.revision,
                    others.join(", "),
                    crate::db::FAILED_TABLE
                ),
            ));
        }
        // A row wasmig cannot read as a mark: wasmig writes none, so the script did (every
        // later command that reads the marks would fail on it).
        Err(e) if undecodable(&e) => {
            let _ = session.rollback().await;
            return Some(tampered(
                mark,
                ran,
                why_alone,
                None,
                format!(
                    "the script of {} wrote a row in {} that is not a failed mark wasmig could have written ({e:#}); delete that row, then `wasmig resolve {}`",
                    mark.revision,
                    crate::db::FAILED_TABLE,
                    mark.revision
                ),
            ));
        }
        // Unreadable (the connection failed): the step's own failure path reports what it
        // can.
        Err(e) => {
            let _ = session.rollback().await;
            tracing::warn!(
                "{}: its failed mark could not be read back: {e:#}",
                mark.revision
            );
            return None;
        }
        Ok(_) => {}
    }
    let written = {
        let (store, d) = session.books();
        store.set_failed(d, mark).await
    };
    let unmarked = match written {
        Ok(()) => session.commit().await.err(),
        Err(e) => {
            let _ = session.rollback().await;
            Some(e)
        }
    }
    .map(|e| crate::db::shown_causes(&e).join(": "));
    let unmarked = match (unmarked, db.failed().await) {
        (None, Ok(marks)) if kept(&marks) => None,
        (None, Ok(_)) => Some("the mark did not read back as written".to_owned()),
        (None, Err(e)) => Some(format!("the mark could not be read back: {e:#}")),
        (e, _) => e,
    };
    let what = format!(
        "the script of {} erased or rewrote its own failed mark in {}, which only wasmig writes",
        mark.revision,
        crate::db::FAILED_TABLE
    );
    Some(tampered(mark, ran, why_alone, unmarked, what))
}

/// Whether reading the failed marks failed on a value, not on the connection.
fn undecodable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
        ) || matches!(
            cause.downcast_ref::<crate::db::DbError>(),
            Some(crate::db::DbError::Query {
                source: sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_),
                ..
            })
        )
    })
}

/// The failure of a step whose script wrote failed marks (`what` it did): its own erased
/// or rewritten, or another revision's.
fn tampered(
    mark: &FailedMark,
    ran: &Result<usize, ScriptFailure>,
    (per_statement, by_downgrade_key): (Option<&str>, bool),
    unmarked: Option<String>,
    what: String,
) -> Failure {
    // Every statement ran: past the last, as when recording it failed.
    let (statement, total) = match ran {
        Ok(total) => (*total + 1, *total),
        Err(f) => (f.statement, f.total),
    };
    Failure::NotRolledBack {
        revision: mark.revision.clone(),
        statement,
        total,
        cause: Box::new(Failure::Host(crate::db::TablesTampered(what).into())),
        unmarked,
        per_statement: per_statement.map(str::to_owned),
        invalid_indexes: Box::default(),
        by_downgrade_key,
    }
}

/// The failure of a script stopped at a statement: a statement's own error, or what the
/// backend found between two statements (MySQL reads wasmig's rows and the lock back after
/// each): rows only wasmig writes written (`WASMIG-TAMPERED`, exit 12), or the lock taken
/// from the run (`WASMIG-LOCK`, exit 11), or the role left (`WASMIG-ROLE`, exit 12). No
/// server sends a `WASMIG-` code. A lost connection is the host's, worded for a script
/// whose earlier statements committed (the report then says which).
fn script_failure(error: &SqlError) -> Failure {
    if crate::db::is_connection_failure(&error.code) {
        return Failure::Host(anyhow::anyhow!(
            "the database connection failed during the script ({}): check the database server",
            error.describe()
        ));
    }
    match error.code.as_str() {
        "WASMIG-TAMPERED" => Failure::Host(crate::db::TablesTampered(error.message.clone()).into()),
        "WASMIG-ROLE" => Failure::Host(crate::db::RoleLeft(error.message.clone()).into()),
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
    /// Whether `downgrade_transaction` made the step `none` (a downgrade that has it),
    /// rather than `transaction`: the failure names the key.
    pub(super) by_downgrade_key: bool,
}

/// Where a non-transactional script stopped.
pub(super) struct Stopped {
    pub(super) statement: usize,
    pub(super) total: usize,
    pub(super) error: SqlError,
    /// Why it ran statement by statement, when not for `transaction = "none"`.
    pub(super) per_statement: Option<String>,
    /// The invalid indexes the script left (PostgreSQL: a failed concurrent build's).
    pub(super) invalid_indexes: Vec<String>,
    /// As [`How::by_downgrade_key`].
    pub(super) by_downgrade_key: bool,
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
        invalid_indexes,
        by_downgrade_key,
    } = stopped;
    let finished_at = Utc::now();
    // The server's text is stored as data: one line, capped (it could be megabytes).
    let message = if statement > total {
        // Every statement ran; recording the step failed.
        format!(
            "{} ran all {total} statement(s) but was not recorded: {}",
            step.action.as_str(),
            crate::bindings::text::shown(&error.message)
        )
    } else {
        format!(
            "{} stopped at statement {statement} of {total}: {}",
            step.action.as_str(),
            crate::bindings::text::shown(&error.message)
        )
    };
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
        .map(|e| crate::db::shown_causes(&e).join(": "));
    Failure::NotRolledBack {
        revision: step.revision.clone(),
        statement,
        total,
        cause: Box::new(cause),
        unmarked,
        per_statement,
        invalid_indexes: invalid_indexes.into(),
        by_downgrade_key,
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
        // Guarded once (the lock fence, the tamper check): nothing but these writes runs
        // in this transaction, as with a step's own record (`Session::finish_step`),
        // rather than once per write as `Session::record_step` and its kin do.
        session
            .guard(&format!("recording {}", record.revision), false)
            .await?;
        let (store, d) = session.books();
        store.record_step(d, record).await?;
        match with {
            Recorded::Step(stored) => {
                // The provisional mark of a `transaction = "none"` step goes with its record.
                store.clear_failed(d, record.revision).await?;
                match stored {
                    Some(stored) => store.store_artifact(d, stored).await,
                    None => store.forget_artifact(d, record.revision).await,
                }
            }
            Recorded::Failure(mark) => store.set_failed(d, mark).await,
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

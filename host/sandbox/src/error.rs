//! Why a step failed, with explicit blame ([`Failure`], [`Blame`]), and why a component
//! could not be loaded ([`ComponentError`]).
//!
//! Not here: exit codes (the CLI maps these to them), and the errors of planning and
//! bookkeeping (`wasmig-plan`, the `wasmig` library).

use std::path::PathBuf;
use std::time::Duration;

use wasmig_contract::SqlError;

/// A component could not be loaded: malformed, wrong world, or a denied import.
#[derive(Debug, Clone, thiserror::Error)]
#[error("revision {revision}: {}: {reason}", .path.display())]
pub struct ComponentError {
    /// The revision the component belongs to.
    pub revision: String,
    /// The component file.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub reason: String,
}

/// Why a migration step failed; each variant names who is to blame.
#[derive(Debug)]
pub enum Failure {
    /// Guest: `upgrade`/`downgrade` returned an error.
    GuestError(String),
    /// Guest: the component trapped (panic, unreachable, stack overflow…), or the host trapped
    /// it for a call that cannot be answered truthfully in its WIT version (`dialect` on MySQL
    /// from a component built against 0.2.0 or 0.1.0, which must be rebuilt).
    GuestTrap(String),
    /// Guest: an SQL error was not handled inside a savepoint, yet the guest carried on.
    UnhandledSql(Box<SqlError>),
    /// Migration SQL: a statement of a SQL migration failed.
    Sql(Box<SqlError>),
    /// Migration SQL: a `transaction = "none"` script was refused before any of it ran
    /// (transaction control, a statement that changes how the server reads SQL, a syntax
    /// error): nothing to roll back.
    Refused(Box<SqlError>),
    /// Limit: the wall-clock deadline passed.
    Deadline(Duration),
    /// Host: the server did not answer the step's `COMMIT` within the step's time limit;
    /// wasmig closed the connection, and whether the step (with its record) committed is
    /// unknown until someone looks.
    CommitUnknown(Duration),
    /// Limit: the guest tried to grow its memory past the cap.
    Memory {
        /// The cap in bytes.
        limit: u64,
    },
    /// Guest or migration SQL: a statement ended wasmig's transaction (a `COMMIT`,
    /// `ROLLBACK`… that got past the check of the statements), so the step's work is not in
    /// the transaction that would have recorded it.
    TransactionEnded {
        /// Whether a guest ran the statement (else a SQL revision's script).
        guest: bool,
    },
    /// Limit: the guest tried to grow its tables past the cap.
    Tables {
        /// The cap in elements, over all tables.
        limit: u64,
    },
    /// Host: the database or wasmig failed while running the step.
    Host(anyhow::Error),
    /// A batch of a `transaction = "batched"` step failed and was rolled back; the batches
    /// before it stay committed with their checkpoint, from which the next run resumes.
    Batch {
        /// The revision, for the hint.
        revision: String,
        /// `upgrade` or `downgrade`, for the hint.
        direction: wasmig_plan::graph::Direction,
        /// The batch that failed, from 1 (counting the batches of earlier runs).
        batch: i64,
        /// What went wrong (blame and exit code are its own).
        cause: Box<Failure>,
    },
    /// A batched step reached a limit of one run (`max_batches`, `batched_timeout_secs`)
    /// between batches: the batches committed so far and the checkpoint are kept, and the
    /// next run resumes.
    BatchLimit {
        /// The batches this run committed.
        batches: u64,
        /// Which limit, and its value.
        limit: String,
    },
    /// A step run statement by statement (`transaction = "none"`, or DDL under
    /// `execution = "per-statement"`) stopped part-way: the statements before `statement`
    /// stay committed, and the revision is marked failed until `wasmig resolve`.
    NotRolledBack {
        /// The revision, for the hint.
        revision: String,
        /// The statement that failed, from 1; `total + 1` when every statement ran and
        /// recording the step failed.
        statement: usize,
        /// How many statements the script has.
        total: usize,
        /// What went wrong (blame and exit code are its own).
        cause: Box<Failure>,
        /// `None` when the failed mark was recorded; else why it could not be.
        unmarked: Option<String>,
        /// Why its statements committed one by one: `None` for `transaction = "none"` in
        /// its manifest; else the `execution` setting or engine that made it so.
        per_statement: Option<String>,
        /// The invalid indexes the script left behind (PostgreSQL: a failed `CREATE INDEX
        /// CONCURRENTLY` or `REINDEX ... CONCURRENTLY`), as the server's catalog shows them
        /// after the failure and not before the script.
        invalid_indexes: Box<[String]>,
        /// Whether `downgrade_transaction` in `migration.toml` made the step run without a
        /// transaction (a downgrade that has it), rather than `transaction`.
        by_downgrade_key: bool,
    },
}

impl Failure {
    /// The database connection failed under the step (blamed on the host).
    pub fn connection_lost(error: &SqlError) -> Failure {
        Failure::Host(anyhow::anyhow!(
            "the database connection failed during the migration ({}); nothing of this revision was committed: check the database server and run the command again",
            error.describe()
        ))
    }

    /// A failed statement of a SQL revision: a connection failure is the host's, anything
    /// else the SQL's.
    pub fn from_sql(error: SqlError) -> Failure {
        if wasmig_db::is_connection_failure(&error.code) {
            Failure::connection_lost(&error)
        } else {
            Failure::Sql(Box::new(error))
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::GuestError(msg) => write!(
                f,
                "the migration returned an error: {}",
                wasmig_contract::text::shown(msg)
            ),
            Failure::GuestTrap(msg) => write!(
                f,
                "the migration trapped: {}",
                wasmig_contract::text::shown(msg)
            ),
            Failure::UnhandledSql(e) => write!(
                f,
                "the migration carried on after an SQL error it did not handle: {}; \
                 the database cannot commit work after an error, so nothing was kept. \
                 Run statements that may fail inside a savepoint (`db::savepoint` in the Rust SDK)",
                e.describe()
            ),
            Failure::Sql(e) | Failure::Refused(e) => write!(f, "SQL error: {}", e.describe()),
            Failure::Deadline(d) => write!(
                f,
                "the migration ran past its time limit of {}; if it needs longer, raise `timeout_secs` in its migration.toml or `sandbox.timeout_secs` in wasmig.toml (within the operator's ceiling: `WASMIG_MAX_TIMEOUT_SECS`, or untrusted mode's default limit)",
                humantime(*d)
            ),
            Failure::CommitUnknown(d) => write!(
                f,
                "the database did not answer the step's COMMIT within {}, so wasmig closed the connection: whether the step committed, with its record, is unknown; the version table says which once the server has ended the session",
                humantime(*d)
            ),
            Failure::Memory { limit } => write!(
                f,
                "the migration tried to use more than its memory limit of {} MiB; if it needs more, raise `memory_limit_mib` in its migration.toml or `sandbox.memory_limit_mib` in wasmig.toml (within the operator's ceiling: `WASMIG_MAX_MEMORY_MIB`, or untrusted mode's default limit)",
                limit / (1024 * 1024)
            ),
            Failure::TransactionEnded { .. } => write!(
                f,
                "the migration ended wasmig's transaction itself with COMMIT, ROLLBACK or a similar \
                 statement, so its work was not in the transaction that records it; this step was \
                 not recorded, but on PostgreSQL part of the work may have been committed (with \
                 `--atomic`, the earlier steps and their records too; on SQLite such a commit is \
                 turned into a rollback): inspect the database, then \
                 remove the transaction control from the migration (use savepoints to undo part \
                 of the work)"
            ),
            Failure::Tables { limit } => write!(
                f,
                "the migration tried to grow its tables past the sandbox's fixed limit of {limit} elements; a table bomb, or a component built wrongly"
            ),
            Failure::Host(e) => f.write_str(&chain_text(e)),
            Failure::BatchLimit { batches, limit } => write!(
                f,
                "this run reached {limit} after committing {batches} batch(es); they stay committed with their checkpoint, and the next run resumes after them (raise the limit in the manifest or wasmig.toml if the step needs longer, within the operator's ceiling: `WASMIG_MAX_BATCHES` or `WASMIG_MAX_BATCHED_TIMEOUT_SECS`, or untrusted mode's default)"
            ),
            Failure::Batch {
                revision,
                direction,
                batch,
                cause,
            } => {
                write!(f, "{cause}; ")?;
                match batch - 1 {
                    0 => write!(
                        f,
                        "no batch of it had committed, so the database is as before"
                    ),
                    n => write!(
                        f,
                        "its {n} earlier batch(es) stay committed with their checkpoint, and the next {} of {revision} resumes after them",
                        if *direction == wasmig_plan::graph::Direction::Upgrade {
                            "upgrade"
                        } else {
                            "downgrade"
                        }
                    ),
                }
            }
            Failure::NotRolledBack {
                statement,
                total,
                cause,
                unmarked,
                per_statement,
                invalid_indexes,
                by_downgrade_key,
                ..
            } => {
                let mode_key = if *by_downgrade_key {
                    "downgrade_transaction"
                } else {
                    "transaction"
                };
                let kept = match statement.saturating_sub(1) {
                    0 => "nothing of the script stayed committed, as it was the first".to_owned(),
                    1 => format!("statement 1 of {total} stayed committed"),
                    n => format!("statements 1 to {n} of {total} stayed committed"),
                };
                match per_statement {
                    None => write!(
                        f,
                        "{cause}; with `{mode_key} = \"none\"` each statement commits on its own, so {kept}{}",
                        match &**invalid_indexes {
                            [] => String::new(),
                            [one] => format!(
                                " (and it left the invalid index {one} behind: drop it (DROP INDEX CONCURRENTLY) or REINDEX it before running the revision again)"
                            ),
                            many => format!(
                                " (and it left the invalid indexes {} behind: drop them (DROP INDEX CONCURRENTLY) or REINDEX them before running the revision again)",
                                many.join(", ")
                            ),
                        }
                    )?,
                    Some(why) => write!(
                        f,
                        "{cause}; its script has DDL, which runs statement by statement here ({why}), each statement committed on its own, so {kept}"
                    )?,
                }
                match unmarked {
                    None => write!(
                        f,
                        "; the revision is recorded as failed, and migrations refuse to run until it is resolved"
                    ),
                    Some(why) => write!(
                        f,
                        "; recording it as failed failed too ({why}), so the version table does not show it"
                    ),
                }
            }
        }
    }
}

impl Failure {
    /// How the step ended, for the error's first line: every failure but one is rolled back.
    pub fn outcome(&self) -> String {
        match self {
            Failure::TransactionEnded { .. } => "failed".to_owned(),
            Failure::CommitUnknown(_) => "may or may not have committed".to_owned(),
            Failure::NotRolledBack {
                statement, total, ..
            } if statement > total => {
                format!("ran all {total} statement(s) but was not recorded")
            }
            Failure::NotRolledBack {
                statement, total, ..
            } => format!("failed at statement {statement} of {total} and was not rolled back"),
            Failure::Batch { batch, cause, .. }
                if matches!(
                    **cause,
                    Failure::TransactionEnded { .. } | Failure::CommitUnknown(_)
                ) =>
            {
                format!("failed in batch {batch}")
            }
            Failure::Batch { batch, .. } => {
                format!("failed in batch {batch}, which was rolled back")
            }
            Failure::BatchLimit { .. } => "stopped between batches".to_owned(),
            Failure::Refused(_) => "was refused before any of it ran".to_owned(),
            _ => "failed and was rolled back".to_owned(),
        }
    }

    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        match self {
            Failure::GuestError(_)
            | Failure::GuestTrap(_)
            | Failure::UnhandledSql(_)
            | Failure::TransactionEnded { guest: true } => Blame::Guest,
            Failure::Sql(_) | Failure::Refused(_) | Failure::TransactionEnded { guest: false } => {
                Blame::Sql
            }
            Failure::Deadline(_)
            | Failure::Memory { .. }
            | Failure::Tables { .. }
            | Failure::BatchLimit { .. } => Blame::Limit,
            Failure::Host(_) | Failure::CommitUnknown(_) => Blame::Host,
            Failure::NotRolledBack { cause, .. } | Failure::Batch { cause, .. } => cause.blame(),
        }
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Who caused a failed step: the guest's code, the migration's SQL, a sandbox limit, or
/// wasmig and its environment (the database connection, a wasmig bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Blame {
    /// The guest returned an error, trapped, or ignored a failed statement.
    Guest,
    /// A statement of the migration failed (or a SQL revision ended the transaction).
    Sql,
    /// The guest exceeded its time or memory limit.
    Limit,
    /// wasmig or its environment: the connection was lost, the version tables failed.
    Host,
}

/// An error and its causes joined by `": "`, as `{:#}` joins them, but without a cause whose
/// text the message already holds (a database error's message carries the driver's, which
/// carries the server's, and each would be repeated), and with PostgreSQL's errors by their
/// message alone (`wasmig_db::shown_causes`).
pub fn chain_text(err: &anyhow::Error) -> String {
    wasmig_db::shown_causes(err).join(": ")
}

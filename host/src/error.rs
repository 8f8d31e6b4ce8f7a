//! Typed errors that callers branch on (and that `exit` maps to exit codes).
//!
//! Everything else travels as `anyhow::Error` with context naming the file or revision.
//! Blame is explicit: a [`Failure`] says whether the guest, its SQL, a limit or the host
//! is at fault.

use std::path::PathBuf;
use std::time::Duration;

use crate::bindings::SqlError;
use crate::exit;

/// The project or its configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// What is wrong, naming the file or setting, and what to do.
    pub message: String,
}

impl ConfigError {
    /// A configuration error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

/// The revisions, or a target among them, are inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// No revision matches.
    #[error("revision `{0}` not found; `wasmig history` lists the revisions")]
    NotFound(String),
    /// A prefix matches several revisions.
    #[error("revision prefix `{prefix}` is ambiguous: it matches {}", .candidates.join(", "))]
    Ambiguous {
        /// What the user typed.
        prefix: String,
        /// The full ids it matches.
        candidates: Vec<String>,
    },
    /// Two revisions share an id.
    #[error("duplicate revision id `{id}` in {} and {}", .first.display(), .second.display())]
    Duplicate {
        /// The id.
        id: String,
        /// The first directory.
        first: PathBuf,
        /// The second directory.
        second: PathBuf,
    },
    /// A down revision names a revision that does not exist.
    #[error("revision `{revision}` has down revision `{down}`, which is not found")]
    MissingDown {
        /// The revision whose manifest is wrong.
        revision: String,
        /// The missing one.
        down: String,
    },
    /// The down revisions form a cycle.
    #[error("cycle in the revision graph: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// More than one head (or base) where one is needed.
    #[error("multiple heads: {}; this version of wasmig needs a single linear chain of revisions", .0.join(", "))]
    MultipleHeads(Vec<String>),
    /// The database is at a revision the project does not contain.
    #[error(
        "the database is at revision `{0}`, which this project does not contain; are you running an older checkout?"
    )]
    UnknownApplied(String),
    /// The target cannot be reached in the requested direction.
    #[error(
        "cannot {direction} to `{target}`: it is not {relation} the current revision `{current}`"
    )]
    WrongDirection {
        /// `upgrade` or `downgrade`.
        direction: &'static str,
        /// The resolved target.
        target: String,
        /// `after` or `before`.
        relation: &'static str,
        /// The current revision, or `base`.
        current: String,
    },
    /// A relative target moves past the ends of the chain.
    #[error("relative target `{0}` goes past the end of the revision chain")]
    OutOfRange(String),
}

/// A component could not be loaded: malformed, wrong world, or a denied import.
#[derive(Debug, thiserror::Error)]
#[error("revision {revision}: {}: {reason}", .path.display())]
pub struct ComponentError {
    /// The revision the component belongs to.
    pub revision: String,
    /// The component file.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub reason: String,
}

/// Building a migration from source failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// What failed and how to fix it.
    pub message: String,
}

/// Why a migration step failed; each variant names who is to blame.
#[derive(Debug)]
pub enum Failure {
    /// Guest: `upgrade`/`downgrade` returned an error.
    GuestError(String),
    /// Guest: the component trapped (panic, unreachable, stack overflow…).
    GuestTrap(String),
    /// Guest: an SQL error was not handled inside a savepoint, yet the guest carried on.
    UnhandledSql(Box<SqlError>),
    /// Migration SQL: a statement of a SQL migration failed.
    Sql(Box<SqlError>),
    /// Limit: the wall-clock deadline passed.
    Deadline(Duration),
    /// Limit: the guest tried to grow its memory past the cap.
    Memory {
        /// The cap in bytes.
        limit: u64,
    },
    /// Limit: the guest tried to grow its tables past the cap.
    Tables {
        /// The cap in elements, over all tables.
        limit: u64,
    },
    /// Host: the database or wasmig failed while running the step.
    Host(anyhow::Error),
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
        if crate::db::is_connection_failure(&error.code) {
            Failure::connection_lost(&error)
        } else {
            Failure::Sql(Box::new(error))
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::GuestError(msg) => write!(f, "the migration returned an error: {msg}"),
            Failure::GuestTrap(msg) => write!(f, "the migration trapped: {msg}"),
            Failure::UnhandledSql(e) => write!(
                f,
                "the migration carried on after an SQL error it did not handle: {}; \
                 the database cannot commit work after an error, so nothing was kept. \
                 Run statements that may fail inside a savepoint (`db::savepoint` in the Rust SDK)",
                e.describe()
            ),
            Failure::Sql(e) => write!(f, "SQL error: {}", e.describe()),
            Failure::Deadline(d) => write!(
                f,
                "the migration ran past its time limit of {}; if it needs longer, raise `timeout_secs` in its migration.toml or `sandbox.timeout_secs` in wasmig.toml",
                humantime(*d)
            ),
            Failure::Memory { limit } => write!(
                f,
                "the migration tried to use more than its memory limit of {} MiB; if it needs more, raise `memory_limit_mib` in its migration.toml or `sandbox.memory_limit_mib` in wasmig.toml",
                limit / (1024 * 1024)
            ),
            Failure::Tables { limit } => write!(
                f,
                "the migration tried to grow its tables past the sandbox's fixed limit of {limit} elements; a table bomb, or a component built wrongly"
            ),
            Failure::Host(e) => write!(f, "{e:#}"),
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

/// A migration step failed; everything it did was rolled back.
#[derive(Debug, thiserror::Error)]
#[error("{direction} of revision {revision} failed and was rolled back: {failure}")]
pub struct MigrationError {
    /// The revision.
    pub revision: String,
    /// `upgrade` or `downgrade`.
    pub direction: &'static str,
    /// What went wrong.
    pub failure: Failure,
    /// Revisions this run had already applied (they stay applied).
    pub completed: Vec<String>,
}

impl MigrationError {
    /// The documented exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match &self.failure {
            Failure::Deadline(_) | Failure::Memory { .. } | Failure::Tables { .. } => {
                exit::LIMIT_EXCEEDED
            }
            Failure::Host(e) if exit::code_for(e) != exit::INTERNAL => exit::code_for(e),
            Failure::Host(_) => exit::DATABASE,
            _ => exit::MIGRATION_FAILED,
        }
    }

    /// Who is to blame, in one word: `guest`, `sql`, `limit` or `host`.
    pub fn blame(&self) -> &'static str {
        match &self.failure {
            Failure::GuestError(_) | Failure::GuestTrap(_) | Failure::UnhandledSql(_) => "guest",
            Failure::Sql(_) => "sql",
            Failure::Deadline(_) | Failure::Memory { .. } | Failure::Tables { .. } => "limit",
            Failure::Host(_) => "host",
        }
    }
}

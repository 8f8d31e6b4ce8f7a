//! Typed errors that callers branch on (and that `exit` maps to exit codes).
//!
//! Everything else travels as `anyhow::Error` with context naming the file or revision.
//! Blame is explicit: a [`Failure`] says whether the guest, its SQL, a limit or the host
//! is at fault.

use std::path::PathBuf;
use std::time::Duration;

use crate::bindings::SqlError;
use crate::db::{Checkpoint, FailedMark};
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
    /// A prefix matches no long id, only ids of 3 characters or fewer, which match in full
    /// only (as in Alembic).
    #[error("revision `{prefix}` not found: ids of 3 characters or fewer match only in full (did you mean {}?)", .ids.join(", "))]
    ShortId {
        /// What the user typed.
        prefix: String,
        /// The short ids it is a prefix of.
        ids: Vec<String>,
    },
    /// A target that is valid but names no revision where one is needed (`show base`).
    #[error(
        "`{target}` names no revision: {reason}; name a revision (`wasmig history` lists them)"
    )]
    NoRevision {
        /// What the user typed.
        target: String,
        /// What it names instead.
        reason: &'static str,
    },
    /// `+N` or `LABEL@+N` where no current revision is read (`show`, `stamp`, `--head`...).
    #[error(
        "`{0}` counts up from the database's current revision, which only `wasmig up` reads; here name the revision to count from (REV+N), or count down from the head (-N)"
    )]
    CountsFromCurrent(String),
    /// `history -r START:END` where START is not below END.
    #[error(
        "range `{start}:{end}` does not refer to ancestor/descendant revisions along the same branch: START must be END or below it (`wasmig history` shows the order)"
    )]
    BadRange {
        /// START as typed.
        start: String,
        /// END as typed.
        end: String,
    },
    /// `history -r START:-N`.
    #[error(
        "`{0}` cannot end a range: END counts up from START (`START:+N`); name the revision instead (REV-N)"
    )]
    RangeEndDown(String),
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
    /// Two revisions share an id (in the planner's input).
    #[error("duplicate revision id `{0}`")]
    DuplicateId(String),
    /// A branch label is declared twice.
    #[error(
        "branch label `{label}` is declared by both `{first}` and `{second}`; labels name one branch"
    )]
    DuplicateLabel {
        /// The label.
        label: String,
        /// The first revision declaring it.
        first: String,
        /// The second.
        second: String,
    },
    /// A branch label cannot be used.
    #[error("revision `{revision}` has branch label `{label}`, which is not usable: {reason}")]
    BadLabel {
        /// The revision declaring it.
        revision: String,
        /// The label.
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// A `depends_on` names nothing.
    #[error(
        "revision `{revision}` depends on `{dependency}`, which is not found (neither a revision id nor a branch label)"
    )]
    MissingDependency {
        /// The revision whose manifest is wrong.
        revision: String,
        /// What it names.
        dependency: String,
    },
    /// A branch name that is neither a label nor a revision.
    #[error("no such branch: `{0}`; `wasmig branches` and `wasmig heads` list them")]
    NoSuchBranch(String),
    /// `LABEL@REV` where REV is not on that branch.
    #[error("revision `{revision}` is not a member of branch `{branch}`")]
    NotOnBranch {
        /// The revision.
        revision: String,
        /// The branch.
        branch: String,
    },
    /// A target that needs one head, where there are several.
    #[error("multiple heads: `{target}` is ambiguous between {}; {}, or merge them with `wasmig merge heads -m MESSAGE`", .heads.join(", "), multiple_heads_hint(.target))]
    MultipleHeads {
        /// What the user asked for.
        target: String,
        /// The heads it could mean.
        heads: Vec<String>,
    },
    /// `wasmig check --single-head` found several.
    #[error("multiple heads: {}; two changes each added a revision on the same parent: merge them with `wasmig merge heads -m MESSAGE`", .0.join(", "))]
    NotSingleHead(Vec<String>),
    /// A relative move crosses a branch point or merge point.
    #[error("ambiguous walk: from `{from}` the next revision could be {}; name the revision, or use LABEL@+N / LABEL@-N", .candidates.join(" or "))]
    AmbiguousWalk {
        /// Where the walk was.
        from: String,
        /// Where it could go.
        candidates: Vec<String>,
    },
    /// A relative target from the current revision, with several current heads.
    #[error("`{target}` is ambiguous: the database has several current heads ({}); name the branch: LABEL@-1, or REV@-1 with one of those heads", .heads.join(", "))]
    AmbiguousCurrent {
        /// What the user asked for.
        target: String,
        /// The current heads.
        heads: Vec<String>,
    },
    /// Upgrade targets where one is an ancestor of another.
    #[error("requested revision `{revision}` overlaps with other requested revisions {}", .others.join(", "))]
    Overlap {
        /// The upper one.
        revision: String,
        /// The ones below it.
        others: Vec<String>,
    },
    /// `up -N` or `down +N`.
    #[error("cannot {direction} to `{target}`: relative to the current revision, {direction} takes {}", relative_sign(.direction))]
    WrongWay {
        /// What the user asked for.
        target: String,
        /// `upgrade` or `downgrade`.
        direction: &'static str,
    },
    /// A downgrade target that is not below the current heads.
    #[error("cannot go to `{target}`: it is not an ancestor of the current head(s) {}", list_or_base(.heads))]
    NotAncestor {
        /// The target.
        target: String,
        /// The current heads.
        heads: Vec<String>,
    },
    /// `--head` (or `merge`) naming one revision twice.
    #[error("revision `{0}` is named twice as a head to build on; name each head once")]
    DuplicateHead(String),
    /// `resolve` of a step whose starting heads are no longer the database's heads.
    #[error("cannot resolve `{revision}`: the heads moved since it failed (it started from {}, the database is now at {}); put the version table back as it was, or resolve it as the other outcome", .expected.join(", "), list_or_base(.found))]
    HeadsMoved {
        /// The failed revision.
        revision: String,
        /// The heads the failed step removes.
        expected: Vec<String>,
        /// The heads now.
        found: Vec<String>,
    },
    /// `wasmig merge` naming fewer than two revisions.
    #[error("nothing to merge: {} is a single revision; `wasmig heads` lists the heads to merge", if .0.is_empty() { "base".to_owned() } else { .0.join(", ") })]
    NothingToMerge(Vec<String>),
    /// `wasmig revision --head REV` on a revision that is not a head, without `--splice`.
    #[error("revision `{0}` is not a head revision; pass --splice to start a new branch from it")]
    NotAHead(String),
    /// `wasmig merge REV...` naming a revision that is not a head, without `--splice`.
    #[error(
        "revision `{0}` is not a head revision, so there is nothing to merge it into: merge heads (`wasmig heads` lists them), or pass --splice to merge it anyway, which starts a new branch from it"
    )]
    MergeNotAHead(String),
    /// A manifest names the same revision twice in one field.
    #[error(
        "revision `{revision}` lists `{id}` twice in `{field}` of its migration.toml; list each revision once"
    )]
    Repeated {
        /// The revision whose manifest is wrong.
        revision: String,
        /// `down_revision` or `depends_on`.
        field: &'static str,
        /// The repeated id.
        id: String,
    },
    /// `wasmig revision --branch-label L` where L is taken.
    #[error(
        "branch label `{label}` is already used by revision `{revision}` (as a branch label or as its id); choose another (`wasmig branches` lists the branches)"
    )]
    LabelTaken {
        /// The label asked for.
        label: String,
        /// The revision that declares it, or whose id it is.
        revision: String,
    },
    /// The database is at a revision the project does not contain.
    #[error(
        "the database is at revision `{0}`, which this project does not contain; are you running an older checkout? `wasmig down` can revert it from the copy stored in the database"
    )]
    UnknownApplied(String),
    /// `wasmig stamp` (without `--purge`) while the database is at a revision the project
    /// does not contain.
    #[error(
        "the database is at revision `{0}`, which this project does not contain, so stamp cannot tell which line it is on; `wasmig stamp --purge REV...` replaces every stored head"
    )]
    UnknownStamped(String),
    /// `wasmig down` of an applied revision that is neither in the project nor stored in the
    /// database's artifact table (stamped, or applied before wasmig stored artifacts).
    #[error(
        "the database is at revision `{0}`, which this project does not contain and of which the database stores no copy (it was stamped, or applied before wasmig stored artifacts); revert it from a checkout that contains it"
    )]
    NoStoredCopy(String),
    /// `wasmig rehash` on a revision the database has not applied.
    #[error(
        "revision `{0}` is not applied, so there is no recorded checksum to replace; `wasmig current` shows what is applied"
    )]
    NotApplied(String),
    /// A relative target moves past the ends of the graph.
    #[error("relative target `{0}` goes past the end of the revision graph (not enough revisions)")]
    OutOfRange(String),
}

/// Applied revisions whose files no longer match the checksum recorded when they ran
/// (exit code 12). `--allow-modified` turns it into one warning per revision.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} applied revision(s) changed since they ran:\n{}\nif the change is intended, accept it with `wasmig rehash {}`; otherwise restore the files (e.g. `git checkout -- PATH`); `--allow-modified` runs once anyway",
    .0.len(),
    .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"),
    .0.iter().map(|m| m.revision.as_str()).collect::<Vec<_>>().join(" ")
)]
pub struct ModifiedError(pub Vec<Modified>);

/// One applied revision whose artifact differs from what ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Modified {
    /// The revision.
    pub revision: String,
    /// The files the checksum covers (`up.sql` and `down.sql`, or the component).
    pub files: Vec<PathBuf>,
    /// The checksum recorded by the last upgrade (or rehash) of the revision.
    pub recorded: String,
    /// The checksum of the files now, or `None` when they cannot be read.
    pub current: Option<String>,
    /// Why the files cannot be read (missing, not UTF-8…), when `current` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl std::fmt::Display for Modified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let short = |c: &str| c[..12.min(c.len())].to_owned();
        match (&self.current, &self.unreadable) {
            (Some(current), _) => write!(
                f,
                "revision {}: changed since it ran (files: {files}; checksum recorded {}, now {})",
                self.revision,
                short(&self.recorded),
                short(current)
            ),
            (None, reason) => write!(
                f,
                "revision {}: its files vanished or cannot be read: {}",
                self.revision,
                reason.as_deref().unwrap_or(&files)
            ),
        }
    }
}

fn relative_sign(direction: &str) -> &'static str {
    if direction == "upgrade" { "+N" } else { "-N" }
}

fn list_or_base(heads: &[String]) -> String {
    if heads.is_empty() {
        "(none: the database is at base)".to_owned()
    } else {
        heads.join(", ")
    }
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

/// Another run held the migration lock for longer than `--lock-timeout`.
#[derive(Debug, thiserror::Error)]
#[error(
    "another run holds the migration lock on {database}: {holder}; gave up after {} s. Wait for it to finish and run the command again, or raise --lock-timeout",
    .waited.as_secs()
)]
pub struct LockTimeout {
    /// The database, its URL without the password.
    pub database: String,
    /// Who holds the lock, as far as the database can tell.
    pub holder: String,
    /// How long this run waited.
    pub waited: Duration,
}

/// Revisions are marked failed (exit code 13): a `transaction = "none"` step stopped
/// part-way, and until `wasmig resolve` says what the database holds, `up` and `down` run
/// nothing.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}\nnothing ran: look at the database, finish or undo the revision's work by hand, then run `wasmig resolve {rev} --as applied` (all of its work is in the database) or `wasmig resolve {rev} --as rolled-back` (none of it is)",
    .0.iter().map(describe_failed).collect::<Vec<_>>().join("\n"),
    rev = if .0.len() == 1 { .0[0].revision.as_str() } else { "REV" }
)]
pub struct FailedError(pub Vec<FailedMark>);

fn describe_failed(mark: &FailedMark) -> String {
    format!(
        "revision {} is marked failed since {}: {}{}; it was not rolled back",
        mark.revision,
        mark.failed_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        mark.error,
        mark.sqlstate
            .as_deref()
            .map(|c| format!(" (SQLSTATE {c})"))
            .unwrap_or_default(),
    )
}

/// A batched step is part-way through (it has a checkpoint) and this command would not
/// finish it (exit code 13): another plan would run on top of half of a data migration.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}\nnothing ran: finish it first ({}), or, after finishing or undoing its work by hand, `wasmig resolve {rev} --as applied` or `--as rolled-back`",
    .0.iter().map(describe_in_progress).collect::<Vec<_>>().join("\n"),
    finish_hint(&.0[0]),
    rev = if .0.len() == 1 { .0[0].revision.as_str() } else { "REV" }
)]
pub struct InProgressError(pub Vec<Checkpoint>);

fn describe_in_progress(c: &Checkpoint) -> String {
    format!(
        "revision {} is part-way through a batched {}: {} batch(es) committed since {}, last checkpoint {:?}",
        c.revision,
        c.direction,
        c.batches,
        c.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        excerpt(&c.checkpoint)
    )
}

fn finish_hint(c: &Checkpoint) -> String {
    if c.direction == "upgrade" {
        format!("`wasmig up {}` resumes it", c.revision)
    } else {
        format!("`wasmig down` to a target below {} resumes it", c.revision)
    }
}

/// At most 60 characters of a checkpoint, for messages.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A batched step would resume from a checkpoint written by different code (exit code 12):
/// the revision's artifact changed since its first batch ran.
#[derive(Debug, thiserror::Error)]
#[error(
    "revision {revision}: changed since its batched {direction} began (checksum then {}, now {}), so its checkpoint may not mean the same to the new code; restore the files to resume, pass --allow-modified to resume with the changed code, or undo its work by hand and run `wasmig resolve {revision} --as rolled-back`",
    &.recorded[..12.min(.recorded.len())],
    &.current[..12.min(.current.len())]
)]
pub struct ResumeModified {
    /// The revision.
    pub revision: String,
    /// `upgrade` or `downgrade`.
    pub direction: String,
    /// The checksum the committed batches ran.
    pub recorded: String,
    /// The checksum of the artifact now.
    pub current: String,
}

/// `wasmig resolve` on a revision that is not marked failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "revision `{0}` is not marked failed or in progress, so there is nothing to resolve; `wasmig current` shows the failed and in-progress revisions"
)]
pub struct NotFailed(pub String);

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
        direction: &'static str,
        /// The batch that failed, from 1 (counting the batches of earlier runs).
        batch: i64,
        /// What went wrong (blame and exit code are its own).
        cause: Box<Failure>,
    },
    /// A `transaction = "none"` step stopped part-way: the statements before `statement`
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
            Failure::TransactionEnded { .. } => write!(
                f,
                "the migration ended wasmig's transaction itself with COMMIT, ROLLBACK or a similar \
                 statement, so its work was not in the transaction that records it; the version \
                 table was not updated, but on PostgreSQL part of the work may have been committed \
                 (on SQLite such a commit is turned into a rollback): inspect the database, then \
                 remove the transaction control from the migration (use savepoints to undo part \
                 of the work)"
            ),
            Failure::Tables { limit } => write!(
                f,
                "the migration tried to grow its tables past the sandbox's fixed limit of {limit} elements; a table bomb, or a component built wrongly"
            ),
            Failure::Host(e) => write!(f, "{e:#}"),
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
                        "its {n} earlier batch(es) stay committed with their checkpoint: fix the cause and run `wasmig {}` again to resume after batch {n} (`wasmig current` shows it), or undo its work by hand and run `wasmig resolve {revision} --as rolled-back`",
                        if *direction == "upgrade" {
                            "up"
                        } else {
                            "down"
                        }
                    ),
                }
            }
            Failure::NotRolledBack {
                revision,
                statement,
                total,
                cause,
                unmarked,
            } => {
                let kept = match statement.saturating_sub(1) {
                    0 => "no earlier statement".to_owned(),
                    1 => "statement 1".to_owned(),
                    n => format!("statements 1 to {n}"),
                };
                write!(
                    f,
                    "{cause}; with `transaction = \"none\"` each statement commits on its own, so {kept} of {total} stayed committed (and a failed `CREATE INDEX CONCURRENTLY` leaves an invalid index)"
                )?;
                match unmarked {
                    None => write!(
                        f,
                        "; the revision is recorded as failed and `up`/`down` refuse to run until it is resolved: inspect the database, finish or undo its work, then run `wasmig resolve {revision} --as applied` or `wasmig resolve {revision} --as rolled-back`"
                    ),
                    Some(why) => write!(
                        f,
                        "; recording it as failed failed too ({why}), so the version table does not show it: inspect the database and fix it by hand (e.g. `wasmig stamp`)"
                    ),
                }
            }
        }
    }
}

impl Failure {
    /// How the step ended, for the error's first line: every failure but one is rolled back.
    fn outcome(&self) -> String {
        match self {
            Failure::TransactionEnded { .. } => "failed".to_owned(),
            Failure::NotRolledBack {
                statement, total, ..
            } if statement > total => {
                format!("ran all {total} statement(s) but was not recorded")
            }
            Failure::NotRolledBack {
                statement, total, ..
            } => format!("failed at statement {statement} of {total} and was not rolled back"),
            Failure::Batch { batch, .. } => {
                format!("failed in batch {batch}, which was rolled back")
            }
            _ => "failed and was rolled back".to_owned(),
        }
    }

    /// The documented exit code for this failure.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Deadline(_) | Failure::Memory { .. } | Failure::Tables { .. } => {
                exit::LIMIT_EXCEEDED
            }
            Failure::TransactionEnded { .. } => exit::TRANSACTION_ENDED,
            Failure::Host(e) if exit::code_for(e) != exit::INTERNAL => exit::code_for(e),
            Failure::Host(_) => exit::DATABASE,
            Failure::NotRolledBack { cause, .. } | Failure::Batch { cause, .. } => {
                cause.exit_code()
            }
            _ => exit::MIGRATION_FAILED,
        }
    }

    /// Who is to blame, in one word.
    fn blame(&self) -> &'static str {
        match self {
            Failure::GuestError(_)
            | Failure::GuestTrap(_)
            | Failure::UnhandledSql(_)
            | Failure::TransactionEnded { guest: true } => "guest",
            Failure::Sql(_) | Failure::TransactionEnded { guest: false } => "sql",
            Failure::Deadline(_) | Failure::Memory { .. } | Failure::Tables { .. } => "limit",
            Failure::Host(_) => "host",
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

/// A migration step failed; everything it did was rolled back (unless it ended the
/// transaction itself, [`Failure::TransactionEnded`], or ran without one,
/// [`Failure::NotRolledBack`]).
#[derive(Debug, thiserror::Error)]
#[error("{direction} of revision {revision} {}: {failure}", .failure.outcome())]
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
        self.failure.exit_code()
    }

    /// Who is to blame, in one word: `guest`, `sql`, `limit` or `host`.
    pub fn blame(&self) -> &'static str {
        self.failure.blame()
    }
}

/// What to write instead of a target that needs one head where there are several: a walk
/// down (`-N`, `LABEL@-N`) names its branch, anything else names the head or takes them all.
fn multiple_heads_hint(target: &str) -> String {
    let steps = target.rsplit_once('@').map_or(target, |(_, rest)| rest);
    if let Some(n) = steps.strip_prefix('-') {
        format!("walk down one branch: LABEL@-{n}, or REV-{n} from one of those heads")
    } else {
        "name one of them (or LABEL@head), or use `heads`".to_owned()
    }
}

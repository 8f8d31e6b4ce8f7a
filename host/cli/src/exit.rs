//! Exit codes: a documented contract, mirrored in the README's table.
//!
//! `main` maps an error to a code by looking for the typed errors below in its cause chain;
//! anything untyped is an internal error (1). Codes are stable across releases.

use wasmig::db::DbError;
use wasmig::db::scratch::ScratchError;
use wasmig::error::{
    BuildError, ComponentError, ConfigError, FailedError, Failure, GraphError, InProgressError,
    Interrupted, LockTimeout, MigrationError, ModifiedError, NotFailed, ResumeModified,
    StairwayFailed,
};
use wasmig::import::AdoptRefused;

/// Success.
pub(crate) const OK: u8 = 0;
/// An unexpected failure: a wasmig bug or an environment problem not covered below.
pub(crate) const INTERNAL: u8 = 1;
/// The command line was malformed (clap's own code).
#[allow(dead_code)] // clap exits with it itself; listed for the contract
pub(crate) const USAGE: u8 = 2;
/// The project or its configuration is missing or invalid (`wasmig.toml`, a manifest,
/// the database URL); for `import`, a source the tool would refuse too, or (`--adopt`) its
/// history table cannot be read.
pub(crate) const CONFIG: u8 = 3;
/// The revisions or the target are inconsistent: unknown or ambiguous revision, several
/// heads, a cycle, a database at a revision the project does not have; for `import --adopt`,
/// a gap in the old tool's history, or a migration it applied that the directory lacks.
pub(crate) const GRAPH: u8 = 4;
/// The database could not be reached, or failed outside any migration; or, after steps
/// committed, it did not answer the read-back of the version table in time.
pub(crate) const DATABASE: u8 = 5;
/// A migration failed (guest error, SQL error, trap) and was rolled back; or a
/// `transaction = "none"` revision failed part-way, was not rolled back, and is recorded as
/// failed (see [`FAILED_STATE`]).
pub(crate) const MIGRATION_FAILED: u8 = 6;
/// A migration exceeded a sandbox limit (time or memory) and was rolled back; or `--sql`
/// would have kept more of a component's calls than it holds to write them out.
pub(crate) const LIMIT_EXCEEDED: u8 = 7;
/// A component is malformed, targets another world, or imports what the sandbox denies.
pub(crate) const INVALID_COMPONENT: u8 = 8;
/// Building a migration from source failed (toolchain missing or compile error).
pub(crate) const BUILD_FAILED: u8 = 9;
/// A migration ended wasmig's transaction itself (a `COMMIT` or `ROLLBACK` that got past
/// the refusal of transaction control): the step is not recorded, and on PostgreSQL part
/// of its work may have been committed. Or the server did not answer a step's `COMMIT` in
/// time, so whether it committed is unknown. Unlike 6, the database needs a look.
pub(crate) const TRANSACTION_ENDED: u8 = 10;
/// Another run held the database's migration lock for longer than `--lock-timeout`
/// (nothing was changed); or the lock was taken from this run while it ran (the step in
/// flight recorded nothing and was rolled back; steps before it stay applied).
pub(crate) const LOCK_TIMEOUT: u8 = 11;
/// An applied revision's files changed (or vanished) since it ran: its checksum differs
/// from the one recorded in the history table; or a batched revision part-way through
/// changed since its first batch. Nothing was run. Accept the change with
/// `wasmig rehash REV`, restore the files, or pass `--allow-modified` for one run. Also:
/// wasmig's own tables were altered (a view in a table's place, a trigger, a rule,
/// row-level security), found before a run or before a step recorded anything; or a step's
/// own SQL wrote their rows (the step was rolled back with it). For `import --adopt`: a
/// migration's file differs from the checksum the old tool recorded.
pub(crate) const MODIFIED: u8 = 12;
/// A revision is marked failed (a `transaction = "none"` step stopped part-way and was not
/// rolled back), or a batched revision is part-way through and the command would not finish
/// it. `up` and `down` run nothing until it is finished or `wasmig resolve REV --as applied`
/// or `--as rolled-back` says what the database holds. For `import --adopt`: the old tool
/// marked a migration dirty or failed.
pub(crate) const FAILED_STATE: u8 = 13;
/// `wasmig test`: a revision failed the stairway on the scratch database (its up, down or
/// up again failed, its down did not undo its up, a check of its `check.sql` failed, or it
/// took longer than `--budget-secs`). The configured database was not touched.
pub(crate) const STAIRWAY_FAILED: u8 = 14;
/// `wasmig lint`: a revision has a finding its manifest does not ignore (the report lists
/// them). Nothing was run.
pub(crate) const LINT_FINDINGS: u8 = 15;

/// A fleet run (`--targets`, `--fleet`): some targets failed or did not run, and others
/// succeeded (the table or JSON summary says which, each failed one with its own code); a
/// rerun resumes from the ledger. `wasmig current --targets`: some targets could not be
/// read.
pub(crate) const FLEET_PARTIAL: u8 = 16;
/// A fleet run: no target succeeded (each that ran failed; a failed canary stopped the
/// rest). `wasmig current --targets`: no target could be read.
pub(crate) const FLEET_FAILED: u8 = 17;

/// `wasmig test` stopped by Ctrl-C or SIGTERM, after dropping its scratch database; a fleet
/// run stopped by one, after its report was printed: the code a shell reports for SIGINT
/// (128 + 2).
pub(crate) const INTERRUPTED: u8 = 130;

/// The exit code for an error, from the first typed error in its chain.
pub(crate) fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<MigrationError>() {
            return failure_code(&e.failure);
        }
        if let Some(f) = cause.downcast_ref::<wasmig::fleet::FleetFailed>() {
            return if f.succeeded == 0 {
                FLEET_FAILED
            } else {
                FLEET_PARTIAL
            };
        }
        if cause.is::<LockTimeout>()
            || cause.is::<wasmig::db::TablesLocked>()
            || cause.is::<wasmig::fleet::LedgerBusy>()
            || cause.is::<wasmig::db::LockLost>()
            || cause.is::<wasmig::db::LockLostAfter>()
        {
            return LOCK_TIMEOUT;
        }
        if cause.is::<ModifiedError>()
            || cause.is::<ResumeModified>()
            || cause.is::<wasmig::db::TablesTampered>()
            || cause.is::<wasmig::db::RoleLeft>()
            || cause.is::<wasmig::db::TamperedAfterCommit>()
            || cause.is::<wasmig::db::RowsWritten>()
            || cause.is::<wasmig::db::OwnRowsWritten>()
        {
            return MODIFIED;
        }
        if cause.is::<wasmig::db::ReadBackUnanswered>() {
            return DATABASE;
        }
        if cause.is::<Interrupted>() || cause.is::<wasmig::fleet::FleetInterrupted>() {
            return INTERRUPTED;
        }
        if cause.is::<StairwayFailed>() {
            return STAIRWAY_FAILED;
        }
        if cause.is::<wasmig::lint::LintFindings>() {
            return LINT_FINDINGS;
        }
        if let Some(e) = cause.downcast_ref::<ScratchError>() {
            return match e {
                ScratchError::NotAllowed { .. } => CONFIG,
                ScratchError::Failed { .. } => DATABASE,
            };
        }
        if cause.is::<FailedError>() || cause.is::<InProgressError>() {
            return FAILED_STATE;
        }
        if let Some(e) = cause.downcast_ref::<AdoptRefused>() {
            return match e {
                AdoptRefused::Dirty { .. } => FAILED_STATE,
                AdoptRefused::Checksum { .. } => MODIFIED,
                AdoptRefused::Gap { .. } | AdoptRefused::Unknown { .. } => GRAPH,
                AdoptRefused::Unreadable { .. } => CONFIG,
            };
        }
        if cause.is::<NotFailed>() {
            return GRAPH;
        }
        if cause.is::<wasmig::sandbox::CompileLimit>()
            || cause.is::<wasmig::sandbox::journal::CaptureTooLarge>()
        {
            return LIMIT_EXCEEDED;
        }
        if cause.is::<ComponentError>() {
            return INVALID_COMPONENT;
        }
        if cause.is::<BuildError>() {
            return BUILD_FAILED;
        }
        if cause.is::<GraphError>() {
            return GRAPH;
        }
        if cause.is::<ConfigError>() {
            return CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<DbError>() {
            return match e {
                DbError::InvalidUrl { .. } => CONFIG,
                _ => DATABASE,
            };
        }
    }
    INTERNAL
}

/// The exit code of a failed step (exhaustive: a new kind of failure must choose its code).
fn failure_code(failure: &Failure) -> u8 {
    match failure {
        Failure::Deadline(_)
        | Failure::Memory { .. }
        | Failure::Tables { .. }
        | Failure::BatchLimit { .. } => LIMIT_EXCEEDED,
        Failure::TransactionEnded { .. } | Failure::CommitUnknown(_) => TRANSACTION_ENDED,
        Failure::Host(e) if code_for(e) != INTERNAL => code_for(e),
        Failure::Host(_) => DATABASE,
        Failure::NotRolledBack { cause, .. } | Failure::Batch { cause, .. } => failure_code(cause),
        Failure::GuestError(_)
        | Failure::GuestTrap(_)
        | Failure::UnhandledSql(_)
        | Failure::Sql(_)
        | Failure::Refused(_) => MIGRATION_FAILED,
    }
}

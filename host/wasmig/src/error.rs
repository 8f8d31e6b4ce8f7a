//! Typed errors that callers branch on (and that `exit` maps to exit codes).
//!
//! Everything else travels as `anyhow::Error` with context naming the file or revision.
//! Blame is explicit: a [`Failure`] says whether the guest, its SQL, a limit or the host
//! is at fault.

use std::path::PathBuf;

use crate::db::{Checkpoint, FailedMark};
pub use wasmig_db::LockTimeout;
pub use wasmig_plan::{ConfigError, GraphError, NextStep};
pub use wasmig_sandbox::error::{Blame, ComponentError, Failure};

/// Applied revisions whose files no longer match the checksum recorded when they ran
/// (exit code 12). `--allow-modified` turns it into one warning per revision.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} applied revision(s) changed since they ran; nothing ran:\n{}",
    .0.len(),
    .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"),
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

/// Building a migration from source failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// What failed and how to fix it.
    pub message: String,
}

/// Revisions are marked failed (exit code 13): a `transaction = "none"` step stopped
/// part-way, and until `wasmig resolve` says what the database holds, `up` and `down` run
/// nothing.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}\nnothing ran: the database holds an unknown part of the revision's work until it is resolved",
    .0.iter().map(describe_failed).collect::<Vec<_>>().join("\n"),
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
    "{}\nnothing ran: this command would not finish it",
    .0.iter().map(describe_in_progress).collect::<Vec<_>>().join("\n"),
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
    "revision {revision}: changed since its batched {direction} began (checksum then {}, now {}), so its checkpoint may not mean the same to the new code; nothing ran",
    &.recorded[..12.min(.recorded.len())],
    &.current[..12.min(.current.len())]
)]
pub struct ResumeModified {
    /// The revision.
    pub revision: String,
    /// `upgrade` or `downgrade`.
    pub direction: crate::graph::Direction,
    /// The checksum the committed batches ran.
    pub recorded: String,
    /// The checksum of the artifact now.
    pub current: String,
}

/// `wasmig resolve` on a revision that is not marked failed.
#[derive(Debug, thiserror::Error)]
#[error("revision `{0}` is not marked failed or in progress, so there is nothing to resolve")]
pub struct NotFailed(pub String);

/// A migration step failed; everything it did was rolled back (unless it ended the
/// transaction itself, [`Failure::TransactionEnded`], or ran without one,
/// [`Failure::NotRolledBack`]).
#[derive(Debug, thiserror::Error)]
#[error("{direction} of revision {revision} {}: {failure}", .failure.outcome())]
pub struct MigrationError {
    /// The revision.
    pub revision: String,
    /// `upgrade` or `downgrade`.
    pub direction: crate::graph::Direction,
    /// What went wrong.
    pub failure: Failure,
    /// Revisions this run had already applied (they stay applied).
    pub completed: Vec<String>,
}

impl MigrationError {
    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        self.failure.blame()
    }
}

/// `wasmig test`: a revision failed the stairway (the report says how).
#[derive(Debug, thiserror::Error)]
#[error("the stairway failed at revision {revision}: {reason}")]
pub struct StairwayFailed {
    /// The revision.
    pub revision: String,
    /// What failed, in one line.
    pub reason: String,
}

/// `wasmig test` was interrupted (Ctrl-C, SIGTERM) before the stairway finished; its
/// scratch database was dropped (or kept, with `--keep`).
#[derive(Debug, thiserror::Error)]
#[error("interrupted: the stairway stopped before it finished; its scratch database {scratch}")]
pub struct Interrupted {
    /// What became of the scratch database, in words.
    pub scratch: String,
}

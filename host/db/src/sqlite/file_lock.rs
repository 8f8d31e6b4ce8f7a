//! The SQLite migration lock: an exclusive OS lock on `<database file>.wasmig-lock`, held
//! by the open file, so it goes with the process.
//!
//! Owns: one attempt at the lock, naming its holder from the text the holder wrote into
//! the file ([`Attempt`]), and releasing it ([`LockGuard`]).
//!
//! Not here: waiting, retrying and the timeout (the backend-neutral `lock::acquire`), or
//! finding and opening the file (the `Database::lock` impl in `mod.rs`).

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};

use crate::DbError;
use crate::lock::{Attempt, LockGuard};

/// Tries the exclusive lock on `<db file>.wasmig-lock`.
pub(super) struct FileLockAttempt {
    /// Opened by [`Database::lock`]; moved into the [`FileLock`] once locked, else dropped
    /// (closed) with the attempt.
    ///
    /// [`Database::lock`]: crate::Database::lock
    pub(super) file: std::fs::File,
    /// Its path, for messages.
    pub(super) path: std::path::PathBuf,
}

impl FileLockAttempt {
    /// Writes who holds the lock into the file, for a waiting run to report. Best effort:
    /// the lock itself is the OS lock, not the text.
    pub(super) fn write_holder(&mut self) {
        use std::io::{Seek, Write};
        let _ = self.file.set_len(0);
        let _ = self.file.rewind();
        let _ = writeln!(
            self.file,
            "pid {} (wasmig {}, since {})",
            std::process::id(),
            env!("CARGO_PKG_VERSION"),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
}

#[async_trait]
impl Attempt for FileLockAttempt {
    async fn try_lock(&mut self) -> anyhow::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(source)) => Err(DbError::LockFile {
                path: self.path.clone(),
                source,
            }
            .into()),
        }
    }

    async fn holder(&mut self) -> String {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            format!("a process that did not write {}", self.path.display())
        } else {
            format!("{text}, per {}", self.path.display())
        }
    }
}

/// The held lock on the lock file.
pub(super) struct FileLock {
    /// Locked by [`Database::lock`]; unlocked and closed by [`LockGuard::release`]. The
    /// OS releases the lock when the file is closed, so dropping it (a panic) or the
    /// process dying releases it too.
    ///
    /// [`Database::lock`]: crate::Database::lock
    pub(super) file: Option<std::fs::File>,
}

#[async_trait]
impl LockGuard for FileLock {
    async fn release(mut self: Box<Self>) -> anyhow::Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // The file stays: removing it could let two runs lock two different files.
        let _ = file.set_len(0);
        file.unlock()?;
        Ok(())
    }
}

//! A fleet run's ledger: what it finished, so that a run killed half-way (or stopped by a
//! failed target) resumes without touching the targets already done.
//!
//! One JSON line per event, appended and synced as each target ends: a header naming the
//! fleet run (the direction, the target revision and the revisions' checksums, hashed), then
//! `{"target": NAME, "identity": URL#SCHEMA, "state": "done" | "failed", ...}` per target
//! (the URL without its password). A later run of the same fleet skips the targets marked
//! done, by name and identity both; a run of another (new revisions, another target
//! revision) starts a new ledger. A run where every target ended done removes the ledger, so
//! the next run checks every target again. The file is locked while a run uses it: two
//! runs of one fleet do not interleave.
//!
//! Not here: running the targets (`fleet`).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Another fleet run holds the ledger (exit 11, as for the migration lock).
#[derive(Debug, thiserror::Error)]
#[error(
    "another wasmig fleet run is using the ledger {}; wait for it to end, or give this run another with --ledger FILE",
    .0.display()
)]
pub struct LedgerBusy(pub PathBuf);

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// What the file is.
    ledger: String,
    /// The fleet run it belongs to.
    key: String,
    /// When that run started.
    started_at: chrono::DateTime<chrono::Utc>,
}

/// A target's line.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The target's name.
    pub(super) target: String,
    /// The database (and schema) it names, without the password.
    #[serde(default)]
    pub(super) identity: String,
    /// `done` or `failed`.
    pub(super) state: String,
    /// When it ended.
    pub(super) at: chrono::DateTime<chrono::Utc>,
    /// The revisions it applied or reverted (done targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) steps: Vec<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// What the header's `ledger` field says.
const KIND: &str = "wasmig fleet ledger 1";

/// An open, locked ledger.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: std::sync::Mutex<File>,
    /// The targets an earlier run of this fleet finished: name and identity.
    done: HashSet<(String, String)>,
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` for the fleet run `key`, locking it. With
    /// `fresh`, or when it belongs to another fleet run, it starts empty.
    ///
    /// # Errors
    /// [`LedgerBusy`] when another run holds it; [`ConfigError`] when it cannot be created.
    pub fn open(path: &Path, key: &str, fresh: bool) -> anyhow::Result<Self> {
        let cannot = |e: std::io::Error| {
            ConfigError::new(format!(
                "cannot use the fleet ledger {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(cannot)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(cannot)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LedgerBusy(path.to_path_buf()).into());
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(cannot(e).into()),
        }
        let mut done = HashSet::new();
        // Lines as bytes: one cut short by a kill (perhaps inside a character) is skipped,
        // and does not hide the lines after it.
        let mut lines = BufReader::new(&file)
            .split(b'\n')
            .map_while(Result::ok)
            .map(|line| String::from_utf8_lossy(&line).into_owned());
        let ours = match lines.next() {
            Some(first) => serde_json::from_str::<Header>(&first)
                .is_ok_and(|h| h.ledger == KIND && h.key == key),
            None => false,
        };
        if ours && !fresh {
            for line in lines {
                if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                    let target = (entry.target, entry.identity);
                    match entry.state.as_str() {
                        "done" => done.insert(target),
                        _ => done.remove(&target),
                    };
                }
            }
            file.seek(std::io::SeekFrom::End(0)).map_err(cannot)?;
            // A cut line must not swallow the next entry.
            file.write_all(b"\n").map_err(cannot)?;
            if !done.is_empty() {
                tracing::info!(
                    "resuming the fleet run recorded in {}: {} target(s) done earlier are skipped",
                    path.display(),
                    done.len()
                );
            }
        } else {
            file.set_len(0).map_err(cannot)?;
            file.rewind().map_err(cannot)?;
            let header = Header {
                ledger: KIND.to_owned(),
                key: key.to_owned(),
                started_at: chrono::Utc::now(),
            };
            let mut line = serde_json::to_string(&header).expect("a header serializes");
            line.push('\n');
            file.write_all(line.as_bytes()).map_err(cannot)?;
            file.sync_data().map_err(cannot)?;
        }
        Ok(Ledger {
            path: path.to_path_buf(),
            file: std::sync::Mutex::new(file),
            done,
        })
    }

    /// Whether an earlier run of this fleet finished the target called `name` at
    /// `identity`.
    pub fn is_done(&self, name: &str, identity: &str) -> bool {
        self.done.contains(&(name.to_owned(), identity.to_owned()))
    }

    /// Appends a target's end, on disk before it returns.
    pub(super) fn record(&self, entry: &Entry) {
        let mut line = serde_json::to_string(entry).expect("an entry serializes");
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
        {
            tracing::warn!(
                "cannot write the fleet ledger {}: {e}; a rerun may visit {} again (it finds nothing to do there)",
                self.path.display(),
                entry.target
            );
        }
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the ledger: the fleet run finished every target.
    pub fn finish(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(
                "cannot remove the finished fleet ledger {}: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasmig-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("ledger.jsonl")
    }

    fn entry(target: &str, state: &str) -> Entry {
        Entry {
            target: target.into(),
            identity: format!("db-{target}"),
            state: state.into(),
            at: chrono::Utc::now(),
            steps: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn a_rerun_of_the_same_fleet_skips_what_was_done() {
        let path = scratch("rerun");
        let ledger = Ledger::open(&path, "k1", false).unwrap();
        ledger.record(&entry("a", "done"));
        ledger.record(&entry("b", "failed"));
        ledger.record(&entry("c", "done"));
        drop(ledger);
        // A kill in the middle of a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"target\":\"d\",\"st")
            .unwrap();
        let again = Ledger::open(&path, "k1", false).unwrap();
        assert!(again.is_done("a", "db-a") && again.is_done("c", "db-c"));
        assert!(!again.is_done("b", "db-b") && !again.is_done("d", "db-d"));
        assert!(
            !again.is_done("a", "db-elsewhere"),
            "a name moved to another database"
        );
        again.record(&entry("d", "done"));
        drop(again);
        let third = Ledger::open(&path, "k1", false).unwrap();
        assert!(
            third.is_done("d", "db-d"),
            "the entry after a cut line is read"
        );
    }

    #[test]
    fn another_fleet_run_or_fresh_starts_over() {
        let path = scratch("other");
        let ledger = Ledger::open(&path, "k1", false).unwrap();
        ledger.record(&entry("a", "done"));
        drop(ledger);
        assert!(
            !Ledger::open(&path, "k2", false)
                .unwrap()
                .is_done("a", "db-a")
        );
        let ledger = Ledger::open(&path, "k2", false).unwrap();
        ledger.record(&entry("a", "done"));
        drop(ledger);
        assert!(
            !Ledger::open(&path, "k2", true)
                .unwrap()
                .is_done("a", "db-a")
        );
    }

    #[test]
    fn a_ledger_in_use_is_refused() {
        let path = scratch("busy");
        let _held = Ledger::open(&path, "k1", false).unwrap();
        let err = Ledger::open(&path, "k1", false).unwrap_err();
        assert!(err.is::<LedgerBusy>(), "{err:#}");
    }
}

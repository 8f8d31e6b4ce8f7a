//! Integrity of applied revisions: the files of every revision the database has applied must
//! still hash to the checksum recorded when it ran, and `wasmig rehash` accepts an intended
//! change by recording the new checksum.
//!
//! The checksum is [`Artifact::checksum`] (pinned: hex SHA-256 of a component's bytes, or of
//! `up.sql`, one `0x00` byte and `down.sql`). The recorded checksum of a revision is the one
//! of its last `upgrade` or `rehash` row (or `resolve --as applied` row) in the history
//! table; a later `downgrade` row, or an empty checksum (a revision only ever `stamp`ed, or
//! resolved as not applied), means there is nothing to compare.
//!
//! A revision loaded from the copy stored in the database (`wasmig down` of a revision whose
//! files left the project) is verified the same way, with the stored copy as its files: it
//! has not vanished, and a stored copy that does not match its recorded checksum is refused.
//!
//! Not here: which revisions are applied (`graph`), reading and writing the tables (`db`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::Project;
use crate::db::{Database, Event, HistoryEntry, StepRecord, StoredArtifact};
use crate::error::{GraphError, Modified, ModifiedError};
use crate::graph::Graph;
use crate::memo::Memo;
use crate::revision::{self, Revision};

/// The checksum each revision's files had when it last ran (or was rehashed), from the
/// history log (oldest first). Revisions without one are absent.
pub fn recorded_checksums(history: &[HistoryEntry]) -> HashMap<&str, &str> {
    let mut recorded = HashMap::new();
    for row in history {
        match row.direction {
            // `resolve` carries a checksum when it recorded the revision as applied.
            Event::Upgrade | Event::Rehash | Event::Resolve if !row.checksum.is_empty() => {
                recorded.insert(row.revision.as_str(), row.checksum.as_str());
            }
            // Reverted (or applied without a checksum): what ran before is gone.
            Event::Upgrade | Event::Rehash | Event::Resolve | Event::Downgrade => {
                recorded.remove(row.revision.as_str());
            }
            Event::Stamp | Event::Failed => {}
        }
    }
    recorded
}

/// The files a revision's checksum covers.
pub(crate) fn files(revision: &Revision, build_dir: &Path) -> Vec<PathBuf> {
    if revision.stored.is_some() {
        return vec![PathBuf::from(format!(
            "{}/{}",
            crate::db::ARTIFACT_TABLE,
            revision.id()
        ))];
    }
    match revision.component_path(build_dir) {
        Some(path) => vec![path],
        None => vec![revision.dir.join("up.sql"), revision.dir.join("down.sql")],
    }
}

/// What comparing one revision found.
enum Compared {
    /// Its files hash to the recorded checksum.
    Same,
    /// Its component is not built, so there is nothing to hash.
    NotBuilt,
    /// Changed or unreadable.
    Changed(Modified),
}

/// Compares one revision's files with its recorded checksum: from the checksum memo when it
/// vouches for them, else by reading and hashing them (recording the result in the memo).
fn compare(
    revision: &Revision,
    build_dir: &Path,
    recorded: &str,
    mut memo: Option<&mut Memo>,
) -> Compared {
    let files = files(revision, build_dir);
    // A copy stored in the database has no files to stamp.
    if revision.stored.is_some() {
        memo = None;
    }
    if revision.manifest.kind.is_built() && revision.stored.is_none() && !files[0].is_file() {
        // Verification runs after any build a command does, so an unbuilt component is one
        // that will not run in this command either.
        tracing::debug!(
            "revision {}: not verified, its component {} is not built",
            revision.id(),
            files[0].display()
        );
        return Compared::NotBuilt;
    }
    if let Some(memo) = memo.as_deref_mut()
        && memo.vouches(revision.id(), &files, recorded)
    {
        tracing::trace!(
            "revision {}: unchanged since the checksum memo recorded it",
            revision.id()
        );
        return Compared::Same;
    }
    let looked = memo.as_ref().and_then(|_| Memo::before_reading(&files));
    let mut read = Vec::new();
    let (current, unreadable) = match revision::read_artifact_seen(revision, build_dir, &mut read) {
        Ok(artifact) => (Some(artifact.checksum()), None),
        Err(e) => {
            // The message names the revision already; `Modified` names it once.
            let prefix = format!("revision {}: ", revision.id());
            let reason = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
            (None, Some(reason.to_owned()))
        }
    };
    if current.as_deref() == Some(recorded) {
        if let (Some(memo), Some(looked)) = (memo, looked) {
            memo.record(revision.id(), &files, looked, &read, recorded);
        }
        return Compared::Same;
    }
    Compared::Changed(Modified {
        revision: revision.id().to_owned(),
        files,
        recorded: recorded.to_owned(),
        current,
        unreadable,
    })
}

/// What [`verify`] compared, so that a report never claims more than was checked.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verification {
    /// Applied revisions whose files match their recorded checksum.
    pub verified: Vec<String>,
    /// Applied revisions with no recorded checksum (only stamped, or applied by another
    /// tool): nothing to compare.
    pub unrecorded: Vec<String>,
    /// Applied revisions built from source whose component is not built here: not compared.
    pub not_built: Vec<String>,
    /// Changed or unreadable revisions (allowed by `--allow-modified`, else an error).
    pub modified: Vec<Modified>,
}

/// Checks every applied revision (`applied`, from [`Graph::applied`]) against the checksum
/// recorded in the history table. With `allow_modified`, warns once per changed revision
/// and returns them instead of failing. With a `memo` ([`crate::memo`]), a file it vouches
/// for is not read; the files read are recorded in it (the caller saves it).
///
/// # Errors
/// [`ModifiedError`] naming every changed or unreadable revision; database errors reading
/// the history table.
pub async fn verify(
    project: &Project,
    db: &dyn Database,
    revisions: &[Revision],
    applied: &[String],
    allow_modified: bool,
    mut memo: Option<&mut Memo>,
) -> anyhow::Result<Verification> {
    let mut report = Verification::default();
    if applied.is_empty() {
        return Ok(report);
    }
    let history = db.history().await?;
    let recorded = recorded_checksums(&history);
    let build_dir = crate::artifact::build_dir(project);
    for id in applied {
        let revision = crate::history::find(revisions, id);
        match recorded.get(id.as_str()) {
            Some(checksum) => match compare(revision, &build_dir, checksum, memo.as_deref_mut()) {
                Compared::Same => report.verified.push(id.clone()),
                Compared::NotBuilt => report.not_built.push(id.clone()),
                Compared::Changed(m) => report.modified.push(m),
            },
            None => {
                tracing::debug!(
                    "revision {id}: not verified, the history table records no checksum for it (stamped, or applied by another tool)"
                );
                report.unrecorded.push(id.clone());
            }
        }
    }
    if let Some(memo) = memo {
        tracing::debug!(
            "{} applied revision(s) unchanged since the checksum memo recorded them",
            memo.used
        );
    }
    if report.modified.is_empty() {
        tracing::debug!("{} applied revision(s) verified", report.verified.len());
    } else if allow_modified {
        for m in &report.modified {
            tracing::warn!("--allow-modified: {m}");
        }
    } else {
        return Err(ModifiedError(report.modified).into());
    }
    Ok(report)
}

/// `wasmig rehash`: records the current checksum of each applied revision in `targets` as
/// a `rehash` history row (one transaction), so later verification accepts its files.
/// Returns the revisions whose checksum changed.
///
/// # Errors
/// [`GraphError`] for an unknown or unapplied revision, [`crate::error::ConfigError`] for
/// unreadable files, database errors.
pub async fn rehash(
    project: &Project,
    db: &dyn Database,
    revisions: &[Revision],
    graph: &Graph,
    targets: &[String],
) -> anyhow::Result<Vec<String>> {
    db.ensure_version_tables().await?;
    // A revision marked failed is resolved first; its checksum comes with the resolution.
    let failed = db.failed().await?;
    if !failed.is_empty() {
        return Err(crate::error::FailedError(failed).into());
    }
    let heads = db.heads().await?;
    let applied = graph.applied(&heads)?;
    let history = db.history().await?;
    let recorded = recorded_checksums(&history);
    let build_dir = crate::artifact::build_dir(project);
    // The stored artifact is replaced with the new checksum, so `down` can still revert the
    // revision from it once its files are gone.
    let mut changes: Vec<(String, String, StoredArtifact)> = Vec::new();
    for target in targets {
        let id = graph.resolve(target)?;
        if !applied.iter().any(|a| a == id) {
            return Err(GraphError::NotApplied(id.to_owned()).into());
        }
        let revision = crate::history::find(revisions, id);
        let artifact = revision::read_artifact(revision, &build_dir)?;
        let checksum = artifact.checksum();
        if recorded.get(id) == Some(&checksum.as_str()) {
            tracing::info!("revision {id}: unchanged, nothing to rehash");
        } else if !changes.iter().any(|(r, _, _)| r == id) {
            changes.push((id.to_owned(), checksum, revision.to_stored(&artifact)?));
        }
    }
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut session = db.begin().await?;
    for (id, checksum, stored) in &changes {
        let record = StepRecord::bookkeeping(Event::Rehash, id, &[], &[], checksum);
        let recorded = async {
            session.record_step(&record).await?;
            session.store_artifact(stored).await
        }
        .await;
        if let Err(e) = recorded {
            let _ = session.rollback().await;
            return Err(e);
        }
    }
    session.commit().await?;
    for (id, checksum, _) in &changes {
        tracing::info!(
            "revision {id}: recorded its new checksum {}",
            &checksum[..12]
        );
    }
    Ok(changes.into_iter().map(|(id, _, _)| id).collect())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn row(revision: &str, direction: Event, checksum: &str) -> HistoryEntry {
        HistoryEntry {
            id: 0,
            revision: revision.into(),
            direction,
            checksum: checksum.into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            duration_ms: 0,
            wasmig_version: String::new(),
            error: None,
            sqlstate: None,
        }
    }

    #[test]
    fn the_last_upgrade_or_rehash_row_is_the_recorded_checksum() {
        let history = [
            row("a", Event::Upgrade, "a1"),
            row("b", Event::Upgrade, "b1"),
            row("b", Event::Downgrade, "b1"),
            row("c", Event::Upgrade, "c1"),
            row("c", Event::Downgrade, "c1"),
            row("c", Event::Upgrade, "c2"),
            row("a", Event::Rehash, "a2"),
            row("a,c", Event::Stamp, ""),
            row("d", Event::Upgrade, ""),
        ];
        let recorded = recorded_checksums(&history);
        assert_eq!(recorded.get("a"), Some(&"a2"));
        assert_eq!(recorded.get("b"), None, "reverted: nothing to compare");
        assert_eq!(recorded.get("c"), Some(&"c2"));
        assert_eq!(recorded.get("d"), None, "no checksum recorded");
        assert_eq!(recorded.len(), 2);
    }

    #[test]
    fn a_resolve_row_records_a_checksum_only_when_resolved_as_applied() {
        let history = [
            row("a", Event::Failed, "a1"),
            row("a", Event::Resolve, "a1"),
            row("b", Event::Upgrade, "b1"),
            row("b", Event::Failed, "b1"),
            row("b", Event::Resolve, ""),
        ];
        let recorded = recorded_checksums(&history);
        assert_eq!(
            recorded.get("a"),
            Some(&"a1"),
            "a `failed` row alone is no checksum"
        );
        assert_eq!(recorded.get("b"), None, "resolved as not applied");
    }
}

//! Reading wasmig's tables: the heads, the history, the failed marks, the checkpoints and
//! a stored artifact. A table that does not exist reads as empty: reads never create them.

use super::{
    Cell, Driver, HISTORY_ERROR_COLUMNS, Kind, Statement, VersionStore, bad_cell, heads, int,
    query_error, required, text, time, txt,
};
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, Checkpoint, FAILED_TABLE, FailedMark, HISTORY_TABLE,
    HistoryEntry, StoredArtifact, VERSION_TABLE,
};

impl VersionStore {
    /// The revisions stored as current heads, sorted.
    pub async fn heads(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<String>> {
        if !self.present(d, VERSION_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading {VERSION_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision FROM {} ORDER BY revision",
                    self.table(VERSION_TABLE)
                ),
                vec![],
                &[Kind::Text],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|row| required(&row[0], "revision"))
            .collect::<Result<_, _>>()
            .map_err(query_error(doing))
    }

    /// How many rows the history table has (0 when it does not exist).
    pub async fn history_len(&self, d: &mut dyn Driver) -> anyhow::Result<i64> {
        if !self.present(d, HISTORY_TABLE).await? {
            return Ok(0);
        }
        let doing = format!("counting the rows of {HISTORY_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT {} FROM {}",
                    self.words.count(),
                    self.table(HISTORY_TABLE)
                ),
                vec![],
                &[Kind::Int],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.first()
            .map_or(Ok(0), |r| int(&r[0], "count"))
            .map_err(query_error(doing))
    }

    /// The history log, oldest first.
    pub async fn history(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<HistoryEntry>> {
        if !self.present(d, HISTORY_TABLE).await? {
            return Ok(Vec::new());
        }
        // Read-only commands do not migrate the tables: an unversioned history table may
        // lack the error columns.
        let errors = if self.present(d, HISTORY_ERROR_COLUMNS).await? {
            "error, sqlstate"
        } else {
            "NULL AS error, NULL AS sqlstate"
        };
        let doing = format!("reading {HISTORY_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT id, revision, direction, checksum, started_at, finished_at, duration_ms,
                            wasmig_version, {errors}
                     FROM {} ORDER BY id",
                    self.table(HISTORY_TABLE)
                ),
                vec![],
                &[
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Time,
                    Kind::Time,
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    id: int(&r[0], "id")?,
                    revision: required(&r[1], "revision")?,
                    direction: crate::parsed(required(&r[2], "direction")?, "direction")?,
                    checksum: required(&r[3], "checksum")?,
                    started_at: time(&r[4], "started_at")?,
                    finished_at: time(&r[5], "finished_at")?,
                    duration_ms: int(&r[6], "duration_ms")?,
                    wasmig_version: required(&r[7], "wasmig_version")?,
                    error: text(&r[8], "error")?,
                    sqlstate: text(&r[9], "sqlstate")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error(doing))
    }

    /// The revisions marked failed, oldest first.
    pub async fn failed(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<FailedMark>> {
        if !self.present(d, FAILED_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading {FAILED_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision, direction, remove_heads, add_heads, statement, error, sqlstate,
                            failed_at
                     FROM {} ORDER BY failed_at, revision",
                    self.table(FAILED_TABLE)
                ),
                vec![],
                &[
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Time,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(FailedMark {
                    revision: required(&r[0], "revision")?,
                    direction: crate::parsed(required(&r[1], "direction")?, "direction")?,
                    remove_heads: heads(&r[2], "remove_heads")?,
                    add_heads: heads(&r[3], "add_heads")?,
                    statement: int(&r[4], "statement")?,
                    error: required(&r[5], "error")?,
                    sqlstate: text(&r[6], "sqlstate")?,
                    failed_at: time(&r[7], "failed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error(doing))
    }

    /// The batched steps part-way through, oldest first.
    pub async fn checkpoints(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<Checkpoint>> {
        if !self.present(d, CHECKPOINT_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading {CHECKPOINT_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision, direction, remove_heads, add_heads, checkpoint, batches, checksum,
                            started_at, updated_at
                     FROM {} ORDER BY started_at, revision",
                    self.table(CHECKPOINT_TABLE)
                ),
                vec![],
                &[
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Int,
                    Kind::Text,
                    Kind::Time,
                    Kind::Time,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    revision: required(&r[0], "revision")?,
                    direction: crate::parsed(required(&r[1], "direction")?, "direction")?,
                    remove_heads: heads(&r[2], "remove_heads")?,
                    add_heads: heads(&r[3], "add_heads")?,
                    checkpoint: required(&r[4], "checkpoint")?,
                    batches: int(&r[5], "batches")?,
                    checksum: required(&r[6], "checksum")?,
                    started_at: time(&r[7], "started_at")?,
                    updated_at: time(&r[8], "updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error(doing))
    }

    /// The artifact stored when `revision` was last applied, if any.
    pub async fn stored_artifact(
        &self,
        d: &mut dyn Driver,
        revision: &str,
    ) -> anyhow::Result<Option<StoredArtifact>> {
        if !self.present(d, ARTIFACT_TABLE).await? {
            return Ok(None);
        }
        let doing = format!("reading the stored artifact of {revision} from {ARTIFACT_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision, kind, checksum, manifest, up_sql, down_sql, component,
                            source_checksum
                     FROM {} WHERE revision {} $1",
                    self.table(ARTIFACT_TABLE),
                    self.words.eq()
                ),
                vec![txt(revision)],
                &[
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Bytes,
                    Kind::Text,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let artifact = || -> Result<StoredArtifact, sqlx::Error> {
            Ok(StoredArtifact {
                revision: required(&r[0], "revision")?,
                kind: required(&r[1], "kind")?,
                checksum: required(&r[2], "checksum")?,
                manifest: required(&r[3], "manifest")?,
                up_sql: text(&r[4], "up_sql")?,
                down_sql: text(&r[5], "down_sql")?,
                component: match &r[6] {
                    Cell::Bytes(b) => b.clone().map(bytes::Bytes::from),
                    _ => return Err(bad_cell("component")),
                },
                source_checksum: text(&r[7], "source_checksum")?,
            })
        };
        artifact().map(Some).map_err(query_error(doing))
    }
}

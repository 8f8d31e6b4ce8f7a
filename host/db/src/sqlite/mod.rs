//! The SQLite backend: a sqlx pool on one database file, sessions on one pooled connection
//! each, and the translation between the WIT value model and SQLite's storage classes.
//!
//! Owns: binding the WIT values SQLite can store (and refusing `numeric` and arrays with
//! `WASMIG-BIND`), decoding cells by their storage class, mapping driver errors to
//! [`SqlError`] (extended result codes), host-buffered cursors, savepoints, cancellation
//! through a progress handler, and the version tables.
//!
//! Not here: which statements a migration runs or when a session commits (the runner and
//! the sandbox decide), remembering failed statements (the sandbox), the text formats
//! themselves (`db::value`).
//!
//! One concern per file. This one: [`SqliteDatabase`], opening the file with its pool,
//! and the [`Database`] impl, including the reads of the version tables and the upgrade
//! of an older history table. Not in this file:
//! - `session`: [`SqliteSession`](session::SqliteSession), its [`Session`] impl, and
//!   cancelling through the progress handler;
//! - `file_lock`: the migration lock;
//! - `bookkeeping`: the version tables' DDL and time format;
//! - `codec`: binding parameters, decoding cells and mapping errors;
//! - `tests`: the tests, on temporary database files.
//!
//! [`SqlError`]: wasmig_contract::SqlError

// `SqlError` is the WIT record handed to the guest as is; errors are the cold path, and
// boxing it would only add a conversion at every trait boundary.
#![allow(clippy::result_large_err)]

mod bookkeeping;
mod codec;
mod file_lock;
mod session;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

use self::bookkeeping::{
    artifact_table_ddl, checkpoint_table_ddl, failed_table_ddl, history_table_ddl, parse_time,
};
use self::codec::sql_error;
use self::file_lock::{FileLock, FileLockAttempt};
use super::lock::{self, LockGuard, SQLITE_LOCK_SUFFIX};
use super::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, Checkpoint, Database, DatabaseUrl, DbError, FAILED_TABLE,
    FailedMark, HISTORY_TABLE, HistoryEntry, ScriptFailure, Session, StoredArtifact, VERSION_TABLE,
};
use wasmig_contract::Dialect;

/// Connections in the pool: one session, the version-table reads, and a spare.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection waits for another's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite database file reached through a small pool.
///
/// The version tables (layout pinned: changing it needs a migration of wasmig's own):
///
/// ```sql
/// CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);   -- the current heads
/// CREATE TABLE wasmig_history (
///     id             INTEGER PRIMARY KEY AUTOINCREMENT,
///     revision       TEXT NOT NULL,
///     direction      TEXT NOT NULL CHECK (direction IN
///                        ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve')),
///     checksum       TEXT NOT NULL,
///     started_at     TEXT NOT NULL,  -- UTC, RFC 3339 with microseconds: 2024-01-02T03:04:05.123456Z
///     finished_at    TEXT NOT NULL,  -- same format
///     duration_ms    BIGINT NOT NULL,
///     wasmig_version TEXT NOT NULL,
///     error          TEXT,           -- `failed` rows: the error
///     sqlstate       TEXT            -- `failed` rows: SQLite's extended result code
/// );
/// CREATE TABLE wasmig_failed (       -- revisions marked failed, until `wasmig resolve`
///     revision     TEXT PRIMARY KEY,
///     direction    TEXT NOT NULL,    -- the step that failed: upgrade or downgrade
///     remove_heads TEXT NOT NULL,    -- the step's head change, comma-separated
///     add_heads    TEXT NOT NULL,
///     statement    BIGINT NOT NULL,  -- the failed statement, from 1
///     error        TEXT NOT NULL,
///     sqlstate     TEXT,
///     failed_at    TEXT NOT NULL     -- as started_at
/// );
/// CREATE TABLE wasmig_artifact (                              -- what each applied revision ran
///     revision  TEXT PRIMARY KEY,
///     kind      TEXT NOT NULL,                                 -- sql, rust or wasm
///     checksum  TEXT NOT NULL,
///     manifest  TEXT NOT NULL,                                 -- the migration.toml text
///     up_sql    TEXT,
///     down_sql  TEXT,
///     component BLOB,
///     source_checksum TEXT,  -- Python/JS/C: SHA-256 of the sources it was built from
///     stored_at TEXT NOT NULL                                  -- as started_at above
/// );
/// CREATE TABLE wasmig_checkpoint (  -- batched steps part-way through
///     revision     TEXT PRIMARY KEY,
///     direction    TEXT NOT NULL,    -- the step under way: upgrade or downgrade
///     remove_heads TEXT NOT NULL,    -- its head change, comma-separated
///     add_heads    TEXT NOT NULL,
///     checkpoint   TEXT NOT NULL,    -- from the guest's last `next-batch`
///     batches      BIGINT NOT NULL,  -- batches committed
///     checksum     TEXT NOT NULL,    -- of the artifact they ran
///     started_at   TEXT NOT NULL,   
///     updated_at   TEXT NOT NULL
/// );
/// ```
pub(crate) struct SqliteDatabase {
    /// Created by [`SqliteDatabase::connect`], closed by [`Database::close`].
    pool: SqlitePool,
    /// The database file, next to which the lock file lives.
    path: std::path::PathBuf,
}

impl SqliteDatabase {
    /// Opens (and creates if missing) the database file.
    ///
    /// # Errors
    /// [`DbError::Connect`] when the file cannot be opened or created.
    pub(crate) async fn connect(url: &DatabaseUrl) -> Result<Self, DbError> {
        let DatabaseUrl::Sqlite { path } = url else {
            return Err(DbError::InvalidUrl {
                url: url.to_string(),
                reason: "not a sqlite: URL".into(),
            });
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect {
                url: url.to_string(),
                source,
            })?;
        Ok(SqliteDatabase {
            pool,
            path: path.clone(),
        })
    }

    /// Whether `table` exists (reads must not create the tables).
    async fn table_exists(&self, table: &str) -> anyhow::Result<bool> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        )
        .bind(table)
        .fetch_one(&self.pool)
        .await
        .map_err(|source| DbError::Query {
            doing: format!("looking for the table {table}"),
            source,
        })?;
        Ok(count > 0)
    }

    /// Whether `table` has `column`.
    async fn column_exists(&self, table: &str, column: &str) -> anyhow::Result<bool> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?")
                .bind(table)
                .bind(column)
                .fetch_one(&self.pool)
                .await
                .map_err(|source| DbError::Query {
                    doing: format!("looking for the column {table}.{column}"),
                    source,
                })?;
        Ok(count > 0)
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn ensure_version_tables(&self) -> anyhow::Result<()> {
        let query_error = |source| DbError::Query {
            doing: "creating the version tables".into(),
            source,
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (revision TEXT PRIMARY KEY); {}",
            history_table_ddl(HISTORY_TABLE)
        );
        sqlx::raw_sql(AssertSqlSafe(ddl))
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        // Tables created before `stamp`, `rehash`, `failed` or `resolve` was recorded (and
        // before the error columns): SQLite cannot alter a check, so the history table is
        // rebuilt once, in one transaction.
        let sql: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(HISTORY_TABLE)
                .fetch_one(&self.pool)
                .await
                .map_err(query_error)?;
        if !sql.contains("'resolve'") {
            let mut tx = self.pool.begin().await.map_err(query_error)?;
            let columns = "id, revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version";
            let rebuild = format!(
                "ALTER TABLE {HISTORY_TABLE} RENAME TO {HISTORY_TABLE}_old; {}
                 INSERT INTO {HISTORY_TABLE} ({columns}) SELECT {columns} FROM {HISTORY_TABLE}_old;
                 DROP TABLE {HISTORY_TABLE}_old;",
                history_table_ddl(HISTORY_TABLE)
            );
            sqlx::raw_sql(AssertSqlSafe(rebuild))
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            tx.commit().await.map_err(query_error)?;
        }
        // Failure states (`transaction = "none"`): the failed marks.
        let failure_ddl = failed_table_ddl();
        sqlx::raw_sql(AssertSqlSafe(failure_ddl))
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        // The artifact table, kept apart from the DDL above so each can grow on its own.
        let artifact_ddl = artifact_table_ddl();
        sqlx::raw_sql(AssertSqlSafe(artifact_ddl))
            .execute(&self.pool)
            .await
            .map_err(|source| DbError::Query {
                doing: format!("creating {ARTIFACT_TABLE}"),
                source,
            })?;
        let checkpoint_ddl = checkpoint_table_ddl();
        sqlx::raw_sql(AssertSqlSafe(checkpoint_ddl))
            .execute(&self.pool)
            .await
            .map_err(|source| DbError::Query {
                doing: format!("creating {CHECKPOINT_TABLE}"),
                source,
            })?;
        Ok(())
    }

    async fn run_autocommit(
        &self,
        script: &str,
        // SQLite has neither timeout: the runner refuses them before any step runs.
        _lock: Option<Duration>,
        _statement: Option<Duration>,
    ) -> Result<usize, ScriptFailure> {
        let statements = super::autocommit_statements(script, Dialect::Sqlite)?;
        let total = statements.len();
        let mut conn = self.pool.acquire().await.map_err(|e| ScriptFailure {
            statement: 0,
            total,
            error: Box::new(super::client_error(e)),
        })?;
        for (n, statement) in statements.iter().enumerate() {
            sqlx::raw_sql(AssertSqlSafe(statement.to_string()))
                .execute(&mut *conn)
                .await
                .map_err(|e| ScriptFailure {
                    statement: n + 1,
                    total,
                    error: Box::new(sql_error(e)),
                })?;
        }
        Ok(total)
    }

    async fn failed(&self) -> anyhow::Result<Vec<FailedMark>> {
        if !self.table_exists(FAILED_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = || format!("reading {FAILED_TABLE}");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT revision, direction, remove_heads, add_heads, statement, error, sqlstate, failed_at
             FROM {FAILED_TABLE} ORDER BY failed_at, revision"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| DbError::Query { doing: doing(), source })?;
        rows.iter()
            .map(|row| {
                Ok(FailedMark {
                    revision: row.try_get("revision")?,
                    direction: crate::parsed(row.try_get("direction")?, "direction")?,
                    remove_heads: super::split_heads(&row.try_get::<String, _>("remove_heads")?),
                    add_heads: super::split_heads(&row.try_get::<String, _>("add_heads")?),
                    statement: row.try_get("statement")?,
                    error: row.try_get("error")?,
                    sqlstate: row.try_get("sqlstate")?,
                    failed_at: parse_time(row, "failed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| {
                DbError::Query {
                    doing: doing(),
                    source,
                }
                .into()
            })
    }

    async fn checkpoints(&self) -> anyhow::Result<Vec<Checkpoint>> {
        if !self.table_exists(CHECKPOINT_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = || format!("reading {CHECKPOINT_TABLE}");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT revision, direction, remove_heads, add_heads, checkpoint, batches, checksum,
                    started_at, updated_at
             FROM {CHECKPOINT_TABLE} ORDER BY started_at, revision"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| DbError::Query {
            doing: doing(),
            source,
        })?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    revision: row.try_get("revision")?,
                    direction: crate::parsed(row.try_get("direction")?, "direction")?,
                    remove_heads: super::split_heads(&row.try_get::<String, _>("remove_heads")?),
                    add_heads: super::split_heads(&row.try_get::<String, _>("add_heads")?),
                    checkpoint: row.try_get("checkpoint")?,
                    batches: row.try_get("batches")?,
                    checksum: row.try_get("checksum")?,
                    started_at: parse_time(row, "started_at")?,
                    updated_at: parse_time(row, "updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| {
                DbError::Query {
                    doing: doing(),
                    source,
                }
                .into()
            })
    }

    async fn stored_artifact(&self, revision: &str) -> anyhow::Result<Option<StoredArtifact>> {
        if !self.table_exists(ARTIFACT_TABLE).await? {
            return Ok(None);
        }
        let doing = || format!("reading the stored artifact of {revision} from {ARTIFACT_TABLE}");
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT revision, kind, checksum, manifest, up_sql, down_sql, component, source_checksum
             FROM {ARTIFACT_TABLE} WHERE revision = ?"
        )))
        .bind(revision)
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| DbError::Query {
            doing: doing(),
            source,
        })?;
        row.map(|row| {
            Ok(StoredArtifact {
                revision: row.try_get("revision")?,
                kind: row.try_get("kind")?,
                checksum: row.try_get("checksum")?,
                manifest: row.try_get("manifest")?,
                up_sql: row.try_get("up_sql")?,
                down_sql: row.try_get("down_sql")?,
                component: row.try_get("component")?,
                source_checksum: row.try_get("source_checksum")?,
            })
        })
        .transpose()
        .map_err(|source: sqlx::Error| {
            DbError::Query {
                doing: doing(),
                source,
            }
            .into()
        })
    }

    async fn heads(&self) -> anyhow::Result<Vec<String>> {
        if !self.table_exists(VERSION_TABLE).await? {
            return Ok(Vec::new());
        }
        let heads = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT revision FROM {VERSION_TABLE} ORDER BY revision"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| DbError::Query {
            doing: format!("reading {VERSION_TABLE}"),
            source,
        })?;
        Ok(heads)
    }

    async fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        if !self.table_exists(HISTORY_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = || format!("reading {HISTORY_TABLE}");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
                    {}
             FROM {HISTORY_TABLE} ORDER BY id",
            // Read-only commands do not upgrade the tables: an older table has no error columns.
            if self.column_exists(HISTORY_TABLE, "error").await? {
                "error, sqlstate"
            } else {
                "NULL AS error, NULL AS sqlstate"
            }
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| DbError::Query { doing: doing(), source })?;
        let time = parse_time;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    id: row.try_get("id")?,
                    revision: row.try_get("revision")?,
                    direction: crate::parsed(row.try_get("direction")?, "direction")?,
                    checksum: row.try_get("checksum")?,
                    started_at: time(row, "started_at")?,
                    finished_at: time(row, "finished_at")?,
                    duration_ms: row.try_get("duration_ms")?,
                    wasmig_version: row.try_get("wasmig_version")?,
                    error: row.try_get("error")?,
                    sqlstate: row.try_get("sqlstate")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| {
                DbError::Query {
                    doing: doing(),
                    source,
                }
                .into()
            })
    }

    async fn lock(&self, timeout: Duration) -> anyhow::Result<Box<dyn LockGuard>> {
        // Not a lock inside the database: `BEGIN IMMEDIATE` or a lock row on one connection
        // would block the migration's own writes on the others. An OS lock on a file beside
        // the database is held by the open file, so it goes with the process.
        // The real file: the same database reached through a symlink gets the same lock.
        let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut path = real.into_os_string();
        path.push(SQLITE_LOCK_SUFFIX);
        let path = std::path::PathBuf::from(path);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| DbError::LockFile {
                path: path.clone(),
                source,
            })?;
        let mut attempt = FileLockAttempt { file, path };
        lock::acquire(
            &mut attempt,
            &format!("sqlite:{}", self.path.display()),
            timeout,
        )
        .await?;
        attempt.write_holder();
        Ok(Box::new(FileLock {
            file: Some(attempt.file),
        }))
    }

    async fn begin(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(self.begin_session().await?))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

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
use sqlx::{AssertSqlSafe, SqlitePool};

use self::codec::sql_error;
use self::file_lock::{FileLock, FileLockAttempt};
use super::lock::{self, LockGuard, SQLITE_LOCK_SUFFIX};
use super::store::{Reader, VersionStore};
use super::{Database, DatabaseUrl, DbError, Policy, ScriptFailure, Session};
use wasmig_contract::Dialect;

/// Connections in the pool: one session, the version-table reads, and a spare.
const MAX_CONNECTIONS: u32 = 4;

/// The pragmas wasmig defines for a connection, set back before the next step uses it: a
/// migration may have switched off the checks of constraints or foreign keys, made the
/// schema writable or the connection read-only. (`foreign_keys` has no effect inside a
/// transaction, so [`session::RESET_IN_TRANSACTION`] leaves it out.)
pub(super) const RESET_PRAGMAS: &str = "PRAGMA foreign_keys = ON; \
     PRAGMA ignore_check_constraints = OFF; PRAGMA recursive_triggers = OFF; \
     PRAGMA defer_foreign_keys = OFF; PRAGMA query_only = OFF; PRAGMA writable_schema = OFF";

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
    /// wasmig's tables, read on a pooled connection.
    store: VersionStore,
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
            // What a migration may leave on its connection beyond its transaction: the
            // pragmas are set back, and a connection with temporary objects is closed
            // rather than handed to the next step.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if sqlx::raw_sql(RESET_PRAGMAS)
                        .execute(&mut *conn)
                        .await
                        .is_err()
                    {
                        return Ok(false);
                    }
                    let temporary: Result<i64, _> =
                        sqlx::query_scalar("SELECT count(*) FROM sqlite_temp_master")
                            .fetch_one(&mut *conn)
                            .await;
                    Ok(matches!(temporary, Ok(0)))
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect {
                url: url.to_string(),
                source,
            })?;
        Ok(SqliteDatabase {
            pool,
            path: path.clone(),
            store: VersionStore::new(Dialect::Sqlite, None),
        })
    }
}

#[cfg(test)]
impl SqliteDatabase {
    /// Whether `table` exists.
    async fn table_exists(&self, table: &str) -> anyhow::Result<bool> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        )
        .bind(table)
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn store(&self) -> &VersionStore {
        &self.store
    }

    async fn reader(&self) -> anyhow::Result<Box<dyn Reader + '_>> {
        let conn = self.pool.acquire().await.map_err(|source| DbError::Query {
            doing: "reading wasmig's tables".into(),
            source,
        })?;
        Ok(Box::new(conn))
    }

    async fn run_autocommit(
        &self,
        script: &str,
        policy: &Policy,
        // SQLite has neither timeout: the runner refuses them before any step runs.
        _lock: Option<Duration>,
        _statement: Option<Duration>,
    ) -> Result<usize, ScriptFailure> {
        let statements = super::autocommit_statements(script, Dialect::Sqlite, policy)?;
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

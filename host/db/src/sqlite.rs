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

// `SqlError` is the WIT record handed to the guest as is; errors are the cold path, and
// boxing it would only add a conversion at every trait boundary.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteColumn, SqliteConnectOptions, SqlitePoolOptions, SqliteRow,
    SqliteValueRef,
};
use sqlx::{
    Arguments, AssertSqlSafe, Column as _, Decode, Encode, Executor, Row, SqlSafeStr, Sqlite,
    SqliteConnection, SqlitePool, Statement, Transaction, Type, TypeInfo, ValueRef,
};

use super::lock::{self, Attempt, LockGuard, SQLITE_LOCK_SUFFIX};
use super::value::{self, ParamRef};
use super::{
    ARTIFACT_TABLE, Canceller, CursorState, Database, DatabaseUrl, DbError, FAILED_TABLE,
    FailedMark, HISTORY_TABLE, HistoryEntry, ScriptFailure, Session, SqlResult, StepRecord,
    StoredArtifact, VERSION_TABLE,
};
use super::{CHECKPOINT_TABLE, Checkpoint, copy, tx_control};
use wasmig_contract::{Column, Dialect, QueryResult, SqlError, Value};

/// Connections in the pool: one session, the version-table reads, and a spare.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection waits for another's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Virtual-machine instructions between two calls of the cancel check: often enough to stop
/// within microseconds, rare enough to cost nothing measurable.
const PROGRESS_OPS: i32 = 1_000;

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

/// Reads a timestamp column written by [`history_time`].
fn parse_time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(e),
        })
}

/// The history table's timestamp text: fixed width, so it sorts as it reads.
fn history_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl SqliteDatabase {
    /// [`Database::begin`], with the concrete session type.
    async fn begin_session(&self) -> anyhow::Result<SqliteSession> {
        // IMMEDIATE takes the write lock now: a second writer waits (busy timeout) at the
        // start instead of failing with SQLITE_BUSY halfway through a migration.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|source| DbError::Query {
                doing: "beginning a transaction".into(),
                source,
            })?;
        let cancel = Arc::new(CancelState::default());
        let mut handle = tx.lock_handle().await.map_err(|source| DbError::Query {
            doing: "installing the cancel handler".into(),
            source,
        })?;
        let check = Arc::clone(&cancel);
        handle.set_progress_handler(PROGRESS_OPS, move || !check.should_interrupt());
        // Only wasmig ends this transaction: a commit by anything else on this connection
        // while the session lasts (a statement that slipped past `tx_control`, or the
        // autocommitted statements after it) is turned into a rollback and remembered, and so
        // is a rollback, for `transaction_intact`. Both hooks are removed before wasmig
        // commits or rolls back, and go inert when the session ends.
        let hook = Arc::clone(&cancel);
        handle.set_commit_hook(move || {
            if hook.ended.load(Ordering::SeqCst) {
                return true;
            }
            hook.foreign_end.store(true, Ordering::SeqCst);
            false
        });
        let hook = Arc::clone(&cancel);
        handle.set_rollback_hook(move || {
            if !hook.ended.load(Ordering::SeqCst) {
                hook.foreign_end.store(true, Ordering::SeqCst);
            }
        });
        drop(handle);
        Ok(SqliteSession {
            tx,
            _ended: EndGuard(Arc::clone(&cancel)),
            cancel,
        })
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn ensure_version_tables(&self) -> anyhow::Result<()> {
        let history = |name: &str| {
            format!(
                "CREATE TABLE IF NOT EXISTS {name} (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     revision TEXT NOT NULL,
                     direction TEXT NOT NULL CHECK (direction IN
                         ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve')),
                     checksum TEXT NOT NULL,
                     started_at TEXT NOT NULL,
                     finished_at TEXT NOT NULL,
                     duration_ms BIGINT NOT NULL,
                     wasmig_version TEXT NOT NULL,
                     error TEXT,
                     sqlstate TEXT
                 );"
            )
        };
        let query_error = |source| DbError::Query {
            doing: "creating the version tables".into(),
            source,
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (revision TEXT PRIMARY KEY); {}",
            history(HISTORY_TABLE)
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
                history(HISTORY_TABLE)
            );
            sqlx::raw_sql(AssertSqlSafe(rebuild))
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            tx.commit().await.map_err(query_error)?;
        }
        // Failure states (`transaction = "none"`): the failed marks.
        let failure_ddl = format!(
            "CREATE TABLE IF NOT EXISTS {FAILED_TABLE} (
                 revision TEXT PRIMARY KEY,
                 direction TEXT NOT NULL,
                 remove_heads TEXT NOT NULL,
                 add_heads TEXT NOT NULL,
                 statement BIGINT NOT NULL,
                 error TEXT NOT NULL,
                 sqlstate TEXT,
                 failed_at TEXT NOT NULL
             );"
        );
        sqlx::raw_sql(AssertSqlSafe(failure_ddl))
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        // The artifact table, kept apart from the DDL above so each can grow on its own.
        let artifact_ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ARTIFACT_TABLE} (
                 revision TEXT PRIMARY KEY,
                 kind TEXT NOT NULL,
                 checksum TEXT NOT NULL,
                 manifest TEXT NOT NULL,
                 up_sql TEXT,
                 down_sql TEXT,
                 component BLOB,
                 source_checksum TEXT,
                 stored_at TEXT NOT NULL
             )"
        );
        sqlx::raw_sql(AssertSqlSafe(artifact_ddl))
            .execute(&self.pool)
            .await
            .map_err(|source| DbError::Query {
                doing: format!("creating {ARTIFACT_TABLE}"),
                source,
            })?;
        let checkpoint_ddl = format!(
            "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
                 revision TEXT PRIMARY KEY,
                 direction TEXT NOT NULL,
                 remove_heads TEXT NOT NULL,
                 add_heads TEXT NOT NULL,
                 checkpoint TEXT NOT NULL,
                 batches BIGINT NOT NULL,
                 checksum TEXT NOT NULL,
                 started_at TEXT NOT NULL,
                 updated_at TEXT NOT NULL
             )"
        );
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
                    direction: row.try_get("direction")?,
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
                    direction: row.try_get("direction")?,
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
                    direction: row.try_get("direction")?,
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

/// Tries the exclusive lock on `<db file>.wasmig-lock`.
struct FileLockAttempt {
    /// Opened by [`Database::lock`]; moved into the [`FileLock`] once locked, else dropped
    /// (closed) with the attempt.
    file: std::fs::File,
    /// Its path, for messages.
    path: std::path::PathBuf,
}

impl FileLockAttempt {
    /// Writes who holds the lock into the file, for a waiting run to report. Best effort:
    /// the lock itself is the OS lock, not the text.
    fn write_holder(&mut self) {
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
struct FileLock {
    /// Locked by [`Database::lock`]; unlocked and closed by [`LockGuard::release`]. The
    /// OS releases the lock when the file is closed, so dropping it (a panic) or the
    /// process dying releases it too.
    file: Option<std::fs::File>,
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

/// What the progress handler and the commit and rollback hooks of a session's connection
/// consult.
#[derive(Default)]
struct CancelState {
    /// Set by the canceller; cleared when the session starts its next call (not its next
    /// statement: a cancel landing between two statements of one call must still stop it).
    requested: AtomicBool,
    /// Set when the transaction was committed or rolled back by something other than
    /// wasmig (see [`Session::transaction_intact`]).
    foreign_end: AtomicBool,
    /// Set when the session ends: the handler stays installed on the pooled connection
    /// (until the next session replaces it) and must then never interrupt anything.
    ended: AtomicBool,
}

impl CancelState {
    fn should_interrupt(&self) -> bool {
        self.requested.load(Ordering::SeqCst) && !self.ended.load(Ordering::SeqCst)
    }
}

/// Marks the cancel state ended when the session is dropped, however it ends.
struct EndGuard(Arc<CancelState>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::SeqCst);
    }
}

/// One migration's transaction.
pub(crate) struct SqliteSession {
    /// Begun by [`SqliteDatabase::begin`] on a pooled connection; consumed by `commit` or
    /// `rollback`. Dropped unfinished, sqlx rolls it back and returns the connection.
    tx: Transaction<'static, Sqlite>,
    /// Shared with the progress handler installed on `tx`'s connection and the canceller.
    cancel: Arc<CancelState>,
    /// Neutralises that progress handler when the session goes away.
    _ended: EndGuard,
}

impl SqliteSession {
    /// Starts a call of the session: a cancel aimed at an earlier call (or at none) must
    /// not stop this one. Called once per call, never per statement.
    fn start_call(&self) {
        self.cancel.requested.store(false, Ordering::SeqCst);
    }

    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    async fn run_script(&mut self, script: String) -> SqlResult<()> {
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(self.conn())
            .await
            .map(drop)
            .map_err(sql_error)
    }

    async fn execute_args(&mut self, sql: &str, args: SqliteArguments) -> SqlResult<u64> {
        let done = sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(self.conn())
            .await
            .map_err(sql_error)?;
        Ok(done.rows_affected())
    }

    /// Removes the progress handler and the hooks before wasmig commits or rolls back and
    /// the connection goes back to the pool.
    async fn remove_handler(&mut self) {
        if let Ok(mut handle) = self.tx.lock_handle().await {
            handle.remove_progress_handler();
            handle.remove_commit_hook();
            handle.remove_rollback_hook();
        }
    }
}

#[async_trait]
impl Session for SqliteSession {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn set_timeouts(
        &mut self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> anyhow::Result<()> {
        if lock.is_some() || statement.is_some() {
            anyhow::bail!("SQLite has no lock_timeout or statement_timeout");
        }
        Ok(())
    }

    fn canceller(&self) -> Arc<dyn Canceller> {
        Arc::new(SqliteCanceller(Arc::clone(&self.cancel)))
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        self.start_call();
        tx_control::check(sql, Dialect::Sqlite)?;
        let args = bind(params, None)?;
        self.execute_args(sql, args).await
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<QueryResult> {
        self.start_call();
        tx_control::check(sql, Dialect::Sqlite)?;
        let args = bind(params, None)?;
        // Prepared first for the columns, which an empty result would not show (sqlx caches
        // the statement, so the query below does not prepare it again).
        let statement = self
            .conn()
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(sql_error)?;
        let columns = statement.columns().iter().map(column).collect::<Vec<_>>();
        let rows = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch_all(self.conn())
            .await
            .map_err(sql_error)?;
        let rows = rows
            .iter()
            .map(|row| decode_row(row, &columns))
            .collect::<SqlResult<_>>()?;
        Ok(QueryResult { columns, rows })
    }

    async fn batch(&mut self, script: &str) -> SqlResult<()> {
        self.start_call();
        tx_control::check(script, Dialect::Sqlite)?;
        self.run_script(script.to_owned()).await
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> SqlResult<u64> {
        self.start_call();
        tx_control::check(sql, Dialect::Sqlite)?;
        // Bind every row first: a malformed value fails the call before any row ran.
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, row)| bind(row, Some(i)))
            .collect::<SqlResult<Vec<_>>>()?;
        // sqlx caches the prepared statement on the connection: prepared once, stepped per row.
        let mut total = 0;
        for args in rows {
            total += self.execute_args(sql, args).await?;
        }
        Ok(total)
    }

    async fn copy_in(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
    ) -> SqlResult<u64> {
        self.start_call();
        let target = copy::target(table, columns)?;
        let width = columns.len();
        copy::check_widths(rows, width)?;
        // Every value bound (and validated) before the first row is written.
        let mut inserts = Vec::new();
        for (n, chunk) in rows.chunks(copy::sqlite_rows_per_insert(width)).enumerate() {
            let mut args = SqliteArguments::default();
            for (i, row) in chunk.iter().enumerate() {
                let first = n * copy::sqlite_rows_per_insert(width);
                bind_into(&mut args, row, Some(first + i), true)?;
            }
            inserts.push((copy::sqlite_insert(&target, width, chunk.len()), args));
        }
        // sqlx caches each shape's prepared statement: at most two per call.
        let mut total = 0;
        for (sql, args) in inserts {
            total += self.execute_args(&sql, args).await?;
        }
        Ok(total)
    }

    async fn open_cursor(&mut self, sql: &str, params: &[Value]) -> SqlResult<CursorState> {
        // SQLite has no cursors that survive other statements on the connection: the host
        // reads the whole result and hands it out in chunks.
        let result = self.query(sql, params).await?;
        Ok(CursorState {
            columns: result.columns,
            name: None,
            buffered: result.rows.into(),
            done: false,
        })
    }

    async fn fetch(
        &mut self,
        cursor: &mut CursorState,
        max_rows: u32,
    ) -> SqlResult<Vec<Vec<Value>>> {
        let n = (max_rows.max(1) as usize).min(cursor.buffered.len());
        let chunk: Vec<_> = cursor.buffered.drain(..n).collect();
        if cursor.buffered.is_empty() {
            cursor.done = true;
        }
        Ok(chunk)
    }

    async fn close_cursor(&mut self, cursor: &mut CursorState) -> SqlResult<()> {
        cursor.buffered = VecDeque::new();
        cursor.done = true;
        Ok(())
    }

    async fn savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.start_call();
        self.run_script(format!("SAVEPOINT {}", savepoint_name(name)?))
            .await
    }

    async fn release_savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.start_call();
        self.run_script(format!("RELEASE SAVEPOINT {}", savepoint_name(name)?))
            .await
    }

    async fn rollback_to_savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.start_call();
        let name = savepoint_name(name)?;
        self.run_script(format!(
            "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
        ))
        .await
    }

    async fn transaction_intact(&mut self) -> anyhow::Result<bool> {
        Ok(!self.cancel.foreign_end.load(Ordering::SeqCst))
    }

    async fn record_step(&mut self, step: &StepRecord<'_>) -> anyhow::Result<()> {
        self.start_call();
        let query_error = |source| DbError::Query {
            doing: format!("recording {} in the version tables", step.revision),
            source,
        };
        for revision in step.remove {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {VERSION_TABLE} WHERE revision = ?"
            )))
            .bind(revision)
            .execute(self.conn())
            .await
            .map_err(query_error)?;
        }
        for revision in step.add {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {VERSION_TABLE} (revision) VALUES (?)"
            )))
            .bind(revision)
            .execute(self.conn())
            .await
            .map_err(query_error)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {HISTORY_TABLE}
                 (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
                  error, sqlstate)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(step.revision)
        .bind(step.direction)
        .bind(step.checksum)
        .bind(history_time(step.started_at))
        .bind(history_time(step.finished_at))
        .bind((step.finished_at - step.started_at).num_milliseconds())
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(step.error)
        .bind(step.sqlstate)
        .execute(self.conn())
        .await
        .map_err(query_error)?;
        Ok(())
    }

    async fn store_artifact(&mut self, artifact: &StoredArtifact) -> anyhow::Result<()> {
        self.start_call();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {ARTIFACT_TABLE}
                 (revision, kind, checksum, manifest, up_sql, down_sql, component,
                  source_checksum, stored_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (revision) DO UPDATE SET
                 kind = excluded.kind, checksum = excluded.checksum,
                 manifest = excluded.manifest, up_sql = excluded.up_sql,
                 down_sql = excluded.down_sql, component = excluded.component,
                 source_checksum = excluded.source_checksum, stored_at = excluded.stored_at"
        )))
        .bind(&artifact.revision)
        .bind(&artifact.kind)
        .bind(&artifact.checksum)
        .bind(&artifact.manifest)
        .bind(&artifact.up_sql)
        .bind(&artifact.down_sql)
        .bind(&artifact.component)
        .bind(&artifact.source_checksum)
        .bind(history_time(Utc::now()))
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!(
                "storing the artifact of {} in {ARTIFACT_TABLE}",
                artifact.revision
            ),
            source,
        })?;
        Ok(())
    }

    async fn forget_artifacts_except(&mut self, keep: &[String]) -> anyhow::Result<()> {
        self.start_call();
        // The ids as one JSON array parameter, however many there are.
        let keep = serde_json::to_string(keep).expect("strings serialize");
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {ARTIFACT_TABLE} WHERE revision NOT IN (SELECT value FROM json_each(?))"
        )))
        .bind(keep)
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!(
                "deleting stored artifacts of unapplied revisions from {ARTIFACT_TABLE}"
            ),
            source,
        })?;
        Ok(())
    }

    async fn forget_artifact(&mut self, revision: &str) -> anyhow::Result<()> {
        self.start_call();
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {ARTIFACT_TABLE} WHERE revision = ?"
        )))
        .bind(revision)
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!("deleting the stored artifact of {revision} from {ARTIFACT_TABLE}"),
            source,
        })?;
        Ok(())
    }

    async fn set_failed(&mut self, mark: &FailedMark) -> anyhow::Result<()> {
        self.start_call();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT OR REPLACE INTO {FAILED_TABLE}
                 (revision, direction, remove_heads, add_heads, statement, error, sqlstate, failed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(&mark.revision)
        .bind(&mark.direction)
        .bind(mark.remove_heads.join(","))
        .bind(mark.add_heads.join(","))
        .bind(mark.statement)
        .bind(&mark.error)
        .bind(&mark.sqlstate)
        .bind(history_time(mark.failed_at))
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!("marking {} failed", mark.revision),
            source,
        })?;
        Ok(())
    }

    async fn clear_failed(&mut self, revision: &str) -> anyhow::Result<()> {
        self.start_call();
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {FAILED_TABLE} WHERE revision = ?"
        )))
        .bind(revision)
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!("clearing the failed mark of {revision}"),
            source,
        })?;
        Ok(())
    }

    async fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        self.start_call();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT OR REPLACE INTO {CHECKPOINT_TABLE}
                 (revision, direction, remove_heads, add_heads, checkpoint, batches, checksum,
                  started_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(&checkpoint.revision)
        .bind(&checkpoint.direction)
        .bind(checkpoint.remove_heads.join(","))
        .bind(checkpoint.add_heads.join(","))
        .bind(&checkpoint.checkpoint)
        .bind(checkpoint.batches)
        .bind(&checkpoint.checksum)
        .bind(history_time(checkpoint.started_at))
        .bind(history_time(checkpoint.updated_at))
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!("saving the checkpoint of {}", checkpoint.revision),
            source,
        })?;
        Ok(())
    }

    async fn clear_checkpoint(&mut self, revision: &str) -> anyhow::Result<()> {
        self.start_call();
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {CHECKPOINT_TABLE} WHERE revision = ?"
        )))
        .bind(revision)
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!("deleting the checkpoint of {revision}"),
            source,
        })?;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> anyhow::Result<()> {
        self.remove_handler().await;
        self.tx.commit().await.map_err(|source| DbError::Query {
            doing: "committing the transaction".into(),
            source,
        })?;
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) -> anyhow::Result<()> {
        self.remove_handler().await;
        match self.tx.rollback().await {
            Ok(()) => Ok(()),
            // An interrupted INSERT/UPDATE/DELETE makes SQLite roll the whole transaction
            // back itself; then there is nothing left to roll back, which is what we wanted.
            Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {
                Ok(())
            }
            Err(source) => Err(DbError::Query {
                doing: "rolling back the transaction".into(),
                source,
            }
            .into()),
        }
    }
}

/// Interrupts the statement running on one session's connection (`SQLITE_INTERRUPT`).
struct SqliteCanceller(Arc<CancelState>);

#[async_trait]
impl Canceller for SqliteCanceller {
    async fn cancel(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
    }
}

/// Refuses a savepoint name that is not a plain identifier (names come from the host).
fn savepoint_name(name: &str) -> SqlResult<&str> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(name)
    } else {
        Err(SqlError::wasmig(
            "STATE",
            format!("invalid savepoint name `{name}`"),
        ))
    }
}

/// Maps a driver error to the WIT error: the extended result code in decimal for a
/// database error, [`super::client_error`] for anything else.
fn sql_error(err: sqlx::Error) -> SqlError {
    match &err {
        sqlx::Error::Database(db) => SqlError {
            code: db
                .code()
                .map_or_else(|| "WASMIG-IO".to_owned(), |c| c.into_owned()),
            message: db.message().to_owned(),
            detail: None,
            hint: None,
            constraint: None,
            table: None,
            column: None,
        },
        _ => super::client_error(err),
    }
}

/// Binds one row of parameters (`row` numbers it in an `execute-many`).
fn bind(params: &[Value], row: Option<usize>) -> SqlResult<SqliteArguments> {
    let mut args = SqliteArguments::default();
    bind_into(&mut args, params, row, false)?;
    Ok(args)
}

/// Appends one row of values to `args`: the parameters of a statement (`row` numbers it in
/// an `execute-many`), or with `columns` set, one row of a `copy-in` (errors then name the
/// row and column).
fn bind_into(
    args: &mut SqliteArguments,
    params: &[Value],
    row: Option<usize>,
    columns: bool,
) -> SqlResult<()> {
    fn add<'q, T: Encode<'q, Sqlite> + Type<Sqlite>>(
        args: &mut SqliteArguments,
        value: T,
        at: ParamRef,
    ) -> SqlResult<()> {
        args.add(value).map_err(|e| at.error(e))
    }
    for (i, value) in params.iter().enumerate() {
        let at = match (columns, row) {
            (true, Some(row)) => ParamRef::copy_column(row, i),
            _ => ParamRef::new('?', i).in_row(row),
        };
        let args = &mut *args;
        match value {
            Value::Null => add(args, None::<i64>, at)?,
            Value::Bool(v) => add(args, i64::from(*v), at)?,
            Value::Int16(v) => add(args, i64::from(*v), at)?,
            Value::Int32(v) => add(args, i64::from(*v), at)?,
            Value::Int64(v) => add(args, *v, at)?,
            Value::Float32(v) => add(args, f64::from(*v), at)?,
            Value::Float64(v) => add(args, *v, at)?,
            Value::Text(text) => add(args, text.as_str(), at)?,
            Value::Bytes(bytes) => add(args, bytes.as_slice(), at)?,
            // Validated like on PostgreSQL, so a malformed value fails on both; then bound as
            // the text itself, which SQLite's JSON and date functions read.
            Value::Json(text) | Value::Jsonb(text) => {
                value::check_json(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Uuid(text) => {
                value::parse_uuid(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Date(text) => {
                value::parse_date(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Time(text) => {
                value::parse_time(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Timestamp(text) => {
                value::parse_timestamp(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Timestamptz(text) => {
                value::parse_timestamptz(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Numeric(_) => {
                return Err(at.error(
                    "SQLite has no exact numeric type; bind the decimal as text, or as a float if rounding is acceptable",
                ));
            }
            Value::Array(_) => {
                return Err(at.error(
                    "SQLite has no array type; bind the elements as JSON text (a json value) or store them in a separate table",
                ));
            }
        }
    }
    Ok(())
}

/// A result column: its name and the declared type as sqlx reports it (empty for an
/// expression or a type sqlx does not recognise).
fn column(col: &SqliteColumn) -> Column {
    let type_name = match col.type_info().name() {
        "NULL" => String::new(),
        name => name.to_owned(),
    };
    Column {
        name: col.name().to_owned(),
        type_name,
    }
}

/// Reads one row, each cell by its storage class (SQLite columns are not typed).
fn decode_row(row: &SqliteRow, columns: &[Column]) -> SqlResult<Vec<Value>> {
    (0..row.len())
        .map(|i| {
            let cell = row.try_get_raw(i).map_err(sql_error)?;
            decode_cell(cell).map_err(|e| {
                let name = columns.get(i).map_or("?", |c| c.name.as_str());
                SqlError::wasmig(
                    "DECODE",
                    format!(
                        "cannot read column `{name}`: {e}; cast it in SQL (`CAST({name} AS BLOB)`)"
                    ),
                )
            })
        })
        .collect()
}

fn decode_cell(cell: SqliteValueRef<'_>) -> Result<Value, BoxDynError> {
    fn dec<'r, T: Decode<'r, Sqlite>>(cell: SqliteValueRef<'r>) -> Result<T, BoxDynError> {
        T::decode(cell)
    }
    if cell.is_null() {
        return Ok(Value::Null);
    }
    let class = cell.type_info().name().to_owned();
    Ok(match class.as_str() {
        "INTEGER" => Value::Int64(dec(cell)?),
        "REAL" => Value::Float64(dec(cell)?),
        "TEXT" => Value::Text(dec(cell)?),
        "BLOB" => Value::Bytes(dec(cell)?),
        other => return Err(format!("unexpected storage class {other}").into()),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;
    use std::time::Instant;

    use chrono::TimeDelta;

    use super::*;
    use wasmig_contract::ArrayValue;

    /// A fresh database file for one test, deleted when the test ends.
    struct TestDb {
        path: PathBuf,
        db: SqliteDatabase,
    }

    impl TestDb {
        async fn new() -> TestDb {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let path = std::env::temp_dir().join(format!(
                "wasmig_dbtest_{}_{}_{nanos}.db",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let url = DatabaseUrl::Sqlite { path: path.clone() };
            TestDb {
                db: SqliteDatabase::connect(&url).await.unwrap(),
                path,
            }
        }

        async fn session(&self) -> Box<dyn Session> {
            self.db.begin().await.unwrap()
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let mut path = self.path.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn debug<T: std::fmt::Debug>(value: T) -> String {
        format!("{value:?}")
    }

    #[tokio::test]
    async fn storable_values_round_trip_by_storage_class() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE v (n INTEGER, x)").await.unwrap();
        let cases = [
            (Value::Null, Value::Null),
            (Value::Bool(true), Value::Int64(1)),
            (Value::Bool(false), Value::Int64(0)),
            (Value::Int16(-3), Value::Int64(-3)),
            (Value::Int32(70_000), Value::Int64(70_000)),
            (Value::Int64(i64::MIN), Value::Int64(i64::MIN)),
            (Value::Float32(1.5), Value::Float64(1.5)),
            (Value::Float64(-2.25e100), Value::Float64(-2.25e100)),
            (text("héllo ✓"), text("héllo ✓")),
            (Value::Bytes(vec![0, 1, 255]), Value::Bytes(vec![0, 1, 255])),
            (Value::Json("{\"a\": 1}".into()), text("{\"a\": 1}")),
            (Value::Jsonb("[1]".into()), text("[1]")),
            (
                Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
                text("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            ),
            (Value::Date("2024-02-29".into()), text("2024-02-29")),
            (Value::Time("03:04:05.5".into()), text("03:04:05.5")),
            (
                Value::Timestamp("2024-01-02T03:04:05".into()),
                text("2024-01-02T03:04:05"),
            ),
            (
                Value::Timestamptz("2024-01-02T03:04:05Z".into()),
                text("2024-01-02T03:04:05Z"),
            ),
        ];
        for (i, (bound, _)) in cases.iter().enumerate() {
            let n = Value::Int64(i as i64);
            assert_eq!(
                s.execute("INSERT INTO v (n, x) VALUES (?, ?)", &[n, bound.clone()])
                    .await
                    .unwrap(),
                1
            );
        }
        let result = s.query("SELECT x FROM v ORDER BY n", &[]).await.unwrap();
        let expected: Vec<Vec<Value>> = cases.iter().map(|(_, read)| vec![read.clone()]).collect();
        assert_eq!(debug(&result.rows), debug(&expected));
        // SQLite's date functions read the bound text.
        let date = s
            .query(
                "SELECT date(?, '+1 day')",
                &[Value::Date("2024-02-29".into())],
            )
            .await
            .unwrap();
        assert_eq!(debug(&date.rows), debug(vec![vec![text("2024-03-01")]]));
    }

    #[tokio::test]
    async fn columns_report_the_declared_type_even_for_an_empty_result() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE c (i INTEGER, t VARCHAR(10), r REAL, b BLOB, u)")
            .await
            .unwrap();
        let result = s
            .query("SELECT i, t, r, b, u, 1 + 1 AS two FROM c", &[])
            .await
            .unwrap();
        assert!(result.rows.is_empty());
        let columns: Vec<(&str, &str)> = result
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_name.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("i", "INTEGER"),
                ("t", "TEXT"),
                ("r", "REAL"),
                ("b", "BLOB"),
                ("u", ""),
                ("two", "")
            ]
        );
    }

    #[tokio::test]
    async fn numeric_arrays_and_malformed_values_are_refused_with_wasmig_bind() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let cases = [
            (
                Value::Numeric("1.5".into()),
                "parameter ?2: SQLite has no exact numeric type",
            ),
            (
                Value::Array(ArrayValue::Int32(vec![Some(1)])),
                "parameter ?2: SQLite has no array type",
            ),
            (
                Value::Date("2024-13-01".into()),
                "parameter ?2: `2024-13-01` is not a date YYYY-MM-DD",
            ),
            (
                Value::Uuid("nope".into()),
                "parameter ?2: `nope` is not a UUID",
            ),
            (
                Value::Json("{".into()),
                "parameter ?2: `{` is not a JSON document",
            ),
        ];
        for (value, message) in cases {
            let err = s
                .execute("SELECT ?, ?", &[Value::Int32(1), value])
                .await
                .unwrap_err();
            assert_eq!(err.code, "WASMIG-BIND");
            assert!(err.message.contains(message), "{}", err.message);
        }
        s.batch("CREATE TABLE m (n)").await.unwrap();
        let rows = vec![vec![Value::Int32(1)], vec![Value::Numeric("2".into())]];
        let err = s
            .execute_many("INSERT INTO m VALUES (?)", &rows)
            .await
            .unwrap_err();
        assert!(
            err.message.starts_with("row 2, parameter ?1: "),
            "{}",
            err.message
        );
        let count = s.query("SELECT count(*) FROM m", &[]).await.unwrap();
        assert_eq!(debug(&count.rows), debug(vec![vec![Value::Int64(0)]]));
    }

    #[tokio::test]
    async fn database_errors_carry_the_extended_result_code() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE u (id INTEGER, name TEXT UNIQUE)")
            .await
            .unwrap();
        s.execute("INSERT INTO u VALUES (1, 'a')", &[])
            .await
            .unwrap();
        let err = s
            .execute("INSERT INTO u VALUES (2, 'a')", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code, "2067");
        assert_eq!(err.message, "UNIQUE constraint failed: u.name");
        let err = s.query("SELECT * FROM missing", &[]).await.unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("1", "no such table: missing")
        );
    }

    #[tokio::test]
    async fn a_cursor_hands_out_ten_thousand_rows_in_chunks_between_other_statements() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch(
            "CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
             INSERT INTO big (id) SELECT x FROM c",
        )
        .await
        .unwrap();
        let mut cursor = s
            .open_cursor(
                "SELECT id FROM big WHERE id > ? ORDER BY id",
                &[Value::Int64(0)],
            )
            .await
            .unwrap();
        assert_eq!(cursor.columns[0].type_name, "INTEGER");
        let (mut seen, mut chunks) = (0, 0);
        loop {
            let rows = s.fetch(&mut cursor, 1000).await.unwrap();
            if rows.is_empty() {
                break;
            }
            chunks += 1;
            for row in &rows {
                seen += 1;
                assert_eq!(debug(&row[0]), debug(Value::Int64(seen)));
            }
            let last = rows.last().unwrap()[0].clone();
            assert_eq!(
                s.execute("UPDATE big SET v = v + 1 WHERE id = ?", &[last])
                    .await
                    .unwrap(),
                1
            );
        }
        assert_eq!((seen, chunks), (10_000, 10));
        assert!(cursor.done);
        s.close_cursor(&mut cursor).await.unwrap();
        s.close_cursor(&mut cursor).await.unwrap();
        let sum = s.query("SELECT sum(v) FROM big", &[]).await.unwrap();
        assert_eq!(debug(&sum.rows), debug(vec![vec![Value::Int64(10)]]));
    }

    #[tokio::test]
    async fn rolling_back_a_savepoint_undoes_its_work() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE sp (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        s.savepoint("wasmig_sp_1").await.unwrap();
        s.execute("INSERT INTO sp VALUES (1)", &[]).await.unwrap();
        assert_eq!(
            s.execute("INSERT INTO sp VALUES (1)", &[])
                .await
                .unwrap_err()
                .code,
            "1555"
        );
        s.rollback_to_savepoint("wasmig_sp_1").await.unwrap();
        s.savepoint("wasmig_sp_2").await.unwrap();
        s.execute("INSERT INTO sp VALUES (2)", &[]).await.unwrap();
        s.release_savepoint("wasmig_sp_2").await.unwrap();
        assert_eq!(
            s.savepoint("x; DROP TABLE sp").await.unwrap_err().code,
            "WASMIG-STATE"
        );
        s.commit().await.unwrap();
        let mut s = t.session().await;
        let ids = s.query("SELECT id FROM sp", &[]).await.unwrap();
        assert_eq!(debug(&ids.rows), debug(vec![vec![Value::Int64(2)]]));
    }

    #[tokio::test]
    async fn the_canceller_interrupts_a_long_query_without_poisoning_the_connection() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let canceller = s.canceller();
        // Cancelling while nothing runs is harmless.
        canceller.cancel().await;
        s.execute("SELECT 1", &[]).await.unwrap();
        let started = Instant::now();
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            canceller.cancel().await;
        });
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let err = s.query(endless, &[]).await.unwrap_err();
        cancel.await.unwrap();
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("9", "interrupted")
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The session goes on, and so does the next one on the pooled connection.
        s.execute("SELECT 1", &[]).await.unwrap();
        let stale = s.canceller();
        drop(s);
        stale.cancel().await;
        let bounded = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*) FROM c";
        // Outside any session (the dropped session's handler is still installed).
        let count: i64 = sqlx::query_scalar(bounded)
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
        assert_eq!(count, 100_000);
        let mut s = t.session().await;
        let count = s.query(bounded, &[]).await.unwrap();
        assert_eq!(debug(&count.rows), debug(vec![vec![Value::Int64(100_000)]]));
        s.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn a_cancel_between_two_statements_of_a_call_still_stops_it() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let canceller = s.canceller();
        // Many short statements in one call: most cancels land between two of them.
        let rows: Vec<Vec<Value>> = (0..20_000).map(|_| vec![Value::Int64(20_000)]).collect();
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            canceller.cancel().await;
        });
        let started = Instant::now();
        let err = s
            .execute_many(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c",
                &rows,
            )
            .await
            .unwrap_err();
        cancel.await.unwrap();
        assert_eq!(err.code, "9", "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(30));
        // The next call starts afresh.
        s.execute("SELECT 1", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn transaction_control_is_refused_but_trigger_bodies_are_not() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let err = s
            .batch("CREATE TABLE early (x INTEGER); COMMIT; CREATE TABLE late (x INTEGER)")
            .await
            .unwrap_err();
        assert_eq!(err.code, "WASMIG-STATE");
        assert!(
            err.message.starts_with("`COMMIT` (statement 2"),
            "{}",
            err.message
        );
        assert!(s.execute("end transaction", &[]).await.is_err());
        assert!(s.query("RELEASE x", &[]).await.is_err());
        assert!(s.open_cursor("BEGIN", &[]).await.is_err());
        s.batch(
            "CREATE TABLE t (x INTEGER);
             CREATE TABLE audit (msg TEXT);
             CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN
                 INSERT INTO audit VALUES ('COMMIT; ' || CASE WHEN new.x > 0 THEN 'up' ELSE 'down' END);
             END;
             INSERT INTO t VALUES (1)",
        )
        .await
        .unwrap();
        let audit = s.query("SELECT msg FROM audit", &[]).await.unwrap();
        assert_eq!(debug(&audit.rows), debug(vec![vec![text("COMMIT; up")]]));
        assert!(!t.db.table_exists("early").await.unwrap());
        // A rolled-back savepoint is not the end of the transaction.
        s.savepoint("a").await.unwrap();
        s.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
        s.rollback_to_savepoint("a").await.unwrap();
        assert!(s.transaction_intact().await.unwrap());
        s.commit().await.unwrap();
        assert!(t.db.table_exists("audit").await.unwrap());
    }

    #[tokio::test]
    async fn a_transaction_ended_behind_wasmigs_back_is_detected_and_nothing_commits() {
        let t = TestDb::new().await;
        // `OR ROLLBACK` rolls the whole transaction back from inside a statement.
        let mut s = t.session().await;
        s.batch("CREATE TABLE u (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        s.execute("INSERT INTO u VALUES (1)", &[]).await.unwrap();
        assert!(
            s.execute("INSERT OR ROLLBACK INTO u VALUES (1)", &[])
                .await
                .is_err()
        );
        assert!(!s.transaction_intact().await.unwrap());
        s.rollback().await.unwrap();
        // A COMMIT that got past the check is turned into a rollback, and so are the
        // statements that would then autocommit.
        let mut s = t.db.begin_session().await.unwrap();
        s.run_script("CREATE TABLE v (x INTEGER)".into())
            .await
            .unwrap();
        assert!(s.run_script("COMMIT".into()).await.is_err());
        assert!(
            s.run_script("CREATE TABLE w (x INTEGER)".into())
                .await
                .is_err()
        );
        assert!(!s.transaction_intact().await.unwrap());
        Box::new(s).rollback().await.unwrap();
        assert!(!t.db.table_exists("v").await.unwrap());
        assert!(!t.db.table_exists("w").await.unwrap());
        // The pooled connections commit normally again.
        t.db.ensure_version_tables().await.unwrap();
        assert!(t.db.table_exists(VERSION_TABLE).await.unwrap());
    }

    #[tokio::test]
    async fn rollback_succeeds_after_an_interrupted_write() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE w (x INTEGER)").await.unwrap();
        let canceller = s.canceller();
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            canceller.cancel().await;
        });
        let endless = "INSERT INTO w WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        assert_eq!(s.execute(endless, &[]).await.unwrap_err().code, "9");
        cancel.await.unwrap();
        s.rollback().await.unwrap();
        assert!(!t.db.table_exists("w").await.unwrap());
    }

    #[tokio::test]
    async fn steps_are_recorded_in_the_version_tables() {
        let t = TestDb::new().await;
        assert!(t.db.heads().await.unwrap().is_empty());
        assert!(t.db.history().await.unwrap().is_empty());
        assert!(!t.db.table_exists(VERSION_TABLE).await.unwrap());
        t.db.ensure_version_tables().await.unwrap();
        t.db.ensure_version_tables().await.unwrap();
        let start = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let (none, a, bc) = (
            Vec::new(),
            vec!["a".to_owned()],
            vec!["c".to_owned(), "b".to_owned()],
        );
        let step = |remove, add, revision, direction| StepRecord {
            remove,
            add,
            revision,
            direction,
            checksum: "ab12",
            started_at: start,
            finished_at: start + TimeDelta::milliseconds(250),
            error: None,
            sqlstate: None,
        };
        let mut s = t.session().await;
        s.record_step(&step(&none, &a, "a", "upgrade"))
            .await
            .unwrap();
        s.commit().await.unwrap();
        let mut s = t.session().await;
        s.record_step(&step(&a, &bc, "b", "upgrade")).await.unwrap();
        s.commit().await.unwrap();
        let mut s = t.session().await;
        s.record_step(&step(&bc, &none, "b", "downgrade"))
            .await
            .unwrap();
        s.rollback().await.unwrap();
        assert_eq!(t.db.heads().await.unwrap(), ["b", "c"]);
        let history = t.db.history().await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(
            (history[0].revision.as_str(), history[1].revision.as_str()),
            ("a", "b")
        );
        assert_eq!(history[1].started_at, start);
        assert_eq!(history[1].duration_ms, 250);
        assert_eq!(history[1].wasmig_version, env!("CARGO_PKG_VERSION"));
        let mut s = t.session().await;
        let stored = s
            .query("SELECT started_at FROM wasmig_history WHERE id = 1", &[])
            .await
            .unwrap();
        assert_eq!(
            debug(&stored.rows),
            debug(vec![vec![text("2024-01-02T03:04:05.123456Z")]])
        );
    }

    #[tokio::test]
    async fn commits_are_visible_and_rollbacks_are_not() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE v (n INTEGER)").await.unwrap();
        s.execute("INSERT INTO v VALUES (?)", &[Value::Int32(1)])
            .await
            .unwrap();
        s.commit().await.unwrap();
        let mut s = t.session().await;
        s.execute("INSERT INTO v VALUES (?)", &[Value::Int32(2)])
            .await
            .unwrap();
        s.rollback().await.unwrap();
        let mut s = t.session().await;
        s.execute("INSERT INTO v VALUES (?)", &[Value::Int32(3)])
            .await
            .unwrap();
        drop(s);
        let mut s = t.session().await;
        let rows = s.query("SELECT n FROM v", &[]).await.unwrap();
        assert_eq!(debug(&rows.rows), debug(vec![vec![Value::Int64(1)]]));
        let rows: Vec<Vec<Value>> = (0..4).map(|i| vec![Value::Int32(i)]).collect();
        assert_eq!(
            s.execute_many("INSERT INTO v VALUES (?)", &rows)
                .await
                .unwrap(),
            4
        );
    }

    #[tokio::test]
    async fn a_missing_file_is_created_but_a_missing_directory_is_an_error() {
        let t = TestDb::new().await;
        assert!(t.path.exists());
        let url = DatabaseUrl::Sqlite {
            path: t.path.join("no/such/dir.db"),
        };
        let err = SqliteDatabase::connect(&url).await.err().unwrap();
        assert!(matches!(err, DbError::Connect { .. }), "{err}");
    }
}

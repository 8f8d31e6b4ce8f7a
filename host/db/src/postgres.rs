//! The PostgreSQL backend: a sqlx pool, sessions on one pooled connection each, and the
//! translation between the WIT value model and PostgreSQL's binary wire formats.
//!
//! Owns: binding every WIT [`Value`] as a typed parameter (null untyped), decoding result
//! columns by their type into [`Value`]s, mapping driver errors to [`SqlError`], server-side
//! cursors, savepoints, cancellation through `pg_cancel_backend`, and the version tables.
//!
//! Not here: which statements a migration runs or when a session commits (the runner and
//! the sandbox decide), remembering failed statements (the sandbox), the text formats
//! themselves (`db::value`).
//!
//! sqlx caches prepared statements per connection, keyed by the SQL text only. Two hazards
//! follow, both handled here: a cached statement keeps the parameter types of its first use
//! (see [`PgSession::prepare_checked`]), and a cached statement's result shape is fixed, so
//! PostgreSQL refuses it once DDL changed the table ("cached plan must not change result
//! type"; see [`PgSession::forget_statements`]).

// `SqlError` is the WIT record handed to the guest as is; errors are the cold path, and
// boxing it would only add a conversion at every trait boundary.
#![allow(clippy::result_large_err)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgColumn, PgConnectOptions, PgDatabaseError, PgHasArrayType,
    PgPool, PgPoolOptions, PgRow, PgStatement, PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef,
};
use sqlx::{
    Arguments, AssertSqlSafe, Column as _, ConnectOptions, Connection, Decode, Either, Encode,
    Executor, PgConnection, Postgres, Row, SqlSafeStr, SqlStr, Statement, Transaction, Type,
    TypeInfo, ValueRef,
};
use uuid::Uuid;

use super::lock::{self, Attempt, LockGuard, PG_LOCK_KEY};
use super::value::{self, ParamRef};
use super::{
    ARTIFACT_TABLE, Canceller, CursorState, Database, DatabaseUrl, DbError, FAILED_TABLE,
    FailedMark, FinishedStep, HISTORY_TABLE, HistoryEntry, ScriptFailure, Session, SqlResult,
    StepRecord, StoredArtifact, VERSION_TABLE,
};
use super::{CHECKPOINT_TABLE, Checkpoint, copy, pg_script, tx_control};
use wasmig_contract::{ArrayValue, Column, Dialect, QueryResult, SqlError, Value};

/// The values the history table's `direction` may take.
const DIRECTIONS: &str = "'upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve'";

/// The SQLSTATE [`Session::finish_step`]'s guard raises when the transaction is not the one
/// begun (a class no PostgreSQL error uses).
const TRANSACTION_ENDED_STATE: &str = "WMG01";

/// wasmig's tables, as [`PgDatabase::table_exists`] looks for them.
const PRESENT: [&str; 5] = [
    VERSION_TABLE,
    HISTORY_TABLE,
    FAILED_TABLE,
    ARTIFACT_TABLE,
    CHECKPOINT_TABLE,
];

/// What [`PgDatabase::table_exists`] keeps when the history table has its error columns.
const HISTORY_ERROR_COLUMNS: &str = "wasmig_history.error";

/// Connections in the pool: one session, the version-table reads, and a spare for cancelling.
const MAX_CONNECTIONS: u32 = 4;

/// Clears what a migration may leave on its connection beyond its transaction, before the
/// pool hands the connection to the next step: settings made with a plain `SET` (a
/// `search_path`, a `statement_timeout`, `SET ROLE`), advisory locks, `LISTEN`, cursors
/// `WITH HOLD`, temporary tables and sequences. This is `DISCARD ALL` without its
/// `DEALLOCATE ALL`, which would drop the statements sqlx keeps prepared on the connection
/// and make its next use of them fail. Settings given at connect time (the
/// `application_name`, sqlx's `TimeZone`, `DateStyle`…) are what `RESET ALL` returns to.
const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// A PostgreSQL database reached through a small pool.
///
/// The version tables (layout pinned: changing it needs a migration of wasmig's own):
///
/// ```sql
/// CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);   -- the current heads
/// CREATE TABLE wasmig_history (
///     id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
///     revision       TEXT NOT NULL,
///     direction      TEXT NOT NULL CHECK (direction IN
///                        ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve')),
///     checksum       TEXT NOT NULL,
///     started_at     TIMESTAMPTZ NOT NULL,
///     finished_at    TIMESTAMPTZ NOT NULL,
///     duration_ms    BIGINT NOT NULL,
///     wasmig_version TEXT NOT NULL,
///     error          TEXT,           -- `failed` rows: the error
///     sqlstate       TEXT            -- `failed` rows: its SQLSTATE
/// );
/// CREATE TABLE wasmig_failed (       -- revisions marked failed, until `wasmig resolve`
///     revision     TEXT PRIMARY KEY,
///     direction    TEXT NOT NULL,    -- the step that failed: upgrade or downgrade
///     remove_heads TEXT NOT NULL,    -- the step's head change, comma-separated
///     add_heads    TEXT NOT NULL,
///     statement    BIGINT NOT NULL,  -- the failed statement, from 1
///     error        TEXT NOT NULL,
///     sqlstate     TEXT,
///     failed_at    TIMESTAMPTZ NOT NULL
/// );
/// CREATE TABLE wasmig_artifact (                              -- what each applied revision ran
///     revision  TEXT PRIMARY KEY,
///     kind      TEXT NOT NULL,                                 -- sql, rust or wasm
///     checksum  TEXT NOT NULL,
///     manifest  TEXT NOT NULL,                                 -- the migration.toml text
///     up_sql    TEXT,
///     down_sql  TEXT,
///     component BYTEA,
///     source_checksum TEXT,  -- Python/JS/C: SHA-256 of the sources it was built from
///     stored_at TIMESTAMPTZ NOT NULL
/// );
/// CREATE TABLE wasmig_checkpoint (  -- batched steps part-way through
///     revision     TEXT PRIMARY KEY,
///     direction    TEXT NOT NULL,    -- the step under way: upgrade or downgrade
///     remove_heads TEXT NOT NULL,    -- its head change, comma-separated
///     add_heads    TEXT NOT NULL,
///     checkpoint   TEXT NOT NULL,    -- from the guest's last `next-batch`
///     batches      BIGINT NOT NULL,  -- batches committed
///     checksum     TEXT NOT NULL,    -- of the artifact they ran
///     started_at   TIMESTAMPTZ NOT NULL,
///     updated_at   TIMESTAMPTZ NOT NULL
/// );
/// ```
///
/// All live in the connection's current schema (the first of its `search_path`).
pub(crate) struct PgDatabase {
    /// Created by [`PgDatabase::connect`], closed by [`Database::close`]; sessions and
    /// cancellers hold clones (one shared pool).
    pool: PgPool,
    /// wasmig's own reads, version-table DDL and the migration lock, outside any step's
    /// transaction: the connection [`PgDatabase::connect`] opened to check the server, kept
    /// (one connection, no pool checkout or session reset per read); closed by
    /// [`Database::close`]. It never runs migration code, so nothing a migration leaves on a
    /// connection can reach it, and no migration can release the lock held on it.
    control: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    /// The tables (and [`HISTORY_ERROR_COLUMNS`]) known to exist, see
    /// [`PgDatabase::table_exists`].
    present: std::sync::Mutex<Vec<&'static str>>,
    /// The URL without its password, for messages.
    url: String,
}

impl PgDatabase {
    /// Connects, checking the server answers before building the pool.
    ///
    /// # Errors
    /// [`DbError::InvalidUrl`] when sqlx cannot parse the URL, [`DbError::Connect`] when the
    /// server cannot be reached or refuses the login.
    pub(crate) async fn connect(url: &DatabaseUrl) -> Result<Self, DbError> {
        let DatabaseUrl::Postgres { url: raw } = url else {
            return Err(DbError::InvalidUrl {
                url: url.to_string(),
                reason: "not a postgres:// URL".into(),
            });
        };
        let mut options = PgConnectOptions::from_str(raw).map_err(|e| DbError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        // Identify ourselves in pg_stat_activity, unless the URL chose a name.
        if options.get_application_name().is_none() {
            options = options.application_name("wasmig");
        }
        // One direct connection first: the pool retries a refused connection until its
        // acquire timeout and then reports only "pool timed out", hiding the real cause.
        let mut probe = options.connect().await.map_err(|source| DbError::Connect {
            url: url.to_string(),
            source,
        })?;
        // A wasmig killed in the middle of a statement leaves its server session running
        // it until the server notices the client is gone, which by default is only when it
        // next writes to the socket. PostgreSQL 14+ can look every second instead, so such a
        // statement stops (and rolls back) soon after the process dies.
        // (The server reports its version at connect time: no round trip.)
        let modern = probe.server_version_num().is_some_and(|v| v >= 140_000);
        if modern {
            options = options.options([("client_connection_check_interval", "1000")]);
            // The probe stays as the control connection, idle through long steps: a server
            // idle timeout must not end it half-way.
            sqlx::raw_sql("SET idle_session_timeout = 0")
                .execute(&mut probe)
                .await
                .map_err(|source| DbError::Connect {
                    url: url.to_string(),
                    source,
                })?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            // A run lasts seconds to hours, not days: a connection the server ended shows at
            // its next statement, which fails the step like any lost connection. A ping
            // before every checkout would cost a round trip per step.
            .test_before_acquire(false)
            // A connection that cannot be reset is closed rather than handed to the next step.
            .after_release(|conn, _| {
                Box::pin(
                    async move { Ok(sqlx::raw_sql(RESET_SESSION).execute(conn).await.is_ok()) },
                )
            })
            .connect_lazy_with(options);
        Ok(PgDatabase {
            pool,
            control: Arc::new(tokio::sync::Mutex::new(Some(probe))),
            present: std::sync::Mutex::new(Vec::new()),
            url: url.to_string(),
        })
    }

    /// Whether `table` exists in the search path (reads must not create the tables).
    ///
    /// One round trip looks for every wasmig table (and the history table's error columns)
    /// at once; what it finds is kept, since tables only appear during a run. What it does
    /// not find is looked for again next time: another run may create it meanwhile.
    async fn table_exists(&self, table: &str) -> anyhow::Result<bool> {
        let known = |present: &[&str]| present.contains(&table);
        if known(&self.present.lock().expect("not poisoned")) {
            return Ok(true);
        }
        // In the order of `PRESENT`; the column check goes last.
        let sql = format!(
            "SELECT {}, EXISTS (SELECT 1 FROM pg_attribute
                                WHERE attrelid = to_regclass('{HISTORY_TABLE}')
                                  AND attname = 'error' AND NOT attisdropped)",
            PRESENT
                .iter()
                .map(|t| format!("to_regclass('{t}') IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let doing = || "looking for wasmig's tables".to_owned();
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(&mut *self.control().await)
            .await
            .map_err(|source| DbError::Query {
                doing: doing(),
                source,
            })?;
        let names = PRESENT.iter().chain([&HISTORY_ERROR_COLUMNS]);
        let found = (0..=PRESENT.len())
            .map(|i| row.try_get::<bool, _>(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| DbError::Query {
                doing: doing(),
                source,
            })?;
        let mut present = self.present.lock().expect("not poisoned");
        for (name, found) in names.zip(found) {
            if found && !present.contains(name) {
                present.push(*name);
            }
        }
        Ok(known(&present))
    }

    /// Whether the history table has its `error` and `sqlstate` columns (added by the
    /// failure states; a read-only command does not upgrade an older table).
    async fn history_has_error_columns(&self) -> anyhow::Result<bool> {
        self.table_exists(HISTORY_ERROR_COLUMNS).await
    }
}

impl PgDatabase {
    /// The control connection (see the field).
    async fn control(&self) -> tokio::sync::MappedMutexGuard<'_, PgConnection> {
        tokio::sync::MutexGuard::map(self.control.lock().await, |c| {
            c.as_mut()
                .expect("the control connection is open until close")
        })
    }

    /// [`Database::begin`], with the concrete session type.
    async fn begin_session(&self) -> anyhow::Result<PgSession> {
        let doing = |what: &str| format!("{what} (beginning a transaction)");
        let mut tx = self.pool.begin().await.map_err(|source| DbError::Query {
            doing: "beginning a transaction".into(),
            source,
        })?;
        // Statements cached by an earlier session may describe tables a migration has altered
        // since; start every session without them.
        if tx.cached_statements_size() > 0 {
            tx.clear_cached_statements()
                .await
                .map_err(|source| DbError::Query {
                    doing: doing("clearing cached statements"),
                    source,
                })?;
        }
        // `txid_current()` assigns the transaction an id now (it would get one at its first
        // write anyway); the runner compares it before recording the step. (A simple query,
        // like wasmig's other per-step statements: one round trip, and nothing in the
        // connection's statement cache, which is cleared above whenever it holds anything.)
        let row = sqlx::raw_sql("SELECT pg_backend_pid(), txid_current(), current_schema()::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(|source| DbError::Query {
                doing: doing("reading the backend pid and transaction id"),
                source,
            })?;
        let read = || -> Result<(i32, i64, Option<String>), sqlx::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        };
        let (pid, xid, schema) = read().map_err(|source| DbError::Query {
            doing: doing("reading the backend pid and transaction id"),
            source,
        })?;
        Ok(PgSession {
            tx,
            canceller: Arc::new(PgCanceller {
                pool: self.pool.clone(),
                pid,
            }),
            cursors_opened: 0,
            xid,
            schema,
        })
    }
}

#[async_trait]
impl Database for PgDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn ensure_version_tables(&self) -> anyhow::Result<()> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (revision TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
                 id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 revision TEXT NOT NULL,
                 direction TEXT NOT NULL CHECK (direction IN ({DIRECTIONS})),
                 checksum TEXT NOT NULL,
                 started_at TIMESTAMPTZ NOT NULL,
                 finished_at TIMESTAMPTZ NOT NULL,
                 duration_ms BIGINT NOT NULL,
                 wasmig_version TEXT NOT NULL,
                 error TEXT,
                 sqlstate TEXT
             );
             -- Tables created before `stamp`, `rehash`, `failed` or `resolve` was recorded:
             -- widen the check (once).
             DO $$
             BEGIN
                 IF EXISTS (SELECT 1 FROM pg_constraint
                            WHERE conrelid = '{HISTORY_TABLE}'::regclass
                              AND conname = '{HISTORY_TABLE}_direction_check'
                              AND pg_get_constraintdef(oid) NOT LIKE '%resolve%') THEN
                     ALTER TABLE {HISTORY_TABLE} DROP CONSTRAINT {HISTORY_TABLE}_direction_check;
                     ALTER TABLE {HISTORY_TABLE} ADD CONSTRAINT {HISTORY_TABLE}_direction_check
                         CHECK (direction IN ({DIRECTIONS}));
                 END IF;
             END $$;"
        );
        sqlx::raw_sql(AssertSqlSafe(ddl))
            .execute(&mut *self.control().await)
            .await
            .map_err(|source| DbError::Query {
                doing: "creating the version tables".into(),
                source,
            })?;
        // Failure states (`transaction = "none"`): the history table's error columns (added
        // in place to older tables) and the failed marks.
        let failure_ddl = format!(
            "-- Checked first: ALTER TABLE locks the table even when there is nothing to add.
             DO $$
             BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_attribute
                                WHERE attrelid = '{HISTORY_TABLE}'::regclass
                                  AND attname = 'sqlstate' AND NOT attisdropped) THEN
                     ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS error TEXT,
                         ADD COLUMN IF NOT EXISTS sqlstate TEXT;
                 END IF;
             END $$;
             CREATE TABLE IF NOT EXISTS {FAILED_TABLE} (
                 revision TEXT PRIMARY KEY,
                 direction TEXT NOT NULL,
                 remove_heads TEXT NOT NULL,
                 add_heads TEXT NOT NULL,
                 statement BIGINT NOT NULL,
                 error TEXT NOT NULL,
                 sqlstate TEXT,
                 failed_at TIMESTAMPTZ NOT NULL
             );"
        );
        sqlx::raw_sql(AssertSqlSafe(failure_ddl))
            .execute(&mut *self.control().await)
            .await
            .map_err(|source| DbError::Query {
                doing: format!("creating {FAILED_TABLE}"),
                source,
            })?;
        // The artifact table, kept apart from the DDL above so each can grow on its own.
        let artifact_ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ARTIFACT_TABLE} (
                 revision TEXT PRIMARY KEY,
                 kind TEXT NOT NULL,
                 checksum TEXT NOT NULL,
                 manifest TEXT NOT NULL,
                 up_sql TEXT,
                 down_sql TEXT,
                 component BYTEA,
                 source_checksum TEXT,
                 stored_at TIMESTAMPTZ NOT NULL
             );
             -- A component is stored with every upgrade: compressed with lz4 where the
             -- server has it (PostgreSQL 14+), which writes a 27 KB component about twenty
             -- times faster than the default pglz, at a similar size. Once per table, by its
             -- owner only (ALTER TABLE needs ownership, and a role that merely may write the
             -- tables must keep working), waiting at most a second for the table's lock (it
             -- conflicts with readers such as pg_dump): otherwise the next run tries again.
             -- (Nested IFs and EXECUTE: older servers lack both the column and the syntax.)
             DO $$
             BEGIN
                 IF current_setting('server_version_num')::int >= 140000 THEN
                     IF EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                                WHERE a.attrelid = '{ARTIFACT_TABLE}'::regclass
                                  AND a.attname = 'component' AND a.attcompression = ''
                                  AND pg_has_role(c.relowner, 'USAGE')) THEN
                         PERFORM set_config('lock_timeout', '1s', true);
                         EXECUTE 'ALTER TABLE {ARTIFACT_TABLE} ALTER COLUMN component SET COMPRESSION lz4';
                     END IF;
                 END IF;
             EXCEPTION WHEN feature_not_supported OR insufficient_privilege OR lock_not_available THEN
                 NULL; -- built without lz4, not ours after all, or busy: pglz for now
             END $$;"
        );
        sqlx::raw_sql(AssertSqlSafe(artifact_ddl))
            .execute(&mut *self.control().await)
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
                 started_at TIMESTAMPTZ NOT NULL,
                 updated_at TIMESTAMPTZ NOT NULL
             )"
        );
        sqlx::raw_sql(AssertSqlSafe(checkpoint_ddl))
            .execute(&mut *self.control().await)
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
        lock: Option<Duration>,
        statement: Option<Duration>,
    ) -> Result<usize, ScriptFailure> {
        let statements = super::autocommit_statements(script, Dialect::Postgres)?;
        let total = statements.len();
        let nothing_ran = |error| ScriptFailure {
            statement: 0,
            total,
            error: Box::new(error),
        };
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| nothing_ran(super::client_error(e)))?;
        // A plain SET, for the session: the pool's reset (`RESET ALL`) undoes it when the
        // connection goes back.
        for (name, value) in [("lock_timeout", lock), ("statement_timeout", statement)] {
            if let Some(d) = value {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET {name} = '{}ms'",
                    d.as_millis().max(1)
                )))
                .execute(&mut *conn)
                .await
                .map_err(|e| nothing_ran(sql_error(e)))?;
            }
        }
        for (n, statement) in statements.iter().enumerate() {
            // One statement per simple query: several in one query string would share an
            // implicit transaction, where `CREATE INDEX CONCURRENTLY` is refused.
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
        let rows = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT revision, direction, remove_heads, add_heads, statement, error, sqlstate, failed_at
             FROM {FAILED_TABLE} ORDER BY failed_at, revision"
        )))
        .fetch_all(&mut *self.control().await)
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
                    failed_at: row.try_get("failed_at")?,
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
        let rows = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT revision, direction, remove_heads, add_heads, checkpoint, batches, checksum,
                    started_at, updated_at
             FROM {CHECKPOINT_TABLE} ORDER BY started_at, revision"
        )))
        .fetch_all(&mut *self.control().await)
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
                    started_at: row.try_get("started_at")?,
                    updated_at: row.try_get("updated_at")?,
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
             FROM {ARTIFACT_TABLE} WHERE revision = $1"
        )))
        .bind(revision)
        .fetch_optional(&mut *self.control().await)
        .await
        .map_err(|source| DbError::Query {
            doing: doing(),
            source,
        })?;
        row.map(|row| stored_artifact(&row))
            .transpose()
            .map_err(|source| {
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
        // Simple queries, as for every read here: one round trip each, nothing prepared.
        let doing = || format!("reading {VERSION_TABLE}");
        let rows = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT revision FROM {VERSION_TABLE} ORDER BY revision"
        )))
        .fetch_all(&mut *self.control().await)
        .await
        .map_err(|source| DbError::Query {
            doing: doing(),
            source,
        })?;
        rows.iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| {
                DbError::Query {
                    doing: doing(),
                    source,
                }
                .into()
            })
    }

    async fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        if !self.table_exists(HISTORY_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = || format!("reading {HISTORY_TABLE}");
        let rows = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT id, revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
                    {}
             FROM {HISTORY_TABLE} ORDER BY id",
            // Read-only commands do not upgrade the tables: an older table has no error columns.
            if self.history_has_error_columns().await? {
                "error, sqlstate"
            } else {
                "NULL::text AS error, NULL::text AS sqlstate"
            }
        )))
        .fetch_all(&mut *self.control().await)
        .await
        .map_err(|source| DbError::Query { doing: doing(), source })?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    id: row.try_get("id")?,
                    revision: row.try_get("revision")?,
                    direction: row.try_get("direction")?,
                    checksum: row.try_get("checksum")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
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
        // A session-level advisory lock belongs to its connection, so it must be one the
        // pool never hands out or resets: the control connection (idle between wasmig's
        // reads, with no idle timeout on PostgreSQL 14+, see `connect`). Held while
        // waiting, so no read interleaves with the attempts.
        let conn = self.control.clone().lock_owned().await;
        if conn.is_none() {
            anyhow::bail!("the database was closed before the migration lock was taken");
        }
        let mut attempt = PgLockAttempt {
            conn,
            application_name: self
                .pool
                .connect_options()
                .get_application_name()
                .unwrap_or("wasmig")
                .to_owned(),
        };
        if let Err(e) = lock::acquire(&mut attempt, &self.url, timeout).await {
            // Taken, then given up (a straggler outlasted the timeout, or a query failed):
            // the lock must not stay with the control connection until it closes. Unlocking
            // a lock this session does not hold only warns.
            let _ = sqlx::raw_sql(AssertSqlSafe(advisory("pg_advisory_unlock")))
                .execute(attempt.conn())
                .await;
            return Err(e);
        }
        Ok(Box::new(PgLock {
            control: self.control.clone(),
        }))
    }

    async fn begin(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(self.begin_session().await?))
    }

    async fn close(&self) {
        if let Some(control) = self.control.lock().await.take() {
            let _ = control.close().await;
        }
        self.pool.close().await;
    }
}

/// `SELECT function(key)` for an advisory-lock function and wasmig's pinned key, as a
/// simple query (one round trip).
fn advisory(function: &str) -> String {
    format!("SELECT {function}({PG_LOCK_KEY})")
}

/// Tries the advisory lock on the control connection.
struct PgLockAttempt {
    /// The control connection, held for the attempts (open: checked by [`Database::lock`]).
    conn: tokio::sync::OwnedMutexGuard<Option<PgConnection>>,
    /// The `application_name` wasmig's sessions use, to find those of a dead run.
    application_name: String,
}

impl PgLockAttempt {
    fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("checked open before the first attempt")
    }
}

#[async_trait]
impl Attempt for PgLockAttempt {
    async fn try_lock(&mut self) -> anyhow::Result<bool> {
        let held = sqlx::raw_sql(AssertSqlSafe(advisory("pg_try_advisory_lock")))
            .fetch_one(self.conn())
            .await
            .and_then(|row| row.try_get::<bool, _>(0))
            .map_err(|source| DbError::Query {
                doing: "taking the migration lock (pg_try_advisory_lock)".into(),
                source,
            })?;
        Ok(held)
    }

    async fn holder(&mut self) -> String {
        // A bigint advisory key shows in pg_locks as classid = its high 32 bits,
        // objid = its low 32 bits, objsubid = 1.
        let row: Result<Option<(i32, Option<String>, Option<String>, Option<String>)>, _> =
            sqlx::query_as(
                "SELECT a.pid, a.application_name,
                        to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
                        to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS TZ')
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid = (($1 >> 32) & 4294967295)::oid
                   AND l.objid = ($1 & 4294967295)::oid
                   AND l.objsubid = 1
                 LIMIT 1",
            )
            .bind(PG_LOCK_KEY)
            .fetch_optional(self.conn())
            .await;
        match row {
            Ok(Some((pid, app, started, changed))) => format!(
                "pid {pid} (application_name '{}', connected at {}, last active at {})",
                app.unwrap_or_default(),
                started.as_deref().unwrap_or("?"),
                changed.as_deref().unwrap_or("?"),
            ),
            Ok(None) => "a session that is no longer listed in pg_locks".into(),
            Err(e) => format!("a session wasmig cannot see ({e})"),
        }
    }

    async fn straggler(&mut self) -> anyhow::Result<Option<String>> {
        // With the lock held, no live run has sessions at work here: a wasmig session that
        // is not idle belongs to a run that died (or to a read-only command, for a moment).
        // A simple query (one round trip): it runs after every lock taken.
        let sql = format!(
            "SELECT pid, state, to_char(query_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
             FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND backend_type = 'client backend' AND application_name = {}
               AND state IS DISTINCT FROM 'idle'
             ORDER BY query_start
             LIMIT 1",
            lit(&self.application_name)
        );
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_optional(self.conn())
            .await
            .and_then(|row| {
                row.map(
                    |row| -> Result<(i32, Option<String>, Option<String>, Option<String>), _> {
                        Ok((
                            row.try_get(0)?,
                            row.try_get(1)?,
                            row.try_get(2)?,
                            row.try_get(3)?,
                        ))
                    },
                )
                .transpose()
            })
            .map_err(|source| DbError::Query {
                doing: "looking for sessions of an earlier run (pg_stat_activity)".into(),
                source,
            })?;
        Ok(row.map(|(pid, state, since, query)| {
            format!(
                "pid {pid} ({}, since {}: `{}`)",
                state.as_deref().unwrap_or("?"),
                since.as_deref().unwrap_or("?"),
                query.as_deref().unwrap_or("")
            )
        }))
    }
}

/// The held advisory lock.
struct PgLock {
    /// The control connection the lock is held on. Released by [`LockGuard::release`];
    /// otherwise the lock goes with the connection, when [`Database::close`] closes it or
    /// the process ends (a panic, a kill), since the server ends the session.
    control: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
}

#[async_trait]
impl LockGuard for PgLock {
    async fn release(self: Box<Self>) -> anyhow::Result<()> {
        let mut control = self.control.lock().await;
        let Some(conn) = control.as_mut() else {
            // Closed: the session, and the lock with it, already ended.
            return Ok(());
        };
        let unlocked = sqlx::raw_sql(AssertSqlSafe(advisory("pg_advisory_unlock")))
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| row.try_get::<bool, _>(0));
        match unlocked {
            Ok(true) => Ok(()),
            Ok(false) => Err(anyhow::anyhow!(
                "the migration lock was no longer held when it was released (its connection was reset?)"
            )),
            Err(source) => {
                // The connection is in doubt: close it, which ends the session and the lock.
                if let Some(conn) = control.take() {
                    let _ = conn.close().await;
                }
                Err(DbError::Query {
                    doing: "releasing the migration lock (pg_advisory_unlock)".into(),
                    source,
                }
                .into())
            }
        }
    }
}

/// One migration's transaction.
pub(crate) struct PgSession {
    /// Begun by [`PgDatabase::begin`] on a pooled connection; consumed by `commit` or
    /// `rollback`. Dropped unfinished, sqlx rolls it back and returns the connection.
    tx: Transaction<'static, Postgres>,
    /// Cancels by the backend pid of `tx`'s connection; shared with the sandbox.
    canceller: Arc<PgCanceller>,
    /// Numbers the cursors of this transaction (`wasmig_cursor_N`).
    cursors_opened: u64,
    /// `txid_current()` at `begin`: the identity [`Session::transaction_intact`] checks.
    xid: i64,
    /// The schema the version tables live in (`current_schema()` at `begin`), so that a
    /// migration changing `search_path` cannot send the version-table update elsewhere.
    /// `None` when the search path names no existing schema.
    schema: Option<String>,
}

impl PgSession {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// A version table's name, qualified by the schema read at `begin`.
    fn version_table(&self, table: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{}\".{table}", schema.replace('"', "\"\"")),
            None => table.to_owned(),
        }
    }

    /// [`Session::record_step`]'s statement.
    fn record_sql(&self, step: &StepRecord<'_>) -> String {
        let version_table = self.version_table(VERSION_TABLE);
        let history_table = self.version_table(HISTORY_TABLE);
        // One statement, one round trip: the head change and the history row together. The
        // parts of one statement see the same snapshot, so a head both removed and added
        // (`resolve`, `stamp` keep some) is left alone by both: the same result as deleting
        // `remove`, then inserting `add`.
        format!(
            "WITH removed AS (DELETE FROM {version_table}
                              WHERE revision = ANY({remove}) AND revision <> ALL({add})),
                  added AS (INSERT INTO {version_table} (revision)
                            SELECT a FROM unnest({add}) AS a WHERE a <> ALL({remove}))
             INSERT INTO {history_table}
                 (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
                  error, sqlstate)
             VALUES ({revision}, {direction}, {checksum}, {started}, {finished}, {ms}, {version},
                     {error}, {sqlstate})",
            remove = text_array(step.remove),
            add = text_array(step.add),
            revision = lit(step.revision),
            direction = lit(step.direction),
            checksum = lit(step.checksum),
            started = time_lit(step.started_at),
            finished = time_lit(step.finished_at),
            ms = (step.finished_at - step.started_at).num_milliseconds(),
            version = lit(env!("CARGO_PKG_VERSION")),
            error = opt_lit(step.error),
            sqlstate = opt_lit(step.sqlstate),
        )
    }

    /// [`Session::store_artifact`]'s statement.
    fn store_artifact_sql(&self, artifact: &StoredArtifact) -> String {
        let table = self.version_table(ARTIFACT_TABLE);
        let component = match &artifact.component {
            Some(bytes) => format!("{}::bytea", lit(&format!("\\x{}", hex::encode(bytes)))),
            None => "NULL".into(),
        };
        format!(
            "INSERT INTO {table}
                 (revision, kind, checksum, manifest, up_sql, down_sql, component,
                  source_checksum, stored_at)
             VALUES ({}, {}, {}, {}, {}, {}, {component}, {}, {})
             ON CONFLICT (revision) DO UPDATE SET
                 kind = excluded.kind, checksum = excluded.checksum,
                 manifest = excluded.manifest, up_sql = excluded.up_sql,
                 down_sql = excluded.down_sql, component = excluded.component,
                 source_checksum = excluded.source_checksum, stored_at = excluded.stored_at",
            lit(&artifact.revision),
            lit(&artifact.kind),
            lit(&artifact.checksum),
            lit(&artifact.manifest),
            opt_lit(artifact.up_sql.as_deref()),
            opt_lit(artifact.down_sql.as_deref()),
            opt_lit(artifact.source_checksum.as_deref()),
            time_lit(Utc::now()),
        )
    }

    /// [`Session::forget_artifact`]'s statement.
    fn forget_artifact_sql(&self, revision: &str) -> String {
        let table = self.version_table(ARTIFACT_TABLE);
        format!("DELETE FROM {table} WHERE revision = {}", lit(revision))
    }

    /// [`Session::clear_checkpoint`]'s statement.
    fn clear_checkpoint_sql(&self, revision: &str) -> String {
        let table = self.version_table(CHECKPOINT_TABLE);
        format!("DELETE FROM {table} WHERE revision = {}", lit(revision))
    }

    /// Prepares `sql` (or finds it in sqlx's per-connection cache) for parameters of `types`.
    ///
    /// sqlx keys its statement cache by SQL text and keeps the parameter types the statement
    /// was first prepared with (or that the server inferred for an untyped null). Binding
    /// values of another type to it would make the server read their binary encoding as the
    /// wrong type: an error at best (`int8` bytes for an `int4`), silently wrong data at worst
    /// (`float4` bytes for an `int4`). So when the cached types differ, the cache is cleared
    /// and the statement prepared afresh with these types. A cache hit costs no round trip.
    async fn prepare_checked(
        &mut self,
        sql: &SqlStr,
        types: &[PgTypeInfo],
    ) -> Result<PgStatement, sqlx::Error> {
        let statement = self.conn().prepare_with(sql.clone(), types).await?;
        let matches = match statement.parameters() {
            Some(Either::Left(prepared)) => prepared
                .iter()
                .zip(types)
                .all(|(prepared, ours)| ours.oid() == Some(Oid(0)) || ours.oid() == prepared.oid()),
            _ => true,
        };
        if matches {
            return Ok(statement);
        }
        self.tx.clear_cached_statements().await?;
        self.conn().prepare_with(sql.clone(), types).await
    }

    /// Forgets sqlx's cached statements after DDL may have changed what they return.
    async fn forget_statements(&mut self) -> SqlResult<()> {
        if self.tx.cached_statements_size() > 0 {
            self.tx.clear_cached_statements().await.map_err(sql_error)?;
        }
        Ok(())
    }

    /// Runs a statement without caching it (DDL, cursor commands): prepared unnamed with
    /// these parameters' types, so no cached statement can be stale; the rows carry their
    /// own description.
    async fn run_uncached(&mut self, sql: SqlStr, args: PgArguments) -> SqlResult<Vec<PgRow>> {
        sqlx::query_with(sql, args)
            .persistent(false)
            .fetch_all(self.conn())
            .await
            .map_err(sql_error)
    }

    /// Runs a parameterless script through the simple query protocol.
    async fn run_script(&mut self, script: String) -> SqlResult<()> {
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(self.conn())
            .await
            .map(drop)
            .map_err(sql_error)
    }

    /// Runs one statement and returns the rows affected.
    async fn execute_bound(&mut self, sql: &str, bound: Bound) -> SqlResult<u64> {
        let sql = sql_str(sql);
        if changes_schema(sql.as_str()) {
            let done = sqlx::query_with(sql, bound.args)
                .persistent(false)
                .execute(self.conn())
                .await
                .map_err(sql_error)?;
            self.forget_statements().await?;
            return Ok(done.rows_affected());
        }
        self.prepare_checked(&sql, &bound.types)
            .await
            .map_err(sql_error)?;
        let done = sqlx::query_with(sql, bound.args)
            .execute(self.conn())
            .await
            .map_err(sql_error)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Session for PgSession {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn set_timeouts(
        &mut self,
        lock: Option<Duration>,
        statement: Option<Duration>,
    ) -> anyhow::Result<()> {
        for (name, value) in [("lock_timeout", lock), ("statement_timeout", statement)] {
            // Like SET LOCAL: gone at commit or rollback. `None` restores the default (a
            // second step of one --atomic transaction must not inherit the first's).
            let sql = match value {
                Some(d) => format!("SET LOCAL {name} = '{}ms'", d.as_millis().max(1)),
                None => format!("SET LOCAL {name} TO DEFAULT"),
            };
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *self.tx)
                .await
                .map_err(|source| DbError::Query {
                    doing: format!("setting {name}"),
                    source,
                })?;
        }
        Ok(())
    }

    fn canceller(&self) -> Arc<dyn Canceller> {
        self.canceller.clone()
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        tx_control::check(sql, Dialect::Postgres)?;
        let bound = Bound::new(params, None)?;
        self.execute_bound(sql, bound).await
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<QueryResult> {
        tx_control::check(sql, Dialect::Postgres)?;
        let bound = Bound::new(params, None)?;
        let sql = sql_str(sql);
        let (plan, rows) = if changes_schema(sql.as_str()) {
            let rows = self.run_uncached(sql, bound.args).await?;
            self.forget_statements().await?;
            let plan = match rows.first() {
                Some(row) => Plan::new(row.columns())?,
                None => Plan::default(),
            };
            (plan, rows)
        } else {
            let statement = self
                .prepare_checked(&sql, &bound.types)
                .await
                .map_err(sql_error)?;
            // Refuse an unreadable column before running the statement, so a refused query
            // has no effect (think `UPDATE … RETURNING interval_column`).
            let plan = Plan::new(statement.columns())?;
            let rows = sqlx::query_with(sql, bound.args)
                .fetch_all(self.conn())
                .await
                .map_err(sql_error)?;
            (plan, rows)
        };
        let rows = rows
            .iter()
            .map(|row| plan.decode(row))
            .collect::<SqlResult<_>>()?;
        Ok(QueryResult {
            columns: plan.columns,
            rows,
        })
    }

    async fn batch(&mut self, script: &str) -> SqlResult<()> {
        tx_control::check(script, Dialect::Postgres)?;
        self.run_script(script.to_owned()).await?;
        // A script is where migrations put their DDL.
        self.forget_statements().await
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> SqlResult<u64> {
        tx_control::check(sql, Dialect::Postgres)?;
        // Validate every row first: a malformed value fails the call before any row ran.
        let bound = rows
            .iter()
            .enumerate()
            .map(|(i, row)| Bound::new(row, Some(i)))
            .collect::<SqlResult<Vec<_>>>()?;
        if rows.len() > 1 && !changes_schema(sql) {
            // One round trip per chunk of rows (see `pg_script`). Preparing it first through
            // the extended protocol (cached by sqlx after the first time) makes the server
            // check that it is one valid statement, as a bound execution would.
            self.prepare_checked(&sql_str(sql), &bound[0].types)
                .await
                .map_err(sql_error)?;
            let mut scripts = Vec::new();
            for (n, chunk) in rows.chunks(pg_script::ROWS_PER_SCRIPT).enumerate() {
                match pg_script::script(sql, chunk, n * pg_script::ROWS_PER_SCRIPT)? {
                    Some(script) => scripts.push(script),
                    None => {
                        scripts.clear();
                        break;
                    }
                }
            }
            if !scripts.is_empty() {
                let mut total = 0;
                for script in scripts {
                    let done = sqlx::raw_sql(AssertSqlSafe(script))
                        .execute(self.conn())
                        .await
                        .map_err(sql_error)?;
                    total += done.rows_affected();
                }
                return Ok(total);
            }
        }
        // One row, DDL, or rows whose parameter types differ: one prepared statement
        // (cached by sqlx), one Bind/Execute round trip per row.
        let mut total = 0;
        for bound in bound {
            total += self.execute_bound(sql, bound).await?;
        }
        Ok(total)
    }

    async fn copy_in(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
    ) -> SqlResult<u64> {
        let statement = format!("COPY {} FROM STDIN", copy::target(table, columns)?);
        // Encoded (and validated) whole before COPY begins: a malformed value fails the call
        // before the server saw any of it.
        let data = copy::pg_copy_data(rows, columns.len())?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut copying = self
            .conn()
            .copy_in_raw(&statement)
            .await
            .map_err(sql_error)?;
        // Dropped unfinished (a failed send), the copy is aborted with CopyFail.
        copying.send(data).await.map_err(sql_error)?;
        copying.finish().await.map_err(sql_error)
    }

    async fn open_cursor(&mut self, sql: &str, params: &[Value]) -> SqlResult<CursorState> {
        tx_control::check(sql, Dialect::Postgres)?;
        let bound = Bound::new(params, None)?;
        // Describe the query itself for its columns (and to refuse unreadable ones early);
        // the DECLARE below is a utility statement that describes no columns.
        let statement = self
            .prepare_checked(&sql_str(sql), &bound.types)
            .await
            .map_err(sql_error)?;
        let plan = Plan::new(statement.columns())?;
        self.cursors_opened += 1;
        let name = format!("wasmig_cursor_{}", self.cursors_opened);
        // The extended protocol accepts parameters in the cursor's query.
        self.run_uncached(
            sql_str(&format!("DECLARE {name} NO SCROLL CURSOR FOR {sql}")),
            bound.args,
        )
        .await?;
        Ok(CursorState {
            columns: plan.columns,
            name: Some(name),
            buffered: Default::default(),
            done: false,
        })
    }

    async fn fetch(
        &mut self,
        cursor: &mut CursorState,
        max_rows: u32,
    ) -> SqlResult<Vec<Vec<Value>>> {
        if cursor.done {
            return Ok(Vec::new());
        }
        let Some(name) = cursor.name.clone() else {
            return Err(SqlError::wasmig(
                "STATE",
                "this cursor has no server-side name",
            ));
        };
        // FETCH 0 would re-read the current row.
        let wanted = max_rows.max(1);
        // Uncached: the FETCH text repeats across cursors of other queries, and a cached
        // statement would carry the first one's row description.
        let rows = self
            .run_uncached(
                sql_str(&format!("FETCH FORWARD {wanted} FROM {name}")),
                PgArguments::default(),
            )
            .await?;
        let decoded = match rows.first() {
            Some(first) => {
                let plan = Plan::new(first.columns())?;
                rows.iter()
                    .map(|row| plan.decode(row))
                    .collect::<SqlResult<Vec<_>>>()?
            }
            None => Vec::new(),
        };
        if decoded.len() < wanted as usize {
            // Exhausted: close now rather than on the guest's final, empty `next`.
            self.close_cursor(cursor).await?;
        }
        Ok(decoded)
    }

    async fn close_cursor(&mut self, cursor: &mut CursorState) -> SqlResult<()> {
        if cursor.done {
            return Ok(());
        }
        cursor.done = true;
        match &cursor.name {
            Some(name) => self.run_script(format!("CLOSE {name}")).await,
            None => Ok(()),
        }
    }

    async fn savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.run_script(format!("SAVEPOINT {}", savepoint_name(name)?))
            .await
    }

    async fn release_savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.run_script(format!("RELEASE SAVEPOINT {}", savepoint_name(name)?))
            .await
    }

    async fn rollback_to_savepoint(&mut self, name: &str) -> SqlResult<()> {
        let name = savepoint_name(name)?;
        self.run_script(format!(
            "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
        ))
        .await?;
        // The rollback may have undone DDL that cached statements were prepared against.
        self.forget_statements().await
    }

    async fn transaction_intact(&mut self) -> anyhow::Result<bool> {
        let query_error = |source| DbError::Query {
            doing: "checking the transaction id".into(),
            source,
        };
        let row = sqlx::raw_sql("SELECT txid_current()")
            .fetch_one(self.conn())
            .await
            .map_err(query_error)?;
        let xid: i64 = row.try_get(0).map_err(query_error)?;
        Ok(xid == self.xid)
    }

    async fn finish_step(&mut self, finished: &FinishedStep<'_>) -> anyhow::Result<bool> {
        let revision = finished.record.revision;
        // One simple-query message, one round trip: the guard first, so that when a
        // statement ended wasmig's transaction the message's implicit transaction fails
        // before it writes anything (`transaction_intact` compares the same id).
        let mut script = format!(
            "DO $$ BEGIN IF txid_current() <> {xid} THEN \
             RAISE EXCEPTION 'wasmig: the transaction is not the one begun' \
             USING ERRCODE = '{TRANSACTION_ENDED_STATE}'; END IF; END $$;\n{};\n{};\n",
            self.record_sql(&finished.record),
            match finished.artifact {
                Some(stored) => self.store_artifact_sql(stored),
                None => self.forget_artifact_sql(revision),
            },
            xid = self.xid,
        );
        if finished.clear_checkpoint {
            script.push_str(&self.clear_checkpoint_sql(revision));
            script.push_str(";\n");
        }
        match sqlx::raw_sql(AssertSqlSafe(script))
            .execute(self.conn())
            .await
        {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some(TRANSACTION_ENDED_STATE) =>
            {
                Ok(false)
            }
            Err(source) => Err(DbError::Query {
                doing: format!("recording {revision} in the version tables and {ARTIFACT_TABLE}"),
                source,
            }
            .into()),
        }
    }

    async fn record_step(&mut self, step: &StepRecord<'_>) -> anyhow::Result<()> {
        let sql = self.record_sql(step);
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map_err(|source| DbError::Query {
                doing: format!("recording {} in the version tables", step.revision),
                source,
            })?;
        Ok(())
    }

    async fn store_artifact(&mut self, artifact: &StoredArtifact) -> anyhow::Result<()> {
        let sql = self.store_artifact_sql(artifact);
        sqlx::raw_sql(AssertSqlSafe(sql))
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
        let table = self.version_table(ARTIFACT_TABLE);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE revision <> ALL({})",
            text_array(keep)
        )))
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
        sqlx::raw_sql(AssertSqlSafe(self.forget_artifact_sql(revision)))
            .execute(self.conn())
            .await
            .map_err(|source| DbError::Query {
                doing: format!("deleting the stored artifact of {revision} from {ARTIFACT_TABLE}"),
                source,
            })?;
        Ok(())
    }

    async fn set_failed(&mut self, mark: &FailedMark) -> anyhow::Result<()> {
        let table = self.version_table(FAILED_TABLE);
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table}
                 (revision, direction, remove_heads, add_heads, statement, error, sqlstate, failed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (revision) DO UPDATE SET
                 direction = EXCLUDED.direction, remove_heads = EXCLUDED.remove_heads,
                 add_heads = EXCLUDED.add_heads, statement = EXCLUDED.statement,
                 error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate,
                 failed_at = EXCLUDED.failed_at"
        )))
        .bind(&mark.revision)
        .bind(&mark.direction)
        .bind(mark.remove_heads.join(","))
        .bind(mark.add_heads.join(","))
        .bind(mark.statement)
        .bind(&mark.error)
        .bind(&mark.sqlstate)
        .bind(mark.failed_at)
        .execute(self.conn())
        .await
        .map_err(|source| DbError::Query {
            doing: format!("marking {} failed", mark.revision),
            source,
        })?;
        Ok(())
    }

    async fn clear_failed(&mut self, revision: &str) -> anyhow::Result<()> {
        let table = self.version_table(FAILED_TABLE);
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE revision = $1"
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
        let table = self.version_table(CHECKPOINT_TABLE);
        let sql = format!(
            "INSERT INTO {table}
                 (revision, direction, remove_heads, add_heads, checkpoint, batches, checksum,
                  started_at, updated_at)
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})
             ON CONFLICT (revision) DO UPDATE SET
                 direction = EXCLUDED.direction, remove_heads = EXCLUDED.remove_heads,
                 add_heads = EXCLUDED.add_heads, checkpoint = EXCLUDED.checkpoint,
                 batches = EXCLUDED.batches, checksum = EXCLUDED.checksum,
                 started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at",
            lit(&checkpoint.revision),
            lit(&checkpoint.direction),
            lit(&checkpoint.remove_heads.join(",")),
            lit(&checkpoint.add_heads.join(",")),
            lit(&checkpoint.checkpoint),
            checkpoint.batches,
            lit(&checkpoint.checksum),
            time_lit(checkpoint.started_at),
            time_lit(checkpoint.updated_at),
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map_err(|source| DbError::Query {
                doing: format!("saving the checkpoint of {}", checkpoint.revision),
                source,
            })?;
        Ok(())
    }

    async fn clear_checkpoint(&mut self, revision: &str) -> anyhow::Result<()> {
        sqlx::raw_sql(AssertSqlSafe(self.clear_checkpoint_sql(revision)))
            .execute(self.conn())
            .await
            .map_err(|source| DbError::Query {
                doing: format!("deleting the checkpoint of {revision}"),
                source,
            })?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> anyhow::Result<()> {
        self.tx.commit().await.map_err(|source| DbError::Query {
            doing: "committing the transaction".into(),
            source,
        })?;
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> anyhow::Result<()> {
        self.tx.rollback().await.map_err(|source| DbError::Query {
            doing: "rolling back the transaction".into(),
            source,
        })?;
        Ok(())
    }
}

/// `text` as a string literal for wasmig's own simple-query statements, which take one
/// round trip whatever the statement cache holds (see `pg_script` for why `E'…'` is safe).
fn lit(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    pg_script::quote(&mut out, text);
    out
}

/// A literal, or `NULL`.
fn opt_lit(text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), lit)
}

/// A UTC time as a `timestamptz` literal, to the microsecond.
fn time_lit(time: DateTime<Utc>) -> String {
    format!(
        "{}::timestamptz",
        lit(&time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    )
}

/// A `text[]` literal of revision ids.
fn text_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| lit(i)).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

/// A row of the artifact table.
fn stored_artifact(row: &PgRow) -> Result<StoredArtifact, sqlx::Error> {
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
}

/// Cancels the statement running on one session's connection.
struct PgCanceller {
    /// The database's pool, for a connection to send the cancel on.
    pool: PgPool,
    /// The backend pid of the session's connection, read at `begin`.
    pid: i32,
}

impl PgCanceller {
    /// Runs `sql` (one of the signalling functions) with the session's pid on another
    /// connection: an idle pooled one if there is one, otherwise a fresh one, so a busy pool
    /// cannot delay it.
    async fn signal(&self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self.pool.try_acquire() {
            Some(mut conn) => sqlx::query(sql)
                .bind(self.pid)
                .execute(&mut *conn)
                .await
                .map(drop),
            None => {
                let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
                let result = sqlx::query(sql)
                    .bind(self.pid)
                    .execute(&mut conn)
                    .await
                    .map(drop);
                let _ = conn.close().await;
                result
            }
        }
    }
}

#[async_trait]
impl Canceller for PgCanceller {
    async fn cancel(&self) {
        if let Err(e) = self.signal("SELECT pg_cancel_backend($1)").await {
            tracing::warn!(
                "could not cancel the statement on PostgreSQL backend {}: {e}",
                self.pid
            );
        }
    }

    async fn terminate(&self) {
        if let Err(e) = self.signal("SELECT pg_terminate_backend($1)").await {
            tracing::warn!(
                "could not terminate PostgreSQL backend {} after cancelling failed: {e}",
                self.pid
            );
        }
    }
}

/// Owned SQL text for sqlx (the guest's SQL is as trusted as a migration file).
fn sql_str(sql: &str) -> SqlStr {
    AssertSqlSafe(sql.to_owned()).into_sql_str()
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

/// Whether a statement is DDL that can change the result shape of cached statements:
/// its first keyword (after whitespace and comments) is `CREATE`, `ALTER` or `DROP`.
fn changes_schema(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// Maps a driver error to the WIT error: SQLSTATE and fields for a server error, and
/// [`super::client_error`] for anything else.
fn sql_error(err: sqlx::Error) -> SqlError {
    if let sqlx::Error::Database(db) = &err
        && let Some(pg) = db.try_downcast_ref::<PgDatabaseError>()
    {
        // `message()`, not Display: Display appends " at line N" of the server's C source.
        return SqlError {
            code: pg.code().to_owned(),
            message: pg.message().to_owned(),
            detail: pg.detail().map(str::to_owned),
            hint: pg.hint().map(str::to_owned),
            constraint: pg.constraint().map(str::to_owned),
            table: pg.table().map(str::to_owned),
            column: pg.column().map(str::to_owned),
        };
    }
    super::client_error(err)
}

// ---------------------------------------------------------------------------------------
// Binding

/// A statement's parameters: the encoded values and their types, kept apart because sqlx
/// does not expose the types of a `PgArguments` and [`PgSession::prepare_checked`] needs them.
struct Bound {
    args: PgArguments,
    types: Vec<PgTypeInfo>,
}

impl Bound {
    /// Binds one row of parameters (`row` numbers it in an `execute-many`).
    fn new(params: &[Value], row: Option<usize>) -> SqlResult<Self> {
        let mut bound = Bound {
            args: PgArguments::default(),
            types: Vec::with_capacity(params.len()),
        };
        for (i, value) in params.iter().enumerate() {
            bound.bind(value, ParamRef::new('$', i).in_row(row))?;
        }
        Ok(bound)
    }

    fn push<'q, T: Encode<'q, Postgres> + Type<Postgres>>(
        &mut self,
        value: T,
        at: ParamRef,
    ) -> SqlResult<()> {
        let ty = value.produces().unwrap_or_else(T::type_info);
        self.args.add(value).map_err(|e| at.error(e))?;
        self.types.push(ty);
        Ok(())
    }

    fn bind(&mut self, value: &Value, at: ParamRef) -> SqlResult<()> {
        /// Parses each element of a text-carried array with `parse`.
        fn each<'a, T>(
            items: &'a [Option<String>],
            at: ParamRef,
            parse: impl Fn(&'a str, ParamRef) -> SqlResult<T>,
        ) -> SqlResult<Vec<Option<T>>> {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_deref()
                        .map(|text| parse(text, at.element(i)))
                        .transpose()
                })
                .collect()
        }
        /// A validated JSON document.
        fn json(text: &str, at: ParamRef) -> SqlResult<&str> {
            value::check_json(text, at).map(|()| text)
        }
        match value {
            Value::Null => self.push(UntypedNull, at),
            Value::Bool(v) => self.push(*v, at),
            Value::Int16(v) => self.push(*v, at),
            Value::Int32(v) => self.push(*v, at),
            Value::Int64(v) => self.push(*v, at),
            Value::Float32(v) => self.push(*v, at),
            Value::Float64(v) => self.push(*v, at),
            Value::Numeric(text) => self.push(value::parse_numeric(text, at)?, at),
            Value::Text(text) => self.push(text.as_str(), at),
            Value::Bytes(bytes) => self.push(bytes.as_slice(), at),
            Value::Json(text) => self.push(JsonParam(json(text, at)?), at),
            Value::Jsonb(text) => self.push(JsonbParam(json(text, at)?), at),
            Value::Uuid(text) => self.push(value::parse_uuid(text, at)?, at),
            Value::Date(text) => self.push(value::parse_date(text, at)?, at),
            Value::Time(text) => self.push(value::parse_time(text, at)?, at),
            Value::Timestamp(text) => self.push(value::parse_timestamp(text, at)?, at),
            Value::Timestamptz(text) => self.push(value::parse_timestamptz(text, at)?, at),
            Value::Array(array) => match array {
                ArrayValue::Bool(items) => self.push(items, at),
                ArrayValue::Int16(items) => self.push(items, at),
                ArrayValue::Int32(items) => self.push(items, at),
                ArrayValue::Int64(items) => self.push(items, at),
                ArrayValue::Float32(items) => self.push(items, at),
                ArrayValue::Float64(items) => self.push(items, at),
                ArrayValue::Numeric(items) => self.push(each(items, at, value::parse_numeric)?, at),
                ArrayValue::Text(items) => self.push(items, at),
                ArrayValue::Bytes(items) => self.push(items, at),
                ArrayValue::Json(items) => {
                    let items = each(items, at, |text, at| json(text, at).map(JsonParam))?;
                    self.push(items, at)
                }
                ArrayValue::Jsonb(items) => {
                    let items = each(items, at, |text, at| json(text, at).map(JsonbParam))?;
                    self.push(items, at)
                }
                ArrayValue::Uuid(items) => self.push(each(items, at, value::parse_uuid)?, at),
                ArrayValue::Date(items) => self.push(each(items, at, value::parse_date)?, at),
                ArrayValue::Time(items) => self.push(each(items, at, value::parse_time)?, at),
                ArrayValue::Timestamp(items) => {
                    self.push(each(items, at, value::parse_timestamp)?, at)
                }
                ArrayValue::Timestamptz(items) => {
                    self.push(each(items, at, value::parse_timestamptz)?, at)
                }
            },
        }
    }
}

/// A NULL of no declared type (oid 0), so the server infers the parameter's type from its
/// use and the null fits a column of any type. (A typed null such as `None::<String>` is a
/// TEXT null, which a BYTEA column refuses.)
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

/// A validated JSON document bound as `json` (oid 114): its binary format is the text.
struct JsonParam<'a>(&'a str);

impl Type<Postgres> for JsonParam<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(114))
    }
}

impl PgHasArrayType for JsonParam<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(199))
    }
}

impl Encode<'_, Postgres> for JsonParam<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// A validated JSON document bound as `jsonb` (oid 3802): its binary format is a version
/// byte (1) and the text.
struct JsonbParam<'a>(&'a str);

impl Type<Postgres> for JsonbParam<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(3802))
    }
}

impl PgHasArrayType for JsonbParam<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(3807))
    }
}

impl Encode<'_, Postgres> for JsonbParam<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// The WIT scalar a PostgreSQL type reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    /// `oid` (unsigned 32-bit) reads as int64.
    Oid,
    Float32,
    Float64,
    Numeric,
    Text,
    Bytes,
    Json,
    Jsonb,
    Uuid,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    /// `void` (what `SELECT pg_sleep(1)` returns) reads as null.
    Void,
}

/// How to read one column: a scalar or a one-dimensional array of one.
#[derive(Debug, Clone, Copy)]
enum Decoder {
    Scalar(Kind),
    Array(Kind),
}

impl Decoder {
    /// The decoder for a column type, by the name sqlx reports (`INT4`, `INT4[]`) and, for
    /// types sqlx does not know by name, their kind (domains read as their base type, enums
    /// as text).
    fn for_type(ty: &PgTypeInfo) -> Option<Decoder> {
        let name = ty.name();
        if let Some(element) = name.strip_suffix("[]") {
            return match scalar_kind(element)? {
                Kind::Void => None,
                kind => Some(Decoder::Array(kind)),
            };
        }
        if let Some(kind) = scalar_kind(name) {
            return Some(Decoder::Scalar(kind));
        }
        // "?" is an unresolved type, whose kind() would panic.
        if name == "?" {
            return None;
        }
        match ty.kind() {
            PgTypeKind::Enum(_) => Some(Decoder::Scalar(Kind::Text)),
            PgTypeKind::Domain(base) => Decoder::for_type(base),
            PgTypeKind::Array(element) => match Decoder::for_type(element)? {
                Decoder::Scalar(Kind::Void) => None,
                Decoder::Scalar(kind) => Some(Decoder::Array(kind)),
                Decoder::Array(_) => None,
            },
            _ => None,
        }
    }
}

fn scalar_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "BOOL" => Kind::Bool,
        "INT2" => Kind::Int16,
        "INT4" => Kind::Int32,
        "INT8" => Kind::Int64,
        "OID" => Kind::Oid,
        "FLOAT4" => Kind::Float32,
        "FLOAT8" => Kind::Float64,
        "NUMERIC" => Kind::Numeric,
        // `CHAR` is `char(n)` (bpchar); `"CHAR"` is the one-byte catalog type.
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "\"CHAR\"" => Kind::Text,
        // An extension type: sqlx reports it by its lowercase catalog name.
        _ if name.eq_ignore_ascii_case("citext") => Kind::Text,
        "BYTEA" => Kind::Bytes,
        "JSON" => Kind::Json,
        "JSONB" => Kind::Jsonb,
        "UUID" => Kind::Uuid,
        "DATE" => Kind::Date,
        "TIME" => Kind::Time,
        "TIMESTAMP" => Kind::Timestamp,
        "TIMESTAMPTZ" => Kind::Timestamptz,
        "VOID" => Kind::Void,
        _ => return None,
    })
}

/// The columns of a result and how to read each.
#[derive(Default)]
struct Plan {
    columns: Vec<Column>,
    decoders: Vec<Decoder>,
}

impl Plan {
    /// Plans the decoding of `columns`, refusing a type wasmig cannot read.
    fn new(columns: &[PgColumn]) -> SqlResult<Plan> {
        let mut plan = Plan::default();
        for column in columns {
            let ty = column.type_info();
            let decoder = Decoder::for_type(ty).ok_or_else(|| {
                decode_error(
                    column.name(),
                    ty.name(),
                    "wasmig has no value for this type",
                )
            })?;
            plan.columns.push(Column {
                name: column.name().to_owned(),
                type_name: ty.name().to_owned(),
            });
            plan.decoders.push(decoder);
        }
        Ok(plan)
    }

    /// Reads one row.
    fn decode(&self, row: &PgRow) -> SqlResult<Vec<Value>> {
        self.decoders
            .iter()
            .zip(&self.columns)
            .enumerate()
            .map(|(i, (decoder, column))| {
                let raw = row.try_get_raw(i).map_err(sql_error)?;
                decode_cell(raw, *decoder)
                    .map_err(|e| decode_error(&column.name, &column.type_name, &e.to_string()))
            })
            .collect()
    }
}

/// `WASMIG-DECODE`: names the column and its type and says how to get it anyway.
fn decode_error(column: &str, type_name: &str, why: &str) -> SqlError {
    SqlError::wasmig(
        "DECODE",
        format!(
            "cannot read column `{column}` of type {type_name}: {why}; cast it to text in SQL (`{column}::text`)"
        ),
    )
}

/// Decodes with the driver's decoder for `T` (the column type was checked by the plan).
fn dec<'r, T: Decode<'r, Postgres>>(value: PgValueRef<'r>) -> Result<T, BoxDynError> {
    T::decode(value)
}

/// Unwraps the text of a text-carried array.
fn texts<T: Into<String>>(items: Vec<Option<T>>) -> Vec<Option<String>> {
    items.into_iter().map(|item| item.map(Into::into)).collect()
}

fn decode_cell(value: PgValueRef<'_>, decoder: Decoder) -> Result<Value, BoxDynError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    Ok(match decoder {
        Decoder::Scalar(kind) => match kind {
            Kind::Bool => Value::Bool(dec(value)?),
            Kind::Int16 => Value::Int16(dec(value)?),
            Kind::Int32 => Value::Int32(dec(value)?),
            Kind::Int64 => Value::Int64(dec(value)?),
            Kind::Oid => Value::Int64(i64::from(dec::<Oid>(value)?.0)),
            Kind::Float32 => Value::Float32(dec(value)?),
            Kind::Float64 => Value::Float64(dec(value)?),
            Kind::Numeric => Value::Numeric(dec::<NumericText>(value)?.0),
            Kind::Text => Value::Text(dec(value)?),
            Kind::Bytes => Value::Bytes(dec(value)?),
            Kind::Json => Value::Json(dec::<JsonText>(value)?.0),
            Kind::Jsonb => Value::Jsonb(dec::<JsonbText>(value)?.0),
            Kind::Uuid => Value::Uuid(dec::<Uuid>(value)?.to_string()),
            Kind::Date => Value::Date(dec::<DateText>(value)?.0),
            Kind::Time => Value::Time(dec::<TimeText>(value)?.0),
            Kind::Timestamp => Value::Timestamp(dec::<TimestampText>(value)?.0),
            Kind::Timestamptz => Value::Timestamptz(dec::<TimestamptzText>(value)?.0),
            Kind::Void => Value::Null,
        },
        Decoder::Array(kind) => Value::Array(match kind {
            Kind::Bool => ArrayValue::Bool(dec(value)?),
            Kind::Int16 => ArrayValue::Int16(dec(value)?),
            Kind::Int32 => ArrayValue::Int32(dec(value)?),
            Kind::Int64 => ArrayValue::Int64(dec(value)?),
            Kind::Oid => ArrayValue::Int64(
                dec::<Vec<Option<Oid>>>(value)?
                    .into_iter()
                    .map(|oid| oid.map(|o| i64::from(o.0)))
                    .collect(),
            ),
            Kind::Float32 => ArrayValue::Float32(dec(value)?),
            Kind::Float64 => ArrayValue::Float64(dec(value)?),
            Kind::Numeric => ArrayValue::Numeric(texts(dec::<Vec<Option<NumericText>>>(value)?)),
            Kind::Text => ArrayValue::Text(dec(value)?),
            Kind::Bytes => ArrayValue::Bytes(dec(value)?),
            Kind::Json => ArrayValue::Json(texts(dec::<Vec<Option<JsonText>>>(value)?)),
            Kind::Jsonb => ArrayValue::Jsonb(texts(dec::<Vec<Option<JsonbText>>>(value)?)),
            Kind::Uuid => ArrayValue::Uuid(
                dec::<Vec<Option<Uuid>>>(value)?
                    .into_iter()
                    .map(|u| u.map(|u| u.to_string()))
                    .collect(),
            ),
            Kind::Date => ArrayValue::Date(texts(dec::<Vec<Option<DateText>>>(value)?)),
            Kind::Time => ArrayValue::Time(texts(dec::<Vec<Option<TimeText>>>(value)?)),
            Kind::Timestamp => {
                ArrayValue::Timestamp(texts(dec::<Vec<Option<TimestampText>>>(value)?))
            }
            Kind::Timestamptz => {
                ArrayValue::Timestamptz(texts(dec::<Vec<Option<TimestamptzText>>>(value)?))
            }
            Kind::Void => return Err("an array of void".into()),
        }),
    })
}

/// Declares a cell type that reads a PostgreSQL binary value into its WIT text format with
/// `$convert` (sqlx's own decoders lose the numeric scale and panic on infinite dates).
macro_rules! text_cell {
    ($(#[$doc:meta])* $name:ident, oid = $oid:expr, $convert:path) => {
        $(#[$doc])*
        struct $name(String);

        impl From<$name> for String {
            fn from(cell: $name) -> String {
                cell.0
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                PgTypeInfo::with_oid(Oid($oid))
            }
        }

        impl Decode<'_, Postgres> for $name {
            fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
                if value.format() != PgValueFormat::Binary {
                    return Err("expected the binary format".into());
                }
                Ok($name($convert(value.as_bytes()?)?))
            }
        }
    };
}

text_cell!(
    /// `numeric` in plain notation with its display scale (`12.50` stays `12.50`).
    NumericText, oid = 1700, numeric_text
);
text_cell!(
    /// `json`: the document's text.
    JsonText, oid = 114, json_text
);
text_cell!(
    /// `jsonb`: the document's text after the version byte.
    JsonbText, oid = 3802, jsonb_text
);
text_cell!(
    /// `date` as `YYYY-MM-DD`.
    DateText, oid = 1082, date_text
);
text_cell!(
    /// `time` as `HH:MM:SS[.ffffff]`.
    TimeText, oid = 1083, time_text
);
text_cell!(
    /// `timestamp` as `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
    TimestampText, oid = 1114, timestamp_text
);
text_cell!(
    /// `timestamptz` in UTC as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    TimestamptzText, oid = 1184, timestamptz_text
);

/// Reads a big-endian integer of `N` bytes, checking the length.
fn be<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], String> {
    bytes
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "truncated binary value".to_owned())
}

/// PostgreSQL's binary `numeric` (ndigits, weight, sign, dscale, base-10000 digits) printed
/// as `numeric_out` does, with exactly `dscale` fraction digits.
fn numeric_text(bytes: &[u8]) -> Result<String, String> {
    use std::fmt::Write as _;
    let ndigits = i16::from_be_bytes(be(bytes, 0)?);
    let weight = i16::from_be_bytes(be(bytes, 2)?);
    let sign = u16::from_be_bytes(be(bytes, 4)?);
    let dscale = u16::from_be_bytes(be(bytes, 6)?);
    let digits = (0..usize::try_from(ndigits).map_err(|_| "negative digit count")?)
        .map(|i| {
            let digit = i16::from_be_bytes(be(bytes, 8 + 2 * i)?);
            if (0..10_000).contains(&digit) {
                Ok(digit)
            } else {
                Err(format!("invalid numeric digit {digit}"))
            }
        })
        .collect::<Result<Vec<i16>, String>>()?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Err("NaN has no exact decimal form".into()),
        0xD000 | 0xF000 => return Err("infinity has no exact decimal form".into()),
        other => return Err(format!("invalid numeric sign {other:#x}")),
    };
    let digit_at = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=i32::from(weight) {
            let digit = digit_at(i);
            let _ = if i == 0 {
                write!(out, "{digit}")
            } else {
                write!(out, "{digit:04}")
            };
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut i = i32::from(weight) + 1;
        while fraction.len() < usize::from(dscale) {
            let _ = write!(fraction, "{:04}", digit_at(i));
            i += 1;
        }
        fraction.truncate(usize::from(dscale));
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

fn json_text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

fn jsonb_text(bytes: &[u8]) -> Result<String, String> {
    match bytes.split_first() {
        Some((1, text)) => json_text(text),
        _ => Err("unknown jsonb binary version".into()),
    }
}

/// 2000-01-01, PostgreSQL's epoch.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

fn date_text(bytes: &[u8]) -> Result<String, String> {
    let days = i32::from_be_bytes(be(bytes, 0)?);
    if days == i32::MAX || days == i32::MIN {
        return Err("an infinite date has no YYYY-MM-DD form".into());
    }
    TimeDelta::try_days(days.into())
        .and_then(|d| pg_epoch().date().checked_add_signed(d))
        .map(value::format_date)
        .ok_or_else(|| "the date is outside the supported range".into())
}

fn time_text(bytes: &[u8]) -> Result<String, String> {
    const DAY: i64 = 86_400_000_000;
    let micros = i64::from_be_bytes(be(bytes, 0)?);
    if micros == DAY {
        // PostgreSQL allows 24:00:00 (the end of the day), which ISO 8601 spells the same.
        return Ok("24:00:00".into());
    }
    if !(0..DAY).contains(&micros) {
        return Err(format!("invalid time ({micros} µs)"));
    }
    let time = NaiveTime::MIN + TimeDelta::microseconds(micros);
    Ok(value::format_time(time))
}

fn naive_timestamp(bytes: &[u8]) -> Result<NaiveDateTime, String> {
    let micros = i64::from_be_bytes(be(bytes, 0)?);
    if micros == i64::MAX || micros == i64::MIN {
        return Err("an infinite timestamp has no ISO 8601 form".into());
    }
    pg_epoch()
        .checked_add_signed(TimeDelta::microseconds(micros))
        .ok_or_else(|| "the timestamp is outside the supported range".into())
}

fn timestamp_text(bytes: &[u8]) -> Result<String, String> {
    naive_timestamp(bytes).map(value::format_timestamp)
}

fn timestamptz_text(bytes: &[u8]) -> Result<String, String> {
    naive_timestamp(bytes)
        .map(|t| value::format_timestamptz(DateTime::<Utc>::from_naive_utc_and_offset(t, Utc)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use super::*;

    /// A server where the tests may create databases; override for another setup.
    fn admin_url() -> String {
        std::env::var("WASMIG_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// A fresh database for one test, dropped (with its connections) when the test ends,
    /// even by a panic.
    struct TestDb {
        name: String,
        db: PgDatabase,
    }

    impl TestDb {
        async fn new() -> TestDb {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let name = format!(
                "wasmig_dbtest_{}_{}_{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            );
            let mut admin = PgConnection::connect(&admin_url())
                .await
                .expect("the test PostgreSQL server is reachable");
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let _ = admin.close().await;
            let base = admin_url();
            let (server, _) = base.rsplit_once('/').unwrap();
            let url = DatabaseUrl::parse(&format!("{server}/{name}")).unwrap();
            TestDb {
                db: PgDatabase::connect(&url).await.unwrap(),
                name,
            }
        }

        async fn session(&self) -> Box<dyn Session> {
            self.db.begin().await.unwrap()
        }

        /// The URL of this database, as `user` (the admin URL's user by default).
        fn url_as(&self, user: Option<&str>) -> String {
            let base = admin_url();
            let (server, _) = base.rsplit_once('/').unwrap();
            match user {
                Some(user) => {
                    let (scheme, rest) = server.split_once("://").unwrap();
                    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                    format!("{scheme}://{user}@{host}/{}", self.name)
                }
                None => format!("{server}/{}", self.name),
            }
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let name = self.name.clone();
            // Drop cannot await: drop the database from a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await;
                    }
                });
            })
            .join();
        }
    }

    fn text(s: &str) -> String {
        s.to_owned()
    }

    fn some(items: &[&str]) -> Vec<Option<String>> {
        items
            .iter()
            .map(|s| if s.is_empty() { None } else { Some(text(s)) })
            .collect()
    }

    async fn scalar(session: &mut dyn Session, sql: &str, params: &[Value]) -> Value {
        let result = session.query(sql, params).await.unwrap();
        assert_eq!(result.rows.len(), 1, "{sql}");
        result.rows[0][0].clone()
    }

    #[tokio::test]
    async fn every_value_type_round_trips_through_a_column() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        use ArrayValue as A;
        let cases: Vec<(&str, Value)> = vec![
            ("boolean", Value::Bool(true)),
            ("smallint", Value::Int16(-32768)),
            ("integer", Value::Int32(2_000_000_000)),
            ("bigint", Value::Int64(i64::MIN)),
            ("real", Value::Float32(1.5)),
            ("double precision", Value::Float64(-2.25e100)),
            ("numeric", Value::Numeric(text("-12.3400"))),
            ("numeric(20, 2)", Value::Numeric(text("12.50"))),
            (
                "numeric",
                Value::Numeric(text("123456789012345678901234567890.000000000000000000001")),
            ),
            ("numeric", Value::Numeric(text("0.0000001"))),
            ("numeric", Value::Numeric(text("0"))),
            ("text", Value::Text(text("héllo ✓"))),
            ("varchar(20)", Value::Text(text("varying"))),
            ("bytea", Value::Bytes(vec![0, 1, 255])),
            ("json", Value::Json(text(r#"{"b":1,  "a":[true,null]}"#))),
            (
                "jsonb",
                Value::Jsonb(text(r#"{"a": [true, null], "b": 1}"#)),
            ),
            (
                "uuid",
                Value::Uuid(text("67e55044-10b1-426f-9247-bb680e5fe0c8")),
            ),
            ("date", Value::Date(text("2024-02-29"))),
            ("time", Value::Time(text("23:59:59.999999"))),
            ("time", Value::Time(text("03:04:05"))),
            (
                "timestamp",
                Value::Timestamp(text("2024-01-02T03:04:05.123456")),
            ),
            (
                "timestamptz",
                Value::Timestamptz(text("2024-01-02T03:04:05.000001Z")),
            ),
            (
                "timestamptz",
                Value::Timestamptz(text("1999-12-31T23:59:59Z")),
            ),
            (
                "boolean[]",
                Value::Array(A::Bool(vec![Some(true), None, Some(false)])),
            ),
            ("smallint[]", Value::Array(A::Int16(vec![Some(1), None]))),
            ("integer[]", Value::Array(A::Int32(vec![None, Some(-7)]))),
            ("integer[]", Value::Array(A::Int32(vec![]))),
            (
                "bigint[]",
                Value::Array(A::Int64(vec![Some(i64::MAX), None])),
            ),
            ("real[]", Value::Array(A::Float32(vec![Some(0.25), None]))),
            (
                "double precision[]",
                Value::Array(A::Float64(vec![None, Some(1e-300)])),
            ),
            (
                "numeric[]",
                Value::Array(A::Numeric(some(&["1.50", "", "-0.001"]))),
            ),
            (
                "text[]",
                Value::Array(A::Text(vec![
                    Some(text("a,b")),
                    None,
                    Some(text("")),
                    Some(text("\"q\"")),
                ])),
            ),
            (
                "bytea[]",
                Value::Array(A::Bytes(vec![Some(vec![1, 2]), None, Some(vec![])])),
            ),
            (
                "json[]",
                Value::Array(A::Json(some(&["[1, 2]", "", "\"s\""]))),
            ),
            (
                "jsonb[]",
                Value::Array(A::Jsonb(some(&["{\"k\": \"v\"}", ""]))),
            ),
            (
                "uuid[]",
                Value::Array(A::Uuid(some(&["", "00000000-0000-0000-0000-000000000001"]))),
            ),
            ("date[]", Value::Array(A::Date(some(&["1970-01-01", ""])))),
            (
                "time[]",
                Value::Array(A::Time(some(&["00:00:00", "", "12:30:00.500000"]))),
            ),
            (
                "timestamp[]",
                Value::Array(A::Timestamp(some(&["2000-01-01T00:00:00", ""]))),
            ),
            (
                "timestamptz[]",
                Value::Array(A::Timestamptz(some(&["", "2030-06-15T12:00:00.500000Z"]))),
            ),
        ];
        for (i, (ty, value)) in cases.iter().enumerate() {
            s.batch(&format!("CREATE TABLE t{i} (n int, v {ty})"))
                .await
                .unwrap();
            let inserted = s
                .execute(
                    &format!("INSERT INTO t{i} (n, v) VALUES (1, $1), (2, $2)"),
                    &[value.clone(), Value::Null],
                )
                .await
                .unwrap_or_else(|e| panic!("{ty}: {e:?}"));
            assert_eq!(inserted, 2);
            let result = s
                .query(&format!("SELECT v FROM t{i} ORDER BY n"), &[])
                .await
                .unwrap();
            assert_eq!(
                format!("{:?}", result.rows),
                format!("{:?}", vec![vec![value.clone()], vec![Value::Null]]),
                "{ty}"
            );
            // The same value through execute-many's one-round-trip script (literals).
            let many = s
                .execute_many(
                    &format!("INSERT INTO t{i} (n, v) VALUES ($1, $2)"),
                    &[
                        vec![Value::Int32(3), value.clone()],
                        vec![Value::Int32(4), Value::Null],
                        vec![Value::Int32(5), value.clone()],
                    ],
                )
                .await
                .unwrap_or_else(|e| panic!("execute-many {ty}: {e:?}"));
            assert_eq!(many, 3, "{ty}");
            let result = s
                .query(&format!("SELECT v FROM t{i} WHERE n >= 3 ORDER BY n"), &[])
                .await
                .unwrap();
            assert_eq!(
                format!("{:?}", result.rows),
                format!(
                    "{:?}",
                    vec![vec![value.clone()], vec![Value::Null], vec![value.clone()]]
                ),
                "execute-many {ty}"
            );
        }
        let result = s.query("SELECT v FROM t25", &[]).await.unwrap();
        assert_eq!(result.columns[0].name, "v");
        assert_eq!(result.columns[0].type_name, "INT4[]");
    }

    #[tokio::test]
    async fn execute_many_sends_hostile_text_and_special_floats_intact() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE h (n int, t text, f float8, r real)")
            .await
            .unwrap();
        let hostile = [
            "'); DROP TABLE h; --",
            r"back\slash \' quote",
            "E'\\x' $$ dollar $$",
            "line\nbreak -- not a comment",
            "ünïcödé ✓",
        ];
        let floats = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e-300];
        let rows: Vec<Vec<Value>> = hostile
            .iter()
            .zip(floats)
            .enumerate()
            .map(|(n, (t, f))| {
                vec![
                    Value::Int32(n as i32),
                    Value::Text((*t).to_owned()),
                    Value::Float64(f),
                    Value::Float32(f as f32),
                ]
            })
            .collect();
        // A trailing line comment must not swallow the script's separators.
        let sql = "INSERT INTO h (n, t, f, r) VALUES ($1, $2, $3, $4) -- trailing comment";
        assert_eq!(s.execute_many(sql, &rows).await.unwrap(), 5);
        let back = s
            .query("SELECT t, f, r FROM h ORDER BY n", &[])
            .await
            .unwrap();
        for (row, (t, f)) in back.rows.iter().zip(hostile.iter().zip(floats)) {
            assert_eq!(
                format!("{:?}", row[0]),
                format!("{:?}", Value::Text((*t).to_owned()))
            );
            match (&row[1], &row[2]) {
                (Value::Float64(g), Value::Float32(r)) => {
                    assert!(
                        g.to_bits() == f.to_bits() || (g.is_nan() && f.is_nan()),
                        "{g} vs {f}"
                    );
                    assert!(
                        r.to_bits() == (f as f32).to_bits() || (r.is_nan() && f.is_nan()),
                        "{r} vs {f}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // A parameter that is null in every row is declared `unknown`: the server infers it.
        s.batch("CREATE TABLE nulls (n int, b bytea)")
            .await
            .unwrap();
        let rows = vec![
            vec![Value::Int32(1), Value::Null],
            vec![Value::Int32(2), Value::Null],
        ];
        assert_eq!(
            s.execute_many("INSERT INTO nulls VALUES ($1, $2)", &rows)
                .await
                .unwrap(),
            2
        );
        // Several statements in one are refused, as for a bound statement, and run nothing.
        let err = s
            .execute_many(
                "INSERT INTO h (n) VALUES ($1); DROP TABLE h",
                &[vec![Value::Int32(9)], vec![Value::Int32(10)]],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, "42601", "{err:?}");
    }

    #[tokio::test]
    async fn special_values_read_in_the_documented_formats() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let cases = [
            ("SELECT '12.50'::numeric", Value::Numeric(text("12.50"))),
            (
                "SELECT '-0.000123'::numeric",
                Value::Numeric(text("-0.000123")),
            ),
            (
                "SELECT '100000000.0001'::numeric",
                Value::Numeric(text("100000000.0001")),
            ),
            ("SELECT '24:00:00'::time", Value::Time(text("24:00:00"))),
            (
                "SELECT '2024-01-02 05:04:05.5+02'::timestamptz",
                Value::Timestamptz(text("2024-01-02T03:04:05.500000Z")),
            ),
            ("SELECT 'x'::char(3)", Value::Text(text("x  "))),
            ("SELECT 'pg_class'::name", Value::Text(text("pg_class"))),
            (
                "SELECT relkind FROM pg_class WHERE relname = 'pg_class'",
                Value::Text(text("r")),
            ),
            (
                "SELECT ARRAY['a'::char(2), NULL]",
                Value::Array(ArrayValue::Text(some(&["a ", ""]))),
            ),
            ("SELECT 26::oid", Value::Int64(26)),
            ("SELECT pg_sleep(0)", Value::Null),
            ("SELECT NULL", Value::Null),
        ];
        for (sql, expected) in cases {
            assert_eq!(
                format!("{:?}", scalar(&mut *s, sql, &[]).await),
                format!("{expected:?}"),
                "{sql}"
            );
        }
        // Values bound as parameters in non-canonical spellings come back canonical.
        let tz = scalar(
            &mut *s,
            "SELECT $1",
            &[Value::Timestamptz(text("2024-01-02T05:04:05+02:00"))],
        )
        .await;
        assert_eq!(
            format!("{tz:?}"),
            format!("{:?}", Value::Timestamptz(text("2024-01-02T03:04:05Z")))
        );
        let uuid = scalar(
            &mut *s,
            "SELECT $1",
            &[Value::Uuid(text("67E55044-10B1-426F-9247-BB680E5FE0C8"))],
        )
        .await;
        assert_eq!(
            format!("{uuid:?}"),
            format!(
                "{:?}",
                Value::Uuid(text("67e55044-10b1-426f-9247-bb680e5fe0c8"))
            )
        );
        // Domains read as their base type, enums as text.
        s.batch("CREATE DOMAIN posint AS integer CHECK (VALUE > 0); CREATE TYPE mood AS ENUM ('sad', 'ok')")
            .await
            .unwrap();
        let domain = scalar(&mut *s, "SELECT 5::posint", &[]).await;
        assert_eq!(format!("{domain:?}"), format!("{:?}", Value::Int32(5)));
        let mood = scalar(&mut *s, "SELECT 'ok'::mood", &[]).await;
        assert_eq!(
            format!("{mood:?}"),
            format!("{:?}", Value::Text(text("ok")))
        );
    }

    #[tokio::test]
    async fn an_untyped_null_fits_any_column_and_parameter_types_may_change() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE b (n serial, data bytea, big bigint, r real)")
            .await
            .unwrap();
        let insert = "INSERT INTO b (data, big, r) VALUES ($1, $2, $3)";
        // The first use prepares with untyped nulls: the server infers bytea, int8, float4.
        s.execute(insert, &[Value::Null, Value::Null, Value::Null])
            .await
            .unwrap();
        // Later uses bind other types to the same text: the cached statement must not
        // read int4 bytes as int8 or float4 bytes as int4.
        s.execute(
            insert,
            &[Value::Bytes(vec![7]), Value::Int32(5), Value::Float32(2.5)],
        )
        .await
        .unwrap();
        s.execute(
            insert,
            &[Value::Null, Value::Int64(1 << 40), Value::Int32(3)],
        )
        .await
        .unwrap();
        let rows = s
            .query("SELECT data, big, r FROM b ORDER BY n", &[])
            .await
            .unwrap()
            .rows;
        let expected = vec![
            vec![Value::Null, Value::Null, Value::Null],
            vec![Value::Bytes(vec![7]), Value::Int64(5), Value::Float32(2.5)],
            vec![Value::Null, Value::Int64(1 << 40), Value::Float32(3.0)],
        ];
        assert_eq!(format!("{rows:?}"), format!("{expected:?}"));
        for value in [
            Value::Int32(1),
            Value::Float32(1.5),
            Value::Text(text("x")),
            Value::Int64(2),
        ] {
            let back = scalar(&mut *s, "SELECT $1", std::slice::from_ref(&value)).await;
            assert_eq!(format!("{back:?}"), format!("{value:?}"));
        }
    }

    #[tokio::test]
    async fn malformed_values_are_refused_with_wasmig_bind() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let cases = [
            (
                Value::Numeric(text("abc")),
                "parameter $2: `abc` is not an exact decimal",
            ),
            (
                Value::Numeric(text("NaN")),
                "parameter $2: `NaN` is not an exact decimal",
            ),
            (Value::Numeric(text("1e5")), "is not an exact decimal"),
            (
                Value::Uuid(text("not-a-uuid")),
                "parameter $2: `not-a-uuid` is not a UUID",
            ),
            (
                Value::Date(text("2024-13-01")),
                "parameter $2: `2024-13-01` is not a date YYYY-MM-DD",
            ),
            (
                Value::Timestamptz(text("2024-01-02T03:04:05")),
                "is not an RFC 3339 timestamp with an offset",
            ),
            (
                Value::Json(text("{")),
                "parameter $2: `{` is not a JSON document",
            ),
            (
                Value::Array(ArrayValue::Date(some(&["2024-01-01", "", "yesterday"]))),
                "parameter $2 (array element 3): `yesterday` is not a date",
            ),
        ];
        for (value, message) in cases {
            let err = s
                .execute("SELECT $1, $2", &[Value::Int32(1), value])
                .await
                .unwrap_err();
            assert_eq!(err.code, "WASMIG-BIND");
            assert!(err.message.contains(message), "{}", err.message);
        }
        // execute-many checks every row before running any.
        s.batch("CREATE TABLE m (n int)").await.unwrap();
        let rows = vec![
            vec![Value::Numeric(text("1"))],
            vec![Value::Numeric(text("2"))],
            vec![Value::Numeric(text("x"))],
        ];
        let err = s
            .execute_many("INSERT INTO m VALUES ($1)", &rows)
            .await
            .unwrap_err();
        assert!(
            err.message.starts_with("row 3, parameter $1: `x`"),
            "{}",
            err.message
        );
        let count = scalar(&mut *s, "SELECT count(*) FROM m", &[]).await;
        assert_eq!(format!("{count:?}"), format!("{:?}", Value::Int64(0)));
    }

    #[tokio::test]
    async fn unsupported_types_are_refused_with_wasmig_decode() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let err = s
            .query("SELECT interval '1 day' AS span", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code, "WASMIG-DECODE");
        assert!(
            err.message.contains("`span`") && err.message.contains("INTERVAL"),
            "{}",
            err.message
        );
        assert!(err.message.contains("cast it to text"), "{}", err.message);
        // Refused before running: the UPDATE did not happen.
        s.batch("CREATE TABLE w (n int, d interval); INSERT INTO w VALUES (1, '1 day')")
            .await
            .unwrap();
        assert!(
            s.query("UPDATE w SET n = 2 RETURNING d", &[])
                .await
                .is_err()
        );
        let n = scalar(&mut *s, "SELECT n FROM w", &[]).await;
        assert_eq!(format!("{n:?}"), format!("{:?}", Value::Int32(1)));
        // Values with no form in the WIT formats.
        for sql in [
            "SELECT 'NaN'::numeric AS x",
            "SELECT 'infinity'::date AS x",
            "SELECT '-infinity'::timestamptz AS x",
        ] {
            let err = s.query(sql, &[]).await.unwrap_err();
            assert_eq!(err.code, "WASMIG-DECODE", "{sql}");
            assert!(err.message.contains("`x`"), "{}", err.message);
        }
        // The cast the message suggests works.
        let text_value = scalar(&mut *s, "SELECT (interval '1 day')::text", &[]).await;
        assert_eq!(
            format!("{text_value:?}"),
            format!("{:?}", Value::Text(text("1 day")))
        );
    }

    #[tokio::test]
    async fn database_errors_carry_sqlstate_constraint_and_table() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE u (id int CONSTRAINT u_pkey PRIMARY KEY)")
            .await
            .unwrap();
        s.execute("INSERT INTO u VALUES ($1)", &[Value::Int32(1)])
            .await
            .unwrap();
        let err = s
            .execute("INSERT INTO u VALUES ($1)", &[Value::Int32(1)])
            .await
            .unwrap_err();
        assert_eq!(err.code, "23505");
        assert_eq!(
            err.message,
            "duplicate key value violates unique constraint \"u_pkey\""
        );
        assert_eq!(err.constraint.as_deref(), Some("u_pkey"));
        assert_eq!(err.table.as_deref(), Some("u"));
        assert_eq!(err.detail.as_deref(), Some("Key (id)=(1) already exists."));
        // Later statements see the aborted transaction.
        let err = s.execute("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(err.code, "25P02");
        let err = t.session().await.batch("SELEC 1").await.unwrap_err();
        assert_eq!(err.code, "42601");
    }

    #[tokio::test]
    async fn a_cursor_reads_ten_thousand_rows_in_chunks_between_other_statements() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO big (id) SELECT generate_series(1, 10000)")
            .await
            .unwrap();
        let mut cursor = s
            .open_cursor(
                "SELECT id, v FROM big WHERE id > $1 ORDER BY id",
                &[Value::Int32(0)],
            )
            .await
            .unwrap();
        assert_eq!(
            cursor
                .columns
                .iter()
                .map(|c| c.type_name.as_str())
                .collect::<Vec<_>>(),
            ["INT4", "INT4"]
        );
        let mut seen = 0;
        let mut chunks = 0;
        loop {
            let rows = s.fetch(&mut cursor, 999).await.unwrap();
            if rows.is_empty() {
                break;
            }
            chunks += 1;
            for row in &rows {
                seen += 1;
                assert_eq!(format!("{:?}", row[0]), format!("{:?}", Value::Int32(seen)));
            }
            // Another statement on the same transaction between two chunks.
            let last = rows.last().unwrap()[0].clone();
            assert_eq!(
                s.execute("UPDATE big SET v = v + 1 WHERE id = $1", &[last])
                    .await
                    .unwrap(),
                1
            );
        }
        assert_eq!((seen, chunks), (10_000, 11));
        assert!(cursor.done);
        assert!(s.fetch(&mut cursor, 10).await.unwrap().is_empty());
        s.close_cursor(&mut cursor).await.unwrap();
        // A second cursor, closed before it is exhausted, then closed again.
        let mut second = s.open_cursor("SELECT sum(v) FROM big", &[]).await.unwrap();
        s.close_cursor(&mut second).await.unwrap();
        s.close_cursor(&mut second).await.unwrap();
        let updated = scalar(&mut *s, "SELECT sum(v)::int FROM big", &[]).await;
        assert_eq!(format!("{updated:?}"), format!("{:?}", Value::Int32(11)));
    }

    #[tokio::test]
    async fn rolling_back_a_savepoint_recovers_from_an_error() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE sp (id int PRIMARY KEY)")
            .await
            .unwrap();
        s.execute("INSERT INTO sp VALUES (1)", &[]).await.unwrap();
        s.savepoint("wasmig_sp_1").await.unwrap();
        s.execute("INSERT INTO sp VALUES (2)", &[]).await.unwrap();
        assert_eq!(
            s.execute("INSERT INTO sp VALUES (1)", &[])
                .await
                .unwrap_err()
                .code,
            "23505"
        );
        s.rollback_to_savepoint("wasmig_sp_1").await.unwrap();
        s.savepoint("wasmig_sp_2").await.unwrap();
        s.execute("INSERT INTO sp VALUES (3)", &[]).await.unwrap();
        s.release_savepoint("wasmig_sp_2").await.unwrap();
        assert_eq!(
            s.release_savepoint("wasmig_sp_2").await.unwrap_err().code,
            "3B001"
        );
        assert_eq!(
            s.savepoint("bad name; DROP").await.unwrap_err().code,
            "WASMIG-STATE"
        );
        s.rollback_to_savepoint("wasmig_sp_1").await.unwrap_err();
        let mut s = t.session().await;
        s.batch("CREATE TABLE sp2 (id int PRIMARY KEY)")
            .await
            .unwrap();
        s.savepoint("a").await.unwrap();
        s.execute("INSERT INTO sp2 VALUES (1), (1)", &[])
            .await
            .unwrap_err();
        s.rollback_to_savepoint("a").await.unwrap();
        s.execute("INSERT INTO sp2 VALUES (2)", &[]).await.unwrap();
        s.commit().await.unwrap();
        let mut s = t.session().await;
        let ids = s.query("SELECT id FROM sp2", &[]).await.unwrap().rows;
        assert_eq!(
            format!("{ids:?}"),
            format!("{:?}", vec![vec![Value::Int32(2)]])
        );
    }

    #[tokio::test]
    async fn the_canceller_stops_a_running_statement() {
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
        let err = s.query("SELECT pg_sleep(30)", &[]).await.unwrap_err();
        cancel.await.unwrap();
        assert_eq!(err.code, "57014", "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_role_that_does_not_own_the_tables_still_runs_and_their_owner_compresses() {
        let t = TestDb::new().await;
        // Tables an older wasmig made (default compression), owned by the admin, written by
        // a role that may use but not alter them: what a deploy role often is.
        let role = format!("{}_writer", t.name);
        let mut admin = PgConnection::connect(&t.url_as(None)).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN;
             CREATE TABLE wasmig_artifact (
                 revision TEXT PRIMARY KEY, kind TEXT NOT NULL, checksum TEXT NOT NULL,
                 manifest TEXT NOT NULL, up_sql TEXT, down_sql TEXT, component BYTEA,
                 source_checksum TEXT, stored_at TIMESTAMPTZ NOT NULL);
             GRANT ALL ON SCHEMA public TO {role};
             GRANT ALL ON wasmig_artifact TO {role};"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        const COMPRESSION: &str = "SELECT attcompression::text FROM pg_attribute
             WHERE attrelid = 'wasmig_artifact'::regclass AND attname = 'component'";
        let writer = PgDatabase::connect(&DatabaseUrl::parse(&t.url_as(Some(&role))).unwrap())
            .await
            .unwrap();
        let outcome = writer.ensure_version_tables().await;
        writer.close().await;
        let left: String = sqlx::query_scalar(COMPRESSION)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        // The owner's run sets lz4, once.
        t.db.ensure_version_tables().await.unwrap();
        let owned: String = sqlx::query_scalar(COMPRESSION)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        let _ = admin.close().await;
        let mut cleanup = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
            .execute(&mut cleanup)
            .await
            .ok();
        outcome.unwrap();
        assert_eq!(
            left, "",
            "a role that does not own the table leaves it alone"
        );
        if t.db
            .control()
            .await
            .server_version_num()
            .is_some_and(|v| v >= 140_000)
        {
            assert_eq!(owned, "l");
        }
    }

    #[tokio::test]
    async fn a_step_finishes_in_one_statement_unless_its_transaction_ended() {
        let t = TestDb::new().await;
        t.db.ensure_version_tables().await.unwrap();
        // Components are stored lz4-compressed on PostgreSQL 14+ (built with lz4, as Debian's
        // is; checked below on a stored value too).
        let modern =
            t.db.control()
                .await
                .server_version_num()
                .is_some_and(|v| v >= 140_000);
        if modern {
            let mut s = t.session().await;
            let compression = scalar(
                &mut *s,
                "SELECT attcompression::text FROM pg_attribute
                 WHERE attrelid = 'wasmig_artifact'::regclass AND attname = 'component'",
                &[],
            )
            .await;
            assert_eq!(
                format!("{compression:?}"),
                format!("{:?}", Value::Text(text("l")))
            );
            s.rollback().await.unwrap();
        }
        // Compressible and incompressible bytes, every value of a byte, survive the trip.
        let component: Vec<u8> = (0..40_000u32)
            .map(|i| {
                if i < 20_000 {
                    (i % 256) as u8
                } else {
                    (i.wrapping_mul(2_654_435_761) >> 13) as u8
                }
            })
            .collect();
        let stored = StoredArtifact {
            revision: "a".into(),
            kind: "wasm".into(),
            checksum: "c1".into(),
            manifest: "kind = 'wasm'".into(),
            up_sql: None,
            down_sql: None,
            component: Some(component),
            source_checksum: None,
        };
        let now = Utc::now();
        let add = [text("a")];
        let finished = |artifact, clear_checkpoint| FinishedStep {
            record: StepRecord {
                remove: &[],
                add: &add,
                revision: "a",
                direction: "upgrade",
                checksum: "c1",
                started_at: now,
                finished_at: now,
                error: None,
                sqlstate: None,
            },
            artifact,
            clear_checkpoint,
        };
        // A batched step's checkpoint goes with its last batch.
        let mut s = t.session().await;
        s.save_checkpoint(&Checkpoint {
            revision: "a".into(),
            direction: "upgrade".into(),
            remove_heads: vec![],
            add_heads: vec![text("a")],
            checkpoint: "42".into(),
            batches: 1,
            checksum: "c1".into(),
            started_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
        s.commit().await.unwrap();
        assert_eq!(t.db.checkpoints().await.unwrap().len(), 1);

        // A statement that ended the transaction (here COMMIT; BEGIN behind the session's
        // back): nothing is written, not even in the transaction that statement began.
        let mut s = t.db.begin_session().await.unwrap();
        sqlx::raw_sql("COMMIT; BEGIN")
            .execute(s.conn())
            .await
            .unwrap();
        assert!(!s.finish_step(&finished(Some(&stored), true)).await.unwrap());
        Box::new(s).rollback().await.unwrap();
        assert!(t.db.heads().await.unwrap().is_empty());
        assert!(t.db.history().await.unwrap().is_empty());
        assert!(t.db.stored_artifact("a").await.unwrap().is_none());
        assert_eq!(t.db.checkpoints().await.unwrap().len(), 1);
        // Ended without a new BEGIN (autocommit): the guard fails the message's implicit
        // transaction, so nothing commits on its own either.
        let mut s = t.db.begin_session().await.unwrap();
        sqlx::raw_sql("COMMIT").execute(s.conn()).await.unwrap();
        assert!(!s.finish_step(&finished(Some(&stored), true)).await.unwrap());
        drop(s);
        assert!(t.db.heads().await.unwrap().is_empty());
        assert!(t.db.history().await.unwrap().is_empty());
        assert!(t.db.stored_artifact("a").await.unwrap().is_none());
        assert_eq!(t.db.checkpoints().await.unwrap().len(), 1);

        // Intact: version, history, artifact and checkpoint in one go.
        let mut s = t.session().await;
        assert!(s.finish_step(&finished(Some(&stored), true)).await.unwrap());
        s.commit().await.unwrap();
        assert_eq!(t.db.heads().await.unwrap(), ["a"]);
        assert_eq!(t.db.history().await.unwrap().len(), 1);
        assert_eq!(
            t.db.stored_artifact("a").await.unwrap(),
            Some(stored.clone())
        );
        assert!(t.db.checkpoints().await.unwrap().is_empty());
        if modern {
            let mut s = t.session().await;
            let method = scalar(
                &mut *s,
                "SELECT pg_column_compression(component) FROM wasmig_artifact",
                &[],
            )
            .await;
            assert_eq!(
                format!("{method:?}"),
                format!("{:?}", Value::Text(text("lz4")))
            );
            s.rollback().await.unwrap();
        }
        // A downgrade's finish deletes the copy.
        let mut s = t.session().await;
        let down = FinishedStep {
            record: StepRecord {
                remove: &add,
                add: &[],
                direction: "downgrade",
                ..finished(None, false).record
            },
            artifact: None,
            clear_checkpoint: false,
        };
        assert!(s.finish_step(&down).await.unwrap());
        s.commit().await.unwrap();
        assert!(t.db.heads().await.unwrap().is_empty());
        assert!(t.db.stored_artifact("a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn steps_are_recorded_in_the_version_tables() {
        let t = TestDb::new().await;
        assert!(t.db.heads().await.unwrap().is_empty());
        assert!(t.db.history().await.unwrap().is_empty());
        // Reading did not create the tables.
        let mut s = t.session().await;
        let exists = scalar(
            &mut *s,
            "SELECT to_regclass('wasmig_version') IS NOT NULL",
            &[],
        )
        .await;
        assert_eq!(format!("{exists:?}"), format!("{:?}", Value::Bool(false)));
        s.rollback().await.unwrap();
        t.db.ensure_version_tables().await.unwrap();
        t.db.ensure_version_tables().await.unwrap();

        let start = Utc::now();
        let step =
            |remove: &'static [String], add: &'static [String], revision, direction| StepRecord {
                remove,
                add,
                revision,
                direction,
                checksum: "ab12",
                started_at: start,
                finished_at: start + TimeDelta::milliseconds(1500),
                error: None,
                sqlstate: None,
            };
        static NONE: [String; 0] = [];
        static A: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| [text("a")]);
        static BC: std::sync::LazyLock<[String; 2]> =
            std::sync::LazyLock::new(|| [text("c"), text("b")]);
        let mut s = t.session().await;
        s.record_step(&step(&NONE, &*A, "a", "upgrade"))
            .await
            .unwrap();
        s.commit().await.unwrap();
        assert_eq!(t.db.heads().await.unwrap(), ["a"]);
        let mut s = t.session().await;
        s.record_step(&step(&*A, &*BC, "b", "upgrade"))
            .await
            .unwrap();
        s.commit().await.unwrap();
        // A rolled back step leaves no trace.
        let mut s = t.session().await;
        s.record_step(&step(&*BC, &NONE, "b", "downgrade"))
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
        assert!(history[0].id < history[1].id);
        assert_eq!(history[1].direction, "upgrade");
        assert_eq!(history[1].checksum, "ab12");
        assert_eq!(history[1].duration_ms, 1500);
        assert_eq!(history[1].wasmig_version, env!("CARGO_PKG_VERSION"));
        // PostgreSQL keeps microseconds.
        assert_eq!(
            history[0].started_at.timestamp_micros(),
            start.timestamp_micros()
        );
        // A head both removed and added stays (as `resolve` and `stamp` record them), and
        // text with quotes and backslashes is stored as given.
        static B: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| [text("b")]);
        let mut s = t.session().await;
        let mut kept = step(&*BC, &*B, "b", "resolve");
        kept.error = Some(r"resolved as 'applied' \ \x00");
        s.record_step(&kept).await.unwrap();
        s.commit().await.unwrap();
        assert_eq!(t.db.heads().await.unwrap(), ["b"]);
        let history = t.db.history().await.unwrap();
        assert_eq!(
            history[2].error.as_deref(),
            Some(r"resolved as 'applied' \ \x00")
        );

        let mut s = t.session().await;
        let err = s.execute("INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version) VALUES ('x', 'sideways', '', now(), now(), 0, '')", &[]).await.unwrap_err();
        assert_eq!(err.code, "23514");
    }

    #[tokio::test]
    async fn commits_are_visible_and_rollbacks_are_not() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE v (n int)").await.unwrap();
        s.execute("INSERT INTO v VALUES ($1)", &[Value::Int32(1)])
            .await
            .unwrap();
        s.commit().await.unwrap();
        let mut s = t.session().await;
        s.execute("INSERT INTO v VALUES ($1)", &[Value::Int32(2)])
            .await
            .unwrap();
        s.rollback().await.unwrap();
        let mut s = t.session().await;
        s.execute("INSERT INTO v VALUES ($1)", &[Value::Int32(3)])
            .await
            .unwrap();
        drop(s);
        let mut s = t.session().await;
        let name = scalar(&mut *s, "SELECT current_setting('application_name')", &[]).await;
        assert_eq!(
            format!("{name:?}"),
            format!("{:?}", Value::Text(text("wasmig")))
        );
        let rows = s.query("SELECT n FROM v", &[]).await.unwrap().rows;
        assert_eq!(
            format!("{rows:?}"),
            format!("{:?}", vec![vec![Value::Int32(1)]])
        );
    }

    #[tokio::test]
    async fn ddl_between_two_runs_of_a_cached_query_is_fine() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        s.batch("CREATE TABLE d (a int); INSERT INTO d VALUES (1)")
            .await
            .unwrap();
        assert_eq!(
            s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
            1
        );
        s.execute("ALTER TABLE d ADD COLUMN b text", &[])
            .await
            .unwrap();
        assert_eq!(
            s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
            2
        );
        s.batch("ALTER TABLE d ADD COLUMN c text").await.unwrap();
        assert_eq!(
            s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
            3
        );
        s.commit().await.unwrap();
        // The next session may be on the same pooled connection, with DDL in between.
        let mut s = t.session().await;
        let mut other = t.db.pool.acquire().await.unwrap();
        sqlx::raw_sql("ALTER TABLE d DROP COLUMN c")
            .execute(&mut *other)
            .await
            .unwrap();
        assert_eq!(
            s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
            2
        );
        // And execute-many counts every row.
        let rows: Vec<Vec<Value>> = (0..5).map(|i| vec![Value::Int32(i)]).collect();
        assert_eq!(
            s.execute_many("INSERT INTO d (a) VALUES ($1)", &rows)
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            s.execute_many(
                "UPDATE d SET b = 'x' WHERE a <= $1",
                &[vec![Value::Int32(1)]]
            )
            .await
            .unwrap(),
            3
        );
    }

    #[tokio::test]
    async fn transaction_control_is_refused_before_anything_runs() {
        let t = TestDb::new().await;
        let mut s = t.session().await;
        let err = s
            .batch("CREATE TABLE early (x int); COMMIT; CREATE TABLE late (x int)")
            .await
            .unwrap_err();
        assert_eq!(err.code, "WASMIG-STATE");
        assert!(
            err.message
                .starts_with("`COMMIT` (statement 2 of the script)"),
            "{}",
            err.message
        );
        let row = vec![Value::Int32(1)];
        assert!(s.execute("ROLLBACK", &[]).await.is_err());
        assert!(s.query("end", &[]).await.is_err());
        assert!(s.execute_many("BEGIN", &[row.clone(), row]).await.is_err());
        assert!(s.open_cursor("SAVEPOINT x", &[]).await.is_err());
        // Nothing ran, and the transaction is the one begun.
        let early = scalar(&mut *s, "SELECT to_regclass('early') IS NULL", &[]).await;
        assert_eq!(format!("{early:?}"), format!("{:?}", Value::Bool(true)));
        assert!(s.transaction_intact().await.unwrap());
        // Keywords in strings, identifiers and function bodies are fine.
        s.batch(
            "CREATE TABLE log (msg text); INSERT INTO log VALUES ('COMMIT; ROLLBACK');
             CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
             DO $$ BEGIN PERFORM f(); END $$",
        )
        .await
        .unwrap();
        assert!(s.transaction_intact().await.unwrap());
    }

    #[tokio::test]
    async fn a_commit_that_slips_past_the_check_is_detected() {
        let t = TestDb::new().await;
        for script in ["COMMIT", "ROLLBACK; BEGIN", "COMMIT; BEGIN"] {
            let mut s = t.db.begin_session().await.unwrap();
            s.run_script("CREATE TABLE IF NOT EXISTS t (x int)".into())
                .await
                .unwrap();
            assert!(s.transaction_intact().await.unwrap());
            s.run_script(script.into()).await.unwrap();
            assert!(!s.transaction_intact().await.unwrap(), "{script}");
            Box::new(s).rollback().await.unwrap();
        }
    }

    #[tokio::test]
    async fn session_state_does_not_outlive_its_step() {
        let t = TestDb::new().await;
        t.db.ensure_version_tables().await.unwrap();
        let mut s = t.session().await;
        s.execute("SET search_path = nowhere", &[]).await.unwrap();
        s.query("SELECT pg_advisory_lock(42)", &[]).await.unwrap();
        s.batch("CREATE TEMP TABLE scratch (x int)").await.unwrap();
        // The version tables are found whatever the migration did to the search path.
        let none: [String; 0] = [];
        let add = [text("a")];
        let now = Utc::now();
        s.record_step(&StepRecord {
            remove: &none,
            add: &add,
            revision: "a",
            direction: "upgrade",
            checksum: "00",
            started_at: now,
            finished_at: now,
            error: None,
            sqlstate: None,
        })
        .await
        .unwrap();
        s.commit().await.unwrap();
        assert_eq!(t.db.heads().await.unwrap(), ["a"]);
        // The reset runs as the connection goes back to the pool.
        let mut reset = false;
        for _ in 0..50 {
            let mut other = PgConnection::connect_with(&t.db.pool.connect_options())
                .await
                .unwrap();
            let locks: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                    .fetch_one(&mut other)
                    .await
                    .unwrap();
            let _ = other.close().await;
            if locks == 0 {
                reset = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reset, "the advisory lock outlived the step");
        for _ in 0..MAX_CONNECTIONS {
            let mut s = t.session().await;
            let path = scalar(&mut *s, "SELECT current_setting('search_path')", &[]).await;
            assert_eq!(
                format!("{path:?}"),
                format!("{:?}", Value::Text(text("\"$user\", public")))
            );
            let scratch = scalar(&mut *s, "SELECT to_regclass('scratch') IS NULL", &[]).await;
            assert_eq!(format!("{scratch:?}"), format!("{:?}", Value::Bool(true)));
        }
    }

    #[tokio::test]
    async fn a_connection_failure_names_the_url_without_its_password() {
        let url = DatabaseUrl::parse("postgres://user:secret@127.0.0.1:1/nothing").unwrap();
        let err = PgDatabase::connect(&url).await.err().unwrap();
        assert!(matches!(err, DbError::Connect { .. }));
        let message = err.to_string();
        assert!(
            message.contains("postgres://user:***@127.0.0.1:1/nothing")
                && !message.contains("secret"),
            "{message}"
        );
    }
}

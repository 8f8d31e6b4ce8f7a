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
//! One concern per file. This one: [`PgDatabase`], connecting (with its pool and the
//! control connection wasmig's own reads and the lock use) and the [`Database`] impl,
//! including the reads of the version tables. Not in this file:
//! - `session`: [`PgSession`](session::PgSession), its [`Session`] impl and its canceller;
//! - `statement_cache`: sqlx's statement cache on a session's connection;
//! - `advisory_lock`: the migration lock as a session-level advisory lock;
//! - `lease_lock`: the migration lock as a lease in `wasmig_lock`, and choosing between them;
//! - `bookkeeping`: the version tables' DDL and the statements a step writes them with;
//! - `codec`: binding parameters, decoding columns and mapping errors;
//! - `relay`: what the server sends on the pool's connections, read by wasmig first;
//! - `tests`: the tests, against a real server.
//!
//! [`Value`]: wasmig_contract::Value
//! [`SqlError`]: wasmig_contract::SqlError

// `SqlError` is the WIT record handed to the guest as is; errors are the cold path, and
// boxing it would only add a conversion at every trait boundary.
#![allow(clippy::result_large_err)]

mod advisory_lock;
mod bookkeeping;
mod cancel;
mod codec;
mod lease_lock;
mod relay;
mod role;
mod run_writes;
mod session;
mod statement_cache;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, Row};

use self::advisory_lock::{PgLock, PgLockAttempt, advisory};
use self::codec::sql_error;
use super::lock::{self, LockGuard};
use super::store::{Reader, VersionStore};
use super::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, Database, DatabaseUrl, DbError, FAILED_TABLE, HISTORY_TABLE,
    LOCK_TABLE, LockMode, PARTITION_TABLE, Policy, SCHEMA_TABLE, ScriptFailure, Session,
    VERSION_TABLE,
};
use wasmig_contract::Dialect;

/// The tables a step writes, as the tamper check and the fence look at them; and the
/// schema table, which no step writes but the start of the next run may (a layout
/// migration whose row a step deleted would run again), so that nothing added to it
/// would run then.
pub(super) const PRESENT: [&str; 7] = [
    VERSION_TABLE,
    HISTORY_TABLE,
    FAILED_TABLE,
    ARTIFACT_TABLE,
    CHECKPOINT_TABLE,
    PARTITION_TABLE,
    SCHEMA_TABLE,
];

/// The writes to the tables of [`PRESENT`] that wasmig makes only after the tamper check,
/// in the transactions it makes for them, or never: each table with the server's counters
/// (`pg_stat_get_xact_tuples_*`) of them. The check refuses a transaction whose count of
/// them moved before it. The batch tables are written only by wasmig's batch
/// transactions, after their check (a forged checkpoint would make a later batched
/// revision resume past rows it never walked); the schema table only at a run's start, on
/// its own connection; a history row is never updated or deleted (a forged checksum, a
/// row erased and another forged in its place, which the row count would not see); a
/// failed mark is written only by a `transaction = "none"` step's own transactions, after
/// their check (a forged one would stop every later run at exit 13 naming a revision that
/// never failed), and deleted by a record, so its deletes are not counted.
pub(super) const WATCHED_WRITES: [(&str, &[&str]); 5] = [
    (CHECKPOINT_TABLE, &["inserted", "updated", "deleted"]),
    (PARTITION_TABLE, &["inserted", "updated", "deleted"]),
    (SCHEMA_TABLE, &["inserted", "updated", "deleted"]),
    (HISTORY_TABLE, &["updated", "deleted"]),
    (FAILED_TABLE, &["inserted", "updated"]),
];

/// Where wasmig's tables live unless the project configures another schema.
const DEFAULT_SCHEMA: &str = "public";

/// How long closing the connections may wait for the server.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Connections in the pool: one session, the version-table reads, and a spare for
/// cancelling; and one session per worker of a partitioned step (`up --workers`). Opened
/// as needed: a run without workers never opens more than the first three.
const MAX_CONNECTIONS: u32 = 4 + crate::MAX_WORKERS;

/// Clears what a migration may leave on its connection beyond its transaction, before the
/// pool hands the connection to the next step: settings made with a plain `SET` (a
/// `search_path`, a `statement_timeout`, `SET ROLE`), advisory locks, `LISTEN`, cursors
/// `WITH HOLD`, temporary tables and sequences. This is `DISCARD ALL` without its
/// `DEALLOCATE ALL`, which would drop the statements sqlx keeps prepared on the connection
/// and make its next use of them fail. Settings given at connect time (the
/// `application_name`, sqlx's `TimeZone`, `DateStyle`…) are what `RESET ALL` returns to.
///
/// Its transaction is `READ COMMITTED` whatever defaults the migration left: under
/// `default_transaction_isolation = serializable` with `default_transaction_deferrable` and
/// `default_transaction_read_only` on, its first statement would wait for a safe snapshot
/// as long as any serializable transaction in the cluster stays open (found by a review:
/// 23.6 s behind another session's). Set first, as `SET TRANSACTION` must be; on a
/// connection still in a transaction it fails, and the connection is closed.
///
/// Statements a migration prepared with SQL (`PREPARE`; `from_sql` in
/// `pg_prepared_statement()`) are deallocated by name, sqlx's (prepared by the protocol)
/// kept: left there, the next step's `PREPARE` of the same name failed with 42P05 (found by
/// a review). The block costs about 0.05 ms a step.
pub(super) const RESET_SESSION: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
     CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
     DO $wasmig$DECLARE n pg_catalog.text; BEGIN \
     FOR n IN SELECT p.name FROM pg_catalog.pg_prepared_statement() p WHERE p.from_sql LOOP \
     EXECUTE pg_catalog.format('DEALLOCATE %I', n); END LOOP; END$wasmig$";

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
/// All live in the configured schema (`database_schema`, default `public`), with `wasmig_schema`.
pub(crate) struct PgDatabase {
    /// Created by [`PgDatabase::connect`], closed by [`Database::close`]; sessions and
    /// cancellers hold clones (one shared pool).
    pool: PgPool,
    /// The pool's first connection while it opens, when [`PgDatabase::connect`] opened it
    /// early: the first [`PgDatabase::acquire`] takes it.
    first: std::sync::Mutex<Option<FirstConnection>>,
    /// wasmig's own reads, version-table DDL and the migration lock, outside any step's
    /// transaction: the connection [`PgDatabase::connect`] opened to check the server, kept
    /// (one connection, no pool checkout or session reset per read); closed by
    /// [`Database::close`]. It never runs migration code, so nothing a migration leaves on a
    /// connection can reach it, and no migration can release the lock held on it.
    control: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    /// wasmig's tables, in [`PgDatabase::schema`] (qualified: the control connection's
    /// `search_path` is the role's and the database's, which a migration can change for
    /// the next run).
    store: VersionStore,
    /// The schema wasmig's tables live in: configured, never read from a session.
    pub(super) schema: String,
    /// The migration lock's advisory key, of that schema ([`crate::lock::pg_lock_key`]).
    pub(super) lock_key: i64,
    /// The backend pid of the control connection while it holds the migration lock (set by
    /// [`Database::lock`], cleared by the guard's release): every step's transaction checks
    /// the lock is still granted to that session before it records anything (a fence), so
    /// a migration that ends the control connection cannot have its step recorded beside a
    /// second run's.
    pub(super) lock_holder: Arc<std::sync::Mutex<Option<lease_lock::Holder>>>,
    /// Which kind of migration lock to take, and a lease's length (`lock` in wasmig.toml).
    lock_settings: crate::LockSettings,
    /// The oids of wasmig's tables ([`PRESENT`], in order) once [`Database::ensure_version_tables`]
    /// made sure they exist, for the sessions' tamper check: its cheap path, and noticing a
    /// table replaced during the run.
    table_oids: std::sync::Mutex<Option<bookkeeping::KnownTables>>,
    /// The URL without its password, for messages.
    url: String,
    /// The role the migrations' SQL runs as (`role` in `wasmig.toml`), checked by
    /// [`PgDatabase::set_role`]; `None`: the role wasmig connects as.
    pub(super) role: Option<Arc<str>>,
    /// What the pool's connections pass through: the bound on what the server sends a
    /// migration, and the server's word on each session's transaction (`relay`).
    relay: Arc<relay::Relay>,
    /// The connection the last step committed on, kept for the next step rather than
    /// returned to the pool (see [`Kept`]).
    pub(super) kept: Kept,
    /// Whether the last commit of a step was lazy ([`Session::commit_lazily`]): not known
    /// to be on disk until a later commit or [`Database::flush`].
    ///
    /// [`Session::commit_lazily`]: crate::Session::commit_lazily
    pub(super) unflushed: Unflushed,
    /// What the run's committed records wrote, for [`Database::verify_run_writes`].
    pub(super) run_writes: SharedRunWrites,
}

/// The connection a committed step leaves for the next one: every step of a run on one
/// backend, reset in the message that commits (`PgSession::commit_and_reset`) rather than
/// in a round trip of its own. (Returned to the pool, each connection is reset there while
/// the next step takes another, so steps alternated between backends.) A step that fails
/// returns its connection to the pool, which resets it; [`Database::close`] returns the
/// kept one.
pub(super) type Kept = Arc<std::sync::Mutex<Option<KeptConnection>>>;

/// A [`Kept`] connection, and how many of the statements in sqlx's cache on it are
/// wasmig's own (the record of a step, `PgSession::fetch_prepared`), which the next step
/// keeps: any other the next step clears before it begins.
pub(super) struct KeptConnection {
    pub(super) conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    pub(super) own_statements: usize,
    /// The next step's transaction, begun in the message that committed this one
    /// ([`Session::begin_next_in_commit`]): the statement that began it and the row it
    /// read. `None`: no transaction is open on the connection.
    ///
    /// [`Session::begin_next_in_commit`]: crate::Session::begin_next_in_commit
    pub(super) begun: Option<(String, sqlx::postgres::PgRow)>,
    /// What the relay saw on the connection (`None`: not known, as behind a pooler whose
    /// pids are not the server's), to tell whether it still carries it.
    pub(super) wire: Option<Arc<relay::Wire>>,
}

/// See [`PgDatabase::unflushed`].
pub(super) type Unflushed = Arc<std::sync::atomic::AtomicBool>;

/// See [`PgDatabase::run_writes`].
pub(super) type SharedRunWrites = Arc<std::sync::Mutex<run_writes::RunWrites>>;

/// How long the check of a run's writes ([`Database::verify_run_writes`]) waits for the
/// server.
const VERIFY_WAIT: Duration = Duration::from_secs(5);

/// How long [`Database::flush`] waits for the server.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Waits (polling, up to `timeout`) until [`PG_STEP_KEY`] can be taken exclusively, that is
/// until no step of an earlier holder of the migration lock is still in its transaction,
/// then lets it go.
///
/// [`PG_STEP_KEY`]: crate::lock::PG_STEP_KEY
async fn wait_for_steps_in_flight(
    conn: &mut PgConnection,
    database: &str,
    timeout: Duration,
    key: i64,
) -> anyhow::Result<()> {
    let give_up = std::time::Instant::now() + timeout;
    let mut logged = false;
    loop {
        // Taken and let go in one statement (CASE decides the order: the unlock only
        // when the try took it).
        let free = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT CASE WHEN pg_catalog.pg_try_advisory_lock('{key}'::pg_catalog.int8) \
             THEN pg_catalog.pg_advisory_unlock('{key}'::pg_catalog.int8) ELSE false END"
        )))
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get::<bool, _>(0))
        .map_err(|source| DbError::Query {
            doing: "waiting for an earlier run's step to end".into(),
            source,
        })?;
        if free {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if now >= give_up || !logged {
            let session = step_in_flight(conn, key).await;
            if now >= give_up {
                // Typed (exit 11): nothing ran, as for any lock not had in time.
                return Err(crate::LockTimeout {
                    database: database.to_owned(),
                    holder: format!(
                        "{session}, a step of an earlier run (which ended or lost the lock) still at work"
                    ),
                    waited: timeout,
                }
                .into());
            }
            tracing::warn!(
                "a step of an earlier wasmig run (which ended or lost the lock) is still at work on {database}: {session}; waiting up to {} s for it to end",
                give_up.saturating_duration_since(now).as_secs()
            );
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session holding [`PG_STEP_KEY`](crate::lock::PG_STEP_KEY) shared (a step of an
/// earlier run), described for the log and the error. Found by the lock it holds, which the
/// migration cannot release, not by anything the migration can change about its session;
/// its `application_name` is shown, not trusted. Best effort.
async fn step_in_flight(conn: &mut PgConnection, key: i64) -> String {
    /// pid, application_name, state, the query's start.
    type Row = (i32, Option<String>, Option<String>, Option<String>);
    let row: Result<Option<Row>, _> = sqlx::query_as(concat!(
        "SELECT a.pid, a.application_name, a.state,
                    pg_catalog.left(pg_catalog.regexp_replace(a.query, '\\s+', ' ', 'g'), 100) ",
        advisory_lock::holders_of_key!(),
        " AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() LIMIT 1"
    ))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await;
    match row {
        Ok(Some((pid, app, state, query))) => format!(
            "pid {pid} (application_name '{}', {}: `{}`)",
            app.unwrap_or_default(),
            state.as_deref().unwrap_or("?"),
            query.as_deref().unwrap_or("")
        ),
        Ok(None) => "a session that is no longer listed in pg_locks".into(),
        Err(e) => format!("a session wasmig cannot see ({e})"),
    }
}

/// The pool of the connections that run migrations, opening them lazily with `through`.
fn pool_with(through: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(10))
        // A run lasts seconds to hours, not days: a connection the server ended shows at its
        // next statement, which fails the step like any lost connection. A ping before every
        // checkout would cost a round trip per step.
        .test_before_acquire(false)
        // A connection that cannot be reset is closed rather than handed to the next step.
        .after_release(|conn, _| {
            Box::pin(async move { Ok(sqlx::raw_sql(RESET_SESSION).execute(conn).await.is_ok()) })
        })
        .connect_lazy_with(through)
}

/// A pool's first connection opened early ([`PgDatabase::connect`]), given up: waited for
/// (bounded) and closed, so the server sees the session end rather than a dropped start-up.
async fn discard(pool: PgPool, first: FirstConnection) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if let Ok(Ok(conn)) = first.await {
            let _ = conn.close().await;
        }
        pool.close().await;
    })
    .await;
}

/// The pool's first connection, opening in the background ([`PgDatabase::connect`]).
type FirstConnection =
    tokio::task::JoinHandle<Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error>>;

impl PgDatabase {
    /// Reads wasmig's tables as they are (they exist) for the steps' checks: their oids in
    /// the configured schema, what depends on them, and their storage, with the full
    /// tamper check in the same snapshot; changes nothing.
    async fn learn_tables(&self) -> anyhow::Result<()> {
        // The tables this run writes, by oid, in the configured schema; what depends on them;
        // what the full tamper check finds; and their storage (`relfilenode`), in the same
        // snapshot: what the steps' cheap look compares with must be what wasmig made.
        let tables: Vec<String> = PRESENT
            .iter()
            .map(|t| self.store.words().table(t))
            .collect();
        let regclasses = tables
            .iter()
            .map(|t| format!("pg_catalog.to_regclass({})", bookkeeping::lit(t)))
            .collect::<Vec<_>>();
        let sql = format!(
            "SELECT {}, (SELECT n.oid::pg_catalog.int8 FROM pg_catalog.pg_namespace n \
             WHERE n.nspname OPERATOR(pg_catalog.=) {}), \
             pg_catalog.array_to_string(({}), ','), ({}), {}",
            regclasses
                .iter()
                .map(|r| format!("{r}::pg_catalog.oid::pg_catalog.int8"))
                .collect::<Vec<_>>()
                .join(", "),
            bookkeeping::lit(&self.schema),
            bookkeeping::dependents(&format!(
                "ARRAY[{}]::pg_catalog.oid[]",
                regclasses.join(", ")
            )),
            bookkeeping::tamper_findings(&tables, None),
            regclasses
                .iter()
                .map(|r| format!(
                    "(SELECT c.relfilenode::pg_catalog.int8 FROM pg_catalog.pg_class c \
                     WHERE c.oid OPERATOR(pg_catalog.=) {r})"
                ))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(&mut *self.control().await)
            .await
            .map_err(|source| DbError::Query {
                doing: "reading the oids of wasmig's tables".into(),
                source,
            })?;
        let read = || -> Result<_, sqlx::Error> {
            // Columns of oids (int8): all of them, or `None` when one is NULL.
            let oids = |columns: std::ops::Range<usize>| -> Result<Option<Vec<u32>>, sqlx::Error> {
                let mut all = Vec::with_capacity(columns.len());
                for i in columns {
                    all.push(row.try_get::<Option<i64>, _>(i)?);
                }
                Ok(all
                    .into_iter()
                    .map(|o| o.and_then(|o| u32::try_from(o).ok()))
                    .collect())
            };
            let n = PRESENT.len();
            Ok((
                oids(0..n + 1)?,
                row.try_get::<Option<String>, _>(n + 1)?,
                row.try_get::<Option<String>, _>(n + 2)?,
                oids(n + 3..2 * n + 3)?,
            ))
        };
        let (all, dependents, found, filenodes) = read().map_err(|source| DbError::Query {
            doing: "reading the oids of wasmig's tables".into(),
            source,
        })?;
        let dependents: Option<Vec<u32>> = dependents.and_then(|list| {
            list.split(',')
                .filter(|o| !o.is_empty())
                .map(|o| o.parse().ok())
                .collect()
        });
        // All of them, the schema and their dependents, as wasmig made them, or nothing:
        // the sessions then run the full check every time (which names what it finds).
        if let Ok(mut known) = self.table_oids.lock() {
            *known = match (all, filenodes, dependents, found) {
                (Some(mut oids), Some(filenodes), Some(dependents), None) => {
                    let namespace = oids.pop().expect("the schema's oid comes last");
                    Some(bookkeeping::KnownTables {
                        oids,
                        filenodes,
                        namespace,
                        dependents,
                    })
                }
                _ => None,
            };
        }
        Ok(())
    }

    /// Connects, checking the server answers before building the pool. With `early`, the
    /// pool's first connection (the one the `auto` lock's probe needs, then the first
    /// step's) opens beside the control connection rather than after it: two server
    /// start-ups at once instead of one after the other.
    ///
    /// # Errors
    /// [`DbError::InvalidUrl`] when sqlx cannot parse the URL, [`DbError::Connect`] when the
    /// server cannot be reached or refuses the login.
    #[cfg(test)]
    pub(crate) async fn connect(
        url: &DatabaseUrl,
        search_path: Option<&str>,
        early: bool,
    ) -> Result<Self, DbError> {
        Self::connect_waiting(url, search_path, early, None).await
    }

    /// [`PgDatabase::connect`], with the control connection's `lock_timeout` at `wait`
    /// (`None`: the server's): how long wasmig's own statements there (creating and
    /// checking its tables, reading them before a plan) wait for a lock another session
    /// holds on its tables, as `LOCK wasmig_history IN ACCESS EXCLUSIVE MODE` does, before
    /// they give up (55P03, named by [`Database::tables_locked_by`]). Set as a start-up
    /// option: no round trip.
    ///
    /// # Errors
    /// As [`PgDatabase::connect`].
    pub(crate) async fn connect_waiting(
        url: &DatabaseUrl,
        search_path: Option<&str>,
        early: bool,
        wait: Option<std::time::Duration>,
    ) -> Result<Self, DbError> {
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
        // How the server reads SQL text, pinned for every session (over a database's or a
        // role's default): what wasmig's parser of a migration's SQL assumes (`pg_parse`).
        // sqlx already asks for client_encoding UTF8.
        options = options.options([("standard_conforming_strings", "on")]);
        let connect_error = |source| DbError::Connect {
            url: url.to_string(),
            source,
        };
        // The pool's connections, which run the migrations, pass through the relay.
        let relay = relay::Relay::start(&options)
            .map_err(|e| connect_error(sqlx::Error::Io(e)))?
            .0;
        let pool_for = |modern: bool| {
            let mut pooled = options.clone();
            // A wasmig killed in the middle of a statement leaves its server session running
            // it until the server notices the client is gone, which by default is only when
            // it next writes to the socket. PostgreSQL 14+ can look every second instead, so
            // such a statement stops (and rolls back) soon after the process dies.
            if modern {
                pooled = pooled.options([("client_connection_check_interval", "1000")]);
            }
            // A schema target: the migrations' `search_path` is its schema, on every pool
            // connection from its start (their reset, `RESET ALL`, comes back to it); the
            // control connection qualifies every name and keeps the server's. A valid
            // schema name (a lowercase identifier) needs no quoting.
            if let Some(schema) = search_path {
                pooled = pooled.options([("search_path", schema)]);
            }
            pool_with(relay.through(&pooled))
        };
        // Opened early, the pool's first connection cannot wait for the server's version:
        // it assumes PostgreSQL 14+, as nearly every server is, and is given up (and the
        // pool made again) when the server turns out older.
        let early = early.then(|| {
            let pool = pool_for(true);
            let first = pool.clone();
            (pool, tokio::spawn(async move { first.acquire().await }))
        });
        // One direct connection first: the pool retries a refused connection until its
        // acquire timeout and then reports only "pool timed out", hiding the real cause.
        // It stays as the control connection, which runs no migration's SQL: its times are
        // written in one format whatever the database's or the role's defaults (startup
        // options override both; sqlx's start-up asks for the same two), so its reads of
        // them go by the simple protocol (`bookkeeping::Control`).
        let mut control_options = options
            .clone()
            .options([("DateStyle", "ISO"), ("TimeZone", "UTC")]);
        if let Some(wait) = wait {
            // At least a second (`--lock-timeout 0` tries the migration lock once, but a
            // row lock another run's statement holds for a moment is no reason to stop; 0
            // would wait forever).
            let ms = wait.as_millis().clamp(1000, i32::MAX as u128).to_string();
            control_options = control_options.options([("lock_timeout", ms.as_str())]);
        }
        let probe = control_options.connect().await.map_err(connect_error);
        let mut probe = match probe {
            Ok(probe) => probe,
            Err(e) => {
                if let Some((pool, first)) = early {
                    discard(pool, first).await;
                }
                return Err(e);
            }
        };
        // (The server reports its version at connect time: no round trip.)
        let modern = probe.server_version_num().is_some_and(|v| v >= 140_000);
        if modern {
            // The probe stays as the control connection, idle through long steps: a server
            // idle timeout must not end it half-way.
            let set = sqlx::raw_sql("SET idle_session_timeout = 0")
                .execute(&mut probe)
                .await;
            if let Err(e) = set {
                if let Some((pool, first)) = early {
                    discard(pool, first).await;
                }
                return Err(connect_error(e));
            }
        }
        let (pool, first) = match early {
            Some((pool, first)) if modern => (pool, Some(first)),
            Some((pool, first)) => {
                discard(pool, first).await;
                (pool_for(false), None)
            }
            None => (pool_for(modern), None),
        };
        Ok(PgDatabase {
            pool,
            first: std::sync::Mutex::new(first),
            control: Arc::new(tokio::sync::Mutex::new(Some(probe))),
            store: VersionStore::new(Dialect::Postgres, Some(DEFAULT_SCHEMA.to_owned())),
            schema: DEFAULT_SCHEMA.to_owned(),
            lock_key: crate::lock::pg_lock_key(DEFAULT_SCHEMA),
            lock_holder: Arc::new(std::sync::Mutex::new(None)),
            lock_settings: crate::LockSettings::default(),
            table_oids: std::sync::Mutex::new(None),
            url: url.to_string(),
            role: None,
            relay: Arc::new(relay),
            kept: Kept::default(),
            unflushed: Unflushed::default(),
            run_writes: SharedRunWrites::default(),
        })
    }

    /// Checks that a pool connection's `search_path` is exactly `schema`, as
    /// [`PgDatabase::connect`] asked: a pooler that drops startup parameters would otherwise
    /// run a tenant's migrations in another schema.
    ///
    /// # Errors
    /// [`wasmig_plan::ConfigError`] naming what the server has; [`DbError`] when it cannot
    /// be asked.
    pub(crate) async fn check_search_path(&self, schema: &str) -> anyhow::Result<()> {
        let mut conn = self
            .acquire(&format!(
                "checking the search_path of the schema target {schema}"
            ))
            .await?;
        // As the migrations' role, if one is set: `current_schemas` leaves out a schema the
        // role may not use. In a transaction of its own, so the role goes with it.
        let as_role = self
            .role
            .as_deref()
            .map(|r| format!("SET LOCAL ROLE {}; ", role::quoted(r)))
            .unwrap_or_default();
        let found: String = sqlx::raw_sql(AssertSqlSafe(format!(
            "BEGIN; {as_role}SELECT pg_catalog.current_setting('search_path') \
             OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) \
             pg_catalog.array_to_string(pg_catalog.current_schemas(false), ','); COMMIT"
        )))
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|source| DbError::Query {
            doing: format!("checking the search_path of the schema target {schema}"),
            source,
        })?;
        let (setting, schemas) = found.split_once(' ').unwrap_or((found.as_str(), ""));
        if setting == schema && schemas.is_empty() {
            return Err(wasmig_plan::ConfigError::new(format!(
                "the schema target {schema} on {}: the database has no schema {schema}{}; create it (CREATE SCHEMA {schema}) and run again, or remove the target",
                self.url,
                match &self.role {
                    Some(role) => format!(" that the role `{role}` (role in wasmig.toml) may use (GRANT USAGE, CREATE ON SCHEMA {schema} TO …)"),
                    None => String::new(),
                }
            ))
            .into());
        }
        if setting != schema || schemas != schema {
            return Err(wasmig_plan::ConfigError::new(format!(
                "the schema target {schema} on {}: its sessions' search_path is `{setting}` (existing schemas: `{schemas}`), not `{schema}`; create the schema first, and connect directly or through a pooler that passes the search_path startup parameter on (PgBouncer: track_extra_parameters = search_path)",
                self.url
            ))
            .into());
        }
        Ok(())
    }

    /// The same database, with wasmig's tables in `schema`.
    pub(crate) fn in_schema(mut self, schema: String) -> Self {
        self.store = VersionStore::new(Dialect::Postgres, Some(schema.clone()));
        self.lock_key = crate::lock::pg_lock_key(&schema);
        self.schema = schema;
        self
    }

    /// The same database, with this kind of migration lock.
    pub(crate) fn with_lock(mut self, settings: crate::LockSettings) -> Self {
        self.lock_settings = settings;
        self
    }

    /// Why this run takes the lease lock (`None`: the advisory lock): configured, or found
    /// needed by [`lease_lock::detect`].
    async fn lease_wanted(&self) -> anyhow::Result<Option<String>> {
        match self.lock_settings.mode {
            LockMode::Advisory => Ok(None),
            LockMode::Lease => Ok(Some(self.lock_settings.source.clone())),
            LockMode::Auto => {
                let mut other = self.acquire("probing advisory locks").await?;
                let mut control = self.control().await;
                let relay = self.relay.clone();
                let why =
                    lease_lock::detect(&mut control, &mut other, |pid| relay.wire(pid).is_some())
                        .await?;
                // Kept for the first step rather than returned to the pool, whose reset
                // would still be at work when the lock looks for sessions of a dead run
                // (the probe left nothing on it: its lock was taken and let go in one
                // statement).
                if let Ok(mut kept) = self.kept.lock()
                    && kept.is_none()
                {
                    *kept = Some(KeptConnection {
                        conn: other,
                        own_statements: 0,
                        begun: None,
                        wire: None,
                    });
                }
                Ok(why.map(|why| {
                    format!("{why}; set lock = \"advisory\" in wasmig.toml to override")
                }))
            }
        }
    }

    /// Takes the lease lock (see `lease_lock`), creating its table first.
    async fn lease(&self, timeout: Duration) -> anyhow::Result<Box<dyn LockGuard>> {
        let table = self.store.words().table(LOCK_TABLE);
        let lease = self.lock_settings.lease;
        let token = {
            let mut control = self.control().await;
            // Runs starting together may race to create it: the loser's error is a unique
            // violation (or "already exists"), after which the table is there.
            let create = lease_lock::create_table(&table);
            for attempt in 0.. {
                match sqlx::raw_sql(AssertSqlSafe(create.clone()))
                    .execute(&mut *control)
                    .await
                {
                    Ok(_) => break,
                    Err(sqlx::Error::Database(e))
                        if attempt < 3
                            && matches!(e.code().as_deref(), Some("23505" | "42P07" | "42710")) => {
                    }
                    Err(source) => {
                        return Err(session::write_error(
                            source,
                            format!("creating {LOCK_TABLE}"),
                        ));
                    }
                }
            }
            let mut attempt = lease_lock::LeaseAttempt {
                conn: &mut control,
                table: table.clone(),
                lease,
                owner: lease_lock::owner(),
                token: None,
                key: self.lock_key,
            };
            lock::acquire(&mut attempt, &self.url, timeout).await?;
            attempt
                .token
                .expect("acquire returns once the lease is taken")
        };
        tracing::debug!(
            "took the migration lease {token} for {} ms",
            lease.as_millis()
        );
        if let Ok(mut holder) = self.lock_holder.lock() {
            *holder = Some(lease_lock::Holder::Lease {
                token,
                table: table.clone(),
                lease,
            });
        }
        Ok(Box::new(lease_lock::PgLease::renewing(
            self.pool.clone(),
            self.lock_holder.clone(),
            table,
            token,
            lease,
        )))
    }

    /// The control connection (see the field).
    async fn control(&self) -> tokio::sync::MappedMutexGuard<'_, PgConnection> {
        tokio::sync::MutexGuard::map(self.control.lock().await, |c| {
            c.as_mut()
                .expect("the control connection is open until close")
        })
    }
}

#[async_trait]
impl Database for PgDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn server_version(&self) -> anyhow::Result<Option<String>> {
        let version: String = sqlx::raw_sql("SELECT pg_catalog.version()")
            .fetch_one(&mut *self.control().await)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|source| DbError::Query {
                doing: "reading the server's version".into(),
                source,
            })?;
        Ok(Some(version))
    }

    async fn verify_tables(&self) -> anyhow::Result<()> {
        if !self
            .store
            .has_table(&mut *self.control().await, VERSION_TABLE)
            .await?
        {
            return Ok(());
        }
        let tables: Vec<String> = PRESENT
            .iter()
            .map(|t| self.store.words().table(t))
            .collect();
        // A plain query (a DO block would be compiled every run), its answer read here.
        let findings = bookkeeping::tamper_findings(&tables, None);
        let found: Option<String> = sqlx::raw_sql(AssertSqlSafe(findings))
            .fetch_one(&mut *self.control().await)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|source| DbError::Query {
                doing: "checking wasmig's tables".into(),
                source,
            })?;
        match found {
            None => Ok(()),
            Some(found) => Err(crate::TablesTampered(found).into()),
        }
    }

    fn store(&self) -> &VersionStore {
        &self.store
    }

    async fn reader(&self) -> anyhow::Result<Box<dyn Reader + '_>> {
        Ok(Box::new(bookkeeping::Control(self.control().await)))
    }

    async fn tables_ready(&self) -> anyhow::Result<()> {
        let artifact = self.store.words().table(ARTIFACT_TABLE);
        sqlx::raw_sql(AssertSqlSafe(bookkeeping::compress_artifacts(&artifact)))
            .execute(&mut *self.control().await)
            .await
            .map_err(|source| DbError::Query {
                doing: format!("compressing {ARTIFACT_TABLE}"),
                source,
            })?;
        self.learn_tables().await
    }

    async fn know_tables(&self) -> anyhow::Result<()> {
        if self
            .store
            .has_table(&mut *self.control().await, VERSION_TABLE)
            .await?
        {
            self.learn_tables().await?;
        }
        Ok(())
    }

    async fn run_autocommit(
        &self,
        script: &str,
        policy: &Policy,
        lock: Option<Duration>,
        statement: Option<Duration>,
    ) -> Result<usize, ScriptFailure> {
        let policy = policy.clone().with_role(self.role.as_deref());
        let statements = super::autocommit_statements(script, Dialect::Postgres, &policy)?;
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
        let holder = self.lock_holder.lock().ok().and_then(|h| h.clone());
        // Under a lease, each statement may reach another server session (a pooler in
        // transaction mode hands one out per transaction): nothing set on the session holds.
        let leased = holder.as_ref().is_some_and(|h| !h.is_session());
        if leased && let Some(role) = &self.role {
            return Err(nothing_ran(wasmig_contract::SqlError::wasmig(
                "STATE",
                format!(
                    "this revision runs outside a transaction (transaction = \"none\", or a script with DDL under execution = \"per-statement\"), and under the lease lock each of its statements may reach another server session (a pooler in transaction mode), where the role `{role}` (role in wasmig.toml) would not be in force; nothing ran; run it with lock = \"advisory\" on a direct connection, or without the role"
                ),
            )));
        }
        if leased && (lock.is_some() || statement.is_some()) {
            tracing::warn!(
                "lock_timeout and statement_timeout are not set for this revision's statements (run one by one, outside a transaction) under the lease lock: through a pooler in transaction mode a session setting would reach other clients' sessions and miss this one's next statement: the server's defaults apply"
            );
        }
        // A plain SET, for the session: the pool's reset (`RESET ALL`) undoes it when the
        // connection goes back.
        for (name, value) in [("lock_timeout", lock), ("statement_timeout", statement)] {
            if leased {
                break;
            }
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
        // Under the migration lock, the script's session holds PG_STEP_KEY shared, at
        // session level (there is no transaction to hold it for), until the pool's reset
        // releases it: a run that takes the lock after this one was killed waits for a
        // statement still at work here, whatever the statement did to its session's name.
        // A migration cannot release it: calls of the unlock functions are refused, and
        // the probe after each statement checks it is still held.
        let under_lock = holder.as_ref().is_some_and(lease_lock::Holder::is_session);
        let step_key = holder
            .as_ref()
            .and_then(lease_lock::Holder::step_key)
            .unwrap_or(crate::lock::PG_STEP_KEY);
        if under_lock {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SELECT pg_catalog.pg_advisory_lock_shared('{step_key}'::pg_catalog.int8)"
            )))
            .execute(&mut *conn)
            .await
            .map_err(|e| nothing_ran(sql_error(e)))?;
        }
        let held = if under_lock {
            format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() \
                 AND locktype OPERATOR(pg_catalog.=) 'advisory' AND granted AND mode OPERATOR(pg_catalog.=) 'ShareLock' \
                 AND classid OPERATOR(pg_catalog.=) (('{step_key}'::pg_catalog.int8 OPERATOR(pg_catalog.>>) 32) OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid \
                 AND objid OPERATOR(pg_catalog.=) ('{step_key}'::pg_catalog.int8 OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid \
                 AND objsubid OPERATOR(pg_catalog.=) 1)"
            )
        } else {
            // Under a lease, the lease: a run that lost it stops at the next statement.
            holder.map_or_else(|| "true".to_owned(), |h| h.held(false))
        };
        // Under none of the defaults the script may have set for its session: no
        // `exit_on_error` (which would make the probe's own 25001 below end the session), no
        // statement timeout (a `SET statement_timeout = '1ms'` would cancel the probe,
        // after its statement committed, and the revision would be marked failed), and
        // READ COMMITTED (a serializable, deferrable, read-only default would have the
        // probe wait for a safe snapshot as long as any serializable transaction in the
        // cluster stays open, past the step's deadline). Both in the message's implicit
        // transaction, which the server applies from the next statement of the message on,
        // and which ends with it. The transaction's start is still the message's (an
        // implicit transaction starts with the message's first statement), so the
        // comparison below still says whether a block was open before it; in a block
        // where a query ran already, the `SET TRANSACTION` itself is refused (25001),
        // which says the same.
        // With a `role`, the server's word that the script still runs as it: a switch the
        // parser could not see (SQL built at run time in a trusted project) stops the script
        // at the statement that made it, as the guard stops a step's.
        let in_role = self.role.as_deref().map_or_else(
            || "true".to_owned(),
            |role| {
                format!(
                    "CURRENT_USER OPERATOR(pg_catalog.=) {}",
                    bookkeeping::lit(role)
                )
            },
        );
        let probe = format!(
            "SET LOCAL exit_on_error = off; \
             SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = 0; \
             SELECT pg_catalog.statement_timestamp() \
             OPERATOR(pg_catalog.<>) pg_catalog.transaction_timestamp(), \
             pg_catalog.current_setting('standard_conforming_strings') \
             OPERATOR(pg_catalog.=) 'on', {held}, {in_role}"
        );
        // The migration's statements run as its role (after wasmig took the step key).
        if let Some(role) = &self.role {
            role::enter_for_session(&mut conn, role)
                .await
                .map_err(nothing_ran)?;
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
            // The server's word, not the splitter's: after each statement the session must
            // be outside any transaction block, or a `BEGIN` the check did not see (a literal
            // the server read differently, say) would keep the rest of the script from
            // committing. Outside a block, the probe is its own transaction, which starts
            // with its statement; inside one, the transaction started with an earlier message.
            // And the next statement must be read as wasmig's parser read it: a setting
            // changed where the parser could not see it (a computed `set_config`) stops
            // the script here.
            let probed = sqlx::raw_sql(AssertSqlSafe(probe.clone()))
                .fetch_one(&mut *conn)
                .await
                .and_then(|row| {
                    Ok((
                        row.try_get::<bool, _>(0)?,
                        row.try_get::<bool, _>(1)?,
                        row.try_get::<bool, _>(2)?,
                        row.try_get::<bool, _>(3)?,
                    ))
                });
            let (open, standard, held, in_role) = match probed {
                Ok(probed) => probed,
                // A block the statement opened, in which a query has run.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("25001") => {
                    (true, true, true, true)
                }
                // The statement ran and committed (the failure is counted past it, so that
                // the report says it stayed); the server's code is kept (a lost connection
                // is the host's).
                Err(e) => {
                    let mut error = sql_error(e);
                    error.message = format!(
                        "wasmig's check after statement {} (which ran and committed) failed: {}",
                        n + 1,
                        error.message
                    );
                    return Err(ScriptFailure {
                        statement: n + 2,
                        total,
                        error: Box::new(error),
                    });
                }
            };
            // Below, the statement ran and committed before what it did was found: the
            // failure is counted past it.
            if !in_role && let Some(role) = &self.role {
                return Err(ScriptFailure {
                    statement: n + 2,
                    total,
                    error: Box::new(wasmig_contract::SqlError::wasmig(
                        "ROLE",
                        format!(
                            "statement {} left the role `{role}` (role in wasmig.toml) the script runs as; it ran and committed, the rest of the script did not run; remove the switch from the revision",
                            n + 1
                        ),
                    )),
                });
            }
            if !open && !held {
                // Released where no parser saw it (SQL built at run time): what ran
                // committed, and a run killed now would leave no trace of this session.
                return Err(ScriptFailure {
                    statement: n + 2,
                    total,
                    error: Box::new(wasmig_contract::SqlError::wasmig(
                        "STATE",
                        if under_lock {
                            format!(
                                "statement {} released wasmig's advisory lock on its session (pg_advisory_unlock…), which tells a later run that this revision is still at work; it ran and committed, the rest of the script did not run; remove the unlock from the revision",
                                n + 1
                            )
                        } else {
                            format!(
                                "the migration lease was lost (it expired, or another run took it over) by the end of statement {}: it and what ran before it committed, the rest of the script did not run; the revision is marked failed",
                                n + 1
                            )
                        },
                    )),
                });
            }
            if !open && !standard && n + 1 < total {
                // Refused at the next statement: this one ran, and committed.
                return Err(ScriptFailure {
                    statement: n + 2,
                    total,
                    error: Box::new(wasmig_contract::SqlError::wasmig(
                        "STATE",
                        "the statement before it switched standard_conforming_strings off, so the server would read this one differently from wasmig's check of it; it and the rest of the script did not run; remove the change from the revision".to_owned(),
                    )),
                });
            }
            if open {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                return Err(ScriptFailure {
                    statement: n + 1,
                    total,
                    error: Box::new(wasmig_contract::SqlError::wasmig(
                        "STATE",
                        "the statement left the session inside a transaction (a BEGIN the statement check did not see); what ran after it was rolled back; remove the transaction control from the revision".to_owned(),
                    )),
                });
            }
        }
        Ok(total)
    }

    async fn wal_positions(&self) -> anyhow::Result<Option<crate::WalPositions>> {
        // One simple query on the control connection; every name qualified.
        let row = sqlx::raw_sql(
            "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::pg_catalog.int8, \
             (SELECT pg_catalog.min(pg_catalog.pg_wal_lsn_diff(r.replay_lsn, '0/0'))::pg_catalog.int8 \
              FROM pg_catalog.pg_stat_replication r)",
        )
        .fetch_one(&mut *self.control().await)
        .await
        .and_then(|row| {
            Ok(crate::WalPositions {
                current: row.try_get(0)?,
                slowest_replayed: row.try_get(1)?,
            })
        })
        .map_err(|source| DbError::Query {
            doing: "reading the standbys' replay positions (pg_stat_replication)".into(),
            source,
        })?;
        Ok(Some(row))
    }

    async fn lock(&self, timeout: Duration) -> anyhow::Result<Box<dyn LockGuard>> {
        if let Some(why) = self.lease_wanted().await? {
            tracing::info!("migration lock: a lease in {LOCK_TABLE} ({why})");
            return self.lease(timeout).await;
        }
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
            lease_table: self.store.words().table(LOCK_TABLE),
            leased_by: None,
            key: self.lock_key,
        };
        if let Err(e) = lock::acquire(&mut attempt, &self.url, timeout).await {
            // Taken, then given up (a straggler outlasted the timeout, or a query failed):
            // the lock must not stay with the control connection until it closes. Unlocking
            // a lock this session does not hold only warns.
            let _ = sqlx::raw_sql(AssertSqlSafe(advisory("pg_advisory_unlock", self.lock_key)))
                .execute(attempt.conn())
                .await;
            return Err(e);
        }
        // A run that lost the lock may still have a step in flight: wait until its
        // transaction ends (it holds PG_STEP_KEY shared), so that planning sees what it
        // recorded.
        if let Err(e) =
            wait_for_steps_in_flight(attempt.conn(), &self.url, timeout, self.lock_key + 1).await
        {
            let _ = sqlx::raw_sql(AssertSqlSafe(advisory("pg_advisory_unlock", self.lock_key)))
                .execute(attempt.conn())
                .await;
            return Err(e);
        }
        // The fence's session: the control connection's backend.
        let pid = sqlx::raw_sql("SELECT pg_catalog.pg_backend_pid()")
            .fetch_one(attempt.conn())
            .await
            .and_then(|row| row.try_get::<i32, _>(0))
            .map_err(|source| DbError::Query {
                doing: "reading the lock holder's backend pid".into(),
                source,
            })?;
        if let Ok(mut holder) = self.lock_holder.lock() {
            *holder = Some(lease_lock::Holder::Session {
                pid,
                key: self.lock_key,
            });
        }
        Ok(Box::new(PgLock {
            control: self.control.clone(),
            holder: self.lock_holder.clone(),
            key: self.lock_key,
        }))
    }

    async fn begin(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(self.begin_session().await?))
    }

    /// A transaction that writes one record to the server's log (a transactional logical
    /// message, prefix `wasmig`, which logical decoding shows and nothing else reads) and
    /// commits at the database's and role's `synchronous_commit`: it waits for the log to
    /// reach the disk up to itself, and so for every lazy commit before it. Nothing to do
    /// when the last step's commit was not lazy.
    fn forget_run_writes(&self) {
        if let Ok(mut run) = self.run_writes.lock() {
            *run = run_writes::RunWrites::default();
        }
    }

    async fn verify_run_writes(&self) -> anyhow::Result<()> {
        let written = match self.run_writes.lock() {
            Ok(mut run) => std::mem::take(&mut *run),
            Err(_) => return Ok(()),
        };
        let words = self.store.words();
        // Which table each name reaches now, and its storage, against what the run found
        // as it began (`tables_ready`): a rewrite moves rows, `xmin` and all.
        let known = self.table_oids.lock().ok().and_then(|k| k.clone());
        let tables = [crate::HISTORY_TABLE, crate::ARTIFACT_TABLE];
        let expected_storage: Vec<(u32, u32)> = tables
            .iter()
            .filter_map(|t| {
                let i = PRESENT.iter().position(|p| p == t)?;
                let known = known.as_ref()?;
                Some((*known.oids.get(i)?, *known.filenodes.get(i)?))
            })
            .collect();
        let storage: String = tables
            .iter()
            .map(|t| {
                let class = format!(
                    "pg_catalog.to_regclass({})",
                    bookkeeping::lit(&words.table(t))
                );
                format!(
                    ", {class}::pg_catalog.oid::pg_catalog.int8, \
                     (SELECT c.relfilenode::pg_catalog.int8 FROM pg_catalog.pg_class c \
                      WHERE c.oid OPERATOR(pg_catalog.=) {class}::pg_catalog.oid)"
                )
            })
            .collect();
        let Some(sql) = written.query(
            &words.table(crate::HISTORY_TABLE),
            &words.table(crate::ARTIFACT_TABLE),
            &words.table(crate::FAILED_TABLE),
            &storage,
        ) else {
            return Ok(());
        };
        // On the last step's connection when it is kept with no transaction open, else on
        // one of the pool's (not the lock's, which may be the one that stopped answering).
        let read = async {
            let kept = self.kept.lock().ok().and_then(|mut k| k.take());
            let (mut kept, mut pooled) = match kept {
                Some(kept) if kept.begun.is_none() => (Some(kept), None),
                other => {
                    if let Some(open) = other {
                        drop(open.conn.detach());
                    }
                    (
                        None,
                        Some(self.acquire("checking what the run wrote").await?),
                    )
                }
            };
            let conn = match (&mut kept, &mut pooled) {
                (Some(kept), _) => &mut kept.conn,
                (None, Some(pooled)) => pooled,
                (None, None) => unreachable!("one of the two is taken above"),
            };
            let row = sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_one(&mut **conn)
                .await
                .map_err(|source| DbError::Query {
                    doing: "checking what the run wrote to wasmig's tables".into(),
                    source,
                })?;
            // Kept for the next run, as it was.
            if let (Some(kept), Ok(mut slot)) = (kept, self.kept.lock())
                && slot.is_none()
            {
                *slot = Some(kept);
            }
            let history: Option<String> = row.try_get(0)?;
            let artifact: Option<String> = row.try_get(1)?;
            let rows: i64 = row.try_get(2)?;
            let marks: i64 = row.try_get(3)?;
            let mut storage = Vec::new();
            for i in 0..tables.len() {
                let oid: Option<i64> = row.try_get(4 + 2 * i)?;
                let filenode: Option<i64> = row.try_get(5 + 2 * i)?;
                storage.push((oid, filenode));
            }
            anyhow::Ok((history, artifact, rows, marks, storage))
        };
        let Ok(read) = tokio::time::timeout(VERIFY_WAIT, read).await else {
            return Err(crate::ReadBackUnanswered {
                what: "the run".into(),
                waited: VERIFY_WAIT,
            }
            .into());
        };
        let (history, artifact, rows, marks, storage) = read?;
        let rewritten: Vec<&str> = tables
            .iter()
            .zip(&storage)
            .zip(&expected_storage)
            .filter(|((_, found), (oid, filenode))| {
                found.0 != Some(i64::from(*oid)) || found.1 != Some(i64::from(*filenode))
            })
            .map(|((table, _), _)| *table)
            .collect();
        if expected_storage.len() != tables.len() || !rewritten.is_empty() {
            let which = if rewritten.is_empty() {
                "wasmig's tables".to_owned()
            } else {
                rewritten.join(" and ")
            };
            return Err(crate::TamperedAfterCommit(format!(
                "after the run committed, {which} is not the table the run began with, or was rewritten (TRUNCATE, CLUSTER, VACUUM FULL, ALTER TABLE) during it; the steps' work was committed"
            ))
            .into());
        }
        written
            .compare(history.as_deref(), artifact.as_deref(), rows, marks)
            .map_err(|found| {
                crate::TamperedAfterCommit(format!(
                    "after the run committed, {found} (something wrote them at or after a step's COMMIT, such as a deferred trigger of a migration's table, or beside the run); the steps' work was committed"
                ))
                .into()
            })
    }

    async fn flush(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        if !self.unflushed.load(Ordering::SeqCst) {
            // Nothing to make durable; a transaction begun for a step that did not come
            // (the run stopped before it) is undone all the same.
            let early = self
                .kept
                .lock()
                .ok()
                .and_then(|mut k| k.take_if(|k| k.begun.is_some()));
            if let Some(mut early) = early {
                let undone = tokio::time::timeout(
                    FLUSH_WAIT,
                    sqlx::raw_sql("ROLLBACK").execute(&mut *early.conn),
                )
                .await;
                if matches!(undone, Ok(Ok(_))) {
                    early.begun = None;
                    if let Ok(mut kept) = self.kept.lock()
                        && kept.is_none()
                    {
                        *kept = Some(early);
                    }
                } else {
                    drop(early.conn.detach());
                }
            }
            return Ok(());
        }
        let doing = "making the steps committed so far durable (flushing the server's log)";
        let flushed = tokio::time::timeout(FLUSH_WAIT, async {
            // The last step's connection if it is kept (reset as it committed), else the pool's.
            // A transaction begun for a step that did not come (the run stopped before it)
            // ends first, undone.
            let kept = self.kept.lock().ok().and_then(|mut k| k.take());
            let (mut conn, open) = match kept {
                Some(kept) => (kept.conn, kept.begun.is_some()),
                None => (self.pool.acquire().await?, false),
            };
            let end = if open { "ROLLBACK; " } else { "" };
            sqlx::raw_sql(AssertSqlSafe(format!(
                "{end}BEGIN; SET LOCAL synchronous_commit TO DEFAULT; \
                 SELECT pg_catalog.pg_logical_emit_message(true, 'wasmig', 'flush'); COMMIT"
            )))
            .execute(&mut *conn)
            .await
            .map(drop)
        })
        .await;
        match flushed {
            Ok(Ok(())) => {
                self.unflushed.store(false, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(source)) => Err(DbError::Query {
                doing: doing.into(),
                source,
            }
            .into()),
            Err(_) => Err(anyhow::anyhow!(
                "{doing}: the server did not answer within {} s",
                FLUSH_WAIT.as_secs()
            )),
        }
    }

    async fn invalid_indexes(&self) -> Vec<String> {
        let rows = sqlx::raw_sql(
            "SELECT i.indexrelid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_index i \
             WHERE NOT i.indisvalid ORDER BY 1",
        )
        .fetch_all(&mut *self.control().await)
        .await;
        rows.map(|rows| {
            rows.iter()
                .filter_map(|row| row.try_get::<String, _>(0).ok())
                .collect()
        })
        .unwrap_or_default()
    }

    async fn tables_locked_by(&self) -> Option<String> {
        // The lease's table too: taking or renewing the lease waits on it the same way.
        let tables = PRESENT
            .iter()
            .chain([&LOCK_TABLE])
            .map(|t| {
                format!(
                    "pg_catalog.to_regclass({})",
                    bookkeeping::lit(&self.store.words().table(t))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        // On a connection of the pool: the control connection may be in a transaction the
        // error aborted. The sessions' own words (application_name, query) are shown, not
        // trusted. Listed: a lock held but a reader's `ACCESS SHARE` (which blocks none of
        // wasmig's statements that wait), and a lock waited for (an `ALTER TABLE` queued
        // behind a reader, which wasmig's statements then queue behind), with whom it waits
        // for.
        let found: Result<Option<String>, sqlx::Error> = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT pg_catalog.string_agg(pg_catalog.concat('pid ', a.pid, ' (application_name ''',
                    a.application_name, ''', ', a.state, ', ',
                    CASE WHEN l.granted THEN 'holding ' ELSE 'waiting for ' END, l.mode, ' on ',
                    l.relation::pg_catalog.regclass,
                    CASE WHEN l.granted THEN '' ELSE pg_catalog.concat(' behind pid ',
                         pg_catalog.array_to_string(pg_catalog.pg_blocking_pids(a.pid), ', pid ')) END,
                    '): `', pg_catalog.left(pg_catalog.regexp_replace(a.query, '\\s+', ' ', 'g'), 100), '`'),
                    '; ' ORDER BY l.granted DESC, a.pid)
             FROM pg_catalog.pg_locks l
             JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
             WHERE l.locktype OPERATOR(pg_catalog.=) 'relation'
               AND (NOT l.granted OR l.mode OPERATOR(pg_catalog.<>) 'AccessShareLock')
               AND l.relation OPERATOR(pg_catalog.=) ANY (ARRAY[{tables}]::pg_catalog.oid[])
               AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
        )))
        .fetch_one(&self.pool)
        .await
        .and_then(|row| row.try_get(0));
        found.ok().flatten()
    }

    async fn close(&self) {
        // The kept connection, the first one if it was never taken, and the control
        // connection end together; the kept one without the pool's reset, which ending
        // the session makes moot.
        let kept = self.kept.lock().ok().and_then(|mut k| k.take());
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        let control = self.control.lock().await.take();
        // Bounded: a server that stopped answering must not keep wasmig from exiting
        // (closing on this side is what ends the sessions then).
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            tokio::join!(
                async {
                    if let Some(kept) = kept {
                        let _ = kept.conn.close().await;
                    }
                },
                async {
                    if let Some(first) = first
                        && let Ok(Ok(conn)) = first.await
                    {
                        let _ = conn.close().await;
                    }
                },
                async {
                    if let Some(control) = control {
                        let _ = control.close().await;
                    }
                },
            )
        })
        .await;
        if tokio::time::timeout(CLOSE_WAIT, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the database did not answer the closing of wasmig's connections within {} s; they were dropped",
                CLOSE_WAIT.as_secs()
            );
        }
    }
}

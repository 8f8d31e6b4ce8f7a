//! wasmig's database layer: PostgreSQL and SQLite behind one driver trait.
//!
//! A [`Database`] is a connection pool plus the version tables; a [`Session`] is one open
//! transaction on one pooled connection, on which a migration (SQL or guest) and its
//! version-table update run together. The runner algorithm (the `wasmig` library) is
//! written once against these traits. This crate knows nothing of wasm: values and errors
//! are the plain data types generated from the WIT (the `wasmig-contract` crate).
//!
//! Not here: the revision graph (`wasmig-plan`), the sandbox (`wasmig-sandbox`). The
//! migration lock's shared part is in `lock`; each backend takes it its own way.

pub mod capture;
pub mod catalog;
pub mod columns;
mod copy;
mod lock;
mod mysql;
mod pg_parse;
mod pg_script;
mod policy;
mod postgres;
mod records;
pub mod scratch;
pub mod snapshot;
mod sqlite;
pub mod store;
mod tx_control;
mod url;
mod value;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::lock::{
    LockGuard, PG_LOCK_KEY, PG_STEP_KEY, PG_TABLES_KEY, SQLITE_LOCK_SUFFIX, pg_lock_key,
};
pub use self::policy::{Policy, TRUSTED_EXTENSIONS};
pub use self::records::{
    Checkpoint, Expected, FailedMark, FinishedStep, HistoryEntry, PARTITION_SEED,
    PARTITIONED_CHECKPOINT, Partition, StepRecord, StoredArtifact,
};
pub use self::store::{Driver, Observed, Reader, SCHEMA_VERSION, VersionStore};
pub use self::url::DatabaseUrl;
use wasmig_contract::{Column, ColumnResult, ColumnValues, Dialect, QueryResult, SqlError, Value};
pub use wasmig_plan::graph::{Direction, Event};

/// The result of a statement or of a session operation.
pub type SqlResult<T> = Result<T, SqlError>;

/// Where an autocommitted script ([`Database::run_autocommit`]) stopped.
#[derive(Debug)]
pub struct ScriptFailure {
    /// The statement that failed, from 1; 0 when nothing ran (refused before the first
    /// statement, or no connection).
    pub statement: usize,
    /// How many statements the script has.
    pub total: usize,
    /// The error (boxed: it is large, and failure is the cold path).
    pub error: Box<SqlError>,
}

/// A column of wasmig's tables read as the typed value its text spells (a direction, an
/// event): a value wasmig never writes is a decoding error naming the column.
pub(crate) fn parsed<T>(text: String, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = String>,
{
    text.parse().map_err(|e: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    })
}

/// How many rows of a `copy-in-columns` call a backend without a column path writes at a
/// time ([`GuestSql::copy_in_columns`]).
pub const COPY_CHUNK_ROWS: usize = 10_000;

/// The savepoint around a `copy-in-columns` call written in chunks (not a name a guest's
/// savepoints take).
const COPY_SAVEPOINT: &str = "wasmig_copy_columns";

/// The most bytes of rows one call may return to a guest (`query`, a cursor's `next`, and on
/// SQLite a cursor's whole result, which the host buffers), as estimated by
/// [`result_bytes`]: rows are decoded as they arrive and the call fails with
/// `WASMIG-LIMIT` past it, so the host's memory stays bounded whatever a guest asks for.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// The host memory a decoded row takes, near enough: the bytes of its text and binary
/// values, 16 for every other value, and [`ROW_BYTES`] for the row itself (so a result of
/// rows without columns is bounded too).
pub fn result_bytes(row: &[Value]) -> usize {
    use wasmig_contract::ArrayValue as A;
    fn texts(items: &[Option<String>]) -> usize {
        items
            .iter()
            .map(|t| t.as_ref().map_or(8, |t| t.len() + 8))
            .sum()
    }
    row.iter()
        .map(|v| match v {
            Value::Numeric(t)
            | Value::Text(t)
            | Value::Json(t)
            | Value::Jsonb(t)
            | Value::Uuid(t)
            | Value::Date(t)
            | Value::Time(t)
            | Value::Timestamp(t)
            | Value::Timestamptz(t) => t.len() + 16,
            Value::Bytes(b) => b.len() + 16,
            Value::Array(a) => match a {
                A::Numeric(t)
                | A::Text(t)
                | A::Json(t)
                | A::Jsonb(t)
                | A::Uuid(t)
                | A::Date(t)
                | A::Time(t)
                | A::Timestamp(t)
                | A::Timestamptz(t) => texts(t),
                A::Bytes(b) => b
                    .iter()
                    .map(|x| x.as_ref().map_or(8, |x| x.len() + 8))
                    .sum(),
                A::Bool(x) => x.len() * 2,
                A::Int16(x) => x.len() * 4,
                A::Int32(x) => x.len() * 8,
                A::Int64(x) => x.len() * 16,
                A::Float32(x) => x.len() * 8,
                A::Float64(x) => x.len() * 16,
            },
            _ => 16,
        })
        .sum::<usize>()
        + ROW_BYTES
}

/// What [`result_bytes`] counts for a row itself, whatever it holds (its list's header).
pub const ROW_BYTES: usize = 24;

/// The error of a call whose rows passed [`MAX_RESULT_BYTES`].
pub(crate) fn result_too_big() -> SqlError {
    SqlError::wasmig(
        "LIMIT",
        format!(
            "the result is larger than the {} MiB one call may return; read it in parts with a cursor (db::cursor, fetching fewer rows at a time) or select less",
            MAX_RESULT_BYTES / (1024 * 1024)
        ),
    )
}

/// Heads stored as one comma-separated text (revision ids cannot contain a comma).
pub(crate) fn split_heads(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The statements of a script, as the backend's parser splits them (PostgreSQL's own
/// parser; SQLite's tokenizer rules).
///
/// # Errors
/// The parser's error, for a script it cannot read.
pub fn split_statements(script: &str, dialect: Dialect) -> Result<Vec<&str>, Box<SqlError>> {
    tx_control::statements(script, dialect).map_err(Box::new)
}

/// Refuses a script as a step would before running any of it: transaction control, a
/// change to how the server reads SQL, a `COPY` to or from the client, and what `policy`
/// refuses (`WASMIG-STATE`, `WASMIG-POLICY`), naming the statement.
///
/// # Errors
/// The refusal, or the parser's error for a script it cannot read.
pub fn check_script(script: &str, dialect: Dialect, policy: &Policy) -> Result<(), Box<SqlError>> {
    tx_control::check(script, dialect, policy).map_err(Box::new)
}

/// Whether every statement of `script` only reads or writes rows (PostgreSQL's parser:
/// `SELECT` without `INTO`, `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `VALUES`, `SET` and
/// `LOCK`), so it runs in one transaction even under `execution = "per-statement"`;
/// `false` for a script with anything else in it (DDL, `DO`, `CALL`…) or that the parser
/// cannot read. SQLite: always `true` (its DDL is transactional).
pub fn only_data(script: &str, dialect: Dialect) -> bool {
    match dialect {
        Dialect::Postgres => pg_parse::only_data(script),
        Dialect::Sqlite => true,
        Dialect::Mysql => mysql::lex::only_data(script),
    }
}

/// Whether a server that speaks PostgreSQL's protocol names itself another engine in
/// `version()` (CockroachDB, YugabyteDB): its advisory locks are stubs or may be turned off
/// (`lock = "auto"` takes the lease), and its DDL is not atomic in a transaction
/// (`execution = "auto"` runs DDL statement by statement).
pub fn not_postgres(version: &str) -> bool {
    NOT_POSTGRES_ENGINES.iter().any(|e| version.contains(e))
}

/// How those engines name themselves in `version()`.
const NOT_POSTGRES_ENGINES: [&str; 3] = ["CockroachDB", "YugabyteDB", "-YB-"];

/// Splits a `transaction = "none"` script and refuses transaction control in it (and what
/// `policy` refuses) before anything runs.
pub(crate) fn autocommit_statements<'a>(
    script: &'a str,
    dialect: Dialect,
    policy: &Policy,
) -> Result<Vec<&'a str>, ScriptFailure> {
    let failure = |total, error| ScriptFailure {
        statement: 0,
        total,
        error: Box::new(error),
    };
    let statements = tx_control::statements(script, dialect).map_err(|e| failure(0, e))?;
    tx_control::check_autocommit(script, dialect, policy)
        .map_err(|e| failure(statements.len(), e))?;
    Ok(statements)
}

/// Whether a statement of a PostgreSQL `script` builds an index concurrently, which leaves
/// an invalid index behind when it fails (see [`Database::invalid_indexes`]).
pub fn builds_index_concurrently(script: &str) -> bool {
    tx_control::statements(script, Dialect::Postgres).is_ok_and(|statements| {
        statements
            .into_iter()
            .any(pg_parse::builds_index_concurrently)
    })
}

/// A pooled database with wasmig's version tables.
///
/// A backend provides the connections ([`Database::reader`], [`Database::begin`]), the
/// lock and the autocommitted scripts; reading and creating wasmig's tables is written once,
/// in the [`VersionStore`] the backend hands out with [`Database::store`].
///
/// # Errors
/// Methods fail with `anyhow` errors carrying a [`DbError`] when the database cannot be
/// reached or the version tables cannot be read or written.
#[async_trait]
pub trait Database: Send + Sync {
    /// PostgreSQL or SQLite.
    fn dialect(&self) -> Dialect;

    /// wasmig's tables on this database, as read outside any step.
    fn store(&self) -> &VersionStore;

    /// A connection to read wasmig's tables on outside any step (PostgreSQL: the control
    /// connection; SQLite: a pooled one).
    async fn reader(&self) -> anyhow::Result<Box<dyn Reader + '_>>;

    /// Creates the version tables if they do not exist yet, or migrates them to
    /// [`SCHEMA_VERSION`] (see `store`); then lets the backend do what it does once its
    /// tables exist ([`Database::tables_ready`]). Tables that are there are checked first
    /// ([`Database::verify_tables`]): the layout's migrations write them, and a trigger
    /// found there would run as they do.
    ///
    /// # Errors
    /// [`DbError::SchemaTooNew`] when a newer wasmig migrated them; [`TablesTampered`].
    async fn ensure_version_tables(&self) -> anyhow::Result<()> {
        self.verify_tables().await?;
        {
            let mut reader = self.reader().await?;
            self.store().ensure(reader.driver()).await?;
        }
        self.tables_ready().await
    }

    /// Called by [`Database::ensure_version_tables`] once the tables are there (PostgreSQL:
    /// their storage tuning, and their oids for the tamper check).
    async fn tables_ready(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// For a run that writes none of wasmig's tables (a dry run): learns them as they are,
    /// when they exist, for the steps' checks, as [`Database::tables_ready`] does, changing
    /// nothing (PostgreSQL: their oids, which each step's guard compares, and the writes to
    /// them the server counts as a step begins).
    async fn know_tables(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// The revisions stored as current heads (empty when at base or never migrated).
    /// Reading does not create the tables.
    async fn heads(&self) -> anyhow::Result<Vec<String>> {
        self.store().heads(self.reader().await?.driver()).await
    }

    /// The history log, oldest first. Empty when the tables do not exist.
    async fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        self.store().history(self.reader().await?.driver()).await
    }

    /// How many rows the history table has (0 when it does not exist): with the heads, what
    /// a run expects its first step to find ([`Expected`]).
    async fn history_len(&self) -> anyhow::Result<i64> {
        self.store()
            .history_len(self.reader().await?.driver())
            .await
    }

    /// The artifact stored in the artifact table when `revision` was last applied, or
    /// `None` (never stored, reverted since, or no artifact table yet). Reading does not
    /// create the tables.
    async fn stored_artifact(&self, revision: &str) -> anyhow::Result<Option<StoredArtifact>> {
        self.store()
            .stored_artifact(self.reader().await?.driver(), revision)
            .await
    }

    /// The revisions marked failed (see [`FailedMark`]). Empty when the table does not
    /// exist; reading does not create it.
    async fn failed(&self) -> anyhow::Result<Vec<FailedMark>> {
        self.store().failed(self.reader().await?.driver()).await
    }

    /// The batched steps part-way through (see [`Checkpoint`]). Empty when the table does
    /// not exist; reading does not create it.
    async fn checkpoints(&self) -> anyhow::Result<Vec<Checkpoint>> {
        self.store()
            .checkpoints(self.reader().await?.driver())
            .await
    }

    /// Where the server's write-ahead log is now and how far its slowest standby has
    /// replayed it (PostgreSQL's `pg_stat_replication`), for the replication-lag throttle;
    /// `None` where there is no such thing (SQLite).
    ///
    /// # Errors
    /// When the server fails the query.
    async fn wal_positions(&self) -> anyhow::Result<Option<WalPositions>> {
        Ok(None)
    }

    /// Takes the migration lock, waiting up to `timeout` for another run to release it.
    /// The guard holds what holds the lock (PostgreSQL: wasmig's control connection,
    /// outside the pool, which never runs migration code; SQLite: an open lock file), so
    /// neither a session nor the pool can release it early. Writing commands take it before
    /// reading the heads.
    ///
    /// # Errors
    /// [`LockTimeout`] when another run still holds it after `timeout`;
    /// [`DbError`] when the database cannot be reached or the lock file cannot be opened.
    async fn lock(&self, timeout: std::time::Duration) -> anyhow::Result<Box<dyn LockGuard>>;

    /// Begins a transaction on a connection taken from the pool.
    async fn begin(&self) -> anyhow::Result<Box<dyn Session>>;

    /// Runs a script outside any transaction, one statement at a time on one pooled
    /// connection, each committed on its own (`transaction = "none"`); stops at the first
    /// failing statement. Returns how many statements ran. Every statement is checked first,
    /// under `policy` too, and a refused one fails the script before any runs.
    ///
    /// # Errors
    /// [`ScriptFailure`] naming the failed statement; the ones before it stay committed.
    /// `lock` and `statement` set PostgreSQL's `lock_timeout` and `statement_timeout` on
    /// that connection first (reset when it goes back to the pool); SQLite has neither.
    async fn run_autocommit(
        &self,
        script: &str,
        policy: &Policy,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> Result<usize, ScriptFailure>;

    /// The server's `version()` (PostgreSQL; `None` on SQLite), to tell PostgreSQL from
    /// engines that speak its protocol.
    ///
    /// # Errors
    /// [`DbError`] when the server cannot be asked.
    async fn server_version(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }

    /// Refuses with [`TablesTampered`] when wasmig's tables are not the plain tables it
    /// created (a view in the place of one, a trigger, a rule, row-level security): their
    /// reads could lie. Run before planning; nothing to check when there are no tables.
    async fn verify_tables(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Makes every step committed so far durable: after [`Session::commit_lazily`], the
    /// commits of a run's earlier steps wait for a later commit to write the server's log
    /// to disk; a run that ends without one (a step failed and was rolled back, or the last
    /// step was not a transaction of its own) calls this before it reports. PostgreSQL only;
    /// nothing to do elsewhere.
    ///
    /// # Errors
    /// When the server did not confirm the write.
    async fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// After a run committed, and its heads were read back: checks that wasmig's history
    /// and stored artifacts hold nothing written during the run but what its steps'
    /// records wrote (PostgreSQL, where a deferred trigger can write them at a step's
    /// `COMMIT`, after every check; see `postgres::run_writes`). Forgets what the run
    /// wrote. Nothing to do elsewhere.
    ///
    /// # Errors
    /// [`TamperedAfterCommit`] naming what was found; [`ReadBackUnanswered`] when the
    /// server did not answer in time.
    async fn verify_run_writes(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Forgets what earlier runs on this object wrote, as a run begins (a run that failed
    /// before [`Database::verify_run_writes`] leaves it).
    fn forget_run_writes(&self) {}

    /// The indexes the server holds as invalid (`pg_index.indisvalid` false: what a failed
    /// `CREATE INDEX CONCURRENTLY` leaves), qualified as `regclass` shows them; empty where
    /// the backend has none, or when they cannot be read (the caller only reports them).
    async fn invalid_indexes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Who holds a lock on wasmig's tables that this connection's session waits for or
    /// gave up waiting for (`pid N (application) running …`, `; `-separated), for the
    /// error of a statement of wasmig's that ran out of [`LockSettings::wait`]; `None`
    /// where nobody does, or the backend cannot tell.
    async fn tables_locked_by(&self) -> Option<String> {
        None
    }

    /// Closes the pool.
    async fn close(&self);
}

/// Stops a statement that is running on a session's connection, from another task.
///
/// PostgreSQL cancels through `pg_cancel_backend` on a second connection; SQLite interrupts
/// through a progress handler. Cancelling when nothing runs is harmless.
#[async_trait]
pub trait Canceller: Send + Sync {
    /// Asks the database to stop the statement in flight.
    async fn cancel(&self);

    /// The last resort when cancelling did not stop the statement: ends the session's
    /// connection (`pg_terminate_backend` on PostgreSQL; on SQLite, where the interrupt
    /// cannot be lost, the same as [`Canceller::cancel`]). The transaction is lost with it.
    async fn terminate(&self) {
        self.cancel().await;
    }
}

/// A server-side (PostgreSQL) or host-buffered (SQLite) cursor opened by a session.
#[derive(Debug)]
pub struct CursorState {
    /// The columns of the result.
    pub columns: Vec<Column>,
    /// The cursor's name on PostgreSQL.
    pub(crate) name: Option<String>,
    /// Rows not yet handed out, on SQLite.
    pub(crate) buffered: std::collections::VecDeque<Vec<Value>>,
    /// Set once the result is exhausted or the cursor closed.
    pub(crate) done: bool,
}

impl CursorState {
    /// A cursor over a result the host holds whole (SQLite, MySQL: their cursors would not
    /// survive the statements a guest runs between two fetches), handed out in chunks.
    pub(crate) fn buffered(result: QueryResult) -> Self {
        CursorState {
            columns: result.columns,
            name: None,
            buffered: result.rows.into(),
            done: false,
        }
    }

    /// The next rows of a [`CursorState::buffered`] cursor, at most `max_rows` (at least 1).
    pub(crate) fn take_buffered(&mut self, max_rows: u32) -> Vec<Vec<Value>> {
        let n = (max_rows.max(1) as usize).min(self.buffered.len());
        let chunk: Vec<_> = self.buffered.drain(..n).collect();
        if self.buffered.is_empty() {
            self.done = true;
        }
        chunk
    }

    /// Closes a [`CursorState::buffered`] cursor, dropping the rows it still held.
    pub(crate) fn close_buffered(&mut self) {
        self.buffered = std::collections::VecDeque::new();
        self.done = true;
    }

    /// A cursor with nothing left: a placeholder while the real one is borrowed.
    pub fn finished() -> Self {
        CursorState {
            columns: Vec::new(),
            name: None,
            buffered: Default::default(),
            done: true,
        }
    }

    /// Whether the result is exhausted or the cursor closed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Marks the cursor closed (its savepoint's rollback destroyed it on the server).
    pub fn mark_done(&mut self) {
        self.done = true;
    }
}

/// The SQL a migration sends, on one open transaction: what the sandbox's host calls
/// translate onto (and what an SQL revision's script runs through).
///
/// The statements (`execute`, `query`, `batch`, `execute_many`, `open_cursor`) may not end
/// the transaction: transaction control (`COMMIT`, `ROLLBACK`, `BEGIN`, raw `SAVEPOINT`…)
/// is refused with `WASMIG-STATE` before anything runs (see `tx_control`), and
/// [`Session::transaction_intact`] catches whatever slips through.
#[async_trait]
pub trait GuestSql: Send {
    /// PostgreSQL or SQLite.
    fn dialect(&self) -> Dialect;

    /// A handle that can cancel the statement in flight on this session's connection.
    fn canceller(&self) -> Arc<dyn Canceller>;

    /// Holds every statement sent from now on (`execute`, `query`, `batch`,
    /// `execute_many`, `open_cursor`) to `policy`, checked before it reaches the database:
    /// [`Policy::UNTRUSTED`] refuses what the untrusted SQL policy refuses with
    /// `WASMIG-POLICY`. A session begins [`Policy::TRUSTED`]; the runner sets the policy of
    /// every session a migration's SQL runs in.
    fn set_policy(&mut self, policy: Policy);

    /// After a call failed, brings the connection back in step with the server before the
    /// next call: what is left of the failed call's response is read and dropped here, so
    /// that nothing in it (on PostgreSQL, the error the relay put in place of a message over
    /// its limit, when the driver had already given up on that response) is taken for the
    /// next call's answer. Best effort: a connection that cannot settle fails its next call.
    async fn settle(&mut self) {}

    /// Runs one statement; returns rows affected.
    async fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64>;

    /// Runs one statement; returns its whole result.
    async fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<QueryResult>;

    /// Runs a parameterless multi-statement script.
    async fn batch(&mut self, script: &str) -> SqlResult<()>;

    /// Runs a script as [`GuestSql::batch`] does, and returns the rows each statement
    /// affected, in order, as the server reported them (for the journal; empty when the
    /// backend cannot tell: SQLite's count after a statement that writes no row is the
    /// previous statement's).
    async fn batch_counted(&mut self, script: &str) -> SqlResult<Vec<u64>> {
        self.batch(script).await.map(|()| Vec::new())
    }

    /// Runs one statement once per parameter row; returns the total rows affected.
    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> SqlResult<u64>;

    /// Writes rows into `table` (optionally `schema.table`), one value per column of
    /// `columns`: `COPY ... FROM STDIN` on PostgreSQL, multi-row `INSERT` on SQLite. Returns
    /// the rows written. Names are quoted, never interpolated (see `copy`).
    async fn copy_in(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
    ) -> SqlResult<u64>;

    /// Runs one statement; returns its whole result column by column (`query-columns`):
    /// [`columns::from_rows`] of [`GuestSql::query`], unless the backend decodes straight
    /// into columns (PostgreSQL).
    async fn query_columns(&mut self, sql: &str, params: &[Value]) -> SqlResult<ColumnResult> {
        columns::from_rows(self.query(sql, params).await?)
    }

    /// Runs one statement whose parameters are a guest's columns, each bound as one array
    /// (`execute-columns`), after [`columns::check`]: as [`GuestSql::execute`] with array
    /// values, unless the backend binds straight from columns (PostgreSQL). A backend
    /// without arrays refuses them as it refuses array values.
    async fn execute_columns(&mut self, sql: &str, values: &[ColumnValues]) -> SqlResult<u64> {
        let arrays = columns::into_arrays("execute-columns", values)?;
        self.execute(sql, &arrays).await
    }

    /// Writes a guest's columns into `table` as [`GuestSql::copy_in`] writes rows
    /// (`copy-in-columns`), after [`columns::check`]: through rows, unless the backend
    /// encodes straight from columns (PostgreSQL). [`COPY_CHUNK_ROWS`] rows at a time, so
    /// that the host never holds a whole call as rows (4M values took SQLite's host to
    /// 679 MB), in a savepoint rolled back if a chunk fails: all or nothing, as one
    /// `copy_in`.
    async fn copy_in_columns(
        &mut self,
        table: &str,
        columns: &[String],
        values: &[ColumnValues],
    ) -> SqlResult<u64> {
        let rows = columns::check("copy-in-columns", values)?;
        if rows <= COPY_CHUNK_ROWS {
            return self
                .copy_in(table, columns, &columns::rows_between(values, 0..rows))
                .await;
        }
        self.savepoint(COPY_SAVEPOINT).await?;
        let mut total = 0;
        for start in (0..rows).step_by(COPY_CHUNK_ROWS) {
            let chunk = columns::rows_between(values, start..rows.min(start + COPY_CHUNK_ROWS));
            match self.copy_in(table, columns, &chunk).await {
                Ok(n) => total += n,
                Err(e) => {
                    let _ = self.rollback_to_savepoint(COPY_SAVEPOINT).await;
                    return Err(e);
                }
            }
        }
        self.release_savepoint(COPY_SAVEPOINT).await?;
        Ok(total)
    }

    /// Opens a cursor over a query.
    async fn open_cursor(&mut self, sql: &str, params: &[Value]) -> SqlResult<CursorState>;

    /// Fetches up to `max_rows` further rows; empty when exhausted.
    async fn fetch(
        &mut self,
        cursor: &mut CursorState,
        max_rows: u32,
    ) -> SqlResult<Vec<Vec<Value>>>;

    /// Closes a cursor (idempotent).
    async fn close_cursor(&mut self, cursor: &mut CursorState) -> SqlResult<()>;

    /// `SAVEPOINT name`.
    async fn savepoint(&mut self, name: &str) -> SqlResult<()>;

    /// `RELEASE SAVEPOINT name`.
    async fn release_savepoint(&mut self, name: &str) -> SqlResult<()>;

    /// `ROLLBACK TO SAVEPOINT name` followed by `RELEASE SAVEPOINT name`.
    async fn rollback_to_savepoint(&mut self, name: &str) -> SqlResult<()>;
}

/// An open transaction on one connection: the migration's SQL ([`GuestSql`]) and wasmig's
/// bookkeeping of the step, committed together.
///
/// Dropping a session without [`Session::commit`] rolls it back (sqlx returns the
/// connection to the pool after issuing `ROLLBACK`).
///
/// A backend provides the transaction (its check, the timeouts, commit and rollback), the
/// connection the [`VersionStore`] writes on ([`Session::books`]) and the guard that runs
/// before wasmig writes ([`Session::guard`]); the writes themselves are written once, in
/// the store.
#[async_trait]
pub trait Session: GuestSql {
    /// Whether the transaction begun by [`Database::begin`] is still the one open on the
    /// connection: `false` when a statement committed or rolled it back (and perhaps began
    /// another). PostgreSQL compares the transaction id read at `begin`; SQLite watches the
    /// connection's commit and rollback hooks and its autocommit state.
    ///
    /// # Errors
    /// When the check itself cannot run (the connection failed).
    async fn transaction_intact(&mut self) -> anyhow::Result<bool>;

    /// Whether the server already said, without being asked, that the transaction begun by
    /// [`Database::begin`] is over: checked after every call of a guest, at no cost, so a
    /// statement that ended it stops the guest there, before anything it runs next is
    /// committed on its own. PostgreSQL reads what the relay saw: the last `ReadyForQuery`
    /// status idle, or a statement that completed as transaction control (`COMMIT`,
    /// `BEGIN`, `ROLLBACK AND CHAIN`…) other than wasmig's own. SQLite reads its commit and
    /// rollback hooks. [`Session::transaction_intact`] remains the check before recording.
    fn transaction_ended(&self) -> bool;

    /// What the backend read in the message that began the transaction, when it read it
    /// there at no extra round trip (PostgreSQL, once wasmig's tables exist): the heads as
    /// the transaction's first statement saw them, and whether the run still held the
    /// migration lock then. The runner checks the previous step's commit with it instead of
    /// reading the heads again ([`Begun`]). `None`: read them the usual way.
    fn begun(&self) -> Option<&Begun> {
        None
    }

    /// Runs a SQL revision's script as [`GuestSql::batch`] does, when the runner sends
    /// nothing else before it records the step ([`Session::finish_step`]). PostgreSQL sends
    /// what its record needs first in the same message, after the script (wasmig's own
    /// limits, the record's savepoint, the server's word on the statements prepared on the
    /// session): one round trip less a step. Any other statement sent before the record
    /// makes the record ask again.
    async fn batch_then_record(&mut self, script: &str) -> SqlResult<()> {
        self.batch(script).await
    }

    /// Sets PostgreSQL's `lock_timeout` / `statement_timeout` for the rest of this
    /// transaction (`None`: the server's setting). SQLite has neither: the runner refuses
    /// them there before any step runs.
    async fn set_timeouts(
        &mut self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> anyhow::Result<()>;

    /// Returns the session, inside its transaction, to the state wasmig defines, between two
    /// steps of an `--atomic` run (steps of their own get a fresh connection from the pool,
    /// which resets it): settings, the role, cursors, listeners and session-level advisory
    /// locks a step left. Temporary tables cannot be reset inside the transaction without
    /// losing what the step meant by them, so a step that leaves one fails with
    /// `WASMIG-STATE`, naming them.
    async fn reset_session(&mut self) -> SqlResult<()>;

    /// Drops the temporary objects the step left, as the reset between two steps of their
    /// own transactions does: for a dry run of such steps, which runs them in one
    /// transaction (PostgreSQL's `DISCARD TEMP`, after `CLOSE ALL`). Nothing where that
    /// reset keeps them: a dry run then refuses them as `--atomic` does.
    async fn discard_temp(&mut self) -> SqlResult<()> {
        Ok(())
    }

    /// The store and the connection wasmig's writes of this step go through.
    fn books(&mut self) -> (&VersionStore, &mut dyn Driver);

    /// Runs before wasmig writes its tables in this transaction. With `intact`, first checks
    /// the transaction as [`Session::transaction_intact`] does and returns `Ok(false)`,
    /// having written nothing, when a statement ended it. PostgreSQL also checks here that
    /// this run still holds the migration lock ([`LockLost`]) and that wasmig's tables are
    /// the plain tables it made ([`TablesTampered`]), all in one round trip.
    ///
    /// # Errors
    /// [`LockLost`], [`TablesTampered`], or when the check cannot run.
    async fn guard(&mut self, doing: &str, intact: bool) -> anyhow::Result<bool> {
        let _ = doing;
        if intact {
            return self.transaction_intact().await;
        }
        Ok(true)
    }

    /// Records one step in the version tables, in this transaction: replaces `remove` by
    /// `add` among the heads and appends a history row.
    async fn record_step(&mut self, step: &StepRecord<'_>) -> anyhow::Result<()> {
        self.guard(&format!("recording {}", step.revision), false)
            .await?;
        let (store, d) = self.books();
        store.record_step(d, step).await
    }

    /// Finishes a step in this transaction, if it is still the one begun: checks it as
    /// [`Session::transaction_intact`] does and, when intact, writes what
    /// [`Session::record_step`], [`Session::store_artifact`] or
    /// [`Session::forget_artifact`], and [`Session::clear_checkpoint`] write. `Ok(false)`,
    /// with nothing written, when a statement ended the transaction.
    ///
    /// # Errors
    /// When the check or a write fails.
    async fn finish_step(&mut self, finished: &FinishedStep<'_>) -> anyhow::Result<bool> {
        guard_then_finish(self, finished).await
    }

    /// Marks a revision failed, in this transaction (replacing an earlier mark).
    async fn set_failed(&mut self, mark: &FailedMark) -> anyhow::Result<()> {
        self.guard(&format!("marking {} failed", mark.revision), false)
            .await?;
        let (store, d) = self.books();
        store.set_failed(d, mark).await
    }

    /// Clears a revision's failed mark, in this transaction.
    async fn clear_failed(&mut self, revision: &str) -> anyhow::Result<()> {
        self.guard(&format!("clearing the failed mark of {revision}"), false)
            .await?;
        let (store, d) = self.books();
        store.clear_failed(d, revision).await
    }

    /// Saves (or replaces) a batched step's checkpoint, in this transaction: the runner
    /// calls it with the work of every batch but the last.
    async fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        self.guard(
            &format!("saving the checkpoint of {}", checkpoint.revision),
            false,
        )
        .await?;
        let (store, d) = self.books();
        store.save_checkpoint(d, checkpoint).await
    }

    /// Deletes a revision's checkpoint, in this transaction: with the last batch's work and
    /// the step's record, or by `wasmig resolve`.
    async fn clear_checkpoint(&mut self, revision: &str) -> anyhow::Result<()> {
        self.guard(&format!("deleting the checkpoint of {revision}"), false)
            .await?;
        let (store, d) = self.books();
        store.clear_checkpoint(d, revision).await?;
        // A step that ran in partitions: theirs too.
        store.clear_partitions(d, revision).await
    }

    /// Stores (or replaces) a revision's artifact in the artifact table, in this transaction:
    /// the runner calls it with the version-table update of every upgrade.
    async fn store_artifact(&mut self, artifact: &StoredArtifact) -> anyhow::Result<()> {
        self.guard(
            &format!("storing the artifact of {}", artifact.revision),
            false,
        )
        .await?;
        let (store, d) = self.books();
        store.store_artifact(d, artifact).await
    }

    /// Deletes a revision's stored artifact, in this transaction: the runner calls it with
    /// the version-table update of every downgrade.
    async fn forget_artifact(&mut self, revision: &str) -> anyhow::Result<()> {
        self.guard(
            &format!("deleting the stored artifact of {revision}"),
            false,
        )
        .await?;
        let (store, d) = self.books();
        store.forget_artifact(d, revision).await
    }

    /// Deletes the stored artifact of every revision not in `keep`, in this transaction:
    /// `stamp` calls it with the revisions applied after it, so the table never holds a
    /// revision the version table no longer counts as applied (including ones a `--purge`
    /// dropped that this project does not know).
    async fn forget_artifacts_except(&mut self, keep: &[String]) -> anyhow::Result<()> {
        self.guard("deleting stored artifacts of unapplied revisions", false)
            .await?;
        let (store, d) = self.books();
        store.forget_artifacts_except(d, keep).await
    }

    /// Lets [`Session::commit`] return before the server has written the commit to disk
    /// (PostgreSQL's `synchronous_commit = off` for this transaction; nothing elsewhere). For
    /// a step that another step of the same run follows: the commits of a database reach
    /// its disk in order, so the next step's commit, or [`Database::flush`] when the run
    /// ends without one, makes this one durable too. A crash of the server in between
    /// loses the step and its record together (the database stays consistent with its
    /// version table); it never loses a step wasmig reported once the run ended.
    fn commit_lazily(&mut self) {}

    /// Says that the run's next use of the database, once this transaction commits, is
    /// [`Database::begin`] for its next step, with nothing in between. A backend may then
    /// begin that transaction in the message that commits this one, and save the next step
    /// a round trip (PostgreSQL, see its `commit_and_reset`); nothing elsewhere. The next
    /// `begin` takes the transaction begun that way only if it would have begun it with the
    /// same statement (else it closes that connection); [`Database::flush`] undoes it, and
    /// [`Database::close`] ends it with the connection. Its `now()` is the time the
    /// commit's message reached the server (PostgreSQL dates every transaction a message
    /// begins from the message), not the time the step began.
    fn begin_next_in_commit(&mut self) {}

    /// Checks now what the transaction's `COMMIT` would check and fire: deferred
    /// constraints and constraint triggers (PostgreSQL's `SET CONSTRAINTS ALL IMMEDIATE`;
    /// nothing on SQLite, whose deferred foreign keys wasmig does not use). For a dry run,
    /// which never commits.
    async fn check_deferred(&mut self) -> SqlResult<()> {
        Ok(())
    }

    /// What the server counts of this transaction so far: rows written per table and table
    /// locks held (PostgreSQL), rows changed (SQLite). For `up --dry-run`.
    async fn observe(&mut self) -> anyhow::Result<Observed> {
        let (store, driver) = self.books();
        store.observe(driver).await
    }

    /// Commits the transaction.
    async fn commit(self: Box<Self>) -> anyhow::Result<()>;

    /// Rolls the transaction back.
    async fn rollback(self: Box<Self>) -> anyhow::Result<()>;
}

/// [`Session::finish_step`] as two round trips: the guard, then the store's writes. A
/// backend that records a step in one statement takes this way where it cannot.
///
/// # Errors
/// When the guard or a write fails.
pub(crate) async fn guard_then_finish<S: Session + ?Sized>(
    session: &mut S,
    finished: &FinishedStep<'_>,
) -> anyhow::Result<bool> {
    let doing = format!("recording {}", finished.record.revision);
    if !session.guard(&doing, true).await? {
        return Ok(false);
    }
    let (store, d) = session.books();
    store.finish_step(d, finished).await?;
    Ok(true)
}

/// What a session read as it began ([`Session::begun`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begun {
    /// The heads, sorted.
    pub heads: Vec<String>,
    /// Whether the session that took the migration lock still held it.
    pub lock_held: bool,
    /// The rows of the history table.
    pub history: i64,
}

/// A statement of wasmig's own outside a step (creating, checking or reading its tables)
/// gave up waiting for a lock another session held on them, after `--lock-timeout`
/// (PostgreSQL's `lock_timeout` on the control connection): `LOCK wasmig_history IN ACCESS
/// EXCLUSIVE MODE` in an open transaction, say. Before, such a run waited as long as that
/// session kept its lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another session holds a lock on wasmig's tables on {database}: {holder}; gave up after {} s (--lock-timeout): end or wait for that session's transaction, then run again",
    .waited.as_secs()
)]
pub struct TablesLocked {
    /// The database, its URL without the password.
    pub database: String,
    /// Who holds a lock on them, as far as the database can tell.
    pub holder: String,
    /// How long the statement waited.
    pub waited: std::time::Duration,
    /// The statement's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Another run held the migration lock for longer than `--lock-timeout`.
#[derive(Debug, thiserror::Error)]
#[error(
    "another run holds the migration lock on {database}: {holder}; gave up after {} s",
    .waited.as_secs()
)]
pub struct LockTimeout {
    /// The database, its URL without the password.
    pub database: String,
    /// Who holds the lock, as far as the database can tell.
    pub holder: String,
    /// How long this run waited.
    pub waited: std::time::Duration,
}

/// The migration lock was taken from this run while it ran: the session holding it ended
/// (a migration can end any session its role may signal) or released it. The step that
/// found out recorded nothing and was rolled back, since another run may hold the lock now.
#[derive(Debug, thiserror::Error)]
#[error(
    "the migration lock was lost during the run (the session holding it ended or released it): this step recorded nothing and was rolled back, and another run may be at work"
)]
pub struct LockLost;

/// The server refused a step's `COMMIT` with an error of the migration's making (a deferred
/// constraint it violated, a constraint trigger it created that raised): the transaction
/// rolled back. A migration failure (exit 6), not the database's.
#[derive(Debug, thiserror::Error)]
#[error("the server refused the COMMIT: {}", .0.describe())]
pub struct CommitRefused(pub Box<SqlError>);

/// The migration lock was found gone when the run released it: its session ended (a
/// migration can end any session its role may signal) after the last step checked it.
/// Each step committed while its check passed, and a run that took the lock since waited
/// for those steps to end (see [`PG_STEP_KEY`]) before it planned, so what is recorded is
/// what ran; but another run may be at work now.
#[derive(Debug, thiserror::Error)]
#[error(
    "the migration lock was lost before this run released it (the session holding it ended): the steps reported were recorded, and another run may be at work now"
)]
pub struct LockLostAfter;

/// After a step or a run committed, the server did not answer wasmig's read-back of the
/// version table in time (a lock on it, held from another session, or a server that
/// stopped answering). The steps are committed; what the table holds is not confirmed, and
/// whatever held the read back could have changed it, so this is never taken for a match.
#[derive(Debug, thiserror::Error)]
#[error(
    "after {what} committed, the server did not answer wasmig's read-back of wasmig_version within {} s (a lock on it, or a server that stopped answering): the steps reported were committed, but that the table shows what they recorded is not confirmed",
    .waited.as_secs()
)]
pub struct ReadBackUnanswered {
    /// What committed: "step a1", "the run".
    pub what: String,
    /// How long the read-back waited.
    pub waited: std::time::Duration,
}

/// A step's own SQL wrote wasmig's rows (a head inserted, deleted or renamed, history
/// forged or erased): found in the step's transaction before its record was written, so
/// the step was rolled back with what it wrote (see [`Expected`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "the SQL of {revision} wrote wasmig's own tables: {found}; the step was rolled back with it, nothing was recorded"
)]
pub struct RowsWritten {
    /// The revision whose step wrote them.
    pub revision: String,
    /// What the tables held against what the run expected.
    pub found: String,
}

/// wasmig's tables are not the plain tables wasmig created: something put a view in the
/// place of one, or attached a trigger, a rule or row-level security (a migration can, with
/// the role's rights). Found before a run, or in a step's own transaction before it
/// recorded anything (the step was rolled back).
#[derive(Debug, thiserror::Error)]
#[error("wasmig's tables were changed by something other than wasmig: {0}; nothing was recorded")]
pub struct TablesTampered(pub String);

/// The migration's SQL left the role it runs as (`role` in `wasmig.toml`) where no parser
/// saw it (SQL built at run time in a trusted project): the server's word at wasmig's check
/// (the guard of a step's transaction, or the check after each statement of a script
/// without one). The message says which role and what runs now.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RoleLeft(pub String);

/// wasmig's tables, read back after steps committed, hold what wasmig did not write (the
/// heads, history rows, stored artifacts) or were rewritten: something wrote them at or
/// after a step's `COMMIT` (a deferred trigger of a migration's table), or beside the run.
/// The steps stay committed; the message says what differs.
#[derive(Debug, thiserror::Error)]
#[error("wasmig's tables were changed by something other than wasmig: {0}")]
pub struct TamperedAfterCommit(pub String);

/// A step's own SQL wrote rows of wasmig's tables that only wasmig writes, and only after
/// its check (PostgreSQL's count of the transaction's writes moved): the step was rolled
/// back with them. [`RowsWritten`] where the revision is known to the caller; this one is
/// found by the server, in the step's transaction.
#[derive(Debug, thiserror::Error)]
#[error(
    "the step's SQL wrote wasmig's own tables: {0}; the step was rolled back with it, nothing was recorded"
)]
pub struct OwnRowsWritten(pub String);

/// Errors of the database layer that callers branch on (exit code 5).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is malformed or names an unsupported scheme.
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The database could not be reached or refused the connection.
    #[error(
        "cannot connect to {url}: {source}; check that the server is running and the URL is right"
    )]
    Connect {
        /// The URL with any password redacted.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The SQLite lock file could not be opened or locked.
    #[error("cannot use the lock file {}: {source}; check that its directory is writable", .path.display())]
    LockFile {
        /// The lock file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// wasmig's tables were migrated by a newer wasmig, to a layout this one does not know.
    #[error(
        "wasmig's tables are at schema version {found}, newer than this wasmig knows ({known}): run the newer wasmig that migrated them (or a later one)"
    )]
    SchemaTooNew {
        /// The version recorded in the database.
        found: i64,
        /// The newest version this wasmig knows.
        known: i64,
    },
    /// A query on the version tables or the transaction itself failed.
    #[error("database error while {doing}: {}", shown_cause(source))]
    Query {
        /// What wasmig was doing.
        doing: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// An error as a message shows it: sqlx's error from PostgreSQL without the line of the
/// server's C source its `Display` appends (" at line 3312", which names no line of the
/// migration's), any other as its `Display` says.
pub fn shown_cause(cause: &(dyn std::error::Error + 'static)) -> String {
    // sqlx's error from the server, as its own source (a boxed trait object).
    if let Some(e) = cause
        .downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .or_else(|| {
            cause
                .downcast_ref::<Box<dyn sqlx::error::DatabaseError>>()
                .and_then(|e| e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
        })
    {
        return e.message().to_owned();
    }
    match cause.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(e))
            if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some() =>
        {
            format!("error returned from database: {}", e.message())
        }
        _ => cause.to_string(),
    }
}

/// The messages of `e` and of each of its causes, as [`shown_cause`] shows them, leaving
/// out a cause whose message one shown before holds already (an error that shows its source
/// in its own message, as [`DbError::Query`] does).
pub fn shown_causes(e: &anyhow::Error) -> Vec<String> {
    let mut shown: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = shown_cause(cause);
        if shown.iter().any(|s| s.contains(&text)) {
            continue;
        }
        shown.push(text);
    }
    shown
}

/// The WIT error for a driver error that did not come from the server: `WASMIG-DECODE` for
/// a value sqlx could not read, `WASMIG-BIND` for one it could not encode, and `WASMIG-IO`
/// for everything else (I/O, TLS, a protocol error, the pool, the SQLite worker). Only
/// `WASMIG-IO` is blamed on the host, so a guest handling a decoding error in a savepoint is
/// not reported as a lost connection.
pub(crate) fn client_error(err: sqlx::Error) -> SqlError {
    match &err {
        sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => SqlError::wasmig("DECODE", err.to_string()),
        sqlx::Error::Encode(_) => SqlError::wasmig("BIND", err.to_string()),
        _ => SqlError::wasmig("IO", err.to_string()),
    }
}

impl DbError {
    /// The migration's error in wasmig's own statement, when the server refused it for a
    /// state the migration left its transaction in: `SET LOCAL transaction_read_only = on`
    /// (or `set_config`), after which no statement of the transaction may write, wasmig's
    /// record included (SQLSTATE 25006). A migration failure (exit 6), not the database's.
    pub fn left_by_migration(&self) -> Option<SqlError> {
        let DbError::Query { doing, source } = self else {
            return None;
        };
        let sqlx::Error::Database(e) = source else {
            return None;
        };
        if e.code().as_deref() != Some("25006") || ended_by_server(source) {
            return None;
        }
        Some(left_read_only(&format!(
            "wasmig could not write its record while {doing}: {}",
            e.message()
        )))
    }

    /// The SQLSTATE the server gave a query of wasmig's own that it refused (55P03: it gave
    /// up waiting for a lock; 42703: a column is gone...).
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DbError::Query {
                source: sqlx::Error::Database(e),
                ..
            } => e.code().map(|c| c.into_owned()),
            _ => None,
        }
    }

    /// Whether the server refused a query of wasmig's own because it gave up waiting for a
    /// lock another session holds (PostgreSQL's SQLSTATE 55P03 after `lock_timeout`;
    /// MySQL's error 1205 after `lock_wait_timeout` or `innodb_lock_wait_timeout`).
    pub fn gave_up_waiting_for_a_lock(&self) -> bool {
        match self {
            DbError::Query {
                source: sqlx::Error::Database(e),
                ..
            } => {
                e.code().as_deref() == Some("55P03")
                    || e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                        .is_some_and(|m| m.number() == 1205)
            }
            _ => false,
        }
    }

    /// Whether the connection the query ran on failed (ended by the server or another
    /// session, or broken), rather than the query.
    pub fn connection_lost(&self) -> bool {
        match self {
            DbError::Query { source, .. } => ended_by_server(source),
            _ => false,
        }
    }
}

/// The migration's failure for a transaction it left read-only (`transaction_read_only`),
/// which no later statement of the step may write in (SQLSTATE 25006): `what` says what
/// could not be done.
pub(crate) fn left_read_only(what: &str) -> SqlError {
    SqlError {
        code: "25006".into(),
        message: format!(
            "the migration left its transaction read-only (transaction_read_only), so {what}"
        ),
        detail: None,
        hint: Some(
            "remove the SET of transaction_read_only from the revision; to keep a step from writing, check in the migration instead".into(),
        ),
        constraint: None,
        table: None,
        column: None,
    }
}

/// Whether an error a session handed on means the connection itself failed (the host's
/// problem, not the guest's): `WASMIG-IO`, which only wasmig gives. The backends turn the
/// server ending the session into it (see [`ended_by_server`]), so the server's own code
/// is not trusted alone: a migration can raise any SQLSTATE (`RAISE ... USING ERRCODE =
/// '57P01'` in PL/pgSQL, a `dblink` or `postgres_fdw` that cannot reach its server gives
/// `08001`), and an error it raises is its own, however it is coded.
pub fn is_connection_failure(code: &str) -> bool {
    code == "WASMIG-IO"
}

/// Whether a driver error is the server ending the session, or the connection failing
/// under it. PostgreSQL says so by the error's severity: it ends a session with `FATAL`
/// (shutting down, 57P01-57P03; its timeouts, 57P05, 25P03, 25P04; `pg_terminate_backend`),
/// and no SQL raises one (PL/pgSQL's `RAISE` stops at `EXCEPTION`, an `ERROR`). A migration
/// can still end its own session, and that reads as a lost connection: a
/// `pg_terminate_backend(pg_backend_pid())`, or `exit_on_error`, which makes its next error
/// a `FATAL` (the untrusted policy refuses both). MySQL
/// has no severity: its server shutting down (error 1053) and a killed connection (1927)
/// are taken at their number and a SQLSTATE of class 08 as one, which a migration's
/// `SIGNAL` can imitate.
pub fn ended_by_server(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(e) => {
            if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return matches!(
                    pg.severity(),
                    sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                );
            }
            if let Some(my) = e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return matches!(my.number(), 1053 | 1927)
                    || my.code().is_some_and(|c| c.starts_with("08"));
            }
            false
        }
        _ => false,
    }
}

/// The error for the server ending the session: `WASMIG-IO`, the host's, with the
/// server's message, and its SQLSTATE named in the detail (see [`ended_by_server`]).
pub(crate) fn session_ended(code: &str, message: &str, detail: Option<&str>) -> SqlError {
    let mut error = SqlError::wasmig("IO", message);
    error.detail = Some(match detail {
        Some(detail) => format!("the server ended the session (SQLSTATE {code}): {detail}"),
        None => format!("the server ended the session (SQLSTATE {code})"),
    });
    error
}

/// Connects to the database the URL names. On PostgreSQL, wasmig's tables live in `schema`
/// (which must exist), whatever the sessions' `search_path`; SQLite has one (`main`). With a
/// `role` (PostgreSQL only), the migrations' SQL runs as that role (`SET LOCAL ROLE`), which
/// must exist and be one the connecting role may switch to.
///
/// # Errors
/// [`DbError::Connect`] when the server cannot be reached; [`wasmig_plan::ConfigError`]
/// naming the role when it does not exist, may not be switched to, or is set for SQLite.
pub async fn connect(
    url: &DatabaseUrl,
    schema: &str,
    role: Option<&str>,
    lock: &LockSettings,
    intent: Intent,
) -> anyhow::Result<Box<dyn Database>> {
    connect_to(url, schema, role, lock, intent, false).await
}

/// What a connection is for, so that [`connect`] opens what that needs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Reads, or work that takes no migration lock.
    Read,
    /// A run that takes the migration lock: on PostgreSQL with `lock = "auto"`, the
    /// lock's probe needs a second connection, which opens beside the first.
    Lock,
}

/// As [`connect`], for a target that is one schema of a PostgreSQL database (a fleet's
/// schema-per-tenant target): wasmig's tables live in `schema`, and so does the migrations'
/// `search_path` (only `schema`), set on every connection that runs migration SQL and
/// checked on the server before anything runs.
///
/// # Errors
/// As [`connect`]; [`wasmig_plan::ConfigError`] for a SQLite URL, and when the server (or a
/// pooler before it) did not take the `search_path`.
pub async fn connect_schema(
    url: &DatabaseUrl,
    schema: &str,
    role: Option<&str>,
    lock: &LockSettings,
    intent: Intent,
) -> anyhow::Result<Box<dyn Database>> {
    connect_to(url, schema, role, lock, intent, true).await
}

async fn connect_to(
    url: &DatabaseUrl,
    schema: &str,
    role: Option<&str>,
    lock: &LockSettings,
    intent: Intent,
    tenant_schema: bool,
) -> anyhow::Result<Box<dyn Database>> {
    if tenant_schema && matches!(url, DatabaseUrl::Mysql { .. }) {
        return Err(wasmig_plan::ConfigError::new(format!(
            "the target {url} names a schema ({schema}); on MySQL a schema is a database: name it in the URL's path instead of `schema=`"
        ))
        .into());
    }
    if tenant_schema && matches!(url, DatabaseUrl::Sqlite { .. }) {
        return Err(wasmig_plan::ConfigError::new(format!(
            "the target {url} names a schema ({schema}), but a SQLite database has one; drop `schema=` from the target, or point it at PostgreSQL"
        ))
        .into());
    }
    match url {
        DatabaseUrl::Postgres { .. } => {
            let search_path = tenant_schema.then_some(schema);
            let early = intent == Intent::Lock && lock.mode == LockMode::Auto;
            let mut db = postgres::PgDatabase::connect_waiting(url, search_path, early, Some(lock.wait))
                .await?
                .in_schema(schema.to_owned())
                .with_lock(lock.clone());
            // The role first: the schema must be one the migrations' role can use.
            let checked = match role {
                Some(role) => db.set_role(role).await,
                None => Ok(()),
            };
            let checked = match (checked, search_path) {
                (Ok(()), Some(schema)) => db.check_search_path(schema).await,
                (checked, _) => checked,
            };
            if let Err(e) = checked {
                db.close().await;
                return Err(e);
            }
            Ok(Box::new(db))
        }
        DatabaseUrl::Mysql { .. } if role.is_some() => Err(wasmig_plan::ConfigError::new(
            "role in wasmig.toml is a PostgreSQL setting (MySQL has no SET ROLE that a transaction could end); remove it, and connect to MySQL as the account the migrations should run as".to_owned(),
        )
        .into()),
        DatabaseUrl::Mysql { .. } if lock.mode == LockMode::Lease => Err(wasmig_plan::ConfigError::new(
            format!("{} asks for the lease lock, a PostgreSQL setting: MySQL's lock is a named lock (GET_LOCK); remove it", lock.source),
        )
        .into()),
        DatabaseUrl::Mysql { .. } => Ok(Box::new(
            mysql::MySqlDatabase::connect(url, lock.wait).await?,
        )),
        DatabaseUrl::Sqlite { .. } if role.is_some() => Err(wasmig_plan::ConfigError::new(
            "role in wasmig.toml is a PostgreSQL setting, and SQLite has no roles; remove it, or point the project at PostgreSQL".to_owned(),
        )
        .into()),
        DatabaseUrl::Sqlite { .. } if lock.mode == LockMode::Lease => Err(wasmig_plan::ConfigError::new(
            format!("{} asks for the lease lock, a PostgreSQL setting: SQLite's lock is a lock file beside the database; remove it, or point the project at PostgreSQL", lock.source),
        )
        .into()),
        DatabaseUrl::Sqlite { .. } => Ok(Box::new(sqlite::SqliteDatabase::connect(url).await?)),
    }
}

/// Refuses a savepoint name that is not a plain identifier (names come from the host, and
/// are written into `SAVEPOINT` statements as they are).
#[allow(clippy::result_large_err)] // the WIT error, handed to the guest as is
pub(crate) fn savepoint_name(name: &str) -> SqlResult<&str> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(name)
    } else {
        Err(SqlError::wasmig(
            "STATE",
            format!("invalid savepoint name `{name}`"),
        ))
    }
}

/// The most workers one process runs on a partitioned batched step (`up --workers`).
pub const MAX_WORKERS: u32 = 32;

/// The lease lock's table (PostgreSQL, where the lease lock is used): one row, created by
/// the first run that takes the lease.
pub const LOCK_TABLE: &str = "wasmig_lock";

/// A primary's write-ahead log position and its standbys' (byte offsets, as
/// `pg_wal_lsn_diff(lsn, '0/0')`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalPositions {
    /// `pg_current_wal_lsn()`: everything committed so far is before it.
    pub current: i64,
    /// The least `replay_lsn` of the sessions in `pg_stat_replication` (the slowest
    /// standby); `None` without any.
    pub slowest_replayed: Option<i64>,
}

/// How a PostgreSQL revision's SQL script runs (`execution` in wasmig.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Execution {
    /// Per statement where the server's DDL is not transactional (CockroachDB, YugabyteDB,
    /// read from `version()`), else in a transaction.
    #[default]
    Auto,
    /// Each step in one transaction, as its manifest's `transaction` says.
    Transaction,
    /// A script with DDL in it runs statement by statement, each committed on its own,
    /// marked failed first (as `transaction = "none"`); a script of only data statements
    /// stays in one transaction.
    PerStatement,
}

/// Which kind of migration lock a PostgreSQL database gets (`lock` in wasmig.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// The lease where advisory locks are absent or do not exclude (CockroachDB,
    /// YugabyteDB, a pooler in transaction mode: probed when the lock is taken), else the
    /// advisory lock.
    #[default]
    Auto,
    /// A session-level advisory lock on the control connection.
    Advisory,
    /// A row of `wasmig_lock` with a lease, renewed while the run holds it.
    Lease,
}

/// How a PostgreSQL database takes the migration lock.
#[derive(Debug, Clone)]
pub struct LockSettings {
    /// Which kind.
    pub mode: LockMode,
    /// How long a lease lasts unrenewed (renewed every third of it): how long a run that
    /// died or stalled keeps others waiting.
    pub lease: std::time::Duration,
    /// Where the mode was set, for the log (`lock = "lease" in wasmig.toml`).
    pub source: String,
    /// How long wasmig's own statements wait for a lock another session holds on its
    /// tables before giving up (the run's `--lock-timeout`, at least a second; PostgreSQL
    /// and MySQL).
    pub wait: std::time::Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            mode: LockMode::Auto,
            lease: std::time::Duration::from_secs(30),
            source: "the default".to_owned(),
            wait: std::time::Duration::from_secs(60),
        }
    }
}

/// The schema versions of wasmig's tables applied to this database (see `store`).
pub const SCHEMA_TABLE: &str = "wasmig_schema";
/// The names of wasmig's version tables; pinned, as their layout is.
pub const VERSION_TABLE: &str = "wasmig_version";
/// The history log table.
pub const HISTORY_TABLE: &str = "wasmig_history";
/// The revisions marked failed (see [`FailedMark`]).
pub const FAILED_TABLE: &str = "wasmig_failed";
/// The artifacts of the applied revisions (see [`StoredArtifact`]); pinned like the others.
pub const ARTIFACT_TABLE: &str = "wasmig_artifact";
/// The checkpoints of batched steps part-way through (see [`Checkpoint`]).
pub const CHECKPOINT_TABLE: &str = "wasmig_checkpoint";
/// The partitions of a partitioned batched step part-way through (see [`Partition`]):
/// each a key range with its own checkpoint, claimed by one worker at a time.
pub const PARTITION_TABLE: &str = "wasmig_partition";

#[cfg(test)]
mod tests {
    #[test]
    fn other_engines_are_told_from_postgres_by_their_version() {
        for other in [
            "CockroachDB CCL v24.1.0 (x86_64-pc-linux-gnu, built 2024/05/15, go1.22.2)",
            "PostgreSQL 11.2-YB-2.20.1.0-b0 on x86_64-pc-linux-gnu",
            "PostgreSQL 15.2-YB-2.25.0.0-b0 on x86_64-pc-linux-gnu, compiled by clang",
        ] {
            assert!(super::not_postgres(other), "{other}");
        }
        assert!(!super::not_postgres(
            "PostgreSQL 15.19 (Debian 15.19-0+deb12u1) on x86_64-pc-linux-gnu"
        ));
    }
}

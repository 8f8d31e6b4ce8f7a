//! A SQLite session: one migration's transaction (`BEGIN IMMEDIATE`) on one pooled
//! connection, and the canceller that interrupts its running statement.
//!
//! Owns: beginning the transaction and installing its progress handler and its commit
//! and rollback hooks ([`CancelState`]), the [`GuestSql`] impl (statements, `copy-in` as
//! multi-row inserts, host-buffered cursors, savepoints), the [`Session`] impl (the
//! transaction's check, commit and rollback, and the connection the version store writes
//! on), and [`SqliteCanceller`].
//!
//! Not here: binding parameters and decoding rows (`codec`), the statements on wasmig's
//! tables (`store`), the pool (`mod.rs`), or which statements a migration runs and when it
//! commits (the runner and the sandbox).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, Executor, SqlSafeStr, Sqlite, SqliteConnection, Statement, Transaction};

use super::SqliteDatabase;
use super::codec::{bind, bind_into, column, decode_row, sql_error};
use crate::store::{Driver, VersionStore};
use crate::{
    Canceller, CursorState, DbError, GuestSql, Policy, Session, SqlResult, copy, tx_control,
};
use wasmig_contract::{Dialect, QueryResult, SqlError, Value};

/// The pragmas of [`RESET_PRAGMAS`](super::RESET_PRAGMAS) that take effect inside a
/// transaction, set back between two steps of an `--atomic` run.
pub(super) const RESET_IN_TRANSACTION: &str = "PRAGMA ignore_check_constraints = OFF; \
     PRAGMA recursive_triggers = OFF; PRAGMA defer_foreign_keys = OFF; \
     PRAGMA query_only = OFF; PRAGMA writable_schema = OFF";

/// Virtual-machine instructions between two calls of the cancel check: often enough to stop
/// within microseconds, rare enough to cost nothing measurable.
const PROGRESS_OPS: i32 = 1_000;

impl SqliteDatabase {
    /// [`Database::begin`], with the concrete session type.
    ///
    /// [`Database::begin`]: crate::Database::begin
    pub(super) async fn begin_session(&self) -> anyhow::Result<SqliteSession> {
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
            store: VersionStore::new(Dialect::Sqlite, None),
            _ended: EndGuard(Arc::clone(&cancel)),
            cancel,
            policy: Policy::TRUSTED,
        })
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
    ///
    /// [`SqliteDatabase::begin`]: crate::Database::begin
    tx: Transaction<'static, Sqlite>,
    /// Shared with the progress handler installed on `tx`'s connection and the canceller.
    cancel: Arc<CancelState>,
    /// wasmig's tables, written in this transaction.
    store: VersionStore,
    /// Neutralises that progress handler when the session goes away.
    _ended: EndGuard,
    /// What the migration's statements are held to ([`GuestSql::set_policy`]).
    policy: Policy,
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

    pub(super) async fn run_script(&mut self, script: String) -> SqlResult<()> {
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
impl GuestSql for SqliteSession {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn canceller(&self) -> Arc<dyn Canceller> {
        Arc::new(SqliteCanceller(Arc::clone(&self.cancel)))
    }

    fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        self.start_call();
        tx_control::check(sql, Dialect::Sqlite, &self.policy)?;
        let args = bind(params, None)?;
        self.execute_args(sql, args).await
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<QueryResult> {
        self.start_call();
        tx_control::check(sql, Dialect::Sqlite, &self.policy)?;
        let args = bind(params, None)?;
        // Prepared first for the columns, which an empty result would not show (sqlx caches
        // the statement, so the query below does not prepare it again).
        let statement = self
            .conn()
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(sql_error)?;
        let columns = statement.columns().iter().map(column).collect::<Vec<_>>();
        // Decoded as the rows arrive, within the budget (see `MAX_RESULT_BYTES`).
        let mut stream = sqlx::query_with(AssertSqlSafe(sql), args).fetch(self.conn());
        let mut rows = Vec::new();
        let mut bytes = 0;
        while let Some(row) = stream.try_next().await.map_err(sql_error)? {
            let decoded = decode_row(&row, &columns)?;
            bytes += crate::result_bytes(&decoded);
            if bytes > crate::MAX_RESULT_BYTES {
                return Err(crate::result_too_big());
            }
            rows.push(decoded);
        }
        drop(stream);
        Ok(QueryResult { columns, rows })
    }

    async fn batch(&mut self, script: &str) -> SqlResult<()> {
        self.start_call();
        tx_control::check(script, Dialect::Sqlite, &self.policy)?;
        self.run_script(script.to_owned()).await
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> SqlResult<u64> {
        self.start_call();
        tx_control::check(sql, Dialect::Sqlite, &self.policy)?;
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
        // Held to the revision's capabilities (a write) like any statement.
        tx_control::check(
            &format!("INSERT INTO {target} DEFAULT VALUES"),
            Dialect::Sqlite,
            &self.policy,
        )?;
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
        Ok(CursorState::buffered(self.query(sql, params).await?))
    }

    async fn fetch(
        &mut self,
        cursor: &mut CursorState,
        max_rows: u32,
    ) -> SqlResult<Vec<Vec<Value>>> {
        Ok(cursor.take_buffered(max_rows))
    }

    async fn close_cursor(&mut self, cursor: &mut CursorState) -> SqlResult<()> {
        cursor.close_buffered();
        Ok(())
    }

    async fn savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.start_call();
        self.run_script(format!("SAVEPOINT {}", crate::savepoint_name(name)?))
            .await
    }

    async fn release_savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.start_call();
        self.run_script(format!(
            "RELEASE SAVEPOINT {}",
            crate::savepoint_name(name)?
        ))
        .await
    }

    async fn rollback_to_savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.start_call();
        let name = crate::savepoint_name(name)?;
        self.run_script(format!(
            "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
        ))
        .await
    }
}

#[async_trait]
impl Session for SqliteSession {
    fn transaction_ended(&self) -> bool {
        self.cancel.foreign_end.load(Ordering::SeqCst)
    }

    async fn transaction_intact(&mut self) -> anyhow::Result<bool> {
        Ok(!self.cancel.foreign_end.load(Ordering::SeqCst))
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

    async fn reset_session(&mut self) -> SqlResult<()> {
        self.start_call();
        self.run_script(RESET_IN_TRANSACTION.to_owned()).await?;
        let temporary: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_temp_master")
            .fetch_all(self.conn())
            .await
            .map_err(sql_error)?;
        if temporary.is_empty() {
            return Ok(());
        }
        Err(SqlError::wasmig(
            "STATE",
            format!(
                "the step left temporary objects ({}), which the next step of this --atomic run would see; drop them before the revision ends",
                temporary.join(", ")
            ),
        ))
    }

    fn books(&mut self) -> (&VersionStore, &mut dyn Driver) {
        (&self.store, &mut *self.tx)
    }

    async fn guard(&mut self, _doing: &str, intact: bool) -> anyhow::Result<bool> {
        self.start_call();
        if intact {
            return self.transaction_intact().await;
        }
        Ok(true)
    }

    async fn commit(mut self: Box<Self>) -> anyhow::Result<()> {
        self.remove_handler().await;
        match self.tx.commit().await {
            Ok(()) => Ok(()),
            // A constraint the migration deferred (SQLITE_CONSTRAINT, 19, and its extended
            // codes such as 787 for a foreign key) is the migration's failure; the
            // transaction, still open after the failed COMMIT, is rolled back as sqlx drops
            // it. Anything else (busy, I/O, full) is the database's.
            Err(sqlx::Error::Database(e))
                if e.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| c & 0xff == 19) =>
            {
                Err(
                    crate::CommitRefused(Box::new(super::codec::sql_error(sqlx::Error::Database(
                        e,
                    ))))
                    .into(),
                )
            }
            Err(source) => Err(DbError::Query {
                doing: "committing the transaction".into(),
                source,
            }
            .into()),
        }
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

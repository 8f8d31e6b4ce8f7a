//! A MySQL session: one migration's transaction on a connection of its own, and the
//! canceller that stops its running statement (`KILL QUERY` from another connection).
//!
//! Owns: beginning the transaction with a savepoint whose name only wasmig knows (the
//! server forgets it when the transaction ends, however it ends, so finding it again is
//! the server's word that the transaction is the one begun); the [`GuestSql`] impl, where
//! every statement goes through the prepared-statement protocol (which refuses two
//! statements in one text) after `lex` refused transaction control and the statements that
//! commit implicitly; the [`Session`] impl: the guard (the transaction, wasmig's tables and
//! the rows of its batch tables, then the lock fence), timeouts, commit and rollback. The
//! connection is closed when the session ends: MySQL has no statement that resets what a
//! migration set on it.
//!
//! Not here: binding and decoding (`codec`), wasmig's tables (`store`), the lock
//! (`named_lock`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sqlx::Statement as _;
use sqlx::mysql::MySqlArguments;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, MySqlConnection, MySqlPool, SqlSafeStr};

use super::codec::{bind, bind_into, column, decode_row, error_number, sql_error};
use super::{MySqlDatabase, lex};
use crate::store::{Driver, VersionStore};
use crate::{
    Canceller, Checkpoint, CursorState, DbError, FinishedStep, GuestSql, LockLost, Policy, Session,
    SqlResult, copy,
};
use wasmig_contract::{Dialect, QueryResult, SqlError, Value};

/// `ER_UNSUPPORTED_PS`: a statement the prepared-statement protocol does not take.
const UNSUPPORTED_PS: u16 = 1295;

/// The most parameters one prepared statement may have.
const MAX_PARAMS: usize = 65_535;

/// Rows per `INSERT` of a `copy-in`, at most.
const MAX_COPY_ROWS: usize = 1_000;

/// The `SET SESSION` statement for a step's timeouts (empty: none): the lock waits in
/// whole seconds (at least 1), the statement limit as the server spells it
/// (`max_statement_time` in seconds on MariaDB; `max_execution_time` in milliseconds on
/// MySQL, where it bounds `SELECT` only).
pub(super) fn timeouts(
    mariadb: bool,
    lock: Option<std::time::Duration>,
    statement: Option<std::time::Duration>,
) -> String {
    let mut settings = Vec::new();
    if let Some(lock) = lock {
        let secs = lock.as_secs_f64().ceil().max(1.0) as u64;
        settings.push(format!("lock_wait_timeout = {secs}"));
        settings.push(format!("innodb_lock_wait_timeout = {secs}"));
    }
    if let Some(statement) = statement {
        if mariadb {
            settings.push(format!(
                "max_statement_time = {:.3}",
                statement.as_secs_f64()
            ));
        } else {
            settings.push(format!(
                "max_execution_time = {}",
                statement.as_millis().max(1)
            ));
        }
    }
    if settings.is_empty() {
        String::new()
    } else {
        format!("SET SESSION {}", settings.join(", "))
    }
}

/// Runs one statement wasmig's checks passed, through the prepared-statement protocol, or
/// as text when the server does not prepare that kind of statement (the text is then one
/// statement under both readings of `lex`). Returns the rows it affected.
pub(super) async fn run_one(conn: &mut MySqlConnection, text: &str) -> SqlResult<u64> {
    match sqlx::query(AssertSqlSafe(text.to_owned()))
        .persistent(false)
        .execute(&mut *conn)
        .await
    {
        Ok(done) => Ok(done.rows_affected()),
        Err(e) if error_number(&e) == Some(UNSUPPORTED_PS) => {
            sqlx::raw_sql(AssertSqlSafe(text.to_owned()))
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
                .map_err(sql_error)
        }
        Err(e) => Err(sql_error(e)),
    }
}

/// What a session knows of the migration lock: its name, and the connection holding it
/// for this run (0: not held).
#[derive(Clone)]
struct Fence {
    name: String,
    holder: Arc<AtomicU64>,
}

/// One migration's transaction.
pub(crate) struct MySqlSession {
    /// `None` once committed or rolled back; dropped open, the connection closes and the
    /// server rolls the transaction back.
    conn: Option<MySqlConnection>,
    /// The connection's id, for `KILL QUERY`.
    id: i64,
    /// The savepoint set right after `START TRANSACTION`.
    marker: String,
    /// Where the canceller's `KILL QUERY` is sent from.
    pool: MySqlPool,
    fence: Fence,
    mariadb: bool,
    /// Set when the server said the transaction ended (`@@in_transaction` after a call).
    ended: bool,
    /// Set once wasmig wrote its batch tables in this transaction (a checkpoint saved or
    /// cleared): from then on its own row locks would look like the migration's to the
    /// guard's probe (`tamper::batch_rows_locked`), which therefore runs only before.
    wrote_batch_tables: bool,
    /// What the relay between sqlx and the server cut (`relay`), to say so in the error of
    /// the call it broke; `None` on a connection by unix socket, which has no relay.
    cut: Option<Arc<super::relay::Cut>>,
    store: VersionStore,
    policy: Policy,
    /// How long wasmig's own statements wait for a lock (`MySqlDatabase::own_wait_secs`).
    own_wait_secs: u64,
    /// Whether the guard (`books_intact`) bounded the session's lock waits to
    /// [`MySqlSession::own_wait_secs`] for wasmig's writes after it, the migration's own
    /// kept in `@wasmig_lock_waits` until [`MySqlSession::restore_waits`] puts them back.
    own_waits: bool,
}

impl MySqlSession {
    pub(super) async fn begin(db: &MySqlDatabase) -> anyhow::Result<Self> {
        let failed = |source| DbError::Query {
            doing: "beginning a transaction".into(),
            source,
        };
        let (mut conn, cut) = db.migration_connection().await.map_err(failed)?;
        let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .map_err(failed)?;
        let marker = format!("wasmig_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(AssertSqlSafe(format!(
            "START TRANSACTION; SAVEPOINT {marker}"
        )))
        .execute(&mut conn)
        .await
        .map_err(failed)?;
        Ok(MySqlSession {
            conn: Some(conn),
            id,
            marker,
            pool: db.pool.clone(),
            fence: Fence {
                name: db.lock_name.clone(),
                holder: Arc::clone(&db.holder),
            },
            mariadb: db.mariadb,
            ended: false,
            wrote_batch_tables: false,
            cut,
            store: VersionStore::new(Dialect::Mysql, None),
            policy: Policy::TRUSTED,
            own_wait_secs: db.own_wait_secs,
            own_waits: false,
        })
    }

    /// Gives the session back the lock waits [`MySqlSession::books_intact`] kept, for the
    /// migration's statements that follow in this transaction (the next batch after a
    /// checkpoint, the next step of an `--atomic` run).
    async fn restore_waits(&mut self) -> anyhow::Result<()> {
        if !std::mem::take(&mut self.own_waits) {
            return Ok(());
        }
        sqlx::raw_sql(
            "SET SESSION lock_wait_timeout = @wasmig_lock_waits, \
             SESSION innodb_lock_wait_timeout = @wasmig_innodb_lock_waits",
        )
        .execute(self.conn())
        .await
        .map(drop)
        .map_err(|source| {
            DbError::Query {
                doing: "restoring the migration's lock waits".into(),
                source,
            }
            .into()
        })
    }

    fn conn(&mut self) -> &mut MySqlConnection {
        self.conn
            .as_mut()
            .expect("a MySQL session is used after it ended")
    }

    /// The statements of `sql` after the checks every migration statement passes.
    fn checked<'s>(&self, sql: &'s str) -> SqlResult<Vec<lex::Statement<'s>>> {
        if self.ended {
            return Err(SqlError::wasmig(
                "STATE",
                "the server ended wasmig's transaction (a deadlock rolls it back whole), so what runs next would commit on its own: the step fails here",
            ));
        }
        if self.policy.is_untrusted() {
            return Err(SqlError::wasmig(
                "POLICY",
                "untrusted mode's SQL policy is not enforced on MySQL yet, so wasmig refuses to run untrusted migrations there; run them on PostgreSQL, or trust the revision",
            ));
        }
        let statements = lex::statements(sql)?;
        let several = statements.len() > 1;
        let at = |n: usize| {
            if several {
                format!(" (statement {} of the script)", n + 1)
            } else {
                String::new()
            }
        };
        if let Some((n, keyword)) = lex::first_control(sql) {
            return Err(SqlError::wasmig(
                "STATE",
                format!(
                    "`{keyword}`{} is not allowed in a migration: wasmig runs each revision in one transaction together with its version-table update, and commits or rolls it back itself; remove the statement, and to undo part of the work use a savepoint (`db::savepoint` in the Rust SDK, `begin-savepoint` in the WIT)",
                    at(n)
                ),
            ));
        }
        if let Some((n, words)) = lex::first_implicit_commit(sql) {
            return Err(SqlError::wasmig(
                "STATE",
                format!(
                    "`{words}`{} commits implicitly on MySQL and MariaDB, which would end wasmig's transaction half-way; put DDL in an SQL revision of its own (wasmig runs such a script statement by statement), and keep data statements here",
                    at(n)
                ),
            ));
        }
        Ok(statements)
    }

    /// After a call: asks the server whether the transaction is still open (MariaDB's
    /// `@@in_transaction`; MySQL has no such variable, and the guard's savepoint check
    /// stands alone there).
    /// `failed`: the call's error, if it failed. A deadlock (SQLSTATE 40001) rolls the
    /// whole transaction back on every MySQL.
    async fn after_call(&mut self, failed: Option<&SqlError>) {
        if failed.is_some_and(|e| e.code == "40001") {
            self.ended = true;
        }
        if !self.mariadb || self.ended {
            return;
        }
        let open: Result<i64, _> = sqlx::query_scalar("SELECT @@in_transaction")
            .fetch_one(self.conn())
            .await;
        if matches!(open, Ok(0)) {
            self.ended = true;
        }
    }

    async fn query_args(&mut self, sql: &str, args: MySqlArguments) -> SqlResult<QueryResult> {
        let result = self.query_rows(sql, args).await;
        result.map_err(|e| super::relay::explained(self.cut.as_ref(), e))
    }

    async fn query_rows(&mut self, sql: &str, args: MySqlArguments) -> SqlResult<QueryResult> {
        let statement = self
            .conn()
            .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
            .await
            .map_err(sql_error)?;
        let columns = statement.columns().iter().map(column).collect::<Vec<_>>();
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut stream = sqlx::query_with(AssertSqlSafe(sql.to_owned()), args).fetch(self.conn());
        while let Some(row) = stream.try_next().await.map_err(sql_error)? {
            let decoded = decode_row(&row, &columns)?;
            bytes += crate::result_bytes(&decoded);
            if bytes > crate::MAX_RESULT_BYTES {
                return Err(crate::result_too_big());
            }
            rows.push(decoded);
        }
        Ok(QueryResult { columns, rows })
    }

    async fn execute_args(&mut self, sql: &str, args: MySqlArguments) -> SqlResult<u64> {
        let done = sqlx::query_with(AssertSqlSafe(sql.to_owned()), args)
            .execute(self.conn())
            .await
            .map_err(|e| super::relay::explained(self.cut.as_ref(), sql_error(e)))?;
        Ok(done.rows_affected())
    }

    async fn run_statements(&mut self, script: &str) -> SqlResult<Vec<u64>> {
        let statements: Vec<String> = self
            .checked(script)?
            .iter()
            .map(|s| s.text.to_owned())
            .collect();
        let mut counts = Vec::with_capacity(statements.len());
        for text in statements {
            let result = run_one(self.conn(), &text).await;
            counts.push(result.map_err(|e| super::relay::explained(self.cut.as_ref(), e))?);
        }
        Ok(counts)
    }

    /// Releases the savepoint set at `START TRANSACTION` and sets it again: it succeeds
    /// only in the transaction that set it.
    async fn marker_intact(&mut self) -> anyhow::Result<bool> {
        let marker = self.marker.clone();
        match sqlx::raw_sql(AssertSqlSafe(format!(
            "RELEASE SAVEPOINT {marker}; SAVEPOINT {marker}"
        )))
        .execute(self.conn())
        .await
        {
            Ok(_) => Ok(!self.ended),
            // ER_SP_DOES_NOT_EXIST: the savepoint went with the transaction.
            Err(e) if error_number(&e) == Some(1305) => Ok(false),
            Err(source) => Err(DbError::Query {
                doing: "checking the step's transaction".into(),
                source,
            }
            .into()),
        }
    }

    /// Before wasmig reads or writes its tables in the step's session: the settings its
    /// statements rely on set back (a migration may have set `sql_select_limit = 1`, which
    /// would hide heads from the check before the record), no temporary table named like
    /// one of them (it would take the record in their place and vanish with the
    /// connection), and each of them a plain InnoDB table without triggers (a view or a
    /// trigger could rewrite the record; a MyISAM table would keep it past a rollback).
    ///
    /// # Errors
    /// [`TablesTampered`](crate::TablesTampered), or when the check cannot run.
    async fn books_intact(&mut self) -> anyhow::Result<()> {
        let failed = |source| DbError::Query {
            doing: "checking wasmig's tables".into(),
            source,
        };
        // First, in the same message, the session's lock waits bounded for wasmig's
        // statements that follow (these reads, the record's writes): another session's
        // `LOCK TABLES` of wasmig's tables or a row of them it locked stops them after
        // `--lock-timeout` (error 1205) rather than after the migration's waits (a year for
        // a table's, by default). The migration's are kept in user variables for
        // [`MySqlSession::restore_waits`].
        let waits = if self.own_waits {
            String::new()
        } else {
            let secs = self.own_wait_secs;
            format!(
                "SET @wasmig_lock_waits = @@SESSION.lock_wait_timeout, \
                 @wasmig_innodb_lock_waits = @@SESSION.innodb_lock_wait_timeout, \
                 SESSION lock_wait_timeout = {secs}, SESSION innodb_lock_wait_timeout = {secs}; "
            )
        };
        sqlx::raw_sql(AssertSqlSafe(format!(
            "{waits}SET NAMES utf8mb4; SET SESSION sql_select_limit = DEFAULT, max_join_size = DEFAULT, \
             sql_notes = 1, time_zone = '+00:00', \
             sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"
        )))
        .execute(self.conn())
        .await
        .map_err(failed)?;
        self.own_waits = true;
        // Each dropped if it is a temporary table, and `@@warning_count` read after each: a
        // note ("unknown table") says there was none. One message for the seven.
        let probe = crate::store::TABLE_NAMES
            .iter()
            .map(|t| {
                format!(
                    "DROP TEMPORARY TABLE IF EXISTS {t}; SELECT CAST(@@warning_count AS SIGNED)"
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let rows = sqlx::raw_sql(AssertSqlSafe(probe))
            .fetch_all(self.conn())
            .await
            .map_err(failed)?;
        let mut shadowed = Vec::new();
        for (row, table) in rows.iter().zip(crate::store::TABLE_NAMES) {
            let notes: i64 = sqlx::Row::try_get(row, 0).map_err(failed)?;
            if notes == 0 {
                shadowed.push(table);
            }
        }
        if rows.len() != crate::store::TABLE_NAMES.len() || !shadowed.is_empty() {
            return Err(crate::TablesTampered(format!(
                "the step created a temporary table named like wasmig's ({}), which would have taken its record",
                shadowed.join(", ")
            ))
            .into());
        }
        let names = crate::store::TABLE_NAMES
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let odd: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT CAST((SELECT COUNT(*) FROM information_schema.TABLES
                          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({names})
                            AND (TABLE_TYPE <> 'BASE TABLE' OR ENGINE <> 'InnoDB'))
                       + (SELECT COUNT(*) FROM information_schema.TRIGGERS
                          WHERE EVENT_OBJECT_SCHEMA = DATABASE()
                            AND EVENT_OBJECT_TABLE IN ({names})) AS SIGNED)"
        )))
        .fetch_one(self.conn())
        .await
        .map_err(failed)?;
        if odd > 0 {
            return Err(crate::TablesTampered(
                "wasmig's tables are not the plain InnoDB tables it made: one is a view, has another engine, or has a trigger".into(),
            )
            .into());
        }
        Ok(())
    }

    async fn end(&mut self, statement: &str, doing: &str) -> anyhow::Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let result = sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        result.map(drop).map_err(|source| {
            DbError::Query {
                doing: doing.into(),
                source,
            }
            .into()
        })
    }
}

#[async_trait]
impl GuestSql for MySqlSession {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }

    fn canceller(&self) -> Arc<dyn Canceller> {
        Arc::new(MySqlCanceller {
            pool: self.pool.clone(),
            id: self.id,
        })
    }

    fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        let statements = self.checked(sql)?;
        if statements.len() > 1 {
            return Err(SqlError::wasmig(
                "STATE",
                "execute takes one statement; send a script with `batch`",
            ));
        }
        // The statement as the lexer read it: without a trailing `;`, which a prepared
        // statement does not take.
        let text = statements.first().map_or(sql, |s| s.text).to_owned();
        let args = bind(params, None)?;
        let result = self.execute_args(&text, args).await;
        self.after_call(result.as_ref().err()).await;
        result
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<QueryResult> {
        let statements = self.checked(sql)?;
        if statements.len() > 1 {
            return Err(SqlError::wasmig(
                "STATE",
                "query takes one statement; send a script with `batch`",
            ));
        }
        let text = statements.first().map_or(sql, |s| s.text).to_owned();
        let args = bind(params, None)?;
        let result = self.query_args(&text, args).await;
        self.after_call(result.as_ref().err()).await;
        result
    }

    async fn batch(&mut self, script: &str) -> SqlResult<()> {
        self.batch_counted(script).await.map(drop)
    }

    async fn batch_counted(&mut self, script: &str) -> SqlResult<Vec<u64>> {
        let result = self.run_statements(script).await;
        self.after_call(result.as_ref().err()).await;
        result
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> SqlResult<u64> {
        let statements = self.checked(sql)?;
        if statements.len() > 1 {
            return Err(SqlError::wasmig(
                "STATE",
                "execute-many takes one statement",
            ));
        }
        let text = statements.first().map_or(sql, |s| s.text).to_owned();
        let sql = text.as_str();
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, row)| bind(row, Some(i)))
            .collect::<SqlResult<Vec<_>>>()?;
        let mut total = 0;
        let mut result = Ok(());
        for args in rows {
            match self.execute_args(sql, args).await {
                Ok(n) => total += n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.after_call(result.as_ref().err()).await;
        result.map(|()| total)
    }

    async fn copy_in(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
    ) -> SqlResult<u64> {
        let target = copy::target_quoted(table, columns, '`')?;
        self.checked(&format!("INSERT INTO {target} VALUES ()"))?;
        let width = columns.len();
        copy::check_widths(rows, width)?;
        let per_insert = (MAX_PARAMS / width.max(1)).clamp(1, MAX_COPY_ROWS);
        let mut inserts = Vec::new();
        for (n, chunk) in rows.chunks(per_insert).enumerate() {
            let mut args = MySqlArguments::default();
            for (i, row) in chunk.iter().enumerate() {
                bind_into(&mut args, row, Some(n * per_insert + i), true)?;
            }
            inserts.push((copy::sqlite_insert(&target, width, chunk.len()), args));
        }
        let mut total = 0;
        let mut result = Ok(());
        for (sql, args) in inserts {
            match self.execute_args(&sql, args).await {
                Ok(n) => total += n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.after_call(result.as_ref().err()).await;
        result.map(|()| total)
    }

    async fn open_cursor(&mut self, sql: &str, params: &[Value]) -> SqlResult<CursorState> {
        // A server-side cursor would not survive the statements the guest runs between two
        // fetches on the same connection: the host reads the result and hands it out in
        // chunks, within the result budget.
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
        let name = crate::savepoint_name(name)?;
        self.raw(format!("SAVEPOINT {name}")).await
    }

    async fn release_savepoint(&mut self, name: &str) -> SqlResult<()> {
        let name = crate::savepoint_name(name)?;
        self.raw(format!("RELEASE SAVEPOINT {name}")).await
    }

    async fn rollback_to_savepoint(&mut self, name: &str) -> SqlResult<()> {
        let name = crate::savepoint_name(name)?;
        self.raw(format!(
            "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
        ))
        .await
    }
}

impl MySqlSession {
    /// wasmig's own statements on the session (savepoints of names it checked).
    async fn raw(&mut self, sql: String) -> SqlResult<()> {
        let result = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map(drop)
            .map_err(sql_error);
        self.after_call(result.as_ref().err()).await;
        result
    }
}

#[async_trait]
impl Session for MySqlSession {
    fn transaction_ended(&self) -> bool {
        self.ended
    }

    async fn transaction_intact(&mut self) -> anyhow::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        self.after_call(None).await;
        self.marker_intact().await
    }

    async fn set_timeouts(
        &mut self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> anyhow::Result<()> {
        let settings = timeouts(self.mariadb, lock, statement);
        if settings.is_empty() {
            return Ok(());
        }
        sqlx::raw_sql(AssertSqlSafe(settings))
            .execute(self.conn())
            .await
            .map(drop)
            .map_err(|source| {
                DbError::Query {
                    doing: "setting the step's timeouts".into(),
                    source,
                }
                .into()
            })
    }

    async fn reset_session(&mut self) -> SqlResult<()> {
        // Several steps share this transaction (a dry run, `--atomic`): what a step set on
        // the session cannot be undone inside it on MySQL, and it stays for the next; but
        // the lock waits wasmig bounded for its record go back to the migration's.
        self.restore_waits()
            .await
            .map_err(|e| SqlError::wasmig("IO", format!("{e:#}")))
    }

    fn books(&mut self) -> (&VersionStore, &mut dyn Driver) {
        let conn = self
            .conn
            .as_mut()
            .expect("a MySQL session is used after it ended");
        (&self.store, conn)
    }

    async fn guard(&mut self, _doing: &str, intact: bool) -> anyhow::Result<bool> {
        if intact && !self.transaction_intact().await? {
            return Ok(false);
        }
        self.books_intact().await?;
        // The server's word on the batch tables, which only wasmig's batch transactions
        // write, after this guard: a row the step's transaction wrote there (a checkpoint
        // forged for a later batched revision, a partition ended) is locked until it ends,
        // however the SQL named the table, a trigger's or a stored function's included.
        if !self.wrote_batch_tables
            && let Some(table) =
                super::tamper::batch_rows_locked(&self.pool)
                    .await
                    .map_err(|source| DbError::Query {
                        doing: "checking wasmig's batch tables".into(),
                        source,
                    })?
        {
            return Err(crate::TablesTampered(format!(
                "this transaction wrote (or locked) rows of {table}: the migration's own SQL wrote wasmig_checkpoint or wasmig_partition before wasmig did, which would skip or repeat rows of a batched revision"
            ))
            .into());
        }
        let holder = self.fence.holder.load(Ordering::SeqCst);
        // A step run without the lock (a dry run) has no fence to check.
        if holder == 0 {
            return Ok(true);
        }
        let name = self.fence.name.clone();
        let still: Option<i64> = sqlx::query_scalar(super::named_lock::HOLDER)
            .bind(&name)
            .bind(&name)
            .fetch_one(self.conn())
            .await
            .map_err(|source| DbError::Query {
                doing: "checking the migration lock".into(),
                source,
            })?;
        if still.map(i64::cast_unsigned) != Some(holder) {
            return Err(LockLost.into());
        }
        Ok(true)
    }

    async fn finish_step(&mut self, finished: &FinishedStep<'_>) -> anyhow::Result<bool> {
        let done = crate::guard_then_finish(self, finished).await;
        self.wrote_batch_tables |= finished.clear_checkpoint;
        // The migration's own waits come back with the next step's (`reset_session`): a
        // record is followed by its COMMIT, or by the next step of an `--atomic` run.
        done
    }

    async fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        self.guard(
            &format!("saving the checkpoint of {}", checkpoint.revision),
            false,
        )
        .await?;
        self.wrote_batch_tables = true;
        let (store, d) = self.books();
        store.save_checkpoint(d, checkpoint).await?;
        self.restore_waits().await
    }

    async fn clear_checkpoint(&mut self, revision: &str) -> anyhow::Result<()> {
        self.guard(&format!("deleting the checkpoint of {revision}"), false)
            .await?;
        self.wrote_batch_tables = true;
        let (store, d) = self.books();
        store.clear_checkpoint(d, revision).await?;
        store.clear_partitions(d, revision).await?;
        self.restore_waits().await
    }

    async fn commit(mut self: Box<Self>) -> anyhow::Result<()> {
        self.end("COMMIT", "committing the transaction").await
    }

    async fn rollback(mut self: Box<Self>) -> anyhow::Result<()> {
        self.end("ROLLBACK", "rolling back the transaction").await
    }
}

/// Stops the statement running on one session's connection.
struct MySqlCanceller {
    pool: MySqlPool,
    id: i64,
}

#[async_trait]
impl Canceller for MySqlCanceller {
    async fn cancel(&self) {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("KILL QUERY {}", self.id)))
            .execute(&self.pool)
            .await;
    }

    async fn terminate(&self) {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("KILL CONNECTION {}", self.id)))
            .execute(&self.pool)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeouts_are_spelled_as_each_server_reads_them() {
        assert_eq!(timeouts(true, None, None), "");
        assert_eq!(
            timeouts(
                true,
                Some(Duration::from_millis(1500)),
                Some(Duration::from_millis(250))
            ),
            "SET SESSION lock_wait_timeout = 2, innodb_lock_wait_timeout = 2, max_statement_time = 0.250"
        );
        assert_eq!(
            timeouts(false, None, Some(Duration::from_secs(3))),
            "SET SESSION max_execution_time = 3000"
        );
    }
}

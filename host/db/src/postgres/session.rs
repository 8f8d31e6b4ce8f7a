//! A PostgreSQL session: one migration's transaction on one pooled connection, and the
//! canceller that stops its running statement from another connection.
//!
//! Owns: beginning the transaction (reading the backend pid and the transaction id), the
//! [`GuestSql`] impl (statements, `execute-many` scripts, `COPY`, server-side cursors,
//! savepoints), the [`Session`] impl (the timeouts, the guard before wasmig writes:
//! transaction identity, lock fence and tamper check; the reset between steps, commit and
//! rollback). Its [`PgCanceller`] is in `cancel`.
//!
//! Not here: encoding parameters and decoding rows (`codec`), the statements on wasmig's
//! tables (`store`), the tamper check's text (`bookkeeping`), the pool and the control connection
//! (`mod.rs`), what the server sent on the connection (`relay`), or which statements a migration runs and when it commits (the runner and
//! the sandbox).
//!
//! sqlx's per-connection statement cache, and its two hazards, are handled in
//! `statement_cache`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Row, SqlSafeStr, SqlStr, Statement};

use super::cancel::PgCanceller;
use super::codec::{Bound, Plan, sql_error};
use super::relay::Wire;
use super::run_writes::RunWrites;
use super::{PRESENT, PgDatabase};
use crate::store::{
    Cell, Checks, Driver, Param, Refused, Statement as StoreStatement, VersionStore,
};
use crate::{
    Canceller, CursorState, DbError, FinishedStep, GuestSql, LockLost, Policy, Session, SqlResult,
    TablesTampered, copy, pg_script, tx_control,
};
use wasmig_contract::{Column, ColumnResult, ColumnValues, Dialect, QueryResult, SqlError, Value};

use crate::columns::ColumnBuilder;

/// The SQLSTATE [`Session::finish_step`]'s guard raises when the transaction is not the one
/// begun (a class no PostgreSQL error uses).
const TRANSACTION_ENDED_STATE: &str = "WMG01";

/// The SQLSTATE of the fence ([`PgSession::fence`]): the migration lock is no longer held.
const LOCK_LOST_STATE: &str = "WMG02";

/// The SQLSTATE of the check for state a step of an `--atomic` run left that cannot be
/// reset ([`Session::reset_session`]).
const LEFT_STATE: &str = "WMG04";

/// How long the next step's begin, sent in this step's commit ([`PgSession::commit_and_reset`]),
/// may wait for a lock (on the version table, which another session holds exclusively,
/// say): past it that begin fails, the connection is not kept, and the next step begins
/// the usual way. Waiting longer would hold up the report of a commit already made.
const EARLY_BEGIN_LOCK_WAIT: &str = "100ms";

/// The savepoint the statement that records a step runs in ([`PgSession::finish_in_one`]).
const FINISH_SAVEPOINT: &str = "wasmig_finish";

/// The savepoint a dry run's check of what a commit would fire runs in
/// ([`Session::check_deferred`]).
const DEFERRED_SAVEPOINT: &str = "wasmig_deferred";

/// The savepoint a dry run's or journal's reads of the server's counts run in
/// ([`PgSession`]'s `observe`).
const OBSERVE_SAVEPOINT: &str = "wasmig_observe";

/// wasmig's own timeouts ([`OWN_LIMITS`], [`OWN_TIMEOUTS`]).
macro_rules! own_timeouts {
    () => {
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; SET LOCAL exit_on_error = off; "
    };
}

/// Sent before wasmig's own statements in a step's transaction (the guard, the record): the
/// `statement_timeout` and `lock_timeout` the migration set (or wasmig set for it, from the
/// revision's `statement_timeout_secs`) hold its statements, not wasmig's, which the step's
/// time limit bounds on the host. A migration's `SET statement_timeout = 1` would otherwise
/// fail the record of its own step as a database error. And `exit_on_error` off: a
/// migration's `SET exit_on_error = on` would turn an error of wasmig's statements, or one
/// a deferred constraint raises at `COMMIT`, into the end of the session, which reads as
/// a lost connection (exit 5) instead of the migration's failure.
///
/// First, the role wasmig connected as: a migration's own `SET ROLE` or `SET SESSION
/// AUTHORIZATION` (trusted mode, no `role` set) would otherwise run wasmig's statements as
/// a role that may not write its tables. (`DEFAULT` is the authenticated user, whom
/// PostgreSQL lets switch back without superuser; it also clears the current role.) With
/// `role` set, the guard's check that the migration stayed in it comes before this.
const OWN_LIMITS: &str = concat!("SET LOCAL SESSION AUTHORIZATION DEFAULT; ", own_timeouts!());

/// The timeouts of [`OWN_LIMITS`] alone, for what runs as the migration's role still (a dry
/// run's firing of its deferred triggers).
const OWN_TIMEOUTS: &str = own_timeouts!();

/// Sent with [`OWN_LIMITS`] before a record that runs prepared: the session reads and
/// writes UTF-8 (the record's bound texts are read in the client's encoding, which a
/// migration may have changed), plans the record once for the run (a generic plan: its
/// values change, its shape does not), and says how many statements under sqlx's names
/// (`sqlx_s_N`) were prepared by SQL and how many by the protocol (see
/// [`PgSession::own_statements_intact`]). Nothing of the migration runs between this
/// message and the record. (Read from `pg_prepared_statement()`, the function the view
/// `pg_prepared_statements` selects from: the same rows, planned in a third of the time,
/// as this select is planned at every step.)
const PREPARED_BY_SQLX: &str = "SET LOCAL client_encoding = 'UTF8'; \
     SET LOCAL plan_cache_mode = force_generic_plan; \
     SELECT pg_catalog.count(*) FILTER (WHERE p.from_sql), \
            pg_catalog.count(*) FILTER (WHERE NOT p.from_sql) \
     FROM pg_catalog.pg_prepared_statement() p \
     WHERE pg_catalog.left(p.name, 7) OPERATOR(pg_catalog.=) 'sqlx_s_'";

/// An SQL boolean: the session `pid` holds the migration lock's advisory `key` (a bigint
/// advisory key shows in `pg_locks` as classid = its high 32 bits, objid = its low 32 bits,
/// objsubid = 1). Read from `pg_lock_status()`, the function the view `pg_locks` selects
/// from: the same rows, and less to plan in the select that begins every step.
pub(super) fn lock_held(pid: i32, key: i64) -> String {
    let key = key as u64;
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_lock_status() l \
         WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted \
         AND l.pid OPERATOR(pg_catalog.=) {pid} \
         AND l.classid OPERATOR(pg_catalog.=) {classid}::pg_catalog.oid \
         AND l.objid OPERATOR(pg_catalog.=) {objid}::pg_catalog.oid \
         AND l.objsubid OPERATOR(pg_catalog.=) 1)",
        classid = key >> 32,
        objid = key & 0xffff_ffff,
    )
}

/// The SQLSTATE of the tamper check (`bookkeeping::tamper_check`).
pub(super) const TAMPERED_STATE: &str = "WMG03";

/// The SQLSTATE of the tamper check when the tables are as wasmig made them but the
/// transaction wrote rows of them that only wasmig writes (`WATCHED_WRITES`).
pub(super) const WROTE_STATE: &str = "WMG05";

/// The SQLSTATE of wasmig's guard finding that the migration left its role
/// ([`crate::RoleLeft`]).
pub(super) const ROLE_LEFT_STATE: &str = "WMG06";

/// The error of a write of wasmig's tables: [`LockLost`] when the fence refused it, else
/// the query's.
pub(super) fn write_error(source: sqlx::Error, doing: String) -> anyhow::Error {
    match &source {
        sqlx::Error::Database(e) if e.code().as_deref() == Some(LOCK_LOST_STATE) => LockLost.into(),
        sqlx::Error::Database(e) if e.code().as_deref() == Some(TAMPERED_STATE) => {
            TablesTampered(e.message().trim_start_matches("wasmig: ").to_owned()).into()
        }
        sqlx::Error::Database(e) if e.code().as_deref() == Some(ROLE_LEFT_STATE) => {
            crate::RoleLeft(e.message().trim_start_matches("wasmig: ").to_owned()).into()
        }
        sqlx::Error::Database(e) if e.code().as_deref() == Some(WROTE_STATE) => {
            crate::OwnRowsWritten(e.message().trim_start_matches("wasmig: ").to_owned()).into()
        }
        _ => DbError::Query { doing, source }.into(),
    }
}

/// One migration's transaction.
pub(crate) struct PgSession {
    /// The pooled connection, with the transaction `BEGIN` opened by [`PgDatabase::begin`];
    /// taken back by `commit` or `rollback`, which return it to the pool. Dropped
    /// unfinished (a rollback that did not finish in time, a panic), the connection is
    /// closed rather than returned: nothing waits on a server that stopped answering, and
    /// the server rolls the transaction back when it sees the socket closed.
    ///
    /// [`PgDatabase::begin`]: crate::Database::begin
    conn: Option<PoolConnection<Postgres>>,
    /// How long wasmig's own statements in the step (the guard, the record) wait for a
    /// lock another session holds on its tables, in ms (the run's `--lock-timeout`, at
    /// least a second): they give up with 55P03 rather than wait as long as it is held.
    own_lock_wait_ms: u128,
    /// Cancels by the backend pid of the connection; shared with the sandbox.
    canceller: Arc<PgCanceller>,
    /// Numbers the cursors of this transaction (`wasmig_cursor_N`).
    cursors_opened: u64,
    /// `txid_current()` at `begin`: the identity [`Session::transaction_intact`] checks.
    xid: i64,
    /// The server's count of the writes `WATCHED_WRITES` watches as the transaction began
    /// (once the run knows its tables): the tamper check refuses a transaction whose count
    /// moved before wasmig writes them (the count also holds earlier transactions' writes
    /// the session has not yet flushed to the server's statistics).
    watched_writes_at_begin: Option<i64>,
    /// wasmig's tables, qualified by the configured schema they live in, so that no
    /// `search_path` (the migration's, or a role's or database's default) can send the
    /// version-table update elsewhere.
    pub(super) store: VersionStore,
    /// The backend pid holding the migration lock when this session began (`None`: no lock
    /// held, as for `--plan`): what [`PgSession::fence`] checks before every write of the
    /// version tables.
    lock_holder: Option<super::lease_lock::Holder>,
    /// The oids of wasmig's tables as the run found them (`PgDatabase::table_oids`), for
    /// the tamper check's cheap path; `None` before `ensure_version_tables` ran.
    table_oids: Option<super::bookkeeping::KnownTables>,
    /// What the migration's statements are held to ([`GuestSql::set_policy`]): trusted
    /// from `begin` until the runner says otherwise.
    policy: Policy,
    /// The role the migration's statements run as (`role` in `wasmig.toml`), from the
    /// database; `None`: the connecting role (see `role`).
    pub(super) role: Option<Arc<str>>,
    /// Whether the transaction is switched to the role now: set before the
    /// migration's first statement, cleared by wasmig's guard and the `--atomic` reset.
    pub(super) in_role: bool,
    /// The heads and the lock as the transaction's first message read them (with the
    /// migration lock held, once the run knows its tables).
    begun: Option<crate::Begun>,
    /// How many of the statements in sqlx's cache on the connection are wasmig's own
    /// record of a step ([`PgSession::fetch_prepared`]), kept from one step to the next;
    /// may count too few (then they are cleared as if they were a migration's), never too
    /// many.
    pub(super) own_statements: usize,
    /// Whether the savepoint of the record ([`FINISH_SAVEPOINT`]) is still to be released:
    /// a prepared record leaves it to the next message wasmig sends (the commit, or the
    /// `--atomic` reset) instead of a round trip of its own.
    release_pending: bool,
    /// Set by the `--atomic` reset between steps, whose `DEALLOCATE ALL` would take a
    /// prepared record with it each step: the session's records go inline instead.
    records_inline: bool,
    /// Where a committed step leaves its connection for the next (`PgDatabase::kept`).
    kept: super::Kept,
    /// Set by [`Session::commit_lazily`]: the `COMMIT` does not wait for the server to
    /// write its log to disk.
    lazy_commit: bool,
    /// Whether a lazy commit of this run is not yet known to be on disk
    /// (`PgDatabase::unflushed`).
    unflushed: super::Unflushed,
    /// What this transaction's records wrote (and whether anything else of wasmig's wrote),
    /// folded into the run's ([`PgDatabase::run_writes`]) when it commits.
    written: RunWrites,
    /// The run's, shared with the database.
    run_writes: super::SharedRunWrites,
    /// What [`Session::batch_then_record`] sent after the step's script, for the record to
    /// take instead of asking again ([`Prelude`]).
    prelude: Option<Prelude>,
    /// The message that began this transaction (`BEGIN` and the select of
    /// [`PgDatabase::begin_session`]), which the next step's begins with too.
    begin: String,
    /// Set by [`Session::begin_next_in_commit`]: the commit's message begins the next
    /// step's transaction too (see [`PgSession::commit_and_reset`]).
    begin_next: bool,
    /// What the relay saw on this connection (`None`: it does not pass through the relay).
    wire: Option<Arc<Wire>>,
    /// The relay's count of transaction-control tags once this transaction had begun (and
    /// after each of wasmig's own `ROLLBACK TO SAVEPOINT`s): any other is a statement that
    /// ended or began a transaction ([`Session::transaction_ended`]).
    tags: u64,
}

/// What the message of a SQL revision's script sent after the script
/// ([`PgSession::prelude_suffix`]): wasmig's own limits set, the record's savepoint made,
/// and whether the server then said that sqlx's statements are intact
/// ([`PgSession::own_statements_intact`]). The record takes it in place of the message it
/// would send for the same, while the relay has seen no exchange since (`ready`, its count
/// of `ReadyForQuery` then): anything sent in between, and the record asks again.
#[derive(Debug, Clone, Copy)]
struct Prelude {
    intact: bool,
    ready: u64,
}

impl PgDatabase {
    /// A connection of the pool (reset when it was returned), for `doing`: the first one
    /// if [`PgDatabase::connect`] opened it early (a new connection; if it failed, the
    /// pool tries again).
    pub(super) async fn acquire(&self, doing: &str) -> anyhow::Result<PoolConnection<Postgres>> {
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        if let Some(first) = first {
            match first.await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => tracing::debug!("the pool's first connection failed to open: {e}"),
                Err(e) => tracing::debug!("the pool's first connection did not open: {e}"),
            }
        }
        Ok(self.pool.acquire().await.map_err(|source| DbError::Query {
            doing: doing.into(),
            source,
        })?)
    }

    /// [`Database::begin`], with the concrete session type.
    ///
    /// [`Database::begin`]: crate::Database::begin
    pub(super) async fn begin_session(&self) -> anyhow::Result<PgSession> {
        let doing = |what: &str| format!("{what} (beginning a transaction)");
        // The last step's connection (reset as it committed, and this transaction begun
        // there too, maybe), else the pool's (reset when it was returned), also when the
        // last step's fails.
        let kept = self.kept.lock().ok().and_then(|mut k| k.take());
        let (mut tx, kept, mut own_statements, begun_early) = match kept {
            Some(kept) => {
                // Whether the server has said nothing since (the `FATAL` of an idle
                // transaction's timeout or a `pg_terminate_backend` is seen in the socket
                // if the relay has not read it yet); not known behind a pooler.
                let alive = kept.wire.as_ref().is_none_or(|w| w.quiet());
                (
                    kept.conn,
                    true,
                    kept.own_statements,
                    kept.begun.zip(Some(alive)),
                )
            }
            None => (
                self.acquire("beginning a transaction").await?,
                false,
                0,
                None,
            ),
        };
        // `txid_current()` assigns the transaction an id now (it would get one at its first
        // write anyway); the runner compares it before recording the step. (A simple query,
        // like wasmig's other per-step statements: one round trip, and nothing in the
        // connection's statement cache, which is cleared below whenever it holds anything
        // but wasmig's own record.)
        // Under the migration lock, the step also holds PG_STEP_KEY shared for its
        // transaction, which a run taking the lock after this one waits for.
        let holder = self.lock_holder.lock().ok().and_then(|h| h.clone());
        let step_key = match holder
            .as_ref()
            .and_then(super::lease_lock::Holder::step_key)
        {
            Some(key) => {
                format!(", pg_catalog.pg_try_advisory_xact_lock_shared('{key}'::pg_catalog.int8)")
            }
            None => String::new(),
        };
        // Under the lock, once the run knows its tables: the heads, whether the lock is
        // still held and history's rows, for the runner's check of the step before
        // (`Session::begun`).
        let table_oids = self.table_oids.lock().ok().and_then(|o| o.clone());
        let begun_columns = match (&holder, &table_oids) {
            (Some(holder), Some(_)) => format!(
                ", pg_catalog.array_to_json(ARRAY(SELECT revision FROM {} \
                 ORDER BY revision COLLATE pg_catalog.\"C\"))::pg_catalog.text, {}, \
                 (SELECT pg_catalog.count(*) FROM {})",
                self.store.words().table(crate::VERSION_TABLE),
                holder.held(false),
                self.store.words().table(crate::HISTORY_TABLE),
            ),
            _ => String::new(),
        };
        // Once the run knows its tables: the server's count of the watched writes so
        // far, which the tamper check compares (last).
        let writes_column = match &table_oids {
            Some(known) => format!(", ({})", super::bookkeeping::known_watched_writes(known)),
            None => String::new(),
        };
        // `BEGIN` and the select in one message: one round trip.
        let begin = format!(
            "BEGIN; SELECT pg_catalog.pg_backend_pid(), pg_catalog.txid_current(){step_key}{begun_columns}{writes_column}"
        );
        // As sent here (not in the step before's commit, which bounds its own wait): the
        // select's reads of wasmig's tables wait for another session's lock on them only
        // up to `--lock-timeout` (55P03, named as `TablesLocked`), and the migration's
        // statements then wait as the server's default says.
        let bounded_begin = if begun_columns.is_empty() {
            begin.clone()
        } else {
            format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'; {}; SET LOCAL lock_timeout TO DEFAULT",
                self.lock_settings.wait.as_millis().max(1000),
                begin.strip_prefix("BEGIN; ").unwrap_or(&begin)
            )
        };
        // Begun already, in the message that committed the step before, by this same
        // statement: no round trip. Begun by another (the run's tables or lock changed in
        // between), the connection is closed (the server rolls that transaction back) and
        // the step begins on one of the pool's.
        let early_row = match begun_early {
            Some(((early, row), alive)) if alive && early == begin => Some(row),
            // Begun by another statement, or on a connection the server has closed since
            // (an idle transaction's timeout, a `pg_terminate_backend`): the step begins on
            // one of the pool's rather than failing at its first statement.
            Some(_) => {
                drop(tx.detach());
                tx = self.acquire("beginning a transaction").await?;
                own_statements = 0;
                None
            }
            None => None,
        };
        // Statements cached by an earlier session may describe tables a migration has altered
        // since; start every session without them. wasmig's own record of a step stays
        // (it reads and writes only wasmig's tables, which no migration may alter). (A
        // transaction begun early was begun only with none of them cached.)
        let cleared = if early_row.is_none() && tx.cached_statements_size() > own_statements {
            own_statements = 0;
            tx.clear_cached_statements().await
        } else {
            Ok(())
        };
        let row = match (early_row, cleared) {
            (Some(row), _) => Ok(row),
            (None, Ok(())) => last_row(&mut tx, bounded_begin.clone()).await,
            // The last step's connection, which the server ended since: as below.
            (None, Err(e)) if kept => Err(e),
            (None, Err(source)) => {
                return Err(DbError::Query {
                    doing: doing("clearing cached statements"),
                    source,
                }
                .into());
            }
        };
        let row = match row {
            Ok(row) => Ok(row),
            Err(e) if kept => {
                // The last step's connection, which the server ended since: closed, and the
                // step begins on one of the pool's.
                tracing::debug!("the last step's connection could not begin the next: {e}");
                drop(tx.detach());
                tx = self.acquire("beginning a transaction").await?;
                // The pool's connection may hold statements of another run's steps.
                own_statements = 0;
                if tx.cached_statements_size() > 0
                    && let Err(e) = tx.clear_cached_statements().await
                {
                    return Err(DbError::Query {
                        doing: doing("clearing cached statements"),
                        source: e,
                    }
                    .into());
                }
                last_row(&mut tx, bounded_begin.clone()).await
            }
            Err(e) => Err(e),
        }
        .map_err(|source| DbError::Query {
            doing: doing("reading the backend pid and transaction id"),
            source,
        })?;
        let read = || -> Result<(i32, i64), sqlx::Error> { Ok((row.try_get(0)?, row.try_get(1)?)) };
        let (pid, xid) = read().map_err(|source| DbError::Query {
            doing: doing("reading the backend pid and transaction id"),
            source,
        })?;
        let watched_writes_at_begin = if writes_column.is_empty() {
            None
        } else {
            let last = row.columns().len() - 1;
            Some(
                row.try_get::<i64, _>(last)
                    .map_err(|source| DbError::Query {
                        doing: doing("reading the writes to wasmig's tables"),
                        source,
                    })?,
            )
        };
        let begun = if begun_columns.is_empty() {
            None
        } else {
            let read = || -> anyhow::Result<crate::Begun> {
                // After the pid, the transaction id and (under the advisory lock) the step key.
                let first = if step_key.is_empty() { 2 } else { 3 };
                let heads: String = row.try_get(first)?;
                let mut heads: Vec<String> = serde_json::from_str(&heads)?;
                heads.sort();
                Ok(crate::Begun {
                    heads,
                    lock_held: row.try_get(first + 1)?,
                    history: row.try_get(first + 2)?,
                })
            };
            Some(read().map_err(|e| {
                e.context(doing("reading the heads and the lock as the step began"))
            })?)
        };
        let wire = self.relay.wire(pid);
        let tags = wire.as_ref().map_or(0, |w| w.transaction_tags());
        Ok(PgSession {
            own_lock_wait_ms: self.lock_settings.wait.as_millis().max(1000),
            begin,
            begin_next: false,
            wire,
            tags,
            conn: Some(tx),
            own_statements,
            release_pending: false,
            records_inline: false,
            kept: self.kept.clone(),
            lazy_commit: false,
            prelude: None,
            unflushed: self.unflushed.clone(),
            written: RunWrites::default(),
            run_writes: self.run_writes.clone(),
            canceller: Arc::new(PgCanceller {
                pool: self.pool.clone(),
                pid,
            }),
            cursors_opened: 0,
            xid,
            watched_writes_at_begin,
            store: VersionStore::new(Dialect::Postgres, Some(self.schema.clone())),
            lock_holder: holder,
            table_oids,
            begun,
            policy: Policy::TRUSTED,
            role: self.role.clone(),
            in_role: false,
        })
    }
}

impl PgSession {
    /// The fence: the tamper check (`bookkeeping::tamper_check`), then a statement that
    /// fails with [`LOCK_LOST_STATE`] unless the session that
    /// took the migration lock still holds it. Run in the step's own transaction before it
    /// writes wasmig's tables, so a run whose lock was taken from it (its control connection
    /// ended by a migration, say) records nothing: another run may hold the lock now. Every
    /// name is qualified, so the migration's `search_path` cannot answer in its stead. Empty
    /// when no lock is held (nothing to fence).
    pub(super) fn fence(&self) -> String {
        let tables: Vec<String> = PRESENT.iter().map(|t| self.version_table(t)).collect();
        let check = super::bookkeeping::tamper_check(
            &tables,
            self.table_oids.as_ref(),
            self.watched_writes_at_begin,
        );
        let Some(holder) = &self.lock_holder else {
            return check;
        };
        format!(
            "{check}DO $$ BEGIN IF NOT {held} THEN \
             RAISE EXCEPTION 'wasmig: the migration lock is no longer held by this run' \
             USING ERRCODE = '{LOCK_LOST_STATE}'; END IF; END $$;\n",
            held = holder.held(true),
        )
    }

    /// The checks of [`PgSession::guard`] as SQL booleans, for the statement that records a
    /// step ([`VersionStore::guarded_finish`]); `None` where that statement cannot make them
    /// all: before the run knows its tables' oids, or while the migration's role is on
    /// (leaving it, and the server's word that the migration did not leave it first, take
    /// statements of their own).
    fn checks(&self) -> Option<Checks> {
        if self.in_role {
            return None;
        }
        let known = self.table_oids.as_ref()?;
        // What changes from step to step (the transaction's id, the writes counted as it
        // began) is a parameter; the rest is the run's.
        let mut params = vec![Param::Int(self.xid)];
        let writes_at_begin = self.watched_writes_at_begin.map(|n| {
            params.push(Param::Int(n));
            "$c2"
        });
        Some(Checks {
            transaction: "pg_catalog.txid_current() OPERATOR(pg_catalog.=) $c1".to_owned(),
            lock: self
                .lock_holder
                .as_ref()
                .map_or_else(|| "true".to_owned(), |h| h.held(true)),
            tables: super::bookkeeping::tables_look_plain(known, writes_at_begin),
            params,
        })
    }

    /// [`Session::finish_step`] in one round trip (see [`PgSession::checks`]), or `None`
    /// where its checks cannot be made in the statement: the caller takes the long way.
    ///
    /// The statement runs in a savepoint: when it fails (a rewrite rule on a version table,
    /// a view in a table's place: tampering its checks would have named), the savepoint is
    /// rolled back and the guard runs on its own, to say which.
    async fn finish_in_one(&mut self, finished: &FinishedStep<'_>) -> Option<anyhow::Result<bool>> {
        let checks = self.checks()?;
        // A transaction a statement ended (the connection idle): the guard would say so,
        // and a savepoint cannot even be made.
        if self.wire.as_ref().is_some_and(|w| w.status() == Some(b'I')) {
            return Some(Ok(false));
        }
        let doing = format!("recording {}", finished.record.revision);
        let statement = self.store.guarded_finish(finished, &checks);
        let prepare = self.prepares_record();
        // What the script's message already sent ([`Prelude`]), when nothing was sent
        // since; else wasmig's own limits in a message of their own, before the record:
        // the server arms a message's statement timeout as it begins, with the value in
        // force then, and a migration's `SET statement_timeout = '1ms'` would otherwise be
        // armed while the long record is parsed (cancelled "due to user request" once the
        // timer, fired, finds itself switched off). With them, when the record is to run
        // prepared, the server's word on the statements prepared on the session
        // ([`PREPARED_BY_SQLX`]).
        let prelude = self.prelude.take().filter(|prelude| {
            prepare
                && self
                    .wire
                    .as_ref()
                    .is_some_and(|w| w.ready() == prelude.ready)
        });
        let own = if let Some(prelude) = prelude {
            Ok(prelude.intact)
        } else if prepare {
            let own = format!(
                "SAVEPOINT {FINISH_SAVEPOINT}; {OWN_LIMITS}{}{PREPARED_BY_SQLX}",
                self.record_limits()
            );
            match last_row(self.conn(), own).await {
                Ok(row) => Ok(self.own_statements_intact(&row).unwrap_or(false)),
                Err(e) => Err(e),
            }
        } else {
            let own = format!(
                "SAVEPOINT {FINISH_SAVEPOINT}; {OWN_LIMITS}{}",
                self.record_limits()
            );
            let own = sqlx::raw_sql(AssertSqlSafe(own)).execute(self.conn()).await;
            own.map(|_| false)
        };
        let recorded = match own {
            Err(e) => Err(e),
            Ok(intact) => {
                if prepare && !intact {
                    // A statement of sqlx's name made by SQL, or one of sqlx's gone: sqlx's
                    // cache no longer says what runs under its names. Forgotten, and the
                    // record goes inline this time.
                    tracing::debug!("sqlx's prepared statements were changed: recording inline");
                    self.own_statements = 0;
                    if let Err(e) = self.forget_statements().await {
                        return Some(Err(DbError::Query {
                            doing,
                            source: sqlx::Error::Protocol(e.message),
                        }
                        .into()));
                    }
                }
                if intact {
                    self.fetch_prepared(&statement).await.inspect(|_| {
                        self.release_pending = true;
                    })
                } else {
                    self.record_inline(&statement).await
                }
            }
        };
        let rows = match recorded {
            Ok(rows) => rows,
            Err(source) => {
                let rolled_back = self
                    .run_script(format!("ROLLBACK TO SAVEPOINT {FINISH_SAVEPOINT}"))
                    .await;
                if let Some(wire) = &self.wire {
                    self.tags = wire.transaction_tags();
                }
                if rolled_back.is_ok() {
                    match self.guard(&doing, true).await {
                        Ok(true) => {}
                        other => return Some(other),
                    }
                    // A record refused by wasmig's own constraints (the head it adds, which
                    // the step's SQL inserted already) is the step's writing, as the
                    // record's own count would have said.
                    if let Some(expected) = finished.expected {
                        let (store, d) = self.books();
                        let revision = finished.record.revision;
                        if let Err(e) = store.check_unwritten(d, revision, expected).await
                            && e.is::<crate::RowsWritten>()
                        {
                            return Some(Err(e));
                        }
                    }
                }
                return Some(Err(write_error(source, doing)));
            }
        };
        Some(match self.store.guarded_outcome(finished, &rows) {
            Ok(None) => {
                if let Some(row) = rows.first() {
                    self.written.recorded(row);
                }
                Ok(true)
            }
            Ok(Some(Refused::TransactionEnded)) => Ok(false),
            Ok(Some(Refused::LockLost)) => Err(LockLost.into()),
            // The cheap look saw a flag: the full check names the tampering, or finds none
            // (a stale flag) and the step is recorded the long way.
            Ok(Some(Refused::TablesFlagged)) => self.finish_long_way(finished).await,
            Err(e) => Err(e),
        })
    }

    /// [`Session::finish_step`] the long way: the guard in a message of its own, then the
    /// record (`crate::guard_then_finish`, keeping what the record wrote).
    async fn finish_long_way(&mut self, finished: &FinishedStep<'_>) -> anyhow::Result<bool> {
        let doing = format!("recording {}", finished.record.revision);
        if !self.guard(&doing, true).await? {
            return Ok(false);
        }
        let row = {
            let (store, d) = self.books();
            store.finish_step(d, finished).await?
        };
        self.written.recorded(&row);
        Ok(true)
    }

    /// The record by the simple query protocol, its values written into its text
    /// (`bookkeeping::inline_binding_large`), the savepoint released in the same message;
    /// a large artifact bound, by the extended protocol, as an unnamed statement.
    async fn record_inline(
        &mut self,
        statement: &StoreStatement,
    ) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        let (sql, bound) = super::bookkeeping::inline_binding_large(statement)?;
        let columns = &statement.columns;
        if bound.is_empty() {
            let sql = format!("{sql}; RELEASE SAVEPOINT {FINISH_SAVEPOINT}");
            return super::bookkeeping::fetch_text(self.conn(), sql, columns).await;
        }
        let conn = self.conn();
        let rows = super::bookkeeping::fetch_inlined(conn, sql, &bound, columns).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "RELEASE SAVEPOINT {FINISH_SAVEPOINT}"
        )))
        .execute(&mut *conn)
        .await?;
        Ok(rows)
    }

    /// Whether the server's count of [`PREPARED_BY_SQLX`] (a row of two counts) says that
    /// every statement under sqlx's names is one sqlx prepared by the protocol and still
    /// there: none was made by SQL (`PREPARE sqlx_s_1 AS …` after `DEALLOCATE`, which would
    /// answer for wasmig's record), none is missing.
    fn own_statements_intact(&mut self, row: &sqlx::postgres::PgRow) -> Result<bool, sqlx::Error> {
        let by_sql: i64 = row.try_get(0)?;
        let by_protocol: i64 = row.try_get(1)?;
        let cached = self.conn().cached_statements_size();
        Ok(by_sql == 0 && usize::try_from(by_protocol).ok() == Some(cached))
    }

    /// For a session in an aborted transaction block, which answers nothing: whether the
    /// step's transaction was not committed behind wasmig's back (a `COMMIT` and then a
    /// `BEGIN` the check did not see), as the server's commit log says, asked on another
    /// connection. The failure that aborted the block made our id `aborted` already; a
    /// statement that committed it made it `committed`. (A statement that rolled it back
    /// and began another leaves it `aborted` too: nothing of it stands either way.)
    async fn not_committed_elsewhere(&self) -> Result<bool, DbError> {
        let status: Option<String> = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT pg_catalog.txid_status({})",
            self.xid
        )))
        .fetch_one(&self.canceller.pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|source| DbError::Query {
            doing: "checking the transaction id".into(),
            source,
        })?;
        Ok(status.as_deref() != Some("committed"))
    }

    /// Rolls back to the savepoint `name` (a valid name) and releases it. Its `ROLLBACK`
    /// tag, if it got that far, is wasmig's own, not a statement's ending the transaction:
    /// counted as seen, whether or not the rollback succeeded.
    async fn undo_savepoint(&mut self, name: &str) -> SqlResult<()> {
        let done = self
            .run_script(format!(
                "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
            ))
            .await;
        if let Some(wire) = &self.wire {
            self.tags = wire.transaction_tags();
        }
        done
    }

    /// How many exchanges (each ended by a `ReadyForQuery`) the relay saw on this session's
    /// connection so far; `None` when it does not pass through the relay.
    #[cfg(test)]
    pub(super) fn exchanges(&self) -> Option<u64> {
        self.wire.as_ref().map(|w| w.ready())
    }

    /// Whether the step's record runs as a statement kept prepared on the session: under
    /// the advisory lock only, which holds a server session of its own (no pooler in
    /// transaction mode between), where a statement prepared in one step is still there in
    /// the next.
    fn prepares_record(&self) -> bool {
        !self.records_inline
            && self
                .lock_holder
                .as_ref()
                .is_some_and(super::lease_lock::Holder::is_session)
    }

    /// What [`Session::batch_then_record`] sends after a script, in its message: wasmig's
    /// own limits first (the statement timeout the script set, armed for each statement
    /// of a message as it begins, then holds only that `SET`; the message itself was read
    /// under the step's own), the record's savepoint, and [`PREPARED_BY_SQLX`].
    ///
    /// It begins a statement of its own whatever the script's end (a line break ends a
    /// `--` comment, the `;` a statement left open), and holds nothing that could end a
    /// string, identifier or comment the script left open without opening another: no
    /// `$`, `"`, `\`, `*/`, and its quotes in pairs. A script left open that way makes
    /// the whole message fail to parse, before anything of it runs.
    pub(super) fn prelude_suffix(&self) -> String {
        format!(
            "\n;{OWN_LIMITS}SAVEPOINT {FINISH_SAVEPOINT}; {}{PREPARED_BY_SQLX}",
            self.record_limits()
        )
    }

    /// `RELEASE SAVEPOINT` of the record, to begin the next message wasmig sends, when a
    /// prepared record left it ([`PgSession::release_pending`]); else nothing.
    fn take_release(&mut self) -> String {
        if std::mem::take(&mut self.release_pending) {
            format!("RELEASE SAVEPOINT {FINISH_SAVEPOINT}; ")
        } else {
            String::new()
        }
    }

    /// The statement that begins the next step's transaction in this one's commit
    /// ([`Session::begin_next_in_commit`]), when it may: this transaction's own begin (the
    /// next step's [`PgDatabase::begin_session`] takes it only if it would send the same),
    /// not under a lease (whose pooler may hand the server session to another client
    /// between transactions), and with no statement in sqlx's cache but wasmig's own
    /// record (any other is closed before a step begins, in a round trip of its own).
    fn next_begin(&mut self) -> Option<String> {
        let under_lease = self.lock_holder.as_ref().is_some_and(|h| !h.is_session());
        let cached = self.conn().cached_statements_size();
        (std::mem::take(&mut self.begin_next) && !under_lease && cached <= self.own_statements)
            .then(|| self.begin.clone())
    }

    /// What wasmig's own statements in this step's transaction set beyond [`OWN_LIMITS`]:
    /// a bounded wait for locks on wasmig's tables ([`PgSession::own_lock_wait_ms`]), and
    /// for the lock (see [`Holder::record_limits`](super::lease_lock::Holder::record_limits)).
    fn record_limits(&self) -> String {
        let lock = self
            .lock_holder
            .as_ref()
            .map_or_else(String::new, super::lease_lock::Holder::record_limits);
        format!(
            "SET LOCAL lock_timeout = '{}ms'; {lock}",
            self.own_lock_wait_ms
        )
    }

    pub(super) fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("the connection is held until commit or rollback")
    }

    /// Ends the transaction with `end` (`COMMIT` or `ROLLBACK`) and returns the connection
    /// to the pool; a connection that failed is closed instead.
    async fn end(mut self: Box<Self>, end: &'static str, doing: &str) -> anyhow::Result<()> {
        // Under a lease (a pooler in transaction mode, maybe), the statements sqlx prepared
        // go while the transaction still holds its server session: after it ends, the next
        // message may reach another session, whose statements of the same names are another
        // client's.
        if self.lock_holder.as_ref().is_some_and(|h| !h.is_session())
            && let Err(e) = self.forget_statements().await
        {
            tracing::debug!("closing the statements prepared in the step: {}", e.message);
        }
        if end == "COMMIT" {
            return self.commit_and_reset().await;
        }
        let result = sqlx::raw_sql(end).execute(self.conn()).await;
        let conn = self.conn.take().expect("held until the end");
        match result {
            Ok(_) => {
                drop(conn);
                Ok(())
            }
            Err(source) => {
                // The server ended the transaction (a failed COMMIT rolls back), but a
                // connection whose end failed is not trusted with the next step.
                drop(conn.detach());
                Err(DbError::Query {
                    doing: doing.into(),
                    source,
                }
                .into())
            }
        }
    }

    /// `COMMIT`, and in the same message the session's reset ([`super::RESET_SESSION`]),
    /// which then runs outside the transaction as the pool's would: the connection is kept
    /// for the next step ([`PgDatabase::kept`]) with nothing of this step's session on it.
    /// (Sent before the next step's `BEGIN` instead, the reset would share that step's
    /// transaction, begun with this step's `default_transaction_isolation` or
    /// `default_transaction_read_only` still set.) A reset that fails after the commit
    /// closes the connection; the step stays committed.
    ///
    /// When the next step begins at once ([`Session::begin_next_in_commit`],
    /// [`PgSession::next_begin`]), the same message then begins its transaction, with the
    /// statement [`PgDatabase::begin_session`] would send, and the connection is kept with
    /// the row it read. The reset then runs in a transaction of its own, begun and committed
    /// explicitly: in a message of several statements, a `BEGIN` would turn the implicit
    /// transaction the reset runs in into its own (so the next step's transaction would
    /// hold the reset), and a `COMMIT` of an implicit transaction warns "there is no
    /// transaction in progress", which the server logs (it did, once a step, in the
    /// database's log). The begin's select
    /// waits for a lock no longer than [`EARLY_BEGIN_LOCK_WAIT`] (then put back to the
    /// default for the step): it must not hold up the report of this commit.
    ///
    /// The commit's durability is wasmig's to say, set in the same message where no
    /// statement of the migration can change it afterwards: `synchronous_commit` off for a
    /// lazy commit ([`Session::commit_lazily`]), else the default of the database and role
    /// (whatever the migration `SET`), which waits for the log to reach the disk, and with
    /// it every lazy commit before it: the server writes its log in order.
    async fn commit_and_reset(mut self: Box<Self>) -> anyhow::Result<()> {
        let durability = if self.lazy_commit { "off" } else { "DEFAULT" };
        let release = self.take_release();
        let next = self.next_begin();
        let reset_sql = super::RESET_SESSION;
        // The deferred triggers and constraints the COMMIT fires are the migration's work:
        // with a `role`, they run as it, not as the role wasmig switched back to for its
        // record (a deferred constraint trigger would otherwise run a migration's function
        // with the connecting role's rights).
        let role = self.role.as_deref().map_or_else(String::new, |role| {
            format!("SET LOCAL ROLE {}; ", super::role::quoted(role))
        });
        // The deferred checks the COMMIT fires wait for locks without limit, as they did
        // under wasmig's own limits ([`OWN_LIMITS`]) before the record's bounded wait for
        // locks on wasmig's tables ([`PgSession::record_limits`]): that bound is wasmig's,
        // not the migration's.
        let sql = match next.as_deref() {
            None => {
                format!(
                    "{release}SET LOCAL synchronous_commit TO {durability}; SET LOCAL lock_timeout = 0; {role}COMMIT; {reset_sql}"
                )
            }
            Some(begin) => {
                let select = begin.strip_prefix("BEGIN; ").unwrap_or(begin);
                format!(
                    "{release}SET LOCAL synchronous_commit TO {durability}; SET LOCAL lock_timeout = 0; {role}COMMIT; \
                     BEGIN; {reset_sql}; COMMIT; \
                     BEGIN; SET LOCAL lock_timeout = '{EARLY_BEGIN_LOCK_WAIT}'; {select}; \
                     SET LOCAL lock_timeout TO DEFAULT"
                )
            }
        };
        let mut last = None;
        let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(self.conn());
        // The first results are the RELEASE's (if any), the SETs' and the COMMIT's.
        let mut committed = Ok(());
        for _ in 0..(3 + usize::from(!release.is_empty()) + usize::from(!role.is_empty())) {
            if let Err(source) = results.try_next().await {
                committed = Err(source);
                break;
            }
        }

        let reset = match &committed {
            Ok(()) => loop {
                match results.try_next().await {
                    Ok(Some(sqlx::Either::Right(row))) => last = Some(row),
                    Ok(Some(sqlx::Either::Left(_))) => {}
                    Ok(None) => break true,
                    Err(e) => {
                        tracing::debug!(
                            "resetting the session (and beginning the next step's transaction, if asked) after a commit: {e}"
                        );
                        break false;
                    }
                }
            },
            Err(_) => false,
        };
        drop(results);
        if committed.is_ok() {
            // A lazy commit waits for a later one (or `Database::flush`); any other wrote
            // the log to disk up to itself.
            self.unflushed
                .store(self.lazy_commit, std::sync::atomic::Ordering::SeqCst);
            let written = std::mem::take(&mut self.written);
            if let Ok(mut run) = self.run_writes.lock() {
                run.committed(self.xid, written);
            }
        }
        let conn = self.conn.take().expect("held until the end");
        match committed {
            Ok(()) if reset => {
                // Kept for the next step; to the pool if one is kept already.
                // The message's last row is the next step's begin's: it ran whole.
                let begun = next.zip(last);
                match self.kept.lock() {
                    Ok(mut kept) if kept.is_none() => {
                        *kept = Some(super::KeptConnection {
                            conn,
                            own_statements: self.own_statements,
                            begun,
                            wire: self.wire.clone(),
                        });
                    }
                    // One is kept already: this one goes to the pool, never with the
                    // next step's transaction open (the pool's reset runs inside one).
                    _ if begun.is_some() => drop(conn.detach()),
                    _ => drop(conn),
                }
                Ok(())
            }
            Ok(()) => {
                drop(conn.detach());
                Ok(())
            }
            Err(source) => {
                // The server ended the transaction (a failed COMMIT rolls back), but a
                // connection whose end failed is not trusted with the next step.
                drop(conn.detach());
                // An error the server raised for what the step did (not a lost
                // connection) is the migration's.
                if let sqlx::Error::Database(_) = &source
                    && !crate::ended_by_server(&source)
                {
                    return Err(
                        crate::CommitRefused(Box::new(super::codec::sql_error(source))).into(),
                    );
                }
                Err(DbError::Query {
                    doing: "committing the transaction".into(),
                    source,
                }
                .into())
            }
        }
    }

    /// Refuses with `WASMIG-STATE` unless the session reads literals the standard way
    /// (`standard_conforming_strings` on, as wasmig pins it and the migration may have
    /// changed where no parser sees).
    async fn standard_strings(&mut self) -> SqlResult<()> {
        let on: bool = sqlx::raw_sql(
            "SELECT pg_catalog.current_setting('standard_conforming_strings') \
             OPERATOR(pg_catalog.=) 'on'",
        )
        .fetch_one(self.conn())
        .await
        .and_then(|row| row.try_get(0))
        .map_err(sql_error)?;
        if on {
            return Ok(());
        }
        Err(SqlError::wasmig(
            "STATE",
            "standard_conforming_strings is off in this session (the migration switched it off), and wasmig checks a script this large only as the server reads it with the setting on; switch it back on or send smaller scripts",
        ))
    }

    /// What a migration's script goes through before it is sent (`batch` and its kin): the
    /// statement check, the migration's role, and for a large script, whose statements
    /// were split by the standard reading of literals (`pg_parse`), the server's word that
    /// it reads them that way too (a short one was judged whole under both readings,
    /// whatever the session's setting).
    async fn before_script(&mut self, script: &str) -> SqlResult<()> {
        tx_control::check(script, Dialect::Postgres, &self.policy)?;
        self.enter_role().await?;
        if crate::pg_parse::split_first(script) {
            self.standard_strings().await?;
        }
        Ok(())
    }

    /// Runs a script as [`Self::run_script`] does (one message), and returns the rows each
    /// statement affected, in order, as the server reported them.
    async fn run_script_counted(&mut self, script: String) -> SqlResult<Vec<u64>> {
        let mut counts = Vec::new();
        let mut results = sqlx::raw_sql(AssertSqlSafe(script)).fetch_many(self.conn());
        while let Some(item) = results.try_next().await.map_err(sql_error)? {
            if let sqlx::Either::Left(done) = item {
                counts.push(done.rows_affected());
            }
        }
        Ok(counts)
    }

    /// Runs a parameterless script through the simple query protocol, in one message.
    pub(super) async fn run_script(&mut self, script: String) -> SqlResult<()> {
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

    /// Runs a query and hands its rows to `sink` as they arrive, within the result budget
    /// (`query`, `query-columns`). Returns the result's columns.
    async fn query_into(
        &mut self,
        sql: &str,
        params: &[Value],
        sink: &mut (impl ResultSink + Send),
    ) -> SqlResult<Vec<Column>> {
        tx_control::check(sql, Dialect::Postgres, &self.policy)?;
        self.enter_role().await?;
        let bound = Bound::new(params, None)?;
        let sql = sql_str(sql);
        let mut bytes = 0;
        if changes_schema(sql.as_str()) {
            // Not prepared (its result shape is the server's to say), and read within the
            // budget like any result: a migration choosing this path with a comment gains
            // nothing.
            let mut plan = None;
            let mut stream = sqlx::query_with(sql, bound.args)
                .persistent(false)
                .fetch(self.conn());
            while let Some(row) = stream.try_next().await.map_err(sql_error)? {
                let plan = match &mut plan {
                    Some(plan) => plan,
                    None => {
                        let first = Plan::new(row.columns())?;
                        sink.start(&first)?;
                        plan.insert(first)
                    }
                };
                bytes += sink.row(plan, &row)?;
                if bytes > crate::MAX_RESULT_BYTES {
                    return Err(crate::result_too_big());
                }
            }
            drop(stream);
            self.forget_statements().await?;
            return Ok(plan.map(|p| p.columns).unwrap_or_default());
        }
        let statement = self
            .prepare_checked(&sql, &bound.types)
            .await
            .map_err(sql_error)?;
        // Refuse an unreadable column before running the statement, so a refused query
        // has no effect (think `UPDATE … RETURNING interval_column`).
        let plan = Plan::new(statement.columns())?;
        sink.start(&plan)?;
        // Decoded as the rows arrive, within the budget: a guest asking for more than the
        // host should hold gets an error, not the host's memory.
        let mut stream = sqlx::query_with(sql, bound.args).fetch(self.conn());
        while let Some(row) = stream.try_next().await.map_err(sql_error)? {
            bytes += sink.row(&plan, &row)?;
            if bytes > crate::MAX_RESULT_BYTES {
                return Err(crate::result_too_big());
            }
        }
        Ok(plan.columns)
    }

    /// Sends `COPY ... FROM STDIN` data, checked and encoded whole already.
    async fn copy_data(&mut self, statement: &str, data: Vec<u8>) -> SqlResult<u64> {
        self.enter_role().await?;
        let mut copying = self
            .conn()
            .copy_in_raw(statement)
            .await
            .map_err(sql_error)?;
        // Dropped unfinished (a failed send), the copy is aborted with CopyFail.
        copying.send(data).await.map_err(sql_error)?;
        copying.finish().await.map_err(sql_error)
    }
}

#[async_trait]
impl GuestSql for PgSession {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn canceller(&self) -> Arc<dyn Canceller> {
        self.canceller.clone()
    }

    async fn settle(&mut self) {
        // A Sync, then everything up to its ReadyForQuery: what the failed call left (its
        // own ReadyForQuery, and an error the relay sent after sqlx stopped reading, which
        // fails the first attempt) is read with it.
        for _ in 0..2 {
            if self.conn().ping().await.is_ok() {
                return;
            }
        }
    }

    fn set_policy(&mut self, policy: Policy) {
        // With a role set, statements that leave it are refused in every mode.
        self.policy = policy.with_role(self.role.as_deref());
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        tx_control::check(sql, Dialect::Postgres, &self.policy)?;
        self.enter_role().await?;
        let bound = Bound::new(params, None)?;
        self.execute_bound(sql, bound).await
    }

    async fn execute_columns(&mut self, sql: &str, values: &[ColumnValues]) -> SqlResult<u64> {
        tx_control::check(sql, Dialect::Postgres, &self.policy)?;
        self.enter_role().await?;
        let bound = Bound::columns(values)?;
        self.execute_bound(sql, bound).await
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<QueryResult> {
        let mut rows = RowSink::default();
        let columns = self.query_into(sql, params, &mut rows).await?;
        Ok(QueryResult {
            columns,
            rows: rows.rows,
        })
    }

    async fn query_columns(&mut self, sql: &str, params: &[Value]) -> SqlResult<ColumnResult> {
        let mut sink = ColumnSink::default();
        let columns = self.query_into(sql, params, &mut sink).await?;
        Ok(ColumnResult {
            columns,
            rows: u32::try_from(sink.rows)
                .map_err(|_| SqlError::wasmig("DECODE", "the result has more than 2^32 rows"))?,
            values: sink
                .builders
                .into_iter()
                .map(ColumnBuilder::finish)
                .collect(),
        })
    }

    async fn batch(&mut self, script: &str) -> SqlResult<()> {
        self.before_script(script).await?;
        self.run_script(script.to_owned()).await?;
        // A script is where migrations put their DDL.
        self.forget_statements().await
    }

    async fn batch_counted(&mut self, script: &str) -> SqlResult<Vec<u64>> {
        self.before_script(script).await?;
        let counts = self.run_script_counted(script.to_owned()).await?;
        self.forget_statements().await?;
        Ok(counts)
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> SqlResult<u64> {
        tx_control::check(sql, Dialect::Postgres, &self.policy)?;
        self.enter_role().await?;
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
        // Held to the revision's capabilities (a write) like any statement.
        tx_control::check_own_copy(&statement, &self.policy)?;
        // Encoded (and validated) whole before COPY begins: a malformed value fails the call
        // before the server saw any of it.
        let data = copy::pg_copy_data(rows, columns.len())?;
        if rows.is_empty() {
            return Ok(0);
        }
        self.copy_data(&statement, data).await
    }

    async fn copy_in_columns(
        &mut self,
        table: &str,
        columns: &[String],
        values: &[ColumnValues],
    ) -> SqlResult<u64> {
        let statement = format!("COPY {} FROM STDIN", copy::target(table, columns)?);
        tx_control::check_own_copy(&statement, &self.policy)?;
        // Checked and encoded whole before COPY begins, as for `copy_in`.
        let data = copy::pg_copy_columns(values, columns.len())?;
        if data.is_empty() {
            return Ok(0);
        }
        self.copy_data(&statement, data).await
    }

    async fn open_cursor(&mut self, sql: &str, params: &[Value]) -> SqlResult<CursorState> {
        tx_control::check(sql, Dialect::Postgres, &self.policy)?;
        self.enter_role().await?;
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
        let mut stream = sqlx::query_with(
            sql_str(&format!("FETCH FORWARD {wanted} FROM {name}")),
            PgArguments::default(),
        )
        .persistent(false)
        .fetch(self.conn());
        let mut decoded = Vec::new();
        let mut plan: Option<Plan> = None;
        let mut bytes = 0;
        while let Some(row) = stream.try_next().await.map_err(sql_error)? {
            let plan = match &plan {
                Some(plan) => plan,
                None => plan.insert(Plan::new(row.columns())?),
            };
            let values = plan.decode(&row)?;
            bytes += crate::result_bytes(&values);
            if bytes > crate::MAX_RESULT_BYTES {
                return Err(crate::result_too_big());
            }
            decoded.push(values);
        }
        drop(stream);
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
        // Switched before the savepoint, so that rolling back to it keeps the role.
        self.enter_role().await?;
        self.run_script(format!("SAVEPOINT {}", crate::savepoint_name(name)?))
            .await
    }

    async fn release_savepoint(&mut self, name: &str) -> SqlResult<()> {
        self.run_script(format!(
            "RELEASE SAVEPOINT {}",
            crate::savepoint_name(name)?
        ))
        .await
    }

    async fn rollback_to_savepoint(&mut self, name: &str) -> SqlResult<()> {
        // (The check after the guest's previous call found no transaction control other
        // than this rollback's own.)
        self.undo_savepoint(crate::savepoint_name(name)?).await?;
        // The rollback may have undone DDL that cached statements were prepared against.
        self.forget_statements().await
    }
}

#[async_trait]
impl Session for PgSession {
    fn begun(&self) -> Option<&crate::Begun> {
        self.begun.as_ref()
    }

    fn transaction_ended(&self) -> bool {
        self.wire
            .as_ref()
            .is_some_and(|wire| wire.status() == Some(b'I') || wire.transaction_tags() != self.tags)
    }

    async fn batch_then_record(&mut self, script: &str) -> SqlResult<()> {
        self.before_script(script).await?;
        // Only where the record will take it: prepared, its checks in its statement (not
        // in the migration's role), the relay there to say that nothing came between.
        let wire = self.wire.clone();
        let Some(wire) = wire.filter(|_| self.prepares_record() && self.checks().is_some()) else {
            self.run_script(script.to_owned()).await?;
            return self.forget_statements().await;
        };
        let message = format!("{script}{}", self.prelude_suffix());
        let row = last_row(self.conn(), message).await.map_err(sql_error)?;
        let intact = self.own_statements_intact(&row).unwrap_or(false);
        // A script is where migrations put their DDL.
        self.forget_statements().await?;
        self.prelude = Some(Prelude {
            intact,
            ready: wire.ready(),
        });
        Ok(())
    }

    async fn transaction_intact(&mut self) -> anyhow::Result<bool> {
        let query_error = |source| DbError::Query {
            doing: "checking the transaction id".into(),
            source,
        };
        // Through the relay, the server's own status of the session first, brought up to
        // date by a `Sync` (a round trip with no SQL in it: the `ReadyForQuery` that ended
        // the failed statement may not have been read yet, since the server sends an error
        // before it, at once). Outside any transaction, a statement ended ours; in an
        // aborted block, a select would only add "current transaction is aborted" to the
        // server's log, once per failed step, so the commit log is asked directly.
        if let Some(wire) = self.wire.clone() {
            self.conn().ping().await.map_err(query_error)?;
            match wire.status() {
                Some(b'I') => return Ok(false),
                Some(b'E') => return self.not_committed_elsewhere().await.map_err(Into::into),
                _ => {}
            }
        }
        let row = match sqlx::raw_sql("SELECT pg_catalog.txid_current()")
            .fetch_one(self.conn())
            .await
        {
            Ok(row) => row,
            // An aborted block (behind a pooler, where the relay is not there to say so).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("25P02") => {
                return self.not_committed_elsewhere().await.map_err(Into::into);
            }
            Err(e) => return Err(query_error(e).into()),
        };
        let xid: i64 = row.try_get(0).map_err(query_error)?;
        Ok(xid == self.xid)
    }

    async fn set_timeouts(
        &mut self,
        lock: Option<Duration>,
        statement: Option<Duration>,
    ) -> anyhow::Result<()> {
        // Both in one message, one round trip. Like SET LOCAL: gone at commit or rollback.
        // `None` restores the default (a second step of one --atomic transaction must not
        // inherit the first's).
        let mut sql = String::new();
        for (name, value) in [("lock_timeout", lock), ("statement_timeout", statement)] {
            sql.push_str(&match value {
                Some(d) => format!("SET LOCAL {name} = '{}ms'; ", d.as_millis().max(1)),
                None => format!("SET LOCAL {name} TO DEFAULT; "),
            });
        }
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map_err(|source| DbError::Query {
                doing: "setting the step's lock_timeout and statement_timeout".into(),
                source,
            })?;
        Ok(())
    }

    async fn reset_session(&mut self) -> SqlResult<()> {
        // sqlx's statements first (wasmig's own too), so that `DEALLOCATE ALL` (a step's
        // own `PREPARE`s) does not leave its cache naming statements that are gone.
        self.own_statements = 0;
        self.records_inline = true;
        self.forget_statements().await?;
        // `SET SESSION AUTHORIZATION DEFAULT` below leaves the migration's role too.
        self.in_role = false;
        let release = self.take_release();
        let reset = format!(
            "{release}CLOSE ALL; RESET ALL; SET SESSION AUTHORIZATION DEFAULT; DEALLOCATE ALL; \
             UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all();
             DO $$ DECLARE found pg_catalog.text; BEGIN
                 SELECT pg_catalog.string_agg(c.relname::pg_catalog.text, ', ') INTO found
                 FROM pg_catalog.pg_class c
                 WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema();
                 IF found IS NOT NULL THEN
                     RAISE EXCEPTION 'the step left temporary objects (%), which the next step of this --atomic run would see; drop them before the revision ends', found
                         USING ERRCODE = '{LEFT_STATE}';
                 END IF;
             END $$;"
        );
        match self.run_script(reset).await {
            Err(e) if e.code == LEFT_STATE => Err(SqlError::wasmig("STATE", e.message)),
            other => other,
        }
    }

    async fn discard_temp(&mut self) -> SqlResult<()> {
        self.run_script("CLOSE ALL; DISCARD TEMP".into()).await
    }

    async fn observe(&mut self) -> anyhow::Result<crate::Observed> {
        // Never after a statement ended the transaction: the reads would run in another.
        if self.transaction_ended() {
            anyhow::bail!("the transaction ended: nothing of it to observe");
        }
        // Read in a savepoint rolled back afterwards, without the migration's timeouts: a
        // read that fails cannot abort the migration's transaction, and nothing of it (its
        // settings, its catalog locks) remains.
        self.run_script(format!("SAVEPOINT {OBSERVE_SAVEPOINT}; {OWN_LIMITS}"))
            .await?;
        let (store, driver) = self.books();
        let observed = store.observe(driver).await;
        self.undo_savepoint(OBSERVE_SAVEPOINT).await?;
        observed
    }

    async fn check_deferred(&mut self) -> SqlResult<()> {
        // Without the migration's timeouts, as the guard and the record run (the session is
        // reset before the next step), but as the migration's role still, which a real
        // run's COMMIT fires them as (`commit_and_reset`). In a savepoint rolled back
        // afterwards: `SET CONSTRAINTS` lasts for the transaction, which a dry run keeps
        // open across its steps, and the next step's deferred constraints would have been
        // checked at once (a valid migration failed, found by the review helper). Rolled
        // back, the mode is the default again and what fired is undone; it fires again at
        // the next step's check, as a real run checks each step at its commit.
        // And whether the migration left the transaction read-only, where a real run's
        // record could not be written (`DbError::left_by_migration`): the same failure.
        // Asked before the deferred triggers fire: a real run records the step before its
        // COMMIT fires them, so what they set then cannot stop the record.
        let checked = last_row(
            self.conn(),
            format!(
                "SAVEPOINT {DEFERRED_SAVEPOINT}; {OWN_TIMEOUTS}\
                 SELECT pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on'; \
                 SET CONSTRAINTS ALL IMMEDIATE"
            ),
        )
        .await
        .and_then(|row| row.try_get::<bool, _>(0))
        .map_err(super::codec::sql_error)
        .and_then(|read_only| {
            if read_only {
                Err(crate::left_read_only("a real run could not write its record"))
            } else {
                Ok(())
            }
        });
        let back = self.undo_savepoint(DEFERRED_SAVEPOINT).await;
        checked?;
        back
    }

    fn books(&mut self) -> (&VersionStore, &mut dyn Driver) {
        let conn = self
            .conn
            .as_deref_mut()
            .expect("the connection is held until commit or rollback");
        (&self.store, conn)
    }

    async fn guard(&mut self, doing: &str, intact: bool) -> anyhow::Result<bool> {
        // Only a step's record guards with `intact`; any other guarded write of wasmig's
        // tables returns nothing to compare after the run.
        if !intact {
            self.written.unaccounted();
        }
        // One simple-query message, one round trip, with nothing in it the migration wrote:
        // the transaction's identity first (`transaction_intact` compares the same id), so
        // that when a statement ended wasmig's transaction the message fails before the
        // rest; then the lock fence and the tamper check.
        let mut script = String::new();
        if intact {
            script = format!(
                "DO $$ BEGIN IF pg_catalog.txid_current() OPERATOR(pg_catalog.<>) {xid} THEN \
                 RAISE EXCEPTION 'wasmig: the transaction is not the one begun' \
                 USING ERRCODE = '{TRANSACTION_ENDED_STATE}'; END IF; END $$;\n",
                xid = self.xid,
            );
        }
        script.push_str(&self.fence());
        if script.is_empty() && !self.in_role {
            return Ok(true);
        }
        // wasmig's statements run as the role it connected as, not the migration's, and
        // under its own limits: set in a message of their own, so that a short statement
        // timeout the migration set is not armed while the guard is parsed (see
        // `finish_in_one`). Outside a transaction a statement ended, they only warn, and
        // the guard then says so.
        let own = format!("{}{OWN_LIMITS}{}", self.leave_role(), self.record_limits());
        let set = sqlx::raw_sql(AssertSqlSafe(own)).execute(self.conn()).await;
        let guarded = match set {
            Ok(_) => {
                sqlx::raw_sql(AssertSqlSafe(script))
                    .execute(self.conn())
                    .await
            }
            Err(e) => Err(e),
        };
        match guarded {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some(TRANSACTION_ENDED_STATE) =>
            {
                Ok(false)
            }
            Err(source) => Err(write_error(source, doing.to_owned())),
        }
    }

    async fn finish_step(&mut self, finished: &FinishedStep<'_>) -> anyhow::Result<bool> {
        match self.finish_in_one(finished).await {
            Some(done) => done,
            None => self.finish_long_way(finished).await,
        }
    }

    fn commit_lazily(&mut self) {
        self.lazy_commit = true;
    }

    fn begin_next_in_commit(&mut self) {
        self.begin_next = true;
    }

    async fn commit(self: Box<Self>) -> anyhow::Result<()> {
        self.end("COMMIT", "committing the transaction").await
    }

    async fn rollback(self: Box<Self>) -> anyhow::Result<()> {
        self.end("ROLLBACK", "rolling back the transaction").await
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Unfinished: closed, never returned to the pool with a transaction open, and
            // nothing waits for the server.
            drop(conn.detach());
        }
    }
}

/// Runs `sql`, wasmig's own, and returns its last row (the reset before a step's `BEGIN`
/// returns one of its own).
async fn last_row(
    conn: &mut PgConnection,
    sql: String,
) -> Result<sqlx::postgres::PgRow, sqlx::Error> {
    // Streamed: the rows of a migration's script before wasmig's own statement are read
    // and dropped one at a time, as `execute` does, never held together.
    let mut last = None;
    let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(conn);
    while let Some(item) = results.try_next().await? {
        if let sqlx::Either::Right(row) = item {
            last = Some(row);
        }
    }
    last.ok_or(sqlx::Error::RowNotFound)
}

/// Owned SQL text for sqlx (the guest's SQL is as trusted as a migration file).
fn sql_str(sql: &str) -> SqlStr {
    AssertSqlSafe(sql.to_owned()).into_sql_str()
}

/// Whether a statement is DDL that can change the result shape of cached statements:
/// its first keyword (after whitespace and comments) is `CREATE`, `ALTER` or `DROP`.
pub(super) fn changes_schema(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if rest.starts_with("/*") {
            rest = after_block_comment(rest);
        } else {
            break;
        }
    }
    let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// What follows the block comment `text` begins with. PostgreSQL nests block comments
/// (`/* a /* b */ c */` is one comment); an unterminated one runs to the end.
fn after_block_comment(text: &str) -> &str {
    let mut depth = 0usize;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return &text[i..];
                }
            }
            _ => i += 1,
        }
    }
    ""
}

/// Where a query's rows go as they arrive (`PgSession::query_into`).
trait ResultSink {
    /// Once the result's columns are known, before any row (before the statement runs;
    /// with the first row for a statement that changes the schema, so not at all for one
    /// that returns none).
    fn start(&mut self, plan: &Plan) -> SqlResult<()>;

    /// Takes one row; returns about how many bytes it added, for the result budget.
    fn row(&mut self, plan: &Plan, row: &PgRow) -> SqlResult<usize>;
}

/// A result as rows of values (`query`).
#[derive(Default)]
struct RowSink {
    rows: Vec<Vec<Value>>,
}

impl ResultSink for RowSink {
    fn start(&mut self, _plan: &Plan) -> SqlResult<()> {
        Ok(())
    }

    fn row(&mut self, plan: &Plan, row: &PgRow) -> SqlResult<usize> {
        let decoded = plan.decode(row)?;
        let bytes = crate::result_bytes(&decoded);
        self.rows.push(decoded);
        Ok(bytes)
    }
}

/// A result as columns, each row decoded straight into them (`query-columns`).
#[derive(Default)]
struct ColumnSink {
    builders: Vec<ColumnBuilder>,
    rows: usize,
    bytes: usize,
}

impl ResultSink for ColumnSink {
    fn start(&mut self, plan: &Plan) -> SqlResult<()> {
        self.builders = plan.column_builders()?;
        Ok(())
    }

    fn row(&mut self, plan: &Plan, row: &PgRow) -> SqlResult<usize> {
        plan.decode_into(row, &mut self.builders)?;
        self.rows += 1;
        let bytes: usize = self.builders.iter().map(ColumnBuilder::bytes).sum();
        let added = bytes - self.bytes;
        self.bytes = bytes;
        Ok(added)
    }
}

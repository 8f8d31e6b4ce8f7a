//! The MySQL and MariaDB backend (`mysql://` and `mariadb://` URLs): a sqlx pool on one
//! database, sessions on connections of their own, the migration lock as a named lock
//! (`GET_LOCK`), and the translation between the WIT value model and MySQL's types.
//!
//! What these servers guarantee differs from PostgreSQL's, and wasmig says so rather than
//! pretend: DDL (and the other statements the server commits implicitly, see `lex`)
//! cannot run inside a transaction. A script with any of them runs statement by
//! statement, marked failed before it starts and "failed at statement N of M" if one
//! fails (the runner's per-statement path, as `transaction = "none"`); a script of data
//! statements only, and a component, run in one transaction with the step's record, and a
//! component's statement that would commit implicitly is refused before it is sent.
//!
//! One concern per file. This one: [`MySqlDatabase`], the pool, and the [`Database`] impl
//! (the reads of wasmig's tables go through the shared store). Not in this file:
//! - `session`: [`MySqlSession`](session::MySqlSession), its [`GuestSql`] and [`Session`]
//!   impls, and cancelling with `KILL QUERY`;
//! - `named_lock`: the migration lock;
//! - `relay`: the packets the server sends a migration's connection, bounded before sqlx
//!   reads them;
//! - `bookkeeping`: the [`Driver`] of wasmig's tables;
//! - `codec`: binding parameters, decoding cells and mapping errors;
//! - `lex`: statements, transaction control and implicit commits in a script;
//! - `tamper`: what a migration's own SQL did to wasmig's rows, as the server tells it
//!   (row locks on the batch tables in a step's transaction; wasmig's rows and the lock
//!   read back after every statement of a script run statement by statement).
//!
//! [`GuestSql`]: crate::GuestSql
//! [`Driver`]: crate::store::Driver

#![allow(clippy::result_large_err)]

mod bookkeeping;
mod codec;
pub(crate) mod lex;
mod named_lock;
mod relay;
mod session;
mod tamper;

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, MySqlPool, Row as _};

use self::codec::sql_error;
use super::lock::LockGuard;
use super::store::{Reader, VersionStore};
use super::{Database, DatabaseUrl, DbError, Policy, ScriptFailure, Session};
use wasmig_contract::{Dialect, SqlError};

/// Connections in the pool: one session, the version-table reads, a canceller, a spare.
const MAX_CONNECTIONS: u32 = 4;

/// What every connection of wasmig's is set to when it opens: times in UTC, so that a
/// `timestamptz` binds and a `TIMESTAMP` reads as the instant it is.
const CONNECTION_SETTINGS: &str = "SET time_zone = '+00:00'";

/// A MySQL or MariaDB database reached through a small pool.
///
/// wasmig's tables are those of the store (`store::schema`), in the URL's database, with
/// `VARCHAR(255)` keys, `LONGTEXT` texts, `LONGBLOB` bytes and `DATETIME(6)` times in UTC,
/// InnoDB, `utf8mb4` with a binary collation (revision ids compare exactly).
pub(crate) struct MySqlDatabase {
    pool: MySqlPool,
    options: MySqlConnectOptions,
    /// The URL without its password, for messages.
    shown: String,
    /// The named lock's name (see `named_lock`).
    lock_name: String,
    /// The connection id holding the migration lock while this run holds it, else 0: the
    /// fence every step checks before it records.
    holder: Arc<AtomicU64>,
    /// The server is MariaDB (which has `@@in_transaction` and `max_statement_time`), not
    /// MySQL (`max_execution_time`).
    mariadb: bool,
    store: VersionStore,
    /// How long wasmig's own statements wait for a lock another session holds on its
    /// tables, in whole seconds (the run's `--lock-timeout`, at least 1): the pool's
    /// sessions, which run only wasmig's statements, start with it as their
    /// `lock_wait_timeout` and `innodb_lock_wait_timeout`, and a step's guard and record
    /// wait no longer (`MySqlSession::guard`). They give up with error 1205, named as
    /// [`crate::TablesLocked`] by the caller.
    own_wait_secs: u64,
}

/// The session settings of wasmig's own waits for locks ([`MySqlDatabase::own_wait_secs`]).
fn own_waits(secs: u64) -> String {
    format!("SET SESSION lock_wait_timeout = {secs}, innodb_lock_wait_timeout = {secs}")
}

impl MySqlDatabase {
    /// Connects to the URL's database.
    ///
    /// # Errors
    /// [`DbError::InvalidUrl`] without a database name; [`DbError::Connect`] when the
    /// server cannot be reached.
    pub(crate) async fn connect(url: &DatabaseUrl, wait: Duration) -> Result<Self, DbError> {
        let DatabaseUrl::Mysql { url: raw } = url else {
            return Err(DbError::InvalidUrl {
                url: url.to_string(),
                reason: "not a mysql:// URL".into(),
            });
        };
        let shown = url.to_string();
        let connect_error = |source| DbError::Connect {
            url: shown.clone(),
            source,
        };
        // sqlx knows the scheme `mysql://` only; MariaDB speaks the same protocol.
        let sqlx_url = match raw.split_once("://") {
            Some((_, rest)) => format!("mysql://{rest}"),
            None => raw.clone(),
        };
        let options = MySqlConnectOptions::from_str(&sqlx_url).map_err(connect_error)?;
        let Some(database) = options.get_database().map(str::to_owned) else {
            return Err(DbError::InvalidUrl {
                url: shown,
                reason: "no database: wasmig keeps its tables in the URL's database; write mysql://USER@HOST/DATABASE".into(),
            });
        };
        let own_wait_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "{CONNECTION_SETTINGS}; {}",
                        own_waits(own_wait_secs)
                    )))
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&pool)
            .await
            .map_err(connect_error)?;
        Ok(MySqlDatabase {
            pool,
            options,
            shown,
            lock_name: named_lock::name(&database),
            holder: Arc::new(AtomicU64::new(0)),
            mariadb: version.contains("MariaDB"),
            store: VersionStore::new(Dialect::Mysql, None),
            own_wait_secs,
        })
    }

    /// A connection of its own (not pooled), set up as the pool's are: the lock's, and
    /// wasmig's own writes outside a step.
    async fn own_connection(&self) -> Result<MySqlConnection, sqlx::Error> {
        let mut conn = MySqlConnection::connect_with(&self.options).await?;
        sqlx::raw_sql(CONNECTION_SETTINGS)
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }

    /// A connection of its own for migration SQL (a session's, whose settings must not
    /// outlive it, or a script's run statement by statement), through a relay that bounds
    /// what the server sends before sqlx holds it (`relay`), and what the relay cut.
    async fn migration_connection(
        &self,
    ) -> Result<(MySqlConnection, Option<Arc<relay::Cut>>), sqlx::Error> {
        let (mut conn, cut) = relay::connect(&self.options).await?;
        sqlx::raw_sql(CONNECTION_SETTINGS)
            .execute(&mut conn)
            .await?;
        Ok((conn, cut))
    }
}

#[async_trait]
impl Database for MySqlDatabase {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
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
        lock: Option<Duration>,
        statement: Option<Duration>,
    ) -> Result<usize, ScriptFailure> {
        let statements = super::autocommit_statements(script, Dialect::Mysql, policy)?;
        let total = statements.len();
        let failed = |n, e| ScriptFailure {
            statement: n,
            total,
            error: Box::new(e),
        };
        let (mut conn, cut) = self
            .migration_connection()
            .await
            .map_err(|e| failed(0, super::client_error(e)))?;
        let timeouts = session::timeouts(self.mariadb, lock, statement);
        if !timeouts.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(timeouts))
                .execute(&mut conn)
                .await
                .map_err(|e| failed(0, sql_error(e)))?;
        }
        // wasmig's rows as they are now, the revision's failed mark written just before:
        // each statement commits on its own, so what one does to them (its own mark
        // deleted, a checkpoint forged) is seen in the server's tables after it, whatever
        // spelling, procedure or trigger did it.
        let watch = match tamper::Watch::begin(self).await {
            Ok(watch) => watch,
            Err(e) => {
                let _ = conn.close().await;
                return Err(failed(0, SqlError::wasmig("IO", format!("{e:#}"))));
            }
        };
        let id: i64 = match sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
            .fetch_one(&mut conn)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let _ = conn.close().await;
                return Err(failed(0, sql_error(e)));
            }
        };
        for (n, text) in statements.iter().enumerate() {
            // Each statement is committed by wasmig as well: one that turned autocommit off
            // or began a transaction where the lexer cannot see it (`EXECUTE` of a prepared
            // `SET autocommit = 0`) would otherwise leave its work, and the next
            // statements', to be rolled back when the connection closes after the record.
            let ran = {
                let conn_ref = &mut conn;
                let run = async move {
                    match session::run_one(&mut *conn_ref, text).await {
                        Ok(_) => sqlx::raw_sql("COMMIT")
                            .execute(&mut *conn_ref)
                            .await
                            .map(drop)
                            .map_err(sql_error),
                        Err(e) => Err(e),
                    }
                };
                tokio::pin!(run);
                // Watched while it runs too: a statement that erases the mark and then runs
                // on (a procedure's `SLEEP`) must not leave it erased for as long as it
                // runs, for a wasmig killed meanwhile, or another run that took a lock it
                // ended, to find. Once disturbed, the statement is stopped (`KILL QUERY`)
                // and the check after it says what happened.
                let mut tick = tokio::time::interval(tamper::WATCH_EVERY);
                tick.tick().await;
                loop {
                    tokio::select! {
                        ran = &mut run => break ran,
                        _ = tick.tick() => {
                            if watch.disturbed(self).await {
                                let _ = sqlx::raw_sql(AssertSqlSafe(format!("KILL QUERY {id}")))
                                    .execute(&self.pool)
                                    .await;
                                break (&mut run).await;
                            }
                        }
                    }
                }
            };
            let ran = ran.map_err(|e| relay::explained(cut.as_ref(), e));
            // Failed or not: a statement may write wasmig's rows and then fail.
            let watched = watch.after(self, n + 1, total).await;
            if let Err(e) = watched.and(ran) {
                let _ = conn.close().await;
                return Err(failed(n + 1, e));
            }
        }
        let _ = conn.close().await;
        Ok(total)
    }

    async fn lock(&self, timeout: Duration) -> anyhow::Result<Box<dyn LockGuard>> {
        named_lock::take(self, timeout).await
    }

    async fn begin(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(session::MySqlSession::begin(self).await?))
    }

    async fn server_version(&self) -> anyhow::Result<Option<String>> {
        let row = sqlx::raw_sql("SELECT VERSION()")
            .fetch_one(&self.pool)
            .await
            .map_err(|source| DbError::Query {
                doing: "reading the server's version".into(),
                source,
            })?;
        let version: String = row.try_get(0).map_err(|source| DbError::Query {
            doing: "reading the server's version".into(),
            source,
        })?;
        Ok(Some(version))
    }

    async fn tables_locked_by(&self) -> Option<String> {
        // MySQL 8 lists the metadata locks each session holds (`LOCK TABLES`, an open
        // transaction that read or wrote the table) in performance_schema, on by default;
        // MariaDB keeps performance_schema off by default and says nothing of who holds one.
        let found: Result<Option<String>, sqlx::Error> = sqlx::raw_sql(
            "SELECT GROUP_CONCAT(DISTINCT CONCAT('connection ', t.PROCESSLIST_ID, ' (',
                    t.PROCESSLIST_USER, '@', t.PROCESSLIST_HOST, ', holding ', m.LOCK_TYPE,
                    ' on ', m.OBJECT_NAME, ')') ORDER BY t.PROCESSLIST_ID SEPARATOR '; ')
             FROM performance_schema.metadata_locks m
             JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID
             WHERE m.OBJECT_SCHEMA = DATABASE() AND m.OBJECT_NAME LIKE 'wasmig\\_%'
               AND m.LOCK_STATUS = 'GRANTED' AND t.PROCESSLIST_ID <> CONNECTION_ID()",
        )
        .fetch_one(&self.pool)
        .await
        .and_then(|row| row.try_get(0));
        Some(found.ok().flatten().unwrap_or_else(|| {
            "a session the server does not name (MariaDB, or performance_schema off: SHOW PROCESSLIST lists the connections; look for one that holds LOCK TABLES or an open transaction on wasmig's tables)".to_owned()
        }))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

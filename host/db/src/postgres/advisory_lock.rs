//! The PostgreSQL migration lock: a session-level advisory lock on the key of the schema
//! wasmig's tables are in ([`crate::lock::pg_lock_key`]: the pinned [`crate::PG_LOCK_KEY`]
//! in `public`), held on the database's control connection.
//!
//! Owns: one attempt at the lock, naming the session that holds it and the sessions a
//! dead run left working ([`Attempt`]), and releasing it ([`LockGuard`]).
//!
//! Not here: waiting, retrying and the timeout (the backend-neutral `lock::acquire`), or
//! choosing the connection the lock lives on (the `Database::lock` impl in `mod.rs`
//! hands over the control connection and undoes a lock it gave up on).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use super::bookkeeping::lit;
use crate::DbError;
use crate::lock::{Attempt, LockGuard};

/// The `FROM … WHERE` of a query for the sessions granted the advisory lock on the bigint
/// key `$1` in this database, as `l` (pg_locks) and `a` (pg_stat_activity). A bigint key
/// shows in pg_locks as classid = its high 32 bits, objid = its low 32 bits, objsubid = 1.
/// Every name is qualified. A macro, so the queries stay `&'static str`.
macro_rules! holders_of_key {
    () => {
        "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
         WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted
           AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
           AND l.classid OPERATOR(pg_catalog.=) (($1 OPERATOR(pg_catalog.>>) 32) OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid
           AND l.objid OPERATOR(pg_catalog.=) ($1 OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid
           AND l.objsubid OPERATOR(pg_catalog.=) 1"
    };
}
pub(super) use holders_of_key;

/// `SELECT function(key)` for an advisory-lock function and the migration lock's key (see
/// [`crate::lock::pg_lock_key`]), as a simple query (one round trip).
pub(super) fn advisory(function: &str, key: i64) -> String {
    // Qualified: a search_path set for the database or role must not answer instead; the
    // key quoted, since a negative literal would be the unary `-` operator.
    format!("SELECT pg_catalog.{function}('{key}'::pg_catalog.int8)")
}

/// Tries the advisory lock on the control connection.
pub(super) struct PgLockAttempt {
    /// The control connection, held for the attempts (open: checked by [`Database::lock`]).
    ///
    /// [`Database::lock`]: crate::Database::lock
    pub(super) conn: tokio::sync::OwnedMutexGuard<Option<PgConnection>>,
    /// The `application_name` wasmig's sessions use, to find those of a dead run.
    pub(super) application_name: String,
    /// `wasmig_lock`, qualified: a run holding the lease (`lock = "lease"`, or chosen by
    /// `auto` where this run found advisory locks sound) excludes this one too.
    pub(super) lease_table: String,
    /// Set when the last attempt found the lease held: who holds it.
    pub(super) leased_by: Option<String>,
    /// The migration lock's advisory key (of the configured schema).
    pub(super) key: i64,
}

impl PgLockAttempt {
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("checked open before the first attempt")
    }

    /// Who holds the lease in `wasmig_lock` (which exists), if its lease is unexpired.
    async fn lease_holder(&mut self) -> anyhow::Result<Option<String>> {
        let query = |source| DbError::Query {
            doing: format!("looking for a run under the lease ({})", crate::LOCK_TABLE),
            source,
        };
        let sql = format!(
            "BEGIN; SELECT owner, token FROM {} WHERE id OPERATOR(pg_catalog.=) 1 \
             AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() FOR SHARE; COMMIT",
            self.lease_table
        );
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_optional(self.conn())
            .await
            .and_then(|row| {
                row.map(|row| -> Result<(String, i64), sqlx::Error> {
                    Ok((row.try_get(0)?, row.try_get(1)?))
                })
                .transpose()
            });
        match row {
            Ok(row) => {
                Ok(row
                    .map(|(owner, token)| format!("{owner} (under the lease lock, lease {token})")))
            }
            Err(source) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(self.conn()).await;
                Err(query(source).into())
            }
        }
    }
}

#[async_trait]
impl Attempt for PgLockAttempt {
    async fn try_lock(&mut self) -> anyhow::Result<bool> {
        // With it, in the same round trip: whether a lease table exists (see below).
        let sql = format!(
            "{}, pg_catalog.to_regclass({}) IS NOT NULL",
            advisory("pg_try_advisory_lock", self.key),
            lit(&self.lease_table)
        );
        let (held, leases) = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(self.conn())
            .await
            .and_then(|row| Ok((row.try_get::<bool, _>(0)?, row.try_get::<bool, _>(1)?)))
            .map_err(|source| DbError::Query {
                doing: "taking the migration lock (pg_try_advisory_lock)".into(),
                source,
            })?;
        if !held {
            return Ok(false);
        }
        if !leases {
            self.leased_by = None;
            return Ok(true);
        }
        // A run under the lease holds the lock too. The row is read `FOR SHARE`, so a lease
        // being taken at this moment (its update not yet committed) is waited for and seen;
        // and a lease run checks for this advisory lock as it takes the row, so whichever
        // comes second stands back.
        self.leased_by = self.lease_holder().await?;
        if self.leased_by.is_some() {
            sqlx::raw_sql(AssertSqlSafe(advisory("pg_advisory_unlock", self.key)))
                .execute(self.conn())
                .await
                .map_err(|source| DbError::Query {
                    doing: "letting the migration lock go while the lease is held".into(),
                    source,
                })?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn holder(&mut self) -> String {
        if let Some(lease) = &self.leased_by {
            return lease.clone();
        }
        let row: Result<Option<(i32, Option<String>, Option<String>, Option<String>)>, _> =
            sqlx::query_as(concat!(
                "SELECT a.pid, a.application_name,
                        pg_catalog.to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
                        pg_catalog.to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS TZ') ",
                holders_of_key!(),
                " LIMIT 1"
            ))
            .bind(self.key)
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
            "SELECT pid, state, pg_catalog.to_char(query_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    pg_catalog.left(pg_catalog.regexp_replace(query, '\\s+', ' ', 'g'), 100)
             FROM pg_catalog.pg_stat_activity
             WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
               AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
               AND backend_type OPERATOR(pg_catalog.=) 'client backend'
               AND application_name OPERATOR(pg_catalog.=) {}
               AND (state IS NULL OR state OPERATOR(pg_catalog.<>) 'idle')
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

/// How long releasing the lock may wait for the server.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The held advisory lock.
pub(super) struct PgLock {
    /// The control connection the lock is held on. Released by [`LockGuard::release`];
    /// otherwise the lock goes with the connection, when [`Database::close`] closes it or
    /// the process ends (a panic, a kill), since the server ends the session.
    ///
    /// [`Database::close`]: crate::Database::close
    pub(super) control: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    /// The fence's pid, shared with the database ([`PgDatabase::lock_holder`]); cleared on
    /// release, so sessions begun afterwards record without a fence.
    ///
    /// [`PgDatabase::lock_holder`]: super::PgDatabase
    pub(super) holder: Arc<std::sync::Mutex<Option<super::lease_lock::Holder>>>,
    /// The advisory key held.
    pub(super) key: i64,
}

#[async_trait]
impl LockGuard for PgLock {
    async fn release(self: Box<Self>) -> anyhow::Result<()> {
        if let Ok(mut holder) = self.holder.lock() {
            *holder = None;
        }
        let mut control = self.control.lock().await;
        let Some(conn) = control.as_mut() else {
            // Closed: the session, and the lock with it, already ended.
            return Ok(());
        };
        let unlocking = sqlx::raw_sql(AssertSqlSafe(advisory("pg_advisory_unlock", self.key)))
            .fetch_one(&mut *conn);
        let Ok(unlocked) = tokio::time::timeout(RELEASE_WAIT, unlocking).await else {
            // The server stopped answering. Every step checked in its own transaction that
            // the lock was still granted before it recorded anything, so what was recorded
            // ran under the lock; closing the connection on this side ends the session,
            // and with it the lock, as soon as the server notices.
            drop(control.take());
            tracing::warn!(
                "the server did not answer the release of the migration lock within {} s; its connection was closed, which releases the lock once the server notices",
                RELEASE_WAIT.as_secs()
            );
            return Ok(());
        };
        let unlocked = unlocked.and_then(|row| row.try_get::<bool, _>(0));
        match unlocked {
            Ok(true) => Ok(()),
            // Typed (exit 11), and not a context layer, which the exit code mapping could not
            // see through.
            Ok(false) => Err(crate::LockLostAfter.into()),
            Err(source) => {
                // The connection is in doubt: close it, which ends the session and the lock.
                if let Some(conn) = control.take() {
                    let _ = conn.close().await;
                }
                tracing::debug!("releasing the migration lock (pg_advisory_unlock): {source}");
                Err(crate::LockLostAfter.into())
            }
        }
    }
}

//! The PostgreSQL lease lock: the migration lock as a row of `wasmig_lock` with an owner, an
//! expiry and a fencing token, for servers reached where a session-level advisory lock
//! means nothing (a pooler in transaction mode hands each transaction any server session)
//! or is not kept (CockroachDB's `pg_try_advisory_lock` always answers true).
//!
//! Owns: the table, one attempt at the lease ([`Attempt`]), the task renewing it while the
//! run holds it, the fence a step checks before it records ([`Holder::held`]), releasing it
//! ([`LockGuard`]), and deciding which kind of lock a server gets ([`detect`]).
//!
//! How it excludes: taking the lease is one `INSERT … ON CONFLICT DO UPDATE … WHERE` that
//! succeeds only where the row is free or its lease expired, and adds one to the token.
//! Each step's record checks, in the step's own transaction, that the token is still this
//! run's and the lease unexpired, and locks the row (`FOR NO KEY UPDATE`) until it commits:
//! a takeover, which updates the row, waits for that commit, and sees what it recorded. A
//! run paused (SIGSTOP, a stalled VM) between its record and its commit cannot hold the row
//! past its lease: the record's transaction sets `idle_in_transaction_session_timeout` to
//! the lease, so the server ends it.
//!
//! Not here: waiting, retrying and the timeout (the backend-neutral `lock::acquire`), the
//! advisory lock (`advisory_lock`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::bookkeeping::lit;
use super::session::TAMPERED_STATE;
use crate::lock::{Attempt, LockGuard};
use crate::{DbError, LOCK_TABLE};

/// The SQLSTATE of a lock wait that ran out (`lock_timeout`): a step holds the row for a
/// moment as it records, which an attempt does not wait for.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How long an attempt waits for the row while a step of the holder records.
const ATTEMPT_ROW_WAIT: &str = "1s";

/// Who holds the migration lock for a run, as its steps check it (the fence).
#[derive(Debug, Clone)]
pub(crate) enum Holder {
    /// A session-level advisory lock on `key` held by the backend `pid` (the control
    /// connection).
    Session {
        /// The control connection's backend.
        pid: i32,
        /// The migration lock's advisory key (of the configured schema).
        key: i64,
    },
    /// The lease with this token, on the row of `table` (qualified).
    Lease {
        /// The fencing token the run took the lease with.
        token: i64,
        /// `wasmig_lock`, qualified by the configured schema.
        table: String,
        /// How long the lease lasts unrenewed.
        lease: Duration,
    },
}

impl Holder {
    /// An SQL boolean: the lock is still this run's. For a lease, `lock_row` also locks the
    /// row until the transaction ends (the record of a step), so a takeover waits for it.
    /// Every name is qualified: a migration's `search_path` cannot answer in its stead.
    pub(crate) fn held(&self, lock_row: bool) -> String {
        match self {
            Holder::Session { pid, key } => super::session::lock_held(*pid, *key),
            Holder::Lease { token, table, .. } => format!(
                "(EXISTS (SELECT 1 FROM {table} l WHERE l.id OPERATOR(pg_catalog.=) 1 \
                 AND l.token OPERATOR(pg_catalog.=) {token}::pg_catalog.int8 \
                 AND l.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(){locking}) \
                 AND {plain})",
                locking = if lock_row {
                    " FOR NO KEY UPDATE OF l"
                } else {
                    ""
                },
                plain = plain_table(table),
            ),
        }
    }

    /// Whether this is the advisory lock (whose steps also take its step key).
    pub(crate) fn is_session(&self) -> bool {
        matches!(self, Holder::Session { .. })
    }

    /// The advisory key every step of a run under the advisory lock takes shared for its
    /// transaction (the lock's key plus one, [`crate::PG_STEP_KEY`] in `public`); none under
    /// a lease.
    pub(crate) fn step_key(&self) -> Option<i64> {
        match self {
            Holder::Session { key, .. } => Some(key + 1),
            Holder::Lease { .. } => None,
        }
    }

    /// What the transaction that records a step sets beyond wasmig's own limits: for a
    /// lease, the server ends the transaction if it sits idle longer than the lease (a
    /// paused runner holding the row it locked as it recorded).
    pub(crate) fn record_limits(&self) -> String {
        match self {
            Holder::Session { .. } => String::new(),
            Holder::Lease { lease, .. } => format!(
                "SET LOCAL idle_in_transaction_session_timeout = '{}ms'; ",
                lease.as_millis().max(1)
            ),
        }
    }
}

/// An SQL boolean: a session holds wasmig's advisory lock `key` in this database (a run
/// under `lock = "advisory"`, or one whose `auto` found advisory locks sound): a lease is
/// not taken beside it.
fn advisory_held(key: i64) -> String {
    format!("EXISTS (SELECT 1 {})", advisory_holders(key))
}

/// The `FROM … WHERE` of the sessions holding wasmig's advisory lock `key` (`l`, `a`), with
/// the key written in (for simple queries).
fn advisory_holders(key: i64) -> String {
    super::advisory_lock::holders_of_key!().replace(
        "$1",
        // Quoted: a negative literal would be the unary `-` operator, which a search_path
        // could answer.
        &format!("'{key}'::pg_catalog.int8"),
    )
}

/// An SQL boolean (parenthesized): `table` is a plain table, with no rule, trigger, row security or child
/// that could make the fence's read say what a migration wants, and nothing that would
/// run an expression of a migration's as the lease's row is written (a check but the
/// table's own, a default, a domain, an index expression: see
/// [`code_on_write`](super::bookkeeping::code_on_write)), which its renewal and release
/// do outside any step, where nothing would roll it back.
fn plain_table(table: &str) -> String {
    let regclass = format!("pg_catalog.to_regclass({})", lit(table));
    format!(
        "(COALESCE((SELECT c.relkind OPERATOR(pg_catalog.=) 'r' AND NOT c.relrowsecurity \
         AND c.relpersistence OPERATOR(pg_catalog.=) 'p' \
         FROM pg_catalog.pg_class c \
         WHERE c.oid OPERATOR(pg_catalog.=) {regclass}), false) \
         AND NOT EXISTS ({others}) AND NOT EXISTS ({}))",
        super::bookkeeping::code_on_write(
            &format!("ARRAY[{regclass}]::pg_catalog.oid[]"),
            &regclass,
            OWN_CHECK
        ),
        others = attached(&regclass),
    )
}

/// A query with a row for each trigger (not the server's own), rule or child table of
/// `regclass`: read from their catalogs, where `pg_class`'s flags stay set after a trigger
/// is dropped, until a vacuum (a lease that could not be taken, renewed or released then).
fn attached(regclass: &str) -> String {
    format!(
        "SELECT 'a trigger' FROM pg_catalog.pg_trigger t \
         WHERE t.tgrelid OPERATOR(pg_catalog.=) {regclass} AND NOT t.tgisinternal \
         UNION ALL SELECT 'a rule' FROM pg_catalog.pg_rewrite r \
         WHERE r.ev_class OPERATOR(pg_catalog.=) {regclass} \
         UNION ALL SELECT 'a child table' FROM pg_catalog.pg_inherits i \
         WHERE i.inhparent OPERATOR(pg_catalog.=) {regclass}"
    )
}

/// The lock table's one check (`create_table`), as PostgreSQL prints it: a regular
/// expression ([`code_on_write`](super::bookkeeping::code_on_write)).
const OWN_CHECK: &str = r"^CHECK \(\(id = 1\)\)$";

/// A statement that fails with `WMG03` (`TAMPERED_STATE`), naming what it found, unless
/// `table` is [`plain_table`]: run before each write of the lock's row that no step's
/// transaction holds (its creation, taking the lease).
fn guard(table: &str) -> String {
    format!(
        "DO $$ BEGIN IF NOT {plain} THEN
             RAISE EXCEPTION 'wasmig: % is not the plain table wasmig created: %', {name},
                 ({findings}) USING ERRCODE = '{TAMPERED_STATE}';
         END IF; END $$;",
        plain = plain_table(table),
        name = lit(LOCK_TABLE),
        findings = lock_table_findings(table),
    )
}

/// What [`plain_table`] found amiss, `; `-separated (NULL when nothing): for the message
/// of a lease refused on such a table.
fn lock_table_findings(table: &str) -> String {
    let regclass = format!("pg_catalog.to_regclass({})", lit(table));
    format!(
        "SELECT pg_catalog.string_agg(what, '; ') FROM (
             SELECT 'another kind of relation, row-level security or unlogged' AS what
             FROM pg_catalog.pg_class c
             WHERE c.oid OPERATOR(pg_catalog.=) {regclass}
               AND NOT (c.relkind OPERATOR(pg_catalog.=) 'r' AND NOT c.relrowsecurity
                        AND c.relpersistence OPERATOR(pg_catalog.=) 'p')
             UNION ALL
             {others}
             UNION ALL
             {}
         ) AS found_objects",
        super::bookkeeping::code_on_write(
            &format!("ARRAY[{regclass}]::pg_catalog.oid[]"),
            &regclass,
            OWN_CHECK
        ),
        others = attached(&regclass),
    )
}

/// The table's DDL and its one row (`id = 1`, free: `expires_at` in the past, token 0),
/// made idempotent, committed before any attempt: taking the lease is then always an
/// update of that row, which a run under the advisory lock reading it `FOR SHARE` waits for.
/// The row's insert is guarded as the lease's own writes are ([`guard`]): its checks run
/// even when the row is there already.
pub(crate) fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             id          pg_catalog.int4 PRIMARY KEY CHECK (id OPERATOR(pg_catalog.=) 1),
             token       pg_catalog.int8 NOT NULL,
             owner       pg_catalog.text NOT NULL,
             acquired_at pg_catalog.timestamptz NOT NULL,
             renewed_at  pg_catalog.timestamptz NOT NULL,
             expires_at  pg_catalog.timestamptz NOT NULL
         );
         {guard}
         INSERT INTO {table} VALUES (1, 0, 'nobody', pg_catalog.clock_timestamp(),
             pg_catalog.clock_timestamp(), '-infinity') ON CONFLICT (id) DO NOTHING",
        guard = guard(table),
    )
}

/// `'N ms'::interval` for a duration.
fn interval(d: Duration) -> String {
    format!(
        "'{} milliseconds'::pg_catalog.interval",
        d.as_millis().max(1)
    )
}

/// Who this run is, as the lock's row shows it to a run that waits: host, pid, version.
pub(crate) fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "wasmig {} on {host}, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

/// Tries the lease on the control connection. Every statement is a simple query, inside
/// its own explicit transaction where it needs one: nothing assumes the next statement
/// reaches the same server session.
pub(crate) struct LeaseAttempt<'c> {
    pub(crate) conn: &'c mut PgConnection,
    /// `wasmig_lock`, qualified.
    pub(crate) table: String,
    pub(crate) lease: Duration,
    pub(crate) owner: String,
    /// The token once taken.
    pub(crate) token: Option<i64>,
    /// The advisory key of the same schema's migration lock, which a lease excludes.
    pub(crate) key: i64,
}

#[async_trait]
impl Attempt for LeaseAttempt<'_> {
    async fn try_lock(&mut self) -> anyhow::Result<bool> {
        let table = &self.table;
        let until = interval(self.lease);
        // One message: a transaction of its own (its row wait bounded), whatever the pooler.
        // The times are read when the row is taken, not when the statement began: it may
        // have waited for the row (EXCLUDED's would be that much older).
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '{ATTEMPT_ROW_WAIT}'; SET LOCAL statement_timeout = 0;
             {guard}
             INSERT INTO {table} AS l (id, token, owner, acquired_at, renewed_at, expires_at)
             VALUES (1, 1, {owner}, pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(),
                     pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) {until})
             ON CONFLICT (id) DO UPDATE SET token = l.token OPERATOR(pg_catalog.+) 1,
                 owner = EXCLUDED.owner, acquired_at = pg_catalog.clock_timestamp(),
                 renewed_at = pg_catalog.clock_timestamp(),
                 expires_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) {until}
             WHERE l.expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
               AND NOT {advisory_held}
             RETURNING token; COMMIT",
            owner = lit(&self.owner),
            advisory_held = advisory_held(self.key),
            guard = guard(table),
        );
        match sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_optional(&mut *self.conn)
            .await
        {
            Ok(Some(row)) => {
                let token: i64 = row.try_get(0).map_err(|source| DbError::Query {
                    doing: "taking the migration lease".into(),
                    source,
                })?;
                self.token = Some(token);
                Ok(true)
            }
            Ok(None) => Ok(false),
            // A step of the holder is recording (it locks the row until it commits): held.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await;
                Ok(false)
            }
            Err(source) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await;
                Err(super::session::write_error(
                    source,
                    format!("taking the migration lease ({LOCK_TABLE})"),
                ))
            }
        }
    }

    async fn holder(&mut self) -> String {
        let sql = format!(
            "SELECT owner, token,
                    pg_catalog.to_char(acquired_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    pg_catalog.to_char(expires_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    pg_catalog.round(pg_catalog.date_part('epoch', expires_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())::pg_catalog.numeric, 1)::pg_catalog.text
             FROM {} WHERE id OPERATOR(pg_catalog.=) 1",
            self.table
        );
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_optional(&mut *self.conn)
            .await;
        let read = |row: &sqlx::postgres::PgRow| -> Result<String, sqlx::Error> {
            let owner: String = row.try_get(0)?;
            let token: i64 = row.try_get(1)?;
            let since: Option<String> = row.try_get(2)?;
            let until: Option<String> = row.try_get(3)?;
            let left: Option<String> = row.try_get(4)?;
            Ok(format!(
                "{owner} (lease {token}, taken at {}, expires at {}, in {} s unless renewed)",
                since.as_deref().unwrap_or("?"),
                until.as_deref().unwrap_or("?"),
                left.as_deref().unwrap_or("?"),
            ))
        };
        // A run under the advisory lock keeps the lease from being taken, however old the
        // row's own lease.
        let advisory: Option<i32> = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT l.pid {}",
            advisory_holders(self.key)
        )))
        .fetch_optional(&mut *self.conn)
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get(0).ok());
        if let Some(pid) = advisory {
            return format!(
                "pid {pid}, which holds wasmig's advisory lock (a run under lock = \"advisory\")"
            );
        }
        match row {
            Ok(Some(row)) => {
                read(&row).unwrap_or_else(|e| format!("a holder wasmig cannot read ({e})"))
            }
            Ok(None) => "nobody (the lease row is gone)".into(),
            Err(e) => format!("a holder wasmig cannot see ({e})"),
        }
    }
}

/// How long releasing the lease may wait for the server.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The held lease, renewed by a task until released.
pub(crate) struct PgLease {
    pub(crate) pool: PgPool,
    pub(crate) holder: Arc<std::sync::Mutex<Option<Holder>>>,
    pub(crate) table: String,
    pub(crate) token: i64,
    /// The renewing task, stopped on release.
    pub(crate) renewer: tokio::task::JoinHandle<()>,
    /// Set by the renewer when it found the lease no longer this run's.
    pub(crate) lost: Arc<AtomicBool>,
}

impl PgLease {
    /// Starts renewing the lease with `token` every third of its length, on the pool's
    /// connections (one simple query each, autocommitted: any server session will do).
    pub(crate) fn renewing(
        pool: PgPool,
        holder: Arc<std::sync::Mutex<Option<Holder>>>,
        table: String,
        token: i64,
        lease: Duration,
    ) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(
            pool.clone(),
            table.clone(),
            token,
            lease,
            lost.clone(),
        ));
        PgLease {
            pool,
            holder,
            table,
            token,
            renewer,
            lost,
        }
    }
}

/// The renewing loop: extends the lease while it is this run's and unexpired. A renewal
/// that fails (the server did not answer) is tried again at the next tick; the steps' fence
/// is what keeps an expired run from recording, not this loop.
async fn renew(pool: PgPool, table: String, token: i64, lease: Duration, lost: Arc<AtomicBool>) {
    let every = (lease / 3).max(Duration::from_millis(100));
    let sql = format!(
        "UPDATE {table} SET renewed_at = pg_catalog.clock_timestamp(),
             expires_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) {until}
         WHERE id OPERATOR(pg_catalog.=) 1 AND token OPERATOR(pg_catalog.=) {token}
           AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() AND {plain}",
        until = interval(lease),
        plain = plain_table(&table),
    );
    loop {
        tokio::time::sleep(every).await;
        // A renewal waits while a step of this run records (it locks the row until it
        // commits); bounded by the lease, after which the steps' fence refuses anyway.
        let renewed = tokio::time::timeout(lease, async {
            let mut conn = pool.acquire().await?;
            sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(&mut *conn)
                .await
        })
        .await;
        match renewed {
            Ok(Ok(done)) if done.rows_affected() == 1 => {
                tracing::trace!("renewed the migration lease {token}");
            }
            Ok(Ok(_)) => {
                tracing::error!(
                    "the migration lease {token} expired or was taken over before this run renewed it: its steps will record nothing from now on"
                );
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Ok(Err(e)) => tracing::warn!("renewing the migration lease {token}: {e}"),
            Err(_) => tracing::warn!(
                "renewing the migration lease {token}: the server did not answer within {} ms",
                lease.as_millis()
            ),
        }
    }
}

#[async_trait]
impl LockGuard for PgLease {
    async fn release(self: Box<Self>) -> anyhow::Result<()> {
        self.renewer.abort();
        if let Ok(mut holder) = self.holder.lock() {
            *holder = None;
        }
        let sql = format!(
            "UPDATE {} SET expires_at = '-infinity'
             WHERE id OPERATOR(pg_catalog.=) 1 AND token OPERATOR(pg_catalog.=) {}
               AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() AND {}",
            self.table,
            self.token,
            plain_table(&self.table)
        );
        let released = tokio::time::timeout(RELEASE_WAIT, async {
            let mut conn = self.pool.acquire().await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await
        })
        .await;
        match released {
            Ok(Ok(done)) if done.rows_affected() == 1 && !self.lost.load(Ordering::SeqCst) => {
                Ok(())
            }
            Ok(Ok(_)) => Err(crate::LockLostAfter.into()),
            Ok(Err(source)) => {
                tracing::debug!("releasing the migration lease: {source}");
                Err(crate::LockLostAfter.into())
            }
            Err(_) => {
                // Every step checked the lease in its own transaction before recording; the
                // lease lapses by itself.
                tracing::warn!(
                    "the server did not answer the release of the migration lease within {} s; it lapses when its lease ends",
                    RELEASE_WAIT.as_secs()
                );
                Ok(())
            }
        }
    }
}

/// An advisory-lock key for one probe of [`detect`]: random, so that runs probing at the
/// same moment do not see each other's probe as a sign of a pooler.
fn probe_key() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    // Positive, with bit 62 set: apart from public's pinned keys (negative); a schema's key
    // could equal it only by a one in 2^62 chance.
    (hasher.finish() >> 1) as i64 | 0x4000_0000_0000_0000
}

/// Why the server gets the lease lock rather than the advisory one, or `None` when advisory
/// locks hold here: the engine says it is CockroachDB or YugabyteDB (whose advisory locks
/// are stubs, or may be turned off), or two connections' sessions did not exclude each
/// other (a pooler in transaction mode in between): the second connection was given the
/// first one's server session, took the probe lock the first held, or the first could not
/// let it go again.
///
/// Or the second connection's server session is not the one it was given when it connected
/// (`given_at_connect`: the backend pid of its startup's `BackendKeyData`, as the relay saw
/// it, differs): a pooler answers the startup itself and hands out server sessions per
/// transaction. A plain TCP proxy or port mapping passes the server's key through, so it
/// does not count.
///
/// `control` takes the probe lock; `other` is a second connection (from the pool);
/// `given_at_connect` says whether `other`'s startup named this backend pid.
///
/// # Errors
/// When the server fails a query.
pub(crate) async fn detect(
    control: &mut PgConnection,
    other: &mut PgConnection,
    given_at_connect: impl Fn(i32) -> bool,
) -> anyhow::Result<Option<String>> {
    let query = |doing: &'static str| {
        move |source| DbError::Query {
            doing: doing.into(),
            source,
        }
    };
    let version: String = sqlx::raw_sql("SELECT pg_catalog.version()")
        .fetch_one(&mut *control)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(query("reading the server's version"))?;
    if crate::not_postgres(&version) {
        return Ok(Some(format!("the server is {}", version.trim())));
    }
    let probe = probe_key();
    let first = sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT pg_catalog.pg_try_advisory_lock({probe}), pg_catalog.pg_backend_pid()"
    )))
    .fetch_one(&mut *control)
    .await
    .and_then(|r| Ok((r.try_get::<bool, _>(0)?, r.try_get::<i32, _>(1)?)))
    .map_err(query("probing advisory locks"))?;
    // Taken and let go in one statement, so the probe leaves nothing on that session.
    let second = sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT CASE WHEN pg_catalog.pg_try_advisory_lock({probe}) \
         THEN pg_catalog.pg_advisory_unlock({probe}) ELSE false END, pg_catalog.pg_backend_pid()"
    )))
    .fetch_one(&mut *other)
    .await
    .and_then(|r| Ok((r.try_get::<bool, _>(0)?, r.try_get::<i32, _>(1)?)))
    .map_err(query("probing advisory locks"))?;
    let released: bool = sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT pg_catalog.pg_advisory_unlock({probe})"
    )))
    .fetch_one(&mut *control)
    .await
    .and_then(|r| r.try_get(0))
    .map_err(query("probing advisory locks"))?;
    let why = if !given_at_connect(second.1) {
        Some(
            "a connection's server session is not the one it was given when it connected (a pooler)",
        )
    } else if !first.0 {
        Some("another session holds wasmig's probe lock (a pooler's server session kept it)")
    } else if second.1 == first.1 {
        Some("two connections were given the same server session (a pooler in transaction mode)")
    } else if second.0 {
        Some("a second session took an advisory lock the first held")
    } else if !released {
        Some(
            "a session could not release the advisory lock it had just taken (a pooler in transaction mode)",
        )
    } else {
        None
    };
    Ok(why.map(str::to_owned))
}

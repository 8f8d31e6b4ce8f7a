//! The migration lock on MySQL and MariaDB: a named lock (`GET_LOCK`), held by a
//! connection of its own for as long as the run lasts.
//!
//! The server releases a named lock when its connection ends, so a run that dies (or whose
//! connection breaks) never leaves it behind; a run that lost it this way finds out before
//! its next record, which checks that the lock is still held by this connection
//! (`IS_USED_LOCK`, unless that connection was killed: [`HOLDER`], the fence in `session`,
//! and after every statement of a script run statement by statement, `tamper`). Named locks
//! are not replicated: on a replica the lock excludes only runs against that same replica
//! (which is read-only anyway).
//!
//! Not here: the polling loop and the timeout error (`crate::lock`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sha2::Digest as _;
use sqlx::{Connection as _, MySqlConnection};

use super::MySqlDatabase;
use crate::DbError;
use crate::lock::{self, Attempt, LockGuard};

/// The longest name `GET_LOCK` takes.
const MAX_NAME: usize = 64;

/// The lock's name for wasmig's tables in `database`: `wasmig:` and the database's name,
/// or its SHA-256 when that is too long. Pinned: every wasmig must take the same name.
/// An operator can take it by hand with `SELECT GET_LOCK('wasmig:DATABASE', 0)`.
pub(super) fn name(database: &str) -> String {
    let plain = format!("wasmig:{database}");
    if plain.len() <= MAX_NAME {
        return plain;
    }
    let digest = sha2::Sha256::digest(database.as_bytes());
    format!("wasmig:{}", &hex::encode(digest)[..MAX_NAME - 7])
}

/// The connection id holding the lock named by the two parameters (bind the name twice),
/// as long as that connection was not killed: `NULL` otherwise. `KILL` marks the
/// connection at once (`information_schema.PROCESSLIST` shows it `Killed`), but it lets go
/// of its locks only when its thread ends, a moment later: a fence reading `IS_USED_LOCK`
/// alone could pass in between.
pub(super) const HOLDER: &str = "SELECT CAST(IF(EXISTS (SELECT 1 FROM information_schema.PROCESSLIST \
     WHERE ID = IS_USED_LOCK(?) AND COMMAND = 'Killed'), NULL, IS_USED_LOCK(?)) AS SIGNED)";

/// Takes the lock within `timeout`, on a new connection that then holds it.
pub(super) async fn take(
    db: &MySqlDatabase,
    timeout: Duration,
) -> anyhow::Result<Box<dyn LockGuard>> {
    let failed = |source| DbError::Query {
        doing: "taking the migration lock".into(),
        source,
    };
    let mut conn = db.own_connection().await.map_err(failed)?;
    // The connection sits idle while the run works: the server's `wait_timeout` (often
    // minutes on managed servers) must not end it, and the lock with it, mid-run.
    sqlx::raw_sql("SET SESSION wait_timeout = 31536000")
        .execute(&mut conn)
        .await
        .map_err(failed)?;
    let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
        .fetch_one(&mut conn)
        .await
        .map_err(failed)?;
    let mut attempt = NamedLockAttempt {
        conn,
        name: db.lock_name.clone(),
    };
    lock::acquire(&mut attempt, &db.shown, timeout).await?;
    db.holder.store(id.cast_unsigned(), Ordering::SeqCst);
    Ok(Box::new(NamedLock {
        conn: Some(attempt.conn),
        name: attempt.name,
        holder: Arc::clone(&db.holder),
    }))
}

struct NamedLockAttempt {
    conn: MySqlConnection,
    name: String,
}

#[async_trait]
impl Attempt for NamedLockAttempt {
    async fn try_lock(&mut self) -> anyhow::Result<bool> {
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(&self.name)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|source| DbError::Query {
                doing: "taking the migration lock".into(),
                source,
            })?;
        Ok(got == Some(1))
    }

    async fn holder(&mut self) -> String {
        let id: Option<i64> = match sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
            .bind(&self.name)
            .fetch_one(&mut self.conn)
            .await
        {
            Ok(id) => id,
            Err(e) => return format!("an unknown connection ({e})"),
        };
        let Some(id) = id else {
            return "nobody any more".to_owned();
        };
        let row: Result<Option<(String, String, i64)>, _> = sqlx::query_as(
            "SELECT USER, HOST, CAST(TIME AS SIGNED) FROM information_schema.PROCESSLIST WHERE ID = ?",
        )
        .bind(id)
        .fetch_optional(&mut self.conn)
        .await;
        match row {
            Ok(Some((user, host, secs))) => format!(
                "connection {id} (user {user} from {host}, in its current state for {secs} s; the lock is `{}`)",
                self.name
            ),
            _ => format!("connection {id} (the lock is `{}`)", self.name),
        }
    }
}

/// The held lock: its connection, released and closed by [`LockGuard::release`], or
/// closed when dropped (which releases it on the server as well).
struct NamedLock {
    conn: Option<MySqlConnection>,
    name: String,
    holder: Arc<AtomicU64>,
}

#[async_trait]
impl LockGuard for NamedLock {
    async fn release(mut self: Box<Self>) -> anyhow::Result<()> {
        self.holder.store(0, Ordering::SeqCst);
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let released = sqlx::query_scalar::<_, Option<i64>>("SELECT RELEASE_LOCK(?)")
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await;
        let _ = conn.close().await;
        released.map(drop).map_err(|source| {
            DbError::Query {
                doing: "releasing the migration lock".into(),
                source,
            }
            .into()
        })
    }
}

impl Drop for NamedLock {
    fn drop(&mut self) {
        self.holder.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_get_lock() {
        assert_eq!(name("app"), "wasmig:app");
        let long = name(&"x".repeat(100));
        assert_eq!(long.len(), MAX_NAME);
        assert_ne!(long, name(&"x".repeat(99)));
    }
}

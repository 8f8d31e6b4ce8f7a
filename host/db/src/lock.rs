//! The migration lock: one writing run (`up`, `down`, `stamp`) per database at a time.
//!
//! Owns what both backends share: the guard trait, the fixed PostgreSQL key, the polling
//! loop with its timeout, and the typed timeout error. The backends supply one attempt
//! (PostgreSQL: `pg_try_advisory_lock` on the control connection, see `postgres.rs`;
//! SQLite: `flock` on `<db file>.wasmig-lock`, see `sqlite.rs`) and a description of the
//! holder. Not here: when the lock is taken (`cli`), which is before the heads are read.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::LockTimeout;

/// The PostgreSQL advisory-lock key: the first 8 bytes of SHA-256 of `"wasmig"`, read as
/// a big-endian signed 64-bit integer. Pinned: every wasmig version must use the same key,
/// or two versions could migrate one database at once. An operator can take it by hand
/// with `SELECT pg_advisory_lock(-7417683568260457548)`.
pub const PG_LOCK_KEY: i64 = -7_417_683_568_260_457_548;

/// The PostgreSQL advisory-lock key of steps in flight: every step's transaction of a run
/// holding the migration lock takes it shared (for the transaction), and a run that takes
/// the migration lock then waits until it can take it exclusively. So a run whose lock was
/// taken from it (its control connection ended) cannot have a step commit after the next
/// run started planning: the next run waits for that step's transaction to end, and then
/// sees what it recorded. Pinned like [`PG_LOCK_KEY`] (its successor).
pub const PG_STEP_KEY: i64 = PG_LOCK_KEY + 1;

/// The PostgreSQL advisory-lock key that serialises creating or migrating wasmig's tables,
/// taken for the transaction that does it: the first 8 bytes of SHA-256 of
/// `"wasmig tables"`, read as a big-endian signed integer. Runs that start together on a new
/// database may reach that transaction under different locks (the lease and the advisory
/// lock exclude each other only once the lease's table exists) or outside the migration
/// lock (`rehash`); without it the second `CREATE TABLE` fails on `pg_type`'s unique index.
/// Pinned like [`PG_LOCK_KEY`].
pub const PG_TABLES_KEY: i64 = -2_421_507_514_936_352_285;

/// The advisory key of the migration lock of wasmig's tables in `schema`: [`PG_LOCK_KEY`]
/// for `public` (the default schema, and the key of every wasmig before schema keys), else
/// the first 8 bytes of SHA-256 of `"wasmig lock of schema "` and the schema's name, read as
/// a big-endian signed integer with its lowest bit cleared. So runs on different schemas of
/// one database (a fleet's tenant schemas) do not wait for each other, while every run on
/// one schema takes the same key. Even, so that its step key (the next integer) is its own.
/// Pinned like [`PG_LOCK_KEY`].
pub fn pg_lock_key(schema: &str) -> i64 {
    use sha2::Digest;
    if schema == "public" {
        return PG_LOCK_KEY;
    }
    let digest = sha2::Sha256::digest(format!("wasmig lock of schema {schema}"));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let key = i64::from_be_bytes(first) & !1;
    // As good as impossible; kept apart anyway.
    if key == PG_LOCK_KEY { key ^ 2 } else { key }
}

/// The suffix of the SQLite lock file, next to the database file.
pub const SQLITE_LOCK_SUFFIX: &str = ".wasmig-lock";

/// How often a waiting run tries the lock again.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A held migration lock. Release it explicitly with [`LockGuard::release`]; if it is
/// not (a panic), it goes when the connection it is held on closes (PostgreSQL: the
/// control connection, closed with the database or the process) or with the file
/// descriptor (SQLite), so it is never left behind.
#[async_trait]
pub trait LockGuard: Send {
    /// Releases the lock (PostgreSQL: `pg_advisory_unlock` on the control connection, which
    /// stays open for wasmig's reads; SQLite: closes the lock file).
    ///
    /// # Errors
    /// When the database or the file system reports a failure while unlocking; the lock is
    /// released anyway when its connection (closed on such an error) or file closes.
    async fn release(self: Box<Self>) -> anyhow::Result<()>;
}

/// One backend's way of trying the lock, used by [`acquire`].
#[async_trait]
pub(crate) trait Attempt: Send {
    /// Tries to take the lock without waiting: `true` if it is now held.
    async fn try_lock(&mut self) -> anyhow::Result<bool>;

    /// Who holds the lock, for the log and the error: e.g. `pid 123 (application_name
    /// 'wasmig', connected at …)`. Best effort.
    async fn holder(&mut self) -> String;

    /// Once the lock is held: a session of an earlier run that is still at work although
    /// that run is gone (killed mid-statement, its lock went with its connection, but the
    /// server has not noticed yet), described for the log. The run must not start under it.
    async fn straggler(&mut self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
}

/// Tries the lock every [`POLL_INTERVAL`] until it is held or `timeout` has passed,
/// logging the holder once when it has to wait (a zero `timeout`: one try, not logged).
///
/// # Errors
/// [`LockTimeout`] naming `database` and the holder when the time is up; the attempt's own
/// errors (the database failed) as they come.
pub(crate) async fn acquire(
    attempt: &mut dyn Attempt,
    database: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if attempt.try_lock().await? {
        return outlast_stragglers(attempt, database, started, timeout).await;
    }
    let holder = attempt.holder().await;
    // A zero timeout is one try (a caller polling on its own terms says what it does).
    if !timeout.is_zero() {
        tracing::info!(
            "waiting up to {} s for the migration lock on {database}, held by {holder}",
            timeout.as_secs()
        );
    }
    loop {
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            // Name who holds it now, which may not be who held it when we began.
            let holder = attempt.holder().await;
            return Err(LockTimeout {
                database: database.to_owned(),
                holder,
                waited: timeout,
            }
            .into());
        }
        tokio::time::sleep(POLL_INTERVAL.min(timeout - elapsed)).await;
        if attempt.try_lock().await? {
            tracing::debug!(
                "took the migration lock after {} ms",
                started.elapsed().as_millis()
            );
            return outlast_stragglers(attempt, database, started, timeout).await;
        }
    }
}

/// With the lock held, waits (within the same `timeout`) until no session of an earlier,
/// dead run is still at work on the database. A run killed in the middle of a statement
/// loses its lock at once, but the server may go on running that statement for a while (a
/// `CREATE INDEX CONCURRENTLY` waiting for other transactions, a long `UPDATE`); a new run
/// started then would queue behind it, or worse, run beside it.
///
/// # Errors
/// [`LockTimeout`] naming the straggler when it is still there after `timeout`.
async fn outlast_stragglers(
    attempt: &mut dyn Attempt,
    database: &str,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut logged = false;
    while let Some(straggler) = attempt.straggler().await? {
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(LockTimeout {
                database: database.to_owned(),
                holder: format!("{straggler}, left by a wasmig run that ended"),
                waited: timeout,
            }
            .into());
        }
        if !logged {
            tracing::warn!(
                "a session of an earlier wasmig run is still at work on {database}: {straggler}; waiting up to {} s for the server to end it",
                timeout.saturating_sub(elapsed).as_secs()
            );
            logged = true;
        }
        tokio::time::sleep(POLL_INTERVAL.min(timeout - elapsed)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_postgres_key_is_derived_from_the_name_wasmig() {
        let digest = Sha256::digest(b"wasmig");
        let key = i64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(key, PG_LOCK_KEY);
    }

    #[test]
    fn the_tables_key_is_derived_from_its_name() {
        let digest = Sha256::digest(b"wasmig tables");
        let key = i64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(key, PG_TABLES_KEY);
    }

    #[test]
    fn each_schema_has_its_own_even_key_and_public_keeps_the_old_one() {
        assert_eq!(pg_lock_key("public"), PG_LOCK_KEY);
        let a = pg_lock_key("tenant_a");
        assert_eq!(a, pg_lock_key("tenant_a"), "the same schema, the same key");
        assert_ne!(a, pg_lock_key("tenant_b"));
        for key in [a, pg_lock_key("tenant_b"), PG_LOCK_KEY] {
            assert_eq!(key % 2, 0, "even: its step key is key + 1");
        }
        let digest = Sha256::digest(b"wasmig lock of schema tenant_a");
        assert_eq!(a, i64::from_be_bytes(digest[..8].try_into().unwrap()) & !1);
    }
}

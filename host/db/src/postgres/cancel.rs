//! Cancelling the statement a PostgreSQL session runs, from another connection:
//! `pg_cancel_backend` for the deadline, then `pg_terminate_backend` when cancelling did
//! not stop it (both with wasmig's qualified names).
//!
//! Not here: when to cancel (the runner's deadline), the session itself (`session`).

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Canceller;

/// Cancels the statement running on one session's connection.
pub(super) struct PgCanceller {
    /// The database's pool, for a connection to send the cancel on.
    pub(super) pool: PgPool,
    /// The backend pid of the session's connection, read at `begin`.
    pub(super) pid: i32,
}

impl PgCanceller {
    /// Runs `sql` (one of the signalling functions) with the session's pid on another
    /// connection: an idle pooled one if there is one, otherwise a fresh one, so a busy pool
    /// cannot delay it.
    ///
    /// A simple query with the pid written in (one round trip, nothing prepared): it must
    /// work through a pooler in transaction mode, where the next message of a connection
    /// may reach another server session.
    async fn signal(&self, function: &'static str) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(format!("SELECT pg_catalog.{function}({})", self.pid));
        match self.pool.try_acquire() {
            Some(mut conn) => sqlx::raw_sql(sql).execute(&mut *conn).await.map(drop),
            None => {
                let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
                let result = sqlx::raw_sql(sql).execute(&mut conn).await.map(drop);
                let _ = conn.close().await;
                result
            }
        }
    }
}

#[async_trait]
impl Canceller for PgCanceller {
    async fn cancel(&self) {
        if let Err(e) = self.signal("pg_cancel_backend").await {
            tracing::warn!(
                "could not cancel the statement on PostgreSQL backend {}: {e}",
                self.pid
            );
        }
    }

    async fn terminate(&self) {
        if let Err(e) = self.signal("pg_terminate_backend").await {
            tracing::warn!(
                "could not terminate PostgreSQL backend {} after cancelling failed: {e}",
                self.pid
            );
        }
    }
}

//! Cancelling the statement a PostgreSQL session runs, from another connection:
//! `pg_cancel_backend` for the deadline, then `pg_terminate_backend` when cancelling did
//! not stop it (both with wasmig's qualified names).
//!
//! Not here: when to cancel (the runner's deadline), the session itself (`session`).

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};

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
    async fn signal(&self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self.pool.try_acquire() {
            Some(mut conn) => sqlx::query(sql)
                .bind(self.pid)
                .execute(&mut *conn)
                .await
                .map(drop),
            None => {
                let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
                let result = sqlx::query(sql)
                    .bind(self.pid)
                    .execute(&mut conn)
                    .await
                    .map(drop);
                let _ = conn.close().await;
                result
            }
        }
    }
}

#[async_trait]
impl Canceller for PgCanceller {
    async fn cancel(&self) {
        if let Err(e) = self.signal("SELECT pg_catalog.pg_cancel_backend($1)").await {
            tracing::warn!(
                "could not cancel the statement on PostgreSQL backend {}: {e}",
                self.pid
            );
        }
    }

    async fn terminate(&self) {
        if let Err(e) = self
            .signal("SELECT pg_catalog.pg_terminate_backend($1)")
            .await
        {
            tracing::warn!(
                "could not terminate PostgreSQL backend {} after cancelling failed: {e}",
                self.pid
            );
        }
    }
}

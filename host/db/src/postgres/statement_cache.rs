//! sqlx's statement cache on a session's connection. sqlx caches prepared statements per
//! connection, keyed by the SQL text only. Two hazards follow, both handled here: a cached
//! statement keeps the parameter types of its first use (see
//! [`PgSession::prepare_checked`]), and a cached statement's result shape is fixed, so
//! PostgreSQL refuses it once DDL changed the table ("cached plan must not change result
//! type"; see [`PgSession::forget_statements`]).
//!
//! Not here: when the session calls these (`session`).

use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArguments, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Either, Executor, SqlStr, Statement};

use super::codec::sql_error;
use super::session::PgSession;
use crate::SqlResult;

impl PgSession {
    /// Prepares `sql` (or finds it in sqlx's per-connection cache) for parameters of `types`.
    ///
    /// sqlx keys its statement cache by SQL text and keeps the parameter types the statement
    /// was first prepared with (or that the server inferred for an untyped null). Binding
    /// values of another type to it would make the server read their binary encoding as the
    /// wrong type: an error at best (`int8` bytes for an `int4`), silently wrong data at worst
    /// (`float4` bytes for an `int4`). So when the cached types differ, the cache is cleared
    /// and the statement prepared afresh with these types. A cache hit costs no round trip.
    pub(super) async fn prepare_checked(
        &mut self,
        sql: &SqlStr,
        types: &[PgTypeInfo],
    ) -> Result<PgStatement, sqlx::Error> {
        let statement = self.conn().prepare_with(sql.clone(), types).await?;
        let matches = match statement.parameters() {
            Some(Either::Left(prepared)) => prepared
                .iter()
                .zip(types)
                .all(|(prepared, ours)| ours.oid() == Some(Oid(0)) || ours.oid() == prepared.oid()),
            _ => true,
        };
        if matches {
            return Ok(statement);
        }
        self.conn().clear_cached_statements().await?;
        self.conn().prepare_with(sql.clone(), types).await
    }

    /// Forgets sqlx's cached statements after DDL may have changed what they return.
    pub(super) async fn forget_statements(&mut self) -> SqlResult<()> {
        if self.conn().cached_statements_size() > 0 {
            self.conn()
                .clear_cached_statements()
                .await
                .map_err(sql_error)?;
        }
        Ok(())
    }

    /// Runs a statement without caching it (DDL, cursor commands): prepared unnamed with
    /// these parameters' types, so no cached statement can be stale; the rows carry their
    /// own description.
    pub(super) async fn run_uncached(
        &mut self,
        sql: SqlStr,
        args: PgArguments,
    ) -> SqlResult<Vec<PgRow>> {
        sqlx::query_with(sql, args)
            .persistent(false)
            .fetch_all(self.conn())
            .await
            .map_err(sql_error)
    }
}

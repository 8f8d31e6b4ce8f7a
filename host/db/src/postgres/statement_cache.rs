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
use sqlx::{AssertSqlSafe, Connection, Either, Executor, SqlSafeStr, SqlStr, Statement};

use super::codec::sql_error;
use super::session::PgSession;
use crate::SqlResult;
use crate::store::{Cell, Param, Statement as StoreStatement};

/// The type a [`Param`] is bound as (`bookkeeping::arguments`).
fn param_type(param: &Param) -> PgTypeInfo {
    use sqlx::{Postgres, Type};
    match param {
        Param::Text(_) => <String as Type<Postgres>>::type_info(),
        Param::Int(_) => <i64 as Type<Postgres>>::type_info(),
        Param::Bytes(_) => <Vec<u8> as Type<Postgres>>::type_info(),
        Param::Time(_) => <chrono::DateTime<chrono::Utc> as Type<Postgres>>::type_info(),
        Param::Texts(_) => <Vec<String> as Type<Postgres>>::type_info(),
    }
}

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

    /// Forgets sqlx's cached statements after DDL may have changed what they return, but
    /// for wasmig's own record of a step ([`PgSession::fetch_prepared`]) when the cache
    /// holds nothing else.
    pub(super) async fn forget_statements(&mut self) -> SqlResult<()> {
        if self.conn().cached_statements_size() > self.own_statements {
            self.own_statements = 0;
            self.conn()
                .clear_cached_statements()
                .await
                .map_err(sql_error)?;
        }
        Ok(())
    }

    /// Runs wasmig's `statement` (the record of a step) as a statement sqlx keeps prepared
    /// on the connection, its values bound in binary: parsed and planned once a run rather
    /// than once a step. Counted in [`PgSession::own_statements`], so that the migrations'
    /// DDL, which clears sqlx's cache, leaves it there (it names only wasmig's tables).
    ///
    /// Only after the server said, in the same transaction with nothing of the migration
    /// run since, that every statement under sqlx's names is one sqlx prepared
    /// (`PgSession::own_statements_intact`).
    pub(super) async fn fetch_prepared(
        &mut self,
        statement: &StoreStatement,
    ) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        let sql = AssertSqlSafe(statement.sql.clone()).into_sql_str();
        let types: Vec<PgTypeInfo> = statement.params.iter().map(param_type).collect();
        let before = self.conn().cached_statements_size();
        self.prepare_checked(&sql, &types).await?;
        let after = self.conn().cached_statements_size();
        // Too few is safe (the statement is cleared as if a migration's), too many is not:
        // never more than the cache holds.
        self.own_statements = (self.own_statements + usize::from(after > before)).min(after);
        let args = super::bookkeeping::arguments(statement)?;
        let rows: Vec<PgRow> = sqlx::query_with(sql, args)
            .persistent(true)
            .fetch_all(self.conn())
            .await?;
        rows.iter()
            .map(|row| super::bookkeeping::cells(row, statement.columns))
            .collect()
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

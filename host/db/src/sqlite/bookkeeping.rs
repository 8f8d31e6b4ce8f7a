//! wasmig's tables on the SQLite side: the backend's part of the bookkeeping, which the
//! [`VersionStore`] writes once for both backends.
//!
//! Owns: the [`Driver`] impl the store runs its statements through, and the text form of
//! the times stored in the tables ([`history_time`], [`parse_time`]): UTC, RFC 3339 with
//! microseconds, fixed width so that they sort as they read.
//!
//! Not here: the statements on wasmig's tables and their layout (`store`).
//!
//! [`VersionStore`]: crate::VersionStore

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt as _;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, AssertSqlSafe, Row, Sqlite, SqliteConnection};

use crate::store::{Cell, Driver, Kind, Param, Reader, Statement};

/// Reads a timestamp column written by [`history_time`].
pub(super) fn parse_time(row: &SqliteRow, column: usize) -> Result<DateTime<Utc>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: Box::new(e),
        })
}

/// The tables' timestamp text: fixed width, so it sorts as it reads.
pub(super) fn history_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `statement`'s parameters, bound.
fn arguments(statement: &Statement) -> Result<SqliteArguments, sqlx::Error> {
    let mut args = SqliteArguments::default();
    for param in &statement.params {
        match param {
            Param::Text(t) => args.add(t.clone()),
            Param::Int(i) => args.add(*i),
            Param::Bytes(b) => args.add(b.as_deref().map(<[u8]>::to_vec)),
            Param::Time(t) => args.add(history_time(*t)),
            Param::Texts(_) => {
                Err("SQLite has no arrays: the store binds lists on PostgreSQL only".into())
            }
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// A row of `statement`'s result, decoded as its columns say.
fn cells(row: &SqliteRow, columns: &[Kind]) -> Result<Vec<Cell>, sqlx::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Ok(match kind {
                Kind::Text => Cell::Text(row.try_get(i)?),
                Kind::Int => Cell::Int(row.try_get(i)?),
                Kind::Bytes => Cell::Bytes(row.try_get(i)?),
                Kind::Time => Cell::Time(parse_time(row, i)?),
            })
        })
        .collect()
}

#[async_trait]
impl Driver for SqliteConnection {
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error> {
        let done = sqlx::query_with(AssertSqlSafe(statement.sql.clone()), arguments(statement)?)
            .execute(&mut *self)
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        let rows: Vec<SqliteRow> =
            sqlx::query_with(AssertSqlSafe(statement.sql.clone()), arguments(statement)?)
                .fetch(&mut *self)
                .try_collect()
                .await?;
        rows.iter().map(|r| cells(r, statement.columns)).collect()
    }

    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut *self)
            .await
            .map(drop)
    }
}

impl Reader for PoolConnection<Sqlite> {
    fn driver(&mut self) -> &mut dyn Driver {
        &mut **self
    }
}

//! wasmig's tables on the MySQL side: the backend's part of the bookkeeping, which the
//! [`VersionStore`] writes once for every backend.
//!
//! Owns: the [`Driver`] impl the store runs its statements through (the store's `$n`
//! placeholders become MySQL's positional `?`, each bound in the order it appears), and
//! the form of the times in the tables: `DATETIME(6)` holding UTC.
//!
//! Not here: the statements on wasmig's tables and their layout (`store`).
//!
//! [`VersionStore`]: crate::VersionStore

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::{Arguments as _, AssertSqlSafe, MySql, MySqlConnection, Row};

use crate::store::{Cell, Driver, Kind, Param, Reader, Statement, fill_placeholders};

/// wasmig's column names that MySQL reserves as words.
const RESERVED: [&str; 1] = ["sqlstate"];

/// wasmig's own statement text with its column names that MySQL reserves (`sqlstate`)
/// quoted as names: the store writes one text for every backend, and only MySQL reserves
/// them. wasmig's statements hold these words only as names.
fn quote_reserved(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    'outer: while !rest.is_empty() {
        for word in RESERVED {
            if let Some(at) = rest.find(word) {
                let before = rest[..at].chars().next_back();
                let after = rest[at + word.len()..].chars().next();
                let boundary = |c: Option<char>| {
                    c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '`'))
                };
                out.push_str(&rest[..at]);
                if boundary(before) && boundary(after) {
                    out.push('`');
                    out.push_str(word);
                    out.push('`');
                } else {
                    out.push_str(word);
                }
                rest = &rest[at + word.len()..];
                continue 'outer;
            }
        }
        out.push_str(rest);
        break;
    }
    out
}

/// `statement`'s text with `?` for each `$n`, and its parameters bound in that order (a
/// parameter used twice is bound twice).
fn positional(statement: &Statement) -> Result<(String, MySqlArguments), sqlx::Error> {
    let mut order = Vec::new();
    let sql = fill_placeholders(statement, |out, index, _| {
        out.push('?');
        order.push(index);
        Ok(())
    })?;
    let sql = quote_reserved(&sql);
    let mut args = MySqlArguments::default();
    for index in order {
        match &statement.params[index] {
            Param::Text(t) => args.add(t.clone()),
            Param::Int(i) => args.add(*i),
            Param::Bytes(b) => args.add(b.as_deref().map(<[u8]>::to_vec)),
            Param::Time(t) => args.add(t.naive_utc()),
            Param::Texts(_) => {
                Err("MySQL has no arrays: the store binds lists on PostgreSQL only".into())
            }
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok((sql, args))
}

/// A row of `statement`'s result, decoded as its columns say.
fn cells(row: &MySqlRow, columns: &[Kind]) -> Result<Vec<Cell>, sqlx::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Ok(match kind {
                Kind::Text => Cell::Text(row.try_get_unchecked(i)?),
                Kind::Int => Cell::Int(row.try_get_unchecked(i)?),
                Kind::Bytes => Cell::Bytes(row.try_get_unchecked(i)?),
                Kind::Time => {
                    let t: NaiveDateTime = row.try_get_unchecked(i)?;
                    Cell::Time(DateTime::<Utc>::from_naive_utc_and_offset(t, Utc))
                }
            })
        })
        .collect()
}

#[async_trait]
impl Driver for MySqlConnection {
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error> {
        let (sql, args) = positional(statement)?;
        let done = sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *self)
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        let (sql, args) = positional(statement)?;
        let rows: Vec<MySqlRow> = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch(&mut *self)
            .try_collect()
            .await?;
        rows.iter().map(|r| cells(r, statement.columns)).collect()
    }

    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        // wasmig's own DDL, one statement at a time (each commits on its own anyway).
        for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
            sqlx::raw_sql(AssertSqlSafe(quote_reserved(statement)))
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

impl Reader for PoolConnection<MySql> {
    fn driver(&mut self) -> &mut dyn Driver {
        &mut **self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_positional_in_the_order_they_appear() {
        let statement = Statement {
            sql: "SELECT $2, '$1', $1, $2".into(),
            params: vec![Param::Int(1), Param::Text(Some("b".into()))],
            columns: &[],
        };
        let (sql, args) = positional(&statement).unwrap();
        assert_eq!(sql, "SELECT ?, '$1', ?, ?");
        assert_eq!(args.len(), 3);
    }

    #[test]
    fn reserved_column_names_are_quoted() {
        assert_eq!(
            quote_reserved(
                "INSERT INTO h (error, sqlstate) VALUES (1, 2); sqlstates `sqlstate` x_sqlstate sqlstate"
            ),
            "INSERT INTO h (error, `sqlstate`) VALUES (1, 2); sqlstates `sqlstate` x_sqlstate `sqlstate`"
        );
    }
}

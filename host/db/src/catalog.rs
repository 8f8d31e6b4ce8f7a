//! A fleet's catalog: the rows of a query against a catalog database that list the
//! fleet's targets (`targets_query` in wasmig.toml), read in a read-only transaction.
//!
//! Not here: what the rows mean (the `wasmig` crate's `fleet`).

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Row};

use crate::{DatabaseUrl, DbError};

/// One row of the catalog query: its columns by name, each as text (`None`: NULL).
pub type CatalogRow = BTreeMap<String, Option<String>>;

/// Runs `sql` on the database `url` names, read-only, and returns its rows.
///
/// # Errors
/// [`DbError`] when the database cannot be reached or the query fails (a write is refused
/// by the read-only transaction, or by `query_only` on SQLite).
pub async fn catalog_rows(url: &DatabaseUrl, sql: &str) -> Result<Vec<CatalogRow>, DbError> {
    let doing = || format!("reading the fleet's targets from {url} (targets_query)");
    let connect_error = |source| DbError::Connect {
        url: url.to_string(),
        source,
    };
    let query_error = |source| DbError::Query {
        doing: doing(),
        source,
    };
    // A trailing semicolon would end the subquery early.
    let sql = sql.trim().trim_end_matches(';').trim_end();
    match url {
        DatabaseUrl::Postgres { url: raw } => {
            let options = sqlx::postgres::PgConnectOptions::from_str(raw).map_err(|e| {
                DbError::InvalidUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                }
            })?;
            let mut conn = options
                .application_name("wasmig")
                .connect()
                .await
                .map_err(connect_error)?;
            // Each row as one JSON object: whatever the columns' types, read by name. One
            // prepared statement: a `;` in the query cannot end the read-only transaction and
            // run a statement of its own.
            let mut tx = conn
                .begin_with("BEGIN READ ONLY")
                .await
                .map_err(query_error)?;
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT pg_catalog.to_jsonb(q)::pg_catalog.text FROM ({sql}) AS q"
            )))
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
            let _ = tx.rollback().await;
            let _ = conn.close().await;
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                let text: String = row.try_get(0).map_err(query_error)?;
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&text).unwrap_or_default();
                found.push(
                    object
                        .into_iter()
                        .map(|(name, value)| {
                            let value = match value {
                                serde_json::Value::Null => None,
                                serde_json::Value::String(s) => Some(s),
                                other => Some(other.to_string()),
                            };
                            (name, value)
                        })
                        .collect(),
                );
            }
            Ok(found)
        }
        DatabaseUrl::Mysql { .. } => Err(DbError::InvalidUrl {
            url: url.to_string(),
            reason: "a fleet's catalog is read from PostgreSQL or SQLite; MySQL targets may be listed there, the catalog itself cannot live on MySQL yet".into(),
        }),
        DatabaseUrl::Sqlite { path } => {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .connect()
                .await
                .map_err(connect_error)?;
            let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut conn)
                .await
                .map_err(query_error)?;
            let _ = conn.close().await;
            Ok(rows
                .iter()
                .map(|row| {
                    row.columns()
                        .iter()
                        .map(|c| {
                            let value = row
                                .try_get_unchecked::<Option<String>, _>(c.ordinal())
                                .ok()
                                .flatten();
                            (c.name().to_owned(), value)
                        })
                        .collect()
                })
                .collect())
        }
    }
}

//! SQL on the migration's own transaction: the `sql` interface of the WIT, with [`Rows`]
//! instead of raw results, [`Error`] instead of `sql-error`, and
//! [`savepoint`] as the way to recover from an SQL error.
//!
//! Every call runs inside the transaction that also records the migration in wasmig's
//! version table, so the migration commits whole or not at all (on MySQL and MariaDB only if
//! it runs no DDL, which commits implicitly there). Parameters are `&[Value]`, usually
//! written `&params![…]` (see [`params!`](crate::params)); placeholders are `$1`, `$2`… on
//! PostgreSQL, `?1`, `?2`… (or `?`) on SQLite, and `?` on MySQL, where parameters bind in
//! the order their placeholders appear: branch on [`dialect`] to support several.
//!
//! # Errors and savepoints
//!
//! A failing statement returns its error, and `?` fails the migration with it. An error that
//! is *not* handled inside a [`savepoint`] fails the migration even if the guest carries on
//! and returns `Ok`: PostgreSQL aborts the transaction at the first error (its work would be
//! silently lost), and wasmig applies the same rule on SQLite and MySQL.
//!
//! These functions call the host: outside wasmig (a native unit test) they panic.

use std::sync::Arc;

use crate::wit::sql;
use crate::{Column, ColumnValues, Columns, Dialect, Error, Result, Row, Rows, Value};

/// Which database the migration runs against, and so its placeholders: `$1` on PostgreSQL,
/// `?1` (or `?`) on SQLite, `?` on MySQL and MariaDB (bound in order, so a value used twice
/// is passed twice).
///
/// ```no_run
/// use wasmig_guest::{Dialect, db};
///
/// let upsert = match db::dialect() {
///     Dialect::Postgres => "INSERT INTO kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2",
///     Dialect::Sqlite => "INSERT INTO kv VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = ?2",
///     Dialect::Mysql => "INSERT INTO kv VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)",
/// };
/// ```
pub fn dialect() -> Dialect {
    sql::dialect()
}

/// Runs one statement and returns the number of rows it affected.
///
/// # Errors
///
/// The statement's SQL error, e.g. `23505` for a unique violation, or `WASMIG-BIND` for a
/// parameter this database cannot bind (see the WIT).
pub fn execute(statement: &str, params: &[Value]) -> Result<u64> {
    Ok(sql::execute(statement, params)?)
}

/// Runs one statement and returns its whole result, held in memory. Use [`cursor`] for large
/// results.
///
/// # Errors
///
/// The statement's SQL error; `WASMIG-DECODE` for a column type wasmig cannot read (cast it to
/// `text` in the SQL).
pub fn query(statement: &str, params: &[Value]) -> Result<Rows> {
    Ok(sql::query(statement, params)?.into())
}

/// Runs a query that must return exactly one row, and returns it.
///
/// ```no_run
/// # fn f() -> wasmig_guest::Result<()> {
/// let n: i64 = wasmig_guest::db::query_one("SELECT count(*) FROM users", &[])?.get(0)?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`query`], and when the query returns no row or more than one.
pub fn query_one(statement: &str, params: &[Value]) -> Result<Row> {
    match query_opt(statement, params)? {
        Some(row) => Ok(row),
        None => Err(Error::msg(format!(
            "expected exactly one row, the query returned none: {}",
            excerpt(statement)
        ))),
    }
}

/// Runs a query that returns at most one row, and returns it if there is one.
///
/// # Errors
///
/// As [`query`], and when the query returns more than one row.
pub fn query_opt(statement: &str, params: &[Value]) -> Result<Option<Row>> {
    let rows = query(statement, params)?;
    if rows.len() > 1 {
        return Err(Error::msg(format!(
            "expected at most one row, the query returned {}: {}",
            rows.len(),
            excerpt(statement)
        )));
    }
    Ok(rows.into_iter().next())
}

/// Runs a script of several statements separated by `;`, without parameters (for DDL).
///
/// # Errors
///
/// The SQL error of the first failing statement; the script stops there.
pub fn batch(script: &str) -> Result<()> {
    Ok(sql::batch(script)?)
}

/// Runs one statement once per parameter row, prepared once, and returns the total number of
/// rows affected. Build each row with [`params!`](crate::params).
///
/// # Errors
///
/// The SQL error of the first failing row; the rows after it are not run.
pub fn execute_many(statement: &str, rows: &[Vec<Value>]) -> Result<u64> {
    Ok(sql::execute_many(statement, rows)?)
}

/// Writes `rows` into `table`, one value per column of `columns` in that order, and returns
/// the number of rows written: the fast path for bulk inserts (a backfill into a new table,
/// a copy between tables). On PostgreSQL one `COPY ... FROM STDIN`, on SQLite multi-row
/// `INSERT`s.
///
/// `table` may be qualified by a schema (`"audit.events"`); the names are quoted by the host
/// and taken literally, so they cannot inject SQL. On PostgreSQL every value travels as text
/// and is converted to the column's type by the server, so an `i64` fits an `integer`
/// column.
///
/// ```no_run
/// # fn f() -> wasmig_guest::Result<()> {
/// use wasmig_guest::{db, params};
///
/// let rows: Vec<_> = (1..=1000_i64).map(|id| params![id, format!("user {id}")]).collect();
/// let written = db::copy_in("users", &["id", "name"], &rows)?;
/// assert_eq!(written, 1000);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// `WASMIG-BIND` for a row of the wrong width or a malformed value (naming its row and
/// column); the database's error for a row it refuses (a constraint, a type it cannot
/// convert), which fails the call like any statement.
pub fn copy_in(table: &str, columns: &[&str], rows: &[Vec<Value>]) -> Result<u64> {
    let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    Ok(sql::copy_in(table, &columns, rows)?)
}

/// Runs one statement and returns its whole result column by column: the same result as
/// [`query`], in the shape a batch of thousands of rows moves fastest (one list per column
/// crosses into the migration, not a value per cell).
///
/// ```no_run
/// # fn f() -> wasmig_guest::Result<()> {
/// use wasmig_guest::{ColumnValues, TextColumn, Value, db};
///
/// let batch = db::query_columns(
///     "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT 10000",
///     &[Value::Int64(0)],
/// )?;
/// let ids = batch.get("id")?.int64s()?;
/// let mut norms = TextColumn::with_capacity(batch.len(), 32 * batch.len());
/// for email in batch.get("email")?.texts()? {
///     norms.push_opt(email.map(|e| e.trim().to_lowercase()));
/// }
/// db::execute_columns(
///     "UPDATE people AS p SET email_norm = u.norm \
///      FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id",
///     &[ColumnValues::from_int64s(ids.to_vec()), norms.finish()],
/// )?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`query`]; `WASMIG-DECODE` also for a column of arrays, or (SQLite) of values of more
/// than one type: cast it in the SQL, or use [`query`].
pub fn query_columns(statement: &str, params: &[Value]) -> Result<Columns> {
    Ok(sql::query_columns(statement, params)?.into())
}

/// Runs one statement whose parameters are whole columns, each bound as one array
/// (`$1::int8[]`, `$2::text[]`), and returns the rows it affected: with `UNNEST`, a batch
/// written in one statement (see [`query_columns`]). PostgreSQL only: SQLite and MySQL have
/// no arrays and refuse it with `WASMIG-BIND`.
///
/// # Errors
///
/// The statement's SQL error; `WASMIG-BIND` when the columns do not have the same number of
/// rows, or on a database without arrays.
pub fn execute_columns(statement: &str, params: &[ColumnValues]) -> Result<u64> {
    Ok(sql::execute_columns(statement, params)?)
}

/// [`copy_in`] with the rows given as columns (`values[i]` fills `columns[i]`; every column
/// the same number of rows): the fastest way to write a batch into a table.
///
/// ```no_run
/// # fn f() -> wasmig_guest::Result<()> {
/// use wasmig_guest::{ColumnValues, TextColumn, db};
///
/// let ids: Vec<i64> = (1..=1000).collect();
/// let names: TextColumn = ids.iter().map(|id| format!("user {id}")).collect();
/// let written = db::copy_in_columns(
///     "users",
///     &["id", "name"],
///     &[ColumnValues::from_int64s(ids), names.finish()],
/// )?;
/// assert_eq!(written, 1000);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`copy_in`]; `WASMIG-BIND` when the columns do not have the same number of rows.
pub fn copy_in_columns(table: &str, columns: &[&str], values: &[ColumnValues]) -> Result<u64> {
    let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    Ok(sql::copy_in_columns(table, &columns, values)?)
}

/// Opens a cursor over the result of a query, to read it in chunks so that a large table
/// never has to fit in memory.
///
/// On PostgreSQL this is a server-side cursor; other statements may run between chunks.
/// Dropping the cursor closes it.
///
/// ```no_run
/// # fn f() -> wasmig_guest::Result<()> {
/// use wasmig_guest::db;
///
/// let mut cursor = db::cursor("SELECT id, payload FROM events ORDER BY id", &[])?;
/// for chunk in cursor.chunks(500) {
///     for row in &chunk? {
///         let id: i64 = row.get("id")?;
///         // …
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The query's SQL error.
pub fn cursor(statement: &str, params: &[Value]) -> Result<Cursor> {
    let inner = sql::open_cursor(statement, params)?;
    let columns = inner.columns().into();
    Ok(Cursor { inner, columns })
}

/// Runs `f` inside a savepoint: released when `f` returns `Ok`, rolled back when it returns
/// `Err`. This is how a migration handles an SQL error and carries on.
///
/// ```no_run
/// use wasmig_guest::{Migration, Result, db, info};
///
/// struct DropLegacy;
///
/// impl Migration for DropLegacy {
///     fn upgrade() -> Result<()> {
///         // Older installations may not have the table; the error is forgiven.
///         match db::savepoint(|| db::batch("DROP TABLE legacy_sessions")) {
///             Ok(()) => info!("dropped legacy_sessions"),
///             Err(e) => info!("kept going: {e}"),
///         }
///         db::batch("CREATE TABLE sessions (id bigint PRIMARY KEY)")?;
///         Ok(())
///     }
///
///     fn downgrade() -> Result<()> {
///         db::batch("DROP TABLE sessions")
///     }
/// }
/// ```
///
/// Savepoints nest. If `f` ignores a failed statement and returns `Ok`, the savepoint cannot
/// be released: it is rolled back and that error is returned.
///
/// # Errors
///
/// `f`'s error (after the rollback); the error that prevented the release; or an SQL error
/// beginning or rolling back the savepoint (the rollback's error replaces `f`'s then, as the
/// failure is not forgiven: the migration will fail).
pub fn savepoint<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let savepoint = sql::begin_savepoint()?;
    match f() {
        Ok(value) => match savepoint.release() {
            Ok(()) => Ok(value),
            Err(e) => {
                // The host keeps a savepoint that could not be released open: roll it back so
                // the failure is forgiven and the caller may handle the error. Should that
                // fail too, the host still knows, and fails the migration.
                let _ = savepoint.rollback();
                Err(e.into())
            }
        },
        Err(e) => {
            savepoint.rollback()?;
            Err(e)
        }
    }
}

/// A query result read in chunks; see [`cursor`].
#[derive(Debug)]
pub struct Cursor {
    // The host resource; dropping it closes the cursor on the host.
    inner: sql::Cursor,
    // Read once when the cursor is opened, shared by the rows of every chunk.
    columns: Arc<[Column]>,
}

impl Cursor {
    /// The columns of the result, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Reads up to `max_rows` further rows; an empty chunk means the result is exhausted.
    ///
    /// # Errors
    ///
    /// An SQL error fetching the rows (a closed or failed cursor: `WASMIG-STATE`).
    pub fn next_chunk(&mut self, max_rows: u32) -> Result<Rows> {
        let rows = self.inner.next(max_rows)?;
        Ok(Rows::with_columns(Arc::clone(&self.columns), rows))
    }

    /// Iterates over the remaining chunks of up to `max_rows` rows each, ending at the first
    /// empty chunk or after the first error.
    pub fn chunks(&mut self, max_rows: u32) -> Chunks<'_> {
        Chunks {
            cursor: Some(self),
            max_rows,
        }
    }
}

/// The iterator returned by [`Cursor::chunks`]: each item is a non-empty chunk, or the error
/// that ended the iteration.
#[derive(Debug)]
pub struct Chunks<'a> {
    // `None` once the result is exhausted or an error was returned.
    cursor: Option<&'a mut Cursor>,
    max_rows: u32,
}

impl Iterator for Chunks<'_> {
    type Item = Result<Rows>;

    fn next(&mut self) -> Option<Self::Item> {
        let cursor = self.cursor.as_mut()?;
        match cursor.next_chunk(self.max_rows) {
            Ok(rows) if !rows.is_empty() => Some(Ok(rows)),
            Ok(_) => {
                self.cursor = None;
                None
            }
            Err(e) => {
                self.cursor = None;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for Chunks<'_> {}

/// The start of a statement, for error messages.
fn excerpt(statement: &str) -> String {
    let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_flatten_and_shorten_statements() {
        assert_eq!(excerpt("SELECT *\n  FROM t\n"), "SELECT * FROM t");
        let long = format!("SELECT {}", "x, ".repeat(40));
        assert_eq!(excerpt(&long).chars().count(), 81);
        assert!(excerpt(&long).ends_with('…'));
    }
}

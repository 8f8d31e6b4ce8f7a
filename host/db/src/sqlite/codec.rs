//! The SQLite value codec: what crosses between the WIT contract and the driver.
//!
//! Owns: binding the WIT values SQLite can store, validated as on PostgreSQL (and
//! refusing `numeric` and arrays with `WASMIG-BIND`), for statements and for `copy-in`
//! rows; describing result columns and decoding cells by their storage class; and
//! mapping driver errors to [`SqlError`] (extended result codes).
//!
//! Not here: the text formats themselves and their parsers (`crate::value`), which
//! statement runs with the values (`session`), the shape of `copy-in`'s inserts
//! (`crate::copy`).

use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteColumn, SqliteRow, SqliteValueRef};
use sqlx::{Arguments, Column as _, Decode, Encode, Row, Sqlite, Type, TypeInfo, ValueRef};

use crate::SqlResult;
use crate::value::{self, ParamRef};
use wasmig_contract::{Column, SqlError, Value};

/// Maps a driver error to the WIT error: the extended result code in decimal for a
/// database error, [`crate::client_error`] for anything else.
pub(super) fn sql_error(err: sqlx::Error) -> SqlError {
    match &err {
        sqlx::Error::Database(db) => SqlError {
            code: db
                .code()
                .map_or_else(|| "WASMIG-IO".to_owned(), |c| c.into_owned()),
            message: db.message().to_owned(),
            detail: None,
            hint: None,
            constraint: None,
            table: None,
            column: None,
        },
        _ => crate::client_error(err),
    }
}

/// Binds one row of parameters (`row` numbers it in an `execute-many`).
pub(super) fn bind(params: &[Value], row: Option<usize>) -> SqlResult<SqliteArguments> {
    let mut args = SqliteArguments::default();
    bind_into(&mut args, params, row, false)?;
    Ok(args)
}

/// Appends one row of values to `args`: the parameters of a statement (`row` numbers it in
/// an `execute-many`), or with `columns` set, one row of a `copy-in` (errors then name the
/// row and column).
pub(super) fn bind_into(
    args: &mut SqliteArguments,
    params: &[Value],
    row: Option<usize>,
    columns: bool,
) -> SqlResult<()> {
    fn add<'q, T: Encode<'q, Sqlite> + Type<Sqlite>>(
        args: &mut SqliteArguments,
        value: T,
        at: ParamRef,
    ) -> SqlResult<()> {
        args.add(value).map_err(|e| at.error(e))
    }
    for (i, value) in params.iter().enumerate() {
        let at = match (columns, row) {
            (true, Some(row)) => ParamRef::copy_column(row, i),
            _ => ParamRef::new('?', i).in_row(row),
        };
        let args = &mut *args;
        match value {
            Value::Null => add(args, None::<i64>, at)?,
            Value::Bool(v) => add(args, i64::from(*v), at)?,
            Value::Int16(v) => add(args, i64::from(*v), at)?,
            Value::Int32(v) => add(args, i64::from(*v), at)?,
            Value::Int64(v) => add(args, *v, at)?,
            Value::Float32(v) => add(args, f64::from(*v), at)?,
            Value::Float64(v) => add(args, *v, at)?,
            Value::Text(text) => add(args, text.as_str(), at)?,
            Value::Bytes(bytes) => add(args, bytes.as_slice(), at)?,
            // Validated like on PostgreSQL, so a malformed value fails on both; then bound as
            // the text itself, which SQLite's JSON and date functions read.
            other => match value::sqlite_text(other, at)? {
                Some(text) => add(args, text, at)?,
                None => unreachable!("every other kind is bound above"),
            },
        }
    }
    Ok(())
}

/// A result column: its name and the declared type as sqlx reports it (empty for an
/// expression or a type sqlx does not recognise).
pub(super) fn column(col: &SqliteColumn) -> Column {
    let type_name = match col.type_info().name() {
        "NULL" => String::new(),
        name => name.to_owned(),
    };
    Column {
        name: col.name().to_owned(),
        type_name,
    }
}

/// Reads one row, each cell by its storage class (SQLite columns are not typed).
pub(super) fn decode_row(row: &SqliteRow, columns: &[Column]) -> SqlResult<Vec<Value>> {
    (0..row.len())
        .map(|i| {
            let cell = row.try_get_raw(i).map_err(sql_error)?;
            decode_cell(cell).map_err(|e| {
                let name = columns.get(i).map_or("?", |c| c.name.as_str());
                SqlError::wasmig(
                    "DECODE",
                    format!(
                        "cannot read column `{name}`: {e}; cast it in SQL (`CAST({name} AS BLOB)`)"
                    ),
                )
            })
        })
        .collect()
}

fn decode_cell(cell: SqliteValueRef<'_>) -> Result<Value, BoxDynError> {
    fn dec<'r, T: Decode<'r, Sqlite>>(cell: SqliteValueRef<'r>) -> Result<T, BoxDynError> {
        T::decode(cell)
    }
    if cell.is_null() {
        return Ok(Value::Null);
    }
    let class = cell.type_info().name().to_owned();
    Ok(match class.as_str() {
        "INTEGER" => Value::Int64(dec(cell)?),
        "REAL" => Value::Float64(dec(cell)?),
        "TEXT" => Value::Text(dec(cell)?),
        "BLOB" => Value::Bytes(dec(cell)?),
        other => return Err(format!("unexpected storage class {other}").into()),
    })
}

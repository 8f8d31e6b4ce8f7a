//! The MySQL value codec: what crosses between the WIT contract and the driver.
//!
//! Owns: binding the WIT values (validated with the same parsers as on PostgreSQL; arrays
//! refused with `WASMIG-BIND`, MySQL having none), describing result columns, decoding
//! cells by their column type, and mapping driver errors to [`SqlError`]: the SQLSTATE as
//! the code, the server's error number in the detail (`MySQL error 1062`).
//!
//! The session's `time_zone` is UTC (set on every connection), so a `timestamptz` binds and
//! a `TIMESTAMP` column reads as UTC; `DATETIME` is a `timestamp` without a zone.
//!
//! Not here: the text formats themselves (`crate::value`), which statement runs with the
//! values (`session`).

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySqlArguments, MySqlColumn, MySqlDatabaseError, MySqlRow, MySqlValueRef};
use sqlx::{Arguments, Column as _, Decode, Encode, MySql, Row, Type, TypeInfo, ValueRef};

use crate::SqlResult;
use crate::value::{self, ParamRef};
use wasmig_contract::{Column, SqlError, Value};

/// Maps a driver error to the WIT error: the SQLSTATE and the error number for a server
/// error, [`crate::client_error`] for anything else.
pub(super) fn sql_error(err: sqlx::Error) -> SqlError {
    match &err {
        sqlx::Error::Database(db) if crate::ended_by_server(&err) => crate::session_ended(
            &db.code()
                .map_or_else(|| "HY000".to_owned(), |c| c.into_owned()),
            db.message(),
            None,
        ),
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number);
            SqlError {
                code: db
                    .code()
                    .map_or_else(|| "HY000".to_owned(), |c| c.into_owned()),
                message: db.message().to_owned(),
                detail: number.map(|n| format!("MySQL error {n}")),
                hint: None,
                constraint: db.constraint().map(str::to_owned),
                table: db.table().map(str::to_owned),
                column: None,
            }
        }
        _ => crate::client_error(err),
    }
}

/// The server's error number of a driver error, if it came from the server.
pub(super) fn error_number(err: &sqlx::Error) -> Option<u16> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Binds one row of parameters (`row` numbers it in an `execute-many`).
pub(super) fn bind(params: &[Value], row: Option<usize>) -> SqlResult<MySqlArguments> {
    let mut args = MySqlArguments::default();
    bind_into(&mut args, params, row, false)?;
    Ok(args)
}

/// Appends one row of values to `args`: a statement's parameters, or with `columns` set
/// one row of a `copy-in` (errors then name the row and column).
pub(super) fn bind_into(
    args: &mut MySqlArguments,
    params: &[Value],
    row: Option<usize>,
    columns: bool,
) -> SqlResult<()> {
    fn add<'q, T: Encode<'q, MySql> + Type<MySql>>(
        args: &mut MySqlArguments,
        value: T,
        at: ParamRef,
    ) -> SqlResult<()> {
        args.add(value).map_err(|e| at.error(e))
    }
    for (i, v) in params.iter().enumerate() {
        let at = match (columns, row) {
            (true, Some(row)) => ParamRef::copy_column(row, i),
            _ => ParamRef::new('?', i).in_row(row),
        };
        let args = &mut *args;
        match v {
            Value::Null => add(args, None::<i64>, at)?,
            Value::Bool(v) => add(args, *v, at)?,
            Value::Int16(v) => add(args, *v, at)?,
            Value::Int32(v) => add(args, *v, at)?,
            Value::Int64(v) => add(args, *v, at)?,
            Value::Float32(v) => add(args, *v, at)?,
            Value::Float64(v) => add(args, *v, at)?,
            Value::Numeric(text) => add(args, value::parse_numeric(text, at)?, at)?,
            Value::Text(text) => add(args, text.as_str(), at)?,
            Value::Bytes(bytes) => add(args, bytes.as_slice(), at)?,
            Value::Json(text) | Value::Jsonb(text) => {
                value::check_json(text, at)?;
                add(args, text.as_str(), at)?;
            }
            Value::Uuid(text) => add(
                args,
                value::parse_uuid(text, at)?.hyphenated().to_string(),
                at,
            )?,
            Value::Date(text) => add(args, value::parse_date(text, at)?, at)?,
            Value::Time(text) => add(args, value::parse_time(text, at)?, at)?,
            Value::Timestamp(text) => add(args, value::parse_timestamp(text, at)?, at)?,
            Value::Timestamptz(text) => {
                add(args, value::parse_timestamptz(text, at)?.naive_utc(), at)?
            }
            Value::Array(_) => {
                return Err(at.error(
                    "MySQL has no array types; bind the elements one by one, or as a JSON document",
                ));
            }
        }
    }
    Ok(())
}

/// A result column: its name and MySQL's name for its type (`INT`, `VARCHAR`,
/// `BIGINT UNSIGNED`…).
pub(super) fn column(col: &MySqlColumn) -> Column {
    Column {
        name: col.name().to_owned(),
        type_name: col.type_info().name().to_owned(),
    }
}

/// Reads one row, each cell by its column's type.
pub(super) fn decode_row(row: &MySqlRow, columns: &[Column]) -> SqlResult<Vec<Value>> {
    (0..row.len())
        .map(|i| {
            let cell = row.try_get_raw(i).map_err(sql_error)?;
            decode_cell(cell).map_err(|e| {
                let name = columns.get(i).map_or("?", |c| c.name.as_str());
                SqlError::wasmig(
                    "DECODE",
                    format!(
                        "cannot read column `{name}`: {e}; cast it in SQL (`CAST({name} AS CHAR)`)"
                    ),
                )
            })
        })
        .collect()
}

fn decode_cell(cell: MySqlValueRef<'_>) -> Result<Value, BoxDynError> {
    fn dec<'r, T: Decode<'r, MySql>>(cell: MySqlValueRef<'r>) -> Result<T, BoxDynError> {
        T::decode(cell)
    }
    if cell.is_null() {
        return Ok(Value::Null);
    }
    let info = cell.type_info().into_owned();
    let text = <str as Type<MySql>>::compatible(&info);
    Ok(match info.name() {
        "BOOLEAN" => Value::Bool(dec::<i8>(cell)? != 0),
        "TINYINT" => Value::Int16(dec::<i8>(cell)?.into()),
        "TINYINT UNSIGNED" => Value::Int16(dec::<u8>(cell)?.into()),
        "SMALLINT" | "YEAR" => Value::Int16(dec(cell)?),
        "SMALLINT UNSIGNED" => Value::Int32(dec::<u16>(cell)?.into()),
        "INT" | "MEDIUMINT" => Value::Int32(dec(cell)?),
        "MEDIUMINT UNSIGNED" => Value::Int32(i32::try_from(dec::<u32>(cell)?)?),
        "INT UNSIGNED" => Value::Int64(dec::<u32>(cell)?.into()),
        "BIGINT" => Value::Int64(dec(cell)?),
        // Past `s64`: exact, as a numeric.
        "BIGINT UNSIGNED" => Value::Numeric(dec::<u64>(cell)?.to_string()),
        "FLOAT" => Value::Float32(dec(cell)?),
        "DOUBLE" => Value::Float64(dec(cell)?),
        "DECIMAL" => Value::Numeric(dec::<BigDecimal>(cell)?.to_plain_string()),
        "DATE" => Value::Date(value::format_date(dec::<NaiveDate>(cell)?)),
        "TIME" => match dec::<NaiveTime>(cell.clone()) {
            Ok(t) => Value::Time(value::format_time(t)),
            // A duration past a day or below zero, which MySQL's TIME also holds.
            Err(_) => return Err("a TIME outside 00:00:00-23:59:59".into()),
        },
        "DATETIME" => Value::Timestamp(value::format_timestamp(dec::<NaiveDateTime>(cell)?)),
        "TIMESTAMP" => {
            let t = dec::<NaiveDateTime>(cell)?;
            Value::Timestamptz(value::format_timestamptz(t.and_utc()))
        }
        "JSON" => Value::Json(dec(cell)?),
        // A binary collation (`_bin` included) may be reported as BINARY or BLOB: the
        // character set tells text from bytes.
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
        | "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            if text {
                Value::Text(dec(cell)?)
            } else {
                Value::Bytes(dec(cell)?)
            }
        }
        "BIT" => Value::Bytes(dec(cell)?),
        other => return Err(format!("wasmig cannot read the MySQL type {other}").into()),
    })
}

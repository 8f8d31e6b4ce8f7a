//! `copy-in`, the bulk-write fast path: quoting the table and column names a guest passes,
//! and encoding its rows (or, for `copy-in-columns`, its columns), for PostgreSQL's `COPY ... FROM STDIN` (text format) and for
//! SQLite's multi-row `INSERT`.
//!
//! Names are never interpolated raw: each part of `schema.table` and each column is written
//! as a double-quoted identifier with `"` doubled, so a guest can name any table but cannot
//! inject SQL. Values are validated with the same parsers as bound parameters (a malformed
//! one is a `WASMIG-BIND` error naming its row and column) and rendered in PostgreSQL's text
//! input form (`pg_script`), then escaped for the COPY text format, in which only the
//! backslash, tab, newline and carriage return are special, so no value can end its field or
//! row early.
//!
//! Not here: sending the data (`postgres`, `sqlite`).

#![allow(clippy::result_large_err)]

use std::fmt::Write as _;

use super::columns;
use super::pg_script;
use super::value::ParamRef;
use wasmig_contract::{ColumnData, ColumnValues, SqlError, Value};

/// The most parameters one SQLite statement may bind (`SQLITE_MAX_VARIABLE_NUMBER` of the
/// bundled SQLite, 3.32 and later).
const SQLITE_MAX_PARAMS: usize = 32_766;

/// Rows per SQLite `INSERT`, at most: long statements gain nothing past this.
const SQLITE_MAX_ROWS: usize = 1_000;

/// `"name"`, with `"` doubled (`quote` is `` ` `` on MySQL).
fn quote_ident(name: &str, what: &str, quote: char) -> Result<String, SqlError> {
    if name.is_empty() {
        return Err(SqlError::wasmig(
            "BIND",
            format!("copy-in: the {what} name is empty"),
        ));
    }
    if name.contains('\0') {
        return Err(SqlError::wasmig(
            "BIND",
            format!("copy-in: the {what} name contains the NUL character"),
        ));
    }
    let doubled = format!("{quote}{quote}");
    Ok(format!("{quote}{}{quote}", name.replace(quote, &doubled)))
}

/// The quoted target: `"table" ("a", "b")`, the table optionally qualified by one schema
/// (`audit.events`: split at the first `.`).
///
/// # Errors
/// `WASMIG-BIND` for no columns, an empty name, or a NUL character.
pub(super) fn target(table: &str, columns: &[String]) -> Result<String, SqlError> {
    target_quoted(table, columns, '"')
}

/// [`target`], with names quoted by `quote` (`` ` `` on MySQL).
///
/// # Errors
/// As [`target`].
pub(super) fn target_quoted(
    table: &str,
    columns: &[String],
    quote: char,
) -> Result<String, SqlError> {
    if columns.is_empty() {
        return Err(SqlError::wasmig(
            "BIND",
            "copy-in needs at least one column",
        ));
    }
    let table = match table.split_once('.') {
        Some((schema, name)) => format!(
            "{}.{}",
            quote_ident(schema, "schema", quote)?,
            quote_ident(name, "table", quote)?
        ),
        None => quote_ident(table, "table", quote)?,
    };
    let columns = columns
        .iter()
        .map(|c| quote_ident(c, "column", quote))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("{table} ({})", columns.join(", ")))
}

/// Checks that every row has one value per column.
///
/// # Errors
/// `WASMIG-BIND` naming the first row of the wrong width.
pub(super) fn check_widths(rows: &[Vec<Value>], width: usize) -> Result<(), SqlError> {
    match rows.iter().position(|row| row.len() != width) {
        Some(i) => Err(SqlError::wasmig(
            "BIND",
            format!(
                "copy-in: row {} has {} values for {width} columns",
                i + 1,
                rows[i].len()
            ),
        )),
        None => Ok(()),
    }
}

/// The COPY text-format data for `rows`: one line per row, fields separated by tabs, `\N`
/// for null.
///
/// # Errors
/// `WASMIG-BIND` for a row of the wrong width or a malformed value, naming row and column.
pub(super) fn pg_copy_data(rows: &[Vec<Value>], width: usize) -> Result<Vec<u8>, SqlError> {
    check_widths(rows, width)?;
    let mut out = String::with_capacity(rows.len() * width * 12);
    for (r, row) in rows.iter().enumerate() {
        for (c, value) in row.iter().enumerate() {
            if c > 0 {
                out.push('\t');
            }
            field(&mut out, value, ParamRef::copy_column(r, c))?;
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// The COPY text-format data for a guest's columns (`copy-in-columns`), as
/// [`pg_copy_data`] writes rows: text and integers straight from the columns, every other
/// value through its text form.
///
/// # Errors
/// `WASMIG-BIND` for columns that do not hold together ([`columns::check`]), not one per
/// name, or a malformed value (naming row and column).
pub(super) fn pg_copy_columns(values: &[ColumnValues], width: usize) -> Result<Vec<u8>, SqlError> {
    if values.len() != width {
        return Err(SqlError::wasmig(
            "BIND",
            format!(
                "copy-in-columns: {} columns of values for {width} column names; give one per name",
                values.len()
            ),
        ));
    }
    let rows = columns::check("copy-in-columns", values)?;
    let mut out = String::with_capacity(rows * width * 12);
    for r in 0..rows {
        for (c, column) in values.iter().enumerate() {
            if c > 0 {
                out.push('\t');
            }
            let at = ParamRef::copy_column(r, c);
            if column.nulls.get(r).copied().unwrap_or(false) {
                out.push_str("\\N");
                continue;
            }
            match &column.data {
                ColumnData::Text(p) => text_field(&mut out, columns::piece(p, r), at)?,
                ColumnData::Int16(v) => write!(out, "{}", v[r]).expect("writing to a String"),
                ColumnData::Int32(v) => write!(out, "{}", v[r]).expect("writing to a String"),
                ColumnData::Int64(v) => write!(out, "{}", v[r]).expect("writing to a String"),
                _ => field(&mut out, &columns::value_at(column, r), at)?,
            }
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Appends a text field, refusing NUL (which PostgreSQL's text cannot hold).
fn text_field(out: &mut String, text: &str, at: ParamRef) -> Result<(), SqlError> {
    if text.contains('\0') {
        return Err(at.error("text cannot contain the NUL character on PostgreSQL"));
    }
    escape_field(out, text);
    Ok(())
}

/// Appends one field: the value's text input form, escaped. Text and integers, the bulk of
/// what a backfill writes, are written straight into `out`; every other value goes through
/// its text form ([`pg_script::scalar_text`], [`pg_script::array_text`]) first.
fn field(out: &mut String, value: &Value, at: ParamRef) -> Result<(), SqlError> {
    match value {
        Value::Null => out.push_str("\\N"),
        Value::Text(text) => text_field(out, text, at)?,
        // Digits and a sign: nothing to escape.
        Value::Int16(v) => write!(out, "{v}").expect("writing to a String"),
        Value::Int32(v) => write!(out, "{v}").expect("writing to a String"),
        Value::Int64(v) => write!(out, "{v}").expect("writing to a String"),
        Value::Array(array) => escape_field(out, &pg_script::array_text(array, at)?),
        scalar => escape_field(
            out,
            &pg_script::scalar_text(scalar, at)?
                .expect("only null has no text, and it was handled above"),
        ),
    }
    Ok(())
}

/// Appends `text` escaped for one field of the COPY text format: the runs between special
/// characters are copied whole (each special character is ASCII, so a run ends on a
/// character boundary).
fn escape_field(out: &mut String, text: &str) {
    let mut run = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => continue,
        };
        out.push_str(&text[run..i]);
        out.push_str(escaped);
        run = i + 1;
    }
    out.push_str(&text[run..]);
}

/// How many rows go into one SQLite `INSERT` of `width` columns.
pub(super) fn sqlite_rows_per_insert(width: usize) -> usize {
    (SQLITE_MAX_PARAMS / width.max(1)).clamp(1, SQLITE_MAX_ROWS)
}

/// `INSERT INTO target VALUES (?, ?), (?, ?)…` for `rows` rows of `width` columns.
pub(super) fn sqlite_insert(target: &str, width: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    let mut sql = format!("INSERT INTO {target} VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmig_contract::ArrayValue;

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn names_are_quoted_so_they_cannot_inject_sql() {
        assert_eq!(
            target("people", &[s("id"), s("Email")]).unwrap(),
            r#""people" ("id", "Email")"#
        );
        assert_eq!(
            target("audit.events", &[s("a")]).unwrap(),
            r#""audit"."events" ("a")"#
        );
        assert_eq!(
            target(r#"t" (x) FROM PROGRAM 'id'; --"#, &[s(r#"c"d"#)]).unwrap(),
            r#""t"" (x) FROM PROGRAM 'id'; --" ("c""d")"#
        );
    }

    #[test]
    fn empty_names_and_no_columns_are_refused() {
        assert_eq!(target("t", &[]).unwrap_err().code, "WASMIG-BIND");
        assert!(
            target("", &[s("a")])
                .unwrap_err()
                .message
                .contains("table name is empty")
        );
        assert!(target("s.", &[s("a")]).is_err());
        assert!(
            target("t", &[s("")])
                .unwrap_err()
                .message
                .contains("column name")
        );
        assert!(target("t\0", &[s("a")]).is_err());
    }

    #[test]
    fn copy_fields_escape_every_special_character() {
        let rows = vec![
            vec![Value::Int64(1), Value::Text(s("tab\there\nnew\\line\r"))],
            vec![Value::Int64(2), Value::Null],
            vec![Value::Int64(3), Value::Text(s(r"\N"))],
        ];
        let data = String::from_utf8(pg_copy_data(&rows, 2).unwrap()).unwrap();
        assert_eq!(data, "1\ttab\\there\\nnew\\\\line\\r\n2\t\\N\n3\t\\\\N\n");
    }

    #[test]
    fn text_is_escaped_around_multibyte_characters_and_nul_is_refused() {
        let rows = vec![vec![
            Value::Text(s("é\\ü\tñ")),
            Value::Int16(-7),
            Value::Int32(i32::MIN),
        ]];
        let data = String::from_utf8(pg_copy_data(&rows, 3).unwrap()).unwrap();
        assert_eq!(data, "é\\\\ü\\tñ\t-7\t-2147483648\n");
        let rows = vec![vec![Value::Int64(1)], vec![Value::Text(s("a\0b"))]];
        let err = pg_copy_data(&rows, 1).unwrap_err();
        assert_eq!(err.code, "WASMIG-BIND");
        assert!(
            err.message.starts_with("row 2, column 1") && err.message.contains("NUL"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bytes_and_arrays_are_escaped_twice_as_copy_requires() {
        let rows = vec![vec![
            Value::Bytes(vec![0, 255]),
            Value::Array(ArrayValue::Text(vec![Some(s("a\"b")), None])),
            Value::Float64(f64::NAN),
            Value::Bool(true),
        ]];
        let data = String::from_utf8(pg_copy_data(&rows, 4).unwrap()).unwrap();
        assert_eq!(data, "\\\\x00ff\t{\"a\\\\\"b\",NULL}\tNaN\ttrue\n");
    }

    #[test]
    fn malformed_values_and_wrong_widths_name_row_and_column() {
        let rows = vec![
            vec![
                Value::Int64(1),
                Value::Uuid(s("67e55044-10b1-426f-9247-bb680e5fe0c8")),
            ],
            vec![Value::Int64(2), Value::Uuid(s("not-a-uuid"))],
        ];
        let err = pg_copy_data(&rows, 2).unwrap_err();
        assert_eq!(err.code, "WASMIG-BIND");
        assert!(
            err.message.starts_with("row 2, column 2"),
            "{}",
            err.message
        );
        let err = pg_copy_data(&[vec![Value::Int64(1)]], 2).unwrap_err();
        assert!(
            err.message.contains("row 1 has 1 values for 2 columns"),
            "{}",
            err.message
        );
    }

    #[test]
    fn sqlite_inserts_stay_under_the_parameter_limit() {
        assert_eq!(sqlite_rows_per_insert(1), 1_000);
        assert_eq!(sqlite_rows_per_insert(100), 327);
        assert_eq!(sqlite_rows_per_insert(40_000), 1);
        assert_eq!(
            sqlite_insert(r#""t" ("a", "b")"#, 2, 2),
            r#"INSERT INTO "t" ("a", "b") VALUES (?, ?), (?, ?)"#
        );
    }
}

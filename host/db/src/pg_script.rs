//! `execute-many` on PostgreSQL in one round trip: the statement is sent once as
//! `PREPARE`, each parameter row as an `EXECUTE` with literal arguments, and the whole script
//! goes through the simple query protocol as one message.
//!
//! sqlx 0.9 has no public API to pipeline several Bind/Execute messages before one Sync, so
//! a loop of bound executions costs one network round trip per row. This script costs one.
//!
//! Safety of the literals: every argument is written as an `E'…'` string, in which a
//! backslash and a quote are the only special characters (both escaped here) whatever the
//! server's `standard_conforming_strings`, so no value can end its literal. The server then
//! reads each literal as the parameter's declared type, exactly as it parses text input.
//! Values are validated first with the same parsers as bound parameters, so a malformed
//! value is the same `WASMIG-BIND` error, and temporal values are rendered in canonical form.
//!
//! The text input forms of values ([`scalar_text`], [`array_text`]) are shared with
//! `COPY` (`pg_copy`).
//!
//! Not here: running the script, or the per-row fallback (`postgres`).

#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::value::{self, ParamRef};
use wasmig_contract::{ArrayValue, SqlError, Value};

/// Parameter rows per script: bounds the size of one message (and of the host's copy of it).
pub(super) const ROWS_PER_SCRIPT: usize = 2_000;

/// Makes prepared-statement names unique for the life of the process (they live on pooled
/// connections, and one left behind by a failed script must not collide).
static NEXT_NAME: AtomicU64 = AtomicU64::new(0);

/// The script for `rows` (all rows, or `None` when the rows disagree on a parameter's
/// type, in which case the caller runs them one by one).
///
/// # Errors
/// `WASMIG-BIND` for a malformed value, naming the row and parameter.
pub(super) fn script(
    sql: &str,
    rows: &[Vec<Value>],
    first_row: usize,
) -> Result<Option<String>, SqlError> {
    let name = format!(
        "wasmig_many_{}_{}",
        std::process::id(),
        NEXT_NAME.fetch_add(1, Ordering::Relaxed)
    );
    script_named(sql, rows, first_row, &name, true)
}

/// [`script`] with the prepared statement's `name`; `typed`: declare each parameter's type
/// from the values (else the server infers them from the statement, as for a copy-in's
/// `INSERT`, whose text values fill columns of any type).
///
/// # Errors
/// As [`script`].
pub(super) fn script_named(
    sql: &str,
    rows: &[Vec<Value>],
    first_row: usize,
    name: &str,
    typed: bool,
) -> Result<Option<String>, SqlError> {
    let types = match (typed, parameter_types(rows)) {
        (false, _) => Vec::new(),
        (true, Some(types)) => types,
        (true, None) => return Ok(None),
    };
    let mut out = String::with_capacity(sql.len() + 64 + rows.len() * 16 * types.len().max(1));
    out.push_str("PREPARE ");
    out.push_str(name);
    if !types.is_empty() {
        out.push('(');
        out.push_str(&types.join(", "));
        out.push(')');
    }
    out.push_str(" AS ");
    out.push_str(sql);
    // On its own line, so a trailing `-- comment` in the statement cannot swallow the `;`.
    out.push_str("\n;\n");
    for (i, row) in rows.iter().enumerate() {
        out.push_str("EXECUTE ");
        out.push_str(name);
        if !row.is_empty() {
            out.push('(');
            for (p, v) in row.iter().enumerate() {
                if p > 0 {
                    out.push_str(", ");
                }
                literal(
                    &mut out,
                    v,
                    ParamRef::new('$', p).in_row(Some(first_row + i)),
                )?;
            }
            out.push(')');
        }
        out.push_str(";\n");
    }
    let _ = write!(out, "DEALLOCATE {name};");
    Ok(Some(out))
}

/// The declared type of each parameter: the type of its first non-null value, `unknown`
/// (inferred by the server) when all are null. `None` when rows differ in length or two
/// rows give one parameter different types.
fn parameter_types(rows: &[Vec<Value>]) -> Option<Vec<&'static str>> {
    let width = rows.first()?.len();
    let mut types = vec!["unknown"; width];
    for row in rows {
        if row.len() != width {
            return None;
        }
        for (slot, value) in types.iter_mut().zip(row) {
            let Some(ty) = type_name(value) else { continue };
            if *slot == "unknown" {
                *slot = ty;
            } else if *slot != ty {
                return None;
            }
        }
    }
    Some(types)
}

/// The PostgreSQL type a value binds as; `None` for null.
fn type_name(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => "bool",
        Value::Int16(_) => "int2",
        Value::Int32(_) => "int4",
        Value::Int64(_) => "int8",
        Value::Float32(_) => "float4",
        Value::Float64(_) => "float8",
        Value::Numeric(_) => "numeric",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytea",
        Value::Json(_) => "json",
        Value::Jsonb(_) => "jsonb",
        Value::Uuid(_) => "uuid",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::Timestamptz(_) => "timestamptz",
        Value::Array(array) => match array {
            ArrayValue::Bool(_) => "bool[]",
            ArrayValue::Int16(_) => "int2[]",
            ArrayValue::Int32(_) => "int4[]",
            ArrayValue::Int64(_) => "int8[]",
            ArrayValue::Float32(_) => "float4[]",
            ArrayValue::Float64(_) => "float8[]",
            ArrayValue::Numeric(_) => "numeric[]",
            ArrayValue::Text(_) => "text[]",
            ArrayValue::Bytes(_) => "bytea[]",
            ArrayValue::Json(_) => "json[]",
            ArrayValue::Jsonb(_) => "jsonb[]",
            ArrayValue::Uuid(_) => "uuid[]",
            ArrayValue::Date(_) => "date[]",
            ArrayValue::Time(_) => "time[]",
            ArrayValue::Timestamp(_) => "timestamp[]",
            ArrayValue::Timestamptz(_) => "timestamptz[]",
        },
    })
}

/// Appends `value` as an SQL literal (`NULL` or an `E'…'` string).
fn literal(out: &mut String, value: &Value, at: ParamRef) -> Result<(), SqlError> {
    let text = match value {
        Value::Null => {
            out.push_str("NULL");
            return Ok(());
        }
        Value::Array(array) => array_text(array, at)?,
        scalar => match scalar_text(scalar, at)? {
            Some(text) => text,
            None => unreachable!("only null has no text, and it returned above"),
        },
    };
    quote(out, &text);
    Ok(())
}

/// Appends `text` as `E'…'`.
pub(super) fn quote(out: &mut String, text: &str) {
    out.reserve(text.len() + 3);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// The text input form of a scalar (`None` for null), validated like a bound parameter.
pub(super) fn scalar_text(value: &Value, at: ParamRef) -> Result<Option<String>, SqlError> {
    Ok(Some(match value {
        Value::Null | Value::Array(_) => return Ok(None),
        Value::Bool(v) => v.to_string(),
        Value::Int16(v) => v.to_string(),
        Value::Int32(v) => v.to_string(),
        Value::Int64(v) => v.to_string(),
        Value::Float32(v) => float_text(f64::from(*v), v.to_string(), || format!("{v:e}")),
        Value::Float64(v) => float_text(*v, v.to_string(), || format!("{v:e}")),
        Value::Numeric(text) => {
            value::parse_numeric(text, at)?;
            text.clone()
        }
        Value::Text(text) => {
            if text.contains('\0') {
                return Err(at.error("text cannot contain the NUL character on PostgreSQL"));
            }
            text.clone()
        }
        Value::Bytes(bytes) => {
            let mut hex = String::with_capacity(2 + bytes.len() * 2);
            hex.push_str("\\x");
            for b in bytes {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
        Value::Json(text) | Value::Jsonb(text) => {
            value::check_json(text, at)?;
            text.clone()
        }
        Value::Uuid(text) => value::parse_uuid(text, at)?.hyphenated().to_string(),
        Value::Date(text) => value::format_date(value::parse_date(text, at)?),
        Value::Time(text) => value::format_time(value::parse_time(text, at)?),
        Value::Timestamp(text) => value::format_timestamp(value::parse_timestamp(text, at)?),
        Value::Timestamptz(text) => value::format_timestamptz(value::parse_timestamptz(text, at)?),
    }))
}

/// The longest plain decimal a float is written as: past it, the exponent form.
const FLOAT_PLAIN_MAX: usize = 24;

/// Rust prints finite floats in the shortest digits that read back exactly, which is also
/// valid PostgreSQL input, as a plain decimal (`shortest`) or with an exponent
/// (`exponent`); the special values need PostgreSQL's spelling. The plain decimal of a
/// tiny or huge value runs to hundreds of digits (`-2.2250738585072014e-308` as 330 bytes,
/// which let a script grow past what `up --sql` counts for it, found by a review): such a
/// value is written with its exponent.
fn float_text(v: f64, shortest: String, exponent: impl FnOnce() -> String) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if shortest.len() > FLOAT_PLAIN_MAX {
        exponent()
    } else {
        shortest
    }
}

/// The array input form `{…}`: each element double-quoted with `"` and `\` escaped, or
/// `NULL`.
pub(super) fn array_text(array: &ArrayValue, at: ParamRef) -> Result<String, SqlError> {
    fn wrap<T: Clone>(items: &[Option<T>], f: impl Fn(T) -> Value) -> Vec<Value> {
        items
            .iter()
            .map(|i| i.clone().map_or(Value::Null, &f))
            .collect()
    }
    let elements = match array {
        ArrayValue::Bool(items) => wrap(items, Value::Bool),
        ArrayValue::Int16(items) => wrap(items, Value::Int16),
        ArrayValue::Int32(items) => wrap(items, Value::Int32),
        ArrayValue::Int64(items) => wrap(items, Value::Int64),
        ArrayValue::Float32(items) => wrap(items, Value::Float32),
        ArrayValue::Float64(items) => wrap(items, Value::Float64),
        ArrayValue::Numeric(items) => wrap(items, Value::Numeric),
        ArrayValue::Text(items) => wrap(items, Value::Text),
        ArrayValue::Bytes(items) => wrap(items, Value::Bytes),
        ArrayValue::Json(items) => wrap(items, Value::Json),
        ArrayValue::Jsonb(items) => wrap(items, Value::Jsonb),
        ArrayValue::Uuid(items) => wrap(items, Value::Uuid),
        ArrayValue::Date(items) => wrap(items, Value::Date),
        ArrayValue::Time(items) => wrap(items, Value::Time),
        ArrayValue::Timestamp(items) => wrap(items, Value::Timestamp),
        ArrayValue::Timestamptz(items) => wrap(items, Value::Timestamptz),
    };
    let mut out = String::from("{");
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match scalar_text(element, at.element(i))? {
            None => out.push_str("NULL"),
            Some(text) => {
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn floats_are_short_and_exact() {
        let at = ParamRef::new('$', 0);
        let text = |v: Value| scalar_text(&v, at).unwrap().unwrap();
        for (v, want) in [
            (Value::Float64(0.1), "0.1"),
            (Value::Float64(-1.5), "-1.5"),
            (Value::Float64(1e15), "1000000000000000"),
            (
                Value::Float64(-2.225_073_858_507_201_4e-308),
                "-2.2250738585072014e-308",
            ),
            (Value::Float64(f64::MAX), "1.7976931348623157e308"),
            (Value::Float64(5e-324), "5e-324"),
            (Value::Float32(f32::MAX), "3.4028235e38"),
            (Value::Float32(1e-40), "1e-40"),
            (Value::Float64(f64::NAN), "NaN"),
        ] {
            assert_eq!(text(v), want);
        }
        for v in [f64::MIN_POSITIVE, -f64::MAX, 1e-7, 123.456e200] {
            let written = text(Value::Float64(v));
            assert!(written.len() <= FLOAT_PLAIN_MAX, "{written}");
            assert_eq!(written.parse::<f64>().unwrap(), v, "reads back exactly");
        }
    }

    #[test]
    fn quotes_cannot_end_a_literal() {
        let mut out = String::new();
        quote(&mut out, r"a'b\c");
        assert_eq!(out, r"E'a''b\\c'");
    }

    #[test]
    fn arrays_escape_elements_and_keep_nulls() {
        let at = ParamRef::new('$', 0);
        let text = array_text(&ArrayValue::Text(vec![Some(s(r#"x"y\z"#)), None]), at).unwrap();
        assert_eq!(text, r#"{"x\"y\\z",NULL}"#);
        let bytes = array_text(&ArrayValue::Bytes(vec![Some(vec![1, 255])]), at).unwrap();
        assert_eq!(bytes, r#"{"\\x01ff"}"#);
    }

    #[test]
    fn rows_that_disagree_on_a_type_are_not_scripted() {
        let rows = vec![vec![Value::Int64(1)], vec![Value::Text(s("x"))]];
        assert_eq!(script("SELECT $1", &rows, 0).unwrap(), None);
        let rows = vec![vec![Value::Null], vec![Value::Int64(2)]];
        let script = script("SELECT $1", &rows, 0).unwrap().unwrap();
        assert!(script.starts_with("PREPARE wasmig_many_"), "{script}");
        assert!(script.contains("(int8) AS SELECT $1\n;"), "{script}");
        assert!(
            script.contains("(NULL);") && script.contains("(E'2');"),
            "{script}"
        );
    }

    #[test]
    fn malformed_values_name_the_row() {
        let rows = vec![
            vec![Value::Date(s("2024-01-01"))],
            vec![Value::Date(s("2024-02-30"))],
        ];
        let err = script("SELECT $1", &rows, 10).unwrap_err();
        assert_eq!(err.code, "WASMIG-BIND");
        assert!(
            err.message.starts_with("row 12, parameter $1"),
            "{}",
            err.message
        );
    }
}

//! The text formats of the WIT value model, shared by both backends.
//!
//! Parsing a parameter's text (`numeric`, `uuid`, `date`, `time`, `timestamp`, `timestamptz`,
//! `json`) into a typed value, with a `WASMIG-BIND` error naming the parameter when the text
//! is malformed, and formatting temporal values back into the documented formats. The
//! formats themselves are specified in `wit/migration.wit` (interface `types`).
//!
//! Not here: binding to a driver or decoding a driver's wire format (`postgres`, `sqlite`).

// `SqlError` is the WIT record handed to the guest as is; errors are the cold path, and
// boxing it would only add a conversion at every trait boundary.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use uuid::Uuid;

use wasmig_contract::SqlError;

/// Names a parameter in error messages: `$1` on PostgreSQL, `?1` on SQLite, plus the array
/// element (1-based, as SQL counts) when the error is inside an array.
#[derive(Debug, Clone, Copy)]
pub(super) struct ParamRef {
    /// `$` or `?`.
    pub(super) marker: char,
    /// 1-based parameter number.
    pub(super) number: usize,
    /// 1-based array element, if any.
    pub(super) element: Option<usize>,
    /// 1-based row of an `execute-many` or `copy-in`, if any.
    pub(super) row: Option<usize>,
    /// Whether this is a column of a `copy-in` row rather than a statement parameter.
    pub(super) column: bool,
}

impl ParamRef {
    /// The `index`th (0-based) parameter of a statement.
    pub(super) fn new(marker: char, index: usize) -> Self {
        ParamRef {
            marker,
            number: index + 1,
            element: None,
            row: None,
            column: false,
        }
    }

    /// The `index`th (0-based) column of the `row`th (0-based) row of a `copy-in`.
    pub(super) fn copy_column(row: usize, index: usize) -> Self {
        ParamRef {
            marker: '#',
            number: index + 1,
            element: None,
            row: Some(row + 1),
            column: true,
        }
    }

    /// The same parameter in the `index`th (0-based) row of an `execute-many`, if any.
    pub(super) fn in_row(self, index: Option<usize>) -> Self {
        ParamRef {
            row: index.map(|i| i + 1),
            ..self
        }
    }

    /// The `index`th (0-based) element of this array parameter.
    pub(super) fn element(self, index: usize) -> Self {
        ParamRef {
            element: Some(index + 1),
            ..self
        }
    }

    /// A `WASMIG-BIND` error about this parameter.
    pub(super) fn error(self, message: impl std::fmt::Display) -> SqlError {
        SqlError::wasmig("BIND", format!("{self}: {message}"))
    }

    /// A `WASMIG-BIND` error for malformed text: what was given and what was expected.
    fn malformed(self, got: &str, expected: &str) -> SqlError {
        self.error(format_args!("`{}` is not {expected}", excerpt(got)))
    }
}

impl std::fmt::Display for ParamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(row) = self.row {
            write!(f, "row {row}, ")?;
        }
        if self.column {
            write!(f, "column {}", self.number)?;
        } else {
            write!(f, "parameter {}{}", self.marker, self.number)?;
        }
        if let Some(element) = self.element {
            write!(f, " (array element {element})")?;
        }
        Ok(())
    }
}

/// At most 60 characters of a malformed value, so an error message stays readable.
fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An exact decimal in plain notation (`-12.3400`): optional sign, digits, optional fraction.
/// Exponents, `NaN` and infinities are refused (the WIT format has none of them).
pub(super) fn parse_numeric(text: &str, at: ParamRef) -> Result<BigDecimal, SqlError> {
    const EXPECTED: &str =
        "an exact decimal in plain notation such as -12.3400 (no exponent, no NaN)";
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits_only(int) || !digits_only(frac) {
        return Err(at.malformed(text, EXPECTED));
    }
    BigDecimal::from_str(text).map_err(|_| at.malformed(text, EXPECTED))
}

/// A UUID; the canonical hyphenated form is expected, the other forms `uuid` reads are
/// accepted too.
pub(super) fn parse_uuid(text: &str, at: ParamRef) -> Result<Uuid, SqlError> {
    Uuid::parse_str(text)
        .map_err(|_| at.malformed(text, "a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8"))
}

/// `YYYY-MM-DD`.
pub(super) fn parse_date(text: &str, at: ParamRef) -> Result<NaiveDate, SqlError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| at.malformed(text, "a date YYYY-MM-DD"))
}

/// `HH:MM:SS` with an optional fraction.
pub(super) fn parse_time(text: &str, at: ParamRef) -> Result<NaiveTime, SqlError> {
    NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
        .map_err(|_| at.malformed(text, "a time HH:MM:SS[.ffffff]"))
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`; a space instead of the `T` is accepted too (many
/// languages print timestamps that way).
pub(super) fn parse_timestamp(text: &str, at: ParamRef) -> Result<NaiveDateTime, SqlError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .map_err(|_| {
            at.malformed(
                text,
                "a timestamp YYYY-MM-DDTHH:MM:SS[.ffffff] without a zone",
            )
        })
}

/// RFC 3339 with an offset or `Z`, converted to UTC.
pub(super) fn parse_timestamptz(text: &str, at: ParamRef) -> Result<DateTime<Utc>, SqlError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            at.malformed(
                text,
                "an RFC 3339 timestamp with an offset such as 2024-01-02T03:04:05.123456Z or …+02:00",
            )
        })
}

/// On SQLite, which stores them as text: the text of a JSON, UUID, date, time or timestamp
/// value, validated as on PostgreSQL (so a malformed value fails on both); `None` for the
/// other kinds, which have their own storage.
///
/// # Errors
/// `WASMIG-BIND` for a malformed value, and for `numeric` and arrays, which SQLite lacks.
pub(super) fn sqlite_text(
    value: &wasmig_contract::Value,
    at: ParamRef,
) -> Result<Option<&str>, SqlError> {
    use wasmig_contract::Value;
    Ok(Some(match value {
        Value::Json(text) | Value::Jsonb(text) => {
            check_json(text, at)?;
            text
        }
        Value::Uuid(text) => {
            parse_uuid(text, at)?;
            text
        }
        Value::Date(text) => {
            parse_date(text, at)?;
            text
        }
        Value::Time(text) => {
            parse_time(text, at)?;
            text
        }
        Value::Timestamp(text) => {
            parse_timestamp(text, at)?;
            text
        }
        Value::Timestamptz(text) => {
            parse_timestamptz(text, at)?;
            text
        }
        Value::Numeric(_) => {
            return Err(at.error(
                "SQLite has no exact numeric type; bind the decimal as text, or as a float if rounding is acceptable",
            ));
        }
        Value::Array(_) => {
            return Err(at.error(
                "SQLite has no array type; bind the elements as JSON text (a json value) or store them in a separate table",
            ));
        }
        _ => return Ok(None),
    }))
}

/// Checks that `text` is one JSON document (the database would reject it later, with a less
/// helpful message, or on SQLite not at all).
pub(super) fn check_json(text: &str, at: ParamRef) -> Result<(), SqlError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| {
            at.error(format_args!(
                "`{}` is not a JSON document ({e})",
                excerpt(text)
            ))
        })
}

/// `.ffffff` when the value has a sub-second part, nothing otherwise: always six digits, so
/// the output has one spelling per instant.
fn push_fraction(out: &mut String, nanos: u32) {
    let micros = nanos / 1_000;
    if micros != 0 {
        let _ = write!(out, ".{micros:06}");
    }
}

/// `HH:MM:SS[.ffffff]`.
pub(super) fn format_time(time: NaiveTime) -> String {
    let mut out = time.format("%H:%M:%S").to_string();
    push_fraction(&mut out, time.nanosecond());
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
pub(super) fn format_timestamp(ts: NaiveDateTime) -> String {
    let mut out = ts.format("%Y-%m-%dT%H:%M:%S").to_string();
    push_fraction(&mut out, ts.nanosecond());
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, in UTC.
pub(super) fn format_timestamptz(ts: DateTime<Utc>) -> String {
    let mut out = format_timestamp(ts.naive_utc());
    out.push('Z');
    out
}

/// `YYYY-MM-DD`.
pub(super) fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> ParamRef {
        ParamRef::new('$', 0)
    }

    #[test]
    fn numeric_accepts_plain_notation_only() {
        assert_eq!(
            parse_numeric("-12.3400", at()).unwrap().to_string(),
            "-12.3400"
        );
        assert_eq!(parse_numeric("7", at()).unwrap().to_string(), "7");
        for bad in [
            "", "-", ".", "1e5", "NaN", "1.2.3", "12,5", " 1", "infinity",
        ] {
            let err = parse_numeric(bad, at()).unwrap_err();
            assert_eq!(err.code, "WASMIG-BIND", "{bad}");
            assert!(err.message.starts_with("parameter $1: "), "{}", err.message);
        }
    }

    #[test]
    fn temporal_formats_round_trip() {
        let t = parse_time("03:04:05.5", at()).unwrap();
        assert_eq!(format_time(t), "03:04:05.500000");
        assert_eq!(
            format_time(parse_time("03:04:05", at()).unwrap()),
            "03:04:05"
        );
        let ts = parse_timestamp("2024-01-02 03:04:05.123456", at()).unwrap();
        assert_eq!(format_timestamp(ts), "2024-01-02T03:04:05.123456");
        let tz = parse_timestamptz("2024-01-02T05:04:05+02:00", at()).unwrap();
        assert_eq!(format_timestamptz(tz), "2024-01-02T03:04:05Z");
        assert!(parse_timestamptz("2024-01-02T03:04:05", at()).is_err());
        assert!(parse_date("2024-13-01", at()).is_err());
    }

    #[test]
    fn errors_name_the_array_element() {
        let err = parse_uuid("nope", ParamRef::new('?', 2).element(4)).unwrap_err();
        assert!(
            err.message
                .starts_with("parameter ?3 (array element 5): `nope` is not a UUID"),
            "{}",
            err.message
        );
        assert!(check_json("{\"a\": [1, 2]}", at()).is_ok());
        assert!(check_json("{", at()).is_err());
    }
}

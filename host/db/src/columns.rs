//! The column shape of a batch (WIT 0.4.0's `column-values`): a result's rows turned into
//! columns for `query-columns`, and a guest's columns turned into rows (`copy-in-columns`)
//! or array parameters (`execute-columns`).
//!
//! What a guest sends is checked whole before anything reaches the database: every column
//! the same number of rows, null flags one per row (or none), and packed texts and bytes
//! cut at non-decreasing ends inside their buffer, texts between characters. A column that
//! does not hold together is a `WASMIG-BIND` error naming it.
//!
//! Not here: binding or encoding the values (each backend), the calls themselves (the
//! sandbox's `host`).

// `SqlError` is the WIT record handed to the guest as is (see `value`).
#![allow(clippy::result_large_err)]

use wasmig_contract::{
    ArrayValue, ColumnData, ColumnResult, ColumnValues, PackedBytes, PackedText, QueryResult,
    SqlError, Value,
};

use crate::SqlResult;

/// The case of a column: the type of its non-null values, as a `column-data` case names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `bool`
    Bool,
    /// `int16`
    Int16,
    /// `int32`
    Int32,
    /// `int64`
    Int64,
    /// `float32`
    Float32,
    /// `float64`
    Float64,
    /// `numeric`, packed text
    Numeric,
    /// `text`, packed text
    Text,
    /// `bytes`, packed bytes
    Bytes,
    /// `json`, packed text
    Json,
    /// `jsonb`, packed text
    Jsonb,
    /// `uuid`, packed text
    Uuid,
    /// `date`, packed text
    Date,
    /// `time`, packed text
    Time,
    /// `timestamp`, packed text
    Timestamp,
    /// `timestamptz`, packed text
    Timestamptz,
}

/// What a value says of its column's case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Null,
    Array,
    Kind(ColumnKind),
}

impl Seen {
    fn of(value: &Value) -> Seen {
        Seen::Kind(match value {
            Value::Null => return Seen::Null,
            Value::Array(_) => return Seen::Array,
            Value::Bool(_) => ColumnKind::Bool,
            Value::Int16(_) => ColumnKind::Int16,
            Value::Int32(_) => ColumnKind::Int32,
            Value::Int64(_) => ColumnKind::Int64,
            Value::Float32(_) => ColumnKind::Float32,
            Value::Float64(_) => ColumnKind::Float64,
            Value::Numeric(_) => ColumnKind::Numeric,
            Value::Text(_) => ColumnKind::Text,
            Value::Bytes(_) => ColumnKind::Bytes,
            Value::Json(_) => ColumnKind::Json,
            Value::Jsonb(_) => ColumnKind::Jsonb,
            Value::Uuid(_) => ColumnKind::Uuid,
            Value::Date(_) => ColumnKind::Date,
            Value::Time(_) => ColumnKind::Time,
            Value::Timestamp(_) => ColumnKind::Timestamp,
            Value::Timestamptz(_) => ColumnKind::Timestamptz,
        })
    }
}

impl ColumnKind {
    /// The WIT name of the case.
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Bool => "bool",
            ColumnKind::Int16 => "int16",
            ColumnKind::Int32 => "int32",
            ColumnKind::Int64 => "int64",
            ColumnKind::Float32 => "float32",
            ColumnKind::Float64 => "float64",
            ColumnKind::Numeric => "numeric",
            ColumnKind::Text => "text",
            ColumnKind::Bytes => "bytes",
            ColumnKind::Json => "json",
            ColumnKind::Jsonb => "jsonb",
            ColumnKind::Uuid => "uuid",
            ColumnKind::Date => "date",
            ColumnKind::Time => "time",
            ColumnKind::Timestamp => "timestamp",
            ColumnKind::Timestamptz => "timestamptz",
        }
    }
}

/// The values of a column being built.
enum Data {
    Bool(Vec<bool>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    /// A text-like case (the kind says which): the values one after another.
    Text(ColumnKind, String, Vec<u32>),
    Bytes(Vec<u8>, Vec<u32>),
}

/// A column built one row at a time, in one case: rows decoded straight into it (a
/// backend's `query-columns`), or values moved into it ([`from_rows`]).
pub struct ColumnBuilder {
    data: Data,
    /// One flag per row once a null was seen; empty before.
    nulls: Vec<bool>,
    any_null: bool,
    rows: usize,
}

impl ColumnBuilder {
    /// An empty column of `kind`, with room for `rows` rows.
    pub fn new(kind: ColumnKind, rows: usize) -> ColumnBuilder {
        let data = match kind {
            ColumnKind::Bool => Data::Bool(Vec::with_capacity(rows)),
            ColumnKind::Int16 => Data::Int16(Vec::with_capacity(rows)),
            ColumnKind::Int32 => Data::Int32(Vec::with_capacity(rows)),
            ColumnKind::Int64 => Data::Int64(Vec::with_capacity(rows)),
            ColumnKind::Float32 => Data::Float32(Vec::with_capacity(rows)),
            ColumnKind::Float64 => Data::Float64(Vec::with_capacity(rows)),
            ColumnKind::Bytes => Data::Bytes(Vec::new(), Vec::with_capacity(rows)),
            text => Data::Text(text, String::new(), Vec::with_capacity(rows)),
        };
        ColumnBuilder {
            data,
            nulls: Vec::new(),
            any_null: false,
            rows: 0,
        }
    }

    /// About how many bytes the column holds (for the result budget).
    pub fn bytes(&self) -> usize {
        self.nulls.len()
            + match &self.data {
                Data::Bool(v) => v.len(),
                Data::Int16(v) => v.len() * 2,
                Data::Int32(v) => v.len() * 4,
                Data::Float32(v) => v.len() * 4,
                Data::Int64(v) => v.len() * 8,
                Data::Float64(v) => v.len() * 8,
                Data::Text(_, text, ends) => text.len() + ends.len() * 4,
                Data::Bytes(bytes, ends) => bytes.len() + ends.len() * 4,
            }
    }

    fn row_done(&mut self, null: bool) {
        if null && !self.any_null {
            self.nulls = vec![false; self.rows];
            self.any_null = true;
        }
        if self.any_null {
            self.nulls.push(null);
        }
        self.rows += 1;
    }

    /// Appends SQL NULL (a filler in the data, flagged).
    pub fn push_null(&mut self) {
        match &mut self.data {
            Data::Bool(v) => v.push(false),
            Data::Int16(v) => v.push(0),
            Data::Int32(v) => v.push(0),
            Data::Int64(v) => v.push(0),
            Data::Float32(v) => v.push(0.0),
            Data::Float64(v) => v.push(0.0),
            Data::Text(_, text, ends) => ends.push(end(text.len())),
            Data::Bytes(bytes, ends) => ends.push(end(bytes.len())),
        }
        self.row_done(true);
    }

    /// Appends a text-like value (the caller knows the column is of a text-like kind).
    pub fn push_str(&mut self, value: &str) {
        let Data::Text(_, text, ends) = &mut self.data else {
            unreachable!("push_str on a column that is not text-like")
        };
        text.push_str(value);
        ends.push(end(text.len()));
        self.row_done(false);
    }

    /// Appends a byte string (the caller knows the column is `bytes`).
    pub fn push_bytes(&mut self, value: &[u8]) {
        let Data::Bytes(bytes, ends) = &mut self.data else {
            unreachable!("push_bytes on a column that is not bytes")
        };
        bytes.extend_from_slice(value);
        ends.push(end(bytes.len()));
        self.row_done(false);
    }

    /// Appends a value, and says whether it was of the column's case (a value of another
    /// case is not appended).
    #[must_use]
    pub fn push(&mut self, value: Value) -> bool {
        match (&mut self.data, value) {
            (_, Value::Null) => {
                self.push_null();
                return true;
            }
            (Data::Bool(v), Value::Bool(x)) => v.push(x),
            (Data::Int16(v), Value::Int16(x)) => v.push(x),
            (Data::Int32(v), Value::Int32(x)) => v.push(x),
            (Data::Int64(v), Value::Int64(x)) => v.push(x),
            (Data::Float32(v), Value::Float32(x)) => v.push(x),
            (Data::Float64(v), Value::Float64(x)) => v.push(x),
            (Data::Bytes(bytes, ends), Value::Bytes(x)) => {
                bytes.extend_from_slice(&x);
                ends.push(end(bytes.len()));
            }
            (Data::Text(kind, text, ends), value) => {
                let ((ColumnKind::Numeric, Value::Numeric(x))
                | (ColumnKind::Text, Value::Text(x))
                | (ColumnKind::Json, Value::Json(x))
                | (ColumnKind::Jsonb, Value::Jsonb(x))
                | (ColumnKind::Uuid, Value::Uuid(x))
                | (ColumnKind::Date, Value::Date(x))
                | (ColumnKind::Time, Value::Time(x))
                | (ColumnKind::Timestamp, Value::Timestamp(x))
                | (ColumnKind::Timestamptz, Value::Timestamptz(x))) = (*kind, value)
                else {
                    return false;
                };
                text.push_str(&x);
                ends.push(end(text.len()));
            }
            _ => return false,
        }
        self.row_done(false);
        true
    }

    /// The column.
    pub fn finish(self) -> ColumnValues {
        let data = match self.data {
            Data::Bool(v) => ColumnData::Bool(v),
            Data::Int16(v) => ColumnData::Int16(v),
            Data::Int32(v) => ColumnData::Int32(v),
            Data::Int64(v) => ColumnData::Int64(v),
            Data::Float32(v) => ColumnData::Float32(v),
            Data::Float64(v) => ColumnData::Float64(v),
            Data::Bytes(bytes, ends) => ColumnData::Bytes(PackedBytes { bytes, ends }),
            Data::Text(kind, text, ends) => {
                let packed = PackedText { text, ends };
                match kind {
                    ColumnKind::Numeric => ColumnData::Numeric(packed),
                    ColumnKind::Json => ColumnData::Json(packed),
                    ColumnKind::Jsonb => ColumnData::Jsonb(packed),
                    ColumnKind::Uuid => ColumnData::Uuid(packed),
                    ColumnKind::Date => ColumnData::Date(packed),
                    ColumnKind::Time => ColumnData::Time(packed),
                    ColumnKind::Timestamp => ColumnData::Timestamp(packed),
                    ColumnKind::Timestamptz => ColumnData::Timestamptz(packed),
                    _ => ColumnData::Text(packed),
                }
            }
        };
        ColumnValues {
            nulls: self.nulls,
            data,
        }
    }
}

/// An offset into a packed buffer. Results are bounded by `MAX_RESULT_BYTES` (64 MiB), far
/// below `u32::MAX`.
fn end(len: usize) -> u32 {
    u32::try_from(len).expect("a result is bounded far below 4 GiB")
}

/// `WASMIG-DECODE` for a column `query-columns` cannot return: an array.
pub fn array_column(index: usize, name: &str) -> SqlError {
    SqlError::wasmig(
        "DECODE",
        format!(
            "column {} ({name}) is an array, which `query-columns` cannot return; use `query`, or `unnest` it in the SQL",
            index + 1
        ),
    )
}

/// A result's rows as columns (`query-columns` on a backend that reads rows). A column of
/// arrays, or of values of more than one type (SQLite's dynamic typing), is a
/// `WASMIG-DECODE` error naming it; a column of nulls only comes as `text`.
pub fn from_rows(result: QueryResult) -> SqlResult<ColumnResult> {
    let QueryResult { columns, rows } = result;
    let count = rows.len();
    let rows_u32 = u32::try_from(count)
        .map_err(|_| SqlError::wasmig("DECODE", "the result has more than 2^32 rows"))?;
    let mut kinds: Vec<Option<ColumnKind>> = vec![None; columns.len()];
    for row in &rows {
        for (j, value) in row.iter().enumerate() {
            match (Seen::of(value), kinds[j]) {
                (Seen::Null, _) => {}
                (Seen::Array, _) => return Err(array_column(j, &columns[j].name)),
                (Seen::Kind(kind), None) => kinds[j] = Some(kind),
                (Seen::Kind(kind), Some(first)) if first == kind => {}
                (Seen::Kind(kind), Some(first)) => {
                    return Err(SqlError::wasmig(
                        "DECODE",
                        format!(
                            "column {} ({}) holds values of more than one type ({} and {}); cast it in the SQL, or use `query`",
                            j + 1,
                            columns[j].name,
                            first.name(),
                            kind.name()
                        ),
                    ));
                }
            }
        }
    }
    let mut builders: Vec<ColumnBuilder> = kinds
        .iter()
        .map(|k| ColumnBuilder::new(k.unwrap_or(ColumnKind::Text), count))
        .collect();
    for row in rows {
        for (builder, value) in builders.iter_mut().zip(row) {
            let fits = builder.push(value);
            debug_assert!(fits, "every value's case was checked above");
        }
    }
    Ok(ColumnResult {
        columns,
        rows: rows_u32,
        values: builders.into_iter().map(ColumnBuilder::finish).collect(),
    })
}

/// How many rows a column holds.
pub fn rows_of(data: &ColumnData) -> usize {
    match data {
        ColumnData::Bool(v) => v.len(),
        ColumnData::Int16(v) => v.len(),
        ColumnData::Int32(v) => v.len(),
        ColumnData::Int64(v) => v.len(),
        ColumnData::Float32(v) => v.len(),
        ColumnData::Float64(v) => v.len(),
        ColumnData::Bytes(p) => p.ends.len(),
        ColumnData::Numeric(p)
        | ColumnData::Text(p)
        | ColumnData::Json(p)
        | ColumnData::Jsonb(p)
        | ColumnData::Uuid(p)
        | ColumnData::Date(p)
        | ColumnData::Time(p)
        | ColumnData::Timestamp(p)
        | ColumnData::Timestamptz(p) => p.ends.len(),
    }
}

/// The most values (rows times columns) one call of a guest's columns may carry: what 64 MiB
/// of guest memory holds as row values (16 bytes each at least), so that a column of empty
/// texts (4 bytes a value in the guest) costs the host no more than the same rows would
/// through `copy-in` or array values.
pub const MAX_COLUMN_VALUES: usize = 4 * 1024 * 1024;

/// Checks a guest's columns hold together (see the module's docs) and returns their row
/// count. `call` names the call in errors; a call over [`MAX_COLUMN_VALUES`] is
/// `WASMIG-LIMIT`.
pub fn check(call: &str, values: &[ColumnValues]) -> SqlResult<usize> {
    let bind = |j: usize, what: String| {
        SqlError::wasmig("BIND", format!("{call}: column {} {what}", j + 1))
    };
    let mut rows = None;
    for (j, column) in values.iter().enumerate() {
        let n = rows_of(&column.data);
        match rows {
            None => rows = Some(n),
            Some(first) if first != n => {
                return Err(bind(
                    j,
                    format!(
                        "has {n} rows where column 1 has {first}; every column needs one value per row"
                    ),
                ));
            }
            Some(_) => {}
        }
        if !column.nulls.is_empty() && column.nulls.len() != n {
            return Err(bind(
                j,
                format!(
                    "has {} null flags for {n} rows; give one per row, or none",
                    column.nulls.len()
                ),
            ));
        }
        let (len, ends, text) = match &column.data {
            ColumnData::Bytes(p) => (p.bytes.len(), &p.ends, None),
            ColumnData::Numeric(p)
            | ColumnData::Text(p)
            | ColumnData::Json(p)
            | ColumnData::Jsonb(p)
            | ColumnData::Uuid(p)
            | ColumnData::Date(p)
            | ColumnData::Time(p)
            | ColumnData::Timestamp(p)
            | ColumnData::Timestamptz(p) => (p.text.len(), &p.ends, Some(p.text.as_str())),
            _ => continue,
        };
        let mut start = 0usize;
        for (i, &e) in ends.iter().enumerate() {
            let e = e as usize;
            if e < start || e > len {
                return Err(bind(
                    j,
                    format!(
                        "ends row {} at byte {e}, outside {start}..={len}; `ends` must not decrease nor pass the buffer's end",
                        i + 1
                    ),
                ));
            }
            if let Some(text) = text
                && !text.is_char_boundary(e)
            {
                return Err(bind(
                    j,
                    format!("ends row {} at byte {e}, inside a character", i + 1),
                ));
            }
            start = e;
        }
    }
    let rows = rows.unwrap_or(0);
    // A column without rows still costs the host a column: counted as one value.
    if rows.max(1).saturating_mul(values.len()) > MAX_COLUMN_VALUES {
        return Err(SqlError::wasmig(
            "LIMIT",
            format!(
                "{call}: {rows} rows of {} columns are more than the {MAX_COLUMN_VALUES} values one call may carry; split the batch",
                values.len()
            ),
        ));
    }
    Ok(rows)
}

/// Where row `i` of a checked packed column lies in its buffer.
fn span(ends: &[u32], i: usize) -> std::ops::Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    start..ends[i] as usize
}

/// Row `i`'s text of a checked packed column.
pub fn piece(p: &PackedText, i: usize) -> &str {
    &p.text[span(&p.ends, i)]
}

/// Row `i`'s bytes of a checked packed column.
fn byte_piece(p: &PackedBytes, i: usize) -> &[u8] {
    &p.bytes[span(&p.ends, i)]
}

/// Row `i`'s value of a checked column.
pub fn value_at(column: &ColumnValues, i: usize) -> Value {
    if column.nulls.get(i).copied().unwrap_or(false) {
        return Value::Null;
    }
    let piece = |p: &PackedText| piece(p, i).to_owned();
    match &column.data {
        ColumnData::Bool(v) => Value::Bool(v[i]),
        ColumnData::Int16(v) => Value::Int16(v[i]),
        ColumnData::Int32(v) => Value::Int32(v[i]),
        ColumnData::Int64(v) => Value::Int64(v[i]),
        ColumnData::Float32(v) => Value::Float32(v[i]),
        ColumnData::Float64(v) => Value::Float64(v[i]),
        ColumnData::Bytes(p) => Value::Bytes(byte_piece(p, i).to_vec()),
        ColumnData::Numeric(p) => Value::Numeric(piece(p)),
        ColumnData::Text(p) => Value::Text(piece(p)),
        ColumnData::Json(p) => Value::Json(piece(p)),
        ColumnData::Jsonb(p) => Value::Jsonb(piece(p)),
        ColumnData::Uuid(p) => Value::Uuid(piece(p)),
        ColumnData::Date(p) => Value::Date(piece(p)),
        ColumnData::Time(p) => Value::Time(piece(p)),
        ColumnData::Timestamp(p) => Value::Timestamp(piece(p)),
        ColumnData::Timestamptz(p) => Value::Timestamptz(piece(p)),
    }
}

/// A guest's columns as rows (`copy-in-columns` on a backend without a column path).
pub fn into_rows(call: &str, values: &[ColumnValues]) -> SqlResult<Vec<Vec<Value>>> {
    let rows = check(call, values)?;
    Ok(rows_between(values, 0..rows))
}

/// The rows `range` of checked columns ([`check`]), one value per column.
pub fn rows_between(values: &[ColumnValues], range: std::ops::Range<usize>) -> Vec<Vec<Value>> {
    range
        .map(|i| values.iter().map(|c| value_at(c, i)).collect())
        .collect()
}

/// A guest's columns as one array parameter each (`execute-columns` on a backend that
/// binds values).
pub fn into_arrays(call: &str, values: &[ColumnValues]) -> SqlResult<Vec<Value>> {
    check(call, values)?;
    Ok(values.iter().map(array_of).collect())
}

/// A checked column as one array value, `None` for its nulls.
pub fn array_of(column: &ColumnValues) -> Value {
    let n = rows_of(&column.data);
    let null = |i: usize| column.nulls.get(i).copied().unwrap_or(false);
    macro_rules! fixed {
        ($case:ident, $v:expr) => {
            ArrayValue::$case(
                $v.iter()
                    .enumerate()
                    .map(|(i, x)| (!null(i)).then_some(*x))
                    .collect(),
            )
        };
    }
    let texts = |p: &PackedText| -> Vec<Option<String>> {
        (0..n)
            .map(|i| (!null(i)).then(|| piece(p, i).to_owned()))
            .collect()
    };
    Value::Array(match &column.data {
        ColumnData::Bool(v) => fixed!(Bool, v),
        ColumnData::Int16(v) => fixed!(Int16, v),
        ColumnData::Int32(v) => fixed!(Int32, v),
        ColumnData::Int64(v) => fixed!(Int64, v),
        ColumnData::Float32(v) => fixed!(Float32, v),
        ColumnData::Float64(v) => fixed!(Float64, v),
        ColumnData::Bytes(p) => ArrayValue::Bytes(
            (0..n)
                .map(|i| (!null(i)).then(|| byte_piece(p, i).to_vec()))
                .collect(),
        ),
        ColumnData::Numeric(p) => ArrayValue::Numeric(texts(p)),
        ColumnData::Text(p) => ArrayValue::Text(texts(p)),
        ColumnData::Json(p) => ArrayValue::Json(texts(p)),
        ColumnData::Jsonb(p) => ArrayValue::Jsonb(texts(p)),
        ColumnData::Uuid(p) => ArrayValue::Uuid(texts(p)),
        ColumnData::Date(p) => ArrayValue::Date(texts(p)),
        ColumnData::Time(p) => ArrayValue::Time(texts(p)),
        ColumnData::Timestamp(p) => ArrayValue::Timestamp(texts(p)),
        ColumnData::Timestamptz(p) => ArrayValue::Timestamptz(texts(p)),
    })
}

#[cfg(test)]
mod tests {
    use wasmig_contract::Column;

    use super::*;

    /// The generated types have no `PartialEq`: compare what they print.
    fn d<T: std::fmt::Debug>(t: &T) -> String {
        format!("{t:?}")
    }

    fn col(name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: "TEXT".into(),
        }
    }

    fn text(values: &[&str]) -> PackedText {
        let mut text = String::new();
        let mut ends = Vec::new();
        for v in values {
            text.push_str(v);
            ends.push(text.len() as u32);
        }
        PackedText { text, ends }
    }

    #[test]
    fn rows_become_columns_with_nulls_flagged_and_texts_packed() {
        let result = QueryResult {
            columns: vec![col("id"), col("email"), col("nothing")],
            rows: vec![
                vec![Value::Int64(1), Value::Text("ä@x".into()), Value::Null],
                vec![Value::Int64(2), Value::Null, Value::Null],
                vec![Value::Int64(3), Value::Text("b@y".into()), Value::Null],
            ],
        };
        let out = from_rows(result).unwrap();
        assert_eq!(out.rows, 3);
        assert_eq!(d(&out.values[0].data), d(&ColumnData::Int64(vec![1, 2, 3])));
        assert!(out.values[0].nulls.is_empty());
        assert_eq!(
            d(&out.values[1].data),
            d(&ColumnData::Text(PackedText {
                text: "ä@xb@y".into(),
                ends: vec![4, 4, 7]
            }))
        );
        assert_eq!(out.values[1].nulls, vec![false, true, false]);
        assert_eq!(out.values[2].nulls, vec![true, true, true]);
        // And back: the same rows.
        let rows = into_rows("t", &out.values).unwrap();
        assert_eq!(d(&rows[0][1]), d(&Value::Text("ä@x".into())));
        assert_eq!(d(&rows[1][1]), d(&Value::Null));
        assert_eq!(
            d(&rows[2]),
            d(&vec![
                Value::Int64(3),
                Value::Text("b@y".into()),
                Value::Null
            ])
        );
    }

    #[test]
    fn a_column_of_two_types_or_of_arrays_is_refused_naming_it() {
        let mixed = QueryResult {
            columns: vec![col("v")],
            rows: vec![vec![Value::Int64(1)], vec![Value::Text("1".into())]],
        };
        let e = from_rows(mixed).unwrap_err();
        assert_eq!(e.code, "WASMIG-DECODE");
        assert!(e.message.contains("column 1 (v)"), "{}", e.message);
        assert!(e.message.contains("int64 and text"), "{}", e.message);
        let array = QueryResult {
            columns: vec![col("a")],
            rows: vec![vec![Value::Array(ArrayValue::Int64(vec![Some(1)]))]],
        };
        assert!(
            from_rows(array)
                .unwrap_err()
                .message
                .contains("is an array")
        );
    }

    #[test]
    fn a_guests_columns_that_do_not_hold_together_are_refused_before_anything_runs() {
        let ok = ColumnValues {
            nulls: vec![],
            data: ColumnData::Int64(vec![1, 2]),
        };
        let cases = [
            // Unequal lengths.
            ColumnValues {
                nulls: vec![],
                data: ColumnData::Text(text(&["a"])),
            },
            // Null flags not one per row.
            ColumnValues {
                nulls: vec![true],
                data: ColumnData::Text(text(&["a", "b"])),
            },
            // An end going back.
            ColumnValues {
                nulls: vec![],
                data: ColumnData::Text(PackedText {
                    text: "ab".into(),
                    ends: vec![2, 1],
                }),
            },
            // An end past the buffer.
            ColumnValues {
                nulls: vec![],
                data: ColumnData::Bytes(PackedBytes {
                    bytes: vec![1],
                    ends: vec![1, 9],
                }),
            },
            // An end inside a character.
            ColumnValues {
                nulls: vec![],
                data: ColumnData::Text(PackedText {
                    text: "äb".into(),
                    ends: vec![1, 3],
                }),
            },
        ];
        for bad in cases {
            let e = into_rows("copy-in-columns", &[ok.clone(), bad.clone()]).unwrap_err();
            assert_eq!(e.code, "WASMIG-BIND", "{bad:?}");
            assert!(
                e.message.starts_with("copy-in-columns: column 2 "),
                "{}",
                e.message
            );
            assert!(into_arrays("execute-columns", &[ok.clone(), bad]).is_err());
        }
    }

    #[test]
    fn a_call_of_more_values_than_the_limit_is_refused() {
        let many = ColumnValues {
            nulls: vec![],
            data: ColumnData::Text(PackedText {
                text: String::new(),
                ends: vec![0; MAX_COLUMN_VALUES / 2 + 1],
            }),
        };
        let e = check("copy-in-columns", &[many.clone(), many.clone()]).unwrap_err();
        assert_eq!(e.code, "WASMIG-LIMIT", "{}", e.message);
        assert_eq!(
            check("copy-in-columns", &[many]).unwrap(),
            MAX_COLUMN_VALUES / 2 + 1
        );
    }

    #[test]
    fn columns_become_arrays_with_nulls_as_none() {
        let out = into_arrays(
            "execute-columns",
            &[
                ColumnValues {
                    nulls: vec![false, true],
                    data: ColumnData::Int64(vec![7, 0]),
                },
                ColumnValues {
                    nulls: vec![],
                    data: ColumnData::Text(text(&["x", ""])),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            d(&out),
            d(&vec![
                Value::Array(ArrayValue::Int64(vec![Some(7), None])),
                Value::Array(ArrayValue::Text(vec![
                    Some("x".into()),
                    Some(String::new())
                ])),
            ])
        );
    }
}

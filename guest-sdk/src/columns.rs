//! Batches as columns (WIT 0.4.0): a result read column by column ([`Columns`], from
//! [`db::query_columns`](crate::db::query_columns)), and columns built to write a batch
//! ([`ColumnValues`]'s constructors and [`TextColumn`], for
//! [`db::execute_columns`](crate::db::execute_columns) and
//! [`db::copy_in_columns`](crate::db::copy_in_columns)).
//!
//! A column crosses between the migration and wasmig as one list (texts and byte strings
//! packed into one buffer), not as a value per cell: the shape to use when a migration
//! moves thousands of rows per call.
//!
//! Pure data: the host calls are in `db.rs`.

use crate::wit::types::ColumnResult;
use crate::{Column, ColumnIndex, Error, Result, Value};

pub use crate::wit::types::{ColumnData, ColumnValues, PackedBytes, PackedText};

/// A whole result, column by column; see [`db::query_columns`](crate::db::query_columns).
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    columns: Vec<Column>,
    rows: usize,
    values: Vec<ColumnValues>,
}

impl Columns {
    /// A result with the given columns and values (one [`ColumnValues`] per column, each
    /// with `rows` values). The SDK builds these from query results; this constructor is
    /// for unit-testing code that takes columns.
    pub fn new(columns: Vec<Column>, rows: usize, values: Vec<ColumnValues>) -> Self {
        Self {
            columns,
            rows,
            values,
        }
    }

    /// How many rows the result has.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the result has no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The columns of the result, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// One column's values, by index or name.
    ///
    /// # Errors
    ///
    /// When there is no such column.
    pub fn get(&self, index: impl ColumnIndex) -> Result<&ColumnValues> {
        let i = index.position(&self.columns)?;
        self.values.get(i).ok_or_else(|| {
            Error::msg(format!(
                "column index {i} is out of range: the result has {} columns",
                self.values.len()
            ))
        })
    }

    /// The columns' values, owned, in order.
    pub fn into_values(self) -> Vec<ColumnValues> {
        self.values
    }
}

impl From<ColumnResult> for Columns {
    fn from(result: ColumnResult) -> Self {
        Self::new(result.columns, result.rows as usize, result.values)
    }
}

/// The name of a `column-data` case, for error messages.
fn case(data: &ColumnData) -> &'static str {
    match data {
        ColumnData::Bool(_) => "bool",
        ColumnData::Int16(_) => "int16",
        ColumnData::Int32(_) => "int32",
        ColumnData::Int64(_) => "int64",
        ColumnData::Float32(_) => "float32",
        ColumnData::Float64(_) => "float64",
        ColumnData::Numeric(_) => "numeric",
        ColumnData::Text(_) => "text",
        ColumnData::Bytes(_) => "bytes",
        ColumnData::Json(_) => "json",
        ColumnData::Jsonb(_) => "jsonb",
        ColumnData::Uuid(_) => "uuid",
        ColumnData::Date(_) => "date",
        ColumnData::Time(_) => "time",
        ColumnData::Timestamp(_) => "timestamp",
        ColumnData::Timestamptz(_) => "timestamptz",
    }
}

/// The packed text of a text-like case.
fn packed_text(data: &ColumnData) -> Option<&PackedText> {
    match data {
        ColumnData::Numeric(p)
        | ColumnData::Text(p)
        | ColumnData::Json(p)
        | ColumnData::Jsonb(p)
        | ColumnData::Uuid(p)
        | ColumnData::Date(p)
        | ColumnData::Time(p)
        | ColumnData::Timestamp(p)
        | ColumnData::Timestamptz(p) => Some(p),
        _ => None,
    }
}

/// Defines the accessor and the constructors of one fixed-size case.
macro_rules! fixed_case {
    ($case:ident, $ty:ty, $get:ident, $from:ident, $from_opt:ident, $name:literal) => {
        #[doc = concat!("The values of a `", $name, "` column, one per row (a null row holds")]
        /// its filler: check [`ColumnValues::is_null`] where nulls may occur).
        ///
        /// # Errors
        ///
        /// When the column holds another type.
        pub fn $get(&self) -> Result<&[$ty]> {
            match &self.data {
                ColumnData::$case(v) => Ok(v),
                other => Err(self.wrong(other, $name)),
            }
        }

        #[doc = concat!("A `", $name, "` column without nulls.")]
        pub fn $from(values: Vec<$ty>) -> Self {
            ColumnValues {
                nulls: Vec::new(),
                data: ColumnData::$case(values),
            }
        }

        #[doc = concat!("A `", $name, "` column where `None` is SQL NULL.")]
        pub fn $from_opt(values: impl IntoIterator<Item = Option<$ty>>) -> Self {
            let mut nulls = Vec::new();
            let mut data = Vec::new();
            for v in values {
                nulls.push(v.is_none());
                data.push(v.unwrap_or_default());
            }
            if !nulls.contains(&true) {
                nulls.clear();
            }
            ColumnValues {
                nulls,
                data: ColumnData::$case(data),
            }
        }
    };
}

impl ColumnValues {
    /// How many rows the column holds.
    pub fn len(&self) -> usize {
        match &self.data {
            ColumnData::Bool(v) => v.len(),
            ColumnData::Int16(v) => v.len(),
            ColumnData::Int32(v) => v.len(),
            ColumnData::Int64(v) => v.len(),
            ColumnData::Float32(v) => v.len(),
            ColumnData::Float64(v) => v.len(),
            ColumnData::Bytes(p) => p.ends.len(),
            other => packed_text(other).map_or(0, |p| p.ends.len()),
        }
    }

    /// Whether the column holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `row`'s value is SQL NULL.
    pub fn is_null(&self, row: usize) -> bool {
        self.nulls.get(row).copied().unwrap_or(false)
    }

    fn wrong(&self, data: &ColumnData, wanted: &str) -> Error {
        Error::msg(format!(
            "the column holds {} values, not {wanted}",
            case(data)
        ))
    }

    fixed_case!(Bool, bool, bools, from_bools, from_opt_bools, "bool");
    fixed_case!(Int16, i16, int16s, from_int16s, from_opt_int16s, "int16");
    fixed_case!(Int32, i32, int32s, from_int32s, from_opt_int32s, "int32");
    fixed_case!(Int64, i64, int64s, from_int64s, from_opt_int64s, "int64");
    fixed_case!(
        Float32,
        f32,
        float32s,
        from_float32s,
        from_opt_float32s,
        "float32"
    );
    fixed_case!(
        Float64,
        f64,
        float64s,
        from_float64s,
        from_opt_float64s,
        "float64"
    );

    /// The values of a text-like column (`text`, `numeric`, `json`, `jsonb`, `uuid` and the
    /// temporal cases, in their text formats), one per row, `None` for SQL NULL: slices of
    /// the column's one buffer, nothing copied.
    ///
    /// # Errors
    ///
    /// When the column holds integers, floats, booleans or bytes, or its packing does not
    /// hold together (it came from somewhere other than wasmig).
    pub fn texts(&self) -> Result<Texts<'_>> {
        let packed = packed_text(&self.data).ok_or_else(|| self.wrong(&self.data, "text"))?;
        let mut start = 0usize;
        for &end in &packed.ends {
            let end = end as usize;
            if end < start || !packed.text.is_char_boundary(end) {
                return Err(Error::msg(format!(
                    "the column's text is not cut at {end}: its ends must not decrease and fall between characters"
                )));
            }
            start = end;
        }
        Ok(Texts {
            packed,
            nulls: &self.nulls,
            row: 0,
            start: 0,
        })
    }

    /// The values of a `bytes` column, one per row, `None` for SQL NULL.
    ///
    /// # Errors
    ///
    /// When the column holds another type, or its packing does not hold together.
    pub fn byte_strings(&self) -> Result<impl Iterator<Item = Option<&[u8]>>> {
        let ColumnData::Bytes(packed) = &self.data else {
            return Err(self.wrong(&self.data, "bytes"));
        };
        let mut start = 0usize;
        let mut pieces = Vec::with_capacity(packed.ends.len());
        for (row, &end) in packed.ends.iter().enumerate() {
            let end = end as usize;
            let piece = packed
                .bytes
                .get(start..end)
                .ok_or_else(|| Error::msg(format!("the column's bytes are not cut at {end}")))?;
            pieces.push((!self.is_null(row)).then_some(piece));
            start = end;
        }
        Ok(pieces.into_iter())
    }

    /// Row `row`'s value as a [`Value`] (the slow path: one value at a time).
    ///
    /// # Errors
    ///
    /// When the column has no such row.
    pub fn value(&self, row: usize) -> Result<Value> {
        if row >= self.len() {
            return Err(Error::msg(format!(
                "row {row} is out of range: the column has {} rows",
                self.len()
            )));
        }
        if self.is_null(row) {
            return Ok(Value::Null);
        }
        let text = |p: &PackedText| -> Result<String> {
            let start = if row == 0 {
                0
            } else {
                p.ends[row - 1] as usize
            };
            p.text
                .get(start..p.ends[row] as usize)
                .map(str::to_owned)
                .ok_or_else(|| Error::msg(format!("the column's text is not cut at row {row}")))
        };
        Ok(match &self.data {
            ColumnData::Bool(v) => Value::Bool(v[row]),
            ColumnData::Int16(v) => Value::Int16(v[row]),
            ColumnData::Int32(v) => Value::Int32(v[row]),
            ColumnData::Int64(v) => Value::Int64(v[row]),
            ColumnData::Float32(v) => Value::Float32(v[row]),
            ColumnData::Float64(v) => Value::Float64(v[row]),
            ColumnData::Bytes(p) => {
                let start = if row == 0 {
                    0
                } else {
                    p.ends[row - 1] as usize
                };
                Value::Bytes(
                    p.bytes
                        .get(start..p.ends[row] as usize)
                        .ok_or_else(|| {
                            Error::msg(format!("the column's bytes are not cut at row {row}"))
                        })?
                        .to_vec(),
                )
            }
            ColumnData::Numeric(p) => Value::Numeric(text(p)?),
            ColumnData::Text(p) => Value::Text(text(p)?),
            ColumnData::Json(p) => Value::Json(text(p)?),
            ColumnData::Jsonb(p) => Value::Jsonb(text(p)?),
            ColumnData::Uuid(p) => Value::Uuid(text(p)?),
            ColumnData::Date(p) => Value::Date(text(p)?),
            ColumnData::Time(p) => Value::Time(text(p)?),
            ColumnData::Timestamp(p) => Value::Timestamp(text(p)?),
            ColumnData::Timestamptz(p) => Value::Timestamptz(text(p)?),
        })
    }
}

/// The texts of a column, one per row; see [`ColumnValues::texts`].
#[derive(Clone, Debug)]
pub struct Texts<'a> {
    packed: &'a PackedText,
    nulls: &'a [bool],
    row: usize,
    start: usize,
}

impl<'a> Iterator for Texts<'a> {
    type Item = Option<&'a str>;

    fn next(&mut self) -> Option<Self::Item> {
        let end = *self.packed.ends.get(self.row)? as usize;
        // Checked in `texts`: the ends do not decrease and fall between characters.
        let piece = &self.packed.text[self.start..end];
        let null = self.nulls.get(self.row).copied().unwrap_or(false);
        self.row += 1;
        self.start = end;
        Some((!null).then_some(piece))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.packed.ends.len() - self.row;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Texts<'_> {}

/// Builds a text-like column one value at a time, into one buffer.
///
/// ```
/// use wasmig_guest::{ColumnData, TextColumn};
///
/// let mut norms = TextColumn::with_capacity(2, 32);
/// norms.push(" Ann@Example.COM ".trim().to_lowercase());
/// norms.push_null();
/// let column = norms.finish();
/// assert_eq!(column.texts()?.collect::<Vec<_>>(), [Some("ann@example.com"), None]);
/// // The same buffer as another text-like type:
/// let mut docs = TextColumn::new();
/// docs.push(r#"{"a": 1}"#);
/// let jsonb = docs.finish_as(ColumnData::Jsonb);
/// # Ok::<(), wasmig_guest::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TextColumn {
    text: String,
    ends: Vec<u32>,
    nulls: Vec<bool>,
    any_null: bool,
}

impl TextColumn {
    /// An empty column.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty column with room for `rows` values of `bytes` bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
            nulls: Vec::with_capacity(rows),
            any_null: false,
        }
    }

    /// Appends a value.
    ///
    /// # Panics
    ///
    /// When the column's text passes 4 GiB (far beyond what one call may carry).
    pub fn push(&mut self, value: impl AsRef<str>) {
        self.text.push_str(value.as_ref());
        self.end(false);
    }

    /// Appends SQL NULL.
    pub fn push_null(&mut self) {
        self.end(true);
    }

    /// Appends a value, or SQL NULL for `None`.
    pub fn push_opt(&mut self, value: Option<impl AsRef<str>>) {
        match value {
            Some(v) => self.push(v),
            None => self.push_null(),
        }
    }

    fn end(&mut self, null: bool) {
        let end = u32::try_from(self.text.len()).expect("a column's text stays under 4 GiB");
        self.ends.push(end);
        self.nulls.push(null);
        self.any_null |= null;
    }

    /// How many values the column holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the column holds no value.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The column, as `text`.
    pub fn finish(self) -> ColumnValues {
        self.finish_as(ColumnData::Text)
    }

    /// The column as another text-like case: `finish_as(ColumnData::Jsonb)`, `Uuid`,
    /// `Numeric`, `Timestamptz`… (the value must be in that case's text format).
    pub fn finish_as(self, case: fn(PackedText) -> ColumnData) -> ColumnValues {
        ColumnValues {
            nulls: if self.any_null {
                self.nulls
            } else {
                Vec::new()
            },
            data: case(PackedText {
                text: self.text,
                ends: self.ends,
            }),
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for TextColumn {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut column = TextColumn::new();
        for value in iter {
            column.push(value);
        }
        column
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_slices_of_one_buffer_with_nulls_as_none() {
        let mut c = TextColumn::new();
        c.push("ä");
        c.push_null();
        c.push("");
        c.push("bc");
        let column = c.finish();
        assert_eq!(column.len(), 4);
        assert!(column.is_null(1));
        assert_eq!(
            column.texts().unwrap().collect::<Vec<_>>(),
            [Some("ä"), None, Some(""), Some("bc")]
        );
        assert_eq!(column.value(3).unwrap(), Value::Text("bc".into()));
        assert_eq!(column.value(1).unwrap(), Value::Null);
        assert!(
            column
                .int64s()
                .unwrap_err()
                .to_string()
                .contains("holds text values")
        );
    }

    #[test]
    fn a_column_without_nulls_carries_no_flags() {
        let column: TextColumn = ["a", "b"].into_iter().collect();
        assert!(column.finish().nulls.is_empty());
        let ints = ColumnValues::from_opt_int64s([Some(1), None]);
        assert_eq!(ints.nulls, [false, true]);
        assert_eq!(ints.int64s().unwrap(), [1, 0]);
        assert!(ColumnValues::from_opt_int64s([Some(1)]).nulls.is_empty());
    }

    #[test]
    fn a_packing_that_does_not_hold_together_is_an_error_not_a_panic() {
        let bad = ColumnValues {
            nulls: Vec::new(),
            data: ColumnData::Text(PackedText {
                text: "ä".into(),
                ends: vec![1],
            }),
        };
        assert!(bad.texts().is_err());
        assert!(bad.value(0).is_err());
        let back = ColumnValues {
            nulls: Vec::new(),
            data: ColumnData::Bytes(PackedBytes {
                bytes: vec![1, 2],
                ends: vec![2, 1],
            }),
        };
        assert!(back.byte_strings().is_err());
    }
}

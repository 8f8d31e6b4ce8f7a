//! Results held in guest memory: [`Rows`] (a whole result or one cursor chunk) and [`Row`],
//! whose cells are read by index or column name with [`Row::get`].
//!
//! Pure data: the host calls that produce rows are in `db.rs`, the conversions of a cell in
//! `value.rs`.

use std::sync::Arc;

use crate::wit::types::QueryResult;
use crate::{Column, Error, FromSql, Result, Value};

/// The rows of a result, with their columns.
///
/// Dereferences to `[Row]`, so `len()`, `is_empty()`, `iter()`, `first()` and indexing
/// work, and `for row in &rows` iterates.
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    columns: Arc<[Column]>,
    rows: Vec<Row>,
}

/// One row of a result: one [`Value`] per column, in column order.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    // Shared by every row of the result.
    columns: Arc<[Column]>,
    values: Vec<Value>,
}

impl Rows {
    /// Rows with the given columns; each row should have one value per column (reading a
    /// missing value is an error). The SDK builds these from query results; this constructor
    /// is for unit-testing code that takes rows.
    pub fn new(columns: Vec<Column>, rows: Vec<Vec<Value>>) -> Self {
        Self::with_columns(columns.into(), rows)
    }

    pub(crate) fn with_columns(columns: Arc<[Column]>, rows: Vec<Vec<Value>>) -> Self {
        let rows = rows
            .into_iter()
            .map(|values| Row {
                columns: Arc::clone(&columns),
                values,
            })
            .collect();
        Self { columns, rows }
    }

    /// The columns of the result, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Keeps the first `len` rows.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.rows.truncate(len);
    }
}

impl From<QueryResult> for Rows {
    fn from(result: QueryResult) -> Self {
        Self::new(result.columns, result.rows)
    }
}

impl core::ops::Deref for Rows {
    type Target = [Row];

    fn deref(&self) -> &[Row] {
        &self.rows
    }
}

impl IntoIterator for Rows {
    type Item = Row;
    type IntoIter = std::vec::IntoIter<Row>;

    fn into_iter(self) -> Self::IntoIter {
        self.rows.into_iter()
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a Row;
    type IntoIter = core::slice::Iter<'a, Row>;

    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

impl Row {
    /// Reads the cell at `index` (a `usize` position, or a column name) as `T`.
    ///
    /// ```
    /// # use wasmig_guest::{Column, Rows, Value};
    /// # let column = |name: &str| Column { name: name.into(), type_name: String::new() };
    /// # let rows = Rows::new(vec![column("id"), column("email")],
    /// #     vec![vec![Value::Int64(7), Value::Null]]);
    /// # let row = &rows[0];
    /// let id: i64 = row.get("id")?;
    /// let email = row.get::<Option<String>>(1)?;
    /// # assert_eq!((id, email), (7, None));
    /// # Ok::<(), wasmig_guest::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When there is no such column, or the value does not convert to `T` (see [`FromSql`]);
    /// the message names the column and the value's actual type, e.g.
    /// `column "email" (index 1): NULL cannot be read as String; read it as Option<String>`.
    pub fn get<T: FromSql>(&self, index: impl ColumnIndex) -> Result<T> {
        let i = index.position(&self.columns)?;
        let Some(value) = self.values.get(i) else {
            return Err(Error::msg(format!(
                "column index {i} is out of range: the row has {} values",
                self.values.len()
            )));
        };
        T::from_sql(value).map_err(|e| match self.columns.get(i) {
            Some(column) => e.context(format_args!("column {:?} (index {i})", column.name)),
            None => e.context(format_args!("column {i}")),
        })
    }

    /// The columns of the result, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, owned.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no values (a result with no columns).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// What selects a cell in [`Row::get`]: a `usize` position or a column name (`&str`,
/// `String`, `&String`). A name matches the first column of that name, case-sensitively, as
/// the database spelled it (PostgreSQL folds unquoted names to lower case).
///
/// Sealed: only the SDK implements it.
pub trait ColumnIndex: sealed::Sealed {
    /// The position of the column among `columns`.
    #[doc(hidden)]
    fn position(&self, columns: &[Column]) -> Result<usize>;
}

mod sealed {
    /// Keeps [`ColumnIndex`](super::ColumnIndex) closed to the SDK's own impls.
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[Column]) -> Result<usize> {
        if *self < columns.len() {
            Ok(*self)
        } else {
            Err(Error::msg(format!(
                "column index {self} is out of range: the result has {} columns",
                columns.len()
            )))
        }
    }
}

impl ColumnIndex for str {
    fn position(&self, columns: &[Column]) -> Result<usize> {
        columns.iter().position(|c| c.name == self).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            Error::msg(format!(
                "no column named {self:?}; the columns are: {}",
                names.join(", ")
            ))
        })
    }
}

impl ColumnIndex for String {
    fn position(&self, columns: &[Column]) -> Result<usize> {
        self.as_str().position(columns)
    }
}

impl<T: ColumnIndex + ?Sized> ColumnIndex for &T {
    fn position(&self, columns: &[Column]) -> Result<usize> {
        (**self).position(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArrayValue, Date};

    fn column(name: &str, type_name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
        }
    }

    fn rows() -> Rows {
        Rows::from(QueryResult {
            columns: vec![
                column("id", "INT8"),
                column("email", "TEXT"),
                column("tags", "TEXT[]"),
                column("born", "DATE"),
            ],
            rows: vec![
                vec![
                    Value::Int64(1),
                    Value::Text("a@b.c".into()),
                    Value::Array(ArrayValue::Text(vec![Some("x".into()), None])),
                    Value::Date("2000-01-01".into()),
                ],
                vec![Value::Int64(2), Value::Null, Value::Null, Value::Null],
            ],
        })
    }

    #[test]
    fn cells_are_read_by_index_or_name() {
        let rows = rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.columns()[1].name, "email");
        let row = &rows[0];
        assert_eq!(row.get::<i64>(0).unwrap(), 1);
        assert_eq!(row.get::<i32>("id").unwrap(), 1);
        let name = String::from("email");
        assert_eq!(row.get::<String>(&name).unwrap(), "a@b.c");
        assert_eq!(row.get::<String>(name).unwrap(), "a@b.c");
        assert_eq!(
            row.get::<Vec<Option<String>>>("tags").unwrap(),
            vec![Some("x".into()), None]
        );
        assert_eq!(row.get::<Date>("born").unwrap(), Date::new("2000-01-01"));
        assert_eq!(row.get::<String>("born").unwrap(), "2000-01-01");
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.get("id"))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(ids, [1, 2]);
        let mut n = 0;
        for row in &rows {
            n += row.len();
        }
        assert_eq!(n, 8);
        assert_eq!(
            rows.into_iter().last().unwrap().into_values()[0],
            Value::Int64(2)
        );
    }

    #[test]
    fn decode_errors_name_the_column_and_the_actual_type() {
        let rows = rows();
        assert_eq!(
            rows[1].get::<String>("email").unwrap_err().to_string(),
            "column \"email\" (index 1): NULL cannot be read as String; read it as Option<String>"
        );
        assert_eq!(rows[1].get::<Option<String>>("email").unwrap(), None);
        assert_eq!(
            rows[0].get::<i16>(1).unwrap_err().to_string(),
            "column \"email\" (index 1): cannot read text as i16"
        );
        assert_eq!(
            rows[0].get::<Vec<String>>("tags").unwrap_err().to_string(),
            "column \"tags\" (index 2): array element 1: NULL cannot be read as String; read it as Option<String>"
        );
    }

    #[test]
    fn missing_columns_are_reported_with_the_available_ones() {
        let rows = rows();
        assert_eq!(
            rows[0].get::<i64>("ID").unwrap_err().to_string(),
            "no column named \"ID\"; the columns are: id, email, tags, born"
        );
        assert_eq!(
            rows[0].get::<i64>(9).unwrap_err().to_string(),
            "column index 9 is out of range: the result has 4 columns"
        );
    }
}

//! Conversions between Rust values and the WIT [`Value`]: [`ToSql`] for parameters,
//! [`FromSql`] for result cells, [`ArrayElement`] for the element types of SQL arrays, and the
//! [`params!`](crate::params) macro.
//!
//! The conversions are pure (no host calls), so they are unit-tested natively below. The
//! text-represented types (`Numeric`, `Uuid`, `Date`…) live in `text_types.rs`; reading a
//! value by column lives in `row.rs`.

use std::borrow::Cow;

use crate::{ArrayValue, Error, Result, Value};

/// A Rust value that can be bound as a statement parameter.
///
/// | Rust | SQL value |
/// |---|---|
/// | `bool` | `boolean` (SQLite: integer 0 or 1) |
/// | `i16`, `i32`, `i64` | `smallint`, `integer`, `bigint` |
/// | `f32`, `f64` | `real`, `double precision` |
/// | `&str`, `String` | `text` |
/// | `&[u8]`, `Vec<u8>`, `[u8; N]` | `bytea` (SQLite: blob) |
/// | [`Numeric`](crate::Numeric), [`Json`](crate::Json), [`Jsonb`](crate::Jsonb), [`Uuid`](crate::Uuid), [`Date`](crate::Date), [`Time`](crate::Time), [`Timestamp`](crate::Timestamp), [`Timestamptz`](crate::Timestamptz) | the type of that name, from its text |
/// | `Vec<T>`, `&[T]`, `[T; N]` with `T: `[`ArrayElement`] | a one-dimensional array, e.g. `integer[]` |
/// | `Option<T>` | `T`, or an untyped `NULL` (fits any column) for `None` |
/// | [`Value`], [`ArrayValue`] | themselves |
///
/// Build a parameter list with [`params!`](crate::params).
pub trait ToSql {
    /// The SQL value of `self`.
    fn to_sql(&self) -> Value;
}

/// A Rust type a result cell can be read as, with [`Row::get`](crate::Row::get).
///
/// | Rust | accepts |
/// |---|---|
/// | `bool` | `boolean`; the integers 0 and 1 (SQLite has no boolean) |
/// | `i16`, `i32`, `i64` | any integer that fits (a wider one is range-checked) |
/// | `f64` | `double precision`, `real`, and integers it holds exactly |
/// | `f32` | `real`; `double precision` rounded to nearest (out of range is an error); integers it holds exactly |
/// | `String` | `text` and every type carried as text: `numeric`, `json`, `jsonb`, `uuid`, `date`, `time`, `timestamp`, `timestamptz` |
/// | `Vec<u8>` | `bytea` / blob |
/// | [`Numeric`](crate::Numeric), [`Uuid`](crate::Uuid), [`Date`](crate::Date)… | their own type, or `text` (SQLite returns them as text); the format is not checked |
/// | `Vec<T>` with `T: `[`ArrayElement`]` + FromSql` | an array whose elements each convert to `T`; read nullable elements as `Vec<Option<T>>` |
/// | `Option<T>` | `NULL` as `None`, anything else as `T` |
/// | [`Value`], [`ArrayValue`] | anything / any array, as is |
///
/// `NULL` read as anything but `Option<T>` or [`Value`] is an error.
pub trait FromSql: Sized {
    /// Converts a cell.
    ///
    /// # Errors
    ///
    /// When the value's SQL type does not convert to `Self`, or is out of its range, or is
    /// `NULL` and `Self` is not an `Option`. [`Row::get`](crate::Row::get) adds the column.
    fn from_sql(value: &Value) -> Result<Self>;
}

/// A type that can be an element of an SQL array parameter (`Vec<T>`, `&[T]`, `[T; N]`),
/// and, if it is also [`FromSql`], of an array read with `Vec<T>`.
///
/// Implemented for `bool`, `i16`, `i32`, `i64`, `f32`, `f64`, `String`, `&str`, `Vec<u8>`,
/// `&[u8]`, the text-represented types ([`Numeric`](crate::Numeric)…), and `Option<T>` of
/// those (`None` is a `NULL` element). Not for `u8`: `Vec<u8>` is `bytea`, not an array.
/// Sealed: the SQL element types are fixed by the WIT.
pub trait ArrayElement: ToSql + sealed::Sealed {
    /// Which array variant the elements go into.
    #[doc(hidden)]
    const KIND: ElementKind;
}

pub(crate) mod sealed {
    /// Keeps [`ArrayElement`](super::ArrayElement) closed to the SDK's own impls.
    pub trait Sealed {}
}

/// Builds a `Vec<`[`Value`]`>` of statement parameters from expressions of any [`ToSql`]
/// type.
///
/// ```
/// use wasmig_guest::{Json, Value, params};
///
/// let note: Option<&str> = None;
/// let params = params![42_i64, "ada", note, Json::new(r#"{"vip": true}"#), vec![1, 2, 3]];
/// assert_eq!(params[0], Value::Int64(42));
/// assert_eq!(params[2], Value::Null);
/// ```
///
/// Pass it as `&params![…]` to [`db::execute`](crate::db::execute) and friends; a row of
/// [`db::execute_many`](crate::db::execute_many) is one `params![…]`.
#[macro_export]
macro_rules! params {
    () => {
        ::std::vec::Vec::<$crate::Value>::new()
    };
    ($($param:expr),+ $(,)?) => {
        ::std::vec![$($crate::ToSql::to_sql(&$param)),+]
    };
}

/// The element types of SQL arrays: one per [`ArrayValue`] variant.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementKind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric,
    Text,
    Bytes,
    Json,
    Jsonb,
    Uuid,
    Date,
    Time,
    Timestamp,
    Timestamptz,
}

/// Calls `$m!(Variant)` for each variant shared by [`Value`], [`ArrayValue`] and
/// [`ElementKind`], as match arms.
macro_rules! each_array_kind {
    ($m:ident) => {
        $m!(
            Bool,
            Int16,
            Int32,
            Int64,
            Float32,
            Float64,
            Numeric,
            Text,
            Bytes,
            Json,
            Jsonb,
            Uuid,
            Date,
            Time,
            Timestamp,
            Timestamptz
        )
    };
}

/// The elements of an array as scalar values (`NULL` for `none`).
pub(crate) fn array_elements(array: &ArrayValue) -> Vec<Value> {
    fn lift<T: Clone>(items: &[Option<T>], wrap: fn(T) -> Value) -> Vec<Value> {
        items
            .iter()
            .map(|item| item.clone().map_or(Value::Null, wrap))
            .collect()
    }
    macro_rules! arms {
        ($($variant:ident),+) => {
            match array {
                $(ArrayValue::$variant(items) => lift(items, Value::$variant),)+
            }
        };
    }
    each_array_kind!(arms)
}

/// A non-null scalar of the array's element type.
fn element_probe(array: &ArrayValue) -> Value {
    macro_rules! arms {
        ($($variant:ident),+) => {
            match array {
                $(ArrayValue::$variant(_) => Value::$variant(Default::default()),)+
            }
        };
    }
    each_array_kind!(arms)
}

/// An array of `kind` from scalar values. Every value is `NULL` or of `kind`, by
/// construction through [`ArrayElement`]; anything else would become a `NULL` element.
fn build_array(kind: ElementKind, values: impl Iterator<Item = Value>) -> ArrayValue {
    macro_rules! arms {
        ($($variant:ident),+) => {
            match kind {
                $(ElementKind::$variant => ArrayValue::$variant(
                    values
                        .map(|v| match v {
                            Value::$variant(x) => Some(x),
                            _ => None,
                        })
                        .collect(),
                ),)+
            }
        };
    }
    each_array_kind!(arms)
}

/// The WIT name of a value's type, for error messages: `int64`, `text`, `array of int32`…
pub(crate) fn describe(value: &Value) -> Cow<'static, str> {
    macro_rules! array_name {
        ($($variant:ident),+) => {
            |array: &ArrayValue| match array {
                $(ArrayValue::$variant(_) => stringify!($variant),)+
            }
        };
    }
    let name = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Int16(_) => "int16",
        Value::Int32(_) => "int32",
        Value::Int64(_) => "int64",
        Value::Float32(_) => "float32",
        Value::Float64(_) => "float64",
        Value::Numeric(_) => "numeric",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
        Value::Jsonb(_) => "jsonb",
        Value::Uuid(_) => "uuid",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::Timestamptz(_) => "timestamptz",
        Value::Array(array) => {
            let element = each_array_kind!(array_name)(array);
            return Cow::Owned(format!("array of {}", element.to_ascii_lowercase()));
        }
    };
    Cow::Borrowed(name)
}

impl Value {
    /// Whether this is SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// `T`'s name without module paths: `Vec<Option<String>>`, not
/// `alloc::vec::Vec<core::option::Option<alloc::string::String>>`.
pub(crate) fn type_name<T: ?Sized>() -> String {
    let mut out = String::new();
    for c in core::any::type_name::<T>().chars() {
        out.push(c);
        if out.ends_with("::") {
            out.truncate(out.len() - 2);
            while out.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                out.pop();
            }
        }
    }
    out
}

/// The error for a value of the wrong SQL type (or `NULL`) read as `T`.
pub(crate) fn mismatch<T>(value: &Value) -> Error {
    let name = type_name::<T>();
    match value {
        Value::Null => Error::msg(format!(
            "NULL cannot be read as {name}; read it as Option<{name}>"
        )),
        other => Error::msg(format!("cannot read {} as {name}", describe(other))),
    }
}

fn out_of_range<T>(value: &Value, shown: impl core::fmt::Display) -> Error {
    Error::msg(format!(
        "{} {shown} is out of range for {}",
        describe(value),
        type_name::<T>()
    ))
}

// ---- ToSql ----

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Value {
        (**self).to_sql()
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> Value {
        self.clone()
    }
}

impl ToSql for ArrayValue {
    fn to_sql(&self) -> Value {
        Value::Array(self.clone())
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToSql::to_sql)
    }
}

macro_rules! copy_to_sql {
    ($($ty:ty => $variant:ident),+) => {
        $(
            impl ToSql for $ty {
                fn to_sql(&self) -> Value {
                    Value::$variant(*self)
                }
            }
        )+
    };
}
copy_to_sql!(bool => Bool, i16 => Int16, i32 => Int32, i64 => Int64, f32 => Float32, f64 => Float64);

impl ToSql for str {
    fn to_sql(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

impl<const N: usize> ToSql for [u8; N] {
    fn to_sql(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl<T: ArrayElement> ToSql for [T] {
    fn to_sql(&self) -> Value {
        Value::Array(build_array(T::KIND, self.iter().map(ToSql::to_sql)))
    }
}

impl<T: ArrayElement> ToSql for Vec<T> {
    fn to_sql(&self) -> Value {
        self.as_slice().to_sql()
    }
}

impl<T: ArrayElement, const N: usize> ToSql for [T; N] {
    fn to_sql(&self) -> Value {
        self.as_slice().to_sql()
    }
}

// ---- ArrayElement ----

macro_rules! array_element {
    ($($ty:ty => $kind:ident),+ $(,)?) => {
        $(
            impl $crate::value::sealed::Sealed for $ty {}
            impl $crate::ArrayElement for $ty {
                const KIND: $crate::value::ElementKind = $crate::value::ElementKind::$kind;
            }
        )+
    };
}
pub(crate) use array_element;

array_element!(
    bool => Bool,
    i16 => Int16,
    i32 => Int32,
    i64 => Int64,
    f32 => Float32,
    f64 => Float64,
    String => Text,
    str => Text,
    Vec<u8> => Bytes,
    [u8] => Bytes,
);

impl<T: ArrayElement + ?Sized> sealed::Sealed for &T {}
impl<T: ArrayElement + ?Sized> ArrayElement for &T {
    const KIND: ElementKind = T::KIND;
}

impl<T: ArrayElement> sealed::Sealed for Option<T> {}
impl<T: ArrayElement> ArrayElement for Option<T> {
    const KIND: ElementKind = T::KIND;
}

// ---- FromSql ----

impl FromSql for Value {
    fn from_sql(value: &Value) -> Result<Self> {
        Ok(value.clone())
    }
}

impl FromSql for ArrayValue {
    fn from_sql(value: &Value) -> Result<Self> {
        match value {
            Value::Array(array) => Ok(array.clone()),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: &Value) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

impl FromSql for bool {
    fn from_sql(value: &Value) -> Result<Self> {
        let int = match *value {
            Value::Bool(b) => return Ok(b),
            Value::Int16(i) => i64::from(i),
            Value::Int32(i) => i64::from(i),
            Value::Int64(i) => i,
            ref other => return Err(mismatch::<Self>(other)),
        };
        match int {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::msg(format!(
                "cannot read {} {int} as bool: only 0 and 1 are booleans",
                describe(value)
            ))),
        }
    }
}

macro_rules! int_from_sql {
    ($($ty:ty),+) => {
        $(
            impl FromSql for $ty {
                fn from_sql(value: &Value) -> Result<Self> {
                    let wide = match *value {
                        Value::Int16(i) => i64::from(i),
                        Value::Int32(i) => i64::from(i),
                        Value::Int64(i) => i,
                        ref other => return Err(mismatch::<Self>(other)),
                    };
                    <$ty>::try_from(wide).map_err(|_| out_of_range::<Self>(value, wide))
                }
            }
        )+
    };
}
int_from_sql!(i16, i32, i64);

/// `i` as a float of `mantissa_bits` precision, if it is exactly representable.
fn exact_float(i: i64, mantissa_bits: u32) -> Option<f64> {
    (i.unsigned_abs() <= 1u64 << mantissa_bits).then_some(i as f64)
}

impl FromSql for f64 {
    fn from_sql(value: &Value) -> Result<Self> {
        match *value {
            Value::Float64(f) => Ok(f),
            Value::Float32(f) => Ok(f64::from(f)),
            Value::Int16(i) => Ok(f64::from(i)),
            Value::Int32(i) => Ok(f64::from(i)),
            Value::Int64(i) => {
                exact_float(i, f64::MANTISSA_DIGITS).ok_or_else(|| out_of_range::<Self>(value, i))
            }
            ref other => Err(mismatch::<Self>(other)),
        }
    }
}

impl FromSql for f32 {
    fn from_sql(value: &Value) -> Result<Self> {
        match *value {
            Value::Float32(f) => Ok(f),
            // Rounded to nearest: SQLite stores `real` as a double, and reads it back as one.
            Value::Float64(f) if !f.is_finite() || f.abs() <= f64::from(f32::MAX) => Ok(f as f32),
            Value::Float64(f) => Err(out_of_range::<Self>(value, format_args!("{f:?}"))),
            Value::Int16(i) => Ok(f32::from(i)),
            Value::Int32(i) => exact_float(i64::from(i), f32::MANTISSA_DIGITS)
                .map(|f| f as f32)
                .ok_or_else(|| out_of_range::<Self>(value, i)),
            Value::Int64(i) => exact_float(i, f32::MANTISSA_DIGITS)
                .map(|f| f as f32)
                .ok_or_else(|| out_of_range::<Self>(value, i)),
            ref other => Err(mismatch::<Self>(other)),
        }
    }
}

impl FromSql for String {
    fn from_sql(value: &Value) -> Result<Self> {
        match value {
            Value::Text(s)
            | Value::Numeric(s)
            | Value::Json(s)
            | Value::Jsonb(s)
            | Value::Uuid(s)
            | Value::Date(s)
            | Value::Time(s)
            | Value::Timestamp(s)
            | Value::Timestamptz(s) => Ok(s.clone()),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: &Value) -> Result<Self> {
        match value {
            Value::Bytes(b) => Ok(b.clone()),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl<T: ArrayElement + FromSql> FromSql for Vec<T> {
    fn from_sql(value: &Value) -> Result<Self> {
        let Value::Array(array) = value else {
            return Err(mismatch::<Self>(value));
        };
        // Check the element type even when no element is there to check it, so that a wrong
        // type fails on every row, not only on rows with non-null elements.
        if T::from_sql(&element_probe(array)).is_err() {
            return Err(mismatch::<Self>(value));
        }
        array_elements(array)
            .iter()
            .enumerate()
            .map(|(i, element)| {
                T::from_sql(element).map_err(|e| e.context(format_args!("array element {i}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Date, Json, Jsonb, Numeric, Time, Timestamp, Timestamptz, Uuid};

    fn read<T: FromSql>(value: Value) -> Result<T> {
        T::from_sql(&value)
    }

    fn err<T: FromSql + core::fmt::Debug>(value: Value) -> String {
        read::<T>(value).unwrap_err().to_string()
    }

    #[test]
    fn scalars_bind_as_their_sql_types() {
        assert_eq!(true.to_sql(), Value::Bool(true));
        assert_eq!(7_i16.to_sql(), Value::Int16(7));
        assert_eq!(7_i32.to_sql(), Value::Int32(7));
        assert_eq!(7_i64.to_sql(), Value::Int64(7));
        assert_eq!(0.5_f32.to_sql(), Value::Float32(0.5));
        assert_eq!(0.5_f64.to_sql(), Value::Float64(0.5));
        assert_eq!("é".to_sql(), Value::Text("é".into()));
        assert_eq!(String::from("x").to_sql(), Value::Text("x".into()));
        assert_eq!(b"\x00\xff"[..].to_sql(), Value::Bytes(vec![0, 255]));
        assert_eq!(vec![1_u8, 2].to_sql(), Value::Bytes(vec![1, 2]));
        assert_eq!([3_u8; 2].to_sql(), Value::Bytes(vec![3, 3]));
        assert_eq!(None::<i32>.to_sql(), Value::Null);
        assert_eq!(Some("a").to_sql(), Value::Text("a".into()));
        assert_eq!(Value::Int16(1).to_sql(), Value::Int16(1));
    }

    #[test]
    fn text_types_bind_as_their_own_variant() {
        assert_eq!(
            Numeric::new("-12.3400").to_sql(),
            Value::Numeric("-12.3400".into())
        );
        assert_eq!(Json::new("[1]").to_sql(), Value::Json("[1]".into()));
        assert_eq!(Jsonb::new("{}").to_sql(), Value::Jsonb("{}".into()));
        assert_eq!(
            Uuid::new("00000000-0000-0000-0000-000000000001").to_sql(),
            Value::Uuid("00000000-0000-0000-0000-000000000001".into())
        );
        assert_eq!(
            Date::new("2024-02-29").to_sql(),
            Value::Date("2024-02-29".into())
        );
        assert_eq!(
            Time::new("23:59:58.5").to_sql(),
            Value::Time("23:59:58.5".into())
        );
        assert_eq!(
            Timestamp::new("2024-01-02T03:04:05").to_sql(),
            Value::Timestamp("2024-01-02T03:04:05".into())
        );
        assert_eq!(
            Timestamptz::new("2024-01-02T03:04:05Z").to_sql(),
            Value::Timestamptz("2024-01-02T03:04:05Z".into())
        );
    }

    #[test]
    fn sequences_bind_as_arrays_with_null_elements() {
        assert_eq!(
            vec![1_i32, 2].to_sql(),
            Value::Array(ArrayValue::Int32(vec![Some(1), Some(2)]))
        );
        assert_eq!(
            [Some(true), None].to_sql(),
            Value::Array(ArrayValue::Bool(vec![Some(true), None]))
        );
        assert_eq!(
            ["a", "b"][..].to_sql(),
            Value::Array(ArrayValue::Text(vec![Some("a".into()), Some("b".into())]))
        );
        assert_eq!(
            vec![vec![1_u8], vec![]].to_sql(),
            Value::Array(ArrayValue::Bytes(vec![Some(vec![1]), Some(vec![])]))
        );
        assert_eq!(
            vec![Some(&b"x"[..]), None].to_sql(),
            Value::Array(ArrayValue::Bytes(vec![Some(b"x".to_vec()), None]))
        );
        assert_eq!(
            vec![Some(Uuid::new("u")), None].to_sql(),
            Value::Array(ArrayValue::Uuid(vec![Some("u".into()), None]))
        );
        assert_eq!(
            Vec::<f64>::new().to_sql(),
            Value::Array(ArrayValue::Float64(vec![]))
        );
        assert_eq!(
            vec![Some(1.5_f32)].to_sql(),
            Value::Array(ArrayValue::Float32(vec![Some(1.5)]))
        );
        assert_eq!(
            vec![Numeric::new("1.10")].to_sql(),
            Value::Array(ArrayValue::Numeric(vec![Some("1.10".into())]))
        );
    }

    #[test]
    fn params_macro_converts_each_expression() {
        let name = String::from("ada");
        let empty = params![];
        assert!(empty.is_empty());
        let p = params![1_i64, &name, None::<&str>, vec![1_i16], Jsonb::new("{}"),];
        assert_eq!(
            p,
            vec![
                Value::Int64(1),
                Value::Text("ada".into()),
                Value::Null,
                Value::Array(ArrayValue::Int16(vec![Some(1)])),
                Value::Jsonb("{}".into()),
            ]
        );
    }

    #[test]
    fn every_value_round_trips_through_its_rust_type() {
        fn rt<T: ToSql + FromSql + PartialEq + core::fmt::Debug>(x: T) {
            let back = T::from_sql(&x.to_sql()).unwrap();
            assert_eq!(back, x);
        }
        rt(true);
        rt(i16::MIN);
        rt(i32::MAX);
        rt(i64::MIN);
        rt(1.25_f32);
        rt(-0.125_f64);
        rt(String::from("héllo 'quoted' ✓"));
        rt(vec![0_u8, 255, 16]);
        rt(Some(3_i64));
        rt(None::<String>);
        rt(Numeric::new("-12.3400"));
        rt(Json::new(r#"{"a":1}"#));
        rt(Jsonb::new("[]"));
        rt(Uuid::new("67e55044-10b1-426f-9247-bb680e5fe0c8"));
        rt(Date::new("2024-02-29"));
        rt(Time::new("00:00:01"));
        rt(Timestamp::new("2000-01-01T00:00:00"));
        rt(Timestamptz::new("2000-01-01T00:00:00Z"));
        rt(vec![Some(1_i32), None, Some(3)]);
        rt(vec![String::from("x"), String::new()]);
        rt(vec![Some(vec![1_u8, 2]), None]);
        rt(vec![Some(Date::new("1999-12-31"))]);
        rt(vec![true, false]);
        rt(vec![Some(2.25_f64), None]);
        rt(Value::Array(ArrayValue::Timestamptz(vec![None])));
        rt(ArrayValue::Jsonb(vec![Some("{}".into())]));
    }

    #[test]
    fn integers_widen_and_narrow_only_when_the_value_fits() {
        assert_eq!(read::<i64>(Value::Int16(-3)).unwrap(), -3);
        assert_eq!(read::<i32>(Value::Int16(-3)).unwrap(), -3);
        assert_eq!(read::<i32>(Value::Int64(70_000)).unwrap(), 70_000);
        assert_eq!(read::<i16>(Value::Int64(-32_768)).unwrap(), -32_768);
        assert_eq!(
            err::<i16>(Value::Int64(70_000)),
            "int64 70000 is out of range for i16"
        );
        assert_eq!(
            err::<i32>(Value::Int64(i64::MAX)),
            "int64 9223372036854775807 is out of range for i32"
        );
        assert_eq!(
            err::<i64>(Value::Text("1".into())),
            "cannot read text as i64"
        );
        assert_eq!(err::<i64>(Value::Bool(true)), "cannot read bool as i64");
    }

    #[test]
    fn booleans_accept_sqlite_zero_and_one() {
        assert!(read::<bool>(Value::Int64(1)).unwrap());
        assert!(!read::<bool>(Value::Int64(0)).unwrap());
        assert!(read::<bool>(Value::Int32(1)).unwrap());
        assert_eq!(
            err::<bool>(Value::Int64(2)),
            "cannot read int64 2 as bool: only 0 and 1 are booleans"
        );
        assert_eq!(
            err::<bool>(Value::Text("t".into())),
            "cannot read text as bool"
        );
    }

    #[test]
    fn floats_accept_what_they_hold() {
        assert_eq!(read::<f64>(Value::Float32(0.5)).unwrap(), 0.5);
        assert_eq!(read::<f64>(Value::Int32(-7)).unwrap(), -7.0);
        assert_eq!(
            read::<f64>(Value::Int64(1 << 53)).unwrap(),
            9_007_199_254_740_992.0
        );
        assert_eq!(
            err::<f64>(Value::Int64((1 << 53) + 1)),
            "int64 9007199254740993 is out of range for f64"
        );
        assert_eq!(read::<f32>(Value::Float64(1.5)).unwrap(), 1.5);
        assert_eq!(read::<f32>(Value::Float64(0.1)).unwrap(), 0.1_f32);
        assert!(
            read::<f32>(Value::Float64(f64::INFINITY))
                .unwrap()
                .is_infinite()
        );
        assert_eq!(
            err::<f32>(Value::Float64(1e300)),
            "float64 1e300 is out of range for f32"
        );
        assert_eq!(read::<f32>(Value::Int64(1 << 24)).unwrap(), 16_777_216.0);
        assert!(read::<f32>(Value::Int32((1 << 24) + 1)).is_err());
        assert_eq!(
            err::<f32>(Value::Numeric("1".into())),
            "cannot read numeric as f32"
        );
    }

    #[test]
    fn strings_accept_every_text_represented_type() {
        for v in [
            Value::Text("x".into()),
            Value::Numeric("x".into()),
            Value::Json("x".into()),
            Value::Jsonb("x".into()),
            Value::Uuid("x".into()),
            Value::Date("x".into()),
            Value::Time("x".into()),
            Value::Timestamp("x".into()),
            Value::Timestamptz("x".into()),
        ] {
            assert_eq!(read::<String>(v).unwrap(), "x");
        }
        assert_eq!(
            err::<String>(Value::Int64(1)),
            "cannot read int64 as String"
        );
        assert_eq!(
            err::<String>(Value::Bytes(vec![])),
            "cannot read bytes as String"
        );
    }

    #[test]
    fn text_types_accept_their_own_variant_and_text() {
        assert_eq!(
            read::<Date>(Value::Text("2024-01-01".into())).unwrap(),
            Date::new("2024-01-01")
        );
        assert_eq!(
            read::<Json>(Value::Jsonb("{}".into())).unwrap(),
            Json::new("{}")
        );
        assert_eq!(
            read::<Jsonb>(Value::Json("{}".into())).unwrap(),
            Jsonb::new("{}")
        );
        assert_eq!(
            err::<Date>(Value::Timestamp("x".into())),
            "cannot read timestamp as Date"
        );
        assert_eq!(
            err::<Uuid>(Value::Bytes(vec![0; 16])),
            "cannot read bytes as Uuid"
        );
        assert_eq!(
            err::<Numeric>(Value::Float64(1.0)),
            "cannot read float64 as Numeric"
        );
    }

    #[test]
    fn null_is_none_for_options_and_an_error_otherwise() {
        assert_eq!(read::<Option<i64>>(Value::Null).unwrap(), None);
        assert_eq!(read::<Option<i64>>(Value::Int16(2)).unwrap(), Some(2));
        assert_eq!(read::<Value>(Value::Null).unwrap(), Value::Null);
        assert_eq!(
            err::<String>(Value::Null),
            "NULL cannot be read as String; read it as Option<String>"
        );
        assert_eq!(
            err::<Vec<u8>>(Value::Null),
            "NULL cannot be read as Vec<u8>; read it as Option<Vec<u8>>"
        );
    }

    #[test]
    fn arrays_convert_element_by_element() {
        let ints = Value::Array(ArrayValue::Int16(vec![Some(1), None]));
        assert_eq!(
            read::<Vec<Option<i64>>>(ints.clone()).unwrap(),
            vec![Some(1), None]
        );
        assert_eq!(
            err::<Vec<i64>>(ints),
            "array element 1: NULL cannot be read as i64; read it as Option<i64>"
        );
        let uuids = Value::Array(ArrayValue::Uuid(vec![Some("u".into())]));
        assert_eq!(
            read::<Vec<String>>(uuids.clone()).unwrap(),
            vec!["u".to_owned()]
        );
        assert_eq!(read::<Vec<Uuid>>(uuids).unwrap(), vec![Uuid::new("u")]);
        assert_eq!(
            err::<Vec<i16>>(Value::Array(ArrayValue::Int64(vec![Some(1 << 20)]))),
            "array element 0: int64 1048576 is out of range for i16"
        );
        assert_eq!(
            err::<Vec<i32>>(Value::Int32(1)),
            "cannot read int32 as Vec<i32>"
        );
        assert_eq!(
            err::<Vec<i32>>(Value::Array(ArrayValue::Text(vec![]))),
            "cannot read array of text as Vec<i32>"
        );
        assert_eq!(
            err::<ArrayValue>(Value::Text("{}".into())),
            "cannot read text as ArrayValue"
        );
    }

    #[test]
    fn type_names_drop_module_paths() {
        assert_eq!(type_name::<Vec<Option<String>>>(), "Vec<Option<String>>");
        assert_eq!(type_name::<crate::Timestamptz>(), "Timestamptz");
        assert_eq!(type_name::<&[u8]>(), "&[u8]");
    }
}

//! The PostgreSQL value codec: what crosses between the WIT contract and the driver.
//!
//! Owns: binding every WIT [`Value`] as a typed parameter in PostgreSQL's binary format
//! ([`Bound`]; a null untyped, JSON with its own types), planning and decoding result
//! columns by their type ([`Plan`], `Decoder`, `decode_cell`) including the binary
//! `numeric`, JSON and date/time readers, and mapping driver errors to [`SqlError`]
//! ([`sql_error`]).
//!
//! Not here: the text formats themselves and their parsers (`crate::value`), which
//! statement runs with the values or which parameter types a cached statement was
//! prepared with (`session`), and the literals of wasmig's own statements
//! (`bookkeeping`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgColumn, PgDatabaseError, PgHasArrayType, PgRow, PgTypeInfo,
    PgTypeKind, PgValueFormat, PgValueRef,
};
use sqlx::{Arguments, Column as _, Decode, Encode, Postgres, Row, Type, TypeInfo, ValueRef};
use uuid::Uuid;

use crate::SqlResult;
use crate::columns::{self, ColumnBuilder, ColumnKind};
use crate::value::{self, ParamRef};
use wasmig_contract::{ArrayValue, Column, ColumnData, ColumnValues, PackedText, SqlError, Value};

/// Maps a driver error to the WIT error: SQLSTATE and fields for a server error, and
/// [`crate::client_error`] for anything else.
pub(super) fn sql_error(err: sqlx::Error) -> SqlError {
    if let sqlx::Error::Database(db) = &err
        && let Some(pg) = db.try_downcast_ref::<PgDatabaseError>()
    {
        if crate::ended_by_server(&err) {
            return crate::session_ended(pg.code(), pg.message(), pg.detail());
        }
        // `message()`, not Display: Display appends " at line N" of the server's C source.
        return SqlError {
            code: pg.code().to_owned(),
            message: pg.message().to_owned(),
            detail: pg.detail().map(str::to_owned),
            hint: pg.hint().map(str::to_owned),
            constraint: pg.constraint().map(str::to_owned),
            table: pg.table().map(str::to_owned),
            column: pg.column().map(str::to_owned),
        };
    }
    crate::client_error(err)
}

// ---------------------------------------------------------------------------------------
// Binding

/// A statement's parameters: the encoded values and their types, kept apart because sqlx
/// does not expose the types of a `PgArguments` and [`PgSession::prepare_checked`] needs them.
///
/// [`PgSession::prepare_checked`]: super::session::PgSession::prepare_checked
pub(super) struct Bound {
    pub(super) args: PgArguments,
    pub(super) types: Vec<PgTypeInfo>,
}

impl Bound {
    /// Binds one row of parameters (`row` numbers it in an `execute-many`).
    pub(super) fn new(params: &[Value], row: Option<usize>) -> SqlResult<Self> {
        check_count(params.len())?;
        let mut bound = Bound {
            args: PgArguments::default(),
            types: Vec::with_capacity(params.len()),
        };
        for (i, value) in params.iter().enumerate() {
            bound.bind(value, ParamRef::new('$', i).in_row(row))?;
        }
        Ok(bound)
    }

    fn push<'q, T: Encode<'q, Postgres> + Type<Postgres>>(
        &mut self,
        value: T,
        at: ParamRef,
    ) -> SqlResult<()> {
        let ty = value.produces().unwrap_or_else(T::type_info);
        self.args.add(value).map_err(|e| at.error(e))?;
        self.types.push(ty);
        Ok(())
    }

    fn bind(&mut self, value: &Value, at: ParamRef) -> SqlResult<()> {
        /// Parses each element of a text-carried array with `parse`.
        fn each<'a, T>(
            items: &'a [Option<String>],
            at: ParamRef,
            parse: impl Fn(&'a str, ParamRef) -> SqlResult<T>,
        ) -> SqlResult<Vec<Option<T>>> {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_deref()
                        .map(|text| parse(text, at.element(i)))
                        .transpose()
                })
                .collect()
        }
        /// A validated JSON document.
        fn json(text: &str, at: ParamRef) -> SqlResult<&str> {
            value::check_json(text, at).map(|()| text)
        }
        match value {
            Value::Null => self.push(UntypedNull, at),
            Value::Bool(v) => self.push(*v, at),
            Value::Int16(v) => self.push(*v, at),
            Value::Int32(v) => self.push(*v, at),
            Value::Int64(v) => self.push(*v, at),
            Value::Float32(v) => self.push(*v, at),
            Value::Float64(v) => self.push(*v, at),
            Value::Numeric(text) => self.push(value::parse_numeric(text, at)?, at),
            Value::Text(text) => self.push(text.as_str(), at),
            Value::Bytes(bytes) => self.push(bytes.as_slice(), at),
            Value::Json(text) => self.push(JsonParam(json(text, at)?), at),
            Value::Jsonb(text) => self.push(JsonbParam(json(text, at)?), at),
            Value::Uuid(text) => self.push(value::parse_uuid(text, at)?, at),
            Value::Date(text) => self.push(value::parse_date(text, at)?, at),
            Value::Time(text) => self.push(value::parse_time(text, at)?, at),
            Value::Timestamp(text) => self.push(value::parse_timestamp(text, at)?, at),
            Value::Timestamptz(text) => self.push(value::parse_timestamptz(text, at)?, at),
            Value::Array(array) => match array {
                ArrayValue::Bool(items) => self.push(items, at),
                ArrayValue::Int16(items) => self.push(items, at),
                ArrayValue::Int32(items) => self.push(items, at),
                ArrayValue::Int64(items) => self.push(items, at),
                ArrayValue::Float32(items) => self.push(items, at),
                ArrayValue::Float64(items) => self.push(items, at),
                ArrayValue::Numeric(items) => self.push(each(items, at, value::parse_numeric)?, at),
                ArrayValue::Text(items) => self.push(items, at),
                ArrayValue::Bytes(items) => self.push(items, at),
                ArrayValue::Json(items) => {
                    let items = each(items, at, |text, at| json(text, at).map(JsonParam))?;
                    self.push(items, at)
                }
                ArrayValue::Jsonb(items) => {
                    let items = each(items, at, |text, at| json(text, at).map(JsonbParam))?;
                    self.push(items, at)
                }
                ArrayValue::Uuid(items) => self.push(each(items, at, value::parse_uuid)?, at),
                ArrayValue::Date(items) => self.push(each(items, at, value::parse_date)?, at),
                ArrayValue::Time(items) => self.push(each(items, at, value::parse_time)?, at),
                ArrayValue::Timestamp(items) => {
                    self.push(each(items, at, value::parse_timestamp)?, at)
                }
                ArrayValue::Timestamptz(items) => {
                    self.push(each(items, at, value::parse_timestamptz)?, at)
                }
            },
        }
    }
}

impl Bound {
    /// Binds a guest's columns, each as one array (`execute-columns`), after
    /// [`columns::check`]: a text column straight from its buffer into the array's binary
    /// form, an `int64` column without nulls as the slice it is, every other column as the
    /// array value it makes (parsed and checked as any array parameter).
    pub(super) fn columns(values: &[ColumnValues]) -> SqlResult<Self> {
        check_count(values.len())?;
        columns::check("execute-columns", values)?;
        let mut bound = Bound {
            args: PgArguments::default(),
            types: Vec::with_capacity(values.len()),
        };
        for (i, column) in values.iter().enumerate() {
            let at = ParamRef::new('$', i);
            match &column.data {
                ColumnData::Text(packed) => bound.push(
                    TextArray {
                        packed,
                        nulls: &column.nulls,
                    },
                    at,
                )?,
                ColumnData::Int64(v) if column.nulls.is_empty() => bound.push(v.as_slice(), at)?,
                _ => bound.bind(&columns::array_of(column), at)?,
            }
        }
        Ok(bound)
    }
}

/// The most parameters one PostgreSQL statement takes (the protocol counts them in 16 bits).
const MAX_PARAMS: usize = u16::MAX as usize;

/// `WASMIG-BIND` for more parameters than a statement takes, before sqlx refuses them as
/// if the connection had failed.
fn check_count(params: usize) -> SqlResult<()> {
    if params > MAX_PARAMS {
        return Err(SqlError::wasmig(
            "BIND",
            format!("{params} parameters: a PostgreSQL statement takes at most {MAX_PARAMS}"),
        ));
    }
    Ok(())
}

/// A packed text column bound as `text[]` (oid 1009), written in the array's binary form:
/// one dimension, its length, then each element's length and bytes (-1 for null).
struct TextArray<'a> {
    packed: &'a PackedText,
    nulls: &'a [bool],
}

impl Type<Postgres> for TextArray<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(1009))
    }
}

impl Encode<'_, Postgres> for TextArray<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let ends = &self.packed.ends;
        let text = self.packed.text.as_bytes();
        let any_null = self.nulls.contains(&true);
        buf.extend_from_slice(&1_i32.to_be_bytes()); // dimensions
        buf.extend_from_slice(&i32::from(any_null).to_be_bytes()); // has nulls
        buf.extend_from_slice(&25_u32.to_be_bytes()); // element type: text
        buf.extend_from_slice(&i32::try_from(ends.len())?.to_be_bytes()); // length
        buf.extend_from_slice(&1_i32.to_be_bytes()); // lower bound
        buf.reserve(text.len() + 4 * ends.len());
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            let end = end as usize;
            if self.nulls.get(i).copied().unwrap_or(false) {
                buf.extend_from_slice(&(-1_i32).to_be_bytes());
            } else {
                // Checked by `columns::check`: within the text, not decreasing.
                let piece = &text[start..end];
                buf.extend_from_slice(&i32::try_from(piece.len())?.to_be_bytes());
                buf.extend_from_slice(piece);
            }
            start = end;
        }
        Ok(IsNull::No)
    }
}

/// A NULL of no declared type (oid 0), so the server infers the parameter's type from its
/// use and the null fits a column of any type. (A typed null such as `None::<String>` is a
/// TEXT null, which a BYTEA column refuses.)
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

/// A validated JSON document bound as `json` (oid 114): its binary format is the text.
struct JsonParam<'a>(&'a str);

impl Type<Postgres> for JsonParam<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(114))
    }
}

impl PgHasArrayType for JsonParam<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(199))
    }
}

impl Encode<'_, Postgres> for JsonParam<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// A validated JSON document bound as `jsonb` (oid 3802): its binary format is a version
/// byte (1) and the text.
struct JsonbParam<'a>(&'a str);

impl Type<Postgres> for JsonbParam<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(3802))
    }
}

impl PgHasArrayType for JsonbParam<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(3807))
    }
}

impl Encode<'_, Postgres> for JsonbParam<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// The WIT scalar a PostgreSQL type reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    /// `oid` (unsigned 32-bit) reads as int64.
    Oid,
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
    /// `void` (what `SELECT pg_sleep(1)` returns) reads as null.
    Void,
}

/// How to read one column: a scalar or a one-dimensional array of one.
#[derive(Debug, Clone, Copy)]
enum Decoder {
    Scalar(Kind),
    Array(Kind),
}

impl Decoder {
    /// The decoder for a column type, by the name sqlx reports (`INT4`, `INT4[]`) and, for
    /// types sqlx does not know by name, their kind (domains read as their base type, enums
    /// as text).
    fn for_type(ty: &PgTypeInfo) -> Option<Decoder> {
        let name = ty.name();
        if let Some(element) = name.strip_suffix("[]") {
            return match scalar_kind(element)? {
                Kind::Void => None,
                kind => Some(Decoder::Array(kind)),
            };
        }
        if let Some(kind) = scalar_kind(name) {
            return Some(Decoder::Scalar(kind));
        }
        // "?" is an unresolved type, whose kind() would panic.
        if name == "?" {
            return None;
        }
        match ty.kind() {
            PgTypeKind::Enum(_) => Some(Decoder::Scalar(Kind::Text)),
            PgTypeKind::Domain(base) => Decoder::for_type(base),
            PgTypeKind::Array(element) => match Decoder::for_type(element)? {
                Decoder::Scalar(Kind::Void) => None,
                Decoder::Scalar(kind) => Some(Decoder::Array(kind)),
                Decoder::Array(_) => None,
            },
            _ => None,
        }
    }
}

impl Kind {
    /// The `column-data` case a column of this kind reads into (`query-columns`).
    fn column_kind(self) -> ColumnKind {
        match self {
            Kind::Bool => ColumnKind::Bool,
            Kind::Int16 => ColumnKind::Int16,
            Kind::Int32 => ColumnKind::Int32,
            Kind::Int64 | Kind::Oid => ColumnKind::Int64,
            Kind::Float32 => ColumnKind::Float32,
            Kind::Float64 => ColumnKind::Float64,
            Kind::Numeric => ColumnKind::Numeric,
            // `void` reads as null: a column of nulls, which comes as text.
            Kind::Text | Kind::Void => ColumnKind::Text,
            Kind::Bytes => ColumnKind::Bytes,
            Kind::Json => ColumnKind::Json,
            Kind::Jsonb => ColumnKind::Jsonb,
            Kind::Uuid => ColumnKind::Uuid,
            Kind::Date => ColumnKind::Date,
            Kind::Time => ColumnKind::Time,
            Kind::Timestamp => ColumnKind::Timestamp,
            Kind::Timestamptz => ColumnKind::Timestamptz,
        }
    }
}

fn scalar_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "BOOL" => Kind::Bool,
        "INT2" => Kind::Int16,
        "INT4" => Kind::Int32,
        "INT8" => Kind::Int64,
        "OID" => Kind::Oid,
        "FLOAT4" => Kind::Float32,
        "FLOAT8" => Kind::Float64,
        "NUMERIC" => Kind::Numeric,
        // `CHAR` is `char(n)` (bpchar); `"CHAR"` is the one-byte catalog type.
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "\"CHAR\"" => Kind::Text,
        // An extension type: sqlx reports it by its lowercase catalog name.
        _ if name.eq_ignore_ascii_case("citext") => Kind::Text,
        "BYTEA" => Kind::Bytes,
        "JSON" => Kind::Json,
        "JSONB" => Kind::Jsonb,
        "UUID" => Kind::Uuid,
        "DATE" => Kind::Date,
        "TIME" => Kind::Time,
        "TIMESTAMP" => Kind::Timestamp,
        "TIMESTAMPTZ" => Kind::Timestamptz,
        "VOID" => Kind::Void,
        _ => return None,
    })
}

/// The columns of a result and how to read each.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) columns: Vec<Column>,
    decoders: Vec<Decoder>,
}

impl Plan {
    /// Plans the decoding of `columns`, refusing a type wasmig cannot read.
    pub(super) fn new(columns: &[PgColumn]) -> SqlResult<Plan> {
        let mut plan = Plan::default();
        for column in columns {
            let ty = column.type_info();
            let decoder = Decoder::for_type(ty).ok_or_else(|| {
                decode_error(
                    column.name(),
                    ty.name(),
                    "wasmig has no value for this type",
                )
            })?;
            plan.columns.push(Column {
                name: column.name().to_owned(),
                type_name: ty.name().to_owned(),
            });
            plan.decoders.push(decoder);
        }
        Ok(plan)
    }

    /// Reads one row.
    pub(super) fn decode(&self, row: &PgRow) -> SqlResult<Vec<Value>> {
        self.decoders
            .iter()
            .zip(&self.columns)
            .enumerate()
            .map(|(i, (decoder, column))| {
                let raw = row.try_get_raw(i).map_err(sql_error)?;
                decode_cell(raw, *decoder)
                    .map_err(|e| decode_error(&column.name, &column.type_name, &e.to_string()))
            })
            .collect()
    }
}

impl Plan {
    /// One builder per column, to read rows straight into columns (`query-columns`): by
    /// the column's type, so a column of nulls keeps its case. An array column is refused
    /// (`WASMIG-DECODE`) before the statement runs.
    pub(super) fn column_builders(&self) -> SqlResult<Vec<ColumnBuilder>> {
        self.decoders
            .iter()
            .zip(&self.columns)
            .enumerate()
            .map(|(i, (decoder, column))| match decoder {
                Decoder::Scalar(kind) => Ok(ColumnBuilder::new(kind.column_kind(), 0)),
                Decoder::Array(_) => Err(columns::array_column(i, &column.name)),
            })
            .collect()
    }

    /// Reads one row into `builders` (from [`Plan::column_builders`]): text and bytes
    /// straight from the row's buffer into the column's, other values through the cell's
    /// decoder.
    pub(super) fn decode_into(&self, row: &PgRow, builders: &mut [ColumnBuilder]) -> SqlResult<()> {
        for (i, ((decoder, column), builder)) in self
            .decoders
            .iter()
            .zip(&self.columns)
            .zip(builders)
            .enumerate()
        {
            let raw = row.try_get_raw(i).map_err(sql_error)?;
            decode_into(raw, *decoder, builder)
                .map_err(|e| decode_error(&column.name, &column.type_name, &e.to_string()))?;
        }
        Ok(())
    }
}

/// Reads one cell into its column.
fn decode_into(
    value: PgValueRef<'_>,
    decoder: Decoder,
    builder: &mut ColumnBuilder,
) -> Result<(), BoxDynError> {
    if value.is_null() {
        builder.push_null();
        return Ok(());
    }
    match decoder {
        // The bytes as sqlx's `String` and `Vec<u8>` read them, without the copy.
        Decoder::Scalar(Kind::Text) => builder.push_str(value.as_str()?),
        Decoder::Scalar(Kind::Bytes) => builder.push_bytes(value.as_bytes()?),
        Decoder::Scalar(_) => {
            if !builder.push(decode_cell(value, decoder)?) {
                return Err("a value of another type than its column's".into());
            }
        }
        Decoder::Array(_) => return Err("an array in a column of scalars".into()),
    }
    Ok(())
}

/// `WASMIG-DECODE`: names the column and its type and says how to get it anyway.
fn decode_error(column: &str, type_name: &str, why: &str) -> SqlError {
    SqlError::wasmig(
        "DECODE",
        format!(
            "cannot read column `{column}` of type {type_name}: {why}; cast it to text in SQL (`{column}::text`)"
        ),
    )
}

/// Decodes with the driver's decoder for `T` (the column type was checked by the plan).
fn dec<'r, T: Decode<'r, Postgres>>(value: PgValueRef<'r>) -> Result<T, BoxDynError> {
    T::decode(value)
}

/// Unwraps the text of a text-carried array.
fn texts<T: Into<String>>(items: Vec<Option<T>>) -> Vec<Option<String>> {
    items.into_iter().map(|item| item.map(Into::into)).collect()
}

fn decode_cell(value: PgValueRef<'_>, decoder: Decoder) -> Result<Value, BoxDynError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    Ok(match decoder {
        Decoder::Scalar(kind) => match kind {
            Kind::Bool => Value::Bool(dec(value)?),
            Kind::Int16 => Value::Int16(dec(value)?),
            Kind::Int32 => Value::Int32(dec(value)?),
            Kind::Int64 => Value::Int64(dec(value)?),
            Kind::Oid => Value::Int64(i64::from(dec::<Oid>(value)?.0)),
            Kind::Float32 => Value::Float32(dec(value)?),
            Kind::Float64 => Value::Float64(dec(value)?),
            Kind::Numeric => Value::Numeric(dec::<NumericText>(value)?.0),
            Kind::Text => Value::Text(dec(value)?),
            Kind::Bytes => Value::Bytes(dec(value)?),
            Kind::Json => Value::Json(dec::<JsonText>(value)?.0),
            Kind::Jsonb => Value::Jsonb(dec::<JsonbText>(value)?.0),
            Kind::Uuid => Value::Uuid(dec::<Uuid>(value)?.to_string()),
            Kind::Date => Value::Date(dec::<DateText>(value)?.0),
            Kind::Time => Value::Time(dec::<TimeText>(value)?.0),
            Kind::Timestamp => Value::Timestamp(dec::<TimestampText>(value)?.0),
            Kind::Timestamptz => Value::Timestamptz(dec::<TimestamptzText>(value)?.0),
            Kind::Void => Value::Null,
        },
        Decoder::Array(kind) => Value::Array(match kind {
            Kind::Bool => ArrayValue::Bool(dec(value)?),
            Kind::Int16 => ArrayValue::Int16(dec(value)?),
            Kind::Int32 => ArrayValue::Int32(dec(value)?),
            Kind::Int64 => ArrayValue::Int64(dec(value)?),
            Kind::Oid => ArrayValue::Int64(
                dec::<Vec<Option<Oid>>>(value)?
                    .into_iter()
                    .map(|oid| oid.map(|o| i64::from(o.0)))
                    .collect(),
            ),
            Kind::Float32 => ArrayValue::Float32(dec(value)?),
            Kind::Float64 => ArrayValue::Float64(dec(value)?),
            Kind::Numeric => ArrayValue::Numeric(texts(dec::<Vec<Option<NumericText>>>(value)?)),
            Kind::Text => ArrayValue::Text(dec(value)?),
            Kind::Bytes => ArrayValue::Bytes(dec(value)?),
            Kind::Json => ArrayValue::Json(texts(dec::<Vec<Option<JsonText>>>(value)?)),
            Kind::Jsonb => ArrayValue::Jsonb(texts(dec::<Vec<Option<JsonbText>>>(value)?)),
            Kind::Uuid => ArrayValue::Uuid(
                dec::<Vec<Option<Uuid>>>(value)?
                    .into_iter()
                    .map(|u| u.map(|u| u.to_string()))
                    .collect(),
            ),
            Kind::Date => ArrayValue::Date(texts(dec::<Vec<Option<DateText>>>(value)?)),
            Kind::Time => ArrayValue::Time(texts(dec::<Vec<Option<TimeText>>>(value)?)),
            Kind::Timestamp => {
                ArrayValue::Timestamp(texts(dec::<Vec<Option<TimestampText>>>(value)?))
            }
            Kind::Timestamptz => {
                ArrayValue::Timestamptz(texts(dec::<Vec<Option<TimestamptzText>>>(value)?))
            }
            Kind::Void => return Err("an array of void".into()),
        }),
    })
}

/// Declares a cell type that reads a PostgreSQL binary value into its WIT text format with
/// `$convert` (sqlx's own decoders lose the numeric scale and panic on infinite dates).
macro_rules! text_cell {
    ($(#[$doc:meta])* $name:ident, oid = $oid:expr, $convert:path) => {
        $(#[$doc])*
        struct $name(String);

        impl From<$name> for String {
            fn from(cell: $name) -> String {
                cell.0
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                PgTypeInfo::with_oid(Oid($oid))
            }
        }

        impl Decode<'_, Postgres> for $name {
            fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
                if value.format() != PgValueFormat::Binary {
                    return Err("expected the binary format".into());
                }
                Ok($name($convert(value.as_bytes()?)?))
            }
        }
    };
}

text_cell!(
    /// `numeric` in plain notation with its display scale (`12.50` stays `12.50`).
    NumericText, oid = 1700, numeric_text
);
text_cell!(
    /// `json`: the document's text.
    JsonText, oid = 114, json_text
);
text_cell!(
    /// `jsonb`: the document's text after the version byte.
    JsonbText, oid = 3802, jsonb_text
);
text_cell!(
    /// `date` as `YYYY-MM-DD`.
    DateText, oid = 1082, date_text
);
text_cell!(
    /// `time` as `HH:MM:SS[.ffffff]`.
    TimeText, oid = 1083, time_text
);
text_cell!(
    /// `timestamp` as `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
    TimestampText, oid = 1114, timestamp_text
);
text_cell!(
    /// `timestamptz` in UTC as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    TimestamptzText, oid = 1184, timestamptz_text
);

/// Reads a big-endian integer of `N` bytes, checking the length.
fn be<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], String> {
    bytes
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "truncated binary value".to_owned())
}

/// PostgreSQL's binary `numeric` (ndigits, weight, sign, dscale, base-10000 digits) printed
/// as `numeric_out` does, with exactly `dscale` fraction digits.
fn numeric_text(bytes: &[u8]) -> Result<String, String> {
    use std::fmt::Write as _;
    let ndigits = i16::from_be_bytes(be(bytes, 0)?);
    let weight = i16::from_be_bytes(be(bytes, 2)?);
    let sign = u16::from_be_bytes(be(bytes, 4)?);
    let dscale = u16::from_be_bytes(be(bytes, 6)?);
    let digits = (0..usize::try_from(ndigits).map_err(|_| "negative digit count")?)
        .map(|i| {
            let digit = i16::from_be_bytes(be(bytes, 8 + 2 * i)?);
            if (0..10_000).contains(&digit) {
                Ok(digit)
            } else {
                Err(format!("invalid numeric digit {digit}"))
            }
        })
        .collect::<Result<Vec<i16>, String>>()?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Err("NaN has no exact decimal form".into()),
        0xD000 | 0xF000 => return Err("infinity has no exact decimal form".into()),
        other => return Err(format!("invalid numeric sign {other:#x}")),
    };
    let digit_at = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=i32::from(weight) {
            let digit = digit_at(i);
            let _ = if i == 0 {
                write!(out, "{digit}")
            } else {
                write!(out, "{digit:04}")
            };
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut i = i32::from(weight) + 1;
        while fraction.len() < usize::from(dscale) {
            let _ = write!(fraction, "{:04}", digit_at(i));
            i += 1;
        }
        fraction.truncate(usize::from(dscale));
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

fn json_text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

fn jsonb_text(bytes: &[u8]) -> Result<String, String> {
    match bytes.split_first() {
        Some((1, text)) => json_text(text),
        _ => Err("unknown jsonb binary version".into()),
    }
}

/// 2000-01-01, PostgreSQL's epoch.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

fn date_text(bytes: &[u8]) -> Result<String, String> {
    let days = i32::from_be_bytes(be(bytes, 0)?);
    if days == i32::MAX || days == i32::MIN {
        return Err("an infinite date has no YYYY-MM-DD form".into());
    }
    TimeDelta::try_days(days.into())
        .and_then(|d| pg_epoch().date().checked_add_signed(d))
        .map(value::format_date)
        .ok_or_else(|| "the date is outside the supported range".into())
}

fn time_text(bytes: &[u8]) -> Result<String, String> {
    const DAY: i64 = 86_400_000_000;
    let micros = i64::from_be_bytes(be(bytes, 0)?);
    if micros == DAY {
        // PostgreSQL allows 24:00:00 (the end of the day), which ISO 8601 spells the same.
        return Ok("24:00:00".into());
    }
    if !(0..DAY).contains(&micros) {
        return Err(format!("invalid time ({micros} µs)"));
    }
    let time = NaiveTime::MIN + TimeDelta::microseconds(micros);
    Ok(value::format_time(time))
}

fn naive_timestamp(bytes: &[u8]) -> Result<NaiveDateTime, String> {
    let micros = i64::from_be_bytes(be(bytes, 0)?);
    if micros == i64::MAX || micros == i64::MIN {
        return Err("an infinite timestamp has no ISO 8601 form".into());
    }
    pg_epoch()
        .checked_add_signed(TimeDelta::microseconds(micros))
        .ok_or_else(|| "the timestamp is outside the supported range".into())
}

fn timestamp_text(bytes: &[u8]) -> Result<String, String> {
    naive_timestamp(bytes).map(value::format_timestamp)
}

fn timestamptz_text(bytes: &[u8]) -> Result<String, String> {
    naive_timestamp(bytes)
        .map(|t| value::format_timestamptz(DateTime::<Utc>::from_naive_utc_and_offset(t, Utc)))
}

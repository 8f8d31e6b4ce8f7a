//! Newtypes for the SQL types the WIT carries as text in fixed formats: `numeric`, `json`,
//! `jsonb`, `uuid`, `date`, `time`, `timestamp` and `timestamptz`.
//!
//! Each wraps a `String` and only selects the SQL type of a parameter (a plain `String` binds
//! as `text`). The SDK does not parse or validate the text: the database does, and a value it
//! rejects comes back as an SQL error (code `WASMIG-BIND` when the host refuses it first).
//! Use a date or decimal library of your choice on the `String` if you need arithmetic.

use core::fmt;

use crate::value::{array_element, mismatch};
use crate::{FromSql, Result, ToSql, Value};

macro_rules! text_type {
    (
        $(#[$doc:meta])*
        $name:ident => $variant:ident, reads [$($also:ident),*]
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps `text`, which should be in the format above.
            pub fn new(text: impl Into<String>) -> Self {
                Self(text.into())
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(text.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> Value {
                Value::$variant(self.0.clone())
            }
        }

        impl FromSql for $name {
            fn from_sql(value: &Value) -> Result<Self> {
                match value {
                    Value::$variant(text) | Value::Text(text) $(| Value::$also(text))* => {
                        Ok(Self(text.clone()))
                    }
                    other => Err(mismatch::<Self>(other)),
                }
            }
        }

        array_element!($name => $variant);
    };
}

text_type! {
    /// An exact decimal for a `numeric` column, in plain notation: `-12.3400` (no exponent,
    /// no `NaN`). SQLite has no exact decimal type: binding one there fails with
    /// `WASMIG-BIND`. Reads `numeric` and `text`.
    Numeric => Numeric, reads []
}

text_type! {
    /// A JSON document for a `json` column, as text: `{"a": 1}`. Reads `json`, `jsonb` and
    /// `text` (SQLite stores JSON as text).
    Json => Json, reads [Jsonb]
}

text_type! {
    /// A JSON document for a `jsonb` column, as text: `{"a": 1}`. PostgreSQL returns it
    /// normalised (`{"a": 1}` with its own spacing and key order). Reads `jsonb`, `json` and
    /// `text` (SQLite stores JSON as text).
    Jsonb => Jsonb, reads [Json]
}

text_type! {
    /// A `uuid`, in canonical lowercase hyphenated form:
    /// `67e55044-10b1-426f-9247-bb680e5fe0c8`. Reads `uuid` and `text`.
    Uuid => Uuid, reads []
}

text_type! {
    /// A `date`, ISO-8601 `YYYY-MM-DD`: `2024-02-29`. Reads `date` and `text`.
    Date => Date, reads []
}

text_type! {
    /// A `time` without time zone, ISO-8601 `HH:MM:SS` with an optional fraction of up to
    /// microseconds: `23:59:58.5`. Reads `time` and `text`.
    Time => Time, reads []
}

text_type! {
    /// A `timestamp` without time zone, ISO-8601 `YYYY-MM-DDTHH:MM:SS[.ffffff]`:
    /// `2024-01-02T03:04:05`. Reads `timestamp` and `text`.
    Timestamp => Timestamp, reads []
}

text_type! {
    /// A `timestamptz`, RFC 3339 with an offset or `Z`: `2024-01-02T03:04:05.123456+02:00`.
    /// The host returns it in UTC with `Z`: `2024-01-02T01:04:05.123456Z`. Reads
    /// `timestamptz` and `text`.
    Timestamptz => Timestamptz, reads []
}

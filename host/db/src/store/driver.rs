//! The narrow trait a backend implements for the [`VersionStore`](super::VersionStore):
//! a [`Statement`] of wasmig's with its bound [`Param`]s, executed or fetched as [`Cell`]s,
//! and a script of wasmig's own DDL.
//!
//! Not here: the statements themselves (`store`), a backend's impl (its `bookkeeping`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A value bound to a statement of wasmig's.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Text, or NULL.
    Text(Option<String>),
    /// A 64-bit integer.
    Int(i64),
    /// Bytes, or NULL (shared: a component's bytes are not copied into the statement).
    Bytes(Option<bytes::Bytes>),
    /// A UTC time (PostgreSQL: `timestamptz`; SQLite: RFC 3339 text with microseconds).
    Time(DateTime<Utc>),
    /// A list of texts (PostgreSQL only: `text[]`).
    Texts(Vec<String>),
}

/// How to decode one column of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text, or NULL.
    Text,
    /// A 64-bit integer, or NULL.
    Int,
    /// Bytes, or NULL.
    Bytes,
    /// A UTC time, as [`Param::Time`] writes it.
    Time,
}

/// One decoded column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// [`Kind::Text`].
    Text(Option<String>),
    /// [`Kind::Int`].
    Int(Option<i64>),
    /// [`Kind::Bytes`].
    Bytes(Option<Vec<u8>>),
    /// [`Kind::Time`].
    Time(DateTime<Utc>),
}

/// One statement of wasmig's: its text (wasmig's own, with `$1`, `$2`… placeholders), its
/// parameters, and how to decode the columns it returns.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL, one statement.
    pub sql: String,
    /// Bound in order to `$1`, `$2`…
    pub params: Vec<Param>,
    /// The columns of each row, in order (empty for a statement that returns none).
    pub columns: &'static [Kind],
}

impl Statement {
    pub(super) fn new(sql: String, params: Vec<Param>) -> Self {
        Statement {
            sql,
            params,
            columns: &[],
        }
    }

    pub(super) fn rows(sql: String, params: Vec<Param>, columns: &'static [Kind]) -> Self {
        Statement {
            sql,
            params,
            columns,
        }
    }
}

/// `statement`'s SQL with each `$n` outside quotes written by `fill` (given the output so far,
/// the parameter's index from 0 and the parameter): how wasmig's own statements become
/// text with their values inlined. wasmig's statements hold no comments or dollar quotes;
/// a quoted name or string may hold a `$`.
///
/// # Errors
/// A placeholder without a parameter, or `fill`'s error.
pub fn fill_placeholders<'s>(
    statement: &'s Statement,
    mut fill: impl FnMut(&mut String, usize, &'s Param) -> Result<(), sqlx::Error>,
) -> Result<String, sqlx::Error> {
    let sql = &statement.sql;
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql.as_str();
    while let Some(at) = rest.find(['$', '\'', '"']) {
        out.push_str(&rest[..at]);
        let quote = rest.as_bytes()[at];
        if quote != b'$' {
            // Through the closing quote (a doubled one closes and reopens).
            let end = rest[at + 1..]
                .find(char::from(quote))
                .map_or(rest.len(), |i| at + i + 2);
            out.push_str(&rest[at..end]);
            rest = &rest[end..];
            continue;
        }
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let index = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < statement.params.len())
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!("no parameter for a placeholder of {sql}"))
            })?;
        fill(&mut out, index, &statement.params[index])?;
        rest = &after[digits..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A backend's connection, as the store uses it: the narrow trait each backend implements.
#[async_trait]
pub trait Driver: Send {
    /// Runs one statement with its parameters bound (extended protocol on PostgreSQL);
    /// returns the rows it affected.
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error>;

    /// Runs one statement and decodes its rows as `statement.columns` says.
    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error>;

    /// Runs a script of wasmig's own DDL: no parameters, several statements, nothing in it
    /// that wasmig did not write.
    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error>;

    /// Whether the statements are written for someone to run later (`--sql`) on a database
    /// nothing was read from, rather than run now: what is written must then hold whatever
    /// the database turns out to hold.
    fn writes_for_later(&self) -> bool {
        false
    }
}

/// A connection wasmig reads its tables on outside any step (PostgreSQL: the control
/// connection; SQLite: a pooled one), held for one operation.
pub trait Reader: Send {
    /// The connection.
    fn driver(&mut self) -> &mut dyn Driver;
}

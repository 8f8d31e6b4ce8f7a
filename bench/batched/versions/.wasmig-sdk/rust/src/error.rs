//! The one error type of a migration: an SQL error from the host, or a message (a decoding
//! failure, a [`bail!`](crate::bail), a parse error…).
//!
//! It owns no recovery logic: handling an SQL error is done with
//! [`db::savepoint`](crate::db::savepoint).

use core::fmt;

use crate::SqlError;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// An error in a migration: an SQL error, or a message.
///
/// Its `Display` is what wasmig reports when the migration fails: for an SQL error the code,
/// message, and PostgreSQL's detail and hint when present, e.g.
/// `sql error 23505: duplicate key value violates unique constraint "users_email_key";
/// detail: Key (email)=(a@b.c) already exists.`
pub struct Error {
    // Boxed: an `SqlError` is seven strings, and `Result<T>` is returned everywhere.
    repr: Box<Repr>,
}

#[derive(Debug)]
enum Repr {
    /// `context` is empty or ends with `": "`; it is shown before the SQL error.
    Sql {
        error: SqlError,
        context: String,
    },
    Message(String),
}

impl Error {
    /// An error with this message. [`bail!`](crate::bail) is the shorthand for returning one.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(Repr::Message(message.to_string()))
    }

    /// The SQL error, when the database (or the host, for codes starting with `WASMIG-`)
    /// reported this error.
    ///
    /// ```no_run
    /// # use wasmig_guest::{db, warn};
    /// # fn f() -> wasmig_guest::Result<()> {
    /// match db::savepoint(|| db::execute("INSERT INTO tags (name) VALUES ('new')", &[])) {
    ///     Ok(_) => {}
    ///     Err(e) if e.sql().is_some_and(|sql| sql.code == "23505") => warn!("tag exists"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sql(&self) -> Option<&SqlError> {
        match &*self.repr {
            Repr::Sql { error, .. } => Some(error),
            Repr::Message(_) => None,
        }
    }

    /// The error with `context` in front of its message: `context: message`. An SQL error
    /// stays one: [`Error::sql`] still returns it, unchanged.
    ///
    /// ```
    /// # use wasmig_guest::Error;
    /// let e = Error::msg("no such row").context("backfilling orders");
    /// assert_eq!(e.to_string(), "backfilling orders: no such row");
    /// ```
    pub fn context(self, context: impl fmt::Display) -> Self {
        match *self.repr {
            Repr::Message(m) => Self::msg(format!("{context}: {m}")),
            Repr::Sql {
                error,
                context: inner,
            } => Self::new(Repr::Sql {
                error,
                context: format!("{context}: {inner}"),
            }),
        }
    }

    fn new(repr: Repr) -> Self {
        Self {
            repr: Box::new(repr),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.repr {
            Repr::Message(m) => f.write_str(m),
            Repr::Sql {
                error: sql,
                context,
            } => {
                write!(f, "{context}sql error {}: {}", sql.code, sql.message)?;
                if let Some(detail) = &sql.detail {
                    write!(f, "; detail: {detail}")?;
                }
                if let Some(hint) = &sql.hint {
                    write!(f, "; hint: {hint}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.repr, f)
    }
}

impl core::error::Error for Error {}

impl From<SqlError> for Error {
    fn from(error: SqlError) -> Self {
        Self::new(Repr::Sql {
            error,
            context: String::new(),
        })
    }
}

/// `?` on the standard library's parse and conversion errors. For any other error type,
/// `.map_err(Error::msg)?`.
macro_rules! from_std_errors {
    ($($ty:ty),+) => {
        $(
            impl From<$ty> for Error {
                fn from(error: $ty) -> Self {
                    Self::msg(error)
                }
            }
        )+
    };
}
from_std_errors!(
    core::num::ParseIntError,
    core::num::ParseFloatError,
    core::num::TryFromIntError,
    core::str::ParseBoolError,
    core::str::Utf8Error,
    std::string::FromUtf8Error,
    core::fmt::Error
);

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(Repr::Message(message))
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(Repr::Message(message.to_owned()))
    }
}

/// Returns early with an [`Error`] built like `format!`.
///
/// ```
/// # fn f(rows: u64) -> wasmig_guest::Result<()> {
/// if rows > 1000 {
///     wasmig_guest::bail!("expected at most 1000 rows, found {rows}");
/// }
/// # Ok(()) }
/// # assert!(f(1001).is_err());
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($arg)+)))
    };
}

/// Returns early with an [`Error`] built like `format!` unless the condition holds.
///
/// ```
/// # fn f(rows: u64) -> wasmig_guest::Result<()> {
/// wasmig_guest::ensure!(rows <= 1000, "expected at most 1000 rows, found {rows}");
/// # Ok(()) }
/// # assert!(f(1001).is_err());
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::bail!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_error() -> SqlError {
        SqlError {
            code: "23505".into(),
            message: "duplicate key value violates unique constraint \"t_pkey\"".into(),
            detail: Some("Key (id)=(1) already exists.".into()),
            hint: Some("pick another id".into()),
            constraint: Some("t_pkey".into()),
            table: Some("t".into()),
            column: None,
        }
    }

    #[test]
    fn sql_errors_show_code_message_detail_and_hint() {
        let e = Error::from(sql_error());
        assert_eq!(
            e.to_string(),
            "sql error 23505: duplicate key value violates unique constraint \"t_pkey\"; \
             detail: Key (id)=(1) already exists.; hint: pick another id"
        );
        assert_eq!(e.sql().map(|s| s.code.as_str()), Some("23505"));
    }

    #[test]
    fn question_mark_converts_sql_errors_messages_and_std_errors() {
        fn sql() -> Result<()> {
            Err(sql_error())?
        }
        fn parse() -> Result<i32> {
            Ok("x".parse::<i32>()?)
        }
        fn message() -> Result<()> {
            Err("plain")?
        }
        fn io() -> std::io::Result<()> {
            Err(std::io::Error::other("disk on fire"))
        }
        fn other() -> Result<()> {
            io().map_err(Error::msg)
        }
        assert!(sql().unwrap_err().sql().is_some());
        let e = parse().unwrap_err();
        assert!(e.sql().is_none());
        assert_eq!(e.to_string(), "invalid digit found in string");
        assert_eq!(message().unwrap_err().to_string(), "plain");
        assert_eq!(other().unwrap_err().to_string(), "disk on fire");
    }

    #[test]
    fn bail_and_ensure_format_their_message() {
        fn f(n: i32) -> Result<()> {
            ensure!(n >= 0, "negative: {n}");
            if n > 9 {
                bail!("too big: {}", n);
            }
            Ok(())
        }
        assert_eq!(f(-1).unwrap_err().to_string(), "negative: -1");
        assert_eq!(f(10).unwrap_err().to_string(), "too big: 10");
        assert!(f(5).is_ok());
    }

    #[test]
    fn context_keeps_sql_errors_inspectable() {
        let e = Error::from(sql_error()).context("adding users");
        assert!(
            e.to_string()
                .starts_with("adding users: sql error 23505: duplicate key")
        );
        assert_eq!(e.sql(), Some(&sql_error()));
        assert_eq!(
            Error::msg("inner").context("outer").to_string(),
            "outer: inner"
        );
    }
}

//! Database URLs: which backend, where, and how to show the URL without its password.

use std::fmt;
use std::path::PathBuf;

use super::DbError;

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`.
    Postgres {
        /// The URL as given, passed to sqlx.
        url: String,
    },
    /// `mysql://…` or `mariadb://…`: MySQL or MariaDB (one protocol, told apart by the
    /// server's version once connected).
    Mysql {
        /// The URL as given.
        url: String,
    },
    /// `sqlite:PATH`, `sqlite://PATH` or a file path; created if missing.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

impl DatabaseUrl {
    /// Parses a URL.
    ///
    /// # Errors
    /// [`DbError::InvalidUrl`] for an unknown scheme or an empty path.
    pub fn parse(raw: &str) -> Result<Self, DbError> {
        let invalid = |reason: &str| DbError::InvalidUrl {
            url: redact(raw),
            reason: reason.to_owned(),
        };
        let raw = raw.trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let rest = raw.split_once("://").map(|(_, r)| r).unwrap_or_default();
            if rest.is_empty() {
                return Err(invalid("no host or database after the scheme"));
            }
            return Ok(DatabaseUrl::Postgres {
                url: raw.to_owned(),
            });
        }
        if raw.starts_with("mysql://") || raw.starts_with("mariadb://") {
            let rest = raw.split_once("://").map(|(_, r)| r).unwrap_or_default();
            if rest.is_empty() {
                return Err(invalid("no host or database after the scheme"));
            }
            return Ok(DatabaseUrl::Mysql {
                url: raw.to_owned(),
            });
        }
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(invalid(
                    "wasmig needs a database file (an in-memory SQLite database would forget every migration); write sqlite:PATH",
                ));
            }
            return Ok(DatabaseUrl::Sqlite {
                path: PathBuf::from(path),
            });
        }
        match raw.split_once("://") {
            Some((scheme, _)) => Err(invalid(&format!(
                "unsupported scheme `{scheme}`; wasmig supports postgres://, mysql://, mariadb:// and sqlite:"
            ))),
            None => Err(invalid(
                "expected postgres://USER@HOST/DB, mysql://USER@HOST/DB or sqlite:PATH",
            )),
        }
    }

    /// The dialect this URL selects.
    pub fn dialect(&self) -> wasmig_contract::Dialect {
        match self {
            DatabaseUrl::Postgres { .. } => wasmig_contract::Dialect::Postgres,
            DatabaseUrl::Mysql { .. } => wasmig_contract::Dialect::Mysql,
            DatabaseUrl::Sqlite { .. } => wasmig_contract::Dialect::Sqlite,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres { url } | DatabaseUrl::Mysql { url } => f.write_str(&redact(url)),
            DatabaseUrl::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
        }
    }
}

/// Replaces the password of `scheme://user:password@host` by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_mysql_and_sqlite() {
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@localhost/db"),
            Ok(DatabaseUrl::Postgres { .. })
        ));
        for url in [
            "mysql://root@127.0.0.1:3306/app",
            "mariadb://root@localhost/app",
        ] {
            assert!(
                matches!(DatabaseUrl::parse(url), Ok(DatabaseUrl::Mysql { .. })),
                "{url}"
            );
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite:dir/x.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "dir/x.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///abs/x.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "/abs/x.db".into()
            }
        );
    }

    #[test]
    fn rejects_unknown_schemes_and_memory() {
        let err = DatabaseUrl::parse("oracle://root@localhost/x").unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme `oracle`"),
            "{err}"
        );
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("localhost").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}

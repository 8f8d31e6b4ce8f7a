//! Scratch databases for `wasmig test`: a uniquely named database created on a PostgreSQL
//! server (`wasmig_test_<random>`) and dropped `WITH (FORCE)`, or a temporary SQLite file
//! removed with its lock and journal files.
//!
//! The database a URL names is never written: on PostgreSQL it is only connected to, to run
//! `CREATE DATABASE` and `DROP DATABASE` for the scratch one beside it.
//!
//! Not here: what runs on the scratch database (`wasmig::migrator`), when it is dropped
//! (its owner calls [`Scratch::drop_database`]; dropping the value does nothing, since
//! dropping a database is asynchronous).

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::url::redact;
use crate::{DatabaseUrl, SQLITE_LOCK_SUFFIX};

/// A scratch database that exists until [`Scratch::drop_database`].
#[derive(Debug)]
pub struct Scratch {
    /// The scratch database's URL.
    pub url: DatabaseUrl,
    /// The URL its server was reached through (PostgreSQL), to drop it from; `None` for a
    /// SQLite file.
    admin: Option<String>,
    /// The database's name (PostgreSQL) or file (SQLite).
    name: String,
}

/// A scratch database could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The role may not create databases on the server.
    #[error(
        "cannot create a scratch database on {server}: the role `{role}` may not create databases ({message}); grant it with `ALTER ROLE {role} CREATEDB`, or point `wasmig test` at a server where it may with --scratch-url postgres://USER@HOST/DB"
    )]
    NotAllowed {
        /// The server's URL, without the password.
        server: String,
        /// The role connected as.
        role: String,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached, or refused otherwise.
    #[error("cannot create a scratch database on {server}: {message}")]
    Failed {
        /// The server's URL (or the file), without the password.
        server: String,
        /// What went wrong.
        message: String,
    },
}

impl Scratch {
    /// Creates a scratch database beside the one `beside` names: on its PostgreSQL server
    /// (connecting to that database), with `schema` created in it when it is not `public`
    /// (wasmig's tables live there); for SQLite, a file in the system's temporary directory.
    ///
    /// # Errors
    /// [`ScratchError::NotAllowed`] when the role lacks `CREATEDB`; [`ScratchError::Failed`]
    /// otherwise.
    pub async fn create(beside: &DatabaseUrl, schema: &str) -> Result<Scratch, ScratchError> {
        let name = format!("wasmig_test_{}", uuid::Uuid::new_v4().simple());
        match beside {
            DatabaseUrl::Sqlite { .. } => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Ok(Scratch {
                    url: DatabaseUrl::Sqlite { path: path.clone() },
                    admin: None,
                    name: path.display().to_string(),
                })
            }
            DatabaseUrl::Mysql { url } => {
                let server = redact(url);
                let failed = |e: sqlx::Error| match &e {
                    // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED
                    sqlx::Error::Database(d) if d.code().as_deref() == Some("42000") => {
                        ScratchError::NotAllowed {
                            server: server.clone(),
                            role: String::new(),
                            message: d.message().to_owned(),
                        }
                    }
                    _ => ScratchError::Failed {
                        server: server.clone(),
                        message: e.to_string(),
                    },
                };
                let admin_url = with_database(&mysql_scheme(url), "");
                let mut admin = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .map_err(failed)?;
                let created = admin
                    .execute(AssertSqlSafe(format!(
                        "CREATE DATABASE {name} CHARACTER SET utf8mb4"
                    )))
                    .await;
                let _ = admin.close().await;
                created.map_err(failed)?;
                Ok(Scratch {
                    url: DatabaseUrl::Mysql {
                        url: with_database(url, &name),
                    },
                    admin: Some(admin_url),
                    name,
                })
            }
            DatabaseUrl::Postgres { url } => {
                let server = redact(url);
                let failed = |e: sqlx::Error| match &e {
                    sqlx::Error::Database(d) if d.code().as_deref() == Some("42501") => {
                        ScratchError::NotAllowed {
                            server: server.clone(),
                            role: String::new(),
                            message: d.message().to_owned(),
                        }
                    }
                    sqlx::Error::Database(d) => ScratchError::Failed {
                        server: server.clone(),
                        message: d.message().to_owned(),
                    },
                    _ => ScratchError::Failed {
                        server: server.clone(),
                        message: e.to_string(),
                    },
                };
                // The configured database may not exist yet: then its server's `postgres`.
                let (mut admin, admin_url) = match sqlx::PgConnection::connect(url).await {
                    Ok(c) => (c, url.clone()),
                    Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("3D000") => {
                        let fallback = with_database(url, "postgres");
                        let c = sqlx::PgConnection::connect(&fallback)
                            .await
                            .map_err(failed)?;
                        (c, fallback)
                    }
                    Err(e) => return Err(failed(e)),
                };
                let created = admin
                    .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await;
                if let Err(e) = created {
                    let mut err = failed(e);
                    if let ScratchError::NotAllowed { role, .. } = &mut err {
                        *role = sqlx::query_scalar::<_, String>("SELECT current_user::text")
                            .fetch_one(&mut admin)
                            .await
                            .unwrap_or_else(|_| "ROLE".into());
                    }
                    let _ = admin.close().await;
                    return Err(err);
                }
                let _ = admin.close().await;
                let scratch = Scratch {
                    url: DatabaseUrl::Postgres {
                        url: with_database(url, &name),
                    },
                    admin: Some(admin_url),
                    name,
                };
                if schema != "public"
                    && let Err(e) = scratch.create_schema(schema).await
                {
                    scratch.drop_database().await;
                    return Err(failed(e));
                }
                Ok(scratch)
            }
        }
    }

    /// `CREATE SCHEMA` in the scratch database.
    async fn create_schema(&self, schema: &str) -> Result<(), sqlx::Error> {
        let DatabaseUrl::Postgres { url } = &self.url else {
            return Ok(());
        };
        let mut c = sqlx::PgConnection::connect(url).await?;
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        c.execute(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted}"
        )))
        .await?;
        c.close().await
    }

    /// The scratch database's name (PostgreSQL) or file (SQLite).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the scratch database (`WITH (FORCE)`: sessions a failed step left are ended)
    /// or removes the file. Best effort: a failure is logged as a warning naming what to
    /// drop by hand.
    pub async fn drop_database(&self) {
        match (&self.admin, &self.url) {
            (Some(admin), DatabaseUrl::Mysql { .. }) => {
                let dropped = async {
                    let mut c = sqlx::MySqlConnection::connect(admin).await?;
                    c.execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {}",
                        self.name
                    )))
                    .await?;
                    c.close().await
                }
                .await;
                if let Err(e) = dropped {
                    tracing::warn!(
                        "cannot drop the scratch database {}: {e}; drop it by hand (DROP DATABASE {})",
                        self.name,
                        self.name
                    );
                }
            }
            (Some(admin), _) => {
                let dropped = async {
                    let mut c = sqlx::PgConnection::connect(admin).await?;
                    c.execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    )))
                    .await?;
                    c.close().await
                }
                .await;
                if let Err(e) = dropped {
                    tracing::warn!(
                        "cannot drop the scratch database {}: {e}; drop it by hand (DROP DATABASE {} WITH (FORCE))",
                        self.name,
                        self.name
                    );
                }
            }
            (None, DatabaseUrl::Sqlite { path }) => {
                let mut files = vec![path.clone()];
                for suffix in [SQLITE_LOCK_SUFFIX, "-wal", "-shm", "-journal"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    files.push(PathBuf::from(p));
                }
                for file in files {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(
                            "cannot remove the scratch database file {}: {e}",
                            file.display()
                        ),
                    }
                }
            }
            (None, DatabaseUrl::Postgres { .. } | DatabaseUrl::Mysql { .. }) => {}
        }
    }
}

/// A `mysql://` or `mariadb://` URL as sqlx reads it (`mysql://`).
fn mysql_scheme(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => format!("mysql://{rest}"),
        None => url.to_owned(),
    }
}

/// `url` with its database replaced by `name` (the path of `postgres://authority/db?query`).
fn with_database(url: &str, name: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_scratch_url_keeps_the_server_user_and_parameters() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/app", "wasmig_test_x"),
            "postgres://u:p@h:5432/wasmig_test_x"
        );
        assert_eq!(with_database("postgres://h", "s"), "postgres://h/s");
        assert_eq!(
            with_database("postgresql://h/app?sslmode=disable", "s"),
            "postgresql://h/s?sslmode=disable"
        );
    }
}

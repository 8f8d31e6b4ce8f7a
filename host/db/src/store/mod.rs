//! wasmig's own tables, written once for both backends: the [`VersionStore`].
//!
//! Owns: every statement that reads or writes the version, history, failed-mark, artifact
//! and checkpoint tables (one text for PostgreSQL and SQLite, told apart only by the few
//! words of [`Words`]), the check that each write touched the one row it meant to, the
//! schema version of those tables and the ordered list of their migrations (`schema`).
//!
//! Every value wasmig writes is a [`Param`], never text quoted into a statement: bound as a
//! parameter, or on PostgreSQL's one-round-trip path spelled in hexadecimal and decoded by
//! the server; either way a revision's text, a checkpoint or an error message cannot end a
//! literal early, whatever settings the migration left on the session.
//!
//! One concern per file: this one holds the store, the dialect's words, creating and
//! migrating the tables (`ensure`) and what the others share; `read` the reads, `write`
//! the writes (with PostgreSQL's one-statement finish of a step), `partition` the claims
//! and checkpoints of a step run by several workers, `schema` the layout and its
//! migrations, `driver` the trait a backend implements.
//!
//! Not here: talking to a server. A backend implements the narrow [`Driver`] (run one
//! statement with its parameters, fetch its rows, run wasmig's own DDL script) for its
//! connections; the guards that run before a step writes (PostgreSQL's lock fence and
//! tamper check) are the backend's, in its `Session` impl.

mod driver;
mod observe;
mod offline;
mod partition;
mod read;
mod schema;
mod write;

use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub use self::driver::{Cell, Driver, Kind, Param, Reader, Statement, fill_placeholders};
pub use self::observe::{Observed, RelationLock, TableRows};
pub use self::offline::{ScriptWriter, inline};
pub use self::schema::{SCHEMA_VERSION, postgres_direction_check};
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, DbError, FAILED_TABLE, HISTORY_TABLE, PARTITION_TABLE,
    SCHEMA_TABLE, VERSION_TABLE,
};
use wasmig_contract::Dialect;

/// The checks a backend's session makes in the one statement that records a step
/// ([`VersionStore::guarded_finish`]): each an SQL boolean expression of the dialect, made
/// before anything is written, and nothing is written unless all three hold.
#[derive(Debug, Clone)]
pub struct Checks {
    /// The transaction is the one the step began.
    pub transaction: String,
    /// The run still holds the migration lock.
    pub lock: String,
    /// wasmig's tables look like the plain tables it made (a cheap look, which may flag
    /// what a full check then clears).
    pub tables: String,
    /// The values the expressions above name as `$c1`, `$c2`… (the statement renumbers
    /// them as its own parameters): what changes from one step to the next is bound, so
    /// that the statement's text stays the same through a run and the server can keep
    /// it prepared.
    pub params: Vec<Param>,
}

/// The first of [`Checks`] that failed: the step was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A statement ended the step's transaction.
    TransactionEnded,
    /// The run no longer holds the migration lock.
    LockLost,
    /// The cheap look at wasmig's tables saw a flag: the full check says whether it was
    /// tampering or a stale flag.
    TablesFlagged,
}

/// The words in which the two dialects differ, everything else being the same text.
#[derive(Debug, Clone)]
pub struct Words {
    dialect: Dialect,
    /// PostgreSQL: the schema the tables are qualified by (`None`: found by `search_path`).
    schema: Option<String>,
}

impl Words {
    /// The words of `dialect`, with wasmig's tables in `schema` (PostgreSQL only).
    pub fn new(dialect: Dialect, schema: Option<String>) -> Self {
        Words { dialect, schema }
    }

    /// One of wasmig's tables, qualified: by the schema when there is one on PostgreSQL,
    /// and always by `main` on SQLite, where an unqualified name finds a temporary table of
    /// that name first (a migration could otherwise send wasmig's record into one, to
    /// vanish with the connection).
    pub fn table(&self, name: &str) -> String {
        match (&self.schema, self.dialect) {
            (Some(schema), Dialect::Postgres) => {
                format!("\"{}\".{name}", schema.replace('"', "\"\""))
            }
            (None, Dialect::Postgres) => name.to_owned(),
            (_, Dialect::Sqlite) => format!("main.{name}"),
            // The connection's database (the URL's).
            (_, Dialect::Mysql) => name.to_owned(),
        }
    }

    /// Text equality: qualified on PostgreSQL, so an operator the migration put earlier in
    /// the `search_path` cannot answer instead.
    fn eq(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "OPERATOR(pg_catalog.=)",
            Dialect::Sqlite | Dialect::Mysql => "=",
        }
    }

    /// The number of rows, as a 64-bit integer: qualified on PostgreSQL.
    fn count(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "pg_catalog.count(*)",
            Dialect::Sqlite | Dialect::Mysql => "count(*)",
        }
    }

    /// The column type of a time.
    fn time(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "TIMESTAMPTZ",
            Dialect::Sqlite => "TEXT",
            Dialect::Mysql => "DATETIME(6)",
        }
    }

    /// The column type of bytes.
    fn bytes(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "BYTEA",
            Dialect::Sqlite => "BLOB",
            Dialect::Mysql => "LONGBLOB",
        }
    }

    /// An ever-increasing integer key.
    fn identity(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Mysql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
        }
    }

    /// The column type of a text that is part of a key (MySQL indexes only a prefix of a
    /// `TEXT`; revision ids are short).
    fn key(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres | Dialect::Sqlite => "TEXT",
            Dialect::Mysql => "VARCHAR(255)",
        }
    }

    /// The column type of any other text (MySQL's `TEXT` holds 64 KiB; a script may not).
    fn text(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres | Dialect::Sqlite => "TEXT",
            Dialect::Mysql => "LONGTEXT",
        }
    }

    /// What follows a table's column list: on MySQL a transactional engine, and a binary
    /// collation so that ids compare exactly.
    fn table_options(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres | Dialect::Sqlite => "",
            Dialect::Mysql => " ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
        }
    }
}

/// wasmig's tables on one database, read and written through a [`Driver`].
///
/// Reads never create the tables: a table that does not exist reads as empty. Which of
/// them exist is looked up once and kept (tables only appear during a run); what is not
/// found is looked up again next time.
#[derive(Debug)]
pub struct VersionStore {
    words: Words,
    /// The tables (and [`HISTORY_ERROR_COLUMNS`]) known to exist.
    present: Mutex<Vec<&'static str>>,
}

/// What [`VersionStore::present`] keeps when the history table has its error columns
/// (tables made before wasmig recorded a schema version may not).
const HISTORY_ERROR_COLUMNS: &str = "wasmig_history.error";

/// Every table of wasmig's, for the backends' checks of them.
pub const TABLE_NAMES: [&str; 7] = TABLES;

/// Every table of wasmig's, as [`VersionStore::present`] looks for them.
const TABLES: [&str; 7] = [
    VERSION_TABLE,
    HISTORY_TABLE,
    FAILED_TABLE,
    ARTIFACT_TABLE,
    CHECKPOINT_TABLE,
    SCHEMA_TABLE,
    PARTITION_TABLE,
];

/// The error of a read or write of wasmig's tables.
fn query_error(doing: impl Into<String>) -> impl FnOnce(sqlx::Error) -> anyhow::Error {
    move |source| {
        DbError::Query {
            doing: doing.into(),
            source,
        }
        .into()
    }
}

/// A write that did not touch the one row it meant to: something between wasmig and its
/// table (a rule, a trigger, a policy) swallowed or multiplied it.
fn confirm(rows: u64, doing: &str) -> anyhow::Result<()> {
    if rows == 1 {
        return Ok(());
    }
    Err(crate::TablesTampered(format!("{doing} changed {rows} rows instead of 1")).into())
}

/// A text cell, or a decoding error naming the column.
fn text(cell: &Cell, column: &str) -> Result<Option<String>, sqlx::Error> {
    match cell {
        Cell::Text(t) => Ok(t.clone()),
        _ => Err(bad_cell(column)),
    }
}

fn required(cell: &Cell, column: &str) -> Result<String, sqlx::Error> {
    text(cell, column)?.ok_or_else(|| bad_cell(column))
}

fn int(cell: &Cell, column: &str) -> Result<i64, sqlx::Error> {
    match cell {
        Cell::Int(Some(i)) => Ok(*i),
        _ => Err(bad_cell(column)),
    }
}

fn time(cell: &Cell, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    match cell {
        Cell::Time(t) => Ok(*t),
        _ => Err(bad_cell(column)),
    }
}

fn bad_cell(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: "not the type wasmig wrote".into(),
    }
}

/// Heads stored as one comma-separated text (revision ids cannot contain a comma).
fn heads(cell: &Cell, column: &str) -> Result<Vec<String>, sqlx::Error> {
    Ok(crate::split_heads(&required(cell, column)?))
}

fn opt(text: Option<&str>) -> Param {
    Param::Text(text.map(str::to_owned))
}

fn txt(text: &str) -> Param {
    Param::Text(Some(text.to_owned()))
}

impl VersionStore {
    /// The store of a `dialect` database, its tables in `schema` (PostgreSQL; `None`: the
    /// first schema of the connection's `search_path`).
    pub fn new(dialect: Dialect, schema: Option<String>) -> Self {
        VersionStore {
            words: Words::new(dialect, schema),
            present: Mutex::new(Vec::new()),
        }
    }

    /// The words the statements are written in.
    pub fn words(&self) -> &Words {
        &self.words
    }

    fn table(&self, name: &str) -> String {
        self.words.table(name)
    }

    /// Whether one of wasmig's tables exists (reads must not create them).
    pub async fn has_table(&self, d: &mut dyn Driver, table: &str) -> anyhow::Result<bool> {
        self.present(d, table).await
    }

    /// Whether `table` (or [`HISTORY_ERROR_COLUMNS`]) exists: one query looks for all of
    /// them, and what it finds is kept.
    async fn present(&self, d: &mut dyn Driver, table: &str) -> anyhow::Result<bool> {
        let known = |present: &[&str]| present.contains(&table);
        if known(&self.present.lock().expect("not poisoned")) {
            return Ok(true);
        }
        let found = d
            .fetch(&schema::present_tables(&self.words, &TABLES))
            .await
            .map_err(query_error("looking for wasmig's tables"))?;
        let mut present = self.present.lock().expect("not poisoned");
        for row in found {
            let name = text(&row[0], "name")
                .map_err(query_error("looking for wasmig's tables"))?
                .unwrap_or_default();
            let name = if name == HISTORY_ERROR_COLUMNS {
                HISTORY_ERROR_COLUMNS
            } else if let Some(t) = TABLES.iter().find(|t| **t == name) {
                t
            } else {
                continue;
            };
            if !present.contains(&name) {
                present.push(name);
            }
        }
        Ok(known(&present))
    }

    /// The schema version of wasmig's tables: 0 when they predate it (or do not exist).
    async fn schema_version(&self, d: &mut dyn Driver) -> anyhow::Result<i64> {
        if !self.present(d, SCHEMA_TABLE).await? {
            return Ok(0);
        }
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT version FROM {} ORDER BY version DESC LIMIT 1",
                    self.table(SCHEMA_TABLE)
                ),
                vec![],
                &[Kind::Int],
            ))
            .await
            .map_err(query_error(format!("reading {SCHEMA_TABLE}")))?;
        match rows.first() {
            Some(row) => {
                int(&row[0], "version").map_err(query_error(format!("reading {SCHEMA_TABLE}")))
            }
            None => Ok(0),
        }
    }

    /// Creates wasmig's tables, or brings them to [`SCHEMA_VERSION`]: the migrations of
    /// `schema` after the version recorded, in one transaction, then the version. Nothing to
    /// do (one read) when they are current.
    ///
    /// # Errors
    /// [`DbError::SchemaTooNew`] when a newer wasmig has migrated them; [`DbError::Query`]
    /// when a statement fails (the transaction is rolled back).
    pub async fn ensure(&self, d: &mut dyn Driver) -> anyhow::Result<()> {
        let found = self.schema_version(d).await?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        too_new(found)?;
        d.script("BEGIN")
            .await
            .map_err(query_error("creating wasmig's tables"))?;
        let migrated = self.migrate_serialised(d, found).await;
        let end = if migrated.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = d.script(end).await;
        migrated?;
        ended.map_err(query_error("creating wasmig's tables"))?;
        Ok(())
    }

    /// [`Self::migrate`], one run at a time on PostgreSQL: behind
    /// [`crate::PG_TABLES_KEY`] for the transaction, then from the version read again (a
    /// run that waited finds the tables made, and does nothing).
    async fn migrate_serialised(&self, d: &mut dyn Driver, found: i64) -> anyhow::Result<()> {
        if self.words.dialect != Dialect::Postgres || d.writes_for_later() {
            return self.migrate(d, found).await;
        }
        let serialised = d
            .script(&format!(
                // Bounded: any session may hold the key (a migration's own SQL, say), and
                // creating the tables unserialised is what wasmig did before the lock.
                "SET LOCAL lock_timeout = '{TABLES_LOCK_WAIT_MS}ms'; \
                 SELECT pg_catalog.pg_advisory_xact_lock({}); \
                 SET LOCAL lock_timeout TO DEFAULT",
                crate::PG_TABLES_KEY
            ))
            .await;
        if let Err(e) = serialised {
            // An engine without advisory locks (some YugabyteDB versions refuse them), or a
            // session that kept the key past the wait: create the tables as before,
            // unserialised, in a fresh transaction.
            tracing::debug!("{e}: creating wasmig's tables without waiting for other runs");
            for step in ["ROLLBACK", "BEGIN"] {
                d.script(step)
                    .await
                    .map_err(query_error("creating wasmig's tables"))?;
            }
            return self.migrate(d, found).await;
        }
        let found = self.schema_version(d).await?;
        too_new(found)?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        self.migrate(d, found).await
    }

    async fn migrate(&self, d: &mut dyn Driver, found: i64) -> anyhow::Result<()> {
        if found == 0 && self.present(d, VERSION_TABLE).await? {
            // Tables an earlier wasmig made before it recorded a schema version.
            schema::adopt_unversioned(&self.words, d).await?;
        }
        for migration in schema::MIGRATIONS.iter().filter(|m| m.version > found) {
            d.script(&(migration.ddl)(&self.words))
                .await
                .map_err(query_error(format!(
                    "migrating wasmig's tables to schema version {} ({})",
                    migration.version, migration.what
                )))?;
            // A script for later (`--sql` from base) may meet the tables already there, at
            // this version (a database taken down to base keeps them): the DDL is `IF NOT
            // EXISTS`, and the version's row is written only if missing.
            let (insert, if_missing) = match (d.writes_for_later(), self.words.dialect) {
                (false, _) => ("INSERT", ""),
                (true, Dialect::Mysql) => ("INSERT IGNORE", ""),
                (true, _) => ("INSERT", " ON CONFLICT (version) DO NOTHING"),
            };
            let done = d
                .execute(&Statement::new(
                    format!(
                        "{insert} INTO {} (version, wasmig_version, migrated_at) VALUES ($1, $2, $3){if_missing}",
                        self.table(SCHEMA_TABLE)
                    ),
                    vec![
                        Param::Int(migration.version),
                        txt(env!("CARGO_PKG_VERSION")),
                        Param::Time(Utc::now()),
                    ],
                ))
                .await
                .map_err(query_error(format!(
                    "recording schema version {}",
                    migration.version
                )))?;
            confirm(
                done,
                &format!("recording schema version {}", migration.version),
            )?;
        }
        Ok(())
    }
}

/// How long creating wasmig's tables waits for [`crate::PG_TABLES_KEY`] before going on
/// without it.
const TABLES_LOCK_WAIT_MS: u64 = 5_000;

/// [`DbError::SchemaTooNew`] when a newer wasmig migrated the tables past `found`.
fn too_new(found: i64) -> anyhow::Result<()> {
    if found > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    Ok(())
}

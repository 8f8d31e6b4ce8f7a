//! The version tables' side of the SQLite backend: their DDL and the text form of the
//! times stored in them.
//!
//! Owns: the `CREATE TABLE`s that [`Database::ensure_version_tables`] runs (the history
//! table's also for rebuilding an older one), and writing and reading the tables'
//! timestamps ([`history_time`], [`parse_time`]).
//!
//! Not here: running any of it, the upgrade of an older history table, and the reads and
//! writes of the tables (the `Database` impl in `mod.rs` and the `Session` impl in
//! `session`, which bind their values as parameters), or the table layout's
//! documentation (on [`SqliteDatabase`]).
//!
//! [`Database::ensure_version_tables`]: crate::Database::ensure_version_tables
//! [`SqliteDatabase`]: super::SqliteDatabase

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{ARTIFACT_TABLE, CHECKPOINT_TABLE, FAILED_TABLE};

/// Reads a timestamp column written by [`history_time`].
pub(super) fn parse_time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(e),
        })
}

/// The history table's timestamp text: fixed width, so it sorts as it reads.
pub(super) fn history_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The history table, as `name`: created with the other version tables, and again when
/// [`Database::ensure_version_tables`] rebuilds an older one.
///
/// [`Database::ensure_version_tables`]: crate::Database::ensure_version_tables
pub(super) fn history_table_ddl(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     revision TEXT NOT NULL,
                     direction TEXT NOT NULL CHECK (direction IN
                         ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve')),
                     checksum TEXT NOT NULL,
                     started_at TEXT NOT NULL,
                     finished_at TEXT NOT NULL,
                     duration_ms BIGINT NOT NULL,
                     wasmig_version TEXT NOT NULL,
                     error TEXT,
                     sqlstate TEXT
                 );"
    )
}

/// The failure states (`transaction = "none"`): the table of failed marks.
pub(super) fn failed_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {FAILED_TABLE} (
                 revision TEXT PRIMARY KEY,
                 direction TEXT NOT NULL,
                 remove_heads TEXT NOT NULL,
                 add_heads TEXT NOT NULL,
                 statement BIGINT NOT NULL,
                 error TEXT NOT NULL,
                 sqlstate TEXT,
                 failed_at TEXT NOT NULL
             );"
    )
}

/// The artifact table.
pub(super) fn artifact_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {ARTIFACT_TABLE} (
                 revision TEXT PRIMARY KEY,
                 kind TEXT NOT NULL,
                 checksum TEXT NOT NULL,
                 manifest TEXT NOT NULL,
                 up_sql TEXT,
                 down_sql TEXT,
                 component BLOB,
                 source_checksum TEXT,
                 stored_at TEXT NOT NULL
             )"
    )
}

/// The table of batched steps part-way through.
pub(super) fn checkpoint_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
                 revision TEXT PRIMARY KEY,
                 direction TEXT NOT NULL,
                 remove_heads TEXT NOT NULL,
                 add_heads TEXT NOT NULL,
                 checkpoint TEXT NOT NULL,
                 batches BIGINT NOT NULL,
                 checksum TEXT NOT NULL,
                 started_at TEXT NOT NULL,
                 updated_at TEXT NOT NULL
             )"
    )
}

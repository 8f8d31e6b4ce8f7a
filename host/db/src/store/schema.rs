//! The layout of wasmig's own tables and its migrations, in order.
//!
//! Owns: [`SCHEMA_VERSION`], the ordered [`MIGRATIONS`] that bring the tables to it (each
//! recorded in `wasmig_schema` in the transaction that applied it), the adoption of tables
//! made by a wasmig that predates the schema version, and the query that finds which
//! tables exist.
//!
//! Changing the layout means appending a migration here, never editing one: a database
//! records the versions it has, and a wasmig that finds a newer one refuses to write.
//!
//! Not here: running them (`VersionStore::ensure`), or PostgreSQL's storage tuning of the
//! artifact table (lz4), which is the backend's and not part of the layout.

use super::{Driver, Kind, Param, Statement, Words, query_error};
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, FAILED_TABLE, HISTORY_TABLE, PARTITION_TABLE, SCHEMA_TABLE,
    VERSION_TABLE,
};
use wasmig_contract::Dialect;

/// The schema version this wasmig writes: the last of [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = 2;

/// One migration of wasmig's tables.
pub(super) struct Migration {
    /// The version it brings the tables to.
    pub(super) version: i64,
    /// What it does, for messages.
    pub(super) what: &'static str,
    /// Its DDL, in the dialect's words.
    pub(super) ddl: fn(&Words) -> String,
}

/// Every migration, in order; the last one's version is [`SCHEMA_VERSION`].
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "the version, history, failed-mark, artifact, checkpoint and schema tables",
        ddl: tables_v1,
    },
    Migration {
        version: 2,
        what: "the partition table of batched steps run by several workers",
        ddl: partitions_v2,
    },
];

/// The values the history table's `direction` may take.
const DIRECTIONS: &str = "'upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve'";

/// The history table's `direction` check as PostgreSQL prints it
/// (`pg_get_constraintdef`), as a regular expression: the one check constraint wasmig's
/// tables hold there, which the tamper check compares every check it finds with (any other
/// could run code as wasmig writes). The values may be any of [`DIRECTIONS`], so that the
/// narrower check of tables made before the schema version (adopted by
/// [`adopt_unversioned`], once the tables have been checked) is wasmig's too.
pub fn postgres_direction_check() -> String {
    let values = DIRECTIONS
        .split(", ")
        .map(|d| d.trim_matches('\''))
        .collect::<Vec<_>>()
        .join("|");
    let value = format!("'(?:{values})'::text");
    format!(r"^CHECK \(\(direction = ANY \(ARRAY\[{value}(?:, {value})*\]\)\)\)$")
}

/// The history table, as `name` (also the rebuilt table of [`adopt_unversioned`]).
fn history_ddl(w: &Words, name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
             id {identity},
             revision {key} NOT NULL,
             direction {key} NOT NULL CHECK (direction IN ({DIRECTIONS})),
             checksum {key} NOT NULL,
             started_at {time} NOT NULL,
             finished_at {time} NOT NULL,
             duration_ms BIGINT NOT NULL,
             wasmig_version {key} NOT NULL,
             error {text},
             sqlstate {key}
         ){options};",
        identity = w.identity(),
        time = w.time(),
        key = w.key(),
        text = w.text(),
        options = w.table_options(),
    )
}

/// Schema version 1: the tables as they were when wasmig began recording a version.
fn tables_v1(w: &Words) -> String {
    let time = w.time();
    let key = w.key();
    let text = w.text();
    let options = w.table_options();
    format!(
        "CREATE TABLE IF NOT EXISTS {version} (revision {key} PRIMARY KEY){options};
         {history}
         CREATE TABLE IF NOT EXISTS {failed} (
             revision {key} PRIMARY KEY,
             direction {text} NOT NULL,
             remove_heads {text} NOT NULL,
             add_heads {text} NOT NULL,
             statement BIGINT NOT NULL,
             error {text} NOT NULL,
             sqlstate {text},
             failed_at {time} NOT NULL
         ){options};
         CREATE TABLE IF NOT EXISTS {artifact} (
             revision {key} PRIMARY KEY,
             kind {text} NOT NULL,
             checksum {text} NOT NULL,
             manifest {text} NOT NULL,
             up_sql {text},
             down_sql {text},
             component {bytes},
             source_checksum {text},
             stored_at {time} NOT NULL
         ){options};
         CREATE TABLE IF NOT EXISTS {checkpoint} (
             revision {key} PRIMARY KEY,
             direction {text} NOT NULL,
             remove_heads {text} NOT NULL,
             add_heads {text} NOT NULL,
             checkpoint {text} NOT NULL,
             batches BIGINT NOT NULL,
             checksum {text} NOT NULL,
             started_at {time} NOT NULL,
             updated_at {time} NOT NULL
         ){options};
         CREATE TABLE IF NOT EXISTS {schema} (
             version BIGINT PRIMARY KEY,
             wasmig_version {text} NOT NULL,
             migrated_at {time} NOT NULL
         ){options};",
        version = w.table(VERSION_TABLE),
        history = history_ddl(w, &w.table(HISTORY_TABLE)),
        failed = w.table(FAILED_TABLE),
        artifact = w.table(ARTIFACT_TABLE),
        checkpoint = w.table(CHECKPOINT_TABLE),
        schema = w.table(SCHEMA_TABLE),
        bytes = w.bytes(),
    )
}

/// Schema version 2: the partitions of a batched step split into key ranges
/// (`[partitions]` in its manifest), each with its checkpoint and the worker holding it:
/// `owner` and `lease_until` say who may run it and until when, `token` grows with every
/// claim so a worker whose claim was taken over cannot commit (see `store::partition`).
fn partitions_v2(w: &Words) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {partition} (
             revision {key} NOT NULL,
             part BIGINT NOT NULL,
             parts BIGINT NOT NULL,
             first_key BIGINT NOT NULL,
             last_key BIGINT NOT NULL,
             checkpoint {text} NOT NULL,
             batches BIGINT NOT NULL,
             done BIGINT NOT NULL,
             owner {key},
             token BIGINT NOT NULL,
             lease_until {time},
             updated_at {time} NOT NULL,
             PRIMARY KEY (revision, part)
         ){options};",
        partition = w.table(PARTITION_TABLE),
        time = w.time(),
        key = w.key(),
        text = w.text(),
        options = w.table_options(),
    )
}

/// Brings tables made before wasmig recorded a schema version to the layout of version 1,
/// in the caller's transaction: a history table from before `stamp`, `rehash`, `failed`
/// and `resolve` were recorded gets the wider `direction` check and the error columns. The
/// tables missing altogether are left to version 1's `CREATE TABLE IF NOT EXISTS`.
pub(super) async fn adopt_unversioned(w: &Words, d: &mut dyn Driver) -> anyhow::Result<()> {
    let doing = "adopting wasmig's tables made before it recorded a schema version";
    let history = w.table(HISTORY_TABLE);
    match w.dialect {
        Dialect::Postgres => {
            let check = format!("{HISTORY_TABLE}_direction_check");
            d.script(&format!(
                "DO $$
                 BEGIN
                     IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                                WHERE conrelid OPERATOR(pg_catalog.=) '{history}'::pg_catalog.regclass
                                  AND conname OPERATOR(pg_catalog.=) '{check}'
                                  AND pg_catalog.pg_get_constraintdef(oid) NOT LIKE '%resolve%') THEN
                         ALTER TABLE {history} DROP CONSTRAINT {check};
                         ALTER TABLE {history} ADD CONSTRAINT {check}
                             CHECK (direction IN ({DIRECTIONS}));
                     END IF;
                     IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                                    WHERE attrelid OPERATOR(pg_catalog.=) '{history}'::pg_catalog.regclass
                                      AND attname OPERATOR(pg_catalog.=) 'sqlstate' AND NOT attisdropped) THEN
                         ALTER TABLE {history} ADD COLUMN IF NOT EXISTS error TEXT,
                             ADD COLUMN IF NOT EXISTS sqlstate TEXT;
                     END IF;
                 END $$;"
            ))
            .await
            .map_err(query_error(doing))?;
        }
        // wasmig's first release on MySQL already recorded a schema version.
        Dialect::Mysql => {}
        Dialect::Sqlite => {
            // SQLite cannot alter a check: the history table is rebuilt.
            let rows = d
                .fetch(&Statement::rows(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1".into(),
                    vec![Param::Text(Some(HISTORY_TABLE.into()))],
                    &[Kind::Text],
                ))
                .await
                .map_err(query_error(doing))?;
            let sql = match rows.first().map(|r| &r[0]) {
                Some(super::Cell::Text(Some(sql))) => sql.clone(),
                _ => return Ok(()),
            };
            if !sql.contains("'resolve'") {
                let mut columns = "id, revision, direction, checksum, started_at, finished_at, \
                                   duration_ms, wasmig_version"
                    .to_owned();
                if sql.contains("sqlstate") {
                    columns.push_str(", error, sqlstate");
                }
                d.script(&format!(
                    "ALTER TABLE {history} RENAME TO {HISTORY_TABLE}_old;
                     {}
                     INSERT INTO {history} ({columns}) SELECT {columns} FROM {HISTORY_TABLE}_old;
                     DROP TABLE {HISTORY_TABLE}_old;",
                    history_ddl(w, &history)
                ))
                .await
                .map_err(query_error(doing))?;
            }
        }
    }
    Ok(())
}

/// The names of those of `tables` that exist, and `wasmig_history.error` when the history
/// table has its error columns. Only wasmig's own constant names are in the text; the
/// schema prefix is a parameter.
pub(super) fn present_tables(w: &Words, tables: &[&str]) -> Statement {
    let names = tables
        .iter()
        .map(|t| format!("('{t}')"))
        .collect::<Vec<_>>()
        .join(", ");
    match w.dialect {
        Dialect::Postgres => {
            let prefix = w
                .schema
                .as_ref()
                .map_or_else(String::new, |s| format!("\"{}\".", s.replace('"', "\"\"")));
            Statement::rows(
                format!(
                    "SELECT t.name::pg_catalog.text FROM (VALUES {names}) AS t(name)
                     WHERE pg_catalog.to_regclass(pg_catalog.concat($1::pg_catalog.text, t.name)) IS NOT NULL
                     UNION ALL
                     SELECT '{HISTORY_TABLE}.error'::pg_catalog.text WHERE EXISTS (
                         SELECT 1 FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid OPERATOR(pg_catalog.=)
                               pg_catalog.to_regclass(pg_catalog.concat($1::pg_catalog.text, '{HISTORY_TABLE}'))
                           AND a.attname OPERATOR(pg_catalog.=) 'error' AND NOT a.attisdropped)"
                ),
                vec![Param::Text(Some(prefix))],
                &[Kind::Text],
            )
        }
        Dialect::Mysql => {
            let names = tables
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ");
            Statement::rows(
                format!(
                    "SELECT CAST(table_name AS CHAR) FROM information_schema.tables
                     WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'
                       AND table_name IN ({names})
                     UNION ALL
                     SELECT '{HISTORY_TABLE}.error' FROM information_schema.columns
                     WHERE table_schema = DATABASE() AND table_name = '{HISTORY_TABLE}'
                       AND column_name = 'error'"
                ),
                vec![],
                &[Kind::Text],
            )
        }
        Dialect::Sqlite => Statement::rows(
            format!(
                "SELECT name FROM sqlite_master
                 WHERE type = 'table' AND name IN (SELECT column1 FROM (VALUES {names}))
                 UNION ALL
                 SELECT '{HISTORY_TABLE}.error' WHERE EXISTS (
                     SELECT 1 FROM pragma_table_info('{HISTORY_TABLE}') WHERE name = 'error')"
            ),
            vec![],
            &[Kind::Text],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_order_and_end_at_the_schema_version() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn the_layout_is_one_text_in_two_dialects() {
        let pg = tables_v1(&Words::new(Dialect::Postgres, None));
        let sqlite = tables_v1(&Words::new(Dialect::Sqlite, None));
        assert!(pg.contains("TIMESTAMPTZ") && pg.contains("BYTEA"));
        assert!(sqlite.contains("AUTOINCREMENT") && !sqlite.contains("TIMESTAMPTZ"));
        // Qualified by a schema whose name needs quoting.
        let odd = tables_v1(&Words::new(Dialect::Postgres, Some("we\"ird".into())));
        assert!(odd.contains("CREATE TABLE IF NOT EXISTS \"we\"\"ird\".wasmig_version"));
    }
}

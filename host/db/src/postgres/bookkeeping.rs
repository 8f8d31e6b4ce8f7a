//! The version tables' side of the PostgreSQL backend: their DDL, the statements a step
//! writes them with, and reading an artifact row back.
//!
//! Owns: the `CREATE TABLE`s (and the in-place upgrades of older tables) that
//! [`Database::ensure_version_tables`] runs, the one-round-trip statements that record a
//! step, store or forget an artifact and clear a checkpoint (built as literals by [`lit`]
//! and friends, because they run as simple queries), and the schema-qualified table names
//! a session writes to.
//!
//! Not here: running any of it (the `Database` impl in `mod.rs` and the `Session` impl in
//! `session`), the reads of `failed`, `heads`, `history`… (they stay with the `Database`
//! impl, on the control connection), or the table layout's documentation (on
//! [`PgDatabase`]).
//!
//! [`Database::ensure_version_tables`]: crate::Database::ensure_version_tables
//! [`PgDatabase`]: super::PgDatabase

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::session::PgSession;
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, FAILED_TABLE, HISTORY_TABLE, StepRecord, StoredArtifact,
    VERSION_TABLE, pg_script,
};

/// The values the history table's `direction` may take.
const DIRECTIONS: &str = "'upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve'";

/// The first script of [`Database::ensure_version_tables`]: the version and history
/// tables, and the widening of an older history table's `direction` check.
///
/// [`Database::ensure_version_tables`]: crate::Database::ensure_version_tables
pub(super) fn version_tables_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (revision TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
                 id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 revision TEXT NOT NULL,
                 direction TEXT NOT NULL CHECK (direction IN ({DIRECTIONS})),
                 checksum TEXT NOT NULL,
                 started_at TIMESTAMPTZ NOT NULL,
                 finished_at TIMESTAMPTZ NOT NULL,
                 duration_ms BIGINT NOT NULL,
                 wasmig_version TEXT NOT NULL,
                 error TEXT,
                 sqlstate TEXT
             );
             -- Tables created before `stamp`, `rehash`, `failed` or `resolve` was recorded:
             -- widen the check (once).
             DO $$
             BEGIN
                 IF EXISTS (SELECT 1 FROM pg_constraint
                            WHERE conrelid = '{HISTORY_TABLE}'::regclass
                              AND conname = '{HISTORY_TABLE}_direction_check'
                              AND pg_get_constraintdef(oid) NOT LIKE '%resolve%') THEN
                     ALTER TABLE {HISTORY_TABLE} DROP CONSTRAINT {HISTORY_TABLE}_direction_check;
                     ALTER TABLE {HISTORY_TABLE} ADD CONSTRAINT {HISTORY_TABLE}_direction_check
                         CHECK (direction IN ({DIRECTIONS}));
                 END IF;
             END $$;"
    )
}

/// The failure states (`transaction = "none"`): the history table's error columns (added
/// in place to an older table) and the table of failed marks.
pub(super) fn failure_tables_ddl() -> String {
    format!(
        "-- Checked first: ALTER TABLE locks the table even when there is nothing to add.
             DO $$
             BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_attribute
                                WHERE attrelid = '{HISTORY_TABLE}'::regclass
                                  AND attname = 'sqlstate' AND NOT attisdropped) THEN
                     ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS error TEXT,
                         ADD COLUMN IF NOT EXISTS sqlstate TEXT;
                 END IF;
             END $$;
             CREATE TABLE IF NOT EXISTS {FAILED_TABLE} (
                 revision TEXT PRIMARY KEY,
                 direction TEXT NOT NULL,
                 remove_heads TEXT NOT NULL,
                 add_heads TEXT NOT NULL,
                 statement BIGINT NOT NULL,
                 error TEXT NOT NULL,
                 sqlstate TEXT,
                 failed_at TIMESTAMPTZ NOT NULL
             );"
    )
}

/// The artifact table, and lz4 compression of its components where the server has it.
pub(super) fn artifact_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {ARTIFACT_TABLE} (
                 revision TEXT PRIMARY KEY,
                 kind TEXT NOT NULL,
                 checksum TEXT NOT NULL,
                 manifest TEXT NOT NULL,
                 up_sql TEXT,
                 down_sql TEXT,
                 component BYTEA,
                 source_checksum TEXT,
                 stored_at TIMESTAMPTZ NOT NULL
             );
             -- A component is stored with every upgrade: compressed with lz4 where the
             -- server has it (PostgreSQL 14+), which writes a 27 KB component about twenty
             -- times faster than the default pglz, at a similar size. Once per table, by its
             -- owner only (ALTER TABLE needs ownership, and a role that merely may write the
             -- tables must keep working), waiting at most a second for the table's lock (it
             -- conflicts with readers such as pg_dump): otherwise the next run tries again.
             -- (Nested IFs and EXECUTE: older servers lack both the column and the syntax.)
             DO $$
             BEGIN
                 IF current_setting('server_version_num')::int >= 140000 THEN
                     IF EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                                WHERE a.attrelid = '{ARTIFACT_TABLE}'::regclass
                                  AND a.attname = 'component' AND a.attcompression = ''
                                  AND pg_has_role(c.relowner, 'USAGE')) THEN
                         PERFORM set_config('lock_timeout', '1s', true);
                         EXECUTE 'ALTER TABLE {ARTIFACT_TABLE} ALTER COLUMN component SET COMPRESSION lz4';
                     END IF;
                 END IF;
             EXCEPTION WHEN feature_not_supported OR insufficient_privilege OR lock_not_available THEN
                 NULL; -- built without lz4, not ours after all, or busy: pglz for now
             END $$;"
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
                 started_at TIMESTAMPTZ NOT NULL,
                 updated_at TIMESTAMPTZ NOT NULL
             )"
    )
}

impl PgSession {
    /// A version table's name, qualified by the schema read at `begin`.
    pub(super) fn version_table(&self, table: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{}\".{table}", schema.replace('"', "\"\"")),
            None => table.to_owned(),
        }
    }

    /// [`Session::record_step`]'s statement.
    ///
    /// [`Session::record_step`]: crate::Session::record_step
    pub(super) fn record_sql(&self, step: &StepRecord<'_>) -> String {
        let version_table = self.version_table(VERSION_TABLE);
        let history_table = self.version_table(HISTORY_TABLE);
        // One statement, one round trip: the head change and the history row together. The
        // parts of one statement see the same snapshot, so a head both removed and added
        // (`resolve`, `stamp` keep some) is left alone by both: the same result as deleting
        // `remove`, then inserting `add`.
        format!(
            "WITH removed AS (DELETE FROM {version_table}
                              WHERE revision OPERATOR(pg_catalog.=) ANY({remove})
                                AND revision OPERATOR(pg_catalog.<>) ALL({add})),
                  added AS (INSERT INTO {version_table} (revision)
                            SELECT a FROM pg_catalog.unnest({add}) AS a
                            WHERE a OPERATOR(pg_catalog.<>) ALL({remove}))
             INSERT INTO {history_table}
                 (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
                  error, sqlstate)
             VALUES ({revision}, {direction}, {checksum}, {started}, {finished}, {ms}, {version},
                     {error}, {sqlstate})",
            remove = text_array(step.remove),
            add = text_array(step.add),
            revision = lit(step.revision),
            direction = lit(step.direction.as_str()),
            checksum = lit(step.checksum),
            started = time_lit(step.started_at),
            finished = time_lit(step.finished_at),
            ms = (step.finished_at - step.started_at).num_milliseconds(),
            version = lit(env!("CARGO_PKG_VERSION")),
            error = opt_lit(step.error),
            sqlstate = opt_lit(step.sqlstate),
        )
    }

    /// [`Session::store_artifact`]'s statement.
    ///
    /// [`Session::store_artifact`]: crate::Session::store_artifact
    pub(super) fn store_artifact_sql(&self, artifact: &StoredArtifact) -> String {
        let table = self.version_table(ARTIFACT_TABLE);
        let component = match &artifact.component {
            Some(bytes) => format!(
                "{}::pg_catalog.bytea",
                lit(&format!("\\x{}", hex::encode(bytes)))
            ),
            None => "NULL".into(),
        };
        format!(
            "INSERT INTO {table}
                 (revision, kind, checksum, manifest, up_sql, down_sql, component,
                  source_checksum, stored_at)
             VALUES ({}, {}, {}, {}, {}, {}, {component}, {}, {})
             ON CONFLICT (revision) DO UPDATE SET
                 kind = excluded.kind, checksum = excluded.checksum,
                 manifest = excluded.manifest, up_sql = excluded.up_sql,
                 down_sql = excluded.down_sql, component = excluded.component,
                 source_checksum = excluded.source_checksum, stored_at = excluded.stored_at",
            lit(&artifact.revision),
            lit(&artifact.kind),
            lit(&artifact.checksum),
            lit(&artifact.manifest),
            opt_lit(artifact.up_sql.as_deref()),
            opt_lit(artifact.down_sql.as_deref()),
            opt_lit(artifact.source_checksum.as_deref()),
            time_lit(Utc::now()),
        )
    }

    /// [`Session::forget_artifact`]'s statement.
    ///
    /// [`Session::forget_artifact`]: crate::Session::forget_artifact
    pub(super) fn forget_artifact_sql(&self, revision: &str) -> String {
        let table = self.version_table(ARTIFACT_TABLE);
        format!(
            "DELETE FROM {table} WHERE revision OPERATOR(pg_catalog.=) {}",
            lit(revision)
        )
    }

    /// [`Session::clear_checkpoint`]'s statement.
    ///
    /// [`Session::clear_checkpoint`]: crate::Session::clear_checkpoint
    pub(super) fn clear_checkpoint_sql(&self, revision: &str) -> String {
        let table = self.version_table(CHECKPOINT_TABLE);
        format!(
            "DELETE FROM {table} WHERE revision OPERATOR(pg_catalog.=) {}",
            lit(revision)
        )
    }
}

/// `text` as a string literal for wasmig's own simple-query statements, which take one
/// round trip whatever the statement cache holds (see `pg_script` for why `E'…'` is safe).
pub(super) fn lit(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    pg_script::quote(&mut out, text);
    out
}

/// A literal, or `NULL`.
pub(super) fn opt_lit(text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), lit)
}

/// A UTC time as a `timestamptz` literal, to the microsecond.
pub(super) fn time_lit(time: DateTime<Utc>) -> String {
    format!(
        "{}::pg_catalog.timestamptz",
        lit(&time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    )
}

/// A `text[]` literal of revision ids.
pub(super) fn text_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| lit(i)).collect();
    format!("ARRAY[{}]::pg_catalog.text[]", items.join(", "))
}

/// A row of the artifact table.
pub(super) fn stored_artifact(row: &PgRow) -> Result<StoredArtifact, sqlx::Error> {
    Ok(StoredArtifact {
        revision: row.try_get("revision")?,
        kind: row.try_get("kind")?,
        checksum: row.try_get("checksum")?,
        manifest: row.try_get("manifest")?,
        up_sql: row.try_get("up_sql")?,
        down_sql: row.try_get("down_sql")?,
        component: row.try_get("component")?,
        source_checksum: row.try_get("source_checksum")?,
    })
}

/// The tamper check: a statement that fails with `WMG03`, naming what it found, when one
/// of wasmig's tables (`tables`, as named in the statement's session) is not the plain
/// table wasmig created: a view or another kind of relation in its place, a trigger, a
/// rewrite rule, row-level security, or a child table (whose rows a read of the table
/// includes: a forged head there would make a revision never run); or, when `oids` (the tables' oids when the run
/// created or found them) are known, a table replaced since. Any of these could make
/// wasmig's writes land elsewhere, vanish or change, or its reads lie. Every name is
/// qualified by `pg_catalog` (`concat` rather than `||`), so the migration's `search_path`
/// cannot answer instead.
///
/// With `oids`, a cheap look at the five `pg_class` rows comes first (measured: 0.2 ms
/// against 0.8 ms for the full check per step); only when it sees a flag (which may be
/// stale: `relhastriggers` stays set after a trigger is dropped, until a vacuum) does the
/// full check run and name what it finds.
pub(super) fn tamper_check(tables: &[String], known: Option<&KnownTables>) -> String {
    let oids = known.map(|k| k.oids.as_slice());
    let regclasses = tables
        .iter()
        .map(|t| format!("pg_catalog.to_regclass({})", lit(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let current = format!("ARRAY[{regclasses}]::pg_catalog.oid[]");
    let replaced = match oids {
        Some(oids) => format!(
            "UNION ALL
                 SELECT pg_catalog.concat(t.name, ' was replaced during the run')
                 FROM ROWS FROM (pg_catalog.unnest(ARRAY[{names}]::pg_catalog.text[]),
                                 pg_catalog.unnest({current}), pg_catalog.unnest({known}))
                      AS t(name, now, was)
                 WHERE COALESCE(t.now OPERATOR(pg_catalog.<>) t.was, true)",
            names = tables.iter().map(|t| lit(t)).collect::<Vec<_>>().join(", "),
            known = oid_array(oids),
        ),
        None => String::new(),
    };
    let full = format!(
        "SELECT pg_catalog.string_agg(what, '; ') INTO found FROM (
                 SELECT pg_catalog.concat(c.oid::pg_catalog.regclass, ' is not a plain table (relkind ', c.relkind, ')') AS what
                 FROM pg_catalog.pg_class c
                 WHERE c.oid OPERATOR(pg_catalog.=) ANY ({current}) AND c.relkind OPERATOR(pg_catalog.<>) 'r'
                 UNION ALL
                 SELECT pg_catalog.concat(t.tgrelid::pg_catalog.regclass, ' has the trigger ', t.tgname)
                 FROM pg_catalog.pg_trigger t
                 WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY ({current}) AND NOT t.tgisinternal
                 UNION ALL
                 SELECT pg_catalog.concat(r.ev_class::pg_catalog.regclass, ' has the rule ', r.rulename)
                 FROM pg_catalog.pg_rewrite r
                 WHERE r.ev_class OPERATOR(pg_catalog.=) ANY ({current})
                 UNION ALL
                 SELECT pg_catalog.concat(i.inhparent::pg_catalog.regclass, ' has the child table ', i.inhrelid::pg_catalog.regclass)
                 FROM pg_catalog.pg_inherits i
                 WHERE i.inhparent OPERATOR(pg_catalog.=) ANY ({current})
                 UNION ALL
                 SELECT pg_catalog.concat(c.oid::pg_catalog.regclass, ' has row-level security')
                 FROM pg_catalog.pg_class c
                 WHERE c.oid OPERATOR(pg_catalog.=) ANY ({current}) AND c.relrowsecurity
                 {replaced}
             ) AS found_objects;
             IF found IS NOT NULL THEN
                 RAISE EXCEPTION 'wasmig: %', found USING ERRCODE = 'WMG03';
             END IF;"
    );
    let names = format!(
        "ARRAY[{}]::pg_catalog.name[]",
        super::PRESENT
            .iter()
            .map(|t| lit(t))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match known {
        Some(known) => format!(
            "DO $$ DECLARE found pg_catalog.text; BEGIN
             IF (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
                 WHERE c.oid OPERATOR(pg_catalog.=) ANY ({oids})
                   AND c.relnamespace OPERATOR(pg_catalog.=) {namespace}::pg_catalog.oid
                   AND c.relname OPERATOR(pg_catalog.=) ANY ({names})
                   AND c.relkind OPERATOR(pg_catalog.=) 'r' AND NOT c.relhastriggers
                   AND NOT c.relhasrules AND NOT c.relrowsecurity AND NOT c.relhassubclass)
                OPERATOR(pg_catalog.<>) {count}::pg_catalog.int8 THEN
             {full}
             END IF;
         END $$;\n",
            oids = oid_array(&known.oids),
            namespace = known.namespace,
            count = known.oids.len(),
        ),
        None => format!("DO $$ DECLARE found pg_catalog.text; BEGIN\n{full}\nEND $$;\n"),
    }
}

/// wasmig's tables as a run found them once they existed: their oids (in the order of
/// `PRESENT`) and their schema's.
#[derive(Debug, Clone)]
pub(super) struct KnownTables {
    pub(super) oids: Vec<u32>,
    pub(super) namespace: u32,
}

/// An `oid[]` literal.
fn oid_array(oids: &[u32]) -> String {
    format!(
        "'{{{}}}'::pg_catalog.oid[]",
        oids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )
}

//! wasmig's tables on the PostgreSQL side: the backend's part of the bookkeeping, which
//! the [`VersionStore`] writes once for both backends.
//!
//! Owns: the [`Driver`] impl the store runs its statements through (bound parameters,
//! unnamed prepared statements, so nothing lands in the connection's statement cache), the
//! storage tuning of the artifact table (lz4), the tamper check a step runs before it
//! writes, and the string literals of the few statements wasmig builds from its own text.
//!
//! Not here: the statements on wasmig's tables and their layout (`store`), running the
//! guard (the `Session` impl in `session`).
//!
//! [`VersionStore`]: crate::VersionStore

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments as _, AssertSqlSafe, PgConnection, Row};

use super::session::PgSession;
use crate::pg_script;
use crate::store::{Cell, Driver, Kind, Param, Reader, Statement};

/// Storage tuning of the artifact table, run once the tables exist: its components are
/// compressed with lz4 where the server has it (PostgreSQL 14+), which writes a 27 KB
/// component about twenty times faster than the default pglz, at a similar size. Once per
/// table, by its owner only (ALTER TABLE needs ownership, and a role that merely may write
/// the tables must keep working), waiting at most a second for the table's lock (it
/// conflicts with readers such as pg_dump): otherwise the next run tries again. Not part
/// of the layout (`store::schema`): it changes how rows are stored, not what they are.
/// (Nested IFs and EXECUTE: older servers lack both the column and the syntax.)
pub(super) fn compress_artifacts(table: &str) -> String {
    format!(
        "DO $$
         BEGIN
             IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 140000 THEN
                 IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                            JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
                            WHERE a.attrelid OPERATOR(pg_catalog.=) '{table}'::pg_catalog.regclass
                              AND a.attname OPERATOR(pg_catalog.=) 'component' AND a.attcompression OPERATOR(pg_catalog.=) ''
                              AND pg_catalog.pg_has_role(c.relowner, 'USAGE')) THEN
                     PERFORM pg_catalog.set_config('lock_timeout', '1s', true);
                     EXECUTE 'ALTER TABLE {table} ALTER COLUMN component SET COMPRESSION lz4';
                 END IF;
             END IF;
         EXCEPTION WHEN feature_not_supported OR insufficient_privilege OR lock_not_available THEN
             NULL; -- built without lz4, not ours after all, or busy: pglz for now
         END $$;\n"
    )
}

/// `statement`'s parameters, bound.
fn arguments(statement: &Statement) -> Result<PgArguments, sqlx::Error> {
    let mut args = PgArguments::default();
    for param in &statement.params {
        match param {
            Param::Text(t) => args.add(t.as_deref()),
            Param::Int(i) => args.add(*i),
            Param::Bytes(b) => args.add(b.as_deref()),
            Param::Time(t) => args.add(*t),
            Param::Texts(t) => args.add(t.as_slice()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// A row of `statement`'s result, decoded as its columns say.
fn cells(row: &PgRow, columns: &[Kind]) -> Result<Vec<Cell>, sqlx::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Ok(match kind {
                Kind::Text => Cell::Text(row.try_get(i)?),
                Kind::Int => Cell::Int(row.try_get(i)?),
                Kind::Bytes => Cell::Bytes(row.try_get(i)?),
                Kind::Time => Cell::Time(row.try_get(i)?),
            })
        })
        .collect()
}

#[async_trait]
impl Driver for PgConnection {
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error> {
        let done = sqlx::query_with(AssertSqlSafe(statement.sql.clone()), arguments(statement)?)
            .persistent(false)
            .execute(&mut *self)
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        let rows: Vec<PgRow> =
            sqlx::query_with(AssertSqlSafe(statement.sql.clone()), arguments(statement)?)
                .persistent(false)
                .fetch(&mut *self)
                .try_collect()
                .await?;
        rows.iter().map(|r| cells(r, statement.columns)).collect()
    }

    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut *self)
            .await
            .map(drop)
    }
}

impl Reader for tokio::sync::MappedMutexGuard<'_, PgConnection> {
    fn driver(&mut self) -> &mut dyn Driver {
        &mut **self
    }
}

impl PgSession {
    /// A version table's name, qualified by the schema read at `begin`.
    pub(super) fn version_table(&self, table: &str) -> String {
        self.store.words().table(table)
    }
}

/// `text` as a string literal for wasmig's own simple-query statements (only text wasmig
/// wrote: its table names, its `application_name`), which take one round trip whatever the
/// statement cache holds (see `pg_script` for why `E'…'` is safe).
pub(super) fn lit(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    pg_script::quote(&mut out, text);
    out
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

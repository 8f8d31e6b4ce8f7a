//! wasmig's tables on the PostgreSQL side: the backend's part of the bookkeeping, which
//! the [`VersionStore`] writes once for both backends.
//!
//! Owns: the [`Driver`] impl the store runs its statements through (values written into the
//! text in hexadecimal, one round trip by the simple query protocol, see [`inline`]; bound
//! parameters of an unnamed prepared statement where rows hold times or bytes, whose text
//! form depends on the session's settings; nothing lands in the connection's statement
//! cache), the
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

use super::session::{PgSession, TAMPERED_STATE, WROTE_STATE};
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
pub(super) fn arguments(statement: &Statement) -> Result<PgArguments, sqlx::Error> {
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
pub(super) fn cells(row: &PgRow, columns: &[Kind]) -> Result<Vec<Cell>, sqlx::Error> {
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

/// Bytes longer than this are bound rather than spelled in the statement's text
/// ([`inline_binding_large`]): a component of 18 MB would be a statement of 37 MB that the
/// host builds, grows and copies, and the server parses, where bound it is sent as it is.
const INLINE_BYTES: usize = 64 * 1024;

/// `statement` with its parameters written into its text, for the simple query protocol:
/// one round trip where a bound statement takes two (parse, then execute), and nothing
/// prepared on the connection.
///
/// No value is written as quoted text: texts and bytes are spelled in hexadecimal and
/// decoded by the server (`convert_from(decode('…', 'hex'), 'UTF8')`), times as ISO 8601
/// digits, integers as digits. The text sent is then ASCII whatever the values hold, so no
/// setting a migration may have left on the session (`standard_conforming_strings`,
/// `backslash_quote`, a `client_encoding` whose multibyte characters swallow a quote's
/// escape) can make a value end early and run as SQL. A text holding NUL fails as it would
/// bound (PostgreSQL's text cannot hold it).
///
/// Bytes longer than [`INLINE_BYTES`] are the exception: each is left as a parameter
/// (`$1::pg_catalog.bytea`, `$2`… in the order they first appear), returned beside the
/// text, to bind in binary (no session setting changes how the server reads bytes).
///
/// # Errors
/// When the text names a parameter the statement does not have.
pub(super) fn inline_binding_large(
    statement: &Statement,
) -> Result<(String, Vec<&[u8]>), sqlx::Error> {
    inline_with(statement, INLINE_BYTES)
}

/// Runs `sql` and `bound` as [`inline_binding_large`] wrote them, and decodes the rows as
/// `columns` say: by the simple query protocol when nothing is bound, else as one unnamed
/// statement of the extended protocol (nothing a migration can name, prepare or replace).
pub(super) async fn fetch_inlined(
    conn: &mut PgConnection,
    sql: String,
    bound: &[&[u8]],
    columns: &[Kind],
) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
    if bound.is_empty() {
        return fetch_text(conn, sql, columns).await;
    }
    let rows: Vec<PgRow> = sqlx::query_with(AssertSqlSafe(sql), bound_arguments(bound)?)
        .persistent(false)
        .fetch(&mut *conn)
        .try_collect()
        .await?;
    rows.iter().map(|r| cells(r, columns)).collect()
}

/// The arguments of [`fetch_inlined`]: bytes only.
fn bound_arguments(bound: &[&[u8]]) -> Result<PgArguments, sqlx::Error> {
    let mut args = PgArguments::default();
    for bytes in bound {
        args.add(*bytes).map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// [`inline`] with bytes longer than `limit` bound (see [`inline_binding_large`]).
fn inline_with(statement: &Statement, limit: usize) -> Result<(String, Vec<&[u8]>), sqlx::Error> {
    let mut bound: Vec<&[u8]> = Vec::new();
    // Which parameter each bound value is, so a parameter used twice is bound once.
    let mut bound_from: Vec<usize> = Vec::new();
    let out = crate::store::fill_placeholders(statement, |out, index, param| {
        match param {
            Param::Bytes(Some(b)) if b.len() > limit => {
                let k = match bound_from.iter().position(|&i| i == index) {
                    Some(k) => k,
                    None => {
                        bound.push(b);
                        bound_from.push(index);
                        bound.len() - 1
                    }
                };
                out.push_str(&format!("(${}::pg_catalog.bytea)", k + 1));
            }
            _ => {
                out.push('(');
                literal(out, param);
                out.push(')');
            }
        }
        Ok(())
    })?;
    Ok((out, bound))
}

/// Appends `param` as an expression of its type whose text is ASCII (see [`inline`]).
fn literal(out: &mut String, param: &Param) {
    use std::fmt::Write as _;
    let text = |out: &mut String, t: &str| {
        let _ = write!(
            out,
            "pg_catalog.convert_from(pg_catalog.decode('{}', 'hex'), 'UTF8')",
            hex::encode(t)
        );
    };
    match param {
        Param::Text(None) => out.push_str("NULL::pg_catalog.text"),
        Param::Text(Some(t)) => text(out, t),
        Param::Int(i) => {
            // Quoted: `-9223372036854775808::int8` would cast before negating, and overflow.
            let _ = write!(out, "'{i}'::pg_catalog.int8");
        }
        Param::Bytes(None) => out.push_str("NULL::pg_catalog.bytea"),
        Param::Bytes(Some(b)) => {
            let _ = write!(out, "pg_catalog.decode('{}', 'hex')", hex::encode(b));
        }
        Param::Time(t) => {
            let _ = write!(
                out,
                "'{}'::pg_catalog.timestamptz",
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
        }
        Param::Texts(list) => {
            out.push_str("ARRAY[");
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                text(out, t);
            }
            out.push_str("]::pg_catalog.text[]");
        }
    }
}

/// Whether `statement`'s rows can be read as the simple query protocol sends them (text):
/// integers and texts read the same whatever the session's settings, where a time's text
/// depends on `DateStyle` and bytes' on `bytea_output`, which a migration may have changed.
fn readable_as_text(statement: &Statement) -> bool {
    statement
        .columns
        .iter()
        .all(|k| matches!(k, Kind::Int | Kind::Text))
}

/// Runs `sql`, wasmig's own text (as [`inline`] writes a statement, say) by the simple
/// query protocol, and decodes its rows as `columns` (integers and texts) say.
pub(super) async fn fetch_text(
    conn: &mut PgConnection,
    sql: String,
    columns: &[Kind],
) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
    let rows: Vec<PgRow> = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(conn).await?;
    rows.iter().map(|r| cells(r, columns)).collect()
}

#[async_trait]
impl Driver for PgConnection {
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error> {
        let (sql, bound) = inline_binding_large(statement)?;
        let done = if bound.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *self)
                .await?
        } else {
            sqlx::query_with(AssertSqlSafe(sql), bound_arguments(&bound)?)
                .persistent(false)
                .execute(&mut *self)
                .await?
        };
        Ok(done.rows_affected())
    }

    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        if readable_as_text(statement) {
            let (sql, bound) = inline_binding_large(statement)?;
            return fetch_inlined(self, sql, &bound, statement.columns).await;
        }
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

/// The control connection as wasmig's reads use it, outside any transaction: a statement
/// that needs the extended protocol (bound bytes, or rows of times and bytes read in binary)
/// goes inside a transaction of its own. Its parse and its execution are two exchanges,
/// and through a pooler in transaction mode only an open transaction keeps the second on
/// the server session that parsed it. Everything else is one simple query, as it is.
pub(super) struct Control<'a>(pub(super) tokio::sync::MappedMutexGuard<'a, PgConnection>);

impl Control<'_> {
    /// Runs `work` between `BEGIN` and `COMMIT` (`ROLLBACK` when it fails).
    async fn wrapped<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let conn: &mut PgConnection = &mut self.0;
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        match work(&mut *conn).await {
            Ok(done) => {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                Ok(done)
            }
            Err(e) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Driver for Control<'_> {
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error> {
        if inline_binding_large(statement)?.1.is_empty() {
            return Driver::execute(&mut *self.0, statement).await;
        }
        self.wrapped(async |conn: &mut PgConnection| Driver::execute(conn, statement).await)
            .await
    }

    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        // Times too: the control connection's `DateStyle` and `TimeZone` are pinned at its
        // start-up (`PgDatabase::connect`), and no migration runs on it to change them.
        let text = statement
            .columns
            .iter()
            .all(|k| matches!(k, Kind::Int | Kind::Text | Kind::Time));
        if text {
            let (sql, bound) = inline_binding_large(statement)?;
            if bound.is_empty() {
                return fetch_text(&mut self.0, sql, statement.columns).await;
            }
        }
        self.wrapped(async |conn: &mut PgConnection| Driver::fetch(conn, statement).await)
            .await
    }

    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        Driver::script(&mut *self.0, sql).await
    }
}

impl Reader for Control<'_> {
    fn driver(&mut self) -> &mut dyn Driver {
        self
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
/// includes: a forged head there would make a revision never run); anything that runs an
/// expression as wasmig writes (a check constraint other than wasmig's own, a default or
/// generated column, a column of a domain or other type not built in, an index on an
/// expression or with a predicate, a foreign key whose actions reach another table's
/// triggers, a partition key); or, when `oids` (the tables' oids when the run created or
/// found them) are known, a table replaced since. Any of these could make wasmig's writes
/// land elsewhere, vanish or change, its reads lie, or run the migration's code in the
/// statement that records the step, after its checks (a function that forges a head, say).
/// Every name is qualified by `pg_catalog` (`concat` rather than `||`), so the migration's
/// `search_path` cannot answer instead.
///
/// With `oids`, a cheap look at the catalog rows of the tables comes first (measured: 0.2
/// ms against 0.8 ms for the full check per step); only when it sees a flag (which may be
/// stale: `relhastriggers` stays set after a trigger is dropped, until a vacuum) or a
/// change does the full check run and name what it finds.
pub(super) fn tamper_check(
    tables: &[String],
    known: Option<&KnownTables>,
    watched_writes_at_begin: Option<i64>,
) -> String {
    let written = match watched_writes_at_begin {
        Some(begun) => format!(
            "found := ({});
             IF found IS NOT NULL THEN
                 RAISE EXCEPTION 'wasmig: %', found USING ERRCODE = '{WROTE_STATE}';
             END IF;",
            written_finding(tables, begun)
        ),
        None => String::new(),
    };
    let full = format!(
        "found := ({});
             IF found IS NOT NULL THEN
                 RAISE EXCEPTION 'wasmig: %', found USING ERRCODE = '{TAMPERED_STATE}';
             END IF;
             {written}",
        tamper_findings(tables, known)
    );
    match known {
        Some(known) => format!(
            "DO $$ DECLARE found pg_catalog.text; BEGIN
             IF NOT ({plain}) THEN
             {full}
             END IF;
         END $$;\n",
            plain = tables_look_plain(
                known,
                watched_writes_at_begin.map(|n| n.to_string()).as_deref()
            ),
        ),
        None => format!("DO $$ DECLARE found pg_catalog.text; BEGIN\n{full}\nEND $$;\n"),
    }
}

/// The tamper check's full look at the tables' shape as one query, with no PL/pgSQL to
/// compile: one row, NULL when wasmig's tables (`tables`, with the oids of `known` when
/// the run knows them) are as [`tamper_check`] requires, else what it found,
/// `; `-separated.
pub(super) fn tamper_findings(tables: &[String], known: Option<&KnownTables>) -> String {
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
                 WHERE COALESCE(t.now OPERATOR(pg_catalog.<>) t.was, true)
                 UNION ALL
                 SELECT pg_catalog.concat(t.name, ' was truncated or rewritten during the run (TRUNCATE, ALTER TABLE … TYPE, VACUUM FULL: the server''s counts of its writes start again)')
                 FROM ROWS FROM (pg_catalog.unnest(ARRAY[{names}]::pg_catalog.text[]),
                                 pg_catalog.unnest({known}), pg_catalog.unnest({filenodes}))
                      AS t(name, was, filenode)
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.was
                 WHERE c.relfilenode OPERATOR(pg_catalog.<>) t.filenode",
            names = tables.iter().map(|t| lit(t)).collect::<Vec<_>>().join(", "),
            known = oid_array(oids),
            filenodes = oid_array(known.map_or(&[][..], |k| k.filenodes.as_slice())),
        ),
        None => String::new(),
    };
    let history = tables
        .iter()
        .zip(super::PRESENT)
        .find(|(_, name)| *name == crate::HISTORY_TABLE)
        .map(|(t, _)| format!("pg_catalog.to_regclass({})", lit(t)))
        .unwrap_or_else(|| "NULL::pg_catalog.regclass".to_owned());
    let runs_code = code_on_write(
        &current,
        &history,
        &crate::store::postgres_direction_check(),
    );
    let unwritten = shape_findings(
        &tables
            .iter()
            .zip(super::PRESENT)
            .map(|(t, name)| {
                (
                    format!("pg_catalog.to_regclass({})::pg_catalog.oid", lit(t)),
                    name,
                )
            })
            .collect::<Vec<_>>(),
    );
    format!(
        "SELECT pg_catalog.string_agg(what, '; ') FROM (
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
                 UNION ALL
                 SELECT pg_catalog.concat(c.oid::pg_catalog.regclass, ' is unlogged (a crash would empty it)')
                 FROM pg_catalog.pg_class c
                 WHERE c.oid OPERATOR(pg_catalog.=) ANY ({current}) AND c.relpersistence OPERATOR(pg_catalog.<>) 'p'
                 UNION ALL
                 {runs_code}
                 UNION ALL
                 {unwritten}
                 {replaced}
             ) AS found_objects"
    )
}

/// The tamper check's look at the writes of `WATCHED_WRITES`, as one query: one row, NULL
/// when this transaction's count of them is still `begun`, the count as it began (the
/// server's count also holds writes of earlier transactions of the session it has not yet
/// flushed to its statistics), else what was written: the migration's own SQL.
fn written_finding(tables: &[String], begun: i64) -> String {
    format!(
        "SELECT pg_catalog.concat(w.n OPERATOR(pg_catalog.-) {begun}, ' row(s) of wasmig''s tables that only wasmig writes, and only after its check (', {watched}, ')')
         FROM (SELECT {writes}) AS w(n)
         WHERE w.n OPERATOR(pg_catalog.<>) {begun}",
        watched = lit(&watched_names()),
        writes = watched_writes(|table| {
            tables
                .iter()
                .zip(super::PRESENT)
                .find(|(_, name)| *name == table)
                .map(|(t, _)| format!("pg_catalog.to_regclass({})::pg_catalog.oid", lit(t)))
        }),
    )
}

/// A column wasmig writes: its name, its type as PostgreSQL prints it, and whether wasmig
/// writes NULL into it.
type WrittenColumn = (&'static str, &'static str, bool);

/// The columns wasmig writes, table by table, as PostgreSQL prints their types, and
/// whether wasmig writes NULL into them. Anything else about a column would fail every
/// later write of the table once the migration that made it committed, wasmig's records
/// included: a column added that refuses NULL (a `NOT NULL` whose default was dropped once
/// the column was filled) or draws from a sequence of its own (an identity); `NOT NULL` on
/// a column wasmig writes NULL into; another type (`varchar(3)`).
const WRITTEN_COLUMNS: [(&str, &[WrittenColumn]); 7] = {
    const TEXT: &str = "text";
    const INT: &str = "bigint";
    const TIME: &str = "timestamp with time zone";
    [
        (crate::VERSION_TABLE, &[("revision", TEXT, false)]),
        (
            crate::HISTORY_TABLE,
            &[
                ("id", INT, false),
                ("revision", TEXT, false),
                ("direction", TEXT, false),
                ("checksum", TEXT, false),
                ("started_at", TIME, false),
                ("finished_at", TIME, false),
                ("duration_ms", INT, false),
                ("wasmig_version", TEXT, false),
                ("error", TEXT, true),
                ("sqlstate", TEXT, true),
            ],
        ),
        (
            crate::FAILED_TABLE,
            &[
                ("revision", TEXT, false),
                ("direction", TEXT, false),
                ("remove_heads", TEXT, false),
                ("add_heads", TEXT, false),
                ("statement", INT, false),
                ("error", TEXT, false),
                ("sqlstate", TEXT, true),
                ("failed_at", TIME, false),
            ],
        ),
        (
            crate::ARTIFACT_TABLE,
            &[
                ("revision", TEXT, false),
                ("kind", TEXT, false),
                ("checksum", TEXT, false),
                ("manifest", TEXT, false),
                ("up_sql", TEXT, true),
                ("down_sql", TEXT, true),
                ("component", "bytea", true),
                ("source_checksum", TEXT, true),
                ("stored_at", TIME, false),
            ],
        ),
        (
            crate::CHECKPOINT_TABLE,
            &[
                ("revision", TEXT, false),
                ("direction", TEXT, false),
                ("remove_heads", TEXT, false),
                ("add_heads", TEXT, false),
                ("checkpoint", TEXT, false),
                ("batches", INT, false),
                ("checksum", TEXT, false),
                ("started_at", TIME, false),
                ("updated_at", TIME, false),
            ],
        ),
        (
            crate::PARTITION_TABLE,
            &[
                ("revision", TEXT, false),
                ("part", INT, false),
                ("parts", INT, false),
                ("first_key", INT, false),
                ("last_key", INT, false),
                ("checkpoint", TEXT, false),
                ("batches", INT, false),
                ("done", INT, false),
                ("owner", TEXT, true),
                ("token", INT, false),
                ("lease_until", TIME, true),
                ("updated_at", TIME, false),
            ],
        ),
        (
            crate::SCHEMA_TABLE,
            &[
                ("version", INT, false),
                ("wasmig_version", TEXT, false),
                ("migrated_at", TIME, false),
            ],
        ),
    ]
};

/// The columns of wasmig's tables whose values can be larger than a btree index entry
/// takes (2,704 bytes): an index on one (not wasmig's) would fail the write of a long
/// script, component, error or checkpoint. A plain index on the others (an operator's, on
/// `revision`, say) is harmless, and allowed.
const LONG_COLUMNS: [(&str, &str); 12] = [
    (crate::HISTORY_TABLE, "error"),
    (crate::FAILED_TABLE, "error"),
    (crate::ARTIFACT_TABLE, "manifest"),
    (crate::ARTIFACT_TABLE, "up_sql"),
    (crate::ARTIFACT_TABLE, "down_sql"),
    (crate::ARTIFACT_TABLE, "component"),
    (crate::CHECKPOINT_TABLE, "checkpoint"),
    (crate::CHECKPOINT_TABLE, "remove_heads"),
    (crate::CHECKPOINT_TABLE, "add_heads"),
    (crate::PARTITION_TABLE, "checkpoint"),
    (crate::FAILED_TABLE, "remove_heads"),
    (crate::FAILED_TABLE, "add_heads"),
];

/// A query naming what about the shape of wasmig's tables would fail its later writes
/// ([`WRITTEN_COLUMNS`]), one row each: a column it does not write that refuses NULL or
/// draws from a sequence; a column it writes of another type, or refusing the NULL wasmig
/// writes into it; an index but the table's primary key that is unique on other columns
/// (it refuses rows wasmig writes; one on the key's columns and more, a `REINDEX
/// CONCURRENTLY`'s copy of it say, refuses nothing the key accepts), or a btree holding one of [`LONG_COLUMNS`] (hash, BRIN and GIN indexes do
/// not keep the value). `relations` pairs each table
/// of [`super::PRESENT`] with an `oid` expression for it. Also a column wasmig writes that is
/// gone (dropped or renamed), which would fail every later write with the server's "column
/// does not exist", read as the database's failure: looked for in tables that exist (the
/// history table's `error` and `sqlstate` only once the layout is versioned: tables made
/// before `wasmig_schema` lack them until `schema::adopt_unversioned` adds them; a layout
/// migration that adds a column to a table must be exempted the same way).
fn shape_findings(relations: &[(String, &str)]) -> String {
    let mut values = Vec::new();
    let mut long = Vec::new();
    for (oid, name) in relations {
        let Some((_, columns)) = WRITTEN_COLUMNS.iter().find(|(table, _)| table == name) else {
            continue;
        };
        for (column, kind, nullable) in *columns {
            values.push(format!(
                "({oid}, {}::pg_catalog.name, {}, {nullable})",
                lit(column),
                lit(kind)
            ));
        }
        for (table, column) in LONG_COLUMNS {
            if table == *name {
                long.push(format!("({oid}, {}::pg_catalog.name)", lit(column)));
            }
        }
    }
    if values.is_empty() {
        return "SELECT NULL::pg_catalog.text AS what WHERE false".to_owned();
    }
    let oids = relations
        .iter()
        .map(|(oid, _)| oid.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let relation = |table: &str| {
        relations
            .iter()
            .find(|(_, name)| *name == table)
            .map_or("NULL::pg_catalog.oid", |(oid, _)| oid.as_str())
    };
    format!(
        "SELECT CASE WHEN a.attrelid IS NULL
                  THEN pg_catalog.concat(w.rel::pg_catalog.regclass, ' has no column ', w.name,
                       ', which wasmig writes (dropped or renamed: wasmig''s later writes of the table would fail)')
                  ELSE pg_catalog.concat(a.attrelid::pg_catalog.regclass, '.', a.attname,
             CASE WHEN w.rel IS NULL
                  THEN pg_catalog.concat(' is a column wasmig does not write that ',
                       CASE WHEN a.attidentity OPERATOR(pg_catalog.<>) '' THEN 'draws from a sequence' ELSE 'refuses NULL' END)
                  WHEN pg_catalog.format_type(a.atttypid, a.atttypmod) OPERATOR(pg_catalog.<>) w.kind
                  THEN pg_catalog.concat(' is of the type ', pg_catalog.format_type(a.atttypid, a.atttypmod), ' where wasmig made it ', w.kind)
                  ELSE ' refuses NULL, which wasmig writes into it' END,
             ' (wasmig''s later writes of the table could fail)') END AS what
         FROM (SELECT a.attrelid, a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.attidentity
               FROM pg_catalog.pg_attribute a
               WHERE a.attrelid OPERATOR(pg_catalog.=) ANY (ARRAY[{oids}]::pg_catalog.oid[])
                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) AS a
         FULL JOIN (VALUES {values}) AS w(rel, name, kind, nullable)
           ON a.attrelid OPERATOR(pg_catalog.=) w.rel AND a.attname OPERATOR(pg_catalog.=) w.name
         WHERE CASE WHEN a.attrelid IS NULL THEN w.rel IS NOT NULL AND ({versioned} IS NOT NULL
                         OR w.rel OPERATOR(pg_catalog.<>) {history} OR w.name OPERATOR(pg_catalog.<>) ALL (ARRAY['error', 'sqlstate']::pg_catalog.name[]))
                    WHEN w.rel IS NULL THEN a.attnotnull OR a.attidentity OPERATOR(pg_catalog.<>) ''
                    ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) OPERATOR(pg_catalog.<>) w.kind
                         OR (a.attnotnull AND w.nullable) END
         UNION ALL
         SELECT pg_catalog.concat(i.indrelid::pg_catalog.regclass, ' has the index ', i.indexrelid::pg_catalog.regclass,
             CASE WHEN i.indisunique THEN ', unique on other columns than the primary key, which refuses rows wasmig writes'
                  ELSE ', a btree on a column whose values can be too large for its entries' END,
             ' (wasmig''s later writes of the table could fail)')
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class x ON x.oid OPERATOR(pg_catalog.=) i.indexrelid
         JOIN pg_catalog.pg_am m ON m.oid OPERATOR(pg_catalog.=) x.relam
         WHERE i.indrelid OPERATOR(pg_catalog.=) ANY (ARRAY[{oids}]::pg_catalog.oid[]) AND NOT i.indisprimary
           AND ((i.indisunique
                 AND NOT EXISTS (SELECT FROM pg_catalog.pg_index p
                                 WHERE p.indrelid OPERATOR(pg_catalog.=) i.indrelid AND p.indisprimary
                                   AND (p.indkey::pg_catalog.int2[]) OPERATOR(pg_catalog.<@)
                                       (i.indkey::pg_catalog.int2[])[0:i.indnkeyatts OPERATOR(pg_catalog.-) 1]))
                OR (m.amname OPERATOR(pg_catalog.=) 'btree' AND EXISTS (
                SELECT FROM pg_catalog.pg_attribute a
                JOIN (VALUES {long}) AS l(rel, name)
                  ON a.attrelid OPERATOR(pg_catalog.=) l.rel AND a.attname OPERATOR(pg_catalog.=) l.name
                WHERE a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                  AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::pg_catalog.int2[]))))",
        values = values.join(", "),
        long = long.join(", "),
        versioned = relation(crate::SCHEMA_TABLE),
        history = relation(crate::HISTORY_TABLE),
    )
}

/// The first object id PostgreSQL gives to an object made after `initdb`
/// (`FirstNormalObjectId`): a type with an oid below it is built in, and cannot run a
/// migration's code as a value is stored (a domain, with its checks, can).
const FIRST_NORMAL_OID: u32 = 16384;

/// The part of [`tamper_findings`] that looks for what would run an expression, or reach
/// another table's triggers, as wasmig writes the tables of `current` (an `oid[]`
/// expression): rows of `what`, `UNION ALL`ed. `own` (a `regclass` expression) is the
/// one table with a check constraint of wasmig's, `own_check` that check as PostgreSQL
/// prints it (`pg_get_constraintdef`), a regular expression matching the whole text.
///
/// wasmig's check is its own when it prints as wasmig made it and depends on nothing but
/// its table: a name the printing leaves unqualified could be the migration's own operator
/// or type (one earlier in its `search_path` than `pg_catalog`), but that one would be a
/// recorded dependency, where built-in objects are not. Also found: an index whose
/// operator class or collation is not built in (a comparison function of the
/// migration's runs as the index is written), and a statistics object on an expression
/// (run by every `ANALYZE`, autovacuum's included, as the table's owner).
pub(super) fn code_on_write(current: &str, own: &str, own_check: &str) -> String {
    format!(
        "SELECT pg_catalog.concat(o.conrelid::pg_catalog.regclass, ' has the constraint ', o.conname, ' (', pg_catalog.pg_get_constraintdef(o.oid), ')')
                 FROM pg_catalog.pg_constraint o
                 WHERE o.conrelid OPERATOR(pg_catalog.=) ANY ({current})
                   AND o.contype OPERATOR(pg_catalog.<>) ALL ('{{p,n}}'::pg_catalog.\"char\"[])
                   AND NOT (o.contype OPERATOR(pg_catalog.=) 'c' AND o.conrelid OPERATOR(pg_catalog.=) {own}
                            AND pg_catalog.pg_get_constraintdef(o.oid) OPERATOR(pg_catalog.~) {canonical}
                            AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                                WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass
                                  AND d.objid OPERATOR(pg_catalog.=) o.oid
                                  AND (d.refclassid OPERATOR(pg_catalog.<>) 'pg_catalog.pg_class'::pg_catalog.regclass
                                       OR d.refobjid OPERATOR(pg_catalog.<>) o.conrelid)))
                 UNION ALL
                 SELECT pg_catalog.concat(o.confrelid::pg_catalog.regclass, ' is referenced by the foreign key ', o.conname, ' of ', o.conrelid::pg_catalog.regclass)
                 FROM pg_catalog.pg_constraint o
                 WHERE o.confrelid OPERATOR(pg_catalog.=) ANY ({current})
                   AND NOT COALESCE(o.conrelid OPERATOR(pg_catalog.=) ANY ({current}), false)
                 UNION ALL
                 SELECT pg_catalog.concat(d.adrelid::pg_catalog.regclass, '.', a.attname,
                     CASE WHEN a.attgenerated OPERATOR(pg_catalog.=) '' THEN ' has a default (' ELSE ' is generated (' END,
                     pg_catalog.pg_get_expr(d.adbin, d.adrelid), ')')
                 FROM pg_catalog.pg_attrdef d
                 JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
                 WHERE d.adrelid OPERATOR(pg_catalog.=) ANY ({current})
                 UNION ALL
                 SELECT pg_catalog.concat(a.attrelid::pg_catalog.regclass, '.', a.attname, ' is of the type ',
                     pg_catalog.format_type(a.atttypid, a.atttypmod), ', which is not built in')
                 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) ANY ({current}) AND a.attnum OPERATOR(pg_catalog.>) 0
                   AND NOT a.attisdropped AND a.atttypid OPERATOR(pg_catalog.>=) '{FIRST_NORMAL_OID}'::pg_catalog.oid
                 UNION ALL
                 SELECT pg_catalog.concat(i.indrelid::pg_catalog.regclass, ' has the index ', i.indexrelid::pg_catalog.regclass, ' on an expression or with a predicate')
                 FROM pg_catalog.pg_index i
                 WHERE i.indrelid OPERATOR(pg_catalog.=) ANY ({current})
                   AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
                 UNION ALL
                 SELECT pg_catalog.concat(i.indrelid::pg_catalog.regclass, ' has the index ', i.indexrelid::pg_catalog.regclass, ' with an operator class or collation not built in')
                 FROM pg_catalog.pg_index i
                 WHERE i.indrelid OPERATOR(pg_catalog.=) ANY ({current})
                   AND EXISTS (SELECT FROM pg_catalog.unnest(i.indclass::pg_catalog.oid[] OPERATOR(pg_catalog.||) i.indcollation::pg_catalog.oid[]) AS k(oid)
                               WHERE k.oid OPERATOR(pg_catalog.>=) '{FIRST_NORMAL_OID}'::pg_catalog.oid)
                 UNION ALL
                 SELECT pg_catalog.concat(x.stxrelid::pg_catalog.regclass, ' has the statistics object ', x.stxname, ' on an expression')
                 FROM pg_catalog.pg_statistic_ext x
                 WHERE x.stxrelid OPERATOR(pg_catalog.=) ANY ({current})
                   AND (pg_catalog.to_jsonb(x) OPERATOR(pg_catalog.->>) 'stxexprs') IS NOT NULL
                 UNION ALL
                 SELECT pg_catalog.concat(c.oid::pg_catalog.regclass, ' is a partition of ', i.inhparent::pg_catalog.regclass)
                 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) c.oid
                 WHERE c.oid OPERATOR(pg_catalog.=) ANY ({current}) AND c.relispartition",
        canonical = lit(own_check),
    )
}

/// The tamper check's cheap look, an SQL boolean (never NULL): wasmig's tables are still
/// the relations of `known` (their oids, names and schema), plain tables, none flagged with
/// triggers, rules, row-level security or children, none a partition or unlogged; the
/// objects that depend on them (constraints, indexes, defaults, triggers, rules, policies,
/// another table's foreign key to them: whatever the server records as depending on a
/// table) are those of `known`, and they depend on nothing but their schema (a domain, a
/// collation, a parent); and (given the server's count of the writes `WATCHED_WRITES`
/// watches, as the transaction began: an SQL `int8` expression, a number or a
/// parameter) this transaction has not written those yet. A flag may be stale
/// (`relhastriggers` stays set after a trigger is dropped, until a vacuum), and a new
/// dependent harmless (a plain index): false sends a caller to the full check.
///
/// Two scans of `pg_depend`'s indexes, where looking at the constraints, columns and
/// indexes one catalog at a time took twice as long (0.07 against 0.035 ms a step, measured
/// on a database of 285 migrations).
pub(super) fn tables_look_plain(
    known: &KnownTables,
    watched_writes_at_begin: Option<&str>,
) -> String {
    // One look-up of pg_class's index per table (0.02 ms for the seven, where the
    // planner's sequential scan for `oid = ANY (…)` took 0.065 ms on a database of 285
    // migrations, EXPLAIN ANALYZE): each the relation of its name in the schema.
    let each = known
        .oids
        .iter()
        .zip(&known.filenodes)
        .zip(super::PRESENT)
        .map(|((oid, filenode), name)| {
            format!(
                "COALESCE((SELECT c.relnamespace OPERATOR(pg_catalog.=) {namespace}::pg_catalog.oid
                     AND c.relname OPERATOR(pg_catalog.=) {name}
                     AND c.relkind OPERATOR(pg_catalog.=) 'r' AND NOT c.relhastriggers
                     AND NOT c.relhasrules AND NOT c.relrowsecurity AND NOT c.relhassubclass
                     AND NOT c.relispartition AND c.relpersistence OPERATOR(pg_catalog.=) 'p'
                     AND c.relfilenode OPERATOR(pg_catalog.=) '{filenode}'::pg_catalog.oid
                   FROM pg_catalog.pg_class c
                   WHERE c.oid OPERATOR(pg_catalog.=) '{oid}'::pg_catalog.oid), false)",
                namespace = known.namespace,
                name = lit(name),
            )
        })
        .collect::<Vec<_>>();
    let each = if each.is_empty() {
        "false".to_owned()
    } else {
        each.join("\n         AND ")
    };
    format!(
        "{each}
         AND NOT EXISTS ({unwritten})
         AND COALESCE(({dependents}) OPERATOR(pg_catalog.=) {known_dependents}, false)
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                           AND d.objid OPERATOR(pg_catalog.=) ANY ({oids})
                           AND NOT (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                                    AND d.refobjid OPERATOR(pg_catalog.=) {namespace}::pg_catalog.oid)){unwritten_writes}",
        oids = oid_array(&known.oids),
        dependents = dependents(&oid_array(&known.oids)),
        known_dependents = oid_array(&known.dependents),
        namespace = known.namespace,
        unwritten = shape_findings(
            &known
                .oids
                .iter()
                .zip(super::PRESENT)
                .map(|(oid, name)| (format!("'{oid}'::pg_catalog.oid"), name))
                .collect::<Vec<_>>()
        ),
        unwritten_writes = match watched_writes_at_begin {
            Some(begun) => format!(
                "\n         AND ({}) OPERATOR(pg_catalog.=) ({begun})::pg_catalog.int8",
                known_watched_writes(known)
            ),
            None => String::new(),
        },
    )
}

/// The server's count of this transaction's writes of `WATCHED_WRITES`, the tables among
/// `known` (their oids written in), as an `int8` expression: a sum of the counting
/// functions' calls (planned in a third of the time of an aggregate over `unnest`), as the
/// select that begins every step and the record's check both hold it.
pub(super) fn known_watched_writes(known: &KnownTables) -> String {
    watched_writes(|table| {
        known
            .oids
            .iter()
            .zip(super::PRESENT)
            .find(|(_, name)| *name == table)
            .map(|(oid, _)| format!("'{oid}'::pg_catalog.oid"))
    })
}

/// The rows this transaction wrote as `WATCHED_WRITES` counts them, as the server counts
/// them (what `pg_stat_xact_user_tables` shows, read from its functions directly;
/// rolled-back savepoints included): an SQL `int8` expression, `oid` giving each table's
/// oid as an expression (a table without one, or whose oid is NULL, counts 0).
fn watched_writes(oid: impl Fn(&str) -> Option<String>) -> String {
    let terms = super::WATCHED_WRITES
        .iter()
        .filter_map(|(table, counters)| oid(table).map(|oid| (oid, counters)))
        .flat_map(|(oid, counters)| {
            counters.iter().map(move |what| {
                format!("COALESCE(pg_catalog.pg_stat_get_xact_tuples_{what}({oid}), 0)")
            })
        })
        .collect::<Vec<_>>();
    if terms.is_empty() {
        return "0::pg_catalog.int8".to_owned();
    }
    format!(
        "({})::pg_catalog.int8",
        terms.join(" OPERATOR(pg_catalog.+) ")
    )
}

/// What `WATCHED_WRITES` watches, for messages.
fn watched_names() -> String {
    super::WATCHED_WRITES
        .iter()
        .map(|(table, counters)| {
            match (
                counters.contains(&"inserted"),
                counters.contains(&"deleted"),
            ) {
                (true, true) => format!("any row of {table}"),
                (true, false) => format!("a row of {table} inserted or updated"),
                _ => format!("an existing row of {table}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The objects that depend on the tables of `oids` (an `oid[]` expression), as the server
/// records them: an `oid[]` query, ascending (an object depending on two of their
/// columns is there twice), NULL when there is none.
pub(super) fn dependents(oids: &str) -> String {
    format!(
        "SELECT pg_catalog.array_agg(d.objid ORDER BY d.objid) FROM pg_catalog.pg_depend d
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) ANY ({oids})"
    )
}

/// wasmig's tables as a run found them once they existed, and the full check found them
/// as wasmig made them: their oids and their storage's (`relfilenode`, which a `TRUNCATE`
/// or a rewrite changes, and with it the server's counts of the transaction's writes), in
/// the order of `PRESENT`; their schema's; and those of the objects that depend on them
/// ([`dependents`]).
#[derive(Debug, Clone)]
pub(super) struct KnownTables {
    pub(super) oids: Vec<u32>,
    pub(super) filenodes: Vec<u32>,
    pub(super) namespace: u32,
    pub(super) dependents: Vec<u32>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value inline (none is large here).
    fn inline(statement: &Statement) -> Result<String, sqlx::Error> {
        inline_with(statement, usize::MAX).map(|(sql, _)| sql)
    }

    /// Bytes over the limit are bound, once however often the statement names them; the
    /// rest stays inline, and the placeholders of the text are numbered for what is bound.
    #[test]
    fn large_bytes_are_bound_once_and_the_rest_inline() {
        let large = vec![7u8; INLINE_BYTES + 1];
        let statement = statement(
            "SELECT $2, $1, $3, $2",
            vec![
                Param::Text(Some("a".into())),
                Param::Bytes(Some(large.clone().into())),
                Param::Bytes(Some(vec![1, 2].into())),
            ],
        );
        let (sql, bound) = inline_binding_large(&statement).unwrap();
        assert_eq!(
            sql,
            "SELECT ($1::pg_catalog.bytea), (pg_catalog.convert_from(pg_catalog.decode('61', 'hex'), 'UTF8')), (pg_catalog.decode('0102', 'hex')), ($1::pg_catalog.bytea)"
        );
        assert_eq!(bound, [large.as_slice()]);
        assert!(
            inline(&statement)
                .unwrap()
                .contains(&"07".repeat(INLINE_BYTES + 1))
        );
    }

    fn statement(sql: &str, params: Vec<Param>) -> Statement {
        Statement {
            sql: sql.to_owned(),
            params,
            columns: &[],
        }
    }

    #[test]
    fn values_are_written_as_ascii_whatever_they_hold() {
        let hostile = "a'b\\c\"$1 é'); DROP TABLE t; --";
        let sql = inline(&statement(
            "INSERT INTO \"my$1\".t VALUES ($1, $2, $3, $4, $5) -- 'it''s $2'",
            vec![
                Param::Text(Some(hostile.to_owned())),
                Param::Texts(vec![hostile.to_owned(), String::new()]),
                Param::Int(-7),
                Param::Bytes(Some(vec![0, 0x27, 0x5c, 0xff].into())),
                Param::Text(None),
            ],
        ))
        .unwrap();
        let hex = hex::encode(hostile);
        assert_eq!(
            sql,
            format!(
                "INSERT INTO \"my$1\".t VALUES (\
                 (pg_catalog.convert_from(pg_catalog.decode('{hex}', 'hex'), 'UTF8')), \
                 (ARRAY[pg_catalog.convert_from(pg_catalog.decode('{hex}', 'hex'), 'UTF8'), \
                 pg_catalog.convert_from(pg_catalog.decode('', 'hex'), 'UTF8')]::pg_catalog.text[]), \
                 ('-7'::pg_catalog.int8), (pg_catalog.decode('00275cff', 'hex')), \
                 (NULL::pg_catalog.text)) -- 'it''s $2'"
            )
        );
        // Nothing of the values but hex digits and the quotes around them.
        assert!(sql.is_ascii());
        assert!(!sql.contains("DROP"));
    }

    #[test]
    fn placeholders_are_numbers_outside_quotes_and_must_exist() {
        let sql = inline(&statement(
            "SELECT $$x$$, $1, $10, '$2'",
            (1..=10).map(Param::Int).collect(),
        ))
        .unwrap();
        assert_eq!(
            sql,
            "SELECT $$x$$, ('1'::pg_catalog.int8), ('10'::pg_catalog.int8), '$2'"
        );
        assert!(inline(&statement("SELECT $2", vec![Param::Int(1)])).is_err());
        assert!(inline(&statement("SELECT $0", vec![Param::Int(1)])).is_err());
        let empty = inline(&statement("SELECT $1", vec![Param::Texts(vec![])])).unwrap();
        assert_eq!(empty, "SELECT (ARRAY[]::pg_catalog.text[])");
    }

    #[test]
    fn times_are_iso_8601_in_utc() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-04T21:05:06.123456+02:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let sql = inline(&statement("SELECT $1", vec![Param::Time(t)])).unwrap();
        assert_eq!(
            sql,
            "SELECT ('2026-12-04T19:05:06.123456Z'::pg_catalog.timestamptz)"
        );
    }
}

//! A database's schema read from its catalogs, as plain text keyed by object, and the
//! differences between two such readings: what `wasmig test` compares before a revision's
//! `up` and after its `down`.
//!
//! PostgreSQL: every schema but the system ones; tables and their columns (type, nullability,
//! default, identity, generated), indexes, constraints, sequences, views, materialized views,
//! functions and procedures, triggers, enums, domains, composite types, extensions and
//! schemas, each rendered by the server (`pg_get_*def`, `format_type`), so OIDs and catalog
//! order never show. Objects an extension owns are its own, and left out. SQLite:
//! `sqlite_schema` with its SQL's white space normalised, and each table's columns.
//!
//! wasmig's own tables (and on PostgreSQL their indexes, constraints and sequences) are left
//! out: the first step creates them, and they are not the project's schema.
//!
//! Not here: row data (a snapshot is the schema only); policies, rules, grants, comments and
//! statistics objects are not read.

use std::collections::BTreeMap;
use std::fmt;

use wasmig_contract::Dialect;

use crate::store::{Kind, Statement};
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, Database, DbError, FAILED_TABLE, HISTORY_TABLE,
    PARTITION_TABLE, SCHEMA_TABLE, VERSION_TABLE,
};

/// wasmig's own tables, left out of a snapshot.
const OURS: [&str; 7] = [
    PARTITION_TABLE,
    SCHEMA_TABLE,
    VERSION_TABLE,
    HISTORY_TABLE,
    FAILED_TABLE,
    ARTIFACT_TABLE,
    CHECKPOINT_TABLE,
];

/// A schema: each object's key (`column public.t.extra`, `index public.t_pkey`…) and its
/// definition as the database renders it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Schema {
    /// By key, sorted.
    pub objects: BTreeMap<String, String>,
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// In the second snapshot only.
    Added {
        /// The object.
        key: String,
        /// Its definition.
        definition: String,
    },
    /// In the first snapshot only.
    Removed {
        /// The object.
        key: String,
        /// Its definition.
        definition: String,
    },
    /// In both, defined differently.
    Changed {
        /// The object.
        key: String,
        /// Its definition in the first snapshot.
        before: String,
        /// Its definition in the second.
        after: String,
    },
}

impl Change {
    /// The object the change is about.
    pub fn key(&self) -> &str {
        match self {
            Change::Added { key, .. }
            | Change::Removed { key, .. }
            | Change::Changed { key, .. } => key,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { key, definition } => write!(f, "+ {key}: {definition}"),
            Change::Removed { key, definition } => write!(f, "- {key}: {definition}"),
            Change::Changed { key, before, after } => {
                write!(f, "~ {key}: {before} -> {after}")
            }
        }
    }
}

impl Schema {
    /// What changed from `self` to `after`, in key order (empty: the same schema).
    pub fn diff(&self, after: &Schema) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, before) in &self.objects {
            match after.objects.get(key) {
                None => changes.push(Change::Removed {
                    key: key.clone(),
                    definition: before.clone(),
                }),
                Some(now) if now != before => changes.push(Change::Changed {
                    key: key.clone(),
                    before: before.clone(),
                    after: now.clone(),
                }),
                Some(_) => {}
            }
        }
        for (key, definition) in &after.objects {
            if !self.objects.contains_key(key) {
                changes.push(Change::Added {
                    key: key.clone(),
                    definition: definition.clone(),
                });
            }
        }
        changes.sort_by(|a, b| a.key().cmp(b.key()));
        changes
    }

    /// One line per object, `key: definition`, in key order (definitions on one line).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (key, definition) in &self.objects {
            out.push_str(key);
            if !definition.is_empty() {
                out.push_str(": ");
                out.push_str(&one_line(definition));
            }
            out.push('\n');
        }
        out
    }
}

/// Reads the schema of the database `db` is connected to, leaving out wasmig's own tables
/// (in `wasmig_schema` on PostgreSQL, where they live).
///
/// # Errors
/// [`DbError::Query`] when a catalog query fails.
pub async fn snapshot(db: &dyn Database, wasmig_schema: &str) -> anyhow::Result<Schema> {
    let queries = match db.dialect() {
        Dialect::Postgres => pg_queries(wasmig_schema),
        Dialect::Sqlite => sqlite_queries(),
        Dialect::Mysql => {
            return Err(wasmig_plan::ConfigError::new(
                "reading a schema from MySQL's catalogs (for `wasmig test`) is not supported yet; run the stairway on PostgreSQL or SQLite".to_owned(),
            )
            .into());
        }
    };
    let mut reader = db.reader().await?;
    let mut schema = Schema::default();
    for sql in queries {
        let statement = Statement {
            sql,
            params: Vec::new(),
            columns: &[Kind::Text, Kind::Text],
        };
        let rows = reader
            .driver()
            .fetch(&statement)
            .await
            .map_err(|source| DbError::Query {
                doing: "reading the schema from the catalogs".into(),
                source,
            })?;
        for row in rows {
            let text = |i: usize| match row.get(i) {
                Some(crate::store::Cell::Text(Some(t))) => t.clone(),
                _ => String::new(),
            };
            let definition = match db.dialect() {
                Dialect::Sqlite => normalise_sql(&text(1)),
                Dialect::Postgres | Dialect::Mysql => text(1),
            };
            schema.objects.insert(text(0), definition);
        }
    }
    Ok(schema)
}

/// `s` on one line: runs of white space as one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SQLite keeps a table's SQL as written and edits it in place (`ADD COLUMN` appends to
/// it, `DROP COLUMN` cuts from it): compare it without white space differences, and
/// without a space before `,` or `)` or after `(`.
fn normalise_sql(sql: &str) -> String {
    one_line(sql)
        .replace(" ,", ",")
        .replace(" )", ")")
        .replace("( ", "(")
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sqlite_queries() -> Vec<String> {
    let ours = OURS.map(literal).join(", ");
    vec![
        format!(
            "SELECT type || ' ' || name, coalesce(sql, '') FROM sqlite_schema
             WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name NOT IN ({ours})"
        ),
        format!(
            "SELECT 'column ' || m.name || '.' || p.name,
                    trim(p.type || CASE WHEN p.\"notnull\" THEN ' not null' ELSE '' END
                         || coalesce(' default ' || p.dflt_value, '')
                         || CASE WHEN p.pk > 0 THEN ' primary key' ELSE '' END)
             FROM sqlite_schema m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
               AND m.name NOT IN ({ours})"
        ),
    ]
}

fn pg_queries(wasmig_schema: &str) -> Vec<String> {
    let ws = literal(wasmig_schema);
    let ours = OURS.map(literal).join(", ");
    // The schemas read: all but the system's.
    let user = |nsp: &str| {
        format!(
            "{nsp} NOT IN ('pg_catalog', 'information_schema') AND {nsp} NOT LIKE 'pg\\_toast%' AND {nsp} NOT LIKE 'pg\\_temp\\_%'"
        )
    };
    // A relation (by schema and name) that is one of wasmig's tables.
    let not_ours = |nsp: &str, rel: &str| format!("NOT ({nsp} = {ws} AND {rel} IN ({ours}))");
    // An object an extension created (and drops with it).
    let not_extension = |class: &str, oid: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{class}'::regclass AND d.objid = {oid} AND d.deptype = 'e')"
        )
    };
    vec![
        format!(
            "SELECT 'schema ' || n.nspname, pg_get_userbyid(n.nspowner)::text FROM pg_namespace n
             WHERE {}",
            user("n.nspname")
        ),
        format!(
            "SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table ' WHEN 'f' THEN 'foreign table ' ELSE 'table ' END
                    || n.nspname || '.' || c.relname,
                    CASE WHEN c.relpersistence = 'u' THEN 'unlogged' ELSE '' END
                    || coalesce(' partition of ' || (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1)
                                || ' ' || pg_get_expr(c.relpartbound, c.oid), '')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'f') AND {} AND {} AND {}",
            user("n.nspname"),
            not_ours("n.nspname", "c.relname"),
            not_extension("pg_class", "c.oid"),
        ),
        format!(
            "SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname,
                    format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                            THEN ' collate ' || (SELECT collname FROM pg_collation WHERE oid = a.attcollation) ELSE '' END
                    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                    || CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
                                          WHEN 'd' THEN ' generated by default as identity' ELSE '' END
                    || CASE WHEN a.attgenerated = 's' THEN ' generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ') stored'
                            ELSE coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') END
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f')
               AND {} AND {} AND {}",
            user("n.nspname"),
            not_ours("n.nspname", "c.relname"),
            not_extension("pg_class", "c.oid"),
        ),
        // An index a failed `CREATE INDEX CONCURRENTLY` left behind is invalid: say so.
        format!(
            "SELECT 'index ' || n.nspname || '.' || c.relname,
                    pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {} AND {} AND {}",
            user("n.nspname"),
            not_ours("n.nspname", "t.relname"),
            not_extension("pg_class", "t.oid"),
        ),
        format!(
            "SELECT 'constraint ' || n.nspname || '.' || c.relname || '.' || k.conname,
                    pg_get_constraintdef(k.oid)
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {} AND {}",
            user("n.nspname"),
            not_ours("n.nspname", "c.relname"),
        ),
        format!(
            "SELECT 'sequence ' || s.schemaname || '.' || s.sequencename,
                    s.data_type::text || ' start ' || s.start_value || ' increment ' || s.increment_by
                    || ' min ' || s.min_value || ' max ' || s.max_value
                    || CASE WHEN s.cycle THEN ' cycle' ELSE '' END
                    || coalesce(' owned by ' || (
                         SELECT c.relname || '.' || a.attname FROM pg_depend d
                         JOIN pg_class c ON c.oid = d.refobjid
                         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass
                           AND d.deptype IN ('a', 'i') LIMIT 1), '')
             FROM pg_sequences s
             WHERE {} AND NOT (s.schemaname = {ws} AND s.sequencename LIKE 'wasmig\\_%')",
            user("s.schemaname"),
        ),
        format!(
            "SELECT 'view ' || schemaname || '.' || viewname, definition FROM pg_views WHERE {}",
            user("schemaname"),
        ),
        format!(
            "SELECT 'materialized view ' || schemaname || '.' || matviewname, definition
             FROM pg_matviews WHERE {}",
            user("schemaname"),
        ),
        format!(
            "SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END
                    || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                    pg_get_functiondef(p.oid)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prokind IN ('f', 'p') AND {} AND {}",
            user("n.nspname"),
            not_extension("pg_proc", "p.oid"),
        ),
        format!(
            "SELECT 'trigger ' || n.nspname || '.' || c.relname || '.' || t.tgname,
                    pg_get_triggerdef(t.oid)
                    || CASE t.tgenabled WHEN 'D' THEN ' (disabled)' ELSE '' END
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE NOT t.tgisinternal AND {}",
            user("n.nspname"),
        ),
        format!(
            "SELECT 'type ' || n.nspname || '.' || t.typname,
                    CASE t.typtype
                      WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                 FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
                      WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)
                                    || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                                    || coalesce(' default ' || t.typdefault, '')
                                    || coalesce(' ' || (SELECT string_agg(pg_get_constraintdef(k.oid), ' ' ORDER BY k.conname)
                                                        FROM pg_constraint k WHERE k.contypid = t.oid), '')
                      WHEN 'r' THEN 'range of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
                      ELSE 'composite (' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                             FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) || ')'
                    END
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE (t.typtype IN ('e', 'd', 'r')
                    OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
               AND {} AND {}",
            user("n.nspname"),
            not_extension("pg_type", "t.oid"),
        ),
        "SELECT 'extension ' || e.extname, e.extversion || ' in ' || n.nspname
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            .to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(pairs: &[(&str, &str)]) -> Schema {
        Schema {
            objects: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn diff_names_what_was_added_removed_and_changed() {
        let before = schema(&[("table public.t", ""), ("column public.t.id", "integer")]);
        let after = schema(&[
            ("table public.t", ""),
            ("column public.t.id", "bigint"),
            ("column public.t.extra", "text"),
        ]);
        assert_eq!(
            before.diff(&after),
            [
                Change::Added {
                    key: "column public.t.extra".into(),
                    definition: "text".into()
                },
                Change::Changed {
                    key: "column public.t.id".into(),
                    before: "integer".into(),
                    after: "bigint".into()
                },
            ]
        );
        assert_eq!(
            after.diff(&before)[0],
            Change::Removed {
                key: "column public.t.extra".into(),
                definition: "text".into()
            }
        );
        assert!(before.diff(&before).is_empty());
    }

    #[test]
    fn sqlite_sql_is_compared_without_white_space_differences() {
        assert_eq!(
            normalise_sql("CREATE TABLE t (id INTEGER ,\n   x TEXT )"),
            normalise_sql("CREATE TABLE t ( id INTEGER, x TEXT)")
        );
    }
}

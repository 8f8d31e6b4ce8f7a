//! What a step did, as the server counts it, for `up --dry-run`: the rows each table had
//! inserted, updated and deleted in the transaction so far (PostgreSQL's
//! `pg_stat_xact_user_tables`; SQLite: the connection's `total_changes()`), and the table
//! locks the transaction holds (`pg_locks` of its own backend). Read before and after a
//! step's work in its transaction; [`Observed::since`] gives the step's share.

use serde::Serialize;
use wasmig_contract::Dialect;

use super::{Driver, Kind, Statement, VersionStore, int, query_error, required};

/// Rows one table had written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRows {
    /// `schema.table`.
    pub table: String,
    /// Rows inserted (`INSERT`, `COPY`).
    pub inserted: i64,
    /// Rows updated.
    pub updated: i64,
    /// Rows deleted (not `TRUNCATE`, which the server does not count per row).
    pub deleted: i64,
}

/// A table lock the transaction holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RelationLock {
    /// `schema.table` (or, for a relation dropped in the transaction, its OID).
    pub relation: String,
    /// The lock mode, as PostgreSQL names it (`AccessExclusiveLock`...).
    pub mode: String,
}

/// What the server counts of a transaction (or, after [`Observed::since`], of one step).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// PostgreSQL: rows written per table, tables with none left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableRows>,
    /// SQLite: rows inserted, updated or deleted on the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_changed: Option<i64>,
    /// PostgreSQL: the table locks held (system catalogs and indexes left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<RelationLock>,
}

impl Observed {
    /// What happened between `before` and `self`: the rows written since, and the locks
    /// taken since.
    pub fn since(&self, before: &Observed) -> Observed {
        let tables = self
            .tables
            .iter()
            .filter_map(|t| {
                let old = before.tables.iter().find(|o| o.table == t.table);
                let (i, u, d) = old.map_or((0, 0, 0), |o| (o.inserted, o.updated, o.deleted));
                let delta = TableRows {
                    table: t.table.clone(),
                    inserted: t.inserted - i,
                    updated: t.updated - u,
                    deleted: t.deleted - d,
                };
                (delta.inserted + delta.updated + delta.deleted > 0).then_some(delta)
            })
            .collect();
        Observed {
            tables,
            rows_changed: self
                .rows_changed
                .map(|n| n - before.rows_changed.unwrap_or(0)),
            locks: self
                .locks
                .iter()
                .filter(|l| !before.locks.contains(l))
                .cloned()
                .collect(),
        }
    }
}

/// PostgreSQL: the rows written per table in this transaction.
const PG_ROWS: &str = "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del \
     FROM pg_catalog.pg_stat_xact_user_tables \
     WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY 1";

/// PostgreSQL: the relation locks this backend holds, but the catalogs' and indexes'.
const PG_LOCKS: &str = "SELECT coalesce(n.nspname || '.' || c.relname, \
       'a relation dropped in this transaction (OID ' || l.relation::text || ')'), l.mode \
     FROM pg_catalog.pg_locks l \
     LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation \
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
       AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
       AND (n.nspname IS NULL OR (n.nspname NOT IN ('pg_catalog', 'information_schema') \
            AND n.nspname NOT LIKE 'pg\\_toast%')) \
       AND (c.relkind IS NULL OR c.relkind NOT IN ('i', 'I')) \
     ORDER BY 1, 2";

impl VersionStore {
    /// The rows of wasmig's own tables that `observed` (a step of a dry run, which writes
    /// none of them) counts as written: the step's SQL wrote them, which the real run's
    /// record refuses. `None` when it wrote none (or the backend counts no rows per
    /// table: SQLite).
    pub fn own_rows_written(&self, observed: &Observed) -> Option<String> {
        let schema = self.words.schema.as_deref().unwrap_or("public");
        let written: Vec<String> = observed
            .tables
            .iter()
            .filter(|t| {
                super::TABLE_NAMES
                    .iter()
                    .any(|name| t.table == format!("{schema}.{name}"))
            })
            .map(|t| {
                format!(
                    "{}: {} inserted, {} updated, {} deleted",
                    t.table, t.inserted, t.updated, t.deleted
                )
            })
            .collect();
        (!written.is_empty()).then(|| written.join("; "))
    }
}

impl VersionStore {
    /// What the server counts of the transaction `d` is in, so far.
    ///
    /// # Errors
    /// A query error.
    pub async fn observe(&self, d: &mut dyn Driver) -> anyhow::Result<Observed> {
        let doing = "reading what the step did (pg_stat_xact_user_tables, pg_locks)".to_owned();
        match self.words.dialect {
            Dialect::Postgres => {
                let rows = d
                    .fetch(&Statement::rows(
                        PG_ROWS.to_owned(),
                        vec![],
                        &[Kind::Text, Kind::Int, Kind::Int, Kind::Int],
                    ))
                    .await
                    .map_err(query_error(doing.clone()))?;
                let tables = rows
                    .iter()
                    .map(|r| {
                        Ok(TableRows {
                            table: required(&r[0], "table")?,
                            inserted: int(&r[1], "n_tup_ins")?,
                            updated: int(&r[2], "n_tup_upd")?,
                            deleted: int(&r[3], "n_tup_del")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(query_error(doing.clone()))?;
                let rows = d
                    .fetch(&Statement::rows(
                        PG_LOCKS.to_owned(),
                        vec![],
                        &[Kind::Text, Kind::Text],
                    ))
                    .await
                    .map_err(query_error(doing.clone()))?;
                let locks = rows
                    .iter()
                    .map(|r| {
                        Ok(RelationLock {
                            relation: required(&r[0], "relation")?,
                            mode: required(&r[1], "mode")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(query_error(doing))?;
                Ok(Observed {
                    tables,
                    rows_changed: None,
                    locks,
                })
            }
            // MySQL counts no rows per transaction: nothing observed.
            Dialect::Mysql => Ok(Observed::default()),
            Dialect::Sqlite => {
                let rows = d
                    .fetch(&Statement::rows(
                        "SELECT total_changes()".to_owned(),
                        vec![],
                        &[Kind::Int],
                    ))
                    .await
                    .map_err(query_error(doing.clone()))?;
                let changed = rows
                    .first()
                    .map_or(Ok(0), |r| int(&r[0], "total_changes()"))
                    .map_err(query_error(doing))?;
                Ok(Observed {
                    rows_changed: Some(changed),
                    ..Observed::default()
                })
            }
        }
    }
}

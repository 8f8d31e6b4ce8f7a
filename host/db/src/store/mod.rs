//! wasmig's own tables, written once for both backends: the [`VersionStore`].
//!
//! Owns: every statement that reads or writes the version, history, failed-mark, artifact
//! and checkpoint tables (one text for PostgreSQL and SQLite, told apart only by the few
//! words of [`Words`]), the check that each write touched the one row it meant to, the
//! schema version of those tables and the ordered list of their migrations (`schema`).
//!
//! Every value wasmig writes is a bound parameter ([`Param`]), never a literal: a revision's
//! text, a checkpoint or an error message cannot end a literal early, whatever settings the
//! migration left on the session.
//!
//! Not here: talking to a server. A backend implements the narrow [`Driver`] (run one
//! statement with its parameters, fetch its rows, run wasmig's own DDL script) for its
//! connections; the guards that run before a step writes (PostgreSQL's lock fence and
//! tamper check) are the backend's, in its `Session` impl.

mod driver;
mod schema;

use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub use self::driver::{Cell, Driver, Kind, Param, Reader, Statement};
pub use self::schema::SCHEMA_VERSION;
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, Checkpoint, DbError, FAILED_TABLE, FailedMark, FinishedStep,
    HISTORY_TABLE, HistoryEntry, SCHEMA_TABLE, StepRecord, StoredArtifact, VERSION_TABLE,
};
use wasmig_contract::Dialect;

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
        }
    }

    /// Text equality: qualified on PostgreSQL, so an operator the migration put earlier in
    /// the `search_path` cannot answer instead.
    fn eq(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "OPERATOR(pg_catalog.=)",
            Dialect::Sqlite => "=",
        }
    }

    /// The column type of a time.
    fn time(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "TIMESTAMPTZ",
            Dialect::Sqlite => "TEXT",
        }
    }

    /// The column type of bytes.
    fn bytes(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "BYTEA",
            Dialect::Sqlite => "BLOB",
        }
    }

    /// An ever-increasing integer key.
    fn identity(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
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

/// Every table of wasmig's, as [`VersionStore::present`] looks for them.
const TABLES: [&str; 6] = [
    VERSION_TABLE,
    HISTORY_TABLE,
    FAILED_TABLE,
    ARTIFACT_TABLE,
    CHECKPOINT_TABLE,
    SCHEMA_TABLE,
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
        if found > SCHEMA_VERSION {
            return Err(DbError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            }
            .into());
        }
        d.script("BEGIN")
            .await
            .map_err(query_error("creating wasmig's tables"))?;
        let migrated = self.migrate(d, found).await;
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
            let done = d
                .execute(&Statement::new(
                    format!(
                        "INSERT INTO {} (version, wasmig_version, migrated_at) VALUES ($1, $2, $3)",
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

    /// The revisions stored as current heads, sorted.
    pub async fn heads(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<String>> {
        if !self.present(d, VERSION_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading {VERSION_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision FROM {} ORDER BY revision",
                    self.table(VERSION_TABLE)
                ),
                vec![],
                &[Kind::Text],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|row| required(&row[0], "revision"))
            .collect::<Result<_, _>>()
            .map_err(query_error(doing))
    }

    /// The history log, oldest first.
    pub async fn history(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<HistoryEntry>> {
        if !self.present(d, HISTORY_TABLE).await? {
            return Ok(Vec::new());
        }
        // Read-only commands do not migrate the tables: an unversioned history table may
        // lack the error columns.
        let errors = if self.present(d, HISTORY_ERROR_COLUMNS).await? {
            "error, sqlstate"
        } else {
            "NULL AS error, NULL AS sqlstate"
        };
        let doing = format!("reading {HISTORY_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT id, revision, direction, checksum, started_at, finished_at, duration_ms,
                            wasmig_version, {errors}
                     FROM {} ORDER BY id",
                    self.table(HISTORY_TABLE)
                ),
                vec![],
                &[
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Time,
                    Kind::Time,
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    id: int(&r[0], "id")?,
                    revision: required(&r[1], "revision")?,
                    direction: crate::parsed(required(&r[2], "direction")?, "direction")?,
                    checksum: required(&r[3], "checksum")?,
                    started_at: time(&r[4], "started_at")?,
                    finished_at: time(&r[5], "finished_at")?,
                    duration_ms: int(&r[6], "duration_ms")?,
                    wasmig_version: required(&r[7], "wasmig_version")?,
                    error: text(&r[8], "error")?,
                    sqlstate: text(&r[9], "sqlstate")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error(doing))
    }

    /// The revisions marked failed, oldest first.
    pub async fn failed(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<FailedMark>> {
        if !self.present(d, FAILED_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading {FAILED_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision, direction, remove_heads, add_heads, statement, error, sqlstate,
                            failed_at
                     FROM {} ORDER BY failed_at, revision",
                    self.table(FAILED_TABLE)
                ),
                vec![],
                &[
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Time,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(FailedMark {
                    revision: required(&r[0], "revision")?,
                    direction: crate::parsed(required(&r[1], "direction")?, "direction")?,
                    remove_heads: heads(&r[2], "remove_heads")?,
                    add_heads: heads(&r[3], "add_heads")?,
                    statement: int(&r[4], "statement")?,
                    error: required(&r[5], "error")?,
                    sqlstate: text(&r[6], "sqlstate")?,
                    failed_at: time(&r[7], "failed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error(doing))
    }

    /// The batched steps part-way through, oldest first.
    pub async fn checkpoints(&self, d: &mut dyn Driver) -> anyhow::Result<Vec<Checkpoint>> {
        if !self.present(d, CHECKPOINT_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading {CHECKPOINT_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision, direction, remove_heads, add_heads, checkpoint, batches, checksum,
                            started_at, updated_at
                     FROM {} ORDER BY started_at, revision",
                    self.table(CHECKPOINT_TABLE)
                ),
                vec![],
                &[
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Int,
                    Kind::Text,
                    Kind::Time,
                    Kind::Time,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    revision: required(&r[0], "revision")?,
                    direction: crate::parsed(required(&r[1], "direction")?, "direction")?,
                    remove_heads: heads(&r[2], "remove_heads")?,
                    add_heads: heads(&r[3], "add_heads")?,
                    checkpoint: required(&r[4], "checkpoint")?,
                    batches: int(&r[5], "batches")?,
                    checksum: required(&r[6], "checksum")?,
                    started_at: time(&r[7], "started_at")?,
                    updated_at: time(&r[8], "updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error(doing))
    }

    /// The artifact stored when `revision` was last applied, if any.
    pub async fn stored_artifact(
        &self,
        d: &mut dyn Driver,
        revision: &str,
    ) -> anyhow::Result<Option<StoredArtifact>> {
        if !self.present(d, ARTIFACT_TABLE).await? {
            return Ok(None);
        }
        let doing = format!("reading the stored artifact of {revision} from {ARTIFACT_TABLE}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT revision, kind, checksum, manifest, up_sql, down_sql, component,
                            source_checksum
                     FROM {} WHERE revision {} $1",
                    self.table(ARTIFACT_TABLE),
                    self.words.eq()
                ),
                vec![txt(revision)],
                &[
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Bytes,
                    Kind::Text,
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let artifact = || -> Result<StoredArtifact, sqlx::Error> {
            Ok(StoredArtifact {
                revision: required(&r[0], "revision")?,
                kind: required(&r[1], "kind")?,
                checksum: required(&r[2], "checksum")?,
                manifest: required(&r[3], "manifest")?,
                up_sql: text(&r[4], "up_sql")?,
                down_sql: text(&r[5], "down_sql")?,
                component: match &r[6] {
                    Cell::Bytes(b) => b.clone(),
                    _ => return Err(bad_cell("component")),
                },
                source_checksum: text(&r[7], "source_checksum")?,
            })
        };
        artifact().map(Some).map_err(query_error(doing))
    }

    /// Records one step: replaces `remove` by `add` among the heads (a head in both is left
    /// alone) and appends a history row.
    pub async fn record_step(
        &self,
        d: &mut dyn Driver,
        step: &StepRecord<'_>,
    ) -> anyhow::Result<()> {
        let doing = format!("recording {} in the version tables", step.revision);
        let version = self.table(VERSION_TABLE);
        for head in step.remove.iter().filter(|h| !step.add.contains(h)) {
            d.execute(&Statement::new(
                format!(
                    "DELETE FROM {version} WHERE revision {} $1",
                    self.words.eq()
                ),
                vec![txt(head)],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        }
        for head in step.add.iter().filter(|h| !step.remove.contains(h)) {
            let done = d
                .execute(&Statement::new(
                    format!("INSERT INTO {version} (revision) VALUES ($1)"),
                    vec![txt(head)],
                ))
                .await
                .map_err(query_error(doing.clone()))?;
            confirm(done, &format!("adding the head {head} to {VERSION_TABLE}"))?;
        }
        let done = d
            .execute(&Statement::new(
                format!(
                    "INSERT INTO {}
                         (revision, direction, checksum, started_at, finished_at, duration_ms,
                          wasmig_version, error, sqlstate)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    self.table(HISTORY_TABLE)
                ),
                vec![
                    txt(step.revision),
                    txt(step.direction.as_str()),
                    txt(step.checksum),
                    Param::Time(step.started_at),
                    Param::Time(step.finished_at),
                    Param::Int((step.finished_at - step.started_at).num_milliseconds()),
                    txt(env!("CARGO_PKG_VERSION")),
                    opt(step.error),
                    opt(step.sqlstate),
                ],
            ))
            .await
            .map_err(query_error(doing))?;
        confirm(
            done,
            &format!("appending {} to {HISTORY_TABLE}", step.revision),
        )
    }

    /// Writes what a step that ran to its end leaves: its record, its artifact stored (an
    /// upgrade) or forgotten (a downgrade), and its checkpoint cleared.
    pub async fn finish_step(
        &self,
        d: &mut dyn Driver,
        finished: &FinishedStep<'_>,
    ) -> anyhow::Result<()> {
        self.record_step(d, &finished.record).await?;
        match finished.artifact {
            Some(stored) => self.store_artifact(d, stored).await?,
            None => self.forget_artifact(d, finished.record.revision).await?,
        }
        if finished.clear_checkpoint {
            self.clear_checkpoint(d, finished.record.revision).await?;
        }
        Ok(())
    }

    /// Stores (or replaces) a revision's artifact.
    pub async fn store_artifact(
        &self,
        d: &mut dyn Driver,
        artifact: &StoredArtifact,
    ) -> anyhow::Result<()> {
        let columns = [
            "revision",
            "kind",
            "checksum",
            "manifest",
            "up_sql",
            "down_sql",
            "component",
            "source_checksum",
            "stored_at",
        ];
        let params = vec![
            txt(&artifact.revision),
            txt(&artifact.kind),
            txt(&artifact.checksum),
            txt(&artifact.manifest),
            opt(artifact.up_sql.as_deref()),
            opt(artifact.down_sql.as_deref()),
            Param::Bytes(artifact.component.clone()),
            opt(artifact.source_checksum.as_deref()),
            Param::Time(Utc::now()),
        ];
        let doing = format!(
            "storing the artifact of {} in {ARTIFACT_TABLE}",
            artifact.revision
        );
        self.upsert(d, ARTIFACT_TABLE, &columns, params, doing)
            .await
    }

    /// Inserts one row per revision, or replaces every column of the revision's row.
    async fn upsert(
        &self,
        d: &mut dyn Driver,
        table: &str,
        columns: &[&str],
        params: Vec<Param>,
        doing: String,
    ) -> anyhow::Result<()> {
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| **c != "revision")
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let done = d
            .execute(&Statement::new(
                format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (revision) DO UPDATE SET {}",
                    self.table(table),
                    columns.join(", "),
                    placeholders.join(", "),
                    updates.join(", ")
                ),
                params,
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        confirm(done, &doing)
    }

    /// Deletes one revision's row of `table` (none is fine: there was nothing to forget).
    async fn delete(
        &self,
        d: &mut dyn Driver,
        table: &str,
        revision: &str,
        doing: String,
    ) -> anyhow::Result<()> {
        d.execute(&Statement::new(
            format!(
                "DELETE FROM {} WHERE revision {} $1",
                self.table(table),
                self.words.eq()
            ),
            vec![txt(revision)],
        ))
        .await
        .map_err(query_error(doing))?;
        Ok(())
    }

    /// Deletes a revision's stored artifact.
    pub async fn forget_artifact(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        let doing = format!("deleting the stored artifact of {revision} from {ARTIFACT_TABLE}");
        self.delete(d, ARTIFACT_TABLE, revision, doing).await
    }

    /// Deletes the stored artifact of every revision not in `keep`.
    pub async fn forget_artifacts_except(
        &self,
        d: &mut dyn Driver,
        keep: &[String],
    ) -> anyhow::Result<()> {
        let doing =
            format!("deleting stored artifacts of unapplied revisions from {ARTIFACT_TABLE}");
        let stored = d
            .fetch(&Statement::rows(
                format!("SELECT revision FROM {}", self.table(ARTIFACT_TABLE)),
                vec![],
                &[Kind::Text],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        for row in stored {
            let revision = required(&row[0], "revision").map_err(query_error(doing.clone()))?;
            if !keep.contains(&revision) {
                self.delete(d, ARTIFACT_TABLE, &revision, doing.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// Marks a revision failed (replacing an earlier mark).
    pub async fn set_failed(&self, d: &mut dyn Driver, mark: &FailedMark) -> anyhow::Result<()> {
        let columns = [
            "revision",
            "direction",
            "remove_heads",
            "add_heads",
            "statement",
            "error",
            "sqlstate",
            "failed_at",
        ];
        let params = vec![
            txt(&mark.revision),
            txt(mark.direction.as_str()),
            txt(&mark.remove_heads.join(",")),
            txt(&mark.add_heads.join(",")),
            Param::Int(mark.statement),
            txt(&mark.error),
            opt(mark.sqlstate.as_deref()),
            Param::Time(mark.failed_at),
        ];
        let doing = format!("marking {} failed", mark.revision);
        self.upsert(d, FAILED_TABLE, &columns, params, doing).await
    }

    /// Clears a revision's failed mark.
    pub async fn clear_failed(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        let doing = format!("clearing the failed mark of {revision}");
        self.delete(d, FAILED_TABLE, revision, doing).await
    }

    /// Saves (or replaces) a batched step's checkpoint.
    pub async fn save_checkpoint(
        &self,
        d: &mut dyn Driver,
        checkpoint: &Checkpoint,
    ) -> anyhow::Result<()> {
        let columns = [
            "revision",
            "direction",
            "remove_heads",
            "add_heads",
            "checkpoint",
            "batches",
            "checksum",
            "started_at",
            "updated_at",
        ];
        let params = vec![
            txt(&checkpoint.revision),
            txt(checkpoint.direction.as_str()),
            txt(&checkpoint.remove_heads.join(",")),
            txt(&checkpoint.add_heads.join(",")),
            txt(&checkpoint.checkpoint),
            Param::Int(checkpoint.batches),
            txt(&checkpoint.checksum),
            Param::Time(checkpoint.started_at),
            Param::Time(checkpoint.updated_at),
        ];
        let doing = format!("saving the checkpoint of {}", checkpoint.revision);
        self.upsert(d, CHECKPOINT_TABLE, &columns, params, doing)
            .await
    }

    /// Deletes a revision's checkpoint.
    pub async fn clear_checkpoint(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        let doing = format!("deleting the checkpoint of {revision}");
        self.delete(d, CHECKPOINT_TABLE, revision, doing).await
    }
}

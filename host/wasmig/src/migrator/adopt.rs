//! `wasmig import --adopt`: take over the applied state of the tool the migrations were
//! imported from. Under the migration lock and in one transaction: read the tool's history
//! table, work out which imported revisions it applied (a leading run, or a refusal), and
//! record them as `stamp` does (the heads move to the last of them) with, for each, its
//! checksum (a `rehash` row, so a later change to its files is caught) and its stored copy.
//! The tool's table is left as it was.
//!
//! Not here: the tools' tables and rules (`wasmig_plan::import`), writing the revisions
//! (`import`).

use crate::bindings::Value;
use crate::db::{Database, Event, Session, StepRecord};
use crate::error::ConfigError;
use crate::import::{Format, ImportPlan};
use crate::revision::{self, RevisionSet};

/// What an adoption found and recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Adoption {
    /// The tool's history table, left in place.
    pub table: &'static str,
    /// The revisions the tool had applied, now recorded as applied (in order).
    pub applied: Vec<String>,
    /// The imported revisions the tool had not applied: what `wasmig up` runs.
    pub pending: Vec<String>,
    /// Whether wasmig's tables already recorded exactly this (nothing was written).
    pub already: bool,
}

/// `base` or the heads, comma-separated.
fn heads_text(heads: &[String]) -> String {
    if heads.is_empty() {
        "base".to_owned()
    } else {
        heads.join(", ")
    }
}

/// One history-table value as the text `wasmig_plan::import` reads.
fn cell(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Int16(n) => n.to_string(),
        Value::Int32(n) => n.to_string(),
        Value::Int64(n) => n.to_string(),
        Value::Float32(n) => n.to_string(),
        Value::Float64(n) => n.to_string(),
        Value::Bytes(b) => hex::encode(b),
        Value::Numeric(s)
        | Value::Text(s)
        | Value::Json(s)
        | Value::Jsonb(s)
        | Value::Uuid(s)
        | Value::Date(s)
        | Value::Time(s)
        | Value::Timestamp(s)
        | Value::Timestamptz(s) => s.clone(),
        Value::Array(_) => return None,
    })
}

/// Adopts the old tool's state for `plan` (whose revisions `set` holds, unless `dry_run`
/// reports before they are written). Runs under the migration lock the caller holds.
///
/// # Errors
/// [`crate::import::AdoptRefused`] when the old state cannot be adopted; [`ConfigError`]
/// when the tool's table cannot be read or wasmig's tables are elsewhere already;
/// [`crate::error::FailedError`] / [`crate::error::InProgressError`]; database errors.
/// Nothing is written on any error.
pub(super) async fn adopt(
    db: &dyn Database,
    plan: &ImportPlan,
    set: Option<&RevisionSet>,
    build_dir: &std::path::Path,
) -> anyhow::Result<Adoption> {
    let format = plan.format;
    let history = format.history();
    super::refuse_unfinished(db).await?;
    let heads = db.heads().await?;
    let mut session = db.begin().await?;
    let result = read_and_record(&mut *session, &heads, plan, set, build_dir).await;
    match result {
        Ok(adoption) if set.is_some() && !adoption.already => {
            session.commit().await?;
            Ok(adoption)
        }
        Ok(adoption) => {
            session.rollback().await?;
            Ok(adoption)
        }
        Err(e) => {
            let _ = session.rollback().await;
            Err(e.context(format!(
                "adopting {format}'s applied state from {}: nothing was recorded",
                history.table
            )))
        }
    }
}

async fn read_and_record(
    session: &mut dyn Session,
    heads: &[String],
    plan: &ImportPlan,
    set: Option<&RevisionSet>,
    build_dir: &std::path::Path,
) -> anyhow::Result<Adoption> {
    let format: Format = plan.format;
    let history = format.history();
    let result = session.query(history.query, &[]).await.map_err(|e| {
        ConfigError::new(format!(
            "cannot read {format}'s history table {}: {}; is this the database {format} migrated, and is the table in the search path?",
            history.table, e.message
        ))
    })?;
    let rows: Vec<_> = result
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let migrations: Vec<_> = plan.revisions.iter().map(|r| r.migration.clone()).collect();
    let count = format.applied(&migrations, &rows)?;
    let ids: Vec<String> = plan.revisions.iter().map(|r| r.id.clone()).collect();
    let (applied, pending) = ids.split_at(count);
    let adoption = Adoption {
        table: history.table,
        applied: applied.to_vec(),
        pending: pending.to_vec(),
        already: false,
    };
    let Some(last) = applied.last() else {
        return Ok(adoption);
    };
    // Where wasmig's heads must be: where the import began (the project's head then, or
    // base), or already at the adopted revision.
    let start: Vec<String> = plan.revisions[0].parent.clone().into_iter().collect();
    if heads == [last.clone()] {
        return Ok(Adoption {
            already: true,
            ..adoption
        });
    }
    if heads != start.as_slice() {
        return Err(ConfigError::new(format!(
            "wasmig's version table is at {}, not at {} where the imported revisions begin: adopt only a database wasmig has not migrated yet (`wasmig current` shows it)",
            heads_text(heads),
            heads_text(&start),
        ))
        .into());
    }
    let Some(set) = set else {
        return Ok(adoption); // a dry run: what would be recorded
    };
    let target = [last.clone()];
    session
        .record_step(&StepRecord::bookkeeping(
            Event::Stamp,
            last,
            heads,
            &target,
            "",
        ))
        .await?;
    for id in applied {
        let revision = set
            .find(id)
            .ok_or_else(|| ConfigError::new(format!("revision {id} is not in the project")))?;
        let artifact = revision::read_artifact(revision, build_dir)?;
        let checksum = artifact.checksum();
        session
            .record_step(&StepRecord::bookkeeping(
                Event::Rehash,
                id,
                &[],
                &[],
                &checksum,
            ))
            .await?;
        session
            .store_artifact(&revision.to_stored(&artifact)?)
            .await?;
    }
    Ok(adoption)
}

//! `wasmig import --from FORMAT SOURCE_DIR [--adopt] [--dry-run] [--x-multi-statement]`: write another tool's
//! migrations as revisions, then (with `--adopt`) record what that tool had applied.

use std::path::Path;

use serde_json::json;
use wasmig::Migrator;
use wasmig::import::{self, Format, Imported};
use wasmig::revision::TransactionMode;

use crate::args::Global;
use crate::output::out;

/// Imports, adopts if asked, and says what it did (or would do).
pub(super) async fn run(
    migrator: &Migrator,
    g: &Global,
    format: Format,
    source: &Path,
    options: import::ToolOptions,
    adopt: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let plan = import::plan(migrator.project(), format, source, options)?;
    let new: Vec<&Imported> = plan.revisions.iter().filter(|r| !r.exists).collect();
    let kept = plan.revisions.len() - new.len();
    if adopt && !dry_run {
        // A state that cannot be adopted is refused before anything is written.
        migrator.adopt(&plan, true).await?;
    }
    if dry_run {
        for r in &new {
            let mut mode = String::new();
            if r.migration.transaction() != TransactionMode::PerMigration {
                mode += &format!(", transaction = \"{}\"", r.migration.transaction().as_str());
            }
            if let Some(down) = r.migration.downgrade_transaction() {
                mode += &format!(", downgrade_transaction = \"{}\"", down.as_str());
            }
            tracing::info!(
                "would write revision {} ({}{mode}) after {}",
                r.id,
                r.imported_from(format),
                r.parent.as_deref().unwrap_or("base")
            );
        }
    } else {
        let written = import::write(migrator.project(), &plan)?;
        if let (Some(first), Some(last)) = (written.first(), written.last()) {
            tracing::info!(
                "imported {} {format} migration(s) as revisions {} .. {}",
                written.len(),
                first.display(),
                last.display()
            );
        }
    }
    if kept > 0 {
        tracing::info!("{kept} migration(s) were imported before, unchanged: kept");
    }
    let adoption = if adopt {
        Some(adopted(migrator, &plan, dry_run).await?)
    } else {
        None
    };
    if g.json {
        let revisions: Vec<_> = plan
            .revisions
            .iter()
            .map(|r| {
                json!({
                    "revision": r.id,
                    "imported_from": r.imported_from(format),
                    "new": !r.exists,
                    "transaction": r.migration.transaction().as_str(),
                    "downgrade_transaction": r
                        .migration
                        .downgrade_transaction()
                        .unwrap_or(r.migration.transaction())
                        .as_str(),
                })
            })
            .collect();
        out!(
            "{}",
            json!({ "dry_run": dry_run, "revisions": revisions, "adopted": adoption })
        );
    }
    Ok(())
}

/// Adopts and reports it.
async fn adopted(
    migrator: &Migrator,
    plan: &import::ImportPlan,
    dry_run: bool,
) -> anyhow::Result<wasmig::migrator::Adoption> {
    let adoption = migrator.adopt(plan, dry_run).await?;
    let format = plan.format;
    let table = adoption.table;
    let (applied, pending) = (adoption.applied.len(), adoption.pending.len());
    match (adoption.applied.last(), dry_run, adoption.already) {
        (None, _, _) => tracing::info!(
            "{table} records no applied migration: nothing to adopt; `wasmig up` runs all {pending}"
        ),
        (Some(last), _, true) => tracing::info!(
            "nothing to do: wasmig already records the {applied} revision(s) {format} applied, up to {last}"
        ),
        (Some(last), true, false) => tracing::info!(
            "would record {applied} revision(s) as applied, up to {last} (what {table} records); `wasmig up` would then run {pending}"
        ),
        (Some(last), false, false) => tracing::info!(
            "adopted: recorded {applied} revision(s) as applied, up to {last} (what {table} records; no migration ran); `wasmig up` runs the {pending} {format} had not applied"
        ),
    }
    tracing::info!(
        "{table} is left in place; once nothing runs {format} any more, drop it: DROP TABLE {table};"
    );
    Ok(adoption)
}

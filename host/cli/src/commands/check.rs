//! `wasmig check [--single-head] [--allow-modified]`: the graph, and the applied revisions'
//! checksums when there is a database to ask.

use serde_json::json;
use wasmig::error::GraphError;
use wasmig::{Migrator, Options};

use crate::args::Global;
use crate::output::out;

/// Checks, and says what was and was not verified.
pub(super) async fn run(
    migrator: Migrator,
    g: &Global,
    single_head: bool,
    allow_modified: bool,
) -> anyhow::Result<()> {
    let options = Options {
        allow_modified,
        ..migrator.options().clone()
    };
    let migrator = migrator.with_options(options);
    let set = migrator.revisions()?;
    let heads = set.graph().heads();
    if single_head && heads.len() > 1 {
        return Err(
            GraphError::NotSingleHead(heads.into_iter().map(str::to_owned).collect()).into(),
        );
    }
    let verified = migrator.verify(&set).await?;
    if let Some(v) = &verified
        && !v.not_built.is_empty()
    {
        tracing::warn!(
            "{} applied revision(s) not verified because their component is not built here: {}; run `wasmig build` first to verify them",
            v.not_built.len(),
            v.not_built.join(", ")
        );
    }
    let count = set.revisions().len();
    if g.json {
        out!(
            "{}",
            json!({
                "ok": true,
                "revisions": count,
                "heads": heads,
                "applied": verified,
            })
        );
        return Ok(());
    }
    out!(
        "ok: {count} revision(s), {} head(s): {}",
        heads.len(),
        heads.join(", ")
    );
    let Some(v) = &verified else {
        out!("no database: applied revisions not verified");
        return Ok(());
    };
    out!(
        "ok: {} applied revision(s) match their recorded checksums",
        v.verified.len()
    );
    if !v.unrecorded.is_empty() {
        out!(
            "not verified: {} applied revision(s) without a recorded checksum (only stamped): {}",
            v.unrecorded.len(),
            v.unrecorded.join(", ")
        );
    }
    if !v.not_built.is_empty() {
        out!(
            "not verified: {} applied revision(s) whose component is not built: {}",
            v.not_built.len(),
            v.not_built.join(", ")
        );
    }
    if !v.modified.is_empty() {
        out!(
            "modified (allowed): {}",
            v.modified
                .iter()
                .map(|m| m.revision.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

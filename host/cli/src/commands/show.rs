//! `wasmig show REV`: one revision in full; `heads` / `LABEL@heads` for several; `current`
//! for the revision(s) the database is at.

use serde_json::json;
use wasmig::error::GraphError;
use wasmig::{Migrator, history};

use crate::args::Global;
use crate::output::out;

/// Prints the revision(s) `target` names.
pub(super) async fn run(migrator: &Migrator, g: &Global, target: &str) -> anyhow::Result<()> {
    let set = migrator.revisions()?;
    let (graph, revisions) = (set.graph(), set.revisions());
    if target == "current" {
        // As in Alembic, `show current` shows the revision(s) the database is at. A read
        // command: it does not create the embedded default database.
        let heads = migrator.heads_if_exists().await?.unwrap_or_default();
        for h in &heads {
            if graph.info(h).is_none() {
                return Err(GraphError::UnknownApplied(h.clone()).into());
            }
        }
        if heads.is_empty() {
            tracing::info!("the database is at base: no revision is applied");
        }
        if g.json {
            let out: Vec<_> = heads
                .iter()
                .map(|id| history::json(graph, revisions, id))
                .collect();
            out!("{}", json!({ "revisions": out }));
        } else {
            for id in &heads {
                print!("{}", history::verbose(graph, revisions, id, &heads));
            }
        }
        return Ok(());
    }
    // `heads` and `LABEL@heads` name several revisions (Alembic shows them all); with --json
    // they give `{"revisions": [...]}` as `show current` does, whatever the count, so the
    // shape follows from the argument, not from the graph.
    let many = target == "heads" || target.ends_with("@heads");
    let ids = graph.resolve_all(target)?;
    if g.json && many {
        let out: Vec<_> = ids
            .iter()
            .map(|id| history::json(graph, revisions, id))
            .collect();
        out!("{}", json!({ "revisions": out }));
    } else if g.json {
        out!("{}", history::json(graph, revisions, ids[0]));
    } else {
        for id in ids {
            print!("{}", history::verbose(graph, revisions, id, &[]));
        }
    }
    Ok(())
}

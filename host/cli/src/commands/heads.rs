//! `wasmig heads` and `wasmig branches`: the graph's heads and branch points (no database).

use serde_json::json;
use wasmig::{Migrator, history};

use crate::args::Global;
use crate::output::out;

/// Lists the heads (`--resolve-dependencies`: leaving out those another revision depends on).
pub(super) fn heads(
    migrator: &Migrator,
    g: &Global,
    resolve_dependencies: bool,
) -> anyhow::Result<()> {
    let set = migrator.revisions()?;
    let (graph, revisions) = (set.graph(), set.revisions());
    let heads = if resolve_dependencies {
        graph.real_heads()
    } else {
        graph.heads()
    };
    if g.json {
        out!("{}", json!({ "heads": heads }));
    } else {
        for id in heads {
            out!("{}", history::short(graph, revisions, id, &[]));
        }
    }
    Ok(())
}

/// Lists the branch points and the revisions that follow each.
pub(super) fn branches(migrator: &Migrator, g: &Global) -> anyhow::Result<()> {
    let set = migrator.revisions()?;
    let (graph, revisions) = (set.graph(), set.revisions());
    let points = graph.branch_points();
    if g.json {
        let out: Vec<_> = points
            .iter()
            .map(|id| {
                json!({
                    "revision": id,
                    "next_revisions": graph.info(id).map(|i| i.next_revisions),
                })
            })
            .collect();
        out!("{}", json!({ "branches": out }));
    } else {
        for id in points {
            out!("{}", history::short(graph, revisions, id, &[]));
            for next in graph.info(id).map(|i| i.next_revisions).unwrap_or_default() {
                out!("    -> {}", history::short(graph, revisions, &next, &[]));
            }
        }
    }
    Ok(())
}

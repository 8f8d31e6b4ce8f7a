//! `wasmig current` (`status`): where the database is, what failed, what is pending.

use serde_json::json;
use wasmig::Migrator;
use wasmig::graph::Direction;
use wasmig::history;

use crate::args::Global;
use crate::output::out;

/// Prints the database's state.
pub(super) async fn run(migrator: &Migrator, g: &Global) -> anyhow::Result<()> {
    let set = migrator.revisions()?;
    let (graph, revisions) = (set.graph(), set.revisions());
    let status = migrator.status(&set).await?;
    if g.json {
        let graph_heads = graph.heads();
        let out = json!({
            "current": status.heads,
            "heads": graph_heads,
            "head": (graph_heads.len() == 1).then(|| graph_heads[0]),
            "pending": status.pending,
            "failed": status.failed,
            "in_progress": status.in_progress,
            "partitions": status.partitions.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "dialect": status.dialect,
        });
        out!("{out}");
        return Ok(());
    }
    if status.heads.is_empty() {
        out!("current: base (nothing applied)");
    }
    for h in &status.heads {
        out!("current: {}", history::short(graph, revisions, h, &[]));
    }
    for f in &status.failed {
        out!(
            "failed: {} ({}; SQLSTATE {}); inspect the database, then `wasmig resolve {} --as applied` or `--as rolled-back`",
            f.revision,
            f.error,
            f.sqlstate.as_deref().unwrap_or("none"),
            f.revision
        );
    }
    for c in &status.in_progress {
        if let Some((_, parts)) = status.partitions.iter().find(|(r, _)| *r == c.revision) {
            let done = parts.iter().filter(|p| p.done).count();
            let held = parts.iter().filter(|p| !p.done && p.held).count();
            let batches: i64 = parts.iter().map(|p| p.batches).sum();
            out!(
                "in progress: {} (batched upgrade in {} partitions: {done} done, {held} held by a worker now, {batches} batch(es) committed since {}); `wasmig up` resumes it, and `wasmig up --workers N` on more machines joins it",
                c.revision,
                parts.len(),
                c.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
            continue;
        }
        out!(
            "in progress: {} (batched {}, {} batch(es) committed since {}, last at {}); `wasmig {}` resumes it",
            c.revision,
            c.direction,
            c.batches,
            c.started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            c.updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            match c.direction {
                Direction::Upgrade => "up",
                Direction::Downgrade => "down",
            }
        );
    }
    if status.pending.is_empty() {
        out!("up to date");
    } else {
        out!("pending ({}):", status.pending.len());
        for id in &status.pending {
            out!("  {}", history::short(graph, revisions, id, &[]));
        }
    }
    Ok(())
}

//! `wasmig stamp REV... [--purge]`: set the version table without running migrations.

use serde_json::json;
use wasmig::Migrator;

use crate::args::Global;
use crate::output::{self, out};

/// Stamps, and says how the heads moved.
pub(super) async fn run(
    migrator: &Migrator,
    g: &Global,
    targets: &[String],
    purge: bool,
) -> anyhow::Result<()> {
    let moved = migrator.stamp(targets, purge).await?;
    if moved.before == moved.after {
        tracing::info!(
            "nothing to do: the database is already at {}",
            output::heads(&moved.after)
        );
    } else {
        tracing::info!(
            "stamped: {} -> {} (no migration ran)",
            output::heads(&moved.before),
            output::heads(&moved.after)
        );
    }
    if g.json {
        out!("{}", json!({ "heads": moved.after }));
    }
    Ok(())
}

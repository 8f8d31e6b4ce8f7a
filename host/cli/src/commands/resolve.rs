//! `wasmig resolve REV --as applied|rolled-back`: clear a failed mark or a batched step's
//! checkpoint after looking at the database.

use serde_json::json;
use wasmig::Migrator;

use crate::args::{Global, Resolution};
use crate::output::{self, out};

/// Resolves, and says how the heads moved.
pub(super) async fn run(
    migrator: &Migrator,
    g: &Global,
    target: &str,
    state: Resolution,
) -> anyhow::Result<()> {
    let state = wasmig::migrator::Resolution::from(state);
    let moved = migrator.resolve(target, state).await?;
    tracing::info!(
        "resolved {} as {}: heads {} -> {}",
        moved.revision,
        state.as_str(),
        output::heads(&moved.before),
        output::heads(&moved.after)
    );
    if g.json {
        out!(
            "{}",
            json!({ "revision": moved.revision, "as": state.as_str(), "heads": moved.after })
        );
    }
    Ok(())
}

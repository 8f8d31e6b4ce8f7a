//! `wasmig rehash REV...`: accept an intended change to applied revisions.

use serde_json::json;
use wasmig::Migrator;

use crate::args::Global;
use crate::output::out;

/// Records the current checksums; `--json` lists the revisions whose checksum changed.
pub(super) async fn run(migrator: &Migrator, g: &Global, targets: &[String]) -> anyhow::Result<()> {
    let changed = migrator.rehash(targets).await?;
    if g.json {
        out!("{}", json!({ "rehashed": changed }));
    }
    Ok(())
}

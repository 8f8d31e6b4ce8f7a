//! `wasmig init [DIR]`: create a project.

use std::path::{Path, PathBuf};

use crate::args::Global;

/// Creates the project in `dir` (default: `-C`, else the current directory).
pub(super) fn run(g: &Global, dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = dir
        .map(Path::to_path_buf)
        .or_else(|| g.project.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let config = wasmig::scaffold::init(&dir)?;
    tracing::info!(
        "created {}; next: wasmig revision -m \"create a table\"",
        config.display()
    );
    Ok(())
}

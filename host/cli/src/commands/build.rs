//! `wasmig build`: build every revision written in Rust, Python, JavaScript or C.

use wasmig::Migrator;

/// Builds, and says how many components changed.
pub(super) fn run(migrator: &Migrator) -> anyhow::Result<()> {
    let changed = migrator.build()?;
    tracing::info!("built; {} component(s) changed", changed.len());
    Ok(())
}

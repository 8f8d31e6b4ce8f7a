//! The on-disk compile cache: a compiled component per (component bytes, engine
//! configuration), so the second run compiles nothing.
//!
//! Keys are SHA-256 of the component bytes plus a SHA-256 of wasmtime's
//! `precompile_compatibility_hash` (wasmtime version and every setting that affects code
//! generation). Files are written to a temporary name and renamed, so a crashed or
//! concurrent run never leaves a torn entry. `Component::deserialize_file` is `unsafe`
//! because it trusts its input: only files wasmig wrote under the key are ever loaded, and
//! an entry that fails to load is recompiled and overwritten.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheStatus {
    /// Loaded from the cache: nothing was compiled.
    Hit,
    /// Compiled now and stored.
    Miss,
    /// Compiled now; the cache is disabled (`--no-cache`).
    Disabled,
}

/// Feeds `Hash` output into SHA-256, for a key that is stable across processes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn entry_path(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let mut engine_hash = ShaHasher(Sha256::new());
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let engine_key = hex::encode(&engine_hash.0.finalize()[..8]);
    let component_key = hex::encode(Sha256::digest(bytes));
    dir.join(format!("{component_key}-{engine_key}.cwasm"))
}

/// Loads a compiled component from the cache, or compiles and stores it.
///
/// # Errors
/// When the bytes are not a valid component. Cache I/O problems only log a warning.
pub(crate) fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
) -> wasmtime::Result<(Component, CacheStatus)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, CacheStatus::Disabled));
    };
    let path = entry_path(dir, engine, bytes);
    if path.is_file() {
        // SAFETY: the file is at a key only wasmig writes, for this engine configuration,
        // written atomically by `store` below.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, CacheStatus::Hit)),
            Err(e) => crate::warn!("ignoring unusable cache entry {}: {e}", path.display()),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, dir, &path) {
        crate::warn!("cannot write the compile cache in {}: {e:#}", dir.display());
    }
    Ok((component, CacheStatus::Miss))
}

fn store(component: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize()?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
    ));
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

//! The on-disk compile cache: a compiled component per (component bytes, engine
//! configuration), so the second run compiles nothing.
//!
//! Keys are SHA-256 of the component bytes plus a SHA-256 of wasmtime's
//! `precompile_compatibility_hash` (wasmtime version and every setting that affects code
//! generation). Files are written to a temporary name and renamed, so a crashed or
//! concurrent run never leaves a torn entry.
//!
//! **Entries are authenticated.** A compiled entry is native code that wasmtime loads
//! without checking it (`Component::deserialize` is `unsafe` for that reason), and the cache
//! directory sits in the project, which the author of an untrusted migration controls: a
//! forged `.cwasm` committed next to a migration would run outside the sandbox. So each
//! entry starts with an HMAC-SHA-256 of its contents under a per-user key kept outside every
//! project ([`key_path`], created on first use, mode 0600), and an entry whose tag does not
//! verify is never deserialized: it is recompiled and overwritten, with a warning. Without
//! a usable key the cache is not used at all.

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

/// Length of the tag that starts every entry.
const TAG_LEN: usize = 32;

/// Where the per-user cache key lives: `$WASMIG_CACHE_KEY` if set, else
/// `$XDG_CACHE_HOME/wasmig/cache.key`, else `$HOME/.cache/wasmig/cache.key`.
pub(crate) fn key_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMIG_CACHE_KEY") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmig").join("cache.key"))
}

/// Reads the cache key, creating it (32 random bytes, readable by the user only) if absent.
/// Two processes creating it at once agree: the file is linked into place atomically and
/// whoever loses reads the winner's key.
fn load_key() -> anyhow::Result<[u8; 32]> {
    let path =
        key_path().ok_or_else(|| anyhow::anyhow!("neither HOME nor XDG_CACHE_HOME is set"))?;
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".cache.key.{}", std::process::id()));
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        write_private(&tmp, &key)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = linked
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(e.into());
        }
    }
    let bytes = std::fs::read(&path)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a 32-byte key; delete it to make a new one",
            path.display()
        )
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// HMAC-SHA-256 (RFC 2104) of `message` under `key`.
fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; TAG_LEN] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    let key = match load_key() {
        Ok(key) => key,
        Err(e) => {
            crate::warn!("compile cache disabled: cannot use its key: {e:#}");
            return Ok((Component::new(engine, bytes)?, CacheStatus::Disabled));
        }
    };
    let path = entry_path(dir, engine, bytes);
    if path.is_file() {
        match load_entry(engine, &key, &path) {
            Ok(component) => return Ok((component, CacheStatus::Hit)),
            Err(e) => crate::warn!(
                "ignoring cache entry {}: {e:#}; compiling instead",
                path.display()
            ),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, &key, dir, &path) {
        crate::warn!("cannot write the compile cache in {}: {e:#}", dir.display());
    }
    Ok((component, CacheStatus::Miss))
}

fn load_entry(engine: &Engine, key: &[u8; 32], path: &Path) -> anyhow::Result<Component> {
    let data = std::fs::read(path)?;
    if data.len() < TAG_LEN || !same(&data[..TAG_LEN], &hmac(key, &data[TAG_LEN..])) {
        anyhow::bail!("it was not written by wasmig for this user (its tag does not verify)");
    }
    // SAFETY: the tag proves that this process's user wrote these exact bytes with
    // `store` below, from `Component::serialize` of an engine whose configuration is part
    // of the file name; wasmtime still checks the engine compatibility header.
    unsafe { Component::deserialize(engine, &data[TAG_LEN..]) }
        .map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn store(component: &Component, key: &[u8; 32], dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize()?;
    let mut data = Vec::with_capacity(TAG_LEN + serialized.len());
    data.extend_from_slice(&hmac(key, &serialized));
    data.extend_from_slice(&serialized);
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
    ));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2_shape() {
        // RFC 4231 case 2 uses a 4-byte key; our keys are 32 bytes, zero-padded to the block
        // like any short key, so a 4-byte key padded with zeros gives the same tag.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = hmac(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}

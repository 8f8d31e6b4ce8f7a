//! The on-disk compile cache: a compiled component per (component bytes, engine
//! configuration), so the second run compiles nothing.
//!
//! Keys are SHA-256 of the component bytes plus a SHA-256 of wasmtime's
//! `precompile_compatibility_hash` (wasmtime version and every setting that affects code
//! generation). Files are written to a fresh randomly named file (never an existing one)
//! and renamed into place, so a crashed or concurrent run never leaves a torn entry.
//!
//! **Entries are authenticated.** A compiled entry is native code that wasmtime loads
//! without checking it (`Component::deserialize` is `unsafe` for that reason), and the cache
//! directory sits in the project, which the author of an untrusted migration controls: a
//! forged `.cwasm` committed next to a migration would run outside the sandbox. So each
//! entry ends with an HMAC-SHA-256 under a per-user key kept outside every project
//! ([`key_path`], created on first use, mode 0600) of a domain-separation label, the entry's
//! name (the component's hash and the engine fingerprint) and the compiled bytes before it,
//! so that a valid entry renamed to another component's name does not verify either. An entry
//! whose tag does not verify is never deserialized: it is recompiled and overwritten, with a
//! warning. Without a usable key the cache is not used at all; a key inside the project, not
//! owned by the user, open to other users, or in a directory others can write to is not
//! usable.
//!
//! **Entries are mapped, not copied** (issue 18: a Python component's 35 MB of compiled
//! CPython was read into memory to check its tag and then copied again by
//! `Component::deserialize`). The tag is checked by reading the file through one open
//! descriptor, a buffer at a time, and wasmtime then maps that same file
//! (`Component::deserialize_file` on `/proc/self/fd/N`, never the path again, which another
//! process could have renamed something over): pages of code that never run are never
//! loaded. The tag trails the compiled bytes because wasmtime maps a file from its first byte;
//! the mapping holds the checked bytes and the tag, nothing else. A mapping shows later writes
//! to the file, so only a file that no one but its owner, this user, can write is mapped
//! (wasmig never writes an entry in place: it renames a new file over it); any other file, and
//! every file where `/proc` is missing, is read into memory and checked and loaded from
//! there, as before.

use std::hash::{Hash, Hasher};
use std::io::Read as _;
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
    /// Compiled earlier in this process, for another target of a fleet: nothing was
    /// compiled or read.
    Reused,
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

/// The layout of an entry, hashed into every entry's name: entries of an earlier layout (the
/// tag before the compiled bytes) are not found, rather than found and rejected with a
/// warning.
const ENTRY_LAYOUT: &[u8] = b"compiled bytes, then tag (2)";

/// The entry's name without `.cwasm`: what it claims to be the compilation of.
fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = ShaHasher(Sha256::new());
    engine_hash.write(ENTRY_LAYOUT);
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let engine_key = hex::encode(&engine_hash.0.finalize()[..8]);
    let component_key = hex::encode(Sha256::digest(bytes));
    format!("{component_key}-{engine_key}")
}

/// Starts every tagged message, so a tag cannot be reused for anything else the key signs
/// (nor one of the first layout's, whose tag led its entry, for this one).
const TAG_LABEL: &[u8] = b"wasmig compile cache entry v2\0";

/// The tag of an entry: its name and its compiled bytes, under `key`.
fn entry_tag(key: &[u8; 32], name: &str, serialized: &[u8]) -> [u8; TAG_LEN] {
    let mut tag = EntryTag::new(key, name);
    tag.update(serialized);
    tag.finish()
}

/// [`entry_tag`] over compiled bytes fed a piece at a time.
struct EntryTag(Hmac);

impl EntryTag {
    fn new(key: &[u8; 32], name: &str) -> Self {
        let mut mac = Hmac::new(key);
        mac.update(TAG_LABEL);
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        EntryTag(mac)
    }

    fn update(&mut self, serialized: &[u8]) {
        self.0.update(serialized);
    }

    fn finish(self) -> [u8; TAG_LEN] {
        self.0.finish()
    }
}

/// Length of the tag that ends every entry.
const TAG_LEN: usize = 32;

/// Where the per-user cache key lives: `$WASMIG_CACHE_KEY` if set, else
/// `$XDG_CACHE_HOME/wasmig/cache.key`, else `$HOME/.cache/wasmig/cache.key`.
///
/// Only the real process environment counts: `config` never loads a project's `.env` into
/// it, so a project cannot choose its own key.
pub(crate) fn key_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMIG_CACHE_KEY") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmig").join("cache.key"))
}

/// Reads the cache key for a run in `project_root`; see [`load_key_at`].
fn load_key(project_root: &Path) -> anyhow::Result<[u8; 32]> {
    let path =
        key_path().ok_or_else(|| anyhow::anyhow!("neither HOME nor XDG_CACHE_HOME is set"))?;
    load_key_at(&path, project_root)
}

/// Reads the cache key at `path`, creating it (32 random bytes, readable by the user only) if
/// absent. Two processes creating it at once agree: the file is linked into place atomically
/// and whoever loses reads the winner's key.
///
/// Whoever can read or replace the key can forge native code for every project, so it is
/// refused when it lies inside the project (whose author could have put it there), is not
/// owned by the current user, is readable or writable by anyone else, or sits in a directory
/// that others can write to.
fn load_key_at(path: &Path, project_root: &Path) -> anyhow::Result<[u8; 32]> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} is not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    // Compare real locations: a symlink must not hide that the key is in the project.
    let dir = dir.canonicalize()?;
    let path = dir.join(name);
    let real = path.canonicalize().unwrap_or_else(|_| path.clone());
    let root = project_root
        .canonicalize()
        .unwrap_or_else(|_| project_root.to_path_buf());
    if real.starts_with(&root) {
        anyhow::bail!(
            "the key {} is inside the project {}, whose author could have chosen it; keep it outside every project (unset WASMIG_CACHE_KEY and XDG_CACHE_HOME to use ~/.cache/wasmig/cache.key)",
            real.display(),
            root.display()
        );
    }
    check_key_dir(&dir)?;
    if !path.exists() {
        let tmp = dir.join(format!(".cache.key.{}", uuid::Uuid::new_v4()));
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
    // Check the file that is actually read, not whatever the path names a moment later.
    let mut file = std::fs::File::open(&path)?;
    check_key_file(&real, &file.metadata()?)?;
    let mut bytes = Vec::with_capacity(33);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 33), &mut bytes)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a 32-byte key; delete it to make a new one",
            path.display()
        )
    })
}

/// Creates `dir` and its missing parents, readable by the user only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses a key directory that someone else could swap the key in.
#[cfg(unix)]
fn check_key_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir)?;
    if meta.uid() != current_uid() && meta.uid() != 0 {
        anyhow::bail!(
            "the directory {} of the key belongs to another user (uid {}); keep the key in a directory of your own (WASMIG_CACHE_KEY)",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "the directory {} of the key is writable by other users (mode {:o}); run `chmod go-w {}`",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_dir(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Refuses a key that is not a private file of the current user.
#[cfg(unix)]
fn check_key_file(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file; delete it", path.display());
    }
    if meta.uid() != current_uid() {
        anyhow::bail!(
            "the key {} belongs to another user (uid {}); delete it to make a new one, or point WASMIG_CACHE_KEY at your own",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        anyhow::bail!(
            "the key {} is readable or writable by other users (mode {:o}); run `chmod 600 {}`, or delete it to make a new one",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_file(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file; delete it", path.display());
    }
    Ok(())
}

#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Tags small files wasmig keeps beside the compile cache (the checksum memo of applied
/// revisions) under the same per-user key as its entries, so that a file the project's
/// author wrote, or one copied from another project's, does not verify. Each kind of file
/// has its own label; the tag covers the label, the file's name and its body.
pub struct Sealer {
    key: [u8; 32],
}

impl Sealer {
    /// The key of a run in `project_root`, made on first use (see [`load_key_at`]).
    ///
    /// # Errors
    /// When the key is unusable: inside the project, not the user's own, open to others.
    pub fn new(project_root: &Path) -> anyhow::Result<Self> {
        Ok(Sealer {
            key: load_key(project_root)?,
        })
    }

    /// The tag of `body`, a file named `name`, of the kind `label`.
    pub fn tag(&self, label: &str, name: &str, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::new(&self.key);
        for part in [label.as_bytes(), name.as_bytes()] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(body);
        mac.finish()
    }

    /// Whether `tag` is [`Sealer::tag`] of the same (compared without an early exit).
    pub fn verifies(&self, label: &str, name: &str, body: &[u8], tag: &[u8]) -> bool {
        same(&self.tag(label, name, body), tag)
    }
}

/// HMAC-SHA-256 (RFC 2104) under `key` of the concatenation of `message`.
#[cfg(test)]
fn hmac(key: &[u8; 32], message: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut mac = Hmac::new(key);
    for part in message {
        mac.update(part);
    }
    mac.finish()
}

/// HMAC-SHA-256 (RFC 2104) under a 32-byte key, of a message fed a piece at a time.
struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    fn new(key: &[u8; 32]) -> Self {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        Hmac {
            inner: Sha256::new().chain_update(pad(0x36)),
            outer: Sha256::new().chain_update(pad(0x5c)),
        }
    }

    fn update(&mut self, part: &[u8]) {
        self.inner.update(part);
    }

    fn finish(self) -> [u8; TAG_LEN] {
        self.outer
            .chain_update(self.inner.finalize())
            .finalize()
            .into()
    }
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Loads a compiled component from the cache, or compiles and stores it. `project_root` is
/// the project being run: a key inside it is refused.
///
/// # Errors
/// When the bytes are not a valid component. Cache I/O problems only log a warning.
pub(crate) fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    project_root: &Path,
    bytes: &[u8],
) -> wasmtime::Result<(Component, CacheStatus)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, CacheStatus::Disabled));
    };
    let key = match load_key(project_root) {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!("compile cache disabled: cannot use its key: {e:#}");
            return Ok((Component::new(engine, bytes)?, CacheStatus::Disabled));
        }
    };
    let name = entry_name(engine, bytes);
    let path = dir.join(format!("{name}.cwasm"));
    if path.is_file() {
        match load_entry(engine, &key, &name, &path) {
            Ok(component) => return Ok((component, CacheStatus::Hit)),
            Err(e) => tracing::warn!(
                "ignoring cache entry {}: {e:#}; compiling instead",
                path.display()
            ),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, &key, dir, &name) {
        tracing::warn!("cannot write the compile cache in {}: {e:#}", dir.display());
    }
    Ok((component, CacheStatus::Miss))
}

/// The cache's entry for these component bytes, if there is one and it verifies; `None`
/// otherwise, saying nothing (the [`load_or_compile`] that follows warns about an entry
/// that does not verify, and compiles).
pub(crate) fn load_cached(
    engine: &Engine,
    dir: &Path,
    project_root: &Path,
    bytes: &[u8],
) -> Option<Component> {
    let key = load_key(project_root).ok()?;
    let name = entry_name(engine, bytes);
    let path = dir.join(format!("{name}.cwasm"));
    if !path.is_file() {
        return None;
    }
    load_entry(engine, &key, &name, &path).ok()
}

/// Whether the cache directory holds an entry for these component bytes (not whether it
/// verifies: [`load_or_compile`] checks that).
pub(crate) fn has_entry(engine: &Engine, dir: &Path, bytes: &[u8]) -> bool {
    dir.join(format!("{}.cwasm", entry_name(engine, bytes)))
        .is_file()
}

/// How a verified entry was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loading {
    /// Mapped from the file: pages of code are read when they first run.
    Mapped,
    /// Read into memory and deserialized from there (a file others could write, or no
    /// `/proc`).
    Read,
}

fn load_entry(
    engine: &Engine,
    key: &[u8; 32],
    name: &str,
    path: &Path,
) -> anyhow::Result<Component> {
    let (component, how) = load_entry_as(engine, key, name, path)?;
    tracing::debug!(
        "cache entry {} {}",
        path.display(),
        match how {
            Loading::Mapped => "verified and mapped",
            Loading::Read => "verified and read into memory",
        }
    );
    Ok(component)
}

/// The message of an entry that fails its check.
const NOT_OURS: &str =
    "it was not written by wasmig for this user and component (its tag does not verify)";

fn load_entry_as(
    engine: &Engine,
    key: &[u8; 32],
    name: &str,
    path: &Path,
) -> anyhow::Result<(Component, Loading)> {
    // Everything below reads this one open file: what the path names later does not matter.
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        anyhow::bail!("it is not a regular file");
    }
    let Some(fd_path) = mappable(&file, &meta) else {
        return Ok((read_entry(engine, key, name, &mut file)?, Loading::Read));
    };
    let len = usize::try_from(meta.len())?;
    let Some(serialized_len) = len.checked_sub(TAG_LEN) else {
        anyhow::bail!("{NOT_OURS}");
    };
    let mut tag = EntryTag::new(key, name);
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = serialized_len;
    while left > 0 {
        let n = left.min(buf.len());
        file.read_exact(&mut buf[..n])?;
        tag.update(&buf[..n]);
        left -= n;
    }
    let mut stored = [0u8; TAG_LEN];
    file.read_exact(&mut stored)?;
    // The file must end where its length said: nothing unchecked after the tag.
    if file.read(&mut buf[..1])? != 0 || !same(&stored, &tag.finish()) {
        anyhow::bail!("{NOT_OURS}");
    }
    // SAFETY: the tag proves that this process's user wrote the bytes of this open file before
    // the tag with `store` below under this name, that is from `Component::serialize` of these
    // component bytes by an engine whose configuration is part of the name, and that the file
    // holds nothing else. `/proc/self/fd/N` opens this same file, whatever was renamed over its
    // path since. Only its owner (this user) or root can write it (`mappable`), and wasmig
    // never does in place, so the mapping keeps the checked bytes for the component's life.
    // wasmtime still checks the engine compatibility header.
    let component = unsafe { Component::deserialize_file(engine, &fd_path) }
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // The mapping is of the file's length as wasmtime saw it: the length checked above.
    let image = component.image_range();
    if image.end.addr() - image.start.addr() != len {
        anyhow::bail!("it changed while it was loaded");
    }
    Ok((component, Loading::Mapped))
}

/// The path that maps `file` itself, when it may be mapped: `/proc/self/fd/N` on Linux, for a
/// file of this user that no one else can write (a mapping shows later writes to the file,
/// where a copy in memory does not).
#[cfg(target_os = "linux")]
fn mappable(file: &std::fs::File, meta: &std::fs::Metadata) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::io::AsRawFd as _;
    if meta.uid() != current_uid() || meta.mode() & 0o022 != 0 {
        return None;
    }
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // The same file through `/proc`, or no mapping (`/proc` not mounted, or something else).
    let through = std::fs::metadata(&path).ok()?;
    (through.dev() == meta.dev() && through.ino() == meta.ino()).then_some(path)
}

#[cfg(not(target_os = "linux"))]
fn mappable(_file: &std::fs::File, _meta: &std::fs::Metadata) -> Option<PathBuf> {
    None
}

/// Reads a whole entry into memory, checks it and deserializes it from there.
fn read_entry(
    engine: &Engine,
    key: &[u8; 32],
    name: &str,
    file: &mut std::fs::File,
) -> anyhow::Result<Component> {
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let Some(serialized_len) = data.len().checked_sub(TAG_LEN) else {
        anyhow::bail!("{NOT_OURS}");
    };
    let (serialized, stored) = data.split_at(serialized_len);
    if !same(stored, &entry_tag(key, name, serialized)) {
        anyhow::bail!("{NOT_OURS}");
    }
    // SAFETY: the tag proves that this process's user wrote these exact bytes with
    // `store` below under this name, that is from `Component::serialize` of these component
    // bytes by an engine whose configuration is part of the name; wasmtime still checks the
    // engine compatibility header. `deserialize` copies them: later writes to the file do not
    // reach the component.
    unsafe { Component::deserialize(engine, serialized) }.map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn store(component: &Component, key: &[u8; 32], dir: &Path, name: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut data = component.serialize()?;
    let tag = entry_tag(key, name, &data);
    data.extend_from_slice(&tag);
    // A fresh random name opened with `create_new`: never a file (or a symlink) planted in
    // the project's cache directory under a predictable name.
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    if let Err(e) = write_private(&tmp, &data) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    if let Err(e) = std::fs::rename(&tmp, dir.join(format!("{name}.cwasm"))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
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
        let tag = hmac(&key, &[b"what do ya", b" want for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A fresh directory under the system temporary directory, private to the user.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wasmig-unit-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        create_private_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn a_new_key_is_private_and_read_back() {
        let home = scratch("home");
        let project = scratch("project");
        let path = home.join("wasmig").join("cache.key");
        let key = load_key_at(&path, &project).unwrap();
        assert_eq!(load_key_at(&path, &project).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
    }

    #[test]
    fn a_key_inside_the_project_is_refused() {
        let project = scratch("project");
        let err = load_key_at(&project.join("keys").join("cache.key"), &project).unwrap_err();
        assert!(err.to_string().contains("is inside the project"), "{err}");

        // Also through a symlink that points into the project.
        #[cfg(unix)]
        {
            let elsewhere = scratch("elsewhere");
            std::os::unix::fs::symlink(project.join("keys"), elsewhere.join("keys")).unwrap();
            let err = load_key_at(&elsewhere.join("keys").join("cache.key"), &project).unwrap_err();
            assert!(err.to_string().contains("is inside the project"), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = scratch("home");
        let path = home.join("cache.key");
        let key = load_key_at(&path, &scratch("project")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key_at(&path, &scratch("project")).unwrap_err();
        assert!(
            err.to_string()
                .contains("readable or writable by other users")
                && err.to_string().contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_key_at(&path, &scratch("project")).unwrap(), key);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_in_a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let shared = scratch("shared");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = load_key_at(&shared.join("cache.key"), &scratch("project")).unwrap_err();
        assert!(
            err.to_string().contains("writable by other users")
                && err.to_string().contains("chmod go-w"),
            "{err}"
        );
        assert!(
            !shared.join("cache.key").exists(),
            "a key was created anyway"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_of_another_user_is_refused() {
        let home = scratch("home");
        let path = home.join("cache.key");
        if current_uid() == 0 {
            load_key_at(&path, &scratch("project")).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        } else {
            // Without root a file cannot be given away; link one that root owns instead.
            std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        }
        let err = load_key_at(&path, &scratch("project")).unwrap_err();
        assert!(err.to_string().contains("belongs to another user"), "{err}");
    }

    #[test]
    fn an_entry_tag_covers_the_entry_name() {
        let key = [7u8; 32];
        let a = "aaaa-0000";
        let b = "bbbb-0000";
        assert_ne!(entry_tag(&key, a, b"code"), entry_tag(&key, b, b"code"));
        assert_ne!(entry_tag(&key, a, b"code"), entry_tag(&key, a, b"Code"));
        // The length prefix keeps name and bytes apart.
        assert_ne!(entry_tag(&key, "ab", b"c"), entry_tag(&key, "a", b"bc"));
        // And the label keeps it apart from a plain HMAC of the same bytes.
        assert_ne!(entry_tag(&key, "", b""), hmac(&key, &[&[0u8; 8]]));
    }

    /// An entry made by Winch is never found by Cranelift, nor the other way round: each
    /// engine's code is loaded only by the engine that made it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn each_compiler_names_its_entries_apart() {
        let engine = |strategy| {
            let mut config = wasmtime::Config::new();
            config.epoch_interruption(true);
            config.wasm_component_model(true);
            config.strategy(strategy);
            Engine::new(&config).unwrap()
        };
        let cranelift = engine(wasmtime::Strategy::Cranelift);
        let winch = engine(wasmtime::Strategy::Winch);
        let bytes = wat::parse_str("(component)").unwrap();
        assert_ne!(entry_name(&cranelift, &bytes), entry_name(&winch, &bytes));
        // And what one serialized, the other refuses to load.
        let compiled = Component::new(&winch, &bytes).unwrap().serialize().unwrap();
        // SAFETY: the bytes were serialized by wasmtime just above.
        assert!(unsafe { Component::deserialize(&cranelift, &compiled) }.is_err());
    }

    /// A compiled component with some code in it, its entry's name, and a key.
    fn compiled() -> (Engine, Component, String, [u8; 32]) {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let wat = r#"(component (core module (func (export "f") (result i32) i32.const 7)))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let component = Component::new(&engine, &bytes).unwrap();
        let name = entry_name(&engine, &bytes);
        (engine, component, name, [9u8; 32])
    }

    #[test]
    fn an_entry_is_mapped_once_its_tag_verifies() {
        let (engine, component, name, key) = compiled();
        let dir = scratch("cache");
        store(&component, &key, &dir, &name).unwrap();
        let path = dir.join(format!("{name}.cwasm"));
        let (_, how) = load_entry_as(&engine, &key, &name, &path).unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(how, Loading::Mapped);
        #[cfg(not(target_os = "linux"))]
        assert_eq!(how, Loading::Read);

        // Under another key, or another component's name, it does not verify.
        let err = load_entry_as(&engine, &[8u8; 32], &name, &path).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        let err = load_entry_as(&engine, &key, "other-0000", &path).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn an_entry_changed_anywhere_is_never_deserialized() {
        let (engine, component, name, key) = compiled();
        let dir = scratch("cache");
        store(&component, &key, &dir, &name).unwrap();
        let path = dir.join(format!("{name}.cwasm"));
        let good = std::fs::read(&path).unwrap();
        let serialized = &good[..good.len() - TAG_LEN];
        let mut forgeries = Vec::new();
        for at in [
            0,
            serialized.len() / 2,
            serialized.len() - 1,
            good.len() - 1,
        ] {
            let mut forged = good.clone();
            forged[at] ^= 0x01;
            forgeries.push(forged);
        }
        // Bytes after the tag (wasmtime would map them too), the tag missing or alone, and
        // the first layout (the tag first, over the compiled bytes).
        forgeries.push([good.as_slice(), b"x"].concat());
        forgeries.push(serialized.to_vec());
        forgeries.push(good[good.len() - TAG_LEN..].to_vec());
        forgeries.push(Vec::new());
        let first_layout = hmac(
            &key,
            &[
                b"wasmig compile cache entry v1\0",
                &(name.len() as u64).to_le_bytes(),
                name.as_bytes(),
                serialized,
            ],
        );
        forgeries.push([first_layout.as_slice(), serialized].concat());
        for (i, forged) in forgeries.iter().enumerate() {
            std::fs::write(&path, forged).unwrap();
            let err = load_entry_as(&engine, &key, &name, &path).unwrap_err();
            assert!(
                err.to_string().contains("does not verify"),
                "forgery {i}: {err}"
            );
        }
        std::fs::write(&path, &good).unwrap();
        load_entry_as(&engine, &key, &name, &path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_entry_others_can_write_is_read_into_memory_and_still_checked() {
        use std::os::unix::fs::PermissionsExt as _;
        let (engine, component, name, key) = compiled();
        let dir = scratch("cache");
        store(&component, &key, &dir, &name).unwrap();
        let path = dir.join(format!("{name}.cwasm"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let (_, how) = load_entry_as(&engine, &key, &name, &path).unwrap();
        assert_eq!(how, Loading::Read, "a file others can write was mapped");

        let mut forged = std::fs::read(&path).unwrap();
        forged[0] ^= 0x01;
        std::fs::write(&path, &forged).unwrap();
        let err = load_entry_as(&engine, &key, &name, &path).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}

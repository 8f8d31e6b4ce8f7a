//! Untrusted mode's preparations: what a checkout may not choose, where an untrusted build
//! works, and which toolchain it runs.
//!
//! An untrusted checkout chooses neither the toolchain nor cargo's configuration: cargo and
//! rustup read `.cargo/config.toml` and `rust-toolchain.toml` from the directory they run
//! in and its parents, and both can name programs to run (a `rustc-wrapper`, a linker, a
//! toolchain path), even for `cargo fetch`. So a checkout holding either is refused, cargo
//! runs from a copy of the sources outside the checkout, and the toolchain's binaries are
//! called by their paths (no rustup or pyenv proxy that would read the checkout).
//!
//! Not here: the jail itself (`jail`), confined reads (`confined`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::error::{BuildError, ConfigError};

/// Files that make cargo or rustup run what the checkout names. (A pyenv or nvm version
/// file needs no refusal: wasmig resolves those proxies itself, from outside the checkout.)
const TOOLCHAIN_FILES: &[&str] = &[".cargo", "rust-toolchain", "rust-toolchain.toml"];

/// Directories not searched for [`TOOLCHAIN_FILES`]: wasmig's own and build outputs.
const NOT_SEARCHED: &[&str] = &[".git", ".wasmig", "target", "node_modules", ".wasmig-sdk"];

/// Refuses a checkout with files that choose the toolchain or cargo's configuration: in
/// the project, and in its parents up to the repository's root (the directory with
/// `.git`), where cargo and rustup would also look.
///
/// # Errors
/// [`ConfigError`] (exit 3) naming every such file.
pub fn refuse_toolchain_files(root: &Path) -> Result<(), ConfigError> {
    let mut found = Vec::new();
    search(root, &mut found);
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if let Some(repository) = root.ancestors().find(|d| d.join(".git").exists()) {
        for dir in root.ancestors().skip(1) {
            if !dir.starts_with(repository) {
                break;
            }
            for name in TOOLCHAIN_FILES {
                let path = dir.join(name);
                if path.symlink_metadata().is_ok() {
                    found.push(path);
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(ConfigError::new(format!(
        "untrusted mode refuses a checkout that chooses its own toolchain or cargo configuration, which could run the author's programs during the build: {}; remove them from the change, or run it trusted",
        found
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn search(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let path = entry.path();
        if TOOLCHAIN_FILES.iter().any(|f| name == *f) {
            found.push(path);
            continue;
        }
        if NOT_SEARCHED.iter().any(|n| name == *n) {
            continue;
        }
        // Not into links: what they lead to is refused where it is read (`confined`).
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            search(&path, found);
        }
    }
}

/// An untrusted run's working directory, outside the checkout (so nothing under the
/// checkout's `.wasmig/` is read, and nothing is written into the checkout), private to
/// this process, and removed when the last [`crate::config::Project`] holding it is dropped.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Makes a new directory under the system's temporary directory, readable by this user
    /// only.
    ///
    /// # Errors
    /// I/O errors.
    pub fn new() -> std::io::Result<Arc<Self>> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            "wasmig-untrusted-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Arc::new(PrivateDir { path }))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The Rust toolchain an untrusted build runs: its sysroot, asked of `rustc` from a
/// directory outside the checkout (the operator's default toolchain, or `RUSTUP_TOOLCHAIN`).
///
/// # Errors
/// [`BuildError`] when there is no Rust toolchain.
pub fn rust_sysroot(outside: &Path) -> Result<PathBuf, BuildError> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(outside)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError {
            message: format!("cannot run rustc ({e}); install Rust from https://rustup.rs"),
        })?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || text.is_empty() {
        return Err(BuildError {
            message: format!(
                "`rustc --print sysroot` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(PathBuf::from(text))
}

/// Cargo's home (registry and configuration): `CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// The program a proxy would run: a pyenv shim resolved with `pyenv which` from a
/// directory outside the checkout (a shim reads `.python-version` from where it runs).
/// Other programs are returned as they are.
pub fn real_program(program: &Path, outside: &Path) -> PathBuf {
    let is_shim = program
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "shims");
    if !is_shim {
        return program.to_path_buf();
    }
    let Some(name) = program.file_name() else {
        return program.to_path_buf();
    };
    Command::new("pyenv")
        .arg("which")
        .arg(name)
        .current_dir(outside)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

/// The installation a program belongs to, for the jail to read: the parent of its `bin`
/// directory (`/root/.pyenv/versions/3.11.7` for `.../bin/python3`), for the program as
/// named and as its links resolve. Never the home directory or a parent of it (a program in
/// `~/bin` lends only that directory).
pub fn installation_dirs(program: &Path) -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut dirs = Vec::new();
    let canonical = program.canonicalize().ok();
    for path in std::iter::once(program.to_path_buf()).chain(canonical) {
        let Some(bin) = path.parent() else { continue };
        let prefix = bin
            .parent()
            .filter(|p| p.parent().is_some() && home.as_ref().is_none_or(|h| !h.starts_with(p)));
        dirs.push(prefix.unwrap_or(bin).to_path_buf());
    }
    dirs
}

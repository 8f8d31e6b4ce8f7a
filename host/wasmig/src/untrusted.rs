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
        let temp = std::env::temp_dir();
        sweep_stale(&temp);
        let path = temp.join(format!(
            "{PRIVATE_PREFIX}{}-{}",
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

/// How a [`PrivateDir`]'s name begins; the creating process's pid follows, then a dash.
const PRIVATE_PREFIX: &str = "wasmig-untrusted-";

/// Removes the private directories under `temp` that a killed run left behind (its `Drop`
/// never ran): this user's, named by [`PrivateDir::new`], whose process no longer exists.
/// Another user's, a symbolic link, or one whose pid is running (or was reused) is left
/// alone. Best effort: an error leaves the directory for the next run.
fn sweep_stale(temp: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PRIVATE_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = std::fs::remove_dir_all(entry.path());
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

#[cfg(test)]
mod sweep_tests {
    use super::*;

    /// A private directory whose process is gone is removed; one of a running process
    /// (this one), a file of another name and a symbolic link are not.
    #[test]
    fn stale_private_directories_are_swept_and_nothing_else() {
        let base = std::env::temp_dir().join(format!(
            "wasmig-sweep-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&base).unwrap();
        let temp = Dir(base);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = temp.path().join(format!("{PRIVATE_PREFIX}{dead}-abc"));
        std::fs::create_dir_all(stale.join("build")).unwrap();
        std::fs::write(stale.join("build/out"), b"left behind").unwrap();
        let live = temp
            .path()
            .join(format!("{PRIVATE_PREFIX}{}-def", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let other = temp.path().join("wasmig-untrusted-notapid-x");
        std::fs::create_dir(&other).unwrap();
        let target = temp.path().join("kept");
        std::fs::create_dir(&target).unwrap();
        let link = temp.path().join(format!("{PRIVATE_PREFIX}{dead}-link"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        sweep_stale(temp.path());
        assert!(!stale.exists(), "the dead run's directory is swept");
        assert!(live.exists(), "a running process's directory stays");
        assert!(other.exists());
        assert!(
            link.symlink_metadata().is_ok(),
            "a link is not followed nor removed"
        );
        assert!(target.exists());
    }

    /// A scratch directory, removed when the test ends.
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

//! Paths in a project, confined to it: every file wasmig reads from a project, copies out
//! of it or writes into it is resolved first, and refused when the path or a symbolic link
//! on its way leads outside the project's directory. Links that stay inside are followed.
//! This holds in every mode: a checkout is the author's, and a link to `/etc/passwd` or to
//! the CI job's credentials named `up.sql` must not put that file in a build log or the
//! database.
//!
//! Not here: the jail around the toolchains (`jail`), which does not cover wasmig itself.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// `path` resolved (symbolic links followed), checked to lie in `root` (resolved too).
/// A path that does not exist yet is checked through its nearest existing ancestor.
///
/// # Errors
/// [`ConfigError`] (exit 3) naming the path and saying it leads outside the project.
pub fn resolve(root: &Path, path: &Path) -> Result<PathBuf, ConfigError> {
    let root = root
        .canonicalize()
        .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", root.display())))?;
    let mut existing = path;
    let mut rest = Vec::new();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(p) => break p,
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => return Err(outside(path, &root)),
            },
        }
    };
    // The part that does not exist yet is joined as written: it must not climb.
    if !resolved.starts_with(&root) || rest.iter().any(|name| name == "..") {
        return Err(outside(path, &root));
    }
    Ok(rest.iter().rev().fold(resolved, |p, name| p.join(name)))
}

fn outside(path: &Path, root: &Path) -> ConfigError {
    ConfigError::new(format!(
        "{} leads outside the project ({}) through a symbolic link; wasmig reads and writes only files inside the project: replace the link with the file itself",
        path.display(),
        root.display()
    ))
}

/// Opens the file at `path` for reading, confined to `root` as [`resolve`] confines it, and
/// without blocking on a FIFO (`O_NONBLOCK`; the caller checks what it opened).
///
/// On Linux the kernel resolves the path beneath `root` in the one call that opens it
/// (`openat2` with `RESOLVE_BENEATH`): no window between the check and the open, and one
/// system call where resolving component by component takes one per directory (measured: 14,000
/// calls, most of a run's time, to read 285 revisions with nothing to do). A path it
/// refuses or cannot take (an absolute link that may still lead inside, an older kernel)
/// takes [`resolve`]'s way, which decides.
///
/// # Errors
/// `PermissionDenied` with [`resolve`]'s message when it leads outside; I/O errors.
pub fn open(root: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    #[cfg(target_os = "linux")]
    if let Some(opened) = beneath::open(root, path) {
        return opened;
    }
    let resolved = resolve(root, path)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.message))?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(resolved)
}

/// `openat2(RESOLVE_BENEATH)`, for [`open`].
#[cfg(target_os = "linux")]
mod beneath {
    use std::ffi::CString;
    use std::fs::File;
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::Path;

    /// `root` opened as a directory (`O_PATH`), the last one kept: a run reads its revisions
    /// from the versions directory, one after another.
    fn directory(root: &Path) -> Option<std::sync::Arc<File>> {
        use std::sync::{Arc, Mutex};
        static LAST: Mutex<Option<(std::path::PathBuf, Arc<File>)>> = Mutex::new(None);
        let mut last = LAST.lock().ok()?;
        if let Some((path, dir)) = &*last
            && path == root
        {
            return Some(dir.clone());
        }
        let dir = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(root)
                .ok()?,
        );
        *last = Some((root.to_path_buf(), dir.clone()));
        Some(dir)
    }

    /// `None` where [`super::resolve`] must decide: `path` not under `root` as written, the
    /// kernel refusing a step (`EXDEV`: `..` or an absolute link, which may still lead
    /// inside; `ELOOP`), or no `openat2` (`ENOSYS`, or a seccomp filter's `EPERM`).
    pub(super) fn open(root: &Path, path: &Path) -> Option<std::io::Result<File>> {
        let relative = path.strip_prefix(root).ok()?;
        if relative.as_os_str().is_empty() {
            return None;
        }
        let relative = CString::new(relative.as_os_str().as_bytes()).ok()?;
        let dir = directory(root)?;
        // SAFETY: `open_how` is plain integers, for which zero is a valid value (and the
        // kernel's default for every field not set below).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH;
        // SAFETY: a valid directory descriptor, a NUL-terminated path and an initialised
        // `open_how` of the size passed; the descriptor returned is new and owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                relative.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            let fd = i32::try_from(fd).ok()?;
            // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
            return Some(Ok(unsafe { File::from_raw_fd(fd) }));
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(
                libc::EXDEV
                | libc::ELOOP
                | libc::ENOSYS
                | libc::EPERM
                | libc::EINVAL
                | libc::EAGAIN,
            ) => None,
            _ => Some(Err(error)),
        }
    }
}

/// Reads a file of the project at `path`, confined to `root`.
///
/// # Errors
/// [`ConfigError`] when it leads outside; the I/O error as it is otherwise.
pub fn read(root: &Path, path: &Path) -> anyhow::Result<Vec<u8>> {
    let resolved = resolve(root, path)?;
    Ok(std::fs::read(resolved)?)
}

/// [`read`] as text.
///
/// # Errors
/// As [`read`], and when the file is not UTF-8.
pub fn read_to_string(root: &Path, path: &Path) -> anyhow::Result<String> {
    let resolved = resolve(root, path)?;
    Ok(std::fs::read_to_string(resolved)?)
}

/// Makes the directory `dir` (and its parents) inside `root`, refusing one that leads
/// outside (a `.wasmig` committed as a link to `/`, say).
///
/// # Errors
/// [`ConfigError`] when it leads outside; I/O errors.
pub fn create_dir_all(root: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let resolved = resolve(root, dir)?;
    std::fs::create_dir_all(&resolved)?;
    // Made now: check again what it is (a link made meanwhile would show here).
    resolve(root, dir)?;
    Ok(resolved)
}

/// Writes `bytes` to `path`, replacing what is there: a symbolic link at `path` is
/// replaced, never followed (the bytes go to a new file renamed into place). The caller
/// confines the directory.
///
/// # Errors
/// I/O errors.
pub fn replace_file(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let partial = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    // `create_new` fails on anything at that path, a link included: nothing is followed.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)?;
    file.write_all(bytes.as_ref())?;
    drop(file);
    std::fs::rename(&partial, path)
}

/// Copies the tree `from` (in `root`) to `to`, regular files and directories only, each
/// confined to `root`; entries `skip` accepts are left out. Returns the files copied,
/// relative to `from`.
///
/// # Errors
/// [`ConfigError`] for an entry leading outside `root`; I/O errors.
pub fn copy_tree(
    root: &Path,
    from: &Path,
    to: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(
        root: &Path,
        base: &Path,
        dir: &Path,
        to: &Path,
        skip: &dyn Fn(&Path) -> bool,
        out: &mut Vec<PathBuf>,
    ) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let relative = path.strip_prefix(base).expect("walked from base");
            if skip(relative) {
                continue;
            }
            let resolved = resolve(root, &path)?;
            let meta = std::fs::metadata(&resolved)?;
            let dest = to.join(relative);
            if meta.is_dir() {
                std::fs::create_dir_all(&dest)?;
                walk(root, base, &path, to, skip, out)?;
            } else if meta.is_file() {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&resolved, &dest)?;
                out.push(relative.to_path_buf());
            }
        }
        Ok(())
    }
    std::fs::create_dir_all(to)?;
    let mut out = Vec::new();
    walk(root, from, from, to, skip, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wasmig-confined-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("project/a")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::fs::write(dir.join("outside/secret"), "secret").unwrap();
        std::fs::write(dir.join("project/a/file"), "inside").unwrap();
        dir
    }

    #[test]
    fn links_inside_are_followed_and_links_outside_refused() {
        let dir = scratch("links");
        let root = dir.join("project");
        std::os::unix::fs::symlink(dir.join("outside/secret"), root.join("a/out")).unwrap();
        std::os::unix::fs::symlink("file", root.join("a/in")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), root.join("b")).unwrap();
        assert_eq!(read(&root, &root.join("a/in")).unwrap(), b"inside");
        let refused = read(&root, &root.join("a/out")).unwrap_err().to_string();
        assert!(refused.contains("leads outside the project"), "{refused}");
        assert!(read(&root, &root.join("b/secret")).is_err());
        assert!(read(&root, &root.join("a/../../outside/secret")).is_err());
        assert!(create_dir_all(&root, &root.join("b/new")).is_err());
        assert!(!dir.join("outside/new").exists());
        assert!(create_dir_all(&root, &root.join("c/new")).is_ok());
        // Climbing out through a directory that does not exist yet.
        assert!(resolve(&root, &root.join("missing/../../outside/x")).is_err());
        assert!(!dir.join("outside/x").exists());
        let copied = copy_tree(&root, &root.join("a"), &dir.join("copy"), &|p| {
            p == Path::new("in")
        });
        assert!(copied.is_err(), "the link out must refuse the copy");
        // A link in place of a file written is replaced, its target untouched.
        std::os::unix::fs::symlink(dir.join("outside/secret"), root.join("a/written")).unwrap();
        replace_file(&root.join("a/written"), "new").unwrap();
        assert_eq!(
            std::fs::read(dir.join("outside/secret")).unwrap(),
            b"secret"
        );
        assert_eq!(std::fs::read(root.join("a/written")).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_takes_the_kernels_way_where_it_can_and_decides_as_resolve_does() {
        use std::io::Read as _;
        let dir = scratch("open");
        let root = dir.join("project");
        let text = |path: &str| {
            let mut out = String::new();
            open(&root, &root.join(path))?.read_to_string(&mut out)?;
            Ok::<_, std::io::Error>(out)
        };
        // Inside, by a relative link and by an absolute one (which the kernel leaves to
        // `resolve`, beneath the root or not).
        std::os::unix::fs::symlink("file", root.join("a/relative")).unwrap();
        std::os::unix::fs::symlink(root.join("a/file"), root.join("a/absolute")).unwrap();
        assert_eq!(text("a/file").unwrap(), "inside");
        assert_eq!(text("a/relative").unwrap(), "inside");
        assert_eq!(text("a/absolute").unwrap(), "inside");
        // Outside, every way: refused, with resolve's message.
        std::os::unix::fs::symlink("../../outside/secret", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside/secret"), root.join("a/out")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), root.join("b")).unwrap();
        for path in ["a/up", "a/out", "b/secret", "a/../../outside/secret"] {
            let refused = text(path).unwrap_err();
            assert_eq!(
                refused.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{path}"
            );
            assert!(
                refused.to_string().contains("leads outside the project"),
                "{path}: {refused}"
            );
        }
        // Missing is missing, either way.
        assert_eq!(
            text("a/missing").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        // A FIFO opens without waiting for a writer (the caller sees it is not a file).
        let fifo = std::ffi::CString::new(root.join("a/fifo").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let opened = open(&root, &root.join("a/fifo")).unwrap();
        assert!(!opened.metadata().unwrap().is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

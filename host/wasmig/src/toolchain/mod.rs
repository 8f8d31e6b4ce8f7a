//! Building Python, JavaScript, C and Go revisions into components, each with its
//! language's toolchain: componentize-py, jco (QuickJS backend), clang for wasm32-wasi and
//! Go for wasip1.
//!
//! Every build works from what this binary embeds ([`embedded`]): the WIT contract, written
//! to `.wasmig/wit/`, and the language's SDK, staged beside a copy of the revision's sources
//! under `.wasmig/build/<kind>/<rev>/`. Nothing is read from a wasmig source checkout, and
//! the bindings are generated from the WIT at build time, so a WIT version bump needs no
//! change here. The component goes to `.wasmig/build/<rev>.wasm`, like a Rust revision's.
//!
//! **Skipping unchanged revisions.** componentize-py and componentize-qjs do not build
//! byte-for-byte reproducible components (they snapshot an initialised interpreter, random
//! seed included), and an applied revision's checksum is over the component's bytes. So a
//! revision is rebuilt only when its inputs change: the fingerprint in
//! `.wasmig/build/<rev>.inputs` covers its source files, the embedded WIT and SDK, and the
//! build recipe (not the toolchain's version: upgrading componentize-py does not silently
//! change applied revisions; delete the `.inputs` file to force a rebuild).
//!
//! **Reusing what ran.** A fresh checkout (another machine, a CI job) has no build output,
//! and building an applied Python or JavaScript revision there would give new bytes that
//! verification then refuses as changed. So before building, [`reuse_stored`] takes the
//! component an applied revision ran from the copy stored in the database, provided the
//! revision's sources are the ones it was built from ([`source_checksum`], stored beside the
//! component): what runs (a downgrade) is what ran, and nothing is refused.
//!
//! Not here: Rust revisions (`artifact`, one cargo build for all of them), loading and
//! running components (`sandbox`), templates (`scaffold`).

mod c;
pub mod embedded;
pub mod go;
mod js;
mod python;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::config::Project;
use crate::error::BuildError;
use crate::jail::Jail;
use crate::revision::{Kind, MANIFEST, Revision, kind_name};

/// Bumped whenever a build command or staging layout changes, so every revision rebuilds.
const RECIPE_VERSION: &str = "1";

/// A language toolchain: the program wasmig runs and how to install it.
#[derive(Debug, Clone, Copy)]
pub struct Toolchain {
    /// The language, as the README names it.
    pub language: &'static str,
    /// The program looked up on `PATH`.
    pub program: &'static str,
    /// The environment variable that overrides the program's path.
    pub override_var: &'static str,
    /// The command line that installs it.
    pub install: &'static str,
}

/// The toolchain for a built kind other than Rust.
pub fn toolchain(kind: Kind) -> Option<Toolchain> {
    match kind {
        Kind::Python => Some(python::TOOLCHAIN),
        Kind::Js => Some(js::TOOLCHAIN),
        Kind::C => Some(c::TOOLCHAIN),
        Kind::Go => Some(go::TOOLCHAIN),
        Kind::Sql | Kind::Rust | Kind::Wasm => None,
    }
}

/// The main source file `wasmig revision` writes for a kind built here.
pub fn source_file(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Python => Some(python::SOURCE),
        Kind::Js => Some(js::SOURCE),
        Kind::C => Some(c::SOURCE),
        Kind::Go => Some(go::SOURCE),
        Kind::Sql | Kind::Rust | Kind::Wasm => None,
    }
}

/// What one language build gets.
struct Job<'a> {
    revision: &'a Revision,
    /// The resolved program (from `PATH` or the override variable).
    program: PathBuf,
    /// `.wasmig/wit/`, holding the embedded WIT.
    wit_dir: &'a Path,
    /// `.wasmig/build/<kind>/<rev>/`, empty when the job starts.
    stage: PathBuf,
    /// The component to write (a temporary name, renamed into place by the caller).
    out: PathBuf,
    /// In untrusted mode, the jail the toolchain runs in.
    jail: Option<Jail>,
}

/// Builds every Python, JavaScript, C and Go revision whose inputs changed, writing its
/// component to `build_dir`. Returns the revisions whose component bytes changed.
///
/// # Errors
/// [`BuildError`] naming the revision: its toolchain is missing (with the command that
/// installs it), or the build failed (with the toolchain's output).
pub fn build(
    project: &Project,
    revisions: &[Revision],
    build_dir: &Path,
) -> anyhow::Result<Vec<String>> {
    // The Go SDK that scaffolded `go.mod` files name, for `go vet` and editors: a fresh
    // clone has none (it is ignored by git). Not in untrusted mode, which writes nothing
    // into the project.
    let has_go = revisions
        .iter()
        .any(|r| r.stored.is_none() && r.manifest.kind == Kind::Go);
    if has_go && !project.is_untrusted() {
        go::write_sdk(&project.versions_dir())?;
    }
    let pending: Vec<(&Revision, String)> = revisions
        .iter()
        .filter(|r| r.stored.is_none() && toolchain(r.manifest.kind).is_some())
        .map(|r| Ok((r, fingerprint(r)?)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .filter(|(r, inputs)| !up_to_date(r, build_dir, inputs))
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(build_dir)?;
    let wit_dir = embedded::write_wit(&project.work_dir())?;
    let mut programs: HashMap<&'static str, PathBuf> = HashMap::new();
    let mut changed = Vec::new();
    for (revision, inputs) in pending {
        let kind = revision.manifest.kind;
        let tool = toolchain(kind).expect("filtered above");
        let program = match programs.get(tool.program) {
            Some(p) => p.clone(),
            None => {
                let mut p = find_program(&tool).map_err(|message| BuildError {
                    message: format!("revision {} ({}): {message}", revision.id(), tool.language),
                })?;
                if project.is_untrusted() {
                    // Not a pyenv shim, which reads `.python-version` where it runs.
                    p = crate::untrusted::real_program(&p, &project.work_dir());
                }
                programs.insert(tool.program, p.clone());
                p
            }
        };
        let stage = build_dir.join(kind_name(kind)).join(revision.id());
        if stage.symlink_metadata().is_ok() {
            // A link is removed itself, not what it leads to.
            std::fs::remove_dir_all(&stage).or_else(|_| std::fs::remove_file(&stage))?;
        }
        crate::confined::create_dir_all(build_dir, &stage)?;
        let path = revision
            .component_path(build_dir)
            .expect("built kinds have a component");
        let out = path.with_extension("wasm.partial");
        let _ = std::fs::remove_file(&out);
        let jail = project.is_untrusted().then(|| {
            jailed(
                &project.work_dir(),
                &program,
                &revision.dir,
                &wit_dir,
                build_dir,
            )
        });
        let job = Job {
            revision,
            program,
            wit_dir: &wit_dir,
            stage,
            out,
            jail,
        };
        tracing::info!(
            "building revision {} ({}, {})",
            revision.id(),
            tool.language,
            tool.program
        );
        let started = std::time::Instant::now();
        let result = match kind {
            Kind::Python => python::build(&job),
            Kind::Js => js::build(&job),
            Kind::C => c::build(&job),
            Kind::Go => go::build(&job),
            Kind::Sql | Kind::Rust | Kind::Wasm => unreachable!("filtered above"),
        };
        let bytes = result.map_err(|message| BuildError {
            message: format!("revision {} ({}): {message}", revision.id(), tool.language),
        })?;
        tracing::debug!(
            "built revision {} in {} ms ({} bytes)",
            revision.id(),
            started.elapsed().as_millis(),
            bytes.len()
        );
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            crate::confined::replace_file(&job.out, &bytes)?;
            std::fs::rename(&job.out, &path)?;
            changed.push(revision.id().to_owned());
        }
        let _ = std::fs::remove_file(&job.out);
        crate::confined::replace_file(&stamp_path(revision, build_dir), &inputs)?;
    }
    Ok(changed)
}

/// The jail of an untrusted project's Python, JavaScript, C or Go build: it reads the toolchain's
/// installation (and node's, for jco), the WIT, the revision's directory (reading through
/// a link out of it is denied by the kernel), and writes only the build directory; no
/// network, and an environment of its own.
fn jailed(
    work: &Path,
    program: &Path,
    revision_dir: &Path,
    wit_dir: &Path,
    build_dir: &Path,
) -> Jail {
    let (home, tmp) = (work.join("home"), work.join("tmp"));
    for dir in [&home, &tmp] {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut jail = Jail::new()
        .read(revision_dir)
        .read(wit_dir)
        .write(build_dir)
        .write(&home)
        .write(&tmp)
        .env("HOME", &home)
        .env("TMPDIR", &tmp);
    let mut path = Vec::new();
    let node = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("node"))
            .find(|c| is_executable(c))
    });
    for tool in std::iter::once(program.to_path_buf()).chain(node) {
        for dir in crate::untrusted::installation_dirs(&tool) {
            jail = jail.read(dir);
        }
        if let Some(bin) = tool.parent() {
            path.push(bin.to_path_buf());
        }
    }
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    let path = std::env::join_paths(path).unwrap_or_default();
    jail.env("PATH", path)
}

/// `.wasmig/build/<rev>.inputs`: the fingerprint of what the component was built from.
fn stamp_path(revision: &Revision, build_dir: &Path) -> PathBuf {
    build_dir.join(format!("{}.inputs", revision.id()))
}

/// Whether the component exists and was built from exactly these inputs.
fn up_to_date(revision: &Revision, build_dir: &Path, inputs: &str) -> bool {
    let built = revision
        .component_path(build_dir)
        .is_some_and(|p| p.is_file());
    built && std::fs::read_to_string(stamp_path(revision, build_dir)).is_ok_and(|s| s == inputs)
}

/// Pinned: hex SHA-256 over the kind's name and the revision's source files (relative path
/// and bytes, each preceded by its length as a little-endian `u64`, in path order), without
/// the manifest. Unlike the build fingerprint it leaves out the embedded SDK and WIT, so a
/// newer wasmig still recognises the sources a component was built from.
///
/// # Errors
/// When a source file cannot be read.
pub fn source_checksum(revision: &Revision) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(kind_name(revision.manifest.kind).as_bytes());
    for (relative, path) in source_files(&revision.dir)? {
        field(relative.as_bytes());
        field(&std::fs::read(&path).map_err(|e| BuildError {
            message: format!(
                "revision {}: cannot read {}: {e}",
                revision.id(),
                path.display()
            ),
        })?);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Before a build: for each revision of `applied` built here whose component is not up to
/// date, takes the component it ran from the database's stored copy when its sources are
/// unchanged (same [`source_checksum`], and the stored bytes still hash to the stored
/// checksum), and marks it built from the current inputs. Returns the revisions reused.
///
/// # Errors
/// Database errors reading the stored copies; I/O errors writing the build directory.
pub async fn reuse_stored(
    db: &dyn crate::db::Database,
    revisions: &[Revision],
    applied: &[String],
    build_dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut reused = Vec::new();
    // Taken before the first write: another run from this checkout may be writing the same
    // components (the build lock, as `wasmig build` takes it).
    let mut lock = None;
    for revision in revisions.iter().filter(|r| {
        r.stored.is_none()
            && toolchain(r.manifest.kind).is_some()
            && applied.contains(&r.id().to_owned())
    }) {
        let inputs = fingerprint(revision)?;
        if up_to_date(revision, build_dir, &inputs) {
            continue;
        }
        let Some(stored) = db.stored_artifact(revision.id()).await? else {
            continue;
        };
        let (Some(bytes), Some(sources)) = (&stored.component, &stored.source_checksum) else {
            continue;
        };
        if *sources != source_checksum(revision)?
            || hex::encode(Sha256::digest(bytes)) != stored.checksum
        {
            continue;
        }
        if lock.is_none() {
            lock = Some(crate::artifact::lock_builds(build_dir)?);
            // Another run may have written it while this one waited.
            if up_to_date(revision, build_dir, &inputs) {
                continue;
            }
        }
        let path = revision
            .component_path(build_dir)
            .expect("built kinds have a component");
        std::fs::create_dir_all(build_dir)?;
        let partial = path.with_extension("wasm.partial");
        crate::confined::replace_file(&partial, bytes)?;
        std::fs::rename(&partial, &path)?;
        crate::confined::replace_file(&stamp_path(revision, build_dir), &inputs)?;
        tracing::info!(
            "revision {}: using the component it ran, from the copy stored in the database (its sources are unchanged, and a rebuild of {} would not give the same bytes)",
            revision.id(),
            toolchain(revision.manifest.kind).map_or("it", |t| t.language)
        );
        reused.push(revision.id().to_owned());
    }
    Ok(reused)
}

/// Hex SHA-256 over the recipe, the kind, the embedded WIT and SDK files, and the
/// revision's source files (relative path and bytes, in path order). Independent of where
/// the project lives, so a copied project is up to date.
///
/// # Errors
/// When a source file cannot be read.
fn fingerprint(revision: &Revision) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(RECIPE_VERSION.as_bytes());
    let kind = revision.manifest.kind;
    field(kind_name(kind).as_bytes());
    for (name, text) in embedded::WIT_FILES
        .iter()
        .chain(embedded::sdk_files(kind).iter())
    {
        field(name.as_bytes());
        field(text.as_bytes());
    }
    for (relative, path) in source_files(&revision.dir)? {
        field(relative.as_bytes());
        field(&std::fs::read(&path).map_err(|e| BuildError {
            message: format!(
                "revision {}: cannot read {}: {e}",
                revision.id(),
                path.display()
            ),
        })?);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The revision's source files: everything in its directory except the manifest, hidden
/// files, build leftovers (`__pycache__`, `node_modules`) and `.wasm` files, with paths
/// relative to the directory (`/`-separated), sorted.
///
/// # Errors
/// When the directory cannot be read.
/// Every file must lie in the versions directory (the revision's parent), symbolic links
/// followed: a link out of it is refused, so a revision's sources cannot carry a file from
/// elsewhere on the machine into a build log or a component.
fn source_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    fn walk(
        confine: &Path,
        root: &Path,
        dir: &Path,
        depth: usize,
        out: &mut Vec<(String, PathBuf)>,
    ) -> std::io::Result<()> {
        if depth > 32 {
            return Err(std::io::Error::other(format!(
                "{} is nested more than 32 directories deep (a link to one of its parents?)",
                dir.display()
            )));
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.')
                || name == "__pycache__"
                || name == "node_modules"
                || name.ends_with(".wasm")
                || (dir == root && name == MANIFEST)
            {
                continue;
            }
            crate::confined::resolve(confine, &path).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.message)
            })?;
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                walk(confine, root, &path, depth + 1, out)?;
            } else if !meta.is_file() {
                // A FIFO or a device would block the fingerprint or the copy.
                return Err(std::io::Error::other(format!(
                    "{} is not a regular file (a FIFO or a device); a revision's sources must be plain files",
                    path.display()
                )));
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under the root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((relative, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let confine = dir.parent().unwrap_or(dir);
    walk(confine, dir, dir, 0, &mut out).map_err(|e| BuildError {
        message: format!("cannot read the revision directory {}: {e}", dir.display()),
    })?;
    out.sort();
    Ok(out)
}

/// Copies the revision's source files into `stage`, keeping their relative paths.
///
/// # Errors
/// I/O errors, as a message.
fn copy_sources(revision: &Revision, stage: &Path) -> Result<(), String> {
    let files = source_files(&revision.dir).map_err(|e| format!("{e:#}"))?;
    for (relative, path) in files {
        let dest = stage.join(&relative);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::copy(&path, &dest).map_err(|e| format!("copying {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes the embedded files into `dir` (relative paths, `/`-separated).
///
/// # Errors
/// I/O errors, as a message.
fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<(), String> {
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        crate::confined::replace_file(&path, text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Finds a toolchain's program: the override variable if set, else `PATH`.
///
/// # Errors
/// A message saying what is missing and the command that installs it.
fn find_program(tool: &Toolchain) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(tool.override_var) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{}={} does not name a file; unset it to use `{}` from PATH",
                tool.override_var,
                path.display(),
                tool.program
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool.program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!(
                "building it needs `{}`, which is not on PATH; install it with `{}` (or set {} to its path)",
                tool.program, tool.install, tool.override_var
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a toolchain command, capturing its output (so `--json` keeps stdout clean).
///
/// # Errors
/// A message with the command and the tail of its output when it cannot start or fails.
fn run(job: &Job<'_>, command: &mut Command, hint: &str) -> Result<(), String> {
    let shown = format!("{command:?}");
    command.stdin(Stdio::null());
    let output = match &job.jail {
        // Both streams captured, as `Command::output` would.
        Some(jail) => {
            let limit = crate::jail::build_timeout().map_err(|e| e.message)?;
            // The jail clears the environment: the variables the build sets go into its own.
            let mut jail = jail.clone();
            for (name, value) in command.get_envs() {
                if let Some(value) = value {
                    jail = jail.env(name, value);
                }
            }
            jail.output(command.stderr(Stdio::piped()), limit)
                .map_err(|e| e.message)?
        }
        None => command
            .output()
            .map_err(|e| format!("cannot run {shown}: {e}"))?,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!("{line}");
        }
        return Ok(());
    }
    // The interesting part of a long traceback or compiler log is at its end.
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    Err(format!(
        "the build failed ({}): {shown}\n{tail}{hint}",
        output.status
    ))
}

/// Reads the component a toolchain wrote.
///
/// # Errors
/// A message when the file is missing.
fn read_output(job: &Job<'_>) -> Result<Vec<u8>, String> {
    std::fs::read(&job.out).map_err(|e| {
        format!(
            "the toolchain reported success but wrote no component at {}: {e}",
            job.out.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_files_leave_out_the_manifest_and_build_leftovers() {
        let dir = std::env::temp_dir().join(format!("wasmig-sources-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in [
            "migration.toml",
            "migration.py",
            "helpers/util.py",
            "__pycache__/migration.cpython-312.pyc",
            ".hidden",
            "node_modules/x/index.js",
            "old.wasm",
        ] {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, file).unwrap();
        }
        let names: Vec<String> = source_files(&dir)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["helpers/util.py", "migration.py"]);
    }

    #[test]
    fn a_missing_program_names_the_install_command() {
        let tool = Toolchain {
            language: "Python",
            program: "wasmig-no-such-program",
            override_var: "WASMIG_TEST_NO_SUCH_OVERRIDE",
            install: "pip install something",
        };
        let err = find_program(&tool).unwrap_err();
        assert!(
            err.contains("`wasmig-no-such-program`, which is not on PATH"),
            "{err}"
        );
        assert!(
            err.contains("install it with `pip install something`"),
            "{err}"
        );
    }
}

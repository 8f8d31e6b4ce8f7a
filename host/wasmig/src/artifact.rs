//! Building revisions into components: [`build`] builds every kind built from source; the
//! Rust ones here, with one `cargo build` over the migrations workspace for
//! `wasm32-unknown-unknown`, then componentization with `wit-component`; Python,
//! JavaScript and C ones in `toolchain`.
//!
//! Why that target: the result imports nothing but wasmig's interfaces (no WASI at all), and
//! with the SDK's pre-generated bindings a cold build takes seconds. Cargo decides what is
//! stale; a component file is rewritten only when its bytes change.
//!
//! Not here: loading or running components (`sandbox`), scaffolding crates (`scaffold`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::config::Project;
use crate::error::BuildError;
use crate::revision::{Kind, Revision};

/// The Rust target migrations are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Where built components go: `.wasmig/build/<revision>.wasm`.
pub fn build_dir(project: &Project) -> PathBuf {
    project.work_dir().join("build")
}

/// Keeps `workspace.members` of the migrations workspace equal to the Rust revisions, so
/// users never edit it by hand.
///
/// # Errors
/// [`BuildError`] when the workspace manifest is missing or unparsable.
pub fn sync_workspace(versions_dir: &Path, revisions: &[Revision]) -> anyhow::Result<()> {
    let path = versions_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| BuildError {
        message: format!(
            "cannot read the migrations workspace {}: {e} (it is made when the project is initialised)",
            path.display()
        ),
    })?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| BuildError {
        message: format!("invalid {}: {e}", path.display()),
    })?;
    let mut members: Vec<String> = revisions
        .iter()
        .filter(|r| r.manifest.kind == Kind::Rust && r.stored.is_none())
        .filter_map(|r| r.dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    members.sort();
    let mut array = toml_edit::Array::new();
    for m in &members {
        array.push(m.as_str());
    }
    let current: Vec<String> = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if current == members {
        return Ok(());
    }
    doc["workspace"]["members"] = toml_edit::value(array);
    crate::confined::replace_file(&path, doc.to_string())?;
    Ok(())
}

/// [`build`] on a blocking thread, for a run that holds the migration lock: building can
/// take minutes, and the runtime's one thread must stay free for the lock (a lease's
/// renewal) meanwhile.
///
/// # Errors
/// As [`build`].
pub async fn build_off_thread(
    project: &Project,
    revisions: &[Revision],
) -> anyhow::Result<Vec<String>> {
    let (project, revisions) = (project.clone(), revisions.to_vec());
    let span = tracing::Span::current();
    let handle = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        build(&project, &revisions)
    });
    joined(handle, "the build").await
}

/// The result of work run on a blocking thread (a build, a step's artifact read); a panic
/// there goes on unwinding here, and a task the runtime stopped is an error naming `what`.
pub(crate) async fn joined<T>(
    handle: tokio::task::JoinHandle<anyhow::Result<T>>,
    what: &str,
) -> anyhow::Result<T> {
    match handle.await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(anyhow::anyhow!("{what} was stopped: {e}")),
        },
    }
}

/// Builds every revision made from source (Rust, Python, JavaScript, C) whose component is
/// stale, writing it to [`build_dir`]. Returns the revisions whose component changed.
///
/// # Errors
/// [`BuildError`] naming what failed: cargo or a language toolchain missing (with how to
/// install it), or a compile error.
pub fn build(project: &Project, revisions: &[Revision]) -> anyhow::Result<Vec<String>> {
    // Two runs from one checkout (against two databases, say) build in turn: they share the
    // migrations workspace, its Cargo.toml and the build directory.
    // A `.wasmig` (or a directory in it) committed as a link out of the project must not
    // make wasmig write there.
    if project.is_untrusted() {
        // Before anything is copied or fetched: a machine that cannot jail a build does
        // not build an untrusted project at all (exit 9, saying why).
        if revisions
            .iter()
            .any(|r| r.stored.is_none() && r.manifest.kind.is_built())
        {
            crate::jail::check_enforceable()?;
        }
    } else {
        crate::confined::create_dir_all(&project.root, &build_dir(project))?;
    }
    let _lock = lock_builds(&build_dir(project))?;
    let mut changed = build_rust(project, revisions)?;
    changed.extend(crate::toolchain::build(
        project,
        revisions,
        &build_dir(project),
    )?);
    Ok(changed)
}

/// Takes the project's build lock (`flock` on `.wasmig/build.lock`, beside `build_dir`),
/// waiting for another wasmig writing into this project's build directory, and saying so.
/// Released when the file is dropped, or by the OS when the process ends. Not reentrant:
/// a second take in the same process waits for the first to be dropped.
///
/// # Errors
/// [`BuildError`] when the lock file cannot be created or locked.
pub fn lock_builds(build_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = build_dir.with_extension("lock");
    let failed = |e: std::io::Error| BuildError {
        message: format!("cannot lock {}: {e}", path.display()),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::info!(
                "waiting for another wasmig building in this project (it holds {})",
                path.display()
            );
            file.lock().map_err(failed)?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e).into()),
    }
    Ok(file)
}

/// Builds every Rust revision and writes its component to [`build_dir`].
/// Returns the revisions whose component changed.
///
/// # Errors
/// [`BuildError`] when cargo is missing, the target cannot be installed, or a crate fails
/// to compile (cargo's diagnostics are shown as they come).
fn build_rust(project: &Project, revisions: &[Revision]) -> anyhow::Result<Vec<String>> {
    // Revisions stored in the database (no crate in the project) bring their component.
    let rust: Vec<&Revision> = revisions
        .iter()
        .filter(|r| r.manifest.kind == Kind::Rust && r.stored.is_none())
        .collect();
    if rust.is_empty() {
        return Ok(Vec::new());
    }
    let (output, built_from) = if project.is_untrusted() {
        cargo_untrusted(project, revisions, rust.len())?
    } else {
        (
            cargo_trusted(project, revisions, rust.len())?,
            project.root.clone(),
        )
    };
    if !output.status.success() {
        return Err(BuildError {
            message: "cargo build of the Rust migrations failed; see the compiler errors above"
                .into(),
        }
        .into());
    }

    // Map each crate's directory to the core wasm file cargo produced for it.
    let mut core_files: HashMap<PathBuf, PathBuf> = HashMap::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(manifest) = msg["manifest_path"].as_str() else {
            continue;
        };
        let wasm = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        if let (Some(dir), Some(wasm)) = (Path::new(manifest).parent(), wasm) {
            core_files.insert(canonical(dir), PathBuf::from(wasm));
        }
    }

    let out_dir = build_dir(project);
    std::fs::create_dir_all(&out_dir)?;
    let mut changed = Vec::new();
    for revision in rust {
        // Where cargo built the crate: the checkout, or the copy of it an untrusted build
        // works from.
        let dir = match revision.dir.strip_prefix(&project.root) {
            Ok(relative) => built_from.join(relative),
            Err(_) => revision.dir.clone(),
        };
        let core = core_files.get(&canonical(&dir)).ok_or_else(|| BuildError {
            message: format!(
                "revision {}: cargo produced no .wasm for {}; its Cargo.toml needs `crate-type = [\"cdylib\"]`",
                revision.id(),
                revision.dir.display()
            ),
        })?;
        let bytes = std::fs::read(core)?;
        let component = componentize(&bytes).map_err(|e| BuildError {
            message: format!(
                "revision {}: cannot turn {} into a component: {e:#}; does it use the wasmig-guest SDK's `migration!` macro?",
                revision.id(),
                core.display()
            ),
        })?;
        let path = revision
            .component_path(&out_dir)
            .expect("rust revisions have a component");
        if std::fs::read(&path).ok().as_deref() != Some(component.as_slice()) {
            crate::confined::replace_file(&path, &component)?;
            changed.push(revision.id().to_owned());
        }
    }
    Ok(changed)
}

/// `cargo build` of the migrations workspace in the checkout, as its author would run it.
fn cargo_trusted(
    project: &Project,
    revisions: &[Revision],
    count: usize,
) -> anyhow::Result<Output> {
    let versions_dir = project.versions_dir();
    sync_workspace(&versions_dir, revisions)?;
    // The SDK a project created by this wasmig depends on, inside the project (and
    // confined to it: a link in its place must not make wasmig write elsewhere).
    for dir in crate::toolchain::embedded::RUST_SDK_DIRS {
        crate::confined::create_dir_all(&project.root, &versions_dir.join(dir))?;
    }
    crate::toolchain::embedded::write_rust_sdk(&versions_dir)?;
    ensure_target(None)?;
    tracing::info!("building {count} Rust revision(s)");
    Ok(Command::new(cargo())
        // Paths compiled into a component (panic locations) must not depend on where the
        // project or cargo's registry are, or a clone elsewhere builds other bytes (and
        // trips the checksums of applied revisions).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            reproducible_rustflags(&project.root),
        )
        .env_remove("RUSTFLAGS")
        .args(build_args())
        .arg("--manifest-path")
        .arg(versions_dir.join("Cargo.toml"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BuildError {
            message: format!("cannot run cargo ({e}); install Rust from https://rustup.rs"),
        })?)
}

fn build_args() -> [&'static str; 5] {
    [
        "build",
        "--release",
        "--target",
        TARGET,
        "--message-format=json-render-diagnostics",
    ]
}

/// An untrusted project's `cargo build`: from a copy of its sources in the private working
/// directory (each file confined to the checkout; nothing under `target/` or `.wasmig/`
/// copied), by the operator's toolchain called by path (no rustup proxy reading the
/// checkout), with a cargo home and configuration that are not the checkout's. First a
/// `cargo fetch`, jailed with the network to the registry's HTTPS port only; then the build,
/// jailed without network, writing only its target directory. Returns cargo's output and
/// the directory that stands for the project root.
fn cargo_untrusted(
    project: &Project,
    revisions: &[Revision],
    count: usize,
) -> anyhow::Result<(Output, PathBuf)> {
    use crate::jail::Jail;
    use crate::untrusted;

    let work = project.work_dir();
    let stage = work.join("source");
    let versions = stage.join(&project.config.versions_dir);
    crate::confined::copy_tree(&project.root, &project.versions_dir(), &versions, &|p| {
        p == Path::new("target") || p == Path::new(".wasmig-sdk")
    })?;
    sync_workspace(&versions, revisions)?;
    crate::toolchain::embedded::write_rust_sdk(&versions)?;
    ensure_target(Some(&stage))?;

    let sysroot = untrusted::rust_sysroot(&stage)?;
    let cargo_home = untrusted::cargo_home().ok_or_else(|| BuildError {
        message: "neither CARGO_HOME nor HOME is set, so cargo's registry cannot be found".into(),
    })?;
    let (home, tmp, target) = (work.join("home"), work.join("tmp"), work.join("target"));
    // Cargo's home for the build is the run's own: its locks and its cache tracker (which
    // cargo later trusts to delete files) are written there, never in the operator's. It
    // reaches the operator's registry through links (written only by the fetch, read-only to
    // the build), and holds a copy of the operator's configuration.
    let private_home = work.join("cargo-home");
    for dir in [
        &home,
        &tmp,
        &target,
        &private_home,
        &cargo_home.join("registry"),
        &cargo_home.join("git"),
    ] {
        std::fs::create_dir_all(dir)?;
    }
    for shared in ["registry", "git"] {
        std::os::unix::fs::symlink(cargo_home.join(shared), private_home.join(shared))?;
    }
    for name in ["config.toml", "config"] {
        if let Ok(text) = std::fs::read(cargo_home.join(name)) {
            std::fs::write(private_home.join(name), text)?;
        }
    }
    // Paths of registry crates compiled in start with the run's cargo home: mapped like the
    // operator's, so an untrusted build gives a trusted one's bytes.
    let rustflags = format!(
        "{}\x1f--remap-path-prefix={}=/cargo",
        reproducible_rustflags(&stage),
        private_home.display()
    );
    let jail = |jail: Jail| {
        jail.read(&sysroot)
            .write(&home)
            .write(&tmp)
            .write(&private_home)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", sysroot.join("bin").display()),
            )
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .env("CARGO_HOME", &private_home)
            .env("CARGO_CACHE_AUTO_CLEAN_FREQUENCY", "never")
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTC", sysroot.join("bin/rustc"))
            .env("CARGO_ENCODED_RUSTFLAGS", &rustflags)
    };
    let cargo = sysroot.join("bin/cargo");
    let manifest = versions.join("Cargo.toml");
    let limit = crate::jail::build_timeout()?;

    tracing::info!("fetching the Rust revisions' dependencies (jailed: registry only)");
    let mut fetch = Command::new(&cargo);
    fetch
        .arg("fetch")
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(&stage)
        .stdin(Stdio::null())
        // Captured and shown as data (escaped, lines capped): the build's text is the
        // author's, and could forge wasmig's lines or drive the terminal.
        .stderr(Stdio::piped());
    let fetched = jail(Jail::new())
        .write(&stage)
        .write(cargo_home.join("registry"))
        .write(cargo_home.join("git"))
        .connect_to(443)
        .output(&mut fetch, limit)?;
    show_untrusted(&fetched.stderr);
    if !fetched.status.success() {
        return Err(BuildError {
            message:
                "cargo fetch of the Rust migrations' dependencies failed; see its errors above"
                    .into(),
        }
        .into());
    }

    tracing::info!(
        "building {count} Rust revision(s) (jailed: no network, writes only its target directory)"
    );
    let mut build = Command::new(&cargo);
    build
        .args(build_args())
        .arg("--frozen")
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(&stage)
        .stdin(Stdio::null())
        // Captured and shown as data (escaped, lines capped): the build's text is the
        // author's, and could forge wasmig's lines or drive the terminal.
        .stderr(Stdio::piped());
    let output = jail(Jail::new())
        .read(&stage)
        .read(cargo_home.join("registry"))
        .read(cargo_home.join("git"))
        .write(&target)
        .output(&mut build, limit)?;
    show_untrusted(&output.stderr);
    Ok((output, stage))
}

/// Prints an untrusted build's standard error as data: each line escaped and capped.
fn show_untrusted(stderr: &[u8]) {
    for line in String::from_utf8_lossy(stderr).lines() {
        eprintln!("{}", crate::bindings::text::shown(line));
    }
}

/// Wraps a core module built with the SDK's bindings into a component.
///
/// # Errors
/// When the module lacks the component-type section or does not validate.
pub fn componentize(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core)?
        .validate(true)
        .encode()
}

/// The rustflags of a Rust build: the caller's (`CARGO_ENCODED_RUSTFLAGS`, else `RUSTFLAGS`)
/// and `--remap-path-prefix` for the project and cargo's home, so the component's bytes do
/// not depend on where either is. (Encoded: one flag per `\x1f`-separated field, so paths
/// may hold spaces.)
fn reproducible_rustflags(project_root: &Path) -> String {
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) if !encoded.is_empty() => encoded.split('\x1f').map(str::to_owned).collect(),
        _ => std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    let root = canonical(project_root);
    flags.push(format!("--remap-path-prefix={}=/project", root.display()));
    if root != project_root {
        flags.push(format!(
            "--remap-path-prefix={}=/project",
            project_root.display()
        ));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.join("\x1f")
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Makes sure the wasm target is installed, installing it with rustup when possible; run
/// from `outside` when given (a directory outside an untrusted checkout, whose
/// `rust-toolchain.toml` rustup would otherwise read).
fn ensure_target(outside: Option<&Path>) -> Result<(), BuildError> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"])
        .stderr(Stdio::null());
    if let Some(dir) = outside {
        list.current_dir(dir);
    }
    let installed = list.output();
    let Ok(out) = installed else {
        // No rustup: let cargo report a missing target itself.
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    tracing::info!("installing the Rust target {TARGET} (rustup target add {TARGET})");
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]);
    if let Some(dir) = outside {
        add.current_dir(dir);
    }
    let status = add.status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(BuildError {
            message: format!(
                "the Rust target {TARGET} is missing and could not be installed; run `rustup target add {TARGET}`"
            ),
        }),
    }
}

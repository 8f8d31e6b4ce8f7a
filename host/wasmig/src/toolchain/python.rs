//! Python revisions: `migration.py` using the `wasmig` SDK, built with componentize-py.
//!
//! The stage holds a copy of the revision's sources, the SDK package `wasmig` and the entry
//! module `wasmig_entry` (which implements the generated `WitWorld` by calling the
//! migration's `upgrade` and `downgrade`). `--stub-wasi` replaces every WASI import with a
//! trap, so the component imports only wasmig's interfaces. It also exports
//! componentize-py's own `exports` interface, which the sandbox ignores.
//!
//! Not reproducible: two builds of the same sources differ (componentize-py snapshots an
//! initialised interpreter, including a random seed), which is why revisions are rebuilt
//! only when their sources change (see the parent module).

use std::process::Command;

use super::{Job, Toolchain, embedded};
use crate::revision::Kind;

/// componentize-py from PyPI.
pub(super) const TOOLCHAIN: Toolchain = Toolchain {
    language: "Python",
    program: "componentize-py",
    override_var: "WASMIG_COMPONENTIZE_PY",
    install: "pip install componentize-py==0.25.1",
};

/// The module the migration lives in.
pub(super) const SOURCE: &str = "migration.py";

/// Stages the sources and the SDK, then runs componentize-py.
pub(super) fn build(job: &Job<'_>) -> Result<Vec<u8>, String> {
    super::copy_sources(job.revision, &job.stage)?;
    if !job.stage.join(SOURCE).is_file() {
        return Err(format!(
            "{} has no {SOURCE}; a Python migration defines `upgrade()` and `downgrade()` there",
            job.revision.dir.display()
        ));
    }
    let sdk: Vec<(&str, String)> = embedded::sdk_files(Kind::Python)
        .iter()
        .map(|(name, text)| (*name, (*text).to_owned()))
        .collect();
    super::write_files(&job.stage, &sdk)?;
    let mut command = Command::new(&job.program);
    command
        .arg("-d")
        .arg(job.wit_dir)
        .args(["-w", embedded::WORLD, "componentize", "--stub-wasi", "-p"])
        .arg(&job.stage)
        .arg("wasmig_entry")
        .arg("-o")
        .arg(&job.out);
    super::run(job, &mut command, "")?;
    super::read_output(job)
}

//! JavaScript revisions: `migration.js` (an ES module) using the `wasmig` SDK, built with
//! jco's QuickJS backend (componentize-qjs).
//!
//! Why QuickJS rather than StarlingMonkey: 1.6 MB components instead of 12 MB, and with
//! `--backend-qjs-stub-wasi` no WASI imports at all. QuickJS passes 64-bit integers as
//! JavaScript numbers (StarlingMonkey as BigInt); the SDK takes and returns both, so a
//! migration does not depend on the backend (see `guest-sdk/js/index.js`).
//!
//! The stage holds a copy of the revision's sources, the SDK as the package
//! `node_modules/wasmig` (its import specifiers rewritten to the WIT's versioned interface
//! names) and the entry module `wasmig_entry.js`, which exports `upgrade` and `downgrade`.
//! jco runs from the stage (it resolves the entry file against its working directory).
//! Not byte-for-byte reproducible either: the snapshot differs in a few bytes per build.

use std::process::Command;

use super::embedded::{self, Contract};
use super::{Job, Toolchain};
use crate::revision::Kind;

/// jco from npm (the QuickJS backend comes with it).
pub(super) const TOOLCHAIN: Toolchain = Toolchain {
    language: "JavaScript",
    program: "jco",
    override_var: "WASMIG_JCO",
    install: "npm install -g @bytecodealliance/jco@1.35.0",
};

/// The module the migration lives in.
pub(super) const SOURCE: &str = "migration.js";

/// How the SDK passes 64-bit integers: as Numbers, for QuickJS (StarlingMonkey would need
/// `true`); checked by a test so a backend change cannot forget it.
#[cfg(test)]
const INT64_SETTING: &str = "const INT64_AS_BIGINT = false;";

/// Stages the sources and the SDK, then runs `jco componentize`.
pub(super) fn build(job: &Job<'_>) -> Result<Vec<u8>, String> {
    super::copy_sources(job.revision, &job.stage)?;
    if !job.stage.join(SOURCE).is_file() {
        return Err(format!(
            "{} has no {SOURCE}; a JavaScript migration exports `upgrade()` and `downgrade()` from it",
            job.revision.dir.display()
        ));
    }
    let contract = Contract::load(job.wit_dir)?;
    let imports = contract.imports();
    let sdk: Vec<(&str, String)> = embedded::sdk_files(Kind::Js)
        .iter()
        .map(|(name, text)| (*name, versioned(text, &imports)))
        .collect();
    super::write_files(&job.stage, &sdk)?;
    let mut command = Command::new(&job.program);
    command
        .current_dir(&job.stage)
        .args([
            "componentize",
            "wasmig_entry.js",
            "--backend",
            "quickjs",
            "--backend-qjs-disable-async",
            "--backend-qjs-stub-wasi",
            "--world-name",
            embedded::WORLD,
            "--wit",
        ])
        .arg(std::path::absolute(job.wit_dir).map_err(|e| e.to_string())?)
        .arg("-o")
        .arg(std::path::absolute(&job.out).map_err(|e| e.to_string())?);
    super::run(job, &mut command, "")?;
    super::read_output(job)
}

/// The SDK's source with each `"wasmig:migration/NAME"` import specifier replaced by the
/// world's versioned name of that interface.
fn versioned(text: &str, imports: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (name, full) in imports {
        out = out.replace(
            &format!("\"wasmig:migration/{name}\""),
            &format!("\"{full}\""),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_specifiers_get_the_version_of_the_wit() {
        let imports = vec![("sql".to_owned(), "wasmig:migration/sql@9.8.7".to_owned())];
        assert_eq!(
            versioned(
                "import { execute } from \"wasmig:migration/sql\";",
                &imports
            ),
            "import { execute } from \"wasmig:migration/sql@9.8.7\";"
        );
    }

    #[test]
    fn the_sdk_declares_how_it_passes_64_bit_integers() {
        let index = embedded::sdk_files(Kind::Js)
            .iter()
            .find(|(name, _)| name.ends_with("index.js"))
            .unwrap()
            .1;
        assert!(index.contains(INT64_SETTING));
        for name in ["sql", "log", "batch"] {
            assert!(
                index.contains(&format!("\"wasmig:migration/{name}\"")),
                "{name}"
            );
        }
    }
}

//! C revisions: `migration.c` (and any other `.c` files in the revision) using the C SDK
//! (`wasmig.h`), compiled with clang for `wasm32-wasi` as a reactor and componentized with
//! wit-component, like a Rust revision.
//!
//! The bindings are generated at build time from the embedded WIT with the `wit-bindgen-c`
//! library (the same generator as `wit-bindgen c`), with the world's interfaces renamed to
//! fixed C prefixes (`wasmig_migration_sql_…`), so the SDK does not change when the WIT's
//! version does (wit-bindgen would otherwise add the version to every name once two versions
//! of the package are present). wasi-libc's allocator and string functions need no WASI
//! import; stdio (`printf`, `snprintf`, `fopen`) does, and is refused with a message.
//! Reproducible: the same sources give the same bytes.

use std::process::Command;

use wit_bindgen_core::Files;

use super::embedded::{self, Contract};
use super::{Job, Toolchain};
use crate::revision::Kind;

/// clang from LLVM 14 (Debian's), with the wasm32-wasi libc and compiler runtime.
pub(super) const TOOLCHAIN: Toolchain = Toolchain {
    language: "C",
    program: "clang-14",
    override_var: "WASMIG_CLANG",
    install: "apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32",
};

/// The main source file.
pub(super) const SOURCE: &str = "migration.c";

/// Added to a failed compile: what a missing sysroot or runtime looks like.
const SYSROOT_HINT: &str = "\n(a missing `stdlib.h` or `libclang_rt.builtins-wasm32.a` means the wasm32 libc or runtime is not installed: `apt-get install wasi-libc libclang-rt-14-dev-wasm32`)";

/// Generates the bindings, compiles and links, and componentizes.
pub(super) fn build(job: &Job<'_>) -> Result<Vec<u8>, String> {
    let sources: Vec<std::path::PathBuf> = super::source_files(&job.revision.dir)
        .map_err(|e| format!("{e:#}"))?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".c"))
        .map(|(_, path)| path)
        .collect();
    if !sources.iter().any(|p| p.ends_with(SOURCE)) {
        return Err(format!(
            "{} has no {SOURCE}; a C migration defines its upgrade and downgrade there",
            job.revision.dir.display()
        ));
    }
    let sdk: Vec<(&str, String)> = embedded::sdk_files(Kind::C)
        .iter()
        .map(|(name, text)| (*name, (*text).to_owned()))
        .collect();
    super::write_files(&job.stage, &sdk)?;
    for (name, bytes) in bindings(job)?.iter() {
        crate::confined::replace_file(&job.stage.join(name), bytes).map_err(|e| e.to_string())?;
    }

    let core = job.stage.join("migration.core.wasm");
    let mut command = Command::new(&job.program);
    command
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-Os",
            "-std=c11",
            "-Wall",
            "-Werror=implicit-function-declaration",
            // No absolute paths of the stage in the output.
            "-fno-ident",
        ])
        .arg("-I")
        .arg(&job.stage)
        .arg("-I")
        .arg(&job.revision.dir)
        .args(&sources)
        .arg(job.stage.join("wasmig.c"))
        .arg(job.stage.join("migration.c"))
        .arg(job.stage.join("migration_component_type.o"))
        .args(["-Wl,--strip-debug", "-o"])
        .arg(&core);
    super::run(job, &mut command, SYSROOT_HINT)?;
    let bytes = std::fs::read(&core).map_err(|e| format!("{}: {e}", core.display()))?;
    crate::artifact::componentize(&bytes).map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("wasi_snapshot_preview1") {
            format!(
                "the compiled module imports WASI ({text}); C migrations run without WASI: stdio (`printf`, `snprintf`, `fopen`...), `time()` and `getenv()` are not available, log with `wasmig_info()` and friends instead"
            )
        } else {
            format!("cannot make a component of {}: {text}", core.display())
        }
    })
}

/// The C bindings of the `migration` world (`migration.h`, `migration.c`,
/// `migration_component_type.o`), with fixed names for the world's interfaces.
fn bindings(job: &Job<'_>) -> Result<Files, String> {
    let contract = Contract::load(job.wit_dir)?;
    let rename = contract
        .imports()
        .into_iter()
        .map(|(name, full)| (full, format!("wasmig_migration_{}", name.replace('-', "_"))))
        .collect();
    let opts = wit_bindgen_c::Opts {
        rename,
        ..Default::default()
    };
    let Contract { mut resolve, world } = contract;
    let mut files = Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("generating the C bindings failed: {e:#}"))?;
    Ok(files)
}

//! What the language builds need from this binary: the WIT contract (every file of `wit/`,
//! collected by `build.rs`) and each language's SDK (`guest-sdk/python`, `guest-sdk/js`,
//! `guest-sdk/c`, `guest-sdk/go`), embedded with `include_str!` so an installed `wasmig` needs no source
//! checkout; and the names of the world's imports, read from the WIT with wit-parser.
//!
//! Not here: running the toolchains (the language modules).

use std::path::{Path, PathBuf};

use wit_bindgen_core::wit_parser::{Resolve, WorldId, WorldItem, WorldKey};

use crate::error::BuildError;
use crate::revision::Kind;

include!(concat!(env!("OUT_DIR"), "/wit_files.rs"));

/// The world every migration targets.
pub const WORLD: &str = "migration";

/// The Python SDK: a package `wasmig` and the entry module componentize-py is pointed at.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "wasmig/__init__.py",
        include_str!("../../../../guest-sdk/python/wasmig/__init__.py"),
    ),
    (
        "wasmig_entry.py",
        include_str!("../../../../guest-sdk/python/wasmig_entry.py"),
    ),
];

/// The JavaScript SDK: a package `wasmig` (resolved from `node_modules`) and the entry
/// module jco is pointed at.
const JS_SDK: &[(&str, &str)] = &[
    (
        "node_modules/wasmig/package.json",
        include_str!("../../../../guest-sdk/js/package.json"),
    ),
    (
        "node_modules/wasmig/index.js",
        include_str!("../../../../guest-sdk/js/index.js"),
    ),
    (
        "wasmig_entry.js",
        include_str!("../../../../guest-sdk/js/wasmig_entry.js"),
    ),
];

/// The C SDK: a header and its implementation over the generated bindings.
const C_SDK: &[(&str, &str)] = &[
    ("wasmig.h", include_str!("../../../../guest-sdk/c/wasmig.h")),
    ("wasmig.c", include_str!("../../../../guest-sdk/c/wasmig.c")),
];

/// The Go SDK: the module `wasmig` (its generated bindings are added at build time, see
/// `toolchain::go`), with the support packages of wit-bindgen's Go bindings it vendors.
pub(crate) const GO_SDK: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../../../guest-sdk/go/go.mod")),
    (
        "wasmig.go",
        include_str!("../../../../guest-sdk/go/wasmig.go"),
    ),
    ("rows.go", include_str!("../../../../guest-sdk/go/rows.go")),
    (
        "columns.go",
        include_str!("../../../../guest-sdk/go/columns.go"),
    ),
    (
        "value.go",
        include_str!("../../../../guest-sdk/go/value.go"),
    ),
    (
        "batch.go",
        include_str!("../../../../guest-sdk/go/batch.go"),
    ),
    ("log.go", include_str!("../../../../guest-sdk/go/log.go")),
    (
        "internal/entry/entry.go",
        include_str!("../../../../guest-sdk/go/internal/entry/entry.go"),
    ),
    (
        "internal/wit/exports/export_wit_world/export.go",
        include_str!("../../../../guest-sdk/go/internal/wit/exports/export_wit_world/export.go"),
    ),
    (
        "internal/wit/README.md",
        include_str!("../../../../guest-sdk/go/internal/wit/README.md"),
    ),
    (
        "internal/wit/LICENSE",
        include_str!("../../../../guest-sdk/go/internal/wit/LICENSE"),
    ),
    (
        "internal/wit/types/option.go",
        include_str!("../../../../guest-sdk/go/internal/wit/types/option.go"),
    ),
    (
        "internal/wit/types/result.go",
        include_str!("../../../../guest-sdk/go/internal/wit/types/result.go"),
    ),
    (
        "internal/wit/types/tuple.go",
        include_str!("../../../../guest-sdk/go/internal/wit/types/tuple.go"),
    ),
    (
        "internal/wit/types/unit.go",
        include_str!("../../../../guest-sdk/go/internal/wit/types/unit.go"),
    ),
    (
        "internal/wit/runtime/runtime.go",
        include_str!("../../../../guest-sdk/go/internal/wit/runtime/runtime.go"),
    ),
    (
        "internal/wit/runtime/empty.s",
        include_str!("../../../../guest-sdk/go/internal/wit/runtime/empty.s"),
    ),
];

/// The Rust SDK (the crate `wasmig-guest`), materialised in a project's
/// `versions/.wasmig-sdk/rust/` ([`write_rust_sdk`]) so that its migrations build from the
/// project alone, wherever it is checked out and whether or not wasmig's source is there.
const RUST_SDK: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../../guest-sdk/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../../guest-sdk/src/lib.rs"),
    ),
    (
        "src/batch.rs",
        include_str!("../../../../guest-sdk/src/batch.rs"),
    ),
    (
        "src/columns.rs",
        include_str!("../../../../guest-sdk/src/columns.rs"),
    ),
    (
        "src/bindings.rs",
        include_str!("../../../../guest-sdk/src/bindings.rs"),
    ),
    ("src/db.rs", include_str!("../../../../guest-sdk/src/db.rs")),
    (
        "src/error.rs",
        include_str!("../../../../guest-sdk/src/error.rs"),
    ),
    (
        "src/log.rs",
        include_str!("../../../../guest-sdk/src/log.rs"),
    ),
    (
        "src/row.rs",
        include_str!("../../../../guest-sdk/src/row.rs"),
    ),
    (
        "src/text_types.rs",
        include_str!("../../../../guest-sdk/src/text_types.rs"),
    ),
    (
        "src/value.rs",
        include_str!("../../../../guest-sdk/src/value.rs"),
    ),
];

/// Where [`write_rust_sdk`] puts the Rust SDK, relative to the versions directory (the
/// Cargo workspace of the Rust revisions), ignored by git.
///
/// Inside the workspace, not under `.wasmig/`: cargo derives a package's symbol hashes
/// (`-C metadata`) from its path relative to the workspace root when it is inside it, but
/// from its absolute path when it is not, so an SDK outside the workspace would make a
/// clone at another path build other bytes (and trip the checksums of applied revisions).
pub const RUST_SDK_DIR: &str = ".wasmig-sdk/rust";

/// The directories [`write_rust_sdk`] writes in, relative to the versions directory.
pub const RUST_SDK_DIRS: [&str; 2] = [".wasmig-sdk/rust", ".wasmig-sdk/rust/src"];

/// Writes the embedded Rust SDK into `versions_dir/.wasmig-sdk/rust/` and returns that
/// directory. Files already holding the same text are left alone, so cargo sees nothing new
/// to build.
///
/// # Errors
/// [`BuildError`] on I/O errors.
pub fn write_rust_sdk(versions_dir: &Path) -> Result<PathBuf, BuildError> {
    let dir = versions_dir.join(RUST_SDK_DIR);
    let fail = |e: std::io::Error| BuildError {
        message: format!("cannot write the Rust SDK to {}: {e}", dir.display()),
    };
    for (name, text) in RUST_SDK {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        std::fs::create_dir_all(path.parent().expect("a file in a directory")).map_err(fail)?;
        crate::confined::replace_file(&path, text).map_err(fail)?;
    }
    Ok(dir)
}

/// The SDK files of a language, relative to its staging directory.
pub fn sdk_files(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Python => PYTHON_SDK,
        Kind::Js => JS_SDK,
        Kind::C => C_SDK,
        Kind::Go => GO_SDK,
        Kind::Sql | Kind::Rust | Kind::Wasm => &[],
    }
}

/// Writes the embedded WIT into `work_dir/wit/` (replacing what was there) and returns
/// that directory.
///
/// # Errors
/// [`BuildError`] on I/O errors.
pub fn write_wit(work_dir: &Path) -> Result<PathBuf, BuildError> {
    let dir = work_dir.join("wit");
    let fail = |e: std::io::Error| BuildError {
        message: format!("cannot write the WIT contract to {}: {e}", dir.display()),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(fail)?;
    }
    for (name, text) in WIT_FILES {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a file in a directory")).map_err(fail)?;
        crate::confined::replace_file(&path, text).map_err(fail)?;
    }
    Ok(dir)
}

/// The parsed contract: the WIT in `wit_dir` and its `migration` world.
pub struct Contract {
    /// Everything parsed, dependencies included.
    pub resolve: Resolve,
    /// The `migration` world of the main package.
    pub world: WorldId,
}

impl Contract {
    /// Parses the WIT written by [`write_wit`].
    ///
    /// # Errors
    /// A message when the WIT does not parse or lacks the world (a wasmig bug).
    pub fn load(wit_dir: &Path) -> Result<Contract, String> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_path(wit_dir)
            .map_err(|e| format!("the embedded WIT does not parse: {e:#}"))?;
        let world = resolve
            .select_world(&[package], Some(WORLD))
            .map_err(|e| format!("the embedded WIT has no `{WORLD}` world: {e:#}"))?;
        Ok(Contract { resolve, world })
    }

    /// The world's imported interfaces as (interface name, full versioned name), e.g.
    /// (`sql`, `wasmig:migration/sql@0.1.0`), types included.
    pub fn imports(&self) -> Vec<(String, String)> {
        self.resolve.worlds[self.world]
            .imports
            .iter()
            .filter_map(|(key, item)| match (key, item) {
                (WorldKey::Interface(id), WorldItem::Interface { .. }) => {
                    let name = self.resolve.interfaces[*id].name.clone()?;
                    Some((name, self.resolve.name_world_key(key)))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_wit_has_the_migration_world_and_its_interfaces() {
        let dir = std::env::temp_dir().join(format!("wasmig-wit-{}", std::process::id()));
        let wit = write_wit(&dir).unwrap();
        let contract = Contract::load(&wit).unwrap();
        let names: Vec<String> = contract.imports().into_iter().map(|(n, _)| n).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        for name in ["types", "sql", "log"] {
            assert!(names.iter().any(|n| n == name), "{names:?}");
        }
    }

    /// The files under `dir` (relative to it, sorted), leaving out the subdirectories named
    /// in `skip`.
    fn files_under(dir: &str, skip: &[&str]) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(root).unwrap();
                let relative = relative.to_string_lossy().replace('\\', "/");
                if path.is_dir() {
                    if !skip.contains(&relative.as_str()) {
                        walk(root, &path, skip, out);
                    }
                } else {
                    out.push(relative);
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut on_disk = Vec::new();
        walk(&root, &root, skip, &mut on_disk);
        on_disk.sort();
        on_disk
    }

    fn names(sdk: &[(&str, &str)]) -> Vec<String> {
        let mut embedded: Vec<String> = sdk.iter().map(|(n, _)| (*n).to_owned()).collect();
        embedded.sort();
        embedded
    }

    #[test]
    fn every_file_of_the_go_sdk_is_embedded() {
        assert_eq!(files_under("../../guest-sdk/go", &[]), names(GO_SDK));
    }

    /// A module the SDK's `lib.rs` declares but the binary does not carry fails every
    /// project's Rust build (`wasmig build` writes the SDK from these files).
    #[test]
    fn every_file_of_the_rust_sdk_is_embedded() {
        let on_disk: Vec<String> =
            files_under("../../guest-sdk", &["tests", "go", "js", "python", "c"])
                .into_iter()
                .filter(|f| f == "Cargo.toml" || f.starts_with("src/"))
                .collect();
        assert_eq!(on_disk, names(RUST_SDK));
    }
}

//! Embeds the WIT contract in the binary: every file under `wit/` (the current package and
//! any frozen versions under `wit/deps/`) becomes an entry of `WIT_FILES` in
//! `$OUT_DIR/wit_files.rs`, which `toolchain::embedded` writes into a project's `.wasmig/`
//! for the Python, JavaScript and C toolchains. Walking the directory (rather than naming
//! files) keeps a WIT version bump free of host changes.
//!
//! Not here: the host's own bindings (`bindgen!` reads `wit/` itself).

use std::path::{Path, PathBuf};

fn main() {
    // Read when the script runs: cargo reuses one compiled build script for checkouts at
    // other paths sharing a target directory, and `env!` would embed the WIT of the
    // checkout that compiled it.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit = Path::new(&manifest_dir).join("../../wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let mut files = Vec::new();
    collect(&wit, &wit, &mut files);
    files.sort();
    let mut out = String::from("/// Every file of `wit/`: (path relative to `wit/`, text).\n");
    out.push_str("pub(crate) const WIT_FILES: &[(&str, &str)] = &[\n");
    for (relative, absolute) in &files {
        println!("cargo:rerun-if-changed={}", absolute.display());
        out.push_str(&format!(
            "    ({relative:?}, include_str!({:?})),\n",
            absolute.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dest.join("wit_files.rs"), out).expect("OUT_DIR is writable");
}

/// Every `.wit` file under `dir`, with its path relative to `root` (`/`-separated).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "wit") {
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((relative, path.canonicalize().expect("an existing file")));
        }
    }
}

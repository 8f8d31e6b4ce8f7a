//! Builds the test guests of `tests/guests/` (a Cargo workspace of its own): `scenario`,
//! `values`, `batches`, `legacy`, `legacy_0_2_0` and `legacy_0_3_0` for
//! `wasm32-unknown-unknown`, then made
//! components with `wit-component`; `hostile` for `wasm32-wasip2` (it needs WASI to attempt
//! its escapes).
//! Writes `$OUT_DIR/guests.rs`, the `foreach_guest!` macro naming every component.
//!
//! The nested cargo uses a target directory of its own (under this build's `OUT_DIR`), so
//! it never waits on the lock of the outer build's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which guest crates build for which target, and whether they need componentizing.
const TARGETS: [(&str, bool, &[&str]); 2] = [
    (
        "wasm32-unknown-unknown",
        true,
        &[
            "scenario",
            "values",
            "batches",
            "legacy",
            "legacy_0_2_0",
            "legacy_0_3_0",
        ],
    ),
    ("wasm32-wasip2", false, &["hostile"]),
];

fn main() {
    // Read when the script runs, not when it was compiled: cargo reuses one compiled build
    // script for checkouts at other paths sharing a target directory, and `env!` would
    // build the guests of the checkout that compiled it.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../guests");
    // Relative to this package, so that two checkouts sharing one target directory (whose
    // build-script units cargo hashes alike) each watch their own sources.
    for watched in ["../guests", "../../guest-sdk", "../../wit"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out.join("guests-target");
    let mut guests = Vec::new();
    for (target, componentize, packages) in TARGETS {
        for (name, wasm) in build(&root, &target_dir, target, packages) {
            let bytes = std::fs::read(&wasm).expect("the built module is readable");
            let component = if componentize {
                wit_component::ComponentEncoder::default()
                    .module(&bytes)
                    .and_then(|e| e.validate(true).encode())
                    .unwrap_or_else(|e| panic!("componentizing {name}: {e:#}"))
            } else {
                bytes
            };
            let path = out.join(format!("{name}.component.wasm"));
            std::fs::write(&path, component).expect("OUT_DIR is writable");
            guests.push((name, path));
        }
    }
    guests.sort();
    let mut text = String::from(
        "/// Calls `$m!(NAME, \"path/to/component.wasm\")` once per test guest.\n#[macro_export]\nmacro_rules! foreach_guest {\n    ($m:ident) => {\n",
    );
    for (name, path) in &guests {
        text.push_str(&format!(
            "        $m!({}, {:?});\n",
            name.to_uppercase(),
            path.display().to_string()
        ));
    }
    text.push_str("    };\n}\n");
    std::fs::write(out.join("guests.rs"), text).expect("OUT_DIR is writable");
}

/// Builds `packages` for `target`; returns each crate's name and its `.wasm` file.
fn build(
    root: &Path,
    target_dir: &Path,
    target: &str,
    packages: &[&str],
) -> Vec<(String, PathBuf)> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
        "--target",
        target,
    ])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir)
    // The outer build's settings are not the guests'.
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("CARGO_BUILD_TARGET");
    for p in packages {
        cmd.args(["-p", p]);
    }
    let output = cmd.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the test guests for {target} failed (is the target installed? `rustup target add {target}`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut built = Vec::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if !packages.contains(&name) {
            continue;
        }
        let wasm = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        if let Some(wasm) = wasm {
            built.push((name.to_owned(), PathBuf::from(wasm)));
        }
    }
    assert_eq!(
        built.len(),
        packages.len(),
        "expected a component from each of {packages:?}"
    );
    built
}

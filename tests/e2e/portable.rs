//! Projects that build anywhere: a project names nothing outside itself (the Rust SDK is
//! materialised from the binary into `versions/.wasmig-sdk/rust`, the Python, JavaScript
//! and C SDKs into the build stage), so a clone at another path builds byte-identical Rust
//! components, a teammate's clone verifies the checksums a run on the first recorded, and a
//! project in every language builds and runs where wasmig's source tree is unreachable.

use std::path::Path;

use crate::snap::{assert_run, shown, shown_in};
use crate::support::{Backend, Run, TestDb, TestProject, repo_root, wasmig_cmd};

/// Copies a project as a clone would see it: without wasmig's working directory and build
/// outputs (ignored by git).
fn clone_project(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".wasmig" || name == ".wasmig-sdk" || name == "target" || name == "test.db" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            clone_project(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_clone_at_another_path_builds_the_same_rust_components_and_verifies() {
    let project = TestProject::new();
    project
        .run_plain(&[
            "revision", "-m", "rust one", "--rev-id", "r1", "--kind", "rust",
        ])
        .success();
    let manifest = std::fs::read_to_string(project.dir.join("versions/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("path = \".wasmig-sdk/rust\""),
        "{manifest}"
    );
    let source = repo_root().display().to_string();
    assert!(
        !manifest.contains(&source),
        "names wasmig's source: {manifest}"
    );
    project.run_plain(&["build"]).success();
    let built = std::fs::read(project.dir.join(".wasmig/build/r1.wasm")).unwrap();

    // Applied from the first checkout.
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.run(&db, &["up"]).success();

    // A clone at another path, deeper, built from scratch.
    let outside = project.dir.with_extension("elsewhere");
    let clone = outside.join("a/clone");
    clone_project(&project.dir, &clone);
    let run = wasmig_cmd(&clone).args(["build"]).output().unwrap();
    assert!(run.status.success(), "{run:?}");
    let rebuilt = std::fs::read(clone.join(".wasmig/build/r1.wasm")).unwrap();
    assert!(built == rebuilt, "the clone built other bytes");
    assert!(
        clone.join("versions/.wasmig-sdk/rust/src/lib.rs").is_file(),
        "the SDK came from the binary"
    );
    // The clone verifies what the first checkout applied: same checksums.
    let check = Run::from_output(
        wasmig_cmd(&clone)
            .args(["check", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .success();
    assert_run!("check_in_a_clone", shown_in(&check, &clone, Some(&db)));
    db.drop_db().await;
    std::fs::remove_dir_all(&outside).unwrap();
}

#[tokio::test]
async fn a_project_in_every_language_builds_and_runs_where_wasmigs_source_tree_is_unreachable() {
    // A mount namespace in which wasmig's source checkout is an empty directory: what an
    // installed binary on a CI runner sees. Needs root (as CI runs); refuses to pass
    // otherwise rather than skip.
    let probe = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test needs `unshare -m` (root): run the tests as root, as CI does"
    );
    let project = TestProject::new();
    for (id, kind) in [("r1", "rust"), ("p2", "python"), ("j3", "js"), ("c4", "c")] {
        project
            .run_plain(&[
                "revision",
                "-m",
                &format!("{kind} one"),
                "--rev-id",
                id,
                "--kind",
                kind,
            ])
            .success();
    }
    // The binary and the nested build's target directory outside the hidden tree.
    let outside = project.dir.with_extension("unreachable");
    std::fs::create_dir_all(&outside).unwrap();
    let binary = outside.join("wasmig");
    std::fs::copy(env!("CARGO_BIN_EXE_wasmig"), &binary).unwrap();
    let root = repo_root();
    let script = format!(
        "mount -t tmpfs wasmig-source-hidden '{root}' && test ! -e '{root}/Cargo.toml' \
         && '{bin}' up --database-url 'sqlite:{db}'",
        root = root.display(),
        bin = binary.display(),
        db = project.dir.join("test.db").display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(&project.dir)
        .env_remove("DATABASE_URL")
        .env_remove("WASMIG_CACHE_DIR")
        .env("CARGO_TARGET_DIR", outside.join("target"))
        .output()
        .unwrap();
    let run = Run::from_output(out).success();
    assert_run!(
        "run_where_the_source_tree_is_unreachable",
        shown(&run, &project, None)
    );
    for id in ["r1", "p2", "j3", "c4"] {
        assert!(
            project
                .dir
                .join(format!(".wasmig/build/{id}.wasm"))
                .is_file(),
            "{id}"
        );
    }
    std::fs::remove_dir_all(&outside).unwrap();
}

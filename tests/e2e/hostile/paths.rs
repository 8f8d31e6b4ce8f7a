//! Paths in project files stay inside the project: a manifest's `component`, and
//! `versions_dir`, `cache_dir` and `default_sqlite_file` in `wasmig.toml` are refused
//! (exit 3, naming the setting) when absolute or when they climb out with `..`; nothing is
//! read or written there.

use crate::snap::{assert_run, shown_with};
use crate::support::{Backend, TestDb, TestProject};

/// A unique path outside the project that must never be created.
fn outside(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wasmig-outside-{}-{name}", std::process::id()))
}

#[tokio::test]
async fn wasmig_toml_cannot_point_wasmig_outside_the_project() {
    let cache = outside("cache");
    let sqlite = outside("db.sqlite");
    let variants = [
        (
            "cache_dir_elsewhere",
            "cache_dir",
            format!("cache_dir = {:?}", cache.display().to_string()),
        ),
        (
            "cache_dir_climbing_out",
            "cache_dir",
            "cache_dir = \"../../escaped-cache\"".to_owned(),
        ),
        (
            "versions_dir_absolute",
            "versions_dir",
            "versions_dir = \"/etc\"".to_owned(),
        ),
        (
            "versions_dir_climbing_out",
            "versions_dir",
            "versions_dir = \"versions/../../x\"".to_owned(),
        ),
        (
            "default_sqlite_file_elsewhere",
            "default_sqlite_file",
            format!("default_sqlite_file = {:?}", sqlite.display().to_string()),
        ),
    ];
    // The paths outside carry the test process's pid.
    let elsewhere = outside("").display().to_string();
    for (name, setting, line) in variants {
        let project = TestProject::new();
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let config = project.dir.join("wasmig.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text
            .lines()
            .filter(|l| !l.starts_with(setting))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&config, format!("{line}\n{text}\n")).unwrap();
        // Every command refuses it the same way: one snapshot of the three.
        let mut all = String::new();
        for args in [&["up"][..], &["current"], &["history"]] {
            let run = project.run_plain(args).fails_with(3);
            all.push_str(&format!("$ wasmig {}\n", args.join(" ")));
            all.push_str(&shown_with(
                &run,
                &project,
                None,
                &[(elsewhere.as_str(), "[OUTSIDE]-")],
            ));
        }
        assert_run!(name, all);
        assert!(!cache.exists() && !sqlite.exists(), "{line}");
        assert!(
            !project.dir.join("wasmig.db").exists(),
            "{line}: nothing ran"
        );
    }
}

#[tokio::test]
async fn a_manifest_cannot_run_a_component_from_outside_the_project() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let dir = project.wasm_revision("b2", std::path::Path::new(crate::test_guest::SCENARIO));
    // The component it names exists, outside the project.
    let elsewhere = outside("component.wasm");
    std::fs::copy(crate::test_guest::SCENARIO, &elsewhere).unwrap();
    let manifest = dir.join("migration.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let outside_prefix = outside("").display().to_string();
    for (name, component) in [
        ("component_elsewhere", elsewhere.display().to_string()),
        (
            "component_climbing_out",
            "../../../../../../../../../..".to_owned() + &elsewhere.display().to_string(),
        ),
        (
            "component_through_a_sibling",
            "./sub/../../b2/migration.wasm".to_owned(),
        ),
    ] {
        std::fs::write(&manifest, &original).unwrap();
        project.set_manifest(&dir, &format!("component = {component:?}"));
        let run = project.run(&db, &["up"]).fails_with(3);
        assert_run!(
            name,
            shown_with(
                &run,
                &project,
                Some(&db),
                &[(outside_prefix.as_str(), "[OUTSIDE]-")]
            )
        );
        assert!(db.heads().await.is_empty(), "{component}: nothing ran");
        assert!(!db.table_exists("t").await, "{component}");
    }
    std::fs::remove_file(&elsewhere).unwrap();
    db.drop_db().await;
}

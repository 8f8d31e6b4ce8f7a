//! The library embedded in an application: `host/wasmig/examples/migrate_at_startup.rs`
//! migrates its database at start-up with `wasmig::Migrator`, on both backends.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{BOTH, Run, TestDb, TestProject};

/// The example program, built by `cargo test` beside the `wasmig` binary.
fn example() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_wasmig"))
        .parent()
        .unwrap()
        .join("examples/migrate_at_startup");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --workspace` builds the examples",
        path.display()
    );
    path
}

fn start(project: &TestProject, db: &TestDb) -> Run {
    Run::from_output(
        Command::new(example())
            .arg(&project.dir)
            .arg(&db.url)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap(),
    )
}

#[tokio::test]
async fn an_application_migrates_its_database_at_start_up_with_the_library() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision(
            "a1",
            "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL);",
            "DROP TABLE users;",
        );
        project.sql_revision(
            "b2",
            "INSERT INTO users (id, name) VALUES (1, 'ada');",
            "DELETE FROM users;",
        );

        let first = start(&project, &db).success();
        assert!(
            first.stdout.contains("applied a1"),
            "{backend:?}: {first:?}"
        );
        assert!(
            first.stdout.contains("applied b2"),
            "{backend:?}: {first:?}"
        );
        assert!(first.stdout.contains("database at b2"), "{first:?}");
        assert!(first.stdout.contains("application started"), "{first:?}");
        assert_eq!(db.count("SELECT count(*) FROM users").await, 1);
        assert_eq!(db.history().await, ["upgrade:a1", "upgrade:b2"]);
        // The library prints nothing of its own.
        assert_eq!(first.stderr, "", "{backend:?}");

        let again = start(&project, &db).success();
        assert!(again.stdout.contains("up to date"), "{again:?}");
        assert_eq!(db.history().await.len(), 2);

        // A failing revision stops the start-up, names itself, and is rolled back.
        project.sql_revision("c3", "INSERT INTO nowhere VALUES (1);", "SELECT 1;");
        let failed = start(&project, &db);
        assert_ne!(failed.code, 0, "{failed:?}");
        assert!(failed.stderr.contains("revision c3"), "{failed:?}");
        assert!(!failed.stdout.contains("application started"), "{failed:?}");
        assert_eq!(db.heads().await, ["b2"]);
        db.drop_db().await;
    }
}

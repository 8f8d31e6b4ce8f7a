//! The untrusted SQL policy (`wasmig up --untrusted`) on the real servers, as superuser:
//! statements that reach outside the database (a program on the server, its files, another
//! connection, an extension not on the list) are refused before they reach the server,
//! from a SQL revision's script, a `transaction = "none"` script or a guest's call, and the
//! step fails naming the rule (exit 6) with nothing done. Without `--untrusted` the same
//! revisions run as before. The classifier's variants are the db crate's tests
//! (`host/db/src/policy/tests.rs`).

use std::path::{Path, PathBuf};

use crate::snap::{assert_run, shown, shown_with};
use crate::support::{Backend, TestDb, TestProject, no_transaction};

const MIGRATION_FAILED: i32 = 6;

/// A file path no other test uses, for a program on the database server to create.
fn marker() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("wasmig-policy-{}-{nanos}", std::process::id()))
}

#[tokio::test]
async fn copy_to_program_is_refused_before_it_runs_and_runs_when_trusted() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let marker = marker();
    let shown_marker = marker.display().to_string();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        &format!(
            // The program reads what COPY writes it before it exits: `touch` alone can exit
            // first, and the server then fails the COPY with a broken pipe (seen in CI).
            "CREATE TABLE before_copy (x int);\nCOPY (select 1) TO PROGRAM 'cat > /dev/null; touch {shown_marker}';"
        ),
        "DROP TABLE before_copy;",
    );
    let run = project
        .run(&db, &["up", "--untrusted"])
        .fails_with(MIGRATION_FAILED);
    assert_run!(
        "copy_to_program",
        shown_with(&run, &project, Some(&db), &[(&shown_marker, "[MARKER]")])
    );
    assert!(!marker.exists(), "the program ran");
    // a1 committed before it; nothing of b2 ran or was recorded.
    assert_eq!(db.heads().await, ["a1"]);
    assert!(db.table_exists("t").await);
    assert!(!db.table_exists("before_copy").await);
    assert_eq!(db.history().await.len(), 1);

    // Trusted, as before: the role may, so it runs.
    project.run(&db, &["up"]).success();
    assert!(marker.exists(), "trusted mode runs the program as before");
    let _ = std::fs::remove_file(&marker);
    assert_eq!(db.heads().await, ["b2"]);
    assert!(db.table_exists("before_copy").await);
    db.drop_db().await;
}

#[tokio::test]
async fn reading_a_server_file_is_refused_in_a_select_list_and_in_a_do_block() {
    for (name, read) in [
        (
            "select_list",
            "SELECT length(pg_read_file('PG_VERSION')) AS n;",
        ),
        (
            "do_block",
            "DO $$ BEGIN PERFORM pg_catalog.PG_READ_FILE('PG_VERSION'); END $$;",
        ),
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision(
            "a1",
            &format!("CREATE TABLE before_read (x int);\n{read}"),
            "DROP TABLE before_read;",
        );
        let run = project
            .run(&db, &["up", "--untrusted"])
            .fails_with(MIGRATION_FAILED);
        assert_run!(
            format!("read_file_{name}"),
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{name}");
        assert!(db.history().await.is_empty(), "{name}");
        assert!(!db.table_exists("before_read").await, "{name}");
        // Trusted: the superuser reads it, as before.
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["a1"], "{name}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn dblink_and_an_extension_not_on_the_list_are_refused() {
    for (name, sql) in [
        ("create_extension", "CREATE EXTENSION IF NOT EXISTS dblink;"),
        (
            "dblink_call",
            "SELECT public.dblink_exec('dbname=postgres', 'CREATE TABLE escaped (x int)');",
        ),
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", sql, "SELECT 1;");
        let run = project
            .run(&db, &["up", "--untrusted"])
            .fails_with(MIGRATION_FAILED);
        assert_run!(format!("foreign_{name}"), shown(&run, &project, Some(&db)));
        assert!(db.heads().await.is_empty(), "{name}");
        assert_eq!(
            db.count("SELECT count(*) FROM pg_extension WHERE extname = 'dblink'")
                .await,
            0,
            "{name}"
        );
        db.drop_db().await;
    }
    // A trusted extension is created in untrusted mode too.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;\nCREATE TABLE k (id uuid DEFAULT gen_random_uuid());",
        "DROP TABLE k;",
    );
    project.run(&db, &["up", "--untrusted"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_guest_sending_a_refused_statement_fails_its_step() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let marker = marker();
    let shown_marker = marker.display().to_string();
    let copy = format!("COPY (SELECT 1) TO PROGRAM 'touch {shown_marker}'");
    db.exec(&format!(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('query-text');
         CREATE TABLE e2e_text (text text); INSERT INTO e2e_text VALUES ('{}');",
        copy.replace('\'', "''")
    ))
    .await;
    project.wasm_revision("q1", Path::new(crate::test_guest::SCENARIO));
    let run = project
        .run(&db, &["up", "--untrusted"])
        .fails_with(MIGRATION_FAILED);
    assert_run!(
        "guest_copy_to_program",
        shown_with(&run, &project, Some(&db), &[(&shown_marker, "[MARKER]")])
    );
    assert!(!marker.exists(), "the program ran");
    assert!(db.heads().await.is_empty());
    assert!(db.history().await.is_empty());
    assert!(!db.table_exists("scenario_marker").await, "rolled back");

    // `untrusted = true` in wasmig.toml holds the same.
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("untrusted = true\n{text}")).unwrap();
    project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert!(!marker.exists(), "the program ran");
    std::fs::write(&config, text).unwrap();

    // Trusted: the guest's statement runs, as before.
    project.run(&db, &["up"]).success();
    assert!(marker.exists(), "trusted mode runs the program as before");
    let _ = std::fs::remove_file(&marker);
    assert_eq!(db.heads().await, ["q1"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_none_script_with_a_refused_statement_runs_none_of_it() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE first (x int);\nSELECT pg_ls_dir('.');\nCREATE TABLE last (x int);",
        "SELECT 1;",
    );
    no_transaction(&a1);
    let run = project
        .run(&db, &["up", "--untrusted"])
        .fails_with(MIGRATION_FAILED);
    assert_run!("none_script", shown(&run, &project, Some(&db)));
    assert!(!db.table_exists("first").await);
    assert!(!db.table_exists("last").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn sqlite_attach_is_refused_in_untrusted_mode() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let other = marker();
    let shown_other = other.display().to_string();
    project.sql_revision(
        "a1",
        &format!("CREATE TABLE t (x int);\nATTACH DATABASE '{shown_other}' AS other;"),
        "SELECT 1;",
    );
    let run = project
        .run(&db, &["up", "--untrusted"])
        .fails_with(MIGRATION_FAILED);
    assert_run!(
        "sqlite_attach",
        shown_with(&run, &project, Some(&db), &[(&shown_other, "[OTHER_DB]")])
    );
    assert!(!other.exists(), "the other database file was created");
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("t").await);
    db.drop_db().await;
}

//! `up --sql` and `down --sql`: the script of a range of SQL revisions with wasmig's
//! version-table statements, written without a database, run by the database's own client
//! (psql, sqlite3) and then taken by wasmig as if it had run the steps itself: `current`,
//! checksums, `up` with nothing to do, `down` from the records the script wrote.

use std::process::{Command, Stdio};

use crate::support::{BOTH, Backend, TestDb, TestProject, no_transaction};

const CONFIG: i32 = 3;

/// Runs `script` with the backend's own client, stopping at the first error.
fn run_client(db: &TestDb, script: &str) {
    let mut child = match db.backend {
        Backend::Postgres => Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs"),
        Backend::Sqlite => Command::new("sqlite3")
            .args(["-bail", db.url.trim_start_matches("sqlite:")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sqlite3 runs"),
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}\n{}",
        db.backend,
        String::from_utf8_lossy(&out.stderr),
        script
    );
}

#[tokio::test]
async fn a_script_run_by_the_databases_client_leaves_what_wasmig_would_on_both_backends() {
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision(
            "a1",
            "CREATE TABLE t (id int PRIMARY KEY, name text);
             INSERT INTO t (id, name) VALUES (1, 'it''s'), (2, 'b\\c')",
            "DROP TABLE t;",
        );
        project.sql_revision(
            "b2",
            "ALTER TABLE t ADD COLUMN note text;\nUPDATE t SET note = 'x';\n",
            "ALTER TABLE t DROP COLUMN note;\n",
        );
        let c3 = project.sql_revision(
            "c3",
            "CREATE INDEX t_note ON t (note);",
            "DROP INDEX t_note;",
        );
        no_transaction(&c3);
        let db = TestDb::new(backend, &project).await;
        // Written without the database: nothing there yet, not even wasmig's tables.
        let script = project.run(&db, &["up", "--sql"]).success().stdout;
        match backend {
            Backend::Postgres => assert!(!db.table_exists("wasmig_version").await),
            Backend::Sqlite => assert!(!project.dir.join("test.db").exists()),
        }
        assert!(script.contains("-- Running upgrade a1: sql a1"), "{script}");
        assert!(
            script.contains("-- Running upgrade c3: sql c3 (transaction = \"none\""),
            "{script}"
        );
        run_client(&db, &script);

        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        assert_eq!(
            db.strings("SELECT name FROM t ORDER BY id").await,
            ["it's", "b\\c"],
            "{backend:?}"
        );
        // wasmig takes it as its own: checksums recorded, nothing to do, and down works
        // from the records (and the copies) the script wrote.
        project.run(&db, &["check"]).success();
        let up = project.run(&db, &["up", "--json"]).success();
        assert_eq!(up.json()["steps"], serde_json::json!([]), "{up:?}");
        project.run(&db, &["down", "base"]).success();
        assert!(!db.table_exists("t").await, "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");

        // A range from a revision: no table creation, only the steps after it; then down.
        project.run(&db, &["up", "a1"]).success();
        let script = project.run(&db, &["up", "--sql", "a1:c3"]).success().stdout;
        assert!(!script.contains("CREATE TABLE IF NOT EXISTS"), "{script}");
        assert!(!script.contains("Running upgrade a1"), "{script}");
        run_client(&db, &script);
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        let script = project
            .run(&db, &["down", "--sql", "c3:a1"])
            .success()
            .stdout;
        run_client(&db, &script);
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        project.run(&db, &["check"]).success();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn what_a_script_cannot_say_is_refused_with_the_revision_named() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.wasm_revision("b2", std::path::Path::new(crate::test_guest::SCENARIO));
    let run = project.run_plain(&["up", "--sql"]).fails_with(CONFIG);
    assert!(run.stderr.contains("revision b2 is a component"), "{run:?}");
    // Up to the revision before it is fine.
    project.run_plain(&["up", "--sql", "a1"]).success();
    // down needs to be told where the database is: --sql never asks it.
    let run = project.run_plain(&["down", "--sql"]).fails_with(CONFIG);
    assert!(run.stderr.contains("FROM:TARGET"), "{run:?}");
    // No database was created or touched.
    assert!(!project.dir.join("wasmig.db").exists());
}

#[tokio::test]
async fn a_script_the_client_would_read_as_its_own_commands_is_refused() {
    // psql runs `\! cmd` and sqlite3 `.shell cmd`: a revision must not reach a DBA's shell
    // through the script it is asked to review. A real run refuses both scripts too.
    for (backend, up) in [
        (Backend::Postgres, "CREATE TABLE t (x int); \\! echo pwned"),
        (
            Backend::Sqlite,
            "CREATE TABLE t (x int);\n.shell echo pwned\n",
        ),
    ] {
        let project = TestProject::new();
        project.sql_revision("a1", up, "DROP TABLE t;");
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["up", "--sql"]).fails_with(CONFIG);
        assert!(run.stderr.contains("revision a1: "), "{backend:?}: {run:?}");
        assert!(!run.stdout.contains("pwned"), "{run:?}");
        db.drop_db().await;
    }
}

//! `up --sql` and `down --sql`: the script of a range of SQL revisions with wasmig's
//! version-table statements, written without a database, run by the database's own client
//! (psql, sqlite3) and then taken by wasmig as if it had run the steps itself: `current`,
//! checksums, `up` with nothing to do, `down` from the records the script wrote.

use std::process::{Command, Stdio};

use crate::support::{BOTH, Backend, TestDb, TestProject, no_transaction};

const CONFIG: i32 = 3;

/// Runs `script` with the backend's own client, stopping at the first error.
pub(crate) fn run_client(db: &TestDb, script: &str) {
    let mut child = match db.backend {
        Backend::Postgres => Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs"),
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => Command::new("sqlite3")
            .args(["-bail", db.url.trim_start_matches("sqlite:")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sqlite3 runs"),
    };
    use std::io::Write as _;
    // A client that stopped at an error closes its input: its own message says why.
    let _ = child.stdin.take().unwrap().write_all(script.as_bytes());
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
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
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

        // From base again, on a database that kept wasmig's tables: the script's table
        // creation holds whatever it finds.
        let script = project.run(&db, &["up", "--sql"]).success().stdout;
        run_client(&db, &script);
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        project.run(&db, &["check"]).success();
        project.run(&db, &["down", "base"]).success();

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
    let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    no_transaction(&a1);
    project.wasm_revision("b2", std::path::Path::new(crate::test_guest::SCENARIO));
    // A component is captured from a dry run, which does not run a `none` step.
    let run = project.run_plain(&["up", "--sql"]).fails_with(CONFIG);
    assert!(
        run.stderr
            .contains("revision b2 is a component after a1 (transaction = \"none\")"),
        "{run:?}"
    );
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
    // Nor what a run refuses before running it: transaction control, and a `COPY` from
    // the client, whose rows psql would take from the script's next lines (wasmig's own
    // records), committing nothing after it.
    for (backend, up) in [
        (Backend::Postgres, "CREATE TABLE t (x int); \\! echo pwned"),
        (
            Backend::Sqlite,
            "CREATE TABLE t (x int);\n.shell echo pwned\n",
        ),
        (
            Backend::Postgres,
            "CREATE TABLE t (x int);\ncopy t from stdin;\n",
        ),
        (Backend::Postgres, "CREATE TABLE t (x int);\nCOMMIT;\n"),
        (Backend::Sqlite, "CREATE TABLE t (x int);\nCOMMIT;\n"),
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

/// Every row of `table` as text the backend's own client prints, types told apart (SQLite:
/// as SQL literals).
fn dump(db: &TestDb, table: &str) -> String {
    let out = match db.backend {
        Backend::Postgres => Command::new("psql")
            .args(["-Atq", "-d", &db.url, "-c"])
            .arg(format!("SELECT v::text FROM {table} v ORDER BY 1"))
            .output(),
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => Command::new("sqlite3")
            .args(["-cmd", ".mode quote", db.url.trim_start_matches("sqlite:")])
            .arg(format!("SELECT * FROM {table} ORDER BY 1"))
            .output(),
    }
    .expect("the client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_components_statements_are_written_from_a_dry_run_on_both_backends() {
    const TABLES: [&str; 3] = ["value_rt", "value_copy", "\"we\"\"ird\""];
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision(
            "a1",
            "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('savepoint');",
            "DROP TABLE e2e_mode;",
        );
        // Every value type bound, and copied in (a refused row in a savepoint among them).
        project.wasm_revision("b2", std::path::Path::new(crate::test_guest::VALUES));
        // A read, then a failing insert in a savepoint it rolls back, then an insert.
        project.wasm_revision("c3", std::path::Path::new(crate::test_guest::SCENARIO));
        // What a real run leaves, on a database of its own, to compare the script's work
        // with.
        let other = match backend {
            Backend::Postgres => TestDb::new(backend, &project).await,
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => TestDb::existing(
                backend,
                &format!("sqlite:{}", project.dir.join("real.db").display()),
            ),
        };
        project.run(&other, &["up"]).success();
        let real: Vec<String> = TABLES.iter().map(|t| dump(&other, t)).collect();
        let marker = dump(&other, "scenario_marker");
        // The database must be where the script starts.
        let refused = project.run(&other, &["up", "--sql"]).fails_with(CONFIG);
        assert!(
            refused
                .stderr
                .contains("the database is at c3 where the script starts at base")
                && refused.stderr.contains("--sql c3:heads"),
            "{backend:?}: {refused:?}"
        );
        other.drop_db().await;

        let db = TestDb::new(backend, &project).await;
        let script = project.run(&db, &["up", "--sql"]).success().stdout;
        // A dry run: nothing kept.
        assert!(!db.table_exists("value_rt").await, "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");
        let c3 = script.split("-- Running upgrade c3").nth(1).expect("c3");
        assert!(
            c3.contains("(a component: the statements a dry run captured)")
                && c3.contains("-- read (1 row(s)): SELECT mode FROM e2e_mode")
                && c3.contains("carry values the component computed from rows it")
                && c3.contains("a savepoint rolled back here")
                && !c3.contains("no_such_table"),
            "{backend:?}: {script}"
        );
        if backend == Backend::Postgres {
            assert!(script.contains("PREPARE wasmig_c1("), "{script}");
        }

        run_client(&db, &script);
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        for (table, real) in TABLES.iter().zip(&real) {
            assert_eq!(&dump(&db, table), real, "{backend:?}: {table}");
        }
        assert_eq!(dump(&db, "scenario_marker"), marker, "{backend:?}");
        // Taken as wasmig's own: checksums, nothing to do, and down from the stored copies.
        project.run(&db, &["check"]).success();
        let up = project.run(&db, &["up", "--json"]).success();
        assert_eq!(up.json()["steps"], serde_json::json!([]), "{up:?}");
        project.run(&db, &["down", "base"]).success();
        assert!(!db.table_exists("value_rt").await, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_batched_revision_part_way_is_not_written_as_a_script() {
    let (project, db, _) = crate::batches::setup(Backend::Postgres, "batched", 300, 100).await;
    db.exec("UPDATE e2e_batches SET fail_from = 101").await;
    project.run(&db, &["up"]).fails_with(6);
    assert_eq!(crate::batches::checkpoints(&db).await, ["b1:upgrade:1"]);
    // Captured from its checkpoint on, the script would miss batch 1 and leave the
    // checkpoint behind: refused, naming it, before anything runs.
    let refused = project.run(&db, &["up", "--sql"]).fails_with(CONFIG);
    assert!(
        refused
            .stderr
            .contains("revision b1 is part-way through a batched upgrade (batch 1 committed)"),
        "{refused:?}"
    );
    assert_eq!(crate::batches::checkpoints(&db).await, ["b1:upgrade:1"]);
    db.drop_db().await;
}

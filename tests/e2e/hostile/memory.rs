//! Host memory is bounded whatever a guest asks for: rows are decoded as they arrive, and a
//! call whose result passes the budget (64 MiB) fails with `WASMIG-LIMIT`, an error the
//! guest may handle (read in parts with a cursor); unhandled, the step is rolled back. On
//! PostgreSQL one row (one message from the server) over the budget never reaches the
//! driver whole: the relay drops it and the call fails with SQLSTATE 54000.

use std::path::Path;

use crate::snap::{assert_run, shown};
use crate::support::{BOTH, Backend, TestDb, TestProject};

#[tokio::test]
async fn a_query_past_the_result_budget_fails_instead_of_filling_the_host() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        // Three rows of 40 MB each: 120 MB, past the 64 MiB budget at the second row.
        let big = match backend {
            Backend::Postgres => "SELECT repeat('x', 40000000) FROM generate_series(1, 3)",
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => {
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3)
                 SELECT hex(zeroblob(20000000)) FROM c"
            }
        };
        db.exec(&format!(
            "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('query-text');
             CREATE TABLE e2e_text (text text); INSERT INTO e2e_text VALUES ('{}');",
            big.replace('\'', "''")
        ))
        .await;
        project.wasm_revision("q1", Path::new(crate::test_guest::SCENARIO));
        let run = project.run(&db, &["up"]).fails_with(6);
        assert_run!(
            "query_past_the_result_budget",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(!db.table_exists("scenario_marker").await, "rolled back");

        // Within the budget the same guest reads its rows.
        db.exec(&format!(
            "DELETE FROM e2e_text; INSERT INTO e2e_text VALUES ('{}');",
            big.replace("40000000", "1000")
                .replace("20000000", "500")
                .replace('\'', "''")
        ))
        .await;
        let run = project.run(&db, &["up"]).success();
        assert_run!(
            "query_within_the_result_budget",
            backend,
            shown(&run, &project, Some(&db))
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn one_row_past_the_budget_never_reaches_the_host_whole() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // One row of 100 MB: a single message from the server.
    db.exec(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('query-text');
         CREATE TABLE e2e_text (text text);
         INSERT INTO e2e_text VALUES ('SELECT 1, repeat(''x'', 100000000)');",
    )
    .await;
    project.wasm_revision("q1", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "one_row_past_the_budget",
        Backend::Postgres,
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("scenario_marker").await, "rolled back");
    db.drop_db().await;
}

/// `up --sql` of the scenario guest in `mode`: with `over` in `e2e_text` its calls pass the
/// capture limit, and the run fails with exit 7 saying so; with `within` it succeeds, and
/// that run is returned for a look at its script.
async fn over_then_within(
    project: &TestProject,
    db: &TestDb,
    mode: &str,
    over: &str,
    within: &str,
) -> crate::support::Run {
    db.exec(&format!(
        "UPDATE e2e_mode SET mode = '{mode}'; UPDATE e2e_text SET text = '{over}'"
    ))
    .await;
    let run = project.run(db, &["up", "--sql"]).fails_with(7);
    assert!(
        run.stderr
            .contains("revision q1: its SQL calls pass 128 MiB"),
        "{mode}: {run:?}"
    );
    db.exec(&format!("UPDATE e2e_text SET text = '{within}'"))
        .await;
    project.run(db, &["up", "--sql"]).success()
}

#[tokio::test]
async fn up_sql_keeps_a_components_calls_within_its_limit() {
    // `--sql` keeps every call of a component to write it out. Twenty calls of 8 MiB each
    // (160 MiB) pass its 128 MiB: it stops keeping them and writes no script, where it kept
    // everything before (three calls of 4M values took the host to 3.4 GB).
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        db.exec(
            "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('big-params');
             CREATE TABLE e2e_text (text text); INSERT INTO e2e_text VALUES ('20');",
        )
        .await;
        project.wasm_revision("q1", Path::new(crate::test_guest::SCENARIO));
        let run = project.run(&db, &["up", "--sql"]).fails_with(7);
        assert!(
            run.stderr
                .contains("revision q1: its SQL calls pass 128 MiB")
                && run.stderr.contains("wasmig up --dry-run"),
            "{backend:?}: {run:?}"
        );
        assert!(run.stdout.is_empty(), "no script: {backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(!db.table_exists("scenario_marker").await, "{backend:?}");

        // Within it, the same calls are written out.
        db.exec("UPDATE e2e_text SET text = '2'").await;
        let run = project.run(&db, &["up", "--sql"]).success();
        assert_eq!(
            run.stdout.matches(&"x".repeat(8 << 20)).count(),
            2,
            "{backend:?}: two 8 MiB values in the script"
        );

        // Small to send, large to write: a 64 KiB statement with 10,000 rows of no
        // parameters is written once per row (655 MB of script, which took the host to
        // 2 GB when the limit counted only what was sent).
        let run = over_then_within(&project, &db, "repeated-sql", "10000", "10").await;
        assert!(
            run.stdout.matches(&"x".repeat(64 << 10)).count() >= 10,
            "{backend:?}: the statement written for each row"
        );

        // PostgreSQL's script escapes an array's elements twice (for the array, then for
        // the literal): six arrays of 8 MiB of backslashes are 192 MiB of script (counted
        // as 96 MiB, and written out, before).
        if backend == Backend::Postgres {
            let run = over_then_within(&project, &db, "backslash-array", "6", "2").await;
            assert_eq!(
                run.stdout.matches(&"\\".repeat(32 << 20)).count(),
                2,
                "two arrays of 8 MiB, each written as 32 MiB"
            );
        }

        // A float is written in its shortest exact digits with an exponent when the plain
        // decimal would be long: 200,000 of the smallest normal double took 66 MB of
        // script written in full (330 bytes each, where 64 are counted; found by a review).
        if backend == Backend::Postgres {
            db.exec(
                "UPDATE e2e_mode SET mode = 'tiny-floats'; UPDATE e2e_text SET text = '200000'",
            )
            .await;
            let run = project.run(&db, &["up", "--sql"]).success();
            assert!(
                run.stdout.contains("\"-2.2250738585072014e-308\"") && run.stdout.len() < 8 << 20,
                "{} bytes of script",
                run.stdout.len()
            );
        }

        // SQLite's script writes a value at each of its placeholders: one 8 KiB value
        // named 20,000 times is 160 MB of script (a review's 50,000 took the host to 834 MB).
        if backend == Backend::Sqlite {
            let run = over_then_within(&project, &db, "repeated-placeholder", "20000", "3").await;
            assert_eq!(
                run.stdout.matches(&"x".repeat(8 << 10)).count(),
                3,
                "{run:?}"
            );
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn copy_in_columns_without_a_column_path_is_written_in_chunks_all_or_nothing() {
    // SQLite writes a call's columns as rows, 10,000 at a time, so that the host never
    // holds 4M values as rows at once (679 MB before): 24,999 rows in three chunks; and
    // the call fails as one when its third chunk does.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    db.exec(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('copy-columns');
         CREATE TABLE e2e_text (text text); INSERT INTO e2e_text VALUES ('25000');
         CREATE TABLE copied (x INTEGER CHECK (x <> 24999));",
    )
    .await;
    project.wasm_revision("q1", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).success();
    assert!(
        run.stderr.contains("the copy failed") && run.stderr.contains("; 0 in the table"),
        "the third chunk failed, the call with it: {run:?}"
    );
    project.run(&db, &["down", "base"]).success();
    db.exec("DELETE FROM copied; UPDATE e2e_text SET text = '24999'")
        .await;
    let run = project.run(&db, &["up"]).success();
    assert!(
        run.stderr
            .contains("copied 24999 row(s); 24999 in the table"),
        "{run:?}"
    );
    db.drop_db().await;
}

//! Transaction control hidden where a reader of the text and the server disagree about
//! where a literal ends (`standard_conforming_strings` off: a backslash escapes the quote).
//! wasmig pins the setting on for its sessions, refuses statements that change it, and
//! judges every script with PostgreSQL's own parser under both readings: the hidden
//! `BEGIN` or `COMMIT` is refused before anything runs, however the setting was changed
//! (a `SET`, a `set_config` the parser cannot name, the database's default). Behind that,
//! the server's word (the transaction id, the transaction status after each statement of a
//! `transaction = "none"` script) still decides: `transactions`, `transaction_none` and the
//! db crate's tests drive that check directly.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject, no_transaction};

const MIGRATION_FAILED: i32 = 6;

/// With `standard_conforming_strings` off, the server reads `'a\''` as one literal and
/// runs the `BEGIN` after it, where a reader of standard SQL sees the `BEGIN` inside a
/// second literal.
const SMUGGLE: &str = "SET standard_conforming_strings = off;
SELECT 'a\\''; BEGIN; CREATE TABLE smuggled (x int); SELECT '';
CREATE TABLE after_it (x int);
";

#[tokio::test]
async fn a_transaction_hidden_in_a_none_script_is_refused_before_anything_runs() {
    // The setting changed by a `SET` the parser names, by a `set_config` whose name it
    // cannot read, or not at all (the script alone, read with backslashes as escapes).
    let variants = [
        SMUGGLE.to_owned(),
        SMUGGLE.replace(
            "SET standard_conforming_strings = off;",
            "SELECT set_config('standard_conforming' || '_strings', 'off', false);",
        ),
        SMUGGLE.replace("SET standard_conforming_strings = off;", ""),
    ];
    for (name, script) in ["set", "computed_set_config", "script_alone"]
        .into_iter()
        .zip(variants)
    {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let b2 = project.sql_revision("b2", &script, "SELECT 1;");
        no_transaction(&b2);
        let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
        assert_run!(
            format!("hidden_begin_{name}"),
            shown(&run, &project, Some(&db))
        );
        // Nothing of the script ran, and b2 is not recorded.
        assert!(!db.table_exists("smuggled").await, "{script}");
        assert!(!db.table_exists("after_it").await, "{script}");
        assert_eq!(db.heads().await, ["a1"], "{script}");
        db.drop_db().await;
    }
}

/// `standard_conforming_strings = off` for every new session of the database, as a DBA or
/// an earlier revision can set it.
async fn backslashes_escape_in_every_session(db: &TestDb) {
    db.exec(
        "DO $$ BEGIN EXECUTE pg_catalog.format(
             'ALTER DATABASE %I SET standard_conforming_strings = off', current_database());
         END $$",
    )
    .await;
}

/// A `COMMIT` behind the check, then a failing statement: the work before the `COMMIT` is
/// committed, so the step must not be reported rolled back. (The server reads a message
/// whole before it runs any of it: `standard_conforming_strings` must be off already, set
/// by an earlier message.)
const COMMIT_THEN_FAIL: &str = "CREATE TABLE before_commit (x int);
SELECT 'a\\''; COMMIT; SELECT '';
SELECT 1 / 0;
";

#[tokio::test]
async fn a_commit_hidden_from_the_standard_reading_is_refused_before_anything_runs() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // Set for every session of the database, as a DBA or an earlier revision can: wasmig's
    // sessions pin it back on.
    backslashes_escape_in_every_session(&db).await;
    project.sql_revision("a1", COMMIT_THEN_FAIL, "SELECT 1;");
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!("hidden_commit", shown(&run, &project, Some(&db)));
    // Nothing ran: nothing committed, nothing recorded.
    assert!(!db.table_exists("before_commit").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn an_atomic_run_with_a_hidden_commit_in_a_later_step_rolls_back_every_step() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    backslashes_escape_in_every_session(&db).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE first_step (x int);",
        "DROP TABLE first_step;",
    );
    project.sql_revision("b2", COMMIT_THEN_FAIL, "SELECT 1;");
    let run = project
        .run(&db, &["up", "--atomic"])
        .fails_with(MIGRATION_FAILED);
    assert_run!("hidden_commit_atomic", shown(&run, &project, Some(&db)));
    // The COMMIT never reached the server: a1 was rolled back with the run.
    assert!(!db.table_exists("first_step").await);
    assert!(!db.table_exists("before_commit").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

/// In a `transaction = "none"` script each statement is a message of its own, read with
/// the session's setting at that moment: a statement that switches the setting off where
/// no parser sees it stops the script there (it ran and committed; the revision is marked
/// failed), before the server reads the next statement differently from wasmig's check.
#[tokio::test]
async fn a_none_script_stops_where_a_statement_switched_the_reading_of_literals() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE before_it (x int);
         SELECT set_config('standard_conforming' || '_strings', 'off', false);
         CREATE TABLE after_it (x int);",
        "SELECT 1;",
    );
    no_transaction(&a1);
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!(
        "none_script_switched_literals",
        shown(&run, &project, Some(&db))
    );
    assert!(db.table_exists("before_it").await);
    assert!(!db.table_exists("after_it").await);
    assert!(db.heads().await.is_empty());
    assert_eq!(db.failed_marks().await.len(), 1);
    db.drop_db().await;
}

#[tokio::test]
async fn a_guest_whose_call_ended_the_transaction_is_stopped_at_that_call() {
    // SQLite's `INSERT OR ROLLBACK` ends the transaction from inside a statement no check
    // of the text refuses. The guest ignores the error and would carry on; wasmig stops it
    // at the call that ended the transaction (the server's word, read after every call),
    // so nothing it runs next can autocommit: exit 10, nothing recorded.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    db.exec(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('query-text-carry-on');
         CREATE TABLE u (id INTEGER PRIMARY KEY); INSERT INTO u VALUES (1);
         CREATE TABLE e2e_text (text text);
         INSERT INTO e2e_text VALUES ('INSERT OR ROLLBACK INTO u VALUES (1) RETURNING id');",
    )
    .await;
    project.wasm_revision("q1", std::path::Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).fails_with(10);
    assert!(!run.stderr.contains("carried on"), "{run:?}");
    assert!(!run.stderr.contains("ignored:"), "{run:?}");
    assert_run!(
        "call_ended_the_transaction",
        Backend::Sqlite,
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("scenario_marker").await, "rolled back");
    db.drop_db().await;
}

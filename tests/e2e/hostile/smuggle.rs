//! A `transaction = "none"` revision that opens a transaction the statement check did not
//! see: the server's own word (is the session still inside a transaction block after each
//! statement?) decides, not wasmig's reading of the text.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject};

const MIGRATION_FAILED: i32 = 6;
const FAILED_STATE: i32 = 13;

/// Runs the revision without a transaction.
fn no_transaction(revision_dir: &std::path::Path) {
    let path = revision_dir.join("migration.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("transaction = \"per-migration\"", "transaction = \"none\""),
    )
    .unwrap();
}

/// With `standard_conforming_strings` off, the server reads `'a\''` as one literal and
/// runs the `BEGIN` after it, where a reader of standard SQL sees the `BEGIN` inside a
/// second literal.
const SMUGGLE: &str = "SET standard_conforming_strings = off;
SELECT 'a\\''; BEGIN; CREATE TABLE smuggled (x int); SELECT '';
CREATE TABLE after_it (x int);
";

#[tokio::test]
async fn a_transaction_opened_behind_the_check_is_found_and_never_recorded_as_applied() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision("b2", SMUGGLE, "SELECT 1;");
    no_transaction(&b2);
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    // wasmig's splitter saw two statements (the third inside a literal); the server ran
    // the hidden BEGIN within the second: "statement 2 of 2".
    assert_run!("begin_behind_the_check", shown(&run, &project, Some(&db)));
    // What ran after the hidden BEGIN was rolled back; nothing after it ran.
    assert!(!db.table_exists("smuggled").await);
    assert!(!db.table_exists("after_it").await);
    // Not recorded as applied: marked failed, and the next run refuses until resolved.
    assert_eq!(db.heads().await, ["a1"]);
    project.run(&db, &["up"]).fails_with(FAILED_STATE);
    db.drop_db().await;
}

const TRANSACTION_ENDED: i32 = 10;

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
async fn a_step_that_committed_behind_the_check_and_then_failed_is_not_reported_rolled_back() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // Set for every session of the database, as a DBA or an earlier revision can.
    backslashes_escape_in_every_session(&db).await;
    project.sql_revision("a1", COMMIT_THEN_FAIL, "SELECT 1;");
    let run = project.run(&db, &["up"]).fails_with(TRANSACTION_ENDED);
    assert_run!(
        "commit_behind_the_check_then_failure",
        shown(&run, &project, Some(&db))
    );
    assert!(!run.stderr.contains("rolled back"), "{run:?}");
    // What the server committed stays, and nothing was recorded.
    assert!(db.table_exists("before_commit").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn an_atomic_run_whose_later_step_committed_behind_the_check_does_not_claim_all_rolled_back()
{
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // Set for every session of the database (a `SET` in a1 would not reach b2: the session
    // is reset between the steps of an --atomic run).
    backslashes_escape_in_every_session(&db).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE first_step (x int);",
        "DROP TABLE first_step;",
    );
    project.sql_revision("b2", COMMIT_THEN_FAIL, "SELECT 1;");
    let run = project
        .run(&db, &["up", "--atomic"])
        .fails_with(TRANSACTION_ENDED);
    assert_run!(
        "commit_behind_the_check_in_an_atomic_run",
        shown(&run, &project, Some(&db))
    );
    assert!(!run.stderr.contains("were rolled back with it"), "{run:?}");
    // The smuggled COMMIT committed a1 with its record: the version table says so, and
    // wasmig's report does not deny it.
    assert!(db.table_exists("first_step").await);
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

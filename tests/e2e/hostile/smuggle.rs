//! A `transaction = "none"` revision that opens a transaction the statement check did not
//! see: the server's own word (is the session still inside a transaction block after each
//! statement?) decides, not wasmig's reading of the text.

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
    assert!(
        run.stderr.contains("left the session inside a transaction"),
        "{run:?}"
    );
    // wasmig's splitter saw two statements (the third inside a literal); the server ran
    // the hidden BEGIN within the second.
    assert!(run.stderr.contains("statement 2 of 2"), "{run:?}");
    // What ran after the hidden BEGIN was rolled back; nothing after it ran.
    assert!(!db.table_exists("smuggled").await);
    assert!(!db.table_exists("after_it").await);
    // Not recorded as applied: marked failed, and the next run refuses until resolved.
    assert_eq!(db.heads().await, ["a1"]);
    project.run(&db, &["up"]).fails_with(FAILED_STATE);
    db.drop_db().await;
}

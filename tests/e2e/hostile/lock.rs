//! The lock a migration cannot take away: a migration that ends the session holding
//! wasmig's migration lock (as any role allowed to signal sessions can) must not have its
//! step recorded, since a second run may hold the lock by then. Every write of wasmig's
//! tables is fenced in the step's own transaction by a check that the lock is still held.

use crate::support::{Backend, TestDb, TestProject};

/// Ends every other session holding an advisory lock: wasmig's control connection.
const STEAL: &str = "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_locks
                     WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid();";

#[tokio::test]
async fn a_step_that_steals_the_lock_is_not_recorded_and_is_rolled_back() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        &format!("CREATE TABLE stolen (x int); {STEAL}"),
        "DROP TABLE stolen;",
    );
    let run = project.run(&db, &["up"]).fails_with(11);
    assert!(run.stderr.contains("revision b2"), "{run:?}");
    assert!(run.stderr.contains("lock was lost"), "{run:?}");
    assert_eq!(db.heads().await, ["a1"], "a1 stays, b2 is not recorded");
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert!(
        !db.table_exists("stolen").await,
        "b2's work was rolled back"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_batch_that_steals_the_lock_commits_nothing() {
    let (project, db, _) = crate::batches::setup(Backend::Postgres, "batched", 100, 10).await;
    // The guest's batches run this before each update: the first batch ends wasmig's
    // control connection.
    db.exec(
        "CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid(); RETURN NEW; END $$;
         CREATE TRIGGER steal BEFORE UPDATE ON items FOR EACH STATEMENT EXECUTE FUNCTION steal();",
    )
    .await;
    let run = project.run(&db, &["up"]).fails_with(11);
    assert!(run.stderr.contains("lock was lost"), "{run:?}");
    assert_eq!(
        crate::batches::items_at(&db, 1).await,
        0,
        "no batch committed"
    );
    assert!(crate::batches::checkpoints(&db).await.is_empty(), "{run:?}");
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn a_stamp_still_records_under_a_held_lock() {
    // The fence passes whenever the lock is held: the ordinary paths are unchanged.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["stamp", "a1"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    project.run(&db, &["stamp", "base"]).success();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

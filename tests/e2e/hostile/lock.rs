//! The lock a migration cannot take away: a migration that ends the session holding
//! wasmig's migration lock (as any role allowed to signal sessions can) must not have its
//! step recorded, since a second run may hold the lock by then. Every write of wasmig's
//! tables is fenced in the step's own transaction by a check that the lock is still held.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject};

/// Ends every other session holding an advisory lock in this database: wasmig's control
/// connection. (Only this database's: the tests run in parallel on one server.)
const STEAL: &str = "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_locks
                     WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
                     -- The end of a session is asynchronous: let it happen before the step ends.
                     SELECT pg_sleep(0.5);";

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
    assert_run!("step_steals_the_lock", shown(&run, &project, Some(&db)));
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
        "CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database()); PERFORM pg_sleep(0.5); RETURN NEW; END $$;
         CREATE TRIGGER steal BEFORE UPDATE ON items FOR EACH STATEMENT EXECUTE FUNCTION steal();",
    )
    .await;
    let run = project.run(&db, &["up"]).fails_with(11);
    assert_run!("batch_steals_the_lock", shown(&run, &project, Some(&db)));
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

#[tokio::test]
async fn a_second_run_after_a_stolen_lock_never_applies_a_step_twice() {
    // Without a pause after ending the session, the step may check the lock before the
    // session is gone (then it commits, and the run learns of the loss when it releases
    // the lock) or after (then it is rolled back). Either way: exit 11, a record that
    // matches the database, and a later run that applies what is left exactly once.
    for _ in 0..3 {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.sql_revision(
            "b2",
            "INSERT INTO t VALUES (1);
             SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_locks
             WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database());",
            "DELETE FROM t;",
        );
        project.sql_revision(
            "c3",
            "INSERT INTO t VALUES (3);",
            "DELETE FROM t WHERE x = 3;",
        );
        let run = project.run(&db, &["up"]).fails_with(11);
        // Whether b2 committed before the loss was seen decides the message: no snapshot.
        assert!(run.stderr.contains("lock was lost"), "{run:?}");
        let heads = db.heads().await;
        let rows = db.count("SELECT count(*) FROM t").await;
        match heads.as_slice() {
            [h] if h == "a1" => assert_eq!(rows, 0, "{run:?}"),
            [h] if h == "b2" => assert_eq!(rows, 1, "{run:?}"),
            other => panic!("heads {other:?} after {run:?}"),
        }
        // b2 committed: the next run applies c3 once, and b2 never again.
        if heads == ["b2"] {
            project.run(&db, &["up"]).success();
            assert_eq!(db.heads().await, ["c3"]);
            assert_eq!(db.count("SELECT count(*) FROM t WHERE x = 1").await, 1);
            assert_eq!(db.count("SELECT count(*) FROM t WHERE x = 3").await, 1);
        }
        db.drop_db().await;
    }
}

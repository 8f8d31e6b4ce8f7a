//! The lock a migration cannot take away: a migration that ends the session holding
//! wasmig's migration lock (as any role allowed to signal sessions can) must not have its
//! step recorded, since a second run may hold the lock by then. Every write of wasmig's
//! tables is fenced in the step's own transaction by a check that the lock is still held.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject, no_transaction};

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
            // `pg_terminate_backend` only signals: on a loaded machine the lock's session
            // can take a while to exit, and until it has, the server still grants it the
            // lock, so c3's fence passed and no other run could have overlapped. The run
            // learns of the loss when it releases the lock: exit 11 still.
            [h] if h == "c3" => assert_eq!(rows, 2, "{run:?}"),
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

#[tokio::test]
async fn a_killed_runs_statement_holds_off_the_next_run_however_it_renamed_its_session() {
    // A `transaction = "none"` statement has no transaction to hold wasmig's step lock for;
    // its session holds it instead, so a run after this one was killed does not depend on
    // the session's `application_name`, which the migration changed.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision(
        "a1",
        // Renamed, and deaf to its client's death (wasmig's sessions check every second).
        "SET application_name = 'not wasmig';\nSET client_connection_check_interval = 0;\nSELECT pg_sleep(60);",
        "SELECT 1;",
    );
    no_transaction(&dir);
    let mut child = crate::support::wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let busy = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                AND state = 'active' AND query LIKE 'SELECT pg_sleep(60)%' \
                AND application_name = 'not wasmig'";
    let started = std::time::Instant::now();
    while db.count(busy).await == 0 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the statement never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed: the statement goes on. `resolve` must not declare the revision's outcome
    // while it is still at work, nor `up` run it again beside it.
    let run = project
        .run(
            &db,
            &[
                "resolve",
                "a1",
                "--as",
                "rolled-back",
                "--lock-timeout",
                "2",
            ],
        )
        .fails_with(11);
    assert!(
        run.stderr.contains("a1") || run.stderr.contains("step"),
        "{run:?}"
    );
    assert_eq!(db.failed_marks().await, ["a1"], "{run:?}");
    assert_eq!(db.count(busy).await, 1, "the statement is still at work");
    // Once it is over, the revision's outcome can be declared.
    db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'not wasmig'",
    )
    .await;
    let started = std::time::Instant::now();
    while db.count(busy).await > 0 {
        assert!(started.elapsed().as_secs() < 30);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    project
        .run(
            &db,
            &[
                "resolve",
                "a1",
                "--as",
                "rolled-back",
                "--lock-timeout",
                "10",
            ],
        )
        .success();
    assert!(db.failed_marks().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn a_migration_cannot_release_the_lock_that_marks_its_session() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // Named: refused before anything runs, in a script and in a none script.
    let dir = project.sql_revision(
        "a1",
        "CREATE TABLE t (x int);\nSELECT pg_catalog.PG_ADVISORY_UNLOCK_ALL();",
        "DROP TABLE t;",
    );
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!("unlock_refused", shown(&run, &project, Some(&db)));
    no_transaction(&dir);
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!("unlock_refused_none", shown(&run, &project, Some(&db)));
    assert!(!db.table_exists("t").await);
    assert!(db.heads().await.is_empty());

    // Built at run time, where no parser sees it: the statement after it does not run,
    // and the revision is marked failed (the statement itself committed).
    std::fs::write(
        dir.join("up.sql"),
        "CREATE TABLE t (x int);\n\
         DO $$ BEGIN EXECUTE 'SELECT pg_advisory_' || 'unlock_all()'; END $$;\n\
         CREATE TABLE u (x int);",
    )
    .unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!("unlock_hidden_none", shown(&run, &project, Some(&db)));
    assert!(db.table_exists("t").await);
    assert!(!db.table_exists("u").await);
    assert_eq!(db.failed_marks().await, ["a1"]);
    db.drop_db().await;
}

//! A step that gives up waiting for a lock (`lock_timeout`, 55P03) is rolled back and tried
//! again, as often as `lock_timeout_retries` says, after a back-off with jitter; with no
//! retries left it fails as before (exit 6), and other failures are never retried.

use std::time::Duration;

use sqlx::Connection;

use crate::support::{Backend, TestDb, TestProject};

/// A connection holding an exclusive lock on `table` in an open transaction, as an
/// application's long transaction would, until it is dropped (or `hold` ends).
async fn hold_lock(db: &TestDb, table: &str) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

async fn project_altering_t(retries: Option<u32>) -> (TestProject, TestDb) {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE t (x int)").await;
    let dir = project.sql_revision(
        "a1",
        "ALTER TABLE t ADD COLUMN y int;",
        "ALTER TABLE t DROP COLUMN y;",
    );
    let mut settings = "lock_timeout_secs = 0.2".to_owned();
    if let Some(n) = retries {
        settings.push_str(&format!("\nlock_timeout_retries = {n}"));
    }
    project.set_manifest(&dir, &settings);
    (project, db)
}

// Multi-threaded: the release runs while this thread waits for `wasmig`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_waited_too_long_for_a_lock_is_tried_again_until_it_gets_it() {
    let (project, db) = project_altering_t(Some(6)).await;
    let holder = hold_lock(&db, "t").await;
    // The application's transaction ends a little later, while wasmig backs off.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.close().await.unwrap();
    });
    let run = project.run(&db, &["up"]).success();
    release.await.unwrap();
    let retried = run.stderr.matches("gave up waiting for a lock").count();
    assert!(retried >= 1, "never retried: {run:?}");
    assert_eq!(db.history().await, ["upgrade:a1"], "applied once");
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'y'")
            .await,
        1
    );
    db.drop_db().await;
}

#[tokio::test]
async fn with_no_retries_left_the_step_fails_and_other_failures_are_not_retried() {
    // Two retries, and the lock held throughout: three attempts, then exit 6.
    let (project, db) = project_altering_t(Some(2)).await;
    let holder = hold_lock(&db, "t").await;
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_eq!(
        run.stderr.matches("gave up waiting for a lock").count(),
        2,
        "{run:?}"
    );
    assert!(run.stderr.contains("55P03"), "{run:?}");
    assert!(db.heads().await.is_empty());
    holder.close().await.unwrap();
    db.drop_db().await;

    // None configured: one attempt.
    let (project, db) = project_altering_t(None).await;
    let holder = hold_lock(&db, "t").await;
    let run = project.run(&db, &["up"]).fails_with(6);
    assert!(
        !run.stderr.contains("gave up waiting for a lock"),
        "{run:?}"
    );
    holder.close().await.unwrap();
    db.drop_db().await;

    // Another error is not retried, however many retries are allowed.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision("a1", "SELECT 1 / 0;", "SELECT 1;");
    project.set_manifest(&dir, "lock_timeout_retries = 5");
    let run = project.run(&db, &["up"]).fails_with(6);
    assert!(
        !run.stderr.contains("gave up waiting for a lock"),
        "{run:?}"
    );
    db.drop_db().await;

    // Out of range: refused before anything runs.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
    project.set_manifest(&dir, "lock_timeout_retries = 101");
    let run = project.run(&db, &["up"]).fails_with(3);
    assert!(run.stderr.contains("lock_timeout_retries = 101"), "{run:?}");
    db.drop_db().await;
}

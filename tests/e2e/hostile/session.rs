//! Session state a step leaves does not reach the next step: settings that switch off
//! triggers, foreign keys or check constraints, temporary tables that would shadow
//! wasmig's, on both backends, with and without `--atomic` (where every step shares one
//! transaction on one connection), and on PostgreSQL the defaults a step set for the next
//! transaction. A step that leaves state that cannot be reset fails.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject};

const MIGRATION_FAILED: i32 = 6;

#[tokio::test]
async fn a_pragma_that_switches_off_checks_does_not_reach_the_next_step_on_sqlite() {
    for atomic in [false, true] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Sqlite, &project).await;
        project.sql_revision(
            "a1",
            "CREATE TABLE c (x int CHECK (x > 0)); PRAGMA ignore_check_constraints = ON;",
            "DROP TABLE c;",
        );
        // Several steps, so that one of them would get the connection a1 left behind.
        for id in ["b2", "c3", "d4"] {
            project.sql_revision(id, "INSERT INTO c VALUES (-1);", "SELECT 1;");
        }
        let args: &[&str] = if atomic { &["up", "--atomic"] } else { &["up"] };
        let run = project.run(&db, args).fails_with(MIGRATION_FAILED);
        assert_run!(
            if atomic {
                "pragma_does_not_reach_the_next_step_atomic"
            } else {
                "pragma_does_not_reach_the_next_step"
            },
            shown(&run, &project, Some(&db))
        );
        let expected: &[&str] = if atomic { &[] } else { &["a1"] };
        assert_eq!(db.heads().await, expected, "atomic: {atomic}");
        if !atomic {
            assert_eq!(db.count("SELECT count(*) FROM c").await, 0);
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_temporary_table_cannot_take_the_place_of_wasmigs_on_sqlite() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TEMP TABLE wasmig_version (revision TEXT PRIMARY KEY); CREATE TABLE t (x int);",
        "DROP TABLE t;",
    );
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    project.run(&db, &["up"]).success();
    // Recorded in wasmig's table, not in the temporary one that vanished with its
    // connection: a second run has nothing to do.
    assert_eq!(db.heads().await, ["b2"]);
    let again = project.run(&db, &["up"]).success();
    assert!(!again.stderr.contains("applying"), "{again:?}");
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    db.drop_db().await;
}

#[tokio::test]
async fn settings_of_one_step_of_an_atomic_run_do_not_reach_the_next_on_postgres() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // `replica` switches off triggers, and with them foreign-key checks, for the session.
    project.sql_revision(
        "a1",
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (parent int REFERENCES parent (id));
         SET session_replication_role = replica;",
        "DROP TABLE child; DROP TABLE parent;",
    );
    project.sql_revision("b2", "INSERT INTO child VALUES (42);", "DELETE FROM child;");
    let run = project
        .run(&db, &["up", "--atomic"])
        .fails_with(MIGRATION_FAILED);
    assert_run!(
        "setting_does_not_reach_the_next_step_atomic",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("child").await);
    db.drop_db().await;
}

/// Each step of its own begins with the server's defaults, whatever the step before set for
/// the next transaction: at the session level, or from a deferred trigger as it committed
/// (the next step's transaction is begun in that commit's message, after the reset). A
/// read-only default that leaked would fail the second step's insert; an isolation level
/// that leaked would show in what it records.
#[tokio::test]
async fn transaction_defaults_a_step_set_do_not_reach_the_next_on_postgres() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE seen (step text, isolation text, read_only text, defer text);
         CREATE TABLE mark (n int);
         CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM set_config('default_transaction_isolation', 'repeatable read', false);
             PERFORM set_config('default_transaction_read_only', 'on', false);
             PERFORM set_config('default_transaction_deferrable', 'on', false);
             RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON mark
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION late();
         INSERT INTO mark VALUES (1);
         SET default_transaction_isolation = 'serializable';",
        "DROP TABLE mark; DROP FUNCTION late(); DROP TABLE seen;",
    );
    let seen = "INSERT INTO seen VALUES ('{step}', current_setting('transaction_isolation'),
         current_setting('transaction_read_only'), current_setting('transaction_deferrable'));";
    project.sql_revision("b2", &seen.replace("{step}", "b2"), "DELETE FROM seen;");
    project.sql_revision("c3", &seen.replace("{step}", "c3"), "DELETE FROM seen;");
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(
        db.strings("SELECT step || ' ' || isolation || ' ' || read_only || ' ' || defer FROM seen ORDER BY step")
            .await,
        ["b2 read committed off off", "c3 read committed off off"]
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_temporary_table_left_between_steps_of_an_atomic_run_fails_the_step() {
    for backend in crate::support::BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision(
            "a1",
            "CREATE TEMP TABLE scratch (x int); CREATE TABLE t (x int);",
            "DROP TABLE t;",
        );
        project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
        let run = project
            .run(&db, &["up", "--atomic"])
            .fails_with(MIGRATION_FAILED);
        assert_run!(
            "temporary_table_left_in_an_atomic_run",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(!db.table_exists("t").await, "{backend:?}");
        // Without --atomic each step has a connection of its own: nothing to refuse.
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        db.drop_db().await;
    }
}

/// A step that shortens `statement_timeout` and `lock_timeout` for its session does not
/// make wasmig's record of it fail: wasmig's own statements run under its limits (the
/// step's time limit, on the host). Another session holds wasmig's version table for a
/// moment as the step records, so a record held to the step's 1 ms would fail for sure.
#[tokio::test]
async fn a_step_that_shortens_its_sessions_timeouts_is_still_recorded() {
    use sqlx::Connection as _;
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (1); SET statement_timeout = '1ms'; SET lock_timeout = '1ms';",
        "DELETE FROM t;",
    );
    let url = db.url.clone();
    let (locked, is_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE wasmig_version IN SHARE MODE")
                .execute(&mut other)
                .await
                .unwrap();
            locked.send(()).unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        });
    });
    is_locked.recv().unwrap();
    project.run(&db, &["up"]).success();
    holder.join().unwrap();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    db.drop_db().await;
}

#[tokio::test]
async fn deferrable_serializable_defaults_do_not_hold_up_the_reset_on_postgres() {
    // A step that leaves `serializable`, `deferrable` and `read only` as the session's
    // defaults: the reset after its commit ran in a transaction with them, whose first
    // statement waited for a safe snapshot as long as any serializable transaction in the
    // cluster stayed open. Here one stays open for the whole run (it ends after the
    // assertions), so the run finishes only if the reset does not wait for it.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int);
         SET default_transaction_isolation = 'serializable';
         SET default_transaction_deferrable = on;
         SET default_transaction_read_only = on;",
        "DROP TABLE t;",
    );
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    project.sql_revision("c3", "INSERT INTO t VALUES (2);", "DELETE FROM t;");
    crate::support::up_beside_an_open_serializable_transaction(
        &project,
        &db,
        "the run waited for the other session's serializable transaction",
    )
    .await
    .success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    db.drop_db().await;
}

#[tokio::test]
async fn a_statement_a_step_prepared_does_not_reach_the_next_step_on_postgres() {
    // Two steps preparing the same name, as copied migrations do: the second's `PREPARE`
    // failed with 42P05 on the connection the first left, where the reset kept what the
    // migration prepared by SQL. sqlx's own statements stay (the next steps' records use
    // them).
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int); PREPARE add_one AS INSERT INTO t VALUES (1); EXECUTE add_one;",
        "DROP TABLE t;",
    );
    project.sql_revision(
        "b2",
        "PREPARE add_one AS INSERT INTO t VALUES (2); EXECUTE add_one;",
        "DELETE FROM t WHERE x = 2;",
    );
    project.sql_revision(
        "c3",
        "INSERT INTO t VALUES (3);",
        "DELETE FROM t WHERE x = 3;",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 3);
    db.drop_db().await;
}

//! Transactions around steps: PostgreSQL statement and lock timeouts per revision and as
//! project defaults (refused on SQLite, which has neither), and `--atomic` runs.
//!
//! On MySQL (MariaDB here) the same timeouts and `--atomic` hold for scripts of data
//! statements, which run in one transaction there; a script with DDL, which the server
//! commits implicitly, cannot join an `--atomic` run and is refused before anything runs.
//! Their tests are the `on_mysql_` ones. PostgreSQL's commit durability
//! (`synchronous_commit`) has no per-transaction counterpart there and stays PostgreSQL's.

use std::str::FromStr;

use sqlx::Connection;

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject};

#[tokio::test]
async fn statement_and_lock_timeouts_fail_the_step_and_roll_it_back() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    let slow = project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (1); SELECT pg_sleep(30);",
        "DELETE FROM t;",
    );
    project.set_manifest(&slow, "statement_timeout_secs = 0.3");
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!("statement_timeout", shown(&run, &project, Some(&db)));
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0, "rolled back");

    // The project default applies to every revision; the manifest's value wins over it.
    std::fs::write(
        slow.join("up.sql"),
        "INSERT INTO t VALUES (1); ALTER TABLE t ADD COLUMN m int;",
    )
    .unwrap();
    let manifest = slow.join("migration.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("statement_timeout_secs = 0.3", "")).unwrap();
    let config = project.dir.join("wasmig.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[timeouts]\nlock_timeout_secs = 0.3\n");
    std::fs::write(&config, toml).unwrap();

    // Someone else holds a lock on t: the ALTER waits 0.3 s, not forever.
    let mut other = sqlx::PgConnection::connect_with(
        &sqlx::postgres::PgConnectOptions::from_str(&db.url).unwrap(),
    )
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE;")
        .execute(&mut other)
        .await
        .unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "lock_timeout_from_the_project",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn on_mysql_statement_and_lock_timeouts_fail_the_step_and_roll_it_back() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int PRIMARY KEY);", "DROP TABLE t;");
    let slow = project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (1); SELECT SLEEP(30);",
        "DELETE FROM t;",
    );
    project.set_manifest(&slow, "statement_timeout_secs = 0.3");
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "statement_timeout",
        Backend::Mysql,
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0, "rolled back");
    assert!(db.failed_marks().await.is_empty());

    // The project's lock timeout: another session holds the row b2 updates, and the
    // UPDATE waits a second (the server counts whole seconds), not forever.
    db.exec("INSERT INTO t VALUES (5)").await;
    std::fs::write(
        slow.join("up.sql"),
        "INSERT INTO t VALUES (1); UPDATE t SET n = 6 WHERE n = 5;",
    )
    .unwrap();
    let manifest = slow.join("migration.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("statement_timeout_secs = 0.3", "")).unwrap();
    let config = project.dir.join("wasmig.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[timeouts]\nlock_timeout_secs = 0.3\n");
    std::fs::write(&config, toml).unwrap();
    let mut other = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT * FROM t WHERE n = 5 FOR UPDATE;")
        .execute(&mut other)
        .await
        .unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "lock_timeout_from_the_project",
        Backend::Mysql,
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(
        db.strings("SELECT CAST(n AS CHAR) FROM t").await,
        ["5"],
        "rolled back"
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn timeouts_are_refused_on_sqlite_and_out_of_range_everywhere() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let a1 = project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    project.set_manifest(&a1, "lock_timeout_secs = 1");
    let run = project.run(&db, &["up"]).fails_with(3);
    assert_run!(
        "timeouts_refused_on_sqlite",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());

    let manifest = a1.join("migration.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("lock_timeout_secs = 1", "statement_timeout_secs = -1"),
    )
    .unwrap();
    let run = project.run(&db, &["up"]).fails_with(3);
    assert_run!(
        "negative_statement_timeout",
        shown(&run, &project, Some(&db))
    );
    db.drop_db().await;
}

#[tokio::test]
async fn an_atomic_run_applies_everything_or_nothing_on_both_backends() {
    for backend in crate::support::BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
        project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
        let c3 = project.sql_revision("c3", "INSERT INTO missing VALUES (1);", "");
        let run = project.run(&db, &["up", "--atomic"]).fails_with(6);
        assert_run!(
            "atomic_run_rolled_back",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(
            !db.table_exists("t").await,
            "{backend:?}: a1 rolled back too"
        );
        assert!(db.history().await.is_empty(), "{backend:?}");

        // Without --atomic each step commits on its own.
        project.run(&db, &["up"]).fails_with(6);
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        project.run(&db, &["down", "base"]).success();

        std::fs::write(c3.join("up.sql"), "INSERT INTO t VALUES (3);").unwrap();
        std::fs::write(c3.join("down.sql"), "DELETE FROM t WHERE n = 3;").unwrap();
        project.run(&db, &["up", "--atomic"]).success();
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
        assert_eq!(
            db.history().await[4..],
            ["upgrade:a1", "upgrade:b2", "upgrade:c3"],
            "{backend:?}: each step recorded in the one transaction"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn on_mysql_an_atomic_run_refuses_ddl_and_applies_data_statements_all_or_nothing() {
    let backend = Backend::Mysql;
    let project = TestProject::new();
    let db = TestDb::new(backend, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    let b2 = project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    let c3 = project.sql_revision("c3", "INSERT INTO missing VALUES (1);", "");
    // a1's DDL would commit part-way through the one transaction: refused before a
    // statement runs.
    let run = project.run(&db, &["up", "--atomic"]).fails_with(3);
    assert_run!(
        "atomic_run_refuses_ddl",
        backend,
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("t").await);
    assert!(db.history().await.is_empty());

    // From a1 on, the scripts are data statements: all or nothing, as elsewhere.
    project.run(&db, &["up", "a1"]).success();
    let run = project.run(&db, &["up", "--atomic"]).fails_with(6);
    assert_run!(
        "atomic_run_rolled_back",
        backend,
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(
        db.count("SELECT count(*) FROM t").await,
        0,
        "b2 rolled back too"
    );
    assert_eq!(db.history().await, ["upgrade:a1"]);

    // Without --atomic each step commits on its own.
    project.run(&db, &["up"]).fails_with(6);
    assert_eq!(db.heads().await, ["b2"]);
    project.run(&db, &["down", "a1"]).success();

    std::fs::write(c3.join("up.sql"), "INSERT INTO t VALUES (3);").unwrap();
    std::fs::write(c3.join("down.sql"), "DELETE FROM t WHERE n = 3;").unwrap();
    project.run(&db, &["up", "--atomic"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    assert_eq!(
        db.history().await[3..],
        ["upgrade:b2", "upgrade:c3"],
        "each step recorded in the one transaction"
    );

    // Downgrades too: b2's fails, and c3's, which ran first in the same transaction, goes
    // with it.
    std::fs::write(b2.join("down.sql"), "DELETE FROM missing;").unwrap();
    project.run(&db, &["rehash", "b2"]).success();
    project.run(&db, &["down", "a1", "--atomic"]).fails_with(6);
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    std::fs::write(b2.join("down.sql"), "DELETE FROM t;").unwrap();
    project.run(&db, &["rehash", "b2"]).success();
    project.run(&db, &["down", "a1", "--atomic"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
    // a1's down.sql is DDL: refused in an --atomic run.
    project
        .run(&db, &["down", "base", "--atomic"])
        .fails_with(3);
    assert_eq!(db.heads().await, ["a1"]);
    assert!(db.table_exists("t").await);
    db.drop_db().await;
}

#[tokio::test]
async fn an_atomic_run_compiles_every_component_before_its_transaction_begins() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    project.wasm_revision_bytes("b2", b"\0asm not really");
    let run = project.run(&db, &["up", "--atomic"]).fails_with(8);
    assert_run!(
        "atomic_run_refuses_an_invalid_component",
        shown(&run, &project, Some(&db))
    );
    // Refused before anything ran: a1 was not even begun.
    assert!(!run.stderr.contains("applying a1"), "{run:?}");
    assert!(!db.table_exists("t").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn an_atomic_downgrade_reverts_everything_or_nothing_on_both_backends() {
    for backend in crate::support::BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
        project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
        let c3 = project.sql_revision("c3", "INSERT INTO t VALUES (3);", "DELETE FROM missing;");
        project.run(&db, &["up"]).success();
        let run = project
            .run(&db, &["down", "base", "--atomic"])
            .fails_with(6);
        assert_run!(
            "atomic_downgrade_rolled_back",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, 2);

        std::fs::write(c3.join("down.sql"), "DELETE FROM t WHERE n = 3;").unwrap();
        project.run(&db, &["rehash", "c3"]).success();
        // b2's downgrade fails now: c3's, which ran first in the same transaction, goes too.
        let b2 = project.dir.join("versions");
        let b2 = std::fs::read_dir(&b2)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("-b2_"))
            .unwrap();
        std::fs::write(b2.join("down.sql"), "DELETE FROM missing;").unwrap();
        project.run(&db, &["rehash", "b2"]).success();
        project
            .run(&db, &["down", "base", "--atomic"])
            .fails_with(6);
        assert_eq!(db.heads().await, ["c3"], "{backend:?}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, 2, "{backend:?}");

        std::fs::write(b2.join("down.sql"), "DELETE FROM t;").unwrap();
        project.run(&db, &["rehash", "b2"]).success();
        project.run(&db, &["down", "base", "--atomic"]).success();
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(!db.table_exists("t").await, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_project_statement_timeout_and_a_revision_lock_timeout_apply_in_every_mode() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    let config = project.dir.join("wasmig.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[timeouts]\nstatement_timeout_secs = 0.3\n");
    std::fs::write(&config, toml).unwrap();
    // The project default stops a long statement of a per-migration revision ...
    let slow = project.sql_revision("b2", "SELECT pg_sleep(30);", "SELECT 1;");
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "project_statement_timeout",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);

    // ... and of a revision without a transaction, which is then marked failed.
    let manifest = slow.join("migration.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("transaction = \"per-migration\"", "transaction = \"none\"");
    std::fs::write(&manifest, text).unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "project_statement_timeout_without_a_transaction",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.failed_marks().await, ["b2"]);
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();

    // A revision's own lock timeout, without a transaction: the ALTER waits 0.3 s for
    // another session's lock, not forever.
    std::fs::write(slow.join("up.sql"), "ALTER TABLE t ADD COLUMN m int;").unwrap();
    project.set_manifest(
        &slow,
        "lock_timeout_secs = 0.3\nstatement_timeout_secs = 30",
    );
    let mut other = sqlx::PgConnection::connect_with(
        &sqlx::postgres::PgConnectOptions::from_str(&db.url).unwrap(),
    )
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE;")
        .execute(&mut other)
        .await
        .unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "revision_lock_timeout_without_a_transaction",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.failed_marks().await, ["b2"]);
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn on_mysql_a_project_statement_timeout_and_a_revision_lock_timeout_apply_in_every_mode() {
    let backend = Backend::Mysql;
    let project = TestProject::new();
    let db = TestDb::new(backend, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    let config = project.dir.join("wasmig.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[timeouts]\nstatement_timeout_secs = 0.3\n");
    std::fs::write(&config, toml).unwrap();
    // The project default stops a long statement of a per-migration revision ...
    let slow = project.sql_revision("b2", "SELECT SLEEP(30);", "SELECT 1;");
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "project_statement_timeout",
        backend,
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert!(db.failed_marks().await.is_empty());

    // ... and of a revision without a transaction, which is then marked failed.
    crate::support::no_transaction(&slow);
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "project_statement_timeout_without_a_transaction",
        backend,
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.failed_marks().await, ["b2"]);
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();

    // A revision's own lock timeout, without a transaction: the ALTER waits a second (the
    // server counts whole seconds) for the metadata lock another session's open
    // transaction holds on t, not forever.
    std::fs::write(slow.join("up.sql"), "ALTER TABLE t ADD COLUMN m int;").unwrap();
    project.set_manifest(
        &slow,
        "lock_timeout_secs = 0.3\nstatement_timeout_secs = 30",
    );
    let mut other = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT * FROM t;")
        .execute(&mut other)
        .await
        .unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "revision_lock_timeout_without_a_transaction",
        backend,
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.failed_marks().await, ["b2"]);
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 't' AND column_name = 'm'"
        )
        .await,
        1
    );
    db.drop_db().await;
}

/// A deferred constraint trigger on `mark` that notes, as each transaction commits, the
/// `synchronous_commit` the server commits it with: the server's own word on how durable
/// wasmig made each step's commit.
const NOTE_AT_COMMIT: &str = "CREATE TABLE seen (revision text, sync text);
CREATE TABLE mark (revision text);
CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO seen VALUES (NEW.revision, current_setting('synchronous_commit')); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON mark DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION note();
INSERT INTO mark VALUES ('a1');";

/// Every step of a run but the last commits without waiting for the server's disk
/// (`synchronous_commit` off for its transaction), the last at the database's default
/// whatever a migration `SET`: the server writes its commits in order, so the last makes
/// every earlier one durable before wasmig reports. A step alone in its run is the last.
/// A run that fails after lazy commits still ends with the earlier steps applied.
#[tokio::test]
async fn steps_before_the_last_commit_lazily_and_the_last_durably() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        NOTE_AT_COMMIT,
        "DROP TABLE seen, mark; DROP FUNCTION note();",
    );
    project.sql_revision(
        "b2",
        "INSERT INTO mark VALUES ('b2');",
        "DELETE FROM mark WHERE revision = 'b2';",
    );
    // The last step turns synchronous commits off for its session: wasmig's commit does
    // not take it at its word.
    project.sql_revision(
        "c3",
        "SET synchronous_commit = off; INSERT INTO mark VALUES ('c3');",
        "DELETE FROM mark WHERE revision = 'c3';",
    );
    project.run(&db, &["up"]).success();
    let seen = "SELECT revision || ' ' || sync FROM seen ORDER BY revision";
    assert_eq!(db.strings(seen).await, ["a1 off", "b2 off", "c3 on"]);

    // One step: the last of its run.
    project.sql_revision(
        "d4",
        "INSERT INTO mark VALUES ('d4');",
        "DELETE FROM mark WHERE revision = 'd4';",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(
        db.strings(seen).await,
        ["a1 off", "b2 off", "c3 on", "d4 on"]
    );

    // A run whose last step fails: the steps before it stay applied (and the run flushed
    // the server's log after its lazy commits before it reported).
    project.sql_revision(
        "e5",
        "INSERT INTO mark VALUES ('e5');",
        "DELETE FROM mark WHERE revision = 'e5';",
    );
    project.sql_revision("f6", "SELECT 1/0;", "SELECT 1;");
    project.run(&db, &["up"]).fails_with(6);
    assert_eq!(db.heads().await, ["e5"]);
    assert_eq!(
        db.strings(seen).await,
        ["a1 off", "b2 off", "c3 on", "d4 on", "e5 off"]
    );
    db.drop_db().await;
}

//! MySQL and MariaDB (MariaDB runs here): what holds there and what does not, tested on
//! the real server. A revision with DDL runs statement by statement (the server commits
//! DDL implicitly), marked failed first and "failed at statement N of M" after; a revision
//! of data statements runs in one transaction with its record and rolls back whole; the
//! named lock admits one run at a time and names its holder; transaction control and
//! implicit commits are refused before they run, however they are spelled.
//!
//! The suites shared with the other backends (graph, locks, integrity, failure states)
//! run on MySQL from their own files, over `support::ALL`.

use std::time::Duration;

use sqlx::{Connection, Executor};

use crate::support::{Backend, TestDb, TestProject};

const MIGRATION_FAILED: i32 = 6;
const LOCK_TIMEOUT: i32 = 11;
const FAILED_STATE: i32 = 13;

#[tokio::test]
async fn ddl_runs_statement_by_statement_and_a_failure_names_statement_n_of_m() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (id INT PRIMARY KEY, email VARCHAR(200));",
        "DROP TABLE t;",
    );
    let b2 = project.sql_revision(
        "b2",
        "CREATE TABLE kept (x INT);\nINSERT INTO missing VALUES (1);\nCREATE TABLE never (x INT);\n",
        "DROP TABLE never;\nDROP TABLE kept;\n",
    );
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert!(
        run.stderr.contains("statement 2 of 3"),
        "the failure names the statement: {run:?}"
    );
    assert!(
        run.stderr.contains("commits implicitly") || run.stderr.contains("statement by statement"),
        "the output says why the revision was not atomic: {run:?}"
    );
    // DDL committed as it ran: the first statement stays, the third never ran.
    assert!(db.table_exists("kept").await);
    assert!(!db.table_exists("never").await);
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.history().await, ["upgrade:a1", "failed:b2"]);
    let sqlstate = db
        .strings("SELECT `sqlstate` FROM wasmig_history WHERE direction = 'failed'")
        .await;
    assert_eq!(
        sqlstate,
        ["42S02"],
        "the server's SQLSTATE for a missing table"
    );
    let status = project.run(&db, &["current", "--json"]).success().json();
    assert_eq!(status["failed"][0]["revision"], "b2", "{status}");
    assert_eq!(status["failed"][0]["statement"], 2);
    // Nothing runs until it is resolved.
    project.run(&db, &["up"]).fails_with(FAILED_STATE);

    db.exec("DROP TABLE kept").await;
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();
    assert!(db.failed_marks().await.is_empty());
    std::fs::write(
        b2.join("up.sql"),
        "CREATE TABLE kept (x INT);\nINSERT INTO t VALUES (1, 'a@example.com');\nCREATE TABLE never (x INT);\n",
    )
    .unwrap();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert!(db.table_exists("never").await);
    project.run(&db, &["check"]).success();
    db.drop_db().await;
}

#[tokio::test]
async fn up_down_history_and_check_on_mysql() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE users (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(200) NOT NULL);\n\
         CREATE INDEX users_email ON users (email);",
        "DROP TABLE users;",
    );
    project.sql_revision(
        "b2",
        "INSERT INTO users (email) VALUES ('A@Example.com'), ('b@example.com');\n\
         UPDATE users SET email = LOWER(email);",
        "DELETE FROM users;",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(
        db.strings("SELECT email FROM users ORDER BY id").await,
        ["a@example.com", "b@example.com"]
    );
    assert_eq!(db.history().await, ["upgrade:a1", "upgrade:b2"]);
    project.run(&db, &["check"]).success();
    let history = project.run(&db, &["history", "--json"]).success().json();
    assert_eq!(
        history["revisions"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    // Nothing to do.
    project.run(&db, &["up"]).success();
    assert_eq!(db.history().await.len(), 2);

    project.run(&db, &["down", "-1"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM users").await, 0);
    project.run(&db, &["down", "base"]).success();
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("users").await);
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_data_only_revision_is_one_transaction_and_rolls_back_whole() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (id INT PRIMARY KEY) ENGINE = InnoDB;",
        "DROP TABLE t;",
    );
    project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\nINSERT INTO t VALUES (1);\n",
        "DELETE FROM t;",
    );
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert!(run.stderr.contains("b2"), "{run:?}");
    // Rolled back whole, not marked failed: nothing to resolve.
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
    assert_eq!(db.heads().await, ["a1"]);
    assert!(db.failed_marks().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn transaction_control_and_implicit_commits_are_refused_in_any_spelling() {
    for (n, script) in [
        "INSERT INTO t VALUES (1); COMMIT;",
        "INSERT INTO t VALUES (1); /*!40000 COMMIT */;",
        "INSERT INTO t VALUES (1); /*M!100000 ROLLBACK */;",
        "SET autocommit = 1; INSERT INTO t VALUES (1);",
        "SET @@session.completion_type = 'CHAIN'; INSERT INTO t VALUES (1);",
        "INSERT INTO t VALUES (1); XA START 'x';",
        "LOCK TABLES t WRITE; INSERT INTO t VALUES (1);",
        // With NO_BACKSLASH_ESCAPES the first string ends at its backslash and COMMIT runs.
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES'; INSERT INTO t VALUES (1); SELECT '\\'; COMMIT; SELECT '';",
    ]
    .iter()
    .enumerate()
    {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Mysql, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (id INT);", "DROP TABLE t;");
        project.sql_revision("b2", script, "DELETE FROM t;");
        let run = project.run(&db, &["up"]);
        assert_ne!(run.code, 0, "script {n} ran: {script}\n{run:?}");
        assert_eq!(
            db.count("SELECT count(*) FROM t").await,
            0,
            "script {n} wrote before it was refused: {script}"
        );
        assert_eq!(db.heads().await, ["a1"], "script {n}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_held_named_lock_times_out_with_exit_11_naming_its_holder() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (id INT);", "DROP TABLE t;");
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    let mut holder = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
        .bind(format!("wasmig:{database}"))
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let run = project
        .run(&db, &["up", "--lock-timeout", "1"])
        .fails_with(LOCK_TIMEOUT);
    assert!(
        run.stderr.contains(&format!("connection {id}")),
        "names the holder: {run:?}"
    );
    assert!(!db.table_exists("t").await);
    holder
        .execute("SELECT RELEASE_LOCK(CONCAT('wasmig:', DATABASE()))")
        .await
        .unwrap();
    project.run(&db, &["up"]).success();
    assert!(db.table_exists("t").await);
    db.drop_db().await;
}

#[tokio::test]
async fn a_lock_taken_away_mid_run_stops_the_step_before_it_records() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (id INT);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (1);\nSELECT SLEEP(3);\nINSERT INTO t VALUES (2);\n",
        "DELETE FROM t;",
    );
    project.run(&db, &["up", "a1"]).success();
    let child = crate::support::wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the step's sleep, then end the connection that holds the lock, as a
    // failover or an operator's KILL would.
    let mut admin = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let mut killed = false;
    for _ in 0..100 {
        let sleeping: i64 = sqlx::query_scalar(
            "SELECT CAST(count(*) AS SIGNED) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(3)%'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if sleeping > 0 {
            let holder: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(IS_USED_LOCK(CONCAT('wasmig:', DATABASE())) AS SIGNED)",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(format!("KILL {}", holder.unwrap())))
                .await
                .unwrap();
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed, "the step's sleep never showed up");
    let out = child.wait_with_output().unwrap();
    let run = crate::support::Run::from_output(out).fails_with(LOCK_TIMEOUT);
    assert!(run.stderr.contains("lock was lost"), "{run:?}");
    // The step was rolled back: neither row, no record.
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
    assert_eq!(db.heads().await, ["a1"]);
    project.run(&db, &["up"]).success();
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    db.drop_db().await;
}

#[tokio::test]
async fn what_mysql_cannot_do_yet_is_refused_with_exit_3_before_anything_runs() {
    const CONFIG: i32 = 3;
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (id INT);", "DROP TABLE t;");
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = crate::support::wasmig_cmd(&project.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        crate::support::Run::from_output(
            cmd.args(args)
                .args(["--database-url", &db.url])
                .output()
                .unwrap(),
        )
    };
    for (what, env, args, says) in [
        ("a dry run", &[][..], &["up", "--dry-run"][..], "--dry-run"),
        (
            "one transaction for DDL",
            &[("WASMIG_EXECUTION", "transaction")][..],
            &["up"][..],
            "commit",
        ),
        (
            "a role",
            &[("WASMIG_ROLE", "migrator")][..],
            &["up"][..],
            "role",
        ),
    ] {
        let refused = run(env, args).fails_with(CONFIG);
        assert!(refused.stderr.contains(says), "{what}: {refused:?}");
        assert!(!db.table_exists("t").await, "{what} ran a1");
        assert!(db.heads().await.is_empty(), "{what}");
    }
    db.drop_db().await;
}

/// A statement run on its own may hide from the lexer what it does to the session
/// (`EXECUTE` of a prepared `SET autocommit = 0` or `START TRANSACTION`): what the next
/// statements write must still be committed when wasmig records the revision.
#[tokio::test]
async fn a_script_that_turns_autocommit_off_behind_execute_loses_nothing() {
    // Spelled so that no lexer sees the words.
    for hidden in [
        "CONCAT('SET auto', 'commit = 0')",
        "CONCAT('START TRANS', 'ACTION')",
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Mysql, &project).await;
        project.sql_revision(
            "a1",
            &format!(
                "CREATE TABLE t (x INT);\nSET @q = {hidden};\nPREPARE s FROM @q;\nEXECUTE s;\n\
                 INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\n"
            ),
            "DROP TABLE t;",
        );
        let run = project.run(&db, &["up"]);
        if run.code == 0 {
            assert_eq!(db.heads().await, ["a1"], "{hidden}");
            assert_eq!(
                db.count("SELECT count(*) FROM t").await,
                2,
                "{hidden}: recorded as applied, so its rows must be there"
            );
        } else {
            // The server may refuse to prepare it: then the revision is marked failed.
            assert_eq!(db.failed_marks().await, ["a1"], "{hidden}: {run:?}");
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn up_sql_is_refused_on_mysql_before_anything_is_read() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (id INT);", "DROP TABLE t;");
    let refused = project.run(&db, &["up", "--sql", "a1"]).fails_with(3);
    assert!(
        refused.stderr.contains("--sql is not available on MySQL"),
        "{refused:?}"
    );
    assert!(!db.table_exists("wasmig_version").await);
    db.drop_db().await;
}

/// What a step's own SQL could do to wasmig's tables on MySQL, found by attacking it: a
/// temporary table of the same name would take the record and vanish with the connection;
/// `sql_select_limit` would hide a forged head from the check before the record; a trigger
/// or another engine would rewrite the record or keep it past a rollback. Each fails the
/// step before wasmig writes, and the database keeps no record of it.
#[tokio::test]
async fn a_step_cannot_hide_or_bend_wasmigs_tables() {
    for script in [
        "CREATE TEMPORARY TABLE wasmig_version SELECT * FROM wasmig_version;\nINSERT INTO t VALUES (1);",
        "CREATE TEMPORARY TABLE wasmig_history (id INT);\nINSERT INTO t VALUES (1);",
        "INSERT INTO wasmig_version VALUES ('zz9');\nSET SESSION sql_select_limit = 1;\nINSERT INTO t VALUES (1);",
        "CREATE TRIGGER w BEFORE INSERT ON wasmig_version FOR EACH ROW SET NEW.revision = 'x';\nINSERT INTO t VALUES (1);",
        "ALTER TABLE wasmig_history ENGINE = MyISAM;\nINSERT INTO t VALUES (1);",
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Mysql, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x INT);", "DROP TABLE t;");
        project.sql_revision("b2", script, "DELETE FROM t;");
        project.run(&db, &["up", "a1"]).success();
        let run = project.run(&db, &["up"]);
        assert_ne!(run.code, 0, "{script}\n{run:?}");
        assert!(
            !db.heads().await.contains(&"b2".to_owned()),
            "{script}: recorded as applied"
        );
        assert_eq!(
            db.history()
                .await
                .iter()
                .filter(|h| h.starts_with("upgrade:b2"))
                .count(),
            0,
            "{script}: a history row says it was applied\n{run:?}"
        );
        db.drop_db().await;
    }
}

/// SIGKILL while a script with DDL runs statement by statement: what ran stays, the mark
/// written before it says so, the lock goes with the process, and nothing runs until the
/// revision is resolved.
#[tokio::test]
async fn a_run_killed_inside_a_ddl_script_leaves_it_marked_and_the_lock_free() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision(
        "k1",
        "CREATE TABLE a (x INT);\nDO SLEEP(3);\nCREATE TABLE b (x INT);\n",
        "DROP TABLE b;\nDROP TABLE a;\n",
    );
    let mut child = crate::support::wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut admin = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let mut sleeping = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(count(*) AS SIGNED) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DO SLEEP(3)%'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if n > 0 {
            sleeping = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sleeping, "the script's sleep never showed up");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(db.failed_marks().await, ["k1"]);
    assert!(db.table_exists("a").await, "the first statement committed");
    project.run(&db, &["up"]).fails_with(FAILED_STATE);
    // The killed session's sleep ends; the statement after it was never sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!db.table_exists("b").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

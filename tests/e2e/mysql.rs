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

const MODIFIED: i32 = 12;

/// The named lock's holder as a script finds it, and a statement that ends its connection
/// (an operator's `KILL`, spelled where no lexer sees the word).
const KILL_THE_LOCK: &str =
    "EXECUTE IMMEDIATE CONCAT('KILL ', IS_USED_LOCK(CONCAT('wasmig:', DATABASE())))";

/// A DDL script runs statement by statement, each committed, with its revision marked
/// failed before the first: a script that erases that mark (and ends the lock's connection
/// so the mark cannot be written again, or fails) must not leave a half-applied revision
/// that the next `up` runs again as new. wasmig reads its rows back after every statement:
/// the mark is put back (lock or no lock) and the run fails as tampering (exit 12); a
/// script that only ends the lock's connection is stopped at the next statement (exit 11).
/// Either way the revision stays marked and the next `up` refuses (exit 13).
#[tokio::test]
async fn a_ddl_script_that_erases_its_own_failed_mark_stays_marked() {
    // (what the script does, its middle statements, the exit code)
    let variants = [
        (
            "erases its mark, then ends the lock's connection",
            format!("DELETE FROM wasmig_failed;\n{KILL_THE_LOCK};\n"),
            MODIFIED,
        ),
        (
            // One statement: the check after it is the first chance wasmig has.
            "erases its mark and ends the lock's connection in one CALL",
            "CALL forget();\n".to_owned(),
            MODIFIED,
        ),
        (
            "erases its mark, then fails",
            "DELETE FROM `wasmig_failed` WHERE revision = 'k1';\nINSERT INTO missing VALUES (1);\n"
                .to_owned(),
            MODIFIED,
        ),
        (
            "erases its mark through a computed statement",
            "SET @q = CONCAT('DELETE FROM wasmig_', 'failed');\nPREPARE s FROM @q;\nEXECUTE s;\n"
                .to_owned(),
            MODIFIED,
        ),
        (
            "rewrites its mark to another revision",
            "UPDATE wasmig_failed SET revision = 'zz';\n".to_owned(),
            MODIFIED,
        ),
        (
            "only ends the lock's connection",
            format!("{KILL_THE_LOCK};\n"),
            LOCK_TIMEOUT,
        ),
        (
            // The trigger would keep the mark from being put back after the DELETE.
            "adds a trigger to wasmig's table, then erases its mark",
            "CREATE TRIGGER keep_out BEFORE INSERT ON wasmig_failed FOR EACH ROW SIGNAL SQLSTATE '45000';\nDELETE FROM wasmig_failed;\n"
                .to_owned(),
            MODIFIED,
        ),
        (
            "drops wasmig's history",
            "DROP TABLE wasmig_history;\n".to_owned(),
            MODIFIED,
        ),
        (
            // A head forged for a later revision would make it never run.
            "erases its mark and forges a head",
            "DELETE FROM wasmig_failed;\nINSERT INTO wasmig_version VALUES ('zz9');\n".to_owned(),
            MODIFIED,
        ),
        (
            "forges a head in the same statement as it erases its mark",
            "CALL forge_head();\n".to_owned(),
            MODIFIED,
        ),
    ];
    for (what, middle, code) in variants {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Mysql, &project).await;
        // Created before the run, as an earlier revision could have.
        db.exec(&format!(
            "CREATE PROCEDURE forget() BEGIN DELETE FROM wasmig_failed; {KILL_THE_LOCK}; END;
             CREATE PROCEDURE forge_head() BEGIN DELETE FROM wasmig_failed;
               INSERT INTO wasmig_version VALUES ('zz9'); END"
        ))
        .await;
        project.sql_revision(
            "k1",
            &format!(
                "CREATE TABLE IF NOT EXISTS runs (x INT);\nINSERT INTO runs VALUES (1);\n{middle}CREATE TABLE IF NOT EXISTS after_it (x INT);\n"
            ),
            "DROP TABLE runs;",
        );
        let run = project.run(&db, &["up"]).fails_with(code);
        assert!(
            db.failed_marks().await.contains(&"k1".to_owned()),
            "{what}: not marked: {run:?}"
        );
        assert!(
            !db.table_exists("after_it").await,
            "{what}: the statement after it ran: {run:?}"
        );
        if code == MODIFIED {
            assert!(
                run.stderr.contains("wasmig's own rows")
                    || run.stderr.contains("could not be read back")
                    || run
                        .stderr
                        .contains("wrote failed marks of other revisions (zz)"),
                "{what}: {run:?}"
            );
        }
        // Not run again as new: refused until resolved (or, with wasmig's tables altered,
        // until they are mended).
        let next = project.run(&db, &["up"]);
        assert!(
            next.code == FAILED_STATE || (next.code == MODIFIED && what.contains("wasmig's")),
            "{what}: the next run: {next:?}"
        );
        assert_eq!(db.count("SELECT count(*) FROM runs").await, 1, "{what}");
        assert!(db.heads().await.is_empty(), "{what}");
        db.drop_db().await;
    }
}

/// Only wasmig's batch transactions write `wasmig_checkpoint` and `wasmig_partition`: a
/// forged row would make a later batched revision resume past rows it never walked, or
/// walk them twice. A step's own SQL that writes them is found from the server's state,
/// whatever spelling a lexer would have to guess at (quoted, schema-qualified, computed,
/// a stored function or procedure, a trigger): in one transaction, by the row locks the
/// write holds (the step is rolled back); statement by statement, by reading the rows back
/// (the script stops there, its forged rows are deleted and its mark stays).
#[tokio::test]
async fn sql_that_forges_batch_progress_is_refused_in_any_spelling() {
    const ROW: &str = "('c3', 'upgrade', '', 'c3', 'keyset:2:999999', 5, 'x', NOW(), NOW())";
    let variants = |database: &str| {
        vec![
            // One transaction (data statements only).
            format!("INSERT INTO `wasmig_checkpoint` VALUES {ROW};"),
            format!("INSERT INTO `{database}`.wasmig_checkpoint VALUES {ROW};"),
            format!(
                "INSERT INTO {database}.`wasmig_partition` (revision, part, parts, first_key, last_key, checkpoint, batches, done, token, updated_at) \
                 VALUES ('c3', 0, 1, 0, 0, 'x', 1, 1, 1, NOW());"
            ),
            "SELECT forge_fn();".to_owned(),
            "UPDATE t SET x = x + 1;".to_owned(),
            format!(
                "INSERT INTO wasmig_checkpoint VALUES {ROW};\nDELETE FROM wasmig_checkpoint WHERE revision = 'c3';"
            ),
            // Statement by statement (a procedure, a computed statement).
            "CALL forge_proc();".to_owned(),
            format!(
                "SET @q = CONCAT('INSERT INTO wasmig_', 'checkpoint VALUES {}');\nPREPARE s FROM @q;\nEXECUTE s;",
                ROW.replace('\'', "''")
            ),
        ]
    };
    // The first six run in one transaction: also under --atomic, after a clean step in
    // the same transaction (which wrote wasmig's tables before the forging step ran).
    let one_transaction = 6;
    for n in 0..variants("x").len() {
        for atomic in [false, true] {
            if atomic && n >= one_transaction {
                continue;
            }
            let project = TestProject::new();
            let db = TestDb::new(Backend::Mysql, &project).await;
            let database = db.url.rsplit('/').next().unwrap().to_owned();
            let script = variants(&database)[n].clone();
            project.sql_revision("a1", "CREATE TABLE t (x INT);", "DROP TABLE t;");
            if atomic {
                project.sql_revision("b2", "INSERT INTO t VALUES (2);", "SELECT 1;");
                project.sql_revision("d4", &script, "SELECT 1;");
            } else {
                project.sql_revision("b2", &script, "SELECT 1;");
            }
            project.run(&db, &["up", "a1"]).success();
            db.exec(&format!(
                "INSERT INTO t VALUES (1);
                 CREATE FUNCTION forge_fn() RETURNS INT MODIFIES SQL DATA
                 BEGIN INSERT INTO wasmig_checkpoint VALUES {ROW}; RETURN 1; END;
                 CREATE PROCEDURE forge_proc() INSERT INTO wasmig_checkpoint VALUES {ROW};
                 CREATE TRIGGER forge AFTER UPDATE ON t FOR EACH ROW
                 INSERT IGNORE INTO wasmig_checkpoint VALUES {ROW};"
            ))
            .await;
            let args: &[&str] = if atomic { &["up", "--atomic"] } else { &["up"] };
            let run = project.run(&db, args).fails_with(MODIFIED);
            assert!(
                run.stderr.contains("wasmig_checkpoint") || run.stderr.contains("wasmig_partition"),
                "{script} (atomic: {atomic}): {run:?}"
            );
            assert_eq!(
                db.heads().await,
                ["a1"],
                "{script} (atomic: {atomic}): recorded"
            );
            assert_eq!(
                db.count("SELECT count(*) FROM wasmig_checkpoint").await
                    + db.count("SELECT count(*) FROM wasmig_partition").await,
                0,
                "{script} (atomic: {atomic}): a forged row is left"
            );
            db.drop_db().await;
        }
    }
}

/// A batched component's own statements (here a trigger its `UPDATE` fires, which no check
/// of the component's SQL text could see) forging another revision's checkpoint: found
/// before the batch saves its own, in batch 1 and in a later batch alike, and rolled back.
#[tokio::test]
async fn a_batch_whose_sql_forges_another_steps_progress_is_rolled_back_on_mysql() {
    for from_batch in [1, 3] {
        let (project, db, _) = crate::batches::setup(Backend::Mysql, "batched", 1_000, 100).await;
        db.exec(&format!(
            "CREATE TRIGGER cheat AFTER UPDATE ON items FOR EACH ROW
             BEGIN
               IF NEW.id > {from} THEN
                 INSERT IGNORE INTO wasmig_checkpoint
                 VALUES ('c2', 'upgrade', '', 'c2', 'x', 5, 'x', NOW(), NOW());
               END IF;
             END",
            from = (from_batch - 1) * 100
        ))
        .await;
        let run = project.run(&db, &["up"]).fails_with(MODIFIED);
        assert!(
            run.stderr
                .contains(&format!("failed in batch {from_batch}"))
                && run.stderr.contains("wasmig_checkpoint"),
            "batch {from_batch}: {run:?}"
        );
        assert!(db.heads().await.is_empty());
        // Only the batches before it, with their own checkpoint: nothing forged.
        let left = crate::batches::checkpoints(&db).await;
        if from_batch == 1 {
            assert!(left.is_empty(), "{left:?}");
        } else {
            assert_eq!(left, [format!("b1:upgrade:{}", from_batch - 1)]);
        }
        db.drop_db().await;
    }
}

/// A statement that erases its revision's failed mark and then runs on (a procedure that
/// sleeps) is watched while it runs, not only after: the mark is put back and the
/// statement stopped, so a wasmig killed meanwhile (an operator tired of waiting, a
/// deploy's timeout) does not leave the half-applied revision unmarked.
#[tokio::test]
async fn a_statement_that_erases_the_mark_and_runs_on_is_stopped_with_the_mark_back() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    db.exec(
        "CREATE PROCEDURE forget_and_wait() BEGIN DELETE FROM wasmig_failed; DO SLEEP(30); END",
    )
    .await;
    project.sql_revision(
        "k1",
        "CREATE TABLE runs (x INT);\nINSERT INTO runs VALUES (1);\nCALL forget_and_wait();\nCREATE TABLE after_it (x INT);\n",
        "DROP TABLE runs;",
    );
    let mut child = crate::support::wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Well before the sleep ends, the run is killed if it has not stopped by itself.
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if exited.is_none() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(
        db.failed_marks().await,
        ["k1"],
        "the mark the statement erased was not put back (the run: {exited:?})"
    );
    assert_eq!(exited.and_then(|s| s.code()), Some(MODIFIED));
    assert!(!db.table_exists("after_it").await);
    project.run(&db, &["up"]).fails_with(FAILED_STATE);
    assert_eq!(db.count("SELECT count(*) FROM runs").await, 1);
    db.drop_db().await;
}

/// One row is bounded before the driver holds it: the server sends a row of several values
/// whole, each under its `max_allowed_packet` (16 MiB here) and together over wasmig's
/// 64 MiB budget for one call, and the driver would read it into one buffer before the
/// budget is checked. The relay in front of the driver stops it at the budget instead:
/// the statement fails naming the limit, in one transaction (rolled back) and statement by
/// statement (marked failed, the statements after it not run).
#[tokio::test]
async fn a_row_over_the_result_budget_is_refused_before_the_host_holds_it() {
    let wide = ["REPEAT('x', 15000000)"; 5].join(", ");
    for ddl in [false, true] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Mysql, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x INT);", "DROP TABLE t;");
        let first = if ddl {
            "CREATE TABLE u (x INT);"
        } else {
            "INSERT INTO t VALUES (1);"
        };
        project.sql_revision(
            "b2",
            &format!("{first}\nSELECT {wide};\nINSERT INTO t VALUES (2);\n"),
            "DELETE FROM t;",
        );
        project.run(&db, &["up", "a1"]).success();
        let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
        assert!(
            run.stderr
                .contains("more than the 64 MiB one call may return"),
            "ddl {ddl}: {run:?}"
        );
        assert_eq!(db.heads().await, ["a1"]);
        assert_eq!(
            db.count("SELECT count(*) FROM t").await,
            0,
            "ddl {ddl}: a write of the step stayed, or the one after the row ran"
        );
        if ddl {
            assert_eq!(db.failed_marks().await, ["b2"]);
        } else {
            assert!(db.failed_marks().await.is_empty());
        }
        db.drop_db().await;
    }
}

/// Another session's `LOCK TABLES wasmig_history WRITE` (or a row it locked in an open
/// transaction) made wasmig's own statements wait as long as the server lets a metadata lock
/// be waited for (`lock_wait_timeout`: a year by default), and a step's record wait for its
/// row locks: now they give up after `--lock-timeout`, exit 11, as on PostgreSQL, and the
/// run goes on once the session lets go.
#[tokio::test]
async fn a_lock_held_on_wasmigs_tables_is_waited_for_only_up_to_the_lock_timeout() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (id INT);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    let mut holder = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    for (lock, args) in [
        (
            "LOCK TABLES wasmig_history WRITE",
            &["up", "--lock-timeout", "1"][..],
        ),
        (
            "LOCK TABLES wasmig_version WRITE",
            &["current", "--lock-timeout", "1"],
        ),
        (
            "START TRANSACTION; SELECT * FROM wasmig_version FOR UPDATE",
            &["up", "--lock-timeout", "1"],
        ),
    ] {
        holder.execute(lock).await.unwrap();
        let started = std::time::Instant::now();
        let child = crate::support::wasmig_cmd(&project.dir)
            .args(args)
            .args(["--database-url", &db.url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (code, stderr, _) = crate::support::returned_by_itself(child, started).await;
        assert_eq!(code, LOCK_TIMEOUT, "{lock}: {stderr}");
        assert!(
            stderr.contains("another session holds a lock on wasmig's tables")
                && stderr.contains("gave up after 1 s (--lock-timeout)"),
            "{lock}: {stderr}"
        );
        holder.execute("UNLOCK TABLES; ROLLBACK").await.unwrap();
        assert_eq!(db.heads().await, ["a1"], "{lock}: nothing recorded");
        let rows = db.strings("SELECT CAST(COUNT(*) AS CHAR) FROM t").await;
        assert_eq!(rows, ["0"], "{lock}: rolled back");
    }
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

/// wasmig bounds the lock waits of its own record, not the migration's: in an `--atomic`
/// run the step after a record waits as the server says (`lock_wait_timeout` a year by
/// default), not `--lock-timeout`.
#[tokio::test]
async fn the_migrations_lock_waits_are_its_own_after_wasmigs_record() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    db.exec("CREATE TABLE waits (step INT, lock_wait BIGINT, innodb_wait BIGINT)")
        .await;
    let defaults = db
        .strings(
            "SELECT CONCAT(@@GLOBAL.lock_wait_timeout, ' ', @@GLOBAL.innodb_lock_wait_timeout)",
        )
        .await;
    for (id, n) in [("a1", 1), ("b2", 2)] {
        project.sql_revision(
            id,
            &format!(
                "INSERT INTO waits VALUES ({n}, @@SESSION.lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout);"
            ),
            "SELECT 1;",
        );
    }
    project
        .run(&db, &["up", "--atomic", "--lock-timeout", "2"])
        .success();
    let seen = db
        .strings("SELECT CONCAT(lock_wait, ' ', innodb_wait) FROM waits ORDER BY step")
        .await;
    assert_eq!(seen, [defaults[0].clone(), defaults[0].clone()]);
    db.drop_db().await;
}

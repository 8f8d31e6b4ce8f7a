//! Engines that speak PostgreSQL's protocol but whose DDL is not transactional and whose
//! advisory locks are stubs (CockroachDB, YugabyteDB): they cannot be installed here, so
//! their two paths are forced on PostgreSQL with `WASMIG_EXECUTION=per-statement` and
//! `WASMIG_LOCK=lease`. A script with DDL runs statement by statement, marked failed first
//! and "failed at statement N of M" after; a script of data statements stays in one
//! transaction; eight runners through PgBouncer apply each revision once; `--atomic`,
//! `--dry-run` and SQLite say what they cannot do.
//!
//! Not here: the lease lock itself (`lease.rs`), `transaction = "none"` (`transaction_none.rs`).

use std::process::Child;

use crate::lease::{Bouncer, spawn, wait};
use crate::support::{Backend, Run, TestDb, TestProject, wasmig_cmd};

const CONFIG: i32 = 3;
const MIGRATION_FAILED: i32 = 6;
const FAILED_STATE: i32 = 13;

/// CockroachDB's paths on PostgreSQL.
const EMULATED: [(&str, &str); 2] = [
    ("WASMIG_EXECUTION", "per-statement"),
    ("WASMIG_LOCK", "lease"),
];

/// `wasmig ARGS --database-url URL` with `env`.
fn run_env(project: &TestProject, db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from_output(
        wasmig_cmd(&project.dir)
            .args(args)
            .args(["--database-url", &db.url])
            .envs(env.iter().copied())
            .output()
            .unwrap(),
    )
}

#[tokio::test]
async fn ddl_runs_statement_by_statement_and_data_in_one_transaction() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int PRIMARY KEY);\nINSERT INTO t VALUES (1);",
        "DROP TABLE t;",
    );
    let up = run_env(&project, &db, &["up"], &EMULATED).success();
    assert!(
        up.stderr
            .contains("a1: its script has DDL, which runs statement by statement here (WASMIG_EXECUTION=per-statement)"),
        "{up:?}"
    );
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert!(db.failed_marks().await.is_empty(), "the mark is cleared");

    // Only data: one transaction, so its failure undoes its first insert too.
    let b2 = project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (2);\nUPDATE t SET x = x;\nINSERT INTO t VALUES (1);",
        "DELETE FROM t WHERE x = 2;",
    );
    let failed = run_env(&project, &db, &["up"], &EMULATED).fails_with(MIGRATION_FAILED);
    assert!(failed.stderr.contains("23505"), "{failed:?}");
    assert!(
        !failed.stderr.contains("statement by statement"),
        "{failed:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1, "rolled back");
    assert!(db.failed_marks().await.is_empty());
    assert_eq!(db.heads().await, ["a1"]);
    std::fs::write(b2.join("up.sql"), "INSERT INTO t VALUES (2);").unwrap();
    run_env(&project, &db, &["up"], &EMULATED).success();

    // DDL failing at its second statement: the first stays, the third never ran, and the
    // revision is marked failed at statement 2 of 3, naming why it ran so.
    let c3 = project.sql_revision(
        "c3",
        "CREATE TABLE kept (x int);\nINSERT INTO missing VALUES (1);\nCREATE TABLE never (x int);",
        "DROP TABLE never;\nDROP TABLE kept;",
    );
    let failed = run_env(&project, &db, &["up"], &EMULATED).fails_with(MIGRATION_FAILED);
    assert!(
        failed.stderr.contains("failed at statement 2 of 3")
            && failed.stderr.contains(
                "its script has DDL, which runs statement by statement here (WASMIG_EXECUTION=per-statement)"
            )
            && failed.stderr.contains("statement 1 of 3 stayed committed")
            && failed.stderr.contains("wasmig resolve c3 --as"),
        "{failed:?}"
    );
    assert!(db.table_exists("kept").await);
    assert!(!db.table_exists("never").await);
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "failed:c3"]
    );
    let status = run_env(&project, &db, &["current", "--json"], &EMULATED)
        .success()
        .json();
    assert_eq!(status["failed"][0]["revision"], "c3", "{status}");
    assert_eq!(status["failed"][0]["statement"], 2, "{status}");
    run_env(&project, &db, &["up"], &EMULATED).fails_with(FAILED_STATE);

    // Resolved by hand, fixed, applied; then everything goes down statement by statement.
    db.exec("DROP TABLE kept").await;
    run_env(
        &project,
        &db,
        &["resolve", "c3", "--as", "rolled-back"],
        &EMULATED,
    )
    .success();
    std::fs::write(
        c3.join("up.sql"),
        "CREATE TABLE kept (x int);\nCREATE TABLE never (x int);",
    )
    .unwrap();
    run_env(&project, &db, &["up"], &EMULATED).success();
    assert_eq!(db.heads().await, ["c3"]);
    let down = run_env(&project, &db, &["down", "base"], &EMULATED).success();
    assert!(
        down.stderr
            .contains("c3: its script has DDL, which runs statement by statement here"),
        "{down:?}"
    );
    assert!(
        !down.stderr.contains("b2: its script has DDL"),
        "b2's down is data only: {down:?}"
    );
    assert_eq!(db.heads().await, Vec::<String>::new());
    assert!(!db.table_exists("t").await);

    // The same failing DDL under the default (PostgreSQL: transactional DDL) is undone whole.
    std::fs::write(
        c3.join("up.sql"),
        "CREATE TABLE kept (x int);\nINSERT INTO missing VALUES (1);",
    )
    .unwrap();
    let failed =
        run_env(&project, &db, &["up"], &[("WASMIG_LOCK", "lease")]).fails_with(MIGRATION_FAILED);
    assert!(
        !failed.stderr.contains("statement by statement"),
        "{failed:?}"
    );
    assert!(!db.table_exists("kept").await, "rolled back");
    assert!(db.failed_marks().await.is_empty());
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn what_cannot_run_statement_by_statement_says_so() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");

    // --atomic holds every step in one transaction: a DDL script cannot be in it.
    let atomic = run_env(&project, &db, &["up", "--atomic"], &EMULATED).fails_with(CONFIG);
    assert!(
        atomic.stderr.contains("revision a1: --atomic")
            && atomic.stderr.contains("WASMIG_EXECUTION=per-statement"),
        "{atomic:?}"
    );
    assert!(!db.table_exists("t").await);

    // A dry run cannot undo what commits one by one: listed, not run, and the steps after it.
    let dry = run_env(&project, &db, &["up", "--dry-run"], &EMULATED).success();
    let shown = format!("{}{}", dry.stdout, dry.stderr);
    assert!(
        shown.contains("its script has DDL, which runs statement by statement here")
            && shown.contains("after a1, which a dry run does not run"),
        "{dry:?}"
    );
    assert!(!db.table_exists("t").await);

    // Not a way to run scripts; and SQLite, whose DDL is transactional, refuses the setting.
    let bad = run_env(&project, &db, &["up"], &[("WASMIG_EXECUTION", "each")]).fails_with(CONFIG);
    assert!(bad.stderr.contains("WASMIG_EXECUTION=\"each\""), "{bad:?}");
    let sqlite = TestDb::new(Backend::Sqlite, &project).await;
    let refused = run_env(
        &project,
        &sqlite,
        &["up"],
        &[("WASMIG_EXECUTION", "per-statement")],
    )
    .fails_with(CONFIG);
    assert!(refused.stderr.contains("SQLite's is"), "{refused:?}");
    // `auto` and `transaction` are fine there.
    run_env(&project, &sqlite, &["up"], &[("WASMIG_EXECUTION", "auto")]).success();
    assert_eq!(sqlite.heads().await, ["b2"]);
    sqlite.drop_db().await;

    // In wasmig.toml too; the environment wins.
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("execution = \"per-statement\"\n{text}")).unwrap();
    let atomic = project.run(&db, &["up", "--atomic"]).fails_with(CONFIG);
    assert!(
        atomic
            .stderr
            .contains("execution = \"per-statement\" in wasmig.toml"),
        "{atomic:?}"
    );
    run_env(
        &project,
        &db,
        &["up", "--atomic"],
        &[("WASMIG_EXECUTION", "transaction")],
    )
    .success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn eight_runners_through_pgbouncer_apply_ddl_statement_by_statement_once() {
    let bouncer = Bouncer::start();
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let url = bouncer.url(&db);
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x integer PRIMARY KEY, by_pid integer);\nCREATE INDEX t_by_pid ON t (by_pid);",
        "DROP TABLE t;",
    );
    project.wasm_revision("b2", std::path::Path::new(crate::test_guest::VALUES));
    project.sql_revision(
        "c3",
        "SELECT pg_sleep(0.3);\nINSERT INTO t VALUES (3, pg_backend_pid());",
        "DELETE FROM t WHERE x = 3;",
    );
    project.sql_revision(
        "d4",
        "ALTER TABLE t ADD COLUMN note text;\nINSERT INTO t VALUES (4, pg_backend_pid(), 'd4');",
        "DELETE FROM t WHERE x = 4;\nALTER TABLE t DROP COLUMN note;",
    );
    let children: Vec<Child> = (0..8)
        .map(|_| spawn(&project, &url, &["--lock-timeout", "120"], &EMULATED))
        .collect();
    let runs: Vec<Run> = children.into_iter().map(wait).collect();
    for run in &runs {
        assert_eq!(run.code, 0, "a concurrent run failed: {run:?}");
    }
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "upgrade:c3", "upgrade:d4"],
        "every revision applied exactly once"
    );
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    assert_eq!(db.count("SELECT token FROM wasmig_lock").await, 8);
    assert!(db.failed_marks().await.is_empty());
    let per_statement = runs
        .iter()
        .filter(|r| r.stderr.contains("d4: its script has DDL"))
        .count();
    assert_eq!(per_statement, 1, "{runs:?}");
    db.drop_db().await;
    drop(bouncer);
}

#[tokio::test]
async fn a_script_for_a_dba_lays_ddl_out_statement_by_statement() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int);\nCREATE INDEX t_x ON t (x);",
        "DROP TABLE t;",
    );
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    let script = run_env(&project, &db, &["up", "--sql"], &EMULATED)
        .success()
        .stdout;
    let a1 = script
        .split("-- Running upgrade a1")
        .nth(1)
        .and_then(|rest| rest.split("-- Running upgrade b2").next())
        .expect("a1's part");
    assert!(
        a1.contains(
            "(DDL, statement by statement under WASMIG_EXECUTION=per-statement, then its record)"
        ),
        "{script}"
    );
    // Its statements come before its transaction, which holds only the record.
    let (statements, record) = a1.split_once("BEGIN;").expect("a record");
    assert!(statements.contains("CREATE INDEX t_x"), "{script}");
    assert!(
        record
            .trim_start()
            .starts_with("INSERT INTO \"public\".wasmig_version"),
        "{script}"
    );
    let b2 = script.split("-- Running upgrade b2").nth(1).unwrap();
    let (before, rest) = b2.split_once("BEGIN;").expect("b2 in a transaction");
    assert!(!before.contains("INSERT"), "{script}");
    assert!(rest.contains("INSERT INTO t VALUES (1)"), "{script}");

    crate::offline::run_client(&db, &script);
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    run_env(&project, &db, &["check"], &EMULATED).success();
    db.drop_db().await;
}

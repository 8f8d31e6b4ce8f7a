//! `up --dry-run` and `down --dry-run`: the real steps in one transaction that is rolled
//! back, what the server counted of each (rows per table and table locks on PostgreSQL,
//! rows changed on SQLite), nothing recorded, wasmig's tables not even created, a failing
//! step failing as in a real run, and the steps from the first that cannot run in a
//! transaction listed, not run.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{BOTH, Backend, TestDb, TestProject, no_transaction};

const MIGRATION_FAILED: i32 = 6;

const CREATE_T: &str = "CREATE TABLE t (id int PRIMARY KEY, name text);
INSERT INTO t (id, name) VALUES (1, 'ann'), (2, 'bob'), (3, 'cy');";
const CHANGE_T: &str = "UPDATE t SET name = upper(name) WHERE id < 3; DELETE FROM t WHERE id = 3;";
const UNCHANGE_T: &str =
    "INSERT INTO t (id, name) VALUES (3, 'cy'); UPDATE t SET name = lower(name);";

/// The step of `run`'s JSON for `revision`.
fn step<'a>(json: &'a Value, revision: &str) -> &'a Value {
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["revision"] == revision)
        .unwrap_or_else(|| panic!("no step {revision}: {json}"))
}

/// Whether wasmig's version table exists.
async fn version_table(db: &TestDb) -> bool {
    db.table_exists("wasmig_version").await
}

#[tokio::test]
async fn a_dry_run_reports_what_each_step_did_and_changes_nothing_on_both_backends() {
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
        project.sql_revision("b2", CHANGE_T, UNCHANGE_T);
        let c3 = project.sql_revision("c3", "CREATE TABLE u (x int);", "DROP TABLE u;");
        no_transaction(&c3);
        project.sql_revision("d4", "CREATE TABLE v (x int);", "DROP TABLE v;");
        let db = TestDb::new(backend, &project).await;

        let run = project.run(&db, &["up", "--dry-run", "--json"]).success();
        let json = run.json();
        assert_eq!(json["dry_run"], true, "{backend:?}");
        let (a1, b2) = (
            &step(&json, "a1")["observed"],
            &step(&json, "b2")["observed"],
        );
        match backend {
            Backend::Postgres => {
                assert_eq!(
                    a1["tables"],
                    json!([{"table": "public.t", "inserted": 3, "updated": 0, "deleted": 0}]),
                    "{json}"
                );
                assert_eq!(
                    b2["tables"],
                    json!([{"table": "public.t", "inserted": 0, "updated": 2, "deleted": 1}]),
                    "{json}"
                );
                assert!(
                    a1["locks"]
                        .as_array()
                        .unwrap()
                        .contains(&json!({"relation": "public.t", "mode": "AccessExclusiveLock"})),
                    "{json}"
                );
            }
            Backend::Sqlite => {
                assert_eq!(a1["rows_changed"], 3, "{json}");
                assert_eq!(b2["rows_changed"], 3, "{json}");
            }
        }
        // c3 runs outside a transaction: listed, and d4 after it, neither run.
        assert_eq!(json["steps"].as_array().unwrap().len(), 2, "{json}");
        let not_run = json["not_run"].as_array().unwrap();
        assert_eq!(not_run[0]["revision"], "c3", "{json}");
        assert!(
            not_run[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("transaction = \"none\""),
            "{json}"
        );
        assert_eq!(not_run[1]["revision"], "d4", "{json}");

        // Nothing happened: no table of the steps', no version table, no heads.
        assert!(!db.table_exists("t").await, "{backend:?}");
        assert!(!version_table(&db).await, "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");

        // For people: each step with its rows (and locks), then what was not run.
        let human = project.run(&db, &["up", "--dry-run"]).success();
        assert!(human.stdout.contains("would apply a1 (sql, "), "{human:?}");
        assert!(
            human.stdout.contains("not run: c3 (transaction = \"none\""),
            "{human:?}"
        );
        assert!(
            human
                .stdout
                .contains("dry run: rolled back; the database and its version table are unchanged"),
            "{human:?}"
        );
        if backend == Backend::Postgres {
            assert!(
                human
                    .stdout
                    .contains("  rows: public.t: 2 updated, 1 deleted"),
                "{human:?}"
            );
            assert!(
                human
                    .stdout
                    .contains("  lock: AccessExclusiveLock on public.t"),
                "{human:?}"
            );
        }

        // The real run applies everything, then a dry down reverts nothing.
        project.run(&db, &["up"]).success();
        let heads = db.heads().await;
        let history = db.history().await;
        let down = project
            .run(&db, &["down", "--dry-run", "b2", "--json"])
            .success();
        let json = down.json();
        // d4 reverted, then c3 (transaction = none) stops the dry run.
        assert_eq!(json["steps"].as_array().unwrap().len(), 1, "{json}");
        assert_eq!(step(&json, "d4")["action"], "downgrade", "{json}");
        assert_eq!(json["not_run"][0]["revision"], "c3", "{json}");
        assert_eq!(db.heads().await, heads, "{backend:?}");
        assert_eq!(db.history().await, history, "{backend:?}");
        assert!(db.table_exists("v").await, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_dry_run_down_runs_the_down_scripts_and_keeps_every_row() {
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
        project.sql_revision("b2", CHANGE_T, UNCHANGE_T);
        let db = TestDb::new(backend, &project).await;
        project.run(&db, &["up"]).success();
        let run = project
            .run(&db, &["down", "--dry-run", "base", "--json"])
            .success();
        let json = run.json();
        let b2 = &step(&json, "b2")["observed"];
        match backend {
            Backend::Postgres => assert_eq!(
                b2["tables"],
                json!([{"table": "public.t", "inserted": 1, "updated": 3, "deleted": 0}]),
                "{json}"
            ),
            Backend::Sqlite => assert_eq!(b2["rows_changed"], 4, "{json}"),
        }
        assert_eq!(step(&json, "a1")["action"], "downgrade", "{json}");
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, 2, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_failing_step_fails_the_dry_run_as_a_real_run_and_leaves_nothing() {
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
        project.sql_revision("b2", "INSERT INTO no_such_table VALUES (1);", "SELECT 1;");
        let db = TestDb::new(backend, &project).await;
        let run = project
            .run(&db, &["up", "--dry-run"])
            .fails_with(MIGRATION_FAILED);
        assert!(
            run.stderr
                .contains("upgrade of revision b2 failed and was rolled back"),
            "{run:?}"
        );
        assert!(!db.table_exists("t").await, "{backend:?}");
        assert!(!version_table(&db).await, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_components_dry_run_shows_the_rows_it_would_write() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        db.exec("CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('ok');")
            .await;
        project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
        project.wasm_revision("b2", Path::new(crate::test_guest::SCENARIO));
        let run = project.run(&db, &["up", "--dry-run", "--json"]).success();
        let json = run.json();
        let b2 = step(&json, "b2");
        assert_eq!(b2["kind"], "component", "{json}");
        match backend {
            Backend::Postgres => assert_eq!(
                b2["observed"]["tables"],
                json!([{"table": "public.scenario_marker", "inserted": 1, "updated": 0, "deleted": 0}]),
                "{json}"
            ),
            Backend::Sqlite => assert_eq!(b2["observed"]["rows_changed"], 1, "{json}"),
        }
        assert!(!db.table_exists("scenario_marker").await, "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_dry_run_whose_step_ended_the_transaction_says_so_as_a_real_run_does() {
    // SQLite's `INSERT OR ROLLBACK` ends the transaction from inside a statement (see
    // hostile::smuggle): a dry run must not report "rolled back, unchanged" for work that
    // may have run outside its transaction. Exit 10, as in a real run.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    db.exec(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('query-text-carry-on');
         CREATE TABLE u (id INTEGER PRIMARY KEY); INSERT INTO u VALUES (1);
         CREATE TABLE e2e_text (text text);
         INSERT INTO e2e_text VALUES ('INSERT OR ROLLBACK INTO u VALUES (1) RETURNING id');",
    )
    .await;
    project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
    project.wasm_revision("q2", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up", "--dry-run"]).fails_with(10);
    assert!(!run.stdout.contains("unchanged"), "{run:?}");
    assert!(!db.table_exists("t").await);
    assert!(!db.table_exists("scenario_marker").await);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn what_a_steps_commit_would_check_fails_the_dry_run_with_the_real_runs_exit_code() {
    // A deferred constraint trigger runs at COMMIT, which a dry run never reaches: the dry
    // run checks it at the end of the step instead, and fails as the real run does.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE checked (x int);
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
         CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON checked
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();
         INSERT INTO checked VALUES (1);",
        "DROP TABLE checked; DROP FUNCTION refuse();",
    );
    let dry = project.run(&db, &["up", "--dry-run"]);
    assert!(dry.stderr.contains("refused at commit"), "{dry:?}");
    assert!(!db.table_exists("checked").await);
    let real = project.run(&db, &["up"]);
    assert!(real.stderr.contains("refused at commit"), "{real:?}");
    assert_eq!(dry.code, real.code, "dry: {dry:?}\nreal: {real:?}");
    assert_eq!(real.code, MIGRATION_FAILED, "{real:?}");
    assert!(!db.table_exists("checked").await);
    db.drop_db().await;
}

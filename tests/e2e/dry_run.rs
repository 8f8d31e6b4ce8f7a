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
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
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
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
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
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
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

#[tokio::test]
async fn a_dry_run_runs_the_first_batches_of_a_batched_revision_and_commits_none() {
    for backend in BOTH {
        // 100 items, 10 per batch.
        let (project, db, _) = crate::batches::setup(backend, "batched", 100, 10).await;
        let run = project.run(&db, &["up", "--dry-run", "--json"]).success();
        let json = run.json();
        let b1 = step(&json, "b1");
        assert_eq!(b1["batches"], 1, "{json}");
        match backend {
            Backend::Postgres => assert_eq!(
                b1["observed"]["tables"],
                json!([{"table": "public.items", "inserted": 0, "updated": 10, "deleted": 0}]),
                "{json}"
            ),
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => assert_eq!(b1["observed"]["rows_changed"], 10, "{json}"),
        }
        let path = project.dir.join("journal.jsonl");
        let run = project
            .run(
                &db,
                &[
                    "up",
                    "--dry-run",
                    "--batches",
                    "3",
                    "--json",
                    "--journal",
                    path.to_str().unwrap(),
                ],
            )
            .success();
        assert_eq!(step(&run.json(), "b1")["batches"], 3, "{run:?}");
        // The guest's keyset queries, with their parameters typed.
        let lines = journal(&path);
        assert!(
            lines.iter().any(|l| l["params"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["type"] == "int64"))),
            "{lines:?}"
        );
        // Nothing committed: no row changed, no checkpoint, nothing applied.
        assert_eq!(crate::batches::items_at(&db, 0).await, 100, "{backend:?}");
        assert!(
            crate::batches::checkpoints(&db).await.is_empty(),
            "{backend:?}"
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        // --batches without --dry-run is a bad command line.
        project.run(&db, &["up", "--batches", "2"]).fails_with(2);
        db.drop_db().await;
    }
}

/// The journal's lines.
fn journal(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn a_journal_records_every_sql_call_of_scripts_and_components_on_both_backends() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        // The scenario guest in `savepoint` mode: a marker row, its mode read, then an
        // insert into a missing table handled in a savepoint.
        db.exec("CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('savepoint');")
            .await;
        project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
        project.wasm_revision("b2", Path::new(crate::test_guest::SCENARIO));
        let path = project.dir.join("journal.jsonl");
        project
            .run(&db, &["up", "--journal", path.to_str().unwrap()])
            .success();
        let lines = journal(&path);
        let script = &lines[0];
        assert_eq!(script["revision"], "a1", "{lines:?}");
        assert_eq!(script["call"], "script", "{lines:?}");
        assert_eq!(script["sql"], CREATE_T, "{lines:?}");
        let call = |call: &str, sql: &str| {
            lines
                .iter()
                .find(|l| l["revision"] == "b2" && l["call"] == call && l["sql"] == sql)
                .unwrap_or_else(|| panic!("no {call} {sql}: {lines:?}"))
                .clone()
        };
        let insert = call("execute", "INSERT INTO scenario_marker (x) VALUES (1)");
        assert_eq!(insert["rows"], 1, "{insert}");
        assert_eq!(insert["direction"], "upgrade", "{insert}");
        assert!(insert["ms"].as_f64().unwrap() >= 0.0, "{insert}");
        let read = call("query", "SELECT mode FROM e2e_mode");
        assert_eq!(read["rows"], 1, "{read}");
        let failed = call("execute", "INSERT INTO no_such_table VALUES (1)");
        let error = failed["error"].as_str().unwrap();
        match backend {
            Backend::Postgres => {
                assert!(error.contains("42P01"), "{failed}");
                // Each statement of the script with the rows the server said it affected.
                assert_eq!(script["statements"][0]["rows"], 0, "{script}");
                assert_eq!(script["statements"][1]["rows"], 3, "{script}");
                assert!(
                    script["statements"][1]["sql"]
                        .as_str()
                        .unwrap()
                        .starts_with("INSERT INTO t"),
                    "{script}"
                );
                assert_eq!(
                    script["observed"]["tables"],
                    json!([{"table": "public.t", "inserted": 3, "updated": 0, "deleted": 0}]),
                    "{script}"
                );
                assert_eq!(
                    insert["observed"]["tables"],
                    json!([{"table": "public.scenario_marker", "inserted": 1, "updated": 0, "deleted": 0}]),
                    "{insert}"
                );
                // The table's creation took AccessExclusiveLock; the insert adds its own.
                assert!(
                    insert["observed"]["locks"].as_array().unwrap().contains(
                        &json!({"relation": "public.scenario_marker", "mode": "RowExclusiveLock"})
                    ),
                    "{insert}"
                );
            }
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => {
                assert!(error.contains("no such table"), "{failed}");
                assert_eq!(script["observed"]["rows_changed"], 3, "{script}");
                // SQLite's count after a statement that writes nothing is stale: none shown.
                assert!(script.get("statements").is_none(), "{script}");
                assert_eq!(insert["observed"]["rows_changed"], 1, "{insert}");
            }
        }
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_journals_reads_survive_a_migration_that_shortened_its_timeouts() {
    // The migration leaves 1 ms timeouts behind: the reads of the server's counts after its
    // script, the deferred check and the record run without them (a read that still failed
    // would be rolled back to its savepoint, never aborting the migration's transaction).
    // Set last, so the script's own statements do not meet them. (A run on a loaded server
    // is what would catch a regression: these reads usually take under a millisecond.)
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE tiny (x int); INSERT INTO tiny VALUES (1), (2);
         SET LOCAL statement_timeout = 1; SET LOCAL lock_timeout = 1;",
        "DROP TABLE tiny;",
    );
    let path = project.dir.join("journal.jsonl");
    let journal_arg = path.to_str().unwrap();
    project
        .run(&db, &["up", "--dry-run", "--journal", journal_arg])
        .success();
    project
        .run(&db, &["up", "--journal", journal_arg])
        .success();
    let lines = journal(&path);
    assert_eq!(
        lines[0]["observed"]["tables"],
        json!([{"table": "public.tiny", "inserted": 2, "updated": 0, "deleted": 0}]),
        "{lines:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_commit_refused_for_a_deferred_constraint_is_the_migrations_failure_on_both_backends() {
    // A foreign key checked at COMMIT: the server refuses the COMMIT for what the step
    // did. A migration failure (exit 6), rolled back, nothing recorded; on PostgreSQL the
    // dry run finds it too.
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision(
            "a1",
            "CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO c VALUES (5);",
            "DROP TABLE c; DROP TABLE p;",
        );
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
        assert!(
            run.stderr
                .contains("upgrade of revision a1 failed and was rolled back: SQL error: "),
            "{run:?}"
        );
        assert!(!db.table_exists("p").await, "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");
        if backend == Backend::Postgres {
            let dry = project
                .run(&db, &["up", "--dry-run"])
                .fails_with(MIGRATION_FAILED);
            assert!(dry.stderr.contains("(code 23503)"), "{dry:?}");
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_dry_run_checks_each_steps_deferred_constraints_at_its_end_only() {
    // The dry run's check of what a step's commit would fire set every constraint to
    // immediate for the rest of its transaction, which it keeps open across steps: from
    // the second step on, a deferred foreign key was checked at each statement, and a
    // migration a real run applies failed (found by the review helper). Its note also
    // said the steps before were "applied and kept".
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE p (id int PRIMARY KEY);
         CREATE TABLE c (pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED);",
        "DROP TABLE c; DROP TABLE p;",
    );
    project.sql_revision(
        "b2",
        "INSERT INTO c VALUES (1); INSERT INTO p VALUES (1);",
        "DELETE FROM c; DELETE FROM p;",
    );
    for args in [
        &["up", "--dry-run"][..],
        &["up", "--dry-run", "--atomic"][..],
    ] {
        project.run(&db, args).success();
        assert!(!db.table_exists("p").await, "{args:?}");
    }
    // One that would fail at its commit still fails the dry run, at its own step, and
    // the note names nothing as kept.
    project.sql_revision(
        "c3",
        "INSERT INTO c VALUES (2);",
        "DELETE FROM c WHERE pid = 2;",
    );
    let dry = project
        .run(&db, &["up", "--dry-run"])
        .fails_with(MIGRATION_FAILED);
    assert!(dry.stderr.contains("c_pid_fkey"), "{dry:?}");
    assert!(dry.stderr.contains("c3"), "{dry:?}");
    assert!(!dry.stderr.contains("and kept"), "{dry:?}");
    project.run(&db, &["up", "b2"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_dry_run_drops_each_steps_temporary_tables_as_their_commits_would() {
    // Steps of their own transactions lose their temporary tables at commit (ON COMMIT
    // DROP) or in the reset after it; the dry run, one transaction, refused them instead,
    // naming --atomic when it was not given (found by the review helper). Under --atomic
    // the real run refuses them, and so does its dry run.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int);
         CREATE TEMP TABLE stage (x int) ON COMMIT DROP;
         INSERT INTO stage VALUES (1); INSERT INTO t SELECT x FROM stage;",
        "DROP TABLE t;",
    );
    project.sql_revision(
        "b2",
        "CREATE TEMP TABLE stage (x int);
         INSERT INTO stage VALUES (2); INSERT INTO t SELECT x FROM stage;",
        "DELETE FROM t WHERE x = 2;",
    );
    project.run(&db, &["up", "--dry-run"]).success();
    assert!(!db.table_exists("t").await);
    let atomic = project
        .run(&db, &["up", "--dry-run", "--atomic"])
        .fails_with(MIGRATION_FAILED);
    assert!(
        atomic.stderr.contains("temporary objects (stage)"),
        "{atomic:?}"
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    db.drop_db().await;
}

#[tokio::test]
async fn a_step_that_tampers_with_wasmigs_tables_fails_the_dry_run_as_the_real_run() {
    // The real run's record refuses a step that changed wasmig's tables (its guard, in the
    // step's transaction): a dry run never records, so it checks the same at each step's
    // end, and fails with the real run's exit code and words rather than "would apply".
    let tampering = [
        (
            "ALTER TABLE wasmig_version RENAME COLUMN revision TO rev;",
            "wasmig_version has no column revision",
        ),
        (
            "ALTER TABLE wasmig_history ALTER COLUMN checksum TYPE varchar(80);",
            "wasmig_history.checksum is of the type character varying(80)",
        ),
        (
            "CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
             CREATE TRIGGER hide BEFORE INSERT ON wasmig_history FOR EACH ROW EXECUTE FUNCTION nothing();",
            "trigger",
        ),
        (
            "UPDATE wasmig_history SET checksum = 'forged';",
            "wasmig_history",
        ),
        (
            "INSERT INTO wasmig_failed (revision, direction, remove_heads, add_heads, statement, error, failed_at)
             VALUES ('a1', 'upgrade', '', '', 1, 'forged', now());",
            "wasmig_failed",
        ),
        (
            "INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
             VALUES ('forged', 'upgrade', 'x', now(), now(), 0, 'x');",
            "wasmig_history",
        ),
    ];
    for (sql, named) in tampering {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
        project.run(&db, &["up"]).success();
        project.sql_revision(
            "b2",
            &format!("CREATE TABLE u (x int);\n{sql}"),
            "DROP TABLE u;",
        );
        let dry = project.run(&db, &["up", "--dry-run"]);
        assert!(!dry.stdout.contains("would apply"), "{sql}: {dry:?}");
        assert!(dry.stderr.contains(named), "{sql}: {dry:?}");
        assert!(!db.table_exists("u").await, "{sql}");
        assert_eq!(db.heads().await, ["a1"], "{sql}");
        let real = project.run(&db, &["up"]);
        assert!(real.stderr.contains(named), "{sql}: {real:?}");
        assert_eq!(dry.code, real.code, "{sql}\ndry: {dry:?}\nreal: {real:?}");
        assert!(!db.table_exists("u").await, "{sql}");
        assert_eq!(db.heads().await, ["a1"], "{sql}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_step_that_writes_wasmigs_rows_fails_the_dry_run_as_the_real_run_on_both_backends() {
    // A forged history row or head: what the real run's record counts, the dry run counts
    // at the step's end (exit 12 both ways).
    let forged = [
        "INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
         VALUES ('forged', 'upgrade', 'x', '2026-01-01', '2026-01-01', 0, 'x');",
        "INSERT INTO wasmig_version (revision) VALUES ('forged');",
        // The head b2's record adds: its insert would fail on the key first.
        "INSERT INTO wasmig_version (revision) VALUES ('b2');",
    ];
    for backend in BOTH {
        for sql in forged {
            let project = TestProject::new();
            let db = TestDb::new(backend, &project).await;
            project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
            project.run(&db, &["up"]).success();
            project.sql_revision(
                "b2",
                &format!("CREATE TABLE u (x int);\n{sql}"),
                "DROP TABLE u;",
            );
            let dry = project.run(&db, &["up", "--dry-run"]).fails_with(12);
            assert!(
                dry.stderr.contains("where the run expected"),
                "{backend:?} {sql}: {dry:?}"
            );
            assert!(!db.table_exists("u").await, "{backend:?} {sql}");
            assert_eq!(db.heads().await, ["a1"], "{backend:?} {sql}");
            let real = project.run(&db, &["up"]).fails_with(12);
            assert!(
                real.stderr.contains("where the run expected"),
                "{backend:?} {sql}: {real:?}"
            );
            assert!(
                !real.stderr.contains(" at line "),
                "{backend:?} {sql}: {real:?}"
            );
            assert_eq!(db.heads().await, ["a1"], "{backend:?} {sql}");
            db.drop_db().await;
        }
    }
}

#[tokio::test]
async fn a_later_step_rewriting_a_head_fails_the_dry_run_as_the_real_run() {
    // The dry run records nothing, so when c3 runs the head is still a1, and rewriting it
    // to a1 leaves what the run began with: the server's count of the rows written is what
    // says the step wrote wasmig_version (the real run's record finds b2 gone).
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", CREATE_T, "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
    project.sql_revision(
        "c3",
        "UPDATE wasmig_version SET revision = 'a1';",
        "SELECT 1;",
    );
    let dry = project.run(&db, &["up", "--dry-run"]).fails_with(12);
    assert!(
        dry.stderr
            .contains("wasmig_version: 0 inserted, 1 updated, 0 deleted"),
        "{dry:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);
    let real = project.run(&db, &["up"]).fails_with(12);
    assert!(real.stderr.contains("c3"), "{real:?}");
    assert_eq!(db.heads().await, ["b2"], "b2 committed before c3 failed");
    db.drop_db().await;
}

//! The text a person reads, checked as text: `insta` snapshots of the CLI's human output
//! (listings, status, plans, a run's log, errors and `--help`), with what changes from run
//! to run (the project's path, the database URL, durations, timestamps, checksums) redacted
//! by `crate::snap`.
//! Review a change with `cargo insta review`, or `INSTA_UPDATE=always cargo test` then
//! `git diff`.

use crate::snap::{assert_run, shown, shown_with};
use crate::support::{Backend, TestDb, TestProject};

/// Two heads: a1 -> b2 and a1 -> c3.
fn project_with_two_heads() -> TestProject {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    let c3 = project
        .run_plain(&[
            "revision", "-m", "side", "--rev-id", "c3", "--head", "a1", "--splice",
        ])
        .success();
    assert_eq!(c3.code, 0);
    project
}

/// The two heads merged by d4.
fn project_with_a_graph() -> TestProject {
    let project = project_with_two_heads();
    project
        .run_plain(&["merge", "heads", "-m", "merge", "--rev-id", "d4"])
        .success();
    project
}

#[tokio::test]
async fn listings_read_as_documented() {
    let project = project_with_a_graph();
    insta::assert_snapshot!(
        "history",
        shown(&project.run_plain(&["history"]), &project, None)
    );
    insta::assert_snapshot!(
        "heads",
        shown(&project.run_plain(&["heads"]), &project, None)
    );
    insta::assert_snapshot!(
        "branches",
        shown(&project.run_plain(&["branches"]), &project, None)
    );
    insta::assert_snapshot!(
        "show_b2",
        shown(&project.run_plain(&["show", "b2"]), &project, None)
    );
}

#[tokio::test]
async fn a_run_reads_as_documented() {
    let project = project_with_a_graph();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    insta::assert_snapshot!("current_at_base", show(&["current"]));
    insta::assert_snapshot!("plan", show(&["up", "--plan"]));
    insta::assert_snapshot!("up", show(&["up", "b2"]));
    insta::assert_snapshot!("current_part_way", show(&["current"]));
    insta::assert_snapshot!("up_nothing_to_do", show(&["up", "b2"]));
    insta::assert_snapshot!("check", show(&["check"]));
    insta::assert_snapshot!("history_log", show(&["history", "--log"]));
    insta::assert_snapshot!("down_to_base", show(&["down", "base"]));
    db.drop_db().await;
}

#[tokio::test]
async fn errors_read_as_documented() {
    let project = project_with_two_heads();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    insta::assert_snapshot!("unknown_target", show(&["up", "nope"]));
    insta::assert_snapshot!("several_heads", show(&["up", "head"]));
    insta::assert_snapshot!("check_single_head", show(&["check", "--single-head"]));
    project
        .run_plain(&["merge", "heads", "-m", "merge", "--rev-id", "d4"])
        .success();
    project.sql_revision("e5", "INSERT INTO missing VALUES (1);", "SELECT 1;");
    insta::assert_snapshot!("failing_step", show(&["up"]));
}

/// The failures a person has to act on, each with its `hint:` (the next command to run),
/// on SQLite so that the database's own wording is stable.
#[tokio::test]
async fn failure_states_read_as_documented() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    // An applied revision edited afterwards (exit 12).
    std::fs::write(a1.join("up.sql"), "CREATE TABLE t (x int, y int);").unwrap();
    insta::assert_snapshot!("modified", show(&["up"]));
    project.run(&db, &["rehash", "a1"]).success();
    // Nothing to resolve (exit 4).
    insta::assert_snapshot!("not_failed", show(&["resolve", "a1", "--as", "applied"]));
    // A revision without a transaction failing part-way (exit 6), then the mark it leaves
    // (exit 13).
    let b2 = project.sql_revision(
        "b2",
        "CREATE TABLE kept (x int);\nINSERT INTO missing VALUES (1);\n",
        "DROP TABLE kept;",
    );
    let manifest = std::fs::read_to_string(b2.join("migration.toml")).unwrap();
    std::fs::write(
        b2.join("migration.toml"),
        manifest.replace("transaction = \"per-migration\"", "transaction = \"none\""),
    )
    .unwrap();
    insta::assert_snapshot!("failed_part_way", show(&["up"]));
    insta::assert_snapshot!("marked_failed", show(&["up"]));
    project
        .run(&db, &["resolve", "b2", "--as", "applied"])
        .success();
    // A step over its time limit (exit 7).
    let c3 = project.sql_revision(
        "c3",
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c;",
        "SELECT 1;",
    );
    project.set_manifest(&c3, "timeout_secs = 1");
    insta::assert_snapshot!("deadline", show(&["up"]));
    // A manifest wasmig cannot read (exit 3).
    project.set_manifest(&c3, "timeout_secs = 2");
    insta::assert_snapshot!("bad_manifest", show(&["up"]));
}

/// The failures of what a run is given rather than of a step: a component that is not one
/// (exit 8), a database that cannot be reached (exit 5).
#[tokio::test]
async fn refusals_before_a_step_read_as_documented() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    let core = wat::parse_str("(module (func (export \"upgrade\")))").unwrap();
    project.wasm_revision_bytes("a1", &core);
    insta::assert_snapshot!("core_module", show(&["up"]));
    let unreachable =
        project.run_plain(&["up", "--database-url", "postgres://wasmig@127.0.0.1:1/none"]);
    insta::assert_snapshot!("unreachable_database", shown(&unreachable, &project, None));
}

#[test]
fn help_reads_as_documented() {
    let project = TestProject::new();
    insta::assert_snapshot!(
        "help",
        shown(&project.run_plain(&["--help"]), &project, None)
    );
    insta::assert_snapshot!(
        "up_help",
        shown(&project.run_plain(&["up", "--help"]), &project, None)
    );
}

/// The failures that leave a run no way on: a migration that does not build (exit 9), a
/// step that ended wasmig's transaction itself (exit 10), a migration lock another run
/// holds (exit 11).
#[tokio::test]
async fn failures_of_the_surroundings_read_as_documented() {
    // A Rust revision with a compile error: cargo's error, then wasmig's (exit 9).
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let rust = project
        .run_plain(&[
            "revision", "-m", "rust", "--kind", "rust", "--rev-id", "r1", "--json",
        ])
        .success();
    let dir = std::path::PathBuf::from(rust.json()["directory"].as_str().unwrap());
    let lib = dir.join("src/lib.rs");
    let mut source = std::fs::read_to_string(&lib).unwrap();
    source.push_str("\nfn broken() -> u32 {\n    \"not a number\"\n}\n");
    std::fs::write(&lib, source).unwrap();
    let run = project.run(&db, &["up"]).fails_with(9);
    assert_run!("build_failed", shown(&run, &project, Some(&db)));

    // A `COMMIT` the server does not answer within the step's time limit: a deferred
    // trigger sleeps at commit (exit 10, the outcome unknown). (The other cause of exit 10,
    // transaction control that got past the parser, has no known SQL left to provoke it.)
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE slow_commit (x int);
         CREATE FUNCTION slow_commit_fn() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit_tr AFTER INSERT ON slow_commit
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_fn();
         INSERT INTO slow_commit VALUES (1);",
        "SELECT 1;",
    );
    project.set_manifest(&a1, "timeout_secs = 1");
    let run = project.run(&db, &["up"]).fails_with(10);
    assert_run!("transaction_ended", shown(&run, &project, Some(&db)));
    db.drop_db().await;

    // Another run holds the SQLite lock file (exit 11); its holder's line is what the test
    // wrote there.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let lock_path = format!("{}.wasmig-lock", db.url.strip_prefix("sqlite:").unwrap());
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&lock_path)
        .unwrap();
    holder.lock().unwrap();
    std::fs::write(&lock_path, "pid 4242 (the e2e test)\n").unwrap();
    let run = project
        .run(&db, &["up", "--lock-timeout", "1"])
        .fails_with(11);
    assert_run!(
        "lock_timeout",
        shown_with(
            &run,
            &project,
            Some(&db),
            &[("pid 4242", "pid [PLANTED_PID]")]
        )
    );
    holder.unlock().unwrap();
}

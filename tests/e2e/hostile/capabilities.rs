//! The capabilities a revision declares (`capabilities = [...]` in its `migration.toml`) and
//! the operator's ceiling (`WASMIG_ALLOWED_CAPABILITIES`), on the real servers: a statement
//! needing a capability the revision does not declare, or the operator does not allow, is
//! refused before it runs (`WASMIG-POLICY`, exit 6), from a SQL revision's script and a
//! guest's call, in trusted and untrusted mode; without the declaration the same statement
//! runs. A declaration beyond the ceiling, or an unknown name, stops the run before any
//! step (exit 3). What each statement needs is the db crate's tests
//! (`host/db/src/policy/tests.rs`).

use std::path::Path;

use crate::snap::{assert_run, shown};
use crate::support::{Backend, Run, TestDb, TestProject, wasmig_cmd};

const CONFIG_ERROR: i32 = 3;
const MIGRATION_FAILED: i32 = 6;

/// Replaces a revision's `capabilities` line (appending one when there is none).
fn declare(project: &TestProject, revision_dir: &Path, capabilities: Option<&str>) {
    let path = revision_dir.join("migration.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("capabilities"))
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    if let Some(list) = capabilities {
        project.set_manifest(revision_dir, &format!("capabilities = [{list}]"));
    }
}

/// `wasmig ARGS --database-url URL` with `WASMIG_ALLOWED_CAPABILITIES` set.
fn run_allowing(project: &TestProject, db: &TestDb, allowed: &str, args: &[&str]) -> Run {
    Run::from_output(
        wasmig_cmd(&project.dir)
            .args(args)
            .args(["--database-url", &db.url])
            .env("WASMIG_ALLOWED_CAPABILITIES", allowed)
            .output()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_statement_needing_an_undeclared_capability_is_refused_in_both_modes() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        declare(&project, &a1, Some("\"ddl\""));
        let b2 = project.sql_revision(
            "b2",
            "INSERT INTO t VALUES (1);\nDROP TABLE t;",
            "CREATE TABLE t (x int);",
        );
        declare(&project, &b2, Some("\"read\", \"write\""));
        for untrusted in [false, true] {
            let args: &[&str] = if untrusted {
                &["up", "--untrusted"]
            } else {
                &["up"]
            };
            let run = project.run(&db, args).fails_with(MIGRATION_FAILED);
            if !untrusted {
                let name = match backend {
                    Backend::Postgres => "undeclared_ddl@postgres",
                    Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
                    Backend::Sqlite => "undeclared_ddl@sqlite",
                };
                assert_run!(name, shown(&run, &project, Some(&db)));
            }
            assert!(
                run.stderr.contains(
                    "DROP TABLE (statement 2 of the script) needs the capability `ddl`, which revision b2 does not declare"
                ),
                "{}",
                run.stderr
            );
            // a1 applied; nothing of b2 ran: not even its INSERT, which it declares.
            assert_eq!(db.heads().await, ["a1"]);
            assert!(db.table_exists("t").await);
            assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
        }
        // Declaring it, the same script runs.
        declare(&project, &b2, Some("\"read\", \"write\", \"ddl\""));
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"]);
        assert!(!db.table_exists("t").await);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_guest_call_needing_an_undeclared_capability_fails_its_step() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('query-text');
         CREATE TABLE e2e_text (text text);
         INSERT INTO e2e_text VALUES ('GRANT SELECT ON scenario_marker TO PUBLIC');",
    )
    .await;
    let q1 = project.wasm_revision("q1", Path::new(crate::test_guest::SCENARIO));
    // The guest creates a table, writes and reads; the GRANT it sends is not declared.
    declare(&project, &q1, Some("\"read\", \"write\", \"ddl\""));
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!("guest_undeclared_grant", shown(&run, &project, Some(&db)));
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("scenario_marker").await, "rolled back");
    // Without a declaration the same call runs.
    declare(&project, &q1, None);
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["q1"]);
    db.drop_db().await;
}

#[tokio::test]
async fn the_operators_ceiling_holds_what_a_revision_declares_and_what_it_does() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // Declaring nothing: held statement by statement.
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let run = run_allowing(&project, &db, "read,write", &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!("ceiling_statement", shown(&run, &project, Some(&db)));
    assert!(!db.table_exists("t").await);
    // The project's `.env` is not the operator's: it changes nothing.
    std::fs::write(
        project.dir.join(".env"),
        "WASMIG_ALLOWED_CAPABILITIES=read\n",
    )
    .unwrap();
    // Declaring more than the ceiling: refused before any step runs.
    let b2 = project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    declare(&project, &b2, Some("\"write\", \"grant\""));
    let run = run_allowing(&project, &db, "read,write,ddl", &["up"]).fails_with(CONFIG_ERROR);
    assert_run!("ceiling_declaration", shown(&run, &project, Some(&db)));
    assert!(db.heads().await.is_empty(), "a1 did not run either");
    // Within the ceiling, both apply (and the `.env` was never read).
    declare(&project, &b2, Some("\"write\""));
    run_allowing(&project, &db, "read,write,ddl", &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    db.drop_db().await;
}

#[tokio::test]
async fn an_unknown_capability_is_a_config_error_naming_the_manifest() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    declare(&project, &a1, Some("\"ddl\", \"dml\""));
    let run = project.run(&db, &["up"]).fails_with(CONFIG_ERROR);
    assert!(
        run.stderr.contains("migration.toml") && run.stderr.contains("unknown variant `dml`"),
        "{}",
        run.stderr
    );
    assert!(!db.table_exists("t").await);
    let run = run_allowing(&project, &db, "read,everything", &["up"]).fails_with(CONFIG_ERROR);
    assert!(
        run.stderr
            .contains("WASMIG_ALLOWED_CAPABILITIES=read,everything"),
        "{}",
        run.stderr
    );
    db.drop_db().await;
}

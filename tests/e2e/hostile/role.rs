//! `role = "..."` in `wasmig.toml` on the real server: every migration's SQL runs under
//! `SET LOCAL ROLE`, so the server refuses what the role may not do, wasmig's own tables
//! included (owned by the connecting role, no rights granted), while wasmig records the
//! steps as the connecting role. A migration cannot leave the role (`RESET ROLE`, `SET
//! ROLE`: refused before they run, in every mode). Without the role the same statements
//! run. The role is checked at connect (exit 3, naming it and the `GRANT` to run).

use std::path::Path;

use sqlx::{Connection, Executor};

use crate::snap::{assert_run, shown_with};
use crate::support::{Backend, TestDb, TestProject};

const CONFIG_ERROR: i32 = 3;
const MIGRATION_FAILED: i32 = 6;
const TABLES_TAMPERED: i32 = 12;

fn pg_server() -> String {
    std::env::var("WASMIG_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A role of the cluster's, made for one test and dropped after it (roles outlive
/// databases: each test names its own).
struct TestRole {
    name: String,
}

impl TestRole {
    async fn new(tag: &str, extra: &str) -> TestRole {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("wasmig_{tag}_{}_{nanos}", std::process::id());
        admin(&format!("CREATE ROLE {name} {extra}")).await;
        TestRole { name }
    }

    async fn drop_role(self) {
        admin(&format!("DROP ROLE IF EXISTS {}", self.name)).await;
    }
}

async fn admin(sql: &str) {
    let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
        .await
        .unwrap();
    conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap();
}

/// Sets `role` in the project's `wasmig.toml` (`None`: removes it).
fn set_role(project: &TestProject, role: Option<&str>) {
    let path = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("role = ")).collect();
    let mut text = kept.join("\n") + "\n";
    if let Some(role) = role {
        text = format!("role = \"{role}\"\n{text}");
    }
    std::fs::write(path, text).unwrap();
}

/// The owner of a table in the public schema.
async fn owner(db: &TestDb, table: &str) -> Vec<String> {
    db.strings(&format!(
        "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = '{table}'"
    ))
    .await
}

/// A fresh database, and a migration role that may create in its public schema and read
/// the scenario guest's tables; wasmig's tables stay the connecting role's.
async fn setup(project: &TestProject, tag: &str) -> (TestDb, TestRole) {
    let db = TestDb::new(Backend::Postgres, project).await;
    let role = TestRole::new(tag, "NOLOGIN").await;
    db.exec(&format!(
        "GRANT USAGE, CREATE ON SCHEMA public TO {r};
         CREATE TABLE e2e_mode (mode text); CREATE TABLE e2e_text (text text);
         GRANT SELECT ON e2e_mode, e2e_text TO {r};",
        r = role.name
    ))
    .await;
    set_role(project, Some(&role.name));
    (db, role)
}

async fn scenario(db: &TestDb, mode: &str, text: &str) {
    db.exec(&format!(
        "DELETE FROM e2e_mode; DELETE FROM e2e_text;
         INSERT INTO e2e_mode VALUES ('{mode}'); INSERT INTO e2e_text VALUES ('{}');",
        text.replace('\'', "''")
    ))
    .await;
}

#[tokio::test]
async fn migrations_run_as_the_role_and_wasmig_records_as_the_connecting_role() {
    let project = TestProject::new();
    let (db, role) = setup(&project, "mig").await;
    project.sql_revision(
        "a1",
        "CREATE TABLE app (x int);\nINSERT INTO app VALUES (1);",
        "DROP TABLE app;",
    );
    let b2 = project.sql_revision("b2", "CREATE TABLE none_t (x int);", "DROP TABLE none_t;");
    std::fs::write(
        b2.join("migration.toml"),
        std::fs::read_to_string(b2.join("migration.toml"))
            .unwrap()
            .replace("transaction = \"per-migration\"", "transaction = \"none\""),
    )
    .unwrap();
    scenario(&db, "query-text", "SELECT count(*) FROM app").await;
    project.wasm_revision("c3", Path::new(crate::test_guest::SCENARIO));
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "upgrade:c3"]
    );
    // The migration's objects are the role's (a script, a none script, a guest's call);
    // wasmig's tables are still the connecting role's.
    for table in ["app", "none_t", "scenario_marker"] {
        assert_eq!(owner(&db, table).await, [role.name.as_str()], "{table}");
    }
    assert_eq!(owner(&db, "wasmig_version").await, ["postgres"]);
    // Down, and up again in one --atomic transaction: the same.
    project.run(&db, &["down", "base"]).success();
    project.run(&db, &["up", "--atomic", "a1"]).success();
    assert_eq!(owner(&db, "app").await, [role.name.as_str()]);
    db.drop_db().await;
    role.drop_role().await;
}

#[tokio::test]
async fn the_server_refuses_a_migrations_writes_to_wasmigs_tables_under_the_role() {
    let project = TestProject::new();
    let (db, role) = setup(&project, "prot").await;
    project.sql_revision("a1", "CREATE TABLE app (x int);", "DROP TABLE app;");
    project.run(&db, &["up"]).success();
    let b2 = project.sql_revision(
        "b2",
        "INSERT INTO app VALUES (2);\nINSERT INTO wasmig_version VALUES ('zz');",
        "SELECT 1;",
    );
    let shown_role = role.name.clone();
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!(
        "role_writes_version",
        shown_with(&run, &project, Some(&db), &[(&shown_role, "[ROLE]")])
    );
    assert!(run.stderr.contains("42501"), "{}", run.stderr);
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert_eq!(db.count("SELECT count(*) FROM app").await, 0, "rolled back");

    // A guest reading (or writing) wasmig's history: refused by the server too.
    std::fs::remove_dir_all(&b2).unwrap();
    scenario(&db, "query-text", "DELETE FROM wasmig_history RETURNING id").await;
    project.wasm_revision("c3", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert!(run.stderr.contains("42501"), "{}", run.stderr);
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert!(!db.table_exists("scenario_marker").await, "rolled back");

    // The operator's WASMIG_ROLE holds when the project file drops its `role` line (a pull
    // request can): the server refuses the write again.
    set_role(&project, None);
    let run = crate::support::Run::from_output(
        crate::support::wasmig_cmd(&project.dir)
            .env("WASMIG_ROLE", &role.name)
            .args(["up", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .fails_with(MIGRATION_FAILED);
    assert!(run.stderr.contains("42501"), "{}", run.stderr);
    assert_eq!(db.history().await, ["upgrade:a1"]);

    // Without the role the same statements reach wasmig's tables: only wasmig's own
    // account of its rows stops them afterwards (exit 12).
    let run = project.run(&db, &["up"]).fails_with(TABLES_TAMPERED);
    assert!(!run.stderr.contains("42501"), "{}", run.stderr);
    db.drop_db().await;
    role.drop_role().await;
}

#[tokio::test]
async fn a_migration_cannot_leave_the_role() {
    let project = TestProject::new();
    let (db, role) = setup(&project, "stay").await;
    project.sql_revision(
        "a1",
        "CREATE TABLE app (x int);\nRESET ROLE;\nINSERT INTO app VALUES (1);",
        "DROP TABLE app;",
    );
    let shown_role = role.name.clone();
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!(
        "role_reset",
        shown_with(&run, &project, Some(&db), &[(&shown_role, "[ROLE]")])
    );
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("app").await, "nothing of it ran");

    // A guest's SET ROLE, handled or not, fails the step before it runs.
    std::fs::remove_dir_all(project.dir.join("versions"))
        .and_then(|()| std::fs::create_dir(project.dir.join("versions")))
        .unwrap();
    scenario(&db, "query-text", "SET ROLE postgres").await;
    project.wasm_revision("c3", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert!(
        run.stderr.contains("may not leave it (rule: roles)")
            && run.stderr.contains("WASMIG-POLICY"),
        "{}",
        run.stderr
    );
    assert!(db.heads().await.is_empty());

    // Without the role, trusted, the same statement runs.
    set_role(&project, None);
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    db.drop_db().await;
    role.drop_role().await;
}

#[tokio::test]
async fn a_role_that_is_missing_or_out_of_reach_is_a_config_error() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE app (x int);", "DROP TABLE app;");
    set_role(&project, Some("wasmig_no_such_role"));
    let run = project.run(&db, &["up"]).fails_with(CONFIG_ERROR);
    assert!(
        run.stderr
            .contains("the role `wasmig_no_such_role` (role in wasmig.toml) does not exist"),
        "{}",
        run.stderr
    );
    // A login role that is not a member of the migration role may not switch to it.
    let target = TestRole::new("target", "NOLOGIN").await;
    let login = TestRole::new("login", "LOGIN").await;
    set_role(&project, Some(&target.name));
    let url = db.url.replacen("postgres@", &format!("{}@", login.name), 1);
    let run = crate::support::Run::from_output(
        crate::support::wasmig_cmd(&project.dir)
            .args(["up", "--database-url", &url])
            .output()
            .unwrap(),
    )
    .fails_with(CONFIG_ERROR);
    assert!(
        run.stderr.contains(&format!(
            "may not SET ROLE to `{t}` (role in wasmig.toml); run GRANT \"{t}\" TO {l}",
            t = target.name,
            l = login.name
        )),
        "{}",
        run.stderr
    );
    assert!(!db.table_exists("app").await);
    db.drop_db().await;
    target.drop_role().await;
    login.drop_role().await;
}

#[tokio::test]
async fn a_switch_the_parser_cannot_see_is_caught_by_the_server_before_the_record() {
    let project = TestProject::new();
    let (db, role) = setup(&project, "dyn").await;
    // Trusted mode lets SQL built at run time through; the role it leaves is checked on
    // the server before wasmig writes anything.
    project.sql_revision(
        "a1",
        "CREATE TABLE app (x int);\nDO $$ BEGIN EXECUTE 'RESET ' || 'ROLE'; END $$;",
        "DROP TABLE app;",
    );
    let shown_role = role.name.clone();
    let run = project.run(&db, &["up"]).fails_with(TABLES_TAMPERED);
    assert_run!(
        "role_left_unseen",
        shown_with(&run, &project, Some(&db), &[(&shown_role, "[ROLE]")])
    );
    assert!(db.heads().await.is_empty());
    assert!(!db.table_exists("app").await, "rolled back");
    // Untrusted, the parser refuses it before it runs (hidden-sql).
    project
        .run(&db, &["up", "--untrusted"])
        .fails_with(MIGRATION_FAILED);
    // Without the role, it runs.
    set_role(&project, None);
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
    role.drop_role().await;
}

#[tokio::test]
async fn without_the_setting_a_migrations_own_switch_of_role_stays_out_of_wasmigs_record() {
    // Trusted mode, no `role`: a migration may switch roles itself (to one without rights
    // on wasmig's tables here), and wasmig's record still runs as the role it connected as
    // (before, it ran as the migration's and failed, blamed on the database, exit 5); the
    // next step, in the same transaction under --atomic, begins as that role too.
    for atomic in [false, true] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        let role = TestRole::new("switch", "NOLOGIN").await;
        let r = role.name.as_str();
        project.sql_revision(
            "a1",
            &format!(
                "CREATE TABLE who (n serial, name text);
                 GRANT INSERT ON who TO {r}; GRANT USAGE ON SEQUENCE who_n_seq TO {r};
                 SET ROLE {r};
                 INSERT INTO who (name) VALUES (current_user);"
            ),
            "DROP TABLE who;",
        );
        project.sql_revision(
            "b2",
            &format!(
                "INSERT INTO who (name) VALUES (current_user);
                 SET SESSION AUTHORIZATION {r};
                 INSERT INTO who (name) VALUES (current_user);"
            ),
            "DELETE FROM who;",
        );
        project.sql_revision(
            "c3",
            "INSERT INTO who (name) VALUES (current_user);",
            "DELETE FROM who;",
        );
        let args: &[&str] = if atomic { &["up", "--atomic"] } else { &["up"] };
        project.run(&db, args).success();
        assert_eq!(db.heads().await, ["c3"], "atomic: {atomic}");
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "upgrade:c3"],
            "atomic: {atomic}"
        );
        assert_eq!(
            db.strings("SELECT name FROM who ORDER BY n").await,
            [r, "postgres", r, "postgres"],
            "atomic: {atomic}"
        );
        // And back down the same way.
        project.run(&db, &["down", "base"]).success();
        assert!(db.heads().await.is_empty(), "atomic: {atomic}");
        db.drop_db().await;
        role.drop_role().await;
    }
}

#[tokio::test]
async fn deferred_triggers_fire_as_the_role_at_commit_and_in_a_dry_run() {
    // A deferred constraint trigger runs the migration's function when the transaction
    // commits, which is after wasmig switched back to the connecting role for its record:
    // it ran with the connecting role's rights (found by the review helper: it read a
    // table the role may not). It runs as the role, per step, under --atomic, and in a dry
    // run's check of what the commit would fire.
    let project = TestProject::new();
    let (db, role) = setup(&project, "defer").await;
    let r = role.name.as_str();
    project.sql_revision(
        "a1",
        "CREATE TABLE d (x int);
         CREATE TABLE who (name text);
         CREATE FUNCTION note_who() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN INSERT INTO who VALUES (current_user); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER note AFTER INSERT ON d
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION note_who();
         INSERT INTO d VALUES (1);",
        "DROP TABLE d; DROP TABLE who; DROP FUNCTION note_who();",
    );
    project.sql_revision(
        "b2",
        "INSERT INTO d VALUES (2);",
        "DELETE FROM d WHERE x = 2;",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.strings("SELECT name FROM who").await, [r, r]);
    project.run(&db, &["down", "base"]).success();
    project.run(&db, &["up", "--atomic"]).success();
    assert_eq!(db.strings("SELECT name FROM who").await, [r, r]);
    // What the commit would fire, as whom, in a dry run and for real.
    project.sql_revision(
        "c3",
        "CREATE FUNCTION say_who() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN RAISE EXCEPTION 'fired as %', current_user; END $$;
         CREATE CONSTRAINT TRIGGER say AFTER INSERT ON d
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION say_who();
         INSERT INTO d VALUES (3);",
        "SELECT 1;",
    );
    for args in [&["up", "--dry-run"][..], &["up"][..]] {
        let run = project.run(&db, args).fails_with(MIGRATION_FAILED);
        assert!(
            run.stderr.contains(&format!("fired as {r}")),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(db.heads().await, ["b2"], "{args:?}");
    }
    db.drop_db().await;
    role.drop_role().await;
}

#[tokio::test]
async fn a_none_script_that_leaves_the_role_unseen_stops_at_that_statement() {
    // Trusted mode lets SQL built at run time through; in a script without a transaction
    // the server's word after each statement catches the switch (no guard runs there).
    let project = TestProject::new();
    let (db, role) = setup(&project, "nonerole").await;
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE app (x int);\n\
         DO $$ BEGIN EXECUTE 'RESET ' || 'ROLE'; END $$;\n\
         CREATE TABLE never (x int);\n",
        "DROP TABLE app;",
    );
    crate::support::no_transaction(&a1);
    let run = project.run(&db, &["up"]).fails_with(TABLES_TAMPERED);
    assert!(
        run.stderr.contains(&format!(
            "statement 2 left the role `{}` (role in wasmig.toml)",
            role.name
        )) && run
            .stderr
            .contains("statements 1 to 2 of 3 stayed committed"),
        "{}",
        run.stderr
    );
    assert!(!db.table_exists("never").await, "the rest did not run");
    assert_eq!(db.failed_marks().await, ["a1"]);
    db.drop_db().await;
    role.drop_role().await;
}

//! SQL revisions: up/down round trips, the version tables, configuration and URL errors.
//! How a revision runs on a database is tested on every backend; where MySQL differs by
//! design (a script with DDL runs statement by statement there, so a failure part-way is
//! marked, not rolled back) the test asserts what MySQL does. What does not depend on the
//! backend (targets, configuration, the log) runs on SQLite.

use crate::snap::{assert_run, shown, shown_error, shown_in};
use crate::support::{ALL, Backend, Run, TestDb, TestProject, wasmig_cmd};

#[tokio::test]
async fn sql_revisions_round_trip_up_and_down_on_every_backend() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision(
            "a1",
            "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL);",
            "DROP TABLE users;",
        );
        project.sql_revision(
            "b2",
            "ALTER TABLE users ADD COLUMN email text; INSERT INTO users (id, name) VALUES (1, 'ada');",
            "DELETE FROM users; ALTER TABLE users DROP COLUMN email;",
        );

        let status = project.run(&db, &["current", "--json"]).success().json();
        assert_eq!(
            status["pending"],
            serde_json::json!(["a1", "b2"]),
            "{backend:?}"
        );

        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"]);
        assert_eq!(db.count("SELECT count(*) FROM users").await, 1);
        assert_eq!(db.history().await, ["upgrade:a1", "upgrade:b2"]);

        // Nothing to do: exits 0 and records nothing.
        let again = project.run(&db, &["up"]).success();
        assert_run!(
            "up_with_nothing_to_do",
            backend,
            shown(&again, &project, Some(&db))
        );
        assert_eq!(db.history().await.len(), 2);

        project.run(&db, &["down"]).success();
        assert_eq!(db.heads().await, ["a1"]);
        project.run(&db, &["downgrade", "base"]).success();
        assert!(db.heads().await.is_empty());
        assert!(!db.table_exists("users").await, "{backend:?}");
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "downgrade:b2", "downgrade:a1"]
        );
        let log = project
            .run(&db, &["history", "--log", "--json"])
            .success()
            .json();
        let first = &log["history"][0];
        assert_eq!(first["revision"], "a1");
        assert_eq!(first["checksum"].as_str().unwrap().len(), 64);
        assert!(first["wasmig_version"].is_string());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_failing_sql_revision_rolls_back_and_keeps_earlier_ones() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
        let b2 = project.sql_revision(
            "b2",
            "CREATE TABLE u (y integer); INSERT INTO nope VALUES (1);",
            "DROP TABLE u;",
        );
        let run = project.run(&db, &["up"]).fails_with(6);
        assert_run!(
            "failing_revision_rolled_back",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert!(db.table_exists("t").await);
        if backend == Backend::Mysql {
            // MySQL commits DDL implicitly: the script ran statement by statement, so the
            // table of its first statement stays, and the revision is marked failed (at
            // statement 2 of 2, as the snapshot shows) until someone resolves it.
            assert!(db.table_exists("u").await, "the first statement committed");
            assert_eq!(db.failed_marks().await, ["b2"]);
            assert_eq!(db.history().await, ["upgrade:a1", "failed:b2"]);
            project.run(&db, &["up"]).fails_with(13);
            // A script of data statements only is one transaction there, and rolls back
            // whole.
            db.exec("DROP TABLE u").await;
            project
                .run(&db, &["resolve", "b2", "--as", "rolled-back"])
                .success();
            std::fs::write(
                b2.join("up.sql"),
                "INSERT INTO t VALUES (1); INSERT INTO nope VALUES (1);",
            )
            .unwrap();
            let run = project.run(&db, &["up"]).fails_with(6);
            assert_run!(
                "failing_data_revision_rolled_back",
                backend,
                shown(&run, &project, Some(&db))
            );
            assert_eq!(db.count("SELECT count(*) FROM t").await, 0, "rolled back");
            assert!(db.failed_marks().await.is_empty());
            assert_eq!(db.heads().await, ["a1"]);
        } else {
            assert!(
                !db.table_exists("u").await,
                "{backend:?}: the failed revision left a table"
            );
            assert_eq!(db.history().await, ["upgrade:a1"]);
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn targets_and_relative_moves_work_on_a_chain() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    for id in ["a1", "b2", "c3", "d4"] {
        project.sql_revision(
            id,
            &format!("CREATE TABLE t_{id} (x int);"),
            &format!("DROP TABLE t_{id};"),
        );
    }
    project.run(&db, &["up", "b2"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    project.run(&db, &["up", "+1"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    let plan = project
        .run(&db, &["down", "a1", "--plan", "--json"])
        .success()
        .json();
    assert_eq!(
        plan,
        serde_json::json!({"steps": [{"action": "downgrade", "revision": "c3"}, {"action": "downgrade", "revision": "b2"}]})
    );
    assert_eq!(db.heads().await, ["c3"], "--plan must not run anything");
    project.run(&db, &["down", "-2"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    let err = project.run(&db, &["up", "zz"]).fails_with(4);
    assert_run!(
        "up_to_an_unknown_revision",
        shown(&err, &project, Some(&db))
    );
    let err = project.run(&db, &["down", "d4"]).fails_with(4);
    assert_run!("down_to_a_descendant", shown(&err, &project, Some(&db)));
    // Ids of 3 characters or fewer match only in full (as in Alembic): `c` is not `c3`.
    let short = project.run(&db, &["show", "c"]).fails_with(4);
    assert_run!(
        "short_id_matches_only_in_full",
        shown(&short, &project, Some(&db))
    );
    let show = project.run(&db, &["show", "c3", "--json"]).success().json();
    assert_eq!(show["revision"], "c3");
    assert_eq!(show["down_revisions"], serde_json::json!(["b2"]));
}

#[tokio::test]
async fn the_embedded_default_is_a_sqlite_file_in_the_project_and_is_announced() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let run = project.run_plain(&["up"]).success();
    assert_run!("embedded_default_announced", shown(&run, &project, None));
    assert!(project.dir.join("wasmig.db").is_file());
}

#[tokio::test]
async fn database_url_comes_from_dot_env_and_bad_urls_are_config_errors() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let file = project.dir.join("from-env.db");
    std::fs::write(
        project.dir.join(".env"),
        format!("DATABASE_URL=sqlite:{}\n", file.display()),
    )
    .unwrap();
    project.run_plain(&["up"]).success();
    assert!(file.is_file(), ".env was not used");

    let bad = project
        .run_plain(&["up", "--database-url", "oracle://root@localhost/x"])
        .fails_with(3);
    assert_run!("unsupported_scheme", shown(&bad, &project, None));
    let down = project
        .run_plain(&[
            "up",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/nowhere",
        ])
        .fails_with(5);
    assert_run!("server_unreachable", shown(&down, &project, None));
}

#[tokio::test]
async fn broken_manifests_and_graphs_are_refused_with_the_file_named() {
    let project = TestProject::new();
    let dir = project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
    std::fs::write(
        dir.join("migration.toml"),
        "revision = 'a1'\nkind = 'cobol'\n",
    )
    .unwrap();
    let run = project.run_plain(&["up"]).fails_with(3);
    assert_run!("unknown_kind_in_manifest", shown(&run, &project, None));

    let project = TestProject::new();
    let a = project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
    project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
    project.set_manifest(&a, "down_revision = 'b2'");
    let run = project.run_plain(&["up"]).fails_with(4);
    assert_run!("cycle_through_manifests", shown(&run, &project, None));
}

#[tokio::test]
async fn no_project_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("wasmig-e2e-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = crate::support::Run::from_output(
        crate::support::wasmig_cmd(&dir).arg("up").output().unwrap(),
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert_run!("no_project", shown_in(&run, &dir, None));
}

#[test]
fn log_level_and_flags_filter_the_log() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let normal = project.run_plain(&["up"]).success();
    assert_run!("log_at_the_default_level", shown(&normal, &project, None));
    project.run_plain(&["down"]).success();

    let quiet = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("LOG_LEVEL", "warn")
            .arg("up")
            .output()
            .unwrap(),
    )
    .success();
    assert!(!quiet.stderr.contains("applying a1"), "{quiet:?}");
    project.run_plain(&["down", "-q"]).success();

    // -v overrides LOG_LEVEL and shows debug lines.
    let verbose = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("LOG_LEVEL", "error")
            .args(["up", "-v"])
            .output()
            .unwrap(),
    )
    .success();
    assert_run!(
        "log_with_verbose_over_log_level",
        shown(&verbose, &project, None)
    );

    let bogus = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("LOG_LEVEL", "loud")
            .arg("status")
            .output()
            .unwrap(),
    )
    .success();
    assert_run!("log_level_not_a_level", shown(&bogus, &project, None));
}

/// `.env` supplies LOG_LEVEL as well as DATABASE_URL; the real environment and the flags win.
#[test]
fn log_level_comes_from_dot_env_below_the_environment() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    std::fs::write(project.dir.join(".env"), "LOG_LEVEL=debug\n").unwrap();
    let debug = project.run_plain(&["up"]).success();
    assert_run!("log_level_from_dot_env", shown(&debug, &project, None));
    project.run_plain(&["down"]).success();

    let env_wins = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("LOG_LEVEL", "warn")
            .arg("up")
            .output()
            .unwrap(),
    )
    .success();
    assert!(!env_wins.stderr.contains("applying a1"), "{env_wins:?}");
    project.run_plain(&["down"]).success();

    let quiet_wins = project.run_plain(&["up", "-q"]).success();
    assert!(!quiet_wins.stderr.contains("applying a1"), "{quiet_wins:?}");
}

#[tokio::test]
async fn a_connection_lost_during_a_sql_revision_is_a_database_error() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
    project.sql_revision(
        "b2",
        "CREATE TABLE lost (x int); SELECT pg_sleep(60);",
        "DROP TABLE lost;",
    );
    let child = wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(db.terminate_backend_running("pg_sleep(60)").await, 1);
    let run = Run::from_output(child.wait_with_output().unwrap()).fails_with(5);
    // The warning about the rollback before the error depends on when the server's end of
    // the connection is seen: the error only.
    assert_run!(
        "connection_lost_during_a_step",
        shown_error(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert!(!db.table_exists("lost").await);
    db.drop_db().await;
}

/// The same on MySQL, where an administrator ends the step's connection with `KILL`: a
/// database error, and the step (a script of data statements, one transaction there) is
/// rolled back with its connection.
#[tokio::test]
async fn on_mysql_a_connection_killed_during_a_sql_revision_is_a_database_error() {
    use sqlx::{Connection as _, Executor as _};
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
    project.sql_revision(
        "b2",
        "INSERT INTO kept VALUES (1); SELECT SLEEP(60);",
        "DELETE FROM kept;",
    );
    let child = wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let mut killed = 0;
    for _ in 0..600 {
        let id: i64 = sqlx::query_scalar(
            "SELECT CAST(coalesce(max(ID), 0) AS SIGNED) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE 'SELECT SLEEP(60)%'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if id > 0 {
            admin
                .execute(sqlx::AssertSqlSafe(format!("KILL {id}")))
                .await
                .unwrap();
            killed = id;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(killed > 0, "the step's sleep never showed up");
    let run = Run::from_output(child.wait_with_output().unwrap()).fails_with(5);
    assert_run!(
        "connection_killed_during_a_step",
        Backend::Mysql,
        shown_error(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert_eq!(
        db.count("SELECT count(*) FROM kept").await,
        0,
        "rolled back"
    );
    assert!(db.failed_marks().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn a_missing_artifact_is_refused_before_the_first_step() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let dir = project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
        std::fs::remove_file(dir.join("down.sql")).unwrap();
        let run = project.run(&db, &["up"]).fails_with(3);
        assert_run!(
            "missing_down_sql",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}: a1 ran anyway");
        assert!(!db.table_exists("t").await);
        db.drop_db().await;
    }
}

#[test]
fn database_url_precedence_is_flag_then_environment_then_wasmig_toml() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let db = |name: &str| project.dir.join(format!("{name}.db"));
    let mut config = std::fs::read_to_string(project.dir.join("wasmig.toml")).unwrap();
    config.insert_str(
        0,
        &format!("database_url = \"sqlite:{}\"\n", db("toml").display()),
    );
    std::fs::write(project.dir.join("wasmig.toml"), config).unwrap();

    let up = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = wasmig_cmd(&project.dir);
        cmd.arg("up");
        if let Some(url) = env {
            cmd.env("DATABASE_URL", url);
        }
        if let Some(url) = flag {
            cmd.args(["--database-url", url]);
        }
        Run::from_output(cmd.output().unwrap()).success()
    };
    up(None, None);
    assert!(
        db("toml").is_file(),
        "wasmig.toml's database_url was not used"
    );
    let env_url = format!("sqlite:{}", db("env").display());
    up(Some(&env_url), None);
    assert!(db("env").is_file(), "DATABASE_URL did not beat wasmig.toml");
    let flag_url = format!("sqlite:{}", db("flag").display());
    up(Some(&env_url), Some(&flag_url));
    assert!(
        db("flag").is_file(),
        "--database-url did not beat DATABASE_URL"
    );
}

#[tokio::test]
async fn a_sql_revision_with_commit_in_the_middle_is_refused_and_applies_nothing() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
        project.sql_revision(
            "b2",
            "CREATE TABLE u (y integer);\nCOMMIT;\nCREATE TABLE v (z integer);",
            "DROP TABLE v; DROP TABLE u;",
        );
        let run = project.run(&db, &["up"]).fails_with(6);
        assert_run!(
            "commit_in_a_script_refused",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert!(
            !db.table_exists("u").await,
            "{backend:?}: applied before COMMIT"
        );
        assert!(!db.table_exists("v").await, "{backend:?}");
        assert_eq!(db.history().await, ["upgrade:a1"]);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn transaction_keywords_in_strings_and_bodies_are_not_refused() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let body = match backend {
            // BEGIN starts a transaction on MySQL, but not inside a trigger's body; and
            // `||` is OR there, not concatenation.
            Backend::Mysql => {
                "CREATE TRIGGER t_audit AFTER INSERT ON t FOR EACH ROW BEGIN
                     INSERT INTO audit VALUES (CONCAT('end; ', CASE WHEN new.x > 0 THEN 'up' ELSE 'down' END));
                 END;"
            }
            Backend::Sqlite => {
                "CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN
                     INSERT INTO audit VALUES ('end; ' || CASE WHEN new.x > 0 THEN 'up' ELSE 'down' END);
                 END;"
            }
            Backend::Postgres => {
                "CREATE FUNCTION t_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     INSERT INTO audit VALUES ('end; ' || CASE WHEN new.x > 0 THEN 'up' ELSE 'down' END);
                     RETURN new;
                 END $$;
                 CREATE TRIGGER t_audit AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_audit();"
            }
        };
        project.sql_revision(
            "a1",
            &format!(
                "CREATE TABLE t (x integer);
                 CREATE TABLE audit (msg text);
                 {body}
                 INSERT INTO audit VALUES ('COMMIT; ROLLBACK; -- not a comment');
                 INSERT INTO t VALUES (1);"
            ),
            "DROP TABLE t; DROP TABLE audit;",
        );
        project.run(&db, &["up"]).success();
        assert_eq!(
            db.strings("SELECT msg FROM audit ORDER BY msg").await,
            ["COMMIT; ROLLBACK; -- not a comment", "end; up"],
            "{backend:?}"
        );
        project.run(&db, &["down"]).success();
        db.drop_db().await;
    }
}

#[tokio::test]
async fn planning_writes_nothing_not_even_a_sqlite_file() {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
    let file = project.dir.join("not-yet.db");
    let url = format!("sqlite://{}", file.display());
    let run = project
        .run_plain(&["up", "--plan", "--database-url", &url])
        .success();
    assert_eq!(run.stdout, "upgrade a1\n");
    assert!(!file.exists(), "--plan created {}", file.display());
    // The embedded default is not created either.
    project.run_plain(&["up", "--plan"]).success();
    assert!(!project.dir.join("wasmig.db").exists());
}

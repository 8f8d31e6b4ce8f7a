//! `wasmig test`: the stairway on a scratch database, on both backends. A clean project
//! passes; a `down` that forgets a column, a `down` that fails, and a failing `check.sql`
//! are each caught with the revision named (exit 14); the scratch database is gone
//! afterwards (or kept with `--keep`) and the configured database is never touched;
//! `--single-head`, `--budget-secs`, and a role that may not create databases.

use crate::snap::{assert_run, shown_with};
use crate::support::{BOTH, Backend, Run, TestDb, TestProject};

const GRAPH: i32 = 4;
const CONFIG: i32 = 3;
const STAIRWAY_FAILED: i32 = 14;

const CREATE_T: &str = "CREATE TABLE t (id integer PRIMARY KEY, name text NOT NULL);\n";
const DROP_T: &str = "DROP TABLE t;\n";
const ADD_EXTRA: &str = "ALTER TABLE t ADD COLUMN extra text;\nCREATE INDEX t_name ON t (name);\n";
const DROP_EXTRA: &str = "DROP INDEX t_name;\nALTER TABLE t DROP COLUMN extra;\n";
/// The bug: the column stays.
const FORGETS_EXTRA: &str = "DROP INDEX t_name;\n";

/// A project of three revisions, `a1` (creates `t`), `b2` (adds `t.extra` and an index,
/// its down `b2_down`), `c3` (a view).
fn project(b2_down: &str) -> TestProject {
    let project = TestProject::new();
    project.sql_revision("a1", CREATE_T, DROP_T);
    project.sql_revision("b2", ADD_EXTRA, b2_down);
    project.sql_revision(
        "c3",
        "CREATE VIEW named AS SELECT id, name FROM t;\n",
        "DROP VIEW named;\n",
    );
    project
}

/// The scratch database's URL, from the run's log line.
fn scratch_of(run: &Run) -> String {
    let line = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("scratch database: "))
        .unwrap_or_else(|| panic!("no scratch database line: {run:?}"));
    line.split(" (").next().unwrap().to_owned()
}

/// Whether the scratch database (or file) still exists.
async fn scratch_exists(db: &TestDb, scratch: &str) -> bool {
    match db.backend {
        Backend::Postgres => {
            let name = scratch.rsplit('/').next().unwrap();
            assert!(name.starts_with("wasmig_test_"), "{scratch}");
            TestDb::server()
                .count(&format!(
                    "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
                ))
                .await
                > 0
        }
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => std::path::Path::new(scratch.strip_prefix("sqlite:").unwrap()).exists(),
    }
}

/// The configured database was not touched: no table, not even wasmig's.
async fn untouched(db: &TestDb) {
    match db.backend {
        Backend::Postgres => assert_eq!(
            db.count("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
                .await,
            0
        ),
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite:").unwrap();
            assert!(!std::path::Path::new(path).exists(), "{path} was created");
        }
    }
}

/// A run as a snapshot shows it: the scratch database's URL and the durations redacted.
fn shown(run: &Run, project: &TestProject, db: &TestDb) -> String {
    let scratch = scratch_of(run);
    let text = shown_with(run, project, Some(db), &[(&scratch, "[SCRATCH]")]);
    // `(12 ms` → `([MS] ms`.
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(" ms") {
        let digits = rest[..at]
            .bytes()
            .rev()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push_str(&rest[..at - digits]);
        if digits > 0 {
            out.push_str("[MS]");
        }
        out.push_str(" ms");
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn a_clean_project_passes_the_stairway_on_both_backends() {
    for backend in BOTH {
        let project = project(DROP_EXTRA);
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["test"]).success();
        assert!(run.stdout.contains("ok: 3 revision(s)"), "{run:?}");
        let scratch = scratch_of(&run);
        assert!(!scratch_exists(&db, &scratch).await, "{scratch} was kept");
        untouched(&db).await;
        assert_run!("clean_project", backend, shown(&run, &project, &db));
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_down_that_forgets_to_drop_a_column_is_caught_naming_the_revision() {
    for backend in BOTH {
        let project = project(FORGETS_EXTRA);
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["test"]).fails_with(STAIRWAY_FAILED);
        let column = match backend {
            Backend::Postgres => "column public.t.extra remains after down",
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => "column t.extra remains after down",
        };
        assert!(
            run.stdout
                .contains("FAILED  b2 sql b2: down does not undo up"),
            "{run:?}"
        );
        assert!(run.stdout.contains(column), "{run:?}");
        assert!(run.stdout.contains("not run: c3"), "{run:?}");
        assert!(
            run.stderr
                .contains("error: the stairway failed at revision b2: down does not undo up"),
            "{run:?}"
        );
        let scratch = scratch_of(&run);
        assert!(!scratch_exists(&db, &scratch).await, "{scratch} was kept");
        untouched(&db).await;
        assert_run!("forgotten_column", backend, shown(&run, &project, &db));

        // The same as JSON: the change, typed.
        let run = project
            .run(&db, &["test", "--json"])
            .fails_with(STAIRWAY_FAILED);
        let json = run.json();
        assert_eq!(json["ok"], false);
        let failed = &json["revisions"][1];
        assert_eq!(failed["revision"], "b2");
        assert_eq!(failed["failure"]["stage"], "down-left-changes");
        let changes = failed["failure"]["changes"].as_array().unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c["change"] == "added" && c["key"].as_str().unwrap().ends_with("t.extra")),
            "{changes:?}"
        );
        assert_eq!(json["not_run"], serde_json::json!(["c3"]));
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_down_that_fails_outright_is_caught() {
    for backend in BOTH {
        let project = project("DROP TABLE no_such_table;\n");
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["test"]).fails_with(STAIRWAY_FAILED);
        assert!(
            run.stdout.contains("FAILED  b2 sql b2: down failed"),
            "{run:?}"
        );
        assert!(run.stdout.contains("no_such_table"), "{run:?}");
        assert!(!scratch_exists(&db, &scratch_of(&run)).await);
        untouched(&db).await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_failing_check_names_the_revision_and_the_query() {
    for backend in BOTH {
        let project = project(DROP_EXTRA);
        let b2 = std::fs::read_dir(project.dir.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_str().unwrap().contains("b2"))
            .unwrap();
        std::fs::write(
            b2.join("fixture.sql"),
            "INSERT INTO t (id, name) VALUES (1, 'one'), (2, 'two');\n",
        )
        .unwrap();
        std::fs::write(
            b2.join("check.sql"),
            "SELECT count(*) = 2 FROM t WHERE extra IS NULL;\nSELECT count(*) = 3 FROM t;\n",
        )
        .unwrap();
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["test"]).fails_with(STAIRWAY_FAILED);
        assert!(
            run.stdout
                .contains("FAILED  b2 sql b2: a check of its check.sql failed"),
            "{run:?}"
        );
        assert!(
            run.stdout.contains("query: SELECT count(*) = 3 FROM t"),
            "{run:?}"
        );
        let got = match backend {
            Backend::Postgres => "got: false",
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => "got: 0",
        };
        assert!(run.stdout.contains(got), "{run:?}");
        assert_run!("failing_check", backend, shown(&run, &project, &db));

        // The right checks pass, and are counted.
        std::fs::write(
            b2.join("check.sql"),
            "SELECT count(*) = 2 FROM t WHERE extra IS NULL;\nSELECT count(*) = 2 FROM t;\n",
        )
        .unwrap();
        let run = project.run(&db, &["test"]).success();
        assert!(
            run.stdout.contains("b2 sql b2 (") && run.stdout.contains("fixture, 2 check(s))"),
            "{run:?}"
        );
        untouched(&db).await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn keep_leaves_the_scratch_database_for_inspection() {
    for backend in BOTH {
        let project = project(FORGETS_EXTRA);
        let db = TestDb::new(backend, &project).await;
        let run = project
            .run(&db, &["test", "--keep", "--json"])
            .fails_with(STAIRWAY_FAILED);
        let json = run.json();
        assert_eq!(json["kept"], true);
        let scratch = json["scratch"].as_str().unwrap().to_owned();
        assert_eq!(scratch, scratch_of(&run));
        assert!(
            run.stderr
                .contains(&format!("kept the scratch database: {scratch}")),
            "{run:?}"
        );
        assert!(scratch_exists(&db, &scratch).await);
        // What the failed revision left is there to look at.
        let kept = TestDb::existing(backend, &scratch);
        assert_eq!(
            kept.strings("SELECT revision FROM wasmig_version").await,
            ["a1"]
        );
        kept.drop_db().await;
        if backend == Backend::Sqlite {
            let path = scratch.strip_prefix("sqlite:").unwrap();
            std::fs::remove_file(path).unwrap();
            let _ = std::fs::remove_file(format!("{path}.wasmig-lock"));
        }
        untouched(&db).await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn single_head_refuses_two_heads_and_without_it_every_branch_is_walked() {
    let project = project(DROP_EXTRA);
    project
        .run_plain(&[
            "revision", "-m", "other", "--rev-id", "d4", "--head", "a1", "--splice",
        ])
        .success();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let run = project
        .run(&db, &["test", "--single-head"])
        .fails_with(GRAPH);
    assert!(run.stderr.contains("multiple heads"), "{run:?}");
    let run = project.run(&db, &["test", "--json"]).success();
    let json = run.json();
    let walked: Vec<&str> = json["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_str().unwrap())
        .collect();
    assert_eq!(walked.len(), 4, "{walked:?}");
    assert_eq!(walked[0], "a1");
    untouched(&db).await;
}

#[tokio::test]
async fn a_revision_over_the_budget_fails_naming_it() {
    let project = TestProject::new();
    project.sql_revision("a1", CREATE_T, DROP_T);
    project.sql_revision("s2", "SELECT pg_sleep(1.5);\n", "SELECT 1;\n");
    let db = TestDb::new(Backend::Postgres, &project).await;
    let run = project
        .run(&db, &["test", "--budget-secs", "1"])
        .fails_with(STAIRWAY_FAILED);
    assert!(run.stdout.contains("ok      a1"), "{run:?}");
    assert!(
        run.stdout
            .contains("FAILED  s2 sql s2: up, down and up again took"),
        "{run:?}"
    );
    assert!(run.stdout.contains("over the budget of 1000 ms"), "{run:?}");
    assert!(!scratch_exists(&db, &scratch_of(&run)).await);
    db.drop_db().await;
}

#[tokio::test]
async fn a_role_that_may_not_create_databases_is_told_what_to_grant() {
    let project = project(DROP_EXTRA);
    let db = TestDb::new(Backend::Postgres, &project).await;
    let role = format!("wasmig_nocreatedb_{}", db.url.rsplit('_').next().unwrap());
    TestDb::server()
        .exec(&format!("CREATE ROLE {role} LOGIN NOCREATEDB"))
        .await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let run = crate::support::Run::from_output(
        crate::support::wasmig_cmd(&project.dir)
            .args(["test", "--database-url", &url])
            .output()
            .unwrap(),
    )
    .fails_with(CONFIG);
    assert!(
        run.stderr.contains(&format!("ALTER ROLE {role} CREATEDB"))
            && run.stderr.contains("--scratch-url"),
        "{run:?}"
    );
    db.drop_db().await;
    TestDb::server().exec(&format!("DROP ROLE {role}")).await;
}

#[tokio::test]
async fn ctrl_c_drops_the_scratch_database_and_exits_130() {
    let project = TestProject::new();
    project.sql_revision("a1", CREATE_T, DROP_T);
    project.sql_revision("s2", "SELECT pg_sleep(30);\n", "SELECT 1;\n");
    let db = TestDb::new(Backend::Postgres, &project).await;
    let child = crate::support::wasmig_cmd(&project.dir)
        .args(["test", "--database-url", &db.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until s2's up sleeps on a scratch database, then interrupt as a terminal would.
    let mut sleeping = 0;
    for _ in 0..600 {
        sleeping = TestDb::server()
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'wasmig\\_test\\_%' \
                 AND query LIKE '%pg_sleep(30)%' AND query NOT LIKE '%pg_stat_activity%'",
            )
            .await;
        if sleeping > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(sleeping > 0, "s2 never ran");
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling a child process this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let run = Run::from_output(child.wait_with_output().unwrap()).fails_with(130);
    assert!(run.stderr.contains("interrupted"), "{run:?}");
    assert!(!scratch_exists(&db, &scratch_of(&run)).await);
    untouched(&db).await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_component_revision_is_walked_like_an_sql_one() {
    for backend in BOTH {
        let project = TestProject::new();
        project.sql_revision("a1", CREATE_T, DROP_T);
        let b2 = project.wasm_revision("b2", std::path::Path::new(crate::test_guest::SCENARIO));
        // The guest reads what to do from `e2e_mode`: the fixture makes it.
        std::fs::write(
            b2.join("fixture.sql"),
            "CREATE TABLE e2e_mode (mode text);\nINSERT INTO e2e_mode VALUES ('ok');\n",
        )
        .unwrap();
        std::fs::write(
            b2.join("check.sql"),
            "SELECT count(*) = 1 FROM scenario_marker;\n",
        )
        .unwrap();
        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["test", "--json"]).success();
        let json = run.json();
        assert_eq!(json["ok"], true, "{run:?}");
        assert_eq!(json["revisions"][1]["revision"], "b2");
        assert_eq!(json["revisions"][1]["checks"], 1);
        assert!(
            run.stderr.matches("applying b2").count() == 2 && run.stderr.contains("reverting b2"),
            "{run:?}"
        );
        untouched(&db).await;
        db.drop_db().await;
    }
}

/// Runs `wasmig test` on a project of `a1` (creates `t`) and `b2` (`up`, `down`) and
/// returns the run, which must fail at `b2`.
async fn fails_at_b2(backend: Backend, up: &str, down: &str) -> Run {
    let project = TestProject::new();
    project.sql_revision("a1", CREATE_T, DROP_T);
    project.sql_revision("b2", up, down);
    let db = TestDb::new(backend, &project).await;
    let run = project.run(&db, &["test"]).fails_with(STAIRWAY_FAILED);
    assert!(run.stdout.contains("FAILED  b2 sql b2: "), "{run:?}");
    untouched(&db).await;
    db.drop_db().await;
    run
}

#[tokio::test]
async fn every_kind_of_object_a_down_leaves_behind_is_named() {
    let cases = [
        (
            "CREATE INDEX t_name ON t (name);",
            "index public.t_name remains after down",
        ),
        (
            "ALTER TABLE t ADD CONSTRAINT name_not_empty CHECK (name <> '');",
            "constraint public.t.name_not_empty remains after down",
        ),
        (
            "ALTER TABLE t ALTER COLUMN name SET DEFAULT 'x';",
            "column public.t.name differs after down: text not null before up, text not null default 'x'::text after down",
        ),
        (
            "CREATE SEQUENCE numbers;",
            "sequence public.numbers remains after down",
        ),
        (
            "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "function public.one() remains after down",
        ),
        (
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
             CREATE TRIGGER t_touch BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION touch();",
            "trigger public.t.t_touch remains after down",
        ),
        (
            "CREATE TYPE mood AS ENUM ('sad', 'happy');",
            "type public.mood remains after down",
        ),
        (
            "CREATE VIEW names AS SELECT name FROM t;",
            "view public.names remains after down",
        ),
        ("CREATE SCHEMA audit;", "schema audit remains after down"),
        (
            "CREATE EXTENSION hstore;",
            "extension hstore remains after down",
        ),
    ];
    for (up, expected) in cases {
        let run = fails_at_b2(Backend::Postgres, up, "SELECT 1;").await;
        assert!(run.stdout.contains(expected), "{up}: {run:?}");
    }
    // A down that drops what up did not create is caught too.
    let run = fails_at_b2(
        Backend::Postgres,
        "SELECT 1;",
        "ALTER TABLE t DROP COLUMN name;",
    )
    .await;
    assert!(
        run.stdout.contains(
            "column public.t.name is gone after down (it was there before up: text not null)"
        ),
        "{run:?}"
    );
    // On SQLite: an index, a trigger, a view.
    for (up, expected) in [
        (
            "CREATE INDEX t_name ON t (name);",
            "index t_name remains after down",
        ),
        (
            "CREATE TRIGGER t_touch AFTER INSERT ON t BEGIN SELECT 1; END;",
            "trigger t_touch remains after down",
        ),
        (
            "CREATE VIEW names AS SELECT name FROM t;",
            "view names remains after down",
        ),
    ] {
        let run = fails_at_b2(Backend::Sqlite, up, "SELECT 1;").await;
        assert!(run.stdout.contains(expected), "{up}: {run:?}");
    }
}

#[tokio::test]
async fn an_up_that_gives_another_schema_after_its_down_is_caught() {
    // b2 creates `first` the first time and `second` after that, counting its runs in a
    // table whose rows its down leaves (rows are not the schema).
    let run = fails_at_b2(
        Backend::Postgres,
        "INSERT INTO t (id, name) SELECT coalesce(max(id), 0) + 1, 'run' FROM t;
         DO $$ BEGIN
           IF (SELECT count(*) FROM t) > 1 THEN CREATE TABLE second (x int);
           ELSE CREATE TABLE first (x int); END IF;
         END $$;",
        "DROP TABLE IF EXISTS first; DROP TABLE IF EXISTS second;",
    )
    .await;
    assert!(
        run.stdout
            .contains("b2 sql b2: up after down gives another schema than the first up"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("table public.first is missing after the second up")
            && run
                .stdout
                .contains("table public.second appears only after the second up"),
        "{run:?}"
    );
}

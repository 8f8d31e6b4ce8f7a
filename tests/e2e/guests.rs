//! Guests built from Rust source (`tests/guests/`): every way a migration can fail leaves
//! nothing behind, a handled error can be recovered with a savepoint, every value type
//! round-trips, the sandbox denies files, environment and sockets, and the example project
//! runs on both backends.

use std::path::Path;

use crate::snap::{assert_run, shown, shown_error};
use crate::support::{ALL, BOTH, Backend, Run, TestDb, TestProject, repo_root, wasmig_cmd};

/// A project with a SQL revision `a1` and the scenario guest as `b2`, in `mode`.
async fn scenario(backend: Backend, mode: &str) -> (TestProject, TestDb, std::path::PathBuf) {
    let project = TestProject::new();
    let db = TestDb::new(backend, &project).await;
    db.exec(&format!(
        "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('{mode}');"
    ))
    .await;
    project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
    let dir = project.wasm_revision("b2", Path::new(crate::test_guest::SCENARIO));
    (project, db, dir)
}

/// The scenario fails with `code`, as the snapshot `name` shows, and leaves only `a1` applied.
async fn assert_scenario_fails(
    backend: Backend,
    mode: &str,
    manifest: &str,
    code: i32,
    name: &str,
) {
    let (project, db, dir) = scenario(backend, mode).await;
    project.set_manifest(&dir, manifest);
    let run = project.run(&db, &["up"]).fails_with(code);
    assert_run!(name, backend, shown(&run, &project, Some(&db)));
    assert_eq!(db.heads().await, ["a1"], "{backend:?} {mode}");
    assert_eq!(db.history().await, ["upgrade:a1"], "{backend:?} {mode}");
    assert!(
        !db.table_exists("scenario_marker").await,
        "{backend:?} {mode}: the failed guest's work was kept"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_guest_that_returns_an_error_leaves_nothing_behind() {
    for backend in BOTH {
        assert_scenario_fails(backend, "guest-error", "", 6, "guest_error").await;
    }
}

#[tokio::test]
async fn a_guest_that_propagates_an_sql_error_leaves_nothing_behind() {
    for backend in BOTH {
        assert_scenario_fails(
            backend,
            "unhandled-sql",
            "",
            6,
            "guest_propagates_sql_error",
        )
        .await;
    }
}

#[tokio::test]
async fn a_guest_that_swallows_an_sql_error_is_not_reported_as_success() {
    for backend in BOTH {
        assert_scenario_fails(backend, "swallow", "", 6, "guest_swallows_sql_error").await;
    }
}

#[tokio::test]
async fn a_guest_that_panics_traps_and_leaves_nothing_behind() {
    for backend in BOTH {
        assert_scenario_fails(backend, "panic", "", 6, "guest_panics").await;
    }
}

#[tokio::test]
async fn a_statement_that_is_not_utf8_is_refused_and_blamed_on_the_guest() {
    // C and Go strings are bytes: a guest can hand the host text that is not UTF-8. The
    // host's reading of the call refuses it (the step fails as the guest's, rolled back),
    // and says why.
    for backend in BOTH {
        let (project, db, _) = scenario(backend, "invalid-utf8").await;
        let run = project.run(&db, &["up"]).fails_with(6);
        assert!(
            run.stderr.contains(
                "the migration trapped: it passed wasmig text that is not UTF-8 (invalid utf-8 sequence of 1 bytes from index 12)"
            ) && !run.stderr.contains("wasm backtrace:"),
            "{backend:?}: {run:?}"
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        // The same bytes as the error the migration returns.
        db.exec("UPDATE e2e_mode SET mode = 'invalid-utf8-error'")
            .await;
        let run = project.run(&db, &["up"]).fails_with(6);
        assert!(
            run.stderr.contains(
                "the migration trapped: it passed wasmig text that is not UTF-8 (invalid utf-8 sequence of 1 bytes from index 7)"
            ),
            "{backend:?}: {run:?}"
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_traps_wasm_backtrace_is_logged_with_v_and_left_out_of_the_error() {
    // The error says what trapped on one line; the frames, mostly numbered functions, are
    // for `-v` (they once came first and drowned the cause).
    let (project, db, _) = scenario(Backend::Sqlite, "panic").await;
    let plain = project.run(&db, &["up"]).fails_with(6);
    let error = plain
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("the migration trapped: wasm trap: wasm `unreachable` instruction executed")
            && !error.contains("wasm backtrace:"),
        "{plain:?}"
    );
    let verbose = project.run(&db, &["-v", "up"]).fails_with(6);
    assert!(
        verbose
            .stderr
            .contains("the migration trapped: error while executing at wasm backtrace:"),
        "{verbose:?}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_guest_blocked_in_a_long_statement_is_stopped_by_the_deadline() {
    for backend in BOTH {
        let started = std::time::Instant::now();
        assert_scenario_fails(
            backend,
            "long-sql",
            "timeout_secs = 2",
            7,
            "guest_blocked_in_a_long_statement",
        )
        .await;
        // Not a timing assertion on performance: only that the 60 s statement was cancelled
        // rather than waited for.
        assert!(
            started.elapsed().as_secs() < 50,
            "{backend:?}: the statement was not cancelled"
        );
    }
}

#[tokio::test]
async fn a_guest_can_recover_from_an_sql_error_inside_a_savepoint() {
    for backend in BOTH {
        let (project, db, _) = scenario(backend, "savepoint").await;
        let run = project.run(&db, &["up"]).success();
        assert_run!(
            "guest_recovers_in_a_savepoint",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["b2"]);
        assert_eq!(
            db.strings("SELECT CAST(x AS TEXT) FROM scenario_marker ORDER BY x")
                .await,
            ["1", "3"],
            "{backend:?}"
        );
        project.run(&db, &["down"]).success();
        assert!(!db.table_exists("scenario_marker").await);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn guest_logs_and_progress_reach_the_log_with_the_revision() {
    for backend in BOTH {
        let (project, db, _) = scenario(backend, "log").await;
        let run = project.run(&db, &["up"]).success();
        assert_run!(
            "guest_logs_and_progress",
            backend,
            shown(&run, &project, Some(&db))
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_killed_run_leaves_the_database_before_the_step() {
    for backend in BOTH {
        let (project, db, _) = scenario(backend, "long-sql").await;
        let mut child = wasmig_cmd(&project.dir)
            .args(["up", "--database-url", &db.url])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the guest is inside its long statement, then kill -9.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while db.heads().await != ["a1"] && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(db.history().await, ["upgrade:a1"]);
        assert!(!db.table_exists("scenario_marker").await, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn every_value_type_round_trips_through_a_guest() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.wasm_revision("v1", Path::new(crate::test_guest::VALUES));
        let run = project.run(&db, &["up"]).success();
        assert_run!(
            "values_round_trip",
            backend,
            shown(&run, &project, Some(&db))
        );
        // Checked from outside the sandbox too.
        match backend {
            Backend::Postgres => {
                assert_eq!(
                    db.strings("SELECT n::text FROM value_rt").await,
                    ["-12.3400"]
                );
                assert_eq!(
                    db.strings("SELECT tz::text FROM value_rt").await,
                    ["2024-01-02 01:04:05.123456+00"]
                );
                assert_eq!(
                    db.strings("SELECT array_to_string(a_i4, ',', 'null') FROM value_rt")
                        .await,
                    ["1,null,3"]
                );
                assert_eq!(
                    db.strings("SELECT encode(by, 'hex') FROM value_rt").await,
                    ["00ff10"]
                );
                assert_eq!(
                    db.strings("SELECT (nul IS NULL)::text FROM value_rt").await,
                    ["true"]
                );
            }
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => {
                assert_eq!(db.strings("SELECT d FROM value_rt").await, ["2024-02-29"]);
                assert_eq!(db.strings("SELECT hex(by) FROM value_rt").await, ["00FF10"]);
            }
        }
        // The rows written by copy-in (COPY on PostgreSQL) hold the same values.
        let same = match backend {
            Backend::Postgres => {
                "SELECT count(*) FROM value_rt r JOIN value_copy c \
                 ON c.seq = 1 AND c.n = r.n AND c.tz = r.tz AND c.by = r.by AND c.a_i4 = r.a_i4"
            }
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => {
                "SELECT count(*) FROM value_rt r JOIN value_copy c \
                 ON c.seq = 1 AND c.d = r.d AND c.by = r.by"
            }
        };
        assert_eq!(db.count(same).await, 1, "{backend:?}");
        assert_eq!(
            db.count("SELECT count(*) FROM value_copy WHERE seq = 2 AND b IS NULL")
                .await,
            1
        );
        assert_eq!(
            db.strings("SELECT \"Mixed Case\" FROM \"we\"\"ird\"").await,
            ["tab\tnew\nline\\ \\N"]
        );
        // The column calls wrote rows 1 and 2 again: as 3 and 4 (`copy-in-columns`) and, on
        // PostgreSQL, as 5 and 6 (`execute-columns`), every scalar column the same.
        let names = match backend {
            Backend::Postgres => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = 'value_copy' AND column_name <> 'seq' \
                 AND data_type <> 'ARRAY' ORDER BY ordinal_position"
            }
            _ => "SELECT name FROM pragma_table_info('value_copy') WHERE name <> 'seq'",
        };
        let same = db
            .strings(names)
            .await
            .iter()
            .map(|c| match backend {
                // As text: `json` has no equality.
                Backend::Postgres => format!("a.{c}::text IS NOT DISTINCT FROM b.{c}::text"),
                _ => format!("a.{c} IS b.{c}"),
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let copies = if backend == Backend::Postgres { 2 } else { 1 };
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM value_copy a JOIN value_copy b \
                 ON (b.seq - a.seq) % 2 = 0 AND b.seq > 2 WHERE a.seq IN (1, 2) AND {same}"
            ))
            .await,
            2 * copies,
            "{backend:?}"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM value_copy").await,
            2 + 2 * copies,
            "{backend:?}"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_guest_cannot_read_files_environment_or_open_sockets() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.wasm_revision("h1", Path::new(crate::test_guest::HOSTILE));
    let out = wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .env("WASMIG_E2E_SECRET", "do-not-leak")
        .output()
        .unwrap();
    let run = Run::from_output(out).success();
    // Each attempt is denied: files, directories, environment, arguments, sockets, lookups.
    assert_run!("hostile_guest_denied", shown(&run, &project, Some(&db)));
    assert!(!run.stderr.contains("do-not-leak"));
    db.drop_db().await;
}

/// The README's example project, built by `wasmig build` and run on every backend: the same
/// three revisions on PostgreSQL, MariaDB and SQLite.
#[tokio::test]
async fn the_example_project_runs_up_and_down_on_every_backend() {
    let example = repo_root().join("migrations");
    // Build once, serially: every test shares the example's build directory.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    {
        let _guard = BUILD.lock().unwrap();
        let out = wasmig_cmd(&example).arg("build").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for backend in ALL {
        let scratch = TestProject::new();
        let db = TestDb::new(backend, &scratch).await;
        let run = |args: &[&str]| {
            let out = wasmig_cmd(&example)
                .args(args)
                .args(["--database-url", &db.url, "--no-build"])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        // MariaDB's default collation ignores case: compare the bytes there.
        let (untidy, opted_in) = match backend {
            Backend::Mysql => (
                "SELECT count(*) FROM customers WHERE email_norm IS NULL \
                 OR CAST(email_norm AS BINARY) <> CAST(lower(trim(email)) AS BINARY)",
                "SELECT count(*) FROM customers \
                 WHERE JSON_EXTRACT(preferences, '$.newsletter') = true",
            ),
            Backend::Postgres => (
                "SELECT count(*) FROM customers WHERE email_norm IS NULL \
                 OR email_norm <> lower(trim(email))",
                "SELECT count(*) FROM customers \
                 WHERE (preferences::jsonb -> 'newsletter') = 'true'::jsonb",
            ),
            Backend::Sqlite => (
                "SELECT count(*) FROM customers WHERE email_norm IS NULL \
                 OR email_norm <> lower(trim(email))",
                "SELECT count(*) FROM customers \
                 WHERE json_extract(preferences, '$.newsletter') = 1",
            ),
        };
        let (code, stderr) = run(&["up"]);
        assert_eq!(code, Some(0), "{backend:?}: {stderr}");
        assert!(
            stderr.contains("500 customers opted in to the newsletter"),
            "{backend:?}: {stderr}"
        );
        assert_eq!(db.count("SELECT count(*) FROM customers").await, 5000);
        assert_eq!(db.count(untidy).await, 0, "{backend:?}");
        assert_eq!(db.count(opted_in).await, 500, "{backend:?}");
        assert_eq!(db.heads().await.len(), 1);
        // One step down: the key is removed again, the rest of the JSON kept.
        let (code, stderr) = run(&["down", "-1"]);
        assert_eq!(code, Some(0), "{backend:?}: {stderr}");
        assert_eq!(db.count(opted_in).await, 0, "{backend:?}");
        assert_eq!(
            db.count("SELECT count(*) FROM customers WHERE preferences = '{}'")
                .await,
            5000,
            "{backend:?}"
        );
        let (code, stderr) = run(&["down", "base"]);
        assert_eq!(code, Some(0), "{backend:?}: {stderr}");
        assert!(!db.table_exists("customers").await);
        db.drop_db().await;
    }
}

/// The database drops the connection while the guest waits on a statement: the step fails
/// as a database problem (not the guest's fault), names the revision, and leaves nothing.
#[tokio::test]
async fn a_connection_lost_mid_migration_is_a_database_error_and_leaves_nothing() {
    let (project, db, _) = scenario(Backend::Postgres, "long-sql").await;
    let child = wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the guest's statement runs, then terminate that backend from outside.
    let terminated = db.terminate_backend_running("pg_sleep(60)").await;
    assert_eq!(terminated, 1, "the guest's statement never started");
    let run = crate::support::Run::from_output(child.wait_with_output().unwrap()).fails_with(5);
    // The warning about the rollback before the error depends on when the server's end of
    // the connection is seen: the error only.
    assert_run!(
        "connection_lost_mid_migration",
        shown_error(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert!(!db.table_exists("scenario_marker").await);
    db.drop_db().await;
}

/// A guest asleep in a WASI call is inside the host, where the epoch cannot interrupt it;
/// the deadline still stops it and nothing is kept.
#[tokio::test]
async fn a_guest_sleeping_in_wasi_is_stopped_by_the_deadline() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        db.exec("CREATE TABLE hostile_sleep (x int);").await;
        let dir = project.wasm_revision("h1", Path::new(crate::test_guest::HOSTILE));
        project.set_manifest(&dir, "timeout_secs = 1");
        let run = project.run(&db, &["up"]).fails_with(7);
        assert_run!(
            "guest_sleeping_in_wasi",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(!db.table_exists("hostile_slept").await, "{backend:?}");
        db.drop_db().await;
    }
}

/// A guest that sends COMMIT (alone or in a batch) gets an error instead, and the step,
/// which it then fails, leaves nothing behind.
#[tokio::test]
async fn a_guest_that_runs_commit_is_refused_and_leaves_nothing_behind() {
    for backend in BOTH {
        assert_scenario_fails(backend, "commit", "", 6, "guest_commit_refused").await;
    }
}

/// A cursor opened inside a savepoint that is rolled back is closed with it; reading it is
/// an error the guest sees, dropping it does not abort the transaction.
#[tokio::test]
async fn a_cursor_closed_by_rolling_back_its_savepoint_does_not_break_the_step() {
    for backend in BOTH {
        let (project, db, _) = scenario(backend, "cursor-savepoint").await;
        let run = project.run(&db, &["up"]).success();
        assert_eq!(run.stderr.matches("closed: ").count(), 2, "{run:?}");
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        assert_eq!(
            db.strings("SELECT CAST(x AS TEXT) FROM scenario_marker ORDER BY x")
                .await,
            ["1", "2", "3", "4"],
            "{backend:?}"
        );
        db.drop_db().await;
    }
}

/// Thousands of short statements in one host call: cancels landing between two of them
/// must not be lost.
#[tokio::test]
async fn a_guest_running_many_short_statements_is_stopped_by_the_deadline() {
    for backend in BOTH {
        let started = std::time::Instant::now();
        assert_scenario_fails(
            backend,
            "many-short-sql",
            "timeout_secs = 1",
            7,
            "guest_running_many_short_statements",
        )
        .await;
        // Not a timing assertion: only that the run ended rather than ran every statement.
        assert!(
            started.elapsed().as_secs() < 60,
            "{backend:?}: the statements were not cancelled"
        );
    }
}

/// Session settings and advisory locks a guest leaves on its pooled connection do not reach
/// the next revision, nor the version-table update of its own.
#[tokio::test]
async fn session_settings_of_a_guest_do_not_reach_the_next_revision() {
    let (project, db, _) = scenario(Backend::Postgres, "set-search-path").await;
    project.sql_revision(
        "c3",
        "CREATE TABLE after_reset (x int);",
        "DROP TABLE after_reset;",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert!(db.table_exists("after_reset").await);
    assert_eq!(
        db.strings("SELECT schemaname::text FROM pg_tables WHERE tablename = 'after_reset'")
            .await,
        ["public"]
    );
    db.drop_db().await;
}

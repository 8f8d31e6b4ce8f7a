//! `transaction = "none"` SQL revisions: statements autocommitted one by one (so
//! `CREATE INDEX CONCURRENTLY` works), the failure state a part-way failure leaves, and
//! `wasmig resolve`.

use crate::snap::{assert_run, shown};
use crate::support::{ALL, BOTH, Backend, TestDb, TestProject, no_transaction};

const CONFIG: i32 = 3;
const GRAPH: i32 = 4;
const MIGRATION_FAILED: i32 = 6;
const FAILED_STATE: i32 = 13;

#[tokio::test]
async fn create_index_concurrently_runs_in_a_revision_without_a_transaction() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000);",
        "DROP TABLE t;",
    );
    let b2 = project.sql_revision(
        "b2",
        "-- two indexes, each built without blocking writes\n\
         CREATE INDEX CONCURRENTLY t_x ON t (x);\n\
         CREATE UNIQUE INDEX CONCURRENTLY t_x_unique ON t (x);\n",
        "DROP INDEX CONCURRENTLY t_x_unique;\nDROP INDEX CONCURRENTLY t_x;",
    );
    // In the default mode PostgreSQL refuses it: the revision runs in a transaction.
    let refused = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!(
        "create_index_concurrently_in_a_transaction",
        shown(&refused, &project, Some(&db))
    );
    assert!(db.failed_marks().await.is_empty());

    // Without one it runs, while wasmig holds its advisory lock on its control connection.
    // (Were that connection in a transaction, CREATE INDEX CONCURRENTLY would wait for it
    // forever: the statement timeout turns such a deadlock into a failure of this test.)
    no_transaction(&b2);
    project.set_manifest(&b2, "statement_timeout_secs = 30");
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.history().await, ["upgrade:a1", "upgrade:b2"]);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_index
             WHERE indisvalid AND indexrelid::regclass::text IN ('t_x', 't_x_unique')"
        )
        .await,
        2
    );
    project.run(&db, &["check"]).success();
    project.run(&db, &["down"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE tablename = 't'")
            .await,
        0
    );
    db.drop_db().await;
}

/// A `CREATE UNIQUE INDEX CONCURRENTLY` that fails (duplicates) leaves an invalid index:
/// the failure says so, and what to do with it; a failure of any other statement does not
/// mention indexes.
#[tokio::test]
async fn a_failed_concurrent_index_build_is_named_as_leaving_an_invalid_index() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (1);",
        "DROP TABLE t;",
    );
    let b2 = project.sql_revision(
        "b2",
        "CREATE INDEX CONCURRENTLY t_plain ON t (x);\n\
         CREATE UNIQUE INDEX CONCURRENTLY t_unique ON t (x);\n",
        "DROP INDEX CONCURRENTLY t_unique;\nDROP INDEX CONCURRENTLY t_plain;",
    );
    no_transaction(&b2);
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    let left = "it left the invalid index t_unique behind: drop it (DROP INDEX CONCURRENTLY) or REINDEX it";
    assert!(
        run.stderr.contains("statement 2 of 2") && run.stderr.contains(left),
        "{run:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid::regclass::text = 't_unique'")
            .await,
        1,
        "the server left it invalid"
    );
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();
    db.exec("DROP INDEX t_unique; DROP INDEX t_plain; DELETE FROM t WHERE ctid IN (SELECT ctid FROM t LIMIT 1);")
        .await;
    // A failure that leaves no invalid index says nothing of indexes: another statement's,
    // or a concurrent build that failed before it made one (the name taken by a valid
    // index, a missing table).
    for script in [
        "CREATE INDEX CONCURRENTLY t_plain ON t (x);\nINSERT INTO missing VALUES (1);\n",
        "CREATE INDEX CONCURRENTLY t_plain ON t (x);\nCREATE INDEX CONCURRENTLY t_plain ON t (x);\n",
        "CREATE INDEX CONCURRENTLY t_plain ON t (x);\nCREATE INDEX CONCURRENTLY m ON missing (x);\n",
    ] {
        std::fs::write(b2.join("up.sql"), script).unwrap();
        let run = project
            .run(&db, &["up", "--allow-modified"])
            .fails_with(MIGRATION_FAILED);
        assert!(run.stderr.contains("statement 2 of 2"), "{script}: {run:?}");
        assert!(!run.stderr.contains("invalid index"), "{script}: {run:?}");
        project
            .run(&db, &["resolve", "b2", "--as", "rolled-back"])
            .success();
        db.exec("DROP INDEX t_plain;").await;
    }
    db.drop_db().await;
}

/// a1 (a table), then b2 without a transaction failing at its second statement.
async fn fail_part_way(backend: Backend, project: &TestProject, db: &TestDb) -> std::path::PathBuf {
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision(
        "b2",
        "CREATE TABLE kept (x int);\nINSERT INTO missing VALUES (1);\nCREATE TABLE never (x int);\n",
        "DROP TABLE never;\nDROP TABLE kept;\n",
    );
    no_transaction(&b2);
    let run = project.run(db, &["up"]).fails_with(MIGRATION_FAILED);
    assert_run!("failed_part_way", backend, shown(&run, project, Some(db)));
    // The first statement committed on its own; the third never ran.
    assert!(db.table_exists("kept").await, "{backend:?}");
    assert!(!db.table_exists("never").await, "{backend:?}");
    assert_eq!(db.heads().await, ["a1"], "{backend:?}");
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "failed:b2"],
        "{backend:?}"
    );
    let sqlstate = db
        .strings(match backend {
            // A reserved word there.
            Backend::Mysql => "SELECT `sqlstate` FROM wasmig_history WHERE direction = 'failed'",
            _ => "SELECT sqlstate FROM wasmig_history WHERE direction = 'failed'",
        })
        .await;
    match backend {
        Backend::Postgres => assert_eq!(sqlstate, ["42P01"]),
        Backend::Mysql => assert_eq!(sqlstate, ["42S02"]),
        // SQLite's result code: SQLITE_ERROR.
        Backend::Sqlite => assert_eq!(sqlstate, ["1"]),
    }
    let error = db
        .strings("SELECT error FROM wasmig_history WHERE direction = 'failed'")
        .await;
    assert!(error[0].contains("statement 2 of 3"), "{error:?}");
    assert!(error[0].contains("missing"), "{error:?}");

    let status = project.run(db, &["current", "--json"]).success().json();
    assert_eq!(status["failed"][0]["revision"], "b2", "{status}");
    assert_eq!(status["failed"][0]["direction"], "upgrade");
    assert_eq!(status["failed"][0]["statement"], 2);
    let status = project.run(db, &["status"]).success();
    assert_run!(
        "status_of_a_failed_revision",
        backend,
        shown(&status, project, Some(db))
    );
    let log = project.run(db, &["history", "--log"]).success();
    assert_run!(
        "history_log_of_a_failed_revision",
        backend,
        shown(&log, project, Some(db))
    );

    // Nothing runs until it is resolved, neither up nor down nor a plan.
    for (name, args) in [
        ("marked_failed_refuses_up", &["up"][..]),
        ("marked_failed_refuses_down", &["down"]),
        ("marked_failed_refuses_a_plan", &["up", "--plan"]),
    ] {
        let refused = project.run(db, args).fails_with(FAILED_STATE);
        assert_run!(name, backend, shown(&refused, project, Some(db)));
    }
    assert_eq!(db.heads().await, ["a1"], "{backend:?}");
    b2
}

#[tokio::test]
async fn a_revision_without_a_transaction_failing_part_way_is_resolved_as_rolled_back() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let b2 = fail_part_way(backend, &project, &db).await;

        // The operator undoes the first statement and resolves.
        db.exec("DROP TABLE kept").await;
        project
            .run(&db, &["resolve", "b2", "--as", "rolled-back"])
            .success();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert!(db.failed_marks().await.is_empty());
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "failed:b2", "resolve:b2"],
            "{backend:?}"
        );
        let status = project.run(&db, &["current", "--json"]).success().json();
        assert_eq!(status["failed"], serde_json::json!([]));
        assert_eq!(status["pending"], serde_json::json!(["b2"]));
        // Nothing left to resolve.
        project
            .run(&db, &["resolve", "b2", "--as", "applied"])
            .fails_with(GRAPH);

        // Fixed, it runs.
        std::fs::write(
            b2.join("up.sql"),
            "CREATE TABLE kept (x int);\nINSERT INTO t VALUES (1);\nCREATE TABLE never (x int);\n",
        )
        .unwrap();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        assert!(db.table_exists("never").await);
        assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
        project.run(&db, &["check"]).success();
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_revision_without_a_transaction_failing_part_way_is_resolved_as_applied() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        fail_part_way(backend, &project, &db).await;

        // The operator finishes the work by hand and resolves.
        db.exec("CREATE TABLE never (x int)").await;
        let out = project
            .run(&db, &["resolve", "b2", "--as", "applied", "--json"])
            .success()
            .json();
        assert_eq!(out["heads"], serde_json::json!(["b2"]), "{backend:?}");
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        assert!(db.failed_marks().await.is_empty());
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "failed:b2", "resolve:b2"],
            "{backend:?}"
        );
        let up = project.run(&db, &["up"]).success();
        assert_run!(
            "nothing_to_do_after_resolved_as_applied",
            backend,
            shown(&up, &project, Some(&db))
        );
        // Resolved as applied, its checksum is recorded: `check` verifies it.
        let check = project.run(&db, &["check"]).success();
        assert_run!(
            "check_after_resolved_as_applied",
            backend,
            shown(&check, &project, Some(&db))
        );
        project.run(&db, &["down"]).success();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert!(!db.table_exists("kept").await);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_downgrade_without_a_transaction_failing_part_way_is_resolved_as_rolled_back() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let b2 = project.sql_revision(
            "b2",
            "CREATE TABLE u (x int);\nCREATE TABLE v (x int);",
            "DROP TABLE v;\nDROP TABLE missing;\nDROP TABLE u;",
        );
        no_transaction(&b2);
        project.run(&db, &["up"]).success();
        let run = project.run(&db, &["down"]).fails_with(MIGRATION_FAILED);
        assert_run!(
            "downgrade_failed_part_way",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(!db.table_exists("v").await, "{backend:?}");
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        let status = project.run(&db, &["current", "--json"]).success().json();
        assert_eq!(status["failed"][0]["direction"], "downgrade", "{status}");
        project.run(&db, &["down"]).fails_with(FAILED_STATE);

        // The operator finishes the downgrade by hand: the revision is no longer applied.
        db.exec("DROP TABLE u").await;
        project
            .run(&db, &["resolve", "b2", "--as", "rolled-back"])
            .success();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "failed:b2", "resolve:b2"],
            "{backend:?}"
        );
        project.run(&db, &["check"]).success();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn history_tables_of_the_previous_release_take_failed_rows() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let (id, time) = match backend {
            Backend::Postgres => (
                "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "TIMESTAMPTZ",
            ),
            Backend::Mysql => unreachable!("wasmig never made versionless tables on MySQL"),
            Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
        };
        db.exec(&format!(
            "CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);
             CREATE TABLE wasmig_history (
                 id {id}, revision TEXT NOT NULL,
                 direction TEXT NOT NULL CHECK (direction IN ('upgrade', 'downgrade', 'stamp', 'rehash')),
                 checksum TEXT NOT NULL, started_at {time} NOT NULL, finished_at {time} NOT NULL,
                 duration_ms BIGINT NOT NULL, wasmig_version TEXT NOT NULL);
             INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
             VALUES ('x', 'stamp', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0, '0.1.0');"
        ))
        .await;
        // Read before any write: the old table has no error columns yet.
        project.run(&db, &["history", "--log"]).success();
        let a1 = project.sql_revision("a1", "SELECT 1;\nSELECT * FROM missing;", "SELECT 1;");
        no_transaction(&a1);
        project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
        assert_eq!(db.history().await, ["stamp:x", "failed:a1"], "{backend:?}");
        project
            .run(&db, &["resolve", "a1", "--as", "applied"])
            .success();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn an_atomic_run_refuses_a_revision_without_a_transaction() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let b2 = project.sql_revision("b2", "CREATE TABLE u (x int);", "DROP TABLE u;");
        no_transaction(&b2);
        let run = project.run(&db, &["up", "--atomic"]).fails_with(CONFIG);
        assert_run!(
            "atomic_run_refuses_transaction_none",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}: nothing ran");
        db.drop_db().await;
    }
}

/// `downgrade_transaction` holds for the downgrade alone: `up --atomic` takes the revision
/// and `down --atomic` refuses it naming the setting, and its down script runs statement by
/// statement (the statement before the failing one stays, the revision is marked failed),
/// while its upgrade ran in one transaction.
#[tokio::test]
async fn a_downgrade_runs_in_its_own_transaction_mode() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let b2 = project.sql_revision(
            "b2",
            "CREATE TABLE u (x int);",
            "DROP TABLE u;\nINSERT INTO missing VALUES (1);",
        );
        project.set_manifest(&b2, "downgrade_transaction = \"none\"");
        project.run(&db, &["up", "--atomic"]).success();
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        let run = project
            .run(&db, &["down", "base", "--atomic"])
            .fails_with(CONFIG);
        assert!(
            run.stderr
                .contains("sets `downgrade_transaction = \"none\"`; run without --atomic"),
            "{backend:?}: {}",
            run.stderr
        );
        assert_eq!(db.heads().await, ["b2"], "{backend:?}: nothing ran");
        let run = project
            .run(&db, &["down", "-1"])
            .fails_with(MIGRATION_FAILED);
        // The failure names the key that made the downgrade run without a transaction.
        assert!(
            run.stderr.contains(
                "with `downgrade_transaction = \"none\"` each statement commits on its own"
            ),
            "{backend:?}: {}",
            run.stderr
        );
        assert!(
            !db.table_exists("u").await,
            "{backend:?}: DROP TABLE u committed"
        );
        assert!(!db.failed_marks().await.is_empty(), "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn transaction_none_is_refused_for_components() {
    let project = TestProject::new();
    let w1 = project.wasm_revision_bytes("w1", b"\0asm");
    no_transaction(&w1);
    let run = project.run_plain(&["up", "--plan"]).fails_with(CONFIG);
    assert_run!(
        "transaction_none_for_a_component",
        shown(&run, &project, None)
    );
}

#[tokio::test]
async fn transaction_control_in_a_revision_without_a_transaction_is_refused_before_it_runs() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);\nCOMMIT;", "DROP TABLE t;");
        no_transaction(&a1);
        let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
        assert_run!(
            "commit_in_transaction_none_refused",
            backend,
            shown(&run, &project, Some(&db))
        );
        // Nothing ran, so there is nothing to resolve.
        assert!(!db.table_exists("t").await, "{backend:?}");
        assert!(db.failed_marks().await.is_empty());
        assert!(db.heads().await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_run_killed_inside_a_revision_without_a_transaction_leaves_it_marked() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision(
        "b2",
        "CREATE TABLE half (x int);\nSELECT pg_sleep(30);\nCREATE TABLE rest (x int);\n",
        "DROP TABLE rest; DROP TABLE half;",
    );
    no_transaction(&b2);
    let mut child = crate::support::wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the first statement of b2 has committed, while it sleeps.
    let start = std::time::Instant::now();
    while !db.table_exists("half").await {
        assert!(start.elapsed().as_secs() < 30, "b2 never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;

    // Half of b2 ran and nothing recorded it as applied: it is marked, and up refuses.
    assert_eq!(db.heads().await, ["a1"]);
    let status = project.run(&db, &["current", "--json"]).success().json();
    assert_eq!(status["failed"][0]["revision"], "b2", "{status}");
    assert!(
        status["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{status}"
    );
    let refused = project.run(&db, &["up"]).fails_with(FAILED_STATE);
    assert_run!(
        "marked_by_a_killed_run",
        shown(&refused, &project, Some(&db))
    );
    db.exec("DROP TABLE half").await;
    project
        .run(&db, &["resolve", "b2", "--as", "rolled-back"])
        .success();
    std::fs::write(
        b2.join("up.sql"),
        "CREATE TABLE half (x int);\nCREATE TABLE rest (x int);\n",
    )
    .unwrap();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert!(
        db.failed_marks().await.is_empty(),
        "the provisional mark went with the record"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_failed_mark_blocks_stamp_and_rehash_and_resolve_checks_heads_and_what_ran() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let b2 = fail_part_way(backend, &project, &db).await;
        // Moving the heads under the mark is refused.
        project
            .run(&db, &["stamp", "base"])
            .fails_with(FAILED_STATE);
        project.run(&db, &["rehash", "a1"]).fails_with(FAILED_STATE);
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");

        // Heads moved behind wasmig's back: resolve as applied refuses to guess.
        db.exec("DELETE FROM wasmig_version").await;
        let moved = project
            .run(&db, &["resolve", "b2", "--as", "applied"])
            .fails_with(GRAPH);
        assert_run!(
            "resolve_when_the_heads_moved",
            backend,
            shown(&moved, &project, Some(&db))
        );
        db.exec("INSERT INTO wasmig_version (revision) VALUES ('a1')")
            .await;

        // The operator finishes b2 by hand but also edits its file: the checksum recorded
        // is the one of what ran, so the edit is noticed afterwards.
        db.exec("CREATE TABLE missing (x int); CREATE TABLE never (x int);")
            .await;
        std::fs::write(
            b2.join("up.sql"),
            "CREATE TABLE kept (x int);\nCREATE TABLE never (x int);\n",
        )
        .unwrap();
        project
            .run(&db, &["resolve", "b2", "--as", "applied"])
            .success();
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        let check = project.run(&db, &["check"]).fails_with(12);
        assert_run!(
            "check_after_resolving_an_edited_revision",
            backend,
            shown(&check, &project, Some(&db))
        );
        db.drop_db().await;
    }
}

/// A script that forges another revision's failed mark (which would stop every later run
/// over a revision that never failed) fails as tampering, its own mark kept.
/// A row no mark of wasmig's could be (found by a review: exit 0, then every later command
/// failed reading the marks) too.
#[tokio::test]
async fn a_script_that_marks_another_revision_failed_fails_as_tampering() {
    for (direction, found) in [
        (
            "upgrade",
            "the script of k1 wrote failed marks of other revisions (zz)",
        ),
        (
            "bogus",
            "the script of k1 wrote a row in wasmig_failed that is not a failed mark wasmig could have written",
        ),
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        let k1 = project.sql_revision(
            "k1",
            &format!(
                "CREATE TABLE runs (x INT);\nINSERT INTO wasmig_failed VALUES ('zz', '{direction}', '', 'zz', 1, 'forged', NULL, now());\n"
            ),
            "DROP TABLE runs;",
        );
        no_transaction(&k1);
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(run.stderr.contains(found), "{direction}: {run:?}");
        assert_eq!(
            db.count("SELECT count(*) FROM wasmig_failed WHERE revision = 'k1'")
                .await,
            1,
            "{direction}: its own mark kept: {run:?}"
        );
        db.drop_db().await;
    }
}

/// A script that erases its own failed mark, written before its first statement (and, where
/// it can, ends the session holding the migration lock, so that wasmig could not write the
/// mark again), does not leave a half-applied revision for the next `up` to run as new: the
/// mark is read back once the script stops, put back, and the run fails as tampering.
#[tokio::test]
async fn a_script_that_erases_its_own_failed_mark_stays_marked() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let end_the_lock = match backend {
            Backend::Postgres => {
                // This database's only: the suite's other tests run beside it.
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database());\n"
            }
            Backend::Mysql => {
                "EXECUTE IMMEDIATE CONCAT('KILL ', IS_USED_LOCK(CONCAT('wasmig:', DATABASE())));\n"
            }
            // The lock is a file lock the script cannot reach.
            Backend::Sqlite => "",
        };
        let k1 = project.sql_revision(
            "k1",
            &format!(
                "CREATE TABLE runs (x INT);\nINSERT INTO runs VALUES (1);\nDELETE FROM wasmig_failed;\n{end_the_lock}CREATE TABLE after_it (x INT);\n"
            ),
            "DROP TABLE runs;",
        );
        no_transaction(&k1);
        let run = project.run(&db, &["up"]).fails_with(12);
        assert_eq!(db.failed_marks().await, ["k1"], "{backend:?}: {run:?}");
        project.run(&db, &["up"]).fails_with(FAILED_STATE);
        assert_eq!(
            db.count("SELECT count(*) FROM runs").await,
            1,
            "{backend:?}: run again"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_scripts_own_short_statement_timeout_holds_its_statements_not_wasmigs_on_postgres() {
    // A script that ends by setting a statement timeout shorter than wasmig's check after
    // each statement takes: the check ran under it, was cancelled after the statement had
    // committed, and the revision was marked failed. The timeout still holds the script's
    // own statements (the next one here is cancelled, as it asked), and it is gone in the
    // next step.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // JIT compilation of every plan (some milliseconds each) makes wasmig's check slower
    // than the timeout, every time rather than on a busy machine only.
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE t (x int);\n\
         SET jit_above_cost = 0;\nSET jit_optimize_above_cost = 0;\n\
         SET statement_timeout = '1ms';\n",
        "DROP TABLE t;",
    );
    no_transaction(&a1);
    let b2 = project.sql_revision(
        "b2",
        "INSERT INTO t SELECT 1 FROM pg_sleep(0.05);",
        "DELETE FROM t;",
    );
    no_transaction(&b2);
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert!(db.failed_marks().await.is_empty());
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    // Within the script, the timeout is the script's.
    let c3 = project.sql_revision(
        "c3",
        "SET statement_timeout = '10ms';\nSELECT pg_sleep(1);\nCREATE TABLE never (x int);\n",
        "SELECT 1;",
    );
    no_transaction(&c3);
    let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
    assert!(run.stderr.contains("statement timeout"), "{}", run.stderr);
    assert_eq!(db.failed_marks().await, ["c3"]);
    assert!(!db.table_exists("never").await);
    db.drop_db().await;
}

#[tokio::test]
async fn serializable_deferrable_defaults_a_script_set_do_not_hold_up_the_check_after_it_on_postgres()
 {
    // A script that leaves `serializable`, `deferrable` and `read only` as its session's
    // defaults: wasmig's check after the statement ran in a transaction with them, whose
    // select waited for a safe snapshot as long as any serializable transaction in the
    // cluster stayed open (found by the review helper: the run hung past the step's
    // deadline). Here one stays open for the whole run (it ends after the assertions).
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE t (x int);
         SET default_transaction_isolation = 'serializable';
         SET default_transaction_deferrable = on;
         SET default_transaction_read_only = on;",
        "DROP TABLE t;",
    );
    no_transaction(&a1);
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    crate::support::up_beside_an_open_serializable_transaction(
        &project,
        &db,
        "the check waited for the other session's serializable transaction",
    )
    .await
    .success();
    assert_eq!(db.heads().await, ["b2"]);
    assert!(db.failed_marks().await.is_empty());
    db.drop_db().await;
}

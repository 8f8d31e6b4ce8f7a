//! The rows of wasmig's tables, written by the migration's own SQL in the step's
//! transaction (no trigger, rule or view needed: plain `INSERT`, `UPDATE`, `DELETE`): a
//! head inserted so a later revision never runs, one deleted so it runs again, a head
//! renamed, history forged or erased. wasmig's account of its tables (the heads the run
//! started from, with its steps applied, and the number of history rows) is compared with
//! what the step left, in the step's transaction, before the record is written: the step is
//! rolled back with what it wrote, exit 12, on both backends.

use crate::snap::{assert_run, shown};
use crate::support::{BOTH, Backend, TestDb, TestProject};

/// A statement of b2 that rewrites wasmig's rows, and the snapshot of its refusal.
fn variants(backend: Backend) -> Vec<(&'static str, &'static str)> {
    let forged_history = match backend {
        Backend::Postgres => {
            "INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
             VALUES ('c3', 'upgrade', 'x', now(), now(), 0, '0.1.0');"
        }
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => {
            "INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
             VALUES ('c3', 'upgrade', 'x', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0, '0.1.0');"
        }
    };
    vec![
        // c3 would never run: it looks applied.
        ("INSERT INTO wasmig_version VALUES ('c3');", "head_inserted"),
        // a1 would run again next time.
        ("DELETE FROM wasmig_version;", "head_deleted"),
        // The head renamed: b2 recorded on top of a head that is not a1.
        ("UPDATE wasmig_version SET revision = 'c3';", "head_renamed"),
        // One row whose text looks like the expected list.
        (
            "DELETE FROM wasmig_version; INSERT INTO wasmig_version VALUES ('a1, c3');",
            "head_spoofing_a_list",
        ),
        (forged_history, "history_forged"),
        ("DELETE FROM wasmig_history;", "history_erased"),
    ]
}

#[tokio::test]
async fn rows_a_step_writes_in_wasmigs_tables_are_refused_and_rolled_back() {
    for backend in BOTH {
        for (sql, name) in variants(backend) {
            let project = TestProject::new();
            let db = TestDb::new(backend, &project).await;
            project.sql_revision("a1", "CREATE TABLE a (x int);", "DROP TABLE a;");
            let b2 = project.sql_revision(
                "b2",
                &format!("CREATE TABLE b (x int); {sql}"),
                "DROP TABLE b;",
            );
            project.sql_revision("c3", "CREATE TABLE c (x int);", "DROP TABLE c;");
            project.run(&db, &["up", "a1"]).success();
            let run = project.run(&db, &["up"]).fails_with(12);
            assert_run!(name, backend, shown(&run, &project, Some(&db)));
            // Rolled back with the step: wasmig's rows and the step's work.
            assert_eq!(db.heads().await, ["a1"], "{backend:?} {sql}");
            assert_eq!(db.history().await, ["upgrade:a1"], "{backend:?} {sql}");
            assert!(!db.table_exists("b").await, "{backend:?} {sql}");
            assert!(
                !db.table_exists("c").await,
                "{backend:?} {sql}: c3 never ran"
            );
            // b2 mended: the next run applies b2 and c3, once each.
            std::fs::write(b2.join("up.sql"), "CREATE TABLE b (x int);").unwrap();
            let mended = project.run(&db, &["up"]).success();
            assert!(
                mended.stderr.contains("applied 2 revision(s)"),
                "{mended:?}"
            );
            assert_eq!(db.heads().await, ["c3"], "{backend:?} {sql}");
            assert_eq!(
                db.history().await,
                ["upgrade:a1", "upgrade:b2", "upgrade:c3"],
                "{backend:?} {sql}"
            );
            db.drop_db().await;
        }
    }
}

/// An `--atomic` run: the first step clean, the second forges a head. The whole run is one
/// transaction, so both are rolled back.
#[tokio::test]
async fn a_forged_head_in_an_atomic_run_rolls_back_every_step() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE a (x int);", "DROP TABLE a;");
        project.sql_revision(
            "b2",
            "CREATE TABLE b (x int); INSERT INTO wasmig_version VALUES ('c3');",
            "DROP TABLE b;",
        );
        project.sql_revision("c3", "CREATE TABLE c (x int);", "DROP TABLE c;");
        let run = project.run(&db, &["up", "--atomic"]).fails_with(12);
        assert_run!(
            "forged_head_atomic",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(db.history().await.is_empty(), "{backend:?}");
        assert!(
            !db.table_exists("a").await,
            "{backend:?}: a1 rolled back too"
        );
        db.drop_db().await;
    }
}

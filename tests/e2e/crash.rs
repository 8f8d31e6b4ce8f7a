//! Crash safety: `wasmig` killed with SIGKILL at many points of a run leaves the database
//! before or after each revision, never between; the version table matches the schema, and
//! the lock dies with the process.
//!
//! The kill points are fixed, spread over the run (process start, planning, mid-statement,
//! between steps), so the test is repeatable; each round checks the state before the next.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{BOTH, Backend, TestDb, TestProject, wasmig_cmd};

const REVISIONS: [&str; 6] = ["r1", "r2", "r3", "r4", "r5", "r6"];

/// A statement that takes a while, so kills land inside transactions.
fn slow(backend: Backend, id: &str) -> String {
    match backend {
        Backend::Postgres => "SELECT pg_sleep(0.12);".into(),
        Backend::Sqlite => format!(
            "CREATE TABLE slow_{id} AS WITH RECURSIVE c(x) AS \
             (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) SELECT count(*) AS n FROM c;"
        ),
    }
}

/// Waits until no other session is connected to the test database (PostgreSQL notices a
/// killed client and ends its backend, rolling back its transaction and its lock).
pub(crate) async fn settle(db: &TestDb) {
    if db.backend != Backend::Postgres {
        return;
    }
    let start = Instant::now();
    while db
        .count(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        > 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a killed run's session never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The revisions whose tables exist, and those the version table says are applied: equal.
async fn assert_consistent(db: &TestDb, round: usize) -> usize {
    let heads = db.heads().await;
    assert!(heads.len() <= 1, "round {round}: heads {heads:?}");
    let applied = heads
        .first()
        .map_or(0, |h| REVISIONS.iter().position(|r| r == h).unwrap() + 1);
    for (i, id) in REVISIONS.iter().enumerate() {
        let present = db.table_exists(&format!("t_{id}")).await;
        assert_eq!(
            present,
            i < applied,
            "round {round}: table t_{id} vs version table at {heads:?} ({:?})",
            db.backend
        );
        if present {
            assert_eq!(db.count(&format!("SELECT count(*) FROM t_{id}")).await, 1);
        }
        if db.backend == Backend::Sqlite {
            assert_eq!(db.table_exists(&format!("slow_{id}")).await, i < applied);
        }
    }
    applied
}

#[tokio::test]
async fn sigkill_at_any_point_leaves_each_revision_applied_or_not() {
    // Milliseconds after spawning; a mix of early, mid-step and late kills.
    let kills = [
        5, 60, 150, 230, 310, 420, 90, 500, 700, 260, 130, 380, 950, 20, 600, 340,
    ];
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        for id in REVISIONS {
            let mut down = format!("DROP TABLE t_{id};");
            if backend == Backend::Sqlite {
                down.push_str(&format!(" DROP TABLE slow_{id};"));
            }
            project.sql_revision(
                id,
                &format!(
                    "CREATE TABLE t_{id} (n int); {} INSERT INTO t_{id} VALUES (1);",
                    slow(backend, id)
                ),
                &down,
            );
        }
        // The file exists from the start: a run killed before opening it leaves none, and
        // the checks below read it.
        db.exec("SELECT 1").await;
        let mut seen_partial = false;
        for (round, ms) in kills.iter().enumerate() {
            // Mostly upgrades; every fourth round goes back down, to kill downgrades too.
            let target: &[&str] = if round % 4 == 3 {
                &["down", "base"]
            } else {
                &["up"]
            };
            let mut child = wasmig_cmd(&project.dir)
                .args(target)
                .args(["--database-url", &db.url, "--lock-timeout", "30"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            let _ = child.kill();
            let _ = child.wait();
            settle(&db).await;
            let applied = assert_consistent(&db, round).await;
            seen_partial |= applied > 0 && applied < REVISIONS.len();
        }
        assert!(
            seen_partial,
            "{backend:?}: no kill landed part-way through a run; the test shows nothing"
        );
        // The lock died with the processes: a normal run finishes without waiting it out.
        let done = wasmig_cmd(&project.dir)
            .args(["up", "--database-url", &db.url, "--lock-timeout", "10"])
            .output()
            .unwrap();
        assert!(
            done.status.success(),
            "{backend:?}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        assert_eq!(assert_consistent(&db, kills.len()).await, REVISIONS.len());
        db.drop_db().await;
    }
}

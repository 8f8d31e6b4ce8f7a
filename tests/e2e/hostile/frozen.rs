//! Deadlines that do not rely on the server answering: the backend running a migration, or
//! the one holding the migration lock, is frozen (`SIGSTOP`, with a `SIGCONT` guaranteed
//! when the test ends), and wasmig must still return by itself (soon after the revision's
//! `timeout_secs`, or after the bounded release of the lock), record nothing false, leave
//! the lock free, and let a rerun apply the revision exactly once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::snap::{assert_run, shown_error};
use crate::support::{Backend, Run, TestDb, TestProject, returned_by_itself, wasmig_cmd};

/// Which backend to freeze.
#[derive(Debug, Clone, Copy)]
enum Frozen {
    /// The one running the step (found by its statement).
    Migration,
    /// The one holding the migration lock (wasmig's control connection).
    Lock,
}

/// Runs `wasmig up`, freezes a backend once the step runs, and waits (up to two minutes,
/// a liveness bound, not a timing one: a run that never returns by itself is killed) for
/// wasmig to return; the backend runs again before this returns. Returns the exit code, the
/// standard error and how long wasmig took.
async fn up_with_a_frozen_backend(
    project: &TestProject,
    db: &TestDb,
    which: Frozen,
) -> (i32, String, Duration) {
    let started = Instant::now();
    let child = wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &db.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = db.backend_running("pg_sleep(CASE").await;
    assert!(running > 0, "the step's backend was found");
    let pid = match which {
        Frozen::Migration => running,
        Frozen::Lock => {
            let key = wasmig::db::PG_LOCK_KEY as u64;
            db.count(&format!(
                // This test's database only: other tests' runs hold the same key on theirs.
                "SELECT coalesce(max(pid), 0) FROM pg_locks WHERE locktype = 'advisory' \
                 AND granted AND classid = {} AND objid = {} AND objsubid = 1 \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                key >> 32,
                key & 0xffff_ffff
            ))
            .await
        }
    };
    assert!(pid > 0, "the {which:?} backend was found");
    let stopped = Stopped::stop(pid);
    // Resumed however the wait ends (dropped on a panic too).
    let _stopped = stopped;
    returned_by_itself(child, started).await
}

/// Sends `SIGCONT` to a stopped backend when dropped, however the test ends.
struct Stopped(i64);

impl Stopped {
    fn stop(pid: i64) -> Stopped {
        let frozen = Stopped(pid);
        let stopped = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(
            stopped.success(),
            "SIGSTOP {pid} (the tests run as root beside the server)"
        );
        frozen
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// Sleeps two minutes while the table `freeze_me` exists, else not at all.
const SLEEPY: &str = "INSERT INTO t VALUES (1);
SELECT pg_sleep(CASE WHEN to_regclass('freeze_me') IS NULL THEN 0 ELSE 120 END);";

#[tokio::test]
async fn a_frozen_migration_backend_does_not_hold_the_run_past_its_deadline() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE freeze_me ()").await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision("b2", SLEEPY, "DELETE FROM t;");
    project.set_manifest(&b2, "timeout_secs = 3");
    let (code, stderr, elapsed) = up_with_a_frozen_backend(&project, &db, Frozen::Migration).await;
    eprintln!(
        "measure: frozen migration backend, timeout_secs = 3: wasmig returned after {elapsed:?}"
    );
    assert_eq!(code, 7, "{stderr}");
    // The lines before the error depend on when the freeze landed: the error only.
    let run = Run {
        code,
        stdout: String::new(),
        stderr,
    };
    assert_run!(
        "frozen_migration_backend",
        shown_error(&run, &project, Some(&db))
    );
    // Once the backend runs again, its transaction is gone: nothing of b2 stays.
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
    // The lock is free and a rerun applies b2 exactly once.
    db.exec("DROP TABLE freeze_me").await;
    project.run(&db, &["up", "--lock-timeout", "30"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    db.drop_db().await;
}

#[tokio::test]
async fn a_frozen_lock_backend_does_not_hold_the_run_and_the_lock_is_free_afterwards() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE freeze_me ()").await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    // Sleeps 10 s (not 120): long enough for the test to freeze the lock's backend under
    // it even on a busy machine.
    let b2 = project.sql_revision("b2", &SLEEPY.replace("120", "10"), "DELETE FROM t;");
    project.set_manifest(&b2, "timeout_secs = 60");
    let (code, stderr, elapsed) = up_with_a_frozen_backend(&project, &db, Frozen::Lock).await;
    eprintln!("measure: frozen lock backend: wasmig returned after {elapsed:?}");
    // The step checked the lock in its own transaction (still granted: a frozen backend
    // keeps it) and committed; only the release could not be confirmed.
    assert_eq!(code, 0, "{stderr}");
    // No snapshot: the run succeeds, and what it logs around the warning depends on when
    // the freeze landed.
    assert!(stderr.contains("release of the migration lock"), "{stderr}");
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
    // Running again, the frozen session saw its socket closed and ended: the lock is free.
    db.exec("DROP TABLE freeze_me").await;
    let again = project.run(&db, &["up", "--lock-timeout", "30"]).success();
    assert!(!again.stderr.contains("applying"), "{again:?}");
    db.drop_db().await;
}

/// A step whose `COMMIT` takes two minutes while `freeze_me` exists: a deferred trigger
/// sleeps at commit time.
const SLOW_COMMIT: &str = "CREATE TABLE slow_commit (x int);
CREATE FUNCTION slow_commit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('freeze_me') IS NOT NULL THEN PERFORM pg_sleep(120); END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_commit_tr AFTER INSERT ON slow_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_fn();
INSERT INTO slow_commit VALUES (1);
";

#[tokio::test]
async fn a_commit_the_server_does_not_answer_in_time_is_reported_unknown_not_applied() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE freeze_me ()").await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision(
        "b2",
        SLOW_COMMIT,
        "DROP TABLE slow_commit; DROP FUNCTION slow_commit_fn();",
    );
    project.set_manifest(&b2, "timeout_secs = 3");
    let started = Instant::now();
    let run = project.run(&db, &["up"]).fails_with(10);
    eprintln!(
        "measure: a COMMIT that does not return, timeout_secs = 3: wasmig returned after {:?}",
        started.elapsed()
    );
    assert_run!(
        "commit_not_answered_in_time",
        shown_error(&run, &project, Some(&db))
    );
    // wasmig closed the connection; the server notices (PostgreSQL 14+ checks every second)
    // and rolls the commit back. Nothing false was recorded either way.
    for _ in 0..300 {
        if db.backend_running_now("pg_sleep(120)").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.heads().await, ["a1"]);
    assert!(!db.table_exists("slow_commit").await);
    db.exec("DROP TABLE freeze_me").await;
    project.run(&db, &["up", "--lock-timeout", "30"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM slow_commit").await, 1);
    db.drop_db().await;
}

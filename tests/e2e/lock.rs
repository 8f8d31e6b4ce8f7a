//! The migration lock: one writing run per database, a held lock times out with exit 11
//! naming its holder, and a failed run does not leave the lock behind.
//!
//! Not here: the polling loop's details (`host/db/src/lock.rs`), which only the timing of
//! these runs shows, and timings are asserted loosely on purpose.

use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection};

use crate::snap::{assert_run, shown, shown_error, shown_with};
use crate::support::{ALL, Backend, Run, TestDb, TestProject, wasmig_cmd};

/// The lock key documented in the README and pinned in `host/db/src/lock.rs`.
const PG_LOCK_KEY: i64 = -7_417_683_568_260_457_548;

/// A statement that takes a few hundred milliseconds, so concurrent runs overlap.
fn slow_statement(backend: Backend, table: &str) -> String {
    match backend {
        Backend::Postgres => "SELECT pg_sleep(0.3);".into(),
        Backend::Mysql => "SELECT SLEEP(0.3);".into(),
        Backend::Sqlite => format!(
            "CREATE TABLE {table} AS WITH RECURSIVE c(x) AS \
             (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT count(*) AS n FROM c;"
        ),
    }
}

fn spawn_up(project: &TestProject, db: &TestDb) -> Child {
    let mut cmd = wasmig_cmd(&project.dir);
    // SAFETY: only async-signal-safe calls between fork and exec. A shell that started the
    // tests in the background may have set SIGINT to be ignored, which a child inherits;
    // the signal tests need the default action.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.args(["up", "--database-url", &db.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sqlite_path(db: &TestDb) -> String {
    db.url.strip_prefix("sqlite:").unwrap().to_owned()
}

/// `text` with the seconds left of `--lock-timeout` when a run starts to wait for a
/// straggler redacted: they depend on how long the run took to get there.
fn straggler_wait(text: String) -> String {
    let Some(at) = text.find("waiting up to ") else {
        return text;
    };
    let from = at + "waiting up to ".len();
    let digits = text[from..].bytes().take_while(u8::is_ascii_digit).count();
    format!("{}[N]{}", &text[..from], &text[from + digits..])
}

/// Advisory locks with wasmig's key held in this test's database.
async fn pg_lock_count(db: &TestDb) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND objid = ({PG_LOCK_KEY}::bigint & 4294967295)::oid"
    ))
    .await
}

/// Whether wasmig's named lock on this test's MySQL database is free.
async fn mysql_lock_free(db: &TestDb) -> bool {
    db.strings("SELECT IS_FREE_LOCK(CONCAT('wasmig:', DATABASE()))")
        .await
        == ["1"]
}

#[tokio::test]
async fn eight_concurrent_ups_apply_each_revision_exactly_once_on_both_backends() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision(
            "a1",
            "CREATE TABLE t (x integer PRIMARY KEY);",
            "DROP TABLE t;",
        );
        project.sql_revision(
            "b2",
            &format!(
                "{} INSERT INTO t VALUES (2);",
                slow_statement(backend, "slow_b2")
            ),
            "DELETE FROM t WHERE x = 2;",
        );
        project.sql_revision(
            "c3",
            &format!(
                "{} INSERT INTO t VALUES (3);",
                slow_statement(backend, "slow_c3")
            ),
            "DELETE FROM t WHERE x = 3;",
        );

        let children: Vec<Child> = (0..8).map(|_| spawn_up(&project, &db)).collect();
        let runs: Vec<Run> = children
            .into_iter()
            .map(|c| Run::from_output(c.wait_with_output().unwrap()))
            .collect();
        for run in &runs {
            assert!(
                run.code == 0 || run.code == 11,
                "{backend:?}: a concurrent run failed: {run:?}"
            );
        }
        assert!(runs.iter().any(|r| r.code == 0), "{backend:?}: {runs:?}");
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "upgrade:c3"],
            "{backend:?}: every revision applied exactly once"
        );
        assert_eq!(db.heads().await, ["c3"]);
        assert_eq!(db.count("SELECT count(*) FROM t").await, 2, "{backend:?}");
        // The runs that came second found nothing to do. Which run applied what, and which
        // timed out, depends on timing: no snapshot of these runs, a count of them.
        let idle = runs
            .iter()
            .filter(|r| r.stderr.contains("nothing to do"))
            .count();
        assert!(idle >= 1, "{backend:?}: {runs:?}");
        if backend == Backend::Postgres {
            assert_eq!(pg_lock_count(&db).await, 0, "the lock is released");
        }
        if backend == Backend::Mysql {
            assert!(mysql_lock_free(&db).await, "the lock is released");
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_held_postgres_lock_times_out_with_exit_11_naming_its_holder() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");

    let options = sqlx::postgres::PgConnectOptions::from_str(&db.url)
        .unwrap()
        .application_name("e2e-lock-holder");
    let mut holder = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PG_LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();

    let started = Instant::now();
    let run = project
        .run(&db, &["up", "--lock-timeout", "1"])
        .fails_with(11);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up long after the timeout"
    );
    let holder_pid = format!("pid {pid}");
    assert_run!(
        "postgres_lock_held",
        shown_with(
            &run,
            &project,
            Some(&db),
            &[(holder_pid.as_str(), "pid [HOLDER_PID]")]
        )
    );
    assert_eq!(
        run.stderr.matches("waiting up to").count(),
        1,
        "logs the holder once: {run:?}"
    );
    assert!(!db.table_exists("wasmig_version").await, "nothing changed");
    assert!(!db.table_exists("t").await);

    // The other writing commands wait too; `--plan` writes nothing and does not.
    project
        .run(&db, &["stamp", "head", "--lock-timeout", "1"])
        .fails_with(11);
    project
        .run(&db, &["down", "base", "--lock-timeout", "1"])
        .fails_with(11);
    let plan = project
        .run(&db, &["up", "--plan", "--lock-timeout", "1"])
        .success();
    assert_run!("plan_under_a_held_lock", shown(&plan, &project, Some(&db)));
    assert!(db.history().await.is_empty());

    holder.close().await.unwrap();
    project.run(&db, &["up", "--lock-timeout", "10"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

/// Starts `wasmig ARGS --database-url URL` (with `env`) in the background, its standard
/// error kept, for [`crate::support::returned_by_itself`].
fn spawn_bounded(project: &TestProject, db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> Child {
    wasmig_cmd(&project.dir)
        .envs(env.iter().copied())
        .args(args)
        .args(["--database-url", &db.url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Another session holding a lock on one of wasmig's tables in an open transaction (`LOCK
/// wasmig_history IN ACCESS EXCLUSIVE MODE`, an operator's `ALTER TABLE` waiting on
/// something else) made every command that reads them wait for as long as it held it:
/// the tamper check's catalog query waited on the lock, and `--lock-timeout` did not apply.
/// Now wasmig's own statements give up after `--lock-timeout`, exit 11, naming the session
/// and its lock; nothing ran. Once the session lets go, the run goes on.
#[tokio::test]
async fn a_lock_held_on_wasmigs_tables_is_waited_for_only_up_to_the_lock_timeout() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    project.sql_revision("b2", "CREATE TABLE u (x integer);", "DROP TABLE u;");

    let options = sqlx::postgres::PgConnectOptions::from_str(&db.url)
        .unwrap()
        .application_name("e2e-table-locker");
    let mut holder = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK wasmig_history IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    for args in [
        &["up", "--lock-timeout", "1"][..],
        &["up", "--plan", "--lock-timeout", "1"],
        &["down", "base", "--lock-timeout", "1"],
        &["history", "--log", "--lock-timeout", "1"],
    ] {
        let started = Instant::now();
        let child = spawn_bounded(&project, &db, &[], args);
        let (code, stderr, _) = crate::support::returned_by_itself(child, started).await;
        assert_eq!(code, 11, "{args:?}: {stderr}");
        assert!(
            stderr.contains("another session holds a lock on wasmig's tables")
                && stderr.contains("application_name 'e2e-table-locker'")
                && stderr.contains("AccessExclusiveLock on wasmig_history")
                && stderr.contains("gave up after 1 s (--lock-timeout)"),
            "{args:?}: {stderr}"
        );
        // The server's words once, without the line of its C source it gave them at.
        assert_eq!(
            stderr
                .matches("canceling statement due to lock timeout")
                .count(),
            1,
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(" at line "), "{args:?}: {stderr}");
    }
    assert_eq!(db.heads().await, ["a1"], "nothing ran");
    assert!(!db.table_exists("u").await);

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();

    // Locks that let wasmig read its tables but not write them: the step's record gave up
    // after the same wait (it waited as long as they were held), the step rolled back. A
    // row lock is named by the lock its session holds on the table.
    for (lock, named) in [
        (
            "LOCK wasmig_version IN SHARE MODE",
            "holding ShareLock on wasmig_version",
        ),
        (
            "SELECT * FROM wasmig_version FOR UPDATE",
            "holding RowShareLock on wasmig_version",
        ),
    ] {
        sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; {lock}")))
            .execute(&mut holder)
            .await
            .unwrap();
        let started = Instant::now();
        let child = spawn_bounded(&project, &db, &[], &["up", "--lock-timeout", "1"]);
        let (code, stderr, _) = crate::support::returned_by_itself(child, started).await;
        assert_eq!(code, 11, "{lock}: {stderr}");
        assert!(
            stderr.contains("another session holds a lock on wasmig's tables")
                && stderr.contains(named),
            "{lock}: {stderr}"
        );
        assert_eq!(db.heads().await, ["a1"], "{lock}: rolled back");
        assert!(!db.table_exists("u").await, "{lock}");
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .unwrap();
    }

    // An ALTER TABLE queued behind a reader: wasmig's statements queue behind it, and the
    // error names both.
    let mut reader = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let reader_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM wasmig_version")
        .execute(&mut reader)
        .await
        .unwrap();
    let url = db.url.clone();
    let alter = tokio::spawn(async move {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let _ = sqlx::raw_sql("ALTER TABLE wasmig_version ADD COLUMN z int")
            .execute(&mut c)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let child = spawn_bounded(&project, &db, &[], &["current", "--lock-timeout", "1"]);
    let (code, stderr, _) = crate::support::returned_by_itself(child, started).await;
    assert_eq!(code, 11, "{stderr}");
    assert!(
        stderr.contains("waiting for AccessExclusiveLock on wasmig_version")
            && stderr.contains(&format!("behind pid {reader_pid}")),
        "{stderr}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut reader)
        .await
        .unwrap();
    alter.await.unwrap();
    reader.close().await.unwrap();

    project.run(&db, &["up", "--lock-timeout", "1"]).success();
    assert_eq!(db.heads().await, ["b2"]);

    // The lease's own table: taking the lease waits on it the same way, and is named.
    let lease = [("WASMIG_LOCK", "lease")];
    let made = spawn_bounded(&project, &db, &lease, &["stamp", "b2"]);
    let (code, stderr, _) = crate::support::returned_by_itself(made, Instant::now()).await;
    assert_eq!(code, 0, "{stderr}");
    sqlx::raw_sql("BEGIN; LOCK wasmig_lock IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let started = Instant::now();
    let child = spawn_bounded(
        &project,
        &db,
        &lease,
        &["down", "a1", "--lock-timeout", "1"],
    );
    let (code, stderr, _) = crate::support::returned_by_itself(child, started).await;
    assert_eq!(code, 11, "{stderr}");
    assert!(
        stderr.contains("holding AccessExclusiveLock on wasmig_lock"),
        "{stderr}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(db.heads().await, ["b2"]);
    holder.close().await.unwrap();
    db.drop_db().await;
}

/// The bound on wasmig's own lock waits is not the migration's: a foreign key the
/// migration deferred to `COMMIT` waits for a row lock another session holds as long as it
/// is held (as before the bound), though that is longer than `--lock-timeout`.
#[tokio::test]
async fn a_deferred_check_at_commit_waits_as_the_migration_would() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p VALUES (1);
         CREATE TABLE c (pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED);",
        "DROP TABLE c; DROP TABLE p;",
    );
    project.run(&db, &["up"]).success();
    project.sql_revision("b2", "INSERT INTO c VALUES (1);", "DELETE FROM c;");
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT * FROM p WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let started = Instant::now();
    let child = spawn_bounded(&project, &db, &[], &["up", "--lock-timeout", "1"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let (code, stderr, _) = crate::support::returned_by_itself(child, started).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(db.heads().await, ["b2"]);
    holder.close().await.unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn a_held_sqlite_lock_file_times_out_with_exit_11_naming_its_holder() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");

    let lock_path = format!("{}.wasmig-lock", sqlite_path(&db));
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
    // The pid is the one the test wrote into the lock file.
    assert_run!(
        "sqlite_lock_file_held",
        shown_with(
            &run,
            &project,
            Some(&db),
            &[("pid 4242", "pid [PLANTED_PID]")]
        )
    );
    assert!(!db.table_exists("wasmig_version").await, "nothing changed");
    project
        .run(&db, &["stamp", "head", "--lock-timeout", "1"])
        .fails_with(11);

    holder.unlock().unwrap();
    drop(holder);
    project.run(&db, &["up", "--lock-timeout", "10"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    // The lock file stays (removing it could split the lock), emptied of its holder.
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), "");
    db.drop_db().await;
}

#[tokio::test]
async fn a_failing_migration_releases_the_lock_on_both_backends() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
        project.sql_revision("b2", "INSERT INTO nope VALUES (1);", "SELECT 1;");

        project.run(&db, &["up"]).fails_with(6);
        if backend == Backend::Postgres {
            assert_eq!(pg_lock_count(&db).await, 0, "the lock is released");
        }
        if backend == Backend::Mysql {
            assert!(mysql_lock_free(&db).await, "the lock is released");
        }
        // A second run takes the lock at once and fails the same way.
        let again = project
            .run(&db, &["up", "--lock-timeout", "1"])
            .fails_with(6);
        assert!(!again.stderr.contains("waiting up to"), "{again:?}");
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        db.drop_db().await;
    }
}

/// A session that looks like one a killed wasmig left behind: `application_name` wasmig,
/// busy in a statement for `seconds`.
/// The task ends with the server's clock when the statement finished.
async fn straggler(db: &TestDb, seconds: f64) -> (i32, tokio::task::JoinHandle<Option<String>>) {
    let options = sqlx::postgres::PgConnectOptions::from_str(&db.url)
        .unwrap()
        .application_name("wasmig");
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT clock_timestamp()::text FROM pg_sleep({seconds})"
        )))
        .fetch_one(&mut conn)
        .await
        .ok()
    });
    // Until the server shows it busy.
    while db
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'active'"
        ))
        .await
        == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (pid, task)
}

#[tokio::test]
async fn a_run_waits_for_a_session_an_earlier_killed_run_left_at_work() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let (pid, task) = straggler(&db, 2.0).await;
    let run = project.run(&db, &["up", "--lock-timeout", "30"]).success();
    let straggler_pid = format!("pid {pid}");
    assert_run!(
        "waits_for_a_straggler",
        straggler_wait(shown_with(
            &run,
            &project,
            Some(&db),
            &[(straggler_pid.as_str(), "pid [STRAGGLER_PID]")]
        ))
    );
    // It started only once the straggler had finished.
    let finished = task
        .await
        .unwrap()
        .expect("the straggler's statement finished");
    assert_eq!(
        db.strings(&format!(
            "SELECT ((SELECT started_at FROM wasmig_history WHERE revision = 'a1') \
                     >= '{finished}'::timestamptz)::text"
        ))
        .await,
        ["true"],
        "{run:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);

    // One that outlasts --lock-timeout: nothing runs, exit 11 naming it.
    project.sql_revision("b2", "CREATE TABLE u (x int);", "DROP TABLE u;");
    let (pid, task) = straggler(&db, 30.0).await;
    let run = project
        .run(&db, &["up", "--lock-timeout", "1"])
        .fails_with(11);
    let straggler_pid = format!("pid {pid}");
    assert_run!(
        "straggler_outlasts_the_lock_timeout",
        straggler_wait(shown_with(
            &run,
            &project,
            Some(&db),
            &[(straggler_pid.as_str(), "pid [STRAGGLER_PID]")]
        ))
    );
    assert_eq!(db.heads().await, ["a1"]);
    task.abort();
    db.drop_db().await;
}

#[tokio::test]
async fn the_statement_of_a_killed_run_stops_on_the_server() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision("a1", "SELECT pg_sleep(60);", "SELECT 1;");
    let manifest = dir.join("migration.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("transaction = \"per-migration\"", "transaction = \"none\"");
    std::fs::write(&manifest, text).unwrap();
    let mut child = spawn_up(&project, &db);
    let busy = "SELECT count(*) FROM pg_stat_activity \
                WHERE datname = current_database() AND query = 'SELECT pg_sleep(60)' \
                AND state = 'active'";
    let start = Instant::now();
    while db.count(busy).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The server ends the orphaned statement soon after (it checks its client every
    // second), not when the 60 s statement would have finished.
    let killed = Instant::now();
    while db.count(busy).await > 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the killed run's statement is still running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What it left: the revision marked, nothing recorded as applied.
    let status = project.run(&db, &["current"]).success();
    assert_run!(
        "current_after_a_killed_run",
        shown(&status, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn a_panic_while_holding_the_lock_exits_1_and_releases_it() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let out = wasmig_cmd(&project.dir)
            .args(["up", "--database-url", &db.url])
            .env("WASMIG_TEST_PANIC_WHILE_LOCKED", "1")
            .output()
            .unwrap();
        let run = Run::from_output(out).fails_with(1);
        assert_run!(
            "panic_while_locked",
            backend,
            shown_error(&run, &project, Some(&db))
        );
        // The lock went with the panic: the next run does not wait for it.
        project.run(&db, &["up", "--lock-timeout", "0"]).success();
        assert_eq!(db.heads().await, ["a1"]);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_reader_that_closes_the_pipe_early_does_not_fail_the_run() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let mut child = wasmig_cmd(&project.dir)
        .args(["up", "--json", "--database-url", &db.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads the result: the pipe is closed before wasmig writes it.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let run = Run::from_output(out).success();
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_run_stopped_by_sigterm_or_sigint_leaves_no_lock_and_no_half_step() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        // Slow until the table `fast` exists, which the test creates for the second run.
        project.sql_revision(
            "a1",
            "CREATE TABLE t (x int); \
             SELECT pg_sleep(CASE WHEN to_regclass('fast') IS NULL THEN 20 ELSE 0 END);",
            "DROP TABLE t;",
        );
        let mut child = spawn_up(&project, &db);
        let busy = "SELECT count(*) FROM pg_stat_activity \
                    WHERE datname = current_database() AND query LIKE '%pg_sleep(CASE%' \
                    AND state = 'active' AND pid <> pg_backend_pid()";
        let start = Instant::now();
        while db.count(busy).await == 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = child.wait().unwrap();
        assert!(!status.success(), "{status:?}");
        db.exec("CREATE TABLE fast (x int)").await;
        // The next run takes the lock (it waits, if need be, for the stopped run's
        // statement to end on the server) and applies the step whole.
        project.run(&db, &["up", "--lock-timeout", "30"]).success();
        assert_eq!(db.heads().await, ["a1"]);
        assert_eq!(db.history().await, ["upgrade:a1"]);
        assert_eq!(pg_lock_count(&db).await, 0);
        db.drop_db().await;
    }
}

//! The lease lock and runs through a pooler in transaction mode: PgBouncer from Debian's
//! packages, started by each test in front of the local PostgreSQL, with eight concurrent
//! runners applying each revision exactly once; a runner paused past its lease is taken
//! over and records nothing when it resumes; a lease held elsewhere times out with exit 11
//! naming its owner; a direct connection keeps the advisory lock; a guest computing past
//! its lease keeps it renewed, and so does a build.
//!
//! Not here: the advisory lock (`lock.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Backend, Run, TestDb, TestProject, free_port, wasmig_cmd};

/// A PgBouncer in transaction pooling mode in front of the test server, stopped on drop.
pub(crate) struct Bouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Bouncer {
    /// Starts one on a free port, with four server connections per database (fewer than
    /// the runners, so they share server sessions), and waits until it listens.
    pub(crate) fn start() -> Bouncer {
        let port = free_port();
        let dir = std::env::temp_dir()
            .join("wasmig-e2e")
            .join(format!("pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        // PgBouncer refuses to run as root; it switches to `postgres` (-u), which must read
        // these files.
        let world_readable = |path: &Path| {
            use std::os::unix::fs::PermissionsExt;
            let mode = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let users = dir.join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        let config = dir.join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host=127.0.0.1 port=5432\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 max_client_conn = 500\ndefault_pool_size = 4\n",
                users.display()
            ),
        )
        .unwrap();
        for path in [&dir, &users, &config] {
            world_readable(path);
        }
        let mut cmd = Command::new("pgbouncer");
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("PgBouncer must be installed for the lease tests (apt-get install pgbouncer; see README)");
        let bouncer = Bouncer { child, port, dir };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "PgBouncer did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// The URL of `db` through this PgBouncer.
    pub(crate) fn url(&self, db: &TestDb) -> String {
        let name = db.url.rsplit('/').next().unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `wasmig up` on `url`, started now, with its output piped.
pub(crate) fn spawn(
    project: &TestProject,
    url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = wasmig_cmd(&project.dir);
    cmd.arg("up")
        .args(extra)
        .args(["--database-url", url])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

pub(crate) fn wait(child: Child) -> Run {
    Run::from_output(child.wait_with_output().unwrap())
}

#[tokio::test]
async fn eight_concurrent_ups_through_pgbouncer_apply_each_revision_exactly_once() {
    let bouncer = Bouncer::start();
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let url = bouncer.url(&db);
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x integer PRIMARY KEY, by_pid integer);",
        "DROP TABLE t;",
    );
    // A component binding parameters (prepared statements, in the step's transaction).
    project.wasm_revision("b2", Path::new(crate::test_guest::VALUES));
    project.sql_revision(
        "c3",
        "SELECT pg_sleep(0.3); INSERT INTO t VALUES (3, pg_backend_pid());",
        "DELETE FROM t WHERE x = 3;",
    );
    let d4 = project.sql_revision(
        "d4",
        "CREATE INDEX CONCURRENTLY t_by_pid ON t (by_pid);\nINSERT INTO t VALUES (4, pg_backend_pid());",
        "DROP INDEX CONCURRENTLY t_by_pid;\nDELETE FROM t WHERE x = 4;",
    );
    crate::support::no_transaction(&d4);

    let children: Vec<Child> = (0..8)
        .map(|_| spawn(&project, &url, &["--lock-timeout", "120"], &[]))
        .collect();
    let runs: Vec<Run> = children.into_iter().map(wait).collect();
    for run in &runs {
        assert_eq!(run.code, 0, "a concurrent run failed: {run:?}");
    }
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "upgrade:c3", "upgrade:d4"],
        "every revision applied exactly once"
    );
    assert_eq!(db.heads().await, ["d4"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM value_rt").await, 1);
    // Found on its own: each run took the lease once, one after the other.
    assert_eq!(
        db.count("SELECT token FROM wasmig_lock").await,
        8,
        "{runs:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wasmig_lock WHERE expires_at > now()")
            .await,
        0,
        "the lease is released"
    );
    let idle = runs
        .iter()
        .filter(|r| r.stderr.contains("nothing to do"))
        .count();
    assert_eq!(idle, 7, "{runs:?}");

    // The read-only commands work through it too, history's times included.
    let history = project.run_with_url(&url, &["history", "--json"]).success();
    assert_eq!(
        history.json()["revisions"].as_array().map(Vec::len),
        Some(4),
        "{history:?}"
    );
    project.run_with_url(&url, &["status"]).success();

    // And down, through the pooler, in the other direction.
    let down = wait(spawn_down(&project, &url));
    assert_eq!(down.code, 0, "{down:?}");
    assert!(!db.table_exists("t").await);
    assert_eq!(db.heads().await, Vec::<String>::new());
    drop(bouncer);
    db.drop_db().await;
}

fn spawn_down(project: &TestProject, url: &str) -> Child {
    let mut cmd = wasmig_cmd(&project.dir);
    cmd.args(["down", "base", "--database-url", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

#[tokio::test]
async fn a_direct_connection_keeps_the_advisory_lock() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    assert!(
        !db.table_exists("wasmig_lock").await,
        "auto found advisory locks working on a direct connection"
    );
    db.drop_db().await;
}

/// Sets `lock = "lease"` with a lease of `secs` seconds in the project's wasmig.toml.
fn use_the_lease(project: &TestProject, secs: &str) {
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // Before the file's first table, where top-level keys go.
    std::fs::write(
        &config,
        format!("lock = \"lease\"\nlock_lease_secs = {secs}\n{text}"),
    )
    .unwrap();
}

/// Sends `signal` to a child process.
fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[tokio::test]
async fn a_runner_paused_past_its_lease_is_taken_over_and_records_nothing_after() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    use_the_lease(&project, "1");
    db.exec("CREATE TABLE ran (revision text, pid integer)")
        .await;
    project.sql_revision(
        "a1",
        "INSERT INTO ran VALUES ('a1', pg_backend_pid()); SELECT pg_sleep(2.5);",
        "DELETE FROM ran WHERE revision = 'a1';",
    );

    // The first runner takes the lease and starts a1; it is paused (SIGSTOP) while the
    // server sleeps, so it renews nothing.
    let first = spawn(&project, &db.url, &[], &[]);
    assert!(
        db.backend_running("pg_sleep(2.5)").await > 0,
        "a1 never started"
    );
    signal(&first, libc::SIGSTOP);

    // A second runner waits for the lease to expire, takes it over, and applies a1 itself.
    let started = Instant::now();
    let second = wait(spawn(&project, &db.url, &["--lock-timeout", "60"], &[]));
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the takeover waited past the lease by far"
    );
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert_eq!(db.count("SELECT token FROM wasmig_lock").await, 2);

    // Resumed, the first runner finds its lease gone: its step records nothing and rolls
    // back (exit 11), and a1 stays applied once, by the second.
    signal(&first, libc::SIGCONT);
    let first = wait(first);
    assert_eq!(first.code, 11, "{first:?}");
    assert!(
        first.stderr.contains("lock was lost"),
        "names the lost lock: {first:?}"
    );
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(
        db.count("SELECT count(*) FROM ran").await,
        1,
        "the paused runner's insert was rolled back"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_lease_held_elsewhere_times_out_with_exit_11_naming_its_owner() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
    // Taken by a run on another machine that has not let it go.
    db.exec(
        "CREATE TABLE wasmig_lock (id int PRIMARY KEY CHECK (id = 1), token bigint NOT NULL, \
         owner text NOT NULL, acquired_at timestamptz NOT NULL, renewed_at timestamptz NOT NULL, \
         expires_at timestamptz NOT NULL); \
         INSERT INTO wasmig_lock VALUES (1, 41, 'wasmig 0.1.0 on build-7, pid 4242', now(), now(), \
         now() + interval '1 hour')",
    )
    .await;
    let run = up_with_lock(&project, &db, "lease", &["--lock-timeout", "1"]).fails_with(11);
    assert!(
        run.stderr
            .contains("wasmig 0.1.0 on build-7, pid 4242 (lease 41"),
        "names the owner: {run:?}"
    );
    assert!(!db.table_exists("t").await, "nothing ran");
    assert!(!db.table_exists("wasmig_version").await);

    // Once it expires (here: released by hand), the next run takes it: token 42.
    db.exec("UPDATE wasmig_lock SET expires_at = '-infinity'")
        .await;
    up_with_lock(&project, &db, "lease", &[]).success();
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT token FROM wasmig_lock").await, 42);

    // A setting that is not a kind of lock is refused before anything runs.
    let bad = up_with_lock(&project, &db, "leased", &[]).fails_with(3);
    assert!(bad.stderr.contains("WASMIG_LOCK=\"leased\""), "{bad:?}");
    db.drop_db().await;
}

/// `wasmig up EXTRA` on `db` with `WASMIG_LOCK=kind`.
fn up_with_lock(project: &TestProject, db: &TestDb, kind: &str, extra: &[&str]) -> Run {
    Run::from_output(
        wasmig_cmd(&project.dir)
            .arg("up")
            .args(extra)
            .args(["--database-url", &db.url])
            .env("WASMIG_LOCK", kind)
            .output()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_step_that_takes_the_lease_away_or_fakes_its_table_is_rolled_back() {
    let attacks = [
        // Another token, as a second run's takeover would write.
        "UPDATE wasmig_lock SET token = token + 100, expires_at = 'infinity';",
        // No row at all.
        "DELETE FROM wasmig_lock;",
        // A view in the table's place, answering whatever token is asked for.
        "ALTER TABLE wasmig_lock RENAME TO wasmig_lock_real; \
         CREATE VIEW wasmig_lock AS SELECT id, token, owner, acquired_at, renewed_at, \
         'infinity'::timestamptz AS expires_at FROM wasmig_lock_real;",
        // A rule that keeps the fence's lock on the row from reaching it.
        "CREATE RULE keep AS ON UPDATE TO wasmig_lock DO INSTEAD NOTHING;",
    ];
    for attack in attacks {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.sql_revision(
            "b2",
            &format!("CREATE TABLE stolen (x int); {attack}"),
            "DROP TABLE stolen;",
        );
        let run = up_with_lock(&project, &db, "lease", &[]).fails_with(11);
        assert!(run.stderr.contains("lock was lost"), "{attack}: {run:?}");
        assert_eq!(db.heads().await, ["a1"], "{attack}");
        assert_eq!(db.history().await, ["upgrade:a1"], "{attack}");
        assert!(!db.table_exists("stolen").await, "{attack}: b2 was kept");
        // Rolled back with the step: the row is the run's, released.
        assert_eq!(
            db.strings("SELECT token::text || ' ' || (expires_at < now())::text FROM wasmig_lock")
                .await,
            ["1 true"],
            "{attack}"
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_none_script_that_releases_the_lease_stops_at_the_next_statement() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision(
        "a1",
        "UPDATE wasmig_lock SET expires_at = '-infinity';\nCREATE TABLE after_release (x int);",
        "DROP TABLE after_release;",
    );
    crate::support::no_transaction(&dir);
    let run = up_with_lock(&project, &db, "lease", &[]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("lease was lost"), "{run:?}");
    assert!(
        !db.table_exists("after_release").await,
        "the script went on after the lease was gone"
    );
    assert_eq!(db.failed_marks().await, ["a1"]);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn batches_dry_runs_and_atomic_runs_work_through_pgbouncer() {
    let bouncer = Bouncer::start();
    let (project, db, _) = crate::batches::setup(Backend::Postgres, "batched", 100, 10).await;
    let url = bouncer.url(&db);
    // A dry run: every batch runs, and nothing stays.
    project.run_with_url(&url, &["up", "--dry-run"]).success();
    assert_eq!(crate::batches::items_at(&db, 1).await, 0);
    assert!(db.heads().await.is_empty());
    // The batched revision, ten batches of ten, each its own transaction and checkpoint.
    project.run_with_url(&url, &["up"]).success();
    assert_eq!(crate::batches::items_at(&db, 1).await, 100);
    assert!(crate::batches::checkpoints(&db).await.is_empty());
    assert_eq!(db.heads().await, ["b1"]);
    // An --atomic run on top: two revisions in one transaction.
    project.sql_revision("c2", "CREATE TABLE c2 (x int);", "DROP TABLE c2;");
    project.sql_revision("d3", "INSERT INTO c2 VALUES (3);", "DELETE FROM c2;");
    project.run_with_url(&url, &["up", "--atomic"]).success();
    assert_eq!(db.heads().await, ["d3"]);
    assert_eq!(
        db.history().await,
        ["upgrade:b1", "upgrade:c2", "upgrade:d3"]
    );
    assert_eq!(db.count("SELECT token FROM wasmig_lock").await, 3);
    drop(bouncer);
    db.drop_db().await;
}

#[tokio::test]
async fn runs_under_the_lease_and_under_the_advisory_lock_exclude_each_other() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE t (x integer PRIMARY KEY);",
        "DROP TABLE t;",
    );
    project.sql_revision(
        "b2",
        "SELECT pg_sleep(0.3); INSERT INTO t VALUES (2);",
        "DELETE FROM t WHERE x = 2;",
    );
    project.sql_revision(
        "c3",
        "SELECT pg_sleep(0.3); INSERT INTO t VALUES (3);",
        "DELETE FROM t WHERE x = 3;",
    );
    // Four of each kind, started together, on one direct connection's server.
    let children: Vec<Child> = (0..8)
        .map(|i| {
            let kind = if i % 2 == 0 { "lease" } else { "advisory" };
            spawn(
                &project,
                &db.url,
                &["--lock-timeout", "120"],
                &[("WASMIG_LOCK", kind)],
            )
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(wait).collect();
    for run in &runs {
        assert_eq!(run.code, 0, "a concurrent run failed: {run:?}");
    }
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "upgrade:c3"],
        "every revision applied exactly once"
    );
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    db.drop_db().await;
}

/// A guest that computes for longer than the lease keeps it: wasmig runs on one thread, and
/// a guest hands it back at every epoch tick, so the renewal goes on beside the guest.
/// Starved of its thread, the renewal would find the lease expired and the step would
/// record nothing (exit 11).
#[tokio::test]
async fn a_guest_computing_past_its_lease_keeps_it_renewed() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // A lease of 1 s, renewed every third of it: a renewal late by a few hundred
    // milliseconds on a loaded machine still finds it held.
    use_the_lease(&project, "1");
    // Twenty billion turns of a loop: seconds of wasm, several times the lease.
    let spin = "(local $n i64) (local.set $n (i64.const 20000000000))
        (loop $l (local.set $n (i64.sub (local.get $n) (i64.const 1)))
          (br_if $l (i64.ne (local.get $n) (i64.const 0))))
        (i32.const 0)";
    let dir = project.wasm_revision_bytes("a1", &crate::components::component(spin));
    project.set_manifest(&dir, "timeout_secs = 600");

    let run = project.run(&db, &["up"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(db.history().await, ["upgrade:a1"]);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wasmig_lock
             WHERE renewed_at > acquired_at + interval '1 second'"
        )
        .await,
        1,
        "the lease was renewed past its first length"
    );
    db.drop_db().await;
}

/// A build that takes longer than the lease keeps it too: `up` builds its Rust revisions
/// under the lock, on a thread of its own while the renewal goes on.
#[tokio::test]
async fn a_build_taking_longer_than_the_lease_keeps_it_renewed() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    use_the_lease(&project, "0.5");
    project
        .run_plain(&[
            "revision", "-m", "rust", "--kind", "rust", "--rev-id", "r1", "--json",
        ])
        .success();

    // Cargo checks and builds the crate: many times the lease.
    let run = project.run(&db, &["up"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(db.history().await, ["upgrade:r1"]);
    db.drop_db().await;
}

//! Crash safety: `wasmig` killed with SIGKILL at many points of a run leaves the database
//! before or after each revision, never between; the version table matches the schema, and
//! the lock dies with the process.
//!
//! The first test's kill points are fixed, spread over the run (process start, planning,
//! mid-statement, between steps), so it is repeatable. The second kills at random points
//! (the seed is printed) of a run that mixes SQL steps and a component pausing inside its
//! guest, and checks the history and the stored artifacts as well as the schema. Each round
//! checks the state before the next.
//!
//! Both run on every backend. On MySQL, where the server commits DDL implicitly and wasmig
//! runs a script with DDL statement by statement, the revisions write rows into tables made
//! beforehand instead of creating tables: a script of data statements is one transaction
//! there, and it is that transaction, with the step's record, that a kill must leave whole
//! or absent. A third test kills runs of DDL scripts on MySQL, where what must hold is
//! weaker by design and said so: at most one revision part-way, and it marked failed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{ALL, Backend, TestDb, TestProject, wasmig_cmd};

const REVISIONS: [&str; 6] = ["r1", "r2", "r3", "r4", "r5", "r6"];

/// A statement that takes a while, so kills land inside transactions.
fn slow(backend: Backend, id: &str) -> String {
    match backend {
        Backend::Postgres => "SELECT pg_sleep(0.12);".into(),
        Backend::Mysql => "SELECT SLEEP(0.12);".into(),
        Backend::Sqlite => format!(
            "CREATE TABLE slow_{id} AS WITH RECURSIVE c(x) AS \
             (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) SELECT count(*) AS n FROM c;"
        ),
    }
}

/// Waits until no other session is connected to the test database (PostgreSQL notices a
/// killed client and ends its backend, rolling back its transaction and its lock; MariaDB
/// too, once a statement the session was running, a `SLEEP` say, has ended).
pub(crate) async fn settle(db: &TestDb) {
    let others = match db.backend {
        Backend::Sqlite => return,
        Backend::Postgres => {
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()"
        }
        Backend::Mysql => {
            "SELECT count(*) FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
        }
    };
    let start = Instant::now();
    while db.count(others).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a killed run's session never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A revision's SQL on `backend`: on PostgreSQL and SQLite it creates its table `t_{id}`,
/// with `slow` before (`up`) and its one row after; on MySQL it writes that row into the
/// table [`make_tables`] made, first as 0, then `slow`, then sets it to 1, so a kill inside
/// the transaction would show as a row at 0. The row at 1 is the revision's work.
fn revision_sql(backend: Backend, id: &str, slow: &str) -> (String, String) {
    match backend {
        Backend::Mysql => (
            format!("INSERT INTO t_{id} VALUES (0); {slow} UPDATE t_{id} SET n = 1;"),
            format!("DELETE FROM t_{id};"),
        ),
        _ => {
            let mut down = format!("DROP TABLE t_{id};");
            if backend == Backend::Sqlite {
                down.push_str(&format!(" DROP TABLE slow_{id};"));
            }
            (
                format!("CREATE TABLE t_{id} (n int); {slow} INSERT INTO t_{id} VALUES (1);"),
                down,
            )
        }
    }
}

/// On MySQL, the revisions' tables, made outside wasmig (see [`revision_sql`]).
async fn make_tables(db: &TestDb, ids: &[&str]) {
    if db.backend == Backend::Mysql {
        for id in ids {
            db.exec(&format!("CREATE TABLE t_{id} (n int)")).await;
        }
    }
}

/// Whether revision `id`'s work is in the database (its table, or on MySQL its row), and
/// then that it is whole: one row, at 1.
async fn work_present(db: &TestDb, id: &str, round: &str) -> bool {
    let present = match db.backend {
        Backend::Mysql => db.count(&format!("SELECT count(*) FROM t_{id}")).await > 0,
        _ => db.table_exists(&format!("t_{id}")).await,
    };
    if present {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM t_{id}")).await,
            1,
            "{round}: t_{id}"
        );
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM t_{id} WHERE n = 1"))
                .await,
            1,
            "{round}: t_{id} holds a half-done revision"
        );
    }
    present
}

/// The revisions whose work is there, and those the version table says are applied: equal.
async fn assert_consistent(db: &TestDb, round: usize) -> usize {
    let heads = db.heads().await;
    assert!(heads.len() <= 1, "round {round}: heads {heads:?}");
    let applied = heads
        .first()
        .map_or(0, |h| REVISIONS.iter().position(|r| r == h).unwrap() + 1);
    for (i, id) in REVISIONS.iter().enumerate() {
        let present = work_present(db, id, &format!("round {round}")).await;
        assert_eq!(
            present,
            i < applied,
            "round {round}: table t_{id} vs version table at {heads:?} ({:?})",
            db.backend
        );
        if db.backend == Backend::Sqlite {
            assert_eq!(db.table_exists(&format!("slow_{id}")).await, i < applied);
        }
    }
    assert!(db.failed_marks().await.is_empty(), "round {round}");
    applied
}

#[tokio::test]
async fn sigkill_at_any_point_leaves_each_revision_applied_or_not() {
    // Milliseconds after spawning; a mix of early, mid-step and late kills.
    let kills = [
        5, 60, 150, 230, 310, 420, 90, 500, 700, 260, 130, 380, 950, 20, 600, 340,
    ];
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        make_tables(&db, &REVISIONS).await;
        for id in REVISIONS {
            let (up, down) = revision_sql(backend, id, &slow(backend, id));
            project.sql_revision(id, &up, &down);
        }
        // The file exists from the start: a run killed before opening it leaves none, and
        // the checks below read it.
        db.exec("SELECT 1").await;
        let mut seen_partial = false;
        // The fixed kill points, then (only while none landed part-way, as on a loaded
        // machine where every step can be slower or faster than planned) more, spread over
        // the first 1.5 s.
        let extra = (1..=25u64).map(|k| k * 60);
        for (round, ms) in kills.iter().copied().chain(extra).enumerate() {
            if round >= kills.len() && seen_partial {
                break;
            }
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
            tokio::time::sleep(Duration::from_millis(ms)).await;
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

/// The revisions of the mixed run: SQL steps around a component step whose guest works in
/// ten batches (in one transaction) and pauses in each, so kills land inside the guest.
const MIXED: [&str; 4] = ["m1", "g2", "m3", "m4"];

/// A small xorshift generator: random kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Checks every table wasmig keeps against the schema: the applied revisions are a prefix of
/// [`MIXED`]; each one's work is there and nothing else's; the artifact table holds exactly
/// the applied revisions; the history nets one upgrade per applied revision; no checkpoint or
/// failed mark is left. Returns how many are applied.
async fn assert_mixed_consistent(db: &TestDb, round: &str) -> usize {
    let heads = db.heads().await;
    assert!(heads.len() <= 1, "{round}: heads {heads:?}");
    let applied = heads
        .first()
        .map_or(0, |h| MIXED.iter().position(|r| r == h).unwrap() + 1);
    for (i, id) in MIXED.iter().enumerate() {
        let present = if *id == "g2" {
            let done = db.count("SELECT count(*) FROM items WHERE n = 1").await;
            let untouched = db.count("SELECT count(*) FROM items WHERE n = 0").await;
            assert!(
                (done, untouched) == (100, 0) || (done, untouched) == (0, 100),
                "{round}: the guest's step is half there: {done} rows done, {untouched} not"
            );
            assert_eq!(
                crate::batches::first_batch_ran(db).await,
                done == 100,
                "{round}"
            );
            done == 100
        } else {
            work_present(db, id, round).await
        };
        assert_eq!(present, i < applied, "{round}: {id} vs heads {heads:?}");
    }
    if db.table_exists("wasmig_artifact").await {
        let stored = db
            .strings("SELECT revision FROM wasmig_artifact ORDER BY revision")
            .await;
        let mut expected: Vec<String> = MIXED[..applied].iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(stored, expected, "{round}: wasmig_artifact");
    }
    // A run killed before it made wasmig's tables leaves none (and nothing applied).
    let history = db.table_exists("wasmig_history").await;
    assert!(
        history || applied == 0,
        "{round}: heads {heads:?} without a history"
    );
    for (i, id) in MIXED.iter().enumerate().filter(|_| history) {
        let net = db
            .count(&match db.backend {
                // No FILTER clause there.
                Backend::Mysql => format!(
                    "SELECT count(CASE WHEN direction = 'upgrade' THEN 1 END) - \
                            count(CASE WHEN direction = 'downgrade' THEN 1 END) \
                     FROM wasmig_history WHERE revision = '{id}'"
                ),
                _ => format!(
                    "SELECT count(*) FILTER (WHERE direction = 'upgrade') - \
                            count(*) FILTER (WHERE direction = 'downgrade') \
                     FROM wasmig_history WHERE revision = '{id}'"
                ),
            })
            .await;
        assert_eq!(net, i64::from(i < applied), "{round}: history of {id}");
    }
    assert!(db.failed_marks().await.is_empty(), "{round}");
    applied
}

#[tokio::test]
async fn sigkill_at_random_points_keeps_schema_history_and_stored_artifacts_in_step() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill points seeded with {seed}");
    for backend in ALL {
        let mut rng = Rng(seed);
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        db.exec(&format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
             INSERT INTO items (id) SELECT * FROM ({}) AS s;
             CREATE TABLE e2e_batches (size bigint, pause_ms bigint, fail_from bigint, repeats bigint,
                                       stall_from bigint);
             INSERT INTO e2e_batches VALUES (10, 40, NULL, 0, NULL);",
            match backend {
                Backend::Postgres => "SELECT generate_series(1, 100)".to_owned(),
                Backend::Sqlite | Backend::Mysql => "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100) SELECT i FROM c".to_owned(),
            }
        ))
        .await;
        if backend == Backend::Mysql {
            // Where the guest marks its first batch on MySQL (`batches::first_batch_ran`).
            db.exec("CREATE TABLE batches_first (x integer)").await;
        }
        make_tables(&db, &["m1", "m3", "m4"]).await;
        for id in MIXED {
            if id == "g2" {
                project.wasm_revision(id, Path::new(crate::test_guest::BATCHES));
                continue;
            }
            let (up, down) = revision_sql(backend, id, &slow(backend, id));
            project.sql_revision(id, &up, &down);
        }
        let mut seen_partial = false;
        let log = project.dir.join("killed-run.log");
        // At least 12 rounds, and more (up to 40) until a kill has landed part-way through
        // a run: on a loaded machine the random kill points can all miss the steps.
        for round in 0..40 {
            if round >= 12 && seen_partial {
                break;
            }
            let target: &[&str] = if round % 4 == 3 {
                &["down", "base"]
            } else {
                &["up"]
            };
            let ms = rng.next(1_500);
            let mut child = wasmig_cmd(&project.dir)
                .args(target)
                .args(["--database-url", &db.url, "--lock-timeout", "30"])
                .stdout(Stdio::null())
                // A log file, not a pipe: a full pipe would stop the run where it writes.
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = child.kill();
            let status = child.wait().unwrap();
            settle(&db).await;
            let label = format!("{backend:?} round {round} (seed {seed}, kill after {ms} ms)");
            // Killed, or finished on its own before the kill: never a failure of its own.
            assert!(
                status.code().is_none_or(|c| c == 0),
                "{label}: {status:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let applied = assert_mixed_consistent(&db, &label).await;
            seen_partial |= applied > 0 && applied < MIXED.len();
        }
        assert!(
            seen_partial,
            "{backend:?} (seed {seed}): no kill landed part-way through a run"
        );
        project.run(&db, &["up", "--lock-timeout", "10"]).success();
        assert_eq!(
            assert_mixed_consistent(&db, &format!("{backend:?} final")).await,
            MIXED.len()
        );
        db.drop_db().await;
    }
}

/// MySQL with DDL in the scripts: the server commits each DDL statement on its own, so a
/// kill inside such a script cannot leave its revision whole or absent. What wasmig
/// promises there instead, checked after every kill: each revision is applied or absent
/// but at most one, the one the killed run was at, which is marked failed and whose
/// statements ran as a prefix of its script (never its second table without its first);
/// finished by hand and resolved, the next run goes on from there.
#[tokio::test]
async fn on_mysql_sigkill_inside_ddl_scripts_leaves_at_most_one_revision_marked_failed() {
    const FAILED_STATE: i32 = 13;
    let kills = [
        5, 60, 150, 230, 310, 420, 90, 500, 700, 260, 130, 380, 950, 20, 600, 340,
    ];
    let project = TestProject::new();
    let db = TestDb::new(Backend::Mysql, &project).await;
    for id in REVISIONS {
        project.sql_revision(
            id,
            &format!(
                "CREATE TABLE t_{id} (n int);\nSELECT SLEEP(0.12);\nCREATE TABLE u_{id} (n int);\n"
            ),
            &format!("DROP TABLE u_{id};\nSELECT SLEEP(0.12);\nDROP TABLE t_{id};\n"),
        );
    }
    let applied_now = |heads: &[String]| {
        heads
            .first()
            .map_or(0, |h| REVISIONS.iter().position(|r| r == h).unwrap() + 1)
    };
    let mut marks = 0;
    let mut seen_partial = false;
    let extra = (1..=25u64).map(|k| k * 60);
    for (round, ms) in kills.iter().copied().chain(extra).enumerate() {
        if round >= kills.len() && marks > 0 && seen_partial {
            break;
        }
        let downgrading = round % 4 == 3;
        let target: &[&str] = if downgrading {
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
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let _ = child.kill();
        let _ = child.wait();
        settle(&db).await;

        let heads = db.heads().await;
        assert!(heads.len() <= 1, "round {round}: heads {heads:?}");
        let applied = applied_now(&heads);
        let marked = db.failed_marks().await;
        assert!(marked.len() <= 1, "round {round}: {marked:?}");
        for (i, id) in REVISIONS.iter().enumerate() {
            let t = db.table_exists(&format!("t_{id}")).await;
            let u = db.table_exists(&format!("u_{id}")).await;
            if marked.first().is_some_and(|m| m == id) {
                // The revision the run was at: the next one up, or the head going down.
                let at = if downgrading {
                    applied.checked_sub(1)
                } else {
                    Some(applied)
                };
                assert_eq!(Some(i), at, "round {round}: {id} marked, heads {heads:?}");
                assert!(t || !u, "round {round}: {id} ran out of order");
            } else {
                assert_eq!(
                    (t, u),
                    (i < applied, i < applied),
                    "round {round}: {id} vs heads {heads:?}, marked {marked:?}"
                );
            }
        }
        if let Some(id) = marked.first() {
            marks += 1;
            // Nothing runs until it is resolved; finished (or undone) by hand, it is.
            project.run(&db, &["up"]).fails_with(FAILED_STATE);
            db.exec(&format!("DROP TABLE IF EXISTS u_{id}, t_{id}"))
                .await;
            project
                .run(&db, &["resolve", id, "--as", "rolled-back"])
                .success();
            let resolved = applied_now(&db.heads().await);
            assert_eq!(
                resolved,
                if downgrading { applied - 1 } else { applied },
                "round {round}: resolving {id}"
            );
            assert!(db.failed_marks().await.is_empty());
        }
        seen_partial |= applied > 0 && applied < REVISIONS.len();
    }
    eprintln!("{marks} kill(s) landed inside a script");
    assert!(marks > 0, "no kill landed inside a script");
    assert!(seen_partial, "no kill landed part-way through a run");
    project.run(&db, &["up", "--lock-timeout", "10"]).success();
    for id in REVISIONS {
        assert!(db.table_exists(&format!("u_{id}")).await, "{id}");
    }
    assert_eq!(db.heads().await, ["r6"]);
    db.drop_db().await;
}

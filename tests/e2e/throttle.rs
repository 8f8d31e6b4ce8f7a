//! The throttles wasmig holds a component to without its code taking part. The
//! replication-lag throttle, against a real streaming standby of the test server made with
//! `pg_basebackup` on another port, which replays each commit a second late
//! (`recovery_min_apply_delay`): a batched revision with `max_replication_lag_secs` below
//! that waits between batches for the standby, and the standby ends with every row. The row
//! and batch rates, read off the server's clock at each write.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Backend, TestDb, free_port};

/// A streaming standby of the test server, stopped and removed on drop.
struct Standby {
    dir: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    /// The physical replication slot that keeps the server's WAL for it (the test suite
    /// writes enough WAL to recycle what a slotless standby still needs).
    slot: String,
}

/// Drops the server's replication slots `wasmig_e2e_*` that no standby uses (left by a
/// test that was killed), so they do not keep WAL forever.
fn drop_idle_slots() {
    on_server(
        "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots \
         WHERE slot_name LIKE 'wasmig\\_e2e\\_%' AND NOT active",
    );
}

/// Runs `sql` with psql on the test server's `postgres` database.
fn on_server(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            sql,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `program` with `args`, as the `postgres` user when running as root (PostgreSQL refuses
/// to run as root, and its data directory must be its own).
fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).output().unwrap()
}

/// The directory of PostgreSQL's server programs (Debian: /usr/lib/postgresql/N/bin).
fn server_bin() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs must be installed (/usr/lib/postgresql)");
    let mut bins: Vec<PathBuf> = versions
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    bins.sort();
    bins.pop().expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

impl Standby {
    fn start(apply_delay: &str) -> Standby {
        let port = free_port();
        let dir = std::env::temp_dir()
            .join("wasmig-e2e")
            .join(format!("standby-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let uid = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .unwrap();
            let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
            std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
        }
        let bin = server_bin();
        let data = dir.join("data");
        drop_idle_slots();
        let slot = format!("wasmig_e2e_{port}");
        // The slot made (and its WAL reserved) before the backup starts: `pg_basebackup -C`
        // makes it only once the backup is under way, and on a server writing WAL fast (the
        // rest of the suite) the segment the backup began in can be recycled before then
        // ("requested WAL segment ... has already been removed", seen in CI).
        on_server(&format!(
            "SELECT pg_create_physical_replication_slot('{slot}', true)"
        ));
        let backup = as_postgres(
            &bin.join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-X",
                "stream",
                "-R",
                "-S",
                &slot,
                "-c",
                "fast",
            ],
        );
        assert!(
            backup.status.success(),
            "pg_basebackup failed (the server must allow replication connections from 127.0.0.1; .ci/run adds that line to pg_hba.conf): {}",
            String::from_utf8_lossy(&backup.stderr)
        );
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             hot_standby = on\nrecovery_min_apply_delay = '{apply_delay}'\n",
            dir.display()
        );
        // Written by the data directory's owner, beside the settings the backup wrote.
        let write = |name: &str, text: &str| {
            let out = as_postgres(
                Path::new("sh"),
                &[
                    "-c",
                    &format!("cat > '{}/{name}' <<'EOF'\n{text}EOF\n", data.display()),
                ],
            );
            assert!(out.status.success(), "{out:?}");
        };
        write("postgresql.conf", &conf);
        write(
            "pg_hba.conf",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        );
        let pg_ctl = bin.join("pg_ctl");
        let log = dir.join("log");
        let started = as_postgres(
            &pg_ctl,
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            started.status.success(),
            "the standby did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Standby {
            dir,
            port,
            pg_ctl,
            slot,
        }
    }

    /// Waits (up to a minute) until the standby streams from the server, so the server
    /// lists it in `pg_stat_replication`.
    async fn streaming(&self) {
        let here = TestDb::existing(
            Backend::Postgres,
            &format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while here
            .strings("SELECT coalesce(max(status), 'none') FROM pg_stat_wal_receiver")
            .await
            != ["streaming"]
        {
            assert!(
                Instant::now() < deadline,
                "the standby never streamed: {}",
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The standby's copy of `db`.
    fn url(&self, db: &TestDb) -> String {
        let name = db.url.rsplit('/').next().unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            &self.pg_ctl,
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc"])
            .arg(format!(
                "SELECT pg_drop_replication_slot('{}') FROM pg_replication_slots WHERE slot_name = '{}'",
                self.slot, self.slot
            ))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_batched_revision_waits_for_a_lagging_standby_between_its_batches() {
    // Thirty batches: more than the ceiling's worth of them.
    let (project, db, _) = crate::batches::setup(Backend::Postgres, "batched", 300, 10).await;
    let standby = Standby::start("1s");
    standby.streaming().await;
    let config = project.dir.join("wasmig.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[throttle]\nmax_replication_lag_secs = 0.1\n");
    std::fs::write(&config, text).unwrap();

    let run = project.run(&db, &["up"]).success();
    assert!(
        run.stderr
            .contains("b1: waiting for the standbys to replay this step's batches"),
        "never waited for the standby: {run:?}"
    );
    assert_eq!(crate::batches::items_at(&db, 1).await, 300);
    assert_eq!(db.heads().await, ["b1"]);

    // The standby catches up with all of it.
    let on_standby = TestDb::existing(Backend::Postgres, &standby.url(&db));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = on_standby.table_exists("items").await
            && crate::batches::items_at(&on_standby, 1).await == 300;
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(standby);
    db.drop_db().await;
}

#[tokio::test]
async fn without_a_ceiling_or_a_standby_nothing_waits() {
    // A ceiling, and no standby of this server's: nothing to wait for.
    let (project, db, _) = crate::batches::setup(Backend::Postgres, "batched", 30, 10).await;
    let config = project.dir.join("wasmig.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[throttle]\nmax_replication_lag_secs = 0.2\n");
    std::fs::write(&config, text).unwrap();
    // Another test's standby may exist meanwhile (the replication-lag test's lives for many
    // seconds): then this run may wait for it too, which is right; without one it does not.
    // Counted before and after the run, since that test may drop its standby in between.
    let standbys_before = db.count("SELECT count(*) FROM pg_stat_replication").await;
    let run = project.run(&db, &["up"]).success();
    assert_eq!(crate::batches::items_at(&db, 1).await, 30);
    let standbys = standbys_before + db.count("SELECT count(*) FROM pg_stat_replication").await;
    if standbys == 0 {
        assert!(!run.stderr.contains("waiting for the standbys"), "{run:?}");
    }
    // An out-of-range ceiling is refused before anything runs.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "max_replication_lag_secs = 0.2",
        "max_replication_lag_secs = -1",
    );
    std::fs::write(&config, text).unwrap();
    let run = project.run(&db, &["up"]).fails_with(3);
    assert!(
        run.stderr.contains("max_replication_lag_secs = -1"),
        "{run:?}"
    );
    db.drop_db().await;
}

/// The batches guest's project on `items`, whose rows record when they were written (a
/// trigger sets `touched_at` to the server's clock), with `[throttle]` set to `settings`.
async fn timed_items(transaction: &str, settings: &str) -> (crate::support::TestProject, TestDb) {
    let (project, db, _) = crate::batches::setup(Backend::Postgres, transaction, 300, 50).await;
    db.exec(
        "ALTER TABLE items ADD COLUMN touched_at timestamptz;
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.touched_at := clock_timestamp(); RETURN NEW; END $$;
         CREATE TRIGGER touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();",
    )
    .await;
    let config = project.dir.join("wasmig.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[throttle]\n{settings}\n"));
    std::fs::write(&config, text).unwrap();
    (project, db)
}

/// Seconds from the first batch's write to the first write of each batch of 50 rows (the
/// guest writes each batch with one call).
async fn batch_starts(db: &TestDb) -> Vec<f64> {
    db.strings(
        "SELECT extract(epoch FROM min(touched_at) - (SELECT min(touched_at) FROM items))::text
         FROM items GROUP BY (id - 1) / 50 ORDER BY (id - 1) / 50",
    )
    .await
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

// The rate is a floor on when each write may start, kept by construction: these bounds are
// what the throttle promises, not a measure of speed. The slack covers the first write
// starting later than the step's first SQL call, which starts the throttle's clock.
const SLACK_SECS: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rows_per_sec_spaces_a_components_writes_across_its_batches() {
    for transaction in ["batched", "per-migration"] {
        let (project, db) = timed_items(transaction, "max_rows_per_sec = 200").await;
        let run = project.run(&db, &["up"]).success();
        assert_eq!(crate::batches::items_at(&db, 1).await, 300);
        let starts = batch_starts(&db).await;
        assert_eq!(starts.len(), 6, "{starts:?}");
        for (k, at) in starts.iter().enumerate() {
            // 50 rows per batch at 200 rows/s: batch k may not start before 0.25 k s.
            let floor = 50.0 * k as f64 / 200.0 - SLACK_SECS;
            assert!(
                *at >= floor,
                "{transaction}: batch {k} wrote at {at} s, before {floor} s: {starts:?}"
            );
        }
        assert!(
            run.stderr.contains("b1: throttled: waited") && run.stderr.contains("300 row(s)"),
            "{transaction}: {run:?}"
        );
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batches_per_sec_spaces_the_batches_and_bad_rates_are_refused() {
    let (project, db) = timed_items("batched", "max_batches_per_sec = 4").await;
    project.run(&db, &["up"]).success();
    let starts = batch_starts(&db).await;
    assert_eq!(starts.len(), 6);
    for (k, at) in starts.iter().enumerate() {
        let floor = k as f64 / 4.0 - SLACK_SECS;
        assert!(
            *at >= floor,
            "batch {k} at {at} s, before {floor} s: {starts:?}"
        );
    }
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_batches_per_sec = 4", "max_rows_per_sec = 0");
    std::fs::write(&config, text).unwrap();
    let run = project.run(&db, &["down", "base"]).fails_with(3);
    assert!(
        run.stderr.contains("throttle.max_rows_per_sec = 0"),
        "{run:?}"
    );
    db.drop_db().await;
}

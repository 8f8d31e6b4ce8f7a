//! Test support: temporary projects, a fresh database per test (PostgreSQL or a SQLite
//! file), running the real `wasmig` binary, and the guest components built from source.
//!
//! Nothing here fakes the database: PostgreSQL is the real server (`WASMIG_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`), so is MariaDB or MySQL (`WASMIG_TEST_MYSQL`,
//! default `mysql://root@127.0.0.1:3306`), and every test gets its own database, dropped at
//! the end. Guest components are built once per test process from `tests/guests/`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, Row};

/// The backends behaviours are tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
    /// MariaDB here (MySQL's protocol and dialect); the suites that make sense there.
    Mysql,
}

/// The two backends every behaviour is tested on.
pub(crate) const BOTH: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

/// Every backend: the suites whose behaviour holds on MySQL too.
pub(crate) const ALL: [Backend; 3] = [Backend::Postgres, Backend::Sqlite, Backend::Mysql];

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

fn mysql_server() -> String {
    std::env::var("WASMIG_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

async fn mysql_admin() -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect(&mysql_server())
        .await
        .expect("MariaDB (or MySQL) must be running for the end-to-end tests (see README)")
}

fn pg_server() -> String {
    std::env::var("WASMIG_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh database, dropped when the test ends.
pub(crate) struct TestDb {
    pub backend: Backend,
    pub url: String,
    name: String,
    sqlite_path: Option<PathBuf>,
}

impl TestDb {
    pub(crate) async fn new(backend: Backend, project: &TestProject) -> TestDb {
        match backend {
            Backend::Postgres => {
                let name = unique("wasmig_e2e");
                let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
                    .await
                    .expect("PostgreSQL must be running for the end-to-end tests (see README)");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                TestDb {
                    backend,
                    url: format!("{}/{name}", pg_server()),
                    name,
                    sqlite_path: None,
                }
            }
            Backend::Mysql => {
                let name = unique("wasmig_e2e");
                mysql_admin()
                    .await
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                TestDb {
                    backend,
                    url: format!("{}/{name}", mysql_server()),
                    name,
                    sqlite_path: None,
                }
            }
            Backend::Sqlite => {
                let path = project.dir.join("test.db");
                TestDb {
                    backend,
                    url: format!("sqlite:{}", path.display()),
                    name: String::new(),
                    sqlite_path: Some(path),
                }
            }
        }
    }

    /// A database that exists already, by URL (a scratch database `wasmig test --keep`
    /// kept): [`TestDb::drop_db`] drops it on PostgreSQL (a SQLite file stays).
    pub(crate) fn existing(backend: Backend, url: &str) -> TestDb {
        TestDb {
            backend,
            url: url.to_owned(),
            name: match backend {
                Backend::Postgres | Backend::Mysql => url.rsplit('/').next().unwrap().to_owned(),
                Backend::Sqlite => String::new(),
            },
            sqlite_path: url.strip_prefix("sqlite:").map(PathBuf::from),
        }
    }

    /// The PostgreSQL server's maintenance database, to look at the server's catalogs
    /// (`pg_database`, roles); [`TestDb::drop_db`] leaves it alone.
    pub(crate) fn server() -> TestDb {
        TestDb {
            backend: Backend::Postgres,
            url: format!("{}/postgres", pg_server()),
            name: String::new(),
            sqlite_path: None,
        }
    }

    /// Runs SQL statements outside wasmig (setup).
    pub(crate) async fn exec(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Backend::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.sqlite_path.as_ref().unwrap())
                    .create_if_missing(true);
                let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// The first column of every row, rendered as text (NULL as "NULL").
    pub(crate) async fn strings(&self, sql: &str) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut c).await.unwrap();
                rows.iter().map(pg_text).collect()
            }
            Backend::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::raw_sql(sql).fetch_all(&mut c).await.unwrap();
                rows.iter().map(mysql_text).collect()
            }
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.sqlite_path.as_ref().unwrap());
                let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut c).await.unwrap();
                rows.iter()
                    .map(|r| {
                        r.try_get::<Option<String>, _>(0)
                            .map(|v| v.unwrap_or_else(|| "NULL".into()))
                            .or_else(|_| r.try_get::<i64, _>(0).map(|v| v.to_string()))
                            .unwrap()
                    })
                    .collect()
            }
        }
    }

    /// A single integer.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        self.strings(sql).await[0].parse().unwrap()
    }

    /// The pid of a backend running a statement containing `needle` now, or 0.
    pub(crate) async fn backend_running_now(&self, needle: &str) -> i64 {
        let name = self.url.rsplit('/').next().unwrap().to_owned();
        self.count(&format!(
            "SELECT coalesce(max(pid), 0) FROM pg_stat_activity \
             WHERE datname = '{name}' AND query LIKE '%{needle}%' \
             AND query NOT LIKE '%pg_stat_activity%'"
        ))
        .await
    }

    /// Waits (up to a minute) until a statement containing `needle` runs on this database;
    /// returns its backend's pid (0 if none showed up; PostgreSQL only).
    pub(crate) async fn backend_running(&self, needle: &str) -> i64 {
        for _ in 0..600 {
            let pid = self.backend_running_now(needle).await;
            if pid > 0 {
                return pid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        0
    }

    /// Waits (up to a minute) until a statement containing `needle` runs on this database,
    /// then terminates its backend, as an administrator or a failover would. Returns how
    /// many backends were terminated (PostgreSQL only).
    pub(crate) async fn terminate_backend_running(&self, needle: &str) -> i64 {
        let name = self.url.rsplit('/').next().unwrap().to_owned();
        for _ in 0..600 {
            let terminated = self
                .count(&format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND query LIKE '%{needle}%' \
                     AND query NOT LIKE '%pg_stat_activity%'"
                ))
                .await;
            if terminated > 0 {
                return terminated;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        0
    }

    /// Whether a table exists.
    pub(crate) async fn table_exists(&self, table: &str) -> bool {
        let sql = match self.backend {
            Backend::Postgres => {
                format!("SELECT count(*)::text FROM pg_tables WHERE tablename = '{table}'")
            }
            Backend::Sqlite => format!(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ),
            Backend::Mysql => format!(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = '{table}'"
            ),
        };
        self.count(&sql).await > 0
    }

    /// The heads in the version table (empty if it does not exist).
    pub(crate) async fn heads(&self) -> Vec<String> {
        if !self.table_exists("wasmig_version").await {
            return Vec::new();
        }
        self.strings("SELECT revision FROM wasmig_version ORDER BY revision")
            .await
    }

    /// `direction:revision` of every history row, oldest first.
    pub(crate) async fn history(&self) -> Vec<String> {
        if !self.table_exists("wasmig_history").await {
            return Vec::new();
        }
        let sql = match self.backend {
            Backend::Mysql => {
                "SELECT CONCAT(direction, ':', revision) FROM wasmig_history ORDER BY id"
            }
            _ => "SELECT direction || ':' || revision FROM wasmig_history ORDER BY id",
        };
        self.strings(sql).await
    }

    /// The revisions marked failed (`wasmig_failed`).
    pub(crate) async fn failed_marks(&self) -> Vec<String> {
        if !self.table_exists("wasmig_failed").await {
            return Vec::new();
        }
        self.strings("SELECT revision FROM wasmig_failed ORDER BY revision")
            .await
    }

    pub(crate) async fn drop_db(self) {
        if self.backend == Backend::Mysql && !self.name.is_empty() {
            let _ = mysql_admin()
                .await
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {}",
                    self.name
                )))
                .await;
        }
        if self.backend == Backend::Postgres && !self.name.is_empty() {
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
                .await
                .unwrap();
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )))
                .await;
        }
    }
}

/// A MySQL cell as text, read through the text protocol (`raw_sql`), where every value
/// arrives as its text.
fn mysql_text(row: &sqlx::mysql::MySqlRow) -> String {
    use sqlx::ValueRef as _;
    let raw = row.try_get_raw(0).unwrap();
    if raw.is_null() {
        return "NULL".into();
    }
    if let Ok(v) = row.try_get_unchecked::<String, _>(0) {
        return v;
    }
    if let Ok(v) = row.try_get_unchecked::<i64, _>(0) {
        return v.to_string();
    }
    panic!("cast the column to text in the test query")
}

fn pg_text(row: &sqlx::postgres::PgRow) -> String {
    if let Ok(v) = row.try_get::<Option<String>, _>(0) {
        return v.unwrap_or_else(|| "NULL".into());
    }
    if let Ok(v) = row.try_get::<i64, _>(0) {
        return v.to_string();
    }
    if let Ok(v) = row.try_get::<i32, _>(0) {
        return v.to_string();
    }
    if let Ok(v) = row.try_get::<bool, _>(0) {
        return v.to_string();
    }
    panic!("cast the column to text in the test query")
}

/// A temporary project created with `wasmig init`.
pub(crate) struct TestProject {
    pub dir: PathBuf,
}

/// The output of one `wasmig` run.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub(crate) fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub(crate) fn success(self) -> Run {
        assert_eq!(
            self.code, 0,
            "wasmig failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn fails_with(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit code {code}:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Switches a revision (as `wasmig revision` wrote it) to `transaction = "none"`.
pub(crate) fn no_transaction(revision_dir: &Path) {
    let path = revision_dir.join("migration.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("transaction = \"per-migration\""), "{text}");
    std::fs::write(
        &path,
        text.replace("transaction = \"per-migration\"", "transaction = \"none\""),
    )
    .unwrap();
}

/// A `wasmig` command with a clean environment.
pub(crate) fn wasmig_cmd(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmig"));
    cmd.current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("LOG_LEVEL")
        .env_remove("WASMIG_CACHE_DIR")
        // A nested cargo must not wait on the lock of the test build's target directory.
        .env("CARGO_TARGET_DIR", guests_target_dir().join("projects"));
    cmd
}

impl TestProject {
    pub(crate) fn new() -> TestProject {
        let dir = std::env::temp_dir()
            .join("wasmig-e2e")
            .join(unique("project"));
        std::fs::create_dir_all(&dir).unwrap();
        let run = Run::from_output(wasmig_cmd(&dir).args(["init", "."]).output().unwrap());
        assert_eq!(run.code, 0, "wasmig init failed: {run:?}");
        TestProject { dir }
    }

    /// Runs `wasmig ARGS --database-url URL`.
    pub(crate) fn run(&self, db: &TestDb, args: &[&str]) -> Run {
        let out = wasmig_cmd(&self.dir)
            .args(args)
            .args(["--database-url", &db.url])
            .output()
            .unwrap();
        Run::from_output(out)
    }

    /// Runs `wasmig ARGS --database-url URL` on a URL of its own (through a pooler, say).
    pub(crate) fn run_with_url(&self, url: &str, args: &[&str]) -> Run {
        let out = wasmig_cmd(&self.dir)
            .args(args)
            .args(["--database-url", url])
            .output()
            .unwrap();
        Run::from_output(out)
    }

    /// Runs `wasmig ARGS` with no database flag.
    pub(crate) fn run_plain(&self, args: &[&str]) -> Run {
        Run::from_output(wasmig_cmd(&self.dir).args(args).output().unwrap())
    }

    /// Adds a SQL revision with the given scripts.
    pub(crate) fn sql_revision(&self, id: &str, up: &str, down: &str) -> PathBuf {
        let run = self
            .run_plain(&[
                "revision",
                "-m",
                &format!("sql {id}"),
                "--rev-id",
                id,
                "--json",
            ])
            .success();
        let dir = PathBuf::from(run.json()["directory"].as_str().unwrap());
        std::fs::write(dir.join("up.sql"), up).unwrap();
        std::fs::write(dir.join("down.sql"), down).unwrap();
        dir
    }

    /// Adds a `wasm` revision from a component file.
    pub(crate) fn wasm_revision(&self, id: &str, component: &Path) -> PathBuf {
        let run = self
            .run_plain(&[
                "revision",
                "-m",
                &format!("wasm {id}"),
                "--kind",
                "wasm",
                "--rev-id",
                id,
                "--component",
                component.to_str().unwrap(),
                "--json",
            ])
            .success();
        PathBuf::from(run.json()["directory"].as_str().unwrap())
    }

    /// Adds a `wasm` revision from component bytes (e.g. a WAT test component).
    pub(crate) fn wasm_revision_bytes(&self, id: &str, bytes: &[u8]) -> PathBuf {
        let file = self.dir.join(format!("{id}.input.wasm"));
        std::fs::write(&file, bytes).unwrap();
        self.wasm_revision(id, &file)
    }

    /// Appends settings to a revision's manifest (e.g. `timeout_secs = 1`).
    pub(crate) fn set_manifest(&self, revision_dir: &Path, extra: &str) {
        let path = revision_dir.join("migration.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push('\n');
        text.push_str(extra);
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

pub(crate) fn guests_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    base.join("e2e-guests")
}

/// Waits up to two minutes for a `wasmig` run started at `started` to return by itself;
/// past that it is killed and the test fails. Returns its exit code, its standard error and
/// how long it took.
pub(crate) async fn returned_by_itself(
    mut child: Child,
    started: std::time::Instant,
) -> (i32, String, std::time::Duration) {
    let mut exited = None;
    while started.elapsed() < std::time::Duration::from_secs(120) {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = exited.unwrap_or_else(|| panic!("wasmig did not return by itself: {stderr}"));
    (status.code().unwrap_or(-1), stderr, elapsed)
}

/// `wasmig up` on `db` while another session holds a serializable transaction open for the
/// whole run (committed after it), bounded at 120 s (not a measure of speed: a run that
/// waits for a safe snapshot waits until that transaction ends, which is after the run).
/// Panics with `waited` when the bound is hit.
pub(crate) async fn up_beside_an_open_serializable_transaction(
    project: &TestProject,
    db: &TestDb,
    waited: &str,
) -> Run {
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1")
        .execute(&mut other)
        .await
        .unwrap();
    let mut up = tokio::process::Command::from(wasmig_cmd(&project.dir));
    up.args(["up", "--database-url", &db.url])
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), up.output())
        .await
        .expect(waited)
        .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    Run::from_output(out)
}

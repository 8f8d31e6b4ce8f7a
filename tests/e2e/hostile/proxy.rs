//! The network between wasmig and PostgreSQL stops answering, or breaks, in the middle of
//! a step: a TCP proxy of the test's own stands between them, and is frozen (it keeps every
//! connection open and forwards nothing, new connections included: a stalled network or
//! pooler) or killed (every connection closed at once). With `timeout_secs = 3`, wasmig
//! must return by itself within the deadline and its documented grace, record nothing
//! false, leave the lock free once the server sees the connections gone, and a rerun must
//! apply the revision exactly once.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::snap::assert_run;
use crate::support::{Backend, TestDb, TestProject, returned_by_itself, wasmig_cmd};

/// A TCP proxy to the test server, in this process.
struct Proxy {
    addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
    /// The accept loop and every connection's pumps: aborted, they close their sockets.
    tasks: Arc<std::sync::Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(server: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let tasks = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let server = server.to_owned();
        let (f, t) = (frozen.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (server, f) = (server.clone(), f.clone());
                t.lock().unwrap().spawn(async move {
                    // A frozen proxy accepts and then says nothing.
                    while f.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let Ok(upstream) = TcpStream::connect(&server).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (ur, uw) = upstream.into_split();
                    // Either way ending ends both; the task aborted (killed) drops both,
                    // which closes the sockets.
                    tokio::select! {
                        () = pump(cr, uw, f.clone()) => {}
                        () = pump(ur, cw, f) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            frozen,
            tasks,
        }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Closes every connection and stops accepting.
    fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies bytes one way until either side closes; while frozen, holds them.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Sleeps 20 s while the table `freeze_me` exists, else not at all.
const SLEEPY: &str = "INSERT INTO t VALUES (1);
SELECT pg_sleep(CASE WHEN to_regclass('freeze_me') IS NULL THEN 0 ELSE 20 END);";

#[derive(Debug, Clone, Copy)]
enum Fault {
    Freeze,
    Kill,
}

/// Runs `wasmig up` through a proxy, breaks the proxy once the step's sleep is running,
/// and returns the exit code, stderr and how long wasmig took, with the proxy (frozen)
/// still alive.
async fn up_through(
    project: &TestProject,
    db: &TestDb,
    fault: Fault,
) -> (i32, String, Duration, Proxy) {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(url, db.url, "the test database is on 127.0.0.1:5432");
    let started = Instant::now();
    let child = wasmig_cmd(&project.dir)
        .args(["up", "--database-url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        db.backend_running("pg_sleep(CASE").await > 0,
        "the step started"
    );
    match fault {
        Fault::Freeze => proxy.freeze(),
        Fault::Kill => proxy.kill(),
    }
    let (code, stderr, elapsed) = returned_by_itself(child, started).await;
    (code, stderr, elapsed, proxy)
}

/// After the fault: the proxy gone (the server sees every connection closed), the lock
/// comes free, nothing of b2 stayed, and a rerun applies it exactly once.
async fn rerun_applies_b2_once(project: &TestProject, db: &TestDb, proxy: Proxy) {
    drop(proxy);
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mut others = -1;
    for _ in 0..200 {
        others = db
            .count(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' \
                 AND pid <> pg_backend_pid()"
            ))
            .await;
        if others == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(others, 0, "the server ended the proxied sessions");
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
    db.exec("DROP TABLE freeze_me").await;
    project.run(db, &["up", "--lock-timeout", "5"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1);
}

/// a1 applied, and b2 pending: it sleeps while `freeze_me` exists, with `timeout_secs = 3`.
async fn a1_applied_and_b2_sleepy() -> (TestProject, TestDb) {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE freeze_me ()").await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    let b2 = project.sql_revision("b2", SLEEPY, "DELETE FROM t;");
    project.set_manifest(&b2, "timeout_secs = 3");
    (project, db)
}

/// From the `error:` line on.
fn error_lines(stderr: &str) -> String {
    let at = stderr
        .find("error:")
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    stderr[at..].to_owned()
}

#[tokio::test]
async fn a_frozen_network_does_not_hold_the_run_past_its_deadline() {
    let (project, db) = a1_applied_and_b2_sleepy().await;
    let (code, stderr, elapsed, proxy) = up_through(&project, &db, Fault::Freeze).await;
    eprintln!("measure: frozen proxy, timeout_secs = 3: wasmig returned after {elapsed:?}");
    assert_eq!(code, 7, "{stderr}");
    // Warnings name the waits that ran out, which depends on where the freeze landed: the
    // error line is what the run reports.
    assert_run!("frozen_proxy", error_lines(&stderr));
    rerun_applies_b2_once(&project, &db, proxy).await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_network_that_breaks_mid_step_records_nothing_and_frees_the_lock() {
    let (project, db) = a1_applied_and_b2_sleepy().await;
    let (code, stderr, elapsed, proxy) = up_through(&project, &db, Fault::Kill).await;
    eprintln!("measure: killed proxy, timeout_secs = 3: wasmig returned after {elapsed:?}");
    // The database failed during the step (exit 5), not the migration.
    assert_eq!(code, 5, "{stderr}");
    assert_run!("killed_proxy", error_lines(&stderr));
    rerun_applies_b2_once(&project, &db, proxy).await;
    db.drop_db().await;
}

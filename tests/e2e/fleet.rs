//! Fleet mode (`wasmig up --targets FILE`, `--fleet`, `wasmig current --targets`): a
//! thousand PostgreSQL databases, a thousand schemas of one database and a thousand SQLite
//! files migrated in one run, each component compiled once for all of them; a failed canary
//! stopping the run or passed over; a run killed half-way resumed from its ledger without
//! touching the targets it finished; the lists from a command and from a catalog query.

use std::path::{Path, PathBuf};

use crate::components::{SUCCEED, component};
use crate::support::{Backend, Run, TestDb, TestProject, wasmig_cmd};

/// How many targets of each kind the large tests make (the thousand), unless
/// `WASMIG_FLEET_SIZE` says otherwise.
fn fleet_size() -> usize {
    std::env::var("WASMIG_FLEET_SIZE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

fn pg_server() -> String {
    std::env::var("WASMIG_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs a SQL script with psql on the server's `postgres` database, one statement per
/// line (each its own transaction: `CREATE DATABASE` refuses a transaction block).
fn psql(script: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("psql")
        .args([
            &format!("{}/postgres", pg_server()),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "psql failed on {script:.200}"
    );
}

/// PostgreSQL databases made for one test, dropped when it ends (also on a panic).
struct Databases {
    names: Vec<String>,
}

impl Databases {
    fn new(prefix: &str, n: usize) -> Databases {
        let tag = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let names: Vec<String> = (0..n).map(|i| format!("{tag}_{i}")).collect();
        let script: String = names
            .iter()
            .map(|n| format!("CREATE DATABASE {n};\n"))
            .collect();
        psql(&script);
        Databases { names }
    }

    fn url(&self, i: usize) -> String {
        format!("{}/{}", pg_server(), self.names[i])
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let script: String = self
            .names
            .iter()
            .map(|n| format!("DROP DATABASE IF EXISTS {n} WITH (FORCE);\n"))
            .collect();
        psql(&script);
    }
}

/// A project of three revisions: a table (SQL), a component, a row (SQL).
fn project() -> TestProject {
    let project = TestProject::new();
    project.sql_revision(
        "a1",
        "CREATE TABLE items (id int PRIMARY KEY, note text);",
        "DROP TABLE items;",
    );
    project.wasm_revision_bytes("b2", &component(SUCCEED));
    project.sql_revision(
        "c3",
        "INSERT INTO items VALUES (1, 'fleet');",
        "DELETE FROM items WHERE id = 1;",
    );
    project
}

/// Writes a targets file in the project.
fn targets_file(project: &TestProject, text: &str) -> PathBuf {
    let path = project.dir.join("targets.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `wasmig ARGS` in the project (no database URL: the targets say where).
fn wasmig(project: &TestProject, args: &[&str]) -> Run {
    Run::from_output(wasmig_cmd(&project.dir).args(args).output().unwrap())
}

/// The JSON report's targets in a given state.
fn in_state(report: &serde_json::Value, state: &str) -> Vec<String> {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == state)
        .map(|t| t["target"].as_str().unwrap().to_owned())
        .collect()
}

/// One target's heads and history, read as an outsider would.
async fn state_of(url: &str) -> (Vec<String>, Vec<String>) {
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let db = TestDb::existing(backend, url);
    (db.heads().await, db.history().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_postgres_databases_are_migrated_with_each_component_compiled_once() {
    let n = fleet_size();
    let project = project();
    let dbs = Databases::new("wasmig_fleet_db", n);
    let list: String = (0..n).map(|i| format!("{}\n", dbs.url(i))).collect();
    let file = targets_file(&project, &list);
    // --no-cache: the first target compiles the component; the others reuse it.
    let run = wasmig(
        &project,
        &[
            "up",
            "--targets",
            file.to_str().unwrap(),
            "--jobs",
            "16",
            "--no-cache",
            "--json",
            "-v",
        ],
    )
    .success();
    let report = run.json();
    assert_eq!(in_state(&report, "done").len(), n, "{:.2000}", run.stdout);
    assert_eq!(report["counts"]["total"], n);
    assert_eq!(
        run.stderr
            .matches("component compiled (cache disabled)")
            .count(),
        1,
        "compiled once for the fleet: {:.3000}",
        run.stderr
    );
    assert_eq!(
        run.stderr
            .matches("component compiled earlier in this fleet run")
            .count(),
        n - 1
    );
    for i in [0, n / 2, n - 1] {
        let (heads, history) = state_of(&dbs.url(i)).await;
        assert_eq!(heads, ["c3"], "target {i}");
        assert_eq!(history, ["upgrade:a1", "upgrade:b2", "upgrade:c3"]);
    }
    // Finished clean: no ledger is left, and a second run visits every target and finds
    // nothing to do there.
    assert!(!project.dir.join(".wasmig/fleet-ledger.jsonl").exists());
    let again = wasmig(
        &project,
        &[
            "up",
            "--targets",
            file.to_str().unwrap(),
            "--jobs",
            "16",
            "--json",
        ],
    )
    .success();
    let report = again.json();
    assert_eq!(in_state(&report, "done").len(), n);
    assert!(
        report["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["steps"].as_array().unwrap().is_empty()),
        "nothing to do the second time"
    );
    // Fleet status: every target up to date.
    let status = wasmig(
        &project,
        &[
            "current",
            "--targets",
            file.to_str().unwrap(),
            "--jobs",
            "16",
            "--json",
        ],
    )
    .success()
    .json();
    let targets = status["targets"].as_array().unwrap();
    assert_eq!(targets.len(), n);
    assert!(
        targets
            .iter()
            .all(|t| t["current"] == serde_json::json!(["c3"]) && t["pending"] == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_schemas_of_one_database_each_get_their_own_tables() {
    let n = fleet_size();
    let project = project();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // An `items` in public, which no tenant's unqualified name may reach.
    db.exec("CREATE TABLE public.items (id int PRIMARY KEY, note text)")
        .await;
    let script: String = (0..n)
        .map(|i| format!("CREATE SCHEMA tenant_{i};"))
        .collect();
    db.exec(&script).await;
    let list: String = (0..n)
        .map(|i| format!("{} schema=tenant_{i}\n", db.url))
        .collect();
    let file = targets_file(&project, &list);
    let report = wasmig(
        &project,
        &[
            "up",
            "--targets",
            file.to_str().unwrap(),
            "--jobs",
            "8",
            "--json",
        ],
    )
    .success()
    .json();
    assert_eq!(in_state(&report, "done").len(), n);
    // Each tenant's table and wasmig's own tables are in its schema.
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.tables WHERE table_schema LIKE 'tenant\\_%' AND table_name = 'items'")
            .await,
        n as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.tables WHERE table_schema LIKE 'tenant\\_%' AND table_name = 'wasmig_version'")
            .await,
        n as i64
    );
    assert_eq!(
        db.strings(&format!(
            "SELECT revision FROM tenant_{}.wasmig_version",
            n - 1
        ))
        .await,
        ["c3"]
    );
    assert_eq!(db.count("SELECT count(*) FROM public.items").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'wasmig%'")
            .await,
        0,
        "public is untouched"
    );
    // A schema that does not exist is that target's failure, named.
    let file = targets_file(&project, &format!("{} schema=no_such_tenant\n", db.url));
    let run = wasmig(&project, &["up", "--targets", file.to_str().unwrap()]).fails_with(17);
    assert!(
        run.stdout
            .contains("exit 3: the schema target no_such_tenant")
            && run.stdout.contains("CREATE SCHEMA no_such_tenant"),
        "{run:?}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sqlite_files_listed_relative_to_the_targets_file() {
    let n = fleet_size();
    let project = project();
    let dir = project.dir.join("tenants");
    std::fs::create_dir_all(&dir).unwrap();
    let list: String = (0..n).map(|i| format!("t{i}.db\n")).collect();
    let file = dir.join("targets.txt");
    std::fs::write(&file, list).unwrap();
    // Run from elsewhere: the files are beside the targets file, not in the shell's
    // directory or the project's.
    let elsewhere = std::env::temp_dir();
    let run = Run::from_output(
        wasmig_cmd(&elsewhere)
            .args(["-C", project.dir.to_str().unwrap()])
            .args([
                "up",
                "--targets",
                file.to_str().unwrap(),
                "--jobs",
                "8",
                "--json",
            ])
            .output()
            .unwrap(),
    )
    .success();
    assert_eq!(in_state(&run.json(), "done").len(), n);
    for i in [0, n - 1] {
        let url = format!("sqlite:{}", dir.join(format!("t{i}.db")).display());
        assert_eq!(state_of(&url).await.0, ["c3"]);
    }
    assert!(!project.dir.join("t0.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_stops_the_fleet_and_continue_passes_it_over() {
    let project = project();
    let dbs = Databases::new("wasmig_fleet_canary", 4);
    // The second canary already has an `items` table: its first revision fails there.
    TestDb::existing(Backend::Postgres, &dbs.url(1))
        .exec("CREATE TABLE items (x int)")
        .await;
    let list = format!(
        "[canary]\n{} name=c0\n{} name=c1\n[rest]\n{} name=r2\n{} name=r3\n",
        dbs.url(0),
        dbs.url(1),
        dbs.url(2),
        dbs.url(3)
    );
    let file = targets_file(&project, &list);
    let target = file.to_str().unwrap();
    // stop (the default): the failed canary is reported with its own exit code, the rest
    // group never starts.
    let run = wasmig(
        &project,
        &["up", "--targets", target, "--jobs", "1", "--json"],
    )
    .fails_with(16);
    let report = run.json();
    assert_eq!(in_state(&report, "done"), ["c0"]);
    assert_eq!(in_state(&report, "failed"), ["c1"]);
    assert_eq!(in_state(&report, "not-run"), ["r2", "r3"]);
    assert_eq!(report["stopped_by"], "c1");
    let failed = &report["targets"][1];
    assert_eq!(failed["exit_code"], 6, "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("a1"),
        "names the revision: {failed}"
    );
    assert!(state_of(&dbs.url(2)).await.0.is_empty(), "r2 untouched");
    assert_eq!(
        state_of(&dbs.url(1)).await.1,
        Vec::<String>::new(),
        "rolled back"
    );
    // The table of a text run names the failure.
    let text = wasmig(&project, &["up", "--targets", target]).fails_with(16);
    assert!(
        text.stdout.contains("c1") && text.stdout.contains("FAILED"),
        "{text:?}"
    );
    assert!(text.stdout.contains("skipped"), "c0 done earlier: {text:?}");
    // continue: the failure is reported and the others run; the ledger skips c0.
    let run = wasmig(
        &project,
        &[
            "up",
            "--targets",
            target,
            "--on-error",
            "continue",
            "--json",
        ],
    )
    .fails_with(16);
    let report = run.json();
    assert_eq!(in_state(&report, "skipped"), ["c0"]);
    assert_eq!(in_state(&report, "failed"), ["c1"]);
    assert_eq!(in_state(&report, "done"), ["r2", "r3"]);
    assert_eq!(state_of(&dbs.url(3)).await.0, ["c3"]);
    // Every target failing: 17.
    let only_bad = targets_file(&project, &format!("{} name=c1\n", dbs.url(1)));
    wasmig(&project, &["up", "--targets", only_bad.to_str().unwrap()]).fails_with(17);
    // Fleet status names the failure-free but pending target, and the unreadable one.
    let status_file = targets_file(
        &project,
        &format!(
            "{} name=c1\n{} name=r3\npostgres://postgres@127.0.0.1:1/nowhere name=gone\n",
            dbs.url(1),
            dbs.url(3)
        ),
    );
    let status = wasmig(
        &project,
        &[
            "current",
            "--targets",
            status_file.to_str().unwrap(),
            "--json",
        ],
    )
    .fails_with(16)
    .json();
    let t = status["targets"].as_array().unwrap();
    assert_eq!(t[0]["pending"], 3);
    assert_eq!(t[1]["current"], serde_json::json!(["c3"]));
    assert_eq!(t[2]["exit_code"], 5, "{}", t[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_killed_half_way_resumes_without_touching_the_targets_it_finished() {
    let n = 40;
    let project = project();
    // Slow enough to kill in the middle: a quarter of a second per target.
    project.sql_revision("d4", "SELECT pg_sleep(0.25);", "SELECT 1;");
    let dbs = Databases::new("wasmig_fleet_kill", n);
    let list: String = (0..n)
        .map(|i| format!("{} name=t{i}\n", dbs.url(i)))
        .collect();
    let file = targets_file(&project, &list);
    let ledger = project.dir.join("ledger.jsonl");
    let mut child = wasmig_cmd(&project.dir)
        .args(["up", "--targets", file.to_str().unwrap(), "--jobs", "2"])
        .args(["--ledger", ledger.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(project.dir.join("killed.log")).unwrap())
        .spawn()
        .unwrap();
    let done_lines = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"state\":\"done\""))
            .count()
    };
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while done_lines(&ledger) < 8 {
        assert!(
            std::time::Instant::now() < give_up,
            "the fleet made no progress: {}",
            std::fs::read_to_string(project.dir.join("killed.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&ledger).unwrap();
    let finished: Vec<usize> = text
        .lines()
        .filter(|l| l.contains("\"state\":\"done\""))
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).unwrap();
            entry["target"].as_str().unwrap()[1..].parse().unwrap()
        })
        .collect();
    assert!(finished.len() >= 8 && finished.len() < n, "{text}");
    // Proof that a resumed run does not touch them: the databases it finished are gone.
    let script: String = finished
        .iter()
        .map(|&i| format!("DROP DATABASE {} WITH (FORCE);\n", dbs.names[i]))
        .collect();
    psql(&script);
    let run = Run::from_output(
        wasmig_cmd(&project.dir)
            .args([
                "up",
                "--targets",
                file.to_str().unwrap(),
                "--jobs",
                "4",
                "--json",
            ])
            .args(["--ledger", ledger.to_str().unwrap()])
            .output()
            .unwrap(),
    )
    .success();
    let report = run.json();
    assert_eq!(
        in_state(&report, "skipped").len(),
        finished.len(),
        "{run:?}"
    );
    assert_eq!(in_state(&report, "done").len(), n - finished.len());
    for i in (0..n).filter(|i| !finished.contains(i)) {
        let (heads, history) = state_of(&dbs.url(i)).await;
        assert_eq!(heads, ["d4"], "t{i}");
        // A target killed in its step rolled back and ran again: once in its history.
        assert_eq!(history.len(), 4, "t{i}: {history:?}");
    }
    assert!(
        !ledger.exists(),
        "a fleet run that finished every target removes its ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_come_from_a_command_or_a_catalog_query_in_wasmig_toml() {
    let project = project();
    let dbs = Databases::new("wasmig_fleet_src", 3);
    let catalog = TestDb::new(Backend::Postgres, &project).await;
    catalog
        .exec(&format!(
            "CREATE TABLE tenants (id int, url text, wave text, active bool);
             INSERT INTO tenants VALUES (1, '{}', 'canary', true), (2, '{}', 'rest', true), (3, '{}', 'rest', false);",
            dbs.url(0),
            dbs.url(1),
            dbs.url(2)
        ))
        .await;
    let config = project.dir.join("wasmig.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{base}\n[fleet]\ntargets_query = \"SELECT url AS target, 'tenant' || id AS name, wave AS \\\"group\\\" FROM tenants WHERE active ORDER BY id;\"\ncatalog_url = \"{}\"\njobs = 2\n",
            catalog.url
        ),
    )
    .unwrap();
    let report = wasmig(&project, &["up", "--fleet", "--json"])
        .success()
        .json();
    assert_eq!(in_state(&report, "done"), ["tenant1", "tenant2"]);
    assert_eq!(report["targets"][0]["group"], "canary");
    assert!(
        state_of(&dbs.url(2)).await.0.is_empty(),
        "inactive: not listed"
    );
    // The query runs read-only: a write is refused (exit 5), nothing runs.
    catalog.exec("CREATE SEQUENCE picks").await;
    let read_only = base.clone()
        + "\n[fleet]\ntargets_query = \"SELECT url AS target FROM tenants WHERE nextval('picks') > 0\"\ncatalog_url = \""
        + &catalog.url
        + "\"\n";
    std::fs::write(&config, read_only).unwrap();
    let run = wasmig(&project, &["up", "--fleet"]).fails_with(5);
    assert!(run.stderr.contains("read-only transaction"), "{run:?}");
    assert_eq!(
        catalog.count("SELECT count(*) FROM pg_sequences WHERE sequencename = 'picks' AND last_value IS NULL").await,
        1,
        "the sequence was never advanced"
    );
    // One statement: a query that closes the wrapper's parenthesis cannot end the read-only
    // transaction and write on its own.
    let escape = base.clone()
        + "\n[fleet]\ntargets_query = \"SELECT url AS target FROM tenants) AS q; COMMIT; DELETE FROM tenants; SELECT * FROM (SELECT 1 AS target\"\ncatalog_url = \""
        + &catalog.url
        + "\"\n";
    std::fs::write(&config, escape).unwrap();
    wasmig(&project, &["up", "--fleet"]).fails_with(5);
    assert_eq!(catalog.count("SELECT count(*) FROM tenants").await, 3);
    // A command's output, in the targets file's grammar.
    let script = project.dir.join("list-tenants.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho '{} name=third'\n", dbs.url(2)),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!("{base}\n[fleet]\ntargets_command = [\"sh\", \"list-tenants.sh\"]\n"),
    )
    .unwrap();
    let report = wasmig(&project, &["up", "--fleet", "--json"])
        .success()
        .json();
    assert_eq!(in_state(&report, "done"), ["third"]);
    assert_eq!(state_of(&dbs.url(2)).await.0, ["c3"]);
    // A command that fails is a configuration error naming it.
    std::fs::write(
        &config,
        format!(
            "{base}\n[fleet]\ntargets_command = [\"sh\", \"-c\", \"echo no catalog >&2; exit 3\"]\n"
        ),
    )
    .unwrap();
    let run = wasmig(&project, &["up", "--fleet"]).fails_with(3);
    assert!(run.stderr.contains("no catalog"), "{run:?}");
    catalog.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lists_a_busy_ledger_and_untrusted_mode_are_refused_before_any_target_runs() {
    let project = project();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // A line it cannot read: exit 3, naming the file and the line.
    let file = targets_file(&project, &format!("{}\n{} schema=Bad\n", db.url, db.url));
    let run = wasmig(&project, &["up", "--targets", file.to_str().unwrap()]).fails_with(3);
    assert!(run.stderr.contains("targets.txt, line 2"), "{run:?}");
    assert!(db.heads().await.is_empty(), "nothing ran");
    // Another fleet run holds the ledger: exit 11, as for the migration lock.
    let file = targets_file(&project, &format!("{}\n", db.url));
    let ledger = project.dir.join("busy.jsonl");
    let held = std::fs::File::create(&ledger).unwrap();
    held.try_lock().unwrap();
    let run = wasmig(
        &project,
        &[
            "up",
            "--targets",
            file.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
        ],
    )
    .fails_with(11);
    assert!(run.stderr.contains("another wasmig fleet run"), "{run:?}");
    drop(held);
    // Relative targets name another revision on each database: refused.
    let run = wasmig(&project, &["down", "--targets", file.to_str().unwrap()]).fails_with(3);
    assert!(run.stderr.contains("absolute target, not `-1`"), "{run:?}");
    wasmig(&project, &["up", "+1", "--targets", file.to_str().unwrap()]).fails_with(3);
    // Untrusted mode refuses before the list is read: its command is the change's own.
    let config = project.dir.join("wasmig.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{base}\n[fleet]\ntargets_command = [\"touch\", \"ran\"]\n"),
    )
    .unwrap();
    for command in ["up", "current"] {
        let run = wasmig(&project, &[command, "--untrusted", "--fleet"]).fails_with(3);
        assert!(
            run.stderr.contains("untrusted mode refuses fleet runs"),
            "{run:?}"
        );
    }
    assert!(!project.dir.join("ran").exists(), "the command never ran");
    std::fs::write(&config, base).unwrap();
    // Untrusted mode: a fleet is the operator's rollout.
    let run = wasmig(
        &project,
        &["up", "--untrusted", "--targets", file.to_str().unwrap()],
    )
    .fails_with(3);
    assert!(
        run.stderr.contains("untrusted mode refuses fleet runs"),
        "{run:?}"
    );
    // Fleet options without a fleet: a usage error.
    wasmig(&project, &["up", "--jobs", "4"]).fails_with(2);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

/// Whether a session holds the advisory lock `key` (granted) in the database of `db`.
async fn advisory_held(db: &TestDb, key: i64) -> bool {
    db.count(&format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = (({key}::bigint >> 32) & 4294967295)::oid \
         AND objid = ({key}::bigint & 4294967295)::oid AND objsubid = 1"
    ))
    .await
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_schema_has_its_own_migration_lock_and_one_schema_still_has_one_run() {
    let project = TestProject::new();
    project.sql_revision("a1", "SELECT pg_sleep(60);", "SELECT 1;");
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE SCHEMA tenant_a; CREATE SCHEMA tenant_b")
        .await;
    let on = |schema: &str| {
        let path = project.dir.join(format!("targets-{schema}.txt"));
        std::fs::write(&path, format!("{} schema={schema}\n", db.url)).unwrap();
        path.to_str().unwrap().to_owned()
    };
    // A run on tenant_a holds tenant_a's lock through its minute-long step.
    let file_a = on("tenant_a");
    let mut slow = wasmig_cmd(&project.dir)
        .args(["up", "--targets", &file_a, "--ledger"])
        .arg(project.dir.join("slow.jsonl"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let key_a = wasmig::db::pg_lock_key("tenant_a");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !advisory_held(&db, key_a).await {
        assert!(
            std::time::Instant::now() < give_up,
            "the slow run never took its lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !advisory_held(&db, wasmig::db::PG_LOCK_KEY).await,
        "not public's lock"
    );
    // Another run on tenant_a gives up on the lock (exit 11 for that target: 17 for the
    // fleet of one), having changed nothing.
    let busy = Run::from_output(
        wasmig_cmd(&project.dir)
            .args(["up", "--targets", &file_a, "--lock-timeout", "1", "--json"])
            .arg("--ledger")
            .arg(project.dir.join("busy.jsonl"))
            .output()
            .unwrap(),
    )
    .fails_with(17);
    assert_eq!(busy.json()["targets"][0]["exit_code"], 11, "{busy:?}");
    // tenant_b's lock is its own: a run there does not wait for tenant_a's (its own step
    // sleeps too, so it is started and its lock looked for, then it is stopped).
    let file_b = on("tenant_b");
    let mut other = wasmig_cmd(&project.dir)
        .args([
            "up",
            "--targets",
            &file_b,
            "--lock-timeout",
            "1",
            "--ledger",
        ])
        .arg(project.dir.join("other.jsonl"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let key_b = wasmig::db::pg_lock_key("tenant_b");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !advisory_held(&db, key_b).await {
        assert!(
            other.try_wait().unwrap().is_none(),
            "the run on tenant_b ended without taking its lock (it waited for tenant_a's?)"
        );
        assert!(
            std::time::Instant::now() < give_up,
            "tenant_b's run never took its lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for child in [&mut slow, &mut other] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_migrations_role_may_not_use_is_refused_naming_the_grant() {
    let project = project();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let role = format!("wasmig_fleet_role_{}", std::process::id());
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} NOLOGIN; GRANT {role} TO postgres;
         CREATE SCHEMA open_t; CREATE SCHEMA closed_t;
         GRANT USAGE, CREATE ON SCHEMA open_t TO {role};"
    ))
    .await;
    let config = project.dir.join("wasmig.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("role = \"{role}\"\n{base}")).unwrap();
    let file = targets_file(
        &project,
        &format!(
            "{} schema=open_t name=open\n{} schema=closed_t name=closed\n",
            db.url, db.url
        ),
    );
    let report = wasmig(
        &project,
        &[
            "up",
            "--targets",
            file.to_str().unwrap(),
            "--on-error",
            "continue",
            "--json",
        ],
    )
    .fails_with(16)
    .json();
    assert_eq!(in_state(&report, "done"), ["open"]);
    let closed = &report["targets"][1];
    assert_eq!(closed["exit_code"], 3, "{closed}");
    assert!(
        closed["error"]
            .as_str()
            .unwrap()
            .contains("GRANT USAGE, CREATE ON SCHEMA closed_t"),
        "{closed}"
    );
    db.drop_db().await;
    TestDb::server()
        .exec(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_the_sandbox_refuses_fails_every_target_with_its_own_code() {
    // Refused once by the shared sandbox, and the refusal (a denied import: exit 8) given
    // to each target that loads the same bytes, rather than compiled again for each.
    let project = TestProject::new();
    project.wasm_revision_bytes("a1", &crate::components::denied_import());
    let file = targets_file(&project, "one.db\ntwo.db\nthree.db\n");
    let report = wasmig(
        &project,
        &[
            "up",
            "--targets",
            file.to_str().unwrap(),
            "--on-error",
            "continue",
            "--json",
        ],
    )
    .fails_with(17)
    .json();
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3);
    for t in targets {
        assert_eq!(t["exit_code"], 8, "{t}");
        assert!(
            t["error"].as_str().unwrap().contains("evil:net/raw-socket"),
            "{t}"
        );
    }
}

/// Waits up to a minute for `child` to exit; its output.
fn wait_exit(child: std::process::Child) -> Run {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let out = receiver
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("wasmig did not exit within a minute of the signal")
        .unwrap();
    Run::from_output(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_lets_the_targets_under_way_finish_prints_the_report_and_a_second_abandons_them() {
    let n = 12;
    let project = project();
    project.sql_revision("d4", "SELECT pg_sleep(0.3);", "SELECT 1;");
    let dbs = Databases::new("wasmig_fleet_int", n);
    let list: String = (0..n)
        .map(|i| format!("{} name=t{i}\n", dbs.url(i)))
        .collect();
    let file = targets_file(&project, &list);
    let ledger = project.dir.join("ledger.jsonl");
    let start = || {
        wasmig_cmd(&project.dir)
            .args([
                "up",
                "--targets",
                file.to_str().unwrap(),
                "--jobs",
                "2",
                "--json",
            ])
            .arg("--ledger")
            .arg(&ledger)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let done_lines = || {
        std::fs::read_to_string(&ledger)
            .unwrap_or_default()
            .matches("\"state\":\"done\"")
            .count()
    };
    let interrupt = |child: &std::process::Child| unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    };
    // One Ctrl-C: those under way finish, no other starts, the report says so.
    let child = start();
    while done_lines() < 2 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    interrupt(&child);
    let run = wait_exit(child).fails_with(130);
    let report = run.json();
    assert_eq!(report["interrupted"], true, "{run:?}");
    let done = in_state(&report, "done").len();
    let not_run = in_state(&report, "not-run").len();
    assert!(done >= 2 && not_run >= 1, "{run:?}");
    assert_eq!(
        done + not_run,
        n,
        "nothing failed or was abandoned: {run:?}"
    );
    assert!(run.stderr.contains("interrupted"), "{run:?}");
    // Twice: the targets under way are abandoned at once (a step of a minute), reported
    // failed, and roll back.
    project.sql_revision("e5", "SELECT pg_sleep(60);", "SELECT 1;");
    let child = start();
    let server = TestDb::server();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' \
             AND datname LIKE '{}%'",
            &dbs.names[0][..dbs.names[0].rfind('_').unwrap()]
        ))
        .await
        < 2
    {
        assert!(std::time::Instant::now() < give_up, "no target reached e5");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    interrupt(&child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    interrupt(&child);
    let run = wait_exit(child).fails_with(130);
    let report = run.json();
    assert_eq!(report["abandoned"], 2, "{run:?}");
    assert_eq!(in_state(&report, "failed").len(), 2, "{run:?}");
    // The abandoned steps rolled back: e5 is not recorded anywhere.
    for i in 0..n {
        let (heads, _) = state_of(&dbs.url(i)).await;
        assert_ne!(heads, ["e5"], "t{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_path_one_revision_sets_does_not_reach_the_next_on_a_schema_target() {
    // A session-level SET outlives its step's transaction; the connection's reset between
    // steps brings back the target's schema, so the next revision's unqualified names stay
    // in it (the same for set_config).
    let project = TestProject::new();
    project.sql_revision("a1", "SET search_path = public;", "SELECT 1;");
    project.sql_revision(
        "b2",
        "CREATE TABLE after_set (x int);",
        "DROP TABLE after_set;",
    );
    project.sql_revision(
        "c3",
        "SELECT set_config('search_path', 'public', false);",
        "SELECT 1;",
    );
    project.sql_revision(
        "d4",
        "CREATE TABLE after_config (x int);",
        "DROP TABLE after_config;",
    );
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE SCHEMA tenant_x").await;
    let file = targets_file(&project, &format!("{} schema=tenant_x\n", db.url));
    wasmig(&project, &["up", "--targets", file.to_str().unwrap()]).success();
    assert_eq!(
        db.strings("SELECT schemaname || '.' || tablename FROM pg_tables WHERE tablename LIKE 'after_%' ORDER BY 1")
            .await,
        ["tenant_x.after_config", "tenant_x.after_set"]
    );
    db.drop_db().await;
}

//! Integrity of applied revisions: changed or vanished files are refused (exit 12) by `up`,
//! `down` and `check`, `--allow-modified` overrides for one run, `rehash` accepts a change.

use crate::components::{SUCCEED, component};
use crate::snap::{assert_run, shown};
use crate::support::{ALL, BOTH, Backend, TestDb, TestProject};

const GRAPH: i32 = 4;
const MODIFIED: i32 = 12;

#[tokio::test]
async fn a_changed_applied_sql_revision_is_refused_until_rehashed() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let a1 = project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        project.run(&db, &["up"]).success();
        project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
        std::fs::write(a1.join("up.sql"), "CREATE TABLE t1 (x bigint);").unwrap();

        let run = project.run(&db, &["up"]).fails_with(MODIFIED);
        assert_run!(
            "changed_sql_revision_refused",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(
            db.heads().await,
            ["a1"],
            "{backend:?}: nothing further applied"
        );
        assert!(!db.table_exists("t2").await);
        project.run(&db, &["down"]).fails_with(MODIFIED);
        project.run(&db, &["up", "--plan"]).fails_with(MODIFIED);
        let check = project.run(&db, &["check"]).fails_with(MODIFIED);
        assert_run!(
            "check_finds_the_change",
            backend,
            shown(&check, &project, Some(&db))
        );

        let allowed = project.run(&db, &["up", "--allow-modified"]).success();
        assert_run!(
            "change_allowed_for_one_run",
            backend,
            shown(&allowed, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        // One run only: the next is refused again.
        project.run(&db, &["check"]).fails_with(MODIFIED);
        let json = project
            .run(&db, &["check", "--allow-modified", "--json"])
            .success()
            .json();
        assert_eq!(json["applied"]["modified"][0]["revision"], "a1");

        project.run(&db, &["rehash", "a1"]).success();
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "rehash:a1"],
            "{backend:?}"
        );
        let check = project.run(&db, &["check"]).success();
        assert_run!(
            "check_after_rehash",
            backend,
            shown(&check, &project, Some(&db))
        );
        // The new checksum holds: down and up run without complaint.
        project.run(&db, &["down", "base"]).success();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"]);
        // Rehashing an unchanged revision records nothing.
        project.run(&db, &["rehash", "a1"]).success();
        assert_eq!(db.history().await.len(), 7, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn rehash_refuses_revisions_that_are_not_applied() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
        project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
        project.run(&db, &["up", "a1"]).success();
        let run = project.run(&db, &["rehash", "b2"]).fails_with(GRAPH);
        assert_run!(
            "rehash_of_a_revision_not_applied",
            backend,
            shown(&run, &project, Some(&db))
        );
        project.run(&db, &["rehash", "zz"]).fails_with(GRAPH);
        assert_eq!(db.history().await, ["upgrade:a1"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn vanished_applied_files_and_directories_are_refused() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let a1 = project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        let b2 = project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
        project.run(&db, &["up"]).success();

        // A file of an applied revision removed: exit 12, naming the file.
        std::fs::remove_file(a1.join("down.sql")).unwrap();
        let run = project.run(&db, &["up"]).fails_with(MODIFIED);
        assert_run!(
            "vanished_file_refused",
            backend,
            shown(&run, &project, Some(&db))
        );
        project.run(&db, &["check"]).fails_with(MODIFIED);
        std::fs::write(a1.join("down.sql"), "DROP TABLE t1;").unwrap();
        project.run(&db, &["check"]).success();

        // The whole directory of the applied head removed: the database is at a revision
        // the project lacks, a graph error (4) from every command that reads the database
        // except `down`, which reverts it from its stored copy (see `artifacts`).
        std::fs::remove_dir_all(&b2).unwrap();
        for (name, args) in [
            ("vanished_head_refused_by_up", &["up"][..]),
            ("vanished_head_refused_by_check", &["check"]),
        ] {
            let run = project.run(&db, args).fails_with(GRAPH);
            assert_run!(name, backend, shown(&run, &project, Some(&db)));
        }
        assert_eq!(db.heads().await, ["b2"]);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_changed_applied_component_is_refused() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let dir = project.wasm_revision_bytes("w1", &component(SUCCEED));
        project.run(&db, &["up"]).success();
        project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
        // Same behaviour, different bytes.
        std::fs::write(
            dir.join("migration.wasm"),
            component(&format!("(nop) {SUCCEED}")),
        )
        .unwrap();
        let run = project.run(&db, &["up"]).fails_with(MODIFIED);
        assert_run!(
            "changed_component_refused",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["w1"]);
        project.run(&db, &["rehash", "w1"]).success();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn check_without_a_database_verifies_nothing_and_creates_nothing() {
    let project = TestProject::new();
    project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
    let run = project.run_plain(&["check"]).success();
    assert_run!("check_without_a_database", shown(&run, &project, None));
    assert!(!project.dir.join("wasmig.db").exists());
}

#[tokio::test]
async fn history_tables_from_before_rehash_are_widened_for_it() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
        // The tables as the previous release created them, at a1 with a checksum that no
        // longer matches.
        let (id, time) = match backend {
            Backend::Postgres => (
                "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "TIMESTAMPTZ",
            ),
            Backend::Mysql => unreachable!("wasmig never made versionless tables on MySQL"),
            Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
        };
        db.exec(&format!(
            "CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);
             INSERT INTO wasmig_version VALUES ('a1');
             CREATE TABLE wasmig_history (
                 id {id}, revision TEXT NOT NULL,
                 direction TEXT NOT NULL CHECK (direction IN ('upgrade', 'downgrade', 'stamp')),
                 checksum TEXT NOT NULL, started_at {time} NOT NULL, finished_at {time} NOT NULL,
                 duration_ms BIGINT NOT NULL, wasmig_version TEXT NOT NULL);
             INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
             VALUES ('a1', 'upgrade', 'old', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0, '0.1.0');"
        ))
        .await;
        project.run(&db, &["check"]).fails_with(MODIFIED);
        project.run(&db, &["rehash", "a1"]).success();
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "rehash:a1"],
            "{backend:?}"
        );
        project.run(&db, &["check"]).success();
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_rust_revision_is_verified_against_the_component_a_rebuild_makes() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let run = project
            .run_plain(&[
                "revision", "-m", "rust", "--kind", "rust", "--rev-id", "r1", "--json",
            ])
            .success();
        let dir = std::path::PathBuf::from(run.json()["directory"].as_str().unwrap());
        project.run(&db, &["up"]).success();
        let component = project.dir.join(".wasmig/build/r1.wasm");
        assert!(component.is_file(), "{}", component.display());

        // Not built: nothing to verify, and `check` says so instead of claiming a match.
        let built = std::fs::read(&component).unwrap();
        std::fs::remove_file(&component).unwrap();
        let check = project.run(&db, &["check"]).success();
        assert_run!(
            "check_of_an_unbuilt_rust_revision",
            backend,
            shown(&check, &project, Some(&db))
        );
        std::fs::write(&component, &built).unwrap();
        let check = project.run(&db, &["check", "--json"]).success().json();
        assert_eq!(
            check["applied"]["verified"],
            serde_json::json!(["r1"]),
            "{check}"
        );

        // The source changed: `down` rebuilds before verifying, so the change is caught
        // before the changed downgrade could run.
        let lib = dir.join("src/lib.rs");
        let source = std::fs::read_to_string(&lib)
            .unwrap()
            .replace("-- undo what upgrade did", "-- undo it, changed");
        std::fs::write(&lib, source).unwrap();
        let run = project.run(&db, &["down"]).fails_with(MODIFIED);
        assert_run!(
            "changed_rust_source_refused_by_down",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["r1"], "{backend:?}");
        project.run(&db, &["rehash", "r1"]).success();
        project.run(&db, &["down"]).success();
        assert!(db.heads().await.is_empty(), "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn check_does_not_count_stamped_revisions_as_verified() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["stamp", "a1"]).success();
    let check = project.run(&db, &["check"]).success();
    assert_run!(
        "check_of_a_stamped_revision",
        shown(&check, &project, Some(&db))
    );
    db.drop_db().await;
}

/// The project's checksum memo (`wasmig::memo`), in its compile cache.
fn memo_file(project: &TestProject) -> std::path::PathBuf {
    let cache = project.dir.join(".wasmig/cache");
    let found: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("checksums-") && name.ends_with(".json")
        })
        .collect();
    assert_eq!(found.len(), 1, "one memo in {}: {found:?}", cache.display());
    found.into_iter().next().unwrap()
}

/// Rewrites `up.sql` with other bytes of the same length, and puts its modification time
/// back: all that is left to tell is the change time, which no one can set.
fn rewrite_keeping_size_and_mtime(up: &std::path::Path, text: &str) {
    let before = std::fs::metadata(up).unwrap();
    assert_eq!(before.len(), text.len() as u64, "the same size");
    std::fs::write(up, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(up)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    let after = std::fs::metadata(up).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap())
    );
}

/// Waits until the revisions' files are old enough for the memo to record them.
fn let_files_settle() {
    std::thread::sleep(wasmig::memo::SETTLED + std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn the_checksum_memo_spares_rehashing_unchanged_files_and_never_hides_a_change() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
    project.run(&db, &["up"]).success();
    // Files changed within the settling time are hashed, not recorded.
    let fresh = project.run(&db, &["up", "-vv"]).success();
    assert!(
        fresh
            .stderr
            .contains("0 applied revision(s) unchanged since the checksum memo"),
        "{}",
        fresh.stderr
    );
    // Settled: a1 is recorded as this run verifies it, b2 as this run applies it.
    project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
    let_files_settle();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    memo_file(&project);
    let trusted = project.run(&db, &["up", "-vv"]).success();
    assert!(
        trusted
            .stderr
            .contains("2 applied revision(s) unchanged since the checksum memo"),
        "{}",
        trusted.stderr
    );

    rewrite_keeping_size_and_mtime(&a1.join("up.sql"), "CREATE TABLE t9 (x int);");
    let refused = project.run(&db, &["up", "-vv"]).fails_with(MODIFIED);
    // b2 still vouched for; a1 read, and refused.
    assert!(
        refused
            .stderr
            .contains("1 applied revision(s) unchanged since the checksum memo")
            && refused.stderr.contains("revision a1: changed since it ran"),
        "{}",
        refused.stderr
    );
    project.run(&db, &["check"]).fails_with(MODIFIED);
    // Put back as it was, the revision verifies again, from its bytes.
    rewrite_keeping_size_and_mtime(&a1.join("up.sql"), "CREATE TABLE t1 (x int);");
    project.run(&db, &["up"]).success();
    // Without the compile cache there is no memo: every file is hashed.
    let uncached = project.run(&db, &["up", "--no-cache", "-vv"]).success();
    assert!(
        !uncached.stderr.contains("checksum memo"),
        "{}",
        uncached.stderr
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_memo_not_signed_with_the_users_key_is_ignored_and_check_never_reads_one() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let a1 = project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
    project.run(&db, &["up"]).success();
    let_files_settle();
    project.run(&db, &["up"]).success();
    let memo = memo_file(&project);
    let text = std::fs::read_to_string(&memo).unwrap();
    let (body, tag) = text.trim_end().rsplit_once('\n').unwrap();

    // Changed, then the memo edited to vouch for the changed file: its tag no longer holds.
    let up = a1.join("up.sql");
    std::fs::write(&up, "CREATE TABLE t1 (x bigint);").unwrap();
    let mut entries: serde_json::Value = serde_json::from_str(body).unwrap();
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(&up).unwrap();
        let files = entries["a1"]["files"].as_array_mut().unwrap();
        let file = files
            .iter_mut()
            .find(|f| f[0].as_str().unwrap().ends_with("up.sql"))
            .unwrap();
        file[1] = serde_json::json!({
            "dev": meta.dev(), "ino": meta.ino(), "size": meta.size(),
            "mtime": [meta.mtime(), meta.mtime_nsec()],
            "ctime": [meta.ctime(), meta.ctime_nsec()],
        });
    }
    let forged = entries.to_string();
    std::fs::write(&memo, format!("{forged}\n{tag}\n")).unwrap();
    let refused = project.run(&db, &["up", "-vv"]).fails_with(MODIFIED);
    assert!(
        refused.stderr.contains("its tag does not verify"),
        "{}",
        refused.stderr
    );
    assert!(!db.table_exists("t2").await);

    // Signed with this user's key (which only this user can read), the memo is believed by
    // `up`; `check` rereads every file all the same.
    let sealer = wasmig::sandbox::Sealer::new(&project.dir).unwrap();
    let name = memo.file_name().unwrap().to_string_lossy().into_owned();
    let signed = hex::encode(sealer.tag(wasmig::memo::LABEL, &name, forged.as_bytes()));
    std::fs::write(&memo, format!("{forged}\n{signed}\n")).unwrap();
    project.run(&db, &["up"]).success();
    let check = project
        .run(&db, &["check", "--allow-modified", "--json"])
        .success()
        .json();
    assert_eq!(check["applied"]["modified"][0]["revision"], "a1");
    db.drop_db().await;
}

//! Limits a migration cannot outlast: a batched step's batch count and total time per run
//! (a guest that asks for another batch forever, alternating checkpoints), the size of a
//! component, and the time compiling it takes. Each stops the run with exit 7, keeping what
//! committed, and the next run resumes exactly where it stopped.

use crate::batches::{checkpoints, items_at, setup};
use crate::snap::{assert_run, shown, shown_with};
use crate::support::{BOTH, Backend, TestDb, TestProject};

#[tokio::test]
async fn a_guest_alternating_two_checkpoints_is_stopped_by_max_batches() {
    for backend in BOTH {
        let (project, db, dir) = setup(backend, "batched", 100, 10).await;
        db.exec("UPDATE e2e_batches SET repeats = 3").await;
        project.set_manifest(&dir, "max_batches = 5");
        let run = project.run(&db, &["up"]).fails_with(7);
        assert_run!(
            "alternating_checkpoints_stopped_by_max_batches",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(checkpoints(&db).await, ["b1:upgrade:5"], "{backend:?}");
        assert!(db.heads().await.is_empty());
        assert_eq!(items_at(&db, 0).await, 100, "no row was touched");
        // What the database holds is known: nothing of the guest's. Resolve and go on.
        project
            .run(&db, &["resolve", "b1", "--as", "rolled-back"])
            .success();
        assert!(checkpoints(&db).await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_long_batched_step_stops_at_its_limits_and_resumes_exactly_once() {
    for backend in BOTH {
        let (project, db, dir) = setup(backend, "batched", 1000, 100).await;
        let manifest = dir.join("migration.toml");
        let original = std::fs::read_to_string(&manifest).unwrap();
        project.set_manifest(&dir, "max_batches = 3");
        let run = project.run(&db, &["up"]).fails_with(7);
        assert_run!(
            "long_batched_step_stopped_by_max_batches",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(items_at(&db, 1).await, 300, "{backend:?}");
        assert_eq!(checkpoints(&db).await, ["b1:upgrade:3"]);

        // The same step under a time limit per run: each batch takes 300 ms.
        std::fs::write(&manifest, &original).unwrap();
        project.set_manifest(&dir, "batched_timeout_secs = 0.5");
        db.exec("UPDATE e2e_batches SET pause_ms = 300").await;
        let run = project.run(&db, &["up"]).fails_with(7);
        let done = items_at(&db, 1).await;
        // How many batches fit in the time limit depends on the machine (3 ran before).
        let batches = format!(" {} batch", done / 100 - 3);
        assert_run!(
            "long_batched_step_stopped_by_batched_timeout_secs",
            backend,
            shown_with(
                &run,
                &project,
                Some(&db),
                &[(batches.as_str(), " [BATCHES] batch")]
            )
        );
        assert!((400..1000).contains(&done), "{backend:?}: {done}");
        assert_eq!(items_at(&db, 2).await, 0, "no row twice");

        // Without the limits it finishes: every row exactly once.
        std::fs::write(&manifest, &original).unwrap();
        db.exec("UPDATE e2e_batches SET pause_ms = 0").await;
        project.run(&db, &["up"]).success();
        assert_eq!(items_at(&db, 1).await, 1000, "{backend:?}");
        assert!(checkpoints(&db).await.is_empty());
        assert_eq!(db.heads().await, ["b1"]);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_component_over_the_size_limit_is_refused_before_the_first_step() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[sandbox]", "[sandbox]\nmax_component_mib = 1"),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("max_component_mib"),
        "the template has a [sandbox] table"
    );
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    // A component preamble and 2 MiB of nothing: refused by its size, not parsed.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.resize(2 * 1024 * 1024, 0);
    project.wasm_revision_bytes("b2", &bytes);
    let run = project.run(&db, &["up"]).fails_with(7);
    assert_run!(
        "component_over_the_size_limit",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty(), "refused before a1 ran");
    assert!(!db.table_exists("t").await);
    db.drop_db().await;
}

#[tokio::test]
async fn compiling_a_component_is_bounded_by_compile_timeout_secs() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[sandbox]", "[sandbox]\ncompile_timeout_secs = 0.05"),
    )
    .unwrap();
    // One function of 400,000 additions: seconds of Cranelift, a few MB of wasm.
    let mut body = String::from("(local i32)");
    for _ in 0..400_000 {
        body.push_str(" local.get 0 i32.const 7 i32.add local.set 0");
    }
    let wat = format!("(component (core module (func (export \"f\") {body})))");
    let bytes = wat::parse_str(&wat).unwrap();
    project.wasm_revision_bytes("c1", &bytes);
    let run = project.run(&db, &["up", "--no-cache"]).fails_with(7);
    assert_run!(
        "compile_past_compile_timeout_secs",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
}

#[tokio::test]
async fn a_huge_revision_file_is_refused_before_it_is_read() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    // 300 MB, sparse: nothing is written, and reading it whole would take 300 MB of memory.
    let up = std::fs::OpenOptions::new()
        .write(true)
        .open(a1.join("up.sql"))
        .unwrap();
    up.set_len(300 * 1024 * 1024).unwrap();
    drop(up);
    let run = project.run(&db, &["up"]).fails_with(3);
    assert_run!("huge_up_sql_refused", shown(&run, &project, Some(&db)));
    assert!(db.heads().await.is_empty());
    // A manifest is read at most 1 MiB.
    std::fs::write(a1.join("up.sql"), "CREATE TABLE t (x int);").unwrap();
    let manifest = std::fs::OpenOptions::new()
        .append(true)
        .open(a1.join("migration.toml"))
        .unwrap();
    manifest.set_len(2 * 1024 * 1024).unwrap();
    drop(manifest);
    let run = project.run(&db, &["up"]).fails_with(3);
    assert_run!("huge_manifest_refused", shown(&run, &project, Some(&db)));
    db.drop_db().await;
}

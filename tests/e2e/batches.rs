//! Batched data migrations (the WIT's `batch` interface): `transaction = "batched"` commits
//! each batch with its checkpoint and resumes an interrupted run from it, a failed batch
//! keeps the ones before it, `per-migration` runs every batch in one transaction; and
//! components built against the frozen WIT 0.1.0 and 0.2.0 still run.
//!
//! The guest is `tests/guests/batches`: it adds 1 to `items.n` of every row it walks, so
//! after any number of interrupted runs every row must show exactly 1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::snap::{assert_run, shown, shown_log, shown_with};
use crate::support::{ALL, BOTH, Backend, Run, TestDb, TestProject, wasmig_cmd};

/// A project with the batches guest as revision `b1` over `rows` items, `size` per batch.
pub(crate) async fn setup(
    backend: Backend,
    transaction: &str,
    rows: i64,
    size: i64,
) -> (TestProject, TestDb, PathBuf) {
    let project = TestProject::new();
    let db = TestDb::new(backend, &project).await;
    db.exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
         INSERT INTO items (id) SELECT * FROM ({}) AS s;
         CREATE TABLE e2e_batches (size bigint, pause_ms bigint, fail_from bigint, repeats bigint,
                                   stall_from bigint);
         INSERT INTO e2e_batches VALUES ({size}, 0, NULL, 0, NULL);",
        match backend {
            Backend::Postgres => format!("SELECT generate_series(1, {rows})"),
            Backend::Sqlite | Backend::Mysql => format!(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) SELECT i FROM c"
            ),
        }
    ))
    .await;
    if backend == Backend::Mysql {
        // Where the guest marks its first batch on MySQL (see `first_batch_ran`).
        db.exec("CREATE TABLE batches_first (x integer)").await;
    }
    let dir = project.wasm_revision("b1", Path::new(crate::test_guest::BATCHES));
    let manifest = dir.join("migration.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "transaction = \"per-migration\"",
        &format!("transaction = \"{transaction}\""),
    );
    std::fs::write(&manifest, text).unwrap();
    (project, db, dir)
}

/// Whether the guest's first batch ran and was kept: it creates `batches_first`, or on
/// MySQL (where a component may not run DDL) writes a row into it.
pub(crate) async fn first_batch_ran(db: &TestDb) -> bool {
    match db.backend {
        Backend::Mysql => db.count("SELECT count(*) FROM batches_first").await > 0,
        _ => db.table_exists("batches_first").await,
    }
}

/// `count(*)` of the items whose `n` is `value`.
pub(crate) async fn items_at(db: &TestDb, value: i64) -> i64 {
    db.count(&format!("SELECT count(*) FROM items WHERE n = {value}"))
        .await
}

/// The stored checkpoint rows (`revision:direction:batches`).
pub(crate) async fn checkpoints(db: &TestDb) -> Vec<String> {
    if !db.table_exists("wasmig_checkpoint").await {
        return Vec::new();
    }
    db.strings(match db.backend {
        Backend::Mysql => "SELECT CONCAT(revision, ':', direction, ':', batches) FROM wasmig_checkpoint",
        _ => "SELECT revision || ':' || direction || ':' || CAST(batches AS TEXT) FROM wasmig_checkpoint",
    })
    .await
}

fn steps(run: &Run) -> serde_json::Value {
    run.json()["steps"][0].clone()
}

#[tokio::test]
async fn a_batched_revision_commits_each_batch_and_records_the_step_with_the_last() {
    for backend in ALL {
        let (project, db, _) = setup(backend, "batched", 250, 100).await;
        let run = project.run(&db, &["up", "--json"]).success();
        let step = steps(&run);
        assert_eq!(step["batches"], 3, "{backend:?}: {run:?}");
        assert!(step.get("resumed_after").is_none(), "{run:?}");
        assert_eq!(items_at(&db, 1).await, 250, "{backend:?}");
        assert!(first_batch_ran(&db).await);
        assert_eq!(db.heads().await, ["b1"]);
        assert_eq!(db.history().await, ["upgrade:b1"]);
        assert!(checkpoints(&db).await.is_empty(), "{backend:?}");
        // Progress spans the batches: the last report is the whole table, 250/250.
        assert_run!(
            "batched_run_progress",
            backend,
            shown_log(&run, &project, Some(&db))
        );

        // Downgrades are batched the same way.
        let run = project.run(&db, &["down", "--json"]).success();
        assert_eq!(steps(&run)["batches"], 3, "{backend:?}: {run:?}");
        assert_eq!(items_at(&db, 0).await, 250, "{backend:?}");
        assert!(!first_batch_ran(&db).await);
        assert!(db.heads().await.is_empty());
        assert!(checkpoints(&db).await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_killed_batched_run_resumes_from_its_checkpoint_and_applies_each_row_once() {
    for backend in ALL {
        let (project, db, _) = setup(backend, "batched", 600, 20).await;
        db.exec("UPDATE e2e_batches SET pause_ms = 60").await;
        // Kill once the checkpoint shows this many batches: a different point of the run
        // each round, landing anywhere inside the batch after it.
        let mut committed = Vec::new();
        for after in [1_i64, 4, 9] {
            let mut child = wasmig_cmd(&project.dir)
                .args(["up", "--database-url", &db.url, "--lock-timeout", "30"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            loop {
                let stored = checkpoints(&db).await;
                let batches = stored
                    .first()
                    .and_then(|c| c.rsplit(':').next())
                    .map_or(0, |n| n.parse::<i64>().unwrap());
                if batches >= after {
                    break;
                }
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{backend:?}: the run ended before batch {after}"
                );
                assert!(start.elapsed() < Duration::from_secs(60), "{backend:?}");
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            child.kill().unwrap();
            child.wait().unwrap();
            crate::crash::settle(&db).await;
            // Before or after each batch, never between: every row walked so far shows
            // exactly 1, the rest 0, and the checkpoint counts the rows that show 1.
            let stored = checkpoints(&db).await;
            assert_eq!(stored.len(), 1, "{backend:?}: {stored:?}");
            let batches: i64 = stored[0].rsplit(':').next().unwrap().parse().unwrap();
            assert!(batches >= after, "{backend:?}: {stored:?}");
            assert_eq!(items_at(&db, 1).await, batches * 20, "{backend:?}");
            assert_eq!(items_at(&db, 0).await, 600 - batches * 20, "{backend:?}");
            assert!(db.heads().await.is_empty(), "{backend:?}");
            committed.push(batches);

            // The database says where it stands.
            let status = project.run(&db, &["current", "--json"]).success().json();
            assert_eq!(status["in_progress"][0]["revision"], "b1", "{status}");
            assert_eq!(status["in_progress"][0]["batches"], batches, "{status}");
            let status = project.run(&db, &["current"]).success();
            // How many batches committed before the kill depends on timing.
            let count = format!("{batches} batch(es)");
            assert_run!(
                "current_of_a_killed_batched_run",
                backend,
                shown_with(
                    &status,
                    &project,
                    Some(&db),
                    &[(count.as_str(), "[BATCHES] batch(es)")]
                )
            );
        }
        // Every round resumed where the last one stopped.
        assert!(committed.windows(2).all(|w| w[0] < w[1]), "{committed:?}");

        db.exec("UPDATE e2e_batches SET pause_ms = 0").await;
        let run = project.run(&db, &["up", "--json"]).success();
        let resumed = format!("resuming after batch {}", committed[2]);
        // Where the kill left it depends on timing.
        assert_run!(
            "resumed_after_a_kill",
            backend,
            shown_log(&run, &project, Some(&db))
                .replace(&resumed, "resuming after batch [COMMITTED]")
        );
        let step = steps(&run);
        assert_eq!(step["resumed_after"], committed[2], "{run:?}");
        // 30 full batches, and a last call that finds nothing left.
        assert_eq!(step["batches"], 31 - committed[2], "{run:?}");
        // The first batch's DDL ran once (a second run of it would have failed).
        assert!(first_batch_ran(&db).await);
        assert_eq!(items_at(&db, 1).await, 600, "{backend:?}");
        assert_eq!(db.heads().await, ["b1"]);
        assert!(checkpoints(&db).await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_failed_batch_keeps_the_earlier_batches_and_the_next_run_resumes_after_them() {
    for backend in ALL {
        let (project, db, _) = setup(backend, "batched", 300, 50).await;
        db.exec("UPDATE e2e_batches SET fail_from = 101").await;
        let run = project.run(&db, &["up"]).fails_with(6);
        assert_run!(
            "failed_batch_keeps_earlier_batches",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(items_at(&db, 1).await, 100, "{backend:?}");
        assert_eq!(checkpoints(&db).await, ["b1:upgrade:2"]);
        assert!(db.heads().await.is_empty());

        // Nothing may build on half of a data migration: down and stamp refuse.
        let run = project.run(&db, &["down", "base"]).fails_with(13);
        assert_run!(
            "down_refused_part_way_through_a_batched_upgrade",
            backend,
            shown(&run, &project, Some(&db))
        );
        project.run(&db, &["stamp", "b1"]).fails_with(13);
        let plan = project.run(&db, &["up", "--plan"]).success();
        assert_eq!(plan.stdout, "upgrade b1 (resuming after batch 2)\n");

        db.exec("UPDATE e2e_batches SET fail_from = NULL").await;
        let run = project.run(&db, &["up", "--json"]).success();
        assert_eq!(steps(&run)["resumed_after"], 2, "{run:?}");
        assert_eq!(steps(&run)["batches"], 5, "{run:?}");
        assert_eq!(items_at(&db, 1).await, 300, "{backend:?}");
        assert_eq!(db.heads().await, ["b1"]);
        assert!(checkpoints(&db).await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_batch_stopped_by_the_deadline_keeps_the_earlier_batches_and_the_next_run_resumes() {
    for backend in ALL {
        let (project, db, dir) = setup(backend, "batched", 300, 50).await;
        project.set_manifest(&dir, "timeout_secs = 1");
        // Batch 4 (keys 151-200) spins in wasm: the deadline bounds each batch, so it stops
        // that one, after three batches committed with their checkpoints.
        db.exec("UPDATE e2e_batches SET stall_from = 151").await;
        let run = project.run(&db, &["up"]).fails_with(7);
        assert_run!(
            "batch_stopped_by_the_deadline",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(items_at(&db, 1).await, 150, "{backend:?}");
        assert_eq!(items_at(&db, 0).await, 150, "{backend:?}");
        assert_eq!(checkpoints(&db).await, ["b1:upgrade:3"], "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");

        db.exec("UPDATE e2e_batches SET stall_from = NULL").await;
        let run = project.run(&db, &["up", "--json"]).success();
        assert_eq!(steps(&run)["resumed_after"], 3, "{backend:?}: {run:?}");
        assert_eq!(items_at(&db, 1).await, 300, "{backend:?}");
        assert_eq!(db.heads().await, ["b1"]);
        assert_eq!(db.history().await, ["upgrade:b1"]);
        assert!(checkpoints(&db).await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_per_migration_revision_runs_every_batch_in_one_transaction() {
    for backend in ALL {
        let (project, db, _) = setup(backend, "per-migration", 300, 50).await;
        db.exec("UPDATE e2e_batches SET fail_from = 201").await;
        let run = project.run(&db, &["up"]).fails_with(6);
        assert_run!(
            "per_migration_batches_rolled_back",
            backend,
            shown(&run, &project, Some(&db))
        );
        // The five batches before the failing one went with it.
        assert_eq!(items_at(&db, 0).await, 300, "{backend:?}");
        assert!(!first_batch_ran(&db).await);
        assert!(checkpoints(&db).await.is_empty());

        db.exec("UPDATE e2e_batches SET fail_from = NULL").await;
        let run = project.run(&db, &["up", "--json"]).success();
        assert_eq!(steps(&run)["batches"], 7, "{backend:?}: {run:?}");
        assert_eq!(items_at(&db, 1).await, 300);
        assert!(checkpoints(&db).await.is_empty());
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_batch_that_repeats_its_checkpoint_fails_instead_of_looping() {
    for backend in ALL {
        for transaction in ["batched", "per-migration"] {
            let (project, db, _) = setup(backend, transaction, 100, 10).await;
            db.exec("UPDATE e2e_batches SET repeats = 1").await;
            let run = project.run(&db, &["up"]).fails_with(6);
            assert_run!(
                format!("repeated_checkpoint_{transaction}"),
                backend,
                shown(&run, &project, Some(&db))
            );
            db.drop_db().await;
        }
    }
}

#[tokio::test]
async fn a_checkpoint_over_64_kib_fails_the_batch() {
    let (project, db, _) = setup(Backend::Postgres, "batched", 100, 10).await;
    db.exec("UPDATE e2e_batches SET repeats = 2").await;
    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!("checkpoint_over_64_kib", shown(&run, &project, Some(&db)));
    assert!(checkpoints(&db).await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn resuming_a_changed_batched_revision_is_refused_unless_allowed() {
    let (project, db, dir) = setup(Backend::Postgres, "batched", 200, 50).await;
    db.exec("UPDATE e2e_batches SET fail_from = 101").await;
    project.run(&db, &["up"]).fails_with(6);
    // Another build of the migration: the same code with a custom section appended.
    let component = dir.join("migration.wasm");
    let mut bytes = std::fs::read(&component).unwrap();
    bytes.extend_from_slice(&[0, 4, 3, b'x', b'y', b'z']);
    std::fs::write(&component, bytes).unwrap();
    db.exec("UPDATE e2e_batches SET fail_from = NULL").await;
    let run = project.run(&db, &["up"]).fails_with(12);
    assert_run!(
        "changed_batched_revision_refused",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(items_at(&db, 1).await, 100);
    let run = project.run(&db, &["up", "--allow-modified"]).success();
    assert_run!(
        "changed_batched_revision_allowed",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(items_at(&db, 1).await, 200);
    db.drop_db().await;
}

#[tokio::test]
async fn resolve_discards_or_completes_a_batched_revision_part_way_through() {
    for backend in ALL {
        for (state, heads) in [("rolled-back", vec![]), ("applied", vec!["b1"])] {
            let (project, db, _) = setup(backend, "batched", 200, 50).await;
            db.exec("UPDATE e2e_batches SET fail_from = 101").await;
            project.run(&db, &["up"]).fails_with(6);
            let run = project
                .run(&db, &["resolve", "b1", "--as", state])
                .success();
            assert_run!(
                format!("resolved_batched_as_{state}"),
                backend,
                shown(&run, &project, Some(&db))
            );
            assert!(checkpoints(&db).await.is_empty(), "{backend:?} {state}");
            assert_eq!(db.heads().await, heads, "{backend:?} {state}");
            assert_eq!(db.history().await, ["resolve:b1"]);
            // Resolved: nothing is refused any more.
            project.run(&db, &["current"]).success();
            project
                .run(&db, &["resolve", "b1", "--as", state])
                .fails_with(4);
            db.drop_db().await;
        }
    }
}

#[tokio::test]
async fn atomic_runs_refuse_batched_revisions() {
    let (project, db, _) = setup(Backend::Sqlite, "batched", 10, 5).await;
    let run = project.run(&db, &["up", "--atomic"]).fails_with(3);
    assert_run!(
        "atomic_run_refuses_batched",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(items_at(&db, 0).await, 10);
    db.drop_db().await;
}

#[tokio::test]
async fn a_component_built_against_wit_0_1_0_still_runs() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.wasm_revision("l1", Path::new(crate::test_guest::LEGACY));
        let run = project.run(&db, &["up"]).success();
        assert_run!("wit_0_1_0_guest", backend, shown(&run, &project, Some(&db)));
        assert_eq!(db.count("SELECT count(*) FROM legacy_ok").await, 2);
        project.run(&db, &["down"]).success();
        assert!(!db.table_exists("legacy_ok").await);
        db.drop_db().await;
    }
}

/// 0.3.0's types are 0.4.0's without the column types, its dialect the current one: every
/// call goes through the same host functions.
#[tokio::test]
async fn a_component_built_against_wit_0_3_0_still_runs() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.wasm_revision("l3", Path::new(crate::test_guest::LEGACY_0_3_0));
        let run = project.run(&db, &["up"]).success();
        assert!(
            run.stderr.contains("0.3.0 guest: copied 2 rows")
                && run.stderr.contains("read 3 rows through a cursor"),
            "{backend:?}: {}",
            run.stderr
        );
        assert_eq!(db.count("SELECT count(*) FROM legacy_0_3_0_ok").await, 3);
        project.run(&db, &["down"]).success();
        assert!(!db.table_exists("legacy_0_3_0_ok").await);
        db.drop_db().await;
    }
}

/// 0.2.0's types are 0.3.0's but for the dialect: its `copy-in`, `batch`, cursor and
/// savepoint go through the same host functions, and its `dialect` answers in its own enum.
#[tokio::test]
async fn a_component_built_against_wit_0_2_0_still_runs() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.wasm_revision("l2", Path::new(crate::test_guest::LEGACY_0_2_0));
        let run = project.run(&db, &["up"]).success();
        assert_run!("wit_0_2_0_guest", backend, shown(&run, &project, Some(&db)));
        assert_eq!(db.count("SELECT count(*) FROM legacy_0_2_0_ok").await, 3);
        project.run(&db, &["down"]).success();
        assert!(!db.table_exists("legacy_0_2_0_ok").await);
        db.drop_db().await;
    }
}

/// A batch that leaves its transaction read-only (here a trigger of the table it updates,
/// on the third batch's last row) stops wasmig's save of its checkpoint: the migration's failure
/// (exit 6, saying why), the earlier batches kept, not a database error.
#[tokio::test]
async fn a_batch_leaving_its_transaction_read_only_fails_as_the_migrations() {
    let (project, db, _) = setup(Backend::Postgres, "batched", 300, 50).await;
    db.exec(
        "CREATE FUNCTION ro() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM set_config('transaction_read_only', 'on', true); RETURN NULL; END $$;
         CREATE TRIGGER ro AFTER UPDATE ON items FOR EACH ROW WHEN (NEW.id = 150)
           EXECUTE FUNCTION ro();",
    )
    .await;
    let run = project.run(&db, &["up"]).fails_with(6);
    assert!(
        run.stderr.contains("left its transaction read-only"),
        "{}",
        run.stderr
    );
    assert_eq!(items_at(&db, 1).await, 100);
    assert_eq!(checkpoints(&db).await, ["b1:upgrade:2"]);
    db.drop_db().await;
}

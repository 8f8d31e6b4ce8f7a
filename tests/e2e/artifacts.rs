//! Rollback that survives the deploy artifact: every upgrade stores what it ran in
//! `wasmig_artifact`, and `down` reverts from that copy a revision whose files are no longer
//! in the project (an older release was deployed over a newer database). On every backend,
//! MySQL included (a script with DDL runs statement by statement there, which none of
//! these tests tells apart).
//!
//! Not here: verification of revisions that are in the project (`integrity`).

use crate::components::{SUCCEED, component};
use crate::snap::{assert_run, shown};
use crate::support::{ALL, TestDb, TestProject};

const GRAPH: i32 = 4;
const MODIFIED: i32 = 12;

#[tokio::test]
async fn down_reverts_a_sql_revision_whose_files_are_gone_from_its_stored_copy() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        let b2 = project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
        project.run(&db, &["up"]).success();
        assert_eq!(
            db.strings("SELECT revision FROM wasmig_artifact ORDER BY revision")
                .await,
            ["a1", "b2"],
            "{backend:?}"
        );

        // An older release: b2's directory is gone.
        std::fs::remove_dir_all(&b2).unwrap();
        let run = project.run(&db, &["up"]).fails_with(GRAPH);
        assert_run!(
            "up_with_a_head_the_project_lacks",
            backend,
            shown(&run, &project, Some(&db))
        );

        let run = project.run(&db, &["down", "-1"]).success();
        assert_run!(
            "sql_revision_reverted_from_its_copy",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(!db.table_exists("t2").await, "{backend:?}: down.sql ran");
        assert!(db.table_exists("t1").await);
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "downgrade:b2"]
        );
        // Reverted: its copy is deleted with the downgrade, so the table holds what is applied.
        assert_eq!(
            db.strings("SELECT revision FROM wasmig_artifact").await,
            ["a1"],
            "{backend:?}"
        );
        project.run(&db, &["check"]).success();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["a1"]);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn down_walks_several_missing_revisions_down_to_the_project() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        let b2 = project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
        let c3 = project.sql_revision("c3", "CREATE TABLE t3 (x int);", "DROP TABLE t3;");
        project.run(&db, &["up"]).success();
        std::fs::remove_dir_all(&b2).unwrap();
        std::fs::remove_dir_all(&c3).unwrap();

        let plan = project.run(&db, &["down", "base", "--plan"]).success();
        assert_eq!(
            plan.stdout, "downgrade c3\ndowngrade b2\ndowngrade a1\n",
            "{backend:?}"
        );
        let run = project.run(&db, &["down", "a1"]).success();
        assert_run!(
            "two_revisions_reverted_from_their_copies",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(!db.table_exists("t3").await && !db.table_exists("t2").await);
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn down_reverts_a_component_revision_from_its_stored_copy() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        let b2 = project.wasm_revision_bytes("b2", &component(SUCCEED));
        project.run(&db, &["up"]).success();
        assert_eq!(
            db.count("SELECT count(*) FROM wasmig_artifact WHERE revision = 'b2' AND component IS NOT NULL AND up_sql IS NULL")
                .await,
            1,
            "{backend:?}"
        );
        std::fs::remove_dir_all(&b2).unwrap();
        std::fs::remove_file(project.dir.join("b2.input.wasm")).unwrap();

        let run = project.run(&db, &["down", "-1"]).success();
        assert_run!(
            "component_reverted_from_its_copy",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(
            db.history().await,
            ["upgrade:a1", "upgrade:b2", "downgrade:b2"]
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_stored_copy_that_does_not_match_its_recorded_checksum_is_refused() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        let b2 = project.sql_revision("b2", "CREATE TABLE t2 (x int);", "DROP TABLE t2;");
        project.run(&db, &["up"]).success();
        std::fs::remove_dir_all(&b2).unwrap();
        db.exec("UPDATE wasmig_artifact SET down_sql = 'DROP TABLE t1;' WHERE revision = 'b2'")
            .await;

        let run = project.run(&db, &["down", "-1"]).fails_with(MODIFIED);
        assert_run!(
            "altered_stored_copy_refused",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.table_exists("t1").await && db.table_exists("t2").await);
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn down_refuses_a_missing_revision_the_database_has_no_copy_of() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "SELECT 1;", "SELECT 1;");
        let b2 = project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
        // Stamped: nothing ran, so nothing was stored.
        project.run(&db, &["stamp", "b2"]).success();
        std::fs::remove_dir_all(&b2).unwrap();

        let run = project.run(&db, &["down", "-1"]).fails_with(GRAPH);
        assert_run!(
            "missing_revision_without_a_copy",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn rehash_replaces_the_stored_copy_that_down_reverts_from() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let a1 = project.sql_revision("a1", "CREATE TABLE t1 (x int);", "DROP TABLE t1;");
        project.run(&db, &["up"]).success();
        std::fs::write(
            a1.join("down.sql"),
            "DROP TABLE t1; CREATE TABLE marker (x int);",
        )
        .unwrap();
        project.run(&db, &["rehash", "a1"]).success();
        std::fs::remove_dir_all(&a1).unwrap();

        let run = project.run(&db, &["down", "base"]).success();
        assert_run!(
            "rehashed_copy_reverted",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(!db.table_exists("t1").await, "{backend:?}");
        assert!(
            db.table_exists("marker").await,
            "{backend:?}: the rehashed down.sql ran"
        );
        assert!(db.heads().await.is_empty());
        db.drop_db().await;
    }
}

/// The revisions with a stored copy, sorted.
async fn stored(db: &TestDb) -> Vec<String> {
    db.strings("SELECT revision FROM wasmig_artifact ORDER BY revision")
        .await
}

#[tokio::test]
async fn stamp_drops_the_stored_copies_of_revisions_it_unapplies() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (n int);", "DROP TABLE t;");
        project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
        project.run(&db, &["up"]).success();
        assert_eq!(stored(&db).await, ["a1", "b2"], "{backend:?}");
        project.run(&db, &["stamp", "a1"]).success();
        assert_eq!(stored(&db).await, ["a1"], "{backend:?}");
        project.run(&db, &["stamp", "base"]).success();
        assert!(stored(&db).await.is_empty(), "{backend:?}");

        // Heads this checkout does not know (applied by a newer release), purged: their
        // stored copies go too, the table keeps only what stays applied.
        let c3 = project.sql_revision("c3", "CREATE TABLE t3 (n int);", "DROP TABLE t3;");
        db.exec("DROP TABLE t").await;
        project.run(&db, &["up"]).success();
        assert_eq!(stored(&db).await, ["a1", "b2", "c3"], "{backend:?}");
        std::fs::remove_dir_all(&c3).unwrap();
        project.run(&db, &["stamp", "--purge", "a1"]).success();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(stored(&db).await, ["a1"], "{backend:?}");
        db.drop_db().await;
    }
}

//! Where wasmig's tables are is configured (`database_schema`, default `public`), never
//! taken from a session: a `search_path` a migration sets for the whole database (or its
//! role) must not move the next run's tables, which would make every revision look
//! unapplied.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject};

#[tokio::test]
async fn a_search_path_a_migration_sets_for_the_database_does_not_move_wasmigs_tables() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE SCHEMA evil;
         CREATE TABLE evil.wasmig_version (revision TEXT PRIMARY KEY);
         DO $$ BEGIN EXECUTE pg_catalog.format(
             'ALTER DATABASE %I SET search_path = evil, public', current_database());
         END $$;",
        "DROP SCHEMA evil CASCADE;",
    );
    project.sql_revision(
        "b2",
        "CREATE TABLE after_it (x int);",
        "DROP TABLE after_it;",
    );
    project.run(&db, &["up", "a1"]).success();
    // A new run: every new session starts with `evil` first in its search_path now. Were
    // the tables found through it, a1 would look unapplied and run again.
    let run = project.run(&db, &["up"]).success();
    assert_run!(
        "search_path_set_by_a_migration",
        shown(&run, &project, Some(&db))
    );
    assert!(!run.stderr.contains("applying a1"), "{run:?}");
    assert_eq!(
        db.strings("SELECT revision FROM public.wasmig_version")
            .await,
        ["b2"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM evil.wasmig_version").await,
        0
    );
    db.drop_db().await;
}

#[tokio::test]
async fn wasmigs_tables_live_in_the_configured_schema() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE SCHEMA ops").await;
    let config = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("database_schema = \"ops\"\n{text}")).unwrap();
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    assert_eq!(
        db.strings("SELECT revision FROM ops.wasmig_version").await,
        ["a1"]
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'wasmig%'"
        )
        .await,
        0
    );
    // The migration's own objects go where its search_path says.
    assert_eq!(
        db.strings("SELECT schemaname::text FROM pg_tables WHERE tablename = 't'")
            .await,
        ["public"]
    );
    project.run(&db, &["check"]).success();
    // A name wasmig would have to quote is refused before anything connects.
    std::fs::write(&config, format!("database_schema = \"Ops; x\"\n{text}")).unwrap();
    let run = project.run(&db, &["up"]).fails_with(3);
    assert_run!(
        "database_schema_needing_quotes",
        shown(&run, &project, Some(&db))
    );
    db.drop_db().await;
}

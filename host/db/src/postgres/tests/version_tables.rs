//! Tests of the version tables: created (and compressed) by a role that does not own
//! them, a step finished in one statement unless its transaction ended, and steps
//! recorded as heads and history.
//!
//! Not here: values (`values`), other session behaviour (`session`).

use chrono::{TimeDelta, Utc};

use super::*;
use crate::{Checkpoint, Expected, FinishedStep, GuestSql as _, StepRecord, StoredArtifact};

#[tokio::test]
async fn a_role_that_does_not_own_the_tables_still_runs_and_their_owner_compresses() {
    let t = TestDb::new().await;
    // Tables an older wasmig made (default compression), owned by the admin, written by
    // a role that may use but not alter them: what a deploy role often is.
    let role = format!("{}_writer", t.name);
    let mut admin = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN;
             CREATE TABLE wasmig_artifact (
                 revision TEXT PRIMARY KEY, kind TEXT NOT NULL, checksum TEXT NOT NULL,
                 manifest TEXT NOT NULL, up_sql TEXT, down_sql TEXT, component BYTEA,
                 source_checksum TEXT, stored_at TIMESTAMPTZ NOT NULL);
             GRANT ALL ON SCHEMA public TO {role};
             GRANT ALL ON wasmig_artifact TO {role};"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    const COMPRESSION: &str = "SELECT attcompression::text FROM pg_attribute
             WHERE attrelid = 'wasmig_artifact'::regclass AND attname = 'component'";
    let writer = PgDatabase::connect(
        &DatabaseUrl::parse(&t.url_as(Some(&role))).unwrap(),
        None,
        false,
    )
    .await
    .unwrap();
    let outcome = writer.ensure_version_tables().await;
    writer.close().await;
    let left: String = sqlx::query_scalar(COMPRESSION)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    // The owner's run sets lz4, once.
    t.db.ensure_version_tables().await.unwrap();
    let owned: String = sqlx::query_scalar(COMPRESSION)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    let mut cleanup = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut cleanup)
        .await
        .ok();
    outcome.unwrap();
    assert_eq!(
        left, "",
        "a role that does not own the table leaves it alone"
    );
    if t.db
        .control()
        .await
        .server_version_num()
        .is_some_and(|v| v >= 140_000)
    {
        assert_eq!(owned, "l");
    }
}

/// Runs that start together on a new database each create wasmig's tables, some of them
/// outside the migration lock (or under a lease while another holds the advisory lock):
/// they wait for each other, and every one of them succeeds.
#[tokio::test]
async fn runs_creating_the_tables_at_once_wait_for_each_other() {
    let t = TestDb::new().await;
    let url = DatabaseUrl::parse(&t.url_as(None)).unwrap();
    let mut runs = Vec::new();
    for _ in 0..8 {
        runs.push(PgDatabase::connect(&url, None, false).await.unwrap());
    }
    let outcomes =
        futures_util::future::join_all(runs.iter().map(|db| db.ensure_version_tables())).await;
    for db in runs {
        db.close().await;
    }
    for outcome in outcomes {
        outcome.unwrap();
    }
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM wasmig_schema")
        .fetch_one(&mut *t.db.control().await)
        .await
        .unwrap();
    assert_eq!(
        versions,
        crate::store::SCHEMA_VERSION,
        "each version recorded once"
    );
}

/// Where advisory locks are refused (some YugabyteDB versions; here a role denied the
/// function), the tables are still created, as before the serialising lock.
#[tokio::test]
async fn the_tables_are_created_where_advisory_locks_are_refused() {
    let t = TestDb::new().await;
    let role = format!("{}_nolock", t.name);
    let mut admin = PgConnection::connect(&t.url_as(None)).await.unwrap();
    // pg_proc is per database: this revoke reaches no other test's database.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN;
         GRANT ALL ON SCHEMA public TO {role};
         REVOKE EXECUTE ON FUNCTION pg_catalog.pg_advisory_xact_lock(bigint) FROM PUBLIC;"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let db = PgDatabase::connect(
        &DatabaseUrl::parse(&t.url_as(Some(&role))).unwrap(),
        None,
        false,
    )
    .await
    .unwrap();
    let outcome = db.ensure_version_tables().await;
    let heads = db.heads().await;
    db.close().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    let mut cleanup = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut cleanup)
        .await
        .ok();
    outcome.unwrap();
    assert_eq!(heads.unwrap(), Vec::<String>::new());
}

/// A session that holds the tables' key (a migration's own SQL may take it) delays the
/// creation by a bounded wait, and does not stop it.
#[tokio::test]
async fn a_session_holding_the_tables_key_does_not_stop_their_creation() {
    let t = TestDb::new().await;
    let mut holder = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT pg_catalog.pg_advisory_lock({})",
        crate::PG_TABLES_KEY
    )))
    .execute(&mut holder)
    .await
    .unwrap();
    let created = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        t.db.ensure_version_tables(),
    )
    .await;
    let _ = holder.close().await;
    created.expect("still waiting after 60 s").unwrap();
}

#[tokio::test]
async fn a_step_finishes_in_one_statement_unless_its_transaction_ended() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    // Components are stored lz4-compressed on PostgreSQL 14+ (built with lz4, as Debian's
    // is; checked below on a stored value too).
    let modern =
        t.db.control()
            .await
            .server_version_num()
            .is_some_and(|v| v >= 140_000);
    if modern {
        let mut s = t.session().await;
        let compression = scalar(
            &mut *s,
            "SELECT attcompression::text FROM pg_attribute
                 WHERE attrelid = 'wasmig_artifact'::regclass AND attname = 'component'",
            &[],
        )
        .await;
        assert_eq!(
            format!("{compression:?}"),
            format!("{:?}", Value::Text(text("l")))
        );
        s.rollback().await.unwrap();
    }
    // Compressible and incompressible bytes, every value of a byte, survive the trip; more
    // of them than are spelled in the statement's text (`INLINE_BYTES`), so bound.
    let component: Vec<u8> = (0..100_000u32)
        .map(|i| {
            if i < 50_000 {
                (i % 256) as u8
            } else {
                (i.wrapping_mul(2_654_435_761) >> 13) as u8
            }
        })
        .collect();
    let stored = StoredArtifact {
        revision: "a".into(),
        kind: "wasm".into(),
        checksum: "c1".into(),
        manifest: "kind = 'wasm'".into(),
        up_sql: None,
        down_sql: None,
        component: Some(component.into()),
        source_checksum: None,
    };
    let now = Utc::now();
    let add = [text("a")];
    let finished = |artifact, clear_checkpoint| FinishedStep {
        record: StepRecord {
            remove: &[],
            add: &add,
            revision: "a",
            direction: crate::Event::Upgrade,
            checksum: "c1",
            started_at: now,
            finished_at: now,
            error: None,
            sqlstate: None,
        },
        artifact,
        clear_checkpoint,
        expected: None,
    };
    // A batched step's checkpoint goes with its last batch.
    let mut s = t.session().await;
    s.save_checkpoint(&Checkpoint {
        revision: "a".into(),
        direction: crate::Direction::Upgrade,
        remove_heads: vec![],
        add_heads: vec![text("a")],
        checkpoint: "42".into(),
        batches: 1,
        checksum: "c1".into(),
        started_at: now,
        updated_at: now,
    })
    .await
    .unwrap();
    s.commit().await.unwrap();
    assert_eq!(t.db.checkpoints().await.unwrap().len(), 1);

    // A statement that ended the transaction (here COMMIT; BEGIN behind the session's
    // back): nothing is written, not even in the transaction that statement began.
    let mut s = t.db.begin_session().await.unwrap();
    sqlx::raw_sql("COMMIT; BEGIN")
        .execute(s.conn())
        .await
        .unwrap();
    assert!(!s.finish_step(&finished(Some(&stored), true)).await.unwrap());
    Box::new(s).rollback().await.unwrap();
    assert!(t.db.heads().await.unwrap().is_empty());
    assert!(t.db.history().await.unwrap().is_empty());
    assert!(t.db.stored_artifact("a").await.unwrap().is_none());
    assert_eq!(t.db.checkpoints().await.unwrap().len(), 1);
    // Ended without a new BEGIN (autocommit): the guard fails the message's implicit
    // transaction, so nothing commits on its own either.
    let mut s = t.db.begin_session().await.unwrap();
    sqlx::raw_sql("COMMIT").execute(s.conn()).await.unwrap();
    assert!(!s.finish_step(&finished(Some(&stored), true)).await.unwrap());
    drop(s);
    assert!(t.db.heads().await.unwrap().is_empty());
    assert!(t.db.history().await.unwrap().is_empty());
    assert!(t.db.stored_artifact("a").await.unwrap().is_none());
    assert_eq!(t.db.checkpoints().await.unwrap().len(), 1);

    // Intact: version, history, artifact and checkpoint in one go.
    let mut s = t.session().await;
    assert!(s.finish_step(&finished(Some(&stored), true)).await.unwrap());
    s.commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["a"]);
    assert_eq!(t.db.history().await.unwrap().len(), 1);
    assert_eq!(
        t.db.stored_artifact("a").await.unwrap(),
        Some(stored.clone())
    );
    assert!(t.db.checkpoints().await.unwrap().is_empty());
    if modern {
        let mut s = t.session().await;
        let method = scalar(
            &mut *s,
            "SELECT pg_column_compression(component) FROM wasmig_artifact",
            &[],
        )
        .await;
        assert_eq!(
            format!("{method:?}"),
            format!("{:?}", Value::Text(text("lz4")))
        );
        s.rollback().await.unwrap();
    }
    // A downgrade's finish deletes the copy.
    let mut s = t.session().await;
    let down = FinishedStep {
        record: StepRecord {
            remove: &add,
            add: &[],
            direction: crate::Event::Downgrade,
            ..finished(None, false).record
        },
        artifact: None,
        clear_checkpoint: false,
        expected: None,
    };
    assert!(s.finish_step(&down).await.unwrap());
    s.commit().await.unwrap();
    assert!(t.db.heads().await.unwrap().is_empty());
    assert!(t.db.stored_artifact("a").await.unwrap().is_none());
}

#[tokio::test]
async fn steps_are_recorded_in_the_version_tables() {
    let t = TestDb::new().await;
    assert!(t.db.heads().await.unwrap().is_empty());
    assert!(t.db.history().await.unwrap().is_empty());
    // Reading did not create the tables.
    let mut s = t.session().await;
    let exists = scalar(
        &mut *s,
        "SELECT to_regclass('wasmig_version') IS NOT NULL",
        &[],
    )
    .await;
    assert_eq!(format!("{exists:?}"), format!("{:?}", Value::Bool(false)));
    s.rollback().await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    t.db.ensure_version_tables().await.unwrap();

    let start = Utc::now();
    let step =
        |remove: &'static [String], add: &'static [String], revision, direction| StepRecord {
            remove,
            add,
            revision,
            direction: str::parse(direction).unwrap(),
            checksum: "ab12",
            started_at: start,
            finished_at: start + TimeDelta::milliseconds(1500),
            error: None,
            sqlstate: None,
        };
    static NONE: [String; 0] = [];
    static A: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| [text("a")]);
    static BC: std::sync::LazyLock<[String; 2]> =
        std::sync::LazyLock::new(|| [text("c"), text("b")]);
    let mut s = t.session().await;
    s.record_step(&step(&NONE, &*A, "a", "upgrade"))
        .await
        .unwrap();
    s.commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["a"]);
    let mut s = t.session().await;
    s.record_step(&step(&*A, &*BC, "b", "upgrade"))
        .await
        .unwrap();
    s.commit().await.unwrap();
    // A rolled back step leaves no trace.
    let mut s = t.session().await;
    s.record_step(&step(&*BC, &NONE, "b", "downgrade"))
        .await
        .unwrap();
    s.rollback().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["b", "c"]);
    let history = t.db.history().await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].revision.as_str(), history[1].revision.as_str()),
        ("a", "b")
    );
    assert!(history[0].id < history[1].id);
    assert_eq!(history[1].direction, crate::Event::Upgrade);
    assert_eq!(history[1].checksum, "ab12");
    assert_eq!(history[1].duration_ms, 1500);
    assert_eq!(history[1].wasmig_version, env!("CARGO_PKG_VERSION"));
    // PostgreSQL keeps microseconds.
    assert_eq!(
        history[0].started_at.timestamp_micros(),
        start.timestamp_micros()
    );
    // A head both removed and added stays (as `resolve` and `stamp` record them), and
    // text with quotes and backslashes is stored as given.
    static B: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| [text("b")]);
    let mut s = t.session().await;
    let mut kept = step(&*BC, &*B, "b", "resolve");
    kept.error = Some(r"resolved as 'applied' \ \x00");
    s.record_step(&kept).await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["b"]);
    let history = t.db.history().await.unwrap();
    assert_eq!(
        history[2].error.as_deref(),
        Some(r"resolved as 'applied' \ \x00")
    );

    let mut s = t.session().await;
    let err = s.execute("INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version) VALUES ('x', 'sideways', '', now(), now(), 0, '')", &[]).await.unwrap_err();
    assert_eq!(err.code, "23514");
}

/// A step record for the store tests.
fn record<'a>(remove: &'a [String], add: &'a [String], revision: &'a str) -> StepRecord<'a> {
    let now = Utc::now();
    StepRecord {
        remove,
        add,
        revision,
        direction: crate::Event::Upgrade,
        checksum: "ab12",
        started_at: now,
        finished_at: now,
        error: None,
        sqlstate: None,
    }
}

#[tokio::test]
async fn tables_made_before_the_schema_version_are_adopted() {
    let t = TestDb::new().await;
    // The layout of an early wasmig: a narrower direction check, no error columns, and
    // no schema table.
    let mut admin = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);
         CREATE TABLE wasmig_history (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             revision TEXT NOT NULL,
             direction TEXT NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
             checksum TEXT NOT NULL, started_at TIMESTAMPTZ NOT NULL,
             finished_at TIMESTAMPTZ NOT NULL, duration_ms BIGINT NOT NULL,
             wasmig_version TEXT NOT NULL);
         INSERT INTO wasmig_version VALUES ('a');
         INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at,
             duration_ms, wasmig_version) VALUES ('a', 'upgrade', 'ab', now(), now(), 0, '0.0.1');",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    // Read-only commands read them as they are.
    let before = t.db.history().await.unwrap();
    assert_eq!((before.len(), before[0].error.as_deref()), (1, None));
    t.db.ensure_version_tables().await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM wasmig_schema")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(version, crate::SCHEMA_VERSION);
    // The wider check and the error columns are there: a failed step can be recorded.
    let (none, a) = (Vec::new(), vec![text("a")]);
    let mut s = t.session().await;
    let mut failed = record(&a, &none, "a");
    failed.direction = crate::Event::Failed;
    failed.error = Some("boom");
    s.record_step(&failed).await.unwrap();
    s.commit().await.unwrap();
    let history = t.db.history().await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].error.as_deref(), Some("boom"));
    assert!(t.db.heads().await.unwrap().is_empty());
    let _ = admin.close().await;
}

#[tokio::test]
async fn tables_of_a_newer_schema_are_refused() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    let mut admin = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO wasmig_schema (version, wasmig_version, migrated_at) VALUES (99, '9.0.0', now())",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    let err = t.db.ensure_version_tables().await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<DbError>(),
            Some(DbError::SchemaTooNew { found: 99, .. })
        ),
        "{err:#}"
    );
    // Reading still works.
    assert!(t.db.heads().await.unwrap().is_empty());
}

#[tokio::test]
async fn text_wasmig_writes_is_bound_whatever_the_session_reads_literals_as() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    // Text that would end a literal early if the session read backslashes as escapes.
    let hostile = r"x\'); DELETE FROM wasmig_version; --'' \\ $$ E'\'";
    let (none, a) = (Vec::new(), vec![text("a")]);
    let mut s = t.session().await;
    // The setting named by an expression: past the parser's refusal of `SET` (which is
    // why wasmig's own writes must not depend on it).
    s.batch(
        "SELECT set_config('standard_conforming' || '_strings', 'off', false);
         SET escape_string_warning = off",
    )
    .await
    .unwrap();
    let mut step = record(&none, &a, "a");
    step.error = Some(hostile);
    s.record_step(&step).await.unwrap();
    let now = Utc::now();
    s.save_checkpoint(&Checkpoint {
        revision: "b".into(),
        direction: crate::Direction::Upgrade,
        remove_heads: a.clone(),
        add_heads: vec![text("b")],
        checkpoint: hostile.into(),
        batches: 1,
        checksum: "cd".into(),
        started_at: now,
        updated_at: now,
    })
    .await
    .unwrap();
    s.commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["a"]);
    assert_eq!(
        t.db.history().await.unwrap()[0].error.as_deref(),
        Some(hostile)
    );
    assert_eq!(t.db.checkpoints().await.unwrap()[0].checkpoint, hostile);
}

#[tokio::test]
async fn a_write_that_does_not_land_is_refused_by_the_store_itself() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    // Beside the tamper check, which runs first in a step: the store confirms each write
    // touched its one row.
    let mut conn = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql("CREATE RULE swallow AS ON INSERT TO wasmig_history DO INSTEAD NOTHING")
        .execute(&mut conn)
        .await
        .unwrap();
    let store = crate::VersionStore::new(Dialect::Postgres, None);
    let (none, a) = (Vec::new(), vec![text("a")]);
    let err = store
        .record_step(&mut conn, &record(&none, &a, "a"))
        .await
        .unwrap_err();
    let tampered = err
        .downcast_ref::<crate::TablesTampered>()
        .expect("tampered");
    assert!(tampered.0.contains("changed 0 rows"), "{tampered:?}");
    let _ = conn.close().await;
}

#[tokio::test]
async fn a_step_finished_in_one_statement_confirms_every_row_it_wrote() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    // A trigger that skips the history row: the one-statement finish sees it wrote none.
    let mut conn = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER skip BEFORE INSERT ON wasmig_history FOR EACH ROW EXECUTE FUNCTION skip();",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let store = crate::VersionStore::new(Dialect::Postgres, None);
    let (none, a) = (Vec::new(), vec![text("a")]);
    let finished = FinishedStep {
        record: record(&none, &a, "a"),
        artifact: None,
        clear_checkpoint: false,
        expected: None,
    };
    let err = store.finish_step(&mut conn, &finished).await.unwrap_err();
    let tampered = err
        .downcast_ref::<crate::TablesTampered>()
        .expect("tampered");
    assert!(
        tampered
            .0
            .contains("appending a to wasmig_history changed 0 rows"),
        "{tampered:?}"
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn a_step_recorded_in_one_round_trip_still_names_what_tampered_with_the_tables() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    let (none, a) = (Vec::new(), vec![text("a")]);
    let finished = |record| FinishedStep {
        record,
        artifact: None,
        clear_checkpoint: false,
        expected: None,
    };
    // Made by the step itself, in its transaction: a rule makes the recording statement
    // fail (its savepoint is rolled back and the guard names the rule); a trigger is seen
    // by the statement's cheap look, which writes nothing, and the full check names it.
    for (tamper, named) in [
        (
            "CREATE RULE hide AS ON INSERT TO wasmig_history DO INSTEAD NOTHING",
            "has the rule hide",
        ),
        (
            "CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
             CREATE TRIGGER skip BEFORE INSERT ON wasmig_version FOR EACH ROW EXECUTE FUNCTION skip()",
            "has the trigger skip",
        ),
        (
            "ALTER TABLE wasmig_version RENAME TO wasmig_version_old;
             CREATE VIEW wasmig_version AS SELECT * FROM wasmig_version_old",
            "is not a plain table",
        ),
    ] {
        let mut s = t.db.begin_session().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(tamper))
            .execute(s.conn())
            .await
            .unwrap();
        let err = s
            .finish_step(&finished(record(&none, &a, "a")))
            .await
            .unwrap_err();
        let tampered = err
            .downcast_ref::<crate::TablesTampered>()
            .unwrap_or_else(|| panic!("{tamper}: {err:#}"));
        assert!(tampered.0.contains(named), "{tamper}: {tampered:?}");
        Box::new(s).rollback().await.unwrap();
    }
    assert!(t.db.heads().await.unwrap().is_empty());
    assert!(t.db.history().await.unwrap().is_empty());

    // A stale flag: a trigger made and dropped leaves `relhastriggers` set until a vacuum.
    // The cheap look flags it, the full check finds nothing, and the step is recorded.
    let mut admin = PgConnection::connect(&t.url_as(None)).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER noop BEFORE INSERT ON wasmig_history FOR EACH ROW EXECUTE FUNCTION noop();
         DROP TRIGGER noop ON wasmig_history",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let flagged: bool = sqlx::query_scalar(
        "SELECT relhastriggers FROM pg_class WHERE oid = 'wasmig_history'::regclass",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        flagged,
        "the flag outlives its trigger, or this proves nothing"
    );
    let mut s = t.session().await;
    assert!(
        s.finish_step(&finished(record(&none, &a, "a")))
            .await
            .unwrap()
    );
    s.commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["a"]);

    // Values that would end a quoted literal, in a session that reads literals the old way
    // (backslashes escape in plain quotes): recorded exactly, since they are sent in hex.
    let hostile = text("b\\'); DELETE FROM wasmig_version; -- é'");
    let b = vec![hostile.clone()];
    let mut s = t.db.begin_session().await.unwrap();
    sqlx::raw_sql("SET standard_conforming_strings = off; SET backslash_quote = on")
        .execute(s.conn())
        .await
        .unwrap();
    assert!(
        s.finish_step(&finished(record(&a, &b, &hostile)))
            .await
            .unwrap()
    );
    Box::new(s).commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), b);
    let history = t.db.history().await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].revision, hostile);
    let _ = admin.close().await;
}

#[tokio::test]
async fn times_read_by_the_simple_protocol_are_exact_whatever_the_date_style() {
    // wasmig reads its tables' times as text on the control connection, whose `DateStyle`
    // and `TimeZone` it pins at start-up: a database default (which a migration can set
    // for the next run) must not change what is read.
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    let start = Utc::now();
    let mut s = t.session().await;
    let mut step = record(&[], &[], "a");
    step.started_at = start;
    step.finished_at = start + TimeDelta::microseconds(1_234_567);
    s.record_step(&step).await.unwrap();
    s.commit().await.unwrap();
    let settings = [
        "DateStyle = 'SQL, DMY'",
        "DateStyle = 'German'",
        "DateStyle = 'Postgres, YMD'",
        "TimeZone = 'Asia/Kathmandu'",
        "TimeZone = 'America/St_Johns'",
        "IntervalStyle = 'sql_standard'",
    ];
    for setting in settings {
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        let alter = format!("ALTER DATABASE {} SET {setting}", t.name);
        sqlx::raw_sql(AssertSqlSafe(alter))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let db = PgDatabase::connect(&DatabaseUrl::parse(&t.url_as(None)).unwrap(), None, false)
            .await
            .unwrap();
        let history = db.history().await.unwrap();
        assert_eq!(
            (
                history[0].started_at.timestamp_micros(),
                history[0].finished_at.timestamp_micros()
            ),
            (
                start.timestamp_micros(),
                start.timestamp_micros() + 1_234_567
            ),
            "{setting}"
        );
        db.close().await;
    }
}

/// A SQL revision's script carries what its step's record needs first (wasmig's limits,
/// the record's savepoint, the server's word on sqlx's statements): with the record
/// prepared, the script and the record are two exchanges, not three. Anything sent after
/// the script (a statement of the migration's) makes the record ask again, and each step
/// is recorded either way.
#[tokio::test]
async fn a_scripts_message_carries_what_its_record_needs_unless_something_came_between() {
    let t = TestDb::new().await;
    let lock = t.db.lock(Duration::from_secs(5)).await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    let now = Utc::now();
    let mut expected = Expected::default();
    let mut heads: Vec<String> = Vec::new();
    // (revision, script, a statement sent after it, the exchanges from the script to the
    // record's end, that statement's left out). The first step prepares the record: one
    // exchange more.
    let steps = [
        ("a", "CREATE TABLE t (n int)", None, 3),
        ("b", "INSERT INTO t VALUES (1)", None, 2),
        (
            "c",
            "SELECT n FROM t; SELECT 1 -- no line break at the end",
            None,
            2,
        ),
        // The statement after the script is the migration's, cleared at the next script
        // (which then prepares the record again).
        (
            "d",
            "INSERT INTO t VALUES (2)",
            Some("INSERT INTO t VALUES (3)"),
            3,
        ),
    ];
    for (revision, script, after, exchanges) in steps {
        let mut s = t.db.begin_session().await.unwrap();
        let before = s.exchanges().expect("through the relay");
        s.batch_then_record(script).await.unwrap();
        let mut between = 0;
        if let Some(sql) = after {
            let at = s.exchanges().unwrap();
            s.execute(sql, &[]).await.unwrap();
            between = s.exchanges().unwrap() - at;
        }
        let add = [text(revision)];
        let finished = FinishedStep {
            record: StepRecord {
                remove: &heads,
                add: &add,
                revision,
                direction: crate::Event::Upgrade,
                checksum: "c1",
                started_at: now,
                finished_at: now,
                error: None,
                sqlstate: None,
            },
            artifact: None,
            clear_checkpoint: false,
            expected: Some(&expected),
        };
        assert!(s.finish_step(&finished).await.unwrap(), "{revision}");
        assert_eq!(
            s.exchanges().unwrap() - before - between,
            exchanges,
            "{revision}: the exchanges from the script to the record's end"
        );
        Box::new(s).commit().await.unwrap();
        expected = expected.after(&heads, &add);
        heads = add.to_vec();
    }
    assert_eq!(t.db.heads().await.unwrap(), ["d"]);
    assert_eq!(t.db.history_len().await.unwrap(), 4);
    let mut s = t.session().await;
    assert_eq!(
        format!("{:?}", scalar(&mut *s, "SELECT count(*) FROM t", &[]).await),
        format!("{:?}", Value::Int64(3))
    );
    s.rollback().await.unwrap();
    lock.release().await.unwrap();
    t.db.close().await;
}

/// The server's own reading of a script left open followed by what wasmig sends after it
/// ([`PgSession::prelude_suffix`]): whatever the script left open (a string, a quoted name,
/// a comment, a dollar quote), the message does not parse, so nothing of it runs. wasmig's
/// parser refuses such a script before it is sent; this is the line behind it.
#[tokio::test]
async fn a_script_left_open_cannot_parse_with_what_wasmig_sends_after_it() {
    let t = TestDb::new().await;
    let lock = t.db.lock(Duration::from_secs(5)).await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    let mut s = t.db.begin_session().await.unwrap();
    s.run_script("CREATE TABLE t (n int)".into()).await.unwrap();
    Box::new(s).commit().await.unwrap();
    let open = [
        "'", "E'\\", "U&'", "\"", "/*", "/* /* */", "$$", "$q$ ' $$", "' ' '", "'''",
    ];
    for end in open {
        let mut s = t.db.begin_session().await.unwrap();
        let suffix = s.prelude_suffix();
        assert!(
            !suffix.contains(['$', '"', '\\']) && !suffix.contains("*/"),
            "{suffix}"
        );
        assert_eq!(suffix.matches('\'').count() % 2, 0, "{suffix}");
        let message = format!(
            "INSERT INTO t VALUES (1);\nSELECT {end}{}",
            s.prelude_suffix()
        );
        let e = s
            .run_script(message)
            .await
            .expect_err(&format!("a script ending {end} ran"));
        assert_eq!(e.code, "42601", "{end}: {}", e.message);
        Box::new(s).rollback().await.unwrap();
    }
    // Ends that close: the message runs, the suffix with it.
    for end in ["1 -- a comment with no line break", "1", "1;", "'a''b'"] {
        let mut s = t.db.begin_session().await.unwrap();
        let message = format!(
            "INSERT INTO t VALUES (1);\nSELECT {end}{}",
            s.prelude_suffix()
        );
        s.run_script(message).await.unwrap();
        Box::new(s).commit().await.unwrap();
    }
    let mut s = t.session().await;
    assert_eq!(
        format!("{:?}", scalar(&mut *s, "SELECT count(*) FROM t", &[]).await),
        format!("{:?}", Value::Int64(4))
    );
    s.rollback().await.unwrap();
    lock.release().await.unwrap();
    t.db.close().await;
}

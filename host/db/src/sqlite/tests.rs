//! The SQLite backend's tests, each on a database file of its own in the temporary
//! directory: values by storage class and the `WASMIG-BIND` refusals, errors, cursors,
//! savepoints, cancelling, refused and foreign transaction control, and the version
//! tables.
//!
//! Not here: the backend-neutral parts (the `lock`, `copy`, `value` and `tx_control`
//! modules test themselves).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::{StepRecord, VERSION_TABLE};
use wasmig_contract::{ArrayValue, Value};

/// A fresh database file for one test, deleted when the test ends.
struct TestDb {
    path: PathBuf,
    db: SqliteDatabase,
}

impl TestDb {
    async fn new() -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "wasmig_dbtest_{}_{}_{nanos}.db",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let url = DatabaseUrl::Sqlite { path: path.clone() };
        TestDb {
            db: SqliteDatabase::connect(&url).await.unwrap(),
            path,
        }
    }

    async fn session(&self) -> Box<dyn Session> {
        self.db.begin().await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn debug<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

#[tokio::test]
async fn storable_values_round_trip_by_storage_class() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE v (n INTEGER, x)").await.unwrap();
    let cases = [
        (Value::Null, Value::Null),
        (Value::Bool(true), Value::Int64(1)),
        (Value::Bool(false), Value::Int64(0)),
        (Value::Int16(-3), Value::Int64(-3)),
        (Value::Int32(70_000), Value::Int64(70_000)),
        (Value::Int64(i64::MIN), Value::Int64(i64::MIN)),
        (Value::Float32(1.5), Value::Float64(1.5)),
        (Value::Float64(-2.25e100), Value::Float64(-2.25e100)),
        (text("héllo ✓"), text("héllo ✓")),
        (Value::Bytes(vec![0, 1, 255]), Value::Bytes(vec![0, 1, 255])),
        (Value::Json("{\"a\": 1}".into()), text("{\"a\": 1}")),
        (Value::Jsonb("[1]".into()), text("[1]")),
        (
            Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            text("67e55044-10b1-426f-9247-bb680e5fe0c8"),
        ),
        (Value::Date("2024-02-29".into()), text("2024-02-29")),
        (Value::Time("03:04:05.5".into()), text("03:04:05.5")),
        (
            Value::Timestamp("2024-01-02T03:04:05".into()),
            text("2024-01-02T03:04:05"),
        ),
        (
            Value::Timestamptz("2024-01-02T03:04:05Z".into()),
            text("2024-01-02T03:04:05Z"),
        ),
    ];
    for (i, (bound, _)) in cases.iter().enumerate() {
        let n = Value::Int64(i as i64);
        assert_eq!(
            s.execute("INSERT INTO v (n, x) VALUES (?, ?)", &[n, bound.clone()])
                .await
                .unwrap(),
            1
        );
    }
    let result = s.query("SELECT x FROM v ORDER BY n", &[]).await.unwrap();
    let expected: Vec<Vec<Value>> = cases.iter().map(|(_, read)| vec![read.clone()]).collect();
    assert_eq!(debug(&result.rows), debug(&expected));
    // SQLite's date functions read the bound text.
    let date = s
        .query(
            "SELECT date(?, '+1 day')",
            &[Value::Date("2024-02-29".into())],
        )
        .await
        .unwrap();
    assert_eq!(debug(&date.rows), debug(vec![vec![text("2024-03-01")]]));
}

#[tokio::test]
async fn columns_report_the_declared_type_even_for_an_empty_result() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE c (i INTEGER, t VARCHAR(10), r REAL, b BLOB, u)")
        .await
        .unwrap();
    let result = s
        .query("SELECT i, t, r, b, u, 1 + 1 AS two FROM c", &[])
        .await
        .unwrap();
    assert!(result.rows.is_empty());
    let columns: Vec<(&str, &str)> = result
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("i", "INTEGER"),
            ("t", "TEXT"),
            ("r", "REAL"),
            ("b", "BLOB"),
            ("u", ""),
            ("two", "")
        ]
    );
}

#[tokio::test]
async fn numeric_arrays_and_malformed_values_are_refused_with_wasmig_bind() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let cases = [
        (
            Value::Numeric("1.5".into()),
            "parameter ?2: SQLite has no exact numeric type",
        ),
        (
            Value::Array(ArrayValue::Int32(vec![Some(1)])),
            "parameter ?2: SQLite has no array type",
        ),
        (
            Value::Date("2024-13-01".into()),
            "parameter ?2: `2024-13-01` is not a date YYYY-MM-DD",
        ),
        (
            Value::Uuid("nope".into()),
            "parameter ?2: `nope` is not a UUID",
        ),
        (
            Value::Json("{".into()),
            "parameter ?2: `{` is not a JSON document",
        ),
    ];
    for (value, message) in cases {
        let err = s
            .execute("SELECT ?, ?", &[Value::Int32(1), value])
            .await
            .unwrap_err();
        assert_eq!(err.code, "WASMIG-BIND");
        assert!(err.message.contains(message), "{}", err.message);
    }
    s.batch("CREATE TABLE m (n)").await.unwrap();
    let rows = vec![vec![Value::Int32(1)], vec![Value::Numeric("2".into())]];
    let err = s
        .execute_many("INSERT INTO m VALUES (?)", &rows)
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with("row 2, parameter ?1: "),
        "{}",
        err.message
    );
    let count = s.query("SELECT count(*) FROM m", &[]).await.unwrap();
    assert_eq!(debug(&count.rows), debug(vec![vec![Value::Int64(0)]]));
}

#[tokio::test]
async fn database_errors_carry_the_extended_result_code() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE u (id INTEGER, name TEXT UNIQUE)")
        .await
        .unwrap();
    s.execute("INSERT INTO u VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let err = s
        .execute("INSERT INTO u VALUES (2, 'a')", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code, "2067");
    assert_eq!(err.message, "UNIQUE constraint failed: u.name");
    let err = s.query("SELECT * FROM missing", &[]).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("1", "no such table: missing")
    );
}

#[tokio::test]
async fn a_cursor_hands_out_ten_thousand_rows_in_chunks_between_other_statements() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch(
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
             INSERT INTO big (id) SELECT x FROM c",
    )
    .await
    .unwrap();
    let mut cursor = s
        .open_cursor(
            "SELECT id FROM big WHERE id > ? ORDER BY id",
            &[Value::Int64(0)],
        )
        .await
        .unwrap();
    assert_eq!(cursor.columns[0].type_name, "INTEGER");
    let (mut seen, mut chunks) = (0, 0);
    loop {
        let rows = s.fetch(&mut cursor, 1000).await.unwrap();
        if rows.is_empty() {
            break;
        }
        chunks += 1;
        for row in &rows {
            seen += 1;
            assert_eq!(debug(&row[0]), debug(Value::Int64(seen)));
        }
        let last = rows.last().unwrap()[0].clone();
        assert_eq!(
            s.execute("UPDATE big SET v = v + 1 WHERE id = ?", &[last])
                .await
                .unwrap(),
            1
        );
    }
    assert_eq!((seen, chunks), (10_000, 10));
    assert!(cursor.done);
    s.close_cursor(&mut cursor).await.unwrap();
    s.close_cursor(&mut cursor).await.unwrap();
    let sum = s.query("SELECT sum(v) FROM big", &[]).await.unwrap();
    assert_eq!(debug(&sum.rows), debug(vec![vec![Value::Int64(10)]]));
}

#[tokio::test]
async fn rolling_back_a_savepoint_undoes_its_work() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE sp (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    s.savepoint("wasmig_sp_1").await.unwrap();
    s.execute("INSERT INTO sp VALUES (1)", &[]).await.unwrap();
    assert_eq!(
        s.execute("INSERT INTO sp VALUES (1)", &[])
            .await
            .unwrap_err()
            .code,
        "1555"
    );
    s.rollback_to_savepoint("wasmig_sp_1").await.unwrap();
    s.savepoint("wasmig_sp_2").await.unwrap();
    s.execute("INSERT INTO sp VALUES (2)", &[]).await.unwrap();
    s.release_savepoint("wasmig_sp_2").await.unwrap();
    assert_eq!(
        s.savepoint("x; DROP TABLE sp").await.unwrap_err().code,
        "WASMIG-STATE"
    );
    s.commit().await.unwrap();
    let mut s = t.session().await;
    let ids = s.query("SELECT id FROM sp", &[]).await.unwrap();
    assert_eq!(debug(&ids.rows), debug(vec![vec![Value::Int64(2)]]));
}

#[tokio::test]
async fn the_canceller_interrupts_a_long_query_without_poisoning_the_connection() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let canceller = s.canceller();
    // Cancelling while nothing runs is harmless.
    canceller.cancel().await;
    s.execute("SELECT 1", &[]).await.unwrap();
    let started = Instant::now();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        canceller.cancel().await;
    });
    let endless =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let err = s.query(endless, &[]).await.unwrap_err();
    cancel.await.unwrap();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("9", "interrupted")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The session goes on, and so does the next one on the pooled connection.
    s.execute("SELECT 1", &[]).await.unwrap();
    let stale = s.canceller();
    drop(s);
    stale.cancel().await;
    let bounded = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*) FROM c";
    // Outside any session (the dropped session's handler is still installed).
    let count: i64 = sqlx::query_scalar(bounded)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 100_000);
    let mut s = t.session().await;
    let count = s.query(bounded, &[]).await.unwrap();
    assert_eq!(debug(&count.rows), debug(vec![vec![Value::Int64(100_000)]]));
    s.rollback().await.unwrap();
}

#[tokio::test]
async fn a_cancel_between_two_statements_of_a_call_still_stops_it() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let canceller = s.canceller();
    // Many short statements in one call: most cancels land between two of them.
    let rows: Vec<Vec<Value>> = (0..20_000).map(|_| vec![Value::Int64(20_000)]).collect();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        canceller.cancel().await;
    });
    let started = Instant::now();
    let err = s
        .execute_many(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c",
            &rows,
        )
        .await
        .unwrap_err();
    cancel.await.unwrap();
    assert_eq!(err.code, "9", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The next call starts afresh.
    s.execute("SELECT 1", &[]).await.unwrap();
}

#[tokio::test]
async fn transaction_control_is_refused_but_trigger_bodies_are_not() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let err = s
        .batch("CREATE TABLE early (x INTEGER); COMMIT; CREATE TABLE late (x INTEGER)")
        .await
        .unwrap_err();
    assert_eq!(err.code, "WASMIG-STATE");
    assert!(
        err.message.starts_with("`COMMIT` (statement 2"),
        "{}",
        err.message
    );
    assert!(s.execute("end transaction", &[]).await.is_err());
    assert!(s.query("RELEASE x", &[]).await.is_err());
    assert!(s.open_cursor("BEGIN", &[]).await.is_err());
    s.batch(
        "CREATE TABLE t (x INTEGER);
             CREATE TABLE audit (msg TEXT);
             CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN
                 INSERT INTO audit VALUES ('COMMIT; ' || CASE WHEN new.x > 0 THEN 'up' ELSE 'down' END);
             END;
             INSERT INTO t VALUES (1)",
    )
    .await
    .unwrap();
    let audit = s.query("SELECT msg FROM audit", &[]).await.unwrap();
    assert_eq!(debug(&audit.rows), debug(vec![vec![text("COMMIT; up")]]));
    assert!(!t.db.table_exists("early").await.unwrap());
    // A rolled-back savepoint is not the end of the transaction.
    s.savepoint("a").await.unwrap();
    s.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    s.rollback_to_savepoint("a").await.unwrap();
    assert!(s.transaction_intact().await.unwrap());
    s.commit().await.unwrap();
    assert!(t.db.table_exists("audit").await.unwrap());
}

#[tokio::test]
async fn a_transaction_ended_behind_wasmigs_back_is_detected_and_nothing_commits() {
    let t = TestDb::new().await;
    // `OR ROLLBACK` rolls the whole transaction back from inside a statement.
    let mut s = t.session().await;
    s.batch("CREATE TABLE u (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    s.execute("INSERT INTO u VALUES (1)", &[]).await.unwrap();
    assert!(
        s.execute("INSERT OR ROLLBACK INTO u VALUES (1)", &[])
            .await
            .is_err()
    );
    assert!(!s.transaction_intact().await.unwrap());
    s.rollback().await.unwrap();
    // A COMMIT that got past the check is turned into a rollback, and so are the
    // statements that would then autocommit.
    let mut s = t.db.begin_session().await.unwrap();
    s.run_script("CREATE TABLE v (x INTEGER)".into())
        .await
        .unwrap();
    assert!(s.run_script("COMMIT".into()).await.is_err());
    assert!(
        s.run_script("CREATE TABLE w (x INTEGER)".into())
            .await
            .is_err()
    );
    assert!(!s.transaction_intact().await.unwrap());
    Box::new(s).rollback().await.unwrap();
    assert!(!t.db.table_exists("v").await.unwrap());
    assert!(!t.db.table_exists("w").await.unwrap());
    // The pooled connections commit normally again.
    t.db.ensure_version_tables().await.unwrap();
    assert!(t.db.table_exists(VERSION_TABLE).await.unwrap());
}

#[tokio::test]
async fn rollback_succeeds_after_an_interrupted_write() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE w (x INTEGER)").await.unwrap();
    let canceller = s.canceller();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel().await;
    });
    let endless = "INSERT INTO w WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
    assert_eq!(s.execute(endless, &[]).await.unwrap_err().code, "9");
    cancel.await.unwrap();
    s.rollback().await.unwrap();
    assert!(!t.db.table_exists("w").await.unwrap());
}

#[tokio::test]
async fn steps_are_recorded_in_the_version_tables() {
    let t = TestDb::new().await;
    assert!(t.db.heads().await.unwrap().is_empty());
    assert!(t.db.history().await.unwrap().is_empty());
    assert!(!t.db.table_exists(VERSION_TABLE).await.unwrap());
    t.db.ensure_version_tables().await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    let start = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456Z")
        .unwrap()
        .with_timezone(&Utc);
    let (none, a, bc) = (
        Vec::new(),
        vec!["a".to_owned()],
        vec!["c".to_owned(), "b".to_owned()],
    );
    let step = |remove, add, revision, direction| StepRecord {
        remove,
        add,
        revision,
        direction: str::parse(direction).unwrap(),
        checksum: "ab12",
        started_at: start,
        finished_at: start + TimeDelta::milliseconds(250),
        error: None,
        sqlstate: None,
    };
    let mut s = t.session().await;
    s.record_step(&step(&none, &a, "a", "upgrade"))
        .await
        .unwrap();
    s.commit().await.unwrap();
    let mut s = t.session().await;
    s.record_step(&step(&a, &bc, "b", "upgrade")).await.unwrap();
    s.commit().await.unwrap();
    let mut s = t.session().await;
    s.record_step(&step(&bc, &none, "b", "downgrade"))
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
    assert_eq!(history[1].started_at, start);
    assert_eq!(history[1].duration_ms, 250);
    assert_eq!(history[1].wasmig_version, env!("CARGO_PKG_VERSION"));
    let mut s = t.session().await;
    let stored = s
        .query("SELECT started_at FROM wasmig_history WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        debug(&stored.rows),
        debug(vec![vec![text("2024-01-02T03:04:05.123456Z")]])
    );
}

#[tokio::test]
async fn commits_are_visible_and_rollbacks_are_not() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE v (n INTEGER)").await.unwrap();
    s.execute("INSERT INTO v VALUES (?)", &[Value::Int32(1)])
        .await
        .unwrap();
    s.commit().await.unwrap();
    let mut s = t.session().await;
    s.execute("INSERT INTO v VALUES (?)", &[Value::Int32(2)])
        .await
        .unwrap();
    s.rollback().await.unwrap();
    let mut s = t.session().await;
    s.execute("INSERT INTO v VALUES (?)", &[Value::Int32(3)])
        .await
        .unwrap();
    drop(s);
    let mut s = t.session().await;
    let rows = s.query("SELECT n FROM v", &[]).await.unwrap();
    assert_eq!(debug(&rows.rows), debug(vec![vec![Value::Int64(1)]]));
    let rows: Vec<Vec<Value>> = (0..4).map(|i| vec![Value::Int32(i)]).collect();
    assert_eq!(
        s.execute_many("INSERT INTO v VALUES (?)", &rows)
            .await
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn a_missing_file_is_created_but_a_missing_directory_is_an_error() {
    let t = TestDb::new().await;
    assert!(t.path.exists());
    let url = DatabaseUrl::Sqlite {
        path: t.path.join("no/such/dir.db"),
    };
    let err = SqliteDatabase::connect(&url).await.err().unwrap();
    assert!(matches!(err, DbError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn a_history_table_made_before_the_schema_version_is_rebuilt_once() {
    let t = TestDb::new().await;
    sqlx::raw_sql(
        "CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);
         CREATE TABLE wasmig_history (
             id INTEGER PRIMARY KEY AUTOINCREMENT, revision TEXT NOT NULL,
             direction TEXT NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
             checksum TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
             duration_ms BIGINT NOT NULL, wasmig_version TEXT NOT NULL);
         INSERT INTO wasmig_version VALUES ('a');
         INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at,
             duration_ms, wasmig_version)
         VALUES ('a', 'upgrade', 'ab', '2024-01-02T03:04:05.000000Z',
                 '2024-01-02T03:04:05.000000Z', 0, '0.0.1');",
    )
    .execute(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(t.db.history().await.unwrap()[0].error, None);
    t.db.ensure_version_tables().await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM wasmig_schema")
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(version, crate::SCHEMA_VERSION);
    let (none, a) = (Vec::new(), vec!["a".to_owned()]);
    let now = Utc::now();
    let mut s = t.session().await;
    s.record_step(&StepRecord {
        remove: &a,
        add: &none,
        revision: "a",
        direction: crate::Event::Failed,
        checksum: "ab",
        started_at: now,
        finished_at: now,
        error: Some("boom"),
        sqlstate: Some("1"),
    })
    .await
    .unwrap();
    s.commit().await.unwrap();
    let history = t.db.history().await.unwrap();
    assert_eq!(history.len(), 2, "the old rows were kept");
    assert_eq!(history[1].error.as_deref(), Some("boom"));
}

#[tokio::test]
async fn a_trigger_that_swallows_wasmigs_write_is_refused() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    // SQLite has no catalog check like PostgreSQL's: the store confirms each write
    // touched its one row.
    let mut s = t.session().await;
    s.batch(
        "CREATE TRIGGER swallow BEFORE INSERT ON wasmig_history BEGIN SELECT RAISE(IGNORE); END",
    )
    .await
    .unwrap();
    let (none, a) = (Vec::new(), vec!["a".to_owned()]);
    let now = Utc::now();
    let err = s
        .record_step(&StepRecord {
            remove: &none,
            add: &a,
            revision: "a",
            direction: crate::Event::Upgrade,
            checksum: "ab",
            started_at: now,
            finished_at: now,
            error: None,
            sqlstate: None,
        })
        .await
        .unwrap_err();
    let tampered = err
        .downcast_ref::<crate::TablesTampered>()
        .expect("tampered");
    assert!(tampered.0.contains("changed 0 rows"), "{tampered:?}");
    s.rollback().await.unwrap();
    assert!(t.db.heads().await.unwrap().is_empty());
}

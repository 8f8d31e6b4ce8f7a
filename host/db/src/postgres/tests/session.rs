//! Tests of a session's statements and its connection: database errors, cursors,
//! savepoints, cancelling, commit and rollback, DDL against sqlx's statement cache,
//! refused transaction control, the state a step leaves on its connection, and a failed
//! connect.
//!
//! Not here: value encoding and decoding (`values`), the version tables
//! (`version_tables`).

use chrono::Utc;

use super::*;
use crate::{GuestSql as _, StepRecord};

#[tokio::test]
async fn database_errors_carry_sqlstate_constraint_and_table() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE u (id int CONSTRAINT u_pkey PRIMARY KEY)")
        .await
        .unwrap();
    s.execute("INSERT INTO u VALUES ($1)", &[Value::Int32(1)])
        .await
        .unwrap();
    let err = s
        .execute("INSERT INTO u VALUES ($1)", &[Value::Int32(1)])
        .await
        .unwrap_err();
    assert_eq!(err.code, "23505");
    assert_eq!(
        err.message,
        "duplicate key value violates unique constraint \"u_pkey\""
    );
    assert_eq!(err.constraint.as_deref(), Some("u_pkey"));
    assert_eq!(err.table.as_deref(), Some("u"));
    assert_eq!(err.detail.as_deref(), Some("Key (id)=(1) already exists."));
    // Later statements see the aborted transaction.
    let err = s.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.code, "25P02");
    let err = t.session().await.batch("SELEC 1").await.unwrap_err();
    assert_eq!(err.code, "42601");
}

#[tokio::test]
async fn a_cursor_reads_ten_thousand_rows_in_chunks_between_other_statements() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO big (id) SELECT generate_series(1, 10000)")
        .await
        .unwrap();
    let mut cursor = s
        .open_cursor(
            "SELECT id, v FROM big WHERE id > $1 ORDER BY id",
            &[Value::Int32(0)],
        )
        .await
        .unwrap();
    assert_eq!(
        cursor
            .columns
            .iter()
            .map(|c| c.type_name.as_str())
            .collect::<Vec<_>>(),
        ["INT4", "INT4"]
    );
    let mut seen = 0;
    let mut chunks = 0;
    loop {
        let rows = s.fetch(&mut cursor, 999).await.unwrap();
        if rows.is_empty() {
            break;
        }
        chunks += 1;
        for row in &rows {
            seen += 1;
            assert_eq!(format!("{:?}", row[0]), format!("{:?}", Value::Int32(seen)));
        }
        // Another statement on the same transaction between two chunks.
        let last = rows.last().unwrap()[0].clone();
        assert_eq!(
            s.execute("UPDATE big SET v = v + 1 WHERE id = $1", &[last])
                .await
                .unwrap(),
            1
        );
    }
    assert_eq!((seen, chunks), (10_000, 11));
    assert!(cursor.done);
    assert!(s.fetch(&mut cursor, 10).await.unwrap().is_empty());
    s.close_cursor(&mut cursor).await.unwrap();
    // A second cursor, closed before it is exhausted, then closed again.
    let mut second = s.open_cursor("SELECT sum(v) FROM big", &[]).await.unwrap();
    s.close_cursor(&mut second).await.unwrap();
    s.close_cursor(&mut second).await.unwrap();
    let updated = scalar(&mut *s, "SELECT sum(v)::int FROM big", &[]).await;
    assert_eq!(format!("{updated:?}"), format!("{:?}", Value::Int32(11)));
}

#[tokio::test]
async fn rolling_back_a_savepoint_recovers_from_an_error() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE sp (id int PRIMARY KEY)")
        .await
        .unwrap();
    s.execute("INSERT INTO sp VALUES (1)", &[]).await.unwrap();
    s.savepoint("wasmig_sp_1").await.unwrap();
    s.execute("INSERT INTO sp VALUES (2)", &[]).await.unwrap();
    assert_eq!(
        s.execute("INSERT INTO sp VALUES (1)", &[])
            .await
            .unwrap_err()
            .code,
        "23505"
    );
    s.rollback_to_savepoint("wasmig_sp_1").await.unwrap();
    s.savepoint("wasmig_sp_2").await.unwrap();
    s.execute("INSERT INTO sp VALUES (3)", &[]).await.unwrap();
    s.release_savepoint("wasmig_sp_2").await.unwrap();
    assert_eq!(
        s.release_savepoint("wasmig_sp_2").await.unwrap_err().code,
        "3B001"
    );
    assert_eq!(
        s.savepoint("bad name; DROP").await.unwrap_err().code,
        "WASMIG-STATE"
    );
    s.rollback_to_savepoint("wasmig_sp_1").await.unwrap_err();
    let mut s = t.session().await;
    s.batch("CREATE TABLE sp2 (id int PRIMARY KEY)")
        .await
        .unwrap();
    s.savepoint("a").await.unwrap();
    s.execute("INSERT INTO sp2 VALUES (1), (1)", &[])
        .await
        .unwrap_err();
    s.rollback_to_savepoint("a").await.unwrap();
    s.execute("INSERT INTO sp2 VALUES (2)", &[]).await.unwrap();
    s.commit().await.unwrap();
    let mut s = t.session().await;
    let ids = s.query("SELECT id FROM sp2", &[]).await.unwrap().rows;
    assert_eq!(
        format!("{ids:?}"),
        format!("{:?}", vec![vec![Value::Int32(2)]])
    );
}

#[tokio::test]
async fn the_canceller_stops_a_running_statement() {
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
    let err = s.query("SELECT pg_sleep(30)", &[]).await.unwrap_err();
    cancel.await.unwrap();
    assert_eq!(err.code, "57014", "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn commits_are_visible_and_rollbacks_are_not() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE v (n int)").await.unwrap();
    s.execute("INSERT INTO v VALUES ($1)", &[Value::Int32(1)])
        .await
        .unwrap();
    s.commit().await.unwrap();
    let mut s = t.session().await;
    s.execute("INSERT INTO v VALUES ($1)", &[Value::Int32(2)])
        .await
        .unwrap();
    s.rollback().await.unwrap();
    let mut s = t.session().await;
    s.execute("INSERT INTO v VALUES ($1)", &[Value::Int32(3)])
        .await
        .unwrap();
    drop(s);
    let mut s = t.session().await;
    let name = scalar(&mut *s, "SELECT current_setting('application_name')", &[]).await;
    assert_eq!(
        format!("{name:?}"),
        format!("{:?}", Value::Text(text("wasmig")))
    );
    let rows = s.query("SELECT n FROM v", &[]).await.unwrap().rows;
    assert_eq!(
        format!("{rows:?}"),
        format!("{:?}", vec![vec![Value::Int32(1)]])
    );
}

#[tokio::test]
async fn ddl_between_two_runs_of_a_cached_query_is_fine() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE d (a int); INSERT INTO d VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
        1
    );
    s.execute("ALTER TABLE d ADD COLUMN b text", &[])
        .await
        .unwrap();
    assert_eq!(
        s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
        2
    );
    s.batch("ALTER TABLE d ADD COLUMN c text").await.unwrap();
    assert_eq!(
        s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
        3
    );
    s.commit().await.unwrap();
    // The next session may be on the same pooled connection, with DDL in between.
    let mut s = t.session().await;
    let mut other = t.db.pool.acquire().await.unwrap();
    sqlx::raw_sql("ALTER TABLE d DROP COLUMN c")
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(
        s.query("SELECT * FROM d", &[]).await.unwrap().columns.len(),
        2
    );
    // And execute-many counts every row.
    let rows: Vec<Vec<Value>> = (0..5).map(|i| vec![Value::Int32(i)]).collect();
    assert_eq!(
        s.execute_many("INSERT INTO d (a) VALUES ($1)", &rows)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        s.execute_many(
            "UPDATE d SET b = 'x' WHERE a <= $1",
            &[vec![Value::Int32(1)]]
        )
        .await
        .unwrap(),
        3
    );
}

#[tokio::test]
async fn transaction_control_is_refused_before_anything_runs() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let err = s
        .batch("CREATE TABLE early (x int); COMMIT; CREATE TABLE late (x int)")
        .await
        .unwrap_err();
    assert_eq!(err.code, "WASMIG-STATE");
    assert!(
        err.message
            .starts_with("`COMMIT` (statement 2 of the script)"),
        "{}",
        err.message
    );
    let row = vec![Value::Int32(1)];
    assert!(s.execute("ROLLBACK", &[]).await.is_err());
    assert!(s.query("end", &[]).await.is_err());
    assert!(s.execute_many("BEGIN", &[row.clone(), row]).await.is_err());
    assert!(s.open_cursor("SAVEPOINT x", &[]).await.is_err());
    // Nothing ran, and the transaction is the one begun.
    let early = scalar(&mut *s, "SELECT to_regclass('early') IS NULL", &[]).await;
    assert_eq!(format!("{early:?}"), format!("{:?}", Value::Bool(true)));
    assert!(s.transaction_intact().await.unwrap());
    // Keywords in strings, identifiers and function bodies are fine.
    s.batch(
        "CREATE TABLE log (msg text); INSERT INTO log VALUES ('COMMIT; ROLLBACK');
             CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
             DO $$ BEGIN PERFORM f(); END $$",
    )
    .await
    .unwrap();
    assert!(s.transaction_intact().await.unwrap());
}

#[tokio::test]
async fn the_server_says_without_a_round_trip_when_a_statement_ended_the_transaction() {
    let t = TestDb::new().await;
    // Each ends wasmig's transaction, some beginning another at once (the status alone
    // would not tell: the completion tag does).
    for script in [
        "COMMIT",
        "ROLLBACK",
        "COMMIT AND CHAIN",
        "ROLLBACK AND CHAIN",
        "END; BEGIN",
        "ABORT; START TRANSACTION",
    ] {
        let mut s = t.db.begin_session().await.unwrap();
        s.run_script("CREATE TABLE IF NOT EXISTS t (x int)".into())
            .await
            .unwrap();
        assert!(!s.transaction_ended(), "{script}");
        s.run_script(script.into()).await.unwrap();
        assert!(s.transaction_ended(), "{script}");
        assert!(!s.transaction_intact().await.unwrap(), "{script}");
        Box::new(s).rollback().await.unwrap();
    }
    // What keeps the transaction: statements, a failed one, wasmig's savepoints and their
    // rollback, cursors.
    let mut s = t.session().await;
    s.batch("CREATE TABLE u (x int)").await.unwrap();
    s.execute("INSERT INTO u VALUES ($1)", &[Value::Int32(1)])
        .await
        .unwrap();
    s.savepoint("a").await.unwrap();
    assert!(
        s.execute("INSERT INTO nowhere VALUES (1)", &[])
            .await
            .is_err()
    );
    assert!(!s.transaction_ended());
    s.rollback_to_savepoint("a").await.unwrap();
    s.savepoint("b").await.unwrap();
    s.release_savepoint("b").await.unwrap();
    let mut cursor = s.open_cursor("SELECT x FROM u", &[]).await.unwrap();
    s.fetch(&mut cursor, 10).await.unwrap();
    s.close_cursor(&mut cursor).await.unwrap();
    assert!(!s.transaction_ended());
    assert!(s.transaction_intact().await.unwrap());
}

#[tokio::test]
async fn a_row_longer_than_the_relay_passes_is_an_error_and_the_transaction_goes_on() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE u (x int); INSERT INTO u VALUES (1)")
        .await
        .unwrap();
    let over = crate::MAX_RESULT_BYTES + 1;
    // Through every way a result comes back: a query, a script, a cursor.
    let err = s
        .query(&format!("SELECT 1, repeat('x', {over})"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code, "54000", "{err:?}");
    assert!(err.message.contains("one row of the result is"), "{err:?}");
    s.savepoint("a").await.unwrap();
    let err = s
        .batch(&format!(
            "SELECT repeat('x', {over}); INSERT INTO u VALUES (2)"
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code, "54000", "{err:?}");
    // The rest of that script ran on the server: rolling back to the savepoint undoes it.
    s.rollback_to_savepoint("a").await.unwrap();
    let mut cursor = s
        .open_cursor(&format!("SELECT repeat('x', {over}) FROM u"), &[])
        .await
        .unwrap();
    let err = s.fetch(&mut cursor, 1).await.unwrap_err();
    assert_eq!(err.code, "54000", "{err:?}");
    // The connection is in step with the server (whose transaction has no error: the
    // sandbox, not the server, holds a guest to a savepoint after one), and the
    // transaction is the one begun, without the script's insert.
    assert!(!s.transaction_ended());
    assert!(s.transaction_intact().await.unwrap());
    let rows = s.query("SELECT count(*)::int FROM u", &[]).await.unwrap();
    assert_eq!(
        format!("{:?}", rows.rows),
        format!("{:?}", vec![vec![Value::Int32(1)]])
    );
}

#[tokio::test]
async fn more_parameters_than_a_statement_takes_are_refused_as_bind_not_io() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let err = s
        .execute("SELECT 1", &vec![Value::Null; 65_536])
        .await
        .unwrap_err();
    assert_eq!(err.code, "WASMIG-BIND", "{err:?}");
    let empty = wasmig_contract::ColumnValues {
        nulls: vec![],
        data: wasmig_contract::ColumnData::Int64(vec![]),
    };
    let err = s
        .execute_columns("SELECT 1", &vec![empty; 65_536])
        .await
        .unwrap_err();
    assert_eq!(err.code, "WASMIG-BIND", "{err:?}");
    // The connection was never given them: it answers the next call.
    assert_eq!(s.query("SELECT 1", &[]).await.unwrap().rows.len(), 1);
}

#[test]
fn ddl_is_told_after_nested_comments_as_postgresql_reads_them() {
    use crate::postgres::session::changes_schema;
    assert!(changes_schema("/* a /* b */ c */ CREATE TABLE t (x int)"));
    assert!(!changes_schema("/* /* */ CREATE */ SELECT 1"));
    assert!(!changes_schema(
        "/* unterminated /* */ CREATE TABLE t (x int)"
    ));
    assert!(changes_schema("-- c\n  alter table t add y int"));
    assert!(!changes_schema("SELECT 1 -- CREATE"));
}

/// The result budget holds on every path a query's rows take: the prepared one, the one
/// for a statement taken for DDL (a migration can make any query look like one with
/// PostgreSQL's nested comments), rows without columns, and `query-columns`.
#[tokio::test]
async fn the_result_budget_holds_whichever_way_a_query_is_read() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let big = "SELECT repeat('x', 1000000) FROM generate_series(1, 100)";
    for sql in [
        big.to_owned(),
        format!("/* /* */ CREATE */ {big}"),
        format!("-- x\n/* a /* b */ c */ {big}"),
        "SELECT FROM generate_series(1, 10000000)".to_owned(),
    ] {
        s.savepoint("a").await.unwrap();
        let err = s.query(&sql, &[]).await.unwrap_err();
        assert_eq!(err.code, "WASMIG-LIMIT", "{sql}: {err:?}");
        s.settle().await;
        s.rollback_to_savepoint("a").await.unwrap();
        s.savepoint("b").await.unwrap();
        if !sql.starts_with("SELECT FROM") {
            let err = s.query_columns(&sql, &[]).await.unwrap_err();
            assert_eq!(err.code, "WASMIG-LIMIT", "{sql}: {err:?}");
            s.settle().await;
        }
        s.rollback_to_savepoint("b").await.unwrap();
    }
    // A statement taken for DDL still answers, and leaves the cache in step.
    let rows = s
        .query("/* /* */ CREATE */ SELECT 1 AS one", &[])
        .await
        .unwrap();
    assert_eq!(rows.columns[0].name, "one");
    assert!(!s.transaction_ended());
}

#[tokio::test]
async fn a_response_given_up_on_early_leaves_nothing_for_the_next_call() {
    // sqlx stops reading a response at the first thing it cannot use (a `COPY ... TO
    // STDOUT`, allowed in every mode, through `execute`), and wasmig at the result budget;
    // a message over the relay's limit later in that response becomes an error sqlx reads
    // only at its next call. `settle`, which the sandbox calls after every failed call,
    // reads it there, so the next call gets its own answer.
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let over = crate::MAX_RESULT_BYTES + 1;
    for sql in [
        format!("COPY (SELECT repeat('x', {over})) TO STDOUT"),
        "COPY (SELECT 1) TO STDOUT".to_owned(),
        format!(
            "SELECT repeat('x', CASE WHEN g < 3 THEN 40000000 ELSE {over} END) \
             FROM generate_series(1, 3) g"
        ),
    ] {
        s.savepoint("a").await.unwrap();
        let err = s.query(&sql, &[]).await.unwrap_err();
        assert!(!err.message.is_empty(), "{sql}");
        s.settle().await;
        s.rollback_to_savepoint("a").await.unwrap();
        let rows = s.query("SELECT 1", &[]).await.unwrap();
        assert_eq!(rows.rows.len(), 1, "{sql}");
        assert!(!s.transaction_ended(), "{sql}");
    }
}

#[tokio::test]
async fn an_error_or_notice_of_hundreds_of_megabytes_arrives_cut() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let err = s
        .batch("DO $$ BEGIN RAISE NOTICE '%', repeat('n', 200000000); RAISE EXCEPTION '%', repeat('é', 100000000) USING DETAIL = 'short'; END $$")
        .await
        .unwrap_err();
    assert_eq!(err.code, "P0001");
    assert!(err.message.len() < 9 * 1024, "{}", err.message.len());
    assert!(
        err.message.ends_with("[cut by wasmig: 200000000 bytes]"),
        "{}",
        &err.message[8000..]
    );
    assert_eq!(err.detail.as_deref(), Some("short"));
}

/// After a failed statement the check sends the aborted block no query (it would only
/// answer "current transaction is aborted", an ERROR line in the server's log for every
/// failed step): the session's last query, as the server shows it, is still the failed
/// one. A commit hidden before the failure is still found.
#[tokio::test]
async fn the_check_after_a_failed_statement_sends_the_aborted_block_no_query() {
    let t = TestDb::new().await;
    for (script, intact) in [
        ("SELECT 1/0", true),
        ("SAVEPOINT s; SELECT 1/0", true),
        ("COMMIT; BEGIN; SELECT 1/0", false),
    ] {
        let mut s = t.db.begin_session().await.unwrap();
        let Value::Int32(pid) = scalar(&mut s, "SELECT pg_backend_pid()", &[]).await else {
            panic!("no pid")
        };
        assert!(s.run_script(script.into()).await.is_err(), "{script}");
        assert_eq!(s.transaction_intact().await.unwrap(), intact, "{script}");
        let mut other = PgConnection::connect_with(&t.db.pool.connect_options())
            .await
            .unwrap();
        let (query, state): (String, String) =
            sqlx::query_as("SELECT query, state FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_one(&mut other)
                .await
                .unwrap();
        assert_eq!(query, script);
        assert_eq!(state, "idle in transaction (aborted)", "{script}");
        let _ = other.close().await;
        Box::new(s).rollback().await.unwrap();
    }
}

/// The codes of a lost connection raised by SQL (severity `ERROR`) are the SQL's errors:
/// handed on with their own code, not counted as the connection lost, and the session goes
/// on after a rollback to a savepoint. A session really ended (`FATAL`) is `WASMIG-IO`,
/// naming the server's SQLSTATE.
#[tokio::test]
async fn a_raised_lost_connection_code_is_an_error_and_a_real_end_is_wasmig_io() {
    let t = TestDb::new().await;
    let mut s = t.db.begin_session().await.unwrap();
    for code in ["57P01", "57P05", "25P03", "08006", "08001"] {
        s.savepoint("sp").await.unwrap();
        let err = s
            .execute(
                &format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$"),
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, code);
        assert!(!crate::is_connection_failure(&err.code), "{code}");
        s.rollback_to_savepoint("sp").await.unwrap();
    }
    s.query("SELECT 1", &[]).await.unwrap();
    let err = s
        .query("SELECT pg_terminate_backend(pg_backend_pid())", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code, "WASMIG-IO", "{err:?}");
    assert!(
        err.detail
            .as_deref()
            .is_some_and(|d| d.contains("SQLSTATE 57P01")),
        "{err:?}"
    );
    let _ = Box::new(s).rollback().await;
}

/// A session the server ends for one of its timeouts fails the next call with an error
/// wasmig counts as the connection lost (exit 5), not as the migration's SQL error.
#[tokio::test]
async fn a_session_ended_by_a_server_timeout_is_a_lost_connection() {
    let t = TestDb::new().await;
    for setting in [
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
    ] {
        let mut s = t.db.begin_session().await.unwrap();
        if setting == "idle_session_timeout" {
            // Counted outside a transaction only: the step's ends first.
            s.run_script("COMMIT".into()).await.unwrap();
        }
        s.run_script(format!("SET {setting} = '50ms'"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let err = s.query("SELECT 1", &[]).await.unwrap_err();
        assert!(
            crate::is_connection_failure(&err.code),
            "{setting}: {} {}",
            err.code,
            err.message
        );
        let _ = Box::new(s).rollback().await;
    }
}

#[tokio::test]
async fn a_commit_that_slips_past_the_check_is_detected() {
    let t = TestDb::new().await;
    for script in ["COMMIT", "ROLLBACK; BEGIN", "COMMIT; BEGIN"] {
        let mut s = t.db.begin_session().await.unwrap();
        s.run_script("CREATE TABLE IF NOT EXISTS t (x int)".into())
            .await
            .unwrap();
        assert!(s.transaction_intact().await.unwrap());
        s.run_script(script.into()).await.unwrap();
        assert!(!s.transaction_intact().await.unwrap(), "{script}");
        Box::new(s).rollback().await.unwrap();
    }
}

/// The next step's transaction, begun in the message that commits this one
/// (`Session::begin_next_in_commit`), costs it no exchange of its own, and begins as the
/// server's defaults say: not with what the step left on the session, nor with what it set
/// as it committed (a deferred trigger), which the reset between the two undoes.
#[tokio::test]
async fn the_next_step_begun_in_the_commit_begins_clean_and_costs_no_exchange() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    let characteristics = "SELECT current_setting('transaction_isolation') || ' ' \
         || current_setting('transaction_read_only') || ' ' \
         || current_setting('transaction_deferrable') || ' ' || current_setting('search_path')";
    for early in [true, false] {
        let mut s = t.db.begin_session().await.unwrap();
        let pid = scalar(&mut s, "SELECT pg_backend_pid()", &[]).await;
        s.batch(
            "SET default_transaction_isolation = 'serializable';
             SET default_transaction_read_only = on;
             CREATE TABLE IF NOT EXISTS public.mark (n int);
             CREATE OR REPLACE FUNCTION public.late() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM set_config('default_transaction_deferrable', 'on', false);
                 PERFORM set_config('default_transaction_isolation', 'repeatable read', false);
                 PERFORM set_config('search_path', 'nowhere', false);
                 RETURN NULL;
             END $$;
             DROP TRIGGER IF EXISTS at_commit ON public.mark;
             CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON public.mark
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.late();
             INSERT INTO public.mark VALUES (1)",
        )
        .await
        .unwrap();
        if early {
            s.begin_next_in_commit();
        }
        let before = s.exchanges().expect("through the relay");
        Box::new(s).commit().await.unwrap();
        let mut next = t.db.begin_session().await.unwrap();
        assert_eq!(
            next.exchanges().unwrap() - before,
            if early { 1 } else { 2 },
            "the commit's exchange, and the begin's unless begun in it (early: {early})"
        );
        let again = scalar(&mut next, "SELECT pg_backend_pid()", &[]).await;
        assert_eq!(
            format!("{again:?}"),
            format!("{pid:?}"),
            "kept for the next step"
        );
        // The transaction the session checks is the one its statements run in.
        assert!(next.transaction_intact().await.unwrap(), "early: {early}");
        let begun = scalar(&mut next, characteristics, &[]).await;
        assert_eq!(
            format!("{begun:?}"),
            format!(
                "{:?}",
                Value::Text(text("read committed off off \"$user\", public"))
            ),
            "early: {early}"
        );
        Box::new(next).rollback().await.unwrap();
    }
}

/// A transaction begun in a commit for a step that does not come is undone: by a flush
/// (the run stopped before the step), or when the next begin would send another statement
/// (the run's tables were made in between), which closes that connection.
#[tokio::test]
async fn a_transaction_begun_for_a_step_that_does_not_come_is_undone() {
    use std::sync::atomic::Ordering;
    let t = TestDb::new().await;
    let mut s = t.db.begin_session().await.unwrap();
    s.batch("CREATE TABLE public.kept (n int)").await.unwrap();
    s.begin_next_in_commit();
    s.commit_lazily();
    Box::new(s).commit().await.unwrap();
    assert!(t.db.unflushed.load(Ordering::SeqCst));
    t.db.flush().await.unwrap();
    assert!(!t.db.unflushed.load(Ordering::SeqCst));
    // After a durable commit there is nothing to flush, and the transaction is undone
    // all the same; the connection is kept, with no transaction open.
    let mut s = t.db.begin_session().await.unwrap();
    s.batch("INSERT INTO public.kept VALUES (0)").await.unwrap();
    s.begin_next_in_commit();
    Box::new(s).commit().await.unwrap();
    assert!(!t.db.unflushed.load(Ordering::SeqCst));
    let early = |t: &TestDb| {
        t.db.kept
            .lock()
            .unwrap()
            .as_ref()
            .map(|k| k.begun.is_some())
    };
    assert_eq!(early(&t), Some(true));
    t.db.flush().await.unwrap();
    assert_eq!(early(&t), Some(false));
    let mut kept = t.db.kept.lock().unwrap().take().unwrap();
    let open: bool = sqlx::query_scalar("SELECT txid_current_if_assigned() IS NOT NULL")
        .fetch_one(&mut *kept.conn)
        .await
        .unwrap();
    assert!(
        !open,
        "the early transaction (which took an id) was rolled back"
    );
    drop(kept);
    // Begun before the run knew its tables, then they were made: the next begin reads
    // more, so the early transaction is not the step's.
    let mut s = t.db.begin_session().await.unwrap();
    let pid = scalar(&mut s, "SELECT pg_backend_pid()", &[]).await;
    s.batch("INSERT INTO public.kept VALUES (1)").await.unwrap();
    s.begin_next_in_commit();
    Box::new(s).commit().await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    let mut next = t.db.begin_session().await.unwrap();
    let other = scalar(&mut next, "SELECT pg_backend_pid()", &[]).await;
    assert_ne!(format!("{other:?}"), format!("{pid:?}"), "a new connection");
    assert!(next.transaction_intact().await.unwrap());
    let rows = scalar(&mut next, "SELECT count(*) FROM public.kept", &[]).await;
    assert_eq!(format!("{rows:?}"), format!("{:?}", Value::Int64(2)));
    Box::new(next).rollback().await.unwrap();
    // The closed connection's session ends, its transaction with it.
    let Value::Int32(pid) = pid else {
        panic!("{pid:?}")
    };
    let gone = comes_to_zero(
        &t,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    )
    .await;
    assert!(gone, "the early transaction's session outlived it");
}

/// The last step's connection, kept for the next, whose session the server then ended
/// (terminated here; an idle transaction's timeout ends it the same way): the next step
/// begins on another of the pool's connections rather than failing, whether its
/// transaction was begun in the commit (noticed through the relay) or was to begin on it
/// with sqlx's cache to clear first (noticed as that fails).
#[tokio::test]
async fn a_kept_connection_the_server_ended_gives_way_to_another() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    for early in [true, false] {
        let mut s = t.db.begin_session().await.unwrap();
        // The pid by the simple protocol: a prepared statement in sqlx's cache keeps the
        // next step from being begun in the commit.
        s.batch(
            "DROP TABLE IF EXISTS public.pid; \
             CREATE TABLE public.pid AS SELECT pg_backend_pid() AS pid",
        )
        .await
        .unwrap();
        if early {
            s.begin_next_in_commit();
        } else {
            scalar(&mut s, "SELECT 1", &[]).await;
        }
        Box::new(s).commit().await.unwrap();
        assert_eq!(
            t.db.kept
                .lock()
                .unwrap()
                .as_ref()
                .map(|k| k.begun.is_some()),
            Some(early)
        );
        let mut other = PgConnection::connect_with(&t.db.pool.connect_options())
            .await
            .unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pid FROM public.pid")
            .fetch_one(&mut other)
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut other)
            .await
            .unwrap();
        let _ = other.close().await;
        let gone = comes_to_zero(
            &t,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
        )
        .await;
        assert!(gone, "the session was not terminated (early: {early})");
        let mut next = t.db.begin_session().await.unwrap();
        let Value::Int32(again) = scalar(&mut next, "SELECT pg_backend_pid()", &[]).await else {
            panic!("no pid")
        };
        assert_ne!(again, pid, "begun on another connection (early: {early})");
        assert!(next.transaction_intact().await.unwrap(), "early: {early}");
        Box::new(next).rollback().await.unwrap();
    }
}

/// The next step's begin, sent in the commit, waits for a lock on the version table no
/// longer than `EARLY_BEGIN_LOCK_WAIT`: the commit stands and is reported at once, and the
/// next step begins the usual way. Under a lease, no begin goes in the commit (a pooler
/// may hand the server session to another client between transactions).
#[tokio::test]
async fn an_early_begin_gives_up_on_a_held_lock_and_none_is_sent_under_a_lease() {
    for lease in [false, true] {
        let mut t = TestDb::new().await;
        if lease {
            t.db.lock_settings = crate::LockSettings {
                mode: crate::LockMode::Lease,
                lease: Duration::from_secs(30),
                source: "the test".into(),
                ..crate::LockSettings::default()
            };
        }
        let lock = t.db.lock(Duration::from_secs(5)).await.unwrap();
        t.db.ensure_version_tables().await.unwrap();
        t.db.tables_ready().await.unwrap();
        let mut s = t.db.begin_session().await.unwrap();
        let pid = scalar(&mut s, "SELECT pg_backend_pid()", &[]).await;
        s.batch("CREATE TABLE public.done (n int)").await.unwrap();
        s.begin_next_in_commit();
        let before = s.exchanges().unwrap();
        // Another session asks for the version table exclusively (queued behind the step,
        // which read it as it began) and holds it for a second from the step's commit on.
        let mut other = PgConnection::connect_with(&t.db.pool.connect_options())
            .await
            .unwrap();
        let other_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut other)
            .await
            .unwrap();
        let holder = tokio::spawn(async move {
            sqlx::raw_sql(
                "BEGIN; LOCK TABLE public.wasmig_version IN ACCESS EXCLUSIVE MODE; \
                 SELECT pg_sleep(1); COMMIT",
            )
            .execute(&mut other)
            .await
            .unwrap();
            let _ = other.close().await;
        });
        let mut watch = PgConnection::connect_with(&t.db.pool.connect_options())
            .await
            .unwrap();
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
            )
            .bind(other_pid)
            .fetch_one(&mut watch)
            .await
            .unwrap();
            if waiting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = watch.close().await;
        let committed = tokio::time::timeout(Duration::from_secs(10), Box::new(s).commit()).await;
        assert!(
            matches!(committed, Ok(Ok(()))),
            "lease: {lease}: {committed:?}"
        );
        holder.await.unwrap();
        let Value::Int32(backend) = pid else {
            panic!("{pid:?}")
        };
        let committed_at = t.db.relay.wire(backend).map(|w| w.ready());
        let mut next = t.db.begin_session().await.unwrap();
        let again = scalar(&mut next, "SELECT pg_backend_pid()", &[]).await;
        if lease {
            // Kept, and begun by a message of its own.
            assert_eq!(format!("{again:?}"), format!("{pid:?}"));
            assert!(next.exchanges().unwrap() > before);
            assert_ne!(
                next.exchanges().unwrap() - committed_at.unwrap(),
                0,
                "begun after the commit, not in it"
            );
        } else {
            // The early begin failed: that connection was not kept.
            assert_ne!(format!("{again:?}"), format!("{pid:?}"));
        }
        assert!(next.transaction_intact().await.unwrap(), "lease: {lease}");
        let done = scalar(
            &mut next,
            "SELECT to_regclass('public.done') IS NOT NULL",
            &[],
        )
        .await;
        assert_eq!(
            format!("{done:?}"),
            format!("{:?}", Value::Bool(true)),
            "committed"
        );
        Box::new(next).rollback().await.unwrap();
        lock.release().await.unwrap();
    }
}

#[tokio::test]
async fn session_state_does_not_outlive_its_step() {
    let t = TestDb::new().await;
    t.db.ensure_version_tables().await.unwrap();
    let mut s = t.session().await;
    let pid = scalar(&mut *s, "SELECT pg_backend_pid()", &[]).await;
    s.execute("SET search_path = nowhere", &[]).await.unwrap();
    // Characteristics the next transaction would begin with, were it begun before the reset.
    s.execute("SET default_transaction_isolation = 'serializable'", &[])
        .await
        .unwrap();
    s.execute("SET default_transaction_read_only = on", &[])
        .await
        .unwrap();
    s.query("SELECT pg_advisory_lock(42)", &[]).await.unwrap();
    s.batch("CREATE TEMP TABLE scratch (x int)").await.unwrap();
    // The version tables are found whatever the migration did to the search path.
    let none: [String; 0] = [];
    let add = [text("a")];
    let now = Utc::now();
    s.record_step(&StepRecord {
        remove: &none,
        add: &add,
        revision: "a",
        direction: crate::Event::Upgrade,
        checksum: "00",
        started_at: now,
        finished_at: now,
        error: None,
        sqlstate: None,
    })
    .await
    .unwrap();
    s.commit().await.unwrap();
    assert_eq!(t.db.heads().await.unwrap(), ["a"]);
    // The next step runs on the connection the step committed on, reset with its commit:
    // its transaction begins as the server's defaults say, not as the step left them.
    let mut next = t.session().await;
    let again = scalar(&mut *next, "SELECT pg_backend_pid()", &[]).await;
    assert_eq!(
        format!("{again:?}"),
        format!("{pid:?}"),
        "kept for the next step"
    );
    let begun = scalar(
        &mut *next,
        "SELECT current_setting('transaction_isolation') || ' ' || current_setting('transaction_read_only')",
        &[],
    )
    .await;
    assert_eq!(
        format!("{begun:?}"),
        format!("{:?}", Value::Text(text("read committed off")))
    );
    next.rollback().await.unwrap();
    // The reset ran as the step committed (the lock is a session's: no transaction undoes
    // its release).
    let reset = comes_to_zero(
        &t,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.objid = 42",
    )
    .await;
    assert!(reset, "the advisory lock outlived the step");
    // And by the pool, for a connection a step rolled back.
    for _ in 0..MAX_CONNECTIONS {
        let mut s = t.session().await;
        let path = scalar(&mut *s, "SELECT current_setting('search_path')", &[]).await;
        assert_eq!(
            format!("{path:?}"),
            format!("{:?}", Value::Text(text("\"$user\", public")))
        );
        let scratch = scalar(&mut *s, "SELECT to_regclass('scratch') IS NULL", &[]).await;
        assert_eq!(format!("{scratch:?}"), format!("{:?}", Value::Bool(true)));
    }
}

#[tokio::test]
async fn a_connection_failure_names_the_url_without_its_password() {
    let url = DatabaseUrl::parse("postgres://user:secret@127.0.0.1:1/nothing").unwrap();
    let err = PgDatabase::connect(&url, None, false).await.err().unwrap();
    assert!(matches!(err, DbError::Connect { .. }));
    let message = err.to_string();
    assert!(
        message.contains("postgres://user:***@127.0.0.1:1/nothing") && !message.contains("secret"),
        "{message}"
    );
}

#[tokio::test]
async fn a_large_script_runs_only_as_the_server_reads_it_with_standard_strings() {
    let t = TestDb::new().await;
    let mut filler = String::new();
    // Past the size parsed whole (256 KiB).
    for i in 0..20_000 {
        filler.push_str(&format!("SELECT {i}, 'row {i}';\n"));
    }
    // Split by the standard reading, the two halves are harmless statements; read with
    // backslashes as escapes, the whole message holds a COMMIT.
    let hidden = format!("{filler}SELECT 'a\\';\nSELECT '; COMMIT; SELECT ' --'\n");
    let mut s = t.session().await;
    s.batch(&hidden).await.unwrap();
    assert!(s.transaction_intact().await.unwrap());
    s.batch("SELECT set_config('standard_conforming' || '_strings', 'off', false)")
        .await
        .unwrap();
    let err = s.batch(&hidden).await.unwrap_err();
    assert_eq!(err.code, "WASMIG-STATE");
    assert!(
        err.message.contains("standard_conforming_strings is off"),
        "{}",
        err.message
    );
    assert!(s.transaction_intact().await.unwrap());
    s.rollback().await.unwrap();
}

#[tokio::test]
async fn set_config_of_the_reading_of_literals_is_refused_however_it_is_spelled() {
    let t = TestDb::new().await;
    // (Named arguments are no way round: pg_catalog.set_config's parameters have no names,
    // and the server refuses the call, 42883.)
    for sql in [
        "SELECT U&\"set\\005fconfig\"('standard_conforming_strings', 'off', false)",
        "SELECT pg_catalog.set_config('STANDARD_CONFORMING_STRINGS', 'off', false)",
        "SELECT \"set_config\"(' standard_conforming_strings', 'off', false)",
        "SELECT set_config(E'standard\\u005fconforming_strings', 'off', false)",
        "SELECT set_config($$standard_conforming_strings$$, 'off', false)",
    ] {
        let mut s = t.session().await;
        let err = s.batch(sql).await.err();
        assert_eq!(
            err.as_ref().map(|e| e.code.as_str()),
            Some("WASMIG-STATE"),
            "{sql}: {err:?}"
        );
        // Nothing ran: the session still reads literals the standard way.
        let reading = scalar(
            &mut *s,
            "SELECT current_setting('standard_conforming_strings') = 'on'",
            &[],
        )
        .await;
        assert_eq!(
            format!("{reading:?}"),
            format!("{:?}", Value::Bool(true)),
            "{sql}"
        );
        s.rollback().await.unwrap();
    }
}

/// A lazy commit is made with `synchronous_commit` off and any other at the default,
/// whatever the transaction `SET`, as the server reads the setting when it commits (a
/// deferred constraint trigger runs then); `flush` writes a durable commit after a lazy one
/// and nothing after a durable one.
#[tokio::test]
async fn a_commit_is_lazy_only_when_asked_and_a_flush_follows_a_lazy_one() {
    use std::sync::atomic::Ordering;
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch(
        "CREATE TABLE seen (n int, sync text); CREATE TABLE mark (n int);
         CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO seen VALUES (NEW.n, current_setting('synchronous_commit'));
         RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON mark
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION note()",
    )
    .await
    .unwrap();
    s.commit().await.unwrap();
    assert!(!t.db.unflushed.load(Ordering::SeqCst));
    for (n, lazy, set) in [
        (1, true, ""),
        (2, false, "SET synchronous_commit = off;"),
        (3, true, "SET LOCAL synchronous_commit = remote_apply;"),
    ] {
        let mut s = t.session().await;
        s.batch(&format!("{set} INSERT INTO mark VALUES ({n})"))
            .await
            .unwrap();
        if lazy {
            s.commit_lazily();
        }
        s.commit().await.unwrap();
        assert_eq!(t.db.unflushed.load(Ordering::SeqCst), lazy, "commit {n}");
    }
    let mut s = t.session().await;
    let seen = scalar(
        &mut *s,
        "SELECT string_agg(n || ' ' || sync, ', ' ORDER BY n) FROM seen",
        &[],
    )
    .await;
    assert_eq!(
        format!("{seen:?}"),
        format!("{:?}", Value::Text(text("1 off, 2 on, 3 off")))
    );
    s.rollback().await.unwrap();
    t.db.flush().await.unwrap();
    assert!(!t.db.unflushed.load(Ordering::SeqCst));
    // Nothing to flush: no round trip, and no error.
    t.db.flush().await.unwrap();
}

/// A step's `lock_timeout` and `statement_timeout` are set in one exchange, for its
/// transaction only, and `None` puts back the server's default.
#[tokio::test]
async fn a_steps_timeouts_are_set_together_for_its_transaction_only() {
    let t = TestDb::new().await;
    let setting = |name: &'static str| format!("SELECT current_setting('{name}')");
    let mut s = t.db.begin_session().await.unwrap();
    let before = s.exchanges().expect("through the relay");
    s.set_timeouts(
        Some(Duration::from_millis(1500)),
        Some(Duration::from_secs(7)),
    )
    .await
    .unwrap();
    assert_eq!(s.exchanges().unwrap() - before, 1);
    for (name, value) in [("lock_timeout", "1500ms"), ("statement_timeout", "7s")] {
        assert_eq!(
            format!("{:?}", scalar(&mut s, &setting(name), &[]).await),
            format!("{:?}", Value::Text(text(value))),
            "{name}"
        );
    }
    s.set_timeouts(None, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    for (name, value) in [("lock_timeout", "0"), ("statement_timeout", "2s")] {
        assert_eq!(
            format!("{:?}", scalar(&mut s, &setting(name), &[]).await),
            format!("{:?}", Value::Text(text(value))),
            "{name}"
        );
    }
    Box::new(s).commit().await.unwrap();
    let mut s = t.session().await;
    assert_eq!(
        format!(
            "{:?}",
            scalar(&mut *s, &setting("statement_timeout"), &[]).await
        ),
        format!("{:?}", Value::Text(text("0"))),
        "gone with the transaction"
    );
    s.rollback().await.unwrap();
    t.db.close().await;
}

/// Whether the count `sql` reads, on a connection of its own each time, comes to zero
/// within five seconds (what the server does after a connection closes, it does a moment
/// later).
async fn comes_to_zero(t: &TestDb, sql: &str) -> bool {
    for _ in 0..50 {
        let mut other = PgConnection::connect_with(&t.db.pool.connect_options())
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut other)
            .await
            .unwrap();
        let _ = other.close().await;
        if left == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

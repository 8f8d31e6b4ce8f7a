//! A guest whose behaviour the test chooses through the `e2e_mode` table: succeed, fail in
//! each way a migration can fail, block in a long statement or in many short ones, log,
//! recover from an SQL error inside a savepoint, try to end wasmig's transaction, use a
//! cursor its savepoint's rollback closed, leave session settings behind, or send large
//! parameters or a long statement many times. Every mode first writes a marker row, so the tests can see whether
//! anything was left behind.

use wasmig_guest::{Dialect, Migration, Result, Value, bail, db, info, trace, warn};

struct Scenario;

/// The number the test wrote in `e2e_text`.
fn count() -> Result<usize> {
    let text = db::query_one("SELECT text FROM e2e_text", &[])?.get::<String>(0)?;
    text.parse()
        .map_err(|e| wasmig_guest::Error::msg(format!("e2e_text: {e}")))
}

fn mode() -> Result<String> {
    let row = db::query_one("SELECT mode FROM e2e_mode", &[])?;
    row.get::<String>(0)
}

impl Migration for Scenario {
    fn upgrade() -> Result<()> {
        db::batch("CREATE TABLE scenario_marker (x integer)")?;
        db::execute("INSERT INTO scenario_marker (x) VALUES (1)", &[])?;
        match mode()?.as_str() {
            "ok" => Ok(()),
            "guest-error" => bail!("the scenario asked for an error"),
            "unhandled-sql" => {
                db::execute("INSERT INTO no_such_table VALUES (1)", &[])?;
                Ok(())
            }
            "swallow" => {
                // The error is ignored and the guest carries on: wasmig must not report
                // success for a transaction PostgreSQL will roll back.
                let _ = db::execute("INSERT INTO no_such_table VALUES (1)", &[]);
                let _ = db::execute("INSERT INTO scenario_marker (x) VALUES (2)", &[]);
                Ok(())
            }
            "savepoint" => {
                let failed =
                    db::savepoint(|| db::execute("INSERT INTO no_such_table VALUES (1)", &[]));
                match failed {
                    Ok(_) => bail!("the insert into a missing table succeeded"),
                    Err(e) => warn!("handled: {e}"),
                }
                db::execute("INSERT INTO scenario_marker (x) VALUES (3)", &[])?;
                Ok(())
            }
            "commit" => {
                // Refused in a script too, before any of it runs; like any error, the refusal
                // fails the step unless a savepoint handles it.
                match db::savepoint(|| {
                    db::batch("INSERT INTO scenario_marker (x) VALUES (2); COMMIT")
                }) {
                    Ok(()) => bail!("a batch with COMMIT was accepted"),
                    Err(e) => warn!("refused: {e}"),
                }
                db::execute("COMMIT", &[])?;
                Ok(())
            }
            "cursor-savepoint" => cursor_savepoint(),
            "many-short-sql" => {
                // Many short statements in one host call, so that most cancels land between
                // two of them.
                match db::dialect() {
                    Dialect::Postgres => {
                        // Parameter types alternate, so every row is its own round trip.
                        let rows: Vec<Vec<Value>> = (0..4000)
                            .map(|i| {
                                vec![if i % 2 == 0 {
                                    Value::Float64(0.02)
                                } else {
                                    Value::Int32(0)
                                }]
                            })
                            .collect();
                        db::execute_many("SELECT pg_sleep($1)", &rows)?;
                    }
                    Dialect::Sqlite => {
                        let rows: Vec<Vec<Value>> =
                            (0..4000).map(|_| vec![Value::Int64(200_000)]).collect();
                        db::execute_many(
                            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) SELECT count(*) FROM c",
                            &rows,
                        )?;
                    }
                    Dialect::Mysql => {
                        let rows: Vec<Vec<Value>> =
                            (0..4000).map(|_| vec![Value::Float64(0.02)]).collect();
                        db::execute_many("SELECT SLEEP(?)", &rows)?;
                    }
                }
                Ok(())
            }
            "set-search-path" => {
                // Session-level, not SET LOCAL: it would outlive the transaction.
                if db::dialect() == Dialect::Postgres {
                    db::execute("SET search_path = nowhere", &[])?;
                    db::query("SELECT pg_advisory_lock(7)", &[])?;
                }
                Ok(())
            }
            "panic" => panic!("the scenario panics"),
            "invalid-utf8-error" => {
                // The same bytes as the migration's own error (C's `wasmig_fail`, Go's
                // `errors.New` can return them).
                // SAFETY: deliberately not UTF-8, as above: only its bytes reach the host.
                let message = unsafe { String::from_utf8_unchecked(b"failed \xff\xfe".to_vec()) };
                Err(wasmig_guest::Error::msg(message))
            }
            "invalid-utf8" => {
                // A statement whose text is not UTF-8, as a guest in any language can send
                // (C and Go strings are bytes): the host must refuse it, blaming the guest,
                // not take it. (A Rust `&str` cannot hold it; the bytes are forced in.)
                // SAFETY: deliberately not UTF-8: only the bytes reach the host, which
                // checks them; nothing here reads the string as text.
                let sql = unsafe { String::from_utf8_unchecked(b"SELECT 1 -- \xff\xfe".to_vec()) };
                db::execute(&sql, &[])?;
                Ok(())
            }
            "long-sql" => {
                match db::dialect() {
                    Dialect::Postgres => {
                        db::execute("SELECT pg_sleep(60)", &[])?;
                    }
                    Dialect::Sqlite => {
                        db::query(
                            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c",
                            &[],
                        )?;
                    }
                    Dialect::Mysql => {
                        db::execute("SELECT SLEEP(60)", &[])?;
                    }
                }
                Ok(())
            }
            "query-text" => {
                // Runs the query the test chose and reports how many rows came back.
                let sql = db::query_one("SELECT text FROM e2e_text", &[])?.get::<String>(0)?;
                let rows = db::query(&sql, &[])?;
                info!("{} row(s)", rows.len());
                Ok(())
            }
            "query-text-carry-on" => {
                // The same, ignoring the error, and carrying on: wasmig must stop a guest
                // whose call ended its transaction before it runs anything else.
                let sql = db::query_one("SELECT text FROM e2e_text", &[])?.get::<String>(0)?;
                if let Err(e) = db::query(&sql, &[]) {
                    warn!("ignored: {e}");
                }
                db::execute("INSERT INTO scenario_marker (x) VALUES (4)", &[])?;
                info!("carried on");
                Ok(())
            }
            "big-params" => {
                // As many calls as `e2e_text` says, each sending one 8 MiB parameter: what
                // `up --sql` must keep to write them out.
                let n = count()?;
                let sql = match db::dialect() {
                    Dialect::Sqlite => "SELECT length(?)",
                    _ => "SELECT length($1)",
                };
                let big = "x".repeat(8 << 20);
                for _ in 0..n {
                    db::execute(sql, &[Value::Text(big.clone())])?;
                }
                info!("{n} call(s) of 8 MiB");
                Ok(())
            }
            "backslash-array" => {
                // As many calls as `e2e_text` says, each sending a text array of one
                // element of 8 MiB of backslashes: PostgreSQL's script escapes it for the
                // array and again for the literal, 32 MiB written for 8 MiB sent.
                let n = count()?;
                let big = "\\".repeat(8 << 20);
                for _ in 0..n {
                    db::execute(
                        "SELECT cardinality($1::text[])",
                        &[Value::Array(wasmig_guest::ArrayValue::Text(vec![Some(
                            big.clone(),
                        )]))],
                    )?;
                }
                info!("{n} array(s) of 8 MiB of backslashes");
                Ok(())
            }
            "tiny-floats" => {
                // One float8 array of as many of the smallest normal double as `e2e_text`
                // says: written in full decimal, each is 330 bytes of script.
                let n = count()?;
                db::execute(
                    "SELECT cardinality($1::float8[])",
                    &[Value::Array(wasmig_guest::ArrayValue::Float64(vec![
                        Some(
                            -f64::MIN_POSITIVE
                        );
                        n
                    ]))],
                )?;
                info!("{n} tiny float(s)");
                Ok(())
            }
            "repeated-sql" => {
                // One execute-many of a 64 KiB statement with as many rows of no
                // parameters as `e2e_text` says: `up --sql` writes the statement once per
                // row.
                let n = count()?;
                let sql = format!("SELECT 1 -- {}", "x".repeat(64 << 10));
                db::execute_many(&sql, &vec![Vec::new(); n])?;
                info!("{n} row(s) of a 64 KiB statement");
                Ok(())
            }
            "repeated-placeholder" => {
                // One call naming one 8 KiB value as many times as `e2e_text` says (SQLite
                // placeholders): SQLite's script writes the value at each.
                let n = count()?;
                let sql = format!("SELECT 1 WHERE '' IN ({})", vec!["?1"; n].join(", "));
                db::execute(&sql, &[Value::Text("x".repeat(8 << 10))])?;
                info!("one value named {n} times");
                Ok(())
            }
            "copy-columns" => {
                // Copies 0..n (n from `e2e_text`) into the table `copied` the test made,
                // as one column, in a savepoint, and says whether the call failed and how
                // many rows are in the table then.
                let n =
                    i64::try_from(count()?).map_err(|e| wasmig_guest::Error::msg(e.to_string()))?;
                let copied = db::savepoint(|| {
                    db::copy_in_columns(
                        "copied",
                        &["x"],
                        &[wasmig_guest::ColumnValues::from_int64s((0..n).collect())],
                    )
                });
                let kept = db::query_one("SELECT count(*) FROM copied", &[])?.get::<i64>(0)?;
                match copied {
                    Ok(written) => info!("copied {written} row(s); {kept} in the table"),
                    Err(e) => info!("the copy failed ({e}); {kept} in the table"),
                }
                Ok(())
            }
            "forge" => {
                // Text the test chose (forged output lines, terminal escapes), logged, printed
                // through the log at every level, and returned as the error.
                let text = db::query_one("SELECT text FROM e2e_text", &[])?.get::<String>(0)?;
                info!("{text}");
                warn!("{text}");
                bail!("{text}")
            }
            "log" => {
                info!("hello from the guest on {}", db::dialect());
                wasmig_guest::progress(5, Some(10));
                wasmig_guest::progress(10, Some(10));
                Ok(())
            }
            "log-flood" => {
                // 100,000 lines of 100 bytes: 10 MB, ten times a call's log budget.
                let line = "x".repeat(90);
                for i in 0..100_000 {
                    info!("{i:>9} {line}");
                }
                Ok(())
            }
            "log-hidden" => {
                // 200,000 trace lines (6 MB, not shown by default), then one shown.
                for i in 0..200_000 {
                    trace!("trace line {i:>9} xxxxxxxxxx");
                }
                warn!("visible after the trace lines");
                Ok(())
            }
            other => bail!("unknown scenario mode {other}"),
        }
    }

    fn downgrade() -> Result<()> {
        db::batch("DROP TABLE scenario_marker")?;
        Ok(())
    }
}

/// Cursors opened inside a savepoint that is rolled back are closed with it: reading one is
/// an error, dropping it is fine, and the transaction goes on. A cursor opened outside
/// survives.
fn cursor_savepoint() -> Result<()> {
    db::batch("INSERT INTO scenario_marker (x) VALUES (2), (3)")?;
    let mut outer = db::cursor("SELECT x FROM scenario_marker ORDER BY x", &[])?;
    let mut inner = None;
    let rolled_back: Result<()> = db::savepoint(|| {
        let mut cursor = db::cursor("SELECT x FROM scenario_marker", &[])?;
        cursor.next_chunk(1)?;
        inner = Some(cursor);
        bail!("rolled back on purpose")
    });
    if rolled_back.is_ok() {
        bail!("the savepoint was released");
    }
    // Opened in an inner savepoint that was released, then the outer one rolled back.
    let mut nested = None;
    let _ = db::savepoint(|| {
        nested = Some(db::savepoint(|| {
            db::cursor("SELECT x FROM scenario_marker", &[])
        })?);
        Err::<(), _>(wasmig_guest::Error::msg("rolled back on purpose"))
    });
    for cursor in [inner, nested] {
        let mut cursor = cursor.expect("the cursor was opened");
        match cursor.next_chunk(1) {
            Err(e) if e.to_string().contains("closed by rolling back") => info!("closed: {e}"),
            Err(e) => bail!("unexpected error from a closed cursor: {e}"),
            Ok(_) => bail!("a cursor outlived its savepoint's rollback"),
        }
        drop(cursor);
    }
    db::execute("INSERT INTO scenario_marker (x) VALUES (4)", &[])?;
    let first = outer.next_chunk(10)?;
    if first.len() != 3 {
        bail!("the outer cursor read {} rows", first.len());
    }
    Ok(())
}

wasmig_guest::migration!(Scenario);

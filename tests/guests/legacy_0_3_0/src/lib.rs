//! A migration built against the frozen `wasmig:migration@0.3.0` (through raw bindings of
//! `wit/deps/migration-0.3.0`, not the SDK): wasmig must keep running components built
//! before 0.4.0 added the column calls, and those stored in databases by older releases.
//! Its types are those of 0.4.0 without the column types, and its dialect is the current
//! one (`mysql` included). It runs in two batches: the first creates a table and fills it
//! with `copy-in`, the second uses the dialect, a statement, a savepoint, a cursor, a query
//! and the log, all through the 0.3.0 interfaces.

#[rustfmt::skip]
#[allow(dead_code, missing_docs, unreachable_pub, unused_lifetimes, clippy::all)]
mod bindings;

use bindings::wasmig::migration::batch;
use bindings::wasmig::migration::log::{Level, log};
use bindings::wasmig::migration::sql;
use bindings::wasmig::migration::types::Value;

struct Legacy;

fn describe(e: sql::SqlError) -> String {
    format!("{} ({})", e.message, e.code)
}

impl bindings::Guest for Legacy {
    fn upgrade() -> Result<(), String> {
        let Some(checkpoint) = batch::checkpoint() else {
            sql::batch("CREATE TABLE legacy_0_3_0_ok (id integer, label text)")
                .map_err(describe)?;
            let rows = [(1, "one"), (2, "two")]
                .map(|(id, label)| vec![Value::Int32(id), Value::Text(label.into())]);
            let copied = sql::copy_in("legacy_0_3_0_ok", &["id".into(), "label".into()], &rows)
                .map_err(describe)?;
            log(Level::Info, &format!("0.3.0 guest: copied {copied} rows"));
            batch::next_batch("copied");
            return Ok(());
        };
        let insert = match sql::dialect() {
            sql::SqlDialect::Postgres => "INSERT INTO legacy_0_3_0_ok VALUES ($1, $2)",
            sql::SqlDialect::Sqlite => "INSERT INTO legacy_0_3_0_ok VALUES (?1, ?2)",
            sql::SqlDialect::Mysql => "INSERT INTO legacy_0_3_0_ok VALUES (?, ?)",
        };
        sql::execute(insert, &[Value::Int32(3), Value::Text("three".into())]).map_err(describe)?;
        let savepoint = sql::begin_savepoint().map_err(describe)?;
        if sql::execute("INSERT INTO no_such_table VALUES (1)", &[]).is_ok() {
            return Err("an insert into a missing table succeeded".into());
        }
        savepoint.rollback().map_err(describe)?;
        let cursor = sql::open_cursor("SELECT id FROM legacy_0_3_0_ok ORDER BY id", &[])
            .map_err(describe)?;
        let rows = cursor.next(10).map_err(describe)?;
        let total = sql::query("SELECT count(*) FROM legacy_0_3_0_ok", &[]).map_err(describe)?;
        log(
            Level::Info,
            &format!(
                "0.3.0 guest: batch after checkpoint {checkpoint:?}, read {} rows through a cursor, {:?} by count",
                rows.len(),
                total.rows[0][0]
            ),
        );
        Ok(())
    }

    fn downgrade() -> Result<(), String> {
        sql::batch("DROP TABLE legacy_0_3_0_ok").map_err(describe)
    }
}

bindings::export!(Legacy with_types_in bindings);

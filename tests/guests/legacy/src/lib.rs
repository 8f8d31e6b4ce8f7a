//! A migration built against the frozen `wasmig:migration@0.1.0` (through raw bindings of
//! `wit/deps/migration-0.1.0`, not the SDK): wasmig must keep running components built
//! before 0.2.0, and those stored in databases by older releases. It uses a statement, a
//! query, a cursor, a savepoint and the log, all through the 0.1.0 interfaces.

#[rustfmt::skip]
#[allow(dead_code, missing_docs, unreachable_pub, unused_lifetimes, clippy::all)]
mod bindings;

use bindings::wasmig::migration::log::{Level, log};
use bindings::wasmig::migration::sql;
use bindings::wasmig::migration::types::Value;

struct Legacy;

fn describe(e: sql::SqlError) -> String {
    format!("{} ({})", e.message, e.code)
}

impl bindings::Guest for Legacy {
    fn upgrade() -> Result<(), String> {
        sql::batch("CREATE TABLE legacy_ok (id integer)").map_err(describe)?;
        let insert = match sql::dialect() {
            sql::SqlDialect::Postgres => "INSERT INTO legacy_ok VALUES ($1)",
            sql::SqlDialect::Sqlite => "INSERT INTO legacy_ok VALUES (?1)",
        };
        sql::execute_many(insert, &[vec![Value::Int32(1)], vec![Value::Int32(2)]])
            .map_err(describe)?;
        let savepoint = sql::begin_savepoint().map_err(describe)?;
        if sql::execute("INSERT INTO no_such_table VALUES (1)", &[]).is_ok() {
            return Err("an insert into a missing table succeeded".into());
        }
        savepoint.rollback().map_err(describe)?;
        let cursor =
            sql::open_cursor("SELECT id FROM legacy_ok ORDER BY id", &[]).map_err(describe)?;
        let rows = cursor.next(10).map_err(describe)?;
        let total = sql::query("SELECT count(*) FROM legacy_ok", &[]).map_err(describe)?;
        log(
            Level::Info,
            &format!(
                "legacy guest: read {} rows through a cursor, {:?} by count",
                rows.len(),
                total.rows[0][0]
            ),
        );
        Ok(())
    }

    fn downgrade() -> Result<(), String> {
        sql::batch("DROP TABLE legacy_ok").map_err(describe)
    }
}

bindings::export!(Legacy with_types_in bindings);

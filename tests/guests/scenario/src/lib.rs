//! A guest whose behaviour the test chooses through the `e2e_mode` table: succeed, fail in
//! each way a migration can fail, block in a long statement, log, or recover from an SQL
//! error inside a savepoint. Every mode first writes a marker row, so the tests can see
//! whether anything was left behind.

use wasmig_guest::{Dialect, Migration, Result, bail, db, info, warn};

struct Scenario;

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
            "panic" => panic!("the scenario panics"),
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
                }
                Ok(())
            }
            "log" => {
                info!("hello from the guest on {}", db::dialect());
                wasmig_guest::progress(5, Some(10));
                wasmig_guest::progress(10, Some(10));
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

wasmig_guest::migration!(Scenario);

//! Opt every tenth customer in to the newsletter, in their JSON `preferences`.
//!
//! One migration for three databases, branching on `db::dialect()`: each has its own JSON
//! functions (PostgreSQL's `jsonb` operators, SQLite's JSON1, MySQL's and MariaDB's
//! `JSON_SET`). Both directions touch only the key they own, so other preferences survive a
//! round trip.

use wasmig_guest::{Dialect, Migration, Result, db, info, progress};

struct Preferences;

/// Every tenth customer.
const CHOSEN: &str = "id % 10 = 0";

impl Migration for Preferences {
    fn upgrade() -> Result<()> {
        let dialect = db::dialect();
        let set = match dialect {
            Dialect::Postgres => "jsonb_set(preferences::jsonb, '{newsletter}', 'true')::text",
            Dialect::Sqlite => "json_set(preferences, '$.newsletter', json('true'))",
            Dialect::Mysql => "JSON_SET(preferences, '$.newsletter', true)",
        };
        let total: i64 = db::query_one(
            &format!("SELECT count(*) AS n FROM customers WHERE {CHOSEN}"),
            &[],
        )?
        .get("n")?;
        let n = db::execute(
            &format!("UPDATE customers SET preferences = {set} WHERE {CHOSEN}"),
            &[],
        )?;
        progress(n, u64::try_from(total).ok());
        info!("{n} customers opted in to the newsletter ({dialect})");
        Ok(())
    }

    fn downgrade() -> Result<()> {
        let remove = match db::dialect() {
            Dialect::Postgres => "(preferences::jsonb - 'newsletter')::text",
            Dialect::Sqlite => "json_remove(preferences, '$.newsletter')",
            Dialect::Mysql => "JSON_REMOVE(preferences, '$.newsletter')",
        };
        db::execute(
            &format!("UPDATE customers SET preferences = {remove} WHERE {CHOSEN}"),
            &[],
        )?;
        Ok(())
    }
}

wasmig_guest::migration!(Preferences);

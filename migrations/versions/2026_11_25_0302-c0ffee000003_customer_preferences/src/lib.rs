//! Customer preferences as JSON, and a unique index on the normalised address.
//!
//! One migration for both databases, branching on `db::dialect()`: PostgreSQL gets a
//! `jsonb` column and a partial index, SQLite a checked `TEXT` column. (The project targets
//! those two: its first revision's SQL is not MySQL's, so MySQL is refused.)

use wasmig_guest::{Dialect, Jsonb, Migration, Result, bail, db, info, params};

struct Preferences;

impl Migration for Preferences {
    fn upgrade() -> Result<()> {
        let dialect = db::dialect();
        match dialect {
            Dialect::Postgres => db::batch(
                "ALTER TABLE customers ADD COLUMN preferences JSONB NOT NULL DEFAULT '{}';
                 CREATE UNIQUE INDEX customers_email_norm_key ON customers (email_norm);
                 CREATE INDEX customers_newsletter ON customers ((preferences->>'newsletter'))
                     WHERE preferences ? 'newsletter';",
            )?,
            Dialect::Sqlite => db::batch(
                "ALTER TABLE customers ADD COLUMN preferences TEXT NOT NULL DEFAULT '{}'
                     CHECK (json_valid(preferences));
                 CREATE UNIQUE INDEX customers_email_norm_key ON customers (email_norm);",
            )?,
            Dialect::Mysql => bail!("this example project targets PostgreSQL and SQLite"),
        }
        let opt_in = match dialect {
            Dialect::Postgres => "UPDATE customers SET preferences = $1 WHERE id % 10 = 0",
            Dialect::Sqlite => "UPDATE customers SET preferences = ?1 WHERE id % 10 = 0",
            Dialect::Mysql => "UPDATE customers SET preferences = ? WHERE id % 10 = 0",
        };
        let n = db::execute(opt_in, &params![Jsonb(r#"{"newsletter": true}"#.into())])?;
        info!("{n} customers opted in to the newsletter ({dialect})");
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::batch(
            "DROP INDEX customers_email_norm_key;
             ALTER TABLE customers DROP COLUMN preferences;",
        )?;
        Ok(())
    }
}

wasmig_guest::migration!(Preferences);

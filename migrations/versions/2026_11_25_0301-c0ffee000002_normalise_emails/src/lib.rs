//! Normalise customers' e-mail addresses into their `email_norm` column.
//!
//! A data migration in Rust, in resumable batches (`transaction = "batched"` in its
//! manifest): [`Keyset`] walks the table by id, 1,000 rows per batch; each batch normalises
//! its addresses in Rust, writes them back with one `execute_many`, and commits with a
//! checkpoint (the last id), so a run killed half-way resumes where it stopped. Progress is
//! reported across batches. The column itself comes from the SQL revision before: a schema
//! change belongs in SQL, where MySQL runs it statement by statement and PostgreSQL under its
//! lock timeout, not in a batch's transaction.

use wasmig_guest::batch::Keyset;
use wasmig_guest::{Dialect, Migration, Result, db, params};

/// Rows per batch: one query, one `execute_many` and one commit each.
const BATCH: u32 = 1000;

struct NormaliseEmails;

/// `"  Customer7@Example.COM "` → `"customer7@example.com"`.
fn normalise(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The statement for this database: only the placeholder syntax differs.
fn sql(postgres: &'static str, sqlite: &'static str, mysql: &'static str) -> &'static str {
    match db::dialect() {
        Dialect::Postgres => postgres,
        Dialect::Sqlite => sqlite,
        Dialect::Mysql => mysql,
    }
}

impl Migration for NormaliseEmails {
    fn upgrade() -> Result<()> {
        let select = sql(
            "SELECT id, email FROM customers WHERE id > $1 ORDER BY id LIMIT $2",
            "SELECT id, email FROM customers WHERE id > ?1 ORDER BY id LIMIT ?2",
            "SELECT id, email FROM customers WHERE id > ? ORDER BY id LIMIT ?",
        );
        // Parameters in the order MySQL's `?` binds them.
        let update = sql(
            "UPDATE customers SET email_norm = $1 WHERE id = $2",
            "UPDATE customers SET email_norm = ?1 WHERE id = ?2",
            "UPDATE customers SET email_norm = ? WHERE id = ?",
        );
        Keyset::<i64>::new(select)
            .size(BATCH)
            .total("SELECT count(*) FROM customers")
            .run(|rows| {
                let mut updates = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: i64 = row.get("id")?;
                    let email: String = row.get("email")?;
                    updates.push(params![normalise(&email), id]);
                }
                db::execute_many(update, &updates)?;
                Ok(())
            })
    }

    fn downgrade() -> Result<()> {
        db::execute("UPDATE customers SET email_norm = NULL", &[])?;
        Ok(())
    }
}

wasmig_guest::migration!(NormaliseEmails);

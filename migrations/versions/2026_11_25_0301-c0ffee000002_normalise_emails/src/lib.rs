//! Normalise customers' e-mail addresses into a new `email_norm` column.
//!
//! A data migration in Rust: it walks the table through a cursor (a server-side cursor on
//! PostgreSQL, so memory stays bounded however large the table), normalises each address in
//! Rust, writes each chunk back with one `execute_many`, and reports progress.

use wasmig_guest::{Dialect, Migration, Result, db, info, params};

/// Rows per chunk: one cursor fetch and one `execute_many` each.
const CHUNK: u32 = 1000;

struct NormaliseEmails;

/// `"  Customer7@Example.COM "` → `"customer7@example.com"`.
fn normalise(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Migration for NormaliseEmails {
    fn upgrade() -> Result<()> {
        db::batch("ALTER TABLE customers ADD COLUMN email_norm TEXT")?;
        let total: i64 = db::query_one("SELECT count(*) FROM customers", &[])?.get(0)?;
        let update = match db::dialect() {
            Dialect::Postgres => "UPDATE customers SET email_norm = $2 WHERE id = $1",
            Dialect::Sqlite => "UPDATE customers SET email_norm = ?2 WHERE id = ?1",
        };

        let mut cursor = db::cursor("SELECT id, email FROM customers ORDER BY id", &[])?;
        let mut done = 0u64;
        loop {
            let rows = cursor.next_chunk(CHUNK)?;
            if rows.is_empty() {
                break;
            }
            let mut updates = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: i64 = row.get("id")?;
                let email: String = row.get("email")?;
                updates.push(params![id, normalise(&email)]);
            }
            done += db::execute_many(update, &updates)?;
            wasmig_guest::progress(done, Some(total as u64));
        }
        info!("normalised {done} of {total} addresses");
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::batch("ALTER TABLE customers DROP COLUMN email_norm")?;
        Ok(())
    }
}

wasmig_guest::migration!(NormaliseEmails);

//! The 1M-row transform of `bench/run`, written into a new table with `db::copy_in`.
//!
//! Creates `people_norm (id, email_norm)` and fills it in keyset batches of 10,000 within
//! the step's transaction: one `db::query` per batch, normalise in Rust, then one
//! `db::copy_in` (PostgreSQL: `COPY people_norm (id, email_norm) FROM STDIN`) of the batch.
//! `bench/native copy` does the same against sqlx directly.

use wasmig_guest::{Migration, Result, Value, db, info};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

struct NormalisePeopleCopy;

impl Migration for NormalisePeopleCopy {
    fn upgrade() -> Result<()> {
        db::batch("CREATE TABLE people_norm (id bigint NOT NULL, email_norm text NOT NULL)")?;
        let mut last = i64::MIN;
        let mut done = 0u64;
        loop {
            let rows = db::query(
                "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2",
                &[Value::Int64(last), Value::Int64(BATCH)],
            )?;
            if rows.is_empty() {
                break;
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut values = row.into_values().into_iter();
                let (Some(Value::Int64(id)), Some(Value::Text(email))) =
                    (values.next(), values.next())
                else {
                    wasmig_guest::bail!("unexpected row shape");
                };
                last = id;
                out.push(vec![
                    Value::Int64(id),
                    Value::Text(email.trim().to_lowercase()),
                ]);
            }
            done += db::copy_in("people_norm", &["id", "email_norm"], &out)?;
        }
        info!("wrote {done} rows into people_norm");
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::batch("DROP TABLE people_norm")
    }
}

wasmig_guest::migration!(NormalisePeopleCopy);

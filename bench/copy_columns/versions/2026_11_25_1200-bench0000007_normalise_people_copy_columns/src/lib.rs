//! The 1M-row transform of `bench/run`, written into a new table with the column calls.
//!
//! The same work as `bench/copy` (create `people_norm (id, email_norm)`, fill it in keyset
//! batches of 10,000 within the step's transaction), with each batch read by
//! `db::query_columns` and written by `db::copy_in_columns` (PostgreSQL: one `COPY ... FROM
//! STDIN` per batch): two columns cross between guest and host per batch, not 20,000 values.

use wasmig_guest::{ColumnValues, Migration, Result, TextColumn, Value, db, info};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

struct NormalisePeopleCopyColumns;

impl Migration for NormalisePeopleCopyColumns {
    fn upgrade() -> Result<()> {
        db::batch("CREATE TABLE people_norm (id bigint NOT NULL, email_norm text NOT NULL)")?;
        let mut last = i64::MIN;
        let mut done = 0u64;
        loop {
            let batch = db::query_columns(
                "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2",
                &[Value::Int64(last), Value::Int64(BATCH)],
            )?;
            if batch.is_empty() {
                break;
            }
            let ids = batch.get(0)?.int64s()?;
            let mut norms = TextColumn::with_capacity(batch.len(), 32 * batch.len());
            for email in batch.get(1)?.texts()? {
                let Some(email) = email else {
                    wasmig_guest::bail!("people.email is NULL after id {last}");
                };
                norms.push(email.trim().to_lowercase());
            }
            last = *ids.last().expect("a non-empty batch");
            done += db::copy_in_columns(
                "people_norm",
                &["id", "email_norm"],
                &[ColumnValues::from_int64s(ids.to_vec()), norms.finish()],
            )?;
        }
        info!("wrote {done} rows into people_norm");
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::batch("DROP TABLE people_norm")
    }
}

wasmig_guest::migration!(NormalisePeopleCopyColumns);

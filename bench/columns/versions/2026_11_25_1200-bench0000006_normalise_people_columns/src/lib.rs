//! The 1M-row transform of `bench/run`, as a wasmig Rust guest using the column calls.
//!
//! The same work as `bench/project` (keyset batches of 10,000 rows in the step's
//! transaction, `lower(trim(email))` in Rust, one `UPDATE ... FROM UNNEST` of two arrays per
//! batch), with each batch read by `db::query_columns` and written by `db::execute_columns`:
//! a batch crosses between guest and host as two columns, not 20,000 values.

use wasmig_guest::{ColumnValues, Migration, Result, TextColumn, Value, db, info};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

struct NormalisePeopleColumns;

impl Migration for NormalisePeopleColumns {
    fn upgrade() -> Result<()> {
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
            let emails = batch.get(1)?;
            let mut norms = TextColumn::with_capacity(batch.len(), 32 * batch.len());
            for email in emails.texts()? {
                norms.push_opt(email.map(|e| e.trim().to_lowercase()));
            }
            last = *ids.last().expect("a non-empty batch");
            done += db::execute_columns(
                "UPDATE people AS p SET email_norm = u.norm \
                 FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id",
                &[ColumnValues::from_int64s(ids.to_vec()), norms.finish()],
            )?;
        }
        info!("normalised {done} rows");
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::execute("UPDATE people SET email_norm = NULL", &[])?;
        Ok(())
    }
}

wasmig_guest::migration!(NormalisePeopleColumns);

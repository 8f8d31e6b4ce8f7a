//! The 1M-row transform of `bench/run`, as a wasmig Rust guest.
//!
//! Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
//! step's transaction, the same way as the native sqlx program in `bench/native`: one
//! `db::query` per batch, normalise in Rust, then one `UPDATE ... FROM UNNEST` with two array
//! parameters (one host call per batch instead of an `execute_many` of 10,000 rows).

use wasmig_guest::{ArrayValue, Migration, Result, Value, db, info};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

struct NormalisePeople;

impl Migration for NormalisePeople {
    fn upgrade() -> Result<()> {
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
            let mut ids = Vec::with_capacity(rows.len());
            let mut norms = Vec::with_capacity(rows.len());
            for row in rows {
                let mut values = row.into_values().into_iter();
                let (Some(Value::Int64(id)), Some(Value::Text(email))) =
                    (values.next(), values.next())
                else {
                    wasmig_guest::bail!("unexpected row shape");
                };
                last = id;
                ids.push(Some(id));
                norms.push(Some(email.trim().to_lowercase()));
            }
            done += db::execute(
                "UPDATE people AS p SET email_norm = u.norm \
                 FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id",
                &[
                    Value::Array(ArrayValue::Int64(ids)),
                    Value::Array(ArrayValue::Text(norms)),
                ],
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

wasmig_guest::migration!(NormalisePeople);

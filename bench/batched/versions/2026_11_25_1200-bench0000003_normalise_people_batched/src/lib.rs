//! The 1M-row transform of `bench/run` as a batched migration: the SDK's
//! [`Keyset`](wasmig_guest::batch::Keyset) walk, 10,000 rows per call.
//!
//! wasmig calls `upgrade` once per batch, each time in a fresh instance. Each call runs one
//! `db::query` for its batch, normalises in Rust and writes back with the same
//! `UPDATE ... FROM UNNEST` as `bench/project`; `Keyset` then asks for the next batch with a
//! checkpoint. Under `transaction = "batched"` each call commits with its checkpoint; under
//! `per-migration` (the copy `bench/run` makes) all calls share the step's transaction.

use wasmig_guest::batch::Keyset;
use wasmig_guest::{ArrayValue, Migration, Result, Value, db};

/// Rows per batch.
const BATCH: u32 = 10_000;

struct NormalisePeopleBatched;

impl Migration for NormalisePeopleBatched {
    fn upgrade() -> Result<()> {
        Keyset::<i64>::new("SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2")
            .size(BATCH)
            .run(|rows| {
                let mut ids = Vec::with_capacity(rows.len());
                let mut norms = Vec::with_capacity(rows.len());
                for row in rows {
                    ids.push(Some(row.get::<i64>(0)?));
                    norms.push(Some(row.get::<String>(1)?.trim().to_lowercase()));
                }
                db::execute(
                    "UPDATE people AS p SET email_norm = u.norm \
                     FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id",
                    &[
                        Value::Array(ArrayValue::Int64(ids)),
                        Value::Array(ArrayValue::Text(norms)),
                    ],
                )?;
                Ok(())
            })
    }

    fn downgrade() -> Result<()> {
        db::execute("UPDATE people SET email_norm = NULL", &[])?;
        Ok(())
    }
}

wasmig_guest::migration!(NormalisePeopleBatched);

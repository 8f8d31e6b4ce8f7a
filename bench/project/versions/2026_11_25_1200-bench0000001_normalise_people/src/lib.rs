//! The 1M-row transform of `bench/run`, as a wasmig Rust guest.
//!
//! Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
//! step's transaction, the same way as the native sqlx program in `bench/native`: one
//! `db::query` per batch, normalise in Rust, then one `UPDATE ... FROM UNNEST` with two array
//! parameters (one host call per batch instead of an `execute_many` of 10,000 rows).
//!
//! On MySQL and MariaDB (`bench/mysql/run`), which have no arrays, the write-back is one
//! `INSERT ... ON DUPLICATE KEY UPDATE` of the batch's rows with two `?` parameters each
//! (every id exists, so each row is an update): still one host call per batch.

use wasmig_guest::{ArrayValue, Dialect, Migration, Result, Value, db, info};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

struct NormalisePeople;

impl Migration for NormalisePeople {
    fn upgrade() -> Result<()> {
        let mysql = match db::dialect() {
            Dialect::Postgres => false,
            Dialect::Mysql => true,
            Dialect::Sqlite => wasmig_guest::bail!("bench/project runs on PostgreSQL and MySQL"),
        };
        let select = if mysql {
            "SELECT id, email FROM people WHERE id > ? ORDER BY id LIMIT ?"
        } else {
            "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2"
        };
        let mut last = i64::MIN;
        let mut done = 0u64;
        loop {
            let rows = db::query(select, &[Value::Int64(last), Value::Int64(BATCH)])?;
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
            if mysql {
                done += upsert_mysql(ids, norms)?;
                continue;
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

/// MySQL's write-back of one batch: `INSERT ... ON DUPLICATE KEY UPDATE` with a `(?, ?)` per
/// row. Returns the rows written (the server counts 2 per updated row).
fn upsert_mysql(ids: Vec<Option<i64>>, norms: Vec<Option<String>>) -> Result<u64> {
    let n = ids.len();
    let mut sql = String::with_capacity(64 + 7 * n);
    sql.push_str("INSERT INTO people (id, email_norm) VALUES ");
    for i in 0..n {
        sql.push_str(if i == 0 { "(?, ?)" } else { ", (?, ?)" });
    }
    sql.push_str(" ON DUPLICATE KEY UPDATE email_norm = VALUES(email_norm)");
    let mut params = Vec::with_capacity(2 * n);
    for (id, norm) in ids.into_iter().zip(norms) {
        params.push(id.map_or(Value::Null, Value::Int64));
        params.push(norm.map_or(Value::Null, Value::Text));
    }
    db::execute(&sql, &params)?;
    Ok(n as u64)
}

wasmig_guest::migration!(NormalisePeople);

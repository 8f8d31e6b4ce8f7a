//! Native baseline for the 1M-row transform of `bench/run`.
//!
//! Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 inside one
//! transaction: select a batch, normalise in Rust, write it back with one
//! `UPDATE ... FROM UNNEST($1::int8[], $2::text[])`. The database URL is the first argument.

use sqlx::{Connection, PgConnection};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), sqlx::Error> {
    let url = std::env::args()
        .nth(1)
        .expect("usage: wasmig-bench-native DATABASE_URL");
    let mut conn = PgConnection::connect(&url).await?;
    let mut tx = conn.begin().await?;
    let mut last = i64::MIN;
    let mut done = 0u64;
    loop {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(last)
                .bind(BATCH)
                .fetch_all(&mut *tx)
                .await?;
        let Some(&(end, _)) = rows.last() else {
            break;
        };
        last = end;
        let (ids, norms): (Vec<i64>, Vec<String>) = rows
            .into_iter()
            .map(|(id, email)| (id, email.trim().to_lowercase()))
            .unzip();
        done += sqlx::query(
            "UPDATE people AS p SET email_norm = u.norm \
             FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id",
        )
        .bind(&ids)
        .bind(&norms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    println!("normalised {done} rows");
    Ok(())
}

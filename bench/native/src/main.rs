//! Native baselines for the 1M-row transform of `bench/run`: the same keyset walks as the
//! Rust guests, written directly against sqlx.
//!
//! `wasmig-bench-native DATABASE_URL [MODE]`, where MODE is
//!
//! - `update` (the default, like `bench/project`): fill `people.email_norm =
//!   lower(trim(email))` in keyset batches of 10,000 inside one transaction: select a batch,
//!   normalise in Rust, write it back with one `UPDATE ... FROM UNNEST($1::int8[], $2::text[])`;
//! - `batched` (like `bench/batched` under `transaction = "batched"`): the same, but every
//!   batch is a transaction of its own that also upserts a checkpoint row (the last id) into
//!   `bench_native_checkpoint`, as wasmig saves its checkpoint with each batch;
//! - `copy` (like `bench/copy`): create `people_norm (id, email_norm)` and fill it, one
//!   `COPY ... FROM STDIN` (text format) per batch, inside one transaction;
//! - `steps N R`: not a transform: replays the database side of N wasmig steps, as wasmig
//!   runs them and as the host could (see `steps.rs`).

mod steps;

use sqlx::{Connection, PgConnection, Postgres, Transaction};

/// Rows per keyset batch.
const BATCH: i64 = 10_000;

const SELECT: &str = "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2";
const UPDATE: &str = "UPDATE people AS p SET email_norm = u.norm \
                      FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), sqlx::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: wasmig-bench-native DATABASE_URL [update|batched|copy|steps N ROUNDS]");
    let mode = args.next().unwrap_or_else(|| "update".to_owned());
    if mode == "steps" {
        let n = args
            .next()
            .and_then(|n| n.parse().ok())
            .expect("steps N ROUNDS");
        let rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        return steps::run(&url, n, rounds).await;
    }
    let mut conn = PgConnection::connect(&url).await?;
    let done = match mode.as_str() {
        "update" => update(&mut conn).await?,
        "batched" => batched(&mut conn).await?,
        "copy" => copy(&mut conn).await?,
        other => panic!("unknown mode {other:?}: expected update, batched, copy or steps N"),
    };
    println!("{mode}: normalised {done} rows");
    Ok(())
}

/// One batch: the rows after `last`, normalised.
async fn select(
    tx: &mut Transaction<'_, Postgres>,
    last: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows: Vec<(i64, String)> = sqlx::query_as(SELECT)
        .bind(last)
        .bind(BATCH)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, email)| (id, email.trim().to_lowercase()))
        .collect())
}

async fn write_back(
    tx: &mut Transaction<'_, Postgres>,
    rows: Vec<(i64, String)>,
) -> Result<u64, sqlx::Error> {
    let (ids, norms): (Vec<i64>, Vec<String>) = rows.into_iter().unzip();
    Ok(sqlx::query(UPDATE)
        .bind(&ids)
        .bind(&norms)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

async fn update(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut last = i64::MIN;
    let mut done = 0;
    loop {
        let rows = select(&mut tx, last).await?;
        let Some(&(end, _)) = rows.last() else { break };
        last = end;
        done += write_back(&mut tx, rows).await?;
    }
    tx.commit().await?;
    Ok(done)
}

async fn batched(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS bench_native_checkpoint (name text PRIMARY KEY, last bigint NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let mut last = i64::MIN;
    let mut done = 0;
    loop {
        let mut tx = conn.begin().await?;
        let rows = select(&mut tx, last).await?;
        let Some(&(end, _)) = rows.last() else {
            tx.commit().await?;
            break;
        };
        last = end;
        done += write_back(&mut tx, rows).await?;
        sqlx::query(
            "INSERT INTO bench_native_checkpoint (name, last) VALUES ('normalise', $1) \
             ON CONFLICT (name) DO UPDATE SET last = excluded.last",
        )
        .bind(last)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(done)
}

async fn copy(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("CREATE TABLE people_norm (id bigint NOT NULL, email_norm text NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let mut last = i64::MIN;
    let mut done = 0;
    loop {
        let rows = select(&mut tx, last).await?;
        let Some(&(end, _)) = rows.last() else { break };
        last = end;
        let mut data = String::with_capacity(rows.len() * 40);
        for (id, norm) in &rows {
            data.push_str(&id.to_string());
            data.push('\t');
            for c in norm.chars() {
                match c {
                    '\\' => data.push_str("\\\\"),
                    '\t' => data.push_str("\\t"),
                    '\n' => data.push_str("\\n"),
                    '\r' => data.push_str("\\r"),
                    c => data.push(c),
                }
            }
            data.push('\n');
        }
        let mut copy = tx
            .copy_in_raw("COPY people_norm (id, email_norm) FROM STDIN")
            .await?;
        // In pieces of 64 KiB, as wasmig's relay forwards it: one send of the whole
        // batch (about 300 KB) stalls on loopback TCP for the delayed ACK (about 40 ms
        // here, measured with strace), which the server's clock counts as its COPY.
        for piece in data.as_bytes().chunks(64 * 1024) {
            copy.send(piece).await?;
        }
        done += copy.finish().await?;
    }
    tx.commit().await?;
    Ok(done)
}

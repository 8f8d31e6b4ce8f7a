//! A batched data migration for the end-to-end tests, steered by the one-row table
//! `e2e_batches (size, pause_ms, fail_from, repeats, stall_from)`: walk `items (id, n)` in keyset batches
//! of `size` rows and add 1 to `n` of every row (`downgrade` subtracts it again), so that
//! after any number of interrupted runs each row must show exactly 1. `pause_ms` makes every
//! batch take that long (a window for the tests to kill wasmig in), `fail_from` fails every
//! batch whose first key is at least that id, and `repeat` asks for the next batch with the
//! checkpoint it was given (1), with a checkpoint of 100,000 bytes (2), or with `a` and `b` in
//! turn, never progressing (3); a batch whose first
//! key is at least `stall_from` spins in wasm until the deadline stops it. The first batch
//! creates `batches_first`, which a second run of that batch would fail on.
//!
//! Run as `transaction = "batched"` each batch commits on its own; as `per-migration` all of
//! them commit together.

use wasmig_guest::batch::{self, Keyset};
use wasmig_guest::{Dialect, Migration, Result, bail, db, params};

struct Batches;

/// The steering row.
struct Config {
    size: u32,
    pause_ms: i64,
    fail_from: Option<i64>,
    repeat: i64,
    stall_from: Option<i64>,
}

fn config() -> Result<Config> {
    let row = db::query_one(
        "SELECT size, pause_ms, fail_from, repeats, stall_from FROM e2e_batches",
        &[],
    )?;
    Ok(Config {
        size: row.get::<i64>("size")? as u32,
        pause_ms: row.get("pause_ms")?,
        fail_from: row.get("fail_from")?,
        repeat: row.get("repeats")?,
        stall_from: row.get("stall_from")?,
    })
}

fn sql(postgres: &'static str, sqlite: &'static str, mysql: &'static str) -> &'static str {
    match db::dialect() {
        Dialect::Postgres => postgres,
        Dialect::Sqlite => sqlite,
        Dialect::Mysql => mysql,
    }
}

/// Makes the batch take `ms` milliseconds (in the database: the guest has no clock).
fn pause(ms: i64) -> Result<()> {
    if ms <= 0 {
        return Ok(());
    }
    match db::dialect() {
        Dialect::Postgres => {
            db::query("SELECT pg_sleep($1)", &params![ms as f64 / 1000.0])?;
        }
        Dialect::Sqlite => {
            // About 5 million steps per second here; the exact time does not matter.
            db::query(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1) SELECT count(*) FROM c",
                &params![ms * 5_000],
            )?;
        }
        Dialect::Mysql => {
            db::query("SELECT SLEEP(?)", &params![ms as f64 / 1000.0])?;
        }
    }
    Ok(())
}

/// One batch: adds `delta` to `n` of the next `size` rows.
fn walk(delta: i64, first: bool) -> Result<()> {
    let config = config()?;
    match (config.repeat, batch::checkpoint()) {
        (1, Some(checkpoint)) => {
            batch::next(checkpoint);
            return Ok(());
        }
        (2, _) => {
            batch::next("x".repeat(100_000));
            return Ok(());
        }
        (3, checkpoint) => {
            let next = if checkpoint.as_deref() == Some("a") {
                "b"
            } else {
                "a"
            };
            batch::next(next.to_owned());
            return Ok(());
        }
        _ => {}
    }
    let select = sql(
        "SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT $2",
        "SELECT id FROM items WHERE id > ?1 ORDER BY id LIMIT ?2",
        "SELECT id FROM items WHERE id > ? ORDER BY id LIMIT ?",
    );
    // Parameters in the order MySQL's `?` binds them.
    let update = sql(
        "UPDATE items SET n = n + $1 WHERE id = $2",
        "UPDATE items SET n = n + ?1 WHERE id = ?2",
        "UPDATE items SET n = n + ? WHERE id = ?",
    );
    let mut walk = Keyset::<i64>::new(select)
        .size(config.size)
        .total("SELECT count(*) FROM items");
    if first {
        // DDL commits implicitly on MySQL, which wasmig refuses in a component: there the
        // first batch leaves a row in a table the test made instead.
        walk = walk.first(|| match db::dialect() {
            Dialect::Mysql => db::execute("INSERT INTO batches_first VALUES (1)", &[]).map(drop),
            _ => db::batch("CREATE TABLE batches_first (x integer)"),
        });
    }
    walk.run(|rows| {
        let first_key: i64 = rows[0].get(0)?;
        if config.fail_from.is_some_and(|from| first_key >= from) {
            bail!("asked to fail from key {first_key}");
        }
        if config.stall_from.is_some_and(|from| first_key >= from) {
            // Work that never ends and never calls the host: only the epoch deadline stops it.
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        let updates: Vec<_> = rows
            .iter()
            .map(|r| Ok(params![delta, r.get::<i64>(0)?]))
            .collect::<Result<_>>()?;
        db::execute_many(update, &updates)?;
        pause(config.pause_ms)
    })
}

impl Migration for Batches {
    fn upgrade() -> Result<()> {
        walk(1, true)
    }

    fn downgrade() -> Result<()> {
        if batch::checkpoint().is_none() {
            match db::dialect() {
                Dialect::Mysql => db::execute("DELETE FROM batches_first", &[]).map(drop)?,
                _ => db::batch("DROP TABLE batches_first")?,
            }
        }
        walk(-1, false)
    }
}

wasmig_guest::migration!(Batches);

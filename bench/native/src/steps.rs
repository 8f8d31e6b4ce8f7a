//! `wasmig-bench-native URL steps N`: replays the database side of N wasmig steps of
//! `CREATE TABLE` revisions, as three versions of the host run them and as the host could, to
//! measure what the host changes proposed in BENCHMARKS.md would gain. No wasmig code runs
//! here: the statements are copied from `host/db/src/postgres.rs` (`begin_session`,
//! `transaction_intact`, `record_step`, `store_artifact`, `finish_step`) and the pool from
//! `PgDatabase::connect`; when the host changes, this copy does not follow.
//!
//! `steps N R`: R rounds of each strategy (in a rotating order), each on fresh tables, and each
//! with two migrations: `ddl` (the `CREATE TABLE` of the benchmark's revisions) and `noop`
//! (a `SELECT 1`, like the trivial component: the bookkeeping alone). One line per run on
//! stdout: `strategy  migration  round  steps  total_ms`.
//!
//! - `wasmig-dac8e23` (the host this benchmark was written against): a pool of 4 with sqlx's
//!   `test_before_acquire` (a ping per acquire) and the reset script after every release;
//!   per step `BEGIN`, clearing sqlx's statement cache, `SELECT pg_backend_pid(),
//!   txid_current(), current_schema()`, the DDL, clearing the cache again, `SELECT
//!   txid_current()`, the three version-table statements and the artifact insert, each
//!   prepared anew (the cache was cleared), `COMMIT`: about 18 round trips.
//! - `wasmig-bac41fa` (main since "PostgreSQL: record a step in fewer round trips"): the same
//!   pool; the per-step statements are simple queries with literals, the head change and
//!   history row one statement: 8 round trips.
//! - `wasmig-main` (main since "one round trip finishes a step"): no ping (the pool's
//!   `test_before_acquire` is off), the reset after release; per step `BEGIN`, the pid/txid
//!   query, the DDL, then one simple-query message with the txid guard (a `DO` block), the
//!   head change + history row and the artifact row, `COMMIT`: 5 round trips.
//! - `lean`: the same pool and reset, but no ping, `BEGIN` and the pid/txid query in one
//!   simple-protocol round trip, the statement cache kept, and the version, history and
//!   artifact rows written by one statement guarded by the txid: 4 round trips.
//! - `lean-no-reset`: `lean` without the reset after release (what a run that holds one
//!   connection for all its steps would do; the reset would then run once).

use std::time::Instant;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgPool, Row};

const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

const TABLES: &str = "
    CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);
    CREATE TABLE wasmig_history (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        revision TEXT NOT NULL, direction TEXT NOT NULL, checksum TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ NOT NULL,
        duration_ms BIGINT NOT NULL, wasmig_version TEXT NOT NULL, error TEXT, sqlstate TEXT);
    CREATE TABLE wasmig_artifact (
        revision TEXT PRIMARY KEY, kind TEXT NOT NULL, checksum TEXT NOT NULL,
        manifest TEXT NOT NULL, up_sql TEXT, down_sql TEXT, component BYTEA,
        stored_at TIMESTAMPTZ NOT NULL)";

const CHECKSUM: &str = "e244229b19004847dc8bc6fa985c015d0817a1c19a6462049dd2820fb1e1e3a6";

fn ddl(prefix: &str, i: usize, noop: bool) -> (String, String) {
    if noop {
        return ("SELECT 1".to_owned(), "SELECT 1".to_owned());
    }
    (
        format!(
            "CREATE TABLE {prefix}{i:03} (id bigint PRIMARY KEY, name text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now());"
        ),
        format!("DROP TABLE {prefix}{i:03};"),
    )
}

async fn pool(url: &str, ping: bool, reset: bool) -> Result<PgPool, sqlx::Error> {
    let mut options = PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(ping);
    if reset {
        options = options.after_release(|conn, _| {
            Box::pin(async move { Ok(sqlx::raw_sql(RESET_SESSION).execute(conn).await.is_ok()) })
        });
    }
    options.connect(url).await
}

/// One step as the host at dac8e23 runs it.
async fn step_wasmig(pool: &PgPool, i: usize, prefix: &str, noop: bool) -> Result<(), sqlx::Error> {
    let rev = format!("{prefix}{i:03}");
    let prev = format!("{prefix}{:03}", i - 1);
    let (up, down) = ddl(prefix, i, noop);
    let mut tx = pool.begin().await?;
    if tx.cached_statements_size() > 0 {
        tx.clear_cached_statements().await?;
    }
    let (_pid, xid, _schema): (i32, i64, Option<String>) =
        sqlx::query_as("SELECT pg_backend_pid(), txid_current(), current_schema()::text")
            .fetch_one(&mut *tx)
            .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(up.clone()))
        .execute(&mut *tx)
        .await?;
    if tx.cached_statements_size() > 0 {
        tx.clear_cached_statements().await?;
    }
    let now: i64 = sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(now, xid);
    sqlx::query("DELETE FROM \"public\".wasmig_version WHERE revision = ANY($1)")
        .bind(vec![prev])
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO \"public\".wasmig_version (revision) SELECT unnest($1::text[])")
        .bind(vec![rev.clone()])
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO \"public\".wasmig_history
             (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
              error, sqlstate)
         VALUES ($1, $2, $3, now(), now(), $4, $5, $6, $7)",
    )
    .bind(&rev)
    .bind("upgrade")
    .bind(CHECKSUM)
    .bind(1_i64)
    .bind("0.1.0")
    .bind(None::<String>)
    .bind(None::<String>)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO \"public\".wasmig_artifact
             (revision, kind, checksum, manifest, up_sql, down_sql, component, stored_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (revision) DO UPDATE SET
             kind = excluded.kind, checksum = excluded.checksum,
             manifest = excluded.manifest, up_sql = excluded.up_sql,
             down_sql = excluded.down_sql, component = excluded.component,
             stored_at = excluded.stored_at",
    )
    .bind(&rev)
    .bind("sql")
    .bind(CHECKSUM)
    .bind(format!("revision = \"{rev}\"\nkind = \"sql\"\n"))
    .bind(&up)
    .bind(&down)
    .bind(None::<Vec<u8>>)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

fn lit(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One step as the host runs it since bac41fa: simple queries with literals.
async fn step_simple(pool: &PgPool, i: usize, prefix: &str, noop: bool) -> Result<(), sqlx::Error> {
    let rev = format!("{prefix}{i:03}");
    let prev = format!("{prefix}{:03}", i - 1);
    let (up, down) = ddl(prefix, i, noop);
    let mut tx = pool.begin().await?;
    if tx.cached_statements_size() > 0 {
        tx.clear_cached_statements().await?;
    }
    let row = sqlx::raw_sql("SELECT pg_backend_pid(), txid_current(), current_schema()::text")
        .fetch_one(&mut *tx)
        .await?;
    let xid: i64 = row.try_get(1)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(up.clone()))
        .execute(&mut *tx)
        .await?;
    if tx.cached_statements_size() > 0 {
        tx.clear_cached_statements().await?;
    }
    let row = sqlx::raw_sql("SELECT txid_current()")
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(row.try_get::<i64, _>(0)?, xid);
    let remove = format!("ARRAY[{}]::text[]", lit(&prev));
    let add = format!("ARRAY[{}]::text[]", lit(&rev));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "WITH removed AS (DELETE FROM \"public\".wasmig_version
                          WHERE revision = ANY({remove}) AND revision <> ALL({add})),
              added AS (INSERT INTO \"public\".wasmig_version (revision)
                        SELECT a FROM unnest({add}) AS a WHERE a <> ALL({remove}))
         INSERT INTO \"public\".wasmig_history
             (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
              error, sqlstate)
         VALUES ({}, E'upgrade', {}, now(), now(), 1, E'0.1.0', NULL, NULL)",
        lit(&rev),
        lit(CHECKSUM)
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"public\".wasmig_artifact
             (revision, kind, checksum, manifest, up_sql, down_sql, component, stored_at)
         VALUES ({}, E'sql', {}, {}, {}, {}, NULL, now())
         ON CONFLICT (revision) DO UPDATE SET
             kind = excluded.kind, checksum = excluded.checksum,
             manifest = excluded.manifest, up_sql = excluded.up_sql,
             down_sql = excluded.down_sql, component = excluded.component,
             stored_at = excluded.stored_at",
        lit(&rev),
        lit(CHECKSUM),
        lit(&format!("revision = \"{rev}\"\nkind = \"sql\"\n")),
        lit(&up),
        lit(&down)
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One step as the host runs it since "one round trip finishes a step": the txid guard,
/// the version tables and the artifact row in one simple-query message.
async fn step_main(pool: &PgPool, i: usize, prefix: &str, noop: bool) -> Result<(), sqlx::Error> {
    let rev = format!("{prefix}{i:03}");
    let prev = format!("{prefix}{:03}", i - 1);
    let (up, down) = ddl(prefix, i, noop);
    let mut tx = pool.begin().await?;
    let row = sqlx::raw_sql("SELECT pg_backend_pid(), txid_current(), current_schema()::text")
        .fetch_one(&mut *tx)
        .await?;
    let xid: i64 = row.try_get(1)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(up.clone()))
        .execute(&mut *tx)
        .await?;
    let remove = format!("ARRAY[{}]::text[]", lit(&prev));
    let add = format!("ARRAY[{}]::text[]", lit(&rev));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN IF txid_current() <> {xid} THEN \
         RAISE EXCEPTION 'wasmig: the transaction is not the one begun' \
         USING ERRCODE = 'WMG01'; END IF; END $$;
         WITH removed AS (DELETE FROM \"public\".wasmig_version
                          WHERE revision = ANY({remove}) AND revision <> ALL({add})),
              added AS (INSERT INTO \"public\".wasmig_version (revision)
                        SELECT a FROM unnest({add}) AS a WHERE a <> ALL({remove}))
         INSERT INTO \"public\".wasmig_history
             (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version,
              error, sqlstate)
         VALUES ({rev_lit}, E'upgrade', {sum}, now(), now(), 1, E'0.1.0', NULL, NULL);
         INSERT INTO \"public\".wasmig_artifact
             (revision, kind, checksum, manifest, up_sql, down_sql, component, stored_at)
         VALUES ({rev_lit}, E'sql', {sum}, {manifest}, {up_lit}, {down_lit}, NULL, now())
         ON CONFLICT (revision) DO UPDATE SET
             kind = excluded.kind, checksum = excluded.checksum,
             manifest = excluded.manifest, up_sql = excluded.up_sql,
             down_sql = excluded.down_sql, component = excluded.component,
             stored_at = excluded.stored_at;",
        rev_lit = lit(&rev),
        sum = lit(CHECKSUM),
        manifest = lit(&format!("revision = \"{rev}\"\nkind = \"sql\"\n")),
        up_lit = lit(&up),
        down_lit = lit(&down)
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One step as the host could run it: 4 round trips.
async fn step_lean(pool: &PgPool, i: usize, prefix: &str, noop: bool) -> Result<(), sqlx::Error> {
    let rev = format!("{prefix}{i:03}");
    let prev = format!("{prefix}{:03}", i - 1);
    let (up, down) = ddl(prefix, i, noop);
    let mut conn = pool.acquire().await?;
    // BEGIN and the transaction's identity in one simple-protocol round trip.
    let rows = conn
        .fetch_all("BEGIN; SELECT pg_backend_pid(), txid_current(), current_schema()::text")
        .await?;
    let xid: i64 = rows[0].try_get(1)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(up.clone()))
        .execute(&mut *conn)
        .await?;
    // Version, history and artifact rows in one statement, only in the transaction begun.
    let written = sqlx::query(
        "WITH guard AS (SELECT txid_current() = $10 AS ok),
              d AS (DELETE FROM \"public\".wasmig_version
                    WHERE revision = ANY($1) AND (SELECT ok FROM guard)),
              v AS (INSERT INTO \"public\".wasmig_version (revision)
                    SELECT unnest($2::text[]) WHERE (SELECT ok FROM guard)),
              h AS (INSERT INTO \"public\".wasmig_history
                        (revision, direction, checksum, started_at, finished_at, duration_ms,
                         wasmig_version, error, sqlstate)
                    SELECT $3, 'upgrade', $4, now(), now(), 1, '0.1.0', NULL, NULL
                    WHERE (SELECT ok FROM guard))
         INSERT INTO \"public\".wasmig_artifact
             (revision, kind, checksum, manifest, up_sql, down_sql, component, stored_at)
         SELECT $3, 'sql', $4, $5, $6, $7, $8, now() WHERE (SELECT ok FROM guard)
         ON CONFLICT (revision) DO UPDATE SET
             kind = excluded.kind, checksum = excluded.checksum,
             manifest = excluded.manifest, up_sql = excluded.up_sql,
             down_sql = excluded.down_sql, component = excluded.component,
             stored_at = excluded.stored_at
         RETURNING 1",
    )
    .bind(vec![prev])
    .bind(vec![rev.clone()])
    .bind(&rev)
    .bind(CHECKSUM)
    .bind(format!("revision = \"{rev}\"\nkind = \"sql\"\n"))
    .bind(&up)
    .bind(&down)
    .bind(None::<Vec<u8>>)
    .bind(None::<String>)
    .bind(xid)
    .fetch_all(&mut *conn)
    .await?;
    assert_eq!(written.len(), 1, "the transaction changed under the step");
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    Ok(())
}

pub async fn run(url: &str, steps: usize, rounds: usize) -> Result<(), sqlx::Error> {
    for round in 1..=rounds {
        for migration in ["ddl", "noop"] {
            // A rotating order, so no strategy always runs first.
            let mut strategies = [
                ("wasmig-dac8e23", true, true),
                ("wasmig-bac41fa", true, true),
                ("wasmig-main", false, true),
                ("lean", false, true),
                ("lean-no-reset", false, false),
            ];
            strategies.rotate_left(round % 5);
            for (name, ping, reset) in strategies {
                let noop = migration == "noop";
                let pool = pool(url, ping, reset).await?;
                let prefix = format!("s_{}_{migration}_{round}_", name.replace('-', "_"));
                let mut c = pool.acquire().await?;
                for table in ["wasmig_version", "wasmig_history", "wasmig_artifact"] {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                        .execute(&mut *c)
                        .await?;
                }
                sqlx::raw_sql(TABLES).execute(&mut *c).await?;
                drop(c);
                let started = Instant::now();
                for i in 1..=steps {
                    match name {
                        "wasmig-dac8e23" => step_wasmig(&pool, i, &prefix, noop).await?,
                        "wasmig-bac41fa" => step_simple(&pool, i, &prefix, noop).await?,
                        "wasmig-main" => step_main(&pool, i, &prefix, noop).await?,
                        _ => step_lean(&pool, i, &prefix, noop).await?,
                    }
                }
                let total = started.elapsed().as_secs_f64() * 1000.0;
                pool.close().await;
                println!("{name}\t{migration}\t{round}\t{steps}\t{total:.1}");
            }
        }
    }
    Ok(())
}

//! The partitions of a batched step run by several workers (`[partitions]` in its manifest,
//! `wasmig up --workers N`, and other `wasmig` processes joining): creating them, claiming
//! one, fencing a batch by its claim, saving its checkpoint, reading where they stand.
//!
//! A claim is a lease on one row: `owner`, `lease_until` (the server's clock) and a `token`
//! that every claim increases. A worker takes the first partition that no one holds (never
//! claimed, released, or its lease run out) with `FOR UPDATE SKIP LOCKED`, so claims never
//! wait on each other; partition 0 first, alone, until its first batch has committed (its
//! first batch does the step's one-time work, such as DDL). Each batch locks its row
//! (`FOR UPDATE`) under the token it claimed before the guest runs, and writes its
//! checkpoint through the same token: a worker whose lease ran out and whose partition
//! another worker took cannot commit a batch, and the row stays locked while a batch runs,
//! so a slow batch is never taken over half-way. Rows are exactly once because a batch's
//! writes commit with its checkpoint or not at all.
//!
//! PostgreSQL only (`SKIP LOCKED`): on SQLite, with one writer at a time, a partitioned
//! step runs as one walk.

use chrono::Utc;

use super::{Driver, Kind, Param, Statement, VersionStore, confirm, int, query_error, required};
use crate::{PARTITION_TABLE, Partition};

/// The columns [`row`] reads, in order.
const COLUMNS: &str = "part, parts, first_key, last_key, checkpoint, batches, done, token,
     CASE WHEN owner IS NOT NULL AND lease_until OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
          THEN 1::pg_catalog.int8 ELSE 0::pg_catalog.int8 END";

const KINDS: &[Kind] = &[
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
];

fn row(r: &[super::Cell]) -> Result<Partition, sqlx::Error> {
    Ok(Partition {
        part: int(&r[0], "part")?,
        parts: int(&r[1], "parts")?,
        first_key: int(&r[2], "first_key")?,
        last_key: int(&r[3], "last_key")?,
        checkpoint: required(&r[4], "checkpoint")?,
        batches: int(&r[5], "batches")?,
        done: int(&r[6], "done")? != 0,
        token: int(&r[7], "token")?,
        held: int(&r[8], "held")? != 0,
    })
}

/// A lease of `ms` milliseconds from now, on the server's clock.
fn lease(ms: usize) -> String {
    format!(
        "pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) (${ms}::pg_catalog.int8 OPERATOR(pg_catalog.*) pg_catalog.interval '1 millisecond')"
    )
}

impl VersionStore {
    /// Creates the partitions of `revision`, one per range, each starting from its seed
    /// checkpoint ([`Partition::seed`]), unclaimed. Their tokens start from the server's
    /// clock in microseconds, so a claim of partitions created again (after `wasmig
    /// resolve`) never shares a token with a claim of the ones before.
    pub async fn create_partitions(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        ranges: &[(i64, i64)],
    ) -> anyhow::Result<()> {
        let doing = format!("creating the partitions of {revision}");
        let parts = ranges.len() as i64;
        for (part, &(first, last)) in ranges.iter().enumerate() {
            let part = part as i64;
            let done = d
                .execute(&Statement::new(
                    format!(
                        "INSERT INTO {} (revision, part, parts, first_key, last_key, checkpoint,
                                         batches, done, owner, token, lease_until, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, NULL,
                                 (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())
                                  OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8,
                                 NULL, $7)",
                        self.table(PARTITION_TABLE)
                    ),
                    vec![
                        super::txt(revision),
                        Param::Int(part),
                        Param::Int(parts),
                        Param::Int(first),
                        Param::Int(last),
                        super::txt(&Partition::seed(part, parts, first, last)),
                        Param::Time(Utc::now()),
                    ],
                ))
                .await
                .map_err(query_error(doing.clone()))?;
            confirm(done, &doing)?;
        }
        Ok(())
    }

    /// Claims the first partition of `revision` no worker holds, for `owner`, with a lease
    /// of `lease_ms`: `None` when every partition is done or held, or while partition 0 has
    /// not committed its first batch and someone holds it. Autocommitted on its own (the
    /// caller's connection outside a transaction).
    pub async fn claim_partition(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        owner: &str,
        lease_ms: i64,
    ) -> anyhow::Result<Option<Partition>> {
        let table = self.table(PARTITION_TABLE);
        let eq = self.words.eq();
        let sql = format!(
            "UPDATE {table} SET owner = $2, token = token OPERATOR(pg_catalog.+) 1,
                 lease_until = {lease}, updated_at = pg_catalog.clock_timestamp()
             WHERE revision {eq} $1 AND part {eq} (
                 SELECT p.part FROM {table} p
                 WHERE p.revision {eq} $1 AND p.done {eq} 0
                   AND (p.owner IS NULL OR p.lease_until OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp())
                   AND (p.part {eq} 0 OR EXISTS (
                        SELECT 1 FROM {table} z WHERE z.revision {eq} $1 AND z.part {eq} 0
                          AND (z.done OPERATOR(pg_catalog.<>) 0 OR z.batches OPERATOR(pg_catalog.>) 0)))
                 ORDER BY p.part LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}",
            lease = lease(3),
        );
        let doing = format!("claiming a partition of {revision}");
        let rows = d
            .fetch(&Statement::rows(
                sql,
                vec![
                    super::txt(revision),
                    super::txt(owner),
                    Param::Int(lease_ms),
                ],
                KINDS,
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.first()
            .map(|r| row(r))
            .transpose()
            .map_err(query_error(doing))
    }

    /// In a batch's transaction, before the guest runs: locks the partition's row and
    /// checks that the claim `token` is still the partition's and it is not done. `false`:
    /// another worker took it over (this worker's lease ran out), and the batch must not run.
    pub async fn fence_partition(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        part: i64,
        token: i64,
    ) -> anyhow::Result<bool> {
        let eq = self.words.eq();
        // A worker whose machine is lost holds the row until the server notices its
        // connection is dead: within about 25 s, rather than the system's two hours.
        d.execute(&Statement::new(
            "SELECT pg_catalog.set_config('tcp_keepalives_idle', '10', true),
                    pg_catalog.set_config('tcp_keepalives_interval', '5', true),
                    pg_catalog.set_config('tcp_keepalives_count', '3', true)"
                .to_owned(),
            vec![],
        ))
        .await
        .map_err(query_error(format!(
            "locking partition {part} of {revision}"
        )))?;
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT 1::pg_catalog.int8 FROM {} WHERE revision {eq} $1 AND part {eq} $2
                       AND token {eq} $3 AND done {eq} 0 FOR UPDATE",
                    self.table(PARTITION_TABLE)
                ),
                vec![super::txt(revision), Param::Int(part), Param::Int(token)],
                &[Kind::Int],
            ))
            .await
            .map_err(query_error(format!(
                "locking partition {part} of {revision}"
            )))?;
        Ok(!rows.is_empty())
    }

    /// In a batch's transaction, after the guest ran: the partition's new checkpoint
    /// (`next`), or done (`None`: the walk's last batch), with its batch count, the lease
    /// renewed. Written only under `token`.
    pub async fn save_partition(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        claim: (i64, i64),
        next: Option<&str>,
        batches: i64,
        lease_ms: i64,
    ) -> anyhow::Result<()> {
        let (part, token) = claim;
        let eq = self.words.eq();
        let doing = format!("saving the checkpoint of partition {part} of {revision}");
        let (checkpoint, done, owner) = match next {
            Some(_) => ("$4", "0", "owner"),
            None => ("checkpoint", "1", "NULL"),
        };
        let written = d
            .execute(&Statement::new(
                format!(
                    "UPDATE {} SET checkpoint = {checkpoint}, batches = $5, done = {done},
                         owner = {owner}, lease_until = {lease},
                         updated_at = pg_catalog.clock_timestamp()
                     WHERE revision {eq} $1 AND part {eq} $2 AND token {eq} $3",
                    self.table(PARTITION_TABLE),
                    lease = lease(6),
                ),
                vec![
                    super::txt(revision),
                    Param::Int(part),
                    Param::Int(token),
                    Param::Text(next.map(str::to_owned)),
                    Param::Int(batches),
                    Param::Int(lease_ms),
                ],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        confirm(written, &doing)
    }

    /// Gives up a claim (a worker that stops, its partition not done) so another worker
    /// may take it at once rather than when the lease runs out. Nothing when the claim was
    /// taken over already.
    pub async fn release_partition(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        part: i64,
        token: i64,
    ) -> anyhow::Result<()> {
        let eq = self.words.eq();
        d.execute(&Statement::new(
            format!(
                "UPDATE {} SET owner = NULL, lease_until = NULL
                 WHERE revision {eq} $1 AND part {eq} $2 AND token {eq} $3",
                self.table(PARTITION_TABLE)
            ),
            vec![super::txt(revision), Param::Int(part), Param::Int(token)],
        ))
        .await
        .map_err(query_error(format!(
            "releasing partition {part} of {revision}"
        )))?;
        Ok(())
    }

    /// The partitions of `revision`, in order (none when the step is not partitioned or
    /// the table does not exist yet).
    pub async fn partitions(
        &self,
        d: &mut dyn Driver,
        revision: &str,
    ) -> anyhow::Result<Vec<Partition>> {
        if !self.present(d, PARTITION_TABLE).await? {
            return Ok(Vec::new());
        }
        let doing = format!("reading the partitions of {revision}");
        let rows = d
            .fetch(&Statement::rows(
                format!(
                    "SELECT {COLUMNS} FROM {} WHERE revision {} $1 ORDER BY part",
                    self.table(PARTITION_TABLE),
                    self.words.eq()
                ),
                vec![super::txt(revision)],
                KINDS,
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        rows.iter()
            .map(|r| row(r))
            .collect::<Result<_, _>>()
            .map_err(query_error(doing))
    }

    /// In the transaction that records the step: locks every partition of `revision`
    /// (waiting for a batch still committing) and returns how many are not done. The
    /// caller deletes them ([`VersionStore::clear_partitions`]) after the record, whose
    /// tamper check refuses a transaction that wrote them before it.
    ///
    /// # Errors
    /// [`TablesTampered`](crate::TablesTampered) when there are not `parts` of them (rows
    /// deleted by something other than wasmig).
    pub async fn finish_partitions(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        parts: i64,
    ) -> anyhow::Result<i64> {
        let table = self.table(PARTITION_TABLE);
        let eq = self.words.eq();
        let doing = format!("checking the partitions of {revision}");
        let rows = d
            .fetch(&Statement::rows(
                format!("SELECT done FROM {table} WHERE revision {eq} $1 ORDER BY part FOR UPDATE"),
                vec![super::txt(revision)],
                &[Kind::Int],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        if rows.len() as i64 != parts {
            return Err(crate::TablesTampered(format!(
                "{PARTITION_TABLE} holds {} partition(s) of {revision} where wasmig made {parts}",
                rows.len()
            ))
            .into());
        }
        let mut open = 0;
        for r in &rows {
            if int(&r[0], "done").map_err(query_error(doing.clone()))? == 0 {
                open += 1;
            }
        }
        Ok(open)
    }

    /// Deletes the partitions of `revision` (its step recorded, or resolved by hand).
    pub async fn clear_partitions(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        if !self.present(d, PARTITION_TABLE).await? {
            return Ok(());
        }
        d.execute(&Statement::new(
            format!(
                "DELETE FROM {} WHERE revision {} $1",
                self.table(PARTITION_TABLE),
                self.words.eq()
            ),
            vec![super::txt(revision)],
        ))
        .await
        .map_err(query_error(format!(
            "deleting the partitions of {revision}"
        )))?;
        Ok(())
    }

    /// The rows written to wasmig's checkpoint and partition tables in this transaction so
    /// far, as the server counts them (`pg_stat_xact_user_tables`, savepoints included):
    /// read before and after a guest's batch, a difference is the guest's writing.
    pub async fn batch_table_writes(&self, d: &mut dyn Driver) -> anyhow::Result<i64> {
        let doing = "counting the writes to wasmig's batch tables";
        let rows = d
            .fetch(&Statement::rows(
                "SELECT COALESCE(pg_catalog.sum(n_tup_ins OPERATOR(pg_catalog.+) n_tup_upd
                        OPERATOR(pg_catalog.+) n_tup_del), 0)::pg_catalog.int8
                 FROM pg_catalog.pg_stat_xact_user_tables
                 WHERE relid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)::pg_catalog.oid
                    OR relid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2)::pg_catalog.oid"
                    .to_owned(),
                vec![
                    super::txt(&self.table(PARTITION_TABLE)),
                    super::txt(&self.table(crate::CHECKPOINT_TABLE)),
                ],
                &[Kind::Int],
            ))
            .await
            .map_err(query_error(doing))?;
        rows.first()
            .map_or(Ok(0), |r| int(&r[0], "writes"))
            .map_err(query_error(doing))
    }
}

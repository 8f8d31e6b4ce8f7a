//! What a migration's own SQL did to wasmig's rows on MySQL, as the server tells it.
//!
//! MySQL keeps no per-transaction row counts (PostgreSQL's `pg_stat_xact_*`), and a lexer
//! does not see a table named by a procedure, a trigger, a stored function or an `EXECUTE`
//! of a computed string, nor in a quoted or schema-qualified spelling it did not foresee.
//! So wasmig asks the server, in the two shapes a step takes:
//!
//! - **In a step's transaction** (a component, a script of data statements, a batch):
//!   before wasmig writes its batch tables, another connection reads every row of
//!   `wasmig_checkpoint` and `wasmig_partition` with a locking read that may not wait
//!   (`FOR UPDATE NOWAIT`). InnoDB keeps a row a transaction inserted, updated or deleted
//!   locked until that transaction ends, so the read is refused exactly when the step's
//!   transaction wrote (or locked) one of those rows, however it named the table
//!   ([`batch_rows_locked`]).
//! - **In a script run statement by statement**, each statement committed on its own:
//!   wasmig's rows are read back after every statement and compared with what they held
//!   before the first (the revision's failed mark included, which wasmig wrote just
//!   before), together with the migration lock, and every [`WATCH_EVERY`] while a
//!   statement runs, which is stopped (`KILL QUERY`) when they changed ([`Watch`]). A
//!   change stops the script there; the failed mark is put back as it was, lock or no
//!   lock (a mark only ever makes a run refuse); while the run still holds the lock, the
//!   heads are put back and rows forged into the batch tables deleted; and the step fails
//!   as tampering (exit 12).
//!
//! Not here: the shape of wasmig's tables (a view, a trigger, another engine, a temporary
//! table in their place: `session`), the lock itself (`named_lock`).

use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, MySqlPool, Row as _};
use wasmig_contract::SqlError;

use super::MySqlDatabase;
use super::codec::{error_number, sql_error};
use crate::FailedMark;

/// The errors of a locking read refused because it would wait: `ER_LOCK_WAIT_TIMEOUT`
/// (MariaDB's answer to `NOWAIT`) and `ER_LOCK_NOWAIT` (MySQL 8's).
const WOULD_WAIT: [u16; 2] = [1205, 3572];

/// The tables only wasmig's batch transactions write, and only after their guard.
const BATCH_TABLES: [&str; 2] = [crate::CHECKPOINT_TABLE, crate::PARTITION_TABLE];

/// Whether a transaction other than the probe's holds a lock on a row of wasmig's batch
/// tables: the name of the first such table, else `None`. Called by a step's guard before
/// wasmig writes those tables in the step's transaction, while nothing else of wasmig's is
/// at work on them (the run holds the migration lock, and MySQL runs no workers), so a
/// lock found is the step's: its own SQL wrote them. The probe's transaction is rolled
/// back and takes nothing with it.
///
/// # Errors
/// When the probe cannot run (a connection, a missing table).
pub(super) async fn batch_rows_locked(
    pool: &MySqlPool,
) -> Result<Option<&'static str>, sqlx::Error> {
    let mut probe = pool.begin().await?;
    for table in BATCH_TABLES {
        // `execute`: the rows are read and dropped one by one, never held.
        let read = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT revision FROM {table} FOR UPDATE NOWAIT"
        )))
        .execute(&mut *probe)
        .await;
        match read {
            Ok(_) => {}
            Err(e) if error_number(&e).is_some_and(|n| WOULD_WAIT.contains(&n)) => {
                let _ = probe.rollback().await;
                return Ok(Some(table));
            }
            Err(e) => return Err(e),
        }
    }
    probe.rollback().await?;
    Ok(None)
}

/// What the watch reads after every statement: each of wasmig's small tables row by row
/// (its name first), the history and the stored artifacts by a digest (the history can be
/// long, an artifact megabytes), and the tables' own shape: triggers on them, and their
/// kinds and engines (a trigger added by one statement could keep the mark from being put
/// back after the next). `QUOTE` spells every value, `NULL` included, so no two
/// histories give the same text. `group_concat_max_len` is raised first: a digest of a
/// truncated text would miss what changed past it.
fn books() -> String {
    let names = crate::store::TABLE_NAMES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SET SESSION group_concat_max_len = 4294967295;
SELECT 'wasmig_version', t.* FROM wasmig_version AS t ORDER BY revision;
SELECT 'wasmig_failed', t.* FROM wasmig_failed AS t ORDER BY revision;
SELECT 'wasmig_checkpoint', t.* FROM wasmig_checkpoint AS t ORDER BY revision;
SELECT 'wasmig_partition', t.* FROM wasmig_partition AS t ORDER BY revision, part;
SELECT 'wasmig_schema', t.* FROM wasmig_schema AS t ORDER BY version;
SELECT 'wasmig_history', COUNT(*), MAX(id), SHA2(GROUP_CONCAT(CONCAT_WS(',', QUOTE(id),
    QUOTE(revision), QUOTE(direction), QUOTE(checksum), QUOTE(started_at), QUOTE(finished_at),
    QUOTE(duration_ms), QUOTE(wasmig_version), QUOTE(error), QUOTE(`sqlstate`))
    ORDER BY id SEPARATOR ';'), 256) FROM wasmig_history;
SELECT 'wasmig_artifact', revision, kind, checksum, SHA2(manifest, 256), SHA2(up_sql, 256),
    SHA2(down_sql, 256), LENGTH(component), source_checksum, stored_at
    FROM wasmig_artifact ORDER BY revision;
SELECT 'the tables themselves (a trigger, a view, another engine)',
    (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE()
       AND EVENT_OBJECT_TABLE IN ({names})),
    (SELECT GROUP_CONCAT(CONCAT_WS(':', TABLE_NAME, TABLE_TYPE, ENGINE) ORDER BY TABLE_NAME)
       FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()
       AND TABLE_NAME IN ({names}))"
    )
}

/// wasmig's rows as [`books`] reads them: each row's values as the server sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Books(Vec<Vec<Option<Vec<u8>>>>);

impl Books {
    async fn read(conn: &mut MySqlConnection) -> Result<Books, sqlx::Error> {
        let rows = sqlx::raw_sql(AssertSqlSafe(books()))
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get_unchecked::<Option<Vec<u8>>, _>(i))
                    .collect()
            })
            .collect::<Result<_, _>>()
            .map(Books)
    }

    /// The tables whose rows differ between `self` and `other`, in the order of [`books`].
    fn changed(&self, other: &Books) -> Vec<String> {
        let table = |row: &Vec<Option<Vec<u8>>>| {
            row.first()
                .cloned()
                .flatten()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default()
        };
        let mut tables: Vec<String> = Vec::new();
        for row in self.0.iter().chain(&other.0) {
            let name = table(row);
            if !tables.contains(&name) {
                tables.push(name);
            }
        }
        tables.retain(|name| {
            let of = |b: &Books| {
                b.0.iter()
                    .filter(|r| table(r) == *name)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            of(self) != of(other)
        });
        tables
    }
}

/// How often wasmig's rows and the lock are read while a statement of a script run
/// statement by statement runs (as well as after it): how long a statement that erased
/// the failed mark and runs on can leave it erased.
pub(super) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// wasmig's rows and the migration lock, watched while a script runs statement by
/// statement: made after the revision's failed mark was written and before its first
/// statement, checked while each runs ([`Watch::disturbed`]) and after it
/// ([`Watch::after`]).
pub(super) struct Watch {
    /// The rows before the first statement.
    before: Books,
    /// The failed marks before the first statement (the revision's own, written just
    /// before): what is put back when a statement changed them.
    marks: Vec<FailedMark>,
    /// Whether the batch tables were empty before the first statement (as they are: a run
    /// finishes a batched step part-way before it runs another): rows found there after a
    /// statement are then the statement's forgery, and deleted while the run holds the
    /// lock (never after: another run's batched step may have written them since).
    batch_empty: bool,
    /// The heads before the first statement: put back when a statement changed them (a
    /// head forged so that a revision never runs, or erased so that one runs again), while
    /// the run holds the lock.
    heads: Vec<String>,
}

impl Watch {
    /// Reads wasmig's rows as they are before the script's first statement.
    ///
    /// # Errors
    /// When they cannot be read.
    pub(super) async fn begin(db: &MySqlDatabase) -> anyhow::Result<Watch> {
        let mut conn = db.pool.acquire().await?;
        let before = Books::read(&mut conn).await?;
        let marks = db.store.failed(&mut *conn).await?;
        let heads = db.store.heads(&mut *conn).await?;
        let batch_empty = !before.0.iter().any(|row| {
            row.first()
                .cloned()
                .flatten()
                .is_some_and(|t| BATCH_TABLES.iter().any(|b| t == b.as_bytes()))
        });
        Ok(Watch {
            before,
            marks,
            batch_empty,
            heads,
        })
    }

    /// While a statement runs: whether wasmig's rows differ from what they held before
    /// the first statement, or the run no longer holds the lock. A read that fails says
    /// nothing here (the check after the statement reports it).
    pub(super) async fn disturbed(&self, db: &MySqlDatabase) -> bool {
        let Ok(mut conn) = db.pool.acquire().await else {
            return false;
        };
        if Books::read(&mut conn)
            .await
            .is_ok_and(|now| now != self.before)
        {
            return true;
        }
        let holder = db.holder.load(std::sync::atomic::Ordering::SeqCst);
        if holder == 0 {
            return false;
        }
        let still: Result<Option<i64>, _> = sqlx::query_scalar(super::named_lock::HOLDER)
            .bind(&db.lock_name)
            .bind(&db.lock_name)
            .fetch_one(&mut *conn)
            .await;
        matches!(still, Ok(h) if h.map(i64::cast_unsigned) != Some(holder))
    }

    /// After statement `n` (from 1) of `total`: an error that stops the script when the
    /// statement changed wasmig's rows (`WASMIG-TAMPERED`, with the failed mark put back)
    /// or the run no longer holds the migration lock (`WASMIG-LOCK`); else the error of a
    /// connection that failed while reading them.
    pub(super) async fn after(
        &self,
        db: &MySqlDatabase,
        n: usize,
        total: usize,
    ) -> Result<(), SqlError> {
        let mut conn = db.pool.acquire().await.map_err(crate::client_error)?;
        let now = match Books::read(&mut conn).await {
            Ok(now) => now,
            Err(e) => {
                let error = sql_error(e);
                if crate::is_connection_failure(&error.code) {
                    return Err(error);
                }
                // A table dropped, renamed or made unreadable by the statement.
                let restored = self.restore(db).await;
                return Err(SqlError::wasmig(
                    "TAMPERED",
                    format!(
                        "after statement {n} of {total}, wasmig's tables could not be read back ({}): the statement altered them; {restored}",
                        error.describe()
                    ),
                ));
            }
        };
        if now != self.before {
            let tables = self.before.changed(&now);
            let mut restored = self.restore(db).await;
            if tables.iter().any(|t| BATCH_TABLES.contains(&t.as_str())) {
                restored.push_str("; ");
                restored.push_str(&self.unforge(db).await);
            }
            if tables.iter().any(|t| t == crate::VERSION_TABLE) {
                restored.push_str("; ");
                restored.push_str(&self.put_heads_back(db).await);
            }
            return Err(SqlError::wasmig(
                "TAMPERED",
                format!(
                    "statement {n} of {total} wrote wasmig's own rows ({}), which only wasmig writes; the script was stopped there; {restored}",
                    tables.join(", ")
                ),
            ));
        }
        let holder = db.holder.load(std::sync::atomic::Ordering::SeqCst);
        if holder != 0 {
            let still: Option<i64> = sqlx::query_scalar(super::named_lock::HOLDER)
                .bind(&db.lock_name)
                .bind(&db.lock_name)
                .fetch_one(&mut *conn)
                .await
                .map_err(sql_error)?;
            if still.map(i64::cast_unsigned) != Some(holder) {
                return Err(SqlError::wasmig(
                    "LOCK",
                    format!(
                        "after statement {n} of {total}, the migration lock was no longer held by this run (its connection was ended): the script was stopped there, and the revision stays marked failed"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Deletes the rows a statement wrote into the batch tables when they were empty before
    /// the script and the run still holds the lock (a checkpoint forged for a later batched
    /// revision would make it skip rows). Says what it did.
    async fn unforge(&self, db: &MySqlDatabase) -> String {
        let keep = "the rows written there stay: inspect wasmig_checkpoint and wasmig_partition before resolving";
        if !self.batch_empty {
            return format!("they held rows before the script, so {keep}");
        }
        let deleted = async {
            let Some(mut conn) = held_connection(db).await? else {
                return Ok(false);
            };
            for table in BATCH_TABLES {
                sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {table}")))
                    .execute(&mut conn)
                    .await?;
            }
            let _ = conn.close().await;
            Ok::<_, sqlx::Error>(true)
        }
        .await;
        match deleted {
            Ok(true) => {
                "the rows it wrote into wasmig_checkpoint and wasmig_partition were deleted"
                    .to_owned()
            }
            Ok(false) => format!("the run no longer holds the migration lock, so {keep}"),
            Err(e) => format!("deleting them failed ({e}), so {keep}"),
        }
    }

    /// Puts the heads back as they were before the script, while the run holds the lock
    /// (after, another run may have recorded its own). Says what it did.
    async fn put_heads_back(&self, db: &MySqlDatabase) -> String {
        let put_back = async {
            let Some(mut conn) = held_connection(db).await? else {
                return Ok(false);
            };
            let mut tx = conn.begin().await?;
            sqlx::raw_sql("DELETE FROM wasmig_version")
                .execute(&mut *tx)
                .await?;
            for head in &self.heads {
                sqlx::query("INSERT INTO wasmig_version (revision) VALUES (?)")
                    .bind(head)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            let _ = conn.close().await;
            Ok::<_, sqlx::Error>(true)
        }
        .await;
        let shown = if self.heads.is_empty() {
            "none".to_owned()
        } else {
            self.heads.join(", ")
        };
        match put_back {
            Ok(true) => format!("the heads were put back as they were ({shown})"),
            Ok(false) => format!(
                "the run no longer holds the migration lock, so the heads were left as the statement wrote them (they were: {shown}); inspect wasmig_version before resolving"
            ),
            Err(e) => format!(
                "putting the heads back failed ({e}; they were: {shown}); inspect wasmig_version before resolving"
            ),
        }
    }

    /// Puts the failed marks back as they were before the script, on a connection of its
    /// own and without the lock fence (a run whose lock a statement ended must still leave
    /// the mark: a mark only makes runs refuse), then reads them back. Says what it did.
    async fn restore(&self, db: &MySqlDatabase) -> String {
        if self.marks.is_empty() {
            return "wasmig had no failed mark to keep".to_owned();
        }
        let put_back = async {
            let mut conn = db.own_connection().await?;
            let now = db.store.failed(&mut conn).await?;
            if !self.marks.iter().all(|m| now.contains(m)) {
                for mark in &self.marks {
                    db.store.set_failed(&mut conn, mark).await?;
                }
            }
            let now = db.store.failed(&mut conn).await?;
            let _ = conn.close().await;
            anyhow::Ok(self.marks.iter().all(|m| now.contains(m)))
        }
        .await;
        let revisions = self
            .marks
            .iter()
            .map(|m| m.revision.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match put_back {
            Ok(true) => format!(
                "the failed mark of {revisions} is in place, so nothing runs until it is resolved"
            ),
            Ok(false) => format!(
                "the failed mark of {revisions} could not be put back (it did not read back as written): the revision ran part-way and wasmig's tables do not say so; inspect the database before running anything"
            ),
            Err(e) => format!(
                "the failed mark of {revisions} could not be put back ({e:#}): the revision ran part-way and wasmig's tables may not say so; inspect the database before running anything"
            ),
        }
    }
}

/// A connection of its own, when the run still holds the migration lock (checked on it):
/// what undoing a statement's writes needs, since after the lock is gone another run may
/// have written the same tables.
async fn held_connection(db: &MySqlDatabase) -> Result<Option<MySqlConnection>, sqlx::Error> {
    let holder = db.holder.load(std::sync::atomic::Ordering::SeqCst);
    let mut conn = db.own_connection().await?;
    let still: Option<i64> = sqlx::query_scalar(super::named_lock::HOLDER)
        .bind(&db.lock_name)
        .bind(&db.lock_name)
        .fetch_one(&mut conn)
        .await?;
    if holder == 0 || still.map(i64::cast_unsigned) != Some(holder) {
        let _ = conn.close().await;
        return Ok(None);
    }
    Ok(Some(conn))
}

//! Writing wasmig's tables: a step's record, its stored artifact, failed marks and
//! checkpoints; each insert confirms it wrote its one row. On PostgreSQL a finished step
//! is written by one statement (`finish_in_one`), the hot path of a run.

use chrono::Utc;

use super::{Cell, Checks, Refused};
use super::{
    Driver, Kind, Param, Statement, VersionStore, confirm, int, opt, query_error, required, text,
    txt,
};
use crate::{
    ARTIFACT_TABLE, CHECKPOINT_TABLE, Checkpoint, Expected, FAILED_TABLE, FailedMark, FinishedStep,
    HISTORY_TABLE, StepRecord, StoredArtifact, VERSION_TABLE,
};
use wasmig_contract::Dialect;

/// PostgreSQL's largest `bigint`: a history id there has no next.
const BIGINT_MAX: i64 = i64::MAX;

/// PostgreSQL's smallest `bigint`: a history id there has no previous.
const BIGINT_MIN: i64 = i64::MIN;

impl VersionStore {
    /// PostgreSQL: the id of the next history row, as an expression: one past the largest
    /// (or, when a forged row holds the largest bigint, one past the largest id whose next
    /// is free, so that nothing overflows or collides and the history stays in order below
    /// the forged rows; with every id up to the largest taken, one below the smallest),
    /// written by wasmig itself (`OVERRIDING SYSTEM VALUE`) rather than drawn
    /// from the column's identity sequence. A sequence is not rolled back with its
    /// transaction and a migration may alter it (`setval` to its maximum or back to a used
    /// id, `ALTER SEQUENCE ... MAXVALUE`, a `REVOKE`, `DROP IDENTITY`): drawn from, it would
    /// fail this record and every later one. Every writer of the table holds the migration
    /// lock, so no two compute the same id. The sequence is set to it where it can take
    /// it (within its bounds, and wasmig may update it), so that the column's default stays
    /// the next id for anyone else who inserts (an older wasmig, an operator); where it
    /// cannot, it is left alone and nothing fails. A row forged with a huge id is left out of the count (it cannot make the
    /// next id overflow), and where the record is guarded the expression is not evaluated
    /// at all when a check fails (the guard names the forgery). `None` on SQLite, whose
    /// counter is a table, rolled back with the transaction; and on MySQL, not done there
    /// (an `ALTER TABLE wasmig_history AUTO_INCREMENT = ...` a migration commits would
    /// still fail later records).
    fn history_id(&self) -> Option<String> {
        (self.words.dialect == Dialect::Postgres).then(|| {
            let history = self.table(HISTORY_TABLE);
            // The table's name spelled in hexadecimal: ASCII, read the same whatever
            // `standard_conforming_strings` the migration left.
            let name = format!(
                "pg_catalog.convert_from(pg_catalog.decode('{}', 'hex'), 'UTF8')",
                hex::encode(&history)
            );
            format!(
                "(SELECT CASE WHEN s.seqrelid IS NOT NULL \
                     AND n.id OPERATOR(pg_catalog.>=) s.seqmin AND n.id OPERATOR(pg_catalog.<=) s.seqmax \
                     AND pg_catalog.has_sequence_privilege(s.seqrelid, 'UPDATE') \
                   THEN pg_catalog.setval(s.seqrelid::pg_catalog.regclass, n.id) ELSE n.id END \
                 FROM (SELECT CASE WHEN m.id OPERATOR(pg_catalog.<) {BIGINT_MAX} \
                                   THEN m.id OPERATOR(pg_catalog.+) 1 \
                                   ELSE COALESCE( \
                                     (SELECT pg_catalog.max(h.id) OPERATOR(pg_catalog.+) 1 FROM {history} h \
                                      WHERE h.id OPERATOR(pg_catalog.<) {BIGINT_MAX} AND NOT EXISTS \
                                        (SELECT 1 FROM {history} g WHERE g.id OPERATOR(pg_catalog.=) \
                                           CASE WHEN h.id OPERATOR(pg_catalog.<) {BIGINT_MAX} \
                                                THEN h.id OPERATOR(pg_catalog.+) 1 END)), \
                                     (SELECT pg_catalog.min(id) OPERATOR(pg_catalog.-) 1 FROM {history} \
                                      WHERE id OPERATOR(pg_catalog.>) {BIGINT_MIN})) END AS id \
                       FROM (SELECT COALESCE(pg_catalog.max(id), 0) AS id FROM {history}) AS m) AS n \
                 LEFT JOIN pg_catalog.pg_sequence s ON s.seqrelid OPERATOR(pg_catalog.=) \
                   pg_catalog.pg_get_serial_sequence({name}, 'id')::pg_catalog.regclass::pg_catalog.oid)"
            )
        })
    }

    /// [`VersionStore::history_id`] as the three pieces a history insert splices in: the
    /// column, the `OVERRIDING` clause after the column list, and the value; all empty
    /// where the table's own counter gives the id.
    fn history_id_parts(&self) -> (&'static str, &'static str, String) {
        match self.history_id() {
            Some(id) => ("id, ", " OVERRIDING SYSTEM VALUE", format!("{id}, ")),
            None => ("", "", String::new()),
        }
    }

    /// Records one step: replaces `remove` by `add` among the heads (a head in both is left
    /// alone) and appends a history row.
    pub async fn record_step(
        &self,
        d: &mut dyn Driver,
        step: &StepRecord<'_>,
    ) -> anyhow::Result<()> {
        let doing = format!("recording {} in the version tables", step.revision);
        let version = self.table(VERSION_TABLE);
        for head in step.remove.iter().filter(|h| !step.add.contains(h)) {
            d.execute(&Statement::new(
                format!(
                    "DELETE FROM {version} WHERE revision {} $1",
                    self.words.eq()
                ),
                vec![txt(head)],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        }
        for head in step.add.iter().filter(|h| !step.remove.contains(h)) {
            let done = d
                .execute(&Statement::new(
                    format!("INSERT INTO {version} (revision) VALUES ($1)"),
                    vec![txt(head)],
                ))
                .await
                .map_err(query_error(doing.clone()))?;
            confirm(done, &format!("adding the head {head} to {VERSION_TABLE}"))?;
        }
        let (id_column, overriding, id_value) = self.history_id_parts();
        let done = d
            .execute(&Statement::new(
                format!(
                    "INSERT INTO {}
                         ({id_column}revision, direction, checksum, started_at, finished_at, duration_ms,
                          wasmig_version, error, sqlstate){overriding}
                     VALUES ({id_value}$1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    self.table(HISTORY_TABLE)
                ),
                vec![
                    txt(step.revision),
                    txt(step.direction.as_str()),
                    txt(step.checksum),
                    Param::Time(step.started_at),
                    Param::Time(step.finished_at),
                    Param::Int((step.finished_at - step.started_at).num_milliseconds()),
                    txt(env!("CARGO_PKG_VERSION")),
                    opt(step.error),
                    opt(step.sqlstate),
                ],
            ))
            .await
            .map_err(query_error(doing))?;
        confirm(
            done,
            &format!("appending {} to {HISTORY_TABLE}", step.revision),
        )
    }

    /// Refuses, as a step's record does, when wasmig's tables in this transaction are not
    /// what wasmig's account says (`expected`): the heads, the history's rows, and (outside
    /// PostgreSQL, whose guard counts the writes themselves) a failed mark of another
    /// revision. The step's SQL wrote them. Also for a dry run, which records nothing.
    ///
    /// # Errors
    /// [`crate::RowsWritten`] naming `revision` and what was found; a failed read.
    pub async fn check_unwritten(
        &self,
        d: &mut dyn Driver,
        revision: &str,
        expected: &Expected,
    ) -> anyhow::Result<()> {
        let heads = self.heads(d).await?;
        let found = Found {
            same_heads: heads == expected.heads,
            heads: heads.join(", "),
            history: self.history_len(d).await?,
        };
        unexpected(revision, expected, &found)?;
        // A run begins only without failed marks, and a step of its own transaction
        // writes none: any other is the step's SQL's (PostgreSQL's record counts the
        // writes themselves).
        if self.words.dialect != Dialect::Postgres
            && let Some(other) = self
                .failed(d)
                .await?
                .into_iter()
                .find(|m| m.revision != revision)
        {
            return Err(crate::RowsWritten {
                revision: revision.to_owned(),
                found: format!(
                    "{FAILED_TABLE} held a failed mark of {} that no step of the run wrote",
                    wasmig_contract::text::shown(&other.revision)
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Writes what a step that ran to its end leaves: its record, its artifact stored (an
    /// upgrade) or forgotten (a downgrade), and its checkpoint cleared. Returns the row of
    /// PostgreSQL's one statement (with the `ctid`s it wrote, see `finish_statement`);
    /// nothing elsewhere.
    pub async fn finish_step(
        &self,
        d: &mut dyn Driver,
        finished: &FinishedStep<'_>,
    ) -> anyhow::Result<Vec<Cell>> {
        if self.words.dialect == Dialect::Postgres {
            return self.finish_in_one(d, finished).await;
        }
        if let Some(expected) = finished.expected {
            self.check_unwritten(d, finished.record.revision, expected)
                .await?;
        }
        self.record_step(d, &finished.record).await?;
        match finished.artifact {
            Some(stored) => self.store_artifact(d, stored).await?,
            None => self.forget_artifact(d, finished.record.revision).await?,
        }
        if finished.clear_checkpoint {
            self.clear_checkpoint(d, finished.record.revision).await?;
        }
        Ok(Vec::new())
    }

    /// [`VersionStore::finish_step`] on PostgreSQL: the same writes as one statement of
    /// data-modifying CTEs (a step's whole record in one round trip, the hot path of a run),
    /// with the same checks of the rows written. The parts of one statement see one
    /// snapshot, so a head both removed and added is left alone by both, as the separate
    /// statements leave it.
    async fn finish_in_one(
        &self,
        d: &mut dyn Driver,
        finished: &FinishedStep<'_>,
    ) -> anyhow::Result<Vec<Cell>> {
        let doing = finish_doing(finished);
        let rows = d
            .fetch(&self.finish_statement(finished, None))
            .await
            .map_err(query_error(doing))?;
        match self.finish_outcome(finished, &rows)? {
            None => Ok(rows.into_iter().next().unwrap_or_default()),
            Some(refused) => unreachable!("no checks, yet refused: {refused:?}"),
        }
    }

    /// [`VersionStore::finish_step`] on PostgreSQL as one statement that also makes the
    /// session's `checks` before it writes, and writes nothing unless all of them hold (so
    /// no trigger or constraint of wasmig's tables runs either): the backend's guard and the
    /// step's record in one round trip. Run it with the backend's driver, then read its rows
    /// with [`VersionStore::guarded_outcome`].
    pub fn guarded_finish(&self, finished: &FinishedStep<'_>, checks: &Checks) -> Statement {
        self.finish_statement(finished, Some(checks))
    }

    /// What [`VersionStore::guarded_finish`]'s rows say: `Ok(None)` when the step was
    /// recorded, the first check that failed when nothing was written.
    ///
    /// # Errors
    /// As [`VersionStore::finish_step`]: the tables were not as expected, or a write did
    /// not touch its rows.
    pub fn guarded_outcome(
        &self,
        finished: &FinishedStep<'_>,
        rows: &[Vec<Cell>],
    ) -> anyhow::Result<Option<Refused>> {
        self.finish_outcome(finished, rows)
    }

    /// Reads the row of [`VersionStore::finish_statement`]: the checks (when it made any),
    /// what the step's SQL left in the tables, and the rows written.
    fn finish_outcome(
        &self,
        finished: &FinishedStep<'_>,
        rows: &[Vec<Cell>],
    ) -> anyhow::Result<Option<Refused>> {
        let step = &finished.record;
        let doing = finish_doing(finished);
        let row = rows.first().ok_or_else(|| {
            anyhow::Error::from(crate::DbError::Query {
                doing: doing.clone(),
                source: sqlx::Error::RowNotFound,
            })
        })?;
        let read = || -> Result<_, sqlx::Error> {
            Ok((
                [
                    int(&row[0], "added")?,
                    int(&row[1], "logged")?,
                    int(&row[2], "stored")?,
                ],
                Found {
                    heads: text(&row[3], "heads")?.unwrap_or_default(),
                    history: int(&row[4], "history")?,
                    same_heads: int(&row[5], "same heads")? == 1,
                },
                int(&row[6], "checks")?,
            ))
        };
        let (counts, before, checks) = read().map_err(query_error(doing.clone()))?;
        // The first check that failed, in the order the guard makes them.
        for (bit, refused) in [
            (1, Refused::TransactionEnded),
            (2, Refused::LockLost),
            (4, Refused::TablesFlagged),
        ] {
            if checks & bit == 0 {
                return Ok(Some(refused));
            }
        }
        if let Some(expected) = finished.expected {
            unexpected(step.revision, expected, &before)?;
        }
        let adds = step.add.iter().filter(|h| !step.remove.contains(h)).count() as i64;
        if counts[0] != adds {
            return Err(crate::TablesTampered(format!(
                "adding the heads of {} to {VERSION_TABLE} changed {} rows instead of {adds}",
                step.revision, counts[0]
            ))
            .into());
        }
        confirm(
            counts[1] as u64,
            &format!("appending {} to {HISTORY_TABLE}", step.revision),
        )?;
        if finished.artifact.is_some() {
            confirm(counts[2] as u64, &doing)?;
        }
        Ok(None)
    }

    /// The one statement of [`VersionStore::finish_in_one`] and
    /// [`VersionStore::guarded_finish`]: it returns how many heads it added, history rows it
    /// appended and artifacts it stored, the tables as the step's SQL left them, and which
    /// `checks` held (a bit each: all three set without checks); on PostgreSQL also the
    /// `ctid`s of the history and artifact rows it wrote (`postgres::run_writes`). With
    /// checks, every write is made only when all of them hold.
    fn finish_statement(&self, finished: &FinishedStep<'_>, checks: Option<&Checks>) -> Statement {
        let step = &finished.record;
        let eq = self.words.eq();
        let version = self.table(VERSION_TABLE);
        let mut params = vec![
            Param::Texts(step.remove.to_vec()),
            Param::Texts(step.add.to_vec()),
            txt(step.revision),
            txt(step.direction.as_str()),
            txt(step.checksum),
            Param::Time(step.started_at),
            Param::Time(step.finished_at),
            Param::Int((step.finished_at - step.started_at).num_milliseconds()),
            txt(env!("CARGO_PKG_VERSION")),
            opt(step.error),
            opt(step.sqlstate),
        ];
        // What the inserts return of each row: on PostgreSQL its `ctid`, which the record
        // returns (its last two columns) for the check after the run
        // (`postgres::run_writes`).
        let postgres = self.words.dialect == Dialect::Postgres;
        let written = if postgres { "ctid" } else { "1" };
        // Each write's condition, and its source of rows for the inserts.
        let (when, from) = match checks {
            Some(_) => (" AND EXISTS (SELECT 1 FROM ok)", " FROM ok"),
            None => ("", ""),
        };
        let artifact = match finished.artifact {
            Some(a) => {
                // Its row but the revision, which is $3 already.
                params.extend(artifact_row(a).into_iter().skip(1));
                format!(
                    "INSERT INTO {} (revision, kind, checksum, manifest, up_sql, down_sql,
                         component, source_checksum, stored_at)
                     SELECT $3, $12, $13, $14, $15, $16, $17, $18, $19{from}
                     ON CONFLICT (revision) DO UPDATE SET
                         kind = excluded.kind, checksum = excluded.checksum,
                         manifest = excluded.manifest, up_sql = excluded.up_sql,
                         down_sql = excluded.down_sql, component = excluded.component,
                         source_checksum = excluded.source_checksum, stored_at = excluded.stored_at
                     RETURNING {written}",
                    self.table(ARTIFACT_TABLE)
                )
            }
            None => format!(
                "DELETE FROM {} WHERE revision {eq} $3{when} RETURNING 1",
                self.table(ARTIFACT_TABLE)
            ),
        };
        // The heads wasmig expects, compared on the server as arrays: exact, whatever text a
        // forged row holds.
        params.push(Param::Texts(
            finished
                .expected
                .map(|e| e.heads.clone())
                .unwrap_or_default(),
        ));
        let expected = params.len();
        let guard = match checks {
            Some(c) => {
                // The checks' own values follow the step's, renumbered from `$c1`.
                let first = params.len();
                params.extend(c.params.iter().cloned());
                let renumber = |expression: &str| {
                    (1..=c.params.len())
                        .rev()
                        .fold(expression.to_owned(), |e, i| {
                            e.replace(&format!("$c{i}"), &format!("${}", first + i))
                        })
                };
                format!(
                    "guard AS (SELECT ({}) AS transaction_ok, ({}) AS lock_ok, ({}) AS tables_ok),
                      ok AS (SELECT 1 FROM guard WHERE transaction_ok AND lock_ok AND tables_ok),\n",
                    renumber(&c.transaction),
                    renumber(&c.lock),
                    renumber(&c.tables)
                )
            }
            None => {
                "guard AS (SELECT true AS transaction_ok, true AS lock_ok, true AS tables_ok),\n"
                    .to_owned()
            }
        };
        let history = self.table(HISTORY_TABLE);
        let (id_column, overriding, id_value) = self.history_id_parts();
        let cleared = if finished.clear_checkpoint {
            format!(
                ", cleared AS (DELETE FROM {} WHERE revision {eq} $3{when} RETURNING 1)",
                self.table(CHECKPOINT_TABLE)
            )
        } else {
            String::new()
        };
        let ctids = match (postgres, finished.artifact.is_some()) {
            (false, _) => "",
            (true, true) => {
                ",
                    (SELECT pg_catalog.string_agg(pg_catalog.textin(pg_catalog.tidout(ctid)), ' ') FROM logged),
                    (SELECT pg_catalog.string_agg(pg_catalog.textin(pg_catalog.tidout(ctid)), ' ') FROM stored)"
            }
            // The artifact's row deleted: nothing of it written.
            (true, false) => {
                ",
                    (SELECT pg_catalog.string_agg(pg_catalog.textin(pg_catalog.tidout(ctid)), ' ') FROM logged),
                    NULL::pg_catalog.text"
            }
        };
        let sql = format!(
            "WITH {guard}
                  removed AS (DELETE FROM {version}
                              WHERE revision {eq} ANY ($1::pg_catalog.text[])
                                AND revision OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.text[]){when}
                              RETURNING 1),
                  added AS (INSERT INTO {version} (revision)
                            SELECT a FROM pg_catalog.unnest($2::pg_catalog.text[]) AS a
                            WHERE a OPERATOR(pg_catalog.<>) ALL ($1::pg_catalog.text[]){when}
                            RETURNING 1),
                  logged AS (INSERT INTO {history}
                                 ({id_column}revision, direction, checksum, started_at, finished_at,
                                  duration_ms, wasmig_version, error, sqlstate){overriding}
                             SELECT {id_value}$3, $4, $5, $6, $7, $8, $9, $10, $11{from}
                             RETURNING {written}),
                  stored AS ({artifact}){cleared}
             SELECT (SELECT pg_catalog.count(*) FROM added),
                    (SELECT pg_catalog.count(*) FROM logged),
                    (SELECT pg_catalog.count(*) FROM stored),
                    pg_catalog.array_to_string(heads.all, ', '),
                    (SELECT pg_catalog.count(*) FROM {history}),
                    CASE WHEN heads.all OPERATOR(pg_catalog.=) ${expected}::pg_catalog.text[] THEN 1::pg_catalog.int8 ELSE 0::pg_catalog.int8 END,
                    (CASE WHEN guard.transaction_ok THEN 1 ELSE 0 END
                     OPERATOR(pg_catalog.+) CASE WHEN guard.lock_ok THEN 2 ELSE 0 END
                     OPERATOR(pg_catalog.+) CASE WHEN guard.tables_ok THEN 4 ELSE 0 END)::pg_catalog.int8{ctids}
             FROM (SELECT ARRAY(SELECT revision FROM {version}
                                ORDER BY revision COLLATE pg_catalog.\"C\") AS all) AS heads,
                  guard",
        );
        // Every part sees the snapshot taken before the statement: the heads and history
        // columns are the tables as the step's own SQL left them, before any write.
        // The `ctid`s written to history and to the artifact table on PostgreSQL only.
        let columns = if postgres {
            &RECORD_COLUMNS[..]
        } else {
            &RECORD_COLUMNS[..7]
        };
        Statement::rows(sql, params, columns)
    }

    /// Stores (or replaces) a revision's artifact.
    pub async fn store_artifact(
        &self,
        d: &mut dyn Driver,
        artifact: &StoredArtifact,
    ) -> anyhow::Result<()> {
        let columns = [
            "revision",
            "kind",
            "checksum",
            "manifest",
            "up_sql",
            "down_sql",
            "component",
            "source_checksum",
            "stored_at",
        ];
        let params = artifact_row(artifact);
        let doing = format!(
            "storing the artifact of {} in {ARTIFACT_TABLE}",
            artifact.revision
        );
        self.upsert(d, ARTIFACT_TABLE, &columns, params, doing)
            .await
    }

    /// Inserts one row per revision, or replaces every column of the revision's row.
    async fn upsert(
        &self,
        d: &mut dyn Driver,
        table: &str,
        columns: &[&str],
        params: Vec<Param>,
        doing: String,
    ) -> anyhow::Result<()> {
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let mysql = self.words.dialect == Dialect::Mysql;
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| **c != "revision")
            .map(|c| {
                if mysql {
                    format!("{c} = VALUES({c})")
                } else {
                    format!("{c} = excluded.{c}")
                }
            })
            .collect();
        let conflict = if mysql {
            "ON DUPLICATE KEY UPDATE"
        } else {
            "ON CONFLICT (revision) DO UPDATE SET"
        };
        let done = d
            .execute(&Statement::new(
                format!(
                    "INSERT INTO {} ({}) VALUES ({}) {conflict} {}",
                    self.table(table),
                    columns.join(", "),
                    placeholders.join(", "),
                    updates.join(", ")
                ),
                params,
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        // MySQL counts a row replaced by ON DUPLICATE KEY UPDATE twice.
        confirm(if mysql && done == 2 { 1 } else { done }, &doing)
    }

    /// Deletes one revision's row of `table` (none is fine: there was nothing to forget).
    async fn delete(
        &self,
        d: &mut dyn Driver,
        table: &str,
        revision: &str,
        doing: String,
    ) -> anyhow::Result<()> {
        d.execute(&Statement::new(
            format!(
                "DELETE FROM {} WHERE revision {} $1",
                self.table(table),
                self.words.eq()
            ),
            vec![txt(revision)],
        ))
        .await
        .map_err(query_error(doing))?;
        Ok(())
    }

    /// Deletes a revision's stored artifact.
    pub async fn forget_artifact(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        let doing = format!("deleting the stored artifact of {revision} from {ARTIFACT_TABLE}");
        self.delete(d, ARTIFACT_TABLE, revision, doing).await
    }

    /// Deletes the stored artifact of every revision not in `keep`.
    pub async fn forget_artifacts_except(
        &self,
        d: &mut dyn Driver,
        keep: &[String],
    ) -> anyhow::Result<()> {
        let doing =
            format!("deleting stored artifacts of unapplied revisions from {ARTIFACT_TABLE}");
        let stored = d
            .fetch(&Statement::rows(
                format!("SELECT revision FROM {}", self.table(ARTIFACT_TABLE)),
                vec![],
                &[Kind::Text],
            ))
            .await
            .map_err(query_error(doing.clone()))?;
        for row in stored {
            let revision = required(&row[0], "revision").map_err(query_error(doing.clone()))?;
            if !keep.contains(&revision) {
                self.delete(d, ARTIFACT_TABLE, &revision, doing.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// Marks a revision failed (replacing an earlier mark).
    pub async fn set_failed(&self, d: &mut dyn Driver, mark: &FailedMark) -> anyhow::Result<()> {
        let columns = [
            "revision",
            "direction",
            "remove_heads",
            "add_heads",
            "statement",
            "error",
            "sqlstate",
            "failed_at",
        ];
        let params = vec![
            txt(&mark.revision),
            txt(mark.direction.as_str()),
            txt(&mark.remove_heads.join(",")),
            txt(&mark.add_heads.join(",")),
            Param::Int(mark.statement),
            txt(&mark.error),
            opt(mark.sqlstate.as_deref()),
            Param::Time(mark.failed_at),
        ];
        let doing = format!("marking {} failed", mark.revision);
        self.upsert(d, FAILED_TABLE, &columns, params, doing).await
    }

    /// Clears a revision's failed mark.
    pub async fn clear_failed(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        let doing = format!("clearing the failed mark of {revision}");
        self.delete(d, FAILED_TABLE, revision, doing).await
    }

    /// Saves (or replaces) a batched step's checkpoint.
    pub async fn save_checkpoint(
        &self,
        d: &mut dyn Driver,
        checkpoint: &Checkpoint,
    ) -> anyhow::Result<()> {
        let columns = [
            "revision",
            "direction",
            "remove_heads",
            "add_heads",
            "checkpoint",
            "batches",
            "checksum",
            "started_at",
            "updated_at",
        ];
        let params = vec![
            txt(&checkpoint.revision),
            txt(checkpoint.direction.as_str()),
            txt(&checkpoint.remove_heads.join(",")),
            txt(&checkpoint.add_heads.join(",")),
            txt(&checkpoint.checkpoint),
            Param::Int(checkpoint.batches),
            txt(&checkpoint.checksum),
            Param::Time(checkpoint.started_at),
            Param::Time(checkpoint.updated_at),
        ];
        let doing = format!("saving the checkpoint of {}", checkpoint.revision);
        self.upsert(d, CHECKPOINT_TABLE, &columns, params, doing)
            .await
    }

    /// Deletes a revision's checkpoint.
    pub async fn clear_checkpoint(&self, d: &mut dyn Driver, revision: &str) -> anyhow::Result<()> {
        let doing = format!("deleting the checkpoint of {revision}");
        self.delete(d, CHECKPOINT_TABLE, revision, doing).await
    }
}

/// An artifact's row, in the order of the artifact table's columns, stored now.
/// The columns of the record ([`VersionStore::finish_statement`]): heads added, history
/// rows appended, artifacts stored, the heads and history's rows before, whether the heads
/// were as expected, the checks; then, on PostgreSQL, the `ctid`s written.
const RECORD_COLUMNS: [Kind; 9] = [
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Text,
];

fn artifact_row(a: &StoredArtifact) -> Vec<Param> {
    vec![
        txt(&a.revision),
        txt(&a.kind),
        txt(&a.checksum),
        txt(&a.manifest),
        opt(a.up_sql.as_deref()),
        opt(a.down_sql.as_deref()),
        Param::Bytes(a.component.clone()),
        opt(a.source_checksum.as_deref()),
        Param::Time(Utc::now()),
    ]
}

/// wasmig's tables as a step's own SQL left them, just before its record is written.
#[derive(Debug, Default)]
struct Found {
    /// The heads, for the message.
    heads: String,
    history: i64,
    /// Whether the heads are exactly the expected ones (compared as lists, not as text).
    same_heads: bool,
}

/// What recording a finished step is, for messages.
fn finish_doing(finished: &FinishedStep<'_>) -> String {
    format!(
        "recording {} in the version tables and {ARTIFACT_TABLE}",
        finished.record.revision
    )
}

/// Refuses a step's record when wasmig's tables, as the step's own SQL left them, are not
/// what wasmig's account says: the step's SQL wrote them.
fn unexpected(
    revision: &str,
    expected: &Expected,
    found: &Found,
) -> Result<(), crate::RowsWritten> {
    let list = |heads: &str| {
        if heads.is_empty() {
            "none".to_owned()
        } else {
            wasmig_contract::text::shown(heads)
        }
    };
    let written = |found| crate::RowsWritten {
        revision: revision.to_owned(),
        found,
    };
    if !found.same_heads {
        return Err(written(format!(
            "{VERSION_TABLE} held {} where the run expected {}",
            list(&found.heads),
            list(&expected.heads.join(", "))
        )));
    }
    if found.history != expected.history {
        return Err(written(format!(
            "{HISTORY_TABLE} had {} rows where the run expected {}",
            found.history, expected.history
        )));
    }
    Ok(())
}

//! What a run's committed steps wrote to `wasmig_history` and `wasmig_artifact`, row by
//! row, and the check at the end of the run that nothing else wrote them in the meantime
//! (nor a failed mark: a run that is compared writes none).
//!
//! A step's record returns the `ctid` of each row it wrote. Something that runs at or after
//! a step's `COMMIT` (a deferred constraint trigger of a migration's own table) runs after
//! every check of the step, so only what the server holds afterwards can tell: every row
//! version written since the run's first committed step began has an `xmin` no older than
//! that step's transaction (the ids of a transaction's subtransactions are later than its
//! own), and the rows of these two tables with such an `xmin` must be exactly the ones the
//! records wrote, and `wasmig_history` must hold as many rows as the last record left. A
//! forged history row, a checksum rewritten, a stored copy's `down_sql` replaced (which a
//! later `wasmig down` would run): each is a row version no record wrote. A deleted row is
//! found in history by its count, not in the artifact table.
//!
//! A run in which a committed transaction wrote these tables other than by a step's record
//! (a `transaction = "none"` revision, a batch, `resolve`) is not checked: those writes
//! return no rows to compare with.
//!
//! Not here: the record itself (`store::write`), the heads' read-back (the runner).

use std::collections::BTreeSet;

use crate::store::Cell;

/// What the records of a run's committed transactions wrote (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct RunWrites {
    /// The transaction id of the first committed transaction that recorded a step.
    first_xid: Option<i64>,
    /// The `ctid`s of the history rows the records wrote.
    history: Vec<String>,
    /// The `ctid`s of the artifact rows the records wrote (inserted or replaced).
    artifact: Vec<String>,
    /// How many rows `wasmig_history` held after the last record.
    history_rows: Option<i64>,
    /// A committed transaction wrote wasmig's tables other than by a record.
    unaccounted: bool,
}

/// The columns the record adds on PostgreSQL after the store's own (`store::write`): the
/// `ctid`s it wrote to history and to the artifact table, space-separated.
const HISTORY_CTIDS: usize = 7;
const ARTIFACT_CTIDS: usize = 8;
/// The store's columns of the record read here: the rows history held before the record,
/// and the rows it appended.
const HISTORY_BEFORE: usize = 4;
const LOGGED: usize = 1;

impl RunWrites {
    /// Adds what one record wrote, from its row (see [`HISTORY_CTIDS`]).
    pub(crate) fn recorded(&mut self, row: &[Cell]) {
        let texts = |i: usize| match row.get(i) {
            Some(Cell::Text(Some(t))) => t
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let int = |i: usize| match row.get(i) {
            Some(Cell::Int(Some(n))) => Some(*n),
            _ => None,
        };
        let (Some(before), Some(logged)) = (int(HISTORY_BEFORE), int(LOGGED)) else {
            // Not the record's row as this module knows it: nothing to compare with.
            self.unaccounted = true;
            return;
        };
        if row.len() <= ARTIFACT_CTIDS {
            self.unaccounted = true;
            return;
        }
        self.history.extend(texts(HISTORY_CTIDS));
        self.artifact.extend(texts(ARTIFACT_CTIDS));
        self.history_rows = Some(before + logged);
    }

    /// Marks a write of wasmig's tables other than a record (see the module's doc).
    pub(crate) fn unaccounted(&mut self) {
        self.unaccounted = true;
    }

    /// Folds in what the transaction `xid` wrote, once it committed.
    pub(crate) fn committed(&mut self, xid: i64, step: RunWrites) {
        if step.history_rows.is_none() && !step.unaccounted {
            return;
        }
        self.first_xid = Some(self.first_xid.map_or(xid, |first| first.min(xid)));
        self.history.extend(step.history);
        self.artifact.extend(step.artifact);
        self.history_rows = step.history_rows.or(self.history_rows);
        self.unaccounted |= step.unaccounted;
    }

    /// The query that reads what was written since the first committed record, for
    /// [`RunWrites::compare`]; `None` when there is nothing to check.
    ///
    /// Its last columns are `storage`'s, SQL the caller adds (see `verify_run_writes`:
    /// which table each name reaches and its storage, so a rewrite by `CLUSTER` or
    /// `TRUNCATE`, which keeps `xmin` and moves rows onto the `ctid`s a record wrote, is
    /// found). A `ctid` is written out by `tidout`, never by a cast: no cast from `tid` to
    /// text is built in, so one the migration created would answer instead.
    pub(crate) fn query(
        &self,
        history: &str,
        artifact: &str,
        failed: &str,
        storage: &str,
    ) -> Option<String> {
        if self.unaccounted {
            tracing::debug!(
                "a committed transaction of this run wrote wasmig's tables other than by a step's record: its writes are not compared after the run"
            );
            return None;
        }
        let xid = self.first_xid?;
        self.history_rows?;
        // The 32-bit id the rows' `xmin` holds; `age` orders ids across wraparound.
        let xid = xid.rem_euclid(1 << 32);
        let since = format!(
            "pg_catalog.age(xmin) OPERATOR(pg_catalog.<=) pg_catalog.age('{xid}'::pg_catalog.xid)"
        );
        let ctids = |table: &str| {
            format!(
                "(SELECT pg_catalog.string_agg(pg_catalog.textin(pg_catalog.tidout(ctid)), ' ') FROM {table} WHERE {since})"
            )
        };
        // A run that is compared wrote no failed mark: its steps each ran in a transaction
        // of their own records (a `none` step's marks make it unaccounted).
        Some(format!(
            "SELECT {}, {}, (SELECT pg_catalog.count(*) FROM {history}), \
             (SELECT pg_catalog.count(*) FROM {failed} WHERE {since}){storage}",
            ctids(history),
            ctids(artifact)
        ))
    }

    /// Compares what the query of [`RunWrites::query`] found (`history` and `artifact`:
    /// the `ctid`s written since, space-separated; `rows`: history's rows; `marks`: failed
    /// marks written since) with what the records wrote: `Err` with what differs, for a
    /// message.
    pub(crate) fn compare(
        &self,
        history: Option<&str>,
        artifact: Option<&str>,
        rows: i64,
        marks: i64,
    ) -> Result<(), String> {
        let set = |text: Option<&str>| -> BTreeSet<String> {
            text.unwrap_or_default()
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut found = Vec::new();
        for (table, text, written) in [
            (crate::HISTORY_TABLE, history, &self.history),
            (crate::ARTIFACT_TABLE, artifact, &self.artifact),
        ] {
            let written: BTreeSet<String> = written.iter().cloned().collect();
            let there = set(text);
            let others = there.difference(&written).count();
            if others > 0 {
                found.push(format!(
                    "{table} holds {others} row(s) written during the run that no step's record wrote"
                ));
            }
            // Nothing of wasmig's updates or deletes a row a record of the same run wrote.
            let gone = written.difference(&there).count();
            if gone > 0 {
                found.push(format!(
                    "{gone} row(s) of {table} that a step's record wrote are gone or were rewritten"
                ));
            }
        }
        if let Some(expected) = self.history_rows
            && rows != expected
        {
            found.push(format!(
                "{} holds {rows} rows where the last step's record left {expected}",
                crate::HISTORY_TABLE
            ));
        }
        if marks > 0 {
            found.push(format!(
                "{} holds {marks} failed mark(s) written during the run, which none of its steps wrote",
                crate::FAILED_TABLE
            ));
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(found.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(history_before: i64, history: &str, artifact: &str) -> Vec<Cell> {
        let mut row = vec![Cell::Int(Some(0)); 9];
        row[LOGGED] = Cell::Int(Some(1));
        row[HISTORY_BEFORE] = Cell::Int(Some(history_before));
        row[HISTORY_CTIDS] = Cell::Text(Some(history.to_owned()));
        row[ARTIFACT_CTIDS] = Cell::Text(Some(artifact.to_owned()));
        row
    }

    #[test]
    fn what_the_records_wrote_is_all_that_may_be_found() {
        let mut run = RunWrites::default();
        let mut step = RunWrites::default();
        step.recorded(&record(3, "(0,4)", "(1,2)"));
        run.committed(120, step);
        let mut step = RunWrites::default();
        step.recorded(&record(4, "(0,5)", ""));
        run.committed(118, step);
        // A rolled-back step's rows are never folded in; an uncommitted session adds nothing.
        run.committed(119, RunWrites::default());
        let query = run.query("h", "a", "f", "").unwrap();
        assert!(query.contains("age('118'::pg_catalog.xid)"), "{query}");
        assert_eq!(
            run.compare(Some("(0,5) (0,4)"), Some("(1,2)"), 5, 0),
            Ok(())
        );
        let forged = run
            .compare(Some("(0,4) (0,5) (0,6)"), Some("(1,3)"), 6, 0)
            .unwrap_err();
        assert!(forged.contains("wasmig_history holds 1 row(s)"), "{forged}");
        assert!(
            forged.contains("wasmig_artifact holds 1 row(s)"),
            "{forged}"
        );
        assert!(
            forged.contains("holds 6 rows where the last step's record left 5"),
            "{forged}"
        );
        assert!(
            run.compare(Some("(0,5)"), Some("(1,2)"), 4, 0).is_err(),
            "a row erased"
        );
        let moved = run.compare(Some("(0,5) (0,4)"), None, 5, 0).unwrap_err();
        assert!(
            moved.contains("1 row(s) of wasmig_artifact that a step's record wrote are gone"),
            "{moved}"
        );
        let marked = run
            .compare(Some("(0,5) (0,4)"), Some("(1,2)"), 5, 1)
            .unwrap_err();
        assert!(
            marked.contains("wasmig_failed holds 1 failed mark(s) written during the run"),
            "{marked}"
        );
    }

    #[test]
    fn a_write_other_than_a_record_leaves_the_run_unchecked() {
        let mut run = RunWrites::default();
        let mut step = RunWrites::default();
        step.recorded(&record(0, "(0,1)", ""));
        run.committed(7, step);
        let mut step = RunWrites::default();
        step.unaccounted();
        run.committed(8, step);
        assert_eq!(run.query("h", "a", "f", ""), None);
        // Nothing recorded: nothing to check.
        assert_eq!(RunWrites::default().query("h", "a", "f", ""), None);
        // The ids wrap at 32 bits in `xmin`.
        let mut run = RunWrites::default();
        let mut step = RunWrites::default();
        step.recorded(&record(0, "(0,1)", ""));
        run.committed((5 << 32) + 9, step);
        assert!(
            run.query("h", "a", "f", "")
                .unwrap()
                .contains("age('9'::pg_catalog.xid)")
        );
    }
}

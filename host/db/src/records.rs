//! The rows of wasmig's tables as the rest of wasmig sees them: a history entry, a failed
//! mark, a batched step's checkpoint, a stored artifact; what a step writes
//! ([`StepRecord`], [`FinishedStep`]) and what the tables must hold before it does
//! ([`Expected`]).
//!
//! Not here: reading and writing them (`store`), the tables' schema (`store::schema`).

use chrono::{DateTime, Utc};

use crate::{Direction, Event};

/// One applied or reverted step, as recorded in the history table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// Sequence number, increasing with time.
    pub id: i64,
    /// The full revision id.
    pub revision: String,
    /// `upgrade`, `downgrade`, `stamp` (revision: the new heads, comma-separated),
    /// `rehash` (a changed revision accepted by `wasmig rehash`), `failed` (a
    /// `transaction = "none"` step that stopped part-way) or `resolve` (`wasmig resolve`).
    pub direction: Event,
    /// Hex SHA-256 of the revision's artifact (see `revision::Artifact::checksum`); empty
    /// for `stamp`.
    pub checksum: String,
    /// When the step started, UTC.
    pub started_at: DateTime<Utc>,
    /// When the step's transaction was about to commit, UTC.
    pub finished_at: DateTime<Utc>,
    /// `finished_at - started_at` in milliseconds.
    pub duration_ms: i64,
    /// The wasmig version that ran the step.
    pub wasmig_version: String,
    /// For a `failed` row: what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a `failed` row: the SQLSTATE (PostgreSQL) or result code (SQLite), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

/// A revision marked failed: a `transaction = "none"` step that stopped part-way, so the
/// database holds some of its work and wasmig cannot tell which. Stored in
/// [`FAILED_TABLE`](crate::FAILED_TABLE) until `wasmig resolve` clears it; `up` and `down` refuse to run while
/// any revision is marked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedMark {
    /// The revision.
    pub revision: String,
    /// The step that failed: `upgrade` or `downgrade`.
    pub direction: Direction,
    /// The heads the step would have removed, had it completed.
    pub remove_heads: Vec<String>,
    /// The heads the step would have added.
    pub add_heads: Vec<String>,
    /// The statement of the script that failed, from 1 (statements before it were
    /// committed); past the last statement when recording the step itself failed.
    pub statement: i64,
    /// What went wrong.
    pub error: String,
    /// The SQLSTATE (PostgreSQL) or result code (SQLite), if the database gave one.
    pub sqlstate: Option<String>,
    /// When it failed, UTC.
    pub failed_at: DateTime<Utc>,
}

/// A `transaction = "batched"` step part-way through: the checkpoint its last committed
/// batch saved. Stored in [`CHECKPOINT_TABLE`](crate::CHECKPOINT_TABLE) in each batch's transaction and deleted in
/// the transaction of the last batch, which also records the step; so a row here means the
/// step began, committed `batches` batches, and has not finished. `wasmig up` (or `down`,
/// for a downgrade) resumes it from `checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The revision.
    pub revision: String,
    /// The step under way: `upgrade` or `downgrade`.
    pub direction: Direction,
    /// The heads the step will remove when it completes (as the planner made it, so that
    /// `wasmig resolve --as applied` can complete it by hand).
    pub remove_heads: Vec<String>,
    /// The heads the step will add.
    pub add_heads: Vec<String>,
    /// What the guest passed to `batch.next-batch` in the last committed batch.
    pub checkpoint: String,
    /// How many batches have committed.
    pub batches: i64,
    /// The checksum of the artifact those batches ran, so a resumed run notices that the
    /// revision changed under it.
    pub checksum: String,
    /// When the first batch started, UTC.
    pub started_at: DateTime<Utc>,
    /// When the last batch committed, UTC.
    pub updated_at: DateTime<Utc>,
}

/// One key range of a partitioned batched step (`[partitions]` in its manifest), as
/// [`PARTITION_TABLE`](crate::PARTITION_TABLE) holds it: its walk's checkpoint, and the
/// claim of the worker running it, if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    /// Which range, from 0.
    pub part: i64,
    /// How many ranges the step has.
    pub parts: i64,
    /// The first key of the range (inclusive).
    pub first_key: i64,
    /// The last key of the range (inclusive).
    pub last_key: i64,
    /// What the walk's last committed batch passed to `batch.next-batch` (at first: the
    /// range itself, see [`Partition::seed`]).
    pub checkpoint: String,
    /// Batches committed in this range.
    pub batches: i64,
    /// Whether its last batch has committed.
    pub done: bool,
    /// The claim's number: each claim adds one, so a batch commits only under the claim
    /// that began it.
    pub token: i64,
    /// Whether a worker holds it now (claimed, and the lease not run out).
    pub held: bool,
}

/// The prefix of the checkpoint a partition's walk starts from; the rest is
/// `<part>:<parts>:<first key>:<last key>` (see [`Partition::seed`]).
pub const PARTITION_SEED: &str = "wasmig-partition:1:";

/// The prefix of the checkpoint row's text while a step runs in partitions (each partition
/// keeps its own checkpoint): `wasmig-partitions:<parts>`.
pub const PARTITIONED_CHECKPOINT: &str = "wasmig-partitions:";

impl Partition {
    /// The checkpoint row's text of a step running in `parts` partitions.
    #[must_use]
    pub fn step_checkpoint(parts: i64) -> String {
        format!("{PARTITIONED_CHECKPOINT}{parts}")
    }

    /// How many partitions a step runs in, from its checkpoint row's text; `None` for a
    /// step that does not run in partitions.
    #[must_use]
    pub fn parts_of(checkpoint: &str) -> Option<i64> {
        checkpoint
            .strip_prefix(PARTITIONED_CHECKPOINT)
            .and_then(|n| n.parse().ok())
    }

    /// The checkpoint the first batch of range `part` of `parts`, keys `first..=last`,
    /// starts from: `wasmig-partition:1:<part>:<parts>:<first>:<last>`, which the SDKs' keyset
    /// walkers read as their range (and any guest can parse).
    #[must_use]
    pub fn seed(part: i64, parts: i64, first: i64, last: i64) -> String {
        format!("{PARTITION_SEED}{part}:{parts}:{first}:{last}")
    }

    /// `parts` ranges covering every 64-bit key, split evenly over `min..=max` (the keys the
    /// table held when the step began): the first starts at `i64::MIN` and the last ends at
    /// `i64::MAX`, so a row outside the bounds (inserted since) is in one of them too. Fewer
    /// ranges than asked when there are fewer keys; one when there are none.
    #[must_use]
    pub fn ranges(parts: u32, bounds: Option<(i64, i64)>) -> Vec<(i64, i64)> {
        let Some((min, max)) = bounds.filter(|(min, max)| min <= max) else {
            return vec![(i64::MIN, i64::MAX)];
        };
        let span = i128::from(max) - i128::from(min) + 1;
        let parts = i128::from(parts.max(1)).min(span);
        let mut ranges = Vec::with_capacity(parts as usize);
        let mut first = i64::MIN;
        for k in 1..=parts {
            let last = if k == parts {
                i64::MAX
            } else {
                // The last key of range k: min + span * k / parts - 1, within min..max.
                i64::try_from(i128::from(min) + span * k / parts - 1).expect("inside min..=max")
            };
            ranges.push((first, last));
            first = last.saturating_add(1);
        }
        ranges
    }
}

/// What [`Session::record_step`](crate::Session::record_step) writes.
#[derive(Debug)]
pub struct StepRecord<'a> {
    /// Heads to delete (the revision reverted, or the one upgraded from).
    pub remove: &'a [String],
    /// Heads to insert.
    pub add: &'a [String],
    /// The revision applied or reverted.
    pub revision: &'a str,
    /// `upgrade`, `downgrade`, `stamp`, `rehash`, `failed` or `resolve`.
    pub direction: Event,
    /// Hex SHA-256 of the artifact.
    pub checksum: &'a str,
    /// When the step started.
    pub started_at: DateTime<Utc>,
    /// When the step finished (just before commit).
    pub finished_at: DateTime<Utc>,
    /// For a `failed` row: what went wrong.
    pub error: Option<&'a str>,
    /// For a `failed` row: the SQLSTATE or result code.
    pub sqlstate: Option<&'a str>,
}

impl<'a> StepRecord<'a> {
    /// A row of bookkeeping that runs no migration (`stamp`, `rehash`, an adoption):
    /// started and finished now, no error.
    pub fn bookkeeping(
        direction: Event,
        revision: &'a str,
        remove: &'a [String],
        add: &'a [String],
        checksum: &'a str,
    ) -> Self {
        let now = Utc::now();
        StepRecord {
            remove,
            add,
            revision,
            direction,
            checksum,
            started_at: now,
            finished_at: now,
            error: None,
            sqlstate: None,
        }
    }
}

/// What [`Session::finish_step`](crate::Session::finish_step) writes for a step that ran to its end.
#[derive(Debug)]
pub struct FinishedStep<'a> {
    /// The version-table change and the history row.
    pub record: StepRecord<'a>,
    /// The copy to store (an upgrade), or `None` to delete the revision's copy (a
    /// downgrade).
    pub artifact: Option<&'a StoredArtifact>,
    /// Whether the revision has a checkpoint to delete (a batched step's last batch, or a
    /// resumed step).
    pub clear_checkpoint: bool,
    /// What wasmig's tables must hold before this record is written (`None`: not checked).
    pub expected: Option<&'a Expected>,
}

/// What wasmig's tables hold before a step writes its record, by wasmig's own account: the
/// heads the run started from with its earlier steps applied, and how many history rows
/// there are. The step's own SQL ran in the same transaction just before; if the tables
/// hold anything else, that SQL wrote them (a head inserted so a revision never runs, one
/// deleted so it runs again, a history row forged or erased), and the record is refused
/// with [`RowsWritten`](crate::RowsWritten) before the step commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The heads, sorted bytewise.
    pub heads: Vec<String>,
    /// The number of rows in the history table.
    pub history: i64,
}

impl Expected {
    /// The expectation after a step that replaced `remove` by `add` among the heads (a
    /// head in both is left alone) and appended its history row.
    #[must_use]
    pub fn after(&self, remove: &[String], add: &[String]) -> Expected {
        let mut heads: Vec<String> = self
            .heads
            .iter()
            .filter(|h| !remove.contains(h) || add.contains(h))
            .cloned()
            .collect();
        for head in add {
            if !heads.contains(head) {
                heads.push(head.clone());
            }
        }
        heads.sort();
        Expected {
            heads,
            history: self.history + 1,
        }
    }
}

/// A row of the artifact table: what ran when a revision was last applied, so `wasmig down`
/// can revert it after its files left the project (an older release deployed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// The full revision id.
    pub revision: String,
    /// `sql`, `rust` or `wasm`.
    pub kind: String,
    /// Hex SHA-256 of the artifact (see `revision::Artifact::checksum`).
    pub checksum: String,
    /// The text of the revision's `migration.toml`.
    pub manifest: String,
    /// `up.sql`, for SQL revisions.
    pub up_sql: Option<String>,
    /// `down.sql`, for SQL revisions.
    pub down_sql: Option<String>,
    /// The component's bytes, for component revisions: shared, not copied, by the
    /// statement that stores them (18 MB for a Python component).
    pub component: Option<bytes::Bytes>,
    /// For a revision built from source by a toolchain whose builds are not reproducible
    /// (Python, JavaScript; C too): the checksum of the sources it was built from
    /// (`toolchain::source_checksum`), so a checkout with the same sources reuses this
    /// component instead of building different bytes.
    pub source_checksum: Option<String>,
}

#[cfg(test)]
mod partition_tests {
    use super::Partition;

    #[test]
    fn ranges_cover_every_key_once_split_evenly_over_the_bounds() {
        assert_eq!(
            Partition::ranges(4, Some((1, 100))),
            [(i64::MIN, 25), (26, 50), (51, 75), (76, i64::MAX)]
        );
        // Uneven: the spans differ by at most one key.
        assert_eq!(
            Partition::ranges(3, Some((0, 9))),
            [(i64::MIN, 2), (3, 5), (6, i64::MAX)]
        );
        // Fewer keys than ranges: one range per key.
        assert_eq!(
            Partition::ranges(8, Some((5, 6))),
            [(i64::MIN, 5), (6, i64::MAX)]
        );
        // No keys (NULL bounds), or bounds the wrong way round: one range of everything.
        assert_eq!(Partition::ranges(8, None), [(i64::MIN, i64::MAX)]);
        assert_eq!(Partition::ranges(8, Some((9, 1))), [(i64::MIN, i64::MAX)]);
        // The whole 64-bit span does not overflow.
        let whole = Partition::ranges(2, Some((i64::MIN, i64::MAX)));
        assert_eq!(whole, [(i64::MIN, -1), (0, i64::MAX)]);
        for parts in 1..=17 {
            let r = Partition::ranges(parts, Some((-1000, 12_345)));
            assert_eq!(r.len(), parts as usize);
            assert!(r.windows(2).all(|w| w[0].1 + 1 == w[1].0), "{r:?}");
            assert!(r.iter().all(|(a, b)| a <= b), "{r:?}");
        }
    }

    #[test]
    fn a_step_in_partitions_says_how_many() {
        assert_eq!(Partition::step_checkpoint(16), "wasmig-partitions:16");
        assert_eq!(Partition::parts_of("wasmig-partitions:16"), Some(16));
        assert_eq!(Partition::parts_of("keyset:1:0:-:5"), None);
    }

    #[test]
    fn a_seed_names_its_range() {
        assert_eq!(
            Partition::seed(2, 8, -5, 77),
            "wasmig-partition:1:2:8:-5:77"
        );
    }
}
